"""ARA of hand-made r.m.s.e. lists (Part 6)."""
from __future__ import annotations

import numpy as np
import pytest

from robust_utils.ara import accuracy_robustness_curve, ara
from robust_utils.metrics import score_direction


def test_ara_by_hand():
    # sorted: 0.4, 0.2, 0.1, 0 -> acc 1/4 on [0.2, 0.4), 1/2 on [0.1, 0.2), 3/4 on [0, 0.1)
    d = [0.1, 0.0, 0.4, 0.2]
    assert ara(d, 0.25) == pytest.approx(0.0 + 0.25 * 0.1 + 0.5 * 0.1)
    assert ara(d, 0.0) == pytest.approx(0.25 * 0.2 + 0.5 * 0.1 + 0.75 * 0.1)  # the area under the curve
    assert ara(d, 1.0) == 0.0
    assert score_direction(ara) == "better"


def test_ara_is_the_area_under_the_sampled_curve():
    rng = np.random.default_rng(0)
    d = np.concatenate([np.zeros(30), rng.exponential(0.02, 70)])
    r = np.linspace(0, d.max(), 200001)
    acc = (d[None, :] > r[:, None]).mean(1)
    numeric = np.trapezoid(np.maximum(acc - 0.1, 0), r)
    assert ara(d, 0.1) == pytest.approx(numeric, rel=1e-3)


def test_curve_steps():
    r, acc = accuracy_robustness_curve([0.0, 0.3, 0.1, 0.1])
    assert r.tolist() == [0.0, 0.1, 0.3] and acc.tolist() == [0.75, 0.25, 0.0]


def test_ara_edge_cases_and_bad_inputs():
    assert ara([0.0, 0.0], 0.1) == 0.0
    with pytest.raises(ValueError, match=">= 0"):
        ara([0.1, -0.2], 0.1)
    with pytest.raises(ValueError, match="empty"):
        ara([], 0.1)
    with pytest.raises(ValueError, match="NaN"):
        ara([0.1, float("nan")], 0.1)
    with pytest.raises(ValueError, match="baseline"):
        ara([0.1], 1.5)
