"""Tests of robust_utils.benchmarking: mCE and relative mCE on hand-computed examples, the
baseline against itself, validation, and corruption errors of tiny models on 8x8 images."""
import math

import pandas as pd
import pytest
import torch
import torch.nn as nn

from robust_utils import benchmarking as B
from robust_utils.corruptions import LEVELS, corrupt, corruption_names
from robust_utils.models import MLP

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = {"a": {1: 0.4, 2: 0.6}, "b": {1: 0.3, 2: 0.5}}
MODEL = {"a": {1: 0.2, 2: 0.4}, "b": {1: 0.1, 2: 0.3}}


class Constant(nn.Module):
    """Always predicts class ``k`` (a model with no parameters: evaluated on the CPU)."""

    def __init__(self, k, classes=4):
        super().__init__()
        self.k, self.classes = k, classes

    def forward(self, x):
        out = torch.zeros(x.shape[0], self.classes, device=x.device)
        out[:, self.k] = 1.0
        return out


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(8, 1, 8, 8, generator=g), torch.randint(0, 4, (8,), generator=g)


@pytest.fixture(scope="module")
def mlps():
    torch.manual_seed(0)
    a = MLP(in_features=64, hidden=(16,), num_classes=4).eval()
    torch.manual_seed(1)
    b = MLP(in_features=64, hidden=(16,), num_classes=4).eval()
    return {"base": a, "other": b}


# --- mCE by hand -----------------------------------------------------------------------------
def test_baseline_against_itself_is_exactly_100():
    r = B.mce(BASE, BASE, clean_error=0.1, baseline_clean_error=0.1)
    assert r["ce"] == {"a": 100.0, "b": 100.0}
    assert r["mCE"] == 100.0 and r["relative_mCE"] == 100.0
    assert r["relative_ce"] == {"a": 100.0, "b": 100.0}


def test_two_corruptions_by_hand():
    # CE_a = 100 * (0.2 + 0.4) / (0.4 + 0.6) = 60, CE_b = 100 * (0.1 + 0.3) / (0.3 + 0.5) = 50
    # relative (clean 0.1 vs baseline clean 0.2):
    #   a: 100 * (0.1 + 0.3) / (0.2 + 0.4) = 66.67, b: 100 * (0.0 + 0.2) / (0.1 + 0.3) = 50
    r = B.mce(MODEL, BASE, clean_error=0.1, baseline_clean_error=0.2)
    assert r["ce"]["a"] == pytest.approx(60.0) and r["ce"]["b"] == pytest.approx(50.0)
    assert r["mCE"] == pytest.approx(55.0)
    assert r["relative_ce"]["a"] == pytest.approx(200 / 3) and r["relative_ce"]["b"] == pytest.approx(50.0)
    assert r["relative_mCE"] == pytest.approx((200 / 3 + 50) / 2)
    plain = B.mce(MODEL, BASE)
    assert plain["relative_ce"] is None and plain["relative_mCE"] is None
    assert plain["mCE"] == pytest.approx(55.0)


def test_half_the_errors_gives_50():
    half = {c: {s: e / 2 for s, e in lv.items()} for c, lv in BASE.items()}
    r = B.mce(half, BASE, clean_error=0.05, baseline_clean_error=0.1)
    assert r["mCE"] == pytest.approx(50.0)
    assert r["relative_mCE"] == pytest.approx(50.0)   # the degradation is halved too


def test_relative_ce_undefined_when_the_baseline_does_not_degrade():
    with pytest.warns(RuntimeWarning, match=r"relative CE undefined for \['b'\]"):
        r = B.mce(MODEL, BASE, clean_error=0.1, baseline_clean_error=0.4)
    assert math.isnan(r["relative_ce"]["b"])
    assert r["relative_mCE"] == pytest.approx(r["relative_ce"]["a"])   # only 'a' is defined
    assert r["relative_ce"]["a"] == pytest.approx(100 * 0.4 / 0.2)


def test_mce_validation():
    with pytest.raises(ValueError, match=r"same corruptions; only in errors: \['c'\]"):
        B.mce({**MODEL, "c": {1: 0.1, 2: 0.1}}, BASE)
    with pytest.raises(ValueError, match="has levels .* same levels"):
        B.mce({"a": {1: 0.2}, "b": MODEL["b"]}, BASE)
    with pytest.raises(ValueError, match="divides by zero"):
        B.mce(MODEL, {"a": BASE["a"], "b": {1: 0.0, 2: 0.0}})
    with pytest.raises(ValueError, match="not percentages"):
        B.mce({"a": {1: 20.0, 2: 40.0}, "b": MODEL["b"]}, BASE)
    with pytest.raises(ValueError, match="both clean_error and baseline_clean_error"):
        B.mce(MODEL, BASE, clean_error=0.1)
    with pytest.raises(ValueError, match="not a percentage"):
        B.mce(MODEL, BASE, clean_error=10, baseline_clean_error=0.1)
    with pytest.raises(TypeError, match="non-empty dict"):
        B.mce({}, BASE)
    with pytest.raises(TypeError, match="must be a number"):
        B.mce({"a": {1: "x", 2: 0.1}, "b": MODEL["b"]}, BASE)


