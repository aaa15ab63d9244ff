"""Checkpoint files: safe, verified, committed atomically, written by one process at a time.

A checkpoint named ``<name>`` is two files in one folder:

* ``<name>-<sha16>.safetensors``: the weights, stored with `safetensors
  <https://huggingface.co/docs/safetensors>`_, which holds raw tensors only. Nothing is ever
  unpickled, so loading a checkpoint cannot run code. The file is named by (the start of) its
  own SHA-256 and never rewritten.
* ``<name>.json``: the *record* (the "sidecar"): which weights file belongs to the checkpoint,
  that file's full SHA-256, and metadata (the recipe, test metrics, torch version, date).

Saving writes the weights file, then replaces the record in a single rename: the record is the
commit point. A reader therefore sees either the old checkpoint or the new one, never a new
record with old weights or the reverse (a "torn pair"). Writers take a per-checkpoint lock
(:func:`checkpoint_lock`, an ``flock`` on ``.<name>.lock``), so two processes that need the same
model train it once; the lock holder also sweeps temporary files left by killed saves and
weights files that no record names any more.

What the SHA-256 protects against, and what it does not:

* it detects **corruption and truncation** of the weights (a flipped bit, a partial copy, a
  file replaced by another one), and a record edited by hand to point elsewhere;
* it does **not** authenticate: someone who can write the folder can replace the weights *and*
  rewrite the record with the matching hash. Only load checkpoints you or the book's own
  recipes made. (Safetensors still guarantees that such a file cannot execute code.)

Taught in the Introduction, section "The model cache".
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import secrets
import threading
from pathlib import Path
from typing import Iterator, Mapping

import torch
import torch.nn as nn

from ._checks import check_name
from .config import writable_dir

__all__ = [
    "CorruptCheckpointError",
    "IncompatibleCheckpointError",
    "RECORD_SUFFIX",
    "WEIGHTS_SUFFIX",
    "save_checkpoint",
    "load_checkpoint",
    "read_record",
    "checkpoint_lock",
    "check_slot",
    "sweep",
]

FORMAT_VERSION = 2
WEIGHTS_SUFFIX = ".safetensors"
RECORD_SUFFIX = ".json"
_RESERVED = ("weights_sha256", "weights_file", "torch_version", "created", "format_version")
_SHA_RE = re.compile(r"[0-9a-f]{64}")


class CorruptCheckpointError(RuntimeError):
    """A checkpoint's weights do not match the SHA-256 of its record, or a file is unreadable."""


class IncompatibleCheckpointError(RuntimeError):
    """A verified checkpoint whose tensors do not fit the model it is loaded into."""


# ---------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------
def _record(path) -> Path:
    path = Path(path)
    if path.suffix != RECORD_SUFFIX:
        raise ValueError(f"a checkpoint is named by its record file, which ends in {RECORD_SUFFIX}; "
                         f"got {path.name!r}. Pass e.g. folder / 'model.json'.")
    check_name(path.stem, "checkpoint name", max_len=200)
    return path


def _weights_name(stem: str, sha: str) -> str:
    return f"{stem}-{sha[:16]}{WEIGHTS_SUFFIX}"


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
    """Write ``data`` to a new temporary file ``.<name>.<random>.tmp`` in ``folder``, flushed to disk."""
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
        tmp.unlink(missing_ok=True)
        raise
    return tmp


# ---------------------------------------------------------------------------------------------
# Locks: one writer per checkpoint, across processes and threads
# ---------------------------------------------------------------------------------------------
_held: dict[str, list] = {}  # path -> [RLock, depth, fd]
_held_guard = threading.Lock()


@contextlib.contextmanager
def checkpoint_lock(path, *, blocking: bool = True) -> Iterator[bool]:
    """Hold the writer's lock of checkpoint ``path`` (its record) for the ``with`` block.

    An ``flock`` on ``.<name>.lock`` in the checkpoint's folder serialises processes; a
    re-entrant lock serialises threads and lets the holder nest calls (:func:`save_checkpoint`
    inside the cache's train-and-save). On systems without ``fcntl`` only threads are
    serialised. The lock file stays (it is empty); the lock dies with its process.

    With ``blocking=False`` the block runs at once whether or not the lock was free; the value
    bound by ``as`` says whether it is held (for work that may simply be skipped, such as a
    sweep).

    Taught in the Introduction, section "The model cache".
    """
    path = _record(path)
    folder = writable_dir(path.parent)
    lock_file = folder / f".{path.stem}.lock"
    key = str(lock_file.resolve())
    with _held_guard:
        entry = _held.setdefault(key, [threading.RLock(), 0, None])
    rlock = entry[0]
    if not rlock.acquire(blocking=blocking):
        yield False
        return
    try:
        if entry[1] == 0:
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                import fcntl
            except ImportError:  # pragma: no cover - Windows
                fcntl = None
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                except BlockingIOError:
                    os.close(fd)
                    yield False
                    return
            entry[2] = fd
        entry[1] += 1
        try:
            yield True
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                os.close(entry[2])  # closing the descriptor releases the flock
                entry[2] = None
    finally:
        rlock.release()


