"""VOICE: the variance of contrastive explanations as the uncertainty of an explanation.

An explanation of a prediction ``P`` ("Why P?", e.g. Grad-CAM) highlights the features that the
network used. Prabhushankar and AlRegib (VOICE, "Variance Of Induced Contrastive Explanations")
argue that its uncertainty lies in the features it did *not* attribute, and that the
contrastive explanations "Why P, rather than Q?" are a tractable way of reaching them: one map
per contrast class ``Q``. Where these maps disagree, the explanation is uncertain.

With the ContrastCAM map of contrast class ``Q`` (the Grad-CAM of the backward signal
``J_Q = CE(logits, Q)``; see :func:`robust_utils.explanations.contrast_cam`), min-max
normalised per image, :math:`\\tilde M_Q`, the uncertainty map is the per-pixel variance over
the contrast classes other than the prediction,

.. math::  U = \\mathrm{norm}\\Big(\\frac{1}{C-1} \\sum_{Q \\neq P}
           \\big(\\tilde M_Q - \\bar M\\big)^2\\Big),
           \\qquad \\bar M = \\frac{1}{C-1} \\sum_{Q \\neq P} \\tilde M_Q,

where ``norm`` is a per-image min-max normalisation (a map that is constant everywhere becomes
zeros). Two numbers summarise an explanation ``E`` and its uncertainty ``U`` (both thresholded
at ``tau = 0.1``):

.. math::  \\mathrm{IoU} = \\frac{|\\{E > \\tau\\} \\cap \\{U > \\tau\\}|}
                              {|\\{E > \\tau\\} \\cup \\{U > \\tau\\}|},
           \\qquad \\mathrm{SNR} = \\frac{\\mathrm{mean}(U)}{\\mathrm{std}(U)}.

A higher IoU (the uncertain region overlaps the explanation) and a higher SNR (the uncertainty
is spread over the image) both mean a less trustworthy prediction.

Everything is one forward pass per batch of images: a hook keeps the activation ``A`` of the
chosen layer, and the gradients of all ``C`` contrastive signals (plus the "Why P?" signal of
the explanation) are vector-Jacobian products of the logits with the vectors
``softmax(logits) - e_Q`` (and ``e_P``), computed together with
``torch.autograd.grad(..., is_grads_batched=True)``.

Taught in Part 4, section "VOICE: the uncertainty of an explanation".
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_choice, check_eval_model, check_finite, check_fraction, check_positive_int, model_device
from .config import progress_bar
from .explanations import capture_layer, normalize_maps
from ._checks import PIXELS, check_bool, check_model_input, check_value_range

__all__ = [
    "VOICE_METHODS",
    "contrastive_maps",
    "voice",
    "voice_iou",
    "voice_snr",
]

#: The explanation families VOICE supports: name -> (explanation of P, contrastive analogue).
VOICE_METHODS: dict[str, tuple[str, str]] = {
    "contrast_cam": ("Grad-CAM", "ContrastCAM: Grad-CAM of CE(logits, Q)"),
    "grad_cam_plus_plus": ("Grad-CAM++", "Grad-CAM++ weights of the gradient of CE(logits, Q)"),
}

_GCPP_EPS = 1e-6  # the eps of explanations.grad_cam_plus_plus (pytorch-grad-cam's value)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
_model_device = model_device


def _check_model(model: nn.Module) -> None:
    check_eval_model(model, "dropout and batch-norm batch statistics would make the contrastive maps "
                            "random and mix the images of a batch")


def _batched_vjp(logits: torch.Tensor, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Gradients of ``sum_n <v[j, n], logits[n]>`` with respect to ``a`` for every ``j``.

    ``v`` is ``(J, N, C)``; returns ``(J, *a.shape)``. All ``J`` vector-Jacobian products run
    as one vmapped backward pass; models with an operation that has no batching rule fall back
    to ``J`` backward passes over the same graph (same result).
    """
    try:
        (g,) = torch.autograd.grad(logits, a, grad_outputs=v, is_grads_batched=True,
                                   retain_graph=True)
        return g
    except RuntimeError:
        return _looped_vjp(logits, a, v)


def _looped_vjp(logits: torch.Tensor, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.autograd.grad(logits, a, grad_outputs=v[j], retain_graph=True)[0]
                        for j in range(v.shape[0])])