def test_mce_table_by_hand():
    df = B.mce_table({"base": BASE, "model": MODEL}, {"base": 0.2, "model": 0.1}, baseline="base")
    assert list(df.columns) == ["clean error", "a", "b", "mCE", "relative mCE"]
    assert list(df.index) == ["base", "model"] and df.index.name == "model"
    assert df.loc["base", "mCE"] == 100.0 and df.loc["base", "relative mCE"] == 100.0
    assert df.loc["model", "mCE"] == pytest.approx(55.0)
    assert df.loc["model", "a"] == pytest.approx(60.0)
    assert df.loc["model", "clean error"] == 0.1
    with pytest.raises(ValueError, match="unknown baseline model"):
        B.mce_table({"base": BASE}, {"base": 0.2}, baseline="alexnet")
    with pytest.raises(ValueError, match="one entry per model"):
        B.mce_table({"base": BASE}, {"other": 0.2}, baseline="base")


# --- errors of models ------------------------------------------------------------------------
def test_corruption_errors_of_a_tiny_model(mlps, data):
    x, y = data
    err = B.corruption_errors(mlps["base"], x, y)
    assert list(err) == corruption_names()
    for c, per_level in err.items():
        assert list(per_level) == list(LEVELS)
        assert all(0.0 <= e <= 1.0 for e in per_level.values())
    # the same as evaluating corrupt(...) by hand
    logits = mlps["base"](corrupt(x, "gaussian_noise", 3, seed=0))
    assert err["gaussian_noise"][3] == pytest.approx(float((logits.argmax(1) != y).float().mean()))
    # deterministic given the seed; a subset of corruptions and levels
    sub = B.corruption_errors(mlps["base"], x, y, corruptions=["gaussian_noise", "contrast"], levels=(2, 5))
    assert sub == {"gaussian_noise": {2: err["gaussian_noise"][2], 5: err["gaussian_noise"][5]},
                   "contrast": {2: err["contrast"][2], 5: err["contrast"][5]}}


def test_errors_of_constant_models(data):
    x, _ = data
    y0 = torch.zeros(8, dtype=torch.long)
    assert B.clean_error(Constant(0), x, y0) == 0.0
    assert B.clean_error(Constant(1), x, y0) == 1.0
    err = B.corruption_errors(Constant(1), x, y0, corruptions="contrast")
    assert err == {"contrast": {lv: 1.0 for lv in LEVELS}}
    assert B.clean_error(Constant(0), x, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])) == 0.75


def test_benchmark_table(mlps, data):
    x, y = data
    names = ["gaussian_noise", "brightness"]
    df = B.benchmark_table(mlps, x, y, baseline="base", corruptions=names, levels=(1, 3, 5))
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["clean error", *names, "mCE", "relative mCE"]
    assert df.loc["base", "mCE"] == 100.0
    # the table agrees with corruption_errors + mce
    err = B.corruption_errors(mlps["other"], x, y, corruptions=names, levels=(1, 3, 5))
    base = B.corruption_errors(mlps["base"], x, y, corruptions=names, levels=(1, 3, 5))
    assert df.attrs["errors"]["other"] == err
    assert df.loc["other", "mCE"] == pytest.approx(B.mce(err, base)["mCE"])
    assert df.loc["other", "clean error"] == B.clean_error(mlps["other"], x, y)


def test_bad_inputs(mlps, data):
    x, y = data
    m = mlps["base"]
    with pytest.raises(ValueError, match="unknown corruption"):
        B.corruption_errors(m, x, y, corruptions=["fog"])
    with pytest.raises(ValueError, match="levels must be integers"):
        B.corruption_errors(m, x, y, levels=(0, 1))
    with pytest.raises(ValueError, match="repeated"):
        B.corruption_errors(m, x, y, corruptions=["contrast", "contrast"])
    with pytest.raises(ValueError, match="corruptions is empty"):
        B.corruption_errors(m, x, y, corruptions=[])
    with pytest.raises(ValueError, match="entries but there are"):
        B.corruption_errors(m, x, y[:-1])
    with pytest.raises(ValueError, match=r"must lie in \[0.0, 1.0\]"):
        B.clean_error(m, x * 2, y)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        B.clean_error("model", x, y)
    with pytest.raises(ValueError, match="unknown baseline model"):
        B.benchmark_table(mlps, x, y, baseline="resnet")
    with pytest.raises(TypeError, match="non-empty dict"):
        B.benchmark_table({}, x, y, baseline="base")


