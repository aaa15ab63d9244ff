"""Calibration: does a network's confidence match its accuracy?

A classifier is *calibrated* when, among the images it labels with confidence ``p`` (its largest
softmax probability), a fraction ``p`` is labelled correctly. The usual summary is the expected
calibration error (Guo et al., 2017): sort the confidences into ``M`` equal-width bins
:math:`B_1, \\dots, B_M` of ``[0, 1]`` and average the gap between accuracy and confidence,
weighted by how many images fall in each bin,

.. math::  \\mathrm{ECE} = \\sum_{m=1}^{M} \\frac{|B_m|}{N}
           \\big|\\mathrm{acc}(B_m) - \\mathrm{conf}(B_m)\\big| .

A reliability diagram draws ``acc(B_m)`` as bars against the diagonal ``acc = conf``: bars
below the diagonal mean over-confidence. The slides use both to show that the introspective
network is better calibrated than the feed-forward one on shifted test data.

Taught in Part 2, section "When is introspection useful? Generalisation and calibration"; reused
in Part 3.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from ._checks import check_finite, check_labels, check_positive_int, check_probabilities

__all__ = [
    "expected_calibration_error",
    "reliability_diagram_data",
    "plot_reliability",
]

_DATA_KEYS = ("edges", "centers", "accuracy", "confidence", "counts", "ece")


def _bin_statistics(probs, labels, n_bins: int):
    """Validate, bin, and return (edges, counts, acc_sum, conf_sum, n) as float64 numpy arrays."""
    n_bins = check_positive_int(n_bins, "n_bins")
    if isinstance(probs, np.ndarray):
        raise TypeError("probs must be a torch.Tensor, got a NumPy array; convert with torch.from_numpy(probs).")
    if isinstance(probs, torch.Tensor) and torch.is_floating_point(probs):
        check_finite(probs, "probs")
    probs = check_probabilities(probs, "probs")
    if probs.dim() != 2:
        raise ValueError(f"probs must have shape (N, num_classes), got {tuple(probs.shape)}. "
                         "Pass softmax probabilities, one row per image.")
    if probs.shape[0] == 0:
        raise ValueError("probs is empty (N=0); pass at least one prediction.")
    labels = check_labels(labels, n=probs.shape[0], num_classes=probs.shape[1], name="labels")
    probs = probs.detach()
    conf, pred = probs.max(dim=1)
    correct = (pred == labels.to(pred.device)).double()
    # Equal-width bins [lo, hi) with the last one closed, [lo, 1]: the same bin boundaries as
    # torchmetrics (which computes them in the confidences' dtype, as we do here).
    edges = torch.linspace(0, 1, n_bins + 1, dtype=conf.dtype, device=conf.device)
    idx = torch.bucketize(conf, edges[1:-1], right=True)
    counts = torch.zeros(n_bins, dtype=torch.float64, device=conf.device)
    acc_sum = torch.zeros_like(counts)
    conf_sum = torch.zeros_like(counts)
    counts.scatter_add_(0, idx, torch.ones_like(correct))
    acc_sum.scatter_add_(0, idx, correct)
    conf_sum.scatter_add_(0, idx, conf.double())
    return (np.linspace(0.0, 1.0, n_bins + 1), counts.cpu().numpy(), acc_sum.cpu().numpy(),
            conf_sum.cpu().numpy(), probs.shape[0])


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """Expected calibration error (L1, equal-width bins on the top-1 confidence).

    Parameters
    ----------
    probs : Tensor (N, num_classes)
        Softmax probabilities (rows sum to 1). Apply ``logits.softmax(1)`` first.
    labels : Tensor (N,)
        True class indices.
    n_bins : int, default 15
        Number of equal-width confidence bins of ``[0, 1]``; bin ``m`` is
        ``[m / n_bins, (m + 1) / n_bins)`` and the last bin includes 1.

    Returns
    -------
    float
        In ``[0, 1]``: 0 for a perfectly calibrated classifier, 1 when every prediction is wrong
        with confidence 1. Equal to ``torchmetrics``' ``MulticlassCalibrationError(num_classes,
        n_bins, norm="l1")`` (except for confidences of exactly 1.0, which torchmetrics puts in a
        bin of their own).

    Examples
    --------
    >>> probs = torch.tensor([[0.75, 0.25]] * 4)
    >>> expected_calibration_error(probs, torch.tensor([0, 0, 0, 1]))  # 75 % right at 0.75
    0.0

    Taught in Part 2, section "When is introspection useful? Generalisation and calibration";
    reused in Part 3.
    """
    _, counts, acc_sum, conf_sum, n = _bin_statistics(probs, labels, n_bins)
    return float(np.abs(acc_sum - conf_sum).sum() / n)


def reliability_diagram_data(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> dict:
    """Per-bin accuracy, confidence and counts: the numbers behind a reliability diagram.

    Parameters
    ----------
    probs, labels, n_bins
        As in :func:`expected_calibration_error`.

    Returns
    -------
    dict of numpy arrays
        ``"edges"`` (n_bins + 1,), ``"centers"`` (n_bins,), ``"accuracy"`` and ``"confidence"``
        (n_bins,; mean per bin, NaN for empty bins), ``"counts"`` (n_bins,, int; they sum to N),
        and the float ``"ece"``.

    Taught in Part 2, section "When is introspection useful? Generalisation and calibration";
    reused in Part 3.
    """
    edges, counts, acc_sum, conf_sum, n = _bin_statistics(probs, labels, n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(counts > 0, acc_sum / np.maximum(counts, 1), np.nan)
        confidence = np.where(counts > 0, conf_sum / np.maximum(counts, 1), np.nan)
    return {
        "edges": edges,
        "centers": (edges[:-1] + edges[1:]) / 2,
        "accuracy": accuracy,
        "confidence": confidence,
        "counts": counts.astype(np.int64),
        "ece": float(np.abs(acc_sum - conf_sum).sum() / n),
    }


def _is_data(d) -> bool:
    return isinstance(d, Mapping) and all(k in d for k in _DATA_KEYS)


def _draw(ax, data: Mapping, title: str | None) -> None:
    edges = np.asarray(data["edges"], dtype=float)
    centers = np.asarray(data["centers"], dtype=float)
    acc = np.asarray(data["accuracy"], dtype=float)
    conf = np.asarray(data["confidence"], dtype=float)
    width = np.diff(edges)
    filled = np.asarray(data["counts"]) > 0
    ax.bar(centers[filled], acc[filled], width=width[filled], color="tab:blue", edgecolor="black",
           linewidth=0.6, label="accuracy")
    gap = conf - acc
    ax.bar(centers[filled], gap[filled], bottom=acc[filled], width=width[filled], color="tab:red",
           alpha=0.3, edgecolor="tab:red", hatch="//", linewidth=0.6, label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.text(0.96, 0.04, f"ECE = {100 * float(data['ece']):.1f}%", transform=ax.transAxes, va="bottom",
            ha="right",
            bbox=dict(boxstyle="round", facecolor="white", alpha=0.8))
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", fontsize=7)


def plot_reliability(data, ax=None, title: str | None = None):
    """Reliability diagram(s): accuracy per confidence bin against the diagonal.

    Parameters
    ----------
    data : dict or dict of dicts
        One output of :func:`reliability_diagram_data`, or a mapping ``name -> output`` to draw
        several models side by side (one panel each, titled with the name).
    ax : matplotlib Axes or sequence of Axes, optional
        Where to draw (one Axes per diagram); a new figure is created when omitted.
    title : str, optional
        Title of the single panel, or the figure's super-title when several are drawn.

    Returns
    -------
    matplotlib.figure.Figure

    Taught in Part 2, section "When is introspection useful? Generalisation and calibration";
    reused in Part 3.
    """
    if _is_data(data):
        panels = {None: data}
    elif isinstance(data, Mapping) and data and all(_is_data(v) for v in data.values()):
        panels = dict(data)
    else:
        raise TypeError("data must be the dict returned by reliability_diagram_data(...) or a non-empty "
                        "dict name -> such dicts (one panel per model).")
    if ax is None:
        fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.8), squeeze=False)
        axes = list(axes.flat)
        own = True
    else:
        axes = list(ax) if isinstance(ax, (Sequence, np.ndarray)) else [ax]
        if len(axes) != len(panels):
            raise ValueError(f"got {len(axes)} Axes for {len(panels)} reliability diagram(s); "
                             "pass one Axes per diagram or ax=None.")
        fig = axes[0].figure
        own = False
    for a, (name, d) in zip(axes, panels.items()):
        _draw(a, d, title if name is None else str(name))
    if title and len(panels) > 1:
        fig.suptitle(title)
    if own:
        fig.tight_layout()
    return fig
