"""The shared input checks give messages that say what was wrong and what to do."""
import pytest
import torch

from robust_utils import _checks as K


def test_check_images_accepts_and_rejects():
    x = torch.rand(2, 1, 4, 4)
    assert K.check_images(x) is x
    with pytest.raises(TypeError, match="torch.Tensor"):
        K.check_images([[1.0]])
    with pytest.raises(ValueError, match="unsqueeze"):
        K.check_images(x[0])
    with pytest.raises(ValueError, match="empty batch"):
        K.check_images(x[:0])
    with pytest.raises(TypeError, match="/ 255"):
        K.check_images((x * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="3 channel"):
        K.check_images(x, channels=3)
    with pytest.raises(ValueError, match="28x28"):
        K.check_images(x, size=(28, 28))
    with pytest.raises(ValueError, match="clamp"):
        K.check_images(x * 3)
    with pytest.raises(ValueError, match="NaN"):
        K.check_images(torch.full((1, 1, 2, 2), float("nan")))
    assert K.check_images(x * 3 - 1, value_range=None) is not None


def test_check_labels_probabilities_and_scalars():
    y = torch.tensor([0, 2])
    assert K.check_labels(y, n=2, num_classes=3) is y
    with pytest.raises(ValueError, match="one label per image"):
        K.check_labels(y, n=3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        K.check_labels(y, num_classes=2)
    with pytest.raises(TypeError, match="y.long"):
        K.check_labels(y.float())
    with pytest.raises(ValueError, match="softmax"):
        K.check_probabilities(torch.tensor([[3.0, 1.0]]))
    assert K.check_positive_int(3, "k") == 3
    with pytest.raises(ValueError, match="k must be >= 1"):
        K.check_positive_int(0, "k")
    with pytest.raises(TypeError):
        K.check_positive_int(True, "k")
    with pytest.raises(ValueError, match=r"\(0.0, 1.0\)"):
        K.check_fraction(1.0, "p", inclusive=False)
    with pytest.raises(ValueError, match="choose one of: a, b"):
        K.check_choice("c", "thing", ["a", "b"])


def test_check_eval_model_names_submodules_and_the_fix():
    from torch import nn

    from robust_utils._checks import check_eval_model
    m = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).eval()
    check_eval_model(m, "it would break")  # eval mode: no error
    m[1].train()
    with pytest.raises(RuntimeError, match=r"submodules are in training mode \(1\): it would break; call model\.eval\(\)"):
        check_eval_model(m, "it would break")
    with pytest.raises(RuntimeError, match="the model is in training mode"):
        check_eval_model(m.train(), "x")
    with pytest.raises(TypeError, match="torch.nn.Module"):
        check_eval_model(lambda t: t, "x")


def test_model_device_parameters_buffers_fallback():
    import torch
    from torch import nn

    from robust_utils._checks import model_device
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(nn.BatchNorm1d(2, affine=False)) == torch.device("cpu")  # buffers only
    assert model_device(nn.ReLU(), fallback="meta") == torch.device("meta")
