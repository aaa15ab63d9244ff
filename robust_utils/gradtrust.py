"""GradTrust and trust curves: is this prediction to be trusted?

GradTrust (Prabhushankar and AlRegib) measures *trust* from the gradients of the last linear
layer ``W`` (``C x D``) when the logits :math:`z` are pulled towards the uniform vector
:math:`\\tfrac{1}{C}\\mathbf{1}`. With :math:`G = \\nabla_W \\mathrm{MSE}(z, \\tfrac{1}{C}\\mathbf{1})`
and :math:`v_i = \\mathrm{Var}_j(G_{ij}^2)` (variance over the ``D`` features of row ``i``),

.. math::  \\mathrm{GradTrust}(x) = \\frac{\\max_i v_i}{\\frac{1}{|K|}\\sum_{i \\in K} v_i},

with :math:`K` all classes (the authors' code) or the top-``k`` counterfactual classes.
Since :math:`G_i = \\tfrac{2}{C}(z_i - \\tfrac{1}{C})\\, h`, the features cancel and
GradTrust is a function of the logits alone (:func:`gradtrust_from_logits`).

A trust score is judged by :func:`trust_curves`: the accuracy and macro F1 of the images kept
above each percentile of the score, and the areas under them (AUAC, AUFC). Both GradTrust
functions declare ``higher = "more trustworthy"`` (:func:`robust_utils.metrics.score_direction`).

Taught in Part 3, section "GradTrust: counterfactual gradients as a trust score".
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from ._checks import (PIXELS, as_numpy_1d, check_head_model, check_model_input, check_positive_int,
                      check_same_length, check_value_range)
from .metrics import declares_direction
from .ood import check_features, check_logits
from .training import iterate_minibatches

__all__ = [
    "gradtrust",
    "gradtrust_from_logits",
    "trust_curves",
]


def _check_head_model(model) -> None:
    check_head_model(model, "dropout would give a different GradTrust at every call and batch-norm "
                            "would mix the images of a batch")


# ---------------------------------------------------------------------------------------------
# GradTrust
# ---------------------------------------------------------------------------------------------
def _check_k(k, num_classes: int) -> int | None:
    if k is None:
        return None
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be None or an integer in [1, {num_classes - 1}], got {k!r}.")
    k = int(k)
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


@declares_direction("more trustworthy")
def gradtrust(model: nn.Module, x: torch.Tensor, *, k: int | None = None,
              batch_size: int = 1024,
              value_range: tuple[float, float] | None = PIXELS) -> torch.Tensor:
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
        A classifier in eval mode with ``features(x)`` and a linear ``head``. A model (or a
        submodule, e.g. a dropout layer) left in training mode raises a ``RuntimeError``: dropout
        would change the score at every call.
    x : Tensor (N, C, H, W)
        Images in ``[0, 1]``.
    k : int in [1, num_classes - 1], optional
        Number of counterfactual classes in the denominator; ``None`` = all classes.
    batch_size : int, default 1024
        Images per vectorised backward pass (memory: ``batch_size * C * D`` float64 values).
    value_range : (low, high) or None, default (0, 1)
        The range ``x`` must lie in; ``None`` for a model that takes other inputs. ``x`` must
        have the model's dtype (``x.float()`` for float64 images and a float32 model).

    Returns
    -------
    Tensor (N,)
        float32 on ``x``'s device.

    Taught in Part 3, section "GradTrust: counterfactual gradients as a trust score".
    """
    _check_head_model(model)
    check_model_input(model, x, value_range=check_value_range(value_range))
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


@declares_direction("more trustworthy")
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

    Taught in Part 3, section "GradTrust: counterfactual gradients as a trust score".
    """
    z = check_logits(logits).detach()
    n, c = z.shape
    k = _check_k(k, c)
    d = (z.double() - 1.0 / c).abs()
    scale = d.max(-1, keepdim=True).values
    w = (d / torch.where(scale > 0, scale, torch.ones_like(scale))).pow(4)
    score = _trust_ratio(w, z, k)
    if features is not None:
        f = check_features(features).detach()
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
    v = as_numpy_1d(v, name)
    if not np.issubdtype(v.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class indices, got dtype {v.dtype}; for logits use "
                        "logits.argmax(1).")
    if v.min() < 0:
        raise ValueError(f"{name} must be class indices >= 0, got minimum {v.min()}.")
    return v.astype(np.int64)


@declares_direction("better")
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

    Taught in Part 3, section "GradTrust: counterfactual gradients as a trust score".
    """
    s = as_numpy_1d(scores, "scores")
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

