"""Adversarial examples: small, deliberate changes of the input that change the prediction.

An adversary who knows the network moves an image ``x`` (pixels in ``[0, 1]``, label ``y``)
inside the :math:`L_\\infty` ball of radius :math:`\\epsilon` around it, in the direction that
increases the loss :math:`\\mathcal{L} = \\mathrm{CE}(f(x), y)` the most.

FGSM (Goodfellow et al., 2015) takes one step of size :math:`\\epsilon` along the sign of the
input gradient,

.. math::  x' = \\mathrm{clip}_{[0, 1]}\\big(x + \\epsilon\\,
           \\mathrm{sign}(\\nabla_x \\mathcal{L}(f(x), y))\\big),

and PGD (Madry et al., 2018) repeats smaller steps of size :math:`\\alpha` from a random start
:math:`x^0 = \\mathrm{clip}_{[0, 1]}(x + u)`, :math:`u \\sim \\mathcal{U}[-\\epsilon, \\epsilon]^d`,
projecting back onto the allowed set after every step,

.. math::  x^{t+1} = \\Pi_{B_\\infty(x, \\epsilon) \\cap [0, 1]^d}\\big(x^t + \\alpha\\,
           \\mathrm{sign}(\\nabla_x \\mathcal{L}(f(x^t), y))\\big).

Part 3 uses the adversarial images as one of the *challenge sets* (next to noise,
corruptions and out-of-distribution images) whose gradients a detector learns to tell apart
from the training distribution; Part 5 extends this module.

The attacks differentiate the loss with respect to the *input only* (``torch.autograd.grad``),
so the model's parameters keep their ``requires_grad`` flags and their ``.grad`` fields are
never written. The loss of a batch is the *sum* of the per-image losses, so each image's
gradient is its own and the result does not depend on ``batch_size``. The model must be in
eval mode (dropout would make the attack random and batch-norm would mix the images).

Results agree with :mod:`torchattacks` (``FGSM`` exactly, ``PGD`` without random start to
1e-6; tested).

Taught in Part 3, section "Step 2: the challenge sets"; extended in Part 5.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_eval_model, check_labels, check_number, check_positive_int, check_seed, model_device
from ._checks import check_bool, check_model_input
from .config import progress_bar

__all__ = [
    "fgsm",
    "pgd",
    "robust_accuracy",
]


# ---------------------------------------------------------------------------------------------
# Shared checks
# ---------------------------------------------------------------------------------------------
def _check_eval_model(model: nn.Module) -> None:
    check_eval_model(model, "dropout would make the attack random and batch-norm batch statistics "
                            "would mix the images of a batch")


_model_device = model_device


def _check_eps(eps, name: str = "eps") -> float:
    """A budget or step size in pixel units of [0, 1] images: finite, in (0, 1]."""
    return check_number(eps, name, minimum=0.0, maximum=1.0, strict=True,
                        hint=f"{name} is in pixel units of [0, 1] images: 8/255 \u2248 {8 / 255:.3f}, not 8"
                             + (" (and an attack with eps = 0 is the clean image x itself)." if name == "eps"
                                else "."))


def _check_xy(model: nn.Module, x, y) -> torch.Tensor:
    """Check images and labels; returns the labels as int64 (any integer dtype is accepted)."""
    check_model_input(model, x, value_range=(0.0, 1.0))
    y = check_labels(y, n=x.shape[0], name="y")
    if y.numel() and int(y.min()) < 0:
        raise ValueError(f"y must hold class indices >= 0, got a minimum of {int(y.min())}.")
    return y


def _logits_checked(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    if logits.dim() != 2:
        raise ValueError(f"the model must return logits of shape (N, num_classes), got shape "
                         f"{tuple(logits.shape)}.")
    if y.numel() and int(y.max()) >= logits.shape[1]:
        raise ValueError(f"y must lie in [0, {logits.shape[1] - 1}] (the model has {logits.shape[1]} "
                         f"classes), got a maximum of {int(y.max())}.")
    return logits


def _input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of the summed cross-entropy w.r.t. the input only (no parameter ``.grad`` touched)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(_logits_checked(model, x, y), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, x)
    return g


# ---------------------------------------------------------------------------------------------
# Attacks
# ---------------------------------------------------------------------------------------------
def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *,
         batch_size: int = 512) -> torch.Tensor:
    """Fast gradient sign method: one step of size ``eps`` along the sign of the input gradient.

    .. math::  x' = \\mathrm{clip}_{[0, 1]}\\big(x + \\epsilon\\,
               \\mathrm{sign}(\\nabla_x \\mathrm{CE}(f(x), y))\\big)

    Parameters
    ----------
    model : nn.Module
        A classifier in eval mode that takes ``[0, 1]`` images and returns logits.
    x : Tensor (N, C, H, W)
        Images in ``[0, 1]``.
    y : Tensor (N,)
        The true labels (the attack increases their loss).
    eps : float in (0, 1]
        :math:`L_\\infty` budget in pixel units of ``[0, 1]`` images (e.g. ``8/255``, not ``8``).
    batch_size : int, default 512
        Images per forward/backward pass.

    Returns
    -------
    Tensor
        Adversarial images, same shape, dtype and device as ``x``, in ``[0, 1]``, with
        ``|x' - x| <= eps`` pixel-wise.

    Taught in Part 3, section "Step 2: the challenge sets".
    """
    _check_eval_model(model)
    y = _check_xy(model, x, y)
    eps = _check_eps(eps)
    batch_size = check_positive_int(batch_size, "batch_size")
    dev = _model_device(model, x.device)
    out = []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i:i + batch_size].to(dev)
        yb = y[i:i + batch_size].to(dev)
        g = _input_gradient(model, xb, yb)
        out.append(torch.clamp(xb + eps * g.sign(), min=0, max=1).detach().to(x.device))
    return torch.cat(out)


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *,
        alpha: float | None = None, steps: int = 10, random_start: bool = True, seed: int = 0,
        batch_size: int = 512, progress: bool = False) -> torch.Tensor:
    """Projected gradient descent (Madry et al., 2018), the :math:`L_\\infty` attack.

    Starting from ``x`` plus uniform noise in ``[-eps, eps]`` (``random_start``), take
    ``steps`` signed-gradient steps of size ``alpha``, each followed by the projection onto
    the ``eps``-ball around ``x`` and onto ``[0, 1]``:

    .. math::  x^{t+1} = \\Pi_{B_\\infty(x, \\epsilon) \\cap [0, 1]^d}\\big(x^t + \\alpha\\,
               \\mathrm{sign}(\\nabla_x \\mathrm{CE}(f(x^t), y))\\big).

    Parameters
    ----------
    model : nn.Module
        A classifier in eval mode that takes ``[0, 1]`` images and returns logits.
    x : Tensor (N, C, H, W)
        Images in ``[0, 1]``.
    y : Tensor (N,)
        The true labels.
    eps : float in (0, 1]
        :math:`L_\\infty` budget in pixel units of ``[0, 1]`` images (e.g. ``8/255``, not ``8``).
    alpha : float in (0, 1], optional
        Step size; default ``2.5 * eps / steps`` (Madry et al.'s choice, enough to cross the
        ball and come back).
    steps : int >= 1, default 10
    random_start : bool, default True
        Start at a uniformly random point of the ball (then clipped to ``[0, 1]``).
    seed : int, default 0
        Seed of the random start: a :class:`torch.Generator` on the model's device, so the
        global random state is untouched and the result is the same for every ``batch_size``.
    batch_size : int, default 512
        Images per forward/backward pass.
    progress : bool, default False
        Show a progress bar over batches.

    Returns
    -------
    Tensor
        Adversarial images, same shape, dtype and device as ``x``, in ``[0, 1]``, with
        ``|x' - x| <= eps`` pixel-wise.

    Taught in Part 3, section "Step 2: the challenge sets".
    """
    _check_eval_model(model)
    y = _check_xy(model, x, y)
    eps = _check_eps(eps)
    steps = check_positive_int(steps, "steps")
    alpha = 2.5 * eps / steps if alpha is None else _check_eps(alpha, "alpha")
    batch_size = check_positive_int(batch_size, "batch_size")
    random_start = check_bool(random_start, "random_start")
    progress = check_bool(progress, "progress")
    seed = check_seed(seed)
    dev = _model_device(model, x.device)
    noise = None
    if random_start:
        gen = torch.Generator(device=dev).manual_seed(seed)
        # one draw for all images, so the start does not depend on batch_size
        noise = torch.rand(x.shape, generator=gen, device=dev, dtype=x.dtype).mul_(2 * eps).sub_(eps)
    out = []
    n_batches = math.ceil(x.shape[0] / batch_size)
    bar = progress_bar(total=n_batches, disable=not progress, unit="batch", desc="PGD")
    try:
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size].to(dev)
            yb = y[i:i + batch_size].to(dev)
            adv = xb.clone()
            if noise is not None:
                adv = torch.clamp(adv + noise[i:i + batch_size], min=0, max=1)
            for _ in range(steps):
                g = _input_gradient(model, adv, yb)
                adv = adv.detach() + alpha * g.sign()
                delta = torch.clamp(adv - xb, min=-eps, max=eps)
                adv = torch.clamp(xb + delta, min=0, max=1).detach()
            out.append(adv.to(x.device))
            bar.update(1)
    finally:
        bar.close()
    return torch.cat(out)


@torch.no_grad()
def robust_accuracy(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, *,
                    batch_size: int = 1024) -> float:
    """Accuracy of the model on (adversarial) images: the fraction still classified as ``y``.

    Parameters
    ----------
    model : nn.Module
        A classifier in eval mode.
    x_adv : Tensor (N, C, H, W)
        Images in ``[0, 1]``, typically the output of :func:`fgsm` or :func:`pgd`.
    y : Tensor (N,)
        The true labels.
    batch_size : int, default 1024

    Returns
    -------
    float
        In ``[0, 1]``.

    Taught in Part 3, section "Step 2: the challenge sets".
    """
    _check_eval_model(model)
    y = _check_xy(model, x_adv, y)
    batch_size = check_positive_int(batch_size, "batch_size")
    dev = _model_device(model, x_adv.device)
    correct = 0
    for i in range(0, x_adv.shape[0], batch_size):
        yb = y[i:i + batch_size].to(dev)
        logits = _logits_checked(model, x_adv[i:i + batch_size].to(dev), yb)
        correct += int((logits.argmax(1) == yb).sum())
    return correct / x_adv.shape[0]
