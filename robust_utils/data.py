"""Datasets: the loaders, normalisation and class subsets of the book.

* :func:`load_fashion_mnist` reads the IDX files (from the data cache, the Debian package
  ``dataset-fashion-mnist``, or a torchvision download), parsed by :func:`read_idx`;
* :func:`load_mnist` and :func:`load_cifar10` wrap torchvision for online readers;
* :func:`normalize` / :func:`denormalize` apply and undo the per-channel statistics;
* :func:`subset_classes` holds classes out of training so that they are *new classes* at
  inference (:func:`robust_utils.novel.new_class_set`).

The novel data a trained model meets at inference (corruptions, OOD sets, new classes, and the
suite that bundles them) are in :mod:`robust_utils.novel`.

Every image tensor is float32, shaped ``(N, C, H, W)``, with pixels in ``[0, 1]``.

Taught in Part 1, section "Novel data at inference".
"""
from __future__ import annotations

import functools
import gzip
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import config
from ._checks import check_choice, check_images, check_labels, check_positive_int, check_seed

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
    "check_classes",
    "subset_classes",
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

    Taught in Part 1, section "Novel data at inference".
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

    Taught in Part 1, section "Novel data at inference".
    """
    split = _check_split(split)
    seed = check_seed(seed)
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

    Taught in Part 1, section "Out-of-distribution inputs and new classes" (MNIST is a
    classic OOD set for a Fashion-MNIST model).
    """
    split = _check_split(split)
    seed = check_seed(seed)
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

    Taught in Part 1, section "Novel data at inference" (a harder, colour benchmark).
    """
    split = _check_split(split)
    seed = check_seed(seed)
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

    Taught in Part 1, section "Novel data at inference".
    """
    check_images(x, "x")
    return _normalize(x, mean, std)


def denormalize(x: torch.Tensor, mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD) -> torch.Tensor:
    """Undo :func:`normalize`: ``x * std + mean`` (for displaying standardised images).

    Taught in Part 1, section "Novel data at inference".
    """
    check_images(x, "x", value_range=None)
    s = _stats(std, x, "std")
    return x * s + _stats(mean, x, "mean")


def check_classes(classes, name: str = "classes") -> list[int]:
    """A non-empty sequence (list, tuple, array or 1-D tensor) of distinct class indices, as ints.

    Taught in Part 1, section "Out-of-distribution inputs and new classes".
    """
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
    seen and must still assign to one of the 8 (see :func:`robust_utils.novel.new_class_set`).

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

    Taught in Part 1, section "Out-of-distribution inputs and new classes".
    """
    check_images(x, "x", value_range=None)
    check_labels(y, n=len(x), name="y")
    classes = check_classes(classes)
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
