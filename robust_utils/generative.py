"""The generative models behind C3LT (Khorram and Fuxin, CVPR 2022): a DCGAN and an encoder.

C3LT explains a classifier by moving an image's latent code ``z = E(x)`` in the latent space of a
pretrained generator ``G`` until ``G(z')`` is classified as another class. The authors' code uses
a DCGAN for 28 x 28 images in ``[-1, 1]``:

* **generator** ``G``: ``z`` (100 channels at 1 x 1) -> transposed conv 4 x 4 (stride 1) to
  ``8w`` channels at 4 x 4 -> three stride-2 transposed convs to ``4w``, ``2w``, ``w`` channels at
  8, 16, 32 pixels, each with batch norm and ReLU -> a 1 x 1 transposed conv with padding 2,
  which crops 32 to 28 -> tanh. ``w = 64`` gives the code's 512-256-128-64;
* **discriminator** ``D``: conv 4 x 4 stride 2 to ``w`` (no batch norm) -> ``2w`` -> ``4w`` with
  batch norm, leaky ReLU 0.2 throughout, -> a conv to one logit (the code's sigmoid is folded
  into the loss, :func:`torch.nn.functional.binary_cross_entropy_with_logits`);
* **encoder** ``E``: the discriminator's trunk ending in a conv to 100 channels and batch norm
  (no sigmoid): an image's code in ``G``'s latent space. The code has no script that trains it.

Weights start from N(0, 0.02) (batch-norm scales from N(1, 0.02)), as in DCGAN. Training
(:func:`train_dcgan`): Adam 2e-4 with beta1 = 0.5, the non-saturating loss, batches of 64, the
images kept as tensors on the device.

Taught in Part 7, section "The generator and the encoder"; the autoencoders in section "Realism:
IM1, IM2, FID and KID".
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_bool, check_images, check_number, check_positive_int, check_seed
from .config import pick_device, progress_bar, seed_everything
from .training import iterate_minibatches

__all__ = ["LATENT_DIM", "DCGANGenerator", "DCGANDiscriminator", "LatentEncoder", "dcgan_init",
           "to_tanh_range", "from_tanh_range", "train_dcgan", "ConvAutoencoder", "train_autoencoder"]

#: The size of the DCGAN's latent code (the authors' code's ``nz``).
LATENT_DIM = 100


def dcgan_init(module: nn.Module) -> nn.Module:
    """DCGAN's initialisation, in place: conv weights N(0, 0.02); batch norm N(1, 0.02), bias 0.

    Taught in Part 7, section "The generator and the encoder".
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


def to_tanh_range(x: torch.Tensor) -> torch.Tensor:
    """``[0, 1]`` pixels to the generator's ``[-1, 1]``.

    Taught in Part 7, section "The generator and the encoder".
    """
    return x * 2 - 1


def from_tanh_range(x: torch.Tensor) -> torch.Tensor:
    """The generator's ``[-1, 1]`` back to ``[0, 1]`` pixels (clipped).

    Taught in Part 7, section "The generator and the encoder".
    """
    return ((x + 1) / 2).clamp(0, 1)


def _width(width) -> int:
    return check_positive_int(width, "width")


class DCGANGenerator(nn.Module):
    """``G``: latent codes ``(B, 100)`` or ``(B, 100, 1, 1)`` to 28 x 28 images in ``[-1, 1]``.

    ``width`` (default 64, the code's) scales every stage: ``8w - 4w - 2w - w`` channels.

    Taught in Part 7, section "The generator and the encoder".
    """

    def __init__(self, latent_dim: int = LATENT_DIM, width: int = 64, channels: int = 1):
        super().__init__()
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        w = _width(width)
        c = check_positive_int(channels, "channels")

        def up(cin, cout):
            return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]

        self.net = nn.Sequential(
            nn.ConvTranspose2d(self.latent_dim, 8 * w, 4, 1, 0, bias=False), nn.BatchNorm2d(8 * w), nn.ReLU(True),
            *up(8 * w, 4 * w), *up(4 * w, 2 * w), *up(2 * w, w),
            nn.ConvTranspose2d(w, c, 1, 1, 2, bias=False),   # padding 2 of a 1 x 1 transposed conv: 32 -> 28
            nn.Tanh())
        dcgan_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or z.dim() not in (2, 4) or z.shape[1] != self.latent_dim:
            raise ValueError(f"G takes latent codes of shape (B, {self.latent_dim}) or (B, {self.latent_dim}, 1, 1), "
                             f"got {tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}.")
        return self.net(z.view(z.shape[0], self.latent_dim, 1, 1))


