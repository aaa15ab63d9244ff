"""The objectives of adversarial training, written as the slides of "Small change matters" write them.

A robust-training objective has two parts: an *inner maximisation*, which finds for every
training image ``x`` (label ``y``) an adversarial ``x'`` close to it, and an *outer risk*
:math:`g_\\theta(x', x, y)` that the network's parameters minimise. With :math:`h_\\theta(x)`
the softmax output and :math:`\\mathcal{B}_\\epsilon(x)` the :math:`L_\\infty` ball,

.. math::

   \\text{PGD-AT:}\\quad & \\mathrm{CE}(h(x), y) + \\beta\\,\\sup_{x' \\in \\mathcal{B}_\\epsilon(x)}
       \\mathrm{CE}(h(x'), y) \\\\
   \\text{TRADES:}\\quad & \\mathrm{CE}(h(x), y) + \\beta\\,\\sup_{x'} D_{KL}(h(x'), h(x)) \\\\
   \\text{MART:}\\quad & \\mathrm{BCE}(h(x), y) + \\beta\\,(1 - h^y(x))\\,\\sup_{x'} D_{KL}(h(x'), h(x))

WRM (Sinha et al., 2018) replaces the ball by a Lagrangian penalty on the squared L2 distance,
:math:`\\sup_{x'} \\mathrm{CE}(h(x'), y) - \\gamma\\,\\lVert x' - x\\rVert_2^2`, and trains on
:math:`x'` alone. UDR (Bui et al., 2022) keeps each method's risk but lets :math:`x'` leave the
ball at a price: the inner problem becomes :math:`\\sup_{x'} g_\\theta(x', x, y) - \\lambda\\,
\\hat d(x, x')` with the smoothed cost

.. math::  \\hat d = |\\delta|\\,\\mathbb{I}[|\\delta| < \\epsilon]
           + \\big(\\epsilon + (|\\delta| - \\epsilon)/\\tau\\big)\\,\\mathbb{I}[|\\delta| \\ge \\epsilon]

(element by element, :math:`\\delta = x' - x`), and the multiplier follows
:math:`\\lambda \\leftarrow \\lambda - \\eta_\\lambda(\\epsilon - \\overline{\\hat d})`.

Choices this module makes, each with the alternative as an option:

* **KL direction.** The slides write :math:`D_{KL}(h(x'), h(x)) = \\sum_k h_k(x') \\log
  \\frac{h_k(x')}{h_k(x)}`; the TRADES and MART code compute :math:`KL(h(x) \\Vert h(x'))`.
  ``direction="slides"`` (default) or ``"code"``.
* **MART's BCE** is :math:`-\\log h^y - \\log(1.0001 - \\max_{k \\ne y} h^k)` (the MART code's
  stabiliser 1.0001). The slides apply it to the clean image; MART's code to the adversarial one
  (``mart_bce_on="adversarial"``). The inner attack of TRADES and MART maximises the KL term (the
  x'-dependent part of the slides' unified risk); MART's own code attacks the cross-entropy.
* **UDR's pull-back** of the part of a perturbation beyond :math:`\\epsilon`. ``rule="slides"``
  takes a proximal step on the slides' linear penalty :math:`\\lambda\\hat d` (the excess shrinks
  by :math:`\\alpha\\lambda/\\tau` per step, never below the ball); ``rule="code"`` is the UDR
  code's update :math:`\\delta \\leftarrow \\delta - \\lambda\\frac{\\alpha}{\\tau}(\\delta -
  \\mathrm{sign}(\\delta)\\epsilon)`, a gradient step on a *quadratic* penalty of the excess. With
  the code's :math:`\\tau = \\alpha`, :math:`\\lambda = 1` is exactly PGD's hard clip. The slides
  keep :math:`\\lambda \\ge 0`; the code never clamps it (``clamp=False``).

The functions work on any tensor shape (the 2-D toy of the chapter uses them on points) and
never touch parameter gradients: the inner maximisation differentiates with respect to the input
only.

Taught in Part 5, section "Three adversarial-training objectives".
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_bool, check_choice, check_number, check_positive_int

__all__ = [
    "KL_DIRECTIONS",
    "PULLBACK_RULES",
    "RISKS",
    "kl_divergence",
    "mart_bce",
    "smoothed_cost",
    "udr_pull_back",
    "update_lambda",
    "inner_maximise",
    "wrm_maximise",
    "robust_risk",
]

KL_DIRECTIONS = ("slides", "code")
PULLBACK_RULES = ("slides", "code")
#: The outer risks g_theta: the three of the slides and WRM's (cross-entropy on x' alone).
RISKS = ("pgd", "trades", "mart", "wrm")


def _check_logits(logits, name: str) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[1] < 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"{name} must be logits of shape (N, num_classes >= 2), got {shape}.")
    return logits


def kl_divergence(logits_adv: torch.Tensor, logits_nat: torch.Tensor, *,
                  direction: str = "slides") -> torch.Tensor:
    """Per-sample KL divergence between the softmax outputs on ``x'`` and on ``x``.

    ``direction="slides"``: :math:`D_{KL}(h(x') \\Vert h(x)) = \\sum_k h_k(x')(\\log h_k(x')
    - \\log h_k(x))`, as the slides write it. ``"code"``: :math:`KL(h(x) \\Vert h(x'))`, what
    the TRADES and MART code compute (``nn.KLDivLoss(log_softmax(adv), softmax(nat))``).

    Returns a tensor of shape ``(N,)``, >= 0 (lower: the two predictions agree).

    Taught in Part 5, section "Three adversarial-training objectives".
    """
    _check_logits(logits_adv, "logits_adv")
    _check_logits(logits_nat, "logits_nat")
    if logits_adv.shape != logits_nat.shape:
        raise ValueError(f"logits_adv {tuple(logits_adv.shape)} and logits_nat "
                         f"{tuple(logits_nat.shape)} must have the same shape.")
    check_choice(direction, "KL direction", KL_DIRECTIONS)
    la, ln = F.log_softmax(logits_adv, dim=1), F.log_softmax(logits_nat, dim=1)
    if direction == "slides":
        return (la.exp() * (la - ln)).sum(1)
    return (ln.exp() * (ln - la)).sum(1)


def mart_bce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MART's boosted cross-entropy, per sample (lower is better).

    .. math::  \\mathrm{BCE}(h(x), y) = -\\log h^y(x) - \\log\\big(1.0001 - \\max_{k \\ne y}
               h^k(x)\\big)

    The second term pushes down the most likely *wrong* class (1.0001 is the MART code's
    stabiliser).

    Taught in Part 5, section "Three adversarial-training objectives".
    """
    _check_logits(logits, "logits")
    if not isinstance(y, torch.Tensor) or y.shape != (logits.shape[0],):
        raise ValueError(f"y must be a tensor of {logits.shape[0]} class indices.")
    y = y.long()
    logp = F.log_softmax(logits, dim=1)
    p = logp.exp()
    wrong = p.scatter(1, y[:, None], float("-inf")).max(1).values
    return -logp.gather(1, y[:, None]).squeeze(1) - torch.log(1.0001 - wrong)


