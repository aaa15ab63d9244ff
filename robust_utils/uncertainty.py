"""Uncertainty at inference: MC dropout, ensembles, distances, and GradTrust.

*Uncertainty is a model knowing that it does not know.* Given ``T`` predictive distributions
:math:`p_t = \\mathrm{softmax}(f_{\\hat W_t}(x))` for the same input (``T`` dropout masks, or
the ``T`` members of an ensemble), the entropy of their mean (the *predictive* uncertainty)
splits into the mean of their entropies (the *aleatoric*, data, uncertainty) and the mutual
information between the prediction and the weights (the *epistemic*, model, uncertainty):

.. math::  \\underbrace{H\\Big(\\frac{1}{T}\\sum_{t=1}^{T} p_t\\Big)}_{U_{predictive}}
           = \\underbrace{\\frac{1}{T}\\sum_{t=1}^{T} H(p_t)}_{U_{aleatoric}}
           + U_{epistemic},
           \\qquad H(p) = -\\sum_c p_c \\log p_c ,

and the final prediction is the arg-max of the mean :math:`\\frac{1}{T}\\sum_t p_t`
(Gal and Ghahramani, 2016; Lakshminarayanan et al., 2017). Epistemic uncertainty is zero when
the ``T`` passes agree, whatever their entropy.

Single-pass methods need no repeated passes: a distance between an image's penultimate
features :math:`h` and the class means :math:`\\mu_c` of the training features, here the
Mahalanobis distance with a covariance :math:`\\Sigma` shared by all classes (Lee et al., 2018),

.. math::  d_c(h) = (h - \\mu_c)^\\top \\Sigma^{-1} (h - \\mu_c), \\qquad
           u(h) = \\min_c d_c(h) .

GradTrust (Prabhushankar and AlRegib) measures *trust* from the gradients of the last linear
layer ``W`` (``C x D``) when the logits :math:`z` are pulled towards the uniform vector
:math:`\\tfrac{1}{C}\\mathbf{1}`. With :math:`G = \\nabla_W \\mathrm{MSE}(z, \\tfrac{1}{C}\\mathbf{1})`
and :math:`v_i = \\mathrm{Var}_j(G_{ij}^2)` (variance over the ``D`` features of row ``i``),

.. math::  \\mathrm{GradTrust}(x) = \\frac{\\max_i v_i}{\\frac{1}{|K|}\\sum_{i \\in K} v_i},

with :math:`K` all classes (the authors' code) or the top-``k`` counterfactual classes.
Since :math:`G_i = \\tfrac{2}{C}(z_i - \\tfrac{1}{C})\\, h`, the features cancel and
GradTrust is a function of the logits alone (:func:`gradtrust_from_logits`).

Taught in Part 3, sections "Uncertainty quantification", "Single-pass uncertainty" and
"GradTrust".
"""
from __future__ import annotations

import copy
import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

from ._checks import (check_fraction, check_images, check_labels, check_positive_int,
                      check_probabilities, check_same_length)
from .config import progress_bar
from .introspection import _check_model as _check_head_model
from .metrics import _as_numpy_1d
from .training import _model_device, iterate_minibatches, predict_logits

__all__ = [
    "entropy",
    "decompose_uncertainty",
    "mc_dropout_probs",
    "mc_dropout",
    "ensemble_probs",
    "ensemble_uncertainty",
    "confidence_gap",
    "MahalanobisDetector",
    "BASELINE_SCORES",
    "baseline_scores",
    "gradtrust",
    "gradtrust_from_logits",
    "trust_curves",
    "toy_noise_std",
    "toy_regression_data",
    "GaussianMLP",
    "fit_regression_ensemble",
    "regression_uncertainty",
]

#: Names of the scores returned by :func:`baseline_scores`, in order.
BASELINE_SCORES = ("softmax", "entropy", "margin", "nll", "energy")

#: Every dropout module that MC dropout switches on (all subclass ``nn.modules.dropout._DropoutNd``).
_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                  nn.FeatureAlphaDropout)


