"""Input validation shared by every public function of :mod:`robust_utils`.

Each check raises an exception whose message says what was wrong *and* what to do about it,
so that a reader who passes a wrong tensor learns the fix from the error alone.
"""
from __future__ import annotations

from typing import Iterable, Sequence

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
]


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
    """Check that ``y`` is a 1-D integer tensor of class indices, optionally of length ``n``."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class indices, got {type(y).__name__}.")
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
    return y


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


def check_positive_int(v, name: str, minimum: int = 1) -> int:
    """Check that ``v`` is an integer >= ``minimum`` and return it as ``int``."""
    if isinstance(v, bool) or not isinstance(v, (int,)) and not (hasattr(v, "__index__")):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {v!r}.")
    v = int(v)
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}.")
    return v


def check_fraction(v, name: str, *, low: float = 0.0, high: float = 1.0,
                   inclusive: bool = True) -> float:
    """Check that ``v`` is a number in ``[low, high]`` (or the open interval)."""
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