def _check_eps_tau(eps, tau):
    eps = check_number(eps, "eps", hint="the budget of the ball, e.g. 0.1 for [0, 1] pixels.")
    tau = check_number(tau, "tau", hint="the smoothing of the cost beyond eps (slope 1/tau).")
    return eps, tau


def smoothed_cost(delta: torch.Tensor, eps: float, tau: float) -> torch.Tensor:
    """UDR's smoothed cost :math:`\\hat d` of each element of a perturbation ``delta``.

    :math:`|\\delta|` inside the ball, :math:`\\epsilon + (|\\delta| - \\epsilon)/\\tau` beyond
    it: continuous at :math:`\\epsilon`, slope :math:`1/\\tau` outside. Same shape as ``delta``.

    Taught in Part 5, section "UDR: one distributional framework for all three".
    """
    if not isinstance(delta, torch.Tensor):
        raise TypeError(f"delta must be a tensor, got {type(delta).__name__}.")
    eps, tau = _check_eps_tau(eps, tau)
    a = delta.abs()
    return torch.where(a < eps, a, eps + (a - eps) / tau)


def udr_pull_back(delta: torch.Tensor, eps: float, *, lam: float, alpha: float, tau: float,
                  rule: str = "slides") -> torch.Tensor:
    """Pull the part of ``delta`` beyond ``eps`` back towards the ball, element by element.

    ``rule="slides"``: a proximal step of size ``alpha`` on :math:`\\lambda\\hat d`, whose slope
    beyond the ball is :math:`\\lambda/\\tau`: the excess :math:`|\\delta| - \\epsilon` shrinks by
    :math:`\\alpha\\lambda/\\tau` and stops at the ball's surface. ``rule="code"``: the UDR code's
    :math:`\\delta - \\lambda\\frac{\\alpha}{\\tau}(\\delta - \\mathrm{sign}(\\delta)\\,\\epsilon)`
    where :math:`|\\delta| > \\epsilon`. Elements inside the ball are unchanged by both.

    Taught in Part 5, section "UDR: one distributional framework for all three".
    """
    if not isinstance(delta, torch.Tensor):
        raise TypeError(f"delta must be a tensor, got {type(delta).__name__}.")
    eps, tau = _check_eps_tau(eps, tau)
    alpha = check_number(alpha, "alpha", hint="the step size of the inner attack.")
    lam = check_number(lam, "lam", strict=False, minimum=-math.inf,
                       hint="the multiplier lambda of the cost.")
    check_choice(rule, "pull-back rule", PULLBACK_RULES)
    a = delta.abs()
    outside = a > eps
    if rule == "slides":
        if lam < 0:
            raise ValueError(f"lam must be >= 0 for the slides' rule (a negative multiplier would "
                             f"push the perturbation further out), got {lam}; clamp lambda at 0.")
        shrunk = torch.clamp(a - alpha * lam / tau, min=eps)
        return torch.where(outside, delta.sign() * shrunk, delta)
    return torch.where(outside, delta - lam * (alpha / tau) * (delta - delta.sign() * eps), delta)


