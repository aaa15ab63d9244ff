"""Detection metrics agree with scikit-learn; accuracy and confidence have known answers."""
import numpy as np
import pytest
import torch

from robust_utils import metrics as M


@pytest.mark.requires("sklearn")
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [False, True])
def test_auroc_aupr_match_sklearn(seed, ties):
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = rng.normal(size=300) + y
    if ties:
        s = np.round(s, 1)
    assert M.auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert M.aupr(s, y) == pytest.approx(average_precision_score(y, s), abs=1e-12)


@pytest.mark.requires("sklearn")
def test_fpr_at_tpr_matches_roc_curve():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    s = rng.normal(size=500) + 2 * y
    fpr, tpr, _ = roc_curve(y, s)
    expected = fpr[np.searchsorted(tpr, 0.95, side="left")]
    assert M.fpr_at_tpr(s, y, 0.95) == pytest.approx(expected)


def test_known_answers():
    assert M.auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert M.auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert M.auroc([0.5, 0.5], [0, 1]) == 0.5
    d = M.detection_scores(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0]))
    assert d == {"auroc": 1.0, "aupr": 1.0, "fpr95": 0.0}
    assert M.accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1])) == 0.5
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    torch.testing.assert_close(M.predictive_entropy(p), torch.tensor([0.0, np.log(2)], dtype=torch.float32))
    torch.testing.assert_close(M.max_softmax(p), torch.tensor([1.0, 0.5]))


def test_bad_inputs():
    with pytest.raises(ValueError, match="single class"):
        M.auroc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="same length"):
        M.auroc([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="0 \\(negative\\) or 1"):
        M.auroc([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="NaN"):
        M.aupr([np.nan, 0.2], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        M.detection_scores([], [1.0])
    with pytest.raises(ValueError, match="tpr must lie"):
        M.fpr_at_tpr([0.1, 0.2], [0, 1], tpr=1.5)
    with pytest.raises(ValueError, match="softmax"):
        M.predictive_entropy(torch.tensor([[2.0, -1.0]]))


def test_score_direction_is_declared_and_read():
    from robust_utils.metrics import declares_direction, score_direction

    @declares_direction("more novel")
    def s(x):
        return x
    assert score_direction(s) == "more novel"
    with pytest.raises(AttributeError, match="declares_direction"):
        score_direction(lambda x: x)
    with pytest.raises(ValueError, match="score direction"):
        declares_direction("sideways")


def test_accuracy_refuses_ambiguous_column_predictions():
    """(N, 1) predictions used to be argmaxed to all zeros: accuracy 0.0 for correct labels."""
    y = torch.tensor([1, 0, 1])
    with pytest.raises(ValueError, match=r"pred has shape \(3, 1\), which is ambiguous.*reshape\(-1\)"):
        M.accuracy(y[:, None], y)
    with pytest.raises(ValueError, match="ambiguous"):
        M.accuracy(y[:, None].numpy(), y.numpy())
    with pytest.raises(ValueError, match=r"labels must be 1-D.*reshape\(-1\)"):
        M.accuracy(y, y[:, None])
    assert M.accuracy(y[:, None].reshape(-1), y) == 1.0
    assert M.accuracy(np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), y.numpy()) == 1.0


def test_accuracy_refuses_nonsense_predictions_and_labels():
    # NaN logits: every argmax would be 0
    with pytest.raises(ValueError, match="NaN or infinite scores"):
        M.accuracy(torch.tensor([[float("nan"), 0.0]] * 4), torch.tensor([1] * 4))
    # 1-D floats are probabilities, not labels
    with pytest.raises(ValueError, match="probabilities or scores"):
        M.accuracy(torch.tensor([0.9, 0.2, 0.8]), torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match="whole numbers"):
        M.accuracy(torch.tensor([1, 0]), torch.tensor([1.5, 0.0]))
    with pytest.raises(ValueError, match="NaN"):
        M.accuracy(torch.tensor([float("nan"), 1.0]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        M.accuracy(np.array([0, 1]), np.array([np.nan, 1.0]))
    with pytest.raises(TypeError, match="integer class labels"):
        M.accuracy(np.array(["a", "b"]), np.array([0, 1]))
    # whole-number floats are labels (documented), ints of any dtype and bools too
    assert M.accuracy(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([1, 0, 0])) == pytest.approx(2 / 3)
    assert M.accuracy(torch.tensor([1, 0], dtype=torch.uint8), np.array([True, False])) == 1.0
    assert M.accuracy([[0.1, 0.9], [0.8, 0.2]], [1, 0]) == 1.0      # a nested list of scores
