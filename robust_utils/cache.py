"""The trained-model cache: every chapter asks for a model by *how it was made*.

A :class:`~robust_utils.recipes.Recipe` names a model by its architecture, objective, data and
training settings, and by the recipes it depends on. :func:`get_model` loads the checkpoint
``<checkpoint_dir>/<key>.json`` when it exists and verifies, and otherwise trains the model by
the recipe's registered trainer (with a progress bar) and saves it. What is guaranteed:

* **safe loading**: weights are safetensors files, never unpickled (see
  :mod:`robust_utils.checkpoints`);
* **integrity**: the SHA-256 in the record is checked before loading, so corruption and
  truncation are caught (a record rewritten together with its weights is not: the hash is a
  checksum, not a signature); a checkpoint that fails the check is retrained, with a warning;
* **the right model**: the record's recipe must equal the recipe asked for, and a dependent
  must have been trained on the very weights its dependencies have now; otherwise it is an
  error (a copied file) or a retrain (a stale dependent);
* **one trainer per model**: two processes that ask for the same missing model train it once;
  the second waits on the checkpoint's lock and loads the result;
* **atomic commits**: a reader sees the old checkpoint or the new one, never a torn pair.

``python -m robust_utils.cache build --set part3 --profile laptop`` pre-builds every model of a
chapter and prints a JSON summary; ``python -m robust_utils.cache list`` shows the cache.

Taught in the Introduction, section "The model cache".
"""
from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import torch.nn as nn

from . import checkpoints
from .checkpoints import (CorruptCheckpointError, IncompatibleCheckpointError, load_checkpoint,
                          read_record, save_checkpoint)
from .config import checkpoint_dir, pick_device, resolve_profile
from .recipes import (ARCH_DEFAULTS, DATASETS, RECIPE_SETS, Recipe, default_recipe, recipe_set)
from .training import TRAINERS

__all__ = [
    # the cache's input type, from robust_utils.recipes
    "Recipe",
    "default_recipe",
    "recipe_set",
    "ARCH_DEFAULTS",
    "DATASETS",
    # the checkpoint files, from robust_utils.checkpoints
    "CorruptCheckpointError",
    "IncompatibleCheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    # the cache itself
    "RecipeMismatchError",
    "checkpoint_path",
    "get_model",
    "cached_metadata",
    "list_cached",
    "build",
    "main",
]


class RecipeMismatchError(RuntimeError):
    """A checkpoint whose record names another recipe than the one its file name says."""


def _cache_folder(cache_dir) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else checkpoint_dir()


def checkpoint_path(recipe: Recipe, cache_dir=None) -> Path:
    """Where :func:`get_model` keeps ``recipe``'s checkpoint: its record ``<checkpoint_dir>/<key>.json``.

    The weights file that the record names lies beside it. The path is checked to lie inside
    the cache folder.

    Taught in the Introduction, section "The model cache".
    """
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a Recipe, got {type(recipe).__name__}; build one with "
                        "robust_utils.cache.default_recipe(arch, profile=...).")
    folder = _cache_folder(cache_dir)
    path = folder / f"{recipe.key}{checkpoints.RECORD_SUFFIX}"
    if path.resolve().parent != folder.resolve():  # pragma: no cover - keys are checked names
        raise ValueError(f"the checkpoint of {recipe.key!r} would lie outside the cache folder {folder}.")
    return path


def _recipe_problem(meta: dict, recipe: Recipe, path: Path) -> str | None:
    stored = meta.get("recipe")
    if stored is None:
        return f"the record {path} names no recipe, so it cannot be checked against {recipe.key}"
    if json.dumps(stored, sort_keys=True, separators=(",", ":")) == recipe.canonical_json():
        return None
    want = recipe.to_dict()
    diff = sorted(k for k in set(want) | set(stored) if want.get(k) != stored.get(k))
    details = "; ".join(f"{k}: asked {want.get(k)!r}, file has {stored.get(k)!r}" for k in diff[:6])
    return f"checkpoint {path} holds another recipe than {recipe.key} ({details})"


