"""Algorithm 1 of Woods et al. (2019) and the ARA protocol at known answers (Part 6)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from robust_utils import adv_explain as ae
from robust_utils.ara import ara

pytestmark = pytest.mark.usefixtures("one_thread")


class Linear(nn.Module):
    """Logits W x + b of flattened 1 x 4 x 4 images."""

    def __init__(self, w, b):
        super().__init__()
        self.lin = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.lin.weight.copy_(w)
            self.lin.bias.copy_(b)
        self.num_classes = w.shape[0]

    def forward(self, x):
        return self.lin(x.flatten(1))


def _linear_case(seed=0, v=3, n_img=6):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(v, 16, generator=g) * 0.5
    b = torch.zeros(v)
    x = 0.4 + 0.2 * torch.rand(n_img, 1, 4, 4, generator=g)   # far from the box edges
    model = Linear(w, b).eval()
    y = model(x).argmax(1)
    return model, x, y, w, b


def _closed_form_rmse(x, y, w, b):
    """Distance from x to the nearest facet of its class's polyhedron, as an r.m.s.e."""
    out = []
    for xi, t in zip(x.flatten(1), y):
        d = [float(((w[t] - w[j]) @ xi + b[t] - b[j]) / (w[t] - w[j]).norm()) for j in range(w.shape[0]) if j != t]
        out.append(min(d) / math.sqrt(xi.numel()))
    return np.array(out)


def test_linear_step_sizes_fall_linearly_and_sum_to_the_total():
    a = ae.linear_step_sizes(7, 0.1)
    assert float(a.sum()) == pytest.approx(0.1, rel=1e-6)
    # psi_{k,n} = 2 (k - n) / [k (k + 1)] of L2,min adversarial training
    assert a.tolist() == pytest.approx([0.1 * 2 * (7 - n) / 56 for n in range(7)], rel=1e-6)
    assert np.all(np.diff(a.numpy()) < 0)
    with pytest.raises(ValueError, match="steps"):
        ae.linear_step_sizes(0, 1.0)


def test_goals_by_hand():
    p = torch.tensor([[0.5, 0.3, 0.2], [0.4, 0.45, 0.15], [0.30, 0.40, 0.30]])
    y = torch.tensor([0, 0, 0])
    assert ae.goal_met("adv", p, y).tolist() == [False, True, True]
    assert ae.goal_met("btr", p, y).tolist() == [False, False, True]   # 0.30 < 1/3
    d = torch.tensor([0.05, 0.2, 0.1])
    assert ae.goal_met("explain+", p, y, d, rho=0.1).tolist() == [False, True, False]
    with pytest.raises(ValueError, match="rho"):
        ae.goal_met("explain-", p, y)
    with pytest.raises(ValueError, match="goal"):
        ae.goal_met("boundary", p, y)


def test_algorithm1_finds_the_closed_form_minimal_l2_perturbation_of_a_linear_model():
    # Two classes: grad s_t is parallel to the boundary's normal, so the tick-tock settles on the
    # projection of x onto the boundary, the closed-form minimum.
    model, x, y, w, b = _linear_case(v=2)
    exact = _closed_form_rmse(x, y, w, b)
    res = ae.algorithm1(model, x, y, goal="adv", steps=450)
    assert res["met"].all()
    assert np.all(res["rmse"] >= exact * (1 - 1e-4))      # never below the true minimum
    assert res["rmse"] == pytest.approx(exact, rel=1e-3)
    assert (model(res["x_adv"]).argmax(1) != y).all()     # the returned example is adversarial
    got = (res["x_adv"] - x).flatten(1).pow(2).mean(1).sqrt().numpy()
    assert got == pytest.approx(res["rmse"], rel=1e-5)
    # The paper's constant rate ends coarser: within 2 %.
    paper = ae.algorithm1(model, x, y, goal="adv", steps=450, schedule="constant")
    assert paper["rmse"] == pytest.approx(exact, rel=0.02)


