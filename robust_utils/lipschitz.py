"""The two robustness devices of Woods et al. (2019): the half-Huber ReLU and the stochastic
Lipschitz regulariser of their eq. (4).

**Half-Huber ReLU.** Regularising input gradients (eq. 4) optimises the derivative of every
activation, so Woods et al. want a first derivative that is continuous; the ReLU's jumps at 0.
The half-Huber ReLU with width :math:`\\delta > 0` is a rectified Huber function,

.. math::  \\mathrm{HHReLU}_\\delta(x) = \\begin{cases} 0 & x < 0 \\\\ x^2 / (2\\delta) & 0 \\le x \\le \\delta \\\\
           x - \\delta / 2 & x > \\delta \\end{cases},
           \\qquad \\mathrm{HHReLU}'_\\delta(x) = \\mathrm{clip}(x, 0, \\delta) / \\delta,

continuous in value and derivative (the paper's and the code's :math:`\\delta = 0.5`).

**Eq. (4).** With :math:`y` the pre-softmax outputs, :math:`K` output indices :math:`v_k` drawn per
image without replacement from the :math:`V` outputs, and :math:`N` the input elements,

.. math::  L_{adv,z} = \\frac{\\psi}{K N} \\sum_{k=1}^K \\sum_{j=1}^N
           \\left|\\frac{\\partial y_{v_k}}{\\partial x_j}\\right|^z,

averaged over the batch. With :math:`K = V` it is deterministic; for :math:`K < V` it is an
unbiased estimate of the :math:`K = V` value. The *tandem* variant replaces a drawn output, with
probability :math:`\\zeta`, by the margin :math:`y_t - \\max_{i \\ne t} y_i` of the true class
:math:`t`: it regularises the difference the softmax actually sees. The penalty is computed by
double back-propagation (``create_graph=True``), so its gradient reaches the parameters.

Taught in Part 6, section "The Lipschitz regulariser of eq. (4)".
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_fraction, check_labels, check_number, check_positive_int
from .models import register_activation

__all__ = ["half_huber_relu", "HalfHuberReLU", "lipschitz_penalty", "quadratic_share"]


def half_huber_relu(x: torch.Tensor, delta: float = 0.5) -> torch.Tensor:
    """The half-Huber ReLU of width ``delta`` (see the module docstring), element-wise.

    Taught in Part 6, section "The half-Huber ReLU".
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor, got {type(x).__name__}.")
    delta = check_number(delta, "delta", hint="the width of the quadratic piece, e.g. 0.5.")
    r = F.relu(x)
    return torch.where(r <= delta, r * r / (2 * delta), r - delta / 2)


class HalfHuberReLU(nn.Module):
    """:func:`half_huber_relu` as a module (``delta = 0.5`` by default); the ``"hhrelu"`` activation.

    Taught in Part 6, section "The half-Huber ReLU".
    """

    def __init__(self, delta: float = 0.5):
        super().__init__()
        self.delta = check_number(delta, "delta", hint="the width of the quadratic piece, e.g. 0.5.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return half_huber_relu(x, self.delta)

    def extra_repr(self) -> str:
        return f"delta={self.delta}"


register_activation("hhrelu", HalfHuberReLU)


def lipschitz_penalty(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *, psi: float,
                      z: float = 2.0, k: int = 1, zeta: float = 0.0,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Eq. (4) of Woods et al. on a batch: a scalar, differentiable in the model's parameters.

    Parameters
    ----------
    model : nn.Module
        Returns pre-softmax outputs ``(B, V)``. Its images must not interact within the batch
        (no batch norm in train mode), since one backward pass gives every image's gradient.
    x : Tensor (B, ...)
        Inputs (any shape; ``N`` = the elements per input).
    y : Tensor (B,), optional
        True labels; needed when ``zeta > 0`` (the tandem margin).
    psi : float >= 0
        The regulariser's weight.
    z : float > 0, default 2
        The power of the absolute derivatives.
    k : int in [1, V], default 1
        Outputs drawn per image, without replacement (``k = V``: all, deterministic).
    zeta : float in [0, 1], default 0
        Probability that a drawn output is replaced by the tandem margin of the true class.
    generator : torch.Generator, optional
        For the draws (on ``x``'s device).

    Returns
    -------
    Tensor
        ``psi / (K N) * sum_k sum_j |d y_{v_k} / d x_j|^z``, averaged over the batch; lower is
        smoother.

    Taught in Part 6, section "The Lipschitz regulariser of eq. (4)".
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x) or x.dim() < 2 or x.shape[0] == 0:
        raise ValueError("x must be a non-empty floating-point tensor of shape (B, ...).")
    psi = check_number(psi, "psi", strict=False, hint="the weight of eq. (4); 0 switches it off.")
    z = check_number(z, "z", hint="the power of the derivatives, e.g. 2.")
    k = check_positive_int(k, "k")
    zeta = check_fraction(zeta, "zeta")
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = model(x)
        if out.dim() != 2:
            raise ValueError(f"the model must return outputs of shape (B, V), got {tuple(out.shape)}.")
        b, v = out.shape
        if k > v:
            raise ValueError(f"k = {k} outputs cannot be drawn without replacement from V = {v}; use k <= {v}.")
        idx = torch.rand(b, v, generator=generator, device=x.device).argsort(1)[:, :k]
        chosen = out.gather(1, idx)
        if zeta > 0:
            if y is None:
                raise ValueError("zeta > 0 (the tandem variant) needs the true labels y.")
            y = check_labels(y, n=b, num_classes=v, name="y").to(x.device)
            true = out.gather(1, y[:, None])
            others = out.scatter(1, y[:, None], float("-inf")).max(1, keepdim=True).values
            tandem = (true - others).expand(-1, k)
            swap = torch.rand(b, k, generator=generator, device=x.device) < zeta
            chosen = torch.where(swap, tandem, chosen)
        total = x.new_zeros(())
        for j in range(k):
            (g,) = torch.autograd.grad(chosen[:, j].sum(), x, create_graph=True)
            total = total + g.abs().pow(z).flatten(1).mean(1).sum()
    return psi * total / (k * b)


def quadratic_share(model: nn.Module, x: torch.Tensor, delta: float = 0.5) -> float:
    """Share of the inputs of ``model``'s activation modules that fall in ``(0, delta)``.

    For a half-Huber ReLU that is its quadratic piece, where the derivative ``x / delta`` is below
    1; for a ReLU network the same interval, where the derivative is 1. Counts every module
    whose class is :class:`HalfHuberReLU`, :class:`torch.nn.ReLU` or :class:`torch.nn.ELU`,
    averaged over modules.

    Taught in Part 6, section "Table 1 on Fashion-MNIST".
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        raise ValueError("x must be a floating-point tensor of inputs the model takes.")
    delta = check_number(delta, "delta", hint="the width of the quadratic piece, e.g. 0.5.")
    shares = []
    acts = [m for m in model.modules() if isinstance(m, (HalfHuberReLU, nn.ReLU, nn.ELU))]
    if not acts:
        raise ValueError("the model has no HalfHuberReLU, ReLU or ELU modules to measure.")
    hooks = [m.register_forward_hook(lambda _m, inp, _out: shares.append(((inp[0] > 0) & (inp[0] < delta)).float().mean()))
             for m in acts]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return float(torch.stack(shares).mean())
