"""Uncertainty at inference from repeated passes: MC dropout and deep ensembles.

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

**Layout of the stacks.** Every stack of probabilities in this module is ``(T, N, C)``: passes
(or members) first, then inputs, then classes, as :func:`mc_dropout_probs` and
:func:`ensemble_probs` return it. Pass ``n=`` (the number of inputs) to
:func:`decompose_uncertainty` to have a ``(N, T, C)`` stack rejected instead of silently read
as ``N`` passes over ``T`` inputs.

The single-pass scores (Mahalanobis distance, logit baselines) are in
:mod:`robust_utils.ood`, GradTrust and trust curves in :mod:`robust_utils.gradtrust`, and the
1-D regression example in :mod:`robust_utils.regression_toy`.

Taught in Part 3, section "Monte-Carlo dropout and deep ensembles".
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._checks import (check_fraction, check_images, check_labels, check_positive_int,
                      check_probabilities, check_seed, model_device)
from .config import progress_bar
from .metrics import declares_direction
from .training import iterate_minibatches, predict_logits

__all__ = [
    "entropy",
    "decompose_uncertainty",
    "mc_dropout_probs",
    "mc_dropout",
    "ensemble_probs",
    "ensemble_uncertainty",
    "confidence_gap",
]

#: Every dropout module that MC dropout switches on (all subclass ``nn.modules.dropout._DropoutNd``).
_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                  nn.FeatureAlphaDropout)


# ---------------------------------------------------------------------------------------------
# Entropy and the decomposition of predictive uncertainty
# ---------------------------------------------------------------------------------------------
@declares_direction("more uncertain")
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

    Taught in Part 3, section "Monte-Carlo dropout and deep ensembles".
    """
    if not isinstance(probs, torch.Tensor):
        raise TypeError(f"probs must be a torch.Tensor of probabilities, got {type(probs).__name__}.")
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"dim must be an int (the class dimension), got {dim!r}.")
    dim = int(dim)
    if probs.dim() == 0 or not -probs.dim() <= dim < probs.dim():
        raise ValueError(f"dim={dim} is out of range for probs of shape {tuple(probs.shape)}.")
    if not torch.is_floating_point(probs):
        raise TypeError(f"probs must be a floating-point tensor of probabilities, got dtype {probs.dtype}; "
                        "apply softmax to float logits.")
    if not torch.isfinite(probs).all():
        raise ValueError("probs contains NaN or infinite values; check the model's outputs.")
    p = probs.movedim(dim, -1)
    check_probabilities(p, "probs")
    p = p.clamp_min(0.0)  # rounding may leave -1e-9 entries; xlogy(0, 0) = 0
    return -torch.xlogy(p, p).sum(-1)


@declares_direction("more uncertain")
def decompose_uncertainty(prob_samples: torch.Tensor, *, n: int | None = None) -> dict[str, torch.Tensor]:
    """Split predictive uncertainty into aleatoric and epistemic parts.

    Parameters
    ----------
    prob_samples : Tensor (T, N, C)
        ``T`` softmax outputs (dropout passes or ensemble members) for ``N`` inputs: passes
        first, as :func:`mc_dropout_probs` and :func:`ensemble_probs` return them. A ``(N, T, C)``
        stack cannot be told apart from the shape alone; pass ``n``.
    n : int, optional
        The number of inputs ``N``. When given, dim 1 of ``prob_samples`` must equal it, and a
        stack with ``N`` in dim 0 instead is rejected with the fix
        (``prob_samples.transpose(0, 1)``).

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

    Taught in Part 3, section "Monte-Carlo dropout and deep ensembles".
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
    if n is not None:
        n = check_positive_int(n, "n")
        t_dim, n_dim = prob_samples.shape[:2]
        if n_dim != n:
            swapped = (" It looks like (N, T, C) (inputs first): pass prob_samples.transpose(0, 1)."
                       if t_dim == n else "")
            raise ValueError(f"prob_samples must have shape (T, N, C) with N = n = {n} inputs in dim 1, "
                             f"got shape {tuple(prob_samples.shape)}.{swapped}")
    if not torch.is_floating_point(prob_samples):
        raise TypeError(f"prob_samples must be a floating-point tensor of probabilities, got dtype "
                        f"{prob_samples.dtype}; apply softmax to float logits.")
    if not torch.isfinite(prob_samples).all():
        raise ValueError("prob_samples contains NaN or infinite values; check the model's outputs.")
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

    Taught in Part 3, section "Monte-Carlo dropout and deep ensembles".
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    check_images(x, "x")
    n_samples = check_positive_int(n_samples, "n_samples")
    batch_size = check_positive_int(batch_size, "batch_size")
    seed = check_seed(seed)
    if dropout_rate is not None:
        dropout_rate = check_fraction(dropout_rate, "dropout_rate")
        if dropout_rate >= 1.0:
            raise ValueError("dropout_rate must be < 1 (1 would zero every activation); use e.g. 0.1-0.5.")
    drops = _dropout_modules(model)
    if not drops:
        raise ValueError(f"{type(model).__name__} has no dropout layer (nn.Dropout, nn.Dropout2d, ...), "
                         "so every pass would give the same output: MC dropout needs a network trained "
                         "with dropout, e.g. build_model('c3lt_cnn') or build_model('mlp', dropout=0.2).")
    dev = model_device(model)
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


@declares_direction("more uncertain")
def mc_dropout(model: nn.Module, x: torch.Tensor, *, n_samples: int = 20,
               dropout_rate: float | None = None, batch_size: int = 512, seed: int = 0,
               progress: bool = False) -> dict[str, torch.Tensor]:
    """MC-dropout uncertainty: :func:`decompose_uncertainty` of :func:`mc_dropout_probs`.

    Returns the dict of :func:`decompose_uncertainty` (``mean_probs``, ``prediction``,
    ``predictive``, ``aleatoric``, ``epistemic``); the arguments are those of
    :func:`mc_dropout_probs`.

    Taught in Part 3, section "Monte-Carlo dropout and deep ensembles".
    """
    probs = mc_dropout_probs(model, x, n_samples=n_samples, dropout_rate=dropout_rate,
                             batch_size=batch_size, seed=seed, progress=progress)
    return decompose_uncertainty(probs, n=x.shape[0])


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

    Taught in Part 3, section "Monte-Carlo dropout and deep ensembles".
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


@declares_direction("more uncertain")
def ensemble_uncertainty(models: Sequence[nn.Module], x: torch.Tensor, *,
                         batch_size: int = 1024) -> dict[str, torch.Tensor]:
    """Ensemble uncertainty: :func:`decompose_uncertainty` of :func:`ensemble_probs`.

    Taught in Part 3, section "Monte-Carlo dropout and deep ensembles".
    """
    return decompose_uncertainty(ensemble_probs(models, x, batch_size=batch_size), n=x.shape[0])


@declares_direction("more confident")
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

    Taught in Part 3, section "How many passes, and how much dropout?".
    """
    if isinstance(probs, torch.Tensor) and torch.is_floating_point(probs) and not torch.isfinite(probs).all():
        raise ValueError("probs contains NaN or infinite values; check the model's outputs.")
    check_probabilities(probs, "probs")
    if probs.dim() != 2 or probs.shape[0] == 0:
        raise ValueError(f"probs must have shape (N, num_classes) with N >= 1, got {tuple(probs.shape)}.")
    labels = check_labels(labels, n=probs.shape[0], num_classes=probs.shape[1])
    conf, pred = probs.detach().max(-1)
    acc = (pred == labels.to(pred.device)).double().mean()
    return float(conf.double().mean() - acc)

