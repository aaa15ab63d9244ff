"""Tests of robust_utils.transport: optimal transport and distributional robustness on a grid."""
from __future__ import annotations

import numpy as np
import ot
import pytest
import scipy.stats
import torch

from robust_utils.transport import (
    cost_matrix, dro_dual, dro_dual_objective, dro_primal, empirical_cdfs, label_preserving_cost,
    transport_plan, w1_cdf_area, wasserstein_distance, worst_case_path,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _simplex(rng, n, zeros=False):
    w = rng.random(n)
    if zeros:
        w[rng.random(n) < 0.3] = 0.0
        w[0] += 0.1
    return w / w.sum()


def _grid2d(k=6):
    g = np.linspace(-1.0, 1.0, k)
    return np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)


# --- an optimal-transport primer -------------------------------------------------------------
def test_cost_matrix_values_and_shapes():
    xs, xt = np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([[0.0, 0.0]])
    np.testing.assert_allclose(cost_matrix(xs, xt, p=1), [[0.0], [5.0]])
    np.testing.assert_allclose(cost_matrix(xs, xt), [[0.0], [25.0]])
    np.testing.assert_allclose(cost_matrix([0.0, 1.0, 3.0], [1.0]), [[1.0], [0.0], [4.0]])
    np.testing.assert_allclose(cost_matrix(torch.tensor([0.0, 2.0]), [0.0], p=1), [[0.0], [2.0]])


def test_exact_plan_has_the_marginals():
    rng = np.random.default_rng(0)
    xs, xt = rng.normal(size=(7, 2)), rng.normal(size=(9, 2)) + 1
    a, b = _simplex(rng, 7), _simplex(rng, 9)
    plan, cost = transport_plan(xs, xt, a, b)
    assert plan.shape == (7, 9) and (plan >= 0).all()
    np.testing.assert_allclose(plan.sum(1), a, atol=1e-12)
    np.testing.assert_allclose(plan.sum(0), b, atol=1e-12)
    assert cost == pytest.approx(ot.emd2(a, b, cost_matrix(xs, xt)), abs=1e-12)


def test_uniform_weights_by_default():
    rng = np.random.default_rng(1)
    plan, _ = transport_plan(rng.normal(size=(4, 2)), rng.normal(size=(5, 2)))
    np.testing.assert_allclose(plan.sum(1), np.full(4, 0.25), atol=1e-12)
    np.testing.assert_allclose(plan.sum(0), np.full(5, 0.2), atol=1e-12)


def test_sinkhorn_marginals_and_cost_above_exact():
    rng = np.random.default_rng(2)
    xs, xt = rng.normal(size=(20, 2)), rng.normal(size=(25, 2)) + [2.0, 0.0]
    a, b = _simplex(rng, 20), _simplex(rng, 25)
    exact, c_exact = transport_plan(xs, xt, a, b, method="exact")
    for reg in (0.05, 0.5):
        plan, c_sink = transport_plan(xs, xt, a, b, method="sinkhorn", reg=reg)
        np.testing.assert_allclose(plan.sum(1), a, atol=1e-6)
        np.testing.assert_allclose(plan.sum(0), b, atol=1e-6)
        assert c_exact <= c_sink + 1e-9
    # more entropy, blurrier plan: more non-negligible entries than the exact one
    assert (plan > 1e-6).sum() > (exact > 1e-12).sum()


def test_sinkhorn_warns_when_it_does_not_converge():
    rng = np.random.default_rng(3)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        transport_plan(rng.random((30, 2)) * 10, rng.random((30, 2)) * 10, method="sinkhorn",
                       reg=1e-3, max_iter=5)


def test_two_points_to_two_points_by_hand():
    # a = 1/4 at 0, 3/4 at 1; b = 1/2 at 0.5, 1/2 at 3. The monotone plan: 0 -> 0.5 (1/4),
    # 1 -> 0.5 (1/4), 1 -> 3 (1/2); W1 = 1/4 * 0.5 + 1/4 * 0.5 + 1/2 * 2 = 1.25.
    a, b = [0.25, 0.75], [0.5, 0.5]
    plan, cost = transport_plan([0.0, 1.0], [0.5, 3.0], a, b, p=1)
    np.testing.assert_allclose(plan, [[0.25, 0.0], [0.25, 0.5]], atol=1e-12)
    assert cost == pytest.approx(1.25)
    assert wasserstein_distance([0.0, 1.0], [0.5, 3.0], a, b, p=1) == pytest.approx(1.25)
    # W2 with uniform weights: (1/2 * 0.5^2 + 1/2 * 2^2)^(1/2)
    assert wasserstein_distance([0.0, 1.0], [0.5, 3.0], p=2) == pytest.approx(np.sqrt(2.125))
    # 2-D: a unit square's bottom side to its top side, W2 = 1 along the verticals
    plan, _ = transport_plan([[0, 0], [1, 0]], [[1, 1], [0, 1]])
    np.testing.assert_allclose(plan, [[0.0, 0.5], [0.5, 0.0]], atol=1e-12)
    assert wasserstein_distance([[0, 0], [1, 0]], [[1, 1], [0, 1]], p=2) == pytest.approx(1.0)


