"""The trained-model cache: every chapter asks for a model by *how it was made*.

A :class:`Recipe` names a model by its architecture, data and training settings. Its
:attr:`Recipe.key` (readable prefix + a hash of every field) names the checkpoint file, so a
change to any setting gives a new file and never silently reuses a stale model.

:func:`get_model` loads ``<checkpoint_dir>/<key>.safetensors`` when it exists and verifies,
and otherwise trains the model with the package's own recipe and saves it. Checkpoints are

* **safe**: weights are stored with `safetensors <https://huggingface.co/docs/safetensors>`_,
  which holds raw tensors only; nothing is ever unpickled, so a downloaded checkpoint cannot
  run code;
* **verified**: a JSON sidecar ``<key>.json`` records the SHA-256 of the weights file, which is
  checked before loading; a corrupted or tampered file raises :class:`CorruptCheckpointError`
  (and :func:`get_model` warns and retrains);
* **atomic**: files are written to a temporary file in the same folder, flushed to disk and
  renamed into place, so an interrupted run never leaves a half-written checkpoint.

Taught in the Introduction, section "The model cache".
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import inspect
import json
import os
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn

from ._checks import check_choice
from .config import PROFILES, checkpoint_dir, pick_device, resolve_profile, seed_everything
from .models import ARCHITECTURES, BookModel, build_model
from .training import AUGMENTATIONS, OPTIMIZERS, SCHEDULES, evaluate_accuracy, train_classifier

__all__ = [
    "Recipe",
    "default_recipe",
    "ARCH_DEFAULTS",
    "DATASETS",
    "AUGMENTATIONS",
    "CorruptCheckpointError",
    "IncompatibleCheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "checkpoint_path",
    "get_model",
    "cached_metadata",
    "list_cached",
]

#: Datasets a recipe may train on.
DATASETS = ("fashion_mnist",)

#: Optimiser settings per architecture used by :func:`default_recipe`.
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "c3lt_cnn": {"lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0},
    "mlp": {"lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0},
    "preact_resnet": {"lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0},
}

FORMAT_VERSION = 1
WEIGHTS_SUFFIX = ".safetensors"
SIDECAR_SUFFIX = ".json"


class CorruptCheckpointError(RuntimeError):
    """A checkpoint's weights do not match the SHA-256 of its sidecar, or a file is unreadable."""


class IncompatibleCheckpointError(RuntimeError):
    """A verified checkpoint whose tensors do not fit the model it is loaded into."""


