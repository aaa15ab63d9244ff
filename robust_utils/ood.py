"""Single-pass uncertainty scores: the Mahalanobis distance and the logit baselines.

Single-pass methods need no repeated passes: a distance between an image's penultimate
features :math:`h` and the class means :math:`\\mu_c` of the training features, here the
Mahalanobis distance with a covariance :math:`\\Sigma` shared by all classes (Lee et al., 2018),

.. math::  d_c(h) = (h - \\mu_c)^\\top \\Sigma^{-1} (h - \\mu_c), \\qquad
           u(h) = \\min_c d_c(h) ,

or a function of the logits alone (:func:`baseline_scores`: softmax confidence, entropy,
margin, negative log-likelihood, energy).

**Which way the scores point.** Every score here is oriented *higher = more novel* (further
from the training data, less confident); it is declared on the objects with
:func:`robust_utils.metrics.declares_direction` (``score_direction(MahalanobisDetector)``,
and :data:`BASELINE_DIRECTIONS` for each entry of :func:`baseline_scores`), so tables can read
it instead of repeating it.

Taught in Part 3, sections "Single-pass uncertainty: distance to the training representations" and
"GradTrust: counterfactual gradients as a trust score".
"""
from __future__ import annotations

import math

import torch

from ._checks import check_labels, check_number
from .metrics import declares_direction

__all__ = [
    "check_features",
    "check_logits",
    "MahalanobisDetector",
    "BASELINE_SCORES",
    "BASELINE_DIRECTIONS",
    "baseline_scores",
]

#: Names of the scores returned by :func:`baseline_scores`, in order.
BASELINE_SCORES = ("softmax", "entropy", "margin", "nll", "energy")

#: What a higher value of each score of :func:`baseline_scores` means (all point the same way;
#: negate a score to turn it into a trust score for :func:`robust_utils.gradtrust.trust_curves`).
BASELINE_DIRECTIONS = {name: "more novel" for name in BASELINE_SCORES}


# ---------------------------------------------------------------------------------------------
# Single-pass: Mahalanobis distance to the class means
# ---------------------------------------------------------------------------------------------
def check_features(f, name: str = "features") -> torch.Tensor:
    """Check that ``f`` is a finite float ``(N, D)`` tensor of features, ``N >= 1`` (returned as is).

    Taught in Part 3, section "Single-pass uncertainty: distance to the training representations".
    """
    if not isinstance(f, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (N, D), got {type(f).__name__}; "
                        "get them with robust_utils.features.extract_features(model, x).")
    if f.dim() != 2 or f.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, D) with N >= 1, got {tuple(f.shape)}.")
    if not torch.is_floating_point(f):
        raise TypeError(f"{name} must be a floating-point tensor, got {f.dtype}; use .float().")
    if not torch.isfinite(f).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return f