def test_wasserstein_of_identical_clouds_is_zero_and_symmetric():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(10, 3)), rng.normal(size=(8, 3))
    a = _simplex(rng, 10)
    assert wasserstein_distance(x, x, a, a, p=2) == pytest.approx(0.0, abs=1e-12)
    assert wasserstein_distance(x, x[::-1], p=1) == pytest.approx(0.0, abs=1e-12)
    assert wasserstein_distance(x, y, p=2) == pytest.approx(wasserstein_distance(y, x, p=2))
    # translating a cloud by t moves it by exactly |t| in W2
    t = np.array([0.3, -0.4, 1.2])
    assert wasserstein_distance(x, x + t, p=2) == pytest.approx(np.linalg.norm(t))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_w1_cdf_area_matches_scipy_and_pot(seed):
    rng = np.random.default_rng(seed)
    u, v = rng.normal(size=13), rng.normal(size=8) * 2 + 0.5
    expected = scipy.stats.wasserstein_distance(u, v)
    assert w1_cdf_area(u, v) == pytest.approx(expected, rel=1e-12)
    assert w1_cdf_area(u, v) == pytest.approx(ot.wasserstein_1d(u, v, p=1), rel=1e-10)
    uw, vw = _simplex(rng, 13, zeros=True), _simplex(rng, 8)
    got = w1_cdf_area(u, v, uw, vw)
    assert got == pytest.approx(scipy.stats.wasserstein_distance(u, v, uw, vw), rel=1e-12)
    assert got == pytest.approx(ot.wasserstein_1d(u, v, uw, vw, p=1), rel=1e-10)
    M = np.abs(u[:, None] - v[None, :])
    assert got == pytest.approx(ot.emd2(uw, vw, M), rel=1e-9)
    assert got == pytest.approx(wasserstein_distance(u, v, uw, vw, p=1), rel=1e-9)


def test_w1_cdf_area_ties_and_hand_case():
    # point masses: the area between the two steps is the distance between the atoms
    assert w1_cdf_area([2.0], [-1.5]) == pytest.approx(3.5)
    u, v = np.array([0.0, 0.0, 1.0, 1.0, 1.0]), np.array([1.0, 0.0, 2.0])
    assert w1_cdf_area(u, v) == pytest.approx(scipy.stats.wasserstein_distance(u, v))
    assert w1_cdf_area(u, u[::-1]) == 0.0


