"""Metrics shared by the chapters: accuracy, confidence, and detection scores.

Detection metrics follow one convention: ``scores`` are higher for the *positive* class (the
novel / anomalous / adversarial input), ``labels`` are 1 for positives and 0 for negatives.
Results agree with scikit-learn's ``roc_auc_score`` and ``average_precision_score`` (tested).

Taught in Part 1, section "Gradient surprise on novel data", and reused in Part 3.
"""
from __future__ import annotations

import numpy as np
import torch

from ._checks import as_numpy_1d, check_choice, check_fraction, check_probabilities

__all__ = [
    "accuracy",
    "max_softmax",
    "predictive_entropy",
    "auroc",
    "aupr",
    "fpr_at_tpr",
    "detection_scores",
    "HIGHER_MEANS",
    "declares_direction",
    "score_direction",
]


_as_numpy_1d = as_numpy_1d


HIGHER_MEANS = ("more novel", "more trustworthy", "more uncertain", "more confident", "better", "worse")


def declares_direction(higher_means: str):
    """Decorator (or function) that records which way a score points: ``obj.higher_means``.

    ``higher_means`` is one of :data:`HIGHER_MEANS`, e.g. ``"more novel"`` for a detector's
    score or ``"more trustworthy"`` for a trust score. Tables read it with
    :func:`score_direction` instead of relying on a docstring (Quantus declares a direction on
    each metric the same way).

    Taught in Part 3, section "Steps 4–5: a detector per challenge set".
    """
    check_choice(higher_means, "score direction", HIGHER_MEANS)

    def mark(obj):
        obj.higher_means = higher_means
        return obj
    return mark


def score_direction(obj) -> str:
    """What a higher value of ``obj``'s score means (see :func:`declares_direction`).

    Taught in Part 3, section "Steps 4–5: a detector per challenge set".
    """
    d = getattr(obj, "higher_means", None)
    if d is None:
        raise AttributeError(f"{getattr(obj, '__name__', type(obj).__name__)} does not declare which way "
                             "its score points; decorate it with robust_utils.metrics.declares_direction(...).")
    return d


def _check_detection(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = _as_numpy_1d(scores, "scores").astype(np.float64)
    y = _as_numpy_1d(labels, "labels")
    if s.shape != y.shape:
        raise ValueError(f"scores and labels must have the same length, got {s.size} and {y.size}.")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values.")
    uniq = set(np.unique(y).tolist())
    if not uniq <= {0, 1, True, False}:
        raise ValueError(f"labels must be 0 (negative) or 1 (positive), got values {sorted(uniq)}.")
    y = y.astype(np.int64)
    if y.min() == y.max():
        raise ValueError("labels contain a single class; detection metrics need both positives (1) "
                         "and negatives (0).")
    return s, y


def _class_labels(v, name: str) -> np.ndarray:
    """1-D class labels as int64: integers (or bools), or floats that are whole numbers."""
    a = _as_numpy_1d(v, name)
    if a.dtype == np.bool_ or np.issubdtype(a.dtype, np.integer):
        return a.astype(np.int64)
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{name} must hold integer class labels, got dtype {a.dtype}.")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains {int((~np.isfinite(a)).sum())} NaN or infinite value(s); class "
                         "labels must be whole numbers (find where they come from, e.g. a diverged model).")
    if (a != np.round(a)).any():
        bad = a[a != np.round(a)][:3].tolist()
        hint = (" These look like probabilities or scores: pass the (N, C) logits or probabilities, "
                "or their argmax, pred.argmax(1)." if name == "pred" else "")
        raise ValueError(f"{name} is 1-D, so it must hold class labels (whole numbers), got values such "
                         f"as {bad}.{hint}")
    return a.astype(np.int64)


