"""Tests of robust_utils.ood: tiny synthetic data and tiny models only."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from robust_utils import ood as U
from robust_utils.metrics import score_direction


# ---------------------------------------------------------------------------------------------
# Mahalanobis
# ---------------------------------------------------------------------------------------------
def test_mahalanobis_identity_covariance_is_squared_euclidean():
    r = math.sqrt(2.0)
    base = torch.tensor([[r, 0.0], [-r, 0.0], [0.0, r], [0.0, -r]], dtype=torch.float64)
    feats = torch.cat([base, base + torch.tensor([3.0, 4.0], dtype=torch.float64)])
    labels = torch.tensor([0] * 4 + [1] * 4)
    det = U.MahalanobisDetector(shrinkage=0.0).fit(feats, labels)
    torch.testing.assert_close(det.covariance_, torch.eye(2, dtype=torch.float64))
    q = torch.tensor([[0.0, 0.0], [3.0, 0.0], [3.0, 4.0]], dtype=torch.float64)
    expected = torch.tensor([[0.0, 25.0], [9.0, 16.0], [25.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(det.distances(q), expected)
    torch.testing.assert_close(det.score(q), torch.tensor([0.0, 9.0, 0.0], dtype=torch.float64))
    assert det.predict(q).tolist() == [0, 0, 1]


@pytest.mark.requires("scipy")
def test_mahalanobis_matches_scipy():
    from scipy.spatial.distance import mahalanobis

    rng = np.random.default_rng(0)
    d, n = 5, 90
    labels = np.repeat([0, 1, 2], n // 3)
    a = rng.normal(size=(d, d))
    feats = rng.normal(size=(n, d)) @ a + 2.0 * labels[:, None]
    means = np.stack([feats[labels == c].mean(0) for c in range(3)])
    centred = feats - means[labels]
    vi = np.linalg.inv(centred.T @ centred / n)
    q = rng.normal(size=(7, d)) * 3
    expected = np.array([[mahalanobis(u, means[c], vi) ** 2 for c in range(3)] for u in q])
    det = U.MahalanobisDetector(shrinkage=0.0).fit(torch.tensor(feats, dtype=torch.float32),
                                                   torch.tensor(labels))
    got = det.distances(torch.tensor(q, dtype=torch.float32))
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4)
    # the default shrinkage barely changes a well-conditioned covariance
    det2 = U.MahalanobisDetector().fit(torch.tensor(feats), torch.tensor(labels))
    np.testing.assert_allclose(det2.distances(torch.tensor(q)).numpy(), expected, rtol=1e-4)


def test_mahalanobis_missing_class_and_singular_covariance():
    torch.manual_seed(0)
    feats = torch.randn(6, 10)  # D > N: rank-deficient covariance
    labels = torch.tensor([0, 0, 0, 2, 2, 2])
    for shrinkage in (0.0, 1e-3):
        det = U.MahalanobisDetector(shrinkage=shrinkage).fit(feats, labels)
        assert det.classes_.tolist() == [0, 2]
        dist = det.distances(feats)
        assert dist.shape == (6, 3) and torch.isinf(dist[:, 1]).all()
        assert torch.isfinite(dist[:, [0, 2]]).all()
        assert set(det.predict(feats).tolist()) <= {0, 2}
    assert "2 classes" in repr(det)


def test_mahalanobis_bad_inputs():
    det = U.MahalanobisDetector()
    with pytest.raises(RuntimeError, match="not fitted"):
        det.score(torch.randn(3, 4))
    det.fit(torch.randn(20, 4), torch.randint(0, 2, (20,)))
    with pytest.raises(ValueError, match="D=4"):
        det.score(torch.randn(3, 5))
    with pytest.raises(ValueError, match="zero covariance"):
        U.MahalanobisDetector().fit(torch.ones(4, 3), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="shrinkage"):
        U.MahalanobisDetector(shrinkage=-1.0)
    with pytest.raises(TypeError, match="extract_features"):
        det.score(np.zeros((3, 4)))


# ---------------------------------------------------------------------------------------------
# Baseline scores
# ---------------------------------------------------------------------------------------------
def test_baseline_scores_hand_case_and_orientation():
    logits = torch.tensor([[math.log(3.0), 0.0, 0.0], [0.0, 0.0, 0.0]])
    s = U.baseline_scores(logits)
    assert tuple(s) == U.BASELINE_SCORES == ("softmax", "entropy", "margin", "nll", "energy")
    p = torch.tensor([0.6, 0.2, 0.2])
    assert float(s["softmax"][0]) == pytest.approx(0.4)
    assert float(s["entropy"][0]) == pytest.approx(float(-(p * p.log()).sum()))
    assert float(s["margin"][0]) == pytest.approx(-0.4)
    assert float(s["nll"][0]) == pytest.approx(-math.log(0.6))
    assert float(s["energy"][0]) == pytest.approx(-math.log(5.0))
    assert float(s["entropy"][1]) == pytest.approx(math.log(3))
    for name, v in s.items():  # the uniform row is the more uncertain one under every score
        assert v[1] > v[0], name


def test_baseline_nll_ranks_like_softmax():
    logits = torch.randn(50, 6, generator=torch.Generator().manual_seed(0)) * 3
    s = U.baseline_scores(logits)
    assert torch.equal(s["nll"].argsort(), s["softmax"].argsort())
    with pytest.raises(ValueError, match="unsqueeze"):
        U.baseline_scores(torch.randn(5))
    with pytest.raises(ValueError, match="NaN"):
        U.baseline_scores(torch.tensor([[0.0, float("nan")]]))




def test_scores_declare_their_direction():
    assert score_direction(U.MahalanobisDetector) == "more novel"
    assert score_direction(U.MahalanobisDetector()) == "more novel"
    assert score_direction(U.baseline_scores) == "more novel"
    # one direction per returned score, for exactly the returned keys
    s = U.baseline_scores(torch.randn(4, 3))
    assert tuple(U.BASELINE_DIRECTIONS) == tuple(s) == U.BASELINE_SCORES
    assert set(U.BASELINE_DIRECTIONS.values()) == {score_direction(U.baseline_scores)}
    # "more novel": an uncertain (flat) logit vector scores higher than a confident one
    flat_vs_peaked = U.baseline_scores(torch.tensor([[0.0, 0.0, 0.0], [9.0, 0.0, 0.0]]))
    for name in ("softmax", "entropy", "margin", "nll"):
        assert flat_vs_peaked[name][0] > flat_vs_peaked[name][1], name


def test_mahalanobis_shrinkage_checked():
    with pytest.raises(ValueError, match="shrinkage"):
        U.MahalanobisDetector(shrinkage=-1.0)
    with pytest.raises(ValueError, match="shrinkage"):
        U.MahalanobisDetector(shrinkage=float("nan"))
    with pytest.raises(TypeError, match="shrinkage"):
        U.MahalanobisDetector(shrinkage="big")
    assert U.MahalanobisDetector(shrinkage=0).shrinkage == 0.0
