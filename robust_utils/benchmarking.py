"""Benchmarking robustness to common corruptions: corruption errors and the mCE.

A benchmark is an intervention we *choose*: the same test images, corrupted by each challenge
type ``c`` at each severity ``s`` (see :mod:`robust_utils.corruptions`), expose how much of a
model's accuracy survives conditions it was not trained for. Hendrycks and Dietterich (ICLR
2019, ImageNet-C) summarise the top-1 errors ``E_{s,c}`` of a model ``f`` relative to a
*baseline* model (AlexNet in their paper), so that corruptions of different difficulty weigh
the same:

.. math::  \\mathrm{CE}^f_c = 100 \\cdot \\frac{\\sum_{s=1}^{5} E^f_{s,c}}
                                              {\\sum_{s=1}^{5} E^{\\mathrm{base}}_{s,c}},
           \\qquad \\mathrm{mCE}^f = \\frac{1}{|\\mathcal C|} \\sum_{c \\in \\mathcal C}
           \\mathrm{CE}^f_c .

A model with half the baseline's errors has mCE 50; the baseline itself has mCE 100. The
*relative* CE measures the degradation caused by the corruption, beyond the clean error
``E_clean``:

.. math::  \\mathrm{Relative\\ CE}^f_c = 100 \\cdot
           \\frac{\\sum_s \\big(E^f_{s,c} - E^f_{\\mathrm{clean}}\\big)}
                {\\sum_s \\big(E^{\\mathrm{base}}_{s,c} - E^{\\mathrm{base}}_{\\mathrm{clean}}\\big)} .

A model can lower its mCE just by being more accurate on clean images; a lower *relative* mCE
means that it also degrades less under corruption.

ImageNet-P asks a different question: not how often a prediction is wrong, but how often it
*changes* along a sequence of gradually growing perturbations ``x_1, ..., x_T`` of one image.
The flip probability of perturbation ``p`` is

.. math::  \\mathrm{FP}^f_p = \\frac{1}{m (T - 1)} \\sum_{i=1}^{m} \\sum_{t=2}^{T}
           \\mathbb 1\\big[f(x^{(i)}_t) \\ne f(x^{(i)}_{t-1})\\big],

and the flip rate ``FR = 100 FP^f_p / FP^base_p`` is averaged into the mFR.
:func:`perturbation_sequence` builds the sequences from the book's corruptions (blended in
gradually) and whole-pixel translations; :func:`flip_probability` and :func:`flip_rate_table`
score them.

Taught in Part 4, section "Through the benchmarking glass: verify".
"""
from __future__ import annotations

import math
import warnings
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ._checks import check_choice, check_images, check_labels, check_positive_int, check_seed
from .config import progress_bar
from .corruptions import LEVELS, corrupt, corruption_names
from .metrics import declares_direction
from .training import predict_logits

__all__ = [
    "clean_error",
    "corruption_errors",
    "mce",
    "mce_table",
    "benchmark_table",
    "perturbation_names",
    "perturbation_sequence",
    "flip_probability",
    "flip_rate_table",
]


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
def _top1_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    logits = predict_logits(model, x, batch_size=batch_size)
    if logits.dim() != 2:
        raise ValueError(f"the model must return logits shaped (N, num_classes), got {tuple(logits.shape)}.")
    return float((logits.argmax(1).cpu() != y.cpu()).double().mean())


def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")


def clean_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024) -> float:
    """Top-1 error of ``model`` on the clean images ``x`` (a fraction in ``[0, 1]``).

    The model is evaluated in eval mode (its mode is restored), on its own device.

    Taught in Part 4, section "Through the benchmarking glass: verify".
    """
    _check_model(model)
    check_images(x, "x")
    y = check_labels(y, n=x.shape[0], name="y")
    batch_size = check_positive_int(batch_size, "batch_size")
    return _top1_error(model, x, y, batch_size)


