"""The book's classifiers: one base class and four small architectures.

Every model takes float images in ``[0, 1]`` and normalises them *inside* (a :class:`Normalize`
module whose mean and standard deviation are buffers). Attacks, corruptions and explanations
therefore all work on plain pixels, and a perturbation budget such as ``eps = 8/255`` means the
same thing for every model.

Every model exposes the same pieces:

``features(x)``
    the penultimate representation, shape ``(N, D)`` (Part 1 studies it; Part 3 fits detectors
    on it);
``head``
    the final :class:`torch.nn.Linear` layer ``D -> num_classes``, so ``model(x) ==
    model.head(model.features(x))``;
``conv_layers()`` and ``last_conv_name``
    the convolution layers by their :meth:`~torch.nn.Module.named_modules` names, for Grad-CAM
    and the other class-activation maps of Part 2.

Taught in Part 1, section "The classifier".
"""
from __future__ import annotations

import inspect
import math
from typing import Callable, Sequence

import torch
import torch.nn as nn

from ._checks import check_choice, check_fraction, check_positive_int
from ._registry import Registry

__all__ = [
    "Normalize",
    "BookModel",
    "C3LTClassifier",
    "MLP",
    "PreActBlock",
    "PreActResNet",
    "TradesCNN",
    "StridedCNN",
    "ACTIVATIONS",
    "register_activation",
    "make_activation",
    "ARCHITECTURES",
    "register_architecture",
    "architecture_parameters",
    "build_model",
]

#: Fashion-MNIST training-set pixel mean and standard deviation (pixels in [0, 1]).
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530


#: Activation name -> factory of an ``nn.Module`` (``"relu"``; Part 6 adds the half-Huber ReLU).
#: The architectures take ``activation=<name>``, so a recipe can name the activation.
ACTIVATIONS = Registry("activation")


def register_activation(name: str, factory: Callable[[], nn.Module] | None = None, *, replace: bool = False):
    """Register an activation factory under ``name`` (usable as a decorator).

    Taught in Part 1, section "The classifier".
    """
    if factory is None:
        return lambda f: ACTIVATIONS.register(name, f, replace=replace)
    return ACTIVATIONS.register(name, factory, replace=replace)


register_activation("relu", nn.ReLU)
register_activation("elu", nn.ELU)  # smooth: the activation of WRM's certified networks (Part 5)


def make_activation(name: str = "relu") -> nn.Module:
    """A fresh activation module by its registered name (see :data:`ACTIVATIONS`).

    Taught in Part 1, section "The classifier".
    """
    if not isinstance(name, str):
        raise TypeError(f"activation must be a name, one of: {', '.join(ACTIVATIONS)}; got {name!r}.")
    check_choice(name, "activation", ACTIVATIONS)
    module = ACTIVATIONS[name]()
    if not isinstance(module, nn.Module):
        raise TypeError(f"activation {name!r} must build an nn.Module, got {type(module).__name__}.")
    return module


def _check_dropout(dropout) -> float:
    """A dropout rate in [0, 1): 1 would zero every feature."""
    dropout = check_fraction(dropout, "dropout")
    if dropout >= 1.0:
        raise ValueError("dropout must be < 1 (1 would zero every feature).")
    return dropout


