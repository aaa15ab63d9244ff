"""Tests of robust_utils.interventions: analytic insertion/deletion curves on a linear model,
hand-computed Huffman codes and bit ratios, batching (batched == per-image loop), RISE and SHAPE
on a model that only looks at one region, and the error messages. Tiny synthetic data only."""
import dataclasses
import math
import random

import numpy as np
import pytest
import torch
import torch.nn as nn

from robust_utils import interventions as I
from robust_utils.models import C3LTClassifier


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny tensors: one thread avoids contention on a shared CPU (restored afterwards)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class LinearTwoClass(nn.Module):
    """logit_0 = 0, logit_1 = w . x - b, so p(class 1) = sigmoid(w . x - b) in closed form."""

    def __init__(self, w: torch.Tensor, b: float = 0.0):
        super().__init__()
        self.register_buffer("w", w.flatten())
        self.b = b

    def forward(self, x):
        z = (x.flatten(1) * self.w.to(x.dtype)).sum(1) - self.b
        return torch.stack([torch.zeros_like(z), z], 1)


class PatchModel(nn.Module):
    """Looks only at the top-left 8x8 patch: logit_1 = 20 * mean(patch) - 10, logit_0 = 0."""

    def forward(self, x):
        z = 20 * x[:, :, :8, :8].mean(dim=(1, 2, 3)) - 10
        return torch.stack([torch.zeros_like(z), z], 1)


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return C3LTClassifier(input_size=16).eval()


@pytest.fixture(scope="module")
def x16():
    torch.manual_seed(1)
    return torch.rand(4, 1, 16, 16)


@pytest.fixture(scope="module")
def maps16():
    torch.manual_seed(2)
    return torch.rand(4, 16, 16)


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
def test_deletion_insertion_hand_computed():
    # 2x2 image of ones, weights 4, 3, 2, 1: logit_1 = 10; two steps of two pixels each.
    w = torch.tensor([4.0, 3.0, 2.0, 1.0])
    model = LinearTwoClass(w).eval()
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
def test_linear_model_curves_match_closed_form(reveal):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 6, 6, generator=g, dtype=torch.float64)
    w = torch.rand(36, generator=g, dtype=torch.float64) * 0.5 + 0.05   # positive weights
    model = LinearTwoClass(w).eval()
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


def test_deletion_with_mean_and_tensor_substrates():
    w = torch.tensor([1.0, 2.0, 3.0, 4.0])
    model = LinearTwoClass(w).eval()
    x = torch.tensor([[[[0.2, 0.4], [0.6, 1.0]]]])
    maps = torch.rand(1, 2, 2)
    d = I.deletion(model, x, maps, steps=4, substrate="mean")
    m = float(x.mean())
    assert float(d.curves[0, -1]) == pytest.approx(sigmoid(m * 10), abs=1e-6)
    black = I.deletion(model, x, maps, steps=4, substrate="black")
    given = I.deletion(model, x, maps, steps=4, substrate=torch.zeros(1, 2, 2))
    assert torch.allclose(black.curves, given.curves)
    assert given.extra["substrate"] == "tensor"