# ---------------------------------------------------------------------------------------------
# Entropy and the decomposition of predictive uncertainty
# ---------------------------------------------------------------------------------------------
def entropy(probs: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Shannon entropy in nats along ``dim``, with :math:`0 \\log 0 = 0`.

    Parameters
    ----------
    probs : Tensor
        Probability vectors along ``dim`` (non-negative, summing to 1).
    dim : int, default -1
        The class dimension.

    Returns
    -------
    Tensor
        ``probs`` with ``dim`` removed; between 0 (one-hot) and ``log C`` (uniform).

    Taught in Part 3, section "Uncertainty quantification".
    """
    if not isinstance(probs, torch.Tensor):
        raise TypeError(f"probs must be a torch.Tensor of probabilities, got {type(probs).__name__}.")
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int (the class dimension), got {dim!r}.")
    if probs.dim() == 0 or not -probs.dim() <= dim < probs.dim():
        raise ValueError(f"dim={dim} is out of range for probs of shape {tuple(probs.shape)}.")
    p = probs.movedim(dim, -1)
    check_probabilities(p, "probs")
    p = p.clamp_min(0.0)  # rounding may leave -1e-9 entries; xlogy(0, 0) = 0
    return -torch.xlogy(p, p).sum(-1)


def decompose_uncertainty(prob_samples: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split predictive uncertainty into aleatoric and epistemic parts.

    Parameters
    ----------
    prob_samples : Tensor (T, N, C)
        ``T`` softmax outputs (dropout passes or ensemble members) for ``N`` inputs.

    Returns
    -------
    dict
        ``"mean_probs"`` (N, C): the mean of the ``T`` distributions;
        ``"prediction"`` (N,): its arg-max (the slides' "final prediction is maximum of the mean
        of the outputs");
        ``"predictive"`` (N,): :math:`H(\\bar p)`;
        ``"aleatoric"`` (N,): :math:`\\frac{1}{T}\\sum_t H(p_t)`;
        ``"epistemic"`` (N,): predictive minus aleatoric, the mutual information between the
        prediction and the weights (:math:`\\ge 0` by Jensen's inequality; rounding negatives
        are clamped to 0). All values in nats.

    Taught in Part 3, section "Uncertainty quantification".
    """
    if not isinstance(prob_samples, torch.Tensor):
        raise TypeError(f"prob_samples must be a torch.Tensor (T, N, C), got {type(prob_samples).__name__}.")
    if prob_samples.dim() != 3:
        hint = (" Add the pass dimension with probs.unsqueeze(0) for a single pass."
                if prob_samples.dim() == 2 else "")
        raise ValueError("prob_samples must have shape (T, N, C): T passes or members, N inputs, C "
                         f"classes; got shape {tuple(prob_samples.shape)}.{hint}")
    if prob_samples.shape[0] < 1 or prob_samples.shape[1] < 1:
        raise ValueError(f"prob_samples needs T >= 1 passes and N >= 1 inputs, got shape "
                         f"{tuple(prob_samples.shape)}.")
    check_probabilities(prob_samples, "prob_samples")
    p = prob_samples.detach()
    mean_probs = p.mean(0)
    predictive = entropy(mean_probs)
    aleatoric = entropy(p).mean(0)
    epistemic = (predictive - aleatoric).clamp_min(0.0)
    return {"mean_probs": mean_probs, "prediction": mean_probs.argmax(-1), "predictive": predictive,
            "aleatoric": aleatoric, "epistemic": epistemic}


# ---------------------------------------------------------------------------------------------
# MC dropout and ensembles
# ---------------------------------------------------------------------------------------------
def _dropout_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, _DROPOUT_TYPES)]


def _dropout_before_head(model: nn.Module, drops: list[nn.Module]) -> bool:
    """True when the model's only dropout layer acts on the penultimate features, just before
    ``head`` (models declare it with ``dropout_before_head = True``, e.g. the C3LT CNN).

    Then ``model(x) == model.head(dropout(model.features_without_dropout(x)))`` and MC dropout
    can run the deterministic trunk once and sample only the last step: the same random draws in
    the same order as full passes, so the same numbers, about ``T`` times faster.
    """
    return (getattr(model, "dropout_before_head", False) is True and len(drops) == 1
            and type(drops[0]) is nn.Dropout and isinstance(getattr(model, "head", None), nn.Linear)
            and callable(getattr(model, "features", None)))


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise TypeError(f"seed must be a non-negative integer, got {seed!r}.")
    return seed