def _check_corruptions(corruptions) -> list[str]:
    names = corruption_names() if corruptions is None else (
        [corruptions] if isinstance(corruptions, str) else list(corruptions))
    if not names:
        raise ValueError("corruptions is empty; pass None for all of them, or a list of names from "
                         "robust_utils.corruptions.corruption_names().")
    for c in names:
        check_choice(c, "corruption", corruption_names())
    if len(set(names)) != len(names):
        raise ValueError(f"corruptions has repeated names: {names}.")
    return names


def _check_levels(levels) -> list[int]:
    if isinstance(levels, (int, np.integer)) and not isinstance(levels, bool):
        levels = [levels]
    levels = list(levels)
    if not levels:
        raise ValueError(f"levels is empty; pass severities from {LEVELS}.")
    for lv in levels:
        if isinstance(lv, bool) or not isinstance(lv, (int, np.integer)) or int(lv) not in LEVELS:
            raise ValueError(f"levels must be integers in {LEVELS}, got {levels!r}.")
    if len(set(levels)) != len(levels):
        raise ValueError(f"levels has repeated entries: {levels}.")
    return [int(lv) for lv in levels]


def corruption_errors(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                      corruptions: Sequence[str] | None = None, levels: Sequence[int] = LEVELS,
                      seed: int = 0, batch_size: int = 1024,
                      progress: bool = False) -> dict[str, dict[int, float]]:
    """Top-1 error ``E_{s,c}`` of ``model`` on ``x`` under every corruption ``c`` and level ``s``.

    Each corrupted set is ``robust_utils.corruptions.corrupt(x, c, s, seed=seed)`` applied to the
    whole of ``x`` at once, so the sets are exactly those of
    :func:`robust_utils.novel.novel_data_suite` with the same seed (the levels of a corruption
    share one noise pattern). The model is evaluated in eval mode, in batches.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits.
    x : torch.Tensor
        Clean images ``(N, C, H, W)`` in ``[0, 1]``.
    y : torch.Tensor
        Labels ``(N,)``.
    corruptions : sequence of str, optional
        Names from :func:`robust_utils.corruptions.corruption_names`; ``None`` = all of them.
    levels : sequence of int, default (1, 2, 3, 4, 5)
    seed : int, default 0
        Seed of the random corruptions.
    batch_size : int, default 1024
    progress : bool, default False
        Show a progress bar over the (corruption, level) pairs.

    Returns
    -------
    dict
        ``errors[c][s]``: the error (a fraction in ``[0, 1]``) under corruption ``c`` at level
        ``s``, in the order of ``corruptions`` and ``levels``.

    Taught in Part 4, section "Through the benchmarking glass: verify".
    """
    _check_model(model)
    check_images(x, "x")
    y = check_labels(y, n=x.shape[0], name="y")
    names = _check_corruptions(corruptions)
    levels = _check_levels(levels)
    seed = check_seed(seed)
    batch_size = check_positive_int(batch_size, "batch_size")
    return _errors_of_models({"model": model}, x, y, names, levels, seed, batch_size, progress)["model"]


def _errors_of_models(models: Mapping[str, nn.Module], x, y, names, levels, seed, batch_size,
                      progress) -> dict[str, dict[str, dict[int, float]]]:
    """Each corrupted set is made once and evaluated by every model."""
    pairs = [(c, lv) for c in names for lv in levels]
    errors = {name: {c: {} for c in names} for name in models}
    for c, lv in progress_bar(pairs, total=len(pairs), disable=not progress, desc="corruption errors"):
        xc = corrupt(x, c, lv, seed=seed)
        for name, m in models.items():
            errors[name][c][lv] = _top1_error(m, xc, y, batch_size)
    return errors


# ---------------------------------------------------------------------------------------------
# mCE
# ---------------------------------------------------------------------------------------------
def _check_errors(errors, name: str) -> dict[str, dict[int, float]]:
    if not isinstance(errors, Mapping) or not errors:
        raise TypeError(f"{name} must be a non-empty dict {{corruption: {{level: error}}}} as returned by "
                        "corruption_errors(...).")
    out = {}
    for c, per_level in errors.items():
        if not isinstance(per_level, Mapping) or not per_level:
            raise TypeError(f"{name}[{c!r}] must be a non-empty dict {{level: error}}, got {per_level!r}.")
        row = {}
        for lv, e in per_level.items():
            try:
                e = float(e)
            except (TypeError, ValueError):
                raise TypeError(f"{name}[{c!r}][{lv!r}] must be a number (an error rate), got {e!r}.") from None
            if not (math.isfinite(e) and 0.0 <= e <= 1.0):
                raise ValueError(f"{name}[{c!r}][{lv!r}] = {e} is not an error rate in [0, 1]; pass "
                                 "fractions (0.25), not percentages (25).")
            row[lv] = e
        out[c] = row
    return out