def test_int32_labels_are_accepted():
    torch.manual_seed(0)
    model = MLP(hidden=(8,)).eval()
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    assert B.clean_error(model, x, y.int()) == B.clean_error(model, x, y)


# ------------------------------------------------------------------ perturbation sequences, flip rates
class _Bright(torch.nn.Module):
    """Class 1 when the mean pixel exceeds a threshold, else class 0."""

    def __init__(self, threshold):
        super().__init__()
        self.t = threshold
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        m = x.mean((1, 2, 3)) - self.t
        return torch.stack([-m, m], 1) + 0 * self.dummy


def test_perturbation_sequence_endpoints_and_translation():
    from robust_utils import corruptions, tta
    x = torch.rand(3, 1, 8, 8) * 0.5
    seq = B.perturbation_sequence(x, "gaussian_noise", frames=5, seed=2)
    assert seq.shape == (5, 3, 1, 8, 8)
    assert torch.equal(seq[0], x)
    assert torch.allclose(seq[-1], corruptions.corrupt(x, "gaussian_noise", 5, seed=2), atol=1e-6)
    # equal steps: the middle frame is the average of the ends (before clipping, which noise on [0, .5] may hit)
    mid = (seq[0] + seq[-1]) / 2
    inside = (seq[-1] > 0) & (seq[-1] < 1)
    assert torch.allclose(seq[2][inside], mid[inside], atol=1e-6)
    tr = B.perturbation_sequence(x, "translate", frames=4)
    for t in range(4):
        assert torch.equal(tr[t], tta.shift(x, 0, t))
    assert "translate" in B.perturbation_names() and len(B.perturbation_names()) == len(corruptions.corruption_names()) + 1


def test_flip_probability_by_hand():
    # frames of growing brightness 0.1, 0.3, 0.5, 0.7: a threshold at 0.4 flips once per image in 3 steps
    levels = torch.tensor([0.1, 0.3, 0.5, 0.7])
    seq = levels.view(4, 1, 1, 1, 1).expand(4, 6, 1, 4, 4).clone()
    assert B.flip_probability(_Bright(0.4), seq) == pytest.approx(1 / 3)
    assert B.flip_probability(_Bright(0.9), seq) == 0.0
    # two images: one flips at every step (alternating), one never
    alt = torch.stack([torch.tensor([0.1, 0.7, 0.1, 0.7]), torch.full((4,), 0.1)], 1).view(4, 2, 1, 1, 1).expand(4, 2, 1, 4, 4)
    assert B.flip_probability(_Bright(0.4), alt.clone()) == pytest.approx(0.5)
    from robust_utils.metrics import score_direction
    assert score_direction(B.flip_probability) == "worse"


def test_flip_rate_table_relative_to_baseline():
    x = torch.linspace(0.05, 0.45, 20).view(20, 1, 1, 1).expand(20, 1, 6, 6).clone()
    models = {"base": _Bright(0.3), "steady": _Bright(2.0)}
    with pytest.warns(UserWarning, match="never flips"):
        table = B.flip_rate_table(models, x, baseline="base", perturbations=["brightness", "contrast"], frames=4)
    fp = table.attrs["flip_probability"]
    assert table.loc["base", "brightness"] == pytest.approx(100.0) and fp["steady"]["brightness"] == 0.0
    assert table.loc["steady", "brightness"] == 0.0
    assert math.isnan(table.loc["base", "contrast"])  # contrast leaves a uniform image as it is: no flips
    assert table.loc["steady", "mFR"] == 0.0 and table.loc["base", "mFR"] == pytest.approx(100.0)
    assert table.attrs["higher_means"] == "worse"
    # the rate is 100 FP_model / FP_baseline on the very same sequence
    seq = B.perturbation_sequence(x, "brightness", frames=4)
    fp_base, fp_other = B.flip_probability(_Bright(0.3), seq), B.flip_probability(_Bright(0.38), seq)
    assert 0 < fp_other != fp_base > 0
    two = B.flip_rate_table({"base": _Bright(0.3), "other": _Bright(0.38)}, x, baseline="base",
                            perturbations=["brightness"], frames=4)
    assert two.loc["other", "brightness"] == pytest.approx(100 * fp_other / fp_base)


def test_perturbation_bad_inputs():
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="perturbation"):
        B.perturbation_sequence(x, "rotate")
    with pytest.raises(ValueError, match="frames"):
        B.perturbation_sequence(x, "contrast", frames=1)
    with pytest.raises(ValueError, match=r"\(frames, N, C, H, W\)"):
        B.flip_probability(_Bright(0.5), x)
    with pytest.raises(ValueError, match="baseline model"):
        B.flip_rate_table({"a": _Bright(0.5)}, x, baseline="b")
    with pytest.raises(ValueError, match="distinct"):
        B.flip_rate_table({"a": _Bright(0.5)}, x, baseline="a", perturbations=["contrast", "contrast"])
