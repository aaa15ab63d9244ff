"""Tests of robust_utils.attacks: agreement with torchattacks, budgets, effect, determinism, errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from robust_utils.attacks import fgsm, pgd, robust_accuracy

def _data(n: int = 64, seed: int = 0):
    """Two classes of 1x8x8 images: bright left half (0) or bright right half (1), plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = 0.3 + 0.1 * torch.rand(n, 1, 8, 8, generator=g)
    x[y == 0, :, :, :4] += 0.3
    x[y == 1, :, :, 4:] += 0.3
    return x.clamp(0, 1), y


def _tiny_model(train: bool = True) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 8 * 8, 2))
    if train:
        x, y = _data(128, seed=1)
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        for _ in range(30):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        opt.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture(scope="module")
def model():
    return _tiny_model()


def test_tiny_model_is_accurate(model):
    x, y = _data()
    assert robust_accuracy(model, x, y) == 1.0


@pytest.mark.requires("torchattacks")
def test_fgsm_equals_torchattacks(model):
    import torchattacks

    x, y = _data()
    for eps in (0.01, 0.05, 0.2):
        ours = fgsm(model, x, y, eps)
        ref = torchattacks.FGSM(model, eps=eps)(x, y)
        assert torch.equal(ours, ref)


def test_fgsm_does_not_depend_on_batch_size(model):
    x, y = _data()
    assert torch.equal(fgsm(model, x, y, 0.1, batch_size=7), fgsm(model, x, y, 0.1))


@pytest.mark.parametrize("attack", [fgsm, pgd])
def test_eps_in_pixel_units_of_unit_images(model, attack):
    """eps = 8 (meant as 8/255) used to be accepted and gave images at the corners of [0, 1]."""
    x, y = _data(4)
    with pytest.raises(ValueError, match=r"eps must be <= 1, got 8\. eps is in pixel units of \[0, 1\] "
                                         r"images: 8/255 ≈ 0\.031, not 8"):
        attack(model, x, y, 8)
    with pytest.raises(ValueError, match=r"eps must be > 0, got 0\..*clean image x itself"):
        attack(model, x, y, 0.0)
    with pytest.raises(ValueError, match="eps must be a finite number"):
        attack(model, x, y, float("inf"))
    out = attack(model, x, y, 1.0)                      # the largest budget is allowed
    assert out.shape == x.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    if attack is pgd:
        with pytest.raises(ValueError, match=r"alpha must be <= 1, got 2\. alpha is in pixel units"):
            pgd(model, x, y, 8 / 255, alpha=2)
        with pytest.raises(ValueError, match="alpha must be > 0"):
            pgd(model, x, y, 8 / 255, alpha=0)


def test_numpy_seed_and_float64_images(model):
    x, y = _data(4)
    np = pytest.importorskip("numpy")
    assert torch.equal(pgd(model, x, y, 0.1, seed=np.int64(3), steps=2), pgd(model, x, y, 0.1, seed=3, steps=2))
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        pgd(model, x, y, 0.1, seed=-1)
    with pytest.raises(TypeError, match=r"x has dtype torch.float64 .* x\.float\(\)"):
        fgsm(model, x.double(), y, 0.1)
    with pytest.raises(TypeError, match=r"torch.stack\(x\)"):
        fgsm(model, list(x), y, 0.1)


def test_dropout_left_in_training_mode_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Dropout(0.5), nn.Flatten(), nn.Linear(128, 2)).eval()
    model[1].train()
    x, y = _data(4)
    with pytest.raises(RuntimeError, match=r"submodules are in training mode \(1\).*model\.eval\(\)"):
        pgd(model, x, y, 0.1)


@pytest.mark.requires("torchattacks")
def test_pgd_without_random_start_equals_torchattacks(model):
    import torchattacks

    x, y = _data()
    for eps, alpha, steps in ((0.05, 0.01, 10), (0.2, 0.05, 5)):
        ours = pgd(model, x, y, eps, alpha=alpha, steps=steps, random_start=False, batch_size=16)
        ref = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)(x, y)
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("random_start", [True, False])
def test_pgd_stays_in_budget_and_range(model, random_start):
    x, y = _data()
    x[0] = 0.0
    x[1] = 1.0                      # pixels at the border of [0, 1]
    eps = 0.1
    adv = pgd(model, x, y, eps, steps=5, random_start=random_start)
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert float((adv - x).abs().max()) <= eps + 1e-6
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    f = fgsm(model, x, y, eps)
    assert float((f - x).abs().max()) <= eps + 1e-6
    assert float(f.min()) >= 0.0 and float(f.max()) <= 1.0


def test_pgd_default_alpha(model):
    x, y = _data(16)
    a = pgd(model, x, y, 0.1, steps=4, random_start=False)
    b = pgd(model, x, y, 0.1, alpha=2.5 * 0.1 / 4, steps=4, random_start=False)
    assert torch.equal(a, b)