def _try_load(recipe: Recipe, path: Path, dev, dep_records: dict):
    """``(model, record, None)`` when the checkpoint verifies; ``(None, None, reason)`` when it
    must be (re)trained (``reason`` is ``None`` for a checkpoint that does not exist)."""
    if not path.exists():
        return None, None, None
    checkpoints.check_slot(path)
    model = recipe.build()
    try:
        meta = load_checkpoint(path, model)
    except FileNotFoundError:
        return None, None, None
    except (CorruptCheckpointError, IncompatibleCheckpointError) as e:
        return None, None, f"failed verification: {e}"
    problem = _recipe_problem(meta, recipe, path)
    if problem is not None:
        raise RecipeMismatchError(f"{problem}. It was copied or renamed by hand: delete {path} (and "
                                  "its weights file) or move it back under its own key.")
    if meta.get("dependencies", {}) != dep_records:
        return None, None, ("is stale: its dependencies were retrained since it was made "
                            f"(recorded {meta.get('dependencies')}, now {dep_records})")
    return model.to(dev).eval(), meta, None


def _sweep_if_idle(path: Path) -> None:
    """Remove what killed saves left, unless someone is saving this checkpoint right now."""
    try:
        with checkpoints.checkpoint_lock(path, blocking=False) as held:
            if held:
                checkpoints.sweep(path)
    except OSError:  # a read-only cache: nothing to sweep, nothing to fail
        pass


def _get_model(recipe: Recipe, dev, retrain: bool, train_fn, progress: bool, folder) -> tuple[nn.Module, dict]:
    """The model and the record of exactly the weights it holds (see :func:`get_model`)."""
    path = checkpoint_path(recipe, folder)
    deps, dep_records = {}, {}
    for name, dep in recipe.depends_on:
        deps[name], meta = _get_model(dep, dev, False, None, progress, folder)
        dep_records[name] = {"key": dep.key, "weights_sha256": meta["weights_sha256"]}
    if not retrain:
        model, meta, _ = _try_load(recipe, path, dev, dep_records)
        if model is not None:
            _sweep_if_idle(path)
            return model, meta
    with checkpoints.checkpoint_lock(path):
        if not retrain:  # another process may have trained it while we waited for the lock
            model, meta, reason = _try_load(recipe, path, dev, dep_records)
            if model is not None:
                return model, meta
            if reason is not None:
                warnings.warn(f"cached model {path} {reason}; it will NOT be used: retraining it "
                              "and replacing the checkpoint.", RuntimeWarning, stacklevel=3)
        checkpoints.check_slot(path)  # fail now, not after a long training run
        model = recipe.build().to(dev)
        trainer = train_fn if train_fn is not None else TRAINERS[recipe.objective].fn
        t0 = time.perf_counter()
        metrics = dict(trainer(model, recipe, device=dev, progress=progress, deps=deps) or {})
        seconds = round(time.perf_counter() - t0, 2)
        save_checkpoint(path, model, {"key": recipe.key, "recipe": recipe.to_dict(), "metrics": metrics,
                                      "dependencies": dep_records,
                                      "built": {"seconds": seconds, "device": str(dev)}})
        meta = read_record(path)  # still under the lock: the record of these very weights
    return model.to(dev).eval(), meta