def _two_stage_size(input_size, what: str) -> tuple[int, int]:
    """Feature-map size after two stages that each take 4 pixels off a side, then halve it.

    Both small CNNs have such stages (one 5x5 convolution, or two 3x3 ones, then a 2x2 pool), so
    a side must be at least 16 pixels to leave a positive size.
    """
    h, w = input_size
    fh, fw = ((h - 4) // 2 - 4) // 2, ((w - 4) // 2 - 4) // 2
    if fh < 1 or fw < 1:
        raise ValueError(f"input_size {tuple(input_size)} is too small for {what}; use at least 16x16 images.")
    return fh, fw


def _as_channel_values(value, in_channels: int, name: str) -> torch.Tensor:
    """Turn a float or a per-channel sequence into a ``(1, C, 1, 1)`` float tensor."""
    if isinstance(value, torch.Tensor):
        values = value.detach().flatten().tolist()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        values = [float(value)]
    elif isinstance(value, Sequence) and not isinstance(value, str):
        values = list(value)
    else:
        raise TypeError(f"{name} must be a number or one number per channel, got {value!r}.")
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must contain numbers, got {value!r}.") from None
    if len(values) == 1:
        values = values * in_channels
    if len(values) != in_channels:
        raise ValueError(f"{name} must be one number or {in_channels} numbers (one per channel), "
                         f"got {len(values)}.")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} must be finite, got {values}.")
    return torch.tensor(values, dtype=torch.float32).view(1, in_channels, 1, 1)


