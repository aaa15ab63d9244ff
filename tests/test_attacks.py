"""Tests of robust_utils.attacks: agreement with torchattacks, budgets, effect, determinism, errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from robust_utils.attacks import fgsm, pgd, robust_accuracy

pytestmark = pytest.mark.usefixtures("one_thread")

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


# ---------------------------------------------------------------------------------------------
# Part 5: both norms, a given start, targets, restarts, per-image results
# ---------------------------------------------------------------------------------------------
from robust_utils.attacks import _random_start, robust_correct  # noqa: E402


def _torchattacks_linf_start(x, eps, seed):
    """The random start torchattacks.PGD draws after torch.manual_seed(seed)."""
    torch.manual_seed(seed)
    return torch.clamp(x + torch.empty_like(x).uniform_(-eps, eps), min=0, max=1)


def _torchattacks_l2_start(x, eps, seed):
    """The random start torchattacks.PGDL2 draws after torch.manual_seed(seed)."""
    torch.manual_seed(seed)
    delta = torch.empty_like(x).normal_()
    n = delta.view(x.size(0), -1).norm(p=2, dim=1).view(x.size(0), 1, 1, 1)
    r = torch.zeros_like(n).uniform_(0, 1)
    return torch.clamp(x + delta * r / n * eps, min=0, max=1)


@pytest.mark.requires("torchattacks")
def test_pgd_with_start_equals_torchattacks_exactly(model):
    import torchattacks

    x, y = _data()
    state = torch.random.get_rng_state()
    try:
        for eps, alpha, steps, seed in ((0.05, 0.01, 10, 0), (0.2, 0.05, 5, 7), (0.1, 0.01, 3, 1)):
            start = _torchattacks_linf_start(x, eps, seed)
            torch.manual_seed(seed)
            ref = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y)
            ours = pgd(model, x, y, eps, alpha=alpha, steps=steps, start=start, batch_size=16)
            assert torch.equal(ours, ref)
        # 3 steps of 0.01 cannot cross a ball of radius 0.1: the start shows in the result
        assert not torch.equal(ours, pgd(model, x, y, eps, alpha=alpha, steps=steps, random_start=False))
    finally:
        torch.random.set_rng_state(state)


@pytest.mark.requires("torchattacks")
def test_targeted_pgd_equals_torchattacks_exactly(model):
    import torchattacks

    x, y = _data()
    target = 1 - y
    atk = torchattacks.PGD(model, eps=0.1, alpha=0.02, steps=6, random_start=False)
    atk.set_mode_targeted_by_label(quiet=True)
    ours = pgd(model, x, target, 0.1, alpha=0.02, steps=6, random_start=False, targeted=True)
    assert torch.equal(ours, atk(x, target))


@pytest.mark.requires("torchattacks")
def test_pgd_l2_with_start_equals_torchattacks():
    """torchattacks divides by ||g||_2 + 1e-10, with g the gradient of the *mean* loss: on a
    confident model (gradients of 1e-12) the 1e-10 dominates, so the comparison uses an untrained
    model, whose gradients are large enough for the 1e-10 to vanish below float32 rounding."""
    import torchattacks

    m = _tiny_model(train=False)
    x, y = _data()
    state = torch.random.get_rng_state()
    try:
        for eps, alpha, steps, seed in ((0.5, 0.1, 10, 0), (2.0, 0.5, 5, 3)):
            start = _torchattacks_l2_start(x, eps, seed)
            torch.manual_seed(seed)
            ref = torchattacks.PGDL2(m, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y)
            ours = pgd(m, x, y, eps, alpha=alpha, steps=steps, start=start, norm="l2", batch_size=16)
            torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    finally:
        torch.random.set_rng_state(state)


def test_pgd_is_backward_compatible(model):
    """The Part 3 algorithm, written out: restarts=1, L-inf, uniform start from a seeded generator."""
    x, y = _data(16)
    eps, alpha, steps = 0.1, 0.02, 4
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(3)) * (2 * eps) - eps
    adv = torch.clamp(x + noise, 0, 1)
    for _ in range(steps):
        a = adv.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(nn.functional.cross_entropy(model(a), y, reduction="sum"), a)
        adv = torch.clamp(x + torch.clamp(adv + alpha * g.sign() - x, -eps, eps), 0, 1)
    ours = pgd(model, x, y, eps, alpha=alpha, steps=steps, seed=3)
    assert torch.equal(ours, adv)
    assert torch.equal(ours, pgd(model, x, y, eps, alpha=alpha, steps=steps, seed=3, norm="linf", restarts=1,
                                 targeted=False, start=None))


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 0.8), ("l2", 3.0)])
@pytest.mark.parametrize("restarts", [1, 3])
def test_projection_invariants(model, norm, eps, restarts):
    x, y = _data(32)
    x[0], x[1] = 0.0, 1.0                       # pixels at the border of [0, 1]
    adv = pgd(model, x, y, eps, steps=5, norm=norm, restarts=restarts, batch_size=10)
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    delta = (adv - x).flatten(1)
    if norm == "linf":
        assert float(delta.abs().max()) <= eps + 1e-6
    else:
        assert float(delta.norm(dim=1).max()) <= eps + 1e-6
    assert float(delta.norm(dim=1).max()) > 0


def test_l2_random_start_is_uniform_in_the_ball():
    """Radius eps * U^(1/d): (r / eps)^d is uniform on [0, 1] (mean 1/2; torchattacks' eps * U gives
    a mean of 1/(d+1) = 0.2 for d = 4 pixels); the direction is isotropic."""
    x = torch.full((4000, 1, 2, 2), 0.5)
    eps = 0.3
    delta = _random_start(x, eps, "l2", seed=0, dev=torch.device("cpu"))
    r = delta.flatten(1).norm(dim=1)
    assert float(r.max()) <= eps * (1 + 1e-6)
    u = (r / eps) ** 4
    assert abs(float(u.mean()) - 0.5) < 0.02 and abs(float(u.var()) - 1 / 12) < 0.01
    assert float(delta.mean(0).abs().max()) < 0.01
    assert torch.equal(delta, _random_start(x, eps, "l2", seed=0, dev=torch.device("cpu")))


def test_default_alpha_for_l2(model):
    x, y = _data(8)
    assert torch.equal(pgd(model, x, y, 1.5, steps=4, norm="l2", random_start=False),
                       pgd(model, x, y, 1.5, alpha=2.5 * 1.5 / 4, steps=4, norm="l2", random_start=False))


class _Linear3(nn.Module):
    """Three classes, logits W x with fixed W (1x4x4 images)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 16, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        return x.flatten(1) @ self.w.t()


