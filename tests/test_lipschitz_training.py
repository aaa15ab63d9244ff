"""L2 / L2,min adversaries, the eq. (4) trainer and the strided CNN of Part 6."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robust_utils import lipschitz_training as lt
from robust_utils.models import build_model
from robust_utils.training import TRAINERS

pytestmark = pytest.mark.usefixtures("one_thread")


class Linear(nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.lin = nn.Linear(16, 3)
        self.num_classes = 3

    def forward(self, x):
        return self.lin(x.flatten(1))


def _data(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.3 + 0.4 * torch.rand(n, 1, 4, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def _rmse(a, b):
    return (a - b).flatten(1).pow(2).mean(1).sqrt()


def test_l2_adversary_on_a_linear_model_walks_eps_along_the_loss_gradient():
    model = Linear().eval()
    x, y = _data()
    xa = lt.l2_adversary(model, x, y, eps=0.05, steps=7)
    assert torch.all(_rmse(xa, x) <= 0.05 + 1e-6)
    assert torch.all(_rmse(xa, x) > 0.049)            # no clipping here: the full budget is used
    ce = nn.functional.cross_entropy
    with torch.no_grad():
        assert float(ce(model(xa), y)) > float(ce(model(x), y))


def test_l2min_steps_sum_to_eps_and_turn_back_once_misclassified():
    model = Linear().eval()
    x, y = _data()
    y = model(x).argmax(1)                             # all correct at the start
    small = lt.l2min_adversary(model, x, y, eps=0.02)
    assert torch.all(_rmse(small, x) <= 0.02 + 1e-6)
    big = lt.l2min_adversary(model, x, y, eps=1.0)
    # with a huge budget L2,min stops near the boundary: much closer than L2 at the same eps
    far = lt.l2_adversary(model, x, y, eps=1.0)
    assert torch.all(_rmse(big, x) < _rmse(far, x))
    # the sizes are psi_{7,n} eps sqrt(N): the first step alone is 2/8 of the budget
    one = lt.l2min_adversary(model, x, y, eps=0.02, steps=1)
    assert _rmse(one, x) == pytest.approx(torch.full((8,), 0.02), rel=1e-4)


def test_adversaries_do_not_touch_the_parameters():
    model = Linear().eval()
    x, y = _data()
    lt.l2_adversary(model, x, y, 0.05)
    lt.l2min_adversary(model, x, y, 0.05)
    assert all(p.grad is None for p in model.parameters())


def test_trainer_runs_every_variant_and_records_its_history():
    x, y = _data(64)
    for params in ({"psi": 0.5}, {"psi": 0.5, "adv": "l2", "half_half": True}, {"psi": 0.5, "k": 3, "zeta": 0.2},
                   {"psi": 0.5, "psi_adapt": True}):
        model = Linear()
        h = lt.train_lipschitz(model, x, y, epochs=2, params=params, batch_size=16, progress=False)
        assert len(h["loss"]) == 2 and all(math.isfinite(v) for v in h["loss"])
        assert h["penalty"][-1] > 0
        if params.get("adv"):
            assert 0 < h["mean_rmse"][-1] < 0.05
    # psi adaptation: a batch loss below the target makes psi grow
    model = Linear()
    h = lt.train_lipschitz(model, x, y, epochs=1, params={"psi": 0.5, "psi_adapt": True, "adapt_target": 100.0},
                           batch_size=16, progress=False)
    assert h["psi"][-1] > 0.5


def test_eq4_lowers_the_input_gradient():
    x, y = _data(128, seed=1)
    plain, reg = Linear(seed=3), Linear(seed=3)
    lt.train_lipschitz(plain, x, y, epochs=20, params={"psi": 0.0}, batch_size=32, progress=False, lr=0.05)
    lt.train_lipschitz(reg, x, y, epochs=20, params={"psi": 20.0}, batch_size=32, progress=False, lr=0.05)
    a = lt.input_gradient_stats(plain.eval(), x, y)
    b = lt.input_gradient_stats(reg.eval(), x, y)
    assert b["mean_abs"] < a["mean_abs"]


def test_input_gradient_stats_of_a_linear_model():
    model = Linear().eval()
    x, y = _data()
    st = lt.input_gradient_stats(model, x, y)
    w = model.lin.weight.detach()
    assert st["mean_abs"] == pytest.approx(float(w[y].abs().mean()), rel=1e-5)
    assert st["mean_max_abs"] == pytest.approx(float(w[y].abs().amax(1).mean()), rel=1e-5)


def test_registered_trainers_and_bad_parameters():
    for name in ("lipschitz", "l2_at", "l2min_at"):
        assert name in TRAINERS
    x, y = _data(16)
    with pytest.raises(ValueError, match="unknown parameter"):
        lt.train_lipschitz(Linear(), x, y, epochs=1, params={"psy": 1.0}, progress=False)
    with pytest.raises(ValueError, match="adv"):
        lt.train_lipschitz(Linear(), x, y, epochs=1, params={"adv": "linf"}, progress=False)
    with pytest.raises(ValueError, match="psi = 0"):
        lt.train_lipschitz(Linear(), x, y, epochs=1, objective="l2_at", params={"psi": 1.0}, progress=False)
    bn = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    with pytest.raises(ValueError, match="batch norm"):
        lt.train_lipschitz(bn, x, y, epochs=1, params={"psi": 1.0}, progress=False)
    with pytest.raises(ValueError, match="eps"):
        lt.l2_adversary(Linear(), x, y, eps=2.0)


def test_strided_cnn_shapes_and_smooth_variant():
    m = build_model("strided_cnn", activation="hhrelu").eval()
    x = torch.rand(3, 1, 28, 28, requires_grad=True)
    out = m(x)
    assert out.shape == (3, 10) and m.feature_dim == 128
    (g,) = torch.autograd.grad(out[:, 0].sum(), x, create_graph=True)   # double backward works
    assert g.shape == x.shape and g.requires_grad
    assert list(m.conv_layers()) == ["conv1", "conv2"]
    odd = build_model("strided_cnn", input_size=15)
    assert odd(torch.rand(2, 1, 15, 15)).shape == (2, 10)
    with pytest.raises(ValueError, match="width"):
        build_model("strided_cnn", width=0)
