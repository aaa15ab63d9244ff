"""Sanity checks of explanations (Adebayo et al.): Spearman correlation of maps and cascading
layer randomisation, with known answers. Tiny models only."""
import numpy as np
import pytest
import torch
from torch import nn

from robust_utils import explanations as E
from robust_utils import sanity as S
from robust_utils.models import C3LTClassifier

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.requires("scipy")
def test_spearman_rows_equals_scipy_with_ties():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, size=(5, 6, 6)).astype(float)        # many ties
    b = a + rng.normal(0, 1.0, size=a.shape)
    got = S.spearman_rows(torch.from_numpy(a), b)
    want = [spearmanr(a[i].ravel(), b[i].ravel()).statistic for i in range(5)]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_spearman_rows_known_answers():
    m = torch.rand(3, 4, 4)
    np.testing.assert_allclose(S.spearman_rows(m, m), 1.0)
    np.testing.assert_allclose(S.spearman_rows(m, m.exp() * 3), 1.0)       # any increasing function
    np.testing.assert_allclose(S.spearman_rows(m, -m), -1.0)
    flat = torch.zeros(1, 4, 4)                                             # no ranking: 0, not NaN
    assert S.spearman_rows(flat, m[:1])[0] == 0.0


def test_spearman_rows_bad_inputs():
    with pytest.raises(ValueError, match="same shape"):
        S.spearman_rows(torch.rand(2, 4, 4), torch.rand(3, 4, 4))
    with pytest.raises(ValueError, match="NaN"):
        S.spearman_rows(torch.full((1, 2, 2), float("nan")), torch.rand(1, 2, 2))
    with pytest.raises(ValueError, match=r"batch of maps.*\[None\]"):
        S.spearman_rows(torch.rand(4), torch.rand(4))


@pytest.fixture(scope="module")
def setting():
    torch.manual_seed(0)
    model = C3LTClassifier(input_size=16).eval()
    x = torch.rand(4, 1, 16, 16)
    target = model(x).argmax(1)
    return model, x, target


def test_cascading_randomization_known_answers(setting):
    model, x, target = setting
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()

    def explain(m):
        return {"Grad-CAM": E.grad_cam(m, x, target, layer="conv2"),
                "Gradient": E.gradients(m, x, target, absolute=True)[:, 0]}

    out = S.cascading_randomization(model, explain, ["head", "conv2", "conv1"], seed=3)
    assert out["steps"] == ["trained", "head", "conv2", "conv1"]
    for method, maps in out["maps"]["trained"].items():           # step 0 is the trained model itself
        torch.testing.assert_close(maps, explain(model)[method])
        nonflat = maps.flatten(1).std(1) > 0
        np.testing.assert_allclose(out["spearman"]["trained"][method][nonflat.numpy()], 1.0)
    for step in ("head", "conv2", "conv1"):                       # randomised maps differ
        assert out["spearman"][step]["Grad-CAM"].mean() < 0.99
        assert not torch.allclose(out["maps"][step]["Gradient"], out["maps"]["trained"]["Gradient"])
    for k, v in model.state_dict().items():                        # the model is left alone ...
        assert torch.equal(v, before[k])
    assert torch.equal(rng, torch.random.get_rng_state())          # ... and so is the global RNG
    again = S.cascading_randomization(model, explain, ["head", "conv2", "conv1"], seed=3)
    for step in out["steps"]:                                      # seeded: the same numbers
        np.testing.assert_array_equal(again["spearman"][step]["Gradient"], out["spearman"][step]["Gradient"])


def test_randomize_layer_and_single_tensor_explanations(setting):
    model, x, target = setting
    net = C3LTClassifier(input_size=16).eval()
    net.load_state_dict(model.state_dict())
    w = net.conv1.weight.clone()
    assert S.randomize_layer(net, "conv1") is net and not torch.equal(net.conv1.weight, w)
    out = S.cascading_randomization(model, lambda m: E.grad_cam(m, x, target), ["head"])
    assert set(out["spearman"]["head"]) == {"map"}


def test_cascading_randomization_bad_inputs(setting):
    model, x, target = setting
    with pytest.raises(ValueError, match=r"unknown layer\(s\) \['fc9'\]"):
        S.cascading_randomization(model, lambda m: E.grad_cam(m, x), ["head", "fc9"])
    with pytest.raises(TypeError, match="sequence of layer names"):
        S.cascading_randomization(model, lambda m: E.grad_cam(m, x), "head")
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        S.cascading_randomization(model, lambda m: E.grad_cam(m, x), ["head"], seed=-1)
    with pytest.raises(ValueError, match="nothing to re-initialise"):
        S.randomize_layer(nn.Sequential(nn.ReLU()), "0")
    train = C3LTClassifier(input_size=16)
    with pytest.raises(RuntimeError, match=r"call model\.eval\(\)"):
        S.cascading_randomization(train, lambda m: E.grad_cam(m, x), ["head"])
