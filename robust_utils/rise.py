"""Random interventions as explanations: RISE and SHAPE.

:func:`rise` (Petsiuk et al., 2018) averages random masks weighted by the class probability of
the masked image, and :func:`shape` (Chowdhury et al., 2024) averages the *inverse* masks
weighted by the *drop* in probability. SHAPE maps look like noise to a human, yet score at
least as well as RISE on insertion and deletion (:mod:`robust_utils.interventions`): the
tutorial's warning that an objective metric can be gamed. Both use the same random masks
(:func:`rise_masks`), and :func:`rise_and_shape` computes the two from one set of forward
passes.

Taught in Part 4, sections "The network and the explanations to evaluate" and "The dangers of
incomplete interventions: SHAPE vs RISE".
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from ._checks import check_fraction, check_positive_int, check_seed
from .config import progress_bar
from .interventions import model_logits, prepare_inputs, target_classes

__all__ = [
    "rise_masks",
    "rise",
    "shape",
    "rise_and_shape",
]

# ---------------------------------------------------------------------------------------------
# 4. Random interventions as explanations: RISE and SHAPE
# ---------------------------------------------------------------------------------------------
def _mask_params(n_masks, size, grid, p_keep, seed):
    n_masks = check_positive_int(n_masks, "n_masks")
    grid = check_positive_int(grid, "grid")
    p_keep = check_fraction(p_keep, "p_keep", inclusive=False)
    seed = check_seed(seed)
    if isinstance(size, torch.Size):
        size = tuple(size)
    if not isinstance(size, Sequence) or isinstance(size, str) or len(size) != 2:
        raise ValueError(f"size must be (H, W), two positive ints, got {size!r}.")
    size = tuple(check_positive_int(v, "each entry of size") for v in size)
    return n_masks, size, grid, p_keep, seed


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

    Taught in Part 4, section "The network and the explanations to evaluate".
    """
    n_masks, size, grid, p_keep, seed = _mask_params(n_masks, size, grid, p_keep, seed)
    cells, dx, dy, cell = _draw_masks(n_masks, size, grid, p_keep, seed)
    return _upsample_masks(cells, dx, dy, cell, size, grid, torch.device(device), dtype)


def _random_saliency(model, x, target, n_masks, grid, p_keep, seed, batch_size, progress,
                     kind: str, value_range=(0.0, 1.0)) -> torch.Tensor:
    x = prepare_inputs(model, x, value_range=value_range)
    n, c, h, w = x.shape
    n_masks, size, grid, p_keep, seed = _mask_params(n_masks, (h, w), grid, p_keep, seed)
    batch_size = check_positive_int(batch_size, "batch_size")
    t, p_clean = target_classes(model, x, target, batch_size)
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
                p = model_logits(model, masked).softmax(1).view(e - s, xi.shape[0], -1)
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
         progress: bool = False, value_range=(0.0, 1.0)) -> torch.Tensor:
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
    value_range : (float, float) or None, default (0, 1)
        The pixel range ``x`` is checked against; ``None`` skips the check (other inputs).

    Returns
    -------
    torch.Tensor
        ``(N, H, W)`` raw saliency (not normalised; its expectation at each pixel is the mean
        probability of the class when that pixel is kept). Use
        :func:`robust_utils.explanations.normalize_maps` for display or heatmap masking.

    Taught in Part 4, section "The network and the explanations to evaluate".
    """
    return _random_saliency(model, x, target, n_masks, grid, p_keep, seed, batch_size, progress, "rise",
                            value_range)


def shape(model, x: torch.Tensor, *, target=None, n_masks: int = 2000, grid: int = 8,
          p_keep: float = 0.5, seed: int = 0, batch_size: int = 512,
          progress: bool = False, value_range=(0.0, 1.0)) -> torch.Tensor:
    """SHAPE saliency (Chowdhury et al., 2024): the drop in probability, weighted by inverse masks.

    .. math::  S_c(x) = \\frac{1}{N (1 - p)} \\sum_{i=1}^{N}
               \\big(f_c(x) - f_c(x \\odot M_i)\\big)\\,(1 - M_i),

    the same random masks as :func:`rise`, but each mask's weight is how much the class
    probability *fell* and it is spread over the pixels the mask *removed*. SHAPE maps look
    like noise to a human, yet existing insertion/deletion metrics score them at least as well
    as RISE (published on ImageNet, ResNet-50: insertion/deletion .771/.104 against RISE's
    .769/.091): the tutorial's example of an objective metric that can be gamed. Parameters
    and returns as in :func:`rise`.

    Taught in Part 4, section "The network and the explanations to evaluate".
    """
    return _random_saliency(model, x, target, n_masks, grid, p_keep, seed, batch_size, progress, "shape",
                            value_range)


def rise_and_shape(model, x: torch.Tensor, *, target=None, n_masks: int = 2000, grid: int = 8,
                   p_keep: float = 0.5, seed: int = 0, batch_size: int = 512,
                   progress: bool = False, value_range=(0.0, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`rise` and :func:`shape` from the same masked forward passes (half the cost).

    Returns ``(rise_map, shape_map)``, equal to the two separate calls with the same arguments.

    Taught in Part 4, section "The network and the explanations to evaluate".
    """
    return _random_saliency(model, x, target, n_masks, grid, p_keep, seed, batch_size, progress, "both",
                            value_range)

