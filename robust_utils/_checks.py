"""Input validation shared by every public function of :mod:`robust_utils`.

Each check raises an exception whose message says what was wrong *and* what to do about it,
so that a reader who passes a wrong tensor learns the fix from the error alone.
"""
from __future__ import annotations

import math
import re
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

__all__ = [
    "check_images",
    "check_labels",
    "check_probabilities",
    "check_positive_int",
    "check_fraction",
    "check_choice",
    "check_same_length",
    "check_seed",
    "check_number",
    "check_finite",
    "check_class_index",
    "check_name",
    "check_eval_model",
    "model_device",
    "as_numpy_1d",
    "check_model_input",
    "check_bool",
    "check_generator",
    "check_value_range",
    "PIXELS",
]

#: The pixel range the book's models take (they normalise inside): the default ``value_range``
#: of every model-running function.
PIXELS = (0.0, 1.0)



def check_images(x, name: str = "images", *, channels: int | None = None,
                 value_range: tuple[float, float] | None = (0.0, 1.0),
                 size: tuple[int, int] | None = None) -> torch.Tensor:
    """Check that ``x`` is a float batch of images shaped ``(N, C, H, W)``.

    ``value_range`` (default ``(0, 1)``) is checked with a small tolerance; pass ``None`` for
    normalised inputs. Returns ``x`` unchanged so the call can be used inline.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}. "
                        "Convert with torch.as_tensor(...) first.")
    if x.dim() != 4:
        hint = " Add a batch dimension with x.unsqueeze(0)." if x.dim() == 3 else ""
        raise ValueError(f"{name} must have shape (N, C, H, W), got shape {tuple(x.shape)}.{hint}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (N=0); pass at least one image.")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}. "
                        "Convert uint8 images with x.float() / 255.")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channel(s), got {x.shape[1]} "
                         f"(shape {tuple(x.shape)}).")
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        raise ValueError(f"{name} must be {size[0]}x{size[1]} pixels, got {tuple(x.shape[-2:])}. "
                         "Resize with torch.nn.functional.interpolate.")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    if value_range is not None:
        lo, hi = value_range
        tol = 1e-4
        xmin, xmax = float(x.min()), float(x.max())
        if xmin < lo - tol or xmax > hi + tol:
            raise ValueError(f"{name} must lie in [{lo}, {hi}], got values in [{xmin:.3g}, {xmax:.3g}]. "
                             "Pass unnormalised pixels (the package's models normalise internally), "
                             "or clamp with x.clamp(0, 1).")
    return x


def check_labels(y, n: int | None = None, num_classes: int | None = None,
                 name: str = "labels") -> torch.Tensor:
    """Check that ``y`` is a 1-D integer tensor of class indices, optionally of length ``n``.

    Any integer dtype is accepted and the labels are returned as ``int64`` (``torch.long``),
    the dtype PyTorch's losses and ``gather`` need: callers must use the returned tensor.
    """
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class indices, got {type(y).__name__}; "
                        f"convert with torch.as_tensor({name}).")
    if y.dim() != 1:
        raise ValueError(f"{name} must be 1-D (one class index per image), got shape {tuple(y.shape)}.")
    if torch.is_floating_point(y) or y.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got dtype {y.dtype}. Use y.long().")
    if n is not None and y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} entries but there are {n} images; "
                         "pass one label per image.")
    if num_classes is not None and y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes - 1}], got values in "
                         f"[{int(y.min())}, {int(y.max())}].")
    return y if y.dtype == torch.long else y.long()


def check_class_labels(v, n: int, name: str = "labels", num_classes: int | None = None) -> torch.Tensor:
    """One class index for all ``n`` images, or one per image (a tensor, list or tuple): a long
    tensor of ``n`` labels, checked by :func:`check_class_index` / :func:`check_labels`."""
    if isinstance(v, torch.Tensor) and v.dim() == 1:
        return check_labels(v, n=n, num_classes=num_classes, name=name)
    if isinstance(v, (list, tuple)):
        if len(v) != n:
            raise ValueError(f"{name} must be one class index or one per image ({n}), got {len(v)}.")
        return torch.tensor([check_class_index(c, name, num_classes) for c in v], dtype=torch.long)
    return torch.full((n,), check_class_index(v, name, num_classes), dtype=torch.long)


def check_probabilities(p, name: str = "probabilities", atol: float = 1e-4) -> torch.Tensor:
    """Check that the last dimension of ``p`` holds probability vectors (non-negative, sum to 1)."""
    if not isinstance(p, torch.Tensor) or not torch.is_floating_point(p):
        raise TypeError(f"{name} must be a floating-point torch.Tensor, got {type(p).__name__}.")
    if p.dim() < 1 or p.shape[-1] < 2:
        raise ValueError(f"{name} must have a class dimension of size >= 2 last, got shape {tuple(p.shape)}.")
    if (p < -atol).any():
        raise ValueError(f"{name} has negative entries; did you pass logits? Apply softmax first.")
    s = p.sum(-1)
    if not torch.allclose(s, torch.ones_like(s), atol=atol * p.shape[-1]):
        raise ValueError(f"{name} must sum to 1 over the last dimension (got sums in "
                         f"[{float(s.min()):.4g}, {float(s.max()):.4g}]); did you pass logits? Apply softmax first.")
    return p


def _is_integer(v) -> bool:
    """A Python or NumPy integer (``np.argmax`` returns one), or a 0-d integer tensor; never a bool."""
    if isinstance(v, (bool, np.bool_)):
        return False
    if isinstance(v, torch.Tensor):
        return v.dim() == 0 and not torch.is_floating_point(v) and v.dtype != torch.bool \
            and not v.is_complex()
    return isinstance(v, (int, np.integer))


def check_positive_int(v, name: str, minimum: int = 1) -> int:
    """Check that ``v`` is an integer >= ``minimum`` and return it as ``int``.

    Python and NumPy integers and 0-d integer tensors are accepted; bools and floats are not
    (``2.0`` epochs is a mistake the caller should see).
    """
    if not _is_integer(v):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {v!r} ({type(v).__name__}).")
    v = int(v)
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}.")
    return v


def check_fraction(v, name: str, *, low: float = 0.0, high: float = 1.0,
                   inclusive: bool = True) -> float:
    """Check that ``v`` is a number in ``[low, high]`` (or the open interval)."""
    if isinstance(v, (bool, np.bool_, str)):
        raise TypeError(f"{name} must be a number in [{low}, {high}], got {v!r}.")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number in [{low}, {high}], got {v!r}.") from None
    ok = low <= f <= high if inclusive else low < f < high
    if not ok:
        bracket = "[]" if inclusive else "()"
        raise ValueError(f"{name} must lie in {bracket[0]}{low}, {high}{bracket[1]}, got {f}.")
    return f


def check_choice(v, name: str, choices: Iterable[str]) -> str:
    """Check that ``v`` is one of ``choices`` (the message lists them)."""
    choices = list(choices)
    if v not in choices:
        raise ValueError(f"unknown {name} {v!r}; choose one of: {', '.join(map(str, choices))}.")
    return v


def check_same_length(name_a: str, a: Sequence, name_b: str, b: Sequence) -> None:
    """Check that two sequences (or tensors, along dim 0) have the same length."""
    if len(a) != len(b):
        raise ValueError(f"{name_a} and {name_b} must have the same length, got {len(a)} and {len(b)}.")


def check_eval_model(model, consequence: str) -> None:
    """A module in eval mode (itself and every submodule), else a clear error.

    ``consequence`` says what training mode would break in the caller (e.g. "dropout would make
    the attack random"); the message names the submodules in training mode and says to call
    ``model.eval()``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    training = [name for name, m in model.named_modules() if m.training and name]
    if model.training or training:
        where = ("the model is in training mode" if model.training else
                 "some submodules are in training mode (" + ", ".join(training[:5])
                 + (" ..." if len(training) > 5 else "") + ")")
        raise RuntimeError(f"{where}: {consequence}; call model.eval() first.")


def model_device(model: nn.Module, fallback: torch.device | str = "cpu") -> torch.device:
    """The device of a model's first parameter (or buffer); ``fallback`` for a model with neither."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device(fallback)


def check_seed(seed, name: str = "seed") -> int:
    """A random seed: an integer >= 0 (Python or NumPy); returned as ``int``.

    The one seed check of the package: a wrong type raises ``TypeError``, a negative value
    ``ValueError``.
    """
    if not _is_integer(seed):
        raise TypeError(f"{name} must be a non-negative integer, got {seed!r} ({type(seed).__name__}); "
                        f"pass e.g. {name}=0.")
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {seed}; pass e.g. {name}=0.")
    return seed


def check_number(v, name: str, *, minimum: float | None = 0.0, maximum: float | None = None,
                 strict: bool = True, hint: str = "") -> float:
    """A finite real number, returned as ``float``.

    ``minimum`` / ``maximum`` bound it (``None``: no bound); with ``strict`` (default) the lower
    bound is excluded (``> minimum``), otherwise included. The upper bound is always included.
    ``hint`` is appended to the message (e.g. "eps is in pixel units of [0, 1] images: use 8/255").
    """
    if isinstance(v, (bool, np.bool_, str)) or (isinstance(v, torch.Tensor) and v.numel() != 1):
        raise TypeError(f"{name} must be a number, got {v!r}.")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {v!r} ({type(v).__name__}).") from None
    extra = f" {hint}" if hint else ""
    if not math.isfinite(f):
        raise ValueError(f"{name} must be a finite number, got {f}.{extra}")
    if minimum is not None and (f <= minimum if strict else f < minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum:g}, got {f:g}.{extra}")
    if maximum is not None and f > maximum:
        raise ValueError(f"{name} must be <= {maximum:g}, got {f:g}.{extra}")
    return f


def check_finite(t, name: str = "tensor") -> torch.Tensor:
    """A floating-point tensor without NaN or infinite entries (returned unchanged)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}; convert with torch.as_tensor(...).")
    if not torch.is_floating_point(t):
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}; use .float().")
    bad = ~torch.isfinite(t)
    if bad.any():
        raise ValueError(f"{name} contains {int(bad.sum())} NaN or infinite value(s) out of {t.numel()}; "
                         "find where they come from (a division by zero, a diverged model) before "
                         "passing it on.")
    return t


