"""Tests of robust_utils.robust_eval: known answers on linear models, reference agreement, errors.

The linear two-class model (logit_1 = w . x, w = +-1 on 16 pixels) has a known robustness: an
image at L-inf distance r from the decision boundary is broken by an L-inf budget eps iff
r < eps (and by an L2 budget iff its L2 distance 4 r is < eps), since the pixels stay far from
0 and 1. Scaling its logits by 1e4 masks the cross-entropy gradient (it underflows to 0), which
defeats PGD and AutoAttack's APGD-CE but not the Brendel & Bethge attack.
"""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from torch import nn

from robust_utils.attacks import pgd, robust_correct
from robust_utils.metrics import score_direction
from robust_utils.robust_eval import (autoattack, brendel_bethge, mcnemar, paired_comparison,
                                      robust_accuracy_vs_eps, torchattacks_autoattack, wilson_interval)

pytestmark = pytest.mark.usefixtures("one_thread")

W = torch.tensor([1.0, -1.0] * 8)
#: L-inf distances of the images to the boundary (far from the budgets 0.05 and 0.1 used below)
R = torch.tensor([0.02, 0.04, 0.06, 0.15, 0.2, 0.25, 0.03, 0.18, 0.07, 0.12])
SIDE = torch.tensor([1.0, -1, 1, -1, 1, -1, -1, 1, 1, -1])


def _linear_images():
    t = 16 * R * SIDE                          # w . x = t, distance |t| / ||w||_1 = R
    x = (0.5 + t[:, None] * W[None] / 16).view(-1, 1, 4, 4)
    return x, (t > 0).long()


@pytest.fixture(scope="module")
def linear(linear_two_class):
    return linear_two_class(W).eval()


@pytest.fixture(scope="module")
def masked(linear_two_class):
    return linear_two_class(W * 1e4).eval()


class _Linear4(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(x.flatten(1))


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------
def test_wilson_known_values_and_edges():
    # 8/10 at 95%: the textbook (0.4902, 0.9433); z = 1.959964
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.490162, abs=1e-6) and hi == pytest.approx(0.943318, abs=1e-6)
    z2 = 1.959963984540054 ** 2
    assert wilson_interval(0, 10) == (0.0, pytest.approx(z2 / (10 + z2)))
    assert wilson_interval(10, 10) == (pytest.approx(10 / (10 + z2)), 1.0)
    lo90, hi90 = wilson_interval(8, 10, confidence=0.9)
    assert lo < lo90 < 0.8 < hi90 < hi
    lo, hi = wilson_interval(500, 1000)
    assert (lo + hi) / 2 == pytest.approx(0.5) and hi - lo == pytest.approx(2 * 1.96 * math.sqrt(0.25 / 1000), rel=2e-3)


@pytest.mark.requires("scipy")
def test_wilson_equals_scipy():
    from scipy.stats import binomtest

    for k, n, conf in ((0, 5, 0.95), (3, 7, 0.95), (49, 50, 0.99), (612, 1000, 0.9), (1, 1, 0.95)):
        ci = binomtest(k, n).proportion_ci(confidence_level=conf, method="wilson")
        assert wilson_interval(k, n, conf) == (pytest.approx(ci.low, abs=1e-12), pytest.approx(ci.high, abs=1e-12))


def test_wilson_bad_inputs():
    with pytest.raises(ValueError, match="n must be >= 1"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match=r"k must be <= n, got k = 11 > n = 10"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="k must be >= 0"):
        wilson_interval(-1, 10)
    with pytest.raises(TypeError, match="k must be an integer"):
        wilson_interval(0.5, 10)
    with pytest.raises(ValueError, match=r"confidence must lie in \(0.0, 1.0\)"):
        wilson_interval(5, 10, confidence=1.0)


def _pairs(b: int, c: int, same_right: int = 5, same_wrong: int = 3):
    a = [True] * b + [False] * c + [True] * same_right + [False] * same_wrong
    bb = [False] * b + [True] * c + [True] * same_right + [False] * same_wrong
    return np.array(a), torch.tensor(bb)