def test_empirical_cdfs_are_steps_on_the_merged_support():
    t, fu, fv = empirical_cdfs([0.0, 2.0], [1.0, 1.0, 3.0], [0.25, 0.75])
    np.testing.assert_allclose(t, [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(fu, [0.25, 0.25, 1.0, 1.0])
    np.testing.assert_allclose(fv, [0.0, 2 / 3, 2 / 3, 1.0])
    area = float(np.sum(np.abs(fu - fv)[:-1] * np.diff(t)))
    assert area == pytest.approx(w1_cdf_area([0.0, 2.0], [1.0, 1.0, 3.0], [0.25, 0.75]))


# --- distributional robustness on a grid -----------------------------------------------------
CASES = [(seed, dim, power) for seed in range(3) for dim in (1, 2) for power in (1, 2)]


@pytest.mark.parametrize("seed, dim, power", CASES)
def test_primal_equals_dual(seed, dim, power):
    rng = np.random.default_rng(seed)
    x = np.linspace(-1, 1, 25) if dim == 1 else _grid2d(5)
    n = x.shape[0]
    p, f = _simplex(rng, n, zeros=seed == 1), rng.normal(size=n)
    C = cost_matrix(x, x, p=power)
    for eps in (0.0, 1e-3, 0.05, 0.3, 1.0, 100.0):
        value, coupling, q = dro_primal(x, p, f, eps, cost=C)
        dual, lam = dro_dual(p, f, C, eps)
        assert value == pytest.approx(dual, abs=1e-6), (eps, value, dual)
        assert lam >= 0
        assert dro_dual_objective(lam, p, f, C, eps) == pytest.approx(dual, abs=1e-12)
        np.testing.assert_allclose(coupling.sum(1), p, atol=1e-8)
        np.testing.assert_allclose(q, coupling.sum(0))
        assert (coupling >= 0).all() and float((coupling * C).sum()) <= eps + 1e-7
        # the worst case Q lies inside the ball: W_c(P, Q) <= eps
        assert ot.emd2(p, q / q.sum(), C) <= eps + 1e-7
        assert value == pytest.approx(float(q @ f), abs=1e-8)
        if eps == 0.0:
            assert value == pytest.approx(float(p @ f), abs=1e-9)
            np.testing.assert_allclose(q, p, atol=1e-8)
        if eps == 100.0:
            assert value == pytest.approx(f.max(), abs=1e-9)
            assert lam == 0.0


def test_dual_is_the_minimum_of_its_objective():
    rng = np.random.default_rng(5)
    x = _grid2d(6)
    p, f = _simplex(rng, 36), np.sin(3 * x[:, 0]) + x[:, 1] ** 2
    C = cost_matrix(x, x, p=1)
    for eps in (0.02, 0.2, 0.6):
        value, lam = dro_dual(p, f, C, eps)
        lams = np.linspace(0, 3 * max(lam, 1.0), 3001)
        curve = dro_dual_objective(lams, p, f, C, eps)
        assert curve.shape == lams.shape and curve.min() >= value - 1e-12
        assert curve.min() == pytest.approx(value, abs=1e-2)
        assert dro_primal(x, p, f, eps)[0] == pytest.approx(value, abs=1e-6)  # default cost: |v - v'|
    assert isinstance(dro_dual_objective(0.5, p, f, C, 0.1), float)


def test_worst_case_grows_with_eps():
    rng = np.random.default_rng(6)
    x = np.linspace(0, 1, 30)
    p, f = _simplex(rng, 30), np.sin(8 * x)
    eps = np.linspace(0, 0.6, 13)
    values, qs = worst_case_path(x, p, f, eps)
    assert values.shape == (13,) and qs.shape == (13, 30)
    assert (np.diff(values) >= -1e-9).all()
    assert (np.diff(values, 2) <= 1e-7).all()  # concave in the budget
    np.testing.assert_allclose(qs.sum(1), 1.0, atol=1e-8)
    np.testing.assert_allclose(qs[0], p, atol=1e-8)
    for e, v in zip(eps[::4], values[::4]):
        assert v == pytest.approx(dro_dual(p, f, cost_matrix(x, x, p=1), e)[0], abs=1e-6)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.25, 0.5, 0.8])
def test_two_point_example_by_hand(eps):
    # P = 1/2 at x=0 (risk 0) and 1/2 at x=1 (risk 1), c = |x - x'|: moving mass m from 0 to 1
    # costs m, so the worst case moves m = min(eps, 1/2): value 1/2 + m, lambda* = 1 while the
    # budget binds (one unit of transport buys one unit of risk), 0 afterwards.
    m = min(eps, 0.5)
    value, coupling, q = dro_primal([0.0, 1.0], [0.5, 0.5], [0.0, 1.0], eps)
    assert value == pytest.approx(0.5 + m, abs=1e-9)
    np.testing.assert_allclose(q, [0.5 - m, 0.5 + m], atol=1e-9)
    np.testing.assert_allclose(coupling, [[0.5 - m, m], [0.0, 0.5]], atol=1e-9)
    dual, lam = dro_dual([0.5, 0.5], [0.0, 1.0], cost_matrix([0.0, 1.0], [0.0, 1.0], p=1), eps)
    assert dual == pytest.approx(0.5 + m, abs=1e-12)
    assert lam == pytest.approx(1.0 if eps < 0.5 else 0.0)


def test_label_changing_moves_are_blocked():
    # x = 0, 1 carry label 0 (risk 0), x = 2 label 1 (risk 5): the label-0 mass cannot reach it
    x, y, f, p = [0.0, 1.0, 2.0], [0, 0, 1], np.array([0.0, 0.0, 5.0]), np.full(3, 1 / 3)
    C = label_preserving_cost(x, y)
    assert np.isinf(C[0, 2]) and np.isinf(C[2, 1]) and C[0, 1] == 1.0
    value, coupling, q = dro_primal(x, p, f, 100.0, cost=C)
    assert value == pytest.approx(5 / 3, abs=1e-9)
    assert coupling[0, 2] == 0.0 and coupling[1, 2] == 0.0
    assert dro_dual(p, f, C, 100.0)[0] == pytest.approx(5 / 3, abs=1e-12)
    assert dro_primal(x, p, f, 100.0)[0] == pytest.approx(5.0, abs=1e-9)  # without labels: all of it
    # a 2-D two-class grid: primal = dual with the infinite cost, and no mass changes label
    rng = np.random.default_rng(7)
    pts = _grid2d(5)
    labels = (pts[:, 0] > 0).astype(int)
    C = label_preserving_cost(pts, labels, p=1)
    p, f = _simplex(rng, 25), rng.normal(size=25)
    for eps in (0.0, 0.1, 0.5, 10.0):
        value, coupling, q = dro_primal(pts, p, f, eps, cost=C)
        assert value == pytest.approx(dro_dual(p, f, C, eps)[0], abs=1e-6)
        assert coupling[labels[:, None] != labels[None, :]].sum() == 0.0
        for k in (0, 1):
            assert q[labels == k].sum() == pytest.approx(p[labels == k].sum(), abs=1e-9)


