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
from the training distribution.

Part 5 extends :func:`pgd` to the inner maximisation of adversarial training in both of its
usual threat models: the :math:`L_\\infty` ball as above and the :math:`L_2` ball, where a step
follows the per-image :math:`L_2`-normalised gradient and the projection rescales
:math:`\\delta = x' - x` to :math:`\\|\\delta\\|_2 \\le \\epsilon`,

.. math::  x^{t+1} = \\Pi_{[0, 1]^d}\\Big(x + \\Pi_{B_2(0, \\epsilon)}\\big(x^t + \\alpha\\,
           \\tfrac{g^t}{\\|g^t\\|_2} - x\\big)\\Big), \\qquad g^t = \\nabla_x \\mathcal{L}(f(x^t), y),

with targeted attacks (decrease the loss of a target class), random restarts (keep, per image,
the first restart that fools the model) and a given starting point; :func:`robust_correct`
says per image whether the model still classifies it correctly, which the paired statistics
of :mod:`~robust_utils.robust_eval` need.

The attacks differentiate the loss with respect to the *input only* (``torch.autograd.grad``),
so the model's parameters keep their ``requires_grad`` flags and their ``.grad`` fields are
never written. The loss of a batch is the *sum* of the per-image losses, so each image's
gradient is its own and the result does not depend on ``batch_size``. The model must be in
eval mode (dropout would make the attack random and batch-norm would mix the images).