@torch.no_grad()
def mc_dropout_probs(model: nn.Module, x: torch.Tensor, *, n_samples: int = 20,
                     dropout_rate: float | None = None, batch_size: int = 512, seed: int = 0,
                     progress: bool = False) -> torch.Tensor:
    """Softmax outputs of ``n_samples`` forward passes with dropout switched on at inference.

    The model is put in eval mode (batch-norm uses its running statistics) except for its
    dropout modules, which are put in train mode so that every pass draws a new mask: the
    passes simulate networks :math:`f_{\\hat W_1}, \\dots, f_{\\hat W_T}` (Gal and Ghahramani,
    2016). Every module's mode, and every dropout rate changed by ``dropout_rate``, is restored
    when the function returns or raises.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier with at least one dropout layer (e.g. ``build_model("c3lt_cnn")``).
    x : Tensor (N, C, H, W)
        Images in ``[0, 1]``.
    n_samples : int, default 20
        Number of stochastic passes ``T``.
    dropout_rate : float in [0, 1), optional
        Temporarily override the rate ``p`` of every dropout module (the slides: "different
        models may require different dropout percentages at inference"); ``None`` keeps the
        training rates. ``0`` makes all passes identical.
    batch_size : int, default 512
    seed : int, default 0
        Seeds the masks; the global random state is left untouched. The masks (hence the
        result) depend on ``seed`` and ``batch_size``.
    progress : bool, default False
        Show a progress bar over the passes.

    Returns
    -------
    Tensor (n_samples, N, num_classes)
        Softmax probabilities on ``x``'s device.

    Taught in Part 3, section "Uncertainty quantification".
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    check_images(x, "x")
    n_samples = check_positive_int(n_samples, "n_samples")
    batch_size = check_positive_int(batch_size, "batch_size")
    seed = _check_seed(seed)
    if dropout_rate is not None:
        dropout_rate = check_fraction(dropout_rate, "dropout_rate")
        if dropout_rate >= 1.0:
            raise ValueError("dropout_rate must be < 1 (1 would zero every activation); use e.g. 0.1-0.5.")
    drops = _dropout_modules(model)
    if not drops:
        raise ValueError(f"{type(model).__name__} has no dropout layer (nn.Dropout, nn.Dropout2d, ...), "
                         "so every pass would give the same output: MC dropout needs a network trained "
                         "with dropout, e.g. build_model('c3lt_cnn') or build_model('mlp', dropout=0.2).")
    dev = _model_device(model)
    modes = {m: m.training for m in model.modules()}
    rates = {m: m.p for m in drops}
    fork_devices = [dev.index if dev.index is not None else torch.cuda.current_device()] \
        if dev.type == "cuda" else []
    out = []
    try:
        model.eval()
        for m in drops:
            m.train()
            if dropout_rate is not None:
                m.p = dropout_rate
        with torch.random.fork_rng(devices=fork_devices):
            torch.random.default_generator.manual_seed(seed)
            if dev.type == "cuda":
                with torch.cuda.device(dev):
                    torch.cuda.manual_seed(seed)
            batches = list(iterate_minibatches(x, None, batch_size, shuffle=False))
            fast = _dropout_before_head(model, drops)
            if fast:  # the deterministic trunk runs once; only dropout + head run T times
                drops[0].eval()
                with torch.no_grad():
                    feats = [model.features(xb.to(dev)) for xb in batches]
                rate = drops[0].p
            for _ in progress_bar(range(n_samples), total=n_samples, disable=not progress,
                                  desc="MC dropout passes", unit="pass"):
                with torch.no_grad():
                    if fast:
                        parts = [model.head(F.dropout(h, rate, training=True)) for h in feats]
                    else:
                        parts = [model(xb.to(dev)) for xb in batches]
                logits = torch.cat([lg.to(x.device) for lg in parts])
                out.append(logits.float().softmax(-1))
    finally:
        for m, p in rates.items():
            m.p = p
        for m, training in modes.items():
            m.training = training
    return torch.stack(out)


def mc_dropout(model: nn.Module, x: torch.Tensor, *, n_samples: int = 20,
               dropout_rate: float | None = None, batch_size: int = 512, seed: int = 0,
               progress: bool = False) -> dict[str, torch.Tensor]:
    """MC-dropout uncertainty: :func:`decompose_uncertainty` of :func:`mc_dropout_probs`.

    Returns the dict of :func:`decompose_uncertainty` (``mean_probs``, ``prediction``,
    ``predictive``, ``aleatoric``, ``epistemic``); the arguments are those of
    :func:`mc_dropout_probs`.

    Taught in Part 3, section "Uncertainty quantification".
    """
    return decompose_uncertainty(mc_dropout_probs(model, x, n_samples=n_samples,
                                                  dropout_rate=dropout_rate, batch_size=batch_size,
                                                  seed=seed, progress=progress))


def ensemble_probs(models: Sequence[nn.Module], x: torch.Tensor, *,
                   batch_size: int = 1024) -> torch.Tensor:
    """Softmax outputs of every member of an ensemble (Lakshminarayanan et al., 2017).

    Each member is evaluated in eval mode (its own mode is restored afterwards) on its own
    device.

    Parameters
    ----------
    models : sequence of torch.nn.Module
        The ``M`` members, all with the same number of classes.
    x : Tensor (N, C, H, W)
        Images in ``[0, 1]``.
    batch_size : int, default 1024

    Returns
    -------
    Tensor (M, N, num_classes)
        On ``x``'s device.

    Taught in Part 3, section "Uncertainty quantification".
    """
    if isinstance(models, nn.Module) or not isinstance(models, (list, tuple)):
        raise TypeError("models must be a list or tuple of trained networks (the ensemble members), got "
                        f"{type(models).__name__}; wrap a single model as [model].")
    if not models:
        raise ValueError("models is empty; pass at least one trained network.")
    for i, m in enumerate(models):
        if not isinstance(m, nn.Module):
            raise TypeError(f"models[{i}] must be a torch.nn.Module, got {type(m).__name__}.")
    check_images(x, "x")
    batch_size = check_positive_int(batch_size, "batch_size")
    out = []
    for i, m in enumerate(models):
        logits = predict_logits(m, x, batch_size=batch_size)
        if logits.dim() != 2:
            raise ValueError(f"models[{i}] returned shape {tuple(logits.shape)}; members must return "
                             "logits shaped (N, num_classes).")
        if out and logits.shape[1] != out[0].shape[1]:
            raise ValueError(f"models[{i}] has {logits.shape[1]} classes but models[0] has "
                             f"{out[0].shape[1]}; all members must predict the same classes.")
        out.append(logits.float().softmax(-1))
    return torch.stack(out)


def ensemble_uncertainty(models: Sequence[nn.Module], x: torch.Tensor, *,
                         batch_size: int = 1024) -> dict[str, torch.Tensor]:
    """Ensemble uncertainty: :func:`decompose_uncertainty` of :func:`ensemble_probs`.

    Taught in Part 3, section "Uncertainty quantification".
    """
    return decompose_uncertainty(ensemble_probs(models, x, batch_size=batch_size))


def confidence_gap(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean confidence minus accuracy: positive means over-confident.

    A positive gap means the model's largest probability is, on average, higher than its
    accuracy: it *under-estimates* its uncertainty; a negative gap means it over-estimates it.
    Measures the slides' claims "for a well-trained model, dropout underestimates uncertainty;
    for a high-error model, dropout overestimates uncertainty" (pass the MC-dropout
    ``mean_probs``).

    Parameters
    ----------
    probs : Tensor (N, C)
        Probabilities (e.g. ``mc_dropout(...)["mean_probs"]``).
    labels : Tensor (N,)
        True classes.

    Returns
    -------
    float
        In ``[-1, 1]``.

    Taught in Part 3, section "Uncertainty quantification".
    """
    check_probabilities(probs, "probs")
    if probs.dim() != 2 or probs.shape[0] == 0:
        raise ValueError(f"probs must have shape (N, num_classes) with N >= 1, got {tuple(probs.shape)}.")
    labels = check_labels(labels, n=probs.shape[0], num_classes=probs.shape[1])
    conf, pred = probs.detach().max(-1)
    acc = (pred == labels.to(pred.device)).double().mean()
    return float(conf.double().mean() - acc)


