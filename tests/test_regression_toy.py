"""Tests of robust_utils.regression_toy: tiny synthetic data and tiny models only."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from robust_utils import regression_toy as U
from robust_utils.metrics import score_direction

# 1-D regression toy
# ---------------------------------------------------------------------------------------------
def test_toy_regression_data():
    x, y = U.toy_regression_data(301, seed=2)
    assert x.shape == (301, 1) and y.shape == (301, 1) and x.dtype == torch.float32
    assert (x.abs() >= 1).all() and (x.abs() <= 4).all()
    assert int((x < 0).sum()) == 150
    x2, y2 = U.toy_regression_data(301, seed=2)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(y, U.toy_regression_data(301, seed=3)[1])
    torch.testing.assert_close(U.toy_noise_std(torch.tensor([0.0, -2.0])), torch.tensor([0.05, 0.35]))
    x, y = U.toy_regression_data(4000)
    resid = (y - torch.sin(x)).flatten()
    inner, outer = x.flatten().abs() < 2, x.flatten().abs() > 3
    assert resid[outer].std() > 2 * resid[inner].std()  # heteroscedastic
    with pytest.raises(ValueError, match="n must be >= 2"):
        U.toy_regression_data(1)


def test_regression_ensemble_separates_aleatoric_and_epistemic():
    x, y = U.toy_regression_data(400)
    members = U.fit_regression_ensemble(x, y, members=3, hidden=32, epochs=150, seed=0)
    assert len(members) == 3 and not any(m.training for m in members)
    q = torch.tensor([[1.5], [3.5], [2.5], [8.0]])
    r = U.regression_uncertainty(members, q)
    assert list(r) == ["mean", "aleatoric", "epistemic", "total"]
    assert all(v.shape == (4,) for v in r.values())
    torch.testing.assert_close(r["total"], r["aleatoric"] + r["epistemic"])
    assert r["aleatoric"][1] > 2 * r["aleatoric"][0]  # more noise at |x| = 3.5 than at 1.5
    assert r["epistemic"][3] > 10 * r["epistemic"][2]  # far outside the data vs inside
    assert abs(float(r["mean"][0]) - math.sin(1.5)) < 0.2
    # deterministic given the seed; 1-D inputs accepted
    again = U.fit_regression_ensemble(x, y, members=3, hidden=32, epochs=150, seed=0)
    torch.testing.assert_close(U.regression_uncertainty(again, q.flatten())["mean"], r["mean"])


def test_regression_bad_inputs():
    x, y = U.toy_regression_data(20)
    with pytest.raises(ValueError, match="same length"):
        U.fit_regression_ensemble(x, y[:10], epochs=1)
    with pytest.raises(ValueError, match=r"\(N, 1\)"):
        U.fit_regression_ensemble(torch.rand(20, 2), y, epochs=1)
    with pytest.raises(ValueError, match="lr"):
        U.fit_regression_ensemble(x, y, epochs=1, lr=0)
    with pytest.raises(TypeError, match="fit_regression_ensemble"):
        U.regression_uncertainty(U.GaussianMLP(4), x)


def test_regression_seed_check_is_the_shared_one():
    with pytest.raises(ValueError, match="seed"):
        U.toy_regression_data(10, seed=-1)
    with pytest.raises(TypeError, match="seed"):
        U.toy_regression_data(10, seed=0.5)
    torch.testing.assert_close(U.toy_regression_data(10, seed=np.int64(2))[0],
                               U.toy_regression_data(10, seed=2)[0])
    assert score_direction(U.regression_uncertainty) == "more uncertain"