def update_lambda(lam: float, eps: float, mean_cost: float, lr: float, *, clamp: bool = True) -> float:
    """One step of UDR's multiplier: :math:`\\lambda - \\eta_\\lambda(\\epsilon - \\overline{\\hat d})`.

    The derivative of :math:`\\lambda\\epsilon - \\lambda\\overline{\\hat d}` with respect to
    :math:`\\lambda`: when the adversarial examples stay closer than :math:`\\epsilon` on average,
    :math:`\\lambda` falls and the cost of leaving the ball drops. ``clamp=True`` keeps
    :math:`\\lambda \\ge 0` as the slides do; the authors' code does not clamp.

    Taught in Part 5, section "UDR: one distributional framework for all three".
    """
    lam = check_number(lam, "lam", strict=False, minimum=-math.inf)
    eps = check_number(eps, "eps")
    mean_cost = check_number(mean_cost, "mean_cost", strict=False)
    lr = check_number(lr, "lr", strict=False, hint="eta_lambda, the code uses 0.02.")
    new = lam - lr * (eps - mean_cost)
    return max(new, 0.0) if check_bool(clamp, "clamp") else new


def _box(x, box):
    return x if box is None else x.clamp(box[0], box[1])


def _check_box(box):
    if box is None:
        return None
    if not isinstance(box, (tuple, list)) or len(box) != 2 or not box[0] < box[1]:
        raise ValueError(f"box must be None or a pair (low, high) with low < high, got {box!r}.")
    return float(box[0]), float(box[1])