# ---------------------------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------------------------
def _freeze(value, name: str):
    """Make a JSON-like value hashable: lists -> tuples (recursively); reject other types."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v, name) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{name} must be built from numbers, strings, None and lists/tuples (so that "
                    f"it can be hashed and written to JSON), got {type(value).__name__}: {value!r}.")


def _thaw(value):
    """Tuples -> lists, for JSON."""
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _check_int(v, name: str, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {v!r}.")
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}.")
    return int(v)


def _check_float(v, name: str, allow_zero: bool) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{name} must be a number, got {v!r}.")
    f = float(v)
    if not (f == f and abs(f) != float("inf")) or f < 0 or (f == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {v!r}.")
    return f


@dataclass(frozen=True)
class Recipe:
    """How a cached model was made; its :attr:`key` names the checkpoint file.

    Parameters
    ----------
    arch : str
        An architecture of :data:`robust_utils.models.ARCHITECTURES`.
    arch_kwargs : mapping or sequence of (name, value) pairs, default ()
        Constructor arguments of the architecture; stored as a sorted tuple of pairs (lists
        become tuples) so the recipe is hashable.
    dataset : str, default "fashion_mnist"
    classes : sequence of int, optional
        Train on these classes only (held-out-class models of Part 3); labels are remapped to
        ``0 .. len(classes) - 1`` in the given order and the model gets ``len(classes)`` outputs
        unless ``arch_kwargs`` sets ``num_classes``.
    epochs, batch_size : int
    lr : float
    optimizer : {"adam", "sgd"}
    weight_decay : float
    schedule : {"cosine", "step", "constant"}
    seed : int
        Seeds the initial weights, the data subset and the training order.
    profile : str
        Name of the profile the recipe was derived from (for the record).
    n_train : int, optional
        Number of training images (``None`` = the whole training set).
    augment : str, optional
        A name of :data:`robust_utils.training.AUGMENTATIONS`; ``"none"`` is stored as ``None``.

    Examples
    --------
    >>> r = Recipe("c3lt_cnn", epochs=4)
    >>> r.key  # doctest: +ELLIPSIS
    'c3lt_cnn-fashion_mnist-e4-s0-full-...'

    Taught in the Introduction, section "The model cache".
    """

    arch: str
    arch_kwargs: tuple = ()
    dataset: str = "fashion_mnist"
    classes: tuple | None = None
    epochs: int = 4
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "cosine"
    seed: int = 0
    profile: str = "laptop"
    n_train: int | None = None
    augment: str | None = None

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if not isinstance(self.arch, str):
            raise TypeError(f"arch must be a string, got {self.arch!r}; choose one of: "
                            f"{', '.join(ARCHITECTURES)}.")
        check_choice(self.arch, "architecture", ARCHITECTURES)
        kwargs = self.arch_kwargs
        if isinstance(kwargs, Mapping):
            pairs = list(kwargs.items())
        else:
            try:
                pairs = [tuple(p) for p in kwargs]
            except TypeError:
                raise TypeError("arch_kwargs must be a dict or a sequence of (name, value) pairs, "
                                f"got {kwargs!r}.") from None
            if any(len(p) != 2 or not isinstance(p[0], str) for p in pairs):
                raise TypeError(f"arch_kwargs must be (name, value) pairs, got {kwargs!r}.")
        names = [k for k, _ in pairs]
        if len(set(names)) != len(names):
            raise ValueError(f"arch_kwargs names a parameter twice: {names}.")
        valid = [p for p in inspect.signature(ARCHITECTURES[self.arch].__init__).parameters if p != "self"]
        unknown = sorted(set(names) - set(valid))
        if unknown:
            raise ValueError(f"unknown arch_kwargs {unknown} for architecture {self.arch!r}; "
                             f"valid: {', '.join(valid)}.")
        set_("arch_kwargs", tuple(sorted((k, _freeze(v, f"arch_kwargs[{k!r}]")) for k, v in pairs)))
        check_choice(self.dataset, "dataset", DATASETS)
        if self.classes is not None:
            if isinstance(self.classes, (str, int)) or not hasattr(self.classes, "__iter__"):
                raise TypeError(f"classes must be a sequence of class indices, got {self.classes!r}.")
            classes = tuple(_check_int(c, "each class index", 0) for c in self.classes)
            if len(classes) < 2 or len(set(classes)) != len(classes):
                raise ValueError(f"classes must hold at least 2 distinct class indices, got {classes}.")
            set_("classes", classes)
        set_("epochs", _check_int(self.epochs, "epochs", 1))
        set_("batch_size", _check_int(self.batch_size, "batch_size", 1))
        set_("lr", _check_float(self.lr, "lr", allow_zero=False))
        set_("weight_decay", _check_float(self.weight_decay, "weight_decay", allow_zero=True))
        check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        check_choice(self.schedule, "schedule", SCHEDULES)
        set_("seed", _check_int(self.seed, "seed", 0))
        if not isinstance(self.profile, str) or not self.profile:
            raise TypeError(f"profile must be a profile name, got {self.profile!r}.")
        if self.n_train is not None:
            set_("n_train", _check_int(self.n_train, "n_train", 2))
        if self.augment == "none":
            set_("augment", None)
        if self.augment is not None:
            check_choice(self.augment, "augmentation", AUGMENTATIONS)

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-ready dict (``arch_kwargs`` as a dict, tuples as lists)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["arch_kwargs"] = {k: _thaw(v) for k, v in self.arch_kwargs}
        d["classes"] = list(self.classes) if self.classes is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "Recipe":
        """Rebuild a recipe from :meth:`to_dict` output (e.g. a checkpoint's sidecar)."""
        if not isinstance(d, Mapping):
            raise TypeError(f"Recipe.from_dict expects a dict, got {type(d).__name__}.")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"unknown Recipe field(s) {unknown}; valid fields: {', '.join(names)}.")
        return cls(**dict(d))

    def canonical_json(self) -> str:
        """Sorted, whitespace-free JSON of every field: the input of the key's hash."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def key(self) -> str:
        """Readable, filesystem-safe name: ``<arch>-<dataset>-<profile>-e<epochs>-s<seed>-<data>-<hash8>``.

        ``<data>`` is ``all`` (the whole training set) or ``n<n_train>``, followed by ``-c<classes>`` for class subsets
        and ``-<augment>`` when augmented; ``<hash8>`` is the first 8 hex digits of the SHA-256
        of :meth:`canonical_json`, so any change of any field changes the key.
        """
        parts = [self.arch, self.dataset, self.profile, f"e{self.epochs}", f"s{self.seed}",
                 "all" if self.n_train is None else f"n{self.n_train}"]
        if self.classes is not None:
            parts.append("c" + "_".join(map(str, self.classes)))
        if self.augment is not None:
            parts.append(self.augment)
        digest = hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()[:8]
        return "-".join(parts + [digest])

    def replace(self, **changes) -> "Recipe":
        """A copy with some fields changed (validated like the constructor)."""
        names = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise ValueError(f"unknown Recipe field(s) {unknown}; valid fields: {', '.join(names)}.")
        return dataclasses.replace(self, **changes)

    def build(self) -> BookModel:
        """A freshly initialised model of this recipe (seeded with :attr:`seed`)."""
        kwargs = dict(self.arch_kwargs)
        if self.classes is not None:
            kwargs.setdefault("num_classes", len(self.classes))
        seed_everything(self.seed)
        return build_model(self.arch, **kwargs)


def default_recipe(arch: str = "c3lt_cnn", profile="auto", seed: int = 0, **overrides) -> Recipe:
    """The book's standard recipe for ``arch`` under a profile.

    Epochs, batch size and training-set size come from the profile
    (:func:`robust_utils.config.resolve_profile`); the optimiser and learning rate from
    :data:`ARCH_DEFAULTS`. Any :class:`Recipe` field can be overridden, e.g.
    ``default_recipe("c3lt_cnn", classes=(0, 1, 2, 3, 5, 7, 8, 9))``.

    Taught in the Introduction, section "The model cache".
    """
    check_choice(arch, "architecture", ARCHITECTURES)
    p = resolve_profile(profile)
    names = [f.name for f in dataclasses.fields(Recipe)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"unknown Recipe field(s) {unknown}; valid fields: {', '.join(names)}.")
    fields = dict(arch=arch, epochs=p.epochs, batch_size=p.batch_size, n_train=p.n_train,
                  profile=p.name, seed=seed, **ARCH_DEFAULTS[arch])
    fields.update(overrides)
    return Recipe(**fields)


# ---------------------------------------------------------------------------------------------
# Safe, verified, atomic checkpoints
# ---------------------------------------------------------------------------------------------
def _sidecar(path: Path) -> Path:
    return path.with_suffix(SIDECAR_SUFFIX)


def _fsync_dir(folder: Path) -> None:
    try:  # makes the rename itself durable; not possible on every OS/filesystem
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_temp(folder: Path, name: str, data: bytes) -> Path:
    """Write ``data`` to a new temporary file in ``folder``, flushed to disk; return its path."""
    # os.open with mode 0o666 (not tempfile.mkstemp, whose files are 0o600) so the final file
    # gets the usual umask-derived permissions; O_EXCL + a random name avoids collisions.
    tmp = folder / f".{name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_checkpoint(path, model: nn.Module, metadata: Mapping | None = None) -> Path:
    """Save ``model``'s weights to ``path`` (safetensors) and a JSON sidecar next to it.

    The sidecar ``path.with_suffix(".json")`` holds ``metadata`` (e.g. ``{"recipe": ...,
    "metrics": {"test_accuracy": ...}}``) plus ``weights_sha256``, ``weights_file``,
    ``torch_version``, ``created`` (UTC, ISO 8601) and ``format_version``. Both files are
    written to temporary files in the same folder, fsynced and renamed into place, so a failure
    at any point leaves no partial file behind (and an existing checkpoint untouched, or
    detectably inconsistent, never silently wrong).

    Parameters
    ----------
    path : str or Path
        Target ``.safetensors`` file.
    model : torch.nn.Module
    metadata : mapping, optional
        JSON-serialisable extra information.

    Returns
    -------
    Path
        The weights file.

    Taught in the Introduction, section "The model cache".
    """
    from safetensors.torch import save as st_save

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    path = Path(path)
    if path.suffix != WEIGHTS_SUFFIX:
        raise ValueError(f"checkpoint path must end in {WEIGHTS_SUFFIX}, got {path.name!r}.")
    metadata = dict(metadata or {})
    reserved = {"weights_sha256", "weights_file", "torch_version", "created", "format_version"}
    clash = sorted(reserved & set(metadata))
    if clash:
        raise ValueError(f"metadata keys {clash} are written by save_checkpoint itself; rename them.")
    path.parent.mkdir(parents=True, exist_ok=True)

    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    weights = st_save(state, metadata={"format": "pt"})
    sidecar = dict(metadata)
    sidecar.update(format_version=FORMAT_VERSION, weights_file=path.name,
                   weights_sha256=_sha256(weights), torch_version=torch.__version__,
                   created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    try:
        sidecar_bytes = json.dumps(sidecar, indent=2, sort_keys=True).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise TypeError(f"metadata must be JSON-serialisable (numbers, strings, lists, dicts): {e}") from None

    tmps: list[Path] = []
    try:
        tmp_w = _write_temp(path.parent, path.name, weights)
        tmps.append(tmp_w)
        tmp_s = _write_temp(path.parent, _sidecar(path).name, sidecar_bytes)
        tmps.append(tmp_s)
        # Weights first: if the second rename fails, the sidecar's hash no longer matches and the
        # checkpoint is reported as corrupt instead of being used.
        os.replace(tmp_w, path)
        os.replace(tmp_s, _sidecar(path))
    finally:
        for t in tmps:
            t.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return path


def load_checkpoint(path, model: nn.Module) -> dict:
    """Verify and load a checkpoint written by :func:`save_checkpoint` into ``model``.

    The SHA-256 of the weights file is compared with the sidecar's before anything is parsed;
    the tensors are read with safetensors (no pickle, no code execution) and copied into the
    model's parameters and buffers on the model's device.

    Returns
    -------
    dict
        The sidecar metadata.

    Raises
    ------
    FileNotFoundError
        No weights file at ``path``.
    CorruptCheckpointError
        Sidecar missing or unreadable, hash mismatch, or unreadable weights.
    IncompatibleCheckpointError
        The tensors' names or shapes do not fit ``model``.

    Taught in the Introduction, section "The model cache".
    """
    from safetensors.torch import load as st_load

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train and save the model first "
                                "(robust_utils.cache.get_model does both).")
    side = _sidecar(path)
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
        expected = meta["weights_sha256"]
    except FileNotFoundError:
        raise CorruptCheckpointError(f"checkpoint {path} has no sidecar {side.name}, so its integrity "
                                     "cannot be verified; delete it and retrain.") from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise CorruptCheckpointError(f"sidecar {side} is unreadable or lacks 'weights_sha256' ({e!r}); "
                                     "delete the checkpoint and retrain.") from None
    data = path.read_bytes()
    actual = _sha256(data)
    if actual != expected:
        raise CorruptCheckpointError(
            f"checkpoint {path} is corrupted or was modified: its SHA-256 is {actual[:16]}..., but "
            f"the sidecar {side.name} records {str(expected)[:16]}... Refusing to load it; delete "
            "it (or call get_model(..., retrain=True)) to train a fresh one.")
    try:
        state = st_load(data)
    except Exception as e:  # safetensors raises its own error types
        raise CorruptCheckpointError(f"checkpoint {path} is not a valid safetensors file ({e}).") from None
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad_shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or bad_shape:
        raise IncompatibleCheckpointError(
            f"checkpoint {path} does not fit {type(model).__name__}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, shape mismatch {bad_shape[:5]}. Was it saved from a "
            "different architecture or arch_kwargs?")
    model.load_state_dict(state, strict=True)
    return meta


# ---------------------------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------------------------
def _cache_folder(cache_dir) -> Path:
    folder = Path(cache_dir) if cache_dir is not None else checkpoint_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def checkpoint_path(recipe: Recipe, cache_dir=None) -> Path:
    """Where :func:`get_model` keeps ``recipe``'s weights: ``<checkpoint_dir>/<key>.safetensors``."""
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a Recipe, got {type(recipe).__name__}; build one with "
                        "robust_utils.cache.default_recipe(arch, profile=...).")
    return _cache_folder(cache_dir) / f"{recipe.key}{WEIGHTS_SUFFIX}"