def test_blur_substrate_matches_scipy():
    from scipy.ndimage import gaussian_filter

    x = torch.rand(2, 1, 20, 20, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    out = I.make_substrate(x, "blur", blur_sigma=2.0)
    ref = np.stack([gaussian_filter(x[i, 0].numpy(), 2.0, mode="nearest", truncate=3.0) for i in range(2)])
    assert np.allclose(out[:, 0].numpy(), ref, atol=1e-10)
    const = torch.full((1, 3, 5, 5), 0.3)
    assert torch.allclose(I.make_substrate(const, "blur"), const, atol=1e-6)   # sigma 5 > image size


def test_stable_ties_and_flat_map_warning():
    model = LinearTwoClass(torch.arange(1.0, 5.0)).eval()
    x = torch.ones(1, 1, 2, 2)
    with pytest.warns(UserWarning, match="constant"):
        d = I.deletion(model, x, torch.zeros(1, 2, 2), steps=4)
    # Ties keep raster order: pixels removed with weights 1, 2, 3, 4 in turn.
    assert d.curves[0].tolist() == pytest.approx([sigmoid(z) for z in (10, 9, 7, 4, 0)], abs=1e-6)
    assert d.extra["flat_maps"].tolist() == [True]


def test_plain_callable_model_and_given_target():
    w = torch.ones(4)
    lin = LinearTwoClass(w).eval()
    x = torch.rand(2, 1, 2, 2)
    maps = torch.rand(2, 2, 2)
    a = I.deletion(lambda im: lin(im), x, maps, steps=2, target=0)
    b = I.deletion(lin, x, maps, steps=2, target=[0, 0])
    assert torch.allclose(a.curves, b.curves)
    assert a.extra["target"].tolist() == [0, 0]


def test_batched_equals_per_image_loop(cnn, x16, maps16):
    for fn, kw in [(I.deletion, {"substrate": "blur"}), (I.insertion, {"substrate": "mean"})]:
        full = fn(cnn, x16, maps16, steps=8, **kw)
        small = fn(cnn, x16, maps16, steps=8, batch_size=5, **kw)
        loop = [fn(cnn, x16[i:i + 1], maps16[i:i + 1], steps=8, **kw) for i in range(4)]
        assert torch.allclose(full.curves, small.curves, atol=1e-6)
        assert torch.allclose(full.curves, torch.cat([r.curves for r in loop]), atol=1e-6)
        assert torch.allclose(full.scores, torch.cat([r.scores for r in loop]), atol=1e-6)
        assert full.curves.shape == (4, 9)
    y = torch.tensor([0, 1, 2, 3])
    s_full = I.structure_deletion(cnn, x16, y, maps16, batch_size=7)
    s_loop = [I.structure_deletion(cnn, x16[i:i + 1], y[i:i + 1], maps16[i:i + 1]) for i in range(4)]
    assert torch.equal(s_full.curves, torch.cat([r.curves for r in s_loop]))
    assert torch.allclose(s_full.extra["bit_ratio"], torch.cat([r.extra["bit_ratio"] for r in s_loop]))
    h_full = I.heatmap_masking(cnn, x16, maps16, batch_size=3)
    h_loop = torch.cat([I.heatmap_masking(cnn, x16[i:i + 1], maps16[i:i + 1]).scores for i in range(4)])
    assert torch.allclose(h_full.scores, h_loop, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Heatmap masking
# ---------------------------------------------------------------------------------------------
def test_heatmap_masking_known_answer():
    model = LinearTwoClass(torch.full((4,), 2.0)).eval()
    x = torch.ones(2, 1, 2, 2)                      # logit_1 = 8
    maps = torch.stack([torch.ones(2, 2), torch.full((2, 2), 0.5)])
    r = I.heatmap_masking(model, x, maps)
    assert r.scores.tolist() == pytest.approx([sigmoid(8), sigmoid(4)], abs=1e-6)
    assert r.extra["unmasked"].tolist() == pytest.approx([sigmoid(8)] * 2, abs=1e-6)
    drop = (sigmoid(8) - sigmoid(4)) / sigmoid(8)
    assert r.extra["drop"].tolist() == pytest.approx([0.0, drop], abs=1e-6)
    assert r.extra["increase"].tolist() == [False, False]
    assert r.higher_is_better and r.mean == pytest.approx((sigmoid(8) + sigmoid(4)) / 2, abs=1e-6)


def test_heatmap_masking_empty_and_out_of_range_maps():
    model = LinearTwoClass(torch.ones(4)).eval()
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
def test_huffman_code_hand_computed():
    code = I.huffman_code([5, 2, 1, 1])
    assert {s: len(c) for s, c in code.items()} == {0: 1, 1: 2, 2: 3, 3: 3}
    assert code == I.huffman_code([5, 2, 1, 1])                     # deterministic
    assert I.huffman_code({10: 3, 20: 0, 30: 1}) == {10: "1", 30: "0"}   # the rarer symbol gets "0"
    img = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 2, 3]], dtype=torch.uint8)
    assert I.huffman_bits(img).tolist() == [5 * 1 + 2 * 2 + 3 + 3]


