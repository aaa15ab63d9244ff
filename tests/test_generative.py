"""The DCGAN and encoder of Part 7 (groundwork): shapes, ranges, initialisation, a training run."""
from __future__ import annotations

import math

import pytest
import torch

from robust_utils import generative as gen

pytestmark = pytest.mark.usefixtures("one_thread")


def test_generator_maps_codes_to_28x28_images_in_tanh_range():
    torch.manual_seed(0)
    g = gen.DCGANGenerator(width=8).eval()
    for z in (torch.randn(3, 100), torch.randn(3, 100, 1, 1) * 10):
        with torch.no_grad():
            x = g(z)
        assert x.shape == (3, 1, 28, 28)
        assert float(x.min()) >= -1 and float(x.max()) <= 1
    channels = [m.out_channels for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert channels == [64, 32, 16, 8, 1]      # 8w-4w-2w-w, then the image
    assert [m.out_channels for m in gen.DCGANGenerator().modules()
            if isinstance(m, torch.nn.ConvTranspose2d)][:4] == [512, 256, 128, 64]   # the code's widths
    with pytest.raises(ValueError, match="latent codes"):
        g(torch.randn(3, 99))


def test_discriminator_and_encoder_shapes_and_input_checks():
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    d = gen.DCGANDiscriminator(width=8).eval()
    e = gen.LatentEncoder(width=8).eval()
    assert d(x).shape == (4,)
    assert e(x).shape == (4, gen.LATENT_DIM)
    with pytest.raises(ValueError, match="28, 28"):
        e(torch.rand(4, 1, 32, 32))               # wrong size
    with pytest.raises(ValueError, match="28, 28"):
        d(torch.rand(1, 28, 28))                  # no batch dimension


def test_dcgan_initialisation():
    torch.manual_seed(0)
    g = gen.DCGANGenerator(width=16)
    w = torch.cat([m.weight.detach().flatten() for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)])
    assert float(w.mean()) == pytest.approx(0.0, abs=2e-3) and float(w.std()) == pytest.approx(0.02, rel=0.05)
    bn = torch.cat([m.weight.detach() for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    assert float(bn.mean()) == pytest.approx(1.0, abs=0.01)


def test_pixel_range_conversions_are_inverse():
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(gen.from_tanh_range(gen.to_tanh_range(x)), x)


def test_a_short_dcgan_run_trains_both_players():
    g = torch.Generator().manual_seed(0)
    # a toy data set: bright squares at random places
    x = torch.zeros(128, 1, 28, 28)
    for i in range(128):
        r, c = torch.randint(0, 20, (2,), generator=g).tolist()
        x[i, 0, r:r + 8, c:c + 8] = 1.0
    G, D = gen.DCGANGenerator(width=8), gen.DCGANDiscriminator(width=8)
    before = [p.detach().clone() for p in G.parameters()]
    hist = gen.train_dcgan(G, D, x, epochs=2, batch_size=32, progress=False)
    assert len(hist["d_loss"]) == 2 and all(math.isfinite(v) for v in hist["d_loss"] + hist["g_loss"])
    assert 0 <= hist["d_fake"][-1] <= 1 and 0 <= hist["d_real"][-1] <= 1
    assert any(not torch.equal(a, b) for a, b in zip(before, G.parameters()))
    assert not G.training and not D.training
    with pytest.raises(TypeError, match="DCGANGenerator"):
        gen.train_dcgan(D, G, x, epochs=1, progress=False)
    with pytest.raises(ValueError):
        gen.train_dcgan(G, D, x * 2 - 1, epochs=1, progress=False)   # needs [0, 1] pixels


def test_autoencoder_shapes_and_training_lowers_the_reconstruction_error():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 28, 28, generator=g) * 0.2
    x[:, :, 8:20, 8:20] += 0.7
    ae = gen.ConvAutoencoder(width=8)
    with torch.no_grad():
        assert ae(x[:2]).shape == (2, 1, 28, 28)
    hist = gen.train_autoencoder(ae, x, epochs=5, batch_size=16)
    assert hist[-1] < hist[0] and not ae.training
    with pytest.raises(ValueError, match="even"):
        ae(torch.rand(1, 1, 27, 27))
