"""Introspective learning: gradient features (vs autograd and the closed form), stage 2, bad inputs."""
import pytest
import torch
import torch.nn.functional as F

from robust_utils import introspection as I
from robust_utils.models import MLP
from robust_utils.training import train_classifier

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(seed=0, hidden=(8,), c=3):
    torch.manual_seed(seed)
    return MLP(in_features=16, hidden=hidden, num_classes=c, mean=0.0, std=1.0).eval()


def _images(n, seed=0):
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed))


def _separable(n=240, seed=0):
    """Three classes of 4x4 images: a bright top row, left column or centre square on noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = 0.3 * torch.rand(n, 1, 4, 4, generator=g)
    x[y == 0, 0, 0, :] += 0.7
    x[y == 1, 0, :, 0] += 0.7
    x[y == 2, 0, 1:3, 1:3] += 0.7
    return x.clamp(0, 1), y


@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_equals_per_sample_autograd_loop(loss):
    m = _tiny(hidden=(8, 6))
    x = _images(5)
    g = I.introspective_features(m, x, loss=loss, batch_size=2)  # several batches, last one short
    assert g.shape == (5, 3, 6)
    for i in range(5):
        m.zero_grad()
        I.confounding_loss(m(x[i:i + 1]), loss).backward()
        torch.testing.assert_close(g[i], m.head.weight.grad, rtol=1e-5, atol=1e-6)


def test_closed_form_bce_is_lemma_1():
    # logits z = W h + b: row i of the gradient is (sigmoid(z_i) - 1) h  (Lemma 1 of the slides)
    m = _tiny(hidden=())  # features = the flattened pixels: a purely linear model
    x = _images(7, seed=1)
    g = I.introspective_features(m, x)
    h = x.flatten(1)
    z = m.head(h).detach()
    expected = (torch.sigmoid(z) - 1)[:, :, None] * h[:, None, :]
    torch.testing.assert_close(g, expected, rtol=1e-5, atol=1e-6)
    # and for the softmax MSE variant: gradient w.r.t. the logits through the softmax Jacobian
    p = z.softmax(1)
    dz = 2 * p * ((p - 1) - ((p - 1) * p).sum(1, keepdim=True))
    torch.testing.assert_close(I.introspective_features(m, x, loss="mse"), dz[:, :, None] * h[:, None, :],
                               rtol=1e-5, atol=1e-6)


def test_reduce_shapes_and_consistency():
    m = _tiny()
    x = _images(4)
    rows = I.introspective_features(m, x, reduce="rows")
    assert rows.shape == (4, 3, 8)
    torch.testing.assert_close(I.introspective_features(m, x, reduce="flatten"), rows.flatten(1))
    torch.testing.assert_close(I.introspective_features(m, x, reduce="norms"), rows.norm(dim=2))


def test_batch_of_one_and_batching_invariance():
    m = _tiny()
    x = _images(6, seed=2)
    one = I.introspective_features(m, x[:1])
    assert one.shape == (1, 3, 8)
    torch.testing.assert_close(I.introspective_features(m, x, batch_size=1),
                               I.introspective_features(m, x, batch_size=100))
    torch.testing.assert_close(one[0], I.introspective_features(m, x)[0])


def test_bad_inputs_features():
    m = _tiny()
    x = _images(2)
    with pytest.raises(RuntimeError, match="model.eval"):
        I.introspective_features(_tiny().train(), x)
    with pytest.raises(ValueError, match="unknown reduce"):
        I.introspective_features(m, x, reduce="mean")
    with pytest.raises(ValueError, match="unknown loss"):
        I.introspective_features(m, x, loss="ce")
    with pytest.raises(ValueError, match="batch dimension"):
        I.introspective_features(m, x[0])
    with pytest.raises(ValueError, match=r"must lie in \[0.0, 1.0\]"):
        I.introspective_features(m, x * 3)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        I.introspective_features(m, x, batch_size=0)
    no_head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    with pytest.raises(TypeError, match="head"):
        I.introspective_features(no_head, x)


def test_introspective_net_shapes_and_standardisation():
    net = I.IntrospectiveNet(3, (3, 8))
    assert sum(isinstance(l, torch.nn.Linear) for l in net.mlp) == 3  # a three-layer MLP
    f = torch.randn(5, 3, 8) * 4 + 2
    net.set_standardization(f.flatten(1).mean(0), torch.zeros(24))  # zero std -> 1, no blow-up
    assert torch.equal(net.feature_std, torch.ones(24))
    assert net(f).shape == (5, 3)
    assert "feature_mean" in net.state_dict()
    with pytest.raises(ValueError, match="same reduce"):
        net(torch.randn(5, 24))
    with pytest.raises(ValueError, match="24 entries"):
        net.set_standardization(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        I.IntrospectiveNet(1, 8)
    with pytest.raises(ValueError, match="hidden"):
        I.IntrospectiveNet(3, 8, hidden=(0,))
    with pytest.raises(TypeError, match="feature_shape"):
        I.IntrospectiveNet(3, "rows")


@pytest.fixture(scope="module")
def trained():
    x, y = _separable(240)
    torch.manual_seed(0)
    m = MLP(in_features=16, hidden=(16,), num_classes=3, mean=0.0, std=1.0)
    train_classifier(m, x, y, epochs=8, batch_size=60, lr=2e-2, progress=False)
    return m.eval(), x, y


def test_fit_reaches_high_accuracy_and_predicts_end_to_end(trained):
    m, x, y = trained
    xt, yt = _separable(90, seed=1)
    assert float((m(xt).argmax(1) == yt).float().mean()) >= 0.9  # the feed-forward net is trained
    clf = I.fit_introspective(m, x, y, epochs=15, batch_size=60, lr=5e-3, progress=False)
    probs = clf.predict_proba(xt)
    assert probs.shape == (90, 3)
    torch.testing.assert_close(probs.sum(1), torch.ones(90))
    assert float((probs.argmax(1) == yt).float().mean()) >= 0.95
    assert len(clf.history["loss"]) == 15 and clf.history["loss"][-1] < clf.history["loss"][0]
    # state_dict round trip into a fresh network
    net2 = I.IntrospectiveNet(**{k: v for k, v in clf.config().items() if k not in ("reduce", "loss")})
    net2.load_state_dict(clf.state_dict())
    clf2 = I.IntrospectiveClassifier(m, net2, reduce=clf.reduce, loss=clf.loss)
    torch.testing.assert_close(clf2.predict_proba(xt), probs)
    # the model was not modified and stays in eval mode
    assert not m.training


def test_fit_is_deterministic_with_seed_and_supports_norms(trained):
    m, x, y = trained
    a = I.fit_introspective(m, x, y, epochs=2, reduce="norms", seed=3, progress=False)
    b = I.fit_introspective(m, x, y, epochs=2, reduce="norms", seed=3, progress=False)
    c = I.fit_introspective(m, x, y, epochs=2, reduce="norms", seed=4, progress=False)
    assert a.net.feature_shape == (3,)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    assert not torch.equal(a.state_dict()["mlp.0.weight"], c.state_dict()["mlp.0.weight"])


def test_fit_bad_inputs(trained):
    m, x, y = trained
    with pytest.raises(ValueError, match="one label per image"):
        I.fit_introspective(m, x, y[:-1], epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"lie in \[0, 2\]"):
        I.fit_introspective(m, x, y + 1, epochs=1, progress=False)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        I.fit_introspective(m, x, y, epochs=0, progress=False)
    with pytest.raises(ValueError, match="lr must be"):
        I.fit_introspective(m, x, y, epochs=1, lr=-1, progress=False)
    with pytest.raises(ValueError, match="at least 2"):
        I.fit_introspective(m, x[:1], y[:1], epochs=1, progress=False)
    with pytest.raises(ValueError, match="seed"):
        I.fit_introspective(m, x, y, epochs=1, seed=-1, progress=False)
    m.train()
    try:
        with pytest.raises(RuntimeError, match="training mode"):
            I.fit_introspective(m, x, y, epochs=1, progress=False)
    finally:
        m.eval()
    with pytest.raises(TypeError, match="IntrospectiveNet"):
        I.IntrospectiveClassifier(m, torch.nn.Linear(3, 3))


def test_confounding_loss_values():
    z = torch.tensor([[0.0, 0.0]])
    assert float(I.confounding_loss(z, "bce")) == pytest.approx(2 * torch.log(torch.tensor(2.0)).item())
    assert float(I.confounding_loss(z, "mse")) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown loss"):
        I.confounding_loss(z, "l1")
    assert F.binary_cross_entropy_with_logits(z, torch.ones_like(z), reduction="sum") == I.confounding_loss(z)


def test_dropout_left_in_training_mode_float64_and_seed_checks():
    torch.manual_seed(0)
    m = MLP(in_features=16, hidden=(8,), num_classes=3, dropout=0.5, mean=0.0, std=1.0).eval()
    x, y = _separable(12)
    drop = next(name for name, mod in m.named_modules() if isinstance(mod, torch.nn.Dropout))
    dict(m.named_modules())[drop].train()        # used to give different features per call
    with pytest.raises(RuntimeError, match=r"training mode \(" + drop.replace(".", r"\.") + r"\).*model\.eval\(\)"):
        I.introspective_features(m, x)
    m.eval()
    with pytest.raises(TypeError, match=r"x has dtype torch.float64.*x\.float\(\)"):
        I.introspective_features(m, x.double())
    np = pytest.importorskip("numpy")
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        I.fit_introspective(m, x, y, epochs=1, seed=-1, progress=False)
    with pytest.raises(TypeError, match="seed must be a non-negative integer"):
        I.fit_introspective(m, x, y, epochs=1, seed=1.0, progress=False)
    a = I.fit_introspective(m, x, y, epochs=1, seed=np.int64(2), progress=False, hidden=(4,))
    b = I.fit_introspective(m, x, y, epochs=1, seed=2, progress=False, hidden=(4,))
    torch.testing.assert_close(a.predict_logits(x), b.predict_logits(x))


def test_progress_flags_and_integer_label_dtypes(trained):
    m, x, y = trained
    with pytest.raises(TypeError, match="progress must be True or False"):
        I.introspective_features(m, x[:4], progress="no")
    with pytest.raises(TypeError, match="progress must be True or False"):
        I.fit_introspective(m, x, y, epochs=1, progress="no")
    a = I.fit_introspective(m, x, y, epochs=1, reduce="norms", seed=3, progress=False)
    b = I.fit_introspective(m, x, y.to(torch.uint8), epochs=1, reduce="norms", seed=3, progress=False)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    with pytest.raises(TypeError, match="progress must be True or False"):
        a.predict_proba(x[:4], progress=1)