def check_class_index(c, name: str = "target", num_classes: int | None = None) -> int:
    """One class index: a Python/NumPy integer or a 0-d integer tensor, in ``[0, num_classes)``."""
    if not _is_integer(c):
        raise TypeError(f"{name} must be a class index (an integer), got {c!r} ({type(c).__name__}).")
    c = int(c)
    if c < 0 or (num_classes is not None and c >= num_classes):
        bound = f"[0, {num_classes - 1}]" if num_classes is not None else ">= 0"
        raise ValueError(f"{name} must be a class index in {bound}, got {c}.")
    return c


_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def check_name(v, name: str, max_len: int = 100) -> str:
    """A string that may become part of a file name: letters, digits, ``_ . + -``; no separators, no ``..``.

    Anything that enters a path of the package (a profile, a recipe's readable key) goes
    through this check, so that no value can make a file land outside its folder.
    """
    if not isinstance(v, str):
        raise TypeError(f"{name} must be a string, got {v!r} ({type(v).__name__}).")
    if not v or len(v) > max_len or not _NAME_RE.fullmatch(v) or ".." in v:
        raise ValueError(f"{name} {v!r} cannot be used in a file name: use 1-{max_len} letters, digits, "
                         "'_', '.', '+' or '-' (starting with a letter or digit; no path separators, no '..').")
    return v