def _cam_weights(g: torch.Tensor, a: torch.Tensor, method: str) -> torch.Tensor:
    """Channel weights ``(J, N, K)`` from gradients ``g`` ``(J, N, K, h, w)`` and activations ``a``."""
    if method == "contrast_cam":
        return g.mean(dim=(-2, -1))                                   # Grad-CAM: spatial mean
    # Grad-CAM++ closed form (explanations.grad_cam_plus_plus), applied to any backward signal.
    g2 = g * g
    g3 = g2 * g
    sum_a = a.sum(dim=(-2, -1), keepdim=True)                         # (N, K, 1, 1), broadcast over J
    alpha = g2 / (2 * g2 + sum_a * g3 + _GCPP_EPS)
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    return (F.relu(g) * alpha).sum(dim=(-2, -1))


def _maps_for_batch(model: nn.Module, xb: torch.Tensor, layer, method: str,
                    with_explanation: bool):
    """One forward pass: normalised contrastive maps ``(N, C, H, W)``, the explanation of the
    prediction ``(N, H, W)`` (or ``None``) and the prediction ``(N,)``."""
    with capture_layer(model, layer) as store, torch.enable_grad():
        logits = model(xb)
        if "activation" not in store:
            raise RuntimeError(f"layer {store['name']!r} was not used in the forward pass.")
        if logits.dim() != 2:
            raise ValueError(f"the model must return logits shaped (N, num_classes), got "
                             f"{tuple(logits.shape)}.")
        a = store["activation"]
        n, c = logits.shape
        probs = logits.detach().softmax(dim=1)
        pred = probs.argmax(dim=1)
        eye = torch.eye(c, device=logits.device, dtype=logits.dtype)
        # d CE(logits, Q) / d logits = softmax(logits) - e_Q, for every Q at once: (C, N, C)
        v = probs.unsqueeze(0) - eye.unsqueeze(1)
        if with_explanation:
            v = torch.cat([v, eye[pred].unsqueeze(0)])                # "Why P?": d y_P / d logits
        g = _batched_vjp(logits, a, v)                                # (J, N, K, h, w)
    a = a.detach()
    weights = _cam_weights(g, a, method)                              # (J, N, K)
    cams = F.relu(torch.einsum("jnk,nkhw->jnhw", weights, a))
    j, h, w = cams.shape[0], cams.shape[-2], cams.shape[-1]
    size = tuple(xb.shape[-2:])
    if (h, w) != size:
        cams = F.interpolate(cams.reshape(j * n, 1, h, w), size=size, mode="bilinear",
                             align_corners=False).reshape(j, n, *size)
    cams = normalize_maps(cams.reshape(j * n, *size)).reshape(j, n, *size)
    contrast = cams[:c].transpose(0, 1)                              # (N, C, H, W)
    explanation = cams[c] if with_explanation else None
    return contrast, explanation, pred


