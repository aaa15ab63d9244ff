"""Tests of robust_utils.training on tiny synthetic data (seconds on a CPU)."""
import pytest
import torch

from robust_utils.models import MLP, C3LTClassifier, PreActResNet
from robust_utils.training import (AUGMENTATIONS, evaluate_accuracy, gaussian_noise,
                                   iterate_minibatches, predict, predict_logits, random_flip,
                                   train_classifier)


def separable(n=64, seed=0, size=8):
    """Class 0: bright left half; class 1: bright right half (plus a little noise)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = 0.2 * torch.rand(n, 1, size, size, generator=g)
    half = size // 2
    x[y == 0, :, :, :half] += 0.7
    x[y == 1, :, :, half:] += 0.7
    return x.clamp(0, 1), y


def tiny_mlp(seed=0, **kw):
    torch.manual_seed(seed)
    return MLP(in_features=64, hidden=(16,), num_classes=2, **kw)


def test_iterate_minibatches_covers_everything_once():
    x = torch.arange(10).float().view(10, 1, 1, 1)
    y = torch.arange(10)
    batches = list(iterate_minibatches(x, y, batch_size=4, shuffle=True,
                                       generator=torch.Generator().manual_seed(0)))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    ys = torch.cat([b[1] for b in batches])
    assert sorted(ys.tolist()) == list(range(10)) and ys.tolist() != list(range(10))
    for xb, yb in batches:  # pairs stay aligned
        assert torch.equal(xb.view(-1).long(), yb)
    in_order = list(iterate_minibatches(x, None, batch_size=4, shuffle=False, drop_last=True))
    assert [b.view(-1).tolist() for b in in_order] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_iterate_minibatches_errors():
    with pytest.raises(ValueError, match="same length"):
        list(iterate_minibatches(torch.zeros(3, 1), torch.zeros(2), 2))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        list(iterate_minibatches(torch.zeros(3, 1), None, 0))


def test_training_learns_a_separable_problem():
    x, y = separable()
    model = tiny_mlp()
    hist = train_classifier(model, x, y, epochs=15, batch_size=16, lr=1e-2, progress=False)
    assert set(hist) >= {"loss", "accuracy", "lr", "time"}
    assert len(hist["loss"]) == 15
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    assert hist["accuracy"][-1] == 1.0
    assert not model.training  # eval mode after training
    assert evaluate_accuracy(model, x, y) == 1.0
    assert hist["lr"][-1] < 1e-2 * 1e-3  # cosine decays to ~0


def test_sgd_step_schedule_augmentation_and_val_data():
    x, y = separable()
    model = tiny_mlp()
    hist = train_classifier(model, x, y, epochs=8, batch_size=16, lr=0.05, optimizer="sgd",
                            schedule="step", augment="gaussian_noise", val_data=separable(seed=1),
                            progress=False)
    assert hist["lr"][-1] == pytest.approx(0.05 * 0.01)
    assert len(hist["val_accuracy"]) == 8 and hist["val_accuracy"][-1] == 1.0


def test_same_seed_same_weights():
    x, y = separable()
    states = []
    for _ in range(2):
        model = tiny_mlp(dropout=0.3)
        train_classifier(model, x, y, epochs=2, batch_size=16, seed=3, augment="flip", progress=False)
        states.append(model.state_dict())
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k
    model = tiny_mlp(dropout=0.3)
    train_classifier(model, x, y, epochs=2, batch_size=16, seed=4, augment="flip", progress=False)
    assert not torch.equal(model.state_dict()["head.weight"], states[0]["head.weight"])


def test_batchnorm_model_and_leftover_batch_of_one():
    torch.manual_seed(0)
    x, y = separable(n=33, size=28)  # 33 = 2 * 16 + 1: the last batch of one is skipped
    model = PreActResNet(num_classes=2, widths=(4,), blocks_per_stage=(1,))
    hist = train_classifier(model, x, y, epochs=1, batch_size=16, progress=False)
    assert len(hist["loss"]) == 1 and not model.training


def test_predict_logits_matches_forward_and_is_batch_independent():
    torch.manual_seed(0)
    model = C3LTClassifier()
    model.train()  # predict_logits must switch dropout off ...
    x = torch.rand(37, 1, 28, 28)
    out = predict_logits(model, x, batch_size=8)
    assert model.training  # ... and restore the caller's mode
    model.eval()
    with torch.no_grad():
        direct = model(x)
    torch.testing.assert_close(out, direct)
    torch.testing.assert_close(predict_logits(model, x, batch_size=1000), out)
    assert not out.requires_grad
    probs, labels = predict(model, x, batch_size=5)
    torch.testing.assert_close(probs.sum(1), torch.ones(37))
    assert torch.equal(labels, direct.argmax(1))


def test_augmentations_are_seeded_and_shape_preserving():
    x = torch.rand(6, 1, 5, 5)
    for name, aug in AUGMENTATIONS.items():
        a = aug(x, torch.Generator().manual_seed(0))
        b = aug(x, torch.Generator().manual_seed(0))
        assert a.shape == x.shape and torch.equal(a, b), name
        assert a.min() >= 0 and a.max() <= 1
    flipped = random_flip(x, torch.Generator().manual_seed(0), p=1.0)
    assert torch.equal(flipped, x.flip(-1))
    assert torch.equal(random_flip(x, None, p=0.0), x)
    assert torch.equal(gaussian_noise(x, None, sigma=0.0), x)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_noise(x, None, sigma=-1.0)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(epochs=0), ValueError, "epochs must be >= 1"),
    (dict(epochs=1.5), TypeError, "epochs must be an integer"),
    (dict(epochs=1, batch_size=0), ValueError, "batch_size"),
    (dict(epochs=1, lr=-1.0), ValueError, "lr must be"),
    (dict(epochs=1, optimizer="rmsprop"), ValueError, "adam, sgd"),
    (dict(epochs=1, schedule="linear"), ValueError, "cosine"),
    (dict(epochs=1, augment="mixup"), ValueError, "none, gaussian_noise, flip"),
    (dict(epochs=1, augment=3), TypeError, "augment must be"),
    (dict(epochs=1, seed=-1), ValueError, "seed"),
])
def test_train_classifier_rejects_bad_settings(kwargs, exc, match):
    x, y = separable()
    with pytest.raises(exc, match=match):
        train_classifier(tiny_mlp(), x, y, progress=False, **kwargs)


def test_train_classifier_rejects_bad_data():
    x, y = separable()
    with pytest.raises(ValueError, match=r"must lie in \[0.0, 1.0\]"):
        train_classifier(tiny_mlp(), x * 255, y, epochs=1, progress=False)
    with pytest.raises(ValueError, match="one label per image"):
        train_classifier(tiny_mlp(), x, y[:-1], epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        train_classifier(tiny_mlp(), x, y + 1, epochs=1, progress=False)
    with pytest.raises(TypeError, match="integer tensor"):
        train_classifier(tiny_mlp(), x, y.float(), epochs=1, progress=False)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        train_classifier(lambda t: t, x, y, epochs=1, progress=False)


def test_prediction_rejects_bad_inputs():
    model = tiny_mlp()
    with pytest.raises(ValueError, match="unsqueeze"):
        predict_logits(model, torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match="one label per image"):
        evaluate_accuracy(model, torch.rand(4, 1, 8, 8), torch.zeros(3, dtype=torch.long))


# ------------------------------------------------------------------------- extend_head
def test_extend_head_keeps_the_old_logits_and_adds_new_rows():
    from robust_utils import models
    from robust_utils.training import extend_head
    torch.manual_seed(0)
    m = models.build_model("c3lt_cnn", num_classes=8).eval()
    x = torch.rand(4, 1, 28, 28)
    wide = extend_head(m, 10, seed=3).eval()
    with torch.no_grad():
        old, new = m(x), wide(x)
    assert new.shape == (4, 10) and wide.num_classes == 10 and m.head.out_features == 8
    assert torch.allclose(new[:, :8], old, atol=1e-6)
    bound = 1 / 256 ** 0.5
    assert float(wide.head.weight[8:].abs().max()) <= bound and float(wide.head.weight[8:].std()) > 0
    again = extend_head(m, 10, seed=3)
    assert torch.equal(again.head.weight, wide.head.weight)  # seeded
    assert wide.conv1.weight is not m.conv1.weight  # a copy, not shared weights
    assert not torch.equal(extend_head(m, 10, seed=4).head.weight[8:], wide.head.weight[8:])
    m64 = models.build_model("c3lt_cnn", num_classes=8).double().eval()
    w64 = extend_head(m64, 9).eval()
    assert w64.head.weight.dtype == torch.float64
    with torch.no_grad():
        assert torch.equal(w64(x.double())[:, :8], m64(x.double()))  # exactly the old logits in float64


def test_extend_head_bad_inputs():
    from robust_utils import models
    from robust_utils.training import extend_head
    m = models.build_model("c3lt_cnn", num_classes=8)
    with pytest.raises(ValueError, match="num_classes"):
        extend_head(m, 8)
    with pytest.raises(TypeError, match="nn.Linear named 'head'"):
        extend_head(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)), 3)
