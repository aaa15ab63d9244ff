"""Introspective learning: a two-stage approach to inference (Prabhushankar & AlRegib, NeurIPS 2022).

A feed-forward network answers "why P?" with one pass. *Introspection* adds a second stage
that asks the trained network, for every class Q, "why P, rather than Q?", and reads the
answer off the gradients: the change the network's parameters would need if Q were the label.

Stage 1 (sensing, then reflecting)
    Pass the image through the trained network ``f`` and backpropagate a loss between its logits
    and the *confounding label*, a vector of all ones ("what if the image were every class at
    once?"), to the final linear layer ``head.weight`` (``C x D``). Row ``i`` of that gradient
    answers the contrast question for class ``i``: these rows are the *introspective features*
    (:func:`introspective_features`).
Stage 2 (the introspective network)
    A small MLP ``H`` reads the features and predicts the class (:class:`IntrospectiveNet`,
    trained by :func:`fit_introspective`). At inference, ``x -> f -> gradients -> H``.

The authors published no code for the second stage; the slides describe it as a three-layer
MLP over the gradient features, and that is what this module implements.

Taught in Part 2, section "Introspective learning: a two-stage inference".
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from ._checks import (check_choice, check_head_model, check_labels, check_number, check_positive_int,
                      check_seed)
from .config import pick_device, progress_bar, seed_everything
from ._checks import check_bool, check_model_input
from .training import iterate_minibatches

__all__ = [
    "LOSSES",
    "REDUCTIONS",
    "confounding_loss",
    "introspective_features",
    "IntrospectiveNet",
    "IntrospectiveClassifier",
    "fit_introspective",
]

#: Losses between the logits and the all-ones confounding label (see :func:`confounding_loss`).
LOSSES = ("bce", "mse")
#: Shapes of the introspective features (see :func:`introspective_features`).
REDUCTIONS = ("rows", "norms", "flatten")


# ---------------------------------------------------------------------------------------------
# Stage 1: gradient features
# ---------------------------------------------------------------------------------------------
def confounding_loss(logits: torch.Tensor, loss: str = "bce") -> torch.Tensor:
    """Loss between logits and the all-ones confounding label, summed over classes (and images).

    ``"bce"``: :math:`\\sum_i \\mathrm{BCEWithLogits}(z_i, 1) = -\\sum_i \\log\\sigma(z_i)`, whose
    derivative with respect to logit ``i`` is :math:`\\sigma(z_i) - 1`.

    ``"mse"``: :math:`\\sum_i (p_i - 1)^2` with ``p = softmax(z)``, whose derivative mixes the
    classes through the softmax Jacobian.

    Taught in Part 2, section "Stage 1: gradient features".
    """
    check_choice(loss, "loss", LOSSES)
    if not isinstance(logits, torch.Tensor) or not torch.is_floating_point(logits):
        raise TypeError(f"logits must be a floating-point tensor, got {type(logits).__name__}.")
    ones = torch.ones_like(logits)
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(logits, ones, reduction="sum")
    return (logits.softmax(dim=-1) - ones).pow(2).sum()


def _check_model(model) -> None:
    check_head_model(model, "dropout and batch-norm batch statistics would make the introspective "
                            "features random (a different answer per call)")


def _head_gradients(model: nn.Module, h: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-sample gradient of the confounding loss w.r.t. ``head.weight``: (B, C, D), via torch.func."""
    head = model.head
    weight = head.weight.detach()
    bias = None if head.bias is None else head.bias.detach()

    def loss_one(w: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        params = {"weight": w} if bias is None else {"weight": w, "bias": bias}
        logits = functional_call(head, params, (hi.unsqueeze(0),))
        return confounding_loss(logits, loss)

    return vmap(grad(loss_one), in_dims=(None, 0))(weight, h)


def _reduce(g: torch.Tensor, reduce: str) -> torch.Tensor:
    if reduce == "rows":
        return g
    if reduce == "norms":
        return g.norm(dim=2)
    return g.flatten(1)


def introspective_features(model: nn.Module, x: torch.Tensor, *, batch_size: int = 512,
                           loss: str = "bce", reduce: str = "rows",
                           progress: bool = False) -> torch.Tensor:
    """Stage 1 of introspection: the gradient of the confounding loss w.r.t. the last layer.

    For each image, the logits ``z = W h + b`` (``h`` = ``model.features(x)``, ``W`` =
    ``model.head.weight``, ``C x D``) are compared with the all-ones *confounding* label, the
    slides' Step 1: "what if the image were every class at once?". The gradient of that loss
    with respect to ``W`` has one row per contrast class ``Q = i``, answering "why P, rather
    than i?"; its rows are the introspective features.

    **Loss used: BCE-with-logits against all ones** (``loss="bce"``, the default), summed over
    classes. Its gradient row for class ``i`` is exactly

    .. math::  \\nabla_{W_i} L = (\\sigma(z_i) - 1)\\, h ,

    the form of Lemma 1 in the slides: the change needed to make class ``i`` true is
    proportional to ``(p_i - 1)`` times the penultimate features, so each row depends on its own
    class alone. Rows of classes the network already believes in are near 0; rows of classes it
    rejects are near ``-h``. It is also the loss of the authors' published gradient code (the
    "purview" features, see REFERENCE_NOTES). ``loss="mse"`` (squared error between the softmax
    and all ones) is offered for comparison; its rows mix the classes through the softmax.

    Every loss of the logits gives a rank-one gradient ``g h^T`` (``g`` = gradient w.r.t. the
    logits), so the ``C x D`` features are one per-class scalar times the same ``h``: the
    second stage sees how the network's *confidence in every class* is spread over its
    features, not new directions.

    The per-sample gradients come from :mod:`torch.func` (``vmap`` of ``grad`` through
    ``functional_call`` of the head): one vectorised backward pass per batch, no loop over
    images. The features ``h`` are computed once with the model in eval mode; since ``W`` only
    acts through ``head(h)`` this is the gradient of the whole network's loss.

    Parameters
    ----------
    model : BookModel
        A trained classifier in eval mode with ``features(x)`` and a linear ``head``.
    x : Tensor (N, C, H, W)
        Images in ``[0, 1]``.
    batch_size : int, default 512
        Images per vectorised backward pass (bounds memory).
    loss : {"bce", "mse"}, default "bce"
    reduce : {"rows", "norms", "flatten"}, default "rows"
        ``"rows"``: the gradients ``(N, num_classes, D)``; ``"flatten"``: the same as
        ``(N, num_classes * D)``; ``"norms"``: the L2 norm of each row, ``(N, num_classes)``
        (cheap and compact: ``|sigma(z_i) - 1| * ||h||`` for BCE).
    progress : bool, default False
        Show a progress bar over batches.

    Returns
    -------
    Tensor
        On ``x``'s device, float32, shaped as described under ``reduce``.

    Taught in Part 2, section "Stage 1: gradient features".
    """
    _check_model(model)
    check_model_input(model, x, value_range=(0.0, 1.0))
    batch_size = check_positive_int(batch_size, "batch_size")
    progress = check_bool(progress, "progress")
    check_choice(loss, "loss", LOSSES)
    check_choice(reduce, "reduce", REDUCTIONS)
    dev = model.head.weight.device
    out = []
    n_batches = math.ceil(x.shape[0] / batch_size)
    bar = progress_bar(total=n_batches, disable=not progress, unit="batch",
                       desc="introspective features")
    try:
        for xb in iterate_minibatches(x, None, batch_size, shuffle=False):
            with torch.no_grad():
                h = model.features(xb.to(dev))
            out.append(_reduce(_head_gradients(model, h, loss), reduce).to(x.device))
            bar.update(1)
    finally:
        bar.close()
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------
# Stage 2: the introspective network
# ---------------------------------------------------------------------------------------------
def _check_hidden(hidden) -> tuple[int, ...]:
    if isinstance(hidden, int) and not isinstance(hidden, bool):
        hidden = (hidden,)
    if not isinstance(hidden, Sequence) or isinstance(hidden, str):
        raise TypeError(f"hidden must be a sequence of layer widths such as (128, 64), got {hidden!r}.")
    return tuple(check_positive_int(w, f"hidden[{i}]") for i, w in enumerate(hidden))


def _check_feature_shape(feature_shape) -> tuple[int, ...]:
    if isinstance(feature_shape, int) and not isinstance(feature_shape, bool):
        feature_shape = (feature_shape,)
    if isinstance(feature_shape, torch.Size):
        feature_shape = tuple(feature_shape)
    if not isinstance(feature_shape, Sequence) or isinstance(feature_shape, str) or not feature_shape:
        raise TypeError(f"feature_shape must be the shape of one image's features, e.g. (10, 256) for "
                        f"reduce='rows', got {feature_shape!r}.")
    return tuple(check_positive_int(s, f"feature_shape[{i}]") for i, s in enumerate(feature_shape))


class IntrospectiveNet(nn.Module):
    """Stage 2 of introspection: an MLP from introspective features to class logits.

    ``standardise -> flatten -> [Linear -> ReLU] per hidden width -> Linear num_classes``; with
    the default ``hidden=(128, 64)`` it is the three-layer MLP that the slides describe. The
    authors never published the second stage's code, so the widths and the standardisation are
    this book's choices.

    The per-feature standardisation statistics are buffers (``feature_mean``,
    ``feature_std``; 0 and 1 until :meth:`set_standardization` is called), so they are saved in
    the ``state_dict`` and the network takes *raw* features from
    :func:`introspective_features`.

    Parameters
    ----------
    num_classes : int
        Number of classes predicted (>= 2).
    feature_shape : int or tuple of int
        Shape of one image's features, e.g. ``(num_classes, D)`` for ``reduce="rows"``.
    hidden : sequence of int, default (128, 64)
        Hidden layer widths.

    Taught in Part 2, section "Stage 2: the introspective network".
    """

    def __init__(self, num_classes: int, feature_shape, hidden: Sequence[int] = (128, 64)):
        super().__init__()
        self.num_classes = check_positive_int(num_classes, "num_classes", minimum=2)
        self.feature_shape = _check_feature_shape(feature_shape)
        self.hidden = _check_hidden(hidden)
        in_features = math.prod(self.feature_shape)
        self.register_buffer("feature_mean", torch.zeros(in_features))
        self.register_buffer("feature_std", torch.ones(in_features))
        layers: list[nn.Module] = []
        width = in_features
        for out in self.hidden:
            layers += [nn.Linear(width, out), nn.ReLU()]
            width = out
        layers.append(nn.Linear(width, self.num_classes))
        self.mlp = nn.Sequential(*layers)

    def set_standardization(self, mean: torch.Tensor, std: torch.Tensor, eps: float = 1e-6) -> None:
        """Store the per-feature mean and standard deviation of the training features.

        Features whose standard deviation is below ``eps`` (constant on the training set, e.g.
        dead units) get a standard deviation of 1, so they cannot blow up on new data.
        """
        n = self.feature_mean.numel()
        mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean.numel() != n or std.numel() != n:
            raise ValueError(f"mean and std must have {n} entries (one per feature of shape "
                             f"{self.feature_shape}), got {mean.numel()} and {std.numel()}.")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()) or (std < 0).any():
            raise ValueError("mean and std must be finite and std non-negative.")
        std = torch.where(std < eps, torch.ones_like(std), std)
        self.feature_mean.copy_(mean.to(self.feature_mean.device))
        self.feature_std.copy_(std.to(self.feature_std.device))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, num_classes)`` from raw features ``(N, *feature_shape)``."""
        if not isinstance(features, torch.Tensor) or not torch.is_floating_point(features):
            raise TypeError(f"features must be a floating-point tensor, got {type(features).__name__}.")
        if tuple(features.shape[1:]) != self.feature_shape:
            raise ValueError(f"features must have shape (N, {', '.join(map(str, self.feature_shape))}), got "
                             f"{tuple(features.shape)}; compute them with introspective_features(...) "
                             "using the same reduce as in training.")
        z = (features.flatten(1) - self.feature_mean) / self.feature_std
        return self.mlp(z)


class IntrospectiveClassifier:
    """The two stages together: ``x -> model -> introspective features -> IntrospectiveNet``.

    Returned by :func:`fit_introspective`. The feed-forward ``model`` is used frozen (never
    modified); ``net`` is the trained stage 2, an :class:`torch.nn.Module`.

    Attributes
    ----------
    model : BookModel
        The feed-forward network (stage 1), in eval mode.
    net : IntrospectiveNet
        The introspective network (stage 2), with its standardisation buffers.
    reduce, loss : str
        How the features are computed (see :func:`introspective_features`).
    history : dict
        Per-epoch ``"loss"`` and ``"accuracy"`` of stage 2 on the training features.

    Taught in Part 2, section "Stage 2: the introspective network".
    """

    def __init__(self, model: nn.Module, net: IntrospectiveNet, *, reduce: str = "rows",
                 loss: str = "bce", batch_size: int = 512, history: dict | None = None):
        _check_model(model)
        if not isinstance(net, IntrospectiveNet):
            raise TypeError(f"net must be an IntrospectiveNet, got {type(net).__name__}.")
        self.model = model
        self.net = net.eval()
        self.reduce = check_choice(reduce, "reduce", REDUCTIONS)
        self.loss = check_choice(loss, "loss", LOSSES)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.history = history or {}

    def features(self, x: torch.Tensor, progress: bool = False) -> torch.Tensor:
        """Stage-1 features of ``x`` (raw, unstandardised), as used by :attr:`net`."""
        return introspective_features(self.model, x, batch_size=self.batch_size, loss=self.loss,
                                      reduce=self.reduce, progress=progress)

    def predict_logits(self, x: torch.Tensor, progress: bool = False) -> torch.Tensor:
        """Stage-2 logits ``(N, num_classes)`` of images ``x``, on ``x``'s device."""
        _check_model(self.model)
        check_model_input(self.model, x, value_range=(0.0, 1.0))
        progress = check_bool(progress, "progress")
        dev = self.model.head.weight.device
        self.net.to(dev).eval()
        out = []
        bar = progress_bar(total=math.ceil(x.shape[0] / self.batch_size), disable=not progress,
                           unit="batch", desc="introspective inference")
        try:
            for xb in iterate_minibatches(x, None, self.batch_size, shuffle=False):
                f = introspective_features(self.model, xb.to(dev), batch_size=self.batch_size,
                                           loss=self.loss, reduce=self.reduce)
                with torch.no_grad():
                    out.append(self.net(f).to(x.device))
                bar.update(1)
        finally:
            bar.close()
        return torch.cat(out)

    def predict_proba(self, x: torch.Tensor, progress: bool = False) -> torch.Tensor:
        """End-to-end softmax probabilities ``(N, num_classes)``: model -> features -> stage 2."""
        return self.predict_logits(x, progress=progress).softmax(dim=1)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted class of each image ``(N,)``."""
        return self.predict_logits(x).argmax(dim=1)

    def config(self) -> dict:
        """What is needed, with the ``state_dict``, to rebuild the classifier."""
        return {"num_classes": self.net.num_classes, "feature_shape": self.net.feature_shape,
                "hidden": self.net.hidden, "reduce": self.reduce, "loss": self.loss}

    def state_dict(self) -> dict:
        """The stage-2 network's ``state_dict`` (weights and standardisation buffers)."""
        return self.net.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        """Load stage-2 weights saved with :meth:`state_dict`."""
        self.net.load_state_dict(state_dict)

    def __repr__(self) -> str:
        return (f"IntrospectiveClassifier(model={type(self.model).__name__}, reduce={self.reduce!r}, "
                f"loss={self.loss!r}, net={self.net.mlp})")