def _run(model, x, method, layer, batch_size, progress, with_explanation, value_range=PIXELS):
    _check_model(model)
    check_model_input(model, x, value_range=check_value_range(value_range))
    progress = check_bool(progress, "progress")
    if not isinstance(method, str):
        raise TypeError(f"method must be a string; choose one of: {', '.join(VOICE_METHODS)}.")
    check_choice(method, "VOICE method", VOICE_METHODS)
    batch_size = check_positive_int(batch_size, "batch_size")
    dev = _model_device(model)
    starts = range(0, x.shape[0], batch_size)
    contrast, expl, preds = [], [], []
    for s in progress_bar(starts, total=len(starts), disable=not progress, desc=f"VOICE ({method})"):
        cm, ex, pr = _maps_for_batch(model, x[s:s + batch_size].detach().to(dev), layer, method,
                                     with_explanation)
        contrast.append(cm.to(x.device))
        preds.append(pr.to(x.device))
        if ex is not None:
            expl.append(ex.to(x.device))
    out = {"contrast_maps": torch.cat(contrast), "prediction": torch.cat(preds)}
    if with_explanation:
        out["explanation"] = torch.cat(expl)
    return out


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------
def contrastive_maps(model: nn.Module, x: torch.Tensor, *, method: str = "contrast_cam",
                     layer: str | None = None, batch_size: int = 256,
                     progress: bool = False,
                     value_range: tuple[float, float] | None = PIXELS) -> torch.Tensor:
    """The contrastive explanation "Why P, rather than Q?" for every contrast class ``Q``.

    ``P`` is the network's prediction: the backward signal ``J_Q = CE(logits, Q)`` has
    ``dJ_Q / d logits = softmax(logits) - e_Q``, so it contrasts the evidence for P (and every
    other likely class) with the evidence for Q. The map of ``Q = P`` answers "Why not P with
    100 % confidence?". Every map is min-max normalised per image (a flat map becomes zeros).

    Parameters
    ----------
    model : torch.nn.Module
        A convolutional classifier returning logits, in eval mode.
    x : torch.Tensor
        Images ``(N, C_in, H, W)``.
    method : {"contrast_cam", "grad_cam_plus_plus"}, default "contrast_cam"
        ``"contrast_cam"``: the weights are the spatial means of ``dJ_Q / dA``, exactly
        :func:`robust_utils.explanations.contrast_cam` with ``contrast=Q``.
        ``"grad_cam_plus_plus"``: the Grad-CAM++ closed form of
        :func:`robust_utils.explanations.grad_cam_plus_plus` with ``g = dJ_Q / dA`` in place of
        ``g = dS_P / dA`` (``a = g^2 / (2 g^2 + sum A g^3 + eps)``, ``w = sum a ReLU(g)``).
        :func:`~robust_utils.explanations.grad_cam_plus_plus` only takes a class logit as its
        signal, so the contrastive version is computed here. Grad-CAM++ derives that form for
        the score ``exp(S_P)``; for ``J_Q`` it is the analogue used by VOICE, not a derivation.
    layer : str, optional
        Name of the layer whose activations ``A`` are weighted; default the last convolution.
    batch_size : int, default 256
        Images per forward pass. Each batch costs one forward pass and one vmapped backward
        pass for all ``C`` contrast classes.
    progress : bool, default False
        Show a progress bar over the batches.
    value_range : (low, high) or None, default (0, 1)
        The range the images must lie in (the book's models take ``[0, 1]`` pixels); ``None``
        for a model that takes other inputs.

    Returns
    -------
    torch.Tensor
        ``(N, C, H, W)`` maps in ``[0, 1]``, on ``x``'s device; ``[:, Q]`` is the map of
        contrast class ``Q``.

    Taught in Part 4, section "VOICE: the uncertainty of an explanation".
    """
    return _run(model, x, method, layer, batch_size, progress, with_explanation=False,
                value_range=value_range)["contrast_maps"]


def voice(model: nn.Module, x: torch.Tensor, *, method: str = "contrast_cam",
          layer: str | None = None, batch_size: int = 256, progress: bool = False,
          value_range: tuple[float, float] | None = PIXELS) -> dict:
    """VOICE: an explanation of each prediction and the uncertainty map of that explanation.

    The uncertainty is the per-pixel variance of the normalised contrastive maps of
    :func:`contrastive_maps` over the ``C - 1`` contrast classes other than the prediction
    (population variance, dividing by ``C - 1``), min-max normalised per image; an image whose
    contrastive maps all agree gets an all-zero map (not NaN).

    Parameters
    ----------
    model : torch.nn.Module
        A convolutional classifier with at least 3 classes, in eval mode (with 2 classes there
        is a single contrast class and its variance is always 0).
    x : torch.Tensor
        Images ``(N, C_in, H, W)``.
    method : {"contrast_cam", "grad_cam_plus_plus"}, default "contrast_cam"
        The family of explanations: ContrastCAM maps with the Grad-CAM explanation, or
        contrastive Grad-CAM++ maps with the Grad-CAM++ explanation (see
        :func:`contrastive_maps`).
    layer, batch_size, progress, value_range
        As in :func:`contrastive_maps`.

    Returns
    -------
    dict
        ``"prediction"`` ``(N,)`` long, ``"explanation"`` ``(N, H, W)`` ("Why P?": Grad-CAM or
        Grad-CAM++ of the prediction, normalised to ``[0, 1]``, equal to
        :func:`~robust_utils.explanations.grad_cam` / :func:`~robust_utils.explanations.grad_cam_plus_plus`),
        ``"uncertainty"`` ``(N, H, W)`` in ``[0, 1]``, and ``"contrast_maps"`` ``(N, C, H, W)``,
        all on ``x``'s device.

    Taught in Part 4, section "VOICE: the uncertainty of an explanation".
    """
    out = _run(model, x, method, layer, batch_size, progress, with_explanation=True,
               value_range=value_range)
    maps, pred = out["contrast_maps"], out["prediction"]
    c = maps.shape[1]
    if c < 3:
        raise ValueError(f"VOICE needs a model with at least 3 classes (got {c}): with 2 classes there "
                         "is only one contrast class besides the prediction, and the variance of one "
                         "map is always 0.")
    keep = torch.ones(maps.shape[:2], dtype=torch.bool, device=maps.device)
    keep[torch.arange(maps.shape[0], device=maps.device), pred] = False
    w = keep.to(maps.dtype)[:, :, None, None]
    mean = (maps * w).sum(1, keepdim=True) / (c - 1)
    var = (((maps - mean) ** 2) * w).sum(1) / (c - 1)
    return {"prediction": pred, "explanation": out["explanation"],
            "uncertainty": normalize_maps(var), "contrast_maps": maps}


