"""The *novel-data suite*: the data a trained model meets at inference.

Part 1 of the book lists the sources of novel data a deployed network must handle: shifted test
distributions, corrupted and noisy data, out-of-distribution (OOD) data and new classes. This
module provides all of them for Fashion-MNIST, offline:

* :func:`load_digits_ood`, :func:`natural_image_patches` and :func:`uniform_noise` are OOD
  sources that ship with scikit-learn, scikit-image and PyTorch (no download);
* :func:`new_class_set` holds classes out of training (:func:`robust_utils.data.subset_classes`)
  so that they are *new classes* at inference;
* :func:`novel_data_suite` bundles clean data, every corruption of :mod:`robust_utils.corruptions`
  at every severity, and the OOD sets into a list of :class:`NovelSet`.

Every image tensor is float32, shaped ``(N, C, H, W)``, with pixels in ``[0, 1]``.

Taught in Part 1, section "A suite of novel data".
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ._checks import check_choice, check_images, check_labels, check_positive_int, check_seed
from .corruptions import corrupt, corruption_names
from .data import FASHION_MNIST_CLASSES, check_classes, subset_classes

__all__ = [
    "load_digits_ood",
    "natural_image_patches",
    "uniform_noise",
    "NovelSet",
    "new_class_set",
    "novel_data_suite",
]

# ----------------------------------------------------------------------------------------------
# OOD sources available offline
# ----------------------------------------------------------------------------------------------

def _check_n(n, name: str = "n") -> int:
    return check_positive_int(n, name)


def _to_shape(x: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """Resize ``(N, 1, 28, 28)`` grayscale to ``size`` and replicate to ``channels``."""
    size = check_positive_int(size, "size", minimum=8)
    channels = check_positive_int(channels, "channels")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}.")
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=size < x.shape[-1]).clamp_(0, 1)
    return x.expand(-1, channels, -1, -1).contiguous()


@functools.lru_cache(maxsize=1)
def _digits_28() -> torch.Tensor:
    from sklearn.datasets import load_digits

    imgs = torch.from_numpy(load_digits().images.astype(np.float32) / 16.0)[:, None]  # (1797,1,8,8)
    imgs = F.interpolate(imgs, size=(20, 20), mode="bilinear", align_corners=False)
    return F.pad(imgs, (4, 4, 4, 4)).clamp_(0, 1)


def load_digits_ood(n: int | None = None, seed: int = 0, *, size: int = 28,
                    channels: int = 1) -> torch.Tensor:
    """Handwritten digits as an OOD set for a Fashion-MNIST model (no download needed).

    scikit-learn's ``load_digits`` (1797 images, 8x8, values 0..16) is rescaled to ``[0, 1]``,
    upsampled bilinearly to 20x20 and centred in a black 28x28 frame, as MNIST digits are. The
    images are white strokes on black, like Fashion-MNIST, so only the *content* is novel.

    Parameters
    ----------
    n : int, optional
        Number of images; ``None`` = all 1797 in a seeded order. If ``n > 1797`` images are drawn
        with replacement (so some repeat).
    seed : int
        Seed of the selection.
    size, channels : int
        Output size (28) and channels (1, or 3 to replicate for RGB models).

    Returns
    -------
    Tensor, float32 ``(n, channels, size, size)`` in ``[0, 1]``.

    Taught in Part 1, section "A suite of novel data".
    """
    seed = check_seed(seed)
    base = _digits_28()
    g = torch.Generator().manual_seed(seed)
    if n is None:
        idx = torch.randperm(len(base), generator=g)
    else:
        n = _check_n(n)
        idx = (torch.randperm(len(base), generator=g)[:n] if n <= len(base)
               else torch.randint(len(base), (n,), generator=g))
    return _to_shape(base[idx], size, channels)


# scikit-image sample images bundled with the wheel (no pooch download).
_SKIMAGE_IMAGES = ("camera", "astronaut", "coffee", "chelsea", "rocket", "coins", "moon", "page",
                   "text", "grass", "gravel", "brick", "clock", "hubble_deep_field")
_PATCH_SOURCE_SIDE = 112  # shorter side after downscaling: a 28x28 patch covers 1/4 of it


@functools.lru_cache(maxsize=1)
def _natural_pool() -> tuple[torch.Tensor, ...]:
    import skimage.data as skd

    pool = []
    for name in _SKIMAGE_IMAGES:
        try:
            img = np.asarray(getattr(skd, name)())
        except Exception:  # noqa: BLE001 - a missing/undownloadable sample is simply skipped
            continue
        img = img.astype(np.float32)
        if img.ndim == 3:
            img = img[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        img = torch.from_numpy(img / max(float(img.max()), 1e-6))[None, None]
        h, w = img.shape[-2:]
        scale = _PATCH_SOURCE_SIDE / min(h, w)
        img = F.interpolate(img, size=(max(28, round(h * scale)), max(28, round(w * scale))),
                            mode="bilinear", align_corners=False, antialias=True)
        pool.append(img[0, 0].clamp_(0, 1).contiguous())
    if not pool:
        raise RuntimeError("no scikit-image sample image could be loaded; reinstall scikit-image "
                           "(its wheel bundles skimage/data/camera.png etc.).")
    return tuple(pool)


def natural_image_patches(n: int, seed: int = 0, *, size: int = 28, channels: int = 1) -> torch.Tensor:
    """Random grayscale patches of natural photographs: a *far* OOD set (no download needed).

    The scikit-image sample photographs that ship with the package (camera, astronaut, coffee,
    chelsea, rocket, coins, moon, page, text, grass, gravel, brick, clock, hubble_deep_field) are
    converted to grayscale, scaled to ``[0, 1]`` and downscaled so that their shorter side is 112
    pixels; a 28x28 patch then shows object parts and texture rather than a flat region. Each
    patch comes from a seeded random image at a seeded random position.

    Parameters
    ----------
    n : int
        Number of patches.
    seed : int
        Seed of the image and position choices.
    size, channels : int
        Output size (28) and channels (1, or 3 to replicate).

    Returns
    -------
    Tensor, float32 ``(n, channels, size, size)`` in ``[0, 1]``.

    Taught in Part 1, section "A suite of novel data".
    """
    n = _check_n(n)
    seed = check_seed(seed)
    pool = _natural_pool()
    g = torch.Generator().manual_seed(seed)
    which = torch.randint(len(pool), (n,), generator=g)
    u = torch.rand(n, 2, generator=g)
    out = torch.empty(n, 28, 28)
    ar = torch.arange(28)
    for k, img in enumerate(pool):  # loop over the ~14 source images, not over patches
        sel = (which == k).nonzero().flatten()
        if sel.numel() == 0:
            continue
        h, w = img.shape
        top = (u[sel, 0] * (h - 27)).long().clamp_(max=h - 28)
        left = (u[sel, 1] * (w - 27)).long().clamp_(max=w - 28)
        rows = (top[:, None] + ar)[:, :, None]
        cols = (left[:, None] + ar)[:, None, :]
        out[sel] = img[rows, cols]
    return _to_shape(out[:, None], size, channels)


def uniform_noise(n: int, seed: int = 0, *, size: int = 28, channels: int = 1) -> torch.Tensor:
    """Images of i.i.d. uniform pixels in ``[0, 1]``: the simplest OOD set.

    A classifier should be unsure on pure noise; a confident prediction here is a warning sign.

    Returns
    -------
    Tensor, float32 ``(n, channels, size, size)`` in ``[0, 1]``, deterministic by ``seed``.

    Taught in Part 1, section "A suite of novel data".
    """
    n = _check_n(n)
    seed = check_seed(seed)
    size = check_positive_int(size, "size")
    channels = check_positive_int(channels, "channels")
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=g)


# ----------------------------------------------------------------------------------------------
# The novel-data suite
# ----------------------------------------------------------------------------------------------

_KINDS = ("clean", "corruption", "ood", "new_class")


@dataclass
class NovelSet:
    """One set of data a model meets at inference.

    Attributes
    ----------
    name : str
        Unique, e.g. ``"clean"``, ``"gaussian_noise-3"``, ``"ood-digits"``, ``"new_class-Sandal+Bag"``.
    kind : {"clean", "corruption", "ood", "new_class"}
        The family of novelty.
    level : int or None
        Severity 1..5 for corruptions, else None.
    x : Tensor
        float32 ``(N, C, H, W)`` images in ``[0, 1]``.
    y : Tensor or None
        int64 labels; ``None`` for OOD sets (they belong to no training class); the *original*
        labels for new-class sets.
    description : str
        One human-readable sentence.

    Taught in Part 1, section "A suite of novel data".
    """

    name: str
    kind: str
    level: int | None
    x: torch.Tensor = field(repr=False)
    y: torch.Tensor | None = field(repr=False)
    description: str = ""

    def __post_init__(self):
        check_choice(self.kind, "NovelSet kind", _KINDS)
        check_images(self.x, f"NovelSet {self.name!r} x")
        if self.y is not None:
            check_labels(self.y, n=len(self.x), name=f"NovelSet {self.name!r} y")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def challenge(self) -> str:
        """The challenge type without its level: ``"gaussian_noise"`` for ``"gaussian_noise-3"``."""
        if self.kind == "corruption" and self.level is not None and self.name.endswith(f"-{self.level}"):
            return self.name[: -len(f"-{self.level}")]
        return self.name

    def __repr__(self) -> str:
        lvl = "" if self.level is None else f", level={self.level}"
        return (f"NovelSet(name={self.name!r}, kind={self.kind!r}{lvl}, n={len(self.x)}, "
                f"x={tuple(self.x.shape)}, labelled={self.y is not None})")


def new_class_set(x: torch.Tensor, y: torch.Tensor, classes: Sequence[int],
                  names: Sequence[str] | None = None, n: int | None = None) -> NovelSet:
    """A :class:`NovelSet` of kind ``"new_class"``: the images of classes held out of training.

    Parameters
    ----------
    x, y : Tensor
        Images ``(N, C, H, W)`` in ``[0, 1]`` and int64 labels (e.g. the test split).
    classes : sequence of int
        The held-out classes, e.g. ``[5, 8]`` (Sandal, Bag).
    names : sequence of str, optional
        Either one name per entry of ``classes``, or the full list of class names indexed by
        label; default :data:`FASHION_MNIST_CLASSES`.
    n : int, optional
        Keep only the first ``n`` matching images.

    Returns
    -------
    NovelSet with ``y`` = the *original* labels (not relabelled), since the model has no output
    for these classes.

    Taught in Part 1, section "Out-of-distribution inputs and new classes".
    """
    classes = check_classes(classes)
    xs, ys = subset_classes(x, y, classes, relabel=False)
    if n is not None:
        n = _check_n(n)
        xs, ys = xs[:n], ys[:n]
    names = FASHION_MNIST_CLASSES if names is None else list(names)
    if len(names) == len(classes):
        picked = list(names)
    elif len(names) > max(classes):
        picked = [names[c] for c in classes]
    else:
        raise ValueError(f"names must have one entry per held-out class ({len(classes)}) or one per "
                         f"class index (> {max(classes)}), got {len(names)}.")
    label = "+".join(map(str, picked))
    return NovelSet(name=f"new_class-{label}", kind="new_class", level=None, x=xs, y=ys,
                    description=f"{len(xs)} images of classes held out of training: {', '.join(picked)}.")


def novel_data_suite(x: torch.Tensor, y: torch.Tensor, *, corruptions: Sequence[str] | None = None,
                     levels: Sequence[int] = (1, 2, 3, 4, 5), n: int | None = None,
                     ood_n: int | None = None, seed: int = 0,
                     include_ood: bool = True) -> list[NovelSet]:
    """Build the novel-data suite of Part 1: clean, corrupted (every type x level) and OOD sets.

    Parameters
    ----------
    x, y : Tensor
        Clean test images ``(N, C, H, W)`` in ``[0, 1]`` and their int64 labels.
    corruptions : sequence of str, optional
        Corruption names from :func:`robust_utils.corruptions.corruption_names`; ``None`` = all.
    levels : sequence of int
        Severities 1..5 to apply.
    n : int, optional
        Use only the first ``n`` images of ``x`` (take a balanced subset when loading, e.g.
        ``load_fashion_mnist("test", n=...)``, so the first ``n`` are balanced).
    ood_n : int, optional
        Images per OOD set; default = the number of clean images used.
    seed : int
        Seed of every random corruption and OOD set; the same seed gives identical tensors. The
        same seed is used at every level of a corruption, so the levels share one noise pattern
        and differ only in strength.
    include_ood : bool
        Add the three OOD sets (:func:`load_digits_ood`, :func:`natural_image_patches`,
        :func:`uniform_noise`), sized and channelled like ``x``.

    Returns
    -------
    list of NovelSet
        ``1 + len(corruptions) * len(levels) + (3 if include_ood else 0)`` sets with unique names:
        ``"clean"``, ``"<corruption>-<level>"``, ``"ood-digits"``, ``"ood-patches"``,
        ``"ood-uniform"``. New-class sets are added by the caller with :func:`new_class_set`.

    Taught in Part 1, section "A suite of novel data".
    """
    check_images(x, "x")
    check_labels(y, n=len(x), name="y")
    seed = check_seed(seed)
    if n is not None:
        n = _check_n(n)
        x, y = x[:n], y[:n]
    names = corruption_names() if corruptions is None else list(
        [corruptions] if isinstance(corruptions, str) else corruptions)
    for c in names:
        check_choice(c, "corruption", corruption_names())
    if len(set(names)) != len(names):
        raise ValueError(f"corruptions has repeated names: {names}.")
    levels = list(levels)
    for lv in levels:
        if isinstance(lv, bool) or not isinstance(lv, (int, np.integer)) or not 1 <= int(lv) <= 5:
            raise ValueError(f"levels must be integers in 1..5, got {levels!r}.")
    if len(set(levels)) != len(levels):
        raise ValueError(f"levels has repeated entries: {levels}.")

    suite = [NovelSet("clean", "clean", None, x, y,
                      f"{len(x)} clean test images (the in-distribution reference).")]
    for c in names:
        for lv in levels:
            suite.append(NovelSet(f"{c}-{lv}", "corruption", int(lv), corrupt(x, c, int(lv), seed=seed),
                                  y, f"{c.replace('_', ' ')} at severity {lv} of 5."))
    if include_ood:
        m = len(x) if ood_n is None else _check_n(ood_n, "ood_n")
        size, ch = x.shape[-1], x.shape[1]
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"OOD sets need square images, x is {tuple(x.shape[-2:])}; "
                             "pass include_ood=False.")
        dev = x.device
        suite += [
            NovelSet("ood-digits", "ood", None,
                     load_digits_ood(m, seed, size=size, channels=ch).to(dev), None,
                     "handwritten digits (scikit-learn load_digits, upsampled): near OOD."),
            NovelSet("ood-patches", "ood", None,
                     natural_image_patches(m, seed, size=size, channels=ch).to(dev), None,
                     "grayscale patches of natural photographs (scikit-image): far OOD."),
            NovelSet("ood-uniform", "ood", None,
                     uniform_noise(m, seed, size=size, channels=ch).to(dev), None,
                     "i.i.d. uniform noise images: far OOD."),
        ]
    return suite
