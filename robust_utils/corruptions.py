"""Image corruptions at five severities: corrupted and noisy data at inference.

In the style of ImageNet-C (Hendrycks & Dietterich, 2019) and CURE-TSR (Temel et al., 2017),
each *challenge type* below is applied at five increasing *severity levels* (1 = mild,
5 = severe). All of them work on a batch ``(N, C, H, W)`` of pixels in ``[0, 1]`` at once (no
Python loop over images, except for the JPEG codec), return a new tensor of the same shape
clamped to ``[0, 1]``, and are deterministic given ``seed`` (a private :class:`torch.Generator`;
the global random state is neither used nor changed). The same seed at different levels reuses
the same noise pattern, so the levels differ only in strength.

ImageNet-C's constants were chosen for 224x224 photographs. Pixel-wise corruptions (noise,
contrast, brightness, JPEG quality) transfer as they are; spatial ones (blur radii, pixelation,
elastic displacements) were rescaled for 28x28 images so that level 1 is mild and level 5 hard
for a small Fashion-MNIST CNN. :data:`SEVERITY` holds the table; :func:`severity_table` returns
it as printable rows.

Taught in Part 1, section "A suite of novel data".
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ._checks import check_choice, check_images, check_seed

__all__ = [
    "SEVERITY",
    "SEVERITY_PARAMS",
    "CORRUPTIONS",
    "LEVELS",
    "RANDOM_CORRUPTIONS",
    "corruption_names",
    "corrupt",
    "severity_table",
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "gaussian_blur",
    "defocus_blur",
    "motion_blur",
    "contrast",
    "brightness",
    "darken",
    "jpeg",
    "pixelate",
    "elastic",
]

#: The valid severity levels.
LEVELS = (1, 2, 3, 4, 5)

#: Severity parameter of each corruption at levels 1..5 (monotone: later = stronger).
SEVERITY: dict[str, tuple] = {
    # noise (pixel-wise). Gaussian and impulse: ImageNet-C's values. Shot and speckle noise
    # scale with the pixel value, and Fashion-MNIST is mostly black background, so they are
    # stronger than ImageNet-C's to make level 5 hard.
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "shot_noise": (40.0, 15.0, 6.0, 3.0, 1.5),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "speckle_noise": (0.20, 0.35, 0.55, 0.80, 1.20),
    # blur (spatial: rescaled for 28x28)
    "gaussian_blur": (0.5, 0.8, 1.1, 1.5, 2.0),
    "defocus_blur": (1.0, 1.5, 2.0, 2.5, 3.0),
    "motion_blur": (2.0, 3.0, 5.0, 7.0, 9.0),
    # photometric (pixel-wise; darken after CURE-TSR's "darkening")
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "darken": (0.7, 0.55, 0.4, 0.25, 0.12),
    # digital. JPEG stays mild even at quality 5 on 28x28 images (few 8x8 blocks, mostly flat);
    # lower qualities stop being monotone in damage, so the ladder ends at 5.
    "jpeg": (25, 18, 12, 8, 5),
    "pixelate": (0.72, 0.57, 0.43, 0.32, 0.25),  # 28 px -> 20, 16, 12, 9, 7 px
    "elastic": (0.5, 0.8, 1.2, 1.6, 2.0),
}

#: What the number in :data:`SEVERITY` means, per corruption: (parameter, description).
SEVERITY_PARAMS: dict[str, tuple[str, str]] = {
    "gaussian_noise": ("sigma", "x + N(0, sigma^2) per pixel"),
    "shot_noise": ("photons lambda", "Poisson(lambda * x) / lambda; fewer photons = noisier"),
    "impulse_noise": ("amount", "fraction of pixels set to 0 or 1 (salt and pepper)"),
    "speckle_noise": ("sigma", "x + x * N(0, sigma^2): multiplicative noise"),
    "gaussian_blur": ("sigma (px)", "Gaussian kernel of this standard deviation"),
    "defocus_blur": ("radius (px)", "anti-aliased disk kernel (out-of-focus lens)"),
    "motion_blur": ("length (px)", "line kernel at a seeded random angle per image"),
    "contrast": ("factor c", "(x - mean) * c + mean, mean per image"),
    "brightness": ("shift b", "x + b (overexposure)"),
    "darken": ("gain g", "g * x (underexposure)"),
    "jpeg": ("quality", "JPEG encode/decode round-trip (Pillow) at this quality"),
    "pixelate": ("scale", "downsample to scale * size (area), upsample (nearest)"),
    "elastic": ("alpha (px)", "smooth random displacement field with RMS alpha pixels"),
}

_ELASTIC_SMOOTH = 3.0  # pixels: spatial scale of the elastic displacement field (28x28 images)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------

def _gaussian_kernel1d(sigma: float, device, dtype) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _blur_matrix(size: int, kernel: torch.Tensor) -> torch.Tensor:
    """``(size, size)`` matrix applying the 1-D ``kernel`` along an axis, with replicate padding."""
    r = (len(kernel) - 1) // 2
    i = torch.arange(size, device=kernel.device)
    cols = (i[:, None] + torch.arange(-r, r + 1, device=kernel.device)).clamp(0, size - 1)
    m = torch.zeros(size, size, device=kernel.device, dtype=kernel.dtype)
    return m.scatter_add_(1, cols, kernel.expand(size, -1).contiguous())


def _blur_separable(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with replicate padding (constant images stay constant).

    Blurring along an axis is a product with a banded ``(size, size)`` matrix, so the whole batch
    is two matrix multiplications.
    """
    h, w = x.shape[-2:]
    k = _gaussian_kernel1d(sigma, x.device, x.dtype)
    return _blur_matrix(h, k) @ (x @ _blur_matrix(w, k).T)


