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

3. **Structure-wise (Huffman) deletion and insertion** (:func:`structure_deletion`,
   :func:`structure_insertion`). Humans do not see pixels but structures, so the x-axis becomes
   the *information* the masked image still holds: for each threshold ``t`` of the map, the
   pixels with ``L >= t`` are deleted (or kept), and the bit ratio

   .. math::  r_t = \\frac{B(\\text{masked image})}{B(\\text{original image})},
              \\qquad B(I) = \\sum_{v} h_I(v)\\, \\ell_I(v),

   (``h_I`` the histogram of the 8-bit pixel values, ``\\ell_I`` the lengths of the Huffman code
   built from it, :func:`huffman_code`, :func:`huffman_bits`) is plotted against the accuracy of
   the masked images. The ideal explanation encodes the most important information in the
   fewest bits.

Random interventions turn into explanations too: :func:`rise` (Petsiuk et al., 2018) averages
random masks weighted by the class probability of the masked image, and :func:`shape`
(Chowdhury et al., 2024) averages the *inverse* masks weighted by the *drop* in probability.
SHAPE maps look like noise to a human, yet score at least as well as RISE on insertion and
deletion: the tutorial's warning that an objective metric can be gamed.

Every evaluation returns an :class:`InterventionResult`: per-image ``scores``, the curves, and
whether higher is better, so that comparisons and confidence intervals are one line away.
Everything is batched over images *and* steps: the masked copies are built chunk by chunk and
sent through the model ``batch_size`` images at a time, with no Python loop over images. Any
callable that maps ``(B, C, H, W)`` images to ``(B, num_classes)`` logits works as the model.

Taught in Part 4, "Intervenability at inference".
"""
from __future__ import annotations

import heapq
import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import (check_choice, check_eval_model, check_fraction, check_images, check_labels,
                      check_positive_int)
from .config import progress_bar

__all__ = [
    "InterventionResult",
    "SUBSTRATES",
    "DEFAULT_THRESHOLDS",
    "make_substrate",
    "heatmap_masking",
    "deletion",
    "insertion",
    "huffman_code",
    "huffman_bits",
    "structure_deletion",
    "structure_insertion",
    "rise_masks",
    "rise",
    "shape",
    "rise_and_shape",
    "occlude",
    "energy_inside",
]

#: Named substrates of :func:`deletion` / :func:`insertion` (a tensor is also accepted).
SUBSTRATES = ("black", "mean", "blur")

#: Default thresholds of the structure-wise evaluations: 0, 0.1, ..., 1.
DEFAULT_THRESHOLDS = tuple(i / 10 for i in range(11))


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

    Taught in Part 4, section "Explanation evaluation".
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


def _prepare(model, x) -> torch.Tensor:
    _check_model(model)
    check_images(x, "x", value_range=None)
    return x.detach().to(_device(model, x))


def _check_maps(maps, x: torch.Tensor, name: str = "maps", unit: bool = False) -> torch.Tensor:
    """``(N, H, W)`` (or ``(N, 1, H, W)``) finite float maps matching ``x``, on its device."""
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


def _logits(model, images: torch.Tensor) -> torch.Tensor:
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
def _clean_logits(model, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([_logits(model, x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def _targets(model, x: torch.Tensor, target, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Target classes (default: the prediction) and their probability on the unmasked images."""
    from .explanations import _class_indices

    logits = _clean_logits(model, x, batch_size)
    if target is None:
        t = logits.argmax(1)
    else:
        t = _class_indices(target, x.shape[0], logits.shape[1], "target", logits.device)
    p = logits.softmax(1).gather(1, t[:, None]).squeeze(1)
    return t.to(x.device), p.to(x.device)


@torch.no_grad()
def _chunked(model, n_rows: int, make_rows: Callable[[int, int], tuple], batch_size: int,
             progress: bool, desc: str, device) -> torch.Tensor:
    """Run ``make_rows(start, stop) -> (images, classes)`` through the model in chunks.

    Returns the ``(n_rows, num_classes)`` softmax probabilities of every row, on ``device``.
    Only one chunk of masked images exists at a time, so memory stays ``O(batch_size)``.
    """
    starts = range(0, n_rows, batch_size)
    it = progress_bar(starts, total=len(starts), desc=desc) if progress else starts
    out = []
    for s in it:
        images = make_rows(s, min(s + batch_size, n_rows))
        out.append(_logits(model, images).softmax(1).to(device))
    return torch.cat(out)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}.")
    return seed