def _check_error_rate(e, name: str) -> float:
    try:
        e = float(e)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number (an error rate in [0, 1]), got {e!r}.") from None
    if not (math.isfinite(e) and 0.0 <= e <= 1.0):
        raise ValueError(f"{name} = {e} is not an error rate in [0, 1]; pass a fraction, not a percentage.")
    return e


def mce(errors: Mapping[str, Mapping[int, float]], baseline_errors: Mapping[str, Mapping[int, float]], *,
        clean_error: float | None = None, baseline_clean_error: float | None = None) -> dict:
    """Corruption errors (CE) and their mean (mCE) relative to a baseline model.

    ``CE_c = 100 * sum_s E_{s,c} / sum_s E^base_{s,c}`` and ``mCE = mean_c CE_c``; with both
    clean errors, also Hendrycks's relative CE,
    ``100 * sum_s (E_{s,c} - E_clean) / sum_s (E^base_{s,c} - E^base_clean)``, and its mean.

    Parameters
    ----------
    errors, baseline_errors : dict
        ``{corruption: {level: error}}`` (fractions in ``[0, 1]``) of the model and the
        baseline, as returned by :func:`corruption_errors`; the same corruptions and, for each,
        the same levels.
    clean_error, baseline_clean_error : float, optional
        Clean errors of the model and the baseline (both or neither), for the relative CE.

    Returns
    -------
    dict
        ``"ce"``: ``{corruption: CE}``, ``"mCE"``: float (100 = as good as the baseline,
        lower is better), ``"relative_ce"``: ``{corruption: relative CE}`` and
        ``"relative_mCE"``: float, or ``None`` for both without the clean errors.

    Raises
    ------
    ValueError
        Different corruptions or levels in the two dicts; a baseline with no error at all on a
        corruption (its CE would divide by zero).

    Notes
    -----
    The relative CE of a corruption is undefined when the baseline's errors under it are not
    above its clean error in total (``sum_s (E^base_{s,c} - E^base_clean) <= 0``, e.g. a
    corruption that does not hurt the baseline). Such a corruption gets ``NaN``, a
    :class:`RuntimeWarning` names it, and ``"relative_mCE"`` averages the other corruptions
    (``NaN`` if none is left).

    Taught in Part 4, section "Through the benchmarking glass: verify".
    """
    errors = _check_errors(errors, "errors")
    baseline_errors = _check_errors(baseline_errors, "baseline_errors")
    if set(errors) != set(baseline_errors):
        only_m = sorted(set(errors) - set(baseline_errors))
        only_b = sorted(set(baseline_errors) - set(errors))
        raise ValueError(f"errors and baseline_errors must cover the same corruptions; only in errors: "
                         f"{only_m}, only in baseline_errors: {only_b}. Compute both with the same "
                         "corruptions=... argument.")
    for c in errors:
        if set(errors[c]) != set(baseline_errors[c]):
            raise ValueError(f"corruption {c!r} has levels {sorted(errors[c])} in errors but "
                             f"{sorted(baseline_errors[c])} in baseline_errors; compute both with the "
                             "same levels=... argument.")
    if (clean_error is None) != (baseline_clean_error is None):
        raise ValueError("pass both clean_error and baseline_clean_error for the relative CE, or neither.")

    ce = {}
    for c, per_level in errors.items():
        denom = sum(baseline_errors[c][lv] for lv in per_level)
        if denom == 0:
            raise ValueError(f"the baseline makes no error on corruption {c!r} at any level, so "
                             f"CE = 100 * sum E / sum E_baseline divides by zero; use a weaker baseline "
                             f"or leave {c!r} out of the benchmark.")
        ce[c] = 100.0 * (sum(per_level.values()) / denom)
    out = {"ce": ce, "mCE": float(np.mean(list(ce.values()))), "relative_ce": None, "relative_mCE": None}
    if clean_error is None:
        return out

    e_clean = _check_error_rate(clean_error, "clean_error")
    b_clean = _check_error_rate(baseline_clean_error, "baseline_clean_error")
    rel, undefined = {}, []
    for c, per_level in errors.items():
        num = sum(e - e_clean for e in per_level.values())
        denom = sum(baseline_errors[c][lv] - b_clean for lv in per_level)
        if denom <= 0:
            rel[c] = float("nan")
            undefined.append(c)
        else:
            rel[c] = 100.0 * (num / denom)
    if undefined:
        warnings.warn(f"relative CE undefined for {undefined}: the baseline's corrupted errors do not "
                      f"exceed its clean error ({b_clean:.4g}) in total, so there is no degradation to "
                      "compare with; these corruptions are NaN and left out of relative_mCE.",
                      RuntimeWarning, stacklevel=2)
    defined = [v for v in rel.values() if not math.isnan(v)]
    out["relative_ce"] = rel
    out["relative_mCE"] = float(np.mean(defined)) if defined else float("nan")
    return out