def as_numpy_1d(v, name: str) -> np.ndarray:
    """A non-empty 1-D NumPy array from a tensor, list or array (e.g. scores or labels)."""
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    v = np.asarray(v)
    if v.ndim != 1:
        hint = " Flatten it with .reshape(-1) if it holds one value per image." if v.ndim == 2 and 1 in v.shape else ""
        raise ValueError(f"{name} must be 1-D, got shape {v.shape}.{hint}")
    if v.size == 0:
        raise ValueError(f"{name} is empty.")
    return v


def check_model_input(model: nn.Module, x, name: str = "x", *,
                      value_range: tuple[float, float] | None = None) -> torch.Tensor:
    """A batch of images ``(N, C, H, W)`` that ``model`` can take: its dtype is the model's.

    Like :func:`check_images` (shape, non-empty, float, finite, optional
    ``value_range``), plus: a list or tuple of images gets a message saying to stack them into
    one tensor, and a floating dtype that differs from the model's parameters (``float64``
    images for a ``float32`` model) a message saying to convert with ``x.float()`` (or
    ``x.to(dtype)``), instead of PyTorch's "Input type (double) and bias type (float) should be
    the same". Returns ``x`` unchanged. Used by every public function that runs a model on
    images in :mod:`~robust_utils.gradients`, :mod:`~robust_utils.explanations`,
    :mod:`~robust_utils.attacks`, :mod:`~robust_utils.detection`, :mod:`~robust_utils.gradtrust`,
    :mod:`~robust_utils.introspection`, :mod:`~robust_utils.features`, :mod:`~robust_utils.voice`
    and :mod:`~robust_utils.interventions` (for ``nn.Module`` models; also through
    ``prepare_inputs`` in :mod:`~robust_utils.structure` and :mod:`~robust_utils.rise`), each
    with ``value_range=(0, 1)`` by default and an explicit ``value_range=None`` where other
    inputs make sense. Other modules (training, uncertainty, privacy, benchmarking) check
    their images with :func:`check_images`.
    """
    if isinstance(x, (list, tuple)):
        raise TypeError(f"{name} is a {type(x).__name__} of {len(x)} items, not a tensor; stack the images "
                        f"into one (N, C, H, W) tensor first: torch.stack({name}) for (C, H, W) images, "
                        f"torch.cat({name}) for batches.")
    try:
        check_images(x, name, value_range=value_range)
    except ValueError as e:
        if value_range is None or "must lie in" not in str(e):
            raise
        raise ValueError(f"{e} Values up to 255 are 8-bit pixels: divide by 255. For a model that takes "
                         "other inputs, pass value_range=None.") from None
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    if dtype is not None and x.dtype != dtype:
        fix = f"{name}.float()" if dtype == torch.float32 else f"{name}.to({dtype})"
        raise TypeError(f"{name} has dtype {x.dtype} but the model's parameters are {dtype}; convert the "
                        f"images with {fix} (or the model with model.to({x.dtype})).")
    return x


