"""Tests of robust_utils.novel: the OOD sources, new-class sets and the novel-data suite."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from robust_utils import novel as D
from robust_utils.corruptions import corruption_names

# --------------------------------------------------------------------------- OOD sources

@pytest.mark.parametrize("source", [D.load_digits_ood, D.natural_image_patches, D.uniform_noise])
def test_ood_sources(source):
    a = source(12, seed=1)
    assert a.shape == (12, 1, 28, 28) and a.dtype == torch.float32
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.equal(a, source(12, seed=1))
    assert not torch.equal(a, source(12, seed=2))
    assert float(a.std(dim=(1, 2, 3)).min()) > 0.02   # not flat images
    rgb = source(2, seed=0, size=32, channels=3)
    assert rgb.shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="n must be >= 1"):
        source(0)


def test_digits_look_like_digits():
    d = D.load_digits_ood()
    assert d.shape == (1797, 1, 28, 28)
    assert float(d[:, :, :4].abs().max()) == 0.0      # black frame as in MNIST
    assert 0.05 < float(d.mean()) < 0.4 and float(d.amax(dim=(1, 2, 3)).min()) > 0.5
    assert D.load_digits_ood(2000, seed=0).shape == (2000, 1, 28, 28)  # with replacement


# --------------------------------------------------------------------------- suite

@pytest.fixture(scope="module")
def small_test_set():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 28, 28, generator=g) * 0.5
    x[:, :, 8:20, 8:20] += 0.5
    return x, torch.arange(6) % 10


def test_novel_data_suite_contents(small_test_set):
    x, y = small_test_set
    suite = D.novel_data_suite(x, y, n=4, ood_n=3, seed=0)
    names = [s.name for s in suite]
    assert len(suite) == 1 + len(corruption_names()) * 5 + 3
    assert len(set(names)) == len(names)
    assert names[0] == "clean" and names[-3:] == ["ood-digits", "ood-patches", "ood-uniform"]
    assert "gaussian_noise-1" in names and "elastic-5" in names
    for s in suite:
        assert s.kind in ("clean", "corruption", "ood")
        if s.kind == "ood":
            assert s.y is None and s.level is None and s.x.shape == (3, 1, 28, 28)
        else:
            assert torch.equal(s.y, y[:4]) and s.x.shape == (4, 1, 28, 28)
        assert (s.level is not None) == (s.kind == "corruption") and s.description
    assert "n=4" in repr(suite[0]) and len(suite[0]) == 4
    challenges = {s.challenge for s in suite if s.kind == "corruption"}
    assert challenges == set(corruption_names())
    assert suite[0].challenge == "clean" and suite[-1].challenge == "ood-uniform"


def test_novel_data_suite_deterministic(small_test_set):
    x, y = small_test_set
    a = D.novel_data_suite(x, y, corruptions=["gaussian_noise", "elastic"], levels=(2, 5), seed=3)
    b = D.novel_data_suite(x, y, corruptions=["gaussian_noise", "elastic"], levels=(2, 5), seed=3)
    c = D.novel_data_suite(x, y, corruptions=["gaussian_noise", "elastic"], levels=(2, 5), seed=4)
    assert len(a) == 1 + 2 * 2 + 3
    assert all(torch.equal(s.x, t.x) for s, t in zip(a, b))
    assert not torch.equal(a[1].x, c[1].x)
    no_ood = D.novel_data_suite(x, y, corruptions=["contrast"], levels=(1,), include_ood=False)
    assert [s.name for s in no_ood] == ["clean", "contrast-1"]


def test_novel_data_suite_bad_inputs(small_test_set):
    x, y = small_test_set
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        D.novel_data_suite(x, y, corruptions=["fog"])
    with pytest.raises(ValueError, match="levels must be integers in 1..5"):
        D.novel_data_suite(x, y, levels=(0, 1))
    with pytest.raises(ValueError, match="6 entries but there are 5 images"):
        D.novel_data_suite(x[:5], y)


def test_new_class_set(small_test_set):
    x, y = small_test_set
    s = D.new_class_set(x, y, [5, 3])
    assert s.kind == "new_class" and s.name == "new_class-Sandal+Dress"
    assert sorted(s.y.tolist()) == [3, 5]                # original labels
    s2 = D.new_class_set(x, y, [5, 3], names=["five", "three"], n=1)
    assert s2.name == "new_class-five+three" and len(s2) == 1
    with pytest.raises(ValueError, match="one entry per held-out class"):
        D.new_class_set(x, y, [5, 3], names=["a", "b", "c"])
    with pytest.raises(ValueError, match="unknown NovelSet kind"):
        D.NovelSet("x", "weird", None, x, y, "")


def test_seeds_use_the_shared_check():
    with pytest.raises(ValueError, match="seed"):
        D.uniform_noise(2, seed=-1)
    with pytest.raises(TypeError, match="seed"):
        D.uniform_noise(2, seed=1.0)
    assert torch.equal(D.uniform_noise(2, seed=np.int64(4)), D.uniform_noise(2, seed=4))
    assert D.new_class_set(torch.rand(4, 1, 28, 28), torch.tensor([1, 2, 1, 3]),
                           np.array([1, 3])).name == "new_class-Trouser+Dress"