def _default_train(model: BookModel, recipe: Recipe, device, progress: bool) -> dict:
    """Train ``model`` by ``recipe`` on the package's data; return metrics for the sidecar."""
    from . import data  # lazy: data loading is only needed when a model must be trained

    if recipe.dataset != "fashion_mnist":  # pragma: no cover - DATASETS has one entry
        raise ValueError(f"no loader for dataset {recipe.dataset!r}.")
    prof = PROFILES.get(recipe.profile)
    n_test = prof.n_test if prof is not None else None
    x, y = data.load_fashion_mnist("train", n=recipe.n_train, seed=recipe.seed)
    xt, yt = data.load_fashion_mnist("test", n=n_test, seed=recipe.seed)
    if recipe.classes is not None:
        x, y = data.subset_classes(x, y, recipe.classes)
        xt, yt = data.subset_classes(xt, yt, recipe.classes)
    history = train_classifier(
        model, x, y, epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr,
        optimizer=recipe.optimizer, weight_decay=recipe.weight_decay, schedule=recipe.schedule,
        device=device, seed=recipe.seed, augment=recipe.augment, progress=progress,
        desc=f"training {recipe.key}")
    return {
        "test_accuracy": evaluate_accuracy(model, xt, yt),
        "train_accuracy": history["accuracy"][-1],
        "train_loss": history["loss"][-1],
        "train_seconds": round(sum(history["time"]), 2),
        "n_train": int(x.shape[0]),
        "n_test": int(xt.shape[0]),
        "device": str(device),
    }


