"""Datasets and the *novel-data suite*: the data a trained model meets at inference.

Part 1 of the book lists the sources of novel data a deployed network must handle: shifted test
distributions, corrupted and noisy data, out-of-distribution (OOD) data and new classes. This
module provides all of them for Fashion-MNIST, offline:

* :func:`load_fashion_mnist` reads the IDX files (from the data cache, the Debian package
  ``dataset-fashion-mnist``, or a torchvision download), parsed by :func:`read_idx`;
* :func:`load_mnist` and :func:`load_cifar10` wrap torchvision for online readers;
* :func:`load_digits_ood`, :func:`natural_image_patches` and :func:`uniform_noise` are OOD
  sources that ship with scikit-learn, scikit-image and PyTorch (no download);
* :func:`subset_classes` and :func:`new_class_set` hold classes out of training so that they are
  *new classes* at inference;
* :func:`novel_data_suite` bundles clean data, every corruption of :mod:`robust_utils.corruptions`
  at every severity, and the OOD sets into a list of :class:`NovelSet`.

Every image tensor is float32, shaped ``(N, C, H, W)``, with pixels in ``[0, 1]``.

Taught in Part 1, section "Challenges at Inference: novel data".
"""
from __future__ import annotations

import functools
import gzip
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import config
from ._checks import check_choice, check_images, check_labels, check_positive_int
from .corruptions import corrupt, corruption_names

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "MNIST_MEAN",
    "MNIST_STD",
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DEBIAN_FASHION_MNIST",
    "OFFLINE_ENV",
    "read_idx",
    "load_fashion_mnist",
    "load_mnist",
    "load_cifar10",
    "normalize",
    "denormalize",
    "subset_classes",
    "load_digits_ood",
    "natural_image_patches",
    "uniform_noise",
    "NovelSet",
    "new_class_set",
    "novel_data_suite",
]

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
#: Mean and standard deviation of the Fashion-MNIST training pixels (in [0, 1]).
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

#: Where the Debian/Ubuntu package ``dataset-fashion-mnist`` installs the gzipped IDX files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
#: Set ``RNI_OFFLINE=1`` to forbid downloads (CI, air-gapped machines).
OFFLINE_ENV = "RNI_OFFLINE"

_SPLITS = ("train", "test")
# File stems of the four IDX files (torchvision's and Zalando's names); ".gz" is optional.
_FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_FMNIST_SIZES = {"train": 60000, "test": 10000}

# ----------------------------------------------------------------------------------------------
# IDX files
# ----------------------------------------------------------------------------------------------

# IDX type code -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _parse_idx(raw: bytes, path: str) -> np.ndarray:
    """Parse the bytes of an IDX file (see :func:`read_idx`)."""
    if len(raw) < 4:
        raise ValueError(f"{path} is not an IDX file: it has only {len(raw)} bytes (the header alone "
                         "needs 4). The file is truncated or empty; delete it and fetch it again.")
    zero1, zero2, code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero1 != 0 or zero2 != 0 or code not in _IDX_DTYPES or not 1 <= ndim <= 8:
        raise ValueError(f"{path} is not an IDX file: bad magic number 0x{raw[:4].hex()} (expected "
                         "0x0000 + a type code in {08,09,0B,0C,0D,0E} + the number of dimensions). "
                         "Is it an HTML error page or a different format? Delete it and fetch it again.")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated: its header announces {ndim} dimensions but the file "
                         f"has only {len(raw)} bytes. Delete it and fetch it again.")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        what = "truncated" if got < expected else "longer than its header says"
        raise ValueError(f"{path} is {what}: header shape {shape} needs {expected} data bytes, "
                         f"found {got}. Delete it and fetch it again.")
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=False)