def test_mcnemar_known_values():
    r = mcnemar(*_pairs(0, 0))
    assert (r["b"], r["c"], r["n"], r["p_value"]) == (0, 0, 8, 1.0)
    r = mcnemar(*_pairs(10, 0))
    assert (r["b"], r["c"], r["statistic"], r["n_discordant"]) == (10, 0, 0, 10)
    assert r["p_value"] == 2 * 0.5 ** 10 and r["method"] == "exact binomial"
    assert mcnemar(*_pairs(0, 10))["p_value"] == 2 * 0.5 ** 10          # symmetric
    assert mcnemar(*_pairs(3, 7))["p_value"] == 2 * (1 + 10 + 45 + 120) / 1024
    assert mcnemar(*_pairs(5, 5))["p_value"] == 1.0                      # capped at 1
    assert mcnemar([1, 0, 1], [1, 1, 0])["p_value"] == 1.0               # 0/1 integers
    assert mcnemar(*_pairs(3000, 2900))["p_value"] > 0.1                 # large counts, exact


@pytest.mark.requires("scipy")
def test_mcnemar_equals_scipy_binomtest():
    from scipy.stats import binomtest

    for b, c in ((1, 6), (12, 4), (30, 31), (0, 3), (40, 20)):
        assert mcnemar(*_pairs(b, c))["p_value"] == pytest.approx(binomtest(b, b + c).pvalue, rel=1e-12)


def test_mcnemar_bad_inputs():
    with pytest.raises(ValueError, match="same images, got lengths 3 and 2"):
        mcnemar([True, False, True], [True, False])
    with pytest.raises(ValueError, match=r"one True/False.*robust_correct"):
        mcnemar([0, 2, 1], [1, 1, 1])
    with pytest.raises(ValueError, match="correct_a is empty"):
        mcnemar([], [])


def test_paired_comparison_verdicts():
    a, b = _pairs(0, 50, same_right=100, same_wrong=50)             # B right on 50 more of 200 images
    r = paired_comparison(b, a, names=("UDR-PGD", "PGD-AT"))
    assert r["n"] == 200 and r["accuracy_a"] == 0.75 and r["accuracy_b"] == 0.5
    assert r["difference_points"] == pytest.approx(25.0)            # A minus B
    assert r["ci_a"] == wilson_interval(150, 200) and r["ci_b"] == wilson_interval(100, 200)
    assert (r["b"], r["c"]) == (50, 0)                              # only A right, only B right
    assert r["p_value"] == 2 * 0.5 ** 50 and r["significant"] is True
    assert r["verdict"] == "larger than the noise" and r["higher_means"] == "better"
    assert r["summary"].startswith("UDR-PGD 75.0% [") and "+25.0 points" in r["summary"]
    r = paired_comparison(*_pairs(7, 4, same_right=80, same_wrong=9))  # 3 points apart
    assert r["difference_points"] == pytest.approx(3.0) and r["p_value"] > 0.05
    assert r["verdict"] == "within the noise" and r["significant"] is False
    r90 = paired_comparison(*_pairs(7, 4, same_right=80, same_wrong=9), alpha=0.1)
    assert r90["ci_a"] == wilson_interval(87, 100, 0.9)
    with pytest.raises(TypeError, match="names must be two strings"):
        paired_comparison(a, b, names="AB")
    assert paired_comparison(a, b)["difference_points"] == pytest.approx(-25.0)
    with pytest.raises(ValueError, match="alpha must lie in"):
        paired_comparison(a, b, alpha=0)


# ---------------------------------------------------------------------------------------------
# Robust accuracy against the budget
# ---------------------------------------------------------------------------------------------
def test_robust_accuracy_vs_eps_known_answers(linear):
    x, y = _linear_images()
    grid = [0.1, 0.0, 0.05, 0.3]
    expected = [float((R > e).float().mean()) for e in grid]        # [0.5, 1.0, 0.8, 0.0]
    for attack in ("pgd", "fgsm"):
        acc = robust_accuracy_vs_eps(linear, x, y, grid, attack=attack)
        np.testing.assert_allclose(acc, expected)
    acc2 = robust_accuracy_vs_eps(linear, x, y, np.array([0.0, 0.2, 0.4]), norm="l2", steps=20, restarts=2)
    np.testing.assert_allclose(acc2, [1.0, float((4 * R > 0.2).float().mean()), float((4 * R > 0.4).float().mean())])
    assert score_direction(robust_accuracy_vs_eps) == "better"
    y_bad = y.clone()
    y_bad[3] = 1 - y_bad[3]                    # misclassified: not robust at any budget
    assert robust_accuracy_vs_eps(linear, x, y_bad, [0.0, 0.1]).tolist() == [0.9, 0.4]


def test_robust_accuracy_vs_eps_never_rises(linear):
    x, y = _linear_images()
    grid = np.linspace(0, 0.3, 7)
    acc = robust_accuracy_vs_eps(linear, x, y, grid[::-1], steps=3, attack_kwargs={"alpha": 0.01})[::-1]
    assert acc[0] == 1.0 and (np.diff(acc) <= 0).all()


