"""Tests of robust_utils.detection: purview gradient features and the logistic detector H."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robust_utils.detection import (LogisticDetector, detection_experiment, purview_feature_names,
                                    purview_features, purview_features_loop)
from robust_utils import detection as D
from robust_utils.models import build_model

RTOL = 1e-4


def _images(n: int, size: int = 8, channels: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


class TinyConv(nn.Module):
    """conv -> ReLU -> max-pool -> strided/dilated/grouped conv (in-place ReLU) -> linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(6 * 2 * 2, 3)

    def forward(self, x):
        z = self.pool(torch.relu(self.conv(x)))
        return self.fc(self.relu(self.conv2(z)).flatten(1))


class Unusual(nn.Module):
    """Layers the closed form must not handle alone: batch-norm, a shared (twice-called) linear
    layer, a raw parameter, a linear layer on a sequence, one on a reshaped batch (N * positions
    rows), and a layer that is never called."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.seq = nn.Linear(3, 3)            # applied to (N, positions, channels)
        self.rows = nn.Linear(3, 3)           # applied to (N * positions, channels)
        self.shared = nn.Linear(3, 3)         # called twice
        self.scale = nn.Parameter(torch.tensor([1.5, -0.5, 2.0]))
        self.unused = nn.Linear(3, 3)

    def forward(self, x):
        z = torch.relu(self.bn(self.conv(x)))            # (N, 3, 6, 6)
        z = self.seq(z.flatten(2).transpose(1, 2))          # (N, 36, 3)
        z = self.rows(z.reshape(-1, 3)).reshape(z.shape).mean(1)   # (N, 3)
        return self.shared(torch.tanh(self.shared(z))) * self.scale


def _eval(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for p in model.parameters():
        nn.init.normal_(p, std=0.5)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("method", ["auto", "vmap"])
def test_equals_loop_on_tiny_conv_net(method):
    model = _eval(TinyConv())
    x = _images(10, channels=2)
    f = purview_features(model, x, batch_size=4, method=method)
    ref = purview_features_loop(model, x)
    assert f.shape == (10, len(list(model.parameters())))
    torch.testing.assert_close(f, ref, rtol=RTOL, atol=0)


@pytest.mark.parametrize("method", ["auto", "vmap"])
def test_equals_loop_on_unusual_layers(method):
    model = _eval(Unusual())
    x = _images(6)
    f = purview_features(model, x, method=method)
    ref = purview_features_loop(model, x)
    torch.testing.assert_close(f, ref, rtol=RTOL, atol=0)
    names = purview_feature_names(model)
    unused = [i for i, n in enumerate(names) if n.startswith("unused.")]
    assert float(f[:, unused].abs().max()) == 0.0        # never-called layer: zero gradient
    assert float(f[:, [i for i in range(len(names)) if i not in unused]].min()) > 0


@pytest.mark.parametrize("method", ["auto", "vmap"])
def test_equals_loop_on_book_model(method):
    model = build_model("c3lt_cnn").eval()
    x = _images(3, size=28, seed=1)
    f = purview_features(model, x, method=method)
    torch.testing.assert_close(f, purview_features_loop(model, x), rtol=RTOL, atol=0)
    assert purview_feature_names(model) == [n for n, _ in model.named_parameters()]


def test_equals_loop_on_resnet_with_batch_norm():
    model = build_model("preact_resnet", widths=(4, 8), blocks_per_stage=(1, 1)).eval()
    x = _images(2, size=28, seed=2)
    torch.testing.assert_close(purview_features(model, x), purview_features_loop(model, x),
                               rtol=RTOL, atol=0)


def test_hand_computed_linear_layer():
    # logits z = W x + b; loss = -sum_i log sigmoid(z_i); grad W = (sigmoid(z) - 1) x^T
    lin = nn.Linear(6, 4)
    model = nn.Sequential(nn.Flatten(), lin).eval()
    x = torch.rand(5, 1, 2, 3, generator=torch.Generator().manual_seed(0))
    xf = x.flatten(1)
    with torch.no_grad():
        r = torch.sigmoid(lin(xf)) - 1
    expected = torch.stack([r.pow(2).sum(1) * xf.pow(2).sum(1), r.pow(2).sum(1)], dim=1)
    for method in ("auto", "vmap"):
        torch.testing.assert_close(purview_features(model, x, method=method), expected, rtol=1e-5, atol=0)
    torch.testing.assert_close(purview_features_loop(model, x), expected, rtol=1e-5, atol=0)
    assert purview_feature_names(model) == ["1.weight", "1.bias"]


def test_batch_of_one_and_batch_size_invariance():
    model = _eval(TinyConv())
    x = _images(5, channels=2)
    one = purview_features(model, x[:1])
    assert one.shape == (1, 5)
    torch.testing.assert_close(one, purview_features_loop(model, x[:1]), rtol=RTOL, atol=0)
    torch.testing.assert_close(purview_features(model, x, batch_size=1), purview_features(model, x),
                               rtol=1e-5, atol=0)


def test_params_subset_keeps_given_order():
    model = _eval(TinyConv())
    x = _images(4, channels=2)
    full = purview_features(model, x)
    names = purview_feature_names(model)
    subset = ["fc.weight", "conv.bias"]
    assert purview_feature_names(model, subset) == subset
    for method in ("auto", "vmap"):
        f = purview_features(model, x, params=subset, method=method)
        torch.testing.assert_close(f, full[:, [names.index(n) for n in subset]], rtol=RTOL, atol=0)
    single = purview_features(model, x, params="conv2.weight")
    torch.testing.assert_close(single, full[:, [names.index("conv2.weight")]], rtol=RTOL, atol=0)
    torch.testing.assert_close(purview_features_loop(model, x, params=subset),
                               full[:, [names.index(n) for n in subset]], rtol=RTOL, atol=0)


def test_parameters_are_left_alone():
    model = _eval(TinyConv())
    model.conv.weight.requires_grad_(False)
    model.fc.bias.grad = torch.ones_like(model.fc.bias)
    x = _images(3, channels=2)
    for method in ("auto", "vmap"):
        purview_features(model, x, method=method)
    purview_features_loop(model, x)
    assert not model.conv.weight.requires_grad and model.fc.weight.requires_grad
    assert model.conv.weight.grad is None and model.fc.weight.grad is None
    assert torch.equal(model.fc.bias.grad, torch.ones_like(model.fc.bias))
    assert not model._forward_hooks and not model.fc._forward_hooks      # hooks removed


def test_bad_inputs_for_features():
    model = _eval(TinyConv())
    x = _images(2, channels=2)
    with pytest.raises(RuntimeError, match="model.eval"):
        purview_features(TinyConv().train(), x)
    with pytest.raises(RuntimeError, match="model.eval"):
        purview_features_loop(TinyConv().train(), x)
    with pytest.raises(ValueError, match="unsqueeze"):
        purview_features(model, x[0])
    with pytest.raises(ValueError, match=r"must lie in \[0.0, 1.0\]"):
        purview_features(model, x * 5)
    with pytest.raises(ValueError, match="unknown parameter name"):
        purview_features(model, x, params=["fc.weigth"])
    with pytest.raises(ValueError, match="params is empty"):
        purview_feature_names(model, [])
    with pytest.raises(ValueError, match="more than once"):
        purview_feature_names(model, ["fc.bias", "fc.bias"])
    with pytest.raises(ValueError, match="unknown method"):
        purview_features(model, x, method="fast")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        purview_features(model, x, batch_size=0)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        purview_feature_names("model")


# ---------------------------------------------------------------------------------------------
# The detector
# ---------------------------------------------------------------------------------------------
def _clouds(n: int, shift: float, dim: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)), rng.normal(size=(n, dim)) + shift


def test_detector_separates_gaussian_clouds():
    a, b = _clouds(200, shift=2.0)
    res = detection_experiment(a, b, log_features=False)
    assert res["auroc"] > 0.95 and res["aupr"] > 0.95 and res["fpr95"] < 0.3
    assert set(res) == {"auroc", "aupr", "fpr95", "scores_in", "scores_out", "detector"}
    assert res["scores_in"].shape == (100,) and res["scores_out"].shape == (100,)
    assert res["scores_out"].mean() > res["scores_in"].mean()        # higher = challenge
    # gradient-norm-like features (positive, orders of magnitude apart): the log is the default
    res_log = detection_experiment(torch.from_numpy(np.exp(3 * a)), torch.from_numpy(np.exp(3 * b)))
    assert res_log["auroc"] > 0.95


def test_detector_is_at_chance_on_identical_distributions():
    a, b = _clouds(300, shift=0.0, seed=1)
    res = detection_experiment(np.exp(a), np.exp(b))
    assert 0.35 < res["auroc"] < 0.65


def test_detection_experiment_accepts_one_score_and_is_seeded():
    rng = np.random.default_rng(3)
    s_in, s_out = rng.normal(size=80), rng.normal(size=60) + 3
    r1 = detection_experiment(s_in, s_out, seed=4, log_features=False)
    r2 = detection_experiment(torch.from_numpy(s_in), torch.from_numpy(s_out), seed=4, log_features=False)
    assert r1["auroc"] > 0.95 and r1["detector"].n_features_ == 1
    np.testing.assert_array_equal(r1["scores_in"], r2["scores_in"])
    assert len(r1["scores_in"]) == 40 and len(r1["scores_out"]) == 30
    r3 = detection_experiment(s_in, s_out, seed=5, train_fraction=0.75, log_features=False)
    assert len(r3["scores_in"]) == 20 and not np.array_equal(r3["scores_in"][:20], r1["scores_in"][:20])


def test_detector_fit_and_score():
    a, b = _clouds(50, shift=3.0)
    det = LogisticDetector(log_features=False, C=0.5)
    assert "not fitted" in repr(det)
    assert det.fit(a, b) is det
    p = det.score(np.vstack([a, b]))
    assert p.shape == (100,) and p.dtype == np.float64 and ((p >= 0) & (p <= 1)).all()
    assert p[50:].mean() > 0.9 and p[:50].mean() < 0.1


def test_detector_errors():
    a, b = _clouds(10, shift=1.0)
    det = LogisticDetector(log_features=False)
    with pytest.raises(RuntimeError, match="not fitted yet"):
        det.score(a)
    with pytest.raises(ValueError, match=r"reshape\(-1, 1\)"):
        det.fit(a[:, 0], b[:, 0])
    with pytest.raises(ValueError, match="features_in has 5 features but features_out has 4"):
        det.fit(a, b[:, :4])
    with pytest.raises(ValueError, match="at least 2 per class"):
        det.fit(a[:1], b)
    nan = a.copy()
    nan[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        det.fit(nan, b)
    det.fit(a, b)
    with pytest.raises(ValueError, match="detector was fitted on 5 features but got 3: compute the "
                                         "features with the same model and params"):
        det.score(a[:, :3])
    with pytest.raises(ValueError, match="must be 2-D"):
        det.score(a[:, 0])
    with pytest.raises(ValueError, match="NaN or infinite"):
        det.score(nan)
    with pytest.raises(ValueError, match="log_features=False"):
        LogisticDetector().fit(a, b)                       # Gaussian features are signed
    with pytest.raises(ValueError, match="C must be a finite number > 0"):
        LogisticDetector(C=0)
    with pytest.raises(ValueError, match="max_iter must be >= 1"):
        LogisticDetector(max_iter=0)
    with pytest.raises(TypeError, match="log_features must be True or False"):
        LogisticDetector(log_features="yes")


def test_detection_experiment_errors():
    a, b = _clouds(10, shift=1.0)
    with pytest.raises(ValueError, match="features_in has 5 features but features_out has 2"):
        detection_experiment(a, b[:, :2], log_features=False)
    with pytest.raises(ValueError, match="train_fraction must lie in"):
        detection_experiment(a, b, train_fraction=1.0, log_features=False)
    with pytest.raises(ValueError, match="need >= 2"):
        detection_experiment(a[:2], b, log_features=False)
    with pytest.raises(ValueError, match="must be 2-D"):
        detection_experiment(a[None], b[None], log_features=False)
    with pytest.raises(TypeError, match="seed must be a non-negative integer"):
        detection_experiment(a, b, seed=0.5, log_features=False)


@pytest.mark.parametrize("route", ["direct", "gram"])
@pytest.mark.parametrize("cfg", [dict(), dict(stride=2, padding=1), dict(dilation=2, padding=2),
                                 dict(groups=2, stride=(2, 1), padding=(1, 0)), dict(padding="valid")])
def test_conv_closed_form_routes(route, cfg):
    from robust_utils.detection import _conv_norms

    torch.manual_seed(0)
    m = nn.Conv2d(4, 6, 3, **cfg)
    a = torch.rand(3, 4, 7, 6)
    d = torch.randn_like(m(a))
    norms = _conv_norms(m, a, d, route=route)
    ref = torch.stack([torch.nn.grad.conv2d_weight(a[i:i + 1], m.weight.shape, d[i:i + 1], m.stride,
                                                   (0, 0) if m.padding == "valid" else m.padding,
                                                   m.dilation, m.groups).pow(2).sum()
                       for i in range(3)])
    torch.testing.assert_close(norms["weight"], ref, rtol=1e-5, atol=0)
    torch.testing.assert_close(norms["bias"], d.sum((2, 3)).pow(2).sum(1), rtol=1e-6, atol=0)


# ---------------------------------------------------------------------------------------------
# detection_row: one row of Part 3's table
# ---------------------------------------------------------------------------------------------
def _row_data(n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    clean = {"softmax": rng.random(n), "useless": rng.random(n)}
    novel = {"softmax": rng.random(n) + 2.0, "useless": rng.random(n)}       # softmax separates
    g_in = rng.lognormal(0.0, 0.3, (n, 3))
    g_out = rng.lognormal(1.5, 0.3, (n, 3))                                   # gradients separate
    return clean, novel, g_in, g_out


def test_detection_row_methods_and_known_answers():
    clean, novel, g_in, g_out = _row_data()
    row = D.detection_row(clean, novel, g_in, g_out, baselines=["softmax", "useless"], seed=0)
    assert list(row) == ["softmax", "useless", D.H_ON_BASELINES, D.H_ON_GRADIENTS]
    for r in row.values():
        assert set(r) == set(D.DETECTION_METRICS) and all(isinstance(v, float) for v in r.values())
    assert row["softmax"]["auroc"] == 1.0 and row["softmax"]["fpr95"] == 0.0
    assert 0.3 < row["useless"]["auroc"] < 0.7
    assert row[D.H_ON_GRADIENTS]["auroc"] > 0.99 and row[D.H_ON_BASELINES]["auroc"] > 0.99
    # the same as the pieces it is made of
    ref = D.detection_experiment(g_in, g_out, seed=0)
    assert row[D.H_ON_GRADIENTS]["auroc"] == ref["auroc"]
    ref_b = D.detection_experiment(np.stack([clean["softmax"], clean["useless"]], 1),
                                   np.stack([novel["softmax"], novel["useless"]], 1), seed=0,
                                   log_features=False)
    assert row[D.H_ON_BASELINES]["aupr"] == ref_b["aupr"]
    # torch inputs give the same row; without baselines there is no "H on baselines"
    t = {k: torch.tensor(v) for k, v in clean.items()}, {k: torch.tensor(v) for k, v in novel.items()}
    row_t = D.detection_row(*t, torch.tensor(g_in), torch.tensor(g_out), baselines=["softmax", "useless"])
    assert row_t == row
    assert D.H_ON_BASELINES not in D.detection_row(clean, novel, g_in, g_out)


def test_detection_row_bad_inputs():
    clean, novel, g_in, g_out = _row_data(20)
    with pytest.raises(ValueError, match="same methods"):
        D.detection_row(clean, {"softmax": novel["softmax"]}, g_in, g_out)
    with pytest.raises(ValueError, match=r"baselines \['energy'\]"):
        D.detection_row(clean, novel, g_in, g_out, baselines=["energy"])
    with pytest.raises(TypeError, match="non-empty dict"):
        D.detection_row([], novel, g_in, g_out)
    with pytest.raises(ValueError, match="one score per image"):
        D.detection_row({"a": g_in}, {"a": g_out}, g_in, g_out)
    bad = dict(novel, softmax=np.full(20, np.nan))
    with pytest.raises(ValueError, match="NaN"):
        D.detection_row(clean, bad, g_in, g_out)
    with pytest.raises(ValueError, match="seed"):
        D.detection_row(clean, novel, g_in, g_out, seed=-1)


def test_detectors_declare_their_direction():
    from robust_utils.metrics import score_direction
    assert score_direction(D.LogisticDetector) == "more novel"
    assert score_direction(D.LogisticDetector()) == "more novel"


def test_detection_row_checks_rows_per_image():
    clean, novel, g_in, g_out = _row_data(20)
    _, _, g10, _ = _row_data(10)
    with pytest.raises(ValueError, match=r"scores_clean\['softmax'\]: 20.*gradients_clean: 10"):
        D.detection_row(clean, novel, g10, g_out)
    short = dict(novel, useless=novel["useless"][:15])
    with pytest.raises(ValueError, match=r"scores_novel\['useless'\]: 15"):
        D.detection_row(clean, short, g_in, g_out)
    # clean and novel sets may differ in size
    _, novel30, _, g_out30 = _row_data(30)
    assert D.H_ON_GRADIENTS in D.detection_row(clean, novel30, g_in, g_out30)


def test_purview_features_dtype_range_and_flags():
    m = _eval(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 3)))
    x = _images(4)
    with pytest.raises(TypeError, match="float64"):
        D.purview_features(m, x.double())
    with pytest.raises(ValueError, match=r"must lie in \[0.0, 1.0\]"):
        D.purview_features_loop(m, x * 255)
    torch.testing.assert_close(D.purview_features(m, x * 255, value_range=None),
                               D.purview_features_loop(m, x * 255, value_range=None), rtol=RTOL, atol=0)
    with pytest.raises(TypeError, match="progress must be True or False"):
        D.purview_features(m, x, progress="no")
    with pytest.raises(TypeError, match="log_features must be True or False"):
        LogisticDetector(log_features="no")
    with pytest.raises(TypeError, match="log_features must be True or False"):
        detection_experiment(np.ones((6, 2)), np.ones((6, 2)), log_features=0)