def _is_prefix_free(words) -> bool:
    words = sorted(words)
    return all(not b.startswith(a) for a, b in zip(words, words[1:]))


def test_huffman_code_is_prefix_free_and_within_one_bit_of_entropy():
    rng = random.Random(0)
    for _ in range(25):
        k = rng.randint(2, 60)
        hist = [rng.choice([0, rng.randint(1, 1000)]) for _ in range(k)]
        hist[rng.randrange(k)] += 1
        hist[(rng.randrange(k - 1) + 1 + hist.index(max(hist))) % k] += 1   # at least 2 symbols
        code = I.huffman_code(hist)
        assert set(code) == {s for s, c in enumerate(hist) if c > 0}
        assert _is_prefix_free(code.values())
        assert sum(2.0 ** -len(c) for c in code.values()) == pytest.approx(1.0)   # a full tree
        total = sum(hist)
        p = {s: c / total for s, c in enumerate(hist) if c > 0}
        entropy = -sum(q * math.log2(q) for q in p.values())
        mean_len = sum(p[s] * len(code[s]) for s in p)
        assert entropy - 1e-12 <= mean_len < entropy + 1


def test_huffman_single_symbol_and_constant_image():
    assert I.huffman_code([0, 0, 7]) == {2: "0"}
    assert I.huffman_code({5: 3}) == {5: "0"}
    img = torch.full((2, 1, 3, 4), 0.5)
    assert I.huffman_bits(img).tolist() == [12, 12]


def test_huffman_bits_matches_codes_and_quantisation():
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (5, 1, 8, 8), generator=g, dtype=torch.uint8)
    imgs[0] = imgs[0] // 64                          # a few symbols only
    imgs[1] = 3                                      # one symbol
    bits = I.huffman_bits(imgs)
    for i in range(5):
        hist = torch.bincount(imgs[i].flatten().long(), minlength=256)
        code = I.huffman_code(hist)
        assert int(bits[i]) == sum(int(hist[s]) * len(c) for s, c in code.items())
        assert int(I.huffman_bits(imgs[i:i + 1], code=code)[0]) == int(bits[i])
    assert torch.equal(I.huffman_bits(imgs.float() / 255), bits)
    with pytest.raises(ValueError, match="no word for pixel value"):
        I.huffman_bits(imgs[:1], code={0: "0", 1: "1"})


# ---------------------------------------------------------------------------------------------
# Structure-wise deletion / insertion
# ---------------------------------------------------------------------------------------------
def test_structure_bit_ratio_hand_computed():
    model = LinearTwoClass(torch.ones(4), b=0.1).eval()
    x = torch.tensor([[[[0.0, 1.0], [1.0, 0.5]]]])      # values 0, 255, 255, 128: 6 bits
    maps = torch.tensor([[[0.9, 0.2], [0.6, 0.0]]])
    y = torch.tensor([1])
    ins = I.structure_insertion(model, x, y, maps, thresholds=[0.5])
    # keep pixels 0 and 2 -> values 0, 0, 255, 0: histogram {0: 3, 255: 1} -> 4 bits.
    assert ins.extra["bits_original"].tolist() == [6]
    assert ins.extra["bits"].tolist() == [[4]]
    assert ins.extra["bit_ratio"][0, 0].item() == pytest.approx(4 / 6)
    assert ins.curves.tolist() == [[1.0]]               # logit_1 = 1 - 0.1 > 0
    dele = I.structure_deletion(model, x, y, maps, thresholds=[0.5])
    # delete pixels 0 and 2 -> values 0, 255, 0, 128: {0: 2, 128: 1, 255: 1} -> 6 bits.
    assert dele.extra["bit_ratio"][0, 0].item() == pytest.approx(1.0)
    assert ins.higher_is_better and not dele.higher_is_better


