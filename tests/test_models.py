"""Tests of robust_utils.models: shapes, the features/head split, normalisation, validation."""
import pytest
import torch
import torch.nn as nn

from robust_utils.models import (ARCHITECTURES, MLP, BookModel, C3LTClassifier, Normalize,
                                 PreActResNet, build_model)

SMALL = {
    "c3lt_cnn": {},
    "mlp": {"hidden": (16, 8)},
    "preact_resnet": {"widths": (4, 8), "blocks_per_stage": (1, 1)},
    "trades_cnn": {},
    "strided_cnn": {"width": 4},
}


#: Part 7's generative artifacts (nn.ModuleDicts and plain modules, not classifiers), registered by
#: robust_utils.cf_models and tested in tests/test_cf_models.py.
GENERATIVE = {"dcgan", "latent_encoder", "conv_autoencoder", "c3lt_maps"}


@pytest.fixture(params=sorted(SMALL))
def model(request):
    torch.manual_seed(0)
    return build_model(request.param, **SMALL[request.param]).eval()


def test_registry_names_and_classes():
    assert set(ARCHITECTURES) == set(SMALL) | GENERATIVE
    for name, cls in ARCHITECTURES.items():
        if name in GENERATIVE:
            continue
        assert issubclass(cls, BookModel) and cls.arch == name


def test_output_and_feature_shapes(model):
    x = torch.rand(5, 1, 28, 28)
    logits = model(x)
    feats = model.features(x)
    assert logits.shape == (5, 10)
    assert feats.shape == (5, model.head.in_features) and model.feature_dim == feats.shape[1]
    assert isinstance(model.head, nn.Linear) and model.head.out_features == model.num_classes == 10
    assert model.in_channels == 1 and model.input_size == (28, 28)
    torch.testing.assert_close(model.head(feats), logits)


def test_num_classes_and_channels():
    m = C3LTClassifier(num_classes=3, in_channels=3, input_size=32).eval()
    assert m(torch.rand(2, 3, 32, 32)).shape == (2, 3)
    r = PreActResNet(num_classes=4, in_channels=3, widths=(4,), blocks_per_stage=(1,), input_size=32)
    assert r(torch.rand(2, 3, 32, 32)).shape == (2, 4)
    assert MLP(in_features=3 * 8 * 8, in_channels=3, hidden=(), num_classes=2)(torch.rand(2, 3, 8, 8)).shape == (2, 2)


def test_conv_layers_are_named_modules(model):
    convs = model.conv_layers()
    named = dict(model.named_modules())
    for name, layer in convs.items():
        assert named[name] is layer and isinstance(layer, nn.Conv2d)
    if convs:
        assert model.last_conv_name == list(convs)[-1]


def test_c3lt_layers_and_last_conv():
    m = C3LTClassifier()
    assert list(m.conv_layers()) == ["conv1", "conv2"]
    assert m.last_conv_name == "conv2"


def test_mlp_has_no_conv_layers():
    m = MLP()
    assert m.conv_layers() == {}
    with pytest.raises(ValueError, match="no convolution layers"):
        _ = m.last_conv_name


def test_normalisation_inside_the_model():
    torch.manual_seed(0)
    m = C3LTClassifier().eval()
    x = torch.rand(4, 1, 28, 28)
    z = (x - 0.5) / 0.5  # C3LT's [-1, 1] inputs
    h = m.pool1(torch.relu(m.conv1(z)))
    h = m.pool2(torch.relu(m.conv2(h)))
    manual = m.head(torch.relu(m.fc1(h.flatten(1))))
    torch.testing.assert_close(m(x), manual)
    # buffers, not parameters: saved in the state dict, never trained
    assert "normalize.mean" in m.state_dict() and "normalize.std" in m.state_dict()
    assert all("normalize" not in n for n, _ in m.named_parameters())


def test_mlp_normalisation_matches_manual():
    torch.manual_seed(0)
    m = MLP(hidden=(8,)).eval()
    x = torch.rand(3, 1, 28, 28)
    z = ((x - 0.2860) / 0.3530).flatten(1)
    manual = m.head(torch.relu(m.body[0](z)))
    torch.testing.assert_close(m(x), manual)


def test_normalize_per_channel_and_errors():
    n = Normalize(mean=(0.1, 0.2, 0.3), std=(1.0, 2.0, 4.0), in_channels=3)
    x = torch.ones(1, 3, 2, 2)
    torch.testing.assert_close(n(x)[0, :, 0, 0], torch.tensor([0.9, 0.4, 0.175]))
    with pytest.raises(ValueError, match="std must be positive"):
        Normalize(0.0, 0.0)
    with pytest.raises(ValueError, match="one per channel"):
        Normalize((0.1, 0.2), 1.0, in_channels=3)


def test_c3lt_parameter_count_by_hand():
    conv1 = 1 * 32 * 5 * 5 + 32
    conv2 = 32 * 64 * 5 * 5 + 64
    fc1 = 64 * 4 * 4 * 256 + 256
    head = 256 * 10 + 10
    assert C3LTClassifier().num_parameters() == conv1 + conv2 + fc1 + head == 317066


def test_resnet44_layout():
    m = PreActResNet(blocks_per_stage=(7, 7, 7))
    convs = m.conv_layers()
    three_by_three = [c for c in convs.values() if c.kernel_size == (3, 3)]
    assert len(three_by_three) == 1 + 2 * 21  # + the linear head = 44 weighted layers
    assert m.last_conv_name == "stages.2.6.conv2"
    assert m.features(torch.rand(2, 1, 28, 28)).shape == (2, 64)