@declares_direction("more novel")
class MahalanobisDetector:
    """Distance-based single-pass uncertainty with class means and a tied covariance.

    Fit on penultimate features of the training set (Lee et al., NeurIPS 2018): one mean per
    class, and one covariance shared by all classes (the within-class scatter divided by ``N``).
    At inference an image's uncertainty is its squared Mahalanobis distance to the closest
    class mean; no extra pass and no extra network, but the training features are needed.

    Parameters
    ----------
    shrinkage : float >= 0, default 1e-6
        ``shrinkage * trace(Sigma) / D`` is added to the diagonal of the covariance before it is
        inverted, so that rank-deficient covariances (more features than images, dead ReLU
        units) still give a stable precision matrix. ``0`` falls back to a pseudo-inverse when
        the Cholesky factorisation fails.

    Attributes
    ----------
    classes_ : Tensor
        The class indices present in the labels given to :meth:`fit` (sorted). A class without
        samples has no mean; its column of :meth:`distances` is ``+inf``.
    means_ : Tensor (n_classes, D)
        Class means (rows of unseen classes are NaN), float64.
    covariance_, precision_ : Tensor (D, D)
        The tied covariance (after shrinkage) and its inverse, float64.

    Taught in Part 3, section "Single-pass uncertainty: distance to the training representations".
    """

    def __init__(self, shrinkage: float = 1e-6):
        self.shrinkage = check_number(shrinkage, "shrinkage", minimum=0.0, strict=False)
        self.classes_: torch.Tensor | None = None
        self.means_: torch.Tensor | None = None
        self.covariance_: torch.Tensor | None = None
        self.precision_: torch.Tensor | None = None

    def __repr__(self) -> str:
        fitted = "unfitted" if self.classes_ is None else \
            f"{len(self.classes_)} classes, D={self.means_.shape[1]}"
        return f"MahalanobisDetector(shrinkage={self.shrinkage:g}; {fitted})"

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> "MahalanobisDetector":
        """Estimate the class means and the tied covariance from training features.

        Parameters
        ----------
        features : Tensor (N, D)
        labels : Tensor (N,)
            Class indices (>= 0); classes absent from ``labels`` are skipped.

        Returns
        -------
        MahalanobisDetector
            ``self``.

        Taught in Part 3, section "Single-pass uncertainty: distance to the training
        representations".
        """
        f = check_features(features).detach().double()
        y = check_labels(labels, n=f.shape[0]).to(f.device)
        if int(y.min()) < 0:
            raise ValueError(f"labels must be class indices >= 0, got minimum {int(y.min())}.")
        n_classes = int(y.max()) + 1
        d = f.shape[1]
        counts = torch.bincount(y, minlength=n_classes).double()
        sums = torch.zeros(n_classes, d, dtype=torch.float64, device=f.device).index_add_(0, y, f)
        means = sums / counts.unsqueeze(1)  # NaN rows for unseen classes
        centred = f - means[y]
        cov = centred.T @ centred / f.shape[0]
        tr = float(torch.trace(cov))
        if tr <= 0:
            raise ValueError("the features do not vary within classes (zero covariance), so Mahalanobis "
                             "distances are undefined; fit on more images per class.")
        cov = cov + (self.shrinkage * tr / d) * torch.eye(d, dtype=cov.dtype, device=cov.device)
        try:
            chol = torch.linalg.cholesky(cov)
            prec = torch.cholesky_inverse(chol)
        except RuntimeError:  # singular covariance (shrinkage=0 and D > rank)
            prec = torch.linalg.pinv(cov, hermitian=True)
        self.classes_ = torch.nonzero(counts > 0).flatten().cpu()
        self.means_, self.covariance_, self.precision_ = means, cov, (prec + prec.T) / 2
        return self

    def _check_fitted(self, features) -> torch.Tensor:
        if self.precision_ is None:
            raise RuntimeError("this MahalanobisDetector is not fitted yet; call "
                               ".fit(train_features, train_labels) first.")
        f = check_features(features)
        d = self.means_.shape[1]
        if f.shape[1] != d:
            raise ValueError(f"features have D={f.shape[1]} dimensions but the detector was fitted on "
                             f"D={d}; use features from the same layer of the same model.")
        return f

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distances to every class mean.

        Parameters
        ----------
        features : Tensor (N, D)

        Returns
        -------
        Tensor (N, n_classes)
            Column ``c`` is :math:`(h - \\mu_c)^\\top \\Sigma^{-1} (h - \\mu_c)`; ``+inf`` for classes
            absent at fit time. ``n_classes`` = largest fitted label + 1. Same dtype and device as
            ``features``.

        Taught in Part 3, section "Single-pass uncertainty: distance to the training
        representations".
        """
        f = self._check_fitted(features)
        h = f.detach().to(self.precision_.device, torch.float64)
        seen = self.classes_.to(h.device)
        mu = self.means_[seen]
        out = torch.full((h.shape[0], self.means_.shape[0]), math.inf, dtype=torch.float64,
                         device=h.device)
        chunk = max(1, int(2**23 // max(1, mu.shape[0] * h.shape[1])))  # bounds the (n, K, D) memory
        for s in range(0, h.shape[0], chunk):
            diff = h[s:s + chunk].unsqueeze(1) - mu.unsqueeze(0)
            out[s:s + chunk, seen] = ((diff @ self.precision_) * diff).sum(-1).clamp_min(0)
        return out.to(f.device, f.dtype)

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """Distance to the closest class mean, ``(N,)``; higher = more novel (more uncertain).

        Taught in Part 3, section "Single-pass uncertainty: distance to the training
        representations".
        """
        return self.distances(features).min(1).values

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Nearest class mean in Mahalanobis distance, ``(N,)`` class indices.

        Taught in Part 3, section "Single-pass uncertainty: distance to the training
        representations".
        """
        return self.distances(features).argmin(1)