Results agree with :mod:`torchattacks` (``FGSM`` exactly; ``PGD`` exactly given the same
start, with or without random start, untargeted and targeted; ``PGDL2`` to 1e-6 given the same
start, the difference being torchattacks' ``1e-10`` added to the gradient norm; tested).

Taught in Part 3, section "Step 2: the challenge sets"; extended in Part 5, section
"Notation and the inner maximisation".
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_eval_model, check_labels, check_number, check_positive_int, check_seed, model_device
from ._checks import check_bool, check_choice, check_model_input
from .config import progress_bar
from .metrics import declares_direction

__all__ = [
    "fgsm",
    "pgd",
    "robust_correct",
    "robust_accuracy",
    "NORMS",
]

#: The threat models of :func:`pgd`: the :math:`L_\\infty` and the :math:`L_2` ball.
NORMS = ("linf", "l2")


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


def _check_eps_l2(eps, name: str = "eps") -> float:
    """An L2 radius or step in pixel units of [0, 1] images: finite and > 0 (it may exceed 1)."""
    return check_number(eps, name, minimum=0.0, strict=True,
                        hint=f"{name} is an L2 length in pixel units of [0, 1] images (e.g. 0.5 or 2.0"
                             + ("; an attack with eps = 0 is the clean image x itself)." if name == "eps"
                                else ")."))


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


def _input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, check: bool = True) -> torch.Tensor:
    """Gradient of the summed cross-entropy w.r.t. the input only (no parameter ``.grad`` touched).

    ``check=False`` skips the logits check (shape, label range) once a batch has passed it.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = _logits_checked(model, x, y) if check else model(x)
        loss = F.cross_entropy(logits, y, reduction="sum")
        (g,) = torch.autograd.grad(loss, x)
    return g


def _per_image(v: torch.Tensor) -> torch.Tensor:
    """A per-image vector (N,) reshaped to broadcast over (N, C, H, W)."""
    return v.view(-1, *([1] * 3))


# The smallest positive normal number per dtype: an L2 normalisation that divides by it instead
# of zero leaves a zero gradient (or perturbation) at zero without shrinking tiny ones, which a
# confident model's gradients can be (1e-12 and below).
_TINY = {dt: torch.finfo(dt).tiny for dt in (torch.float16, torch.bfloat16, torch.float32, torch.float64)}


def _l2_norms(t: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(t.flatten(1), dim=1)


def _random_start(x: torch.Tensor, eps: float, norm: str, seed: int, dev) -> torch.Tensor:
    """The random perturbation of every image, drawn at once on ``dev`` (independent of batching).

    L-infinity: uniform in ``[-eps, eps]^d``. L2: uniform in the ball, a Gaussian direction with
    radius ``eps * U^(1/d)`` (``d`` pixels per image).
    """
    gen = torch.Generator(device=dev).manual_seed(seed)
    if norm == "linf":
        return torch.rand(x.shape, generator=gen, device=dev, dtype=x.dtype).mul_(2 * eps).sub_(eps)
    direction = torch.randn(x.shape, generator=gen, device=dev, dtype=x.dtype)
    u = torch.rand(x.shape[0], generator=gen, device=dev, dtype=x.dtype)
    d = x[0].numel()
    radius = eps * u.pow(1.0 / d)
    return direction * _per_image(radius / _l2_norms(direction).clamp_min(1e-12))


def _check_start(start, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """A given starting point: a tensor like ``x``, in [0, 1], inside the ball (small tolerance)."""
    if not isinstance(start, torch.Tensor):
        raise TypeError(f"start must be None or a tensor of starting images shaped like x {tuple(x.shape)}, "
                        f"got {type(start).__name__}.")
    if start.shape != x.shape:
        raise ValueError(f"start must have the shape of x {tuple(x.shape)}, got {tuple(start.shape)}.")
    if start.dtype != x.dtype:
        raise TypeError(f"start has dtype {start.dtype} but x has {x.dtype}; convert with start.to(x.dtype).")
    if not torch.isfinite(start).all():
        raise ValueError("start contains NaN or infinite values.")
    lo, hi = float(start.min()), float(start.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"start must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; "
                         "clamp it with start.clamp(0, 1).")
    delta = start.detach().to(x.device) - x
    if norm == "linf":
        dist = float(delta.abs().max())
        fix = "x + (start - x).clamp(-eps, eps)"
    else:
        dist = float(_l2_norms(delta).max())
        fix = "x + (start - x) * min(1, eps / ||start - x||_2) per image"
    if dist > eps * (1 + 1e-6) + 1e-6:
        raise ValueError(f"start must lie inside the {norm} ball of radius eps = {eps:g} around x, but an image "
                         f"is at distance {dist:.6g}; project it first with {fix}.")
    return start


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


def _pgd_steps(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, adv: torch.Tensor, eps: float,
               step: float, steps: int, norm: str) -> torch.Tensor:
    """``steps`` PGD steps of signed size ``step`` (negative: targeted) from ``adv``, projected."""
    for t in range(steps):
        g = _input_gradient(model, adv, yb, check=t == 0)
        # in place where it saves a copy; the arithmetic is torchattacks' (x + alpha * sign(g),
        # clamp the difference, clamp the sum), so that the results agree exactly
        if norm == "linf":
            delta = (adv + step * g.sign()).sub_(xb).clamp_(min=-eps, max=eps)
        else:
            g = g / _per_image(_l2_norms(g).clamp_min(_TINY[g.dtype]))
            delta = (adv + step * g).sub_(xb)
            delta.mul_(_per_image((eps / _l2_norms(delta).clamp_min(_TINY[delta.dtype])).clamp_(max=1.0)))
        adv = delta.add_(xb).clamp_(min=0, max=1)
    return adv


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *,
        alpha: float | None = None, steps: int = 10, random_start: bool = True, seed: int = 0,
        batch_size: int = 512, progress: bool = False, norm: str = "linf", restarts: int = 1,
        targeted: bool = False, start: torch.Tensor | None = None) -> torch.Tensor:
    """Projected gradient descent (Madry et al., 2018) in the :math:`L_\\infty` or :math:`L_2` ball.

    Starting from ``x`` plus a random point of the ball (``random_start``), or from ``start``,
    take ``steps`` steps of size ``alpha``, each followed by the projection onto the
    ``eps``-ball around ``x`` and onto ``[0, 1]``. :math:`L_\\infty` (``norm="linf"``) steps
    along the sign of the input gradient,

    .. math::  x^{t+1} = \\Pi_{B_\\infty(x, \\epsilon) \\cap [0, 1]^d}\\big(x^t + \\alpha\\,
               \\mathrm{sign}(\\nabla_x \\mathrm{CE}(f(x^t), y))\\big);

    :math:`L_2` (``norm="l2"``) along the gradient divided by its :math:`L_2` norm (per image),
    then rescales :math:`\\delta = x^{t+1} - x` to :math:`\\|\\delta\\|_2 \\le \\epsilon` and
    clips to ``[0, 1]`` (the clip only shortens :math:`\\delta`, so the result is in both sets).

    Parameters
    ----------
    model : nn.Module
        A classifier in eval mode that takes ``[0, 1]`` images and returns logits.
    x : Tensor (N, C, H, W)
        Images in ``[0, 1]``.
    y : Tensor (N,)
        The true labels (the attack increases their loss), or with ``targeted=True`` the
        target labels (the attack decreases their loss).
    eps : float
        The budget in pixel units of ``[0, 1]`` images. :math:`L_\\infty`: in ``(0, 1]``
        (e.g. ``8/255``, not ``8``). :math:`L_2`: the radius of the ball, any finite value
        ``> 0`` (e.g. ``1.5``; the :math:`L_2` distance between two 28x28 images can reach 28).
    alpha : float, optional
        Step size (same units and bounds as ``eps``); default ``2.5 * eps / steps`` (Madry et
        al.'s choice, enough to cross the ball and come back), for both norms.
    steps : int >= 1, default 10
    random_start : bool, default True
        Start at a uniformly random point of the ball, then clipped to ``[0, 1]``:
        :math:`\\mathcal{U}[-\\epsilon, \\epsilon]^d` for :math:`L_\\infty`; for :math:`L_2` a
        Gaussian direction at radius :math:`\\epsilon\\, U^{1/d}`, :math:`U \\sim \\mathcal{U}[0, 1]`
        (uniform in the ball; torchattacks' ``PGDL2`` uses radius :math:`\\epsilon U`, which
        favours the centre).
    seed : int, default 0
        Seed of the random start: a :class:`torch.Generator` on the model's device, so the
        global random state is untouched and the result is the same for every ``batch_size``.
        Restart ``r`` (counting from 0) uses ``seed + r``.
    batch_size : int, default 512
        Images per forward/backward pass.
    progress : bool, default False
        Show a progress bar over batches.
    norm : {"linf", "l2"}, default "linf"
        The threat model (see :data:`NORMS`).
    restarts : int >= 1, default 1
        Number of random starts. Per image the result is the first restart's adversarial that
        *fools* the model (misclassified; with ``targeted``, classified as the target), else the
        last restart's. A restart runs only on the images that no earlier restart fooled, so
        the result for image ``i`` is the same as running each seed on all images and picking.
        Needs ``random_start=True``.
    targeted : bool, default False
        ``y`` are target labels; each step *decreases* :math:`\\mathrm{CE}(f(x^t), y)`.
    start : Tensor (N, C, H, W), optional
        Starting images for the first restart instead of the random start (later restarts
        are random): same shape and dtype as ``x``, in ``[0, 1]``, inside the ball (within a
        relative tolerance of 1e-6). With a start drawn as torchattacks draws it, the result
        equals torchattacks' ``PGD`` exactly (tested).

    Returns
    -------
    Tensor
        Adversarial images, same shape, dtype and device as ``x``, in ``[0, 1]``, with
        ``|x' - x| <= eps`` pixel-wise (:math:`L_\\infty`) or :math:`\\|x' - x\\|_2 \\le \\epsilon`
        per image (:math:`L_2`, up to rounding).

    Taught in Part 3, section "Step 2: the challenge sets"; extended in Part 5, section
    "Notation and the inner maximisation" (both norms, targets, restarts).
    """
    _check_eval_model(model)
    y = _check_xy(model, x, y)
    norm = check_choice(norm, "norm", NORMS)
    check_eps = _check_eps if norm == "linf" else _check_eps_l2
    eps = check_eps(eps)
    steps = check_positive_int(steps, "steps")
    alpha = 2.5 * eps / steps if alpha is None else check_eps(alpha, "alpha")
    batch_size = check_positive_int(batch_size, "batch_size")
    random_start = check_bool(random_start, "random_start")
    progress = check_bool(progress, "progress")
    targeted = check_bool(targeted, "targeted")
    seed = check_seed(seed)
    restarts = check_positive_int(restarts, "restarts")
    if restarts > 1 and not random_start:
        raise ValueError(f"restarts={restarts} needs random_start=True: without a random start every restart "
                         "would repeat the same attack.")
    if start is not None:
        start = _check_start(start, x, eps, norm)
    dev = _model_device(model, x.device)
    step = -alpha if targeted else alpha
    n = x.shape[0]
    out = torch.empty_like(x)
    todo = None                      # indices still to attack; None = all images, in order
    bar = progress_bar(total=math.ceil(n / batch_size), disable=not progress, unit="batch", desc="PGD")
    try:
        for r in range(restarts):
            noise = None
            if random_start and not (r == 0 and start is not None):
                # one draw for all images, so the start does not depend on batch_size
                noise = _random_start(x, eps, norm, seed + r, dev)
            last = r == restarts - 1
            m = n if todo is None else todo.numel()
            fooled = []
            for i in range(0, m, batch_size):
                if todo is None:
                    sel = slice(i, i + batch_size)
                else:
                    sel = todo[i:i + batch_size]
                xb = x[sel].to(dev)
                yb = y[sel].to(dev)
                if r == 0 and start is not None:
                    adv = start[sel].to(dev)
                elif noise is not None:
                    nb = noise[sel] if todo is None else noise[sel.to(dev)]
                    adv = torch.clamp(xb + nb, min=0, max=1)
                else:
                    adv = xb.clone()
                adv = _pgd_steps(model, xb, yb, adv, eps, step, steps, norm)
                out[sel] = adv.to(x.device)
                if not last:
                    with torch.no_grad():
                        pred = model(adv).argmax(1)
                    fooled.append(((pred == yb) if targeted else (pred != yb)).cpu())
                bar.update(1)
            if last:
                break
            keep = ~torch.cat(fooled)
            todo = (torch.arange(n) if todo is None else todo)[keep]
            if todo.numel() == 0:
                break
            bar.total += math.ceil(todo.numel() / batch_size)
            bar.refresh()
    finally:
        bar.close()
    return out


@declares_direction("better")
@torch.no_grad()
def robust_correct(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, *,
                   batch_size: int = 1024) -> torch.Tensor:
    """Per image: is the (adversarial) image still classified as ``y``? ``True`` = robust.

    The per-sample results that paired statistics need (McNemar's test compares two models
    on the *same* images, see :func:`robust_utils.robust_eval.mcnemar`); their mean is
    :func:`robust_accuracy`. Higher (``True``) is better.

    Parameters
    ----------
    model : nn.Module
        A classifier in eval mode.
    x_adv : Tensor (N, C, H, W)
        Images in ``[0, 1]``, typically the output of an attack.
    y : Tensor (N,)
        The true labels.
    batch_size : int, default 1024

    Returns
    -------
    torch.BoolTensor (N,)
        On the device of ``x_adv``.

    Taught in Part 5, section "Evaluating every network".
    """
    _check_eval_model(model)
    y = _check_xy(model, x_adv, y)
    batch_size = check_positive_int(batch_size, "batch_size")
    dev = _model_device(model, x_adv.device)
    out = []
    for i in range(0, x_adv.shape[0], batch_size):
        yb = y[i:i + batch_size].to(dev)
        logits = _logits_checked(model, x_adv[i:i + batch_size].to(dev), yb)
        out.append((logits.argmax(1) == yb).to(x_adv.device))
    return torch.cat(out)


@declares_direction("better")
def robust_accuracy(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, *,
                    batch_size: int = 1024) -> float:
    """Accuracy of the model on (adversarial) images: the fraction still classified as ``y``.

    The mean of :func:`robust_correct`; higher is better.

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
    correct = robust_correct(model, x_adv, y, batch_size=batch_size)
    return int(correct.sum()) / correct.numel()
