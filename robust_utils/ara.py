"""The accuracy-robustness area (ARA) of Woods et al. (2019), from a list of minimal perturbations.

For each evaluated test image, let :math:`d_i` be the r.m.s.e. of the smallest perturbation that
makes the attack's goal true (Algorithm 1 with :math:`g_{adv}` for the attack ARA, :math:`g_{BTR}`
for the BTR ARA), and :math:`d_i = 0` for an image that is misclassified already. The accuracy at a
budget :math:`r` is the fraction of images whose :math:`d_i` exceeds it, and the ARA is the area
between that curve and the naive classifier's accuracy :math:`b` (``1 / V`` for :math:`V`
balanced classes):

.. math::  \\mathrm{acc}(r) = \\frac{1}{n}\\sum_i \\mathbb{I}[d_i > r], \\qquad
           \\mathrm{ARA} = \\int_0^\\infty \\max\\big(\\mathrm{acc}(r) - b,\\; 0\\big)\\, dr.

``acc`` is a step function, so the integral is a finite sum, computed exactly (the authors' code
integrates over a 1,000-bin histogram instead). Larger is better.

Taught in Part 6, section "ARA and BTR ARA".
"""
from __future__ import annotations

import numpy as np

from ._checks import as_numpy_1d, check_fraction
from .metrics import declares_direction

__all__ = ["accuracy_robustness_curve", "ara"]


def _rmse_list(rmse) -> np.ndarray:
    d = as_numpy_1d(rmse, "rmse").astype(float)
    if d.size == 0:
        raise ValueError("rmse is empty: ARA needs at least one evaluated image.")
    if not np.all(np.isfinite(d)):
        raise ValueError("rmse contains NaN or infinite values; an image the attack never broke needs a "
                         "finite budget (the largest r.m.s.e. the attack could reach).")
    if d.min() < 0:
        raise ValueError(f"rmse values are distances and must be >= 0, got a minimum of {d.min():.3g}; "
                         "misclassified images enter with 0.")
    return d


def accuracy_robustness_curve(rmse) -> tuple[np.ndarray, np.ndarray]:
    """The step curve ``acc(r)``: budgets ``r`` (ascending, from 0) and the accuracy from each on.

    ``acc`` equals ``accuracy[i]`` on ``[r[i], r[i + 1])`` and 0 from ``r[-1]`` on (the largest
    r.m.s.e.). Higher is better.

    Taught in Part 6, section "ARA and BTR ARA".
    """
    d = np.sort(_rmse_list(rmse))
    r = np.concatenate([[0.0], np.unique(d[d > 0])])
    acc = np.array([(d > v).mean() for v in r])
    return r, acc


@declares_direction("better")
def ara(rmse, baseline: float) -> float:
    """The accuracy-robustness area above ``baseline`` (e.g. ``1 / 10`` for Fashion-MNIST).

    Parameters
    ----------
    rmse : array-like (n,)
        Per evaluated image, the r.m.s.e. of its minimal successful perturbation, 0 for images
        misclassified without attack.
    baseline : float in [0, 1]
        The naive classifier's accuracy.

    Returns
    -------
    float
        ``integral of max(acc(r) - baseline, 0) dr``; larger is better.

    Taught in Part 6, section "ARA and BTR ARA".
    """
    baseline = check_fraction(baseline, "baseline")
    d = np.sort(_rmse_list(rmse))[::-1]           # descending: d_(1) >= ... >= d_(n)
    n = d.size
    nxt = np.concatenate([d[1:], [0.0]])
    levels = np.arange(1, n + 1) / n               # acc on [d_(i+1), d_(i)) is i / n
    return float(np.sum(np.maximum(levels - baseline, 0.0) * (d - nxt)))