@functools.lru_cache(maxsize=16)
def _read_idx_cached(path: str, mtime_ns: int, size: int) -> np.ndarray:
    """Memoised reader keyed on the file's identity, so a changed file is re-read."""
    p = Path(path)
    try:
        if p.suffix == ".gz":
            with gzip.open(p, "rb") as fh:
                raw = fh.read()
        else:
            raw = p.read_bytes()
    except (EOFError, gzip.BadGzipFile, OSError) as err:
        if isinstance(err, (FileNotFoundError, PermissionError)):
            raise
        raise ValueError(f"{path} is a corrupt or truncated gzip file ({err}). Delete it and fetch "
                         "it again.") from None
    arr = _parse_idx(raw, path)
    arr.flags.writeable = False  # the memo is shared: nobody may modify it in place
    return arr


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the format of MNIST and Fashion-MNIST), plain or gzipped.

    The header (magic number, shape) is validated, and the data length must match the shape.
    Results are memoised in-process (keyed on path, size and modification time), so a second
    call is instant; the returned array is read-only: copy it before modifying it.

    Parameters
    ----------
    path : str or Path
        An IDX file; a name ending in ``.gz`` is decompressed on the fly.

    Returns
    -------
    numpy.ndarray
        Native-endian array with the shape stored in the header, e.g. ``(60000, 28, 28)`` uint8.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is not IDX (bad magic number), or is truncated or corrupt.

    Taught in Part 1, section "Neural network basics: the data".
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"IDX file {p} does not exist.")
    st = p.stat()
    return _read_idx_cached(str(p.resolve()), st.st_mtime_ns, st.st_size)


# ----------------------------------------------------------------------------------------------
# Fashion-MNIST
# ----------------------------------------------------------------------------------------------

def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _find_split_files(folder: Path, split: str) -> tuple[Path, Path] | None:
    """The (images, labels) files of ``split`` in ``folder``, plain or gzipped; None if missing."""
    found = []
    for stem in _FMNIST_FILES[split]:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                found.append(folder / name)
                break
        else:
            return None
    return found[0], found[1]


def _download_fashion_mnist(root: Path, split: str) -> tuple[Path, Path] | None:
    """Download with torchvision into ``root/FashionMNIST/raw``; None (and no leftovers) on failure."""
    import torchvision.datasets as tvd

    raw = root / "FashionMNIST" / "raw"
    created = [d for d in (root / "FashionMNIST", raw) if not d.exists()]
    before = set(raw.iterdir()) if raw.exists() else set()
    try:
        tvd.FashionMNIST(str(root), train=(split == "train"), download=True)
        files = _find_split_files(raw, split)
        if files is None:
            raise RuntimeError("torchvision finished but the IDX files are missing")
        for f in files:  # validate now, so a broken download is not left behind as 'found'
            read_idx(f)
        return files
    except Exception:  # noqa: BLE001 - any failure means "not available"; we clean up below
        if raw.exists():
            for f in set(raw.iterdir()) - before:
                if f.is_dir():
                    shutil.rmtree(f, ignore_errors=True)
                else:
                    f.unlink(missing_ok=True)
        for d in reversed(created):
            shutil.rmtree(d, ignore_errors=True)
        return None