# ---------------------------------------------------------------------------------------------
# 1. Explanation heatmap masking
# ---------------------------------------------------------------------------------------------
def heatmap_masking(model, x: torch.Tensor, maps: torch.Tensor, *, target=None, batch_size: int = 512,
                    allow_empty: bool = False) -> InterventionResult:
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

    Returns
    -------
    InterventionResult
        ``name="heatmap_masking"``, higher is better; ``scores`` = ``p(target | x * map)``
        ``(N,)``; ``extra``: ``"unmasked"`` = ``p(target | x)``, ``"drop"`` =
        ``max(0, unmasked - masked) / unmasked`` (the paper's "average drop" per image),
        ``"increase"`` = ``masked > unmasked`` (its "increase in confidence"), ``"target"``.

    Taught in Part 4, section "Evaluation 1: explanation heatmap masking".
    """
    x = _prepare(model, x)
    maps = _check_maps(maps, x, unit=True)
    batch_size = check_positive_int(batch_size, "batch_size")
    empty = maps.flatten(1).amax(1) <= 0
    if empty.any() and not allow_empty:
        idx = empty.nonzero().flatten().tolist()
        more = " ..." if len(idx) > 10 else ""
        raise ValueError(f"{len(idx)} map(s) are all zero (images {idx[:10]}{more}): "
                         "masking with them deletes the whole image. Drop those images, or pass "
                         "allow_empty=True to score them anyway.")
    t, p_clean = _targets(model, x, target, batch_size)
    masked = x * maps[:, None]
    probs = _chunked(model, x.shape[0], lambda s, e: masked[s:e], batch_size, False, "", x.device)
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

    Taught in Part 4, section "Evaluation 2: pixel-wise insertion and deletion".
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
                  mode: str) -> InterventionResult:
    x = _prepare(model, x)
    maps = _check_maps(maps, x)
    steps = check_positive_int(steps, "steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    base = make_substrate(x, substrate, blur_sigma=blur_sigma)
    n, c, h, w = x.shape
    hw = h * w
    if steps > hw:
        raise ValueError(f"steps={steps} is more than the {hw} pixels of an image; use at most {hw}.")
    t, p_clean = _targets(model, x, target, batch_size)
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

    probs = _chunked(model, n * steps, make_rows, batch_size, progress, mode, x.device)
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


def deletion(model, x: torch.Tensor, maps: torch.Tensor, *, target=None, steps: int = 28,
             substrate="black", blur_sigma: float = 5.0, batch_size: int = 512,
             progress: bool = False) -> InterventionResult:
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

    Returns
    -------
    InterventionResult
        ``name="deletion"``, ``higher_is_better=False``, ``scores`` = AUC ``(N,)``, ``curves``
        ``(N, steps + 1)``, ``x`` = ``linspace(0, 1, steps + 1)``; ``extra``: ``"target"``,
        ``"substrate"``, ``"steps"``, ``"pixels"`` (pixels removed at each point),
        ``"flat_maps"`` (``(N,)`` bool: constant maps, whose order is arbitrary; a warning is
        issued when there are any).

    Taught in Part 4, section "Evaluation 2: pixel-wise insertion and deletion".
    """
    return _pixel_curves(model, x, maps, target, steps, substrate, blur_sigma, batch_size, progress,
                         "deletion")


def insertion(model, x: torch.Tensor, maps: torch.Tensor, *, target=None, steps: int = 28,
              substrate="blur", blur_sigma: float = 5.0, batch_size: int = 512,
              progress: bool = False) -> InterventionResult:
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

    Taught in Part 4, section "Evaluation 2: pixel-wise insertion and deletion".
    """
    return _pixel_curves(model, x, maps, target, steps, substrate, blur_sigma, batch_size, progress,
                         "insertion")


# ---------------------------------------------------------------------------------------------
# 3. Structure-wise (Huffman) deletion and insertion
# ---------------------------------------------------------------------------------------------
def _histogram_items(histogram) -> list[tuple[int, float]]:
    """``[(symbol, count), ...]`` with positive counts, from a mapping or a 1-D sequence."""
    if isinstance(histogram, Mapping):
        items = list(histogram.items())
    else:
        if isinstance(histogram, torch.Tensor):
            histogram = histogram.detach().cpu()
            if histogram.dim() != 1:
                raise ValueError(f"histogram must be 1-D (one count per symbol), got shape "
                                 f"{tuple(histogram.shape)}.")
            histogram = histogram.tolist()
        elif hasattr(histogram, "tolist") and hasattr(histogram, "ndim"):  # numpy
            if histogram.ndim != 1:
                raise ValueError(f"histogram must be 1-D (one count per symbol), got {histogram.ndim}-D.")
            histogram = histogram.tolist()
        if isinstance(histogram, (str, bytes)) or not isinstance(histogram, Sequence):
            raise TypeError("histogram must be a sequence of counts (index = symbol) or a mapping "
                            f"symbol -> count, got {type(histogram).__name__}.")
        items = list(enumerate(histogram))
    out = []
    for s, cnt in items:
        if isinstance(s, bool) or not isinstance(s, int):
            raise TypeError(f"histogram symbols must be ints, got {s!r}.")
        if isinstance(cnt, bool) or not isinstance(cnt, (int, float)) or not math.isfinite(cnt):
            raise TypeError(f"the count of symbol {s} must be a finite number, got {cnt!r}.")
        if cnt < 0:
            raise ValueError(f"the count of symbol {s} is negative ({cnt}); counts must be >= 0.")
        if cnt > 0:
            out.append((s, cnt))
    if not out:
        raise ValueError("histogram is empty or all zero: there is no symbol to encode.")
    return sorted(out)


def huffman_code(histogram) -> dict[int, str]:
    """A Huffman code (Huffman, 1952) for symbols with the given counts.

    The two least frequent subtrees are merged until one tree is left; the first of the pair
    gets the bit ``0``, the second ``1``. Ties are broken deterministically (by the smallest
    symbol for leaves, then by creation order for merged subtrees), so the same histogram
    always gives the same code. The code is prefix-free and optimal: its mean length ``L``
    satisfies ``H <= L < H + 1`` for the entropy ``H`` of the histogram in bits. A histogram
    with a single symbol gets the one-bit code ``"0"`` (a code needs at least one bit per
    symbol).

    Parameters
    ----------
    histogram : sequence, 1-D tensor/array, or mapping
        Counts per symbol (index = symbol), or ``{symbol: count}``. Zero counts are skipped.

    Returns
    -------
    dict[int, str]
        Symbol -> code word, for the symbols with a positive count.

    Taught in Part 4, section "Evaluation 3: structure-wise insertion and deletion".
    """
    items = _histogram_items(histogram)
    if len(items) == 1:
        return {items[0][0]: "0"}
    heap = [(cnt, order, s) for order, (s, cnt) in enumerate(items)]
    heapq.heapify(heap)
    children: dict[int, tuple[int, int]] = {}
    next_id = len(items)
    leaf_symbol = {order: s for order, (s, _) in enumerate(items)}
    while len(heap) > 1:
        c0, i0, _ = heapq.heappop(heap)
        c1, i1, _ = heapq.heappop(heap)
        children[next_id] = (i0, i1)
        heapq.heappush(heap, (c0 + c1, next_id, -1))
        next_id += 1
    code: dict[int, str] = {}
    stack = [(heap[0][1], "")]
    while stack:
        node, prefix = stack.pop()
        if node in children:
            left, right = children[node]
            stack.append((right, prefix + "1"))
            stack.append((left, prefix + "0"))
        else:
            code[leaf_symbol[node]] = prefix
    return dict(sorted(code.items()))


def _quantise(images) -> torch.Tensor:
    """``(N, ...)`` uint8 or [0, 1] float images -> ``(N, P)`` long pixel values in 0..255."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor (N, ...), got {type(images).__name__}.")
    if images.dim() < 2 or images.shape[0] == 0 or images[0].numel() == 0:
        raise ValueError(f"images must be a non-empty batch shaped (N, ...) with N first, got shape "
                         f"{tuple(images.shape)}; add a batch dimension with unsqueeze(0).")
    if images.dtype == torch.uint8:
        return images.reshape(images.shape[0], -1).long()
    if not torch.is_floating_point(images):
        raise TypeError(f"images must be uint8 (0..255) or float in [0, 1], got dtype {images.dtype}.")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or infinite values.")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise ValueError(f"float images must lie in [0, 1] (they are quantised to 8 bits as "
                         f"round(255 x)), got values in [{lo:.3g}, {hi:.3g}].")
    return (images.reshape(images.shape[0], -1) * 255).round().clamp(0, 255).long()