def get_model(recipe: Recipe, *, device="auto", retrain: bool = False,
              train_fn: Callable | None = None, progress: bool = True, cache_dir=None) -> nn.Module:
    """The model that ``recipe`` describes, from the cache if possible, in eval mode.

    1. The recipe's dependencies are fetched first (from the cache, or trained), each with the
       record of the very weights that were loaded.
    2. If the checkpoint exists (and ``retrain`` is false), its SHA-256, its recipe and the
       weights of its dependencies are checked, and it is loaded.
    3. Otherwise the checkpoint's lock is taken (another process training the same model is
       waited for, and its result loaded), and the model is built (seeded), trained by the
       recipe's trainer (:data:`robust_utils.training.TRAINERS`) and committed.

    A checkpoint that fails verification, or whose dependencies changed, is retrained with a
    :class:`RuntimeWarning` that names the file. One whose record names another recipe (or
    none) raises :class:`RecipeMismatchError`. A folder where the checkpoint's files go raises
    :class:`CorruptCheckpointError` before any training.

    Parameters
    ----------
    recipe : Recipe
        See :func:`default_recipe`.
    device : str or torch.device, default "auto"
    retrain : bool, default False
        Ignore the cached file and train again (replacing it; dependencies are not retrained).
    train_fn : callable, optional
        ``train_fn(model, recipe, *, device, progress, deps) -> dict`` replaces the recipe's
        trainer (tests use it to inject tiny data); the returned dict is stored as the record's
        ``"metrics"``. Dependencies are still trained by their own recipes.
    progress : bool, default True
    cache_dir : str or Path, optional
        Folder of the cache; default :func:`robust_utils.config.checkpoint_dir`.

    Returns
    -------
    torch.nn.Module
        On ``device``, in eval mode (a ``BookModel``, or an ``nn.ModuleDict`` for artifacts of
        several modules). Its record is available via :func:`cached_metadata`.

    Taught in the Introduction, section "The model cache".
    """
    path = checkpoint_path(recipe, cache_dir)
    dev = pick_device(device)
    if train_fn is not None and not callable(train_fn):
        raise TypeError(f"train_fn must be callable, got {train_fn!r}.")
    if not isinstance(retrain, bool):
        raise TypeError(f"retrain must be True or False, got {retrain!r}.")
    model, _ = _get_model(recipe, dev, retrain, train_fn, progress, path.parent)
    return model


def cached_metadata(recipe: Recipe, cache_dir=None) -> dict:
    """The record of ``recipe``'s cached model (recipe, metrics such as ``test_accuracy``, hash).

    Raises :class:`FileNotFoundError` when the model is not cached yet and
    :class:`CorruptCheckpointError` when its record is malformed.

    Taught in the Introduction, section "The model cache".
    """
    path = checkpoint_path(recipe, cache_dir)
    try:
        return read_record(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"model {recipe.key} is not cached (no {path}); call "
                                "get_model(recipe) first.") from None


def list_cached(cache_dir=None) -> list[dict]:
    """Every checkpoint in the cache: its record plus ``"path"``, sorted by key.

    A record that cannot be read or has the wrong shape is listed with an ``"error"`` entry
    (and its ``"path"``) instead of being skipped or crashing the listing.

    Taught in the Introduction, section "The model cache".
    """
    folder = _cache_folder(cache_dir)
    if not folder.is_dir():
        return []
    out = []
    for rec in sorted(folder.glob(f"*{checkpoints.RECORD_SUFFIX}")):
        if rec.name.startswith("."):
            continue
        try:
            meta = dict(read_record(rec))
        except (CorruptCheckpointError, ValueError, OSError) as e:
            meta = {"key": rec.stem, "error": str(e)}
        meta["path"] = str(rec)
        out.append(meta)
    return out