def _stratified_order(y: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded ordering of ``range(len(y))`` that interleaves the classes.

    Every prefix of the ordering is class-balanced (up to the remainder), and the ordering does not
    depend on how many items are taken, so ``n=100`` is the first 100 of ``n=1000``.
    """
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(len(y), generator=g)
    yp = y[perm]
    onehot = F.one_hot(yp, int(y.max()) + 1)
    rank = (onehot.cumsum(0) * onehot).sum(1) - 1           # occurrence index within its class
    key = rank * len(y) + torch.arange(len(y))
    return perm[torch.argsort(key)]


def _subset_index(y: torch.Tensor, n: int, seed: int, what: str) -> torch.Tensor | None:
    """Indices of the seeded balanced subset of size ``n`` (None = everything, in order)."""
    n = check_positive_int(n, "n")
    if n > len(y):
        raise ValueError(f"n={n} is larger than the {what} ({len(y)} images); pass n <= {len(y)} "
                         "or n=None for all of it.")
    if n == len(y):
        return None
    return _stratified_order(y, seed)[:n]


def _check_split(split: str) -> str:
    return check_choice(split, "split", _SPLITS)


def _check_seed(seed) -> int:
    return check_positive_int(seed, "seed", minimum=0)


def _finish(x_u8: np.ndarray | torch.Tensor, y, n, seed, do_normalize, mean, std, device, what):
    """uint8 (N, C, H, W) + labels -> subset -> float [0, 1] -> (normalised) -> device."""
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).long()
    if n is not None:  # index before converting: copies only the subset
        idx = _subset_index(y, n, seed, what)
        if idx is not None:
            x_u8, y = x_u8[idx.numpy() if isinstance(x_u8, np.ndarray) else idx], y[idx]
    x = x_u8 if isinstance(x_u8, torch.Tensor) else torch.from_numpy(np.array(x_u8))
    x = x.to(torch.float32).div_(255.0)
    if do_normalize:
        x = _normalize(x, mean, std)
    dev = config.pick_device(device)
    return x.to(dev), y.to(dev)


def _not_found_message(root: Path, split: str, tried_download: bool, offline_reason: str) -> str:
    files = ", ".join(s + ".gz" for s in _FMNIST_FILES[split])
    dl = ("a torchvision download into it was tried and failed (no network?)" if tried_download
          else f"downloading was not attempted ({offline_reason})")
    return (f"Fashion-MNIST ({split} split) was not found. Looked in the data cache "
            f"{root / 'FashionMNIST' / 'raw'} and in {DEBIAN_FASHION_MNIST}; {dl}.\n"
            "Fix it in one of two ways:\n"
            "  1. offline: `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu; installs the "
            f"files into {DEBIAN_FASHION_MNIST}), or copy the IDX files ({files}) into "
            f"{root / 'FashionMNIST' / 'raw'};\n"
            "  2. online: run once with network access (and without RNI_OFFLINE=1, download not "
            "False) so torchvision can download the files into the data cache.")


def load_fashion_mnist(split: str = "train", n: int | None = None, *, normalize: bool = False,
                       seed: int = 0, root: str | os.PathLike | None = None,
                       download: bool | None = None,
                       device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Load Fashion-MNIST as tensors, offline when possible.

    The files are looked up in this order:

    1. the data cache ``root`` (default :func:`robust_utils.config.data_dir`), in torchvision's
       layout ``<root>/FashionMNIST/raw/`` (gzipped ``.gz`` or decompressed ``-ubyte`` files);
    2. the Debian package folder :data:`DEBIAN_FASHION_MNIST` (``apt-get install
       dataset-fashion-mnist``), read in place;
    3. a torchvision download into ``<root>/FashionMNIST/raw/``, if downloading is allowed.

    The raw uint8 arrays are memoised in-process, so repeated loads cost only the float
    conversion (the whole training set loads in well under a second).

    Parameters
    ----------
    split : {"train", "test"}
        The 60 000 training or 10 000 test images.
    n : int, optional
        Take a deterministic, class-balanced subset of ``n`` images (a seeded permutation that
        interleaves the classes; the first ``k`` images of any subset are themselves balanced and
        ``n=100`` is a prefix of ``n=1000`` for the same seed). ``None`` = the whole split, in file
        order.
    normalize : bool
        Standardise with :data:`FASHION_MNIST_MEAN` / :data:`FASHION_MNIST_STD`. The package's models
        normalise internally, so the default (``False``, pixels in ``[0, 1]``) is usually right.
    seed : int
        Seed of the subset (ignored when ``n`` is None).
    root : path, optional
        The data cache; default ``config.data_dir()`` (env ``RNI_DATA_DIR``).
    download : bool, optional
        Allow the torchvision download. ``None`` (default) allows it unless the environment
        variable ``RNI_OFFLINE=1`` is set.
    device : str or torch.device
        Where to put the tensors (``"cpu"``, ``"cuda"``, ``"auto"``).

    Returns
    -------
    x : Tensor
        float32, ``(N, 1, 28, 28)``, in ``[0, 1]`` (or standardised).
    y : Tensor
        int64, ``(N,)``, class indices into :data:`FASHION_MNIST_CLASSES`.

    Raises
    ------
    FileNotFoundError
        If the data is nowhere and cannot be downloaded; the message names both fixes.

    Taught in Part 1, section "Neural network basics: the data".
    """
    split = _check_split(split)
    seed = _check_seed(seed)
    if n is not None:
        check_positive_int(n, "n")
    if download is not None and not isinstance(download, bool):
        raise TypeError(f"download must be True, False or None (= allowed unless {OFFLINE_ENV}=1), "
                        f"got {download!r}.")
    root = Path(root).expanduser() if root is not None else config.data_dir()

    files = _find_split_files(root / "FashionMNIST" / "raw", split)
    if files is None:
        files = _find_split_files(Path(DEBIAN_FASHION_MNIST), split)
    tried = False
    if files is None:
        allowed = (not _offline()) if download is None else download
        if allowed:
            tried = True
            files = _download_fashion_mnist(root, split)
        if files is None:
            reason = ("download=False" if download is False else f"{OFFLINE_ENV}=1 is set")
            raise FileNotFoundError(_not_found_message(root, split, tried, reason))

    images, labels = read_idx(files[0]), read_idx(files[1])
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1 \
            or len(images) != len(labels):
        raise ValueError(f"{files[0]} / {files[1]} do not look like Fashion-MNIST: images "
                         f"{images.shape}, labels {labels.shape} (expected (N, 28, 28) and (N,)).")
    if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{files[1]} has label {int(labels.max())}; Fashion-MNIST labels are 0..9.")
    return _finish(images[:, None], labels.astype(np.int64), n, seed, normalize,
                   FASHION_MNIST_MEAN, FASHION_MNIST_STD, device, f"Fashion-MNIST {split} split")


# ----------------------------------------------------------------------------------------------
# MNIST and CIFAR-10 (torchvision; online readers)
# ----------------------------------------------------------------------------------------------

def _torchvision_dataset(cls_name: str, root, split: str, download: bool):
    import torchvision.datasets as tvd

    if not isinstance(download, bool):
        raise TypeError(f"download must be True or False, got {download!r}.")
    root = Path(root).expanduser() if root is not None else config.data_dir()
    allowed = download and not _offline()
    cls = getattr(tvd, cls_name)
    try:
        return cls(str(root), train=(split == "train"), download=allowed)
    except Exception as err:  # noqa: BLE001 - torchvision raises RuntimeError/URLError/...
        why = ("downloading is disabled (download=False or RNI_OFFLINE=1)" if not allowed
               else "the download failed (no network?)")
        raise FileNotFoundError(f"{cls_name} ({split} split) is not in {root} and {why}: {err}. "
                                f"Run once online with download=True so torchvision can fetch it "
                                f"into {root}.") from None


def load_mnist(split: str = "train", n: int | None = None, root: str | os.PathLike | None = None,
               download: bool = True, *, normalize: bool = False, seed: int = 0,
               device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Load MNIST handwritten digits through torchvision (downloads on first use).

    Same conventions as :func:`load_fashion_mnist`: x float32 ``(N, 1, 28, 28)`` in ``[0, 1]``
    (standardised with :data:`MNIST_MEAN` / :data:`MNIST_STD` if ``normalize``), y int64; ``n``
    takes the same seeded class-balanced subset. ``RNI_OFFLINE=1`` disables the download.

    Taught in Part 1, section "Challenges at Inference: out-of-distribution data" (MNIST is a
    classic OOD set for a Fashion-MNIST model).
    """
    split = _check_split(split)
    seed = _check_seed(seed)
    ds = _torchvision_dataset("MNIST", root, split, download)
    x = torch.as_tensor(ds.data)
    if x.dim() != 3:
        raise ValueError(f"MNIST images have unexpected shape {tuple(x.shape)}; expected (N, 28, 28).")
    return _finish(x[:, None].to(torch.uint8), ds.targets, n, seed, normalize, MNIST_MEAN,
                   MNIST_STD, device, f"MNIST {split} split")


def load_cifar10(split: str = "train", n: int | None = None, root: str | os.PathLike | None = None,
                 download: bool = True, *, normalize: bool = False, seed: int = 0,
                 device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Load CIFAR-10 through torchvision (downloads about 170 MB on first use).

    x float32 ``(N, 3, 32, 32)`` in ``[0, 1]`` (standardised per channel with
    :data:`CIFAR10_MEAN` / :data:`CIFAR10_STD` if ``normalize``), y int64 indices into
    :data:`CIFAR10_CLASSES`; ``n`` takes a seeded class-balanced subset. ``RNI_OFFLINE=1``
    disables the download.

    Taught in Part 1, section "Robustness in deep learning" (a harder, colour benchmark).
    """
    split = _check_split(split)
    seed = _check_seed(seed)
    ds = _torchvision_dataset("CIFAR10", root, split, download)
    x = np.asarray(ds.data)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"CIFAR-10 images have unexpected shape {x.shape}; expected (N, 32, 32, 3).")
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(torch.uint8)
    return _finish(x, ds.targets, n, seed, normalize, CIFAR10_MEAN, CIFAR10_STD, device,
                   f"CIFAR-10 {split} split")


# ----------------------------------------------------------------------------------------------
# Normalisation and class subsets
# ----------------------------------------------------------------------------------------------

def _stats(v, x: torch.Tensor, name: str) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=x.dtype, device=x.device).flatten()
    if t.numel() not in (1, x.shape[1]):
        raise ValueError(f"{name} must be a number or one value per channel ({x.shape[1]}), "
                         f"got {t.numel()} values.")
    return t.view(1, -1, 1, 1)