def mce_table(errors: Mapping[str, Mapping[str, Mapping[int, float]]], clean_errors: Mapping[str, float], *,
              baseline: str):
    """A table of clean error, CE per corruption, mCE and relative mCE from precomputed errors.

    Parameters
    ----------
    errors : dict
        ``{model name: corruption_errors(...)}``.
    clean_errors : dict
        ``{model name: clean error}`` for the same models.
    baseline : str
        The model name that the CEs are relative to.

    Returns
    -------
    pandas.DataFrame
        One row per model (index ``"model"``, in the order of ``errors``), columns
        ``"clean error"`` (fraction), one column per corruption (its CE, in %), ``"mCE"`` and
        ``"relative mCE"``; ``df.attrs["errors"]``, ``df.attrs["clean_errors"]`` and
        ``df.attrs["relative_ce"]`` keep the inputs and per-corruption relative CEs.

    Taught in Part 4, section "Through the benchmarking glass: verify".
    """
    import pandas as pd

    if not isinstance(errors, Mapping) or not errors:
        raise TypeError("errors must be a non-empty dict {model name: corruption_errors(...)}.")
    if not isinstance(clean_errors, Mapping) or set(clean_errors) != set(errors):
        raise ValueError(f"clean_errors must have one entry per model of errors ({list(errors)}).")
    if not isinstance(baseline, str):
        raise TypeError(f"baseline must be a model name, one of: {', '.join(map(str, errors))}.")
    check_choice(baseline, "baseline model", errors)
    rows, relative = [], {}
    for name, err in errors.items():
        r = mce(err, errors[baseline], clean_error=clean_errors[name],
                baseline_clean_error=clean_errors[baseline])
        rows.append({"clean error": float(clean_errors[name]), **r["ce"], "mCE": r["mCE"],
                     "relative mCE": r["relative_mCE"]})
        relative[name] = r["relative_ce"]
    df = pd.DataFrame(rows, index=pd.Index(list(errors), name="model"))
    df.attrs.update(errors={k: dict(v) for k, v in errors.items()}, clean_errors=dict(clean_errors),
                    relative_ce=relative, baseline=baseline)
    return df


def _check_models_and_baseline(models, baseline) -> None:
    """A non-empty ``{name: nn.Module}`` and the name of one of them."""
    if not isinstance(models, Mapping) or not models:
        raise TypeError("models must be a non-empty dict {name: model}.")
    for name, m in models.items():
        if not isinstance(m, nn.Module):
            raise TypeError(f"models[{name!r}] must be a torch.nn.Module, got {type(m).__name__}.")
    if not isinstance(baseline, str):
        raise TypeError(f"baseline must be a model name, one of: {', '.join(map(str, models))}.")
    check_choice(baseline, "baseline model", models)


