"""Gradient features that tell the training distribution from challenging inputs.

"Probing the purview of neural networks via gradient analysis" (Lee, Lehman, Prabhushankar and
AlRegib, IEEE Access 2023): a trained network ``f`` has to move its parameters further to
accommodate an input it was not trained for (adversarial, noisy, corrupted or
out-of-distribution) than one from its training distribution, and the size of that move,
layer by layer, is a feature vector a simple detector can read. The recipe of the slides:

Step 1 -- 3: gradient features (:func:`purview_features`)
    Without a label at inference, compare the logits ``z`` of an image with the *confounding
    label*, a vector of all ones ("every class at once"), by binary cross-entropy with logits,
    and backpropagate. For every parameter tensor :math:`\\theta_l` (in
    ``model.named_parameters()`` order) keep the squared :math:`L_2` norm of that image's
    gradient,

    .. math::  f_l(x) = \\big\\| \\nabla_{\\theta_l} \\mathcal{L}(x) \\big\\|_2^2,
               \\qquad \\mathcal{L}(x) = \\sum_{i=1}^{C} \\mathrm{BCE}(z_i, 1)
               = -\\sum_{i=1}^{C} \\log \\sigma(z_i),

    one number per parameter tensor (weights and biases separately), computed for images of
    the training distribution and of a challenge set.
Step 4 -- 5: the detector ``H`` (:class:`LogisticDetector`, :func:`detection_experiment`)
    Fit a logistic regression on the (log-)features of both sets (label 0 = training
    distribution, 1 = challenge) and use its probability as the "reliability" score of a new
    input: ``x -> f -> gradient features -> H``.

**How the features are computed.** Per-sample gradients come from :mod:`torch.func` (``vmap``
of ``grad`` through ``functional_call``): one vectorised pass per batch, no loop over images.
For the two layer types that carry most parameters the squared norm has an exact closed form
that avoids materialising a gradient per image (``method="auto"``, the default): with ``a`` the
layer's input and :math:`\\delta = \\partial \\mathcal{L} / \\partial (\\text{layer output})`
of one image (both from a single batched forward and backward pass),

.. math::  \\text{Linear:}\\ \\ \\|\\nabla_W\\|^2 = \\|\\delta \\, a^\\top\\|^2
           = \\|\\delta\\|^2 \\|a\\|^2, \\quad \\|\\nabla_b\\|^2 = \\|\\delta\\|^2; \\qquad
           \\text{Conv2d:}\\ \\ \\nabla_W = \\sum_p \\delta_p \\, u_p^\\top, \\quad
           \\nabla_b = \\sum_p \\delta_p,

where ``u_p`` is the input patch at output position ``p``, so that
:math:`\\|\\nabla_W\\|^2 = \\sum_{p,q} (\\delta_p \\cdot \\delta_q)(u_p \\cdot u_q)`; the patch
products come from the Gram matrix of the input pixels, much cheaper than forming
:math:`\\nabla_W` for deep layers with small feature maps. Parameters of other layers
(batch-norm, ...), and layers called more than once or on a reshaped batch, use ``vmap``;
``method="vmap"`` uses it for everything. Both equal the plain loop of one backward pass per
image (:func:`purview_features_loop`; tested).

Taught in Part 3, section "Step 3: gradient features of trained and challenging data".
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from ._checks import (PIXELS, check_bool, check_choice, check_eval_model, check_fraction, check_model_input,
                      check_positive_int, check_seed, check_value_range, model_device)
from .config import progress_bar
from .introspection import confounding_loss
from .metrics import declares_direction, detection_scores

__all__ = [
    "METHODS",
    "purview_features",
    "purview_feature_names",
    "purview_features_loop",
    "LogisticDetector",
    "detection_experiment",
    "H_ON_BASELINES",
    "H_ON_GRADIENTS",
    "DETECTION_METRICS",
    "detection_row",
]

#: How :func:`purview_features` computes the per-sample gradient norms.
METHODS = ("auto", "vmap")


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------
def _check_eval_model(model: nn.Module) -> None:
    check_eval_model(model, "dropout and batch-norm batch statistics would make the gradient features random and mix the images of a batch")


def _resolve_params(model: nn.Module, params) -> list[str]:
    names = [n for n, _ in model.named_parameters()]
    if not names:
        raise ValueError(f"{type(model).__name__} has no parameters, so there are no gradient features.")
    if isinstance(params, str) and params == "all":
        return names
    if isinstance(params, str):
        params = [params]
    if not isinstance(params, Sequence) or isinstance(params, (bytes, bytearray)):
        raise TypeError(f"params must be 'all', a parameter name or a list of names, got {params!r}.")
    params = list(params)
    if not params:
        raise ValueError("params is empty; name at least one parameter, or pass 'all'.")
    bad = [p for p in params if not isinstance(p, str)]
    if bad:
        raise TypeError(f"params must hold parameter names (str), got {bad!r}.")
    unknown = [p for p in params if p not in names]
    if unknown:
        raise ValueError(f"unknown parameter name(s) {unknown}; valid names (model.named_parameters()) "
                         f"are: {', '.join(names)}.")
    if len(set(params)) != len(params):
        raise ValueError(f"params lists a name more than once: {params}; name each parameter once.")
    return params


_model_device = model_device


# ---------------------------------------------------------------------------------------------
# Step 1: gradient features
# ---------------------------------------------------------------------------------------------
def purview_feature_names(model: nn.Module, params: str | Sequence[str] = "all") -> list[str]:
    """Names of the columns of :func:`purview_features`: one parameter tensor each.

    ``params="all"`` gives ``model.named_parameters()`` order; a list of names is kept in the
    order given.

    Taught in Part 3, section "Step 3: gradient features of trained and challenging data".
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    return _resolve_params(model, params)