def _normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    s = _stats(std, x, "std")
    if (s <= 0).any():
        raise ValueError(f"std must be positive, got {std!r}.")
    return (x - _stats(mean, x, "mean")) / s


def normalize(x: torch.Tensor, mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD) -> torch.Tensor:
    """Standardise pixels: ``(x - mean) / std`` (per channel if sequences are given).

    Parameters
    ----------
    x : Tensor
        ``(N, C, H, W)`` pixels in ``[0, 1]``.
    mean, std : float or sequence of C floats
        Defaults are the Fashion-MNIST training statistics.

    Taught in Part 1, section "Neural network basics: the data".
    """
    check_images(x, "x")
    return _normalize(x, mean, std)


def denormalize(x: torch.Tensor, mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD) -> torch.Tensor:
    """Undo :func:`normalize`: ``x * std + mean`` (for displaying standardised images).

    Taught in Part 1, section "Neural network basics: the data".
    """
    check_images(x, "x", value_range=None)
    s = _stats(std, x, "std")
    return x * s + _stats(mean, x, "mean")


def _check_classes(classes, name: str = "classes") -> list[int]:
    if isinstance(classes, torch.Tensor):
        classes = classes.tolist()
    if isinstance(classes, (int, np.integer)) or not isinstance(classes, Sequence) \
            and not isinstance(classes, np.ndarray):
        raise TypeError(f"{name} must be a sequence of class indices, e.g. [5, 9], got {classes!r}.")
    out = [check_positive_int(c, f"each entry of {name}", minimum=0) for c in classes]
    if not out:
        raise ValueError(f"{name} is empty; pass at least one class index.")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} has repeated entries: {out}.")
    return out


