"""Intervenability at inference: evaluating explanations by intervening on the input.

An explanation claims that some pixels caused a prediction. The network can be asked whether
that is true by *intervening*: mask the image as the explanation suggests, pass the masked image
through the network again, and see what happens to the prediction ("masking = intelligent
intervention"). The tutorial's Part 4 names three kinds of masking, and this module implements
all three, plus two black-box explanations built from random interventions.

1. **Explanation heatmap masking** (:func:`heatmap_masking`, Chattopadhay et al., 2018). The
   map ``L`` in ``[0, 1]`` is used as a soft mask, ``S_x = x \\odot L``, and the explanation is
   scored by the expectation of the class given the masked data,

   .. math::  E(Y \\mid S_x) = \\frac{1}{N} \\sum_{n=1}^N p_\\theta(c_n \\mid x_n \\odot L_n),

   higher is better. It favours *large* explanations: a map of ones keeps the whole image.

2. **Pixel-wise deletion and insertion** (:func:`deletion`, :func:`insertion`, Petsiuk et al.,
   2018). Pixels are ranked by the map and removed (replaced by a *substrate*: black, the mean,
   or a blurred copy) or revealed (on top of the substrate) in ``K`` equal chunks. With
   ``x^{(k)}`` the image after ``k`` chunks, the curve and its area are

   .. math::  c_k = p_\\theta\\big(c \\mid x^{(k)}\\big), \\quad k = 0, \\dots, K, \\qquad
              \\mathrm{AUC} = \\frac{1}{K} \\sum_{k=1}^{K} \\frac{c_{k-1} + c_k}{2}.

   Deletion tests *necessity* (a good map makes the probability collapse early: low AUC);
   insertion tests *sufficiency* (a good map brings the probability back early: high AUC).

3. **Structure-wise (Huffman) deletion and insertion** (in :mod:`robust_utils.structure`:
   ``structure_deletion``, ``structure_insertion``). Humans do not see pixels but structures, so the x-axis becomes
   the *information* the masked image still holds: for each threshold ``t`` of the map, the
   pixels with ``L >= t`` are deleted (or kept), and the bit ratio

   .. math::  r_t = \\frac{B(\\text{masked image})}{B(\\text{original image})},
              \\qquad B(I) = \\sum_{v} h_I(v)\\, \\ell_I(v),

   (``h_I`` the histogram of the 8-bit pixel values, ``\\ell_I`` the lengths of the Huffman code
   built from it, ``huffman_code``, ``huffman_bits``) is plotted against the accuracy of
   the masked images. The ideal explanation encodes the most important information in the
   fewest bits.

Random interventions turn into explanations too (in :mod:`robust_utils.rise`): ``rise``
(Petsiuk et al., 2018) averages random masks weighted by the class probability of the masked
image, and ``shape``
(Chowdhury et al., 2024) averages the *inverse* masks weighted by the *drop* in probability.
SHAPE maps look like noise to a human, yet score at least as well as RISE on insertion and
deletion: the tutorial's warning that an objective metric can be gamed.

Every evaluation returns an :class:`InterventionResult`: per-image ``scores``, the curves, and
whether higher is better (also as ``result.higher_means``, ``"better"`` or ``"worse"``, the
vocabulary of :func:`robust_utils.metrics.score_direction`), so that comparisons and confidence
intervals are one line away. The shared building blocks (:func:`prepare_inputs`,
:func:`check_maps`, :func:`model_logits`, :func:`target_classes`,
:func:`batched_probabilities`) are public, so the structure-wise and random-mask evaluations use
them.
Everything is batched over images *and* steps: the masked copies are built chunk by chunk and
sent through the model ``batch_size`` images at a time, with no Python loop over images. Any
callable that maps ``(B, C, H, W)`` images to ``(B, num_classes)`` logits works as the model.

Taught in Part 4, section "Five glasses, three rules".
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import (PIXELS, check_bool, check_choice, check_class_index, check_eval_model, check_fraction,
                      check_images, check_labels, check_model_input, check_positive_int, check_value_range)
from .config import progress_bar
from .metrics import declares_direction

__all__ = [
    "InterventionResult",
    "SUBSTRATES",
    "prepare_inputs",
    "check_maps",
    "model_logits",
    "clean_logits",
    "target_classes",
    "batched_probabilities",
    "make_substrate",
    "heatmap_masking",
    "deletion",
    "insertion",
    "occlude",
    "energy_inside",
]

#: Named substrates of :func:`deletion` / :func:`insertion` (a tensor is also accepted).
SUBSTRATES = ("black", "mean", "blur")


# ---------------------------------------------------------------------------------------------
# The result object
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InterventionResult:
    """Per-image result of an intervention-based evaluation, with its direction.

    Attributes
    ----------
    name : str
        The metric, e.g. ``"deletion"``.
    higher_is_better : bool
        How to read ``scores``: ``True`` for insertion and heatmap masking, ``False`` for
        deletion.
    scores : torch.Tensor
        ``(N,)``: one number per image (an AUC, a probability, ...).
    curves : torch.Tensor or None
        ``(N, S)``: the per-image curve sampled at ``x``.
    x : torch.Tensor or None
        ``(S,)``: where the curves are sampled (fractions of pixels, or thresholds).
    extra : dict
        Metric-specific tensors and settings (documented by each function).

    Taught in Part 4, section "Evaluation 1: heatmap masking".
    """

    name: str
    higher_is_better: bool
    scores: torch.Tensor
    curves: torch.Tensor | None = None
    x: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.scores, torch.Tensor) or self.scores.dim() != 1:
            raise ValueError("scores must be a 1-D tensor with one value per image.")
        if self.curves is not None:
            if self.curves.dim() != 2 or self.curves.shape[0] != self.scores.shape[0]:
                raise ValueError(f"curves must be (N, S) with N = {self.scores.shape[0]}, got "
                                 f"{tuple(self.curves.shape)}.")
            if self.x is not None and tuple(self.x.shape) != (self.curves.shape[1],):
                raise ValueError(f"x must have shape ({self.curves.shape[1]},) to match the curves, "
                                 f"got {tuple(self.x.shape)}.")

    @property
    def higher_means(self) -> str:
        """``"better"`` or ``"worse"``: the direction of ``scores``, as
        :func:`robust_utils.metrics.score_direction` reads it."""
        return "better" if self.higher_is_better else "worse"

    @property
    def mean(self) -> float:
        """The mean score over the images (the number a results table shows)."""
        return float(self.scores.float().mean())

    def __repr__(self) -> str:
        direction = "higher" if self.higher_is_better else "lower"
        s = None if self.curves is None else self.curves.shape[1]
        return (f"InterventionResult(name={self.name!r}, N={self.scores.shape[0]}, "
                f"mean={self.mean:.4f}, {direction} is better, points per curve={s}, "
                f"extra={sorted(self.extra)})")


# ---------------------------------------------------------------------------------------------
# Shared checks and the chunked forward pass
# ---------------------------------------------------------------------------------------------
def _check_model(model) -> None:
    """Any callable; a :class:`~torch.nn.Module` must be in eval mode (every submodule)."""
    if not callable(model):
        raise TypeError(f"model must be callable (images -> logits), got {type(model).__name__}.")
    if isinstance(model, nn.Module):
        check_eval_model(model, "dropout and batch-norm batch statistics would make the masked "
                                "predictions random and mix the images of a batch")


def _device(model, x: torch.Tensor) -> torch.device:
    """The model's device (its first parameter or buffer), else the images' device."""
    if isinstance(model, nn.Module):
        for t in list(model.parameters()) + list(model.buffers()):
            return t.device
    return x.device


def prepare_inputs(model, x, *, value_range: tuple[float, float] | None = PIXELS) -> torch.Tensor:
    """Check the model (callable; an ``nn.Module`` in eval mode) and the images ``(N, C, H, W)``.

    The images must lie in ``value_range`` (default ``(0, 1)``: the book's models take ``[0, 1]``
    pixels; ``None`` for a model that takes other inputs) and, for an ``nn.Module``, have its
    dtype. Returns the images detached, on the model's device. The first step of every
    evaluation of :mod:`robust_utils.interventions`, :mod:`robust_utils.structure` and
    :mod:`robust_utils.rise`.

    Taught in Part 4, section "Evaluation 1: heatmap masking".
    """
    _check_model(model)
    value_range = check_value_range(value_range)
    if isinstance(model, nn.Module):
        check_model_input(model, x, value_range=value_range)
    else:
        check_images(x, "x", value_range=value_range)
    return x.detach().to(_device(model, x))


def check_maps(maps, x: torch.Tensor, name: str = "maps", unit: bool = False) -> torch.Tensor:
    """``(N, H, W)`` (or ``(N, 1, H, W)``) finite float maps matching ``x``, on its device.

    With ``unit=True`` the maps must lie in ``[0, 1]`` (to be used as masks).

    Taught in Part 4, section "Evaluation 1: heatmap masking".
    """
    unit = check_bool(unit, "unit")
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, H, W), got {type(maps).__name__}.")
    if not torch.is_floating_point(maps):
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {maps.dtype}; use maps.float().")
    n, _, h, w = x.shape
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.dim() == 4:
        raise ValueError(f"{name} has {maps.shape[1]} channels (shape {tuple(maps.shape)}); pass one map "
                         "per image, shaped (N, H, W), e.g. attribution.abs().sum(1) for a pixel "
                         "attribution.")
    if maps.dim() != 3:
        raise ValueError(f"{name} must have shape (N, H, W) = ({n}, {h}, {w}), got {tuple(maps.shape)}.")
    if maps.shape[0] != n:
        raise ValueError(f"{name} has {maps.shape[0]} maps but there are {n} images; pass one map per image.")
    if tuple(maps.shape[1:]) != (h, w):
        raise ValueError(f"{name} must be {h}x{w} like the images, got {tuple(maps.shape[1:])}; upsample "
                         "them (the CAM functions do so with upsample=True, or use "
                         "torch.nn.functional.interpolate).")
    if not torch.isfinite(maps).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    if unit:
        lo, hi = float(maps.min()), float(maps.max())
        if lo < -1e-4 or hi > 1 + 1e-4:
            raise ValueError(f"{name} must lie in [0, 1] to be used as a mask, got values in [{lo:.3g}, "
                             f"{hi:.3g}]; normalise them with robust_utils.explanations.normalize_maps.")
    return maps.detach().to(device=x.device, dtype=x.dtype)


def model_logits(model, images: torch.Tensor) -> torch.Tensor:
    """``model(images)``, checked to be ``(B, num_classes)`` logits with at least two classes.

    Taught in Part 4, section "Evaluation 1: heatmap masking".
    """
    out = model(images)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != images.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model must return logits shaped (B, num_classes) = ({images.shape[0]}, K), "
                         f"got {shape}.")
    if out.shape[1] < 2:
        raise ValueError(f"the model returns {out.shape[1]} logit per image; the softmax needs at least "
                         "two classes (return the logits of both classes of a binary problem).")
    return out


@torch.no_grad()
def clean_logits(model, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits of the unmasked images, ``batch_size`` at a time: ``(N, num_classes)``.

    Taught in Part 4, section "Evaluation 1: heatmap masking".
    """
    return torch.cat([model_logits(model, x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def _class_indices(value, n: int, num_classes: int, name: str) -> torch.Tensor:
    """An int (Python, NumPy or 0-d tensor), a sequence or a (N,) tensor of classes -> (N,) long."""
    if isinstance(value, torch.Tensor) and value.dim() == 1:
        idx = value
    elif isinstance(value, (str, bytes)) or not isinstance(value, Sequence) and not (
            hasattr(value, "ndim") and getattr(value, "ndim") == 1):
        idx = torch.full((n,), check_class_index(value, name, num_classes), dtype=torch.long)
    else:
        idx = torch.tensor([check_class_index(v, f"each entry of {name}", num_classes) for v in value],
                           dtype=torch.long)
    check_labels(idx, n=n, num_classes=num_classes, name=name)
    return idx.long()


def target_classes(model, x: torch.Tensor, target, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Target classes (default: the prediction) and their probability on the unmasked images.

    ``target`` is ``None``, one class index (Python or NumPy integer) for every image, or one
    per image (a sequence or an ``(N,)`` tensor). Returns ``(classes, probabilities)``, ``(N,)``
    each, on ``x``'s device.

    Taught in Part 4, section "Evaluation 1: heatmap masking".
    """
    logits = clean_logits(model, x, batch_size)
    if target is None:
        t = logits.argmax(1)
    else:
        t = _class_indices(target, x.shape[0], logits.shape[1], "target").to(logits.device)
    p = logits.softmax(1).gather(1, t[:, None]).squeeze(1)
    return t.to(x.device), p.to(x.device)


@torch.no_grad()
def batched_probabilities(model, n_rows: int, make_rows: Callable[[int, int], torch.Tensor],
                          batch_size: int, progress: bool, desc: str, device) -> torch.Tensor:
    """Run ``make_rows(start, stop) -> images`` through the model in chunks.

    Returns the ``(n_rows, num_classes)`` softmax probabilities of every row, on ``device``.
    Only one chunk of masked images exists at a time, so memory stays ``O(batch_size)``.

    Taught in Part 4, section "Evaluation 2: pixel-wise deletion and insertion".
    """
    progress = check_bool(progress, "progress")
    starts = range(0, n_rows, batch_size)
    it = progress_bar(starts, total=len(starts), desc=desc) if progress else starts
    out = []
    for s in it:
        images = make_rows(s, min(s + batch_size, n_rows))
        out.append(model_logits(model, images).softmax(1).to(device))
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------
# 1. Explanation heatmap masking
# ---------------------------------------------------------------------------------------------
@declares_direction("better")
def heatmap_masking(model, x: torch.Tensor, maps: torch.Tensor, *, target=None, batch_size: int = 512,
                    allow_empty: bool = False,
                    value_range: tuple[float, float] | None = PIXELS) -> InterventionResult:
    """Explanation evaluation by heatmap masking: ``E(Y | S_x)`` with ``S_x = x * map``.

    The slides' first evaluation (after Chattopadhay et al.'s Grad-CAM++ paper): the
    explanation, a map in ``[0, 1]``, multiplies the image (a soft mask), the masked image goes
    through the network, and the score is the probability of the explained class given the
    masked data. Averaged over ``N`` images it is ``E(Y | S_x)``; if ``E(Y | S_x2) > E(Y | S_x1)``,
    explanation technique 2 is better than technique 1. The slides' caveat: this favours
    *large* explanations (the more of the image a map keeps, the likelier a correct
    prediction), so fine-grained explanations are not rewarded.

    Parameters
    ----------
    model : callable
        Images ``(B, C, H, W)`` -> logits ``(B, K)``; an ``nn.Module`` must be in eval mode.
    x : torch.Tensor
        Images ``(N, C, H, W)``.
    maps : torch.Tensor
        Explanations ``(N, H, W)`` (or ``(N, 1, H, W)``) in ``[0, 1]``, e.g. from
        :func:`robust_utils.explanations.grad_cam`.
    target : None, int, sequence of int or (N,) tensor
        The explained class; ``None`` = the prediction on the unmasked image.
    batch_size : int, default 512
    allow_empty : bool, default False
        An all-zero map masks the whole image away (Grad-CAM's ReLU can zero a map); such
        images raise an error unless this is ``True``.
    value_range : (low, high) or None, default (0, 1)
        The range the images must lie in; ``None`` for a model that takes other inputs (see
        :func:`prepare_inputs`).

    Returns
    -------
    InterventionResult
        ``name="heatmap_masking"``, higher is better; ``scores`` = ``p(target | x * map)``
        ``(N,)``; ``extra``: ``"unmasked"`` = ``p(target | x)``, ``"drop"`` =
        ``max(0, unmasked - masked) / unmasked`` (the paper's "average drop" per image),
        ``"increase"`` = ``masked > unmasked`` (its "increase in confidence"), ``"target"``.

    Taught in Part 4, section "Evaluation 1: heatmap masking".
    """
    x = prepare_inputs(model, x, value_range=value_range)
    maps = check_maps(maps, x, unit=True)
    batch_size = check_positive_int(batch_size, "batch_size")
    allow_empty = check_bool(allow_empty, "allow_empty")
    empty = maps.flatten(1).amax(1) <= 0
    if empty.any() and not allow_empty:
        idx = empty.nonzero().flatten().tolist()
        more = " ..." if len(idx) > 10 else ""
        raise ValueError(f"{len(idx)} map(s) are all zero (images {idx[:10]}{more}): "
                         "masking with them deletes the whole image. Drop those images, or pass "
                         "allow_empty=True to score them anyway.")
    t, p_clean = target_classes(model, x, target, batch_size)
    masked = x * maps[:, None]
    probs = batched_probabilities(model, x.shape[0], lambda s, e: masked[s:e], batch_size, False, "", x.device)
    score = probs.gather(1, t[:, None]).squeeze(1)
    drop = (p_clean - score).clamp_min(0) / p_clean.clamp_min(torch.finfo(p_clean.dtype).tiny)
    return InterventionResult("heatmap_masking", True, score, None, None,
                              {"unmasked": p_clean, "drop": drop, "increase": score > p_clean,
                               "target": t})


# ---------------------------------------------------------------------------------------------
# 2. Pixel-wise deletion and insertion
# ---------------------------------------------------------------------------------------------
def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur, radius ``ceil(3 sigma)``, replicate padding (any image size)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    k = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    g = torch.exp(-k.pow(2) / (2 * sigma ** 2))
    g = g / g.sum()
    c = x.shape[1]
    out = F.pad(x, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(out, g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def make_substrate(x: torch.Tensor, substrate="black", *, blur_sigma: float = 5.0) -> torch.Tensor:
    """The image that deleted pixels become (deletion) or that insertion starts from.

    Parameters
    ----------
    x : torch.Tensor
        Images ``(N, C, H, W)``.
    substrate : {"black", "mean", "blur"} or torch.Tensor
        ``"black"``: zeros; ``"mean"``: each image's mean, per channel (the slides' "mean
        (grayscale) image"); ``"blur"``: a Gaussian blur of each image with standard deviation
        ``blur_sigma`` pixels (Petsiuk et al.'s insertion substrate: the shapes are gone, the
        colours stay); a tensor broadcastable to ``x`` is used as it is.
    blur_sigma : float, default 5.0
        In pixels; on 28x28 images 5 leaves little more than a smooth blob.

    Returns
    -------
    torch.Tensor
        ``(N, C, H, W)``, same device and dtype as ``x``.

    Taught in Part 4, section "Evaluation 2: pixel-wise deletion and insertion".
    """
    check_images(x, "x", value_range=None)
    if isinstance(substrate, torch.Tensor):
        if not torch.is_floating_point(substrate):
            raise TypeError(f"a substrate tensor must be floating point, got {substrate.dtype}.")
        try:
            sub = torch.broadcast_to(substrate.to(device=x.device, dtype=x.dtype), x.shape)
        except RuntimeError:
            raise ValueError(f"a substrate tensor must be broadcastable to the images' shape "
                             f"{tuple(x.shape)}, got {tuple(substrate.shape)}; pass (N, C, H, W), "
                             "(C, H, W) or a scalar tensor.") from None
        if not torch.isfinite(sub).all():
            raise ValueError("the substrate contains NaN or infinite values.")
        return sub.clone()
    if not isinstance(substrate, str):
        raise TypeError(f"substrate must be one of {', '.join(SUBSTRATES)} or a tensor, got "
                        f"{type(substrate).__name__}.")
    check_choice(substrate, "substrate", SUBSTRATES)
    if substrate == "black":
        return torch.zeros_like(x)
    if substrate == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    sigma = check_fraction(blur_sigma, "blur_sigma", low=0.0, high=float("inf"), inclusive=False)
    return _gaussian_blur(x, sigma)


def _pixel_curves(model, x, maps, target, steps, substrate, blur_sigma, batch_size, progress,
                  mode: str, value_range) -> InterventionResult:
    x = prepare_inputs(model, x, value_range=value_range)
    progress = check_bool(progress, "progress")
    maps = check_maps(maps, x)
    steps = check_positive_int(steps, "steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    base = make_substrate(x, substrate, blur_sigma=blur_sigma)
    n, c, h, w = x.shape
    hw = h * w
    if steps > hw:
        raise ValueError(f"steps={steps} is more than the {hw} pixels of an image; use at most {hw}.")
    t, p_clean = target_classes(model, x, target, batch_size)
    flat = maps.reshape(n, hw)
    is_flat = flat.amax(1) == flat.amin(1)
    if is_flat.any():
        warnings.warn(f"{int(is_flat.sum())} of {n} maps are constant, so their pixel order is "
                      "arbitrary (raster order); their curves say nothing about the explanation "
                      "(see extra['flat_maps']).", UserWarning, stacklevel=3)
    # rank[n, p] = position of pixel p in image n's order (0 = most important); stable ties.
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(hw, device=x.device).expand(n, hw))
    counts = torch.div(torch.arange(steps + 1, device=x.device) * hw, steps, rounding_mode="floor")
    deleting = mode == "deletion"
    # The unperturbed image (deletion's first point, insertion's last) was already evaluated
    # for the targets: only the other ``steps`` points of each curve go through the model.
    ks = torch.arange(1, steps + 1, device=x.device) if deleting else torch.arange(steps, device=x.device)

    def make_rows(s: int, e: int) -> torch.Tensor:
        r = torch.arange(s, e, device=x.device)
        i, k = r // steps, ks[r % steps]
        changed = (rank[i] < counts[k][:, None]).view(-1, 1, h, w)
        return torch.where(changed, base[i], x[i]) if deleting else torch.where(changed, x[i], base[i])

    probs = batched_probabilities(model, n * steps, make_rows, batch_size, progress, mode, x.device)
    moved = probs.gather(1, t.repeat_interleave(steps)[:, None]).view(n, steps)
    clean = p_clean.to(moved.dtype)[:, None]
    curves = torch.cat([clean, moved], 1) if deleting else torch.cat([moved, clean], 1)
    s_pts = steps + 1
    auc = torch.trapezoid(curves, dx=1.0 / steps, dim=1)
    grid = torch.linspace(0, 1, s_pts, device=x.device, dtype=curves.dtype)
    name = substrate if isinstance(substrate, str) else "tensor"
    return InterventionResult(mode, not deleting, auc, curves, grid,
                              {"target": t, "substrate": name, "steps": steps,
                               "pixels": counts, "flat_maps": is_flat})


@declares_direction("worse")
def deletion(model, x: torch.Tensor, maps: torch.Tensor, *, target=None, steps: int = 28,
             substrate="black", blur_sigma: float = 5.0, batch_size: int = 512,
             progress: bool = False,
             value_range: tuple[float, float] | None = PIXELS) -> InterventionResult:
    """Pixel-wise deletion (Petsiuk et al., 2018): remove the most important pixels first.

    Pixels are ranked by the map (descending; ties keep raster order, so the result is
    deterministic), and after ``k`` of ``steps`` equal chunks the first ``floor(k * H * W /
    steps)`` pixels (all channels) are replaced by the substrate. The curve is the softmax
    probability of the target class after ``k = 0, ..., steps`` chunks, at the fractions
    ``k / steps``; the score is its area by the trapezoid rule on ``[0, 1]``. Removing the
    "cause" should make the prediction collapse: deletion approximates the *necessity* of the
    highlighted pixels, and a good explanation has a **low** AUC.

    The ``N * steps`` masked images are built chunk by chunk and evaluated ``batch_size`` at a
    time (no loop over images or steps); the unperturbed point of each curve reuses the
    forward pass that finds the target, so the cost is that of ``N * (steps + 1)`` images.

    Parameters
    ----------
    model : callable
        Images -> logits; an ``nn.Module`` must be in eval mode.
    x : torch.Tensor
        Images ``(N, C, H, W)``.
    maps : torch.Tensor
        ``(N, H, W)`` importance maps (any real values; only their order matters).
    target : None, int, sequence of int or (N,) tensor
        Class whose probability is tracked; ``None`` = the prediction on the unmasked image.
    steps : int, default 28
        Number of chunks (``28`` deletes one 28-pixel row's worth per step on 28x28 images).
    substrate : {"black", "mean", "blur"} or torch.Tensor, default "black"
        What deleted pixels become; see :func:`make_substrate`.
    blur_sigma : float, default 5.0
        Standard deviation in pixels of the ``"blur"`` substrate.
    batch_size : int, default 512
        Masked images per forward pass.
    progress : bool, default False
    value_range : (low, high) or None, default (0, 1)
        The range the images must lie in; ``None`` for a model that takes other inputs.

    Returns
    -------
    InterventionResult
        ``name="deletion"``, ``higher_is_better=False``, ``scores`` = AUC ``(N,)``, ``curves``
        ``(N, steps + 1)``, ``x`` = ``linspace(0, 1, steps + 1)``; ``extra``: ``"target"``,
        ``"substrate"``, ``"steps"``, ``"pixels"`` (pixels removed at each point),
        ``"flat_maps"`` (``(N,)`` bool: constant maps, whose order is arbitrary; a warning is
        issued when there are any).

    Taught in Part 4, section "Evaluation 2: pixel-wise deletion and insertion".
    """
    return _pixel_curves(model, x, maps, target, steps, substrate, blur_sigma, batch_size, progress,
                         "deletion", value_range)


@declares_direction("better")
def insertion(model, x: torch.Tensor, maps: torch.Tensor, *, target=None, steps: int = 28,
              substrate="blur", blur_sigma: float = 5.0, batch_size: int = 512,
              progress: bool = False,
              value_range: tuple[float, float] | None = PIXELS) -> InterventionResult:
    """Pixel-wise insertion (Petsiuk et al., 2018): reveal the most important pixels first.

    Start from the substrate (default a blurred copy of the image; the slides use a mean
    image) and put back the original pixels in the order of the map, in ``steps`` equal chunks;
    the curve is the target probability after ``k = 0, ..., steps`` chunks and the score its
    trapezoid area on ``[0, 1]``. Adding the "cause" should bring the prediction back: insertion
    approximates the *sufficiency* of the highlighted pixels, and a good explanation has a
    **high** AUC. Parameters, ordering and chunking as in :func:`deletion`.

    Returns
    -------
    InterventionResult
        ``name="insertion"``, ``higher_is_better=True``; the rest as in :func:`deletion`
        (``extra["pixels"]`` counts the pixels revealed).

    Taught in Part 4, section "Evaluation 2: pixel-wise deletion and insertion".
    """
    return _pixel_curves(model, x, maps, target, steps, substrate, blur_sigma, batch_size, progress,
                         "insertion", value_range)



# ---------------------------------------------------------------------------------------------
# Prompts as interventions, and a plausibility measure of maps
# ---------------------------------------------------------------------------------------------
def occlude(x: torch.Tensor, points, *, size: int = 7, value: float = 0.0) -> torch.Tensor:
    """Occlude square patches centred on ``points`` (a user's "prompts") in every image.

    ``points`` is a sequence of ``(row, col)`` pixel positions; each gets a ``size x size``
    square set to ``value`` (clipped at the image border). An empty sequence returns a copy of
    ``x``. The executable analogue of point prompts in the book: the reader places occlusions and
    watches the prediction and the explanation change.

    Taught in Part 4, section "Through the prompting glass: actuate".
    """
    check_images(x, "x")
    size = check_positive_int(size, "size")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"value must lie in [0, 1] (a pixel value), got {value}.")
    try:
        pts = [(int(r), int(c)) for r, c in points]
    except (TypeError, ValueError):
        raise TypeError(f"points must be a sequence of (row, col) pairs, got {points!r}.") from None
    h, w = x.shape[-2:]
    out = x.clone()
    half = size // 2
    for r, c in pts:
        if not (0 <= r < h and 0 <= c < w):
            raise ValueError(f"point {(r, c)} lies outside the {h}x{w} image; rows and columns start at 0.")
        out[..., max(r - half, 0):min(r - half + size, h), max(c - half, 0):min(c - half + size, w)] = value
    return out


@declares_direction("better")
def energy_inside(maps: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Fraction of each map's total mass that falls inside a region (N,): 1 = all on the region.

    With ``regions`` = the object's pixels (e.g. ``x > 0.05`` on Fashion-MNIST's black
    background) this is an "energy-based pointing game": a plausibility measure of a map that
    needs no network. A map of zeros gives 0.

    Parameters
    ----------
    maps : Tensor (N, H, W)
        Non-negative, finite maps (float or integer).
    regions : Tensor (N, H, W)
        Boolean masks, or 0/1 masks of any dtype; any other value (e.g. a label image with 5)
        raises, since it would weight pixels instead of selecting them.

    Returns
    -------
    Tensor (N,)
        float32 fractions in ``[0, 1]``.

    Taught in Part 4, section "The dangers of incomplete interventions: SHAPE vs RISE".
    """
    if not isinstance(maps, torch.Tensor) or maps.dim() != 3:
        raise ValueError(f"maps must be a (N, H, W) tensor, got "
                         f"{tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__}.")
    if maps.shape[0] == 0:
        raise ValueError("maps is an empty batch (N=0); pass at least one map.")
    if maps.is_complex() or maps.dtype == torch.bool:
        raise TypeError(f"maps must be real-valued (float or integer) maps, got dtype {maps.dtype}.")
    if not isinstance(regions, torch.Tensor) or regions.shape != maps.shape:
        raise ValueError(f"regions must be a (N, H, W) tensor shaped like maps {tuple(maps.shape)}; "
                         "squeeze the channel axis of a (N, 1, H, W) mask first.")
    m = maps.detach().float()
    bad = ~torch.isfinite(m)
    if bad.any():
        rows = bad.flatten(1).any(1).nonzero().flatten().tolist()
        raise ValueError(f"maps contain NaN or infinite values (maps {rows[:10]}"
                         f"{' ...' if len(rows) > 10 else ''}); a min-max normalisation of a constant "
                         "map divides by zero. Recompute them, or replace the values with "
                         "torch.nan_to_num(maps, nan=0.0) if an empty map is meant.")
    if (m < 0).any():
        raise ValueError("maps must be non-negative (min-max normalise them first).")
    if regions.dtype != torch.bool:
        if regions.is_complex():
            raise TypeError(f"regions must be a boolean or 0/1 mask, got dtype {regions.dtype}.")
        r = regions.detach()
        if not ((r == 0) | (r == 1)).all():
            vals = torch.unique(r[(r != 0) & (r != 1)])[:5].tolist()
            raise ValueError(f"regions must be a boolean or 0/1 mask, got other values {vals}; "
                             "build it with a comparison (e.g. x[:, 0] > 0.05, or labels == k).")
    inside_mask = regions.to(device=m.device, dtype=torch.bool)
    total = m.flatten(1).sum(1)
    inside = (m * inside_mask).flatten(1).sum(1)
    frac = torch.where(total > 0, inside / total.clamp_min(1e-12), torch.zeros_like(total))
    return frac.clamp_(0.0, 1.0)
