"""C3LT's latent maps, losses and training loop (Part 7 groundwork)."""
from __future__ import annotations

import pytest
import torch

from robust_utils import c3lt, generative as gen
from robust_utils.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_latent_step_keeps_the_starting_norm():
    torch.manual_seed(0)
    m = c3lt.LatentMap(100)
    z = torch.randn(6, 100) * 3
    for n in (1, 3):
        out = c3lt.transform(m, z, n)
        assert out.shape == z.shape
        assert torch.allclose(out.norm(dim=1), z.norm(dim=1), rtol=1e-5)
        assert not torch.allclose(out, z)
    with pytest.raises(ValueError, match="codes of shape"):
        m(torch.randn(2, 99))


def test_proximity_loss_and_mask():
    x = torch.zeros(2, 1, 6, 6)
    assert float(c3lt.proximity_loss(x, x)) == pytest.approx(0.0)
    x_cf = x.clone()
    x_cf[:, :, 2, 2] = 1.0
    m = c3lt.mask_of(x, x_cf)
    assert float(m.max()) == pytest.approx(1.0) and float(m.min()) == 0.0
    # L1 = 1/36; smoothness: 2 of 30 vertical and 2 of 30 horizontal differences are 1; entropy 0
    expected = (1 / 36 + 10 * (2 / 30 + 2 / 30) / 2 + 0.0) / 12
    assert float(c3lt.proximity_loss(x, x_cf)) == pytest.approx(expected, rel=1e-5)


def _parts(seed=0):
    torch.manual_seed(seed)
    f = build_model("c3lt_cnn").eval()
    G, D = gen.DCGANGenerator(width=4).eval(), gen.DCGANDiscriminator(width=4).eval()
    return f, G, D


def test_losses_are_finite_and_non_negative():
    f, G, D = _parts()
    g, h = c3lt.LatentMap(), c3lt.LatentMap()
    z = torch.randn(4, 100)
    out = c3lt.c3lt_losses(f, G, D, g, h, z, query=4, target=6)
    assert torch.isfinite(out["total"]) and all(out[k] >= 0 for k in ("cls", "prx", "cyc", "adv"))


def test_only_g_and_h_change_during_training():
    f, G, D = _parts(1)
    before = {name: [p.detach().clone() for p in m.parameters()] for name, m in (("f", f), ("G", G), ("D", D))}
    zq, zt = torch.randn(16, 100), torch.randn(16, 100)
    g, h, hist = c3lt.train_c3lt(f, G, D, zq, zt, query=4, target=6, epochs=2, batch_size=8, progress=False)
    for name, m in (("f", f), ("G", G), ("D", D)):
        for a, p in zip(before[name], m.parameters()):
            assert torch.equal(a, p), name                    # no updates
            assert p.grad is None, name                       # and no gradients
            assert p.requires_grad                            # flags restored
    assert len(hist["total"]) == 2 and hist["cls"][-1] > 0
    x = torch.rand(3, 1, 28, 28)
    E = gen.LatentEncoder(width=4).eval()
    x_cf = c3lt.counterfactual(E, G, g, x)
    assert x_cf.shape == x.shape and float(x_cf.min()) >= 0 and float(x_cf.max()) <= 1
    with pytest.raises(ValueError, match="different classes"):
        c3lt.train_c3lt(f, G, D, zq, zt, query=4, target=4, epochs=1, progress=False)


def test_latent_optimisation_lowers_its_loss_and_touches_only_the_codes():
    f, G, _ = _parts(2)
    before = [p.detach().clone() for p in list(f.parameters()) + list(G.parameters())]
    z0 = torch.randn(4, 100)
    x = torch.rand(4, 1, 28, 28)
    out = c3lt.latent_optimisation(f, G, z0, x, target=3, steps=30, lr=0.1)
    assert out["loss"][-1] < out["loss"][0]
    assert out["x_cf"].shape == x.shape and not torch.equal(out["z"], z0)
    for a, p in zip(before, list(f.parameters()) + list(G.parameters())):
        assert torch.equal(a, p) and p.grad is None and p.requires_grad
    with pytest.raises(ValueError, match="one latent code per image"):
        c3lt.latent_optimisation(f, G, z0[:2], x, target=3, steps=1)


def test_loss_weights_drop_terms_and_reject_bad_values():
    f, G, D = _parts(2)
    g, h = c3lt.LatentMap(), c3lt.LatentMap()
    z = torch.randn(4, 100)
    full = c3lt.c3lt_losses(f, G, D, g, h, z, query=4, target=6)
    w = {**c3lt.LOSS_WEIGHTS, "cyc": 0.0, "adv": 0.0}
    part = c3lt.c3lt_losses(f, G, D, g, h, z, query=4, target=6, weights=w)
    assert not any(part[k].requires_grad for k in ("cls", "prx", "cyc", "adv"))  # detached, for the record
    assert float(part["total"].detach()) == pytest.approx(float(part["cls"] + 0.1 * part["prx"]), rel=1e-5)
    assert float(full["total"].detach()) == pytest.approx(float(full["cls"] + 0.1 * full["prx"] + 0.1 * full["cyc"]
                                                                + 0.001 * full["adv"]), rel=1e-5)
    with pytest.raises(ValueError, match="weights must be a dict"):
        c3lt.c3lt_losses(f, G, D, g, h, z, query=4, target=6, weights={"cyc": 0.0})
    with pytest.raises(ValueError):
        c3lt.c3lt_losses(f, G, D, g, h, z, query=4, target=6, weights={**c3lt.LOSS_WEIGHTS, "adv": -1.0})


def test_latent_optimisation_to_validity_stops_at_the_first_run_that_reaches_it():
    f, G, _ = _parts(3)
    z0 = torch.randn(4, 100)
    x = gen.from_tanh_range(G(z0)).detach()
    out = c3lt.latent_optimisation_to_validity(f, G, z0, x, 6, 0.0, steps_grid=(2, 4))
    assert out["reached"] and out["steps"] == 2 and len(out["runs"]) == 1 and out["seconds"] > 0
    hard = c3lt.latent_optimisation_to_validity(f, G, z0, x, 6, 1.0, steps_grid=(1,), lr=1e-9)
    assert hard["steps"] == 1 and len(hard["runs"]) == 1
    assert hard["reached"] == (hard["validity"] >= 1.0)
    with pytest.raises(ValueError):
        c3lt.latent_optimisation_to_validity(f, G, z0, x, 6, 1.5)
    with pytest.raises(ValueError, match="at least one"):
        c3lt.latent_optimisation_to_validity(f, G, z0, x, 6, 0.5, steps_grid=())
