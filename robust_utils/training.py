"""Training and prediction loops for the book's classifiers.

The datasets of the book are small (Fashion-MNIST is 188 MB as float32), so they stay as
tensors on the compute device and mini-batches are cut by indexing: no ``DataLoader``, no
worker processes, no per-batch host-to-device copies.

Taught in Part 1, section "The classifier".
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._checks import (check_choice, check_images, check_labels, check_number, check_positive_int,
                      check_same_length, check_seed, model_device)
from ._registry import Registry
from .config import PROFILES, pick_device, progress_bar, seed_everything

__all__ = [
    "iterate_minibatches",
    "train_classifier",
    "predict_logits",
    "predict",
    "evaluate_accuracy",
    "extend_head",
    "no_augment",
    "gaussian_noise",
    "random_flip",
    "AUGMENTATIONS",
    "OPTIMIZERS",
    "SCHEDULES",
    "Trainer",
    "TRAINERS",
    "register_trainer",
    "recipe_data",
    "train_cross_entropy",
]

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("cosine", "step", "constant")


# ---------------------------------------------------------------------------------------------
# Augmentations: batch-wise, on the batch's device, reproducible through a torch.Generator.
# ---------------------------------------------------------------------------------------------
def no_augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The identity augmentation (the ``"none"`` entry of :data:`AUGMENTATIONS`).

    Taught in Part 2, section "The plug-in result: introspection on top of noise training".
    """
    return x


def gaussian_noise(x: torch.Tensor, generator: torch.Generator | None = None,
                   sigma: float = 0.1) -> torch.Tensor:
    """Add i.i.d. Gaussian pixel noise of standard deviation ``sigma`` and clamp to ``[0, 1]``.

    Training on noisy copies is the simplest robustness recipe (Gaussian data augmentation).
    ``generator`` must live on ``x.device`` (or be ``None`` for the global RNG).

    Taught in Part 2, section "The plug-in result: introspection on top of noise training".
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}.")
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + sigma * noise).clamp(0.0, 1.0)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None,
                p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability ``p`` (one coin per image, no loop).

    Taught in Part 2, section "The plug-in result: introspection on top of noise training".
    """
    coins = torch.rand(x.shape[0], generator=generator, device=x.device) < p
    return torch.where(coins.view(-1, 1, 1, 1), x.flip(-1), x)


#: Registered augmentations by name (the names a :class:`robust_utils.cache.Recipe` may use).
#: Each is called as ``augment(batch, generator)`` and returns a batch of the same shape.
AUGMENTATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "none": no_augment,
    "gaussian_noise": gaussian_noise,
    "flip": random_flip,
}


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")


def iterate_minibatches(x: torch.Tensor, y: torch.Tensor | None = None, batch_size: int = 128,
                        shuffle: bool = True, generator: torch.Generator | None = None,
                        drop_last: bool = False) -> Iterator:
    """Cut tensors into mini-batches by indexing (the data never leave their device).

    Parameters
    ----------
    x : Tensor
        Inputs, first dimension = samples.
    y : Tensor, optional
        Targets of the same length; when ``None`` only ``x`` batches are yielded.
    batch_size : int
    shuffle : bool
        Visit the samples in a random order (drawn with ``generator``, a CPU generator).
    generator : torch.Generator, optional
        Makes the order reproducible; ``None`` uses the global RNG.
    drop_last : bool
        Skip the final incomplete batch.

    Yields
    ------
    ``(x_batch, y_batch)`` or ``x_batch`` when ``y`` is ``None``.

    Taught in Part 1, section "The classifier".
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}.")
    if y is not None:
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}.")
        check_same_length("x", x, "y", y)
    batch_size = check_positive_int(batch_size, "batch_size")
    n = x.shape[0]
    order = None
    if shuffle:
        order = torch.randperm(n, generator=generator).to(x.device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            sl = slice(start, start + batch_size)
            xb, yb = x[sl], (y[sl] if y is not None else None)
        else:
            idx = order[start:start + batch_size]
            xb = x[idx]
            yb = y[idx.to(y.device)] if y is not None else None
        yield (xb, yb) if y is not None else xb


def _make_scheduler(opt, schedule: str, total_steps: int):
    if schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    if schedule == "step":
        # /10 at 50% and /100 at 75% of training (the usual CIFAR recipe, used by UDR).
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: 1.0 if step < 0.5 * total_steps else (0.1 if step < 0.75 * total_steps else 0.01))
    return None


def _check_schedule(epochs, batch_size, lr, weight_decay, optimizer, schedule, seed):
    """The optimisation arguments every training loop takes, checked: (epochs, batch_size, lr, wd, seed)."""
    check_choice(optimizer, "optimizer", OPTIMIZERS)
    check_choice(schedule, "schedule", SCHEDULES)
    return (check_positive_int(epochs, "epochs"), check_positive_int(batch_size, "batch_size"),
            check_number(lr, "lr"), check_number(weight_decay, "weight_decay", strict=False), check_seed(seed))


def _make_optimizer(model: nn.Module, optimizer: str, lr: float, weight_decay: float):
    """Adam, or SGD with momentum 0.9, over the model's trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters.")
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)


