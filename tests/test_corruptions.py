"""Tests of robust_utils.corruptions: shapes, ranges, determinism, severity, known answers."""
from __future__ import annotations

import math

import pytest
import torch

from robust_utils import corruptions as C
from robust_utils.corruptions import CORRUPTIONS, SEVERITY, corrupt, corruption_names

ALL = corruption_names()


def _shapes_batch(n: int = 6, size: int = 28, channels: int = 1) -> torch.Tensor:
    """Fashion-MNIST-like synthetic images: bright objects with edges on a dark background."""
    g = torch.Generator().manual_seed(123)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    imgs = []
    for i in range(n):
        cy, cx = torch.randint(9, size - 9, (2,), generator=g).tolist()
        ry, rx = torch.randint(4, 8, (2,), generator=g).tolist()
        ell = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).float()
        rect = ((yy - cy).abs() <= ry // 2) & ((xx - (size - 1 - cx)).abs() <= rx)
        texture = 0.5 + 0.3 * torch.sin(xx * 0.9 + i) * torch.cos(yy * 0.7)
        img = (0.8 * ell * texture + 0.6 * rect.float()).clamp(0, 1)
        imgs.append(img)
    x = torch.stack(imgs)[:, None]
    return x.expand(-1, channels, -1, -1).contiguous()


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return _shapes_batch()


def test_table_is_complete_and_monotone():
    assert len(ALL) >= 12
    assert set(SEVERITY) == set(ALL) == set(CORRUPTIONS) == set(C.SEVERITY_PARAMS)
    increasing = {"gaussian_noise", "impulse_noise", "speckle_noise", "gaussian_blur", "defocus_blur",
                  "motion_blur", "brightness", "elastic"}
    for name, values in SEVERITY.items():
        assert len(values) == 5, name
        diffs = [b - a for a, b in zip(values, values[1:])]
        if name in increasing:
            assert all(d > 0 for d in diffs), name
        else:  # shot (photons), contrast, darken, jpeg quality, pixelate scale: smaller = stronger
            assert all(d < 0 for d in diffs), name
    rows = C.severity_table()
    assert [r["corruption"] for r in rows] == ALL
    assert rows[0]["level 1"] == SEVERITY[ALL[0]][0] and "meaning" in rows[0]


@pytest.mark.parametrize("name", ALL)
def test_shape_dtype_range_and_determinism(name, batch):
    out = corrupt(batch, name, 3, seed=7)
    assert out.shape == batch.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(out, corrupt(batch, name, 3, seed=7))
    assert not torch.equal(out, batch)
    # the input is not modified in place
    assert torch.equal(batch, _shapes_batch())
    if name in C.RANDOM_CORRUPTIONS:
        assert not torch.equal(out, corrupt(batch, name, 3, seed=8))
    else:
        assert torch.equal(out, corrupt(batch, name, 3, seed=8))


@pytest.mark.parametrize("name", ALL)
def test_severity_increases_change(name, batch):
    change = [float((corrupt(batch, name, lv, seed=0) - batch).abs().mean()) for lv in C.LEVELS]
    assert all(b > a for a, b in zip(change, change[1:])), (name, change)


@pytest.mark.parametrize("name", ALL)
def test_single_image_and_rgb(name):
    one = _shapes_batch(1)
    assert corrupt(one, name, 5).shape == (1, 1, 28, 28)
    rgb = _shapes_batch(2, size=32, channels=3)
    out = corrupt(rgb, name, 2)
    assert out.shape == rgb.shape and 0 <= float(out.min()) and float(out.max()) <= 1


def test_public_functions_match_corrupt(batch):
    for name, fn in CORRUPTIONS.items():
        assert fn.__name__ == name and "Taught in Part 1" in fn.__doc__
        assert torch.equal(fn(batch, 2, seed=3), corrupt(batch, name, 2, seed=3))
    assert torch.equal(C.gaussian_noise(batch, level=4), corrupt(batch, "gaussian_noise", 4))


def test_global_rng_untouched(batch):
    torch.manual_seed(0)
    a = torch.rand(3)
    torch.manual_seed(0)
    corrupt(batch, "gaussian_noise", 3, seed=1)
    corrupt(batch, "elastic", 3, seed=1)
    assert torch.equal(torch.rand(3), a)


@pytest.mark.parametrize("level", [0, 6, -1])
def test_bad_level_value(level, batch):
    with pytest.raises(ValueError, match=r"level must be a severity in 1\.\.5"):
        corrupt(batch, "contrast", level)


@pytest.mark.parametrize("level", ["x", 2.5, True, None])
def test_bad_level_type(level, batch):
    with pytest.raises(TypeError, match=r"level must be an integer severity in 1\.\.5"):
        corrupt(batch, "contrast", level)


def test_unknown_name_lists_valid_names(batch):
    with pytest.raises(ValueError, match=r"unknown corruption 'fog'.*gaussian_noise.*elastic"):
        corrupt(batch, "fog", 1)


def test_bad_images_rejected():
    with pytest.raises(ValueError, match=r"must lie in \[0.0, 1.0\]"):
        corrupt(torch.full((1, 1, 8, 8), 2.0), "contrast", 1)
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        corrupt(torch.rand(1, 28, 28), "contrast", 1)
    with pytest.raises(TypeError, match="floating-point"):
        corrupt(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), "contrast", 1)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        corrupt(torch.rand(1, 1, 8, 8), "gaussian_noise", 1, seed=-1)


