"""Explanations at inference: pixel attributions and the Grad-CAM family.

Two kinds of explanation answer different questions about one prediction ``P`` of a trained
network:

*Pixel attributions* (through :mod:`captum`) say how the logit of a class changes with each
pixel: vanilla :func:`gradients`, :func:`guided_backprop` and :func:`deconvolution` (which change
how the gradient passes through ReLUs), and :func:`smoothgrad` (the average over noisy copies).
They are the gradients of Part 1 seen as images: local information, sharp but noisy.

*Class activation maps* (CAMs) weight the feature maps ``A_k`` (shape ``h x w``) of a
convolutional layer by how much the backward signal cares about each channel,

.. math::  \\alpha_k = \\frac{1}{hw} \\sum_{i,j} \\frac{\\partial s}{\\partial A_k^{ij}},
           \\qquad L = \\mathrm{ReLU}\\Big(\\sum_k \\alpha_k A_k\\Big),

and the choice of the backward signal ``s`` chooses the question (Prabhushankar and AlRegib's
explanatory paradigms):

===================== =========================================== =================================
method                question                                    backward signal / weights
===================== =========================================== =================================
:func:`grad_cam`      "Why P?"                                    ``s = y_P`` (the logit of P)
:func:`counterfactual_cam` "What if this region were absent?"     ``s = y_P``, weights ``-alpha``
:func:`contrast_cam`  "Why P, rather than Q?"                     ``s = CE(logits, Q)``
:func:`grad_cam_plus_plus` "Why P?" (several instances of P)      higher-order weights
===================== =========================================== =================================

Every CAM function runs **one forward and one backward pass for the whole batch** (no loop over
images): a forward hook on the chosen layer keeps its activation ``A``, and
:func:`torch.autograd.grad` differentiates the summed per-image signals with respect to ``A``.
Because the images of a batch do not interact in an eval-mode network, the gradient of the sum
is each image's own gradient. The hook lives inside a context manager and is removed even when
the call fails, so a model can be explained, attacked and trained again afterwards.

Taught in Part 2, section "Explanations and the questions they answer".
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._checks import (check_choice, check_class_index, check_eval_model, check_finite, check_fraction,
                      check_labels, check_number, check_positive_int, check_seed, model_device)
from ._checks import PIXELS, check_bool, check_model_input, check_value_range
from .receptive import aligned_upsample, cell_geometry

__all__ = [
    "gradients",
    "guided_backprop",
    "deconvolution",
    "smoothgrad",
    "grad_cam",
    "counterfactual_cam",
    "contrast_cam",
    "grad_cam_plus_plus",
    "normalize_maps",
    "conv_layer_names",
    "capture_layer",
    "class_indices",
    "ATTRIBUTION_METHODS",
    "CAM_METHODS",
    "METHODS",
    "explain",
]


# ---------------------------------------------------------------------------------------------
# Shared checks
# ---------------------------------------------------------------------------------------------
def _check_model(model: nn.Module) -> None:
    """A module in eval mode (every submodule), or a clear error saying to call ``model.eval()``."""
    check_eval_model(model, "dropout and batch-norm batch statistics would make the explanation "
                            "random and mix the images of a batch")


def _check_x(model: nn.Module, x, value_range=PIXELS) -> torch.Tensor:
    # A float (N, C, H, W) batch of the model's dtype, in [0, 1] by default (the book's models
    # take [0, 1] pixels); value_range=None for a model that takes other inputs.
    return check_model_input(model, x, value_range=check_value_range(value_range))


def _is_index(v) -> bool:
    """A Python/NumPy integer or a 0-d integer tensor/array (what ``np.argmax`` returns)."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    try:
        check_class_index(v, "index")
    except TypeError:
        return False
    except ValueError:       # a negative integer: still an index, check_labels reports the range
        return True
    return True


