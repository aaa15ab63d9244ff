"""Test-time augmentation (TTA): several views of one input at inference, their predictions pooled.

The MIPR tutorial's first future direction: pass *multiple augmentations* of a test input
through the trained network and combine the outputs; the research question is which
augmentations to use. This module keeps that question explicit:

* a :class:`View` is a named, deterministic, label-preserving *candidate* transformation of a
  batch (:func:`shift` by whole pixels with a fill value, :func:`hflip`); :func:`standard_views`
  builds the sets the Conclusions compare;
* :func:`tta_probs` runs the model on every view and returns the ``(T, N, C)`` stack of softmax
  outputs, views first, like :func:`robust_utils.uncertainty.mc_dropout_probs`;
* :func:`tta_predict` pools them (the mean of the probabilities) and splits the predictive
  entropy into the mean entropy of the views and their disagreement, with
  :func:`robust_utils.uncertainty.decompose_uncertainty`: the same decomposition as MC dropout
  and ensembles, with views in place of weights.

ttach (``ClassificationTTAWrapper``) averages the same way; the tests check the two agree.

Taught in the Conclusions, section "Test-time augmentation".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import (check_choice, check_images, check_model_input, check_number, check_positive_int, check_seed,
                      model_device)
from .metrics import declares_direction
from .uncertainty import decompose_uncertainty

__all__ = ["View", "shift", "hflip", "random_shift", "standard_views", "VIEW_SETS", "tta_probs", "tta_predict"]


def _check_shift(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} must be a whole number of pixels (an int), got {v!r}.")
    return v


def shift(x: torch.Tensor, dy: int, dx: int, fill: float = 0.0) -> torch.Tensor:
    """``x`` moved ``dy`` pixels down and ``dx`` pixels right; uncovered pixels get ``fill``.

    Pixel ``(i, j)`` of the result is pixel ``(i - dy, j - dx)`` of ``x`` where that exists.
    Fashion-MNIST's background is 0, so ``fill=0`` adds no ink. A shift at least as large as the
    image leaves only ``fill``.

    Taught in the Conclusions, section "Test-time augmentation".
    """
    check_images(x, "x", value_range=None)
    dy, dx = _check_shift(dy, "dy"), _check_shift(dx, "dx")
    fill = check_number(fill, "fill", minimum=None)
    h, w = x.shape[-2:]
    if abs(dy) >= h or abs(dx) >= w:
        return torch.full_like(x, fill)
    padded = F.pad(x, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)), value=fill)
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top:top + h, left:left + w]


def hflip(x: torch.Tensor) -> torch.Tensor:
    """``x`` mirrored left to right.

    Taught in the Conclusions, section "Test-time augmentation".
    """
    check_images(x, "x", value_range=None)
    return x.flip(-1)


def random_shift(x: torch.Tensor, max_pixels: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image moved by its own ``(dy, dx)``, both drawn uniformly from ``-max_pixels..max_pixels``
    (seeded; fill 0): a small, label-preserving domain shift for testing TTA. Returns the
    images and the ``(N, 2)`` shifts.

    Taught in the Conclusions, section "Test-time augmentation".
    """
    check_images(x, "x", value_range=None)
    m = check_positive_int(max_pixels, "max_pixels", minimum=0)
    g = torch.Generator().manual_seed(check_seed(seed))
    d = torch.randint(-m, m + 1, (len(x), 2), generator=g)
    out = torch.empty_like(x)
    for dy, dx in {tuple(v) for v in d.tolist()}:
        idx = ((d[:, 0] == dy) & (d[:, 1] == dx)).nonzero().flatten().to(x.device)
        out[idx] = shift(x[idx], dy, dx)
    return out, d


@dataclass(frozen=True)
class View:
    """One test-time view: a ``name`` for tables and ``fn(x) -> x'`` (same shape, deterministic).

    Taught in the Conclusions, section "Test-time augmentation".
    """
    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"a View needs a non-empty name, got {self.name!r}.")
        if not callable(self.fn):
            raise TypeError(f"View {self.name!r}: fn must be callable, got {type(self.fn).__name__}.")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fn(x)
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"View {self.name!r} must return a tensor of the input's shape {tuple(x.shape)}, "
                             f"got {got}.")
        return out