def _vmap_norms(model: nn.Module, xb: torch.Tensor, names: list[str]) -> torch.Tensor:
    """(B, len(names)) squared gradient norms via torch.func: vmap of grad through functional_call."""
    all_params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    chosen = {n: all_params[n] for n in names}
    fixed = {n: p for n, p in all_params.items() if n not in chosen}

    def loss_one(p: dict, xi: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, ({**fixed, **p}, buffers), (xi.unsqueeze(0),))
        return confounding_loss(logits, "bce")

    def norms_one(p: dict, xi: torch.Tensor) -> torch.Tensor:
        g = grad(loss_one)(p, xi)
        return torch.stack([g[n].pow(2).sum() for n in names])

    return vmap(norms_one, in_dims=(None, 0))(chosen, xb)


def _closed_form_module(m: nn.Module) -> bool:
    """Layers whose per-sample squared gradient norms have an exact closed form here."""
    if type(m) is nn.Linear:
        return True
    if type(m) is nn.Conv2d:
        return (m.padding_mode == "zeros" and not isinstance(m.padding, str)) or m.padding == "valid"
    return False


def _linear_norms(m: nn.Linear, a: torch.Tensor, d: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample ||grad W||^2 and ||grad b||^2 of a Linear layer from its input and output gradient."""
    if a.dim() == 2:  # (B, in), (B, out): grad W = d a^T, rank one
        return {"weight": d.pow(2).sum(1) * a.pow(2).sum(1), "bias": d.pow(2).sum(1)}
    a2, d2 = a.flatten(1, -2), d.flatten(1, -2)  # (B, T, in), (B, T, out): sum over T
    gw = torch.einsum("bto,bti->boi", d2, a2)
    return {"weight": gw.pow(2).sum((1, 2)), "bias": d2.sum(1).pow(2).sum(1)}


def _conv_norms(m: nn.Conv2d, a: torch.Tensor, d: torch.Tensor, need_weight: bool = True,
                route: str | None = None) -> dict[str, torch.Tensor]:
    """Per-sample ||grad W||^2 and ||grad b||^2 of a Conv2d layer: sum over positions of delta u^T.

    Two exact routes, the cheaper one for the layer's shape is taken:

    * direct: form each image's ``grad W = D U^T`` (``D``: ``Cout x P`` output gradients,
      ``U``: ``Cin k k x P`` input patches) and sum its squares; cost ``Cout Cin k^2 P``.
    * Gram: ``||D U^T||^2 = <D^T D, U^T U>``, where the patch Gram matrix ``U^T U`` is the sum,
      over the ``k^2`` kernel offsets, of shifted blocks of the Gram matrix of the input pixels
      (``S x S`` for ``S`` input positions); cost about ``Cin S^2 + Cout P^2 + k S P``, much
      less for deep layers with small feature maps.

    ``route`` ("direct" or "gram") forces one of them (tests).
    """
    out = {"bias": d.sum((2, 3)).pow(2).sum(1)}
    if not need_weight:
        return out
    ph, pw = (0, 0) if isinstance(m.padding, str) else m.padding
    if ph or pw:
        a = F.pad(a, (pw, pw, ph, ph))
    b, cin = a.shape[:2]
    (kh, kw), (sh, sw), (dh, dw) = m.kernel_size, m.stride, m.dilation
    ho, wo = d.shape[-2:]
    g, cout, p = m.groups, m.out_channels, d.shape[-2] * d.shape[-1]
    hu, wu = (ho - 1) * sh + (kh - 1) * dh + 1, (wo - 1) * sw + (kw - 1) * dw + 1  # pixels used
    n_pix = hu * wu
    direct_cost = cout * (cin // g) * kh * kw * p
    gram_cost = cin * n_pix * n_pix + cout * p * p + g * (kh * ho * ho * wu * wu + kw * p * p)
    dd = d.reshape(b, g, cout // g, p)                                # (B, G, Cout/G, P)
    if route is None:
        route = ("gram" if gram_cost < direct_cost and g * n_pix * n_pix <= 4 * cin * kh * kw * p
                 else "direct")
    if route == "gram":
        pix = a[:, :, :hu, :wu].reshape(b, g, cin // g, n_pix)
        gram = torch.matmul(pix.transpose(-1, -2), pix).reshape(b, g, hu, wu, hu, wu)
        # patch Gram (B, G, Ho, Wo, Ho, Wo) = sum over kernel offsets (r, c) of shifted blocks of
        # the pixel Gram; the sum is separable: first over r (rows), then over c (columns)
        rows_sum = None
        for r in range(kh):
            rows = slice(r * dh, r * dh + (ho - 1) * sh + 1, sh)
            block = gram[:, :, rows, :, rows, :]
            rows_sum = block.clone() if rows_sum is None else rows_sum.add_(block)
        patch_gram = None
        for c in range(kw):
            cols = slice(c * dw, c * dw + (wo - 1) * sw + 1, sw)
            block = rows_sum[:, :, :, cols, :, cols]
            patch_gram = block.clone() if patch_gram is None else patch_gram.add_(block)
        delta_gram = torch.matmul(dd.transpose(-1, -2), dd)          # (B, G, P, P)
        out["weight"] = (delta_gram.reshape(b, -1) * patch_gram.reshape(b, -1)).sum(1)
        return out
    a = a.contiguous()
    st = a.stride()
    # the input patch of every output position, as a strided view (B, Cin, kh, kw, Ho, Wo):
    # the same numbers as F.unfold, copied once by the reshape below
    patches = a.as_strided((b, cin, kh, kw, ho, wo),
                           (st[0], st[1], dh * st[2], dw * st[3], sh * st[2], sw * st[3]))
    uu = patches.reshape(b, g, cin // g * kh * kw, p)                 # (B, G, Cin/G*k*k, P)
    gw = torch.matmul(dd, uu.transpose(-1, -2))                       # (B, G, Cout/G, Cin/G*k*k)
    out["weight"] = gw.flatten(1).pow(2).sum(1)
    return out


def _closed_form_norms(model: nn.Module, xb: torch.Tensor, names: list[str]
                       ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Squared norms of the chosen Linear/Conv2d parameters from one batched forward + backward.

    Returns the norms found and the names left over (other layers, or layers not called exactly
    once) for :func:`_vmap_norms`.
    """
    owner: dict[str, tuple[str, str]] = {}
    modules = dict(model.named_modules())
    for n in names:
        mod_name, _, attr = n.rpartition(".")
        m = modules.get(mod_name)
        if m is not None and _closed_form_module(m) and attr in ("weight", "bias"):
            owner[n] = (mod_name, attr)
    # a parameter tensor shared with another module cannot be handled one module at a time
    ids: dict[int, int] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        for p in m.parameters(recurse=False):
            ids[id(p)] = ids.get(id(p), 0) + 1
    params = dict(model.named_parameters())
    owner = {n: v for n, v in owner.items() if ids.get(id(params[n]), 0) == 1}
    if not owner:
        return {}, list(names)
    hooked = sorted({mod for mod, _ in owner.values()})
    records: dict[str, list] = {mod: [] for mod in hooked}

    def make_hook(mod_name: str):
        def hook(module, inputs, output):
            a = inputs[0].detach()
            records[mod_name].append((a, a._version, output))
            return output.clone()  # later in-place ops must not change the tensor we differentiate
        return hook

    handles = [modules[mod].register_forward_hook(make_hook(mod)) for mod in hooked]
    try:
        with torch.enable_grad():
            xg = xb.detach().requires_grad_(True)  # puts every layer output in the graph
            loss = confounding_loss(model(xg), "bce")  # sum over images = sum of per-image losses
    finally:
        for h in handles:
            h.remove()
    # closed form only for layers called exactly once, on a batch whose first dimension is the
    # images (no reshaping of the batch), with an input that was not changed in place later
    once = [mod for mod in hooked if len(records[mod]) == 1
            and records[mod][0][0].shape[0] == xb.shape[0]
            and records[mod][0][0]._version == records[mod][0][1]]
    outs = [records[mod][0][2] for mod in once]
    grads = torch.autograd.grad(loss, outs, allow_unused=True) if outs else []
    found: dict[str, torch.Tensor] = {}
    for mod, d in zip(once, grads):
        a, _, out = records[mod][0]
        d = torch.zeros_like(out) if d is None else d.detach()
        m = modules[mod]
        need_weight = any(v == (mod, "weight") for v in owner.values())
        norms = (_linear_norms(m, a, d) if type(m) is nn.Linear
                 else _conv_norms(m, a, d, need_weight=need_weight))
        for n, (mod_name, attr) in owner.items():
            if mod_name == mod:
                found[n] = norms[attr]
    for mod in hooked:  # a layer never called has zero gradient
        if not records[mod]:
            for n, (mod_name, _) in owner.items():
                if mod_name == mod:
                    found[n] = torch.zeros(xb.shape[0], device=xb.device, dtype=xb.dtype)
    return found, [n for n in names if n not in found]