def class_indices(value, n: int, num_classes: int, name: str = "target", device=None) -> torch.Tensor:
    """A class index, a sequence or a (N,) tensor/array of class indices -> (N,) long tensor.

    A class index is a Python or NumPy integer (``np.argmax`` returns one) or a 0-d integer
    tensor; one index is repeated for the ``n`` images. Ranges are checked against
    ``num_classes``. Used for the ``target`` / ``contrast`` arguments of every explanation.

    Taught in Part 2, section "Grad-CAM and the choice of layer".
    """
    if isinstance(value, np.ndarray) and value.ndim >= 1:
        if not np.issubdtype(value.dtype, np.integer):
            raise TypeError(f"{name} must contain integer class indices, got a NumPy array of dtype "
                            f"{value.dtype}; use .astype(int).")
        value = torch.from_numpy(np.ascontiguousarray(value))
    if _is_index(value):
        idx = torch.full((n,), int(value), dtype=torch.long)
    elif isinstance(value, torch.Tensor):
        idx = value
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if not all(_is_index(v) for v in value):
            raise TypeError(f"{name} must contain integer class indices, got {list(value)!r}.")
        idx = torch.tensor([int(v) for v in value], dtype=torch.long)
    else:
        raise TypeError(f"{name} must be a class index (int), one index per image (list or 1-D tensor), "
                        f"or None; got {type(value).__name__}.")
    check_labels(idx, n=n, num_classes=num_classes, name=name)
    return idx.to(device=device, dtype=torch.long)



def _targets(model: nn.Module, x: torch.Tensor, target) -> torch.Tensor:
    """Target classes for the pixel attributions (None -> the prediction)."""
    with torch.no_grad():
        logits = model(x)
    if logits.dim() != 2:
        raise ValueError(f"the model must return logits shaped (N, num_classes), got {tuple(logits.shape)}.")
    if target is None:
        return logits.argmax(1)
    return class_indices(target, x.shape[0], logits.shape[1], "target", x.device)


# ---------------------------------------------------------------------------------------------
# Pixel attributions (captum)
# ---------------------------------------------------------------------------------------------
def _captum_attribution(cls_name: str, model: nn.Module, x: torch.Tensor, target, value_range,
                        **kw) -> torch.Tensor:
    _check_model(model)
    _check_x(model, x, value_range)
    return _captum_unchecked(cls_name, model, x, _targets(model, x, target), **kw)


def _captum_unchecked(cls_name: str, model: nn.Module, x: torch.Tensor, t: torch.Tensor,
                      **kw) -> torch.Tensor:
    import captum.attr as ca

    method = getattr(ca, cls_name)(model)
    with torch.enable_grad(), warnings.catch_warnings():
        # captum announces the (temporary) ReLU backward hooks of GuidedBackprop/Deconvolution.
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        attr = method.attribute(x.detach().clone().requires_grad_(True), target=t, **kw)
    return attr.detach()


def gradients(model: nn.Module, x: torch.Tensor, target=None, *, absolute: bool = False,
              value_range: tuple[float, float] | None = PIXELS) -> torch.Tensor:
    """Vanilla gradient of the target logit with respect to the pixels (captum ``Saliency``).

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits, in eval mode.
    x : torch.Tensor
        Images ``(N, C, H, W)``.
    target : None, int, sequence of int or (N,) tensor
        Class to explain; ``None`` uses each image's predicted class.
    absolute : bool, default False
        Return ``|d y_target / d x|`` (Simonyan et al.'s saliency map) instead of the signed
        gradient.
    value_range : (low, high) or None, default (0, 1)
        The range the images must lie in (the book's models take ``[0, 1]`` pixels and
        normalise inside); ``None`` for a model that takes other inputs (normalised images).

    Returns
    -------
    torch.Tensor
        Shape of ``x``.

    Taught in Part 2, section "Pixel attributions".
    """
    absolute = check_bool(absolute, "absolute")
    return _captum_attribution("Saliency", model, x, target, value_range, abs=absolute)


def guided_backprop(model: nn.Module, x: torch.Tensor, target=None, *,
                    value_range: tuple[float, float] | None = PIXELS) -> torch.Tensor:
    """Guided Backpropagation (Springenberg et al., 2015) through captum's ``GuidedBackprop``.

    The backward pass through every ``nn.ReLU`` module keeps only positive gradients at
    positive activations. (Functional ReLUs are not modified; the book's models use modules.)
    Returns a tensor of the shape of ``x``; ``target`` and ``value_range`` as in :func:`gradients`.

    Taught in Part 2, section "Pixel attributions".
    """
    return _captum_attribution("GuidedBackprop", model, x, target, value_range)


