"""Tests of robust_utils.gradtrust: tiny synthetic data and tiny models only."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robust_utils import gradtrust as U
from robust_utils.metrics import score_direction
from robust_utils.models import build_model

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


def test_gradtrust_matches_autograd_and_closed_form(make_mlp, images):
    m = make_mlp(num_classes=5)
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


def test_gradtrust_zero_features_give_one(make_mlp, images):
    m = make_mlp(dropout=0.0)
    with torch.no_grad():
        m.body[0].weight.zero_()
        m.body[0].bias.zero_()  # ReLU(0) = 0: all features zero, all gradients zero
    g = U.gradtrust(m, images)
    torch.testing.assert_close(g, torch.ones(12))
    with torch.no_grad():
        h, z = m.features(images), m(images)
    torch.testing.assert_close(U.gradtrust_from_logits(z, h), torch.ones(12))


def test_gradtrust_bad_inputs(make_mlp, images):
    m = make_mlp(num_classes=4)
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


@pytest.mark.requires("sklearn")
def test_trust_curves_constant_score_is_flat():
    from sklearn.metrics import f1_score

    labels, preds, correct = _classification_case()
    r = U.trust_curves(np.ones(len(labels)), preds, labels, n_points=10)
    np.testing.assert_allclose(r["accuracy"], correct.mean())
    np.testing.assert_allclose(r["f1"], f1_score(labels, preds, average="macro"))
    assert r["auac"] == pytest.approx(correct.mean())


@pytest.mark.requires("sklearn")
def test_trust_curves_f1_agrees_with_sklearn():
    from sklearn.metrics import f1_score

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


def test_gradtrust_rejects_a_dropout_submodule_in_training_mode(make_mlp, images):
    m = make_mlp(dropout=0.5, num_classes=4)
    drop = next(mod for mod in m.modules() if isinstance(mod, nn.Dropout))
    drop.train()                          # the model itself is in eval mode, one submodule is not
    with pytest.raises(RuntimeError, match=r"submodules are in training mode.*model\.eval\(\)"):
        U.gradtrust(m, images)
    m.eval()
    torch.testing.assert_close(U.gradtrust(m, images), U.gradtrust(m, images))


def test_gradtrust_k_accepts_numpy_ints(make_mlp, images):
    m = make_mlp(num_classes=4)
    torch.testing.assert_close(U.gradtrust(m, images, k=np.int64(2)), U.gradtrust(m, images, k=2))


def test_trust_scores_declare_their_direction():
    assert score_direction(U.gradtrust) == "more trustworthy"
    assert score_direction(U.gradtrust_from_logits) == "more trustworthy"
    assert score_direction(U.trust_curves) == "better"


def test_gradtrust_dtype_and_range_get_clear_messages():
    torch.manual_seed(0)
    m = build_model("c3lt_cnn", num_classes=4).eval()
    x = torch.rand(3, 1, 28, 28)
    with pytest.raises(TypeError, match=r"float64 .* x\.float\(\)"):
        U.gradtrust(m, x.double())
    with pytest.raises(ValueError, match=r"must lie in \[0.0, 1.0\]"):
        U.gradtrust(m, x * 255)
    assert U.gradtrust(m, x * 255, value_range=None).shape == (3,)
    with pytest.raises(TypeError, match="stack the images"):
        U.gradtrust(m, list(x))
