"""Profiles, paths, devices and seeds: the knobs every notebook turns in its first cells.

Three profiles trade fidelity for time:

``smoke``
    CI and quick checks: tiny subsets and one short epoch, seconds per notebook. Numbers are
    meaningless except as a check that the code runs and the assertions hold.
``laptop``
    A reader on a CPU: minutes per notebook, results qualitatively right.
``full``
    One GPU: paper-scale data and epochs.

``auto`` (the default) means ``full`` when CUDA is available and ``laptop`` otherwise. The
environment variable ``RNI_PROFILE`` overrides ``auto``; an explicit profile passed by
papermill (the notebook's ``PROFILE`` parameter) overrides both.

Taught in the Introduction, section "Profiles".
"""
from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ._checks import check_seed

__all__ = [
    "Profile",
    "PROFILES",
    "PROFILE_ENV",
    "DATA_ENV",
    "resolve_profile",
    "pick_device",
    "seed_everything",
    "data_dir",
    "checkpoint_dir",
    "writable_dir",
    "progress_bar",
]

PROFILE_ENV = "RNI_PROFILE"
DEVICE_ENV = "RNI_DEVICE"
DATA_ENV = "RNI_DATA_DIR"
PROGRESS_ENV = "RNI_PROGRESS"


@dataclass(frozen=True)
class Profile:
    """How much data and compute a notebook may use.

    Attributes
    ----------
    name: the profile's name (``smoke``, ``laptop`` or ``full``).
    n_train: training images used (``None`` = the whole training set).
    n_test: test images used for evaluation (``None`` = the whole test set).
    epochs: training epochs of the chapter classifiers.
    batch_size: training batch size.
    n_novel: images per novel-data set (one corruption type at one level, one OOD source, ...).
    n_eval: images used by expensive per-image analyses (per-sample gradients, embeddings).

    Taught in the Introduction, section "Profiles".
    """

    name: str
    n_train: int | None
    n_test: int | None
    epochs: int
    batch_size: int
    n_novel: int
    n_eval: int

    def as_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, **kwargs) -> "Profile":
        """A copy with some fields changed, e.g. ``profile.with_overrides(epochs=2)``."""
        unknown = set(kwargs) - set(self.as_dict())
        if unknown:
            raise ValueError(f"unknown Profile field(s) {sorted(unknown)}; valid fields: "
                             f"{sorted(self.as_dict())}.")
        return replace(self, **kwargs)


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", n_train=4000, n_test=500, epochs=2, batch_size=128,
                     n_novel=100, n_eval=200),
    "laptop": Profile("laptop", n_train=None, n_test=None, epochs=4, batch_size=128,
                      n_novel=1000, n_eval=1000),
    "full": Profile("full", n_train=None, n_test=None, epochs=15, batch_size=128,
                    n_novel=10000, n_eval=5000),
}