def _histograms(q: torch.Tensor) -> torch.Tensor:
    counts = torch.zeros(q.shape[0], 256, dtype=torch.long, device=q.device)
    return counts.scatter_add_(1, q, torch.ones_like(q))


def _huffman_cost(counts: torch.Tensor) -> torch.Tensor:
    """Total Huffman code length of each row of ``(B, K)`` counts, batched over rows.

    The cost of a Huffman code equals the sum of the weights of its merged nodes, so the
    merges of all rows run together: each step merges the two smallest weights of every row
    that still has two subtrees. A single-symbol row costs one bit per symbol.
    """
    nnz = (counts > 0).sum(1)
    total = counts.sum(1)
    sentinel = torch.iinfo(torch.long).max // 4
    w = torch.where(counts > 0, counts, torch.full_like(counts, sentinel))
    cost = torch.zeros_like(total)
    for _ in range(max(int(nnz.max()) - 1, 0)):
        vals, idx = torch.topk(w, 2, dim=1, largest=False)
        a, b = vals[:, 0], vals[:, 1]
        active = b < sentinel
        merged = a + b
        cost += torch.where(active, merged, torch.zeros_like(merged))
        w.scatter_(1, idx[:, :1], torch.where(active, merged, a)[:, None])
        w.scatter_(1, idx[:, 1:], torch.where(active, torch.full_like(b, sentinel), b)[:, None])
    return torch.where(nnz == 1, total, cost)