def purview_features(model: nn.Module, x: torch.Tensor, *, batch_size: int = 128,
                     params: str | Sequence[str] = "all", method: str = "auto",
                     progress: bool = False,
                     value_range: tuple[float, float] | None = PIXELS) -> torch.Tensor:
    """Step 1 of the purview recipe: squared gradient norm per parameter tensor, per image.

    For each image, backpropagate the confounding loss
    :math:`\\mathcal{L}(x) = -\\sum_i \\log \\sigma(z_i)` (BCE-with-logits between the logits and
    a vector of all ones, :func:`robust_utils.introspection.confounding_loss`) and keep, for
    every chosen parameter tensor :math:`\\theta_l`, :math:`\\|\\nabla_{\\theta_l}
    \\mathcal{L}(x)\\|_2^2`. Inputs the network was not trained on tend to need larger (and
    differently distributed) updates; the per-layer profile is the feature vector of the
    detector (:class:`LogisticDetector`).

    Parameters
    ----------
    model : nn.Module
        A trained classifier in eval mode returning logits (every submodule in eval mode).
    x : Tensor (N, C, H, W)
        Images in ``[0, 1]``.
    batch_size : int, default 128
        Images per vectorised pass (bounds memory).
    params : "all", str or list of str, default "all"
        Parameter names (:func:`purview_feature_names`); the others are held fixed.
    method : {"auto", "vmap"}, default "auto"
        ``"vmap"``: per-sample gradients with :mod:`torch.func` (``vmap`` of ``grad`` through
        ``functional_call``) for every parameter. ``"auto"``: the exact closed forms of the
        module docstring for ``nn.Linear`` and ``nn.Conv2d`` layers (one batched forward and
        backward pass, no per-image gradient in memory), ``vmap`` for the rest. Same numbers,
        ``"auto"`` is several times faster.
    progress : bool, default False
        Show a progress bar over batches.
    value_range : (low, high) or None, default (0, 1)
        The range ``x`` must lie in (the book's models take ``[0, 1]`` pixels); ``None`` for a
        model that takes other inputs. ``x`` must have the model's dtype.

    Returns
    -------
    Tensor (N, L)
        On ``x``'s device, in the model's dtype; column ``l`` is parameter
        ``purview_feature_names(model, params)[l]``.

    Taught in Part 3, section "Step 3: gradient features of trained and challenging data".
    """
    _check_eval_model(model)
    check_model_input(model, x, value_range=check_value_range(value_range))
    batch_size = check_positive_int(batch_size, "batch_size")
    progress = check_bool(progress, "progress")
    check_choice(method, "method", METHODS)
    names = _resolve_params(model, params)
    dev = _model_device(model, x.device)
    out = []
    n_batches = math.ceil(x.shape[0] / batch_size)
    bar = progress_bar(total=n_batches, disable=not progress, unit="batch", desc="purview features")
    try:
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size].to(dev)
            found, rest = (_closed_form_norms(model, xb, names) if method == "auto" else ({}, names))
            if rest:
                found.update(zip(rest, _vmap_norms(model, xb, rest).unbind(1)))
            out.append(torch.stack([found[n].detach() for n in names], dim=1).to(x.device))
            bar.update(1)
    finally:
        bar.close()
    return torch.cat(out)