def deconvolution(model: nn.Module, x: torch.Tensor, target=None, *,
                  value_range: tuple[float, float] | None = PIXELS) -> torch.Tensor:
    """Deconvolution (Zeiler and Fergus, 2014) through captum's ``Deconvolution``.

    The backward pass through every ``nn.ReLU`` module applies a ReLU to the *gradient*,
    ignoring the forward activation. Returns a tensor of the shape of ``x``; ``target`` and
    ``value_range`` as in :func:`gradients`.

    Taught in Part 2, section "Pixel attributions".
    """
    return _captum_attribution("Deconvolution", model, x, target, value_range)


_SMOOTHGRAD_BASES = {"gradients": ("Saliency", {"abs": False}),
                     "guided_backprop": ("GuidedBackprop", {}),
                     "deconvolution": ("Deconvolution", {})}


def smoothgrad(model: nn.Module, x: torch.Tensor, target=None, n_samples: int = 25,
               sigma: float = 0.15, method: str = "gradients", seed: int = 0,
               max_batch: int = 1024, *,
               value_range: tuple[float, float] | None = PIXELS) -> torch.Tensor:
    """SmoothGrad (Smilkov et al., 2017): the attribution averaged over noisy copies of ``x``.

    ``mean_s attribution(x + eps_s)`` with ``eps_s ~ N(0, sigma^2)`` per pixel. Our own seeded,
    batched version (rather than captum's ``NoiseTunnel``, whose noise comes from the global
    random state): the noise is drawn from a private :class:`torch.Generator` seeded with
    ``seed``, so the result is reproducible and leaves the global random state untouched, and
    the ``N * n_samples`` noisy images are explained in batches of at most ``max_batch`` rows.
    The noisy images are not clamped to ``[0, 1]`` (as in the paper).

    Parameters
    ----------
    model, x, target, value_range
        As in :func:`gradients`; ``target=None`` explains the prediction on the *clean* image,
        and ``value_range`` applies to the clean images (the noisy copies may leave it).
    n_samples : int, default 25
    sigma : float, default 0.15
        Noise standard deviation in pixel units; pixels live in ``[0, 1]``, so this is the
        paper's "noise level" as a fraction of the input range (10-20 % recommended).
    method : {"gradients", "guided_backprop", "deconvolution"}
    seed : int, default 0
    max_batch : int, default 1024

    Returns
    -------
    torch.Tensor
        Shape of ``x``.

    Taught in Part 2, section "Pixel attributions".
    """
    _check_model(model)
    _check_x(model, x, value_range)
    n_samples = check_positive_int(n_samples, "n_samples")
    max_batch = check_positive_int(max_batch, "max_batch")
    sigma = check_fraction(sigma, "sigma", low=0.0, high=float("inf"))
    check_choice(method, "smoothgrad method", _SMOOTHGRAD_BASES)
    seed = check_seed(seed)
    cls_name, kw = _SMOOTHGRAD_BASES[method]
    t = _targets(model, x, target)
    n = x.shape[0]
    gen = torch.Generator(device=x.device).manual_seed(seed)
    total = torch.zeros_like(x)
    per_chunk = max(1, max_batch // n)  # noise samples per chunk
    done = 0
    while done < n_samples:
        k = min(per_chunk, n_samples - done)
        noise = torch.randn((k, *x.shape), generator=gen, device=x.device, dtype=x.dtype) * sigma
        noisy = (x.detach().unsqueeze(0) + noise).reshape(k * n, *x.shape[1:])
        attr = _captum_unchecked(cls_name, model, noisy, t.repeat(k), **kw)
        total += attr.reshape(k, *x.shape).sum(0)
        done += k
    return total / n_samples


# ---------------------------------------------------------------------------------------------
# Class activation maps
# ---------------------------------------------------------------------------------------------
def conv_layer_names(model: nn.Module) -> list[str]:
    """Names (as in :meth:`~torch.nn.Module.named_modules`) of the model's ``Conv2d`` layers.

    Uses ``model.conv_layers()`` for the book's models. Taught in Part 2, section "Grad-CAM and
    the choice of layer".
    """
    if hasattr(model, "conv_layers") and callable(model.conv_layers):
        return list(model.conv_layers())
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def _resolve_layer(model: nn.Module, layer) -> tuple[str, nn.Module]:
    convs = conv_layer_names(model)
    if layer is None:
        if not convs:
            raise ValueError(f"{type(model).__name__} has no convolution layers, so there is no layer for "
                             "a class activation map; use a convolutional model or a pixel attribution "
                             "(gradients, guided_backprop, smoothgrad).")
        layer = convs[-1]
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module name such as {convs[-1]!r} (see model.conv_layers()), "
                        f"got {type(layer).__name__}.")
    modules = dict(model.named_modules())
    if layer == "" or layer not in modules:
        raise ValueError(f"unknown layer {layer!r}; valid conv layers: {', '.join(convs) or '(none)'} "
                         "(any other name from model.named_modules() whose output is (N, K, h, w) "
                         "also works).")
    return layer, modules[layer]