def test_targeted_pgd_reaches_the_target_on_a_linear_model():
    m = _Linear3().eval()
    x = 0.4 + 0.2 * torch.rand(24, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = m(x)
    y = logits.argmax(1)
    target = logits.argmin(1)                   # the least likely class
    adv = pgd(m, x, target, 0.3, steps=20, targeted=True)
    with torch.no_grad():
        assert torch.equal(m(adv).argmax(1), target)
    assert float((adv - x).abs().max()) <= 0.3 + 1e-6
    adv2 = pgd(m, x, target, 0.3, steps=20, targeted=True, norm="l2", random_start=False)
    with torch.no_grad():
        ce = nn.functional.cross_entropy
        assert float(ce(m(adv2), target)) < float(ce(m(x), target))
    untargeted = pgd(m, x, y, 0.3, steps=20)
    assert not torch.equal(m(untargeted).argmax(1), y)


def test_restarts_pick_the_first_success_and_never_lose(model):
    x, y = _data(64, seed=5)
    eps, alpha, steps = 0.2, 0.05, 3             # short enough for the start to matter
    runs = [pgd(model, x, y, eps, alpha=alpha, steps=steps, seed=11 + r) for r in range(3)]
    fooled = [~robust_correct(model, a, y) for a in runs]
    assert 0 < int(fooled[0].sum()) < 64      # some, not all: restarts have something to do
    expected = runs[2].clone()
    for r in (1, 0):                            # the first restart that fools wins
        expected[fooled[r]] = runs[r][fooled[r]]
    multi = pgd(model, x, y, eps, alpha=alpha, steps=steps, seed=11, restarts=3, batch_size=9)
    assert torch.equal(multi, expected)
    ok_multi = ~robust_correct(model, multi, y)
    assert bool((ok_multi | ~fooled[0]).all())  # every image fooled by one restart is fooled by three
    assert int(ok_multi.sum()) > int(fooled[0].sum())
    assert torch.equal(multi[fooled[0]], runs[0][fooled[0]])


def test_restarts_only_attack_images_not_yet_fooled(model):
    x, y = _data(64, seed=5)
    eps, alpha, steps = 0.2, 0.05, 3
    fooled = int((~robust_correct(model, pgd(model, x, y, eps, alpha=alpha, steps=steps, seed=11), y)).sum())
    assert 0 < fooled < 64
    seen = []
    handle = model.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[0]))
    try:
        pgd(model, x, y, eps, alpha=alpha, steps=steps, seed=11, restarts=2)
    finally:
        handle.remove()
    # restart 0: 64 images x 3 steps + 64 for the "fooled?" check; restart 1: the rest x 3 steps
    assert sum(seen) == 64 * steps + 64 + (64 - fooled) * steps


