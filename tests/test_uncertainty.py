"""Tests of robust_utils.uncertainty: tiny synthetic data and tiny models only."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import mahalanobis
from sklearn.metrics import f1_score
from torch import nn

from robust_utils import uncertainty as U
from robust_utils.models import build_model


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------
def _mlp(dropout: float = 0.3, num_classes: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("mlp", in_features=64, hidden=(16,), num_classes=num_classes,
                       dropout=dropout).eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def _dirichlet(t: int, n: int, c: int, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.distributions.Dirichlet(torch.full((c,), 0.7)).sample((t, n))


# ---------------------------------------------------------------------------------------------
# entropy and decomposition
# ---------------------------------------------------------------------------------------------
def test_entropy_uniform_is_log_c_and_one_hot_is_zero():
    for c in (2, 5, 10):
        assert float(U.entropy(torch.full((1, c), 1.0 / c))) == pytest.approx(math.log(c), rel=1e-6)
    assert float(U.entropy(torch.tensor([1.0, 0.0, 0.0]))) == 0.0  # 0 log 0 = 0, no NaN


def test_entropy_dim_and_bad_inputs():
    p = _dirichlet(1, 6, 4)[0]
    torch.testing.assert_close(U.entropy(p.T, dim=0), U.entropy(p))
    with pytest.raises(ValueError, match="softmax"):
        U.entropy(torch.tensor([[2.0, -1.0]]))
    with pytest.raises(ValueError, match="out of range"):
        U.entropy(p, dim=2)
    with pytest.raises(TypeError, match="torch.Tensor"):
        U.entropy([0.5, 0.5])


def test_decomposition_identity_on_dirichlet_samples():
    p = _dirichlet(7, 50, 6)
    d = U.decompose_uncertainty(p)
    torch.testing.assert_close(d["predictive"], d["aleatoric"] + d["epistemic"], atol=1e-6, rtol=0)
    assert (d["epistemic"] >= 0).all() and (d["epistemic"] > 1e-3).any()
    torch.testing.assert_close(d["mean_probs"], p.mean(0))
    assert torch.equal(d["prediction"], p.mean(0).argmax(1))
    assert (d["predictive"] <= math.log(6) + 1e-6).all()


def test_identical_passes_have_zero_epistemic():
    p = _dirichlet(1, 20, 5).expand(8, 20, 5).contiguous()
    d = U.decompose_uncertainty(p)
    torch.testing.assert_close(d["epistemic"], torch.zeros(20), atol=1e-6, rtol=0)
    torch.testing.assert_close(d["predictive"], d["aleatoric"])


def test_decomposition_hand_case():
    # two confident passes that disagree: no aleatoric, all epistemic
    p = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    d = U.decompose_uncertainty(p)
    assert float(d["predictive"]) == pytest.approx(math.log(2))
    assert float(d["aleatoric"]) == pytest.approx(0.0, abs=1e-7)
    assert float(d["epistemic"]) == pytest.approx(math.log(2))
    # two uniform passes: all aleatoric
    d = U.decompose_uncertainty(torch.full((2, 1, 2), 0.5))
    assert float(d["aleatoric"]) == pytest.approx(math.log(2))
    assert float(d["epistemic"]) == pytest.approx(0.0, abs=1e-7)


def test_decomposition_bad_inputs():
    with pytest.raises(ValueError, match=r"\(T, N, C\).*unsqueeze"):
        U.decompose_uncertainty(torch.full((3, 2), 0.5))
    with pytest.raises(ValueError, match="sum to 1"):
        U.decompose_uncertainty(torch.ones(2, 3, 4))
    with pytest.raises(ValueError, match="T >= 1"):
        U.decompose_uncertainty(torch.ones(0, 3, 4))


# ---------------------------------------------------------------------------------------------
# MC dropout
# ---------------------------------------------------------------------------------------------
def test_mc_dropout_deterministic_and_passes_differ(images):
    m = _mlp()
    state = torch.get_rng_state()
    a = U.mc_dropout_probs(m, images, n_samples=6, seed=3)
    assert torch.equal(torch.get_rng_state(), state), "the global RNG must be left untouched"
    b = U.mc_dropout_probs(m, images, n_samples=6, seed=3)
    c = U.mc_dropout_probs(m, images, n_samples=6, seed=4)
    assert a.shape == (6, 12, 4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert (a[0] - a[1]).abs().max() > 1e-3
    torch.testing.assert_close(a.sum(-1), torch.ones(6, 12))
    d = U.mc_dropout(m, images, n_samples=6, seed=3)
    torch.testing.assert_close(d["mean_probs"], a.mean(0))
    assert (d["epistemic"] > 0).all()


def test_mc_dropout_restores_modes_and_rates(images):
    m = _mlp(dropout=0.3)
    m.train()
    m.body[0].eval()  # a mixed state must come back exactly
    modes = {name: mod.training for name, mod in m.named_modules()}
    U.mc_dropout_probs(m, images, n_samples=2, dropout_rate=0.6)
    assert {name: mod.training for name, mod in m.named_modules()} == modes
    assert m.body[2].p == 0.3
    # ... also when the forward pass raises
    m.eval()
    bad = torch.rand(2, 1, 10, 10)  # the model expects 8x8 images
    with pytest.raises(ValueError, match="8x8"):
        U.mc_dropout_probs(m, bad, n_samples=2, dropout_rate=0.6)
    assert not any(mod.training for mod in m.modules())
    assert m.body[2].p == 0.3


def test_mc_dropout_rate_zero_gives_identical_passes(images):
    d = U.mc_dropout(_mlp(), images, n_samples=4, dropout_rate=0.0)
    torch.testing.assert_close(d["epistemic"], torch.zeros(12), atol=1e-6, rtol=0)


def test_mc_dropout_matches_eval_mean_only_with_dropout(images):
    # with dropout on, the mean of passes is not the deterministic output (passes are random)
    m = _mlp(dropout=0.5)
    det = m(images).softmax(-1)
    mc = U.mc_dropout(m, images, n_samples=3)["mean_probs"]
    assert (det - mc).abs().max() > 1e-4


def test_mc_dropout_bad_inputs(images):
    with pytest.raises(ValueError, match="MC dropout needs a network trained with dropout"):
        U.mc_dropout_probs(_mlp(dropout=0.0), images)
    with pytest.raises(ValueError, match="dropout_rate must be < 1"):
        U.mc_dropout_probs(_mlp(), images, dropout_rate=1.0)
    with pytest.raises(ValueError, match="n_samples"):
        U.mc_dropout_probs(_mlp(), images, n_samples=0)
    with pytest.raises(TypeError, match="seed"):
        U.mc_dropout_probs(_mlp(), images, seed=-1)
    with pytest.raises(ValueError, match="must lie in"):
        U.mc_dropout_probs(_mlp(), images * 255)


# ---------------------------------------------------------------------------------------------
# Ensembles and confidence gap
# ---------------------------------------------------------------------------------------------
def test_ensemble_of_copies_has_zero_epistemic(images):
    m = _mlp()
    d = U.ensemble_uncertainty([m, copy.deepcopy(m), copy.deepcopy(m)], images)
    torch.testing.assert_close(d["epistemic"], torch.zeros(12), atol=1e-6, rtol=0)
    torch.testing.assert_close(d["mean_probs"], m(images).softmax(-1), atol=1e-6, rtol=0)


def test_ensemble_of_different_members(images):
    members = [_mlp(seed=s) for s in range(3)]
    members[1].train()
    p = U.ensemble_probs(members, images)
    assert p.shape == (3, 12, 4)
    assert members[1].training and not members[0].training  # modes restored
    torch.testing.assert_close(p[1], members[1].eval()(images).softmax(-1))
    assert (U.ensemble_uncertainty(members, images)["epistemic"] > 0).all()


def test_ensemble_bad_inputs(images):
    with pytest.raises(ValueError, match="same classes"):
        U.ensemble_probs([_mlp(num_classes=4), _mlp(num_classes=3)], images)
    with pytest.raises(TypeError, match=r"\[model\]"):
        U.ensemble_probs(_mlp(), images)
    with pytest.raises(ValueError, match="empty"):
        U.ensemble_probs([], images)


def test_confidence_gap_hand_case():
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    labels = torch.tensor([0, 1, 1, 1])  # accuracy 2/4, mean confidence 0.75
    assert U.confidence_gap(probs, labels) == pytest.approx(0.25)
    assert U.confidence_gap(torch.tensor([[1.0, 0.0]]), torch.tensor([0])) == 0.0
    with pytest.raises(ValueError, match="one label per image"):
        U.confidence_gap(probs, labels[:3])


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


def test_mahalanobis_matches_scipy():
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


# ---------------------------------------------------------------------------------------------
# GradTrust
# ---------------------------------------------------------------------------------------------
def _gradtrust_by_hand(model: nn.Module, x: torch.Tensor, k=None) -> torch.Tensor:
    """The recipe with plain autograd, one image at a time (no torch.func, no closed form)."""
    out = []
    for xi in x:
        model.zero_grad()
        z = model(xi.unsqueeze(0))
        c = z.shape[1]
        F.mse_loss(z, torch.full_like(z, 1.0 / c)).backward()
        v = model.head.weight.grad.double().pow(2).var(dim=1, unbiased=False)
        cf = torch.sort(z[0].detach(), descending=True, stable=True).indices[1:k + 1] if k else slice(None)
        out.append(v.max() / v[cf].mean())
    model.zero_grad()
    return torch.stack(out).float()


def test_gradtrust_matches_autograd_and_closed_form(images):
    m = _mlp(num_classes=5)
    for k in (None, 1, 3):
        g = U.gradtrust(m, images, k=k)
        assert g.shape == (12,) and g.dtype == torch.float32
        torch.testing.assert_close(g, _gradtrust_by_hand(m, images, k), rtol=1e-4, atol=0)
        with torch.no_grad():
            torch.testing.assert_close(g, U.gradtrust_from_logits(m(images), k=k), rtol=1e-4, atol=0)
    g = U.gradtrust(m, images)
    assert (g >= 1 - 1e-5).all() and (g <= 5 + 1e-5).all()  # max / mean lies in [1, C]


def test_gradtrust_cnn_batching_and_batch_of_one():
    torch.manual_seed(0)
    m = build_model("c3lt_cnn", num_classes=4).eval()
    x = torch.rand(5, 1, 28, 28)
    full = U.gradtrust(m, x)
    torch.testing.assert_close(U.gradtrust(m, x, batch_size=2), full)
    torch.testing.assert_close(U.gradtrust(m, x[:1]), full[:1])
    with torch.no_grad():
        torch.testing.assert_close(full, U.gradtrust_from_logits(m(x)), rtol=1e-4, atol=0)


def test_gradtrust_from_logits_hand_cases():
    c = 4
    one = torch.full((1, c), 1.0 / c)
    one[0, 2] = 3.0  # a single logit away from 1/C: max / mean = C
    assert float(U.gradtrust_from_logits(one)) == pytest.approx(c)
    assert float(U.gradtrust_from_logits(torch.full((2, c), 1.0 / c))[0]) == 1.0  # zero gradients
    # ties: [2, 2, 0, 0] -> deviations [1.75, 1.75, .25, .25]; deterministic whatever the tie order
    z = torch.tensor([[2.0, 2.0, 0.0, 0.0]])
    d4 = torch.tensor([1.75, 1.75, 0.25, 0.25], dtype=torch.float64) ** 4
    assert float(U.gradtrust_from_logits(z)) == pytest.approx(float(d4.max() / d4.mean()), rel=1e-6)
    assert float(U.gradtrust_from_logits(z, k=1)) == pytest.approx(1.0)
    assert float(U.gradtrust_from_logits(z, k=2)) == pytest.approx(float(d4[0] / d4[1:3].mean()), rel=1e-6)
    # huge logits neither overflow nor underflow
    assert torch.isfinite(U.gradtrust_from_logits(torch.tensor([[1e8, -1e8, 0.0]]))).all()
    # top-k denominator of zero with a non-zero numerator: +inf (C = 2, runner-up logit = 1/C)
    assert math.isinf(float(U.gradtrust_from_logits(torch.tensor([[5.0, 0.5]]), k=1)))


def test_gradtrust_zero_features_give_one(images):
    m = _mlp(dropout=0.0)
    with torch.no_grad():
        m.body[0].weight.zero_()
        m.body[0].bias.zero_()  # ReLU(0) = 0: all features zero, all gradients zero
    g = U.gradtrust(m, images)
    torch.testing.assert_close(g, torch.ones(12))
    with torch.no_grad():
        h, z = m.features(images), m(images)
    torch.testing.assert_close(U.gradtrust_from_logits(z, h), torch.ones(12))


def test_gradtrust_bad_inputs(images):
    m = _mlp(num_classes=4)
    with pytest.raises(ValueError, match="out of range"):
        U.gradtrust(m, images, k=4)
    with pytest.raises(ValueError, match="out of range"):
        U.gradtrust_from_logits(torch.randn(3, 4), k=0)
    with pytest.raises(TypeError, match="k must be"):
        U.gradtrust(m, images, k=1.5)
    with pytest.raises(RuntimeError, match="training mode"):
        U.gradtrust(m.train(), images)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 4)).eval()
    with pytest.raises(TypeError, match="head"):
        U.gradtrust(plain, images)
    with pytest.raises(ValueError, match="same images"):
        U.gradtrust_from_logits(torch.randn(3, 4), torch.randn(2, 8))


# ---------------------------------------------------------------------------------------------
# Trust curves
# ---------------------------------------------------------------------------------------------
def _classification_case(n: int = 300, c: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    correct = rng.random(n) < 0.6
    preds = np.where(correct, labels, (labels + rng.integers(1, c, n)) % c)
    return labels, preds, correct


def test_trust_curves_perfect_score():
    labels, preds, correct = _classification_case()
    scores = correct + 0.01 * np.random.default_rng(1).random(len(labels))  # correct all above wrong
    r = U.trust_curves(torch.tensor(scores), torch.tensor(preds), torch.tensor(labels))
    assert r["percentiles"].tolist() == (np.arange(100) / 100).tolist()
    assert np.all(np.diff(r["accuracy"]) >= -1e-12)
    assert r["accuracy"][0] == pytest.approx(correct.mean())
    assert r["accuracy"][-1] == 1.0 and r["f1"][-1] > r["f1"][0]
    assert 0 <= r["aufc"] <= 1 and r["auac"] > correct.mean()


def test_trust_curves_constant_score_is_flat():
    labels, preds, correct = _classification_case()
    r = U.trust_curves(np.ones(len(labels)), preds, labels, n_points=10)
    np.testing.assert_allclose(r["accuracy"], correct.mean())
    np.testing.assert_allclose(r["f1"], f1_score(labels, preds, average="macro"))
    assert r["auac"] == pytest.approx(correct.mean())


def test_trust_curves_f1_agrees_with_sklearn():
    labels, preds, _ = _classification_case(n=120, c=6, seed=3)
    preds[:10] = 7  # a predicted class that is absent from the labels
    scores = np.random.default_rng(4).integers(0, 20, len(labels)).astype(float)  # many ties
    r = U.trust_curves(scores, preds, labels, n_points=20)
    classes = np.unique(labels)
    for q, acc, f1 in zip(r["percentiles"], r["accuracy"], r["f1"]):
        keep = scores >= np.quantile(scores, q, method="lower")
        assert acc == pytest.approx((preds[keep] == labels[keep]).mean())
        assert f1 == pytest.approx(f1_score(labels[keep], preds[keep], average="macro", labels=classes,
                                            zero_division=0))
    assert r["aufc"] == pytest.approx(np.trapezoid(r["f1"], r["percentiles"]) / 0.95)


def test_trust_curves_hand_case():
    labels, preds = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    r = U.trust_curves(np.array([4.0, 1.0, 3.0, 2.0]), preds, labels, n_points=4)
    # q = 0, .25 keep all (lower quantiles 1, 1); q = .5, .75 drop the wrong image
    np.testing.assert_allclose(r["accuracy"], [0.75, 0.75, 1.0, 1.0])
    np.testing.assert_allclose(r["f1"], [(2 / 3 + 4 / 5) / 2, (2 / 3 + 4 / 5) / 2, 1.0, 1.0])
    expected_auac = np.trapezoid([0.75, 0.75, 1.0, 1.0], [0, 0.25, 0.5, 0.75]) / 0.75
    assert r["auac"] == pytest.approx(expected_auac)


def test_trust_curves_bad_inputs():
    s, p, y = np.ones(5), np.zeros(5, dtype=int), np.zeros(5, dtype=int)
    with pytest.raises(ValueError, match="same length"):
        U.trust_curves(s, p[:4], y)
    with pytest.raises(ValueError, match="same length"):
        U.trust_curves(s, p, y[:3])
    with pytest.raises(ValueError, match="n_points"):
        U.trust_curves(s, p, y, n_points=1)
    with pytest.raises(ValueError, match="NaN"):
        U.trust_curves(np.r_[np.nan, s[1:]], p, y)
    with pytest.raises(TypeError, match="argmax"):
        U.trust_curves(s, np.zeros((5,)), y)
    with pytest.raises(ValueError, match="1-D"):
        U.trust_curves(s, np.zeros((5, 2), dtype=int), y)


# ---------------------------------------------------------------------------------------------
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


@pytest.mark.parametrize("rate", [None, 0.3])
def test_mc_dropout_fast_path_equals_full_passes(images, rate):
    """The C3LT CNN's trunk-once fast path gives the very numbers of T full forward passes."""
    torch.manual_seed(0)
    fast = build_model("c3lt_cnn", num_classes=4).eval()
    assert fast.dropout_before_head
    slow = copy.deepcopy(fast)
    slow.dropout_before_head = False  # forces T full passes
    x = torch.rand(10, 1, 28, 28)
    a = U.mc_dropout_probs(fast, x, n_samples=5, seed=2, batch_size=4, dropout_rate=rate)
    b = U.mc_dropout_probs(slow, x, n_samples=5, seed=2, batch_size=4, dropout_rate=rate)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not fast.training and not fast.dropout.training and fast.dropout.p == 0.5