# ---------------------------------------------------------------------------------------------
# Baseline confidence scores
# ---------------------------------------------------------------------------------------------
def check_logits(logits, name: str = "logits") -> torch.Tensor:
    """Check that ``logits`` is a finite float ``(N, C)`` tensor, ``N >= 1``, ``C >= 2`` (returned as is).

    Taught in Part 3, section "GradTrust: counterfactual gradients as a trust score".
    """
    if not isinstance(logits, torch.Tensor) or not torch.is_floating_point(logits):
        raise TypeError(f"{name} must be a floating-point torch.Tensor (N, C), got "
                        f"{type(logits).__name__}.")
    if logits.dim() != 2 or logits.shape[0] == 0 or logits.shape[1] < 2:
        hint = " Add a batch dimension with logits.unsqueeze(0)." if logits.dim() == 1 else ""
        raise ValueError(f"{name} must have shape (N, C) with N >= 1 and C >= 2, got "
                         f"{tuple(logits.shape)}.{hint}")
    if not torch.isfinite(logits).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return logits


@declares_direction("more novel")
def baseline_scores(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Single-pass uncertainty scores from the logits, all oriented higher = more novel.

    The direction of each score is :data:`BASELINE_DIRECTIONS` ``[name]`` (the same for all, so
    ``score_direction(baseline_scores)`` gives it too).

    ``"softmax"``
        :math:`1 - \\max_c p_c` (Hendrycks and Gimpel, 2017).
    ``"entropy"``
        :math:`H(p)` in nats.
    ``"margin"``
        :math:`-(p_{(1)} - p_{(2)})`, minus the gap between the two largest probabilities.
    ``"nll"``
        :math:`-\\log \\max_c p_c`, the negative log-likelihood of the predicted class. It is an
        increasing function of ``"softmax"``, so it ranks images exactly like it (same AUROC,
        same trust curves).
    ``"energy"``
        :math:`-\\log \\sum_c e^{z_c}` (Liu et al., 2020): low energy = in-distribution.

    Parameters
    ----------
    logits : Tensor (N, C)

    Returns
    -------
    dict[str, Tensor]
        Keys :data:`BASELINE_SCORES`, in that order, each ``(N,)``. For a *trust* score (higher =
        more trust, as :func:`robust_utils.gradtrust.trust_curves` expects) negate them.

    Taught in Part 3, sections "Steps 4–5: a detector per challenge set" and "GradTrust:
    counterfactual gradients as a trust score".
    """
    z = check_logits(logits).detach()
    logp = z.log_softmax(-1)
    p = logp.exp()
    top2 = p.topk(2, dim=-1).values
    lse = torch.logsumexp(z, -1)
    return {
        "softmax": 1.0 - top2[:, 0],
        "entropy": -torch.xlogy(p, p).sum(-1),
        "margin": -(top2[:, 0] - top2[:, 1]),
        "nll": lse - z.max(-1).values,
        "energy": -lse,
    }