def check_bool(v, name: str) -> bool:
    """A flag: ``True`` or ``False`` (a Python ``bool`` or NumPy ``np.bool_``), returned as ``bool``.

    Anything else (``"no"``, ``0``, ``None``, a tensor) is refused: a string such as ``"no"`` is
    truthy and would silently mean ``True``.
    """
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    raise TypeError(f"{name} must be True or False, got {v!r} ({type(v).__name__}); "
                    f"pass {name}=True or {name}=False.")


def check_generator(generator, name: str = "generator") -> torch.Generator | None:
    """``None`` or a :class:`torch.Generator` (returned unchanged), else a clear error.

    An integer seed is refused with a message saying how to build a generator from it.
    """
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    hint = (f" To use the seed {generator}, pass {name}=torch.Generator().manual_seed({generator})."
            if _is_integer(generator) else "")
    raise TypeError(f"{name} must be None or a torch.Generator, got {generator!r} "
                    f"({type(generator).__name__}).{hint}")


def check_value_range(value_range, name: str = "value_range") -> tuple[float, float] | None:
    """``None`` (any range) or a ``(low, high)`` pair of finite numbers with ``low < high``."""
    if value_range is None:
        return None
    if not isinstance(value_range, (tuple, list)) or len(value_range) != 2:
        raise TypeError(f"{name} must be a (low, high) pair such as (0.0, 1.0), or None for any range; "
                        f"got {value_range!r}.")
    lo = check_number(value_range[0], f"{name}[0]", minimum=None)
    hi = check_number(value_range[1], f"{name}[1]", minimum=None)
    if not lo < hi:
        raise ValueError(f"{name} must have low < high, got {value_range!r}.")
    return lo, hi


def check_head_model(model, consequence: str) -> None:
    """A classifier in eval mode with ``features(x)`` and a final ``nn.Linear`` named ``head``.

    What GradTrust and introspective learning need (``model(x) == model.head(model.features(x))``);
    ``consequence`` says what training mode would break, as in :func:`check_eval_model`.
    """
    check_eval_model(model, consequence)
    head = getattr(model, "head", None)
    if not callable(getattr(model, "features", None)) or not isinstance(head, nn.Linear):
        raise TypeError(f"{type(model).__name__} needs a features(x) method (penultimate features) and a "
                        "final torch.nn.Linear layer named head, so that model(x) == "
                        "model.head(model.features(x)); every classifier of robust_utils.models has both.")
