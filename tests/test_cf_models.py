"""Part 7's cached artifacts: the DCGAN pair, the encoder and its loss, the autoencoders, C3LT's maps."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from robust_utils import cf_models, generative as gen
from robust_utils.recipes import Recipe, recipe_set

pytestmark = pytest.mark.usefixtures("one_thread")


def test_architectures_build_module_dicts_of_the_right_parts():
    pair = cf_models.dcgan(width=4)
    assert isinstance(pair, nn.ModuleDict) and isinstance(pair["G"], gen.DCGANGenerator)
    assert isinstance(pair["D"], gen.DCGANDiscriminator)
    maps = cf_models.c3lt_maps()
    z = torch.randn(3, 100)
    assert maps["g"](z).shape == (3, 100) and maps["h"](z).shape == (3, 100)


def test_encoder_training_lowers_its_loss_and_leaves_the_generator_alone():
    torch.manual_seed(0)
    G = gen.DCGANGenerator(width=4).eval()
    E = gen.LatentEncoder(width=4)
    x = torch.rand(64, 1, 28, 28)
    before = [p.detach().clone() for p in G.parameters()]
    hist = cf_models.train_encoder(E, G, x, epochs=4, batch_size=16, lr=1e-2, progress=False)
    assert hist["recon"][-1] < hist["recon"][0] and hist["latent"][-1] < hist["latent"][0]
    assert all(torch.equal(a, p) and p.grad is None and p.requires_grad for a, p in zip(before, G.parameters()))
    assert not E.training
    codes = cf_models.encode(E, x, batch_size=10)
    assert codes.shape == (64, 100) and torch.isfinite(codes).all()
    with pytest.raises(ValueError):
        cf_models.train_encoder(E, G, x * 2 - 1, epochs=1, progress=False)   # [-1, 1] images: the wrong range
    with pytest.raises(TypeError, match="DCGANGenerator"):
        cf_models.train_encoder(E, nn.Identity(), x, epochs=1, progress=False)


def test_recipe_parameters_are_checked():
    with pytest.raises(ValueError, match="different classes"):
        Recipe("c3lt_maps", objective="c3lt", objective_params={"query": 4, "target": 4}, profile="smoke")
    with pytest.raises(ValueError, match="class index"):
        Recipe("c3lt_maps", objective="c3lt", objective_params={"query": 12}, profile="smoke")
    with pytest.raises(ValueError, match="only_class"):
        Recipe("conv_autoencoder", objective="autoencoder", objective_params={"only_class": 10}, profile="smoke")
    with pytest.raises(ValueError):
        Recipe("dcgan", objective="dcgan", objective_params={"beta1": 1.5}, profile="smoke")


def test_the_chapter_recipe_set_names_every_artifact_with_its_dependencies():
    rs = recipe_set("part7", "smoke")
    pairs = [*cf_models.PART7_PAIRS, cf_models.PART7_OTHER_PAIR]
    assert {cf_models.map_label(q, t) for q, t in pairs} <= set(rs)
    assert {f"AE class {c}" for c in range(10)} | {"AE all classes"} <= set(rs)
    m = rs[cf_models.map_label(4, 6)]
    assert dict(m.depends_on) == {"classifier": rs["classifier"], "gan": rs["gan"], "encoder": rs["encoder"]}
    assert dict(rs["encoder"].depends_on) == {"gan": rs["gan"]}
    assert dict(rs["gan"].arch_kwargs)["width"] == cf_models.PART7_SETTINGS["smoke"]["width"]
    assert len({r.key for r in rs.values()}) == len(rs)                    # no two labels share a model
    ablated = rs[cf_models.map_label(4, 6, "no cycle loss")]
    assert dict(ablated.objective_params)["cycle"] is False and ablated.key != m.key
    assert rs["feature network"].arch != rs["classifier"].arch             # FID features: another network


def test_the_map_trainer_needs_its_dependencies():
    rs = recipe_set("part7", "smoke")
    r = rs[cf_models.map_label(4, 6)]
    from robust_utils.training import TRAINERS
    with pytest.raises(ValueError, match="missing"):
        TRAINERS["c3lt"].fn(r.build(), r, device="cpu", progress=False, deps={"gan": None})
    e = rs["encoder"]
    with pytest.raises(ValueError, match="gan"):
        TRAINERS["latent_encoder"].fn(e.build(), e, device="cpu", progress=False, deps={})
