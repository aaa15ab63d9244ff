"""Where a feature cell looks: receptive-field centres, and CAMs placed on them.

A class activation map lives on a layer's ``h x w`` grid. Every library upsamples it to the
input's ``H x W`` by *stretching* (bilinear, ``align_corners=False``), which puts cell ``i`` at
pixel ``(i + 0.5) H / h - 0.5``. That is where the cell looks only for "same"-padded networks.
The C3LT CNN's convolutions are unpadded: its last 8 x 8 map has cell centres at pixels
6.5, 8.5, ..., 20.5 of the 28-pixel input (stride 2), and stretching spreads them over 1.25 to
25.75 instead, so a Grad-CAM drawn on the image is displaced by up to 5 pixels at the borders.

* :func:`cell_geometry` follows the convolutions and poolings that lead to a layer and returns
  the centre of cell ``(0, 0)`` and the stride between centres, in input pixels (pixel ``u``
  covers ``[u - 0.5, u + 0.5]``);
* :func:`aligned_upsample` places each cell at its centre and interpolates bilinearly between
  centres (constant beyond the outermost ones, like the stretch's own border).

The CAM functions of :mod:`robust_utils.explanations` take ``upsample="aligned"`` for it.

Taught in Part 4, section "Aligned CAMs".
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_finite, check_number, model_device

__all__ = ["CellGeometry", "cell_geometry", "aligned_upsample", "stretch_geometry"]

_GEOMETRIC = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


@dataclass(frozen=True)
class CellGeometry:
    """Cell ``(i, j)`` of a layer looks at input pixel ``(start[0] + i * stride[0],
    start[1] + j * stride[1])``; ``size`` is the layer's ``(h, w)``.

    Taught in Part 4, section "Aligned CAMs".
    """
    start: tuple[float, float]
    stride: tuple[float, float]
    size: tuple[int, int]

    def centres(self, axis: int) -> torch.Tensor:
        """The pixel coordinates of the cells' centres along ``axis`` (0: rows, 1: columns)."""
        return self.start[axis] + self.stride[axis] * torch.arange(self.size[axis], dtype=torch.float64)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _layer_params(m: nn.Module):
    """(kernel, stride, padding, dilation) of a convolution or pooling, each as (rows, cols)."""
    if isinstance(m, nn.Conv2d):
        if isinstance(m.padding, str):
            raise ValueError(f"{m} uses padding={m.padding!r}; cell_geometry needs numeric padding.")
        return _pair(m.kernel_size), _pair(m.stride), _pair(m.padding), _pair(m.dilation)
    dil = _pair(getattr(m, "dilation", 1))
    return _pair(m.kernel_size), _pair(m.stride or m.kernel_size), _pair(m.padding), dil


def stretch_geometry(size: tuple[int, int], input_size: tuple[int, int]) -> CellGeometry:
    """Where plain bilinear stretching (``align_corners=False``) puts the cells of an ``h x w``
    map on an ``H x W`` input: centre ``(i + 0.5) H / h - 0.5``. ``aligned_upsample`` with this
    geometry *is* the stretch.

    Taught in Part 4, section "Aligned CAMs".
    """
    (h, w), (hh, ww) = size, input_size
    return CellGeometry((hh / h / 2 - 0.5, ww / w / 2 - 0.5), (hh / h, ww / w), (h, w))


