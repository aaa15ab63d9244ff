"""A 2-D toy where the robust objectives draw visibly different decision boundaries.

Two interleaved half-moons (:func:`sklearn.datasets.make_moons`), a small MLP, and the same
training loop and objectives as the image networks (:func:`robust_utils.robust_training.train_robust`
with ``box=None``: points are not clipped to a pixel range). The budget ``eps`` is an
:math:`L_\\infty` radius in the plane, so every training point is defended inside a small square.

Taught in Part 5, section "Two moons: four decision boundaries".
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ._checks import check_number, check_positive_int, check_seed

__all__ = ["two_moons", "toy_mlp", "train_toy", "decision_grid"]


def two_moons(n: int = 400, *, noise: float = 0.12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points of two interleaved half-moons, standardised, as float32 ``(n, 2)`` and int64 labels.

    Taught in Part 5, section "Two moons: four decision boundaries".
    """
    from sklearn.datasets import make_moons

    n = check_positive_int(n, "n", minimum=4)
    noise = check_number(noise, "noise", strict=False)
    x, y = make_moons(n_samples=n, noise=noise, random_state=check_seed(seed))
    x = (x - x.mean(0)) / x.std(0)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)


def toy_mlp(hidden: int = 64, *, seed: int = 0) -> nn.Module:
    """A 2 -> hidden -> hidden -> 2 ReLU network, seeded, with ``num_classes = 2``.

    Taught in Part 5, section "Two moons: four decision boundaries".
    """
    hidden = check_positive_int(hidden, "hidden")
    torch.manual_seed(check_seed(seed))
    model = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                          nn.Linear(hidden, 2))
    model.num_classes = 2
    return model


def train_toy(method: str, x: torch.Tensor, y: torch.Tensor, *, eps: float = 0.25, epochs: int = 150,
              seed: int = 0, params: dict | None = None) -> tuple[nn.Module, dict]:
    """Train :func:`toy_mlp` on 2-D points with ``"standard"`` cross-entropy or a robust method.

    A robust method (``"pgd_at"``, ``"trades"``, ``"udr_pgd"``, ...) runs
    :func:`robust_utils.robust_training.train_robust` with ``box=None``, 5 inner steps of
    ``0.4 eps``, batches of 100, Adam 1e-2; UDR updates lambda after every batch (``eta = 0.5``:
    the toy has few batches). ``"standard"`` is the same loop with PGD-AT's ``beta = 0``, which
    is plain cross-entropy on the clean points. Returns ``(model, history)``.

    Taught in Part 5, section "Two moons: four decision boundaries".
    """
    from .robust_training import ROBUST_METHODS, train_robust

    eps = check_number(eps, "eps")
    p = {"eps": eps, "alpha": 0.4 * eps, "steps": 5}
    if method == "standard":
        method, p = "pgd_at", {**p, "beta": 0.0}
    elif method not in ROBUST_METHODS:
        raise ValueError(f"unknown toy method {method!r}; use 'standard' or one of {sorted(ROBUST_METHODS)}.")
    if method.startswith("udr"):
        p.update(lambda_every=1, lambda_lr=0.5)
    if method == "wrm":
        p = {}
    p.update(params or {})
    model = toy_mlp(seed=seed)
    hist = train_robust(model, x, y, method=method, epochs=epochs, params=p, batch_size=100, lr=1e-2,
                        seed=seed, box=None, progress=False)
    return model, hist


@torch.no_grad()
def decision_grid(model: nn.Module, xlim=(-2.5, 2.5), ylim=(-2.5, 2.5), n: int = 200):
    """The model's probability of class 1 on an ``n x n`` grid: ``(xx, yy, p1)`` NumPy arrays.

    Higher ``p1`` means class 1; the decision boundary is the level set ``p1 = 0.5``.

    Taught in Part 5, section "Two moons: four decision boundaries".
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    n = check_positive_int(n, "n", minimum=2)
    for lim, name in ((xlim, "xlim"), (ylim, "ylim")):
        if len(lim) != 2 or not lim[0] < lim[1]:
            raise ValueError(f"{name} must be a pair (low, high) with low < high, got {lim!r}.")
    xx, yy = np.meshgrid(np.linspace(*xlim, n), np.linspace(*ylim, n))
    pts = torch.tensor(np.stack([xx.ravel(), yy.ravel()], 1), dtype=torch.float32)
    was = model.training
    model.eval()
    p1 = torch.softmax(model(pts), 1)[:, 1].numpy().reshape(n, n)
    model.train(was)
    return xx, yy, p1