def _leftover_patterns(stem: str) -> tuple[re.Pattern, re.Pattern]:
    """Temporary files of a save of ``stem`` and its content-addressed weights files (exactly)."""
    s = re.escape(stem)
    tmp = re.compile(rf"\.{s}(?:\.json|-[0-9a-f]{{16}}\.safetensors)\.[0-9a-f]{{16}}\.tmp")
    weights = re.compile(rf"{s}-[0-9a-f]{{16}}\.safetensors")
    return tmp, weights


def check_slot(path) -> None:
    """Fail early, with a clear message, if a folder sits where checkpoint ``path``'s files go.

    The cache calls this before training, so that a long training run does not end in an
    ``IsADirectoryError`` when the result is saved.

    Taught in the Introduction, section "The model cache".
    """
    path = _record(path)
    if path.is_dir():
        raise CorruptCheckpointError(f"{path} is a folder, not a checkpoint record; remove it "
                                     f"(rm -r '{path}') and run again.")
    if path.parent.is_dir():
        _, weights = _leftover_patterns(path.stem)
        for f in path.parent.iterdir():
            if weights.fullmatch(f.name) and f.is_dir():
                raise CorruptCheckpointError(f"{f} is a folder where checkpoint {path.name} keeps its "
                                             f"weights; remove it (rm -r '{f}') and run again.")


def sweep(path) -> list[Path]:
    """Remove what killed or superseded saves of checkpoint ``path`` left behind; return it.

    Temporary files ``.<name>*.tmp`` and weights files ``<name>-*.safetensors`` that the record
    does not name. Call it while holding :func:`checkpoint_lock` (the cache does), so that no
    save in progress loses its files.

    Taught in the Introduction, section "The model cache".
    """
    path = _record(path)
    if not path.parent.is_dir():
        return []
    keep = None
    try:
        keep = read_record(path)["weights_file"]
    except (FileNotFoundError, CorruptCheckpointError):
        pass
    tmp, weights = _leftover_patterns(path.stem)
    removed = []
    for f in path.parent.iterdir():
        stale = tmp.fullmatch(f.name) or (weights.fullmatch(f.name) and f.name != keep)
        if stale and f.is_file():
            with contextlib.suppress(OSError):
                f.unlink()
                removed.append(f)
    return removed


