"""Recipes: *how* a model of the book is made, and the recipe sets of each chapter.

A :class:`Recipe` names everything that decides a trained model: the architecture and its
arguments (including the activation), the training objective and its parameters (``trades``
with ``beta`` and ``eps``, say), the data (subset, classes, augmentation), the optimiser and its
schedule, the seed, and the recipes of the models it depends on. Its :attr:`Recipe.key` is a
readable prefix plus a hash of *every* field, dependencies included, so any change of any
parameter names a different checkpoint, and retraining a dependency under a new recipe can
never leave a stale dependent behind.

Recipe sets name every model one chapter needs, so that the cache command can pre-build them
(``python -m robust_utils.cache build --set part3``) and the chapter loads the same recipes.

Taught in the Introduction, section "The model cache".
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ._checks import check_choice, check_name, check_number, check_positive_int, check_seed
from ._registry import Registry
from .config import PROFILES, resolve_profile, seed_everything
from .models import ARCHITECTURES, architecture_parameters, build_model
from .training import AUGMENTATIONS, OPTIMIZERS, SCHEDULES, TRAINERS

__all__ = [
    "Recipe",
    "default_recipe",
    "ARCH_DEFAULTS",
    "DATASETS",
    "RECIPE_SETS",
    "register_recipe_set",
    "recipe_set",
]

#: Datasets a recipe may train on: name -> (number of classes, training-set size).
DATASETS: dict[str, tuple[int, int]] = {"fashion_mnist": (10, 60000)}

#: Optimiser settings per architecture used by :func:`default_recipe`.
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "c3lt_cnn": {"lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0},
    "mlp": {"lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0},
    "preact_resnet": {"lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0},
    "trades_cnn": {"lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0},
    "strided_cnn": {"lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0},
}

#: Hex digits of the SHA-256 of a recipe's canonical JSON in its key.
KEY_HASH_DIGITS = 12


def _freeze(value, name: str):
    """Make a JSON-like value hashable: lists -> tuples (recursively); reject other types."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v, name) for v in value)
    if isinstance(value, np.generic) and not isinstance(value, (np.str_, np.bytes_, np.void)):
        value = value.item()  # NumPy scalars become the Python numbers they stand for
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError(f"{name} is {value}; a recipe needs finite values (they are hashed and "
                                 "written to JSON).")
            value += 0.0  # -0.0 -> 0.0: one value, one key
        return value
    raise TypeError(f"{name} must be built from numbers, strings, None and lists/tuples (so that "
                    f"it can be hashed and written to JSON), got {type(value).__name__}: {value!r}.")