def huffman_bits(images, code: Mapping[int, str] | None = None) -> torch.Tensor:
    """Number of bits needed to Huffman-encode each image's 8-bit pixels.

    Pixels are quantised to 8 bits (``round(255 x)`` for float images in ``[0, 1]``; uint8 as
    is). With ``code=None`` each image gets its own optimal code, built from its own
    histogram (as :func:`huffman_code` would: every Huffman code of a histogram has the same
    total length), and the result is ``sum_v h(v) len(code(v))``; all channels are pooled. The
    lengths are computed for the whole batch at once. The code table itself is not counted,
    and a constant image costs one bit per pixel (a code word has at least one bit).

    Parameters
    ----------
    images : torch.Tensor
        ``(N, ...)``, uint8 or float in ``[0, 1]``.
    code : dict[int, str], optional
        A fixed code (e.g. ``huffman_code`` of a reference histogram) used for every image; it
        must have a word for every pixel value that occurs.

    Returns
    -------
    torch.Tensor
        ``(N,)`` int64 bit counts.

    Taught in Part 4, section "Evaluation 3: structure-wise insertion and deletion".
    """
    q = _quantise(images)
    counts = _histograms(q)
    if code is None:
        return _huffman_cost(counts)
    if not isinstance(code, Mapping) or not code:
        raise TypeError("code must be a non-empty dict symbol -> code word, e.g. huffman_code(histogram).")
    lengths = torch.full((256,), -1, dtype=torch.long)
    for s, word in code.items():
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= 255:
            raise ValueError(f"code symbols must be 8-bit pixel values 0..255, got {s!r}.")
        if not isinstance(word, str) or not word or set(word) - {"0", "1"}:
            raise ValueError(f"the code word of symbol {s} must be a non-empty string of 0s and 1s, "
                             f"got {word!r}.")
        lengths[s] = len(word)
    lengths = lengths.to(counts.device)
    missing = ((counts > 0) & (lengths < 0)).any(0).nonzero().flatten().tolist()
    if missing:
        raise ValueError(f"the code has no word for pixel value(s) {missing[:10]}"
                         f"{' ...' if len(missing) > 10 else ''}, which occur in the images; build it "
                         "from a histogram that includes them (or use code=None).")
    return (counts * lengths.clamp_min(0)).sum(1)


def _check_thresholds(thresholds, device, dtype) -> torch.Tensor:
    try:
        t = torch.as_tensor(thresholds if not isinstance(thresholds, torch.Tensor)
                            else thresholds.detach().cpu(), dtype=torch.float64)
    except (TypeError, ValueError):
        raise TypeError(f"thresholds must be a sequence of numbers in [0, 1], got {thresholds!r}.") from None
    if t.dim() == 0:
        t = t[None]
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(f"thresholds must be a non-empty 1-D sequence, got shape {tuple(t.shape)}.")
    if not torch.isfinite(t).all() or (t < 0).any() or (t > 1).any():
        raise ValueError(f"thresholds must lie in [0, 1] (the maps are normalised to [0, 1]), got "
                         f"{[round(v, 4) for v in t.tolist()]}.")
    return t.to(device=device, dtype=dtype)