def get_model(recipe: Recipe, *, device="auto", retrain: bool = False,
              train_fn: Callable | None = None, progress: bool = True, cache_dir=None) -> BookModel:
    """The model that ``recipe`` describes, from the cache if possible, in eval mode.

    1. If ``<checkpoint_dir>/<key>.safetensors`` exists (and ``retrain`` is false), verify its
       SHA-256 against the sidecar and load it.
    2. If it fails verification, warn (naming the file) and retrain; never use it.
    3. Otherwise build the model (seeded), train it with the recipe on the package's data with
       a progress bar, measure its test accuracy, and save weights + sidecar atomically.

    Parameters
    ----------
    recipe : Recipe
        See :func:`default_recipe`.
    device : str or torch.device, default "auto"
    retrain : bool, default False
        Ignore the cached file and train again (overwriting it).
    train_fn : callable, optional
        ``train_fn(model, recipe, device=..., progress=...) -> dict`` replaces the default
        training (tests use it to inject tiny data); the returned dict is stored as the
        sidecar's ``"metrics"``.
    progress : bool, default True
    cache_dir : str or Path, optional
        Folder of the cache; default :func:`robust_utils.config.checkpoint_dir`.

    Returns
    -------
    BookModel
        On ``device``, in eval mode. Its sidecar is available via :func:`cached_metadata`.

    Taught in the Introduction, section "The model cache".
    """
    path = checkpoint_path(recipe, cache_dir)
    dev = pick_device(device)
    if train_fn is not None and not callable(train_fn):
        raise TypeError(f"train_fn must be callable, got {train_fn!r}.")
    model = recipe.build()
    if path.exists() and not retrain:
        try:
            load_checkpoint(path, model)
            return model.to(dev).eval()
        except (CorruptCheckpointError, IncompatibleCheckpointError) as e:
            warnings.warn(f"cached model {path} failed verification and will NOT be used; retraining "
                          f"it and overwriting the file. Reason: {e}", RuntimeWarning, stacklevel=2)
            model = recipe.build()  # fresh, seeded weights (the failed load may have touched none)
    model.to(dev)
    if train_fn is None:
        metrics = _default_train(model, recipe, dev, progress)
    else:
        metrics = train_fn(model, recipe, device=dev, progress=progress)
    metrics = dict(metrics or {})
    save_checkpoint(path, model, {"key": recipe.key, "recipe": recipe.to_dict(), "metrics": metrics})
    return model.to(dev).eval()