def _train_mlp(net: nn.Module, f: torch.Tensor, y: torch.Tensor, *, epochs: int, batch_size: int,
               lr: float, seed: int, progress: bool) -> dict:
    """Adam + cosine schedule on feature vectors (train_classifier expects images, not features)."""
    order_gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * math.ceil(f.shape[0] / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    history: dict[str, list] = {"loss": [], "accuracy": []}
    bar = progress_bar(total=steps, disable=not progress, unit="batch", desc="training introspective net")
    try:
        net.train()
        for epoch in range(epochs):
            loss_sum, correct = 0.0, 0
            for fb, yb in iterate_minibatches(f, y, batch_size, shuffle=True, generator=order_gen):
                logits = net(fb)
                loss = F.cross_entropy(logits, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                loss_sum += float(loss.detach()) * yb.shape[0]
                correct += int((logits.detach().argmax(1) == yb).sum())
                bar.update(1)
            history["loss"].append(loss_sum / f.shape[0])
            history["accuracy"].append(correct / f.shape[0])
            bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{history['loss'][-1]:.3f}",
                            acc=f"{history['accuracy'][-1]:.3f}")
    finally:
        bar.close()
        net.eval()
    return history


def fit_introspective(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, *, epochs: int,
                      batch_size: int = 256, lr: float = 1e-3, reduce: str = "rows", loss: str = "bce",
                      hidden: Sequence[int] = (128, 64), feature_batch_size: int = 512,
                      device="cpu", seed: int = 0, progress: bool = True) -> IntrospectiveClassifier:
    """Train the introspective network (stage 2) on the stage-1 features of a training set.

    1. Compute the introspective features of ``x_train`` with the frozen ``model``
       (:func:`introspective_features`, batched, with a progress bar).
    2. Standardise them per feature (the mean and standard deviation are stored in the
       network's buffers).
    3. Train an :class:`IntrospectiveNet` with cross-entropy on ``y_train`` (Adam, cosine
       learning-rate decay, mini-batches cut from the feature tensor; ``train_classifier``
       is not used because it expects ``[0, 1]`` images, not feature vectors).

    Parameters
    ----------
    model : BookModel
        The trained feed-forward classifier, in eval mode; it is not modified (but is moved to
        ``device``).
    x_train : Tensor (N, C, H, W)
        Images in ``[0, 1]``; usually the same training set as the feed-forward network's.
    y_train : Tensor (N,)
        Their labels.
    epochs : int
        Passes of stage-2 training.
    batch_size : int, default 256
        Stage-2 mini-batch size.
    lr : float, default 1e-3
        Peak learning rate of Adam.
    reduce, loss : str
        Feature form and confounding loss (see :func:`introspective_features`).
    hidden : sequence of int, default (128, 64)
        Hidden widths of the MLP.
    feature_batch_size : int, default 512
        Images per vectorised backward pass of stage 1.
    device : str or torch.device, default "cpu"
    seed : int, default 0
        Seeds the MLP's initialisation and the mini-batch order: the same seed gives the same
        network.
    progress : bool, default True

    Returns
    -------
    IntrospectiveClassifier
        With ``predict_proba(x)`` end to end and ``history`` of the stage-2 training.

    Taught in Part 2, section "Stage 2: the introspective network".
    """
    _check_model(model)
    x_train = check_model_input(model, x_train, "x_train", value_range=(0.0, 1.0))
    num_classes = model.head.out_features
    y_train = check_labels(y_train, n=x_train.shape[0], num_classes=num_classes, name="y_train")
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    feature_batch_size = check_positive_int(feature_batch_size, "feature_batch_size")
    lr = check_number(lr, "lr")
    check_choice(reduce, "reduce", REDUCTIONS)
    check_choice(loss, "loss", LOSSES)
    hidden = _check_hidden(hidden)
    seed = check_seed(seed)
    progress = check_bool(progress, "progress")
    if x_train.shape[0] < 2:
        raise ValueError("fit_introspective needs at least 2 training images (to standardise the features).")

    dev = pick_device(device)
    model.to(dev)
    feats = introspective_features(model, x_train.to(dev), batch_size=feature_batch_size, loss=loss,
                                   reduce=reduce, progress=progress)
    y = y_train.to(dev)
    seed_everything(seed)
    net = IntrospectiveNet(num_classes, tuple(feats.shape[1:]), hidden).to(dev)
    flat = feats.flatten(1)
    net.set_standardization(flat.mean(0), flat.std(0, unbiased=False))
    history = _train_mlp(net, feats, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                         progress=progress)
    return IntrospectiveClassifier(model, net, reduce=reduce, loss=loss, batch_size=feature_batch_size,
                                   history=history)
