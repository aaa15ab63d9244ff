"""Counterfactual metrics of Part 7 (groundwork) at hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robust_utils import cf_metrics as cm

pytestmark = pytest.mark.usefixtures("one_thread")


class OnePixel(nn.Module):
    """Two classes; the logit of class 1 is a * (pixel (0, 0)), class 0's is 0."""

    def __init__(self, a=4.0):
        super().__init__()
        self.a = a
        self.num_classes = 2

    def forward(self, x):
        v = self.a * x[:, 0, 0, 0]
        return torch.stack([torch.zeros_like(v), v], 1)


def test_cout_of_a_model_that_reads_one_pixel():
    model = OnePixel().eval()
    x = torch.zeros(1, 1, 4, 4)
    x_cf = torch.zeros(1, 1, 4, 4)
    x_cf[0, 0, 0, 0] = 1.0          # the only change, so it is inserted first
    x_cf[0, 0, 3, 3] = 0.5          # a smaller change the model ignores
    res = cm.cout(model, x, x_cf, query=0, target=1, steps=4)   # 4 pixels per step, T = 4
    s1 = float(torch.sigmoid(torch.tensor(4.0)))                 # softmax of class 1 once the pixel is in
    curve_cf = [0.5, s1, s1, s1, s1]
    aupc_cf = np.mean([(a + b) / 2 for a, b in zip(curve_cf, curve_cf[1:])])
    assert res["curve_cf"][0] == pytest.approx(curve_cf, rel=1e-6)
    assert res["aupc_cf"] == pytest.approx(aupc_cf, rel=1e-6)
    assert res["aupc_query"] == pytest.approx(1 - aupc_cf, rel=1e-6)
    assert res["cout"] == pytest.approx(2 * aupc_cf - 1, rel=1e-6)
    assert cm.cout.higher_means == "better"


def test_cout_is_defined_when_the_counterfactual_is_the_query():
    model = OnePixel().eval()
    x = torch.rand(3, 1, 4, 4)
    res = cm.cout(model, x, x.clone(), query=0, target=1, steps=5)
    assert np.isfinite(res["cout_per_image"]).all()
    p1 = torch.softmax(model(x), 1)[:, 1].numpy()
    assert res["aupc_cf_per_image"] == pytest.approx(p1, rel=1e-6)
    assert res["cout_per_image"] == pytest.approx(2 * p1 - 1, rel=1e-6)


def test_validity_and_proximity():
    model = OnePixel().eval()
    x_cf = torch.zeros(4, 1, 4, 4)
    x_cf[:3, 0, 0, 0] = 1.0
    assert cm.validity(model, x_cf, 1) == pytest.approx(0.75)
    assert cm.validity(model, x_cf, torch.tensor([1, 1, 1, 0])) == pytest.approx(1.0)
    x = torch.zeros(4, 1, 4, 4)
    assert cm.proximity(x, x_cf) == pytest.approx(3 / 64)
    with pytest.raises(ValueError, match="same shape"):
        cm.proximity(x, x_cf[:2])


def test_im1_and_im2_with_identity_and_constant_autoencoders():
    x_cf = torch.rand(5, 1, 4, 4) + 0.1
    ident, zero = nn.Identity(), lambda t: torch.zeros_like(t)
    assert cm.im1(ae_query=zero, ae_cf=ident, x_cf=x_cf) == pytest.approx(0.0, abs=1e-9)
    assert cm.im1(ae_query=ident, ae_cf=zero, x_cf=x_cf) > 1e6            # divided by ~0
    assert cm.im1(ae_query=zero, ae_cf=zero, x_cf=x_cf) == pytest.approx(1.0)
    assert cm.im2(ae_cf=ident, ae_all=ident, x_cf=x_cf) == pytest.approx(0.0)
    expected = float((x_cf.flatten(1).pow(2).sum(1) / x_cf.flatten(1).abs().sum(1)).mean())
    assert cm.im2(ae_cf=ident, ae_all=zero, x_cf=x_cf) == pytest.approx(expected, rel=1e-5)


def test_fid_of_identical_sets_is_zero_and_agrees_with_torchmetrics():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 8, generator=g)
    b = torch.randn(400, 8, generator=g) * 1.5 + 0.5
    assert cm.fid_from_features(a, a) == pytest.approx(0.0, abs=1e-6)
    ours = cm.fid_from_features(a, b)
    assert ours > 1.0
    fid_mod = pytest.importorskip("torchmetrics.image.fid")

    class Feat(nn.Module):                 # "images" (N, 1, 1, 8) -> their 8 values as features
        def forward(self, x):
            return x.flatten(1)

    m = fid_mod.FrechetInceptionDistance(feature=Feat(), input_img_size=(1, 1, 8))
    m.update(a.view(-1, 1, 1, 8).double(), real=True)
    m.update(b.view(-1, 1, 1, 8).double(), real=False)
    assert float(m.compute()) == pytest.approx(ours, rel=1e-4)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    g = torch.Generator().manual_seed(1)
    a, a2 = torch.randn(300, 4, generator=g), torch.randn(300, 4, generator=g)
    b = torch.randn(300, 4, generator=g) + 1.0
    same, _ = cm.kid_from_features(a, a2, subsets=20, subset_size=200)
    diff, _ = cm.kid_from_features(a, b, subsets=20, subset_size=200)
    assert abs(same) < 0.05 < diff
    with pytest.raises(ValueError, match="features of shape"):
        cm.kid_from_features(torch.randn(5), b)


def test_kid_agrees_with_torchmetrics_and_rescale_removes_the_feature_scale():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(120, 6, generator=g).double()
    b = (torch.randn(120, 6, generator=g) * 1.3 + 0.4).double()
    ours, _ = cm.kid_from_features(a, b, subsets=1, subset_size=120)   # whole sets: no sampling
    kid_mod = pytest.importorskip("torchmetrics.image.kid")

    class Feat(nn.Module):
        def forward(self, x):
            return x.flatten(1)

    m = kid_mod.KernelInceptionDistance(feature=Feat(), subsets=1, subset_size=120)
    m.update(a.view(-1, 1, 1, 6), real=True)
    m.update(b.view(-1, 1, 1, 6), real=False)
    assert float(m.compute()[0]) == pytest.approx(ours, rel=1e-6)
    # Without rescaling, features 10x larger give a KID of another order (the cubic kernel);
    # with it, the same KID whatever the scale, and the unscaled one for unit-r.m.s. features.
    big, _ = cm.kid_from_features(10 * a, 10 * b, subsets=1, subset_size=120)
    assert big > 100 * ours
    r1, _ = cm.kid_from_features(a, b, subsets=1, subset_size=120, rescale=True)
    r10, _ = cm.kid_from_features(10 * a, 10 * b, subsets=1, subset_size=120, rescale=True)
    assert r10 == pytest.approx(r1, rel=1e-9)
    s = float(a.pow(2).mean().sqrt())
    plain, _ = cm.kid_from_features(a / s, b / s, subsets=1, subset_size=120)
    assert r1 == pytest.approx(plain, rel=1e-9)
    with pytest.raises(TypeError, match="rescale must be True or False"):
        cm.kid_from_features(a, b, rescale="yes")
    with pytest.raises(ValueError, match="not all zero"):
        cm.kid_from_features(torch.zeros(10, 6), b, rescale=True)
    with pytest.raises(ValueError, match="differ in size"):
        cm.kid_from_features(a, b[:, :5])
