"""The half-Huber ReLU and eq. (4) of Woods et al. (2019) at known values (Part 6)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from robust_utils.lipschitz import HalfHuberReLU, half_huber_relu, lipschitz_penalty
from robust_utils.models import build_model, make_activation

pytestmark = pytest.mark.usefixtures("one_thread")


def _val(t: torch.Tensor) -> float:
    return float(t.detach())


def test_half_huber_values_and_continuity():
    x = torch.tensor([-1.0, 0.0, 0.25, 0.5, 1.0, 3.0])
    assert half_huber_relu(x, 0.5).tolist() == pytest.approx([0.0, 0.0, 0.0625, 0.25, 0.75, 2.75])
    for delta in (0.1, 0.5, 2.0):
        for at in (0.0, delta):  # value and derivative continuous at both joints
            pts = torch.tensor([at - 1e-4, at + 1e-4], dtype=torch.float64, requires_grad=True)
            val = half_huber_relu(pts, delta)
            (g,) = torch.autograd.grad(val.sum(), pts)
            val = val.detach()
            # across a 2e-4 gap the value moves by O(1e-4) and the derivative by at most 2e-4 / delta
            assert abs(float(val[1] - val[0])) < 1e-3 and abs(float(g[1] - g[0])) <= 2.5e-4 / delta
    x = torch.linspace(-1, 2, 31, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(half_huber_relu(x, 0.5).sum(), x)
    assert torch.allclose(g, x.detach().clamp(0, 0.5) / 0.5)
    with pytest.raises(ValueError, match="delta"):
        half_huber_relu(x, 0.0)


def test_hhrelu_is_an_activation_of_the_books_models():
    assert isinstance(make_activation("hhrelu"), HalfHuberReLU)
    m = build_model("trades_cnn", activation="hhrelu")
    assert any(isinstance(mod, HalfHuberReLU) for mod in m.modules())
    assert m(torch.rand(2, 1, 28, 28)).shape == (2, 10)


class Linear(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return x.flatten(1) @ self.w.T


def test_eq4_on_a_linear_model_is_exact_for_k_equal_v_and_unbiased_below():
    torch.manual_seed(0)
    w = torch.randn(4, 6)
    model, x = Linear(w.clone()), torch.rand(5, 6)
    exact = 3.0 * (w.abs() ** 2).sum() / (4 * 6)  # psi / (V N) sum_v sum_j |w_vj|^z
    assert _val(lipschitz_penalty(model, x, psi=3.0, k=4)) == pytest.approx(float(exact), rel=1e-5)
    z1 = _val(lipschitz_penalty(model, x, psi=1.0, z=1.0, k=4))
    assert z1 == pytest.approx(float(w.abs().sum() / 24), rel=1e-5)
    g = torch.Generator().manual_seed(1)
    draws = [_val(lipschitz_penalty(model, x, psi=3.0, k=1, generator=g)) for _ in range(3000)]
    assert sum(draws) / len(draws) == pytest.approx(float(exact), rel=0.03)


def test_eq4_reaches_the_parameters_by_double_backpropagation():
    torch.manual_seed(0)
    w = torch.randn(3, 5)
    model, x = Linear(w.clone()), torch.rand(4, 5)
    lipschitz_penalty(model, x, psi=1.0, k=3).backward()
    # d/dW of sum |W|^2 / (V N) = 2 W / 15
    assert torch.allclose(model.w.grad, 2 * w / 15, atol=1e-6)


def test_tandem_margin_of_a_linear_model():
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]])
    model = Linear(w)
    x = torch.tensor([[1.0, 1.0]])  # outputs (1, 2, 1): true class 0, strongest other class 1
    # with zeta = 1 the drawn output is always y_0 - y_1, whose gradient is w_0 - w_1 = (1, -2)
    val = _val(lipschitz_penalty(model, x, torch.tensor([0]), psi=1.0, zeta=1.0))
    assert val == pytest.approx((1 + 4) / 2)
    with pytest.raises(ValueError, match="true labels"):
        lipschitz_penalty(model, x, psi=1.0, zeta=0.5)


def test_eq4_bad_inputs():
    model = Linear(torch.randn(3, 4))
    x = torch.rand(2, 4)
    with pytest.raises(ValueError, match="k = 4"):
        lipschitz_penalty(model, x, psi=1.0, k=4)
    with pytest.raises(ValueError, match="psi"):
        lipschitz_penalty(model, x, psi=-1.0)
    with pytest.raises(ValueError, match="x must be"):
        lipschitz_penalty(model, torch.zeros(0, 4), psi=1.0)
    with pytest.raises(ValueError, match="zeta"):
        lipschitz_penalty(model, x, torch.tensor([0, 1]), psi=1.0, zeta=1.5)


def test_quadratic_share_counts_inputs_in_the_quadratic_piece():
    from robust_utils.lipschitz import quadratic_share

    model = nn.Sequential(nn.Identity(), HalfHuberReLU(0.5)).eval()
    x = torch.tensor([[-1.0, 0.1, 0.2, 0.7]])
    assert quadratic_share(model, x) == pytest.approx(0.5)
    assert quadratic_share(nn.Sequential(nn.ReLU()), x, delta=1.0) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="no HalfHuberReLU"):
        quadratic_share(nn.Sequential(nn.Identity()), x)