def _conv_same(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve every channel of every image with one odd-sized 2-D kernel (replicate padding)."""
    n, c, h, w = x.shape
    r = (kernel.shape[-1] - 1) // 2
    y = F.pad(x.reshape(n * c, 1, h, w), (r, r, r, r), mode="replicate")
    return F.conv2d(y, kernel.view(1, 1, *kernel.shape)).reshape(n, c, h, w)


# ----------------------------------------------------------------------------------------------
# implementations: (x, parameter, generator) -> corrupted x (unclamped is fine; corrupt clamps)
# ----------------------------------------------------------------------------------------------

def _gaussian_noise(x, sigma, g):
    return x + sigma * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)


def _shot_noise(x, lam, g):
    return torch.poisson(x.clamp(0, 1) * lam, generator=g) / lam


def _impulse_noise(x, amount, g):
    u = torch.rand(x.shape, generator=g, device=x.device, dtype=x.dtype)
    out = torch.where(u < amount / 2, torch.zeros_like(x), x)
    return torch.where(u > 1 - amount / 2, torch.ones_like(x), out)


def _speckle_noise(x, sigma, g):
    return x + x * sigma * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)


def _gaussian_blur(x, sigma, g):
    return _blur_separable(x, sigma)


def _disk_kernel(radius: float, device, dtype, supersample: int = 8) -> torch.Tensor:
    r = math.ceil(radius)
    s = supersample
    # sub-pixel sample positions of the (2r+1)^2 pixels
    t = (torch.arange((2 * r + 1) * s, device=device, dtype=dtype) + 0.5) / s - (r + 0.5)
    inside = (t[:, None] ** 2 + t[None, :] ** 2 <= radius ** 2).to(dtype)
    k = inside.reshape(2 * r + 1, s, 2 * r + 1, s).mean(dim=(1, 3))
    return k / k.sum()


def _defocus_blur(x, radius, g):
    return _conv_same(x, _disk_kernel(radius, x.device, x.dtype))


def _motion_blur(x, length, g):
    n, c, h, w = x.shape
    angle = torch.rand(n, generator=g, device=x.device, dtype=x.dtype) * math.pi  # one per image
    r = math.ceil(length / 2)
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    py, px = torch.meshgrid(t, t, indexing="ij")                       # (k, k) pixel offsets
    dx, dy = torch.cos(angle).view(n, 1, 1), torch.sin(angle).view(n, 1, 1)
    # distance of each pixel centre to the segment of the given length through the centre
    proj = (px * dx + py * dy).clamp(-length / 2, length / 2)
    dist = torch.sqrt((px - proj * dx) ** 2 + (py - proj * dy) ** 2)
    k = (1 - dist).clamp(min=0)                                        # anti-aliased line
    k = k / k.sum(dim=(1, 2), keepdim=True)                            # (n, k, k), one per image
    # one kernel per image: a grouped convolution with one group per (image, channel)
    weight = k.repeat_interleave(c, dim=0).unsqueeze(1)                # (n*c, 1, k, k)
    y = F.pad(x.reshape(1, n * c, h, w), (r, r, r, r), mode="replicate")
    return F.conv2d(y, weight, groups=n * c).reshape(n, c, h, w)


def _contrast(x, factor, g):
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - m) * factor + m


def _brightness(x, shift, g):
    return x + shift


def _darken(x, gain, g):
    return x * gain


def _jpeg(x, quality, g):
    import io

    import numpy as np
    from PIL import Image

    n, c, h, w = x.shape
    if c not in (1, 3):
        raise ValueError(f"jpeg needs 1- or 3-channel images, got {c} channels.")
    u8 = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    u8 = u8[:, 0] if c == 1 else u8.transpose(0, 2, 3, 1)             # (n, h, w) or (n, h, w, 3)
    out = np.empty_like(u8)
    # the codec works image by image (Pillow's libjpeg); everything else here is batched
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(u8[i]).save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        with Image.open(buf) as im:
            out[i] = np.asarray(im)
    out = torch.from_numpy(out if c == 1 else out.transpose(0, 3, 1, 2).copy())
    return out.reshape(n, c, h, w).to(device=x.device, dtype=x.dtype) / 255.0


def _pixelate(x, scale, g):
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest")


def _elastic(x, alpha, g):
    n, c, h, w = x.shape
    field = torch.randn(n, 2, h, w, generator=g, device=x.device, dtype=x.dtype)
    field = _blur_separable(field, _ELASTIC_SMOOTH)
    field = field - field.mean(dim=(2, 3), keepdim=True)
    field = field / field.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp(min=1e-8)
    # pixels -> normalised grid coordinates (align_corners=False: 2 / size per pixel)
    disp = alpha * field.permute(0, 2, 3, 1) * torch.tensor([2.0 / w, 2.0 / h], device=x.device,
                                                            dtype=x.dtype)
    theta = torch.eye(2, 3, device=x.device, dtype=x.dtype).expand(n, 2, 3)
    grid = F.affine_grid(theta, (n, c, h, w), align_corners=False) + disp
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


_IMPL: dict[str, Callable] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "speckle_noise": _speckle_noise,
    "gaussian_blur": _gaussian_blur,
    "defocus_blur": _defocus_blur,
    "motion_blur": _motion_blur,
    "contrast": _contrast,
    "brightness": _brightness,
    "darken": _darken,
    "jpeg": _jpeg,
    "pixelate": _pixelate,
    "elastic": _elastic,
}
#: Corruptions whose output depends on ``seed``.
RANDOM_CORRUPTIONS = frozenset({"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise",
                                "motion_blur", "elastic"})


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------

def corruption_names() -> list[str]:
    """The names of all corruption types, in the book's order (noise, blur, photometric, digital).

    Taught in Part 1, section "A suite of novel data".
    """
    return list(_IMPL)


def _check_level(level) -> int:
    if isinstance(level, bool) or not isinstance(level, int) and not hasattr(level, "__index__"):
        raise TypeError(f"level must be an integer severity in 1..5 (1 = mild, 5 = severe), "
                        f"got {level!r}.")
    level = int(level)
    if not 1 <= level <= 5:
        raise ValueError(f"level must be a severity in 1..5 (1 = mild, 5 = severe), got {level}.")
    return level


def corrupt(x: torch.Tensor, name: str, level: int, seed: int = 0) -> torch.Tensor:
    """Apply the corruption ``name`` at severity ``level`` to a batch of images.

    Parameters
    ----------
    x : Tensor
        ``(N, C, H, W)`` float images in ``[0, 1]`` (any device).
    name : str
        One of :func:`corruption_names`.
    level : int
        Severity 1 (mild) .. 5 (severe); see :data:`SEVERITY`.
    seed : int
        Seed of the random corruptions (noise, motion-blur angle, elastic field); the same seed
        gives the same output. Deterministic corruptions ignore it.

    Returns
    -------
    Tensor
        Same shape, dtype and device as ``x``, clamped to ``[0, 1]``.

    Examples
    --------
    >>> x = torch.rand(4, 1, 28, 28)
    >>> corrupt(x, "gaussian_noise", 3, seed=0).shape
    torch.Size([4, 1, 28, 28])

    Taught in Part 1, section "A suite of novel data".
    """
    check_images(x, "x")
    check_choice(name, "corruption", _IMPL)
    level = _check_level(level)
    seed = check_seed(seed)
    g = torch.Generator(device=x.device).manual_seed(seed)
    with torch.no_grad():
        out = _IMPL[name](x, SEVERITY[name][level - 1], g)
    return out.clamp_(0, 1).to(x.dtype)


def severity_table() -> list[dict]:
    """The severity table as rows, one per corruption, for printing (e.g. ``pandas.DataFrame``).

    Each row has keys ``corruption``, ``parameter``, ``level 1`` .. ``level 5`` and ``meaning``.

    Taught in Part 1, section "A suite of novel data".
    """
    rows = []
    for name, values in SEVERITY.items():
        param, meaning = SEVERITY_PARAMS[name]
        row = {"corruption": name, "parameter": param}
        row.update({f"level {i + 1}": v for i, v in enumerate(values)})
        row["meaning"] = meaning
        rows.append(row)
    return rows


def _make_public(name: str) -> Callable:
    param, meaning = SEVERITY_PARAMS[name]

    def fn(x: torch.Tensor, level: int = 3, seed: int = 0) -> torch.Tensor:
        return corrupt(x, name, level, seed=seed)

    fn.__name__ = fn.__qualname__ = name
    fn.__module__ = __name__
    fn.__doc__ = (f"Corrupt a batch with ``{name}``: {meaning}.\n\n"
                  f"Severity parameter ({param}) at levels 1..5: {SEVERITY[name]}.\n"
                  f"{'Random: depends on ``seed``.' if name in RANDOM_CORRUPTIONS else 'Deterministic.'}"
                  f" Same arguments and return value as :func:`corrupt` with ``name={name!r}``.\n\n"
                  "Taught in Part 1, section \"A suite of novel data\".\n")
    return fn


gaussian_noise = _make_public("gaussian_noise")
shot_noise = _make_public("shot_noise")
impulse_noise = _make_public("impulse_noise")
speckle_noise = _make_public("speckle_noise")
gaussian_blur = _make_public("gaussian_blur")
defocus_blur = _make_public("defocus_blur")
motion_blur = _make_public("motion_blur")
contrast = _make_public("contrast")
brightness = _make_public("brightness")
darken = _make_public("darken")
jpeg = _make_public("jpeg")
pixelate = _make_public("pixelate")
elastic = _make_public("elastic")

#: name -> public function ``f(x, level=3, seed=0)``.
CORRUPTIONS: dict[str, Callable] = {name: globals()[name] for name in _IMPL}