def test_robust_accuracy_vs_eps_bad_inputs(linear):
    x, y = _linear_images()
    with pytest.raises(ValueError, match="unknown attack 'cw'"):
        robust_accuracy_vs_eps(linear, x, y, [0.1], attack="cw")
    with pytest.raises(ValueError, match="L-infinity attack; use norm='linf'"):
        robust_accuracy_vs_eps(linear, x, y, [0.1], attack="fgsm", norm="l2")
    with pytest.raises(ValueError, match=r"eps_grid\[1\] must be >= 0"):
        robust_accuracy_vs_eps(linear, x, y, [0.1, -0.1])
    with pytest.raises(ValueError, match="eps must be <= 1"):
        robust_accuracy_vs_eps(linear, x, y, [8])
    with pytest.raises(TypeError, match="attack_kwargs must be a dict"):
        robust_accuracy_vs_eps(linear, x, y, [0.1], attack_kwargs=[("alpha", 0.1)])
    with pytest.raises(ValueError, match="eps_grid is empty"):
        robust_accuracy_vs_eps(linear, x, y, [])


# ---------------------------------------------------------------------------------------------
# AutoAttack (original and torchattacks' port) and Brendel & Bethge
# ---------------------------------------------------------------------------------------------
@pytest.mark.requires("pyautoattack")
def test_autoattack_known_answer_silent_and_clean(linear, capsys):
    x, y = _linear_images()
    state = torch.random.get_rng_state()
    adv = autoattack(linear, x, y, 0.1, version="custom", attacks=["apgd-ce"], batch_size=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert capsys.readouterr().out == ""
    assert adv.shape == x.shape and float(adv.min()) >= 0 and float(adv.max()) <= 1
    assert float((adv - x).abs().max()) <= 0.1 + 1e-6
    robust = robust_correct(linear, adv, y)
    assert robust.tolist() == (R > 0.1).tolist()                   # APGD-CE is optimal on a linear model
    assert float(robust.float().mean()) <= float(robust_correct(linear, x, y).float().mean())
    assert torch.equal(adv[robust], x[robust])                      # unbroken images come back as they were
    adv2 = autoattack(linear, x, y, 0.5, norm="l2", version="custom", attacks=["apgd-ce"])
    assert float((adv2 - x).flatten(1).norm(dim=1).max()) <= 0.5 + 1e-5
    assert robust_correct(linear, adv2, y).tolist() == (4 * R > 0.5).tolist()
    autoattack(linear, x[:2], y[:2], 0.1, version="custom", attacks=["apgd-ce"], verbose=True)
    out = capsys.readouterr().out
    assert "AutoAttack: using custom version including apgd-ce" in out and "robust accuracy" in out


@pytest.mark.requires("pyautoattack")
def test_autoattack_is_fooled_by_masked_gradients(masked):
    """APGD-CE sees zero gradients on the masked model, so images it should break survive."""
    x, y = _linear_images()
    adv = autoattack(masked, x, y, 0.1, version="custom", attacks=["apgd-ce"])
    assert float((adv - x).abs().max()) <= 0.1 + 1e-6
    assert int(robust_correct(masked, adv, y).sum()) > int((R > 0.1).sum())


@pytest.mark.requires("pyautoattack")
def test_autoattack_reliability_warnings_are_reissued(linear):
    """Silenced, AutoAttack's own checks still reach the caller: probabilities instead of logits."""
    x, y = _linear_images()
    probs = nn.Sequential(linear, nn.Softmax(dim=1)).eval()
    with pytest.warns(UserWarning, match="AutoAttack: it seems that the output is a probability distribution"):
        autoattack(probs, x, y, 0.1, version="custom", attacks=["apgd-ce"])


def test_autoattack_bad_inputs(linear, monkeypatch):
    x, y = _linear_images()
    with pytest.raises(ValueError, match=r"version='custom' needs attacks=\[...\]"):
        autoattack(linear, x, y, 0.1, version="custom")
    with pytest.raises(ValueError, match="only used with version='custom'"):
        autoattack(linear, x, y, 0.1, attacks=["apgd-ce"])
    with pytest.raises(ValueError, match="unknown AutoAttack attack 'pgd'"):
        autoattack(linear, x, y, 0.1, version="custom", attacks=["pgd"])
    with pytest.raises(ValueError, match="unknown AutoAttack version 'fast'"):
        autoattack(linear, x, y, 0.1, version="fast")
    with pytest.raises(ValueError, match="unknown norm 'l3'"):
        autoattack(linear, x, y, 0.1, norm="L3")
    with pytest.raises(ValueError, match="eps must be <= 1"):
        autoattack(linear, x, y, 8)
    with pytest.raises(RuntimeError, match="model.eval"):
        autoattack(nn.Sequential(nn.Flatten(), nn.Linear(16, 2)), x, y, 0.1)
    monkeypatch.setitem(sys.modules, "pyautoattack", None)
    with pytest.raises(ImportError, match="pip install pyautoattack"):
        autoattack(linear, x, y, 0.1)


@pytest.mark.requires("pyautoattack")
def test_autoattack_needs_four_classes_for_apgd_t(linear):
    x, y = _linear_images()
    with pytest.raises(ValueError, match="the model has 2 classes, but APGD-T needs at least 4"):
        autoattack(linear, x, y, 0.1, version="custom", attacks=["apgd-ce", "apgd-t"])


@pytest.mark.requires("torchattacks")
def test_torchattacks_autoattack_on_a_four_class_model(linear):
    m = _Linear4().eval()
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = m(x).argmax(1)
    m.fc.bias.grad = torch.full_like(m.fc.bias, 7.0)
    m.fc.weight.requires_grad_(False)
    state = torch.random.get_rng_state()
    adv = torchattacks_autoattack(m, x, y, 0.5, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert float((adv - x).abs().max()) <= 0.5 + 1e-6 and float(adv.min()) >= 0 and float(adv.max()) <= 1
    assert not bool(robust_correct(m, adv, y).any())                 # a huge budget breaks everything
    assert not m.fc.weight.requires_grad and m.fc.bias.requires_grad and m.fc.weight.grad is None
    assert torch.equal(m.fc.bias.grad, torch.full_like(m.fc.bias, 7.0))
    with pytest.raises(ValueError, match="has 2 classes"):
        torchattacks_autoattack(linear, *_linear_images(), 0.1)
    with pytest.raises(ValueError, match="not 'L1'"):
        torchattacks_autoattack(m, x, y, 0.5, norm="L1")


@pytest.mark.requires("foolbox", "numba")
def test_brendel_bethge_breaks_what_masked_pgd_cannot(masked):
    """One test (foolbox's optimiser is compiled by numba once per process, about 20 s)."""
    x, y = _linear_images()
    y[9] = 1 - y[9]                            # misclassified from the start
    eps = 0.1
    expected = (R > eps) & (torch.arange(10) != 9)
    state = torch.random.get_rng_state()
    pgd_adv = pgd(masked, x, y, eps, steps=20)  # the PGD that brendel_bethge starts from (seed 0)
    adv = brendel_bethge(masked, x, y, eps, steps=100, init_steps=20)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert adv.shape == x.shape and float(adv.min()) >= 0 and float(adv.max()) <= 1
    dist = (adv - x).flatten(1).abs().amax(1)
    assert float(dist.max()) <= eps + 1e-6
    robust = robust_correct(masked, adv, y)
    assert robust.tolist() == expected.tolist()                     # the known answer
    pgd_robust = robust_correct(masked, pgd_adv, y)
    assert bool((robust <= pgd_robust).all())                       # never above PGD's
    by_pgd = ~pgd_robust & (torch.arange(10) != 9)
    by_bb = ~robust & pgd_robust
    assert int(by_bb.sum()) >= 2                                    # B&B is not fooled by the masking
    assert torch.equal(adv[by_pgd], pgd_adv[by_pgd])
    # a minimum-norm attack stops at the boundary, at the known distance
    torch.testing.assert_close(dist[by_bb], R[by_bb], rtol=0.01, atol=1e-4)
    assert torch.equal(adv[robust], x[robust]) and torch.equal(adv[9], x[9])


def test_brendel_bethge_bad_inputs(masked, monkeypatch):
    x, y = _linear_images()
    with pytest.raises(ValueError, match="eps must be <= 1"):
        brendel_bethge(masked, x, y, 8)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        brendel_bethge(masked, x, y, 0.1, steps=0)
    with pytest.raises(ValueError, match="init_steps must be >= 1"):
        brendel_bethge(masked, x, y, 0.1, init_steps=0)
    monkeypatch.setitem(sys.modules, "foolbox", None)
    with pytest.raises(ImportError, match="pip install foolbox numba"):
        brendel_bethge(masked, x, y, 0.1)
