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


def test_check_seed_one_behaviour():
    import numpy as np
    assert K.check_seed(0) == 0 and K.check_seed(np.int64(7)) == 7
    assert isinstance(K.check_seed(np.int32(3)), int)
    with pytest.raises(ValueError, match="non-negative"):
        K.check_seed(-1)
    for bad in (True, 1.0, "0", None):
        with pytest.raises(TypeError, match="non-negative integer"):
            K.check_seed(bad)


def test_check_number_bounds_and_hint():
    assert K.check_number(0.5, "eps") == 0.5
    assert K.check_number(0, "w", strict=False) == 0.0
    with pytest.raises(ValueError, match="> 0"):
        K.check_number(0, "eps")
    with pytest.raises(ValueError, match="<= 1.*8/255"):
        K.check_number(8, "eps", maximum=1.0, hint="use 8/255")
    with pytest.raises(ValueError, match="finite"):
        K.check_number(float("nan"), "eps")
    for bad in (True, "1", [1.0]):
        with pytest.raises(TypeError):
            K.check_number(bad, "eps")


def test_check_finite_and_class_index():
    import numpy as np
    K.check_finite(torch.ones(3))
    with pytest.raises(ValueError, match="1 NaN or infinite value"):
        K.check_finite(torch.tensor([1.0, float("nan")]), "maps")
    with pytest.raises(TypeError, match="floating-point"):
        K.check_finite(torch.ones(2, dtype=torch.long))
    assert K.check_class_index(np.argmax([0.1, 0.9]), num_classes=2) == 1
    assert K.check_class_index(torch.tensor(3)) == 3
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        K.check_class_index(2, num_classes=2)
    with pytest.raises(TypeError, match="class index"):
        K.check_class_index(1.0)


def test_check_class_labels_broadcasts_or_checks_each():
    assert K.check_class_labels(3, 2).tolist() == [3, 3]
    assert K.check_class_labels(torch.tensor(1), 3, num_classes=2).tolist() == [1, 1, 1]
    assert K.check_class_labels([0, 2], 2, num_classes=3).tolist() == [0, 2]
    t = K.check_class_labels(torch.tensor([1, 0], dtype=torch.int32), 2)
    assert t.dtype == torch.long and t.tolist() == [1, 0]
    with pytest.raises(ValueError, match="one per image \\(3\\)"):
        K.check_class_labels([0, 1], 3, "target")
    with pytest.raises(ValueError, match="3 entries but there are 2"):
        K.check_class_labels(torch.tensor([0, 1, 2]), 2)
    with pytest.raises(ValueError, match=r"target must be a class index in \[0, 1\]"):
        K.check_class_labels([0, 5], 2, "target", num_classes=2)
    with pytest.raises(TypeError, match="class index"):
        K.check_class_labels(0.5, 2)


@pytest.mark.parametrize("bad", ["x/../../escaped", "..", "a/b", "a\\b", "", ".hidden", "a..b", "a b"])
def test_check_name_rejects_path_tricks(bad):
    with pytest.raises(ValueError, match="file name"):
        K.check_name(bad, "profile")


def test_check_name_accepts_plain_names_and_rejects_non_strings():
    assert K.check_name("c3lt_cnn-1.0+x", "arch") == "c3lt_cnn-1.0+x"
    with pytest.raises(TypeError):
        K.check_name(3, "arch")


def test_as_numpy_1d_hints_at_flattening():
    with pytest.raises(ValueError, match="reshape"):
        K.as_numpy_1d(torch.zeros(4, 1), "pred")


def test_check_labels_says_how_to_convert_and_check_model_input_lives_here():
    import numpy as np
    from torch import nn
    with pytest.raises(TypeError, match=r"torch.as_tensor\(labels\)"):
        K.check_labels(np.array([0, 1]))
    with pytest.raises(TypeError, match="x.float"):
        K.check_model_input(nn.Linear(2, 2), torch.rand(1, 1, 2, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match="torch.stack"):
        K.check_model_input(nn.Linear(2, 2), [torch.rand(1, 2, 2)])


def test_check_bool_generator_value_range_and_long_labels():
    import numpy as np
    assert K.check_bool(True, "flag") is True and K.check_bool(np.bool_(False), "flag") is False
    for bad in ("no", 0, 1, None, torch.tensor(True)):
        with pytest.raises(TypeError, match="flag must be True or False"):
            K.check_bool(bad, "flag")
    g = torch.Generator()
    assert K.check_generator(g) is g and K.check_generator(None) is None
    with pytest.raises(TypeError, match=r"torch.Generator\(\).manual_seed\(0\)"):
        K.check_generator(0)
    assert K.check_value_range(None) is None and K.check_value_range([0, 255]) == (0.0, 255.0)
    with pytest.raises(TypeError, match="pair"):
        K.check_value_range(1.0)
    with pytest.raises(ValueError, match="low < high"):
        K.check_value_range((1, 0))
    for dt in (torch.int32, torch.uint8, torch.int16):
        y = K.check_labels(torch.tensor([0, 2, 1], dtype=dt))
        assert y.dtype == torch.long and y.tolist() == [0, 2, 1]
    y = torch.tensor([0, 1])
    assert K.check_labels(y) is y                      # int64 is returned as it is


def test_check_head_model_needs_features_a_linear_head_and_eval_mode():
    from torch import nn

    from robust_utils.models import MLP
    K.check_head_model(MLP(hidden=(4,)).eval(), "x")
    with pytest.raises(TypeError, match="features.*head"):
        K.check_head_model(nn.Linear(2, 2).eval(), "x")
    with pytest.raises(RuntimeError, match="it would break; call model.eval"):
        K.check_head_model(MLP(hidden=(4,)).train(), "it would break")