# ---------------------------------------------------------------------------------------------
# Single-pass: Mahalanobis distance to the class means
# ---------------------------------------------------------------------------------------------
def _check_features(f, name: str = "features") -> torch.Tensor:
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

    Taught in Part 3, section "Single-pass uncertainty".
    """

    def __init__(self, shrinkage: float = 1e-6):
        try:
            s = float(shrinkage)
        except (TypeError, ValueError):
            raise TypeError(f"shrinkage must be a non-negative number, got {shrinkage!r}.") from None
        if not math.isfinite(s) or s < 0:
            raise ValueError(f"shrinkage must be a finite number >= 0, got {shrinkage!r}.")
        self.shrinkage = s
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

        Taught in Part 3, section "Single-pass uncertainty".
        """
        f = _check_features(features).detach().double()
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
        f = _check_features(features)
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

        Taught in Part 3, section "Single-pass uncertainty".
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
        """Uncertainty = distance to the closest class mean, ``(N,)``; higher = more uncertain.

        Taught in Part 3, section "Single-pass uncertainty".
        """
        return self.distances(features).min(1).values

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Nearest class mean in Mahalanobis distance, ``(N,)`` class indices.

        Taught in Part 3, section "Single-pass uncertainty".
        """
        return self.distances(features).argmin(1)


# ---------------------------------------------------------------------------------------------
# Baseline confidence scores
# ---------------------------------------------------------------------------------------------
def _check_logits(logits, name: str = "logits") -> torch.Tensor:
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


def baseline_scores(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Single-pass uncertainty scores from the logits, all oriented HIGHER = MORE UNCERTAIN.

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
        more trust, as :func:`trust_curves` expects) negate them.

    Taught in Part 3, section "GradTrust".
    """
    z = _check_logits(logits).detach()
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


# ---------------------------------------------------------------------------------------------
# GradTrust
# ---------------------------------------------------------------------------------------------
def _check_k(k, num_classes: int) -> int | None:
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be None or an integer in [1, {num_classes - 1}], got {k!r}.")
    if not 1 <= k <= num_classes - 1:
        raise ValueError(f"k={k} counterfactual classes is out of range: with {num_classes} classes k must "
                         f"lie in [1, {num_classes - 1}] (the classes after the prediction), or be None "
                         "for the mean over all classes.")
    return k