def cell_geometry(model: nn.Module, layer: str, input_size=None) -> CellGeometry:
    """The receptive-field centres of ``layer``'s cells, in input pixels.

    One forward pass of zeros (``input_size``: the model's own when it has one) records every
    ``Conv2d``, ``MaxPool2d`` and ``AvgPool2d`` that runs before and including ``layer``, in call
    order, and composes them: a module with kernel ``k``, stride ``s``, padding ``p`` and
    dilation ``d`` moves the first centre by ``(d (k - 1) / 2 - p)`` times the incoming stride
    and multiplies the stride by ``s``. This holds for a chain of such modules (activations,
    batch norm and dropout do not move centres). A branching network (a residual shortcut with
    its own convolution) is refused: each recorded module must take the spatial size the
    previous one produced.

    Taught in Part 4, section "Aligned CAMs".
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    modules = dict(model.named_modules())
    if not isinstance(layer, str) or layer not in modules or layer == "":
        raise ValueError(f"unknown layer {layer!r}; pass a name from model.named_modules(), e.g. "
                         f"{[n for n, m in modules.items() if isinstance(m, nn.Conv2d)][-1:]}.")
    if input_size is None:
        input_size = getattr(model, "input_size", None)
        if input_size is None:
            raise ValueError(f"{type(model).__name__} does not say its input size; pass input_size=(H, W).")
    hh, ww = _pair(input_size)
    c = getattr(model, "in_channels", None)
    if c is None:
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        if first is None:
            raise ValueError(f"{type(model).__name__} has no Conv2d layer.")
        c = first.in_channels
    calls: list = []
    target = modules[layer]
    stop = RuntimeError("cell_geometry: reached the layer")

    def hook(m, inputs, output):
        if isinstance(m, _GEOMETRIC):
            calls.append((m, tuple(inputs[0].shape[-2:]), tuple(output.shape[-2:])))
        if m is target:
            calls.append((None, None, tuple(output.shape[-2:])))
            raise stop

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _GEOMETRIC) or m is target]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, c, hh, ww, device=model_device(model, torch.device("cpu"))))
    except RuntimeError as e:
        if e is not stop:
            raise
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not calls or calls[-1][0] is not None:
        raise ValueError(f"layer {layer!r} did not run in the forward pass.")
    out_size = calls[-1][2]
    start, stride, size = [0.0, 0.0], [1.0, 1.0], (hh, ww)
    for m, in_hw, out_hw in calls[:-1]:
        if in_hw != size:
            raise ValueError(f"{type(m).__name__} takes a {in_hw} map after the previous convolution or pooling "
                             f"gave {size}: the network branches (a residual shortcut?), so its receptive "
                             "fields are not one chain. Pass the geometry yourself (CellGeometry).")
        k, s, p, d = _layer_params(m)
        for a in (0, 1):
            start[a] += (d[a] * (k[a] - 1) / 2 - p[a]) * stride[a]
            stride[a] *= s[a]
        size = out_hw
    if len(out_size) != 2 or size != out_size:
        raise ValueError(f"layer {layer!r} outputs {out_size}, not the {size} map its convolutions give; "
                         "choose a convolution, pooling or activation layer.")
    return CellGeometry(tuple(start), tuple(stride), tuple(out_size))


def aligned_upsample(maps: torch.Tensor, geometry: CellGeometry, input_size) -> torch.Tensor:
    """``(N, h, w)`` maps -> ``(N, H, W)``, each cell at its receptive-field centre.

    Pixel ``u`` takes the map at fractional cell ``(u - start) / stride``, interpolated
    bilinearly and clamped to the outermost cells (pixels beyond the last centre get its
    value). With :func:`stretch_geometry` it equals ``F.interpolate(..., mode="bilinear",
    align_corners=False)``.

    Taught in Part 4, section "Aligned CAMs".
    """
    if not isinstance(maps, torch.Tensor) or maps.dim() != 3 or not torch.is_floating_point(maps):
        raise ValueError(f"maps must be a float tensor shaped (N, h, w), got "
                         f"{tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__}.")
    check_finite(maps, "maps")
    if not isinstance(geometry, CellGeometry):
        raise TypeError(f"geometry must be a CellGeometry (from cell_geometry), got {type(geometry).__name__}.")
    if tuple(maps.shape[-2:]) != tuple(geometry.size):
        raise ValueError(f"the maps are {tuple(maps.shape[-2:])} but the geometry is for a {geometry.size} layer.")
    hh, ww = _pair(input_size)
    for a in (0, 1):
        check_number(geometry.stride[a], "geometry.stride", minimum=0.0, strict=True)
    coords = []
    for a, n_out in ((0, hh), (1, ww)):
        n = geometry.size[a]
        f = (torch.arange(n_out, dtype=torch.float64) - geometry.start[a]) / geometry.stride[a]
        f = f.clamp(0, n - 1)
        coords.append((2 * f / (n - 1) - 1) if n > 1 else torch.zeros_like(f))
    gy, gx = torch.meshgrid(coords[0], coords[1], indexing="ij")
    grid = torch.stack((gx, gy), -1).to(maps.dtype).to(maps.device)     # grid_sample wants (x, y)
    out = F.grid_sample(maps.unsqueeze(1), grid.expand(len(maps), hh, ww, 2), mode="bilinear",
                        padding_mode="border", align_corners=True)
    return out.squeeze(1)
