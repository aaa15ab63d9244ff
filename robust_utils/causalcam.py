"""CausalCAM: the part of Grad-CAM that is not about contrast.

Prabhushankar and AlRegib ("Extracting causal visual features for limited label classification",
ICIP 2021) split the features Grad-CAM shows for a prediction P into **contrast** (context)
features, those that separate P from some contrast class Q, and **causal** features, the rest, and
separate the two "with a set-theoretic approach"; the AAAI 2024 tutorial compares the result with
Grad-CAM and Grad-CAM++ under structure-wise insertion and deletion. Our sources give no equation,
so the book reads the set operations as fuzzy-set operations on maps in ``[0, 1]`` (Zadeh's
union = max, complement = ``1 - m``, intersection = min):

.. math:: \\mathrm{context}(x) = \\max_{Q \\ne P} \\frac{\\mathrm{ContrastCAM}_Q(x)}{\\max_{Q' \\ne P} \\lVert
          \\mathrm{ContrastCAM}_{Q'}(x)\\rVert_\\infty}, \\qquad
          \\mathrm{causal}(x) = \\min\\big(\\mathrm{GradCAM}_P(x),\\; 1 - \\mathrm{context}(x)\\big),

min-max normalised per image: the Grad-CAM evidence for P, minus every region that some contrast
class would point to. The contrast maps of one image are scaled *together* (by the largest of
them), so that they keep their relative strengths; scaling each to ``[0, 1]`` on its own would
make the weakest contrast as strong as the strongest. That scaling is also our choice. Where
Grad-CAM's own map is empty (at a layer whose weighted sum is negative everywhere), or the contrasts
cover all of its evidence, the causal map is flat (all zeros): :func:`causal_cam` returns such maps
as they are, and an evaluation should count them and set them apart.
:func:`causal_from_maps` is the formula on given maps; :func:`causal_cam` computes the maps with
:mod:`robust_utils.explanations` first.

Taught in Part 4, section "CausalCAM against Grad-CAM and Grad-CAM++".
"""
from __future__ import annotations

import torch
from torch import nn

from ._checks import PIXELS, check_finite, model_device
from .explanations import class_indices, contrast_cam, grad_cam, normalize_maps

__all__ = ["causal_from_maps", "causal_cam"]


def causal_from_maps(gradcam: torch.Tensor, contrast_maps: torch.Tensor, predicted) -> torch.Tensor:
    """``min(G, 1 - max_{Q != P} C_Q)``, min-max normalised per image.

    Parameters
    ----------
    gradcam : Tensor (N, H, W)
        Grad-CAM of the predicted class, in ``[0, 1]``.
    contrast_maps : Tensor (C, N, H, W)
        Raw (non-negative, not normalised) ContrastCAM of every class ``Q`` (row ``Q``); the row
        of each image's own ``P`` is ignored, the others are divided by their joint maximum.
    predicted : int or sequence or Tensor (N,)
        ``P`` per image.

    Taught in Part 4, section "CausalCAM against Grad-CAM and Grad-CAM++".
    """
    for name, m, dims in (("gradcam", gradcam, 3), ("contrast_maps", contrast_maps, 4)):
        if not isinstance(m, torch.Tensor) or m.dim() != dims:
            got = tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__
            shape = "(N, H, W)" if dims == 3 else "(C, N, H, W): one row of maps per contrast class"
            raise ValueError(f"{name} must be a tensor shaped {shape}, got {got}.")
        check_finite(m, name)
    if float(gradcam.min()) < -1e-6 or float(gradcam.max()) > 1 + 1e-6:
        raise ValueError(f"gradcam must lie in [0, 1] (a normalised map), got values in "
                         f"[{float(gradcam.min()):.3g}, {float(gradcam.max()):.3g}].")
    if float(contrast_maps.min()) < 0:
        raise ValueError("contrast_maps must be non-negative (ContrastCAM after its ReLU), got a minimum of "
                         f"{float(contrast_maps.min()):.3g}.")
    if contrast_maps.shape[1:] != gradcam.shape:
        raise ValueError(f"contrast_maps {tuple(contrast_maps.shape)} must be (C, *gradcam.shape) with gradcam "
                         f"{tuple(gradcam.shape)}.")
    c, n = contrast_maps.shape[:2]
    p = class_indices(predicted, n, c, "predicted", gradcam.device)
    own = torch.arange(c, device=gradcam.device)[:, None] == p[None, :]          # (C, N)
    others = contrast_maps.masked_fill(own[:, :, None, None], 0.0)
    peak = others.amax(dim=(0, 2, 3)).clamp_min(torch.finfo(others.dtype).tiny)      # (N,): joint maximum
    context = others.max(0).values / peak[:, None, None]
    return normalize_maps(torch.minimum(gradcam, 1.0 - context))


def causal_cam(model: nn.Module, x: torch.Tensor, target=None, layer: str | None = None, *,
               upsample: bool | str = True, value_range: tuple[float, float] | None = PIXELS) -> torch.Tensor:
    """CausalCAM of ``target`` (default: the prediction) at ``layer``: ``(N, H, W)`` maps in ``[0, 1]``.

    Grad-CAM of P (normalised) and the raw ContrastCAM of every other class, all at ``layer`` and
    upsampled alike (``upsample`` as in :func:`robust_utils.explanations.grad_cam`), combined by
    :func:`causal_from_maps`. Costs one Grad-CAM and ``C`` ContrastCAM passes. ContrastCAM
    contrasts the network's own prediction, so ``target`` may only be the predicted class (one
    index or one per image); ``None`` takes it.

    Taught in Part 4, section "CausalCAM against Grad-CAM and Grad-CAM++".
    """
    g = grad_cam(model, x, target=target, layer=layer, upsample=upsample, value_range=value_range)
    with torch.no_grad():
        logits = model(x.to(model_device(model, x.device)))
    n, c = logits.shape
    p = logits.argmax(1)
    if target is not None:
        t = class_indices(target, n, c, "target", logits.device)
        if not torch.equal(t, p):
            raise ValueError("causal_cam explains the predicted class only (ContrastCAM contrasts the network's own "
                             "prediction); pass target=None.")
    contrasts = torch.stack([contrast_cam(model, x, contrast=q, layer=layer, upsample=upsample, normalize=False,
                                          value_range=value_range) for q in range(c)])
    return causal_from_maps(g, contrasts.to(g.device), p.to(g.device))