def _trust_ratio(v: torch.Tensor, logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """max_i v_i / mean_{i in K} v_i, with K all classes or the k logits after the top one."""
    num = v.max(-1).values
    if k is None:
        den = v.mean(-1)
    else:
        order = torch.sort(logits, dim=-1, descending=True, stable=True).indices
        den = v.gather(-1, order[:, 1:k + 1]).mean(-1)
    ratio = num / torch.where(den > 0, den, torch.ones_like(den))
    ratio = torch.where(den > 0, ratio, torch.where(num > 0, torch.full_like(num, math.inf),
                                                    torch.ones_like(num)))
    return ratio


def _gradtrust_head_gradients(head: nn.Linear, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample gradients (B, C, D) of MSE(head(h), 1/C) w.r.t. head.weight, and the logits."""
    weight = head.weight.detach().double()
    bias = None if head.bias is None else head.bias.detach().double()
    c = weight.shape[0]

    def loss_one(w: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        params = {"weight": w} if bias is None else {"weight": w, "bias": bias}
        z = functional_call(head, params, (hi.unsqueeze(0),))
        return F.mse_loss(z, torch.full_like(z, 1.0 / c))

    h = h.double()
    g = vmap(grad(loss_one), in_dims=(None, 0))(weight, h)
    z = F.linear(h, weight, bias)
    return g, z


def gradtrust(model: nn.Module, x: torch.Tensor, *, k: int | None = None,
              batch_size: int = 1024) -> torch.Tensor:
    """GradTrust: counterfactual-gradient trust of each prediction; higher = more trust.

    For each image, the logits :math:`z = W h + b` (``h`` = ``model.features(x)``, ``W`` =
    ``model.head.weight``, ``C x D``) are compared with the uniform vector :math:`\\tfrac{1}{C}`
    by a mean squared error, and the per-sample gradient :math:`G = \\nabla_W` of that loss is
    computed with :mod:`torch.func` (``vmap`` of ``grad`` through ``functional_call`` of the head,
    in float64). Row ``i`` of ``G`` is the change of the class-``i`` weights needed to move the
    network towards "every class equally"; its spread is :math:`v_i = \\mathrm{Var}_j(G_{ij}^2)`
    (population variance over the ``D`` features). The score is

    .. math::  \\mathrm{GradTrust} = \\frac{\\max_i v_i}{\\mathrm{mean}_{i \\in K}\\, v_i}

    with ``K`` all ``C`` classes (``k=None``, as in the authors' code; the score then lies in
    ``[1, C]``) or the ``k`` counterfactual classes with the largest logits after the predicted
    class (the slides' "top-k counterfactual classes are top-k predictions"; ties broken by
    class index).

    **It depends on the logits alone.** Since :math:`\\partial L / \\partial z_i =
    \\tfrac{2}{C}(z_i - \\tfrac{1}{C})`, row ``i`` is :math:`G_i = \\tfrac{2}{C}(z_i -
    \\tfrac{1}{C})\\, h`, so :math:`v_i = (\\tfrac{2}{C})^4 (z_i - \\tfrac{1}{C})^4
    \\mathrm{Var}_j(h_j^2)`: the feature term is the same for every class and cancels in the
    ratio, which is :func:`gradtrust_from_logits`. The gradients are computed anyway, as the
    method prescribes, and the closed form serves as a cheap self-check (tested). Note also
    that the numerator :math:`\\max_i v_i` belongs to the class whose logit is *farthest* from
    ``1/C``; it is the predicted class (the slides' "variance of gradients of predicted class")
    unless some logit lies further below ``1/C`` than the top logit lies above it.

    When the denominator is 0 (every row of ``G`` is zero: logits exactly ``1/C``, or all
    features equal in magnitude) the score is 1.0; with ``k`` set, a zero denominator and a
    non-zero numerator give ``+inf``.

    Parameters
    ----------
    model : BookModel
        A classifier in eval mode with ``features(x)`` and a linear ``head``.
    x : Tensor (N, C, H, W)
        Images in ``[0, 1]``.
    k : int in [1, num_classes - 1], optional
        Number of counterfactual classes in the denominator; ``None`` = all classes.
    batch_size : int, default 1024
        Images per vectorised backward pass (memory: ``batch_size * C * D`` float64 values).

    Returns
    -------
    Tensor (N,)
        float32 on ``x``'s device.

    Taught in Part 3, section "GradTrust".
    """
    _check_head_model(model)
    check_images(x, "x")
    batch_size = check_positive_int(batch_size, "batch_size")
    k = _check_k(k, model.head.out_features)
    dev = model.head.weight.device
    out = []
    for xb in iterate_minibatches(x, None, batch_size, shuffle=False):
        with torch.no_grad():
            h = model.features(xb.to(dev))
        g, z = _gradtrust_head_gradients(model.head, h.detach())
        v = g.pow(2).var(dim=2, unbiased=False)
        out.append(_trust_ratio(v, z, k).float().to(x.device))
    return torch.cat(out)


def gradtrust_from_logits(logits: torch.Tensor, features: torch.Tensor | None = None, *,
                          k: int | None = None) -> torch.Tensor:
    """GradTrust in closed form from the logits (see :func:`gradtrust` for the derivation).

    With :math:`d_i = |z_i - \\tfrac{1}{C}|`, GradTrust is
    :math:`\\max_i d_i^4 / \\mathrm{mean}_{i \\in K} d_i^4`, computed after dividing ``d`` by its
    maximum so that no fourth power under- or overflows.

    Parameters
    ----------
    logits : Tensor (N, C)
    features : Tensor (N, D), optional
        The penultimate features the logits came from. Only used to spot images whose gradient
        rows are all zero because :math:`\\mathrm{Var}_j(h_j^2) = 0` (e.g. all features zero),
        for which :func:`gradtrust` returns 1.0; without them such images get the logit-only
        value.
    k : int in [1, C - 1], optional
        As in :func:`gradtrust`.

    Returns
    -------
    Tensor (N,)
        Same dtype and device as ``logits``.

    Taught in Part 3, section "GradTrust".
    """
    z = _check_logits(logits).detach()
    n, c = z.shape
    k = _check_k(k, c)
    d = (z.double() - 1.0 / c).abs()
    scale = d.max(-1, keepdim=True).values
    w = (d / torch.where(scale > 0, scale, torch.ones_like(scale))).pow(4)
    score = _trust_ratio(w, z, k)
    if features is not None:
        f = _check_features(features).detach()
        if f.shape[0] != n:
            raise ValueError(f"features has {f.shape[0]} rows but logits has {n}; pass the features "
                             "of the same images.")
        flat = f.double().pow(2).var(dim=1, unbiased=False).to(score.device) == 0
        score = torch.where(flat, torch.ones_like(score), score)
    return score.to(z.dtype)


# ---------------------------------------------------------------------------------------------
# Trust curves: accuracy and F1 above each percentile of a trust score
# ---------------------------------------------------------------------------------------------
def _as_class_array(v, name: str) -> np.ndarray:
    v = _as_numpy_1d(v, name)
    if not np.issubdtype(v.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class indices, got dtype {v.dtype}; for logits use "
                        "logits.argmax(1).")
    if v.min() < 0:
        raise ValueError(f"{name} must be class indices >= 0, got minimum {v.min()}.")
    return v.astype(np.int64)


def trust_curves(scores, predictions, labels, *, n_points: int = 100) -> dict:
    """Accuracy and macro F1 of the images above each percentile of a trust score.

    The slides' protocol: sort the images by trust (higher = more trust); for every
    percentile ``q`` in ``0, 1/n_points, ..., (n_points-1)/n_points`` keep the images whose
    score is at least the ``q``-quantile of the scores (NumPy's ``method="lower"``, so tied
    scores are kept or dropped together) and measure the accuracy and the macro F1 of their
    predictions. A good trust score keeps the correct predictions longest, so its curves rise;
    a constant score gives flat curves at the overall accuracy and F1.

    F1 is scikit-learn's ``f1_score(labels, predictions, average="macro", labels=classes,
    zero_division=0)`` with ``classes`` = the classes present in the *whole* ``labels`` (so every
    percentile averages over the same classes; a class that has no kept image scores 0), computed
    here from per-class counts (tested against scikit-learn).

    Parameters
    ----------
    scores : Tensor or array (N,)
        Trust scores, higher = more trust (negate an uncertainty score). ``+inf`` is allowed.
    predictions, labels : Tensor or array (N,)
        Predicted and true class indices.
    n_points : int >= 2, default 100

    Returns
    -------
    dict
        ``"percentiles"``, ``"accuracy"``, ``"f1"`` (NumPy arrays of length ``n_points``) and
        ``"auac"``, ``"aufc"``: the trapezoid areas under accuracy and F1 against the percentile,
        divided by the percentile range ``(n_points-1)/n_points`` so that they lie in ``[0, 1]``.

    Taught in Part 3, section "GradTrust".
    """
    s = _as_numpy_1d(scores, "scores")
    if not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)) \
            or s.dtype == np.bool_:
        raise TypeError(f"scores must be numbers, got dtype {s.dtype}.")
    s = s.astype(np.float64)
    if np.isnan(s).any():
        raise ValueError("scores contain NaN; remove or replace those images before building trust curves.")
    pred = _as_class_array(predictions, "predictions")
    lab = _as_class_array(labels, "labels")
    check_same_length("scores", s, "predictions", pred)
    check_same_length("scores", s, "labels", lab)
    n_points = check_positive_int(n_points, "n_points", minimum=2)
    percentiles = np.arange(n_points) / n_points
    thresholds = np.quantile(s, percentiles, method="lower")
    classes = np.unique(lab)
    size = int(max(pred.max(), lab.max())) + 1
    correct = pred == lab
    acc = np.empty(n_points)
    f1 = np.empty(n_points)
    for i, t in enumerate(thresholds):
        keep = s >= t
        acc[i] = correct[keep].mean()
        tp = np.bincount(lab[keep & correct], minlength=size)[classes]
        n_true = np.bincount(lab[keep], minlength=size)[classes]
        n_pred = np.bincount(pred[keep], minlength=size)[classes]
        den = n_true + n_pred  # = 2 tp + fp + fn
        f1[i] = np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0).mean()
    span = percentiles[-1] - percentiles[0]
    return {"percentiles": percentiles, "accuracy": acc, "f1": f1,
            "auac": float(np.trapezoid(acc, percentiles) / span),
            "aufc": float(np.trapezoid(f1, percentiles) / span)}


# ---------------------------------------------------------------------------------------------
# 1-D regression toy: aleatoric vs epistemic uncertainty
# ---------------------------------------------------------------------------------------------
def toy_noise_std(x: torch.Tensor) -> torch.Tensor:
    """Standard deviation of the toy data's noise: :math:`\\sigma(x) = 0.05 + 0.15\\,|x|`.

    Taught in Part 3, section "What is uncertainty?".
    """
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        raise TypeError(f"x must be a floating-point torch.Tensor, got {type(x).__name__}.")
    return 0.05 + 0.15 * x.abs()


def toy_regression_data(n: int = 400, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A 1-D regression set with a gap and heteroscedastic noise (the slides' toy example).

    Inputs are drawn uniformly from two clusters, ``[-4, -1]`` and ``[1, 4]`` (half each; no data
    in the gap between them or beyond ``|x| = 4``), and targets are

    .. math::  y = \\sin(x) + \\sigma(x)\\,\\varepsilon, \\qquad \\sigma(x) = 0.05 + 0.15\\,|x|,
               \\quad \\varepsilon \\sim \\mathcal{N}(0, 1)

    (:func:`toy_noise_std`): the noise, hence the aleatoric uncertainty, grows with ``|x|``,
    while the epistemic uncertainty should grow in the gap and outside ``[-4, 4]``.

    Parameters
    ----------
    n : int >= 2, default 400
    seed : int, default 0
        Seeds a private generator (the global random state is untouched).

    Returns
    -------
    x, y : Tensor (n, 1), float32
        Sorted by ``x``.

    Taught in Part 3, section "What is uncertainty?".
    """
    n = check_positive_int(n, "n", minimum=2)
    seed = _check_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    n_left = n // 2
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    x = 1.0 + 3.0 * u
    x[:n_left] = -x[:n_left]
    x = x.sort().values
    y = torch.sin(x) + toy_noise_std(x) * torch.randn(n, generator=gen, dtype=torch.float64)
    return x.float().unsqueeze(1), y.float().unsqueeze(1)


class GaussianMLP(nn.Module):
    """A small MLP for 1-D regression that predicts a Gaussian: ``(N, 1) -> (N, 2)``.

    ``Linear(1, hidden) -> ReLU -> Linear(hidden, hidden) -> ReLU -> Linear(hidden, 2)``; column 0
    is the mean, column 1 the log-variance (clamped to ``[-10, 10]``).

    Taught in Part 3, section "What is uncertainty?".
    """

    def __init__(self, hidden: int = 64):
        super().__init__()
        hidden = check_positive_int(hidden, "hidden")
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return torch.stack([out[:, 0], out[:, 1].clamp(-10.0, 10.0)], dim=1)


def _check_regression_inputs(x, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        raise TypeError(f"{name} must be a floating-point torch.Tensor (N, 1), got {type(x).__name__}.")
    if x.dim() == 1:
        x = x.unsqueeze(1)
    if x.dim() != 2 or x.shape[1] != 1 or x.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, 1) or (N,) with N >= 1, got {tuple(x.shape)}.")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return x


def fit_regression_ensemble(x: torch.Tensor, y: torch.Tensor, *, members: int = 5, hidden: int = 64,
                            epochs: int = 300, lr: float = 1e-2, seed: int = 0,
                            progress: bool = False) -> list[nn.Module]:
    """Train a deep ensemble of :class:`GaussianMLP` regressors (Lakshminarayanan et al., 2017).

    Each member is initialised with seed ``seed + m`` and trained full-batch with Adam on the
    Gaussian negative log-likelihood
    :math:`\\tfrac{1}{2}\\big(\\log \\sigma^2(x) + (y - \\mu(x))^2 / \\sigma^2(x)\\big)`, so it learns
    both a mean and the noise variance (the aleatoric part); the members disagree where there
    was no data (the epistemic part). A few seconds on a CPU with the defaults.

    Parameters
    ----------
    x, y : Tensor (N, 1) or (N,)
        Training inputs and targets (e.g. :func:`toy_regression_data`).
    members : int, default 5
    hidden : int, default 64
        Width of the two hidden layers.
    epochs : int, default 300
        Full-batch Adam steps per member.
    lr : float, default 1e-2
    seed : int, default 0
    progress : bool, default False
        Show a progress bar over the epochs.

    Returns
    -------
    list of GaussianMLP
        In eval mode, on ``x``'s device.

    Taught in Part 3, section "What is uncertainty?".
    """
    x = _check_regression_inputs(x, "x")
    y = _check_regression_inputs(y, "y")
    check_same_length("x", x, "y", y)
    members = check_positive_int(members, "members")
    epochs = check_positive_int(epochs, "epochs")
    seed = _check_seed(seed)
    try:
        lr = float(lr)
    except (TypeError, ValueError):
        raise TypeError(f"lr must be a positive number, got {lr!r}.") from None
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}.")
    x, y = x.detach(), y.detach().to(x.device)
    models = []
    for m in range(members):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + m)
            models.append(GaussianMLP(hidden).to(x.device))
    # The members are trained side by side (torch.func: stacked parameters, vmap over members).
    # Adam acts element-wise and the summed loss separates, so this is exactly M independent runs.
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")

    def forward_one(p: dict, b: dict, xx: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (xx,))

    opt = torch.optim.Adam(list(params.values()), lr=lr)
    # The tensors are tiny: extra CPU threads only add synchronisation (and stall badly when the
    # cores are shared), so train on one thread and restore the setting afterwards.
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in progress_bar(range(epochs), total=epochs, disable=not progress,
                              desc=f"ensemble of {members}", unit="epoch"):
            out = vmap(forward_one, in_dims=(0, 0, None))(params, buffers, x)  # (M, N, 2)
            mu, log_var = out[..., :1], out[..., 1:]
            nll = 0.5 * (log_var + (y - mu).pow(2) * torch.exp(-log_var))  # Gaussian NLL, no constant
            loss = nll.mean(dim=(1, 2)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(n_threads)
    with torch.no_grad():
        for m, net in enumerate(models):
            net.load_state_dict({name: t[m].detach().clone() for name, t in params.items()})
            net.eval()
    return models


@torch.no_grad()
def regression_uncertainty(members: Sequence[nn.Module], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Aleatoric and epistemic uncertainty of a regression ensemble.

    With member means :math:`\\mu_m(x)` and variances :math:`\\sigma_m^2(x)`, the ensemble is the
    mixture whose variance splits into

    .. math::  \\underbrace{\\frac{1}{M}\\sum_m \\sigma_m^2(x)}_{aleatoric}
               + \\underbrace{\\frac{1}{M}\\sum_m \\mu_m(x)^2 - \\bar\\mu(x)^2}_{epistemic} .

    Parameters
    ----------
    members : sequence of GaussianMLP
        From :func:`fit_regression_ensemble` (any module mapping (N, 1) to (mean, log-variance)).
    x : Tensor (N, 1) or (N,)

    Returns
    -------
    dict
        ``"mean"``, ``"aleatoric"``, ``"epistemic"`` (population variance of the member means)
        and ``"total"``, each ``(N,)``.

    Taught in Part 3, section "What is uncertainty?".
    """
    if isinstance(members, nn.Module) or not isinstance(members, (list, tuple)) or not members:
        raise TypeError("members must be a non-empty list of trained regressors, e.g. the output of "
                        "fit_regression_ensemble(...).")
    x = _check_regression_inputs(x, "x")
    means, variances = [], []
    for i, net in enumerate(members):
        if not isinstance(net, nn.Module):
            raise TypeError(f"members[{i}] must be a torch.nn.Module, got {type(net).__name__}.")
        was_training = net.training
        net.eval()
        try:
            out = net(x.to(_model_device(net))).to(x.device)
        finally:
            net.train(was_training)
        if out.dim() != 2 or out.shape[1] != 2:
            raise ValueError(f"members[{i}] returned shape {tuple(out.shape)}; expected (N, 2) = (mean, "
                             "log-variance), as GaussianMLP does.")
        means.append(out[:, 0])
        variances.append(out[:, 1].exp())
    mu = torch.stack(means)
    aleatoric = torch.stack(variances).mean(0)
    epistemic = mu.var(0, unbiased=False)
    return {"mean": mu.mean(0), "aleatoric": aleatoric, "epistemic": epistemic,
            "total": aleatoric + epistemic}