def subset_classes(x: torch.Tensor, y: torch.Tensor, classes: Sequence[int],
                   relabel: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep only the images of the given classes.

    Used to create *new classes at inference*: train on 8 Fashion-MNIST classes
    (``subset_classes(x, y, kept)``) and show the model the 2 held-out ones, which it has never
    seen and must still assign to one of the 8 (see :func:`new_class_set`).

    Parameters
    ----------
    x : Tensor
        ``(N, C, H, W)`` images (any value range).
    y : Tensor
        ``(N,)`` int64 labels.
    classes : sequence of int
        The classes to keep, distinct.
    relabel : bool
        Map ``classes[i]`` to ``i`` (so a model with ``len(classes)`` outputs can be trained);
        ``False`` keeps the original labels.

    Returns
    -------
    (x_subset, y_subset), in the original order.

    Taught in Part 1, section "Challenges at Inference: new classes".
    """
    check_images(x, "x", value_range=None)
    check_labels(y, n=len(x), name="y")
    classes = _check_classes(classes)
    cls = torch.as_tensor(classes, device=y.device)
    mask = torch.isin(y, cls)
    if not mask.any():
        present = sorted(set(y.tolist()))
        raise ValueError(f"none of the classes {classes} occur in y (present: {present}).")
    ys = y[mask]
    if relabel:
        table = torch.full((max(int(y.max()), max(classes)) + 1,), -1, dtype=torch.long, device=y.device)
        table[cls] = torch.arange(len(classes), device=y.device)
        ys = table[ys]
    return x[mask], ys


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

    Taught in Part 1, section "Challenges at Inference: out-of-distribution data".
    """
    seed = _check_seed(seed)
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

    Taught in Part 1, section "Challenges at Inference: out-of-distribution data".
    """
    n = _check_n(n)
    seed = _check_seed(seed)
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

    Taught in Part 1, section "Challenges at Inference: out-of-distribution data".
    """
    n = _check_n(n)
    seed = _check_seed(seed)
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

    Taught in Part 1, section "Challenges at Inference: novel data".
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

    Taught in Part 1, section "Challenges at Inference: new classes".
    """
    classes = _check_classes(classes)
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

    Taught in Part 1, section "Challenges at Inference: novel data".
    """
    check_images(x, "x")
    check_labels(y, n=len(x), name="y")
    seed = _check_seed(seed)
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