def accuracy(pred, labels) -> float:
    """Fraction of correct predictions. ``pred`` is labels (N,) or logits/probabilities (N, C).

    ``pred`` of shape ``(N, 1)`` is refused: it could be labels in a column or the logits of a
    single class (whose argmax is always 0), so the caller must say which. (N, C) scores must be
    finite (NaN logits would make every argmax 0). 1-D ``pred`` and ``labels`` must be class
    labels: integer (or bool) arrays, or float arrays whose values are whole numbers (``1.0``
    is accepted as class 1); a 1-D float such as ``0.9`` is refused, since it is a probability,
    not a label, and NaN labels are refused.

    Taught in Part 1, section "The classifier".
    """
    if isinstance(pred, torch.Tensor):
        pred = pred.detach().cpu().numpy()
    elif isinstance(pred, (list, tuple)):
        pred = np.asarray(pred)
    if isinstance(pred, np.ndarray) and pred.ndim == 2:
        if pred.shape[1] == 1:
            raise ValueError(f"pred has shape {pred.shape}, which is ambiguous: labels in a column or the "
                             "scores of a single class? For labels, flatten them with pred.reshape(-1); "
                             "for logits or probabilities, pass all C >= 2 columns (N, C).")
        if pred.shape[0] == 0:
            raise ValueError("pred is empty.")
        if not (np.issubdtype(pred.dtype, np.number) and not np.iscomplexobj(pred)):
            raise TypeError(f"pred (N, C) must hold real logits or probabilities, got dtype {pred.dtype}.")
        if not np.isfinite(pred).all():
            bad = int((~np.isfinite(pred)).any(1).sum())
            raise ValueError(f"pred contains NaN or infinite scores in {bad} of {pred.shape[0]} rows, whose "
                             "argmax means nothing; find where they come from (a diverged model) first.")
        pred = pred.argmax(1)
    p = _class_labels(pred, "pred")
    y = _class_labels(labels, "labels")
    if p.shape != y.shape:
        raise ValueError(f"pred and labels must have the same length, got {p.size} and {y.size}.")
    return float((p == y).mean())


def max_softmax(probs: torch.Tensor) -> torch.Tensor:
    """Confidence = largest class probability of each row, (N, C) -> (N,).

    Taught in Part 3, section "Steps 4–5: a detector per challenge set".
    """
    check_probabilities(probs, "probs")
    return probs.max(-1).values


def predictive_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each probability vector, (N, C) -> (N,); 0 log 0 = 0.

    Taught in Part 3, section "Steps 4–5: a detector per challenge set".
    """
    check_probabilities(probs, "probs")
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1)


def auroc(scores, labels) -> float:
    """Area under the ROC curve, via the Mann-Whitney rank statistic (ties get average ranks).

    0.5 is chance; 1.0 means every positive scores above every negative.

    Taught in Part 1, section "Gradient surprise on novel data".
    """
    s, y = _check_detection(scores, labels)
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def aupr(scores, labels) -> float:
    """Area under the precision-recall curve as average precision (scikit-learn's definition).

    Taught in Part 3, section "Adversarial inputs".
    """
    s, y = _check_detection(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    # group tied scores: precision/recall are evaluated at the end of each tie block
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[distinct]
    fp = (distinct + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / y.sum()
    recall_prev = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - recall_prev) * precision))


def fpr_at_tpr(scores, labels, tpr: float = 0.95) -> float:
    """False-positive rate at the smallest threshold reaching the given true-positive rate.

    Taught in Part 1, section "Gradient surprise on novel data".
    """
    check_fraction(tpr, "tpr", low=0.0, high=1.0, inclusive=False)
    s, y = _check_detection(scores, labels)
    pos = np.sort(s[y == 1])[::-1]
    k = int(np.ceil(tpr * len(pos))) - 1
    threshold = pos[max(k, 0)]
    return float((s[y == 0] >= threshold).mean())


def detection_scores(in_scores, out_scores) -> dict[str, float]:
    """AUROC, AUPR and FPR@95%TPR for separating ``out_scores`` (positives) from ``in_scores``.

    Taught in Part 1, section "Gradient surprise on novel data".
    """
    a = _as_numpy_1d(in_scores, "in_scores")
    b = _as_numpy_1d(out_scores, "out_scores")
    s = np.concatenate([a, b])
    y = np.r_[np.zeros(len(a), dtype=np.int64), np.ones(len(b), dtype=np.int64)]
    return {"auroc": auroc(s, y), "aupr": aupr(s, y), "fpr95": fpr_at_tpr(s, y, 0.95)}