class Normalize(nn.Module):
    """Per-channel standardisation ``(x - mean) / std`` with the statistics stored as buffers.

    Being buffers, ``mean`` and ``std`` move with ``model.to(device)``, are saved in checkpoints
    and are never trained.

    Parameters
    ----------
    mean, std : float or sequence of float
        One value for all channels or one per channel. ``std`` must be positive.
    in_channels : int
        Number of image channels.

    Taught in Part 1, section "The classifier".
    """

    def __init__(self, mean=0.0, std=1.0, in_channels: int = 1):
        super().__init__()
        in_channels = check_positive_int(in_channels, "in_channels")
        mean_t = _as_channel_values(mean, in_channels, "mean")
        std_t = _as_channel_values(std, in_channels, "std")
        if (std_t <= 0).any():
            raise ValueError(f"std must be positive, got {std_t.flatten().tolist()}.")
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class BookModel(nn.Module):
    """Base class of the book's classifiers: normalisation inside, ``features`` + linear ``head``.

    Subclasses build their layers in ``__init__``, set ``self.head`` to the final
    :class:`torch.nn.Linear` and implement :meth:`_features` on *normalised* inputs.

    Parameters
    ----------
    num_classes : int
        Number of output logits (>= 2).
    in_channels : int
        Image channels (1 for Fashion-MNIST).
    input_size : (int, int)
        Image height and width that the model accepts.
    mean, std : float or sequence of float
        Normalisation statistics applied inside the model to ``[0, 1]`` pixels.

    Attributes
    ----------
    arch : str
        The name of the architecture in :data:`ARCHITECTURES`.
    normalize : Normalize
        The input standardisation, applied first in :meth:`features`.
    head : torch.nn.Linear
        The final layer, ``features -> logits``.

    Taught in Part 1, section "The classifier".
    """

    arch: str = "book_model"

    def __init__(self, num_classes: int, in_channels: int, input_size, mean, std):
        super().__init__()
        self.num_classes = check_positive_int(num_classes, "num_classes", minimum=2)
        self.in_channels = check_positive_int(in_channels, "in_channels")
        if isinstance(input_size, int) and not isinstance(input_size, bool):
            input_size = (input_size, input_size)
        if (not isinstance(input_size, (tuple, list)) or len(input_size) != 2):
            raise ValueError(f"input_size must be an int or a pair (height, width), got {input_size!r}.")
        self.input_size = (check_positive_int(input_size[0], "input_size[0]"),
                           check_positive_int(input_size[1], "input_size[1]"))
        self.normalize = Normalize(mean, std, self.in_channels)

    # -- input validation ---------------------------------------------------------------------
    def _check_input(self, x) -> None:
        """Cheap shape checks (no value-range scan: forward is called inside attack loops)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__} expects a torch.Tensor of shape (N, C, H, W), "
                            f"got {type(x).__name__}. Convert with torch.as_tensor(...) first.")
        c, (h, w) = self.in_channels, self.input_size
        if x.dim() != 4:
            hint = " Add a batch dimension with x.unsqueeze(0)." if x.dim() == 3 else ""
            raise ValueError(f"{type(self).__name__} expects images shaped (N, {c}, {h}, {w}), "
                             f"got shape {tuple(x.shape)}.{hint}")
        if x.shape[1] != c:
            raise ValueError(f"{type(self).__name__} expects {c} channel(s), got {x.shape[1]} "
                             f"(shape {tuple(x.shape)}). Images must be (N, C, H, W), channels first.")
        if tuple(x.shape[-2:]) != (h, w):
            raise ValueError(f"{type(self).__name__} expects {h}x{w} images, got "
                             f"{tuple(x.shape[-2:])}. Resize with torch.nn.functional.interpolate.")
        if not torch.is_floating_point(x):
            raise TypeError(f"{type(self).__name__} expects floating-point pixels in [0, 1], got dtype "
                            f"{x.dtype}. Convert uint8 images with x.float() / 255.")

    # -- the common interface -----------------------------------------------------------------
    def _features(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(N, D)`` of ``[0, 1]`` images ``x`` (normalisation included).

        Taught in Part 1, section "A manifold view".
        """
        self._check_input(x)
        return self._features(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` of ``[0, 1]`` images: ``head(features(x))``."""
        return self.head(self.features(x))

    @property
    def feature_dim(self) -> int:
        """Size ``D`` of the penultimate features (``head.in_features``)."""
        return self.head.in_features

    def conv_layers(self) -> dict[str, nn.Conv2d]:
        """All convolution layers, keyed by their :meth:`named_modules` name, in forward order.

        Taught in Part 2, section "Grad-CAM and the choice of layer".
        """
        return {name: m for name, m in self.named_modules() if isinstance(m, nn.Conv2d)}

    @property
    def last_conv_name(self) -> str:
        """Name of the last convolution layer (the usual Grad-CAM target).

        Raises :class:`ValueError` for models without convolutions (an ``AttributeError`` would
        be swallowed by :class:`torch.nn.Module`'s attribute lookup).

        Taught in Part 2, section "Grad-CAM and the choice of layer".
        """
        convs = self.conv_layers()
        if not convs:
            raise ValueError(f"{type(self).__name__} has no convolution layers, so there is no "
                                 "last conv layer for CAM methods; use a convolutional model such as "
                                 "'c3lt_cnn' or 'preact_resnet', or a gradient-based explanation.")
        return list(convs)[-1]

    def num_parameters(self, trainable_only: bool = True) -> int:
        """Number of (trainable) parameters; the normalisation buffers are not parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


class C3LTClassifier(BookModel):
    """The small CNN that C3LT explains (Khorram and Fuxin, CVPR 2022).

    ``conv 5x5 (32) -> ReLU -> max-pool 2 -> conv 5x5 (64) -> ReLU -> max-pool 2 -> flatten ->
    FC 256 -> ReLU -> dropout -> FC num_classes`` (the last layer is :attr:`head`). The features
    are the 256 post-ReLU (post-dropout) activations. C3LT feeds the network ``[-1, 1]`` pixels,
    hence the default ``mean = std = 0.5`` inside the model.

    Parameters
    ----------
    num_classes : int, default 10
    in_channels : int, default 1
    dropout : float in [0, 1), default 0.5
    mean, std : float or sequence, default 0.5, 0.5
    input_size : int or (int, int), default 28
        Each side must leave a positive size after the two conv+pool stages (>= 16).
    activation : str, default "relu"
        A name of :data:`ACTIVATIONS` used for every hidden non-linearity.

    Taught in Part 1, section "The classifier".
    """

    arch = "c3lt_cnn"
    #: The only dropout layer is the last operation of :meth:`features` (before ``head``):
    #: MC dropout may run the convolutional trunk once (see ``uncertainty.mc_dropout_probs``).
    dropout_before_head = True

    def __init__(self, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.5,
                 mean=0.5, std=0.5, input_size=28, activation: str = "relu"):
        super().__init__(num_classes, in_channels, input_size, mean, std)
        act = lambda: make_activation(activation)  # noqa: E731
        dropout = _check_dropout(dropout)
        fh, fw = _two_stage_size(self.input_size, "two 5x5 conv + 2x2 pool stages")
        self.conv1 = nn.Conv2d(self.in_channels, 32, kernel_size=5)
        self.relu1 = act()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5)
        self.relu2 = act()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64 * fh * fw, 256)
        self.relu3 = act()
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(256, self.num_classes)

    def _features(self, z: torch.Tensor) -> torch.Tensor:
        return self.classify_spatial(self._spatial(z), logits=False)

    def _spatial(self, z: torch.Tensor) -> torch.Tensor:
        z = self.pool1(self.relu1(self.conv1(z)))
        return self.pool2(self.relu2(self.conv2(z)))

    def spatial_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last convolutional map ``(N, 64, h, w)`` (after pooling) of ``[0, 1]`` images:
        the spatial cells that Counterfactual Visual Explanations swap (Part 7).

        Taught in Part 7, section "The baselines".
        """
        self._check_input(x)
        return self._spatial(self.normalize(x))

    def classify_spatial(self, fmap: torch.Tensor, logits: bool = True) -> torch.Tensor:
        """The rest of the network from a map of :meth:`spatial_features`: logits (or, with
        ``logits=False``, the penultimate features).

        Taught in Part 7, section "The baselines".
        """
        f = self.dropout(self.relu3(self.fc1(self.flatten(fmap))))
        return self.head(f) if logits else f


class MLP(BookModel):
    """A fully connected classifier on flattened pixels (no convolutions).

    ``flatten -> [Linear -> ReLU -> dropout] per hidden width -> Linear num_classes`` (the last
    layer is :attr:`head`); the features are the last hidden activations (the flattened
    normalised pixels when ``hidden=()``, i.e. multinomial logistic regression).

    Parameters
    ----------
    in_features : int, default 784
        ``in_channels * height * width``.
    hidden : sequence of int, default (256, 128)
    num_classes : int, default 10
    dropout : float in [0, 1), default 0.0
    mean, std : float or sequence, default Fashion-MNIST statistics
    in_channels : int, default 1
    input_size : int or (int, int), optional
        Defaults to the square image with ``in_features / in_channels`` pixels.
    activation : str, default "relu"
        A name of :data:`ACTIVATIONS` used for every hidden non-linearity.

    Taught in Part 1, section "The classifier".
    """

    arch = "mlp"

    def __init__(self, in_features: int = 784, hidden: Sequence[int] = (256, 128),
                 num_classes: int = 10, dropout: float = 0.0, mean=FASHION_MNIST_MEAN,
                 std=FASHION_MNIST_STD, in_channels: int = 1, input_size=None, activation: str = "relu"):
        make_activation(activation)  # validates the name before any layer is built
        in_features = check_positive_int(in_features, "in_features")
        in_channels = check_positive_int(in_channels, "in_channels")
        if input_size is None:
            pixels, rem = divmod(in_features, in_channels)
            side = math.isqrt(pixels)
            if rem or side * side != pixels:
                raise ValueError(f"in_features={in_features} is not in_channels x a square image "
                                 f"(in_channels={in_channels}); pass input_size=(height, width).")
            input_size = (side, side)
        super().__init__(num_classes, in_channels, input_size, mean, std)
        h, w = self.input_size
        if in_channels * h * w != in_features:
            raise ValueError(f"in_features={in_features} does not match in_channels*height*width = "
                             f"{in_channels}*{h}*{w} = {in_channels * h * w}.")
        if isinstance(hidden, int) or not isinstance(hidden, Sequence):
            raise TypeError(f"hidden must be a sequence of layer widths, e.g. (256, 128), got {hidden!r}.")
        hidden = tuple(check_positive_int(v, "hidden width") for v in hidden)
        dropout = _check_dropout(dropout)
        self.in_features, self.hidden = in_features, hidden
        self.flatten = nn.Flatten()
        layers: list[nn.Module] = []
        width = in_features
        for out in hidden:
            layers += [nn.Linear(width, out), make_activation(activation)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = out
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, self.num_classes)

    def _features(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.flatten(z))


class PreActBlock(nn.Module):
    """Pre-activation residual block (He et al., ECCV 2016).

    ``out = conv2(relu(bn2(conv1(relu(bn1(x)))))) + shortcut``, where the shortcut is the
    identity, or a 1x1 strided convolution of ``relu(bn1(x))`` when the shape changes.

    Taught in Part 3, section "Networks and data".
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, activation: str = "relu"):
        super().__init__()
        # The shortcut is registered first so that conv2 is the block's last conv in
        # named_modules() order (and hence the network's last_conv_name).
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False)
        else:
            self.shortcut = None
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = make_activation(activation)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = make_activation(activation)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.relu2(self.bn2(out)))
        return out + shortcut


class PreActResNet(BookModel):
    """A small pre-activation ResNet (He et al., 2016) for 28x28 (or CIFAR-sized) images.

    ``conv 3x3 (widths[0]) -> stages of PreActBlock (stride 2 between stages) -> BN -> ReLU ->
    global average pool -> head``. The features are the pooled ``widths[-1]`` channels. With
    ``widths=(16, 32, 64)`` and ``blocks_per_stage=(7, 7, 7)`` this is ResNet-44
    (1 + 2 x 21 convolutions + 1 linear layer), the network of the adversarial-explanations
    paper.

    Parameters
    ----------
    num_classes : int, default 10
    in_channels : int, default 1
    widths : sequence of int, default (16, 32, 64)
        Channels per stage.
    blocks_per_stage : sequence of int, default (2, 2, 2)
        Residual blocks per stage (same length as ``widths``).
    mean, std : float or sequence, default Fashion-MNIST statistics
    input_size : int or (int, int), default 28
    activation : str, default "relu"
        A name of :data:`ACTIVATIONS` used for every hidden non-linearity.

    Taught in Part 3, section "Networks and data".
    """

    arch = "preact_resnet"

    def __init__(self, num_classes: int = 10, in_channels: int = 1,
                 widths: Sequence[int] = (16, 32, 64), blocks_per_stage: Sequence[int] = (2, 2, 2),
                 mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD, input_size=28, activation: str = "relu"):
        super().__init__(num_classes, in_channels, input_size, mean, std)
        make_activation(activation)  # validates the name before any layer is built
        for name, seq in (("widths", widths), ("blocks_per_stage", blocks_per_stage)):
            if isinstance(seq, int) or not isinstance(seq, Sequence) or len(seq) == 0:
                raise TypeError(f"{name} must be a non-empty sequence of positive ints, got {seq!r}.")
        widths = tuple(check_positive_int(v, "widths entry") for v in widths)
        blocks_per_stage = tuple(check_positive_int(v, "blocks_per_stage entry") for v in blocks_per_stage)
        if len(widths) != len(blocks_per_stage):
            raise ValueError(f"widths {widths} and blocks_per_stage {blocks_per_stage} must have the "
                             "same length (one entry per stage).")
        self.widths, self.blocks_per_stage = widths, blocks_per_stage
        self.conv1 = nn.Conv2d(self.in_channels, widths[0], kernel_size=3, padding=1, bias=False)
        stages = []
        in_planes = widths[0]
        for i, (planes, n_blocks) in enumerate(zip(widths, blocks_per_stage)):
            blocks = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(PreActBlock(in_planes, planes, stride, activation))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(in_planes)
        self.relu = make_activation(activation)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(in_planes, self.num_classes)

    def _features(self, z: torch.Tensor) -> torch.Tensor:
        z = self.stages(self.conv1(z))
        return self.flatten(self.pool(self.relu(self.bn(z))))



class TradesCNN(BookModel):
    """The small CNN of the TRADES and UDR MNIST experiments (Zhang et al., 2019; Bui et al., 2022).

    ``conv 3x3 (32) -> act -> conv 3x3 (32) -> act -> max-pool 2 -> conv 3x3 (64) -> act ->
    conv 3x3 (64) -> act -> max-pool 2 -> flatten -> FC 200 -> act -> dropout -> FC 200 -> act
    -> FC num_classes`` (the last layer is :attr:`head`), no padding, as in the TRADES code.
    The features are the second FC layer's 200 activations. TRADES feeds the network raw
    ``[0, 1]`` pixels, hence the default ``mean = 0, std = 1`` inside the model.

    Parameters
    ----------
    num_classes : int, default 10
    in_channels : int, default 1
    dropout : float in [0, 1), default 0.5
        Between the two FC layers (the TRADES code's ``drop = 0.5``).
    mean, std : float or sequence, default 0.0, 1.0
    input_size : int or (int, int), default 28
        Each side must leave a positive size after the two conv-conv-pool stages (>= 16).
    activation : str, default "relu"
        A name of :data:`ACTIVATIONS` (WRM's certificate asks for a smooth one: ``"elu"``).

    Taught in Part 5, section "Training the eight networks".
    """

    arch = "trades_cnn"

    def __init__(self, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.5,
                 mean=0.0, std=1.0, input_size=28, activation: str = "relu"):
        super().__init__(num_classes, in_channels, input_size, mean, std)
        act = lambda: make_activation(activation)  # noqa: E731
        dropout = _check_dropout(dropout)
        fh, fw = _two_stage_size(self.input_size, "two conv-conv-pool stages of 3x3 kernels")
        self.conv1 = nn.Conv2d(self.in_channels, 32, kernel_size=3)
        self.act1 = act()
        self.conv2 = nn.Conv2d(32, 32, kernel_size=3)
        self.act2 = act()
        self.pool1 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(32, 64, kernel_size=3)
        self.act3 = act()
        self.conv4 = nn.Conv2d(64, 64, kernel_size=3)
        self.act4 = act()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64 * fh * fw, 200)
        self.act5 = act()
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(200, 200)
        self.act6 = act()
        self.head = nn.Linear(200, self.num_classes)

    def _features(self, z: torch.Tensor) -> torch.Tensor:
        z = self.pool1(self.act2(self.conv2(self.act1(self.conv1(z)))))
        z = self.pool2(self.act4(self.conv4(self.act3(self.conv3(z)))))
        z = self.dropout(self.act5(self.fc1(self.flatten(z))))
        return self.act6(self.fc2(z))


class StridedCNN(BookModel):
    """A small all-convolutional CNN for Part 6: strided convolutions instead of max-pooling.

    ``conv 5x5 stride 2 (width) -> act -> conv 5x5 stride 2 (2 width) -> act -> flatten -> FC 128
    -> act -> FC num_classes``, padding 2 (28 -> 14 -> 7), no dropout and no batch norm. Eq. (4)
    of Woods et al. differentiates the input gradient, so every operation should have a
    continuous derivative: with ``activation="hhrelu"`` this network has one (max-pooling's
    derivative jumps), and without dropout or batch norm each image's gradient is its own. It is
    also four times cheaper than the TRADES CNN, which the hundreds of attack steps per image of
    an ARA need on a CPU. Inputs are ``[0, 1]`` pixels (``mean = 0, std = 1`` inside).

    Parameters
    ----------
    num_classes : int, default 10
    in_channels : int, default 1
    width : int, default 16
        Channels of the first convolution (the second has twice as many).
    mean, std : float or sequence, default 0.0, 1.0
    input_size : int or (int, int), default 28
    activation : str, default "relu"
        A name of :data:`ACTIVATIONS` (``"hhrelu"``: the half-Huber ReLU of Part 6).

    Taught in Part 6, section "Training the networks of Table 1".
    """

    arch = "strided_cnn"

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16, mean=0.0, std=1.0,
                 input_size=28, activation: str = "relu"):
        super().__init__(num_classes, in_channels, input_size, mean, std)
        width = check_positive_int(width, "width")
        act = lambda: make_activation(activation)  # noqa: E731
        h, w = ((s + 1) // 2 for s in self.input_size)
        h, w = (h + 1) // 2, (w + 1) // 2
        self.conv1 = nn.Conv2d(self.in_channels, width, kernel_size=5, stride=2, padding=2)
        self.act1 = act()
        self.conv2 = nn.Conv2d(width, 2 * width, kernel_size=5, stride=2, padding=2)
        self.act2 = act()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(2 * width * h * w, 128)
        self.act3 = act()
        self.head = nn.Linear(128, self.num_classes)

    def _features(self, z: torch.Tensor) -> torch.Tensor:
        z = self.act2(self.conv2(self.act1(self.conv1(z))))
        return self.act3(self.fc1(self.flatten(z)))


#: Architecture name -> builder (a class or a function returning an ``nn.Module``); the names
#: used by :func:`build_model` and the model cache. A builder may return an ``nn.ModuleDict`` of
#: several modules trained together (a generator and its discriminator, say): the cache stores
#: and loads them as one artifact.
ARCHITECTURES = Registry("architecture")


def register_architecture(name: str, builder: Callable[..., nn.Module] | None = None, *,
                          replace: bool = False):
    """Register a model builder under ``name`` (usable as a class or function decorator).

    A later chapter adds its networks from the module that teaches them, e.g.
    ``@register_architecture("trades_cnn")``, without touching this module or the cache.

    Taught in Part 1, section "The classifier".
    """
    if builder is None:
        return lambda b: ARCHITECTURES.register(name, b, replace=replace)
    return ARCHITECTURES.register(name, builder, replace=replace)


register_architecture("c3lt_cnn", C3LTClassifier)
register_architecture("mlp", MLP)
register_architecture("preact_resnet", PreActResNet)
register_architecture("trades_cnn", TradesCNN)
register_architecture("strided_cnn", StridedCNN)


def architecture_parameters(arch: str) -> list[str]:
    """The constructor arguments an architecture accepts (the valid ``arch_kwargs`` of a recipe).

    Taught in Part 1, section "The classifier".
    """
    if not isinstance(arch, str):
        raise TypeError(f"arch must be a string naming an architecture, got {type(arch).__name__}; "
                        f"choose one of: {', '.join(ARCHITECTURES)}.")
    check_choice(arch, "architecture", ARCHITECTURES)
    builder = ARCHITECTURES[arch]
    target = builder.__init__ if isinstance(builder, type) else builder
    return [p for p in inspect.signature(target).parameters if p != "self"]


def build_model(arch: str, **kwargs) -> nn.Module:
    """Build an architecture of :data:`ARCHITECTURES` by name.

    Parameters
    ----------
    arch : str
        ``"c3lt_cnn"``, ``"mlp"`` or ``"preact_resnet"``.
    **kwargs
        Constructor arguments of that architecture, e.g. ``build_model("preact_resnet",
        blocks_per_stage=(7, 7, 7))`` for ResNet-44.

    Returns
    -------
    BookModel
        A freshly initialised model (seed with :func:`robust_utils.config.seed_everything`
        first for reproducible weights).

    Taught in Part 1, section "The classifier".
    """
    valid = architecture_parameters(arch)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise TypeError(f"unknown argument(s) {unknown} for architecture {arch!r}; "
                        f"valid arguments: {', '.join(valid)}.")
    model = ARCHITECTURES[arch](**kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(f"the builder of architecture {arch!r} returned {type(model).__name__}, "
                        "not a torch.nn.Module.")
    return model