def test_tensors_are_accepted():
    x = torch.linspace(0, 1, 5)
    p, f = torch.full((5,), 0.2, dtype=torch.float64), torch.arange(5.0)
    value, _, _ = dro_primal(x, p, f, 0.1)
    assert value == pytest.approx(dro_dual(p.numpy(), f.numpy(), cost_matrix(x, x, p=1), 0.1)[0])


# --- bad inputs --------------------------------------------------------------------------------
def test_bad_weights_are_refused():
    x = [0.0, 1.0]
    with pytest.raises(ValueError, match="negative entries"):
        transport_plan(x, x, [1.5, -0.5])
    with pytest.raises(ValueError, match=r"sums to 0\.9.*normalise with b / b\.sum\(\)"):
        transport_plan(x, x, None, [0.5, 0.4])
    with pytest.raises(ValueError, match="has 3 entries but there are 2 source points"):
        transport_plan(x, x, [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="u_weights sums to"):
        w1_cdf_area([0.0, 1.0], [0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="p has negative"):
        dro_primal(x, [1.2, -0.2], [0.0, 1.0], 0.1)


def test_bad_points_and_options_are_refused():
    with pytest.raises(ValueError, match="same space"):
        cost_matrix(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"shape \(n,\) for 1-D or \(n, d\)"):
        cost_matrix(np.zeros((2, 2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        cost_matrix([0.0, np.nan], [0.0])
    with pytest.raises(ValueError, match="empty"):
        cost_matrix(np.zeros((0, 2)), np.zeros((1, 2)))
    with pytest.raises(TypeError, match="real numbers"):
        cost_matrix(["a", "b"], [0.0])
    with pytest.raises(ValueError, match="unknown method 'greedy'"):
        transport_plan([0.0], [1.0], method="greedy")
    with pytest.raises(ValueError, match="reg must be > 0"):
        transport_plan([0.0], [1.0], method="sinkhorn", reg=0)
    with pytest.raises(ValueError, match="W_p is a distance only for p >= 1"):
        wasserstein_distance([0.0], [1.0], p=0.5)
    with pytest.raises(ValueError, match="p must be > 0"):
        cost_matrix([0.0], [1.0], p=-1)
    with pytest.raises(ValueError, match="must be 1-D"):
        w1_cdf_area(np.zeros((2, 2)), [0.0])


def test_bad_dro_inputs_are_refused():
    x, p, f = [0.0, 1.0], [0.5, 0.5], [0.0, 1.0]
    C = cost_matrix(x, x, p=1)
    with pytest.raises(ValueError, match=r"eps must be >= 0.*transport budget"):
        dro_primal(x, p, f, -0.1)
    with pytest.raises(ValueError, match=r"eps must be >= 0"):
        dro_dual(p, f, C, -1)
    with pytest.raises(TypeError, match="eps must be a number"):
        dro_dual(p, f, C, "big")
    with pytest.raises(ValueError, match="f has 3 entries but there are 2 support points"):
        dro_primal(x, p, [0.0, 1.0, 2.0], 0.1)
    with pytest.raises(TypeError, match=r"got a function.*f\(support\)"):
        dro_primal(x, p, np.sin, 0.1)
    with pytest.raises(ValueError, match="negative entries"):
        dro_dual(p, f, -C, 0.1)
    with pytest.raises(ValueError, match=r"must be an \(n, n\) matrix"):
        dro_primal(x, p, f, 0.1, cost=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN; use \\+inf"):
        dro_dual(p, f, np.array([[0.0, np.nan], [1.0, 0.0]]), 0.1)
    with pytest.raises(ValueError, match="staying put must cost nothing"):
        dro_dual(p, f, C + 1, 0.1)
    with pytest.raises(ValueError, match="p sums to"):
        dro_dual([0.5, 0.6], f, C, 0.1)
    with pytest.raises(ValueError, match="lam must be finite and >= 0"):
        dro_dual_objective([-1.0, 0.0], p, f, C, 0.1)
    with pytest.raises(TypeError, match="labels must be integers"):
        label_preserving_cost(x, [0.0, 1.0])
    with pytest.raises(ValueError, match="labels has 3 entries"):
        label_preserving_cost(x, [0, 1, 1])
    with pytest.raises(ValueError, match="eps must be >= 0"):
        worst_case_path(x, p, f, [0.1, -0.2])
