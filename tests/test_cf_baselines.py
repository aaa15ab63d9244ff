"""Part 7's baselines: CEM's pertinent negative, CVE's greedy cell swaps, edit COUT, targeted PGD."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robust_utils import cf_baselines as cb

pytestmark = pytest.mark.usefixtures("one_thread")


class Linear2(nn.Module):
    """Two logits on 4 x 4 images: (w . x + b, 0)."""

    def __init__(self, w, b=0.0):
        super().__init__()
        self.w, self.b = w, b
        self.num_classes = 2

    def forward(self, x):
        s = (x.flatten(1) * self.w).sum(1) + self.b
        return torch.stack([s, torch.zeros_like(s)], 1)


def test_cem_finds_the_closed_form_l2_pertinent_negative():
    torch.manual_seed(0)
    w = 0.5 * torch.randn(16)
    x = (0.5 + 0.02 * torch.randn(4, 1, 4, 4)).clamp(0, 1)
    raw = (x.flatten(1) * w).sum(1)
    model = Linear2(w, b=0.3 - float(raw.min())).eval()      # every image predicted class 0, gaps 0.3 and more
    gap = raw + model.b
    assert (model(x).argmax(1) == 0).all()
    out = cb.cem_pertinent_negative(model, x, 0, beta=0.0, gamma=0.0, kappa=0.0, steps=300, search_steps=6)
    assert out["found"].all()
    assert (model(out["x_cf"]).argmax(1) == 1).all() and out["x_cf"].min() >= 0 and out["x_cf"].max() <= 1
    exact = (gap / w.norm()).numpy()                  # the L2 distance to the boundary w . x = 0
    ratio = np.sqrt(out["l2sq"]) / exact
    assert (ratio >= 1 - 1e-4).all() and (ratio < 1.2).all(), ratio


def test_cem_l1_term_makes_the_perturbation_sparser():
    torch.manual_seed(1)
    w = 0.5 * torch.randn(16)
    model = Linear2(w, b=0.0).eval()
    x = torch.full((2, 1, 4, 4), 0.5)
    model.b = 1.0 - float((x[0].flatten() * w).sum())          # gap 1 for every image
    plain = cb.cem_pertinent_negative(model, x, 0, beta=0.0, gamma=0.0, steps=200)
    sparse = cb.cem_pertinent_negative(model, x, 0, beta=0.05, gamma=0.0, steps=200)
    count = lambda o: float(((o["x_cf"] - x).abs() > 1e-6).float().sum(dim=(1, 2, 3)).mean())  # noqa: E731
    assert plain["found"].all() and sparse["found"].all()
    assert count(sparse) < count(plain)


def test_cem_reports_not_found_and_checks_inputs():
    model = Linear2(torch.zeros(16), b=5.0).eval()          # class 0 whatever the image
    x = torch.full((3, 1, 4, 4), 0.5)
    out = cb.cem_pertinent_negative(model, x, 0, gamma=0.0, steps=20, search_steps=2)
    assert not out["found"].any() and torch.equal(out["x_cf"], x)
    with pytest.raises(ValueError, match="one per image"):
        cb.cem_pertinent_negative(model, x, [0, 0], steps=5)
    with pytest.raises(ValueError):
        cb.cem_pertinent_negative(model, x * 3, 0, steps=5)
    model.train()
    with pytest.raises(RuntimeError, match="eval"):
        cb.cem_pertinent_negative(model, x, 0, steps=5)


class CellModel(nn.Module):
    """A 2 x 2 grid of 2 x 2 pixel blocks (features: the blocks' means); class 1 iff cell 0 is bright."""

    num_classes = 2

    def spatial_features(self, x):
        return nn.functional.avg_pool2d(x, 2)          # (N, 1, 2, 2)

    def classify_spatial(self, fmap):
        s = 10 * fmap.flatten(1)[:, 0] - 5
        return torch.stack([torch.zeros_like(s), s], 1)

    def forward(self, x):
        return self.classify_spatial(self.spatial_features(x))


def test_cve_swaps_the_one_cell_that_matters():
    model = CellModel().eval()
    x = torch.zeros(1, 1, 4, 4)
    dis = torch.zeros(1, 1, 4, 4)
    dis[0, 0, 2:, 2:] = 1.0                           # the distractor's bright block is cell 3
    out = cb.cve(model, x, dis, 1, max_edits=3)
    assert out["found"].all() and out["n_edits"].tolist() == [1] and out["edits"] == [[(0, 3)]]
    expected = torch.zeros(1, 1, 4, 4)
    expected[0, 0, :2, :2] = 1.0
    assert torch.equal(out["x_cf"], expected)
    assert out["sequence"].shape == (4, 1, 1, 4, 4) and torch.equal(out["sequence"][-1], expected)
    assert int(model(out["x_cf"]).argmax(1)) == 1


def test_cve_stops_at_max_edits_and_checks_inputs():
    model = CellModel().eval()
    x = torch.zeros(2, 1, 4, 4)
    out = cb.cve(model, x, torch.zeros(2, 1, 4, 4), 1, max_edits=2)   # nothing bright to paste
    assert not out["found"].any() and out["n_edits"].tolist() == [2, 2]
    with pytest.raises(TypeError, match="spatial_features"):
        cb.cve(Linear2(torch.zeros(16)).eval(), x, x, 1)
    with pytest.raises(ValueError, match="one image per query"):
        cb.cve(model, x, x[:1], 1)


def test_edit_cout_is_the_trapezoid_over_the_edits():
    model = CellModel().eval()
    seq = torch.zeros(3, 2, 1, 4, 4)
    seq[1, 0, 0, :2, :2] = 0.5                        # p1 = sigmoid(0) = 0.5
    seq[2, 0, 0, :2, :2] = 1.0                        # p1 = sigmoid(5)
    seq[1:, 1] = seq[0, 1]
    out = cb.edit_cout(model, seq, [2, 0], 0, 1)
    s = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    p = [s(-5), 0.5, s(5)]
    want_t = ((p[0] + p[1]) / 2 + (p[1] + p[2]) / 2) / 2
    assert out["aupc_target"][0] == pytest.approx(want_t, rel=1e-5)
    assert out["aupc_query"][0] == pytest.approx(1 - want_t, rel=1e-5)
    assert out["aupc_target"][1] == pytest.approx(s(-5), rel=1e-5)   # no edits: its one point
    assert out["cout"][0] == pytest.approx(2 * want_t - 1, rel=1e-5)
    with pytest.raises(ValueError, match="n_edits"):
        cb.edit_cout(model, seq, [3, 0], 0, 1)


def test_adversarial_cf_reaches_the_target_inside_the_budget():
    torch.manual_seed(2)
    w = torch.randn(16)
    model = Linear2(w, b=0.0).eval()
    x = torch.full((3, 1, 4, 4), 0.5)
    model.b = 0.5 - float((x[0].flatten() * w).sum())
    adv = cb.adversarial_cf(model, x, 1, eps=0.3, steps=20)
    assert (model(adv).argmax(1) == 1).all()
    assert float((adv - x).abs().max()) <= 0.3 + 1e-6
