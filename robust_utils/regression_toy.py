"""A 1-D regression toy that separates aleatoric from epistemic uncertainty.

Data with a gap and heteroscedastic noise (:func:`toy_regression_data`), a deep ensemble of
mean-variance networks (:class:`GaussianMLP`, :func:`fit_regression_ensemble`), and the split
of the ensemble's variance into the mean of the members' variances (aleatoric) and the
variance of their means (epistemic, :func:`regression_uncertainty`).

Taught in Part 3, section "What is uncertainty?".
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ._checks import check_number, check_positive_int, check_same_length, check_seed, model_device
from .config import progress_bar
from .metrics import declares_direction

__all__ = [
    "toy_noise_std",
    "toy_regression_data",
    "GaussianMLP",
    "fit_regression_ensemble",
    "regression_uncertainty",
]


# ---------------------------------------------------------------------------------------------
# 1-D regression toy: aleatoric vs epistemic uncertainty
# ---------------------------------------------------------------------------------------------
def toy_noise_std(x: torch.Tensor) -> torch.Tensor:
    """Standard deviation of the toy data's noise: :math:`\\sigma(x) = 0.05 + 0.15\\,|x|`.

    Taught in Part 3, section "What is uncertainty?".
    """
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        raise TypeError(f"x must be a floating-point torch.Tensor, got {type(x).__name__}.")
    return 0.05 + 0.15 * x.abs()


def toy_regression_data(n: int = 400, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A 1-D regression set with a gap and heteroscedastic noise (the slides' toy example).

    Inputs are drawn uniformly from two clusters, ``[-4, -1]`` and ``[1, 4]`` (half each; no data
    in the gap between them or beyond ``|x| = 4``), and targets are

    .. math::  y = \\sin(x) + \\sigma(x)\\,\\varepsilon, \\qquad \\sigma(x) = 0.05 + 0.15\\,|x|,
               \\quad \\varepsilon \\sim \\mathcal{N}(0, 1)

    (:func:`toy_noise_std`): the noise, hence the aleatoric uncertainty, grows with ``|x|``,
    while the epistemic uncertainty should grow in the gap and outside ``[-4, 4]``.

    Parameters
    ----------
    n : int >= 2, default 400
    seed : int, default 0
        Seeds a private generator (the global random state is untouched).

    Returns
    -------
    x, y : Tensor (n, 1), float32
        Sorted by ``x``.

    Taught in Part 3, section "What is uncertainty?".
    """
    n = check_positive_int(n, "n", minimum=2)
    seed = check_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    n_left = n // 2
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    x = 1.0 + 3.0 * u
    x[:n_left] = -x[:n_left]
    x = x.sort().values
    y = torch.sin(x) + toy_noise_std(x) * torch.randn(n, generator=gen, dtype=torch.float64)
    return x.float().unsqueeze(1), y.float().unsqueeze(1)


class GaussianMLP(nn.Module):
    """A small MLP for 1-D regression that predicts a Gaussian: ``(N, 1) -> (N, 2)``.

    ``Linear(1, hidden) -> ReLU -> Linear(hidden, hidden) -> ReLU -> Linear(hidden, 2)``; column 0
    is the mean, column 1 the log-variance (clamped to ``[-10, 10]``).

    Taught in Part 3, section "What is uncertainty?".
    """

    def __init__(self, hidden: int = 64):
        super().__init__()
        hidden = check_positive_int(hidden, "hidden")
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return torch.stack([out[:, 0], out[:, 1].clamp(-10.0, 10.0)], dim=1)


def _check_regression_inputs(x, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        raise TypeError(f"{name} must be a floating-point torch.Tensor (N, 1), got {type(x).__name__}.")
    if x.dim() == 1:
        x = x.unsqueeze(1)
    if x.dim() != 2 or x.shape[1] != 1 or x.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, 1) or (N,) with N >= 1, got {tuple(x.shape)}.")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return x