def test_with_more_classes_algorithm1_overshoots_the_minimum_a_little():
    # Three classes: grad s_t mixes the normals of all facets (weighted by the softmax), so the
    # fixed point of the tick-tock is not the nearest point of the nearest facet: a known bias of
    # the method (the chapter measures it against foolbox's minimum-norm attacks). 6-8 % here.
    model, x, y, w, b = _linear_case(v=3)
    exact = _closed_form_rmse(x, y, w, b)
    res = ae.algorithm1(model, x, y, goal="adv", steps=450)
    assert np.all(res["rmse"] >= exact * (1 - 1e-4)) and np.all(res["rmse"] <= exact * 1.15)


def test_batching_does_not_matter():
    model, x, y, _, _ = _linear_case(seed=1)
    one = ae.algorithm1(model, x, y, steps=60, batch_size=1)
    many = ae.algorithm1(model, x, y, steps=60, batch_size=64)
    assert one["rmse"] == pytest.approx(many["rmse"], rel=1e-5, abs=1e-7)


def test_ce_and_softmax_gradients_give_the_same_direction():
    model, x, y, _, _ = _linear_case(seed=2)
    a = ae.algorithm1(model, x, y, steps=80, gradient="softmax")
    b = ae.algorithm1(model, x, y, steps=80, gradient="ce")
    assert a["rmse"] == pytest.approx(b["rmse"], rel=1e-4)


def test_btr_stops_when_the_true_score_falls_below_one_over_v():
    model, x, y, w, b = _linear_case(seed=3, v=4)
    res = ae.algorithm1(model, x, y, goal="btr", steps=300)
    assert res["met"].all()
    p = model(res["x_adv"]).softmax(1).gather(1, y[:, None]).squeeze(1)
    assert (p < 1 / 4).all()
    adv = ae.algorithm1(model, x, y, goal="adv", steps=300)
    assert np.all(res["rmse"] >= adv["rmse"] - 1e-6)  # BTR needs at least the boundary's distance


def test_explanations_stay_at_rho_and_move_the_score_the_right_way():
    model, x, y, _, _ = _linear_case(seed=4)
    p0 = model(x).softmax(1)
    up = ae.algorithm1(model, x, y, goal="explain+", rho=0.05, steps=200)
    down = ae.algorithm1(model, x, y, goal="explain-", rho=0.05, steps=200)
    assert up["rmse"] == pytest.approx(0.05, abs=0.01) and down["rmse"] == pytest.approx(0.05, abs=0.01)
    s = lambda r: model(r["x_adv"]).softmax(1).gather(1, y[:, None]).squeeze(1)  # noqa: E731
    assert (s(up) > p0.gather(1, y[:, None]).squeeze(1)).all()
    assert (s(down) < p0.gather(1, y[:, None]).squeeze(1)).all()
    other = (y + 1) % 3
    to_other = ae.algorithm1(model, x, y, goal="explain+", target=other, rho=0.05, steps=200)
    assert (model(to_other["x_adv"]).softmax(1).gather(1, other[:, None]) > p0.gather(1, other[:, None])).all()


def test_clipping_keeps_pixels_valid_and_code_options_run():
    model, x, y, _, _ = _linear_case(seed=5)
    res = ae.algorithm1(model, x, y, steps=50)
    assert float(res["x_adv"].min()) >= 0 and float(res["x_adv"].max()) <= 1
    code = ae.algorithm1(model, x, y, **{**ae.CODE_OPTIONS, "steps": 100})
    assert code["met"].all() and np.isfinite(code["rmse"]).all()


def test_misclassified_images_enter_with_zero():
    model, x, y, _, _ = _linear_case(seed=6)
    wrong = (y + 1) % 3
    res = ae.algorithm1(model, x, wrong, steps=5)
    assert np.all(res["rmse"] == 0) and np.all(res["first_step"] == 0)


