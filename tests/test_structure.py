"""Tests of robust_utils.structure: hand-computed Huffman codes and bit ratios, structure-wise
curves and the error messages. Tiny synthetic data only."""
import math
import random

import numpy as np
import pytest
import torch

from robust_utils import structure as I
from robust_utils.metrics import score_direction

pytestmark = pytest.mark.usefixtures("one_thread")


def test_huffman_code_hand_computed():
    code = I.huffman_code([5, 2, 1, 1])
    assert {s: len(c) for s, c in code.items()} == {0: 1, 1: 2, 2: 3, 3: 3}
    assert code == I.huffman_code([5, 2, 1, 1])                     # deterministic
    assert I.huffman_code({10: 3, 20: 0, 30: 1}) == {10: "1", 30: "0"}   # the rarer symbol gets "0"
    img = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 2, 3]], dtype=torch.uint8).view(1, 3, 3)
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
def test_structure_bit_ratio_hand_computed(linear_two_class):
    model = linear_two_class(torch.ones(4), b=0.1).eval()
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


def test_structure_curves_accuracy_and_extremes(c3lt, x16, maps16):
    y = torch.tensor([3, 1, 4, 1])
    thr = [0.0, 0.25, 0.5, 1.0]
    ins = I.structure_insertion(c3lt, x16, y, maps16, thresholds=thr)
    dele = I.structure_deletion(c3lt, x16, y, maps16, thresholds=thr)
    clean_correct = (c3lt(x16).argmax(1) == y).float()
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
    black_pred = c3lt(torch.zeros(1, 1, 16, 16)).argmax(1)
    assert torch.equal(dele.curves[:, 0], (y == black_pred).float())


# ---------------------------------------------------------------------------------------------
# RISE and SHAPE
# ---------------------------------------------------------------------------------------------
def test_structure_bad_inputs_give_clear_errors(c3lt, x16, maps16):
    y = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"thresholds must lie in \[0, 1\]"):
        I.structure_deletion(c3lt, x16, y, maps16, thresholds=[0.1, 1.5])
    with pytest.raises(ValueError, match=r"thresholds must lie in \[0, 1\]"):
        I.structure_insertion(c3lt, x16, y, maps16, thresholds=[-0.1])
    with pytest.raises(ValueError, match="non-empty"):
        I.structure_insertion(c3lt, x16, y, maps16, thresholds=[])
    with pytest.raises(ValueError, match=r"y must lie in \[0, 9\]"):
        I.structure_deletion(c3lt, x16, y + 10, maps16)
    with pytest.raises(ValueError, match=r"maps must lie in \[0, 1\]"):
        I.structure_deletion(c3lt, x16, y, maps16 * 2)
    with pytest.raises(ValueError, match="one label per image"):
        I.structure_insertion(c3lt, x16, y[:2], maps16)
    with pytest.raises(ValueError, match="all zero"):
        I.huffman_code([0, 0, 0])
    with pytest.raises(ValueError, match="negative"):
        I.huffman_code([3, -1])
    with pytest.raises(ValueError, match="1-D"):
        I.huffman_code(torch.ones(2, 2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        I.huffman_bits(torch.full((1, 2, 2), 2.0))
    with pytest.raises(ValueError, match=r"\(N, H, W\) or \(N, C, H, W\)"):
        I.huffman_bits(torch.rand(5))



def test_huffman_bits_never_reads_one_image_as_many():
    img = torch.rand(6, 7)                               # one (H, W) image
    with pytest.raises(ValueError, match=r"unsqueeze\(0\).*not read as H images"):
        I.huffman_bits(img)
    one = I.huffman_bits(img.unsqueeze(0))
    assert one.shape == (1,)
    torch.testing.assert_close(one, I.huffman_bits(img[None, None]))   # (N, H, W) == (N, 1, H, W)
    with pytest.raises(ValueError, match="non-empty"):
        I.huffman_bits(torch.rand(0, 4, 4))
    with pytest.raises(ValueError, match="NaN"):
        I.huffman_bits(torch.full((1, 2, 2), float("nan")))
    # numpy integers are accepted as symbols and counts
    assert I.huffman_code({np.int64(3): np.int64(2), 4: 1}) == I.huffman_code({3: 2, 4: 1})


def test_structure_scores_declare_their_direction(c3lt, x16, maps16):
    y = torch.zeros(4, dtype=torch.long)
    assert score_direction(I.structure_insertion) == "better"
    assert score_direction(I.structure_deletion) == "worse"
    assert score_direction(I.structure_deletion(c3lt, x16, y, maps16, thresholds=[0.5])) == "worse"


def test_structure_batched_equals_per_image_loop(c3lt, x16, maps16):
    y = torch.tensor([0, 1, 2, 3])
    s_full = I.structure_deletion(c3lt, x16, y, maps16, batch_size=7)
    s_loop = [I.structure_deletion(c3lt, x16[i:i + 1], y[i:i + 1], maps16[i:i + 1]) for i in range(4)]
    assert torch.equal(s_full.curves, torch.cat([r.curves for r in s_loop]))
    assert torch.allclose(s_full.extra["bit_ratio"], torch.cat([r.extra["bit_ratio"] for r in s_loop]))


def test_huffman_bits_refuses_codes_that_cannot_be_decoded():
    x = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])       # values 0 and 255, twice each
    with pytest.raises(ValueError, match="same code word '0'"):
        I.huffman_bits(x, {0: "0", 255: "0"})
    with pytest.raises(ValueError, match="not prefix-free: the word '0' of symbol 0"):
        I.huffman_bits(x, {0: "0", 255: "01"})
    with pytest.raises(ValueError, match="appears twice"):
        I.huffman_bits(x, {0: "0", torch.tensor(0): "10", 255: "11"})
    # NumPy integer symbols are symbols
    assert I.huffman_bits(x, {np.int64(0): "0", np.uint8(255): "10"}).tolist() == [6]
    assert I.huffman_bits(x, {0: "0", 255: "1"}).tolist() == [4]


def test_structure_labels_of_any_integer_dtype_and_progress_flag(c3lt, x16, maps16):
    y = c3lt(x16).argmax(1)
    ref = I.structure_deletion(c3lt, x16, y, maps16, thresholds=[0.5])
    out = I.structure_deletion(c3lt, x16, y.to(torch.uint8), maps16, thresholds=[0.5])
    torch.testing.assert_close(out.scores, ref.scores)
    with pytest.raises(TypeError, match="progress must be True or False"):
        I.structure_insertion(c3lt, x16, y, maps16, progress="no")