def test_structure_curves_accuracy_and_extremes(cnn, x16, maps16):
    y = torch.tensor([3, 1, 4, 1])
    thr = [0.0, 0.25, 0.5, 1.0]
    ins = I.structure_insertion(cnn, x16, y, maps16, thresholds=thr)
    dele = I.structure_deletion(cnn, x16, y, maps16, thresholds=thr)
    clean_correct = (cnn(x16).argmax(1) == y).float()
    for r in (ins, dele):
        assert r.curves.shape == (4, 4) and r.x.tolist() == thr
        assert torch.allclose(r.extra["accuracy"], r.curves.mean(0))
        assert torch.allclose(r.extra["mean_bit_ratio"], r.extra["bit_ratio"].mean(0))
        assert r.extra["accuracy_unmasked"] == pytest.approx(float(clean_correct.mean()))
        assert r.scores.shape == (4,) and isinstance(r.extra["area"], float)
    # t = 0 keeps every pixel (insertion) or deletes every pixel (deletion, a black image: 1 bit/pixel).
    assert torch.allclose(ins.extra["bit_ratio"][:, 0], torch.ones(4))
    assert torch.equal(ins.curves[:, 0], clean_correct)
    assert torch.allclose(dele.extra["bit_ratio"][:, 0], 256.0 / dele.extra["bits_original"].float())
    black_pred = cnn(torch.zeros(1, 1, 16, 16)).argmax(1)
    assert torch.equal(dele.curves[:, 0], (y == black_pred).float())


# ---------------------------------------------------------------------------------------------
# RISE and SHAPE
# ---------------------------------------------------------------------------------------------
def test_rise_masks_deterministic_and_smooth():
    m = I.rise_masks(200, (24, 24), grid=4, p_keep=0.5, seed=0)
    assert m.shape == (200, 24, 24) and float(m.min()) >= 0 and float(m.max()) <= 1
    assert abs(float(m.mean()) - 0.5) < 0.1
    assert torch.equal(m, I.rise_masks(200, (24, 24), grid=4, seed=0))
    assert not torch.equal(m, I.rise_masks(200, (24, 24), grid=4, seed=1))
    assert ((m > 0) & (m < 1)).any()                      # bilinear, not binary


@pytest.mark.parametrize("method", ["rise", "shape"])
def test_rise_and_shape_peak_in_the_region_the_model_looks_at(method):
    fn = getattr(I, method)
    x = torch.ones(2, 1, 24, 24)
    sal = fn(PatchModel().eval(), x, target=1, n_masks=300, grid=4, seed=0)
    assert sal.shape == (2, 24, 24)
    inside, outside = sal[:, :8, :8].mean(), sal[:, 14:, 14:].mean()
    assert inside > outside + 0.1
    for s in sal:
        r, c = divmod(int(s.argmax()), 24)
        assert r < 12 and c < 12
    # Batched over images and masks: the chunking does not change the result.
    again = fn(PatchModel().eval(), x, target=1, n_masks=300, grid=4, seed=0, batch_size=7)
    assert torch.allclose(sal, again, atol=1e-5)
    one = fn(PatchModel().eval(), x[:1], target=1, n_masks=300, grid=4, seed=0)
    assert torch.allclose(sal[:1], one, atol=1e-5)


