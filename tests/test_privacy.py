"""Tests of robust_utils.privacy: the shadow-model attack finds the members of an over-fitted
target and is at chance when no image was seen, shadow index sets are disjoint, features are what
the docstring says, and bad inputs raise. Tiny MLPs on random 8x8 images with random labels (so a
model can only memorise), trained for a few hundred steps."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robust_utils import privacy as P
from robust_utils.config import seed_everything
from robust_utils.models import build_model
from robust_utils.training import evaluate_accuracy, train_classifier

pytestmark = pytest.mark.usefixtures("one_thread")

MK = {"in_features": 64, "hidden": (64,)}
RECIPE = dict(epochs=40, batch_size=16)
N_TRAIN = 64


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def _train(x, y, seed):
    seed_everything(seed)
    model = build_model("mlp", num_classes=4, **MK)
    train_classifier(model, x, y, progress=False, seed=seed, **RECIPE)
    return model


@pytest.fixture(scope="module")
def pool():
    return _data(3 * 2 * N_TRAIN, seed=0)


@pytest.fixture(scope="module")
def shadows(pool):
    return P.train_shadow_models("mlp", *pool, n_shadow=3, n_train=N_TRAIN, model_kwargs=MK,
                                 device="cpu", seed=0, **RECIPE)


@pytest.fixture(scope="module")
def overfit():
    """A target that memorised 64 random-label images, plus 64 non-members."""
    xm, ym = _data(N_TRAIN, seed=1)
    xn, yn = _data(N_TRAIN, seed=2)
    return _train(xm, ym, seed=10), (xm, ym, xn, yn)


def test_shadows_have_disjoint_equal_size_index_sets(shadows, pool):
    assert len(shadows) == 3
    seen = []
    for s in shadows:
        assert isinstance(s, P.ShadowModel) and not s.model.training
        assert s.in_idx.shape == s.out_idx.shape == (N_TRAIN,)
        assert s.in_idx.dtype == torch.long
        seen += s.in_idx.tolist() + s.out_idx.tolist()
    assert len(set(seen)) == len(seen) == 3 * 2 * N_TRAIN          # no overlap within or across
    assert max(seen) < len(pool[0])
    assert [s.seed for s in shadows] == [0, 1, 2]
    # each shadow memorised its own "in" set (random labels: nothing to generalise)
    xp, yp = pool
    for s in shadows:
        acc_in = evaluate_accuracy(s.model, xp[s.in_idx], yp[s.in_idx])
        acc_out = evaluate_accuracy(s.model, xp[s.out_idx], yp[s.out_idx])
        assert acc_in > 0.8 and acc_in - acc_out > 0.4


def test_shadow_training_is_deterministic(pool):
    kw = dict(n_shadow=2, n_train=16, epochs=1, batch_size=8, model_kwargs=MK, device="cpu", seed=3)
    a = P.train_shadow_models("mlp", *pool, **kw)
    b = P.train_shadow_models("mlp", *pool, **kw)
    for sa, sb in zip(a, b):
        assert torch.equal(sa.in_idx, sb.in_idx) and torch.equal(sa.out_idx, sb.out_idx)
        torch.testing.assert_close(sa.model.head.weight, sb.model.head.weight, atol=0, rtol=0)
    assert not torch.equal(a[0].in_idx, P.train_shadow_models("mlp", *pool, **{**kw, "seed": 4})[0].in_idx)


def test_attack_features_by_hand(overfit):
    model, (xm, ym, _, _) = overfit
    f = P.attack_features(model, xm, ym)
    p = model(xm).softmax(1).detach()
    assert f.shape == (N_TRAIN, 4 + 2)
    torch.testing.assert_close(f[:, :4], p.sort(1, descending=True).values)
    torch.testing.assert_close(f[:, 4], p.gather(1, ym[:, None])[:, 0])
    torch.testing.assert_close(f[:, 5], F.cross_entropy(model(xm), ym, reduction="none").detach())


def test_overfitted_target_is_attacked(overfit, shadows, pool):
    model, sets = overfit
    r = P.membership_inference(model, *sets, shadows, *pool, seed=0)
    assert r["train_accuracy"] > 0.9 and r["generalization_gap"] > 0.4
    assert r["auc"] > 0.8
    assert r["advantage"] > 0.4
    assert r["advantage"] == pytest.approx(2 * r["accuracy"] - 1)   # equal-size member sets
    assert r["max_advantage"] >= r["advantage"] - 1e-12
    assert r["member_scores"].shape == r["nonmember_scores"].shape == (N_TRAIN,)
    assert r["member_scores"].mean() > r["nonmember_scores"].mean()
    assert hasattr(r["attack"], "predict_proba")
    lr = P.membership_inference(model, *sets, shadows, *pool, attack="logistic_regression")
    assert lr["auc"] > 0.8
    # Yeom et al.'s baseline needs no shadows and also succeeds
    base = P.loss_threshold_attack(model, *sets)
    assert base["auc"] > 0.8 and base["advantage"] > 0.3
    assert base["threshold"] == pytest.approx(float(base["member_losses"].mean()))
    assert base["generalization_gap"] == pytest.approx(r["generalization_gap"])


def test_unseen_members_are_at_chance(overfit, shadows, pool):
    # "members" and "non-members" from the same distribution, neither seen by the target
    model, _ = overfit
    xa, ya = _data(200, seed=5)
    xb, yb = _data(200, seed=6)
    r = P.membership_inference(model, xa, ya, xb, yb, shadows, *pool)
    assert abs(r["auc"] - 0.5) < 0.1
    assert abs(r["advantage"]) < 0.15
    assert abs(r["generalization_gap"]) < 0.15
    base = P.loss_threshold_attack(model, xa, ya, xb, yb)
    assert abs(base["auc"] - 0.5) < 0.1


@pytest.mark.requires("sklearn")
def test_loss_threshold_by_hand(overfit):
    model, (xm, ym, xn, yn) = overfit
    # an explicit threshold below every loss: nobody is called a member -> TPR = FPR = 0
    r = P.loss_threshold_attack(model, xm, ym, xn, yn, threshold=-1.0)
    assert r["advantage"] == 0.0 and r["recall"] == 0.0 and r["precision"] == 0.0
    assert r["accuracy"] == pytest.approx(0.5)
    # above every loss: everybody is a member -> accuracy 0.5 on balanced sets
    r = P.loss_threshold_attack(model, xm, ym, xn, yn, threshold=1e9)
    assert r["recall"] == 1.0 and r["advantage"] == 0.0
    # AUC is the rank statistic of the negated losses
    from sklearn.metrics import roc_auc_score

    lab = np.r_[np.ones(N_TRAIN), np.zeros(N_TRAIN)]
    assert r["auc"] == pytest.approx(roc_auc_score(lab, -np.r_[r["member_losses"], r["nonmember_losses"]]))


def test_bad_inputs(overfit, shadows, pool):
    model, (xm, ym, xn, yn) = overfit
    xp, yp = pool
    with pytest.raises(ValueError, match="disjoint images"):
        P.train_shadow_models("mlp", xp, yp, n_shadow=4, n_train=N_TRAIN, model_kwargs=MK)
    with pytest.raises(ValueError, match="unknown architecture"):
        P.train_shadow_models("vgg", xp, yp)
    with pytest.raises(ValueError, match="has no dropout"):
        P.train_shadow_models("preact_resnet", xp, yp, n_shadow=1, n_train=8, dropout=0.3)
    with pytest.raises(TypeError, match="model_kwargs must be a dict"):
        P.train_shadow_models("mlp", xp, yp, n_shadow=1, n_train=8, model_kwargs=[64])
    with pytest.raises(ValueError, match="same length|entries but there are"):
        P.train_shadow_models("mlp", xp, yp[:-1])
    with pytest.raises(ValueError, match="non-empty list of ShadowModel"):
        P.membership_inference(model, xm, ym, xn, yn, [], xp, yp)
    with pytest.raises(ValueError, match="outside the pool"):
        P.membership_inference(model, xm, ym, xn, yn, shadows, xp[:10], yp[:10])
    with pytest.raises(ValueError, match="unknown attack model"):
        P.membership_inference(model, xm, ym, xn, yn, shadows, xp, yp, attack="svm")
    with pytest.raises(ValueError, match="entries but there are"):
        P.membership_inference(model, xm, ym[:-1], xn, yn, shadows, xp, yp)
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\]"):
        P.attack_features(model, xm, ym + 4)
    with pytest.raises(ValueError, match=r"must lie in \[0.0, 1.0\]"):
        P.attack_features(model, xm * 3, ym)
    seed_everything(0)
    five = build_model("mlp", num_classes=5, **MK).eval()
    with pytest.raises(ValueError, match="num_classes"):
        P.membership_inference(five, xm, ym, xn, yn, shadows, xp, yp)
    with pytest.raises(TypeError, match="threshold must be a number"):
        P.loss_threshold_attack(model, xm, ym, xn, yn, threshold="low")


def test_loss_threshold_attack_takes_int32_labels():
    from robust_utils import privacy as P
    from robust_utils.models import MLP
    torch.manual_seed(0)
    model = MLP(hidden=(8,)).eval()
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    a = P.loss_threshold_attack(model, x[:4], y[:4].int(), x[4:], y[4:].int())
    b = P.loss_threshold_attack(model, x[:4], y[:4], x[4:], y[4:])
    assert a["auc"] == b["auc"]