def cached_metadata(recipe: Recipe, cache_dir=None) -> dict:
    """The sidecar of ``recipe``'s cached model (recipe, metrics such as ``test_accuracy``, hash).

    Raises :class:`FileNotFoundError` when the model is not cached yet.

    Taught in the Introduction, section "The model cache".
    """
    side = _sidecar(checkpoint_path(recipe, cache_dir))
    if not side.is_file():
        raise FileNotFoundError(f"model {recipe.key} is not cached (no {side}); call "
                                "get_model(recipe) first.")
    try:
        return json.loads(side.read_text(encoding="utf-8"))
    except ValueError as e:
        raise CorruptCheckpointError(f"sidecar {side} is not valid JSON ({e}).") from None


def list_cached(cache_dir=None) -> list[dict]:
    """Every checkpoint in the cache: its sidecar dict plus ``"path"``, sorted by key.

    Unreadable sidecars are skipped with a warning.

    Taught in the Introduction, section "The model cache".
    """
    out = []
    for side in sorted(_cache_folder(cache_dir).glob(f"*{SIDECAR_SUFFIX}")):
        if side.name.startswith("."):
            continue
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except (ValueError, OSError) as e:
            warnings.warn(f"skipping unreadable sidecar {side}: {e}", RuntimeWarning, stacklevel=2)
            continue
        meta["path"] = str(side.with_suffix(WEIGHTS_SUFFIX))
        out.append(meta)
    return out


