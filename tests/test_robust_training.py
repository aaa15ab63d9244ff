"""Robust-training objectives at hand-computed values, their inner maximisations, the training loop
and the cache's trainers (Part 5)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robust_utils.robust_objectives import (inner_maximise, kl_divergence, mart_bce, robust_risk,
                                            smoothed_cost, udr_pull_back, update_lambda, wrm_maximise)
from robust_utils.robust_training import (DEFAULT_PARAMS, PART5_METHODS, ROBUST_METHODS, pgd_accuracy,
                                          train_robust)

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------
# Objectives at hand-computed values
# ---------------------------------------------------------------------------------------------
def test_kl_both_directions_by_hand():
    p, q = torch.tensor([[0.5, 0.5]]), torch.tensor([[0.9, 0.1]])
    la, ln = q.log(), p.log()  # x' predicts q, x predicts p
    slides = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)   # KL(h(x') || h(x))
    code = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)     # KL(h(x) || h(x'))
    assert kl_divergence(la, ln).item() == pytest.approx(slides, abs=1e-6)
    assert kl_divergence(la, ln, direction="code").item() == pytest.approx(code, abs=1e-6)
    assert kl_divergence(ln, ln).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="KL direction"):
        kl_divergence(la, ln, direction="forward")


def test_mart_bce_three_classes_by_hand():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]]))
    y = torch.tensor([0, 2])
    want = [-math.log(0.5) - math.log(1.0001 - 0.3), -math.log(0.3) - math.log(1.0001 - 0.6)]
    assert mart_bce(logits, y).tolist() == pytest.approx(want, abs=1e-5)


def test_trades_with_beta_zero_is_cross_entropy(make_mlp):
    model = make_mlp(dropout=0.0)
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3, 0])
    x_adv = (x + 0.05).clamp(0, 1)
    total, clean, adv = robust_risk(model, x, x_adv, y, risk="trades", beta=0.0)
    assert torch.allclose(total, F.cross_entropy(model(x), y, reduction="none"), atol=1e-6)
    assert torch.all(adv == 0)
    # PGD-AT at x' = x is (1 + beta) CE; WRM is CE on x' alone
    total, _, _ = robust_risk(model, x, x, y, risk="pgd", beta=2.0)
    assert torch.allclose(total, 3 * F.cross_entropy(model(x), y, reduction="none"), atol=1e-5)
    total, clean, _ = robust_risk(model, x, x_adv, y, risk="wrm", beta=0.0)
    assert torch.allclose(total, F.cross_entropy(model(x_adv), y, reduction="none"), atol=1e-6)
    assert torch.all(clean == 0)


def test_mart_risk_weights_kl_by_the_missing_true_probability(make_mlp):
    model = make_mlp(dropout=0.0)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    x_adv = (x + 0.1).clamp(0, 1)
    y = torch.tensor([1, 2, 3])
    total, clean, adv = robust_risk(model, x, x_adv, y, risk="mart", beta=6.0)
    nat, la = model(x), model(x_adv)
    p_true = F.softmax(nat, 1)[torch.arange(3), y]
    assert torch.allclose(clean, mart_bce(nat, y), atol=1e-6)
    assert torch.allclose(adv, 6.0 * (1 - p_true) * kl_divergence(la, nat), atol=1e-6)
    _, clean_adv, _ = robust_risk(model, x, x_adv, y, risk="mart", beta=6.0, mart_bce_on="adversarial")
    assert torch.allclose(clean_adv, mart_bce(la, y), atol=1e-6)


def test_smoothed_cost_values_and_continuity():
    d = torch.tensor([0.05, -0.1, 0.2, -0.3])
    out = smoothed_cost(d, 0.1, 2.0)
    assert out.tolist() == pytest.approx([0.05, 0.1, 0.1 + 0.1 / 2, 0.1 + 0.2 / 2])
    near = smoothed_cost(torch.tensor([0.1 - 1e-6, 0.1 + 1e-6]), 0.1, 0.5)
    assert abs(float(near[1] - near[0])) < 1e-5


def test_udr_pull_back_element_by_element():
    d = torch.tensor([0.05, 0.15, -0.2, 0.3])
    # the code's rule with tau = alpha and lambda = 1 is PGD's hard clip
    assert udr_pull_back(d, 0.1, lam=1.0, alpha=0.05, tau=0.05, rule="code").tolist() == \
        pytest.approx([0.05, 0.1, -0.1, 0.1])
    # lambda = 0.5: the excess halves
    assert udr_pull_back(d, 0.1, lam=0.5, alpha=0.05, tau=0.05, rule="code").tolist() == \
        pytest.approx([0.05, 0.125, -0.15, 0.2])
    # the slides' rule: the excess shrinks by alpha * lambda / tau = 0.025, never below eps
    assert udr_pull_back(d, 0.1, lam=1.0, alpha=0.05, tau=2.0).tolist() == \
        pytest.approx([0.05, 0.125, -0.175, 0.275])
    assert udr_pull_back(d, 0.1, lam=100.0, alpha=0.05, tau=2.0).tolist() == \
        pytest.approx([0.05, 0.1, -0.1, 0.1])
    assert torch.equal(udr_pull_back(d, 0.1, lam=0.0, alpha=0.05, tau=2.0), d)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        udr_pull_back(d, 0.1, lam=-1.0, alpha=0.05, tau=2.0)
    with pytest.raises(ValueError, match="pull-back rule"):
        udr_pull_back(d, 0.1, lam=1.0, alpha=0.05, tau=2.0, rule="soft")


def test_lambda_update_and_its_clamp():
    assert update_lambda(1.0, 0.1, 0.05, 0.02) == pytest.approx(1.0 - 0.02 * 0.05)
    assert update_lambda(1.0, 0.1, 0.2, 0.02) == pytest.approx(1.0 + 0.02 * 0.1)  # beyond eps: up
    assert update_lambda(1e-4, 0.1, 0.0, 1.0) == 0.0
    assert update_lambda(1e-4, 0.1, 0.0, 1.0, clamp=False) == pytest.approx(1e-4 - 0.1)


# ---------------------------------------------------------------------------------------------
# Inner maximisations
# ---------------------------------------------------------------------------------------------
@pytest.fixture()
def batch():
    g = torch.Generator().manual_seed(2)
    return torch.rand(6, 1, 8, 8, generator=g), torch.tensor([0, 1, 2, 3, 0, 1])


@pytest.mark.parametrize("objective", ["ce", "kl"])
def test_inner_maximise_stays_in_the_ball_and_box(make_mlp, batch, objective):
    model, (x, y) = make_mlp(dropout=0.0), batch
    adv = inner_maximise(model, x, y, eps=0.1, alpha=0.04, steps=5, objective=objective,
                         generator=torch.Generator().manual_seed(0))
    assert (adv - x).abs().max() <= 0.1 + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert all(p.grad is None for p in model.parameters())
    if objective == "ce":
        assert F.cross_entropy(model(adv), y) > F.cross_entropy(model(x), y)


def test_udr_with_hard_clip_settings_equals_pgd(make_mlp, batch):
    model, (x, y) = make_mlp(dropout=0.0), batch
    kw = dict(eps=0.1, alpha=0.04, steps=4)
    pgd = inner_maximise(model, x, y, **kw, generator=torch.Generator().manual_seed(0))
    code = inner_maximise(model, x, y, **kw, udr={"lam": 1.0, "tau": 0.04, "rule": "code"},
                          generator=torch.Generator().manual_seed(0))
    slides = inner_maximise(model, x, y, **kw, udr={"lam": 1e3, "tau": 2.0},
                            generator=torch.Generator().manual_seed(0))
    assert torch.allclose(pgd, code, atol=1e-6) and torch.allclose(pgd, slides, atol=1e-6)
    # with a cheap cost the perturbation leaves the ball
    loose = inner_maximise(model, x, y, **kw, udr={"lam": 0.5, "tau": 2.0},
                           generator=torch.Generator().manual_seed(0))
    assert (loose - x).abs().max() > 0.1 + 1e-3


def test_inner_maximise_unbounded_points():
    model = nn.Linear(2, 2)
    x, y = torch.zeros(3, 2), torch.tensor([0, 1, 0])
    adv = inner_maximise(model, x, y, eps=0.5, alpha=0.5, steps=1, random_start=False, box=None)
    # one signed step from the origin on a linear model: +-0.5 along the sign of the gradient
    assert torch.allclose(adv.abs(), torch.full_like(adv, 0.5))


def test_wrm_ascent_raises_the_penalised_loss_and_ignores_the_box(make_mlp, batch):
    model, (x, y) = make_mlp(dropout=0.0), batch

    def objective(z):
        return F.cross_entropy(model(z), y, reduction="sum") - 0.385 * ((z - x) ** 2).sum()

    adv = wrm_maximise(model, x, y, gamma=0.385, steps=15)
    assert objective(adv) > objective(x)
    assert (adv - x).abs().max() > 0
    with pytest.raises(ValueError, match="gamma"):
        wrm_maximise(model, x, y, gamma=0.0)


def test_inner_maximise_bad_inputs(make_mlp, batch):
    model, (x, y) = make_mlp(dropout=0.0), batch
    with pytest.raises(ValueError, match="eps"):
        inner_maximise(model, x, y, eps=0.0, alpha=0.1, steps=1)
    with pytest.raises(ValueError, match="steps"):
        inner_maximise(model, x, y, eps=0.1, alpha=0.1, steps=0)
    with pytest.raises(ValueError, match="inner objective"):
        inner_maximise(model, x, y, eps=0.1, alpha=0.1, steps=1, objective="dlr")
    with pytest.raises(ValueError, match="udr must be a dict"):
        inner_maximise(model, x, y, eps=0.1, alpha=0.1, steps=1, udr={"lambda": 1.0})
    with pytest.raises(ValueError, match="box"):
        inner_maximise(model, x, y, eps=0.1, alpha=0.1, steps=1, box=(1, 0))


# ---------------------------------------------------------------------------------------------
# The training loop and the cache's trainers
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_data():
    g = torch.Generator().manual_seed(5)
    return torch.rand(40, 1, 8, 8, generator=g), torch.arange(40) % 3


@pytest.mark.parametrize("method", sorted(ROBUST_METHODS))
def test_train_robust_runs_every_method(make_mlp, tiny_data, method):
    x, y = tiny_data
    model = make_mlp(dropout=0.2, num_classes=3)
    params = {"track_n": 10} if method == "wrm" else {"steps": 2, "alpha": 0.05, "track_n": 10,
                                                      **({"lambda_every": 2} if "udr" in method else {})}
    h = train_robust(model, x, y, method=method, epochs=2, params=params, batch_size=8,
                     val_data=(x, y), progress=False)
    assert not model.training
    assert len(h["loss"]) == 2 and all(math.isfinite(v) for v in h["loss"])
    assert len(h["val_pgd_accuracy"]) == 2 and 0 <= h["val_pgd_accuracy"][-1] <= 1
    if "udr" in method:
        assert len(h["lambda"]) == 1 + (2 * (40 // 8)) // 2 and h["final_lambda"] == h["lambda"][-1]
    else:
        assert h["lambda"] == [] and h["final_lambda"] is None
    if method in ("pgd_at", "trades", "mart"):
        assert h["beyond_eps"] == [0.0, 0.0]  # the hard clip


def test_train_robust_is_reproducible(make_mlp, tiny_data):
    x, y = tiny_data
    weights = []
    for _ in range(2):
        model = make_mlp(dropout=0.2, num_classes=3)
        train_robust(model, x, y, method="udr_trades", epochs=1, params={"steps": 2}, batch_size=8,
                     progress=False)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_train_robust_bad_inputs(make_mlp, tiny_data):
    x, y = tiny_data
    model = make_mlp(num_classes=3)
    with pytest.raises(ValueError, match="robust method"):
        train_robust(model, x, y, method="fgsm_at", epochs=1)
    with pytest.raises(ValueError, match="unknown parameter"):
        train_robust(model, x, y, method="pgd_at", epochs=1, params={"tau": 1.0})
    with pytest.raises(ValueError, match="eps"):
        train_robust(model, x, y, method="trades", epochs=1, params={"eps": 25})
    with pytest.raises(ValueError, match="beta"):
        train_robust(model, x, y, method="mart", epochs=1, params={"beta": -1.0})


def test_pgd_accuracy_is_at_most_clean_accuracy(make_mlp, tiny_data):
    x, y = tiny_data
    model = make_mlp(dropout=0.0, num_classes=3)
    clean = float((model(x).argmax(1) == y).float().mean())
    assert pgd_accuracy(model, x, y, eps=0.3, steps=5) <= clean


def test_trainers_are_registered_with_their_parameters():
    from robust_utils.training import TRAINERS

    for method in ROBUST_METHODS:
        assert dict(TRAINERS[method].params) == DEFAULT_PARAMS[method]
    with pytest.raises(ValueError, match="eps"):
        TRAINERS["udr_pgd"].check({"eps": 0.0})


def test_part5_recipe_set():
    from robust_utils.recipes import recipe_set

    recipes = recipe_set("part5", "smoke")
    assert list(recipes) == ["Standard", *PART5_METHODS]
    assert len({r.key for r in recipes.values()}) == 8
    assert recipes["WRM"].arch_kwargs == (("activation", "elu"),) or \
        dict(recipes["WRM"].arch_kwargs) == {"activation": "elu"}
    assert all(dict(r.objective_params).get("eps", 0.1) == 0.1 for r in recipes.values())


# ---------------------------------------------------------------------------------------------
# The 2-D toy
# ---------------------------------------------------------------------------------------------
def test_two_moons_toy_trains_and_robust_training_helps():
    from robust_utils.robust_objectives import inner_maximise
    from robust_utils.robust_toy import decision_grid, train_toy, two_moons

    x, y = two_moons(200, seed=0)
    assert x.shape == (200, 2) and set(y.tolist()) == {0, 1}
    assert torch.allclose(x.mean(0), torch.zeros(2), atol=1e-5)
    xt, yt = two_moons(200, seed=1)
    robust = {}
    for method in ("standard", "pgd_at"):
        model, hist = train_toy(method, x, y, eps=0.3, epochs=40)
        adv = inner_maximise(model, xt, yt, eps=0.3, alpha=0.1, steps=10, box=None)
        assert float((model(xt).argmax(1) == yt).float().mean()) > 0.85
        robust[method] = float((model(adv).argmax(1) == yt).float().mean())
    assert robust["pgd_at"] > robust["standard"]
    xx, yy, p1 = decision_grid(model, n=20)
    assert p1.shape == (20, 20) and 0 <= p1.min() <= p1.max() <= 1
    with pytest.raises(ValueError, match="unknown toy method"):
        train_toy("madry", x, y)
    with pytest.raises(ValueError, match="xlim"):
        decision_grid(model, xlim=(1, -1))