def purview_features_loop(model: nn.Module, x: torch.Tensor, *,
                          params: str | Sequence[str] = "all",
                          value_range: tuple[float, float] | None = PIXELS) -> torch.Tensor:
    """The plain reference for :func:`purview_features`: one autograd backward pass per image.

    Slow (a Python loop over images), but obviously right: used by the tests and the
    benchmark to check the vectorised version. Gradients come from ``torch.autograd.grad``
    with respect to the model's own parameters (or detached copies of them when some do not
    require gradients), so the ``requires_grad`` flags and ``.grad`` fields are left alone.
    Returns the same ``(N, L)`` tensor; ``value_range`` as in :func:`purview_features`.

    Taught in Part 3, section "Step 3: gradient features of trained and challenging data".
    """
    _check_eval_model(model)
    check_model_input(model, x, value_range=check_value_range(value_range))
    names = _resolve_params(model, params)
    dev = _model_device(model, x.device)
    named = dict(model.named_parameters())
    direct = all(named[n].requires_grad for n in names)
    all_params = {n: p.detach() for n, p in named.items()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    rows = []
    with torch.enable_grad():
        for i in range(x.shape[0]):
            xi = x[i:i + 1].to(dev)
            if direct:  # the plainest loop: the model's own parameters
                targets = [named[n] for n in names]
                logits = model(xi)
            else:       # some parameter is frozen: differentiate w.r.t. a copy instead
                copies = {n: all_params[n].clone().requires_grad_(True) for n in names}
                targets = [copies[n] for n in names]
                logits = functional_call(model, ({**all_params, **copies}, buffers), (xi,))
            gs = torch.autograd.grad(confounding_loss(logits, "bce"), targets, allow_unused=True)
            rows.append(torch.stack([torch.zeros((), device=dev) if g is None else g.pow(2).sum()
                                     for g in gs]))
    return torch.stack(rows).to(x.device)


# ---------------------------------------------------------------------------------------------
# Steps 4-5: the detector H
# ---------------------------------------------------------------------------------------------
def _as_features(f, name: str, *, allow_1d: bool = False) -> np.ndarray:
    """(N, L) float64 array from a tensor or array; 1-D -> (N, 1) only when allowed."""
    if isinstance(f, torch.Tensor):
        f = f.detach().cpu().numpy()
    try:
        a = np.asarray(f, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a numeric array or tensor of shape (N, L), "
                        f"got {type(f).__name__}.") from None
    if a.ndim == 1 and allow_1d:
        a = a.reshape(-1, 1)
    if a.ndim != 2:
        hint = (" For a single score per image use scores.reshape(-1, 1)." if a.ndim == 1 else "")
        raise ValueError(f"{name} must be 2-D (N images, L features), got shape {a.shape}.{hint}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {a.shape}); pass at least one image and one feature.")
    if not np.isfinite(a).all():
        bad = int((~np.isfinite(a)).any(1).sum())
        raise ValueError(f"{name} contains NaN or infinite values ({bad} of {a.shape[0]} rows); "
                         "remove those rows or recompute the features.")
    return a


@declares_direction("more novel")
class LogisticDetector:
    """The detector ``H`` of the purview recipe: logistic regression on standardised features.

    Steps 4 -- 5 of the slides: fit ``H`` to tell gradient features of the training
    distribution (label 0) from those of a challenge set (label 1), then score new inputs by
    the probability of "challenge". Gradient norms span orders of magnitude, so by default the
    features are log-transformed, ``log(f + 1e-12)``, before standardisation (zero mean, unit
    variance per feature) and scikit-learn's ``LogisticRegression``.

    Parameters
    ----------
    log_features : bool, default True
        Use ``log(f + 1e-12)`` (needs non-negative features). Pass ``False`` for signed scores.
    C : float > 0, default 1.0
        Inverse L2-regularisation strength of the logistic regression.
    max_iter : int, default 1000
        Iterations of the solver (lbfgs).

    Examples
    --------
    >>> det = LogisticDetector().fit(features_train_in, features_train_out)   # doctest: +SKIP
    >>> p_novel = det.score(features_test)                                      # doctest: +SKIP

    Taught in Part 3, section "Steps 4–5: a detector per challenge set".
    """

    eps: float = 1e-12

    def __init__(self, log_features: bool = True, C: float = 1.0, max_iter: int = 1000):
        log_features = check_bool(log_features, "log_features")
        if isinstance(C, bool):
            raise TypeError(f"C must be a positive number, got {C!r}.")
        try:
            c = float(C)
        except (TypeError, ValueError):
            raise TypeError(f"C must be a positive number, got {C!r}.") from None
        if not (math.isfinite(c) and c > 0):
            raise ValueError(f"C must be a finite number > 0 (inverse regularisation strength), got {c}.")
        self.log_features = log_features
        self.C = c
        self.max_iter = check_positive_int(max_iter, "max_iter")
        self.n_features_: int | None = None
        self.pipeline_ = None

    def _transform(self, a: np.ndarray, name: str) -> np.ndarray:
        if self.log_features:
            if (a < 0).any():
                raise ValueError(f"{name} has negative values, so log_features=True cannot take their "
                                 "log; squared gradient norms are >= 0. For signed scores use "
                                 "LogisticDetector(log_features=False).")
            return np.log(a + self.eps)
        return a

    def fit(self, features_in, features_out) -> "LogisticDetector":
        """Fit on features of the training distribution (label 0) and of a challenge set (label 1).

        Both are ``(N, L)`` arrays or tensors with the same ``L``, at least two rows each.
        Returns ``self``.

        Taught in Part 3, section "Steps 4–5: a detector per challenge set".
        """
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        a = _as_features(features_in, "features_in")
        b = _as_features(features_out, "features_out")
        if a.shape[1] != b.shape[1]:
            raise ValueError(f"features_in has {a.shape[1]} features but features_out has {b.shape[1]}: "
                             "compute both with the same model and params.")
        for name, f in (("features_in", a), ("features_out", b)):
            if f.shape[0] < 2:
                raise ValueError(f"{name} has {f.shape[0]} sample(s); the detector needs at least 2 "
                                 "per class (training distribution and challenge).")
        X = np.vstack([self._transform(a, "features_in"), self._transform(b, "features_out")])
        y = np.r_[np.zeros(len(a), dtype=np.int64), np.ones(len(b), dtype=np.int64)]
        pipe = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=self.max_iter))
        pipe.fit(X, y)
        self.pipeline_ = pipe
        self.n_features_ = a.shape[1]
        return self

    def score(self, features) -> np.ndarray:
        """Probability that each input is a challenge (novel) input: higher = more likely novel.

        ``features`` is ``(N, L)`` with the ``L`` of :meth:`fit`; returns a ``(N,)`` float64 array.

        Taught in Part 3, section "Steps 4–5: a detector per challenge set".
        """
        if self.pipeline_ is None:
            raise RuntimeError("the detector is not fitted yet; call detector.fit(features_in, "
                               "features_out) first.")
        a = _as_features(features, "features")
        if a.shape[1] != self.n_features_:
            raise ValueError(f"detector was fitted on {self.n_features_} features but got {a.shape[1]}: "
                             "compute the features with the same model and params.")
        return self.pipeline_.predict_proba(self._transform(a, "features"))[:, 1]

    def __repr__(self) -> str:
        state = f"fitted on {self.n_features_} features" if self.pipeline_ is not None else "not fitted"
        return (f"LogisticDetector(log_features={self.log_features}, C={self.C}, "
                f"max_iter={self.max_iter}; {state})")