def _check_maps(m, name: str) -> torch.Tensor:
    if not isinstance(m, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of maps shaped (N, H, W), got {type(m).__name__}.")
    if m.dim() != 3:
        hint = " Add a batch dimension with m.unsqueeze(0)." if m.dim() == 2 else ""
        raise ValueError(f"{name} must have shape (N, H, W) (one map per image), got shape "
                         f"{tuple(m.shape)}.{hint}")
    if m.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (N=0); pass at least one map.")
    if not torch.is_floating_point(m):
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {m.dtype}. Use m.float().")
    return check_finite(m, name)


def voice_iou(explanation: torch.Tensor, uncertainty: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """Intersection over union of the explanation and its uncertainty, per image.

    Both maps are binarised as ``map > threshold`` (they are expected to be min-max normalised
    to ``[0, 1]``, as :func:`voice` returns them). An image where both masks are empty (no pixel
    above the threshold) gets IoU 0: there is no explained region for the uncertainty to overlap.

    Parameters
    ----------
    explanation, uncertainty : torch.Tensor
        ``(N, H, W)`` maps of the same shape.
    threshold : float in [0, 1], default 0.1
        VOICE's threshold.

    Returns
    -------
    torch.Tensor
        ``(N,)`` IoU values in ``[0, 1]``; higher = the uncertain region overlaps the explanation
        more (a less trustworthy prediction). The mean over images is VOICE's mIoU.

    Taught in Part 4, section "VOICE: the uncertainty of an explanation".
    """
    _check_maps(explanation, "explanation")
    _check_maps(uncertainty, "uncertainty")
    if explanation.shape != uncertainty.shape:
        raise ValueError(f"explanation and uncertainty must have the same shape, got "
                         f"{tuple(explanation.shape)} and {tuple(uncertainty.shape)}.")
    threshold = check_fraction(threshold, "threshold")
    e = (explanation > threshold).flatten(1)
    u = (uncertainty.to(explanation.device) > threshold).flatten(1)
    inter = (e & u).sum(1).to(explanation.dtype)
    union = (e | u).sum(1).to(explanation.dtype)
    return torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(union))


def voice_snr(uncertainty: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio of each uncertainty map: ``mean / std`` over its pixels.

    The standard deviation is the population one (dividing by the number of pixels). A map with
    zero standard deviation (e.g. the all-zero map of an image whose contrastive explanations
    agree) gets SNR 0 rather than NaN or infinity.

    Parameters
    ----------
    uncertainty : torch.Tensor
        ``(N, H, W)`` maps.

    Returns
    -------
    torch.Tensor
        ``(N,)``; higher = the uncertainty is spread more evenly over the image (a less
        trustworthy prediction).

    Taught in Part 4, section "VOICE: the uncertainty of an explanation".
    """
    _check_maps(uncertainty, "uncertainty")
    flat = uncertainty.flatten(1)
    mean = flat.mean(1)
    std = flat.std(1, correction=0)
    return torch.where(std > 0, mean / torch.where(std > 0, std, torch.ones_like(std)),
                       torch.zeros_like(std))