def _structure(model, x, y, maps, thresholds, batch_size, progress, mode: str) -> InterventionResult:
    x = _prepare(model, x)
    n, c, h, w = x.shape
    check_images(x, "x", value_range=(0.0, 1.0))
    check_labels(y, n=n, name="y")
    y = y.to(x.device)
    maps = _check_maps(maps, x, unit=True)
    batch_size = check_positive_int(batch_size, "batch_size")
    thr = _check_thresholds(DEFAULT_THRESHOLDS if thresholds is None else thresholds, x.device, x.dtype)
    n_t = thr.numel()
    clean = _clean_logits(model, x, batch_size)
    if int(y.max()) >= clean.shape[1] or int(y.min()) < 0:
        raise ValueError(f"y must lie in [0, {clean.shape[1] - 1}] (the model has {clean.shape[1]} "
                         f"classes), got values in [{int(y.min())}, {int(y.max())}].")
    clean_correct = (clean.argmax(1).to(x.device) == y).to(x.dtype)
    deleting = mode == "structure_deletion"
    bits_masked = torch.empty(n * n_t, dtype=torch.long, device=x.device)

    def make_rows(s: int, e: int) -> torch.Tensor:
        r = torch.arange(s, e, device=x.device)
        i, k = r // n_t, r % n_t
        sel = (maps[i] >= thr[k][:, None, None])[:, None]          # (B, 1, H, W)
        keep = ~sel if deleting else sel
        masked = x[i] * keep.to(x.dtype)
        bits_masked[s:e] = huffman_bits(masked.clamp(0, 1))
        return masked

    probs = _chunked(model, n * n_t, make_rows, batch_size, progress, mode, x.device)
    probs = probs.view(n, n_t, -1)
    correct = (probs.argmax(2) == y[:, None]).to(x.dtype)
    p_true = probs.gather(2, y[:, None, None].expand(n, n_t, 1)).squeeze(2)
    bits0 = huffman_bits(x.clamp(0, 1))
    ratio = bits_masked.view(n, n_t).to(x.dtype) / bits0[:, None].to(x.dtype)
    accuracy = correct.mean(0)
    mean_ratio = ratio.mean(0)
    # Per-image score: area under correctness vs the image's own bit ratio; the summary area:
    # accuracy vs mean bit ratio (the slides' plot), both by the trapezoid rule in ratio order.
    o = ratio.argsort(dim=1, stable=True)
    scores = torch.trapezoid(correct.gather(1, o), ratio.gather(1, o), dim=1)
    om = mean_ratio.argsort(dim=0, stable=True)
    area = float(torch.trapezoid(accuracy[om], mean_ratio[om])) if n_t > 1 else 0.0
    return InterventionResult(mode, not deleting, scores, correct, thr,
                              {"bit_ratio": ratio, "accuracy": accuracy, "mean_bit_ratio": mean_ratio,
                               "area": area, "probability": p_true, "bits": bits_masked.view(n, n_t),
                               "bits_original": bits0, "accuracy_unmasked": float(clean_correct.mean())})


def structure_deletion(model, x: torch.Tensor, y: torch.Tensor, maps: torch.Tensor, *,
                       thresholds=None, batch_size: int = 512, progress: bool = False) -> InterventionResult:
    """Structure-wise deletion: accuracy against the Huffman bits left after deleting a region.

    For each threshold ``t``, every pixel whose map value is ``>= t`` is deleted (set to 0, all
    channels), the masked images are classified, and the information that is left is measured
    as the bit ratio ``huffman_bits(masked) / huffman_bits(original)`` (each image encoded
    with its own Huffman code, :func:`huffman_bits`). The slides plot, one point per
    threshold, the accuracy over all images (y-axis) against the ratio (x-axis; smaller =
    fewer bits), one curve per explanation method. A good explanation puts the decisive
    structure in few bits, so deleting it costs accuracy while most of the bits remain: the
    accuracy curve stays **low** (a lower area is better).

    Implemented from the tutorial's slides: no public code exists for the structure-wise
    evaluation. Two choices are ours. (1) The slides' step-by-step text for deletion reads
    "delete (mask) all the pixels in the original image below the threshold"; we delete the
    pixels *at or above* it, so that structure-wise deletion removes what the explanation
    marks important, like pixel-wise deletion; the slides' wording is what
    :func:`structure_insertion` does. (2) The x-axis is the mean over images of the per-image
    bit ratios. Note that a constant (fully deleted) image still costs one bit per pixel, so
    the ratio does not reach 0.

    Parameters
    ----------
    model : callable
        Images -> logits; an ``nn.Module`` must be in eval mode.
    x : torch.Tensor
        Images ``(N, C, H, W)`` in ``[0, 1]`` (they are quantised to 8 bits for the code).
    y : torch.Tensor
        ``(N,)`` ground-truth labels: the y-axis is accuracy.
    maps : torch.Tensor
        ``(N, H, W)`` explanations in ``[0, 1]`` (e.g. min-max normalised CAMs).
    thresholds : sequence of float in [0, 1], optional
        Default :data:`DEFAULT_THRESHOLDS` (0, 0.1, ..., 1).
    batch_size : int, default 512
    progress : bool, default False

    Returns
    -------
    InterventionResult
        ``name="structure_deletion"``, ``higher_is_better=False``; ``curves`` = per-image
        correctness ``(N, T)`` (1.0 or 0.0) at ``x`` = the thresholds ``(T,)``; ``scores``
        ``(N,)`` = the area under an image's correctness against its own bit ratio
        (trapezoid, in ratio order);
        ``extra``: ``"bit_ratio"`` ``(N, T)`` = bits(masked) / bits(original),
        ``"accuracy"`` ``(T,)``, ``"mean_bit_ratio"`` ``(T,)``, ``"area"`` = the area under
        accuracy against mean bit ratio (the slides' plot; over the measured points only, no
        extrapolation to 0 or 1), ``"probability"`` ``(N, T)`` of the true class, ``"bits"``
        ``(N, T)``, ``"bits_original"`` ``(N,)``, ``"accuracy_unmasked"``.

    Taught in Part 4, section "Evaluation 3: structure-wise insertion and deletion".
    """
    return _structure(model, x, y, maps, thresholds, batch_size, progress, "structure_deletion")