def test_ara_protocol_samples_until_n_correct_and_zero_fills():
    model, x, y, w, b = _linear_case(seed=7, n_img=40)
    y_noisy = y.clone()
    y_noisy[::4] = (y[::4] + 1) % 3      # a quarter of the labels are wrong: misclassified
    out = ae.ara_protocol(model, x, y_noisy, n_correct=12, steps=200, seed=0)
    idx = out["index"]
    correct = (model(x[idx]).argmax(1) == y_noisy[idx]).numpy()
    assert correct.sum() == 12 and correct[-1]            # stops at the 12th correct image
    assert out["n_evaluated"] == len(idx) == len(out["rmse"])
    assert np.all(out["rmse"][~correct] == 0) and np.all(out["rmse"][correct] > 0)
    assert out["ara"] == pytest.approx(ara(out["rmse"], 1 / 3))
    exact = _closed_form_rmse(x[idx][correct], y_noisy[idx][correct], w, b)
    assert np.all(out["rmse"][correct] >= exact * (1 - 1e-4)) and np.all(out["rmse"][correct] <= exact * 1.15)


def test_bad_inputs_say_what_is_wrong():
    model, x, y, _, _ = _linear_case()
    with pytest.raises(ValueError, match="rho"):
        ae.algorithm1(model, x, y, goal="explain+")
    with pytest.raises(ValueError, match="target and rho"):
        ae.algorithm1(model, x, y, goal="adv", rho=0.1)
    with pytest.raises(ValueError, match="unknown Algorithm 1 option"):
        ae.algorithm1(model, x, y, stepz=10)
    with pytest.raises(ValueError, match="schedule"):
        ae.algorithm1(model, x, y, schedule="cosine")
    with pytest.raises(ValueError, match=r"\[0, 1\]|must lie in"):
        ae.algorithm1(model, x * 3, y)
    with pytest.raises(RuntimeError, match="eval"):
        ae.algorithm1(model.train(), x, y)
    model.eval()
    with pytest.raises(ValueError, match="n_correct"):
        ae.ara_protocol(model, x, y, n_correct=100)
    with pytest.raises(ValueError, match="goal"):
        ae.ara_protocol(model, x, y, n_correct=2, goal="explain+")


def test_history_records_the_tick_tock():
    model, x, y, _, _ = _linear_case(v=2)
    res = ae.algorithm1(model, x, y, steps=40, history=True)
    h = res["history"]
    assert h["rmse"].shape == h["score"].shape == h["met"].shape == (41, len(x))
    assert np.all(h["rmse"][0] == 0) and not h["met"][0].any()
    first = np.argmax(h["met"], axis=0)
    assert np.array_equal(first, res["first_step"])
    # the reported minimum is the smallest r.m.s.e. among the steps that met the goal
    best = np.where(h["met"], h["rmse"], np.inf).min(0)
    assert res["rmse"] == pytest.approx(best, rel=1e-6)


def test_foolbox_minimum_norm_attacks_agree_with_the_closed_form():
    pytest.importorskip("foolbox")
    model, x, y, w, b = _linear_case(v=2)
    exact = _closed_form_rmse(x, y, w, b)
    for attack in ("ddn", "fmn", "cw"):
        res = ae.foolbox_min_norm(model, x, y, attack=attack, steps=200)
        assert res["met"].all() and (model(res["x_adv"]).argmax(1) != y).all()
        assert np.all(res["rmse"] >= exact * (1 - 1e-3))       # never below the true minimum
        if attack != "fmn":  # foolbox's FMN stops at about twice the minimum on this 4 x 4 toy, whatever the steps
            assert res["rmse"] == pytest.approx(exact, rel=0.01)
    with pytest.raises(ValueError, match="attack"):
        ae.foolbox_min_norm(model, x, y, attack="bb")


def test_explanations_report_when_the_budget_was_reached():
    model, x, y, _, _ = _linear_case(seed=8)
    res = ae.algorithm1(model, x, y, goal="explain+", rho=0.05, steps=100)
    assert res["met"].all() and np.all(res["first_step"] > 0)
    short = ae.algorithm1(model, x, y, goal="explain+", rho=0.05, steps=1)
    assert not short["met"].any() and np.all(short["first_step"] == -1)