@contextmanager
def capture_layer(model: nn.Module, layer: str | None = None) -> Iterator[dict]:
    """Keep the output ``A`` of ``layer`` during a forward pass, as a leaf that requires grad.

    ``with capture_layer(model, "conv2") as store: logits = model(x)`` leaves the layer's output
    in ``store["activation"]`` (``(N, K, h, w)``; ``store["name"]`` is the layer's name, the
    last convolution when ``layer`` is ``None``), and ``torch.autograd.grad(score, A)`` gives
    the gradient of any score of the logits with respect to it, whether or not the parameters
    require gradients (the backward pass stops at the layer).

    The forward hook keeps a detached copy ``A`` of the output with ``requires_grad=True`` and
    passes *a clone of it* on to the rest of the network. So a following in-place operation
    (``ReLU(inplace=True)`` after a convolution, as in torchvision's VGG, SqueezeNet and ResNet)
    modifies the clone, not ``A``: ``A`` stays the layer's true output (before the in-place
    ReLU), and the gradient flows back to it through the clone. The hook is removed when the
    ``with`` block ends, also on an exception. Used by the class activation maps here and by
    :mod:`robust_utils.voice`.

    Taught in Part 2, section "Grad-CAM and the choice of layer".
    """
    name, module = _resolve_layer(model, layer)
    store: dict = {"name": name}

    def hook(mod, inputs, output):
        if "activation" in store:
            raise RuntimeError(f"layer {name!r} ran more than once in one forward pass (a shared "
                               "module); choose a layer that is used once.")
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise ValueError(f"layer {name!r} must output feature maps shaped (N, K, h, w), got {shape}; "
                             f"choose a convolutional layer: {', '.join(conv_layer_names(model))}.")
        a = output.detach().clone().requires_grad_(True)
        store["activation"] = a
        return a.clone()    # what the next layers see (and may modify in place); A stays intact

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def _forward_backward(model: nn.Module, x: torch.Tensor, layer,
                      signal: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                      value_range=PIXELS):
    """One batched forward + backward: returns ``(A, dS/dA, logits, extra)``.

    ``signal(logits)`` returns ``(per_image_signal (N,), extra)``; the gradient of its sum with
    respect to the captured activation is each image's own gradient.
    """
    _check_model(model)
    _check_x(model, x, value_range)
    with capture_layer(model, layer) as store, torch.enable_grad():
        logits = model(x.detach().to(model_device(model, x.device)))
        if "activation" not in store:
            raise RuntimeError(f"layer {store['name']!r} was not used in the forward pass.")
        if logits.dim() != 2:
            raise ValueError(f"the model must return logits shaped (N, num_classes), got "
                             f"{tuple(logits.shape)}.")
        s, extra = signal(logits)
        a = store["activation"]
        (g,) = torch.autograd.grad(s.sum(), a)
    return a.detach().to(x.device), g.detach().to(x.device), logits.detach(), extra