def structure_insertion(model, x: torch.Tensor, y: torch.Tensor, maps: torch.Tensor, *,
                        thresholds=None, batch_size: int = 512, progress: bool = False) -> InterventionResult:
    """Structure-wise insertion: accuracy against the Huffman bits of the region kept.

    For each threshold ``t``, only the pixels whose map value is ``>= t`` are kept (the others
    are set to 0: "delete all the pixels below the threshold", the slides' Step 1), the masked
    images are classified, and the bit ratio ``huffman_bits(masked) / huffman_bits(original)``
    measures how much information was inserted. The slides plot the accuracy over all images
    against the ratio, one point per threshold. Ideal: the explanation encodes the most
    important information in the fewest bits, so accuracy is already high at a small ratio (a
    higher area is better). The slides warn that this can reward causal, even adversarial,
    explanations that ignore the context.

    Implemented from the tutorial's slides: no public code exists; see
    :func:`structure_deletion` for the choices made.

    Parameters
    ----------
    model : callable
        Images -> logits; an ``nn.Module`` must be in eval mode.
    x : torch.Tensor
        Images ``(N, C, H, W)`` in ``[0, 1]`` (they are quantised to 8 bits for the code).
    y : torch.Tensor
        ``(N,)`` ground-truth labels: the y-axis is accuracy.
    maps : torch.Tensor
        ``(N, H, W)`` explanations in ``[0, 1]`` (e.g. min-max normalised CAMs).
    thresholds : sequence of float in [0, 1], optional
        Default :data:`DEFAULT_THRESHOLDS` (0, 0.1, ..., 1).
    batch_size : int, default 512
    progress : bool, default False

    Returns
    -------
    InterventionResult
        ``name="structure_insertion"``, ``higher_is_better=True``; ``curves`` = per-image
        correctness ``(N, T)`` (1.0 or 0.0) at ``x`` = the thresholds ``(T,)``; ``scores``
        ``(N,)`` = the area under an image's correctness against its own bit ratio
        (trapezoid, in ratio order);
        ``extra``: ``"bit_ratio"`` ``(N, T)`` = bits(masked) / bits(original),
        ``"accuracy"`` ``(T,)``, ``"mean_bit_ratio"`` ``(T,)``, ``"area"`` = the area under
        accuracy against mean bit ratio (the slides' plot; over the measured points only, no
        extrapolation to 0 or 1), ``"probability"`` ``(N, T)`` of the true class, ``"bits"``
        ``(N, T)``, ``"bits_original"`` ``(N,)``, ``"accuracy_unmasked"``.

    Taught in Part 4, section "Evaluation 3: structure-wise insertion and deletion".
    """
    return _structure(model, x, y, maps, thresholds, batch_size, progress, "structure_insertion")