def benchmark_table(models: Mapping[str, nn.Module], x: torch.Tensor, y: torch.Tensor, *, baseline: str,
                    corruptions: Sequence[str] | None = None, levels: Sequence[int] = LEVELS,
                    seed: int = 0, batch_size: int = 1024, progress: bool = False):
    """Benchmark several models on the same corrupted images, relative to one of them.

    Computes the clean error and the :func:`corruption_errors` of every model (each corrupted set
    is made once and evaluated by all models) and tabulates them with :func:`mce_table`.

    Parameters
    ----------
    models : dict
        ``{name: model}``; ``baseline`` must be one of the names.
    x, y : torch.Tensor
        Clean test images in ``[0, 1]`` and labels.
    baseline : str
        Name of the reference model (mCE 100).
    corruptions, levels, seed, batch_size, progress
        As in :func:`corruption_errors`.

    Returns
    -------
    pandas.DataFrame
        Rows = models; columns ``"clean error"`` (fraction), the CE of each corruption (%),
        ``"mCE"`` and ``"relative mCE"``. The raw errors are in ``df.attrs["errors"]`` and
        ``df.attrs["clean_errors"]``.

    Taught in Part 4, section "Through the benchmarking glass: verify".
    """
    _check_models_and_baseline(models, baseline)
    check_images(x, "x")
    y = check_labels(y, n=x.shape[0], name="y")
    names = _check_corruptions(corruptions)
    levels = _check_levels(levels)
    seed = check_seed(seed)
    batch_size = check_positive_int(batch_size, "batch_size")
    clean = {name: _top1_error(m, x, y, batch_size) for name, m in models.items()}
    errors = _errors_of_models(models, x, y, names, levels, seed, batch_size, progress)
    return mce_table(errors, clean, baseline=baseline)



# ---------------------------------------------------------------------------------------------
# ImageNet-P-style perturbation sequences and flip rates
# ---------------------------------------------------------------------------------------------
def perturbation_names() -> list[str]:
    """The perturbations :func:`perturbation_sequence` knows: every corruption, and ``"translate"``.

    Taught in Part 4, section "Perturbation sequences: does the prediction flip?".
    """
    return corruption_names() + ["translate"]


def perturbation_sequence(x: torch.Tensor, name: str, frames: int = 10, seed: int = 0) -> torch.Tensor:
    """A sequence of ``frames`` gradually stronger versions of ``x``: a ``(frames, N, C, H, W)`` tensor.

    Frame 0 is ``x``. For a corruption, frame ``t`` blends ``x`` towards its level-5 corruption
    ``c(x)`` (one fixed draw of its randomness, ``seed``): ``x + t / (frames - 1) * (c(x) - x)``,
    so the last frame is ``c(x)`` and the perturbation grows by equal steps. For the additive noises
    and the affine photometric changes this is the corruption itself at a proportionally growing
    strength (up to clipping at 0 and 1); for the others (blurs, JPEG, pixelation, elastic warps) it
    is a cross-fade towards the corrupted image. ``"translate"`` shifts ``x`` right by ``t`` pixels
    (zeros enter from the left; ``seed`` plays no part), a translation sequence like ImageNet-P's,
    which however brings in no blank border. ImageNet-P's noise frames are independent draws
    scored against the first frame; here one draw grows, and frames are scored against the previous one.

    Taught in Part 4, section "Perturbation sequences: does the prediction flip?".
    """
    check_images(x, "x")
    check_choice(name, "perturbation", perturbation_names())
    frames = check_positive_int(frames, "frames", minimum=2)
    seed = check_seed(seed)
    if name == "translate":
        from .tta import shift
        if frames > x.shape[-1]:
            raise ValueError(f"a translation of {frames} frames moves a {x.shape[-1]}-pixel-wide image out of view; "
                             f"use at most {x.shape[-1]} frames.")
        return torch.stack([shift(x, 0, t) for t in range(frames)])
    target = corrupt(x, name, max(LEVELS), seed=seed)
    alphas = torch.linspace(0, 1, frames, dtype=x.dtype, device=x.device).view(-1, 1, 1, 1, 1)
    return (x.unsqueeze(0) + alphas * (target - x).unsqueeze(0)).clamp(0, 1)