# --------------------------------------------------------------------------- known answers

def test_contrast_is_mean_preserving_scaling(batch):
    for lv in C.LEVELS:
        c = SEVERITY["contrast"][lv - 1]
        m = batch.mean(dim=(1, 2, 3), keepdim=True)
        torch.testing.assert_close(corrupt(batch, "contrast", lv), (batch - m) * c + m)


def test_brightness_and_darken_known_answers():
    x = torch.full((2, 1, 6, 6), 0.3)
    x[1] = 0.8
    b = SEVERITY["brightness"][1]
    torch.testing.assert_close(corrupt(x, "brightness", 2), (x + b).clamp(0, 1))
    assert float(corrupt(x, "brightness", 5)[1].min()) == 1.0  # clamped
    g = SEVERITY["darken"][2]
    torch.testing.assert_close(corrupt(x, "darken", 3), x * g)


@pytest.mark.parametrize("name", ["gaussian_blur", "defocus_blur", "motion_blur", "pixelate",
                                  "elastic", "contrast"])
def test_constant_image_is_fixed_point(name):
    x = torch.full((3, 1, 28, 28), 0.42)
    torch.testing.assert_close(corrupt(x, name, 5, seed=2), x, atol=1e-5, rtol=0)


def test_blur_kernels_are_normalised():
    k = C._gaussian_kernel1d(1.3, "cpu", torch.float32)
    assert math.isclose(float(k.sum()), 1.0, rel_tol=1e-6) and len(k) % 2 == 1
    d = C._disk_kernel(2.0, "cpu", torch.float32)
    assert math.isclose(float(d.sum()), 1.0, rel_tol=1e-6)
    assert torch.allclose(d, d.flip(0)) and torch.allclose(d, d.T) and float(d[0, 0]) == 0.0


def test_gaussian_blur_of_impulse_matches_gaussian():
    x = torch.zeros(1, 1, 15, 15)
    x[0, 0, 7, 7] = 1.0
    out = corrupt(x, "gaussian_blur", 3)  # sigma 1.0
    k = C._gaussian_kernel1d(SEVERITY["gaussian_blur"][2], "cpu", torch.float32)
    r = (len(k) - 1) // 2
    expected = torch.outer(k, k)
    torch.testing.assert_close(out[0, 0, 7 - r:8 + r, 7 - r:8 + r], expected)
    assert math.isclose(float(out.sum()), 1.0, rel_tol=1e-5)


def test_noise_statistics():
    x = torch.full((8, 1, 28, 28), 0.5)
    sigma = SEVERITY["gaussian_noise"][0]
    d = corrupt(x, "gaussian_noise", 1) - x
    assert abs(float(d.mean())) < 0.01 and abs(float(d.std()) - sigma) < 0.01
    lam = SEVERITY["shot_noise"][0]
    s = corrupt(x, "shot_noise", 1)
    assert abs(float(s.mean()) - 0.5) < 0.01
    assert abs(float(s.var()) - 0.5 / lam) < 0.2 * 0.5 / lam   # Poisson: Var = x / lambda
    amount = SEVERITY["impulse_noise"][3]
    imp = corrupt(x, "impulse_noise", 4)
    frac = float((imp != 0.5).float().mean())
    assert abs(frac - amount) < 0.02
    assert set(torch.unique(imp).tolist()) == {0.0, 0.5, 1.0}
    assert torch.equal(corrupt(torch.zeros_like(x), "speckle_noise", 5), torch.zeros_like(x))


def test_impulse_noise_levels_are_nested():
    x = torch.full((2, 1, 28, 28), 0.5)
    low, high = corrupt(x, "impulse_noise", 1), corrupt(x, "impulse_noise", 5)
    hit_low = low != 0.5
    assert torch.equal(high[hit_low], low[hit_low])


def test_jpeg_is_a_real_codec():
    x = _shapes_batch(2)
    q1, q5 = corrupt(x, "jpeg", 1), corrupt(x, "jpeg", 5)
    assert (q1 * 255 - (q1 * 255).round()).abs().max() < 1e-3   # decoded uint8 values
    assert float((q5 - x).abs().mean()) > float((q1 - x).abs().mean())


def test_pixelate_is_blocky():
    x = _shapes_batch(2)
    out = corrupt(x, "pixelate", 5)  # 28 -> 7 px: 4x4 blocks
    blocks = out.unfold(2, 4, 4).unfold(3, 4, 4)
    assert torch.allclose(blocks, blocks[..., :1, :1].expand_as(blocks))


def test_motion_blur_angle_differs_per_image():
    x = _shapes_batch(1).expand(4, -1, -1, -1).contiguous()
    out = corrupt(x, "motion_blur", 5, seed=0)
    assert not torch.allclose(out[0], out[1])  # same image, different seeded angles
