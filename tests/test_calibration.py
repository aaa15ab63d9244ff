"""Expected calibration error and reliability diagrams: torchmetrics agreement, known answers, bad inputs."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from robust_utils import calibration as C  # noqa: E402


def _random(n=300, k=5, seed=0, temperature=1.0):
    g = torch.Generator().manual_seed(seed)
    probs = (torch.randn(n, k, generator=g) * 2 / temperature).softmax(1)
    labels = torch.randint(0, k, (n,), generator=g)
    return probs, labels


@pytest.mark.requires("torchmetrics")
@pytest.mark.parametrize("n_bins", [1, 5, 10, 15, 30])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_torchmetrics(n_bins, seed):
    from torchmetrics.classification import MulticlassCalibrationError

    probs, labels = _random(seed=seed, temperature=0.5 + seed)
    ours = C.expected_calibration_error(probs, labels, n_bins=n_bins)
    ref = MulticlassCalibrationError(num_classes=5, n_bins=n_bins, norm="l1")(probs, labels)
    assert ours == pytest.approx(float(ref), abs=1e-6)


def test_perfectly_calibrated_gives_zero():
    # 2 classes; 40 images at confidence 0.75 with 30 right, 20 at 0.9 with 18 right, 10 at 0.6 with 6 right.
    rows, labels = [], []
    for conf, n, right in [(0.75, 40, 30), (0.9, 20, 18), (0.6, 10, 6)]:
        rows += [[conf, 1 - conf]] * n
        labels += [0] * right + [1] * (n - right)
    probs, labels = torch.tensor(rows), torch.tensor(labels)
    assert C.expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-6)
    d = C.reliability_diagram_data(probs, labels, n_bins=10)
    filled = d["counts"] > 0
    np.testing.assert_allclose(d["accuracy"][filled], d["confidence"][filled], atol=1e-6)


def test_confident_and_wrong_gives_one():
    probs = torch.tensor([[1.0, 0.0, 0.0]] * 7)
    labels = torch.tensor([1, 2, 1, 2, 1, 2, 1])
    assert C.expected_calibration_error(probs, labels) == pytest.approx(1.0)


def test_batch_of_one():
    probs = torch.tensor([[0.2, 0.8]])
    assert C.expected_calibration_error(probs, torch.tensor([1])) == pytest.approx(0.2)
    assert C.expected_calibration_error(probs, torch.tensor([0])) == pytest.approx(0.8)
    d = C.reliability_diagram_data(probs, torch.tensor([1]), n_bins=5)
    assert d["counts"].sum() == 1 and d["counts"][4] == 1  # 0.8 lies in [0.8, 1]


def test_reliability_data_counts_and_consistency():
    probs, labels = _random(n=257, seed=3)
    d = C.reliability_diagram_data(probs, labels, n_bins=12)
    assert set(d) >= {"edges", "centers", "accuracy", "confidence", "counts", "ece"}
    assert d["edges"].shape == (13,) and d["centers"].shape == (12,)
    assert d["counts"].sum() == 257
    filled = d["counts"] > 0
    assert np.isnan(d["accuracy"][~filled]).all()
    ece = np.sum(d["counts"][filled] / 257 * np.abs(d["accuracy"][filled] - d["confidence"][filled]))
    assert d["ece"] == pytest.approx(ece) == pytest.approx(C.expected_calibration_error(probs, labels, 12))
    # the confidences of a bin lie inside the bin
    lo, hi = d["edges"][:-1][filled], d["edges"][1:][filled]
    assert (d["confidence"][filled] >= lo - 1e-6).all() and (d["confidence"][filled] <= hi + 1e-6).all()


def test_plot_single_and_side_by_side():
    probs, labels = _random(seed=4)
    d = C.reliability_diagram_data(probs, labels)
    fig = C.plot_reliability(d, title="one")
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "one"
    plt.close(fig)
    fig = C.plot_reliability({"feed-forward": d, "introspective": d})
    assert [a.get_title() for a in fig.axes] == ["feed-forward", "introspective"]
    plt.close(fig)
    fig, ax = plt.subplots()
    assert C.plot_reliability(d, ax=ax) is fig
    with pytest.raises(ValueError, match="one Axes per diagram"):
        C.plot_reliability({"a": d, "b": d}, ax=ax)
    plt.close(fig)


def test_bad_inputs():
    probs, labels = _random(n=4, k=3)
    with pytest.raises(ValueError, match="softmax"):
        C.expected_calibration_error(torch.randn(4, 3) * 5, labels)
    with pytest.raises(ValueError, match="one label per image"):
        C.expected_calibration_error(probs, labels[:3])
    with pytest.raises(ValueError, match=r"lie in \[0, 2\]"):
        C.expected_calibration_error(probs, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="n_bins must be >= 1"):
        C.expected_calibration_error(probs, labels, n_bins=0)
    with pytest.raises(TypeError, match="n_bins"):
        C.expected_calibration_error(probs, labels, n_bins=2.5)
    with pytest.raises(ValueError, match=r"\(N, num_classes\)"):
        C.expected_calibration_error(probs.unsqueeze(0), labels)
    with pytest.raises(TypeError, match="integer"):
        C.reliability_diagram_data(probs, labels.float())
    with pytest.raises(TypeError, match="reliability_diagram_data"):
        C.plot_reliability({"a": 1})


def test_nan_and_numpy_probabilities_get_clear_messages():
    p = torch.full((4, 3), 1 / 3)
    y = torch.tensor([0, 1, 2, 0])
    p[1, 0] = float("nan")
    with pytest.raises(ValueError, match="probs contains 1 NaN or infinite value"):
        C.expected_calibration_error(p, y)
    with pytest.raises(TypeError, match=r"torch\.from_numpy"):
        C.expected_calibration_error(torch.full((4, 3), 1 / 3).numpy(), y)