# ---------------------------------------------------------------------------------------------
# 4. Random interventions as explanations: RISE and SHAPE
# ---------------------------------------------------------------------------------------------
def _mask_params(n_masks, size, grid, p_keep, seed):
    n_masks = check_positive_int(n_masks, "n_masks")
    grid = check_positive_int(grid, "grid")
    p_keep = check_fraction(p_keep, "p_keep", inclusive=False)
    seed = _check_seed(seed)
    if (not isinstance(size, Sequence) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise ValueError(f"size must be (H, W), two positive ints, got {size!r}.")
    return n_masks, tuple(size), grid, p_keep, seed


def _draw_masks(n_masks, size, grid, p_keep, seed):
    """The random part of the masks (binary grids and shifts), drawn on the CPU from ``seed``."""
    h, w = size
    ch, cw = math.ceil(h / grid), math.ceil(w / grid)
    gen = torch.Generator().manual_seed(seed)
    cells = (torch.rand(n_masks, grid, grid, generator=gen) < p_keep).float()
    dx = torch.randint(0, ch, (n_masks,), generator=gen)
    dy = torch.randint(0, cw, (n_masks,), generator=gen)
    return cells, dx, dy, (ch, cw)


def _upsample_masks(cells, dx, dy, cell, size, grid, device, dtype) -> torch.Tensor:
    """Bilinearly upsample ``(m, g, g)`` grids to ``(g + 1) * cell`` and crop ``H x W`` at the shifts."""
    h, w = size
    ch, cw = cell
    up = F.interpolate(cells[:, None].to(device=device, dtype=dtype), size=((grid + 1) * ch, (grid + 1) * cw),
                       mode="bilinear", align_corners=False)[:, 0]
    rows = dx.to(device)[:, None] + torch.arange(h, device=device)
    cols = dy.to(device)[:, None] + torch.arange(w, device=device)
    m = torch.arange(up.shape[0], device=device)
    # clamp: bilinear weights can overshoot 1 by a rounding error.
    return up[m[:, None, None], rows[:, :, None], cols[:, None, :]].clamp_(0, 1)


def rise_masks(n_masks: int, size: tuple[int, int], *, grid: int = 8, p_keep: float = 0.5,
               seed: int = 0, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """RISE's random smooth masks (Petsiuk et al., 2018).

    Each mask starts as a ``grid x grid`` binary grid whose cells are 1 with probability
    ``p_keep``, is upsampled bilinearly to ``(grid + 1) * ceil(H / grid)`` pixels a side, and is
    cropped to ``H x W`` at a random shift of less than one cell, so that the soft edges fall
    anywhere. Drawn from a private :class:`torch.Generator` seeded with ``seed`` (on the CPU, so
    the masks do not depend on the device): deterministic, and the global random state is
    untouched. :func:`rise` and :func:`shape` use exactly these masks.

    Returns
    -------
    torch.Tensor
        ``(n_masks, H, W)`` in ``[0, 1]``.

    Taught in Part 4, section "Dangers of incomplete interventions: RISE and SHAPE".
    """
    n_masks, size, grid, p_keep, seed = _mask_params(n_masks, size, grid, p_keep, seed)
    cells, dx, dy, cell = _draw_masks(n_masks, size, grid, p_keep, seed)
    return _upsample_masks(cells, dx, dy, cell, size, grid, torch.device(device), dtype)


def _random_saliency(model, x, target, n_masks, grid, p_keep, seed, batch_size, progress,
                     kind: str) -> torch.Tensor:
    x = _prepare(model, x)
    n, c, h, w = x.shape
    n_masks, size, grid, p_keep, seed = _mask_params(n_masks, (h, w), grid, p_keep, seed)
    batch_size = check_positive_int(batch_size, "batch_size")
    t, p_clean = _targets(model, x, target, batch_size)
    cells, dx, dy, cell = _draw_masks(n_masks, size, grid, p_keep, seed)
    img_chunk = min(n, batch_size)
    per_chunk = max(1, batch_size // img_chunk)            # masks per forward pass
    sal = torch.zeros(n, h, w, device=x.device, dtype=x.dtype)
    sal2 = torch.zeros_like(sal)
    starts = range(0, n_masks, per_chunk)
    desc = {"rise": "RISE", "shape": "SHAPE", "both": "RISE + SHAPE"}[kind]
    it = progress_bar(starts, total=len(starts), desc=desc) if progress else starts
    with torch.no_grad():
        for s in it:
            e = min(s + per_chunk, n_masks)
            masks = _upsample_masks(cells[s:e], dx[s:e], dy[s:e], cell, size, grid, x.device, x.dtype)
            for i in range(0, n, img_chunk):
                xi, ti = x[i:i + img_chunk], t[i:i + img_chunk]
                masked = (masks[:, None, None] * xi[None]).reshape(-1, c, h, w)   # (m * b, C, H, W)
                p = _logits(model, masked).softmax(1).view(e - s, xi.shape[0], -1)
                p = p.gather(2, ti.view(1, -1, 1).expand(e - s, -1, 1)).squeeze(2).to(x.dtype)  # (m, b)
                if kind in ("rise", "both"):
                    sal[i:i + img_chunk] += torch.einsum("mb,mhw->bhw", p, masks)
                if kind in ("shape", "both"):
                    drop = p_clean[i:i + img_chunk].to(x.dtype)[None] - p
                    sal2[i:i + img_chunk] += torch.einsum("mb,mhw->bhw", drop, 1 - masks)
    if kind == "both":
        return sal / (n_masks * p_keep), sal2 / (n_masks * (1 - p_keep))
    return sal / (n_masks * p_keep) if kind == "rise" else sal2 / (n_masks * (1 - p_keep))


def rise(model, x: torch.Tensor, *, target=None, n_masks: int = 2000, grid: int = 8,
         p_keep: float = 0.5, seed: int = 0, batch_size: int = 512,
         progress: bool = False) -> torch.Tensor:
    """RISE saliency (Petsiuk et al., 2018): random masks weighted by the class probability.

    .. math::  S_c(x) = \\frac{1}{N p} \\sum_{i=1}^{N} f_c(x \\odot M_i)\\, M_i,

    with ``N`` random masks from :func:`rise_masks` (the same masks for every image), keep
    probability ``p`` and ``f_c`` the softmax probability of the target class. A black-box
    method: only forward passes, ``n_masks * N`` masked images evaluated ``batch_size`` at a
    time. "Instead of causal deletion, RISE deletes randomly."

    Parameters
    ----------
    model : callable
        Images -> logits; an ``nn.Module`` must be in eval mode.
    x : torch.Tensor
        Images ``(N, C, H, W)``.
    target : None, int, sequence of int or (N,) tensor
        Class to explain; ``None`` = the prediction.
    n_masks : int, default 2000
    grid : int, default 8
        Cells per side of the random grid.
    p_keep : float in (0, 1), default 0.5
    seed : int, default 0
    batch_size : int, default 512
        Masked images per forward pass.
    progress : bool, default False

    Returns
    -------
    torch.Tensor
        ``(N, H, W)`` raw saliency (not normalised; its expectation at each pixel is the mean
        probability of the class when that pixel is kept). Use
        :func:`robust_utils.explanations.normalize_maps` for display or heatmap masking.

    Taught in Part 4, section "Dangers of incomplete interventions: RISE and SHAPE".
    """
    return _random_saliency(model, x, target, n_masks, grid, p_keep, seed, batch_size, progress, "rise")


def shape(model, x: torch.Tensor, *, target=None, n_masks: int = 2000, grid: int = 8,
          p_keep: float = 0.5, seed: int = 0, batch_size: int = 512,
          progress: bool = False) -> torch.Tensor:
    """SHAPE saliency (Chowdhury et al., 2024): the drop in probability, weighted by inverse masks.

    .. math::  S_c(x) = \\frac{1}{N (1 - p)} \\sum_{i=1}^{N}
               \\big(f_c(x) - f_c(x \\odot M_i)\\big)\\,(1 - M_i),

    the same random masks as :func:`rise`, but each mask's weight is how much the class
    probability *fell* and it is spread over the pixels the mask *removed*. SHAPE maps look
    like noise to a human, yet existing insertion/deletion metrics score them at least as well
    as RISE (published on ImageNet, ResNet-50: insertion/deletion .771/.104 against RISE's
    .769/.091): the tutorial's example of an objective metric that can be gamed. Parameters
    and returns as in :func:`rise`.

    Taught in Part 4, section "Dangers of incomplete interventions: RISE and SHAPE".
    """
    return _random_saliency(model, x, target, n_masks, grid, p_keep, seed, batch_size, progress, "shape")


def rise_and_shape(model, x: torch.Tensor, *, target=None, n_masks: int = 2000, grid: int = 8,
                   p_keep: float = 0.5, seed: int = 0, batch_size: int = 512,
                   progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`rise` and :func:`shape` from the same masked forward passes (half the cost).

    Returns ``(rise_map, shape_map)``, equal to the two separate calls with the same arguments.

    Taught in Part 4, section "Dangers of incomplete interventions: RISE and SHAPE".
    """
    return _random_saliency(model, x, target, n_masks, grid, p_keep, seed, batch_size, progress, "both")


# ---------------------------------------------------------------------------------------------
# Prompts as interventions, and a plausibility measure of maps
# ---------------------------------------------------------------------------------------------
def occlude(x: torch.Tensor, points, *, size: int = 7, value: float = 0.0) -> torch.Tensor:
    """Occlude square patches centred on ``points`` (a user's "prompts") in every image.

    ``points`` is a sequence of ``(row, col)`` pixel positions; each gets a ``size x size``
    square set to ``value`` (clipped at the image border). An empty sequence returns a copy of
    ``x``. The executable analogue of point prompts in the book: the reader places occlusions and
    watches the prediction and the explanation change.

    Taught in Part 4, section "The prompting glass".
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


def energy_inside(maps: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Fraction of each map's total mass that falls inside a region (N,): 1 = all on the region.

    With ``regions`` = the object's pixels (e.g. ``x > 0.05`` on Fashion-MNIST's black
    background) this is an "energy-based pointing game": a plausibility measure of a map that
    needs no network. A map of zeros gives 0.

    Taught in Part 4, section "Dangers of incomplete interventions".
    """
    if not isinstance(maps, torch.Tensor) or maps.dim() != 3:
        raise ValueError(f"maps must be a (N, H, W) tensor, got "
                         f"{tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__}.")
    if not isinstance(regions, torch.Tensor) or regions.shape != maps.shape:
        raise ValueError(f"regions must be a (N, H, W) tensor shaped like maps {tuple(maps.shape)}; "
                         "squeeze the channel axis of a (N, 1, H, W) mask first.")
    if (maps < 0).any():
        raise ValueError("maps must be non-negative (min-max normalise them first).")
    m = maps.float()
    total = m.flatten(1).sum(1)
    inside = (m * regions.to(m.dtype)).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-12), torch.zeros_like(total))