def _thaw(value):
    """Tuples -> lists, for JSON."""
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _pairs(value, name: str) -> list[tuple[str, Any]]:
    """A dict or a sequence of (name, value) pairs -> a list of pairs with string names, no repeats."""
    if isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        try:
            pairs = [tuple(p) for p in value]
        except TypeError:
            raise TypeError(f"{name} must be a dict or a sequence of (name, value) pairs, got {value!r}.") from None
        if any(len(p) != 2 for p in pairs):
            raise TypeError(f"{name} must be (name, value) pairs, got {value!r}.")
    if any(not isinstance(k, str) for k, _ in pairs):
        raise TypeError(f"{name} must have string names, got {value!r}.")
    names = [k for k, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError(f"{name} names a parameter twice: {names}.")
    return pairs


@dataclass(frozen=True)
class Recipe:
    """How a cached model is made; its :attr:`key` names the checkpoint.

    Parameters
    ----------
    arch : str
        An architecture of :data:`robust_utils.models.ARCHITECTURES` (a builder may return an
        ``nn.ModuleDict`` of several modules trained together, e.g. a generator and a
        discriminator).
    arch_kwargs : mapping or sequence of (name, value) pairs, default ()
        Constructor arguments of the architecture, e.g. ``{"activation": "relu"}``; stored as a
        sorted tuple of pairs (lists become tuples) so the recipe is hashable.
    objective : str, default "cross_entropy"
        A trainer of :data:`robust_utils.training.TRAINERS`: how the model is trained.
    objective_params : mapping or sequence of (name, value) pairs, default ()
        The objective's parameters; those not given take the trainer's defaults, and every one
        of them is stored (so the key covers them all).
    dataset : str, default "fashion_mnist"
    classes : sequence of int, optional
        Train on these classes only (held-out-class models of Parts 1 and 3); labels are
        remapped to ``0 .. len(classes) - 1`` in the given order and the model gets
        ``len(classes)`` outputs unless ``arch_kwargs`` sets ``num_classes``.
    epochs, batch_size : int
    lr : float
    optimizer : {"adam", "sgd"}
    weight_decay : float
    schedule : {"cosine", "step", "constant"}
    seed : int
        Seeds the initial weights, the data subset and the training order.
    profile : str
        The profile the recipe belongs to (``smoke``, ``laptop`` or ``full``); it also sets the
        size of the test set the trainer reports on.
    n_train : int, optional
        Number of training images (``None`` = the whole training set).
    augment : str, optional
        A name of :data:`robust_utils.training.AUGMENTATIONS`; ``"none"`` is stored as ``None``.
    depends_on : mapping or sequence of (name, Recipe) pairs, default ()
        Cached models this one is trained with (C3LT's latent maps need the classifier, the
        generator and the encoder). Their keys enter this recipe's key, and the trainer gets the
        trained models as ``deps``.

    Examples
    --------
    >>> r = Recipe("c3lt_cnn", epochs=4)
    >>> r.key  # doctest: +ELLIPSIS
    'c3lt_cnn-fashion_mnist-laptop-e4-s0-all-...'

    Taught in the Introduction, section "The model cache".
    """

    arch: str
    arch_kwargs: tuple = ()
    objective: str = "cross_entropy"
    objective_params: tuple = ()
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
    depends_on: tuple = ()

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        # Every string below becomes part of a file name: each must be a plain, safe name.
        check_name(self.arch, "arch")
        check_choice(self.arch, "architecture", ARCHITECTURES)
        pairs = _pairs(self.arch_kwargs, "arch_kwargs")
        valid = architecture_parameters(self.arch)
        unknown = sorted({k for k, _ in pairs} - set(valid))
        if unknown:
            raise ValueError(f"unknown arch_kwargs {unknown} for architecture {self.arch!r}; "
                             f"valid: {', '.join(valid)}.")
        set_("arch_kwargs", tuple(sorted((k, _freeze(v, f"arch_kwargs[{k!r}]")) for k, v in pairs)))

        check_name(self.objective, "objective")
        check_choice(self.objective, "objective", TRAINERS)
        trainer = TRAINERS[self.objective]
        given = dict(_pairs(self.objective_params, "objective_params"))
        unknown = sorted(set(given) - set(trainer.params))
        if unknown:
            valid = ", ".join(trainer.params) or "none"
            raise ValueError(f"unknown objective_params {unknown} for objective {self.objective!r}; "
                             f"valid: {valid}.")
        params = {k: _freeze(given.get(k, default), f"objective_params[{k!r}]")
                  for k, default in trainer.params.items()}
        if trainer.check is not None:
            trainer.check(dict(params))
        set_("objective_params", tuple(sorted(params.items())))

        check_name(self.dataset, "dataset")
        check_choice(self.dataset, "dataset", DATASETS)
        n_classes, n_images = DATASETS[self.dataset]
        if self.classes is not None:
            if isinstance(self.classes, (str, int)) or not hasattr(self.classes, "__iter__"):
                raise TypeError(f"classes must be a sequence of class indices, got {self.classes!r}.")
            classes = tuple(check_positive_int(c, "each class index", minimum=0) for c in self.classes)
            if len(classes) < 2 or len(set(classes)) != len(classes):
                raise ValueError(f"classes must hold at least 2 distinct class indices, got {classes}.")
            if max(classes) >= n_classes:
                raise ValueError(f"classes {classes} name a class >= {n_classes}, but {self.dataset} has "
                                 f"classes 0..{n_classes - 1}.")
            set_("classes", classes)
        set_("epochs", check_positive_int(self.epochs, "epochs"))
        set_("batch_size", check_positive_int(self.batch_size, "batch_size"))
        set_("lr", check_number(self.lr, "lr"))
        set_("weight_decay", check_number(self.weight_decay, "weight_decay", strict=False) + 0.0)
        check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        check_choice(self.schedule, "schedule", SCHEDULES)
        set_("seed", check_seed(self.seed))
        if not isinstance(self.profile, str):
            raise TypeError(f"profile must be a profile name ({', '.join(PROFILES)}), got {self.profile!r}.")
        check_name(self.profile, "profile")
        check_choice(self.profile, "profile", PROFILES)
        if self.n_train is not None:
            n_train = check_positive_int(self.n_train, "n_train", minimum=2)
            if n_train > n_images:
                raise ValueError(f"n_train={n_train} is more than the {n_images} training images of "
                                 f"{self.dataset}; pass n_train=None for all of them.")
            set_("n_train", None if n_train == n_images else n_train)
        if self.augment == "none":
            set_("augment", None)
        if self.augment is not None:
            check_name(self.augment, "augment")
            check_choice(self.augment, "augmentation", AUGMENTATIONS)
        deps = _pairs(self.depends_on, "depends_on")
        for name, dep in deps:
            check_name(name, "dependency name")
            if not isinstance(dep, Recipe):
                raise TypeError(f"depends_on[{name!r}] must be a Recipe, got {type(dep).__name__}.")
        set_("depends_on", tuple(sorted(deps)))

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-ready dict (pairs as dicts, tuples as lists, dependencies as nested dicts)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["arch_kwargs"] = {k: _thaw(v) for k, v in self.arch_kwargs}
        d["objective_params"] = {k: _thaw(v) for k, v in self.objective_params}
        d["classes"] = list(self.classes) if self.classes is not None else None
        d["depends_on"] = {name: dep.to_dict() for name, dep in self.depends_on}
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
        fields = dict(d)
        deps = fields.get("depends_on") or {}
        if not isinstance(deps, Mapping):
            raise TypeError(f"depends_on must be a dict of recipes, got {type(deps).__name__}.")
        fields["depends_on"] = {name: cls.from_dict(dep) for name, dep in deps.items()}
        return cls(**fields)

    def canonical_json(self) -> str:
        """Sorted, whitespace-free JSON of every field: the input of the key's hash."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def key(self) -> str:
        """Readable, file-name-safe name of the checkpoint.

        ``<arch>[-<objective>]-<dataset>-<profile>-e<epochs>-s<seed>-<data>[-c<classes>][-<augment>]-<hash>``:
        the objective appears unless it is plain cross-entropy, ``<data>`` is ``all`` or
        ``n<n_train>``, and ``<hash>`` is the first :data:`KEY_HASH_DIGITS` hex digits of the
        SHA-256 of :meth:`canonical_json`, so any change of any field (of a dependency too)
        changes the key. Every readable part is checked to be a plain name, so the key can
        never contain a path separator or ``..``.
        """
        parts = [self.arch]
        if self.objective != "cross_entropy":
            parts.append(self.objective)
        parts += [self.dataset, self.profile, f"e{self.epochs}", f"s{self.seed}",
                  "all" if self.n_train is None else f"n{self.n_train}"]
        if self.classes is not None:
            parts.append("c" + "_".join(map(str, self.classes)))
        if self.augment is not None:
            parts.append(self.augment)
        digest = hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()[:KEY_HASH_DIGITS]
        return check_name("-".join(parts + [digest]), "recipe key", max_len=200)

    def replace(self, **changes) -> "Recipe":
        """A copy with some fields changed (validated like the constructor)."""
        names = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise ValueError(f"unknown Recipe field(s) {unknown}; valid fields: {', '.join(names)}.")
        return dataclasses.replace(self, **changes)

    def build(self):
        """A freshly initialised model of this recipe (seeded with :attr:`seed`)."""
        kwargs = dict(self.arch_kwargs)
        if self.classes is not None and "num_classes" in architecture_parameters(self.arch):
            kwargs.setdefault("num_classes", len(self.classes))
        seed_everything(self.seed)
        return build_model(self.arch, **kwargs)


def default_recipe(arch: str = "c3lt_cnn", profile="auto", seed: int = 0, **overrides) -> Recipe:
    """The book's standard recipe for ``arch`` under a profile.

    Epochs, batch size and training-set size come from the profile
    (:func:`robust_utils.config.resolve_profile`); the optimiser and learning rate from
    :data:`ARCH_DEFAULTS`. Any :class:`Recipe` field can be overridden, e.g.
    ``default_recipe("c3lt_cnn", classes=(0, 1, 2, 3, 5, 7, 8, 9))`` or
    ``default_recipe("c3lt_cnn", objective="trades", objective_params={"beta": 6.0})``.

    Taught in the Introduction, section "The model cache".
    """
    check_choice(arch, "architecture", ARCHITECTURES)
    p = resolve_profile(profile)
    names = [f.name for f in dataclasses.fields(Recipe)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"unknown Recipe field(s) {unknown}; valid fields: {', '.join(names)}.")
    fields = dict(arch=arch, epochs=p.epochs, batch_size=p.batch_size, n_train=p.n_train,
                  profile=p.name, seed=seed, **ARCH_DEFAULTS.get(arch, {}))
    fields.update(overrides)
    return Recipe(**fields)


# ---------------------------------------------------------------------------------------------
# Recipe sets: every model of one chapter
# ---------------------------------------------------------------------------------------------
#: Set name -> ``fn(profile: Profile, seed: int) -> dict[label, Recipe]``.
RECIPE_SETS = Registry("recipe set")


def register_recipe_set(name: str):
    """Decorator: register ``fn(profile, seed) -> {label: Recipe}`` as the recipe set ``name``.

    Taught in the Introduction, section "The model cache".
    """
    def decorate(fn: Callable):
        RECIPE_SETS.register(name, fn)
        return fn
    return decorate


def recipe_set(name: str, profile="auto", seed: int = 0) -> dict[str, Recipe]:
    """The recipes of a named set (e.g. ``"part3"``) under a profile: ``{label: Recipe}``.

    Chapters load their models from these, and ``python -m robust_utils.cache build --set``
    pre-builds the same recipes.

    Taught in the Introduction, section "The model cache".
    """
    check_choice(name, "recipe set", RECIPE_SETS)
    p = resolve_profile(profile)
    recipes = RECIPE_SETS[name](p, check_seed(seed))
    bad = [label for label, r in recipes.items() if not isinstance(r, Recipe)]
    if bad:  # pragma: no cover - a bug in a registered set
        raise TypeError(f"recipe set {name!r} returned non-Recipe entries {bad}.")
    return dict(recipes)


def _small_resnet(p) -> dict:
    """Part 3/4's ResNet: one block per stage (minutes on a CPU) except in the full profile."""
    return {} if p.name == "full" else {"arch_kwargs": {"widths": (8, 16, 32), "blocks_per_stage": (1, 1, 1)}}


#: Part 1's held-out classes (bag and ankle boot) for the novel-class experiment.
PART1_HELD_OUT = (8, 9)


@register_recipe_set("part1")
def _part1(p, seed: int) -> dict[str, Recipe]:
    known = tuple(c for c in range(10) if c not in PART1_HELD_OUT)
    return {"C3LT CNN": default_recipe("c3lt_cnn", profile=p, seed=seed),
            "C3LT CNN (8 known classes)": default_recipe("c3lt_cnn", profile=p, seed=seed, classes=known)}


@register_recipe_set("part2")
def _part2(p, seed: int) -> dict[str, Recipe]:
    return {"C3LT CNN": default_recipe("c3lt_cnn", profile=p, seed=seed),
            "C3LT CNN + noise aug.": default_recipe("c3lt_cnn", profile=p, seed=seed, augment="gaussian_noise")}


@register_recipe_set("part3")
def _part3(p, seed: int) -> dict[str, Recipe]:
    members = 3 if p.name == "smoke" else 5
    out = {f"C3LT CNN (seed {s})": default_recipe("c3lt_cnn", profile=p, seed=s) for s in range(members)}
    out["MLP"] = default_recipe("mlp", profile=p, seed=seed)
    out["PreAct ResNet"] = default_recipe("preact_resnet", profile=p, seed=seed, **_small_resnet(p))
    out["C3LT CNN + noise aug."] = default_recipe("c3lt_cnn", profile=p, seed=seed, augment="gaussian_noise")
    out["high-error C3LT CNN"] = default_recipe("c3lt_cnn", profile=p, seed=seed, epochs=1,
                                                n_train=500 if p.name == "smoke" else 1000)
    return out


@register_recipe_set("part4")
def _part4(p, seed: int) -> dict[str, Recipe]:
    return {"C3LT CNN": default_recipe("c3lt_cnn", profile=p, seed=seed),
            "PreAct ResNet": default_recipe("preact_resnet", profile=p, seed=seed, **_small_resnet(p)),
            "C3LT CNN + noise aug.": default_recipe("c3lt_cnn", profile=p, seed=seed, augment="gaussian_noise"),
            "MLP": default_recipe("mlp", profile=p, seed=seed)}


@register_recipe_set("part8")
def _part8(p, seed: int) -> dict[str, Recipe]:
    """The Conclusions (notebook 08): test-time augmentation on the C3LT CNN of Part 1."""
    return {"C3LT CNN": default_recipe("c3lt_cnn", profile=p, seed=seed)}