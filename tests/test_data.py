"""Tests of robust_utils.data: IDX parsing, dataset loading, normalisation and class subsets.

Everything runs on tiny fake files in tmp_path; nothing touches the network.
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from robust_utils import data as D

# --------------------------------------------------------------------------- helpers


def write_idx(path: Path, arr: np.ndarray, *, gz: bool | None = None) -> Path:
    """Write ``arr`` as an IDX file (gzipped when the name ends in .gz)."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}
    code = codes[arr.dtype]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    gz = path.name.endswith(".gz") if gz is None else gz
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)
    return path


def fake_fmnist(folder: Path, *, n_train: int = 20, n_test: int = 10, fill: int | None = None,
                gz: bool = True, seed: int = 0) -> dict:
    """Tiny Fashion-MNIST IDX files (2 train / 1 test image per class) in ``folder``."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        imgs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8) if fill is None \
            else np.full((n, 28, 28), fill, dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        stem_i, stem_l = D._FMNIST_FILES[split]
        ext = ".gz" if gz else ""
        write_idx(folder / (stem_i + ext), imgs)
        write_idx(folder / (stem_l + ext), labels)
        out[split] = (imgs, labels)
    return out


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network, and an empty stand-in for the Debian folder."""
    monkeypatch.setenv(D.OFFLINE_ENV, "1")
    debian = tmp_path / "debian"
    debian.mkdir()
    monkeypatch.setattr(D, "DEBIAN_FASHION_MNIST", debian)
    return debian


@pytest.fixture
def fake_root(tmp_path, offline):
    root = tmp_path / "cache"
    arrays = fake_fmnist(root / "FashionMNIST" / "raw")
    return root, arrays


# --------------------------------------------------------------------------- read_idx

@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_read_idx_round_trip(tmp_path, name):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    out = D.read_idx(write_idx(tmp_path / name, arr))
    assert out.dtype == np.uint8 and np.array_equal(out, arr)
    ints = np.array([1, -2, 300000], dtype=np.int32)
    assert np.array_equal(D.read_idx(write_idx(tmp_path / ("i" + name), ints)), ints)
    floats = np.array([[0.5, -1.25]], dtype=np.float32)
    assert np.array_equal(D.read_idx(write_idx(tmp_path / ("f" + name), floats)), floats)


def test_read_idx_memo_sees_changed_file(tmp_path):
    p = write_idx(tmp_path / "m-ubyte", np.zeros(3, dtype=np.uint8))
    assert D.read_idx(p) is D.read_idx(p)           # memoised
    assert not D.read_idx(p).flags.writeable          # shared memo is read-only
    write_idx(p, np.ones(5, dtype=np.uint8))
    assert np.array_equal(D.read_idx(p), np.ones(5))  # new size/mtime -> re-read


def test_read_idx_bad_magic(tmp_path):
    p = tmp_path / "bad-ubyte"
    p.write_bytes(b"<html>not found</html>")
    with pytest.raises(ValueError, match="not an IDX file: bad magic number"):
        D.read_idx(p)
    p.write_bytes(b"\x00")
    with pytest.raises(ValueError, match="truncated or empty"):
        D.read_idx(p)


def test_read_idx_truncated(tmp_path):
    arr = np.zeros((4, 28, 28), dtype=np.uint8)
    p = write_idx(tmp_path / "t-ubyte", arr)
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(ValueError, match="is truncated: header shape \\(4, 28, 28\\)"):
        D.read_idx(p)
    g = write_idx(tmp_path / "t-ubyte.gz", arr)
    g.write_bytes(g.read_bytes()[:-20])
    with pytest.raises(ValueError, match="corrupt or truncated gzip"):
        D.read_idx(g)
    p.write_bytes(bytes([0, 0, 8, 3]) + b"\x00\x00")  # header cut short
    with pytest.raises(ValueError, match="truncated"):
        D.read_idx(p)


def test_read_idx_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        D.read_idx(tmp_path / "nope")


# --------------------------------------------------------------------------- Fashion-MNIST