def fit_regression_ensemble(x: torch.Tensor, y: torch.Tensor, *, members: int = 5, hidden: int = 64,
                            epochs: int = 300, lr: float = 1e-2, seed: int = 0,
                            progress: bool = False) -> list[nn.Module]:
    """Train a deep ensemble of :class:`GaussianMLP` regressors (Lakshminarayanan et al., 2017).

    Each member is initialised with seed ``seed + m`` and trained full-batch with Adam on the
    Gaussian negative log-likelihood
    :math:`\\tfrac{1}{2}\\big(\\log \\sigma^2(x) + (y - \\mu(x))^2 / \\sigma^2(x)\\big)`, so it learns
    both a mean and the noise variance (the aleatoric part); the members disagree where there
    was no data (the epistemic part). A few seconds on a CPU with the defaults.

    Parameters
    ----------
    x, y : Tensor (N, 1) or (N,)
        Training inputs and targets (e.g. :func:`toy_regression_data`).
    members : int, default 5
    hidden : int, default 64
        Width of the two hidden layers.
    epochs : int, default 300
        Full-batch Adam steps per member.
    lr : float, default 1e-2
    seed : int, default 0
    progress : bool, default False
        Show a progress bar over the epochs.

    Returns
    -------
    list of GaussianMLP
        In eval mode, on ``x``'s device.

    Taught in Part 3, section "What is uncertainty?".
    """
    x = _check_regression_inputs(x, "x")
    y = _check_regression_inputs(y, "y")
    check_same_length("x", x, "y", y)
    members = check_positive_int(members, "members")
    epochs = check_positive_int(epochs, "epochs")
    seed = check_seed(seed)
    lr = check_number(lr, "lr", minimum=0.0)
    x, y = x.detach(), y.detach().to(x.device)
    models = []
    for m in range(members):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + m)
            models.append(GaussianMLP(hidden).to(x.device))
    # The members are trained side by side (torch.func: stacked parameters, vmap over members).
    # Adam acts element-wise and the summed loss separates, so this is exactly M independent runs.
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")

    def forward_one(p: dict, b: dict, xx: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (xx,))

    opt = torch.optim.Adam(list(params.values()), lr=lr)
    # The tensors are tiny: extra CPU threads only add synchronisation (and stall badly when the
    # cores are shared), so train on one thread and restore the setting afterwards.
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in progress_bar(range(epochs), total=epochs, disable=not progress,
                              desc=f"ensemble of {members}", unit="epoch"):
            out = vmap(forward_one, in_dims=(0, 0, None))(params, buffers, x)  # (M, N, 2)
            mu, log_var = out[..., :1], out[..., 1:]
            nll = 0.5 * (log_var + (y - mu).pow(2) * torch.exp(-log_var))  # Gaussian NLL, no constant
            loss = nll.mean(dim=(1, 2)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(n_threads)
    with torch.no_grad():
        for m, net in enumerate(models):
            net.load_state_dict({name: t[m].detach().clone() for name, t in params.items()})
            net.eval()
    return models


@declares_direction("more uncertain")
@torch.no_grad()
def regression_uncertainty(members: Sequence[nn.Module], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Aleatoric and epistemic uncertainty of a regression ensemble.

    With member means :math:`\\mu_m(x)` and variances :math:`\\sigma_m^2(x)`, the ensemble is the
    mixture whose variance splits into

    .. math::  \\underbrace{\\frac{1}{M}\\sum_m \\sigma_m^2(x)}_{aleatoric}
               + \\underbrace{\\frac{1}{M}\\sum_m \\mu_m(x)^2 - \\bar\\mu(x)^2}_{epistemic} .

    Parameters
    ----------
    members : sequence of GaussianMLP
        From :func:`fit_regression_ensemble` (any module mapping (N, 1) to (mean, log-variance)).
    x : Tensor (N, 1) or (N,)

    Returns
    -------
    dict
        ``"mean"``, ``"aleatoric"``, ``"epistemic"`` (population variance of the member means)
        and ``"total"``, each ``(N,)``.

    Taught in Part 3, section "What is uncertainty?".
    """
    if isinstance(members, nn.Module) or not isinstance(members, (list, tuple)) or not members:
        raise TypeError("members must be a non-empty list of trained regressors, e.g. the output of "
                        "fit_regression_ensemble(...).")
    x = _check_regression_inputs(x, "x")
    means, variances = [], []
    for i, net in enumerate(members):
        if not isinstance(net, nn.Module):
            raise TypeError(f"members[{i}] must be a torch.nn.Module, got {type(net).__name__}.")
        was_training = net.training
        net.eval()
        try:
            out = net(x.to(model_device(net))).to(x.device)
        finally:
            net.train(was_training)
        if out.dim() != 2 or out.shape[1] != 2:
            raise ValueError(f"members[{i}] returned shape {tuple(out.shape)}; expected (N, 2) = (mean, "
                             "log-variance), as GaussianMLP does.")
        means.append(out[:, 0])
        variances.append(out[:, 1].exp())
    mu = torch.stack(means)
    aleatoric = torch.stack(variances).mean(0)
    epistemic = mu.var(0, unbiased=False)
    return {"mean": mu.mean(0), "aleatoric": aleatoric, "epistemic": epistemic,
            "total": aleatoric + epistemic}