def detection_experiment(features_in, features_out, *, train_fraction: float = 0.5, seed: int = 0,
                         log_features: bool = True) -> dict:
    """Steps 4 -- 5: fit the detector on part of both sets, evaluate it on the rest.

    Each set is split at random (seeded) into a training part (``train_fraction``) and a
    held-out part; a :class:`LogisticDetector` is fitted on the training parts and scores the
    held-out parts, which give AUROC, AUPR and FPR at 95% TPR
    (:func:`robust_utils.metrics.detection_scores`, challenge = positive).

    1-D inputs (one score per image, e.g. a softmax-confidence baseline) are treated as a
    single feature, so a baseline gets the same supervised detector: a fair comparison.

    Parameters
    ----------
    features_in, features_out : array or Tensor, (N, L) or (N,)
        Features of the training distribution and of the challenge set (same ``L``).
    train_fraction : float in (0, 1), default 0.5
    seed : int, default 0
    log_features : bool, default True
        Passed to :class:`LogisticDetector`; use ``False`` for signed scores.

    Returns
    -------
    dict
        ``"auroc"``, ``"aupr"``, ``"fpr95"`` (floats), ``"scores_in"``, ``"scores_out"``
        (held-out detector scores, numpy arrays) and ``"detector"`` (the fitted detector).

    Taught in Part 3, section "Steps 4–5: a detector per challenge set".
    """
    a = _as_features(features_in, "features_in", allow_1d=True)
    b = _as_features(features_out, "features_out", allow_1d=True)
    log_features = check_bool(log_features, "log_features")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"features_in has {a.shape[1]} features but features_out has {b.shape[1]}: "
                         "compute both with the same model and params.")
    frac = check_fraction(train_fraction, "train_fraction", inclusive=False)
    rng = np.random.default_rng(check_seed(seed))
    parts = []
    for name, f in (("features_in", a), ("features_out", b)):
        n_train = int(round(frac * f.shape[0]))
        if n_train < 2 or f.shape[0] - n_train < 1:
            raise ValueError(f"{name} has {f.shape[0]} rows: with train_fraction={frac} that leaves "
                             f"{n_train} for training (need >= 2) and {f.shape[0] - n_train} held out "
                             "(need >= 1); pass more samples or change train_fraction.")
        perm = rng.permutation(f.shape[0])
        parts.append((f[perm[:n_train]], f[perm[n_train:]]))
    (a_tr, a_te), (b_tr, b_te) = parts
    det = LogisticDetector(log_features=log_features).fit(a_tr, b_tr)
    s_in, s_out = det.score(a_te), det.score(b_te)
    result = detection_scores(s_in, s_out)
    result.update({"scores_in": s_in, "scores_out": s_out, "detector": det})
    return result