def test_load_fashion_mnist_from_cache(fake_root):
    root, arrays = fake_root
    x, y = D.load_fashion_mnist("train", root=root)
    assert x.shape == (20, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (20,) and y.dtype == torch.int64
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    imgs, labels = arrays["train"]
    torch.testing.assert_close(x[:, 0], torch.from_numpy(imgs).float() / 255)
    assert y.tolist() == labels.tolist()
    xt, yt = D.load_fashion_mnist("test", root=root)
    assert xt.shape == (10, 1, 28, 28) and yt.tolist() == list(range(10))


def test_load_fashion_mnist_normalize(fake_root):
    root, _ = fake_root
    x, _ = D.load_fashion_mnist("test", root=root)
    xn, _ = D.load_fashion_mnist("test", root=root, normalize=True)
    torch.testing.assert_close(xn, (x - D.FASHION_MNIST_MEAN) / D.FASHION_MNIST_STD)


def test_load_fashion_mnist_subset_is_deterministic_and_balanced(fake_root):
    root, _ = fake_root
    x1, y1 = D.load_fashion_mnist("train", n=10, root=root, seed=3)
    x2, y2 = D.load_fashion_mnist("train", n=10, root=root, seed=3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert sorted(y1.tolist()) == list(range(10))           # one per class
    x3, _ = D.load_fashion_mnist("train", n=10, root=root, seed=4)
    assert not torch.equal(x1, x3)
    x5, y5 = D.load_fashion_mnist("train", n=5, root=root, seed=3)
    assert torch.equal(x5, x1[:5]) and torch.equal(y5, y1[:5])  # n=5 is a prefix of n=10


def test_load_fashion_mnist_bad_arguments(fake_root):
    root, _ = fake_root
    with pytest.raises(ValueError, match="unknown split 'val'; choose one of: train, test"):
        D.load_fashion_mnist("val", root=root)
    with pytest.raises(ValueError, match="n=21 is larger than the Fashion-MNIST train split"):
        D.load_fashion_mnist("train", n=21, root=root)
    with pytest.raises(ValueError, match="n must be >= 1"):
        D.load_fashion_mnist("train", n=0, root=root)
    with pytest.raises(TypeError, match="download must be True, False or None"):
        D.load_fashion_mnist("train", root=root, download="yes")


def test_decompressed_files_accepted(tmp_path, offline):
    root = tmp_path / "cache"
    arrays = fake_fmnist(root / "FashionMNIST" / "raw", gz=False)
    x, y = D.load_fashion_mnist("test", root=root)
    assert y.tolist() == arrays["test"][1].tolist() and x.shape == (10, 1, 28, 28)


def test_cache_beats_debian_folder(tmp_path, offline):
    root = tmp_path / "cache"
    fake_fmnist(root / "FashionMNIST" / "raw", fill=255)
    fake_fmnist(offline, fill=0)
    x, _ = D.load_fashion_mnist("test", root=root)
    assert float(x.min()) == 1.0                       # from the cache
    x, _ = D.load_fashion_mnist("test", root=tmp_path / "empty_cache")
    assert float(x.max()) == 0.0                       # falls back to the Debian folder
    assert not (tmp_path / "empty_cache" / "FashionMNIST").exists()  # read in place


def test_offline_and_missing_gives_one_clear_error(tmp_path, offline):
    root = tmp_path / "cache"
    root.mkdir()
    with pytest.raises(FileNotFoundError) as info:
        D.load_fashion_mnist("train", root=root)
    msg = str(info.value)
    assert "sudo apt-get install dataset-fashion-mnist" in msg
    assert "torchvision can download" in msg and "RNI_OFFLINE=1" in msg
    assert str(root / "FashionMNIST" / "raw") in msg
    assert list(root.iterdir()) == []                  # nothing partial left behind


class _FailingDownload:
    """Stands in for torchvision.datasets.FashionMNIST: writes a partial file, then fails."""

    def __init__(self, root, train=True, download=False):
        raw = Path(root) / "FashionMNIST" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        (raw / "train-images-idx3-ubyte.gz").write_bytes(b"partial")
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")


def test_failed_download_cleans_up(tmp_path, offline, monkeypatch):
    import torchvision.datasets as tvd

    monkeypatch.setattr(tvd, "FashionMNIST", _FailingDownload)
    root = tmp_path / "cache"
    root.mkdir()
    with pytest.raises(FileNotFoundError, match="was tried and failed"):
        D.load_fashion_mnist("train", root=root, download=True)
    assert list(root.iterdir()) == []


def test_download_route_used_when_online(tmp_path, offline, monkeypatch):
    import torchvision.datasets as tvd

    calls = []

    class FakeDownload:
        def __init__(self, root, train=True, download=False):
            calls.append((root, train, download))
            fake_fmnist(Path(root) / "FashionMNIST" / "raw")

    monkeypatch.delenv(D.OFFLINE_ENV)
    monkeypatch.setattr(tvd, "FashionMNIST", FakeDownload)
    root = tmp_path / "cache"
    x, y = D.load_fashion_mnist("test", root=root)       # download=None: allowed when online
    assert calls == [(str(root), False, True)] and x.shape == (10, 1, 28, 28)
    with pytest.raises(FileNotFoundError, match="download=False"):
        D.load_fashion_mnist("test", root=tmp_path / "other", download=False)


@pytest.mark.skipif(not all((D.DEBIAN_FASHION_MNIST / f).is_file() for f in
                            ("train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz")),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_real_debian_files(tmp_path):
    x, y = D.load_fashion_mnist("train", root=tmp_path)
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.float32
    assert torch.bincount(y).tolist() == [6000] * 10
    assert abs(float(x.mean()) - D.FASHION_MNIST_MEAN) < 1e-3
    assert abs(float(x.std()) - D.FASHION_MNIST_STD) < 1e-3
    xt, yt = D.load_fashion_mnist("test", n=1000, root=tmp_path)
    assert xt.shape == (1000, 1, 28, 28) and torch.bincount(yt).tolist() == [100] * 10


# --------------------------------------------------------------------------- MNIST / CIFAR-10

class _FakeTV:
    """A fake torchvision dataset class recording how it was called."""

    calls: list = []

    def __init__(self, root, train=True, download=False):
        type(self).calls.append((root, train, download))
        n = 30 if train else 10
        self.targets = torch.arange(n) % 10 if self.kind == "mnist" else list(range(10)) * (n // 10)
        rng = np.random.default_rng(0)
        if self.kind == "mnist":
            self.data = torch.from_numpy(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        else:
            self.data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_load_mnist_with_fake_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    monkeypatch.delenv(D.OFFLINE_ENV, raising=False)
    fake = type("FakeMNIST", (_FakeTV,), {"kind": "mnist", "calls": []})
    monkeypatch.setattr(tvd, "MNIST", fake)
    x, y = D.load_mnist("train", root=tmp_path)
    assert fake.calls == [(str(tmp_path), True, True)]
    assert x.shape == (30, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    xs, ys = D.load_mnist("test", n=10, root=tmp_path, normalize=True, seed=1)
    assert xs.shape == (10, 1, 28, 28) and sorted(ys.tolist()) == list(range(10))
    assert float(xs.min()) < 0                        # standardised
    monkeypatch.setenv(D.OFFLINE_ENV, "1")
    D.load_mnist("test", root=tmp_path)
    assert fake.calls[-1][2] is False                 # RNI_OFFLINE=1 disables the download


def test_load_cifar10_with_fake_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    fake = type("FakeCIFAR", (_FakeTV,), {"kind": "cifar", "calls": []})
    monkeypatch.setattr(tvd, "CIFAR10", fake)
    x, y = D.load_cifar10("test", root=tmp_path)
    assert x.shape == (10, 3, 32, 32) and x.dtype == torch.float32 and y.tolist() == list(range(10))
    raw = fake(str(tmp_path), train=False).data
    torch.testing.assert_close(x[3, 1], torch.from_numpy(raw[3, :, :, 1]).float() / 255)
    xn, _ = D.load_cifar10("test", root=tmp_path, normalize=True)
    mean = torch.tensor(D.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(D.CIFAR10_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(xn, (x - mean) / std)


def test_torchvision_failure_is_clear(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    class Broken:
        def __init__(self, *a, **k):
            raise RuntimeError("Dataset not found. You can use download=True to download it")

    monkeypatch.setattr(tvd, "MNIST", Broken)
    with pytest.raises(FileNotFoundError, match="MNIST \\(train split\\) is not in .*download=True"):
        D.load_mnist("train", root=tmp_path, download=False)


# --------------------------------------------------------------------------- normalise, subsets

def test_normalize_round_trip():
    x = torch.rand(3, 1, 4, 4)
    xn = D.normalize(x)
    torch.testing.assert_close(xn, (x - 0.2860) / 0.3530)
    torch.testing.assert_close(D.denormalize(xn), x)
    rgb = torch.rand(2, 3, 4, 4)
    out = D.normalize(rgb, mean=(0.1, 0.2, 0.3), std=(1.0, 2.0, 4.0))
    torch.testing.assert_close(out[:, 2], (rgb[:, 2] - 0.3) / 4.0)
    with pytest.raises(ValueError, match="one value per channel \\(3\\)"):
        D.normalize(rgb, mean=(0.1, 0.2))
    with pytest.raises(ValueError, match="std must be positive"):
        D.normalize(x, std=0.0)
    with pytest.raises(ValueError, match="must lie in"):
        D.normalize(xn * 10)                          # already normalised


def test_subset_classes_relabels_in_given_order():
    x = torch.rand(10, 1, 4, 4)
    y = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    xs, ys = D.subset_classes(x, y, [7, 2])
    assert ys.tolist() == [1, 0] and torch.equal(xs, x[[2, 7]])
    _, yk = D.subset_classes(x, y, [7, 2], relabel=False)
    assert yk.tolist() == [2, 7]
    with pytest.raises(ValueError, match="repeated"):
        D.subset_classes(x, y, [1, 1])
    with pytest.raises(TypeError, match="sequence of class indices"):
        D.subset_classes(x, y, 3)
    with pytest.raises(ValueError, match="none of the classes"):
        D.subset_classes(x, y % 3, [5])
    with pytest.raises(ValueError, match="9 entries but there are 10 images"):
        D.subset_classes(x, y[:9], [1])