def normalize_maps(maps: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Min-max normalise each map of a ``(N, ...)`` batch to ``[0, 1]``.

    A flat map (range below ``eps`` times its largest absolute value, or exactly zero, e.g. a
    map that the ReLU zeroed) becomes all zeros rather than NaN. Maps with NaN or infinite
    values are refused (``ValueError``) rather than silently turned into zeros.

    Taught in Part 2, section "Grad-CAM and the choice of layer".
    """
    check_finite(maps, "maps")
    if maps.dim() < 2 or maps.shape[0] == 0:
        raise ValueError(f"maps must be a non-empty batch shaped (N, ...) with one map per row, got shape "
                         f"{tuple(maps.shape)}; add a batch dimension with maps.unsqueeze(0).")
    eps = check_number(eps, "eps", minimum=0.0, strict=False)
    flat = maps.reshape(maps.shape[0], -1)
    lo = flat.min(1, keepdim=True).values
    hi = flat.max(1, keepdim=True).values
    rng = hi - lo
    scale = flat.abs().max(1, keepdim=True).values
    ok = (rng > eps * scale) & (rng > 0)
    out = torch.where(ok, (flat - lo) / torch.where(ok, rng, torch.ones_like(rng)), torch.zeros_like(flat))
    return out.reshape(maps.shape)


def _check_flags(relu, upsample, normalize) -> None:
    """The three flags of every CAM function: True or False (``relu="no"`` is not True);
    ``upsample`` may also be ``"aligned"``."""
    for name, v in (("relu", relu), ("normalize", normalize)):
        check_bool(v, name)
    if isinstance(upsample, str):
        if upsample != "aligned":
            raise ValueError(f"upsample must be True (stretch), False or 'aligned' (each cell at its "
                             f"receptive-field centre), got {upsample!r}.")
    else:
        check_bool(upsample, "upsample")


def _finish(cam: torch.Tensor, x: torch.Tensor, upsample, normalize: bool, model=None, layer=None) -> torch.Tensor:
    """(N, h, w) raw map -> optionally upsampled to x's size (bilinear stretch, or ``"aligned"``:
    each cell at its receptive-field centre, :mod:`robust_utils.receptive`) and normalised."""
    if upsample == "aligned":
        geometry = cell_geometry(model, _resolve_layer(model, layer)[0], tuple(x.shape[-2:]))
        cam = aligned_upsample(cam, geometry, tuple(x.shape[-2:]))
    elif upsample and tuple(cam.shape[-2:]) != tuple(x.shape[-2:]):
        cam = F.interpolate(cam.unsqueeze(1), size=tuple(x.shape[-2:]), mode="bilinear",
                            align_corners=False).squeeze(1)
    if normalize:
        cam = normalize_maps(cam)
    return cam


def _weighted_map(weights: torch.Tensor, a: torch.Tensor, relu: bool) -> torch.Tensor:
    cam = torch.einsum("nk,nkhw->nhw", weights, a)
    return F.relu(cam) if relu else cam


def _target_signal(target):
    def signal(logits):
        if target is None:
            t = logits.detach().argmax(1)
        else:
            t = class_indices(target, logits.shape[0], logits.shape[1], "target", logits.device)
        return logits.gather(1, t[:, None]).squeeze(1), t
    return signal


def grad_cam(model: nn.Module, x: torch.Tensor, target=None, layer: str | None = None, *,
             relu: bool = True, upsample: bool | str = True, normalize: bool = True,
             value_range: tuple[float, float] | None = PIXELS) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., ICCV 2017): "Why P?".

    ``alpha_k = mean_ij d y_P / d A_k^ij`` (the gradient of the target *logit*), map
    ``ReLU(sum_k alpha_k A_k)``. One forward and one backward pass for the whole batch.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits, in eval mode.
    x : torch.Tensor
        Images ``(N, C, H, W)``.
    target : None, int, sequence of int or (N,) tensor
        The class P to explain; ``None`` uses each image's predicted class.
    layer : str, optional
        Name of the layer (as in ``model.conv_layers()``); default the last convolution
        (``model.last_conv_name``). Any module with a ``(N, K, h, w)`` output works.
    relu : bool, default True
        Apply the final ReLU (``False`` keeps the signed map).
    upsample : bool or "aligned", default True
        Bilinearly upsample the ``h x w`` map to the input's ``H x W`` by stretching it (as every
        library does); ``"aligned"`` puts each cell at the centre of its receptive field instead
        (:func:`robust_utils.receptive.aligned_upsample`; differs for unpadded networks).
    normalize : bool, default True
        Min-max normalise each map to ``[0, 1]`` (flat maps become zeros). Pass
        ``upsample=False, normalize=False`` for the raw layer-resolution maps.
    value_range : (low, high) or None, default (0, 1)
        As in :func:`gradients`: ``None`` for a model that takes inputs outside ``[0, 1]``.

    Returns
    -------
    torch.Tensor
        ``(N, H, W)`` maps (``(N, h, w)`` without upsampling).

    Taught in Part 2, section "Grad-CAM: why P?".
    """
    _check_flags(relu, upsample, normalize)
    a, g, _, _ = _forward_backward(model, x, layer, _target_signal(target), value_range)
    weights = g.mean(dim=(2, 3))
    return _finish(_weighted_map(weights, a, relu), x, upsample, normalize, model, layer)