# ---------------------------------------------------------------------------------------------
# Save and load
# ---------------------------------------------------------------------------------------------
def save_checkpoint(path, model: nn.Module, metadata: Mapping | None = None) -> Path:
    """Save ``model``'s weights and a record ``path`` (``<name>.json``) naming them.

    The record holds ``metadata`` (e.g. ``{"recipe": ..., "metrics": {"test_accuracy": ...}}``)
    plus ``weights_file``, ``weights_sha256``, ``torch_version``, ``created`` (UTC, ISO 8601)
    and ``format_version``. The weights go to ``<name>-<sha16>.safetensors``; then the record
    is replaced by one rename, which commits the checkpoint. A failure at any point leaves the
    previous checkpoint as it was and no temporary file behind. The call holds the
    checkpoint's lock and sweeps what earlier, killed saves left.

    Parameters
    ----------
    path : str or Path
        The record file, ending in ``.json``; its stem may hold only letters, digits and
        ``_ . + -``.
    model : torch.nn.Module
        Any module (an ``nn.ModuleDict`` of several modules is saved as one checkpoint).
    metadata : mapping, optional
        JSON-serialisable extra information.

    Returns
    -------
    Path
        The record file.

    Taught in the Introduction, section "The model cache".
    """
    from safetensors.torch import save as st_save

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    path = _record(path)
    metadata = dict(metadata or {})
    clash = sorted(set(_RESERVED) & set(metadata))
    if clash:
        raise ValueError(f"metadata keys {clash} are written by save_checkpoint itself; rename them.")
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    weights = st_save(state, metadata={"format": "pt"})
    sha = hashlib.sha256(weights).hexdigest()
    record = dict(metadata)
    record.update(format_version=FORMAT_VERSION, weights_file=_weights_name(path.stem, sha),
                  weights_sha256=sha, torch_version=torch.__version__,
                  created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    try:
        record_bytes = json.dumps(record, indent=2, sort_keys=True, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise TypeError(f"metadata must be JSON-serialisable (numbers, strings, lists, dicts; no NaN): {e}") from None

    folder = writable_dir(path.parent)
    with checkpoint_lock(path):
        check_slot(path)
        sweep(path)
        weights_path = folder / record["weights_file"]
        tmps: list[Path] = []
        try:
            tmp_w = _write_temp(folder, weights_path.name, weights)
            tmps.append(tmp_w)
            tmp_r = _write_temp(folder, path.name, record_bytes)
            tmps.append(tmp_r)
            os.replace(tmp_w, weights_path)  # a new name: no reader uses it yet
            os.replace(tmp_r, path)          # the commit
        finally:
            for t in tmps:
                t.unlink(missing_ok=True)
        _fsync_dir(folder)
        sweep(path)  # the previous weights file, now named by no record
    return path


def read_record(path) -> dict:
    """The record of checkpoint ``path``, checked to have the shape :func:`save_checkpoint` writes.

    Raises :class:`FileNotFoundError` when there is no record and
    :class:`CorruptCheckpointError` when it is unreadable, not JSON, or of the wrong shape.

    Taught in the Introduction, section "The model cache".
    """
    path = _record(path)
    if path.is_dir():
        raise CorruptCheckpointError(f"{path} is a folder, not a checkpoint record; remove it.")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint record at {path}; train and save the model first "
                                "(robust_utils.cache.get_model does both).") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise CorruptCheckpointError(f"checkpoint record {path} is unreadable ({e}); delete it and "
                                     "retrain.") from None
    problems = []
    if not isinstance(meta, dict):
        problems.append(f"it holds a {type(meta).__name__}, not an object")
    else:
        if not isinstance(meta.get("weights_sha256"), str) or not _SHA_RE.fullmatch(meta["weights_sha256"]):
            problems.append("'weights_sha256' is not a SHA-256 hex digest")
        wf = meta.get("weights_file")
        if not isinstance(wf, str) or Path(wf).name != wf or wf in ("", ".", "..") \
                or not wf.endswith(WEIGHTS_SUFFIX):
            problems.append(f"'weights_file' is not a file name in the same folder ({wf!r})")
        for k in ("recipe", "metrics", "dependencies", "built"):
            if k in meta and not isinstance(meta[k], dict):
                problems.append(f"{k!r} is a {type(meta[k]).__name__}, not an object")
        fv = meta.get("format_version")
        if isinstance(fv, bool) or not isinstance(fv, int):
            problems.append(f"'format_version' is {fv!r}, not an integer")
        if "key" in meta and not isinstance(meta["key"], str):
            problems.append(f"'key' is a {type(meta['key']).__name__}, not a string")
    if problems:
        raise CorruptCheckpointError(f"checkpoint record {path} has the wrong shape: {'; '.join(problems)}. "
                                     "Delete it and retrain.")
    return meta


def _read_verified(path: Path) -> tuple[dict, bytes]:
    """Record + weights bytes that match its hash; re-reads once if a new save replaced the pair."""
    for attempt in range(3):
        meta = read_record(path)
        weights = path.parent / meta["weights_file"]
        try:
            data = weights.read_bytes()
        except FileNotFoundError:
            if attempt < 2:
                continue  # a concurrent save committed a new record and removed this file
            raise CorruptCheckpointError(f"checkpoint {path} names the weights file {weights.name}, "
                                         "which does not exist; delete the record and retrain.") from None
        except IsADirectoryError:
            raise CorruptCheckpointError(f"the weights of checkpoint {path} ({weights.name}) are a folder, "
                                         "not a file; remove it and retrain.") from None
        except OSError as e:
            raise CorruptCheckpointError(f"cannot read the weights {weights} ({e}).") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != meta["weights_sha256"]:
            raise CorruptCheckpointError(
                f"checkpoint {path} is corrupted or was modified: the SHA-256 of {weights.name} is "
                f"{actual[:16]}..., but the record says {meta['weights_sha256'][:16]}... Refusing to "
                "load it; delete it (or call get_model(..., retrain=True)) to train a fresh one.")
        return meta, data
    raise AssertionError("unreachable")  # pragma: no cover


def load_checkpoint(path, model: nn.Module) -> dict:
    """Verify and load checkpoint ``path`` (its ``.json`` record) into ``model``.

    The SHA-256 of the weights file is compared with the record's before anything is parsed;
    the tensors are read with safetensors (no pickle, no code execution) and copied into the
    model's parameters and buffers on the model's device.

    Returns
    -------
    dict
        The record.

    Raises
    ------
    FileNotFoundError
        No record at ``path``.
    CorruptCheckpointError
        Record unreadable or of the wrong shape, weights missing, hash mismatch, or weights
        that are not a safetensors file.
    IncompatibleCheckpointError
        The tensors' names or shapes do not fit ``model``.

    Taught in the Introduction, section "The model cache".
    """
    from safetensors.torch import load as st_load

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    path = _record(path)
    meta, data = _read_verified(path)
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