def _check_sequence(sequence) -> torch.Tensor:
    if not isinstance(sequence, torch.Tensor) or sequence.dim() != 5:
        got = tuple(sequence.shape) if isinstance(sequence, torch.Tensor) else type(sequence).__name__
        raise ValueError(f"sequence must be a (frames, N, C, H, W) tensor (perturbation_sequence makes one), got {got}.")
    if sequence.shape[0] < 2:
        raise ValueError(f"a sequence needs at least 2 frames to flip between, got {sequence.shape[0]}.")
    return sequence


@declares_direction("worse")
def flip_probability(model: nn.Module, sequence: torch.Tensor, *, batch_size: int = 1024) -> float:
    """ImageNet-P's flip probability: how often the top-1 prediction changes between consecutive frames.

    ``sequence`` is ``(T, N, C, H, W)`` (:func:`perturbation_sequence`); the result is the mean of
    ``1[f(x_t) != f(x_{t-1})]`` over the ``N`` images and ``t = 2..T``, in ``[0, 1]``; lower is
    more stable. The model runs in eval mode on its own device.

    Taught in Part 4, section "Perturbation sequences: does the prediction flip?".
    """
    _check_model(model)
    sequence = _check_sequence(sequence)
    check_images(sequence[0], "sequence frames")
    batch_size = check_positive_int(batch_size, "batch_size")
    t, n = sequence.shape[:2]
    pred = predict_logits(model, sequence.reshape(t * n, *sequence.shape[2:]), batch_size=batch_size)
    pred = pred.argmax(1).view(t, n)
    return float((pred[1:] != pred[:-1]).double().mean())



def flip_rate_table(models: Mapping[str, nn.Module], x: torch.Tensor, *, baseline: str,
                    perturbations: Sequence[str] | None = None, frames: int = 10, seed: int = 0,
                    batch_size: int = 1024):
    """Flip probabilities of several models on the same sequences, and flip rates against ``baseline``.

    Returns a ``pandas.DataFrame`` with one row per model: the flip rate ``100 FP / FP_baseline`` of
    each perturbation (the baseline scores 100; lower is more stable) and their mean ``"mFR"``.
    ``df.attrs["flip_probability"]`` holds the raw ``{model: {perturbation: FP}}``. A perturbation
    on which the baseline never flips has no rate (NaN) and is left out of the mean, with a warning.

    Taught in Part 4, section "Perturbation sequences: does the prediction flip?".
    """
    import pandas as pd

    _check_models_and_baseline(models, baseline)
    check_images(x, "x")
    names = perturbation_names() if perturbations is None else (
        [perturbations] if isinstance(perturbations, str) else list(perturbations))
    if not names or len(set(names)) != len(names):
        raise ValueError(f"perturbations must be distinct names from perturbation_names(), got {names!r}.")
    for p in names:
        check_choice(p, "perturbation", perturbation_names())
    fp = {m: {} for m in models}
    for p in names:
        seq = perturbation_sequence(x, p, frames=frames, seed=seed)
        for m, net in models.items():
            fp[m][p] = flip_probability(net, seq, batch_size=batch_size)
    zero = [p for p in names if fp[baseline][p] == 0]
    if zero:
        warnings.warn(f"the baseline never flips on {zero}: no flip rate there (NaN), left out of the mFR.",
                      stacklevel=2)
    rows = {}
    for m in models:
        fr = {p: (100.0 * fp[m][p] / fp[baseline][p] if fp[baseline][p] > 0 else math.nan) for p in names}
        valid = [v for v in fr.values() if not math.isnan(v)]
        rows[m] = {**fr, "mFR": float(np.mean(valid)) if valid else math.nan}
    df = pd.DataFrame(rows).T
    df.index.name = "model"
    df.attrs.update(flip_probability=fp, baseline=baseline, frames=frames, higher_means="worse")
    return df