def counterfactual_cam(model: nn.Module, x: torch.Tensor, target=None, layer: str | None = None, *,
                       relu: bool = True, upsample: bool | str = True, normalize: bool = True,
             value_range: tuple[float, float] | None = PIXELS) -> torch.Tensor:
    """CounterfactualCAM: "What if this region were absent?".

    Grad-CAM with negated weights: ``ReLU(sum_k (-alpha_k) A_k)`` with Grad-CAM's ``alpha``.
    It highlights the regions whose removal would make the network *more* confident in P
    (the evidence against P). Arguments and return value as in :func:`grad_cam`.

    Taught in Part 2, section "CounterfactualCAM: what if this region were absent?".
    """
    _check_flags(relu, upsample, normalize)
    a, g, _, _ = _forward_backward(model, x, layer, _target_signal(target), value_range)
    weights = -g.mean(dim=(2, 3))
    return _finish(_weighted_map(weights, a, relu), x, upsample, normalize, model, layer)


def _contrast_signal(contrast):
    def signal(logits):
        if contrast is None:
            q = logits.detach().topk(2, dim=1).indices[:, 1]
        else:
            q = class_indices(contrast, logits.shape[0], logits.shape[1], "contrast", logits.device)
        # Per-image losses (summed by the caller): each image's gradient is its own loss's
        # gradient, with no 1/N of a batch mean.
        return F.cross_entropy(logits, q, reduction="none"), q
    return signal


def contrast_cam(model: nn.Module, x: torch.Tensor, contrast=None, layer: str | None = None, *,
                 relu: bool = True, upsample: bool | str = True, normalize: bool = True,
             value_range: tuple[float, float] | None = PIXELS) -> torch.Tensor:
    """ContrastCAM (Prabhushankar et al., ICIP 2020): "Why P, rather than Q?".

    The backward signal is the cross-entropy loss between the network's logits and the
    contrast class Q, ``J(P, Q) = -log softmax(y)_Q``, as in the authors' code; the weights
    are the spatial means of its gradient, ``alpha_k = mean_ij dJ / dA_k^ij``, and the map is
    ``ReLU(sum_k alpha_k A_k)``. Since ``dJ/dy = softmax(y) - e_Q``, the map contrasts the
    evidence for P (and every other likely class) against the evidence for Q. With
    ``Q = P`` it answers "Why not P with 100 % confidence?".

    Parameters
    ----------
    contrast : None, int, sequence of int or (N,) tensor
        The contrast class Q: one for all images or one per image; ``None`` (default) uses each
        image's second most likely class.
    model, x, layer, relu, upsample, normalize, value_range
        As in :func:`grad_cam`.

    Returns
    -------
    torch.Tensor
        ``(N, H, W)`` maps (``(N, h, w)`` without upsampling).

    Taught in Part 2, section "ContrastCAM: why P, rather than Q?".
    """
    _check_flags(relu, upsample, normalize)
    a, g, _, _ = _forward_backward(model, x, layer, _contrast_signal(contrast), value_range)
    weights = g.mean(dim=(2, 3))
    return _finish(_weighted_map(weights, a, relu), x, upsample, normalize, model, layer)