def test_pgd_beats_random_noise_of_same_budget(model):
    x, y = _data(128, seed=2)
    eps = 0.15
    noise = (torch.rand(x.shape, generator=torch.Generator().manual_seed(3)) * 2 - 1) * eps
    acc_clean = robust_accuracy(model, x, y)
    acc_noise = robust_accuracy(model, (x + noise).clamp(0, 1), y)
    acc_fgsm = robust_accuracy(model, fgsm(model, x, y, eps), y)
    acc_pgd = robust_accuracy(model, pgd(model, x, y, eps, steps=10), y)
    assert acc_clean == 1.0 and acc_noise > 0.9
    assert acc_pgd < acc_noise - 0.5
    assert acc_pgd <= acc_fgsm


def test_pgd_is_deterministic_given_seed(model):
    x, y = _data()
    state = torch.random.get_rng_state()
    a = pgd(model, x, y, 0.1, alpha=0.01, steps=3, seed=5, batch_size=10)
    b = pgd(model, x, y, 0.1, alpha=0.01, steps=3, seed=5)
    c = pgd(model, x, y, 0.1, alpha=0.01, steps=3, seed=6)
    assert torch.equal(torch.random.get_rng_state(), state)      # global RNG untouched
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_parameters_are_left_alone(model):
    x, y = _data(8)
    model[0].weight.requires_grad_(False)
    model[3].bias.grad = torch.full_like(model[3].bias, 7.0)
    try:
        pgd(model, x, y, 0.1, steps=2)
        fgsm(model, x, y, 0.1)
        assert not model[0].weight.requires_grad and model[3].weight.requires_grad
        assert model[0].weight.grad is None and model[3].weight.grad is None
        assert torch.equal(model[3].bias.grad, torch.full_like(model[3].bias, 7.0))
    finally:
        model[0].weight.requires_grad_(True)
        model[3].bias.grad = None


def test_robust_accuracy_known_value(model):
    x, y = _data(10)
    y_wrong = y.clone()
    y_wrong[:3] = 1 - y_wrong[:3]
    assert robust_accuracy(model, x, y_wrong, batch_size=4) == pytest.approx(0.7)


def test_training_mode_is_refused():
    m = _tiny_model(train=False).train()
    x, y = _data(4)
    for call in (lambda: fgsm(m, x, y, 0.1), lambda: pgd(m, x, y, 0.1),
                 lambda: robust_accuracy(m, x, y)):
        with pytest.raises(RuntimeError, match="model.eval"):
            call()
    m.eval()
    m[1].train()
    with pytest.raises(RuntimeError, match="submodules are in training mode"):
        fgsm(m, x, y, 0.1)


def test_bad_inputs(model):
    x, y = _data(4)
    with pytest.raises(ValueError, match=r"must lie in \[0.0, 1.0\]"):
        fgsm(model, x * 3, y, 0.1)
    with pytest.raises(ValueError, match="unsqueeze"):
        pgd(model, x[0], y, 0.1)
    with pytest.raises(ValueError, match="one label per image"):
        fgsm(model, x, y[:3], 0.1)
    with pytest.raises(TypeError, match="integer"):
        fgsm(model, x, y.float(), 0.1)
    with pytest.raises(ValueError, match=r"y must lie in \[0, 1\]"):
        fgsm(model, x, y + 2, 0.1)
    with pytest.raises(ValueError, match=">= 0"):
        pgd(model, x, -y - 1, 0.1)
    with pytest.raises(ValueError, match="eps must be > 0"):
        fgsm(model, x, y, -0.1)
    with pytest.raises(ValueError, match="eps must be a finite number"):
        pgd(model, x, y, float("nan"))
    with pytest.raises(TypeError, match="eps must be a number"):
        pgd(model, x, y, "big")
    with pytest.raises(ValueError, match="alpha must be > 0"):
        pgd(model, x, y, 0.1, alpha=-1.0)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        pgd(model, x, y, 0.1, steps=0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        robust_accuracy(model, x, y, batch_size=0)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        fgsm(lambda t: t, x, y, 0.1)
    with pytest.raises(TypeError, match="seed must be a non-negative integer"):
        pgd(model, x, y, 0.1, seed=1.5)


def test_integer_label_dtypes_and_numpy_bools(model):
    import numpy as np
    x, y = _data(8)
    ref_f, ref_p = fgsm(model, x, y, 0.03), pgd(model, x, y, 0.03, steps=2)
    for dt in (torch.int32, torch.uint8, torch.int16):
        torch.testing.assert_close(fgsm(model, x, y.to(dt), 0.03), ref_f)
        torch.testing.assert_close(pgd(model, x, y.to(dt), 0.03, steps=2), ref_p)
        assert robust_accuracy(model, x, y.to(dt)) == robust_accuracy(model, x, y)
    torch.testing.assert_close(pgd(model, x, y, 0.03, steps=2, random_start=np.bool_(True)), ref_p)
    for bad in ("no", 1, None):
        with pytest.raises(TypeError, match="random_start must be True or False"):
            pgd(model, x, y, 0.03, random_start=bad)
    with pytest.raises(TypeError, match="progress must be True or False"):
        pgd(model, x, y, 0.03, progress="yes")