# ---------------------------------------------------------------------------------------------
# Command line: pre-build the models a run will need, or list the cache
# ---------------------------------------------------------------------------------------------
def _parse_classes(text: str | None):
    if text is None:
        return None
    try:
        return tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise SystemExit(f"--classes takes comma-separated class indices, e.g. 0,1,2; got {text!r}") from None


def main(argv=None) -> int:
    """``python -m robust_utils.cache build|list``: pre-build models by recipe, or list the cache.

    A separate runner step (e.g. on a GPU machine before ``rni-run --profile full``) can train
    every model a profile needs, so that the notebooks only load them::

        python -m robust_utils.cache build c3lt_cnn --profile full --device cuda
        python -m robust_utils.cache build c3lt_cnn --profile full --classes 0,1,2,3,4,5,6,7
        python -m robust_utils.cache list
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m robust_utils.cache", description=main.__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="train (or verify) the model of a recipe")
    b.add_argument("arch", choices=sorted(ARCHITECTURES))
    b.add_argument("--profile", default="auto")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--device", default="auto")
    b.add_argument("--classes", default=None, help="comma-separated kept classes (held-out-class models)")
    b.add_argument("--augment", default=None, help="a training augmentation name, e.g. gaussian_noise")
    b.add_argument("--retrain", action="store_true")
    sub.add_parser("list", help="list the cached models and their test accuracy")
    args = parser.parse_args(argv)

    if args.command == "list":
        for meta in list_cached():
            acc = meta.get("metrics", {}).get("test_accuracy")
            print(f"{meta.get('key', meta['path'])}  test_accuracy={acc if acc is None else f'{acc:.4f}'}")
        return 0
    overrides = {}
    if args.classes is not None:
        overrides["classes"] = _parse_classes(args.classes)
    if args.augment is not None:
        overrides["augment"] = args.augment
    recipe = default_recipe(args.arch, profile=args.profile, seed=args.seed, **overrides)
    get_model(recipe, device=args.device, retrain=args.retrain)
    meta = cached_metadata(recipe)
    m = meta.get("metrics", {})
    print(f"{recipe.key}: test_accuracy={m.get('test_accuracy')}, train_seconds={m.get('train_seconds')}, "
          f"device={m.get('device')}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