def grad_cam_plus_plus(model: nn.Module, x: torch.Tensor, target=None, layer: str | None = None, *,
                       relu: bool = True, upsample: bool | str = True, normalize: bool = True,
                       eps: float = 1e-6,
                       value_range: tuple[float, float] | None = PIXELS) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al., WACV 2018): "Why P?", for several instances of P.

    The paper explains the score ``Y = exp(S_P)``. For a network that is piecewise linear
    after the layer, its closed form (eq. 19) with ``g = dS_P / dA`` is

    .. math::  a_k^{ij} = \\frac{g_{ij}^2}{2 g_{ij}^2 + \\sum_{ab} A_k^{ab}\\, g_{ij}^3},
               \\qquad w_k = \\sum_{ij} a_k^{ij}\\, \\mathrm{ReLU}(g_{ij}),
               \\qquad L = \\mathrm{ReLU}\\Big(\\sum_k w_k A_k\\Big).

    The ``exp(S_P)`` factors of the second and third derivatives cancel in ``a``; the one of
    the first derivative multiplies the whole map by the positive constant ``exp(S_P)``, which
    the normalisation removes, so we leave it out (as pytorch-grad-cam does; raw maps differ
    from the paper's by that factor only). ``eps`` is added to the denominator and ``a = 0``
    where ``g = 0``, matching pytorch-grad-cam's ``GradCAMPlusPlus``. One forward and one
    backward pass for the whole batch; arguments and return value as in :func:`grad_cam`.

    Taught in Part 2, sections "Every contrast class of one image, and an explorer" and "The
    slides' claims beside ours"; used again in Part 4, section "The network and the explanations
    to evaluate".
    """
    _check_flags(relu, upsample, normalize)
    eps = check_number(eps, "eps", minimum=0.0, strict=False)
    a, g, _, _ = _forward_backward(model, x, layer, _target_signal(target), value_range)
    g2 = g * g
    g3 = g2 * g
    sum_a = a.sum(dim=(2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + sum_a * g3 + eps)
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    weights = (F.relu(g) * alpha).sum(dim=(2, 3))
    return _finish(_weighted_map(weights, a, relu), x, upsample, normalize, model, layer)


# ---------------------------------------------------------------------------------------------
# Registries and the dispatcher
# ---------------------------------------------------------------------------------------------
#: Pixel attributions: name -> function ``f(model, x, target=None, **kw)``; maps shaped like ``x``.
ATTRIBUTION_METHODS: dict[str, Callable[..., torch.Tensor]] = {
    "gradients": gradients,              # "How does the logit of P change with each pixel?"
    "guided_backprop": guided_backprop,  # the same, through guided ReLUs (sharper, less faithful)
    "deconvolution": deconvolution,      # the same, with ReLUs applied to the gradient
    "smoothgrad": smoothgrad,            # gradients averaged over noisy copies
}

#: Class activation maps: name -> function ``f(model, x, <class>, layer=None, **kw)``; (N, H, W) maps.
CAM_METHODS: dict[str, Callable[..., torch.Tensor]] = {
    "gradcam": grad_cam,                    # "Why P?"
    "counterfactual": counterfactual_cam,   # "What if this region were absent?"
    "contrast": contrast_cam,               # "Why P, rather than Q?" (class argument: contrast)
    "gradcam++": grad_cam_plus_plus,        # "Why P?" with higher-order weights
}

#: The question each method answers (for figure titles).
QUESTIONS: dict[str, str] = {
    "gradients": "How does the score of P change with each pixel?",
    "guided_backprop": "Which pixels excite the score of P? (guided)",
    "deconvolution": "Which pixels excite the score of P? (deconvolution)",
    "smoothgrad": "How does the score of P change with each pixel, on average over noise?",
    "gradcam": "Why P?",
    "counterfactual": "What if this region were absent?",
    "contrast": "Why P, rather than Q?",
    "gradcam++": "Why P? (Grad-CAM++)",
}

#: Every method :func:`explain` knows.
METHODS: dict[str, Callable[..., torch.Tensor]] = {**ATTRIBUTION_METHODS, **CAM_METHODS}


def explain(model: nn.Module, x: torch.Tensor, method: str, **kw) -> torch.Tensor:
    """Explain ``model``'s predictions on ``x`` with a method of :data:`METHODS` by name.

    ``explain(model, x, "gradcam", target=3, layer="conv1")`` is ``grad_cam(model, x, target=3,
    layer="conv1")``. Names: ``"gradients"``, ``"guided_backprop"``, ``"deconvolution"``,
    ``"smoothgrad"`` (pixel attributions, shaped like ``x``) and ``"gradcam"`` (Why P?),
    ``"counterfactual"`` (What if this region were absent?), ``"contrast"`` (Why P, rather
    than Q? pass ``contrast=Q``), ``"gradcam++"`` (class activation maps, ``(N, H, W)``).
    :data:`QUESTIONS` gives each method's question for figure titles.

    Taught in Part 2, section "Every contrast class of one image, and an explorer".
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a string; choose one of: {', '.join(METHODS)}.")
    check_choice(method, "explanation method", METHODS)
    return METHODS[method](model, x, **kw)