def build(recipes, *, device="auto", retrain: bool = False, progress: bool = True, cache_dir=None) -> list[dict]:
    """Pre-build (train or verify) ``recipes`` (a ``{label: Recipe}`` dict or a list); a summary per model.

    Each summary row: ``label``, ``key``, ``status`` (``"cached"`` or ``"trained"``),
    ``seconds`` (of this call), ``device``, ``train_seconds`` and ``train_device`` (from the
    record: when and where the model was trained), ``metrics`` and the ``recipe``.

    Taught in the Introduction, section "The model cache".
    """
    items = list(recipes.items()) if isinstance(recipes, dict) else [(r.key, r) for r in recipes]
    rows = []
    for label, recipe in items:
        try:
            before = cached_metadata(recipe, cache_dir)["weights_sha256"]
        except (FileNotFoundError, CorruptCheckpointError):
            before = None
        t0 = time.perf_counter()
        get_model(recipe, device=device, retrain=retrain, progress=progress, cache_dir=cache_dir)
        meta = cached_metadata(recipe, cache_dir)
        built = meta.get("built", {})
        rows.append({"label": label, "key": recipe.key,
                     "status": "cached" if meta["weights_sha256"] == before and not retrain else "trained",
                     "seconds": round(time.perf_counter() - t0, 2), "device": str(pick_device(device)),
                     "train_seconds": built.get("seconds"), "train_device": built.get("device"),
                     "metrics": meta.get("metrics", {}), "recipe": meta.get("recipe")})
    return rows


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

    A separate step (e.g. on a GPU machine before ``rni-run --profile full``, or overnight on a
    CPU) trains every model a chapter needs, so that the notebooks only load them::

        python -m robust_utils.cache build --set part3 --profile full --device cuda
        python -m robust_utils.cache build --set all --profile laptop --json runs/models.json
        python -m robust_utils.cache build c3lt_cnn --profile full --classes 0,1,2,3,4,5,6,7
        python -m robust_utils.cache list

    Taught in the Introduction, section "The model cache".
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m robust_utils.cache", description=main.__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="train (or verify) the models of a recipe set or of one recipe")
    b.add_argument("arch", nargs="?", help="one architecture (default recipe), instead of --set")
    b.add_argument("--set", dest="sets", action="append", default=None,
                   help="a recipe set (part1, part2, ...; 'all' for every set); repeatable")
    b.add_argument("--profile", default="auto")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--device", default="auto")
    b.add_argument("--classes", default=None, help="comma-separated kept classes (held-out-class models)")
    b.add_argument("--augment", default=None, help="a training augmentation name, e.g. gaussian_noise")
    b.add_argument("--objective", default=None, help="a registered trainer, e.g. cross_entropy")
    b.add_argument("--retrain", action="store_true")
    b.add_argument("--json", default=None, help="also write the JSON summary to this file")
    b.add_argument("--no-progress", action="store_true")
    sub.add_parser("list", help="list the cached models and their test accuracy")
    args = parser.parse_args(argv)

    try:
        if args.command == "list":
            for meta in list_cached():
                if "error" in meta:
                    print(f"{meta['key']}  UNREADABLE: {meta['error']}")
                    continue
                acc = (meta.get("metrics") or {}).get("test_accuracy")
                acc = f"{acc:.4f}" if isinstance(acc, (int, float)) else acc
                print(f"{meta.get('key', meta['path'])}  test_accuracy={acc}")
            return 0
        profile = resolve_profile(args.profile)
        if args.sets and args.arch:
            raise SystemExit("give either an architecture or --set, not both.")
        if args.sets:
            names = RECIPE_SETS.names() if "all" in args.sets else args.sets
            recipes = {}
            for name in names:
                for label, r in recipe_set(name, profile, seed=args.seed).items():
                    recipes.setdefault(r.key, (f"{name}: {label}", r))
            recipes = dict(recipes.values())
        elif args.arch:
            overrides = {}
            if args.classes is not None:
                overrides["classes"] = _parse_classes(args.classes)
            if args.augment is not None:
                overrides["augment"] = args.augment
            if args.objective is not None:
                overrides["objective"] = args.objective
            r = default_recipe(args.arch, profile=profile, seed=args.seed, **overrides)
            recipes = {r.key: r}
        else:
            raise SystemExit(f"name an architecture or a recipe set (--set {', '.join(RECIPE_SETS.names())} or all).")
        rows = build(recipes, device=args.device, retrain=args.retrain, progress=not args.no_progress)
    except (ValueError, TypeError, RuntimeError, OSError) as e:
        raise SystemExit(f"error: {e}") from None
    summary = {"profile": profile.name, "device": str(pick_device(args.device)), "models": rows}
    text = json.dumps(summary, indent=2)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    print(text)
    for row in rows:
        acc = row["metrics"].get("test_accuracy")
        print(f"{row['key']}: {row['status']}, test_accuracy={acc}, {row['seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