def inner_maximise(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, alpha: float,
                   steps: int, objective: str = "ce", kl_direction: str = "slides",
                   udr: dict | None = None, random_start: bool = True,
                   generator: torch.Generator | None = None,
                   box: tuple[float, float] | None = (0.0, 1.0)) -> torch.Tensor:
    """The adversarial examples of one training batch (detached), by signed-gradient ascent.

    Start at ``x + U(-eps, eps)`` (clipped to ``box``), then ``steps`` times: move each element
    by ``alpha`` along the sign of the gradient of the per-sample objective (``"ce"``:
    :math:`\\mathrm{CE}(h(x'), y)`, PGD-AT's; ``"kl"``: :math:`D_{KL}(h(x'), h(x))`, TRADES' and
    MART's), then either project onto the :math:`L_\\infty` ball (``udr=None``: PGD's hard clip)
    or pull the excess back with :func:`udr_pull_back` (``udr = {"lam": ..., "tau": ...,
    "rule": ...}``), and clip to ``box`` (``None`` for unbounded inputs such as 2-D points).

    The model is used as it is (train or eval mode: the caller chooses); only the input is
    differentiated, so parameter ``.grad`` fields are untouched.

    Taught in Part 5, section "Three adversarial-training objectives".
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x) or x.dim() < 2:
        raise ValueError("x must be a floating-point tensor of shape (N, ...).")
    eps = check_number(eps, "eps", hint="the L-infinity budget, e.g. 0.1 for [0, 1] pixels.")
    alpha = check_number(alpha, "alpha", hint="the step size, e.g. eps / 4.")
    steps = check_positive_int(steps, "steps")
    check_choice(objective, "inner objective", ("ce", "kl"))
    box = _check_box(box)
    if udr is not None:
        unknown = set(udr) - {"lam", "tau", "rule"}
        if unknown or "lam" not in udr or "tau" not in udr:
            raise ValueError(f"udr must be a dict with keys 'lam', 'tau' and optionally 'rule', got {udr!r}.")
    x = x.detach()
    with torch.no_grad():
        nat = model(x).detach() if objective == "kl" else None
    if random_start:
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        adv = _box(x + (2 * noise - 1) * eps, box)
    else:
        adv = x.clone()
    for _ in range(steps):
        adv = adv.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(adv)
            if objective == "ce":
                loss = F.cross_entropy(logits, y, reduction="sum")
            else:
                loss = kl_divergence(logits, nat, direction=kl_direction).sum()
            (g,) = torch.autograd.grad(loss, adv)
        delta = adv.detach() + alpha * g.sign() - x
        if udr is None:
            delta = delta.clamp(-eps, eps)
        else:
            delta = udr_pull_back(delta, eps, lam=udr["lam"], alpha=alpha, tau=udr["tau"],
                                  rule=udr.get("rule", "slides"))
        adv = _box(x + delta, box)
    return adv.detach()


def wrm_maximise(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, gamma: float, steps: int = 15,
                 box: tuple[float, float] | None = None) -> torch.Tensor:
    """WRM's inner problem: gradient ascent on :math:`\\mathrm{CE}(h(x'), y) - \\gamma\\lVert x' - x\\rVert_2^2`.

    From :math:`x' = x`, ``steps`` plain (unsigned) gradient steps of size :math:`1/\\sqrt{t + 2}`,
    :math:`t = 0, 1, \\dots` (Sinha et al.'s schedule), per sample; no ball and no projection. The
    penalty makes the problem strongly concave once :math:`\\gamma` exceeds the loss's smoothness,
    which is what WRM's certificate needs. ``box`` optionally clips to the pixel range (the
    reference code does not).

    Taught in Part 5, section "WRM: the Wasserstein ball in the loss".
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    gamma = check_number(gamma, "gamma", hint="the penalty of the squared L2 distance, e.g. 1.0.")
    steps = check_positive_int(steps, "steps")
    box = _check_box(box)
    x = x.detach()
    adv = x.clone()
    for t in range(steps):
        adv = adv.detach().requires_grad_(True)
        with torch.enable_grad():
            obj = F.cross_entropy(model(adv), y, reduction="sum") - gamma * ((adv - x) ** 2).sum()
            (g,) = torch.autograd.grad(obj, adv)
        adv = _box(adv.detach() + g / math.sqrt(t + 2), box)
    return adv.detach()


def robust_risk(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, *,
                risk: str, beta: float, kl_direction: str = "slides",
                mart_bce_on: str = "clean") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The outer risk :math:`g_\\theta(x', x, y)` per sample, and its clean and adversarial parts.

    ``risk`` is ``"pgd"``, ``"trades"``, ``"mart"`` (the three of the slides, shared by their
    UDR versions) or ``"wrm"`` (cross-entropy on ``x_adv`` alone). One forward pass of the
    concatenated batch ``[x; x_adv]``, with gradients, in whatever mode the model is in.

    Returns ``(total, clean_part, adversarial_part)``, each of shape ``(N,)``; lower is better.

    Taught in Part 5, section "Three adversarial-training objectives".
    """
    check_choice(risk, "risk", RISKS)
    beta = check_number(beta, "beta", strict=False, hint="the weight of the adversarial term.")
    check_choice(mart_bce_on, "mart_bce_on", ("clean", "adversarial"))
    if x.shape != x_adv.shape:
        raise ValueError(f"x {tuple(x.shape)} and x_adv {tuple(x_adv.shape)} must have the same shape.")
    n = x.shape[0]
    if risk == "wrm":
        adv = F.cross_entropy(model(x_adv), y, reduction="none")
        return adv, torch.zeros_like(adv), adv
    logits = model(torch.cat([x, x_adv]))
    nat, adv_logits = logits[:n], logits[n:]
    if risk == "pgd":
        clean = F.cross_entropy(nat, y, reduction="none")
        adv = beta * F.cross_entropy(adv_logits, y, reduction="none")
    elif risk == "trades":
        clean = F.cross_entropy(nat, y, reduction="none")
        adv = beta * kl_divergence(adv_logits, nat, direction=kl_direction)
    else:
        clean = mart_bce(nat if mart_bce_on == "clean" else adv_logits, y)
        p_true = F.softmax(nat, dim=1).gather(1, y[:, None].long()).squeeze(1)
        adv = beta * (1.0 - p_true) * kl_divergence(adv_logits, nat, direction=kl_direction)
    return clean + adv, clean, adv