@dataclass
class _Loop:
    """What a training loop sets up before its first batch (see :func:`_loop_setup`)."""

    dev: torch.device
    x: torch.Tensor
    y: torch.Tensor
    order_gen: torch.Generator
    gen: torch.Generator
    opt: torch.optim.Optimizer
    drop_last: bool
    steps_per_epoch: int
    scheduler: Any


def _loop_setup(model, x, y, *, device, seed, optimizer, lr, weight_decay, schedule, epochs,
                batch_size) -> _Loop:
    """Seed, move model and data to the device, and build the batch-order generator, a device
    generator (seed + 1, for augmentation noise or random starts), the optimiser and the schedule."""
    dev = pick_device(device)
    seed_everything(seed)
    model.to(dev)
    x, y = x.to(dev), y.to(dev)
    opt = _make_optimizer(model, optimizer, lr, weight_decay)
    n = x.shape[0]
    # A final batch of one image would break batch norm in train mode: drop it in that case.
    drop_last = n % batch_size == 1
    steps_per_epoch = n // batch_size + (0 if drop_last or n % batch_size == 0 else 1)
    return _Loop(dev, x, y, torch.Generator().manual_seed(seed),
                 torch.Generator(device=dev).manual_seed(seed + 1), opt, drop_last, steps_per_epoch,
                 _make_scheduler(opt, schedule, epochs * steps_per_epoch))


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def train_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int,
                     batch_size: int = 128, lr: float = 1e-3, optimizer: str = "adam",
                     weight_decay: float = 0.0, schedule: str = "cosine", device="cpu",
                     seed: int = 0, augment: Callable | str | None = None,
                     val_data: tuple[torch.Tensor, torch.Tensor] | None = None,
                     progress: bool = True, desc: str | None = None) -> dict:
    """Train ``model`` with cross-entropy on images ``x`` (``[0, 1]`` pixels) and labels ``y``.

    The data are moved to ``device`` once and mini-batches are cut by indexing. The model is in
    train mode while training and is left in eval mode (also after an error).

    Parameters
    ----------
    model : torch.nn.Module
        A classifier of :mod:`robust_utils.models` (any module mapping images to logits works).
    x : Tensor (N, C, H, W)
        Training images in ``[0, 1]``.
    y : Tensor (N,)
        Integer class labels.
    epochs : int
        Passes over the data.
    batch_size : int, default 128
    lr : float, default 1e-3
        Peak learning rate.
    optimizer : {"adam", "sgd"}, default "adam"
        ``"sgd"`` uses momentum 0.9.
    weight_decay : float, default 0
    schedule : {"cosine", "step", "constant"}, default "cosine"
        Learning-rate schedule, updated after every batch: cosine decay to 0, or ``/10`` at 50 %
        and ``/100`` at 75 % of training, or constant.
    device : str or torch.device, default "cpu"
        ``"auto"`` picks CUDA when available (see :func:`robust_utils.config.pick_device`).
    seed : int, default 0
        Seeds the global RNGs (dropout), the batch order and the augmentation noise. The model's
        *initial* weights are not touched: seed before building the model.
    augment : callable or str, optional
        Applied to each training batch as ``augment(batch, generator)``; a string names an
        entry of :data:`AUGMENTATIONS` (``"none"``, ``"gaussian_noise"``, ``"flip"``).
    val_data : (Tensor, Tensor), optional
        Held-out images and labels whose accuracy is recorded after each epoch.
    progress : bool, default True
        Show a tqdm progress bar over batches.
    desc : str, optional
        Label of the progress bar.

    Returns
    -------
    dict
        Per-epoch lists ``"loss"`` (mean training loss), ``"accuracy"`` (training accuracy on
        the augmented batches, in train mode), ``"lr"`` (at the epoch's end), ``"time"``
        (seconds), and ``"val_accuracy"`` when ``val_data`` is given.

    Taught in Part 1, section "The classifier".
    """
    _check_model(model)
    x = check_images(x, "x")
    num_classes = getattr(model, "num_classes", None)
    y = check_labels(y, n=x.shape[0], num_classes=num_classes, name="y")
    if x.shape[0] < 2:
        raise ValueError("training needs at least 2 images (batch norm cannot train on one).")
    epochs, batch_size, lr, weight_decay, seed = _check_schedule(epochs, batch_size, lr, weight_decay,
                                                                 optimizer, schedule, seed)
    if isinstance(augment, str):
        check_choice(augment, "augmentation", AUGMENTATIONS)
        augment = AUGMENTATIONS[augment]
    if augment is not None and not callable(augment):
        raise TypeError(f"augment must be None, a callable augment(batch, generator) or one of "
                        f"{list(AUGMENTATIONS)}, got {augment!r}.")
    if val_data is not None:
        if not isinstance(val_data, (tuple, list)) or len(val_data) != 2:
            raise TypeError("val_data must be a pair (images, labels).")
        check_images(val_data[0], "val_data images")
        check_labels(val_data[1], n=val_data[0].shape[0], num_classes=num_classes, name="val_data labels")

    run = _loop_setup(model, x, y, device=device, seed=seed, optimizer=optimizer, lr=lr,
                      weight_decay=weight_decay, schedule=schedule, epochs=epochs, batch_size=batch_size)
    dev, x, y, order_gen, aug_gen = run.dev, run.x, run.y, run.order_gen, run.gen
    opt, drop_last, steps_per_epoch, scheduler = run.opt, run.drop_last, run.steps_per_epoch, run.scheduler

    history: dict[str, list] = {"loss": [], "accuracy": [], "lr": [], "time": []}
    if val_data is not None:
        history["val_accuracy"] = []
    bar = progress_bar(total=epochs * steps_per_epoch, disable=not progress, unit="batch",
               desc=desc or f"training {getattr(model, 'arch', type(model).__name__)}")
    try:
        for epoch in range(epochs):
            model.train()
            t0 = time.perf_counter()
            loss_sum = torch.zeros((), device=dev)
            correct = torch.zeros((), device=dev, dtype=torch.long)
            seen = 0
            for step, (xb, yb) in enumerate(iterate_minibatches(x, y, batch_size, shuffle=True,
                                                                 generator=order_gen,
                                                                 drop_last=drop_last)):
                if augment is not None:
                    xb = augment(xb, aug_gen)
                logits = model(xb)
                loss = F.cross_entropy(logits, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if scheduler is not None:
                    scheduler.step()
                loss_sum += loss.detach() * yb.shape[0]
                correct += (logits.detach().argmax(1) == yb).sum()
                seen += yb.shape[0]
                bar.update(1)
                if progress and step % 25 == 0:
                    bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{float(loss.detach()):.3f}")
            history["loss"].append(float(loss_sum) / seen)
            history["accuracy"].append(float(correct) / seen)
            history["lr"].append(opt.param_groups[0]["lr"])
            history["time"].append(time.perf_counter() - t0)
            post = dict(epoch=f"{epoch + 1}/{epochs}", loss=f"{history['loss'][-1]:.3f}",
                        acc=f"{history['accuracy'][-1]:.3f}")
            if val_data is not None:
                history["val_accuracy"].append(evaluate_accuracy(model, *val_data, device=dev))
                post["val_acc"] = f"{history['val_accuracy'][-1]:.3f}"
            bar.set_postfix(**post)
    finally:
        bar.close()
        model.eval()
    return history


# ---------------------------------------------------------------------------------------------
# Prediction
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1024,
                   device=None) -> torch.Tensor:
    """Logits of ``model`` on images ``x``, computed in eval mode, without gradients, in batches.

    Parameters
    ----------
    model : torch.nn.Module
    x : Tensor (N, C, H, W)
        Images in ``[0, 1]`` (on any device).
    batch_size : int, default 1024
    device : str or torch.device, optional
        Where to compute; ``None`` uses the model's device (the model is moved if needed).

    Returns
    -------
    Tensor (N, num_classes)
        On ``x``'s device. The model's train/eval mode is restored afterwards.

    Taught in Part 1, section "The classifier".
    """
    _check_model(model)
    check_images(x, "x")
    batch_size = check_positive_int(batch_size, "batch_size")
    dev = model_device(model) if device is None else pick_device(device)
    model.to(dev)
    was_training = model.training
    model.eval()
    try:
        out = [model(xb.to(dev)).to(x.device)
               for xb in iterate_minibatches(x, None, batch_size, shuffle=False)]
    finally:
        model.train(was_training)
    return torch.cat(out)


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024,
            device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities ``(N, K)`` and predicted labels ``(N,)`` of ``model`` on ``x``.

    Taught in Part 3, section "Single-pass uncertainty: distance to the training representations".
    """
    logits = predict_logits(model, x, batch_size=batch_size, device=device)
    probs = logits.softmax(dim=1)
    return probs, probs.argmax(dim=1)


def evaluate_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024,
                      device=None) -> float:
    """Fraction of images of ``x`` whose predicted label equals ``y``.

    Taught in Part 3, section "Step 2: the challenge sets".
    """
    check_images(x, "x")
    y = check_labels(y, n=x.shape[0], name="y")
    logits = predict_logits(model, x, batch_size=batch_size, device=device)
    return float((logits.argmax(1) == y.to(logits.device)).float().mean())


# ---------------------------------------------------------------------------------------------
# Trainers: how a cached model is made, registered by name
# ---------------------------------------------------------------------------------------------
def extend_head(model: nn.Module, num_classes: int, seed: int = 0) -> nn.Module:
    """A copy of ``model`` whose output layer ``head`` has ``num_classes`` outputs instead of fewer.

    The new model computes the same logits as ``model`` for the old classes (their rows of the
    head's weight and bias are copied) and adds rows for the new classes, initialised as PyTorch
    initialises a fresh ``nn.Linear`` (seeded by ``seed``). ``model`` itself is not changed.
    Every classifier of :mod:`robust_utils.models` has such a ``head``. Used to teach a deployed
    network new classes and watch what it forgets.

    Taught in Part 1, section "Why not retrain on the novel data? The second punch".
    """
    import copy
    _check_model(model)
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear):
        raise TypeError(f"extend_head needs a model whose output layer is an nn.Linear named 'head' (every "
                        f"classifier of robust_utils.models has one); {type(model).__name__} has "
                        f"{type(head).__name__ if head is not None else 'none'}.")
    old = head.out_features
    num_classes = check_positive_int(num_classes, "num_classes", minimum=old + 1)
    g = torch.Generator().manual_seed(check_seed(seed))
    fresh = nn.Linear(head.in_features, num_classes, bias=head.bias is not None, dtype=head.weight.dtype)
    bound = 1.0 / math.sqrt(head.in_features)  # nn.Linear's default (Kaiming-uniform with a = sqrt(5))
    with torch.no_grad():
        fresh.weight.copy_(torch.empty(fresh.weight.shape, dtype=torch.float64).uniform_(-bound, bound, generator=g))
        fresh.weight[:old] = head.weight.detach().cpu()
        if head.bias is not None:
            fresh.bias.copy_(torch.empty(fresh.bias.shape, dtype=torch.float64).uniform_(-bound, bound, generator=g))
            fresh.bias[:old] = head.bias.detach().cpu()
    out = copy.deepcopy(model)
    out.head = fresh.to(device=head.weight.device)
    if hasattr(out, "num_classes"):
        out.num_classes = num_classes
    return out


@dataclass(frozen=True)
class Trainer:
    """A registered training objective: the ``objective`` of a :class:`robust_utils.cache.Recipe`.

    Attributes
    ----------
    name : str
        The name recipes use (``"cross_entropy"``, ``"trades"``, ...).
    fn : callable
        ``fn(model, recipe, *, device, progress, deps) -> dict`` trains ``model`` (already on
        ``device``) as the recipe says and returns metrics for the checkpoint's sidecar
        (``test_accuracy`` at least, for classifiers). ``deps`` maps each dependency's name to
        its trained model.
    params : mapping
        The objective's parameters and their defaults (e.g. ``{"beta": 6.0, "eps": 0.1}``).
        A recipe's ``objective_params`` may set only these; the rest take the default, and the
        recipe's key covers all of them.
    check : callable, optional
        ``check(params: dict)`` raises on invalid values (e.g. a negative beta).

    Taught in the Introduction, section "The model cache".
    """

    name: str
    fn: Callable[..., Mapping]
    params: Mapping[str, Any] = field(default_factory=dict)
    check: Callable[[dict], None] | None = None


#: Objective name -> :class:`Trainer`. Chapters register theirs with :func:`register_trainer`.
TRAINERS = Registry("trainer")


def register_trainer(name: str, *, params: Mapping[str, Any] | None = None,
                     check: Callable[[dict], None] | None = None, replace: bool = False):
    """Decorator: register ``fn(model, recipe, *, device, progress, deps)`` as objective ``name``.

    Registering another definition under a taken name is an error unless ``replace=True``.
    The trainer's code is not part of a recipe's key: when you change what a registered trainer
    does, give it a new parameter (or a new name) so that old checkpoints are not reused.

    A new training method is a new small function in the module that teaches it::

        @register_trainer("trades", params={"beta": 6.0, "eps": 0.1, "steps": 10})
        def train_trades(model, recipe, *, device, progress, deps):
            ...
            return {"test_accuracy": ...}

    Taught in the Introduction, section "The model cache".
    """
    params = dict(params or {})
    if check is not None and not callable(check):
        raise TypeError(f"check must be callable, got {check!r}.")

    def decorate(fn):
        if not callable(fn):
            raise TypeError(f"a trainer must be callable, got {fn!r}.")
        TRAINERS.register(name, Trainer(name, fn, params, check), replace=replace)
        return fn
    return decorate


def recipe_data(recipe, device="cpu") -> dict[str, torch.Tensor]:
    """The training and test tensors a recipe names, on ``device``.

    Fashion-MNIST's training images (``recipe.n_train`` of them, a stratified subset drawn with
    the recipe's seed) and the profile's test images, restricted and relabelled to
    ``recipe.classes`` when set. Returns ``{"x_train", "y_train", "x_test", "y_test"}``.

    Taught in the Introduction, section "The model cache".
    """
    from . import data  # lazy: data are only needed when a model must be trained

    if recipe.dataset != "fashion_mnist":  # pragma: no cover - DATASETS has one entry
        raise ValueError(f"no loader for dataset {recipe.dataset!r}.")
    n_test = PROFILES[recipe.profile].n_test
    x, y = data.load_fashion_mnist("train", n=recipe.n_train, seed=recipe.seed)
    xt, yt = data.load_fashion_mnist("test", n=n_test, seed=recipe.seed)
    if recipe.classes is not None:
        x, y = data.subset_classes(x, y, recipe.classes)
        xt, yt = data.subset_classes(xt, yt, recipe.classes)
    dev = pick_device(device)
    return {"x_train": x.to(dev), "y_train": y.to(dev), "x_test": xt.to(dev), "y_test": yt.to(dev)}


@register_trainer("cross_entropy")
def train_cross_entropy(model: nn.Module, recipe, *, device, progress: bool = True, deps=None) -> dict:
    """The standard objective: cross-entropy on the recipe's data (:func:`train_classifier`).

    Returns the test accuracy and the last epoch's training loss and accuracy.

    Taught in Part 1, section "The classifier".
    """
    d = recipe_data(recipe, device)
    history = train_classifier(
        model, d["x_train"], d["y_train"], epochs=recipe.epochs, batch_size=recipe.batch_size,
        lr=recipe.lr, optimizer=recipe.optimizer, weight_decay=recipe.weight_decay,
        schedule=recipe.schedule, device=device, seed=recipe.seed, augment=recipe.augment,
        progress=progress, desc=f"training {recipe.key}")
    return {
        "test_accuracy": evaluate_accuracy(model, d["x_test"], d["y_test"]),
        "train_accuracy": history["accuracy"][-1],
        "train_loss": history["loss"][-1],
        "train_seconds": round(sum(history["time"]), 2),
        "n_train": int(d["x_train"].shape[0]),
        "n_test": int(d["x_test"].shape[0]),
    }