def resolve_profile(name: str | Profile | None = "auto") -> Profile:
    """Turn a profile name into a :class:`Profile`.

    ``"auto"`` (or ``None``) reads the ``RNI_PROFILE`` environment variable, and without it picks
    ``full`` when CUDA is available and ``laptop`` otherwise.

    Taught in the Introduction, section "Profiles".
    """
    if isinstance(name, Profile):
        return name
    if name is None or name == "auto":
        env = os.environ.get(PROFILE_ENV, "").strip()
        if env and env != "auto":
            if env not in PROFILES:
                raise ValueError(f"environment variable {PROFILE_ENV}={env!r} is not a profile; "
                                 f"use one of: {', '.join(PROFILES)} (or unset it).")
            return PROFILES[env]
        return PROFILES["full" if torch.cuda.is_available() else "laptop"]
    if not isinstance(name, str) or name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; use one of: auto, {', '.join(PROFILES)}.")
    return PROFILES[name]


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    """Choose the compute device.

    ``"auto"`` (or ``None``) reads ``RNI_DEVICE`` and otherwise picks CUDA when available, else
    CPU. An explicit ``"cuda"`` on a machine without CUDA raises with a clear message.

    Taught in the Introduction, section "Opening a chapter in Colab".
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device is None or device == "auto":
        device = os.environ.get(DEVICE_ENV, "").strip() or "auto"
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was requested but CUDA is not available on this machine; "
                           "use device='cpu' or 'auto'.")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device type {dev.type!r} is not supported by the book; use 'cpu' or 'cuda'.")
    return dev


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) for reproducible notebooks.

    Taught in the Introduction, section "Opening a chapter in Colab".
    """
    seed = check_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def _repo_root() -> Path | None:
    """The repository root when the package runs from a checkout (an editable install)."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").exists() and (root / "notebooks").is_dir() else None


def data_dir() -> Path:
    """Where datasets and checkpoints are cached.

    ``RNI_DATA_DIR`` if set; else the repository's ``data/`` folder when running from a checkout;
    else ``./data`` in the working directory (e.g. in Colab after ``pip install``). The folder is
    not created here: reading data that lie elsewhere (Debian's Fashion-MNIST) works even when
    this folder cannot be written; :func:`writable_dir` creates it when something is saved.

    Taught in the Introduction, section "Data without internet".
    """
    env = os.environ.get(DATA_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    root = _repo_root()
    return root / "data" if root is not None else Path.cwd() / "data"


def checkpoint_dir() -> Path:
    """The folder of the trained-model cache: ``<data_dir>/checkpoints`` (not created here).

    Taught in the Introduction, section "The model cache".
    """
    return data_dir() / "checkpoints"


def writable_dir(path) -> Path:
    """Create ``path`` (and its parents) if needed and check that files can be written there.

    Raises a :class:`PermissionError` that names the folder and the fix (set ``RNI_DATA_DIR``)
    instead of a bare traceback from deep inside a save.

    Taught in the Introduction, section "The model cache".
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} exists but is not a folder; set {DATA_ENV} to a writable folder.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PermissionError(f"cannot create the folder {path} ({e.strerror or e}); set the environment "
                              f"variable {DATA_ENV} to a writable folder.") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"the folder {path} is not writable; set the environment variable "
                              f"{DATA_ENV} to a writable folder.")
    return path


def progress_mode() -> str:
    """``RNI_PROGRESS`` as set (``"off"``, ``"text"``, or ``""`` for the default bars)."""
    return os.environ.get(PROGRESS_ENV, "").strip()


def progress_bar(*args, **kwargs):
    """A tqdm progress bar suited to where the code runs.

    Interactive readers (Jupyter, Colab, a terminal) get ``tqdm.auto``'s bar. With
    ``RNI_PROGRESS=text`` the bar is plain text on stderr, updated rarely (for logs). With
    ``RNI_PROGRESS=off``, which the book's runner sets so that the rendered book carries no
    progress-bar debris, the bar is disabled and the loop runs silently.

    Taught in Part 3, section "Monte-Carlo dropout and deep ensembles".
    """
    mode = progress_mode()
    if mode == "off":
        from tqdm.std import tqdm as text_tqdm
        kwargs["disable"] = True
        return text_tqdm(*args, **kwargs)
    if mode == "text":
        import sys

        from tqdm.std import tqdm as text_tqdm

        class _QuietTextBar(text_tqdm):
            """Postfix updates wait for the next scheduled refresh instead of forcing one."""

            def set_postfix(self, ordered_dict=None, refresh=False, **kw):
                super().set_postfix(ordered_dict, refresh=refresh, **kw)

        kwargs.setdefault("file", sys.stderr)
        kwargs.setdefault("mininterval", 60.0)
        kwargs.setdefault("ascii", True)
        return _QuietTextBar(*args, **kwargs)
    from tqdm.auto import tqdm as auto_tqdm
    return auto_tqdm(*args, **kwargs)