def _trunk(w: int, c: int) -> list[nn.Module]:
    return [nn.Conv2d(c, w, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),                       # 28 -> 14
            nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2, True),  # -> 7
            nn.Conv2d(2 * w, 4 * w, 3, 2, 1, bias=False), nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2, True)]  # -> 4


def _check_pixels(x) -> None:
    """Cheap shape checks only (no value-range scan: forward runs inside training loops)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[-2:]) != (28, 28) \
            or not torch.is_floating_point(x):
        raise ValueError("D and E take float images of shape (B, C, 28, 28) in [-1, 1] (to_tanh_range of [0, 1] "
                         f"pixels), got {tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}.")


class DCGANDiscriminator(nn.Module):
    """``D``: 28 x 28 images in ``[-1, 1]`` to one logit each (real > 0).

    Taught in Part 7, section "The generator and the encoder".
    """

    def __init__(self, width: int = 64, channels: int = 1):
        super().__init__()
        w = _width(width)
        self.net = nn.Sequential(*_trunk(w, check_positive_int(channels, "channels")),
                                 nn.Conv2d(4 * w, 1, 4, 1, 0, bias=False), nn.Flatten())
        dcgan_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_pixels(x)
        return self.net(x).squeeze(1)


class LatentEncoder(nn.Module):
    """``E``: 28 x 28 images in ``[-1, 1]`` to codes ``(B, 100)`` in ``G``'s latent space.

    The discriminator's trunk, a conv to ``latent_dim`` channels and batch norm, as in the
    authors' code.

    Taught in Part 7, section "The generator and the encoder".
    """

    def __init__(self, latent_dim: int = LATENT_DIM, width: int = 64, channels: int = 1):
        super().__init__()
        w = _width(width)
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        self.net = nn.Sequential(*_trunk(w, check_positive_int(channels, "channels")),
                                 nn.Conv2d(4 * w, self.latent_dim, 4, 1, 0, bias=False),
                                 nn.BatchNorm2d(self.latent_dim), nn.Flatten())
        dcgan_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_pixels(x)
        return self.net(x)


def train_dcgan(generator: DCGANGenerator, discriminator: DCGANDiscriminator, x: torch.Tensor, *,
                epochs: int, batch_size: int = 64, lr: float = 2e-4, beta1: float = 0.5, device="cpu",
                seed: int = 0, progress: bool = True) -> dict:
    """Train a DCGAN on ``[0, 1]`` images ``x`` (scaled to ``[-1, 1]`` here), all classes together.

    Per batch: one discriminator step on real and generated images (BCE with logits), then one
    generator step with the non-saturating loss ``BCE(D(G(z)), real)``. Adam with ``beta1``.

    Returns
    -------
    dict
        Per-epoch lists ``d_loss``, ``g_loss``, ``d_real`` (mean ``sigmoid(D(x))``), ``d_fake``
        (mean ``sigmoid(D(G(z)))`` before the generator step) and ``time``.

    Taught in Part 7, section "The generator and the encoder".
    """
    if not isinstance(generator, DCGANGenerator) or not isinstance(discriminator, DCGANDiscriminator):
        raise TypeError("train_dcgan needs a DCGANGenerator and a DCGANDiscriminator.")
    x = check_images(x, "x", value_range=(0.0, 1.0), size=(28, 28))
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    lr = check_number(lr, "lr")
    beta1 = check_number(beta1, "beta1", maximum=0.999999, strict=False)
    seed = check_seed(seed)
    progress = check_bool(progress, "progress")
    dev = pick_device(device)
    seed_everything(seed)
    generator.to(dev).train()
    discriminator.to(dev).train()
    x = to_tanh_range(x.to(dev))
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=(beta1, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(beta1, 0.999))
    order = torch.Generator().manual_seed(seed)
    noise = torch.Generator(device=dev).manual_seed(seed + 1)
    hist = {k: [] for k in ("d_loss", "g_loss", "d_real", "d_fake", "time")}
    steps = (x.shape[0] + batch_size - 1) // batch_size
    bar = progress_bar(total=epochs * steps, disable=not progress, unit="batch", desc="DCGAN")
    try:
        for _ in range(epochs):
            t0 = time.perf_counter()
            # running sums stay on the device: a float() per batch would make the CPU wait for the
            # GPU at every step; they are read once per epoch
            sums = {k: torch.zeros((), dtype=torch.float64, device=dev)
                    for k in ("d_loss", "g_loss", "d_real", "d_fake")}
            n = 0
            for xb in iterate_minibatches(x, None, batch_size, shuffle=True, generator=order,
                                          drop_last=x.shape[0] % batch_size == 1):
                b = xb.shape[0]
                z = torch.randn(b, generator.latent_dim, generator=noise, device=dev)
                fake = generator(z)
                real_logit, fake_logit = discriminator(xb), discriminator(fake.detach())
                d_loss = (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                          + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                g_logit = discriminator(fake)
                g_loss = F.binary_cross_entropy_with_logits(g_logit, torch.ones_like(g_logit))
                opt_g.zero_grad(set_to_none=True)
                g_loss.backward()
                opt_g.step()
                sums["d_loss"] += d_loss.detach() * b
                sums["g_loss"] += g_loss.detach() * b
                sums["d_real"] += torch.sigmoid(real_logit.detach()).sum()
                sums["d_fake"] += torch.sigmoid(fake_logit.detach()).sum()
                n += b
                bar.update(1)
            for k, v in sums.items():
                hist[k].append(float(v) / n)
            hist["time"].append(time.perf_counter() - t0)
    finally:
        bar.close()
        generator.eval()
        discriminator.eval()
    return hist


class ConvAutoencoder(nn.Module):
    """A small convolutional autoencoder for IM1 / IM2 (after Van Looveren and Klaise, 2021).

    ``conv 3x3 (16) -> ReLU -> conv 3x3 (16) -> ReLU -> max-pool 2 -> conv 3x3 (1)`` (a 14 x 14 code),
    then ``conv 3x3 (16) -> ReLU -> upsample 2 -> conv 3x3 (16) -> ReLU -> conv 3x3 (channels)``;
    linear output, for images of any pixel range (even side lengths).

    Taught in Part 7, section "Realism: IM1, IM2, FID and KID".
    """

    def __init__(self, channels: int = 1, width: int = 16):
        super().__init__()
        c, w = check_positive_int(channels, "channels"), _width(width)
        self.encoder = nn.Sequential(nn.Conv2d(c, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1),
                                     nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(w, 1, 3, padding=1))
        self.decoder = nn.Sequential(nn.Conv2d(1, w, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2),
                                     nn.Conv2d(w, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, c, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[-1] % 2 or x.shape[-2] % 2:
            raise ValueError("the autoencoder takes images (B, C, H, W) with even H and W.")
        return self.decoder(self.encoder(x))


def train_autoencoder(ae: nn.Module, x: torch.Tensor, *, epochs: int, batch_size: int = 128, lr: float = 1e-3,
                      device="cpu", seed: int = 0) -> list[float]:
    """Train ``ae`` to reconstruct ``x`` (mean squared error, Adam); returns the per-epoch mean loss.

    Taught in Part 7, section "Realism: IM1, IM2, FID and KID".
    """
    if not isinstance(ae, nn.Module):
        raise TypeError(f"ae must be a torch.nn.Module, got {type(ae).__name__}.")
    x = check_images(x, "x")
    epochs, batch_size = check_positive_int(epochs, "epochs"), check_positive_int(batch_size, "batch_size")
    lr = check_number(lr, "lr")
    dev = pick_device(device)
    seed_everything(check_seed(seed))
    ae.to(dev).train()
    x = x.to(dev)
    opt = torch.optim.Adam(ae.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)
    hist = []
    for _ in range(epochs):
        tot, n = torch.zeros((), dtype=torch.float64, device=x.device), 0  # read once per epoch
        for xb in iterate_minibatches(x, None, batch_size, shuffle=True, generator=order):
            loss = F.mse_loss(ae(xb), xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += loss.detach() * xb.shape[0]
            n += xb.shape[0]
        hist.append(float(tot) / n)
    ae.eval()
    return hist
