"""Tests of robust_utils.interventions: analytic insertion/deletion curves on a linear model,
batching (batched == per-image loop), heatmap masking, occlusion, energy inside a region, and the
error messages. Tiny synthetic data only."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from robust_utils import interventions as I
from robust_utils.metrics import score_direction
from robust_utils.models import C3LTClassifier

pytestmark = pytest.mark.usefixtures("one_thread")


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))



# ---------------------------------------------------------------------------------------------
# The result object
# ---------------------------------------------------------------------------------------------
def test_result_is_frozen_with_mean_and_direction():
    r = I.InterventionResult("demo", False, torch.tensor([0.2, 0.4]), torch.zeros(2, 3),
                             torch.linspace(0, 1, 3))
    assert r.mean == pytest.approx(0.3)
    assert "lower is better" in repr(r)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.name = "other"
    with pytest.raises(ValueError, match="curves must be"):
        I.InterventionResult("bad", True, torch.zeros(2), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="x must have shape"):
        I.InterventionResult("bad", True, torch.zeros(2), torch.zeros(2, 4), torch.zeros(3))


# ---------------------------------------------------------------------------------------------
# Pixel-wise deletion / insertion: analytic curves
# ---------------------------------------------------------------------------------------------
def test_deletion_insertion_hand_computed(linear_two_class):
    # 2x2 image of ones, weights 4, 3, 2, 1: logit_1 = 10; two steps of two pixels each.
    w = torch.tensor([4.0, 3.0, 2.0, 1.0])
    model = linear_two_class(w).eval()
    x = torch.ones(1, 1, 2, 2)
    maps = w.view(1, 2, 2)
    d = I.deletion(model, x, maps, steps=2)
    expected = [sigmoid(10), sigmoid(3), sigmoid(0)]
    assert d.curves[0].tolist() == pytest.approx(expected, abs=1e-6)
    auc = 0.5 * ((expected[0] + expected[1]) / 2 + (expected[1] + expected[2]) / 2)
    assert float(d.scores[0]) == pytest.approx(auc, abs=1e-6)
    assert d.x.tolist() == pytest.approx([0, 0.5, 1])
    assert d.name == "deletion" and d.higher_is_better is False
    assert d.extra["pixels"].tolist() == [0, 2, 4]
    ins = I.insertion(model, x, maps, steps=2, substrate="black")
    assert ins.curves[0].tolist() == pytest.approx([sigmoid(0), sigmoid(7), sigmoid(10)], abs=1e-6)
    assert ins.higher_is_better is True


def _expected_curve(xi, wi, order_values, steps, reveal):
    contrib = (xi * wi).tolist()
    order = sorted(range(len(contrib)), key=lambda p: -order_values[p])
    total, hw = sum(contrib), len(contrib)
    curve = []
    for k in range(steps + 1):
        moved = sum(contrib[p] for p in order[: (k * hw) // steps])
        curve.append(sigmoid(moved if reveal else total - moved))
    return curve


@pytest.mark.parametrize("reveal", [False, True])
def test_linear_model_curves_match_closed_form(linear_two_class, reveal):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 6, 6, generator=g, dtype=torch.float64)
    w = torch.rand(36, generator=g, dtype=torch.float64) * 0.5 + 0.05   # positive weights
    model = linear_two_class(w).eval()
    maps = (x.flatten(1) * w).view(3, 6, 6)         # the exact contribution of every pixel
    fn = I.insertion if reveal else I.deletion
    steps = 9                                        # 4 pixels per step
    res = fn(model, x, maps, steps=steps, substrate="black", target=1)
    for i in range(3):
        exp = _expected_curve(x[i].flatten(), w, maps[i].flatten().tolist(), steps, reveal)
        assert res.curves[i].tolist() == pytest.approx(exp, abs=1e-12)
        auc = sum((exp[k] + exp[k + 1]) / 2 for k in range(steps)) / steps
        assert float(res.scores[i]) == pytest.approx(auc, abs=1e-12)
    # The correct order beats the reversed order in both directions.
    rev = fn(model, x, -maps, steps=steps, substrate="black", target=1)
    if reveal:
        assert (res.scores > rev.scores).all()
    else:
        assert (res.scores < rev.scores).all()


def test_deletion_with_mean_and_tensor_substrates(linear_two_class):
    w = torch.tensor([1.0, 2.0, 3.0, 4.0])
    model = linear_two_class(w).eval()
    x = torch.tensor([[[[0.2, 0.4], [0.6, 1.0]]]])
    maps = torch.rand(1, 2, 2)
    d = I.deletion(model, x, maps, steps=4, substrate="mean")
    m = float(x.mean())
    assert float(d.curves[0, -1]) == pytest.approx(sigmoid(m * 10), abs=1e-6)
    black = I.deletion(model, x, maps, steps=4, substrate="black")
    given = I.deletion(model, x, maps, steps=4, substrate=torch.zeros(1, 2, 2))
    assert torch.allclose(black.curves, given.curves)
    assert given.extra["substrate"] == "tensor"


@pytest.mark.requires("scipy")
def test_blur_substrate_matches_scipy():
    from scipy.ndimage import gaussian_filter

    x = torch.rand(2, 1, 20, 20, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    out = I.make_substrate(x, "blur", blur_sigma=2.0)
    ref = np.stack([gaussian_filter(x[i, 0].numpy(), 2.0, mode="nearest", truncate=3.0) for i in range(2)])
    assert np.allclose(out[:, 0].numpy(), ref, atol=1e-10)
    const = torch.full((1, 3, 5, 5), 0.3)
    assert torch.allclose(I.make_substrate(const, "blur"), const, atol=1e-6)   # sigma 5 > image size


def test_stable_ties_and_flat_map_warning(linear_two_class):
    model = linear_two_class(torch.arange(1.0, 5.0)).eval()
    x = torch.ones(1, 1, 2, 2)
    with pytest.warns(UserWarning, match="constant"):
        d = I.deletion(model, x, torch.zeros(1, 2, 2), steps=4)
    # Ties keep raster order: pixels removed with weights 1, 2, 3, 4 in turn.
    assert d.curves[0].tolist() == pytest.approx([sigmoid(z) for z in (10, 9, 7, 4, 0)], abs=1e-6)
    assert d.extra["flat_maps"].tolist() == [True]


def test_plain_callable_model_and_given_target(linear_two_class):
    w = torch.ones(4)
    lin = linear_two_class(w).eval()
    x = torch.rand(2, 1, 2, 2)
    maps = torch.rand(2, 2, 2)
    a = I.deletion(lambda im: lin(im), x, maps, steps=2, target=0)
    b = I.deletion(lin, x, maps, steps=2, target=[0, 0])
    assert torch.allclose(a.curves, b.curves)
    assert a.extra["target"].tolist() == [0, 0]


def test_batched_equals_per_image_loop(c3lt, x16, maps16):
    for fn, kw in [(I.deletion, {"substrate": "blur"}), (I.insertion, {"substrate": "mean"})]:
        full = fn(c3lt, x16, maps16, steps=8, **kw)
        small = fn(c3lt, x16, maps16, steps=8, batch_size=5, **kw)
        loop = [fn(c3lt, x16[i:i + 1], maps16[i:i + 1], steps=8, **kw) for i in range(4)]
        assert torch.allclose(full.curves, small.curves, atol=1e-6)
        assert torch.allclose(full.curves, torch.cat([r.curves for r in loop]), atol=1e-6)
        assert torch.allclose(full.scores, torch.cat([r.scores for r in loop]), atol=1e-6)
        assert full.curves.shape == (4, 9)
    h_full = I.heatmap_masking(c3lt, x16, maps16, batch_size=3)
    h_loop = torch.cat([I.heatmap_masking(c3lt, x16[i:i + 1], maps16[i:i + 1]).scores for i in range(4)])
    assert torch.allclose(h_full.scores, h_loop, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Heatmap masking
# ---------------------------------------------------------------------------------------------
def test_heatmap_masking_known_answer(linear_two_class):
    model = linear_two_class(torch.full((4,), 2.0)).eval()
    x = torch.ones(2, 1, 2, 2)                      # logit_1 = 8
    maps = torch.stack([torch.ones(2, 2), torch.full((2, 2), 0.5)])
    r = I.heatmap_masking(model, x, maps)
    assert r.scores.tolist() == pytest.approx([sigmoid(8), sigmoid(4)], abs=1e-6)
    assert r.extra["unmasked"].tolist() == pytest.approx([sigmoid(8)] * 2, abs=1e-6)
    drop = (sigmoid(8) - sigmoid(4)) / sigmoid(8)
    assert r.extra["drop"].tolist() == pytest.approx([0.0, drop], abs=1e-6)
    assert r.extra["increase"].tolist() == [False, False]
    assert r.higher_is_better and r.mean == pytest.approx((sigmoid(8) + sigmoid(4)) / 2, abs=1e-6)


def test_heatmap_masking_empty_and_out_of_range_maps(linear_two_class):
    model = linear_two_class(torch.ones(4)).eval()
    x = torch.ones(2, 1, 2, 2)
    maps = torch.stack([torch.zeros(2, 2), torch.ones(2, 2)])
    with pytest.raises(ValueError, match="all zero.*allow_empty=True"):
        I.heatmap_masking(model, x, maps)
    r = I.heatmap_masking(model, x, maps, allow_empty=True)
    assert float(r.scores[0]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\].*normalize_maps"):
        I.heatmap_masking(model, x, maps * 3)


# ---------------------------------------------------------------------------------------------
# Huffman coding
# ---------------------------------------------------------------------------------------------
def test_bad_inputs_give_clear_errors(c3lt, x16, maps16):
    with pytest.raises(ValueError, match="3 maps but there are 4 images"):
        I.deletion(c3lt, x16, maps16[:3])
    with pytest.raises(ValueError, match="must be 16x16 like the images"):
        I.deletion(c3lt, x16, maps16[:, :8, :8])
    with pytest.raises(ValueError, match="3 channels"):
        I.deletion(c3lt, x16, torch.rand(4, 3, 16, 16))
    with pytest.raises(TypeError, match="torch.Tensor of shape"):
        I.deletion(c3lt, x16, maps16.numpy())
    with pytest.raises(ValueError, match="steps must be >= 1"):
        I.deletion(c3lt, x16, maps16, steps=0)
    with pytest.raises(ValueError, match="at most 256"):
        I.insertion(c3lt, x16, maps16, steps=1000)
    with pytest.raises(ValueError, match="unknown substrate 'white'; choose one of: black, mean, blur"):
        I.deletion(c3lt, x16, maps16, substrate="white")
    with pytest.raises(ValueError, match="broadcastable"):
        I.deletion(c3lt, x16, maps16, substrate=torch.zeros(3, 5))
    with pytest.raises(ValueError, match="blur_sigma must lie in"):
        I.insertion(c3lt, x16, maps16, substrate="blur", blur_sigma=0)
    with pytest.raises(ValueError, match=r"target must be a class index in \[0, 9\]"):
        I.deletion(c3lt, x16, maps16, target=12)
    with pytest.raises(RuntimeError, match="model.eval()"):
        I.deletion(C3LTClassifier(input_size=16), x16, maps16)
    with pytest.raises(ValueError, match="logits shaped"):
        I.deletion(lambda im: im.flatten(1).sum(1), x16, maps16)


def test_occlude_patches_and_errors():
    x = torch.ones(2, 1, 10, 10)
    out = I.occlude(x, [(0, 0), (5, 5)], size=3)
    assert out[0, 0, 0, 0] == 0 and out[0, 0, 1, 1] == 0 and out[0, 0, 2, 2] == 1  # clipped at the border
    assert out[:, :, 4:7, 4:7].eq(0).all() and out.sum() == 2 * (100 - 4 - 9)
    assert torch.equal(I.occlude(x, []), x) and x.eq(1).all()  # a copy; the input is untouched
    with pytest.raises(ValueError, match="outside"):
        I.occlude(x, [(10, 0)])
    with pytest.raises(TypeError, match="row, col"):
        I.occlude(x, [3])
    with pytest.raises(ValueError, match="pixel value"):
        I.occlude(x, [(1, 1)], value=2)


def test_energy_inside_known_answers():
    maps = torch.zeros(3, 4, 4)
    maps[0, :2] = 1.0          # all mass in the top half
    maps[1] = 1.0              # uniform
    regions = torch.zeros(3, 4, 4, dtype=torch.bool)
    regions[:, :2] = True
    e = I.energy_inside(maps, regions)
    torch.testing.assert_close(e, torch.tensor([1.0, 0.5, 0.0]))
    with pytest.raises(ValueError, match="shaped like"):
        I.energy_inside(maps, regions[:, None])
    with pytest.raises(ValueError, match="non-negative"):
        I.energy_inside(-maps - 1, regions)




def test_energy_inside_rejects_nan_maps_and_non_mask_regions():
    maps = torch.rand(2, 4, 4)
    region = torch.zeros(2, 4, 4, dtype=torch.long)
    region[:, :2] = 1
    ref = I.energy_inside(maps, region.bool())
    torch.testing.assert_close(I.energy_inside(maps, region), ref)          # 0/1 integers = a mask
    torch.testing.assert_close(I.energy_inside(maps, region.float()), ref)
    assert ((ref >= 0) & (ref <= 1)).all()
    with pytest.raises(ValueError, match=r"boolean or 0/1 mask, got other values \[5\]"):
        I.energy_inside(maps, region * 5)                                   # was 5.0 as a "fraction"
    nan_maps = maps.clone()
    nan_maps[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or infinite values \(maps \[1\]\).*nan_to_num"):
        I.energy_inside(nan_maps, region.bool())                            # was 0.0
    with pytest.raises(ValueError, match="empty batch"):
        I.energy_inside(torch.zeros(0, 4, 4), torch.zeros(0, 4, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="real-valued"):
        I.energy_inside(region.bool(), region.bool())
    assert I.energy_inside(maps.double(), region.bool()).dtype == torch.float32


def test_numpy_integer_targets_accepted(c3lt, x16, maps16):
    a = I.deletion(c3lt, x16, maps16, target=np.int64(3), steps=4)
    b = I.deletion(c3lt, x16, maps16, target=3, steps=4)
    torch.testing.assert_close(a.scores, b.scores)
    c = I.deletion(c3lt, x16, maps16, target=np.array([3, 3, 3, 3]), steps=4)
    torch.testing.assert_close(c.scores, b.scores)
    with pytest.raises(TypeError, match="class index"):
        I.deletion(c3lt, x16, maps16, target=1.5, steps=4)


def test_intervention_scores_declare_their_direction(c3lt, x16, maps16):
    assert score_direction(I.heatmap_masking) == "better"
    assert score_direction(I.insertion) == "better"
    assert score_direction(I.deletion) == "worse"
    assert score_direction(I.energy_inside) == "better"
    d = I.deletion(c3lt, x16, maps16, steps=4)
    assert score_direction(d) == "worse" and not d.higher_is_better
    assert score_direction(I.insertion(c3lt, x16, maps16, steps=4)) == "better"


def test_pixel_range_dtype_and_flags(linear_two_class):
    model = linear_two_class(torch.arange(1.0, 5.0)).eval()
    x = torch.rand(2, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    maps = torch.rand(2, 2, 2, generator=torch.Generator().manual_seed(1))
    for fn in (I.deletion, I.insertion, I.heatmap_masking):
        with pytest.raises(ValueError, match=r"must lie in \[0.0, 1.0\]"):
            fn(model, x * 255, maps)
    assert I.deletion(model, x * 255, maps, steps=2, value_range=None).scores.shape == (2,)
    with pytest.raises(ValueError, match=r"must lie in \[0.0, 1.0\]"):
        I.prepare_inputs(lambda z: z.flatten(1), x * 255)          # a plain callable too
    c3 = C3LTClassifier(input_size=16).eval()
    with pytest.raises(TypeError, match="float64"):
        I.prepare_inputs(c3, torch.rand(1, 1, 16, 16, dtype=torch.float64))
    with pytest.raises(TypeError, match="allow_empty must be True or False"):
        I.heatmap_masking(model, x, maps, allow_empty="no")
    with pytest.raises(TypeError, match="progress must be True or False"):
        I.deletion(model, x, maps, steps=2, progress="no")
    with pytest.raises(TypeError, match="unit must be True or False"):
        I.check_maps(maps, x, unit="yes")