# ---------------------------------------------------------------------------------------------
# One row of the detection table: every method on one challenge set
# ---------------------------------------------------------------------------------------------
#: Names of the two supervised detectors in the rows of :func:`detection_row`.
H_ON_BASELINES = "H on baselines"
H_ON_GRADIENTS = "H on gradients"

#: The metrics :func:`detection_row` keeps for every method.
DETECTION_METRICS = ("auroc", "aupr", "fpr95")


def _score_vector(v, name: str) -> np.ndarray:
    a = _as_features(v, name, allow_1d=True)
    if a.shape[1] != 1:
        raise ValueError(f"{name} must hold one score per image (N,), got shape {a.shape}.")
    return a[:, 0]


def detection_row(scores_clean, scores_novel, gradients_clean, gradients_novel, *,
                  baselines: Sequence[str] = (), seed: int = 0,
                  train_fraction: float = 0.5) -> dict[str, dict[str, float]]:
    """AUROC, AUPR and FPR95 of every detection method on one challenge set.

    The rows of Part 3's detection tables. Three kinds of methods tell the images of the
    training distribution (negatives) from those of one challenge set (positives):

    * every **unsupervised score** of ``scores_clean`` / ``scores_novel`` (softmax, entropy,
      MC-dropout epistemic, Mahalanobis, ...), thresholded as it is
      (:func:`robust_utils.metrics.detection_scores` on all images): each must be oriented
      higher = more novel (or more uncertain), as ``score_direction`` declares for the scores of
      :mod:`robust_utils.ood` and :mod:`robust_utils.uncertainty`;
    * ``"H on baselines"`` (:data:`H_ON_BASELINES`, only when ``baselines`` is given): the
      supervised detector ``H`` of :func:`detection_experiment` on the stacked ``baselines``
      scores (signed, so ``log_features=False``), the fair comparison with
    * ``"H on gradients"`` (:data:`H_ON_GRADIENTS`): the detector ``H`` on the gradient
      features of :func:`purview_features`.

    The two detectors are fitted on ``train_fraction`` of both sets and evaluated on the rest
    (seeded), so their numbers are held out; the unsupervised scores need no fitting.

    Parameters
    ----------
    scores_clean, scores_novel : mapping str -> (N,) tensor or array
        The unsupervised scores of the clean and the challenge images, with the same keys.
    gradients_clean, gradients_novel : (N, L) tensor or array
        Gradient features of the same images.
    baselines : sequence of str, default ()
        Keys of ``scores_clean`` stacked into the features of ``"H on baselines"``.
    seed : int, default 0
    train_fraction : float in (0, 1), default 0.5

    Returns
    -------
    dict
        ``{method: {"auroc": ..., "aupr": ..., "fpr95": ...}}``: the keys of ``scores_clean`` in
        order, then ``"H on baselines"`` (if any baselines) and ``"H on gradients"``. Higher
        AUROC / AUPR and lower FPR95 are better.

    Taught in Part 3, section "Steps 4–5: a detector per challenge set".
    """
    for name, m in (("scores_clean", scores_clean), ("scores_novel", scores_novel)):
        if not isinstance(m, Mapping) or not m:
            raise TypeError(f"{name} must be a non-empty dict method -> (N,) scores, got "
                            f"{type(m).__name__}.")
    if list(scores_clean) != list(scores_novel):
        raise ValueError(f"scores_clean and scores_novel must have the same methods in the same order, "
                         f"got {list(scores_clean)} and {list(scores_novel)}.")
    if isinstance(baselines, str):
        baselines = [baselines]
    baselines = list(baselines)
    missing = [b for b in baselines if b not in scores_clean]
    if missing:
        raise ValueError(f"baselines {missing} are not among the scores ({', '.join(scores_clean)}).")
    seed = check_seed(seed)
    row = {}
    clean, novel = {}, {}
    for method in scores_clean:
        clean[method] = _score_vector(scores_clean[method], f"scores_clean[{method!r}]")
        novel[method] = _score_vector(scores_novel[method], f"scores_novel[{method!r}]")
    g_clean = _as_features(gradients_clean, "gradients_clean", allow_1d=True)
    g_novel = _as_features(gradients_novel, "gradients_novel", allow_1d=True)
    for side, scores, g in (("clean", clean, g_clean), ("novel", novel, g_novel)):
        rows = {f"scores_{side}[{m!r}]": len(v) for m, v in scores.items()}
        rows[f"gradients_{side}"] = g.shape[0]
        if len(set(rows.values())) != 1:
            raise ValueError(f"the per-image inputs of the {side} images must have one row per image, the "
                             f"same number for all, got " + ", ".join(f"{k}: {v}" for k, v in rows.items())
                             + f"; compute every score and the gradient features on the same {side} images.")
    for method in scores_clean:
        row[method] = detection_scores(clean[method], novel[method])
    if baselines:
        row[H_ON_BASELINES] = detection_experiment(
            np.stack([clean[b] for b in baselines], 1), np.stack([novel[b] for b in baselines], 1),
            train_fraction=train_fraction, seed=seed, log_features=False)
    row[H_ON_GRADIENTS] = detection_experiment(g_clean, g_novel,
                                               train_fraction=train_fraction, seed=seed)
    return {m: {k: float(r[k]) for k in DETECTION_METRICS} for m, r in row.items()}