def _shift_view(dy: int, dx: int) -> View:
    arrow = {(0, 1): "right", (0, -1): "left", (1, 0): "down", (-1, 0): "up"}
    unit = (dy // abs(dy) if dy else 0, dx // abs(dx) if dx else 0)
    n = max(abs(dy), abs(dx))
    name = f"shift {n} px {arrow[unit]}" if unit in arrow else f"shift ({dy}, {dx}) px"
    return View(name, lambda x, dy=dy, dx=dx: shift(x, dy, dx))


#: The named view sets of :func:`standard_views`.
VIEW_SETS = ("identity", "shifts", "flip", "shifts+flip")


def standard_views(kind: str = "shifts", pixels: int = 1) -> list[View]:
    """The view sets the Conclusions compare; the identity always comes first.

    * ``"identity"``: the input alone (TTA reduces to one ordinary prediction);
    * ``"shifts"``: the identity and four shifts by ``pixels`` (up, down, left, right);
    * ``"flip"``: the identity and the mirror image;
    * ``"shifts+flip"``: both.

    Taught in the Conclusions, section "Test-time augmentation".
    """
    check_choice(kind, "view set", VIEW_SETS)
    pixels = check_positive_int(pixels, "pixels")
    views = [View("identity", lambda x: x)]
    if "shifts" in kind:
        views += [_shift_view(dy, dx) for dy, dx in ((-pixels, 0), (pixels, 0), (0, -pixels), (0, pixels))]
    if "flip" in kind:
        views.append(View("mirror", hflip))
    return views


def _check_views(views) -> list[View]:
    if isinstance(views, View):
        raise TypeError("views must be a list of View objects; wrap a single view as [view].")
    views = list(views) if isinstance(views, Sequence) and not isinstance(views, str) else None
    if not views:
        raise ValueError("views must be a non-empty list of View objects, e.g. tta.standard_views('shifts').")
    bad = [type(v).__name__ for v in views if not isinstance(v, View)]
    if bad:
        raise TypeError(f"views must hold View objects (tta.View(name, fn)), got {bad}.")
    names = [v.name for v in views]
    if len(set(names)) != len(names):
        raise ValueError(f"view names must be distinct, got {names}.")
    return views


def tta_probs(model: nn.Module, x: torch.Tensor, views, *, batch_size: int = 1000) -> torch.Tensor:
    """Softmax outputs of ``model`` on every view of ``x``: a ``(T, N, C)`` tensor, views first.

    The model runs in eval mode without gradients (its mode is restored); ``x`` holds ``[0, 1]``
    images, and a view's output is clamped back to ``[0, 1]``.

    Taught in the Conclusions, section "Test-time augmentation".
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    check_model_input(model, x, "x", value_range=(0.0, 1.0))
    views = _check_views(views)
    batch_size = check_positive_int(batch_size, "batch_size")
    dev = model_device(model)
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for v in views:
                probs = []
                for i in range(0, len(x), batch_size):
                    xb = x[i:i + batch_size].to(dev)
                    probs.append(model(v(xb).clamp(0, 1)).softmax(-1))
                out.append(torch.cat(probs))
    finally:
        model.train(was_training)
    return torch.stack(out).to(x.device)


@declares_direction("more uncertain")
def tta_predict(model: nn.Module, x: torch.Tensor, views, *, batch_size: int = 1000) -> dict[str, torch.Tensor]:
    """Pool the views' predictions: the mean probability and its uncertainty decomposition.

    Returns :func:`robust_utils.uncertainty.decompose_uncertainty` of :func:`tta_probs`, whose
    ``"epistemic"`` entry is here the *disagreement* between views (the mutual information
    between the prediction and the view), plus ``"probs"``, the ``(T, N, C)`` stack itself. The
    uncertainties are in nats; higher means more uncertain.

    Taught in the Conclusions, section "Test-time augmentation".
    """
    probs = tta_probs(model, x, views, batch_size=batch_size)
    out = decompose_uncertainty(probs)
    out["probs"] = probs
    return out