def test_rise_matches_definition_with_explicit_masks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3)).eval()
    x = torch.rand(2, 1, 6, 6)
    masks = I.rise_masks(50, (6, 6), grid=3, p_keep=0.3, seed=5)
    with torch.no_grad():
        t = model(x).argmax(1)
        p = torch.stack([model(x * mk).softmax(1)[torch.arange(2), t] for mk in masks])   # (M, N)
        p0 = model(x).softmax(1)[torch.arange(2), t]
    rise_ref = torch.einsum("mn,mhw->nhw", p, masks) / (50 * 0.3)
    shape_ref = torch.einsum("mn,mhw->nhw", p0 - p, 1 - masks) / 50 / 0.7
    kw = dict(n_masks=50, grid=3, p_keep=0.3, seed=5)
    assert torch.allclose(I.rise(model, x, **kw), rise_ref, atol=1e-5)
    assert torch.allclose(I.shape(model, x, **kw), shape_ref, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------
def test_bad_inputs_give_clear_errors(cnn, x16, maps16):
    y = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="3 maps but there are 4 images"):
        I.deletion(cnn, x16, maps16[:3])
    with pytest.raises(ValueError, match="must be 16x16 like the images"):
        I.deletion(cnn, x16, maps16[:, :8, :8])
    with pytest.raises(ValueError, match="3 channels"):
        I.deletion(cnn, x16, torch.rand(4, 3, 16, 16))
    with pytest.raises(TypeError, match="torch.Tensor of shape"):
        I.deletion(cnn, x16, maps16.numpy())
    with pytest.raises(ValueError, match="steps must be >= 1"):
        I.deletion(cnn, x16, maps16, steps=0)
    with pytest.raises(ValueError, match="at most 256"):
        I.insertion(cnn, x16, maps16, steps=1000)
    with pytest.raises(ValueError, match="unknown substrate 'white'; choose one of: black, mean, blur"):
        I.deletion(cnn, x16, maps16, substrate="white")
    with pytest.raises(ValueError, match="broadcastable"):
        I.deletion(cnn, x16, maps16, substrate=torch.zeros(3, 5))
    with pytest.raises(ValueError, match="blur_sigma must lie in"):
        I.insertion(cnn, x16, maps16, substrate="blur", blur_sigma=0)
    with pytest.raises(ValueError, match=r"thresholds must lie in \[0, 1\]"):
        I.structure_deletion(cnn, x16, y, maps16, thresholds=[0.1, 1.5])
    with pytest.raises(ValueError, match=r"thresholds must lie in \[0, 1\]"):
        I.structure_insertion(cnn, x16, y, maps16, thresholds=[-0.1])
    with pytest.raises(ValueError, match="non-empty"):
        I.structure_insertion(cnn, x16, y, maps16, thresholds=[])
    with pytest.raises(ValueError, match=r"y must lie in \[0, 9\]"):
        I.structure_deletion(cnn, x16, y + 10, maps16)
    with pytest.raises(ValueError, match=r"maps must lie in \[0, 1\]"):
        I.structure_deletion(cnn, x16, y, maps16 * 2)
    with pytest.raises(ValueError, match="one label per image"):
        I.structure_insertion(cnn, x16, y[:2], maps16)
    with pytest.raises(ValueError, match=r"target must lie in \[0, 9\]"):
        I.deletion(cnn, x16, maps16, target=12)
    with pytest.raises(RuntimeError, match="model.eval()"):
        I.deletion(C3LTClassifier(input_size=16), x16, maps16)
    with pytest.raises(ValueError, match="logits shaped"):
        I.deletion(lambda im: im.flatten(1).sum(1), x16, maps16)
    with pytest.raises(ValueError, match=r"p_keep must lie in \(0.0, 1.0\)"):
        I.rise(cnn, x16, p_keep=1.0, n_masks=4)
    with pytest.raises(ValueError, match="n_masks must be >= 1"):
        I.shape(cnn, x16, n_masks=0)
    with pytest.raises(TypeError, match="seed must be an int"):
        I.rise(cnn, x16, n_masks=4, seed=0.5)
    with pytest.raises(ValueError, match="all zero"):
        I.huffman_code([0, 0, 0])
    with pytest.raises(ValueError, match="negative"):
        I.huffman_code([3, -1])
    with pytest.raises(ValueError, match="1-D"):
        I.huffman_code(torch.ones(2, 2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        I.huffman_bits(torch.full((1, 4), 2.0))
    with pytest.raises(ValueError, match="N first"):
        I.huffman_bits(torch.rand(5))


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


def test_rise_and_shape_share_forward_passes():
    torch.manual_seed(0)
    model = C3LTClassifier(num_classes=3).eval()
    x = torch.rand(3, 1, 28, 28)
    r, s = I.rise_and_shape(model, x, n_masks=40, seed=1, batch_size=16)
    torch.testing.assert_close(r, I.rise(model, x, n_masks=40, seed=1, batch_size=16))
    torch.testing.assert_close(s, I.shape(model, x, n_masks=40, seed=1, batch_size=16))