def test_resnet_downsamples_between_stages():
    m = PreActResNet(widths=(4, 8, 16), blocks_per_stage=(1, 1, 1)).eval()
    sizes = {}
    hooks = [m.stages[i].register_forward_hook(lambda mod, i_, o, i=i: sizes.__setitem__(i, o.shape[-1]))
             for i in range(3)]
    m(torch.rand(1, 1, 28, 28))
    for h in hooks:
        h.remove()
    assert sizes == {0: 28, 1: 14, 2: 7}


def test_dropout_only_in_train_mode():
    torch.manual_seed(0)
    m = C3LTClassifier()
    x = torch.rand(8, 1, 28, 28)
    m.eval()
    torch.testing.assert_close(m(x), m(x))
    m.train()
    assert not torch.allclose(m(x), m(x))


@pytest.mark.parametrize("shape, match", [
    ((1, 28, 28), "unsqueeze"),
    ((2, 3, 28, 28), "1 channel"),
    ((2, 1, 32, 32), "28x28"),
])
def test_bad_input_shapes(model, shape, match):
    with pytest.raises(ValueError, match=match):
        model(torch.rand(*shape))


def test_bad_input_types(model):
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([[0.0]])
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))


def test_build_model_errors():
    with pytest.raises(ValueError, match="choose one of: c3lt_cnn, .*mlp, preact_resnet"):
        build_model("resnet50")
    with pytest.raises(TypeError, match="unknown argument.*'widht'.*valid arguments"):
        build_model("preact_resnet", widht=(4,))
    with pytest.raises(TypeError, match="string"):
        build_model(C3LTClassifier)


def test_constructor_validation():
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        C3LTClassifier(num_classes=1)
    with pytest.raises(ValueError, match="dropout"):
        C3LTClassifier(dropout=1.0)
    with pytest.raises(ValueError, match="too small"):
        C3LTClassifier(input_size=12)
    with pytest.raises(ValueError, match="square image"):
        MLP(in_features=100, in_channels=3)
    with pytest.raises(ValueError, match="same length"):
        PreActResNet(widths=(4, 8), blocks_per_stage=(1,))
    with pytest.raises(TypeError, match="sequence of layer widths"):
        MLP(hidden=16)


def test_activation_is_an_architecture_argument():
    from robust_utils.models import ACTIVATIONS, make_activation, register_activation
    assert "relu" in ACTIVATIONS and isinstance(make_activation("relu"), torch.nn.ReLU)
    register_activation("test_tanh", torch.nn.Tanh)
    try:
        for arch in ("c3lt_cnn", "mlp", "preact_resnet", "trades_cnn"):
            m = build_model(arch, activation="test_tanh")
            assert any(isinstance(mod, torch.nn.Tanh) for mod in m.modules())
            assert not any(isinstance(mod, torch.nn.ReLU) for mod in m.modules())
            assert not any(isinstance(mod, torch.nn.Tanh) for mod in build_model(arch).modules())
    finally:
        ACTIVATIONS.unregister("test_tanh")
    with pytest.raises(ValueError, match="unknown activation 'swish'; choose one of: elu, hhrelu, relu"):
        build_model("mlp", activation="swish")


def test_registering_an_architecture_from_another_module():
    from robust_utils.models import architecture_parameters, register_architecture

    def pair(width: int = 2):
        return torch.nn.ModuleDict({"a": torch.nn.Linear(1, width)})
    register_architecture("test_models_pair", pair)
    try:
        assert architecture_parameters("test_models_pair") == ["width"]
        assert isinstance(build_model("test_models_pair", width=3), torch.nn.ModuleDict)
        with pytest.raises(ValueError, match="already registered"):
            register_architecture("test_models_pair", lambda: torch.nn.Linear(1, 1))
    finally:
        ARCHITECTURES.unregister("test_models_pair")
    register_architecture("test_models_bad", lambda: "not a module")
    try:
        with pytest.raises(TypeError, match="not a torch.nn.Module"):
            build_model("test_models_bad")
    finally:
        ARCHITECTURES.unregister("test_models_bad")


def test_trades_cnn_layers_and_sizes():
    """The TRADES small CNN: 28 -> 26 -> 24 -> 12 -> 10 -> 8 -> 4, so 64 * 4 * 4 inputs to FC 200."""
    m = build_model("trades_cnn").eval()
    assert m.fc1.in_features == 64 * 4 * 4 and m.fc2.out_features == 200 and m.head.in_features == 200
    assert [c.out_channels for c in m.conv_layers().values()] == [32, 32, 64, 64]
    assert m.last_conv_name == "conv4" and m.features(torch.rand(3, 1, 28, 28)).shape == (3, 200)
    assert float(m.normalize.mean.flatten()[0]) == 0.0  # raw [0, 1] pixels, as in the TRADES code
    assert isinstance(build_model("trades_cnn", activation="elu").act1, torch.nn.ELU)
    with pytest.raises(ValueError, match="at least 16x16"):
        build_model("trades_cnn", input_size=15)
    assert build_model("trades_cnn", input_size=16)(torch.rand(1, 1, 16, 16)).shape == (1, 10)