def test_robust_correct_and_directions(model):
    from robust_utils.metrics import score_direction

    x, y = _data(10)
    y_wrong = y.clone()
    y_wrong[[1, 4, 5]] = 1 - y_wrong[[1, 4, 5]]
    c = robust_correct(model, x, y_wrong, batch_size=3)
    assert c.dtype == torch.bool and c.shape == (10,)
    assert c.tolist() == [i not in (1, 4, 5) for i in range(10)]
    assert robust_accuracy(model, x, y_wrong) == pytest.approx(0.7) == float(c.float().mean())
    assert score_direction(robust_correct) == "better" == score_direction(robust_accuracy)
    with pytest.raises(RuntimeError, match="model.eval"):
        robust_correct(_tiny_model(train=False).train(), x, y)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        robust_correct(model, x, y, batch_size=0)


def test_bad_inputs_of_the_part5_options(model):
    x, y = _data(4)
    with pytest.raises(ValueError, match=r"unknown norm 'l1'; choose one of: linf, l2"):
        pgd(model, x, y, 0.1, norm="l1")
    with pytest.raises(ValueError, match=r"eps must be > 0, got -1\. eps is an L2 length"):
        pgd(model, x, y, -1.0, norm="l2")
    with pytest.raises(ValueError, match="eps must be a finite number"):
        pgd(model, x, y, float("inf"), norm="l2")
    with pytest.raises(ValueError, match="eps must be <= 1"):
        pgd(model, x, y, 2.0)                           # 2.0 is an L2 radius, not an L-inf budget
    assert pgd(model, x, y, 2.0, norm="l2", steps=1).shape == x.shape
    with pytest.raises(ValueError, match="steps must be >= 1"):
        pgd(model, x, y, 0.5, norm="l2", steps=0)
    with pytest.raises(ValueError, match="restarts must be >= 1"):
        pgd(model, x, y, 0.1, restarts=0)
    with pytest.raises(ValueError, match="restarts=2 needs random_start=True"):
        pgd(model, x, y, 0.1, restarts=2, random_start=False)
    with pytest.raises(TypeError, match="targeted must be True or False"):
        pgd(model, x, y, 0.1, targeted="yes")
    inside = (x + 0.05).clamp(0, 1)
    with pytest.raises(ValueError, match=r"start must lie inside the linf ball of radius eps = 0\.01 .* "
                                         r"x \+ \(start - x\)\.clamp\(-eps, eps\)"):
        pgd(model, x, y, 0.01, start=inside)
    with pytest.raises(ValueError, match="start must lie inside the l2 ball"):
        pgd(model, x, y, 0.1, start=inside, norm="l2")  # ||delta||_2 = 0.05 * 8 = 0.4 > 0.1
    pgd(model, x, y, 0.4 + 1e-4, start=inside, norm="l2", steps=1)
    with pytest.raises(ValueError, match="start must have the shape of x"):
        pgd(model, x, y, 0.1, start=inside[:2])
    with pytest.raises(ValueError, match=r"start must lie in \[0, 1\]"):
        pgd(model, x, y, 0.5, start=x + 0.45)
    with pytest.raises(TypeError, match="start must be None or a tensor"):
        pgd(model, x, y, 0.1, start=x.numpy())
    with pytest.raises(TypeError, match="start has dtype torch.float64"):
        pgd(model, x, y, 0.1, start=x.double())
