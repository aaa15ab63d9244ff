"""Tests of robust_utils.explanations: cross-checks with captum and pytorch-grad-cam, the
definitions of ContrastCAM / CounterfactualCAM on a model whose gradients are known in closed
form, batching, hook release and error messages. Tiny random models, tiny inputs."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from robust_utils import explanations as E
from robust_utils.models import C3LTClassifier, PreActResNet

pytestmark = pytest.mark.usefixtures("one_thread")

CAMS = ["gradcam", "counterfactual", "contrast", "gradcam++"]


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(1)
    m = PreActResNet(widths=(4, 8, 8), blocks_per_stage=(1, 1, 1), input_size=16)
    # Non-trivial batch-norm statistics, so eval mode differs from a fresh network.
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


@pytest.fixture(scope="module")
def x16():  # this module's images (seed 2), not conftest's
    torch.manual_seed(2)
    return torch.rand(4, 1, 16, 16)


def _hooks_empty(model):
    return all(len(m._forward_hooks) == 0 and len(m._backward_hooks) == 0 for m in model.modules())


def _captum_gradcam(model, x, layer, target):
    from captum.attr import LayerAttribution, LayerGradCam

    attr = LayerGradCam(model, dict(model.named_modules())[layer]).attribute(
        x, target=target, relu_attributions=True)
    up = LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    return E.normalize_maps(up.squeeze(1).detach())


# --- cross-checks with reference libraries ---------------------------------------------------
@pytest.mark.parametrize("which,layer", [("c3lt", "conv1"), ("c3lt", "conv2"),
                                         ("resnet", "conv1"), ("resnet", "stages.1.0.conv1"),
                                         ("resnet", "stages.2.0.conv2")])
@pytest.mark.requires("captum")
def test_grad_cam_matches_captum(which, layer, request, x16):
    model = request.getfixturevalue(which)
    target = torch.tensor([0, 3, 5, 9])
    ours = E.grad_cam(model, x16, target, layer=layer)
    ref = _captum_gradcam(model, x16, layer, target)
    assert ours.shape == (4, 16, 16)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    # raw, layer-resolution maps agree too
    from captum.attr import LayerGradCam
    raw = LayerGradCam(model, dict(model.named_modules())[layer]).attribute(x16, target=target)
    torch.testing.assert_close(E.grad_cam(model, x16, target, layer=layer, relu=False, upsample=False,
                                          normalize=False), raw.squeeze(1).detach(), atol=1e-6, rtol=1e-5)


@pytest.mark.requires("captum")
def test_default_layer_and_target_are_last_conv_and_prediction(c3lt, x16):
    pred = c3lt(x16).argmax(1)
    torch.testing.assert_close(E.grad_cam(c3lt, x16), _captum_gradcam(c3lt, x16, c3lt.last_conv_name, pred),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.requires("captum")
def test_contrast_cam_matches_captum_on_the_loss(resnet, x16):
    # captum's LayerGradCam with the per-image cross-entropy loss as the forward function
    from captum.attr import LayerAttribution, LayerGradCam

    layer = "stages.2.0.conv1"
    q = torch.tensor([2, 2, 7, 0])
    fwd = lambda inp: F.cross_entropy(resnet(inp), q, reduction="none")  # noqa: E731
    attr = LayerGradCam(fwd, dict(resnet.named_modules())[layer]).attribute(x16, relu_attributions=True)
    ref = E.normalize_maps(LayerAttribution.interpolate(attr, (16, 16), "bilinear").squeeze(1).detach())
    torch.testing.assert_close(E.contrast_cam(resnet, x16, q, layer=layer), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("which,layer", [("c3lt", "conv2"), ("resnet", "stages.2.0.conv2"),
                                         ("resnet", "stages.1.0.conv1")])
def test_grad_cam_plus_plus_matches_pytorch_grad_cam(which, layer, request, x16):
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = request.getfixturevalue(which)
    target = [1, 2, 7, 4]
    module = dict(model.named_modules())[layer]
    with pgc.GradCAMPlusPlus(model=model, target_layers=[module]) as cam:
        ref = torch.from_numpy(cam(x16, targets=[ClassifierOutputTarget(t) for t in target]))
    ours = E.grad_cam_plus_plus(model, x16, target, layer=layer)
    # pytorch-grad-cam normalises (with +1e-7), resizes with OpenCV, and normalises again;
    # min-max normalisation commutes with bilinear resizing, so only rounding differs.
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    assert _hooks_empty(model)


def test_grad_cam_matches_pytorch_grad_cam(c3lt, x16):
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with pgc.GradCAM(model=c3lt, target_layers=[c3lt.conv2]) as cam:
        ref = torch.from_numpy(cam(x16, targets=[ClassifierOutputTarget(t) for t in (0, 1, 2, 3)]))
    torch.testing.assert_close(E.grad_cam(c3lt, x16, [0, 1, 2, 3], layer="conv2"), ref, atol=1e-4, rtol=0)


# --- definitions on a model with closed-form gradients ---------------------------------------
def _raw(fn, model, x, cls, **kw):
    return fn(model, x, cls, upsample=False, normalize=False, **kw)


def test_grad_cam_closed_form(tiny, x16):
    a = tiny.conv(x16).detach()                      # (N, K, h, w)
    hw = a.shape[-2] * a.shape[-1]
    w = tiny.fc.weight.detach()
    target = torch.tensor([0, 1, 2, 3])
    alpha = w[target] / hw                           # (N, K)
    expected = torch.einsum("nk,nkhw->nhw", alpha, a)
    torch.testing.assert_close(_raw(E.grad_cam, tiny, x16, target, relu=False), expected)
    torch.testing.assert_close(_raw(E.grad_cam, tiny, x16, target), F.relu(expected))
    # CounterfactualCAM: negated weights, then ReLU
    torch.testing.assert_close(_raw(E.counterfactual_cam, tiny, x16, target), F.relu(-expected))
    torch.testing.assert_close(_raw(E.counterfactual_cam, tiny, x16, target, relu=False), -expected)


def test_contrast_cam_closed_form(tiny, x16):
    a = tiny.conv(x16).detach()
    hw = a.shape[-2] * a.shape[-1]
    w = tiny.fc.weight.detach()
    p = tiny(x16).softmax(1).detach()
    for q in ([3, 2, 1, 0], [1, 1, 1, 1]):
        q = torch.tensor(q)
        alpha = (p - F.one_hot(q, 4).float()) @ w / hw   # d CE(y, Q) / d A = ((p - e_Q)^T W) / hw
        expected = F.relu(torch.einsum("nk,nkhw->nhw", alpha, a))
        torch.testing.assert_close(_raw(E.contrast_cam, tiny, x16, q), expected)
    # int contrast = the same class for every image
    torch.testing.assert_close(_raw(E.contrast_cam, tiny, x16, 1), expected)


def test_contrast_cam_default_is_second_most_likely(tiny, x16):
    q = tiny(x16).topk(2, dim=1).indices[:, 1]
    torch.testing.assert_close(E.contrast_cam(tiny, x16), E.contrast_cam(tiny, x16, q))
    torch.testing.assert_close(E.explain(tiny, x16, "contrast"), E.contrast_cam(tiny, x16, q.tolist()))


def test_grad_cam_plus_plus_closed_form(tiny, x16):
    # conv -> GAP -> linear: g = W[c, k] / hw is spatially constant, so
    # a = g^2 / (2 g^2 + sum(A) g^3 + eps) and w_k = hw * a * relu(g).
    a = tiny.conv(x16).detach()
    hw = a.shape[-2] * a.shape[-1]
    target = torch.tensor([2, 0, 3, 1])
    g = tiny.fc.weight.detach()[target] / hw
    s = a.sum(dim=(2, 3))
    alpha = g ** 2 / (2 * g ** 2 + s * g ** 3 + 1e-6)
    weights = hw * alpha * F.relu(g)
    expected = F.relu(torch.einsum("nk,nkhw->nhw", weights, a))
    torch.testing.assert_close(_raw(E.grad_cam_plus_plus, tiny, x16, target), expected)


# --- batching, normalisation and shapes -------------------------------------------------------
@pytest.mark.parametrize("method", CAMS)
def test_batched_equals_per_image(method, resnet, x16):
    kw = {"contrast": [1, 4, 0, 2]} if method == "contrast" else {"target": [1, 4, 0, 2]}
    batch = E.explain(resnet, x16, method, layer="stages.1.0.conv2", **kw)
    key = next(iter(kw))
    single = torch.cat([E.explain(resnet, x16[i:i + 1], method, layer="stages.1.0.conv2",
                                  **{key: kw[key][i]}) for i in range(4)])
    torch.testing.assert_close(batch, single, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("method", CAMS)
def test_maps_normalised_and_sized(method, c3lt, x16):
    maps = E.explain(c3lt, x16, method)
    assert maps.shape == (4, 16, 16) and torch.isfinite(maps).all()
    assert maps.min() >= 0 and maps.max() <= 1
    flat = maps.flatten(1)
    for row in flat:
        assert row.max() == 0 or (row.min() == 0 and row.max() == pytest.approx(1.0))
    raw = E.explain(c3lt, x16, method, upsample=False, normalize=False)
    assert raw.shape == (4, 2, 2)                   # conv2 of a 16x16 input


def test_flat_maps_become_zeros_not_nan(x16, conv_gap_linear):
    torch.manual_seed(0)
    model = conv_gap_linear().eval()
    with torch.no_grad():
        model.fc.weight.zero_()                       # zero gradients -> zero maps
    for method in CAMS:
        maps = E.explain(model, x16, method)
        assert torch.equal(maps, torch.zeros(4, 16, 16))
    const = torch.full((2, 5, 5), 3.0)
    assert torch.equal(E.normalize_maps(const), torch.zeros(2, 5, 5))
    m = E.normalize_maps(torch.tensor([[[0.0, 2.0], [1.0, 4.0]]]))
    torch.testing.assert_close(m, torch.tensor([[[0.0, 0.5], [0.25, 1.0]]]))


def test_counterfactual_and_gradcam_have_disjoint_support(tiny, x16):
    gc = _raw(E.grad_cam, tiny, x16, 1)
    cf = _raw(E.counterfactual_cam, tiny, x16, 1)
    assert ((gc > 0) & (cf > 0)).sum() == 0
    torch.testing.assert_close(gc - cf, _raw(E.grad_cam, tiny, x16, 1, relu=False))


def test_works_under_no_grad_and_with_frozen_parameters(x16):
    torch.manual_seed(5)
    model = C3LTClassifier(input_size=16).eval()
    expected = E.grad_cam(model, x16, 2)
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        got = E.grad_cam(model, x16, 2)
    torch.testing.assert_close(got, expected)
    assert all(p.grad is None for p in model.parameters())


# --- hooks and errors -------------------------------------------------------------------------
@pytest.mark.parametrize("method", CAMS)
def test_hooks_removed_after_call_and_after_exception(method, c3lt, x16):
    E.explain(c3lt, x16, method, layer="conv1")
    assert _hooks_empty(c3lt)
    key = "contrast" if method == "contrast" else "target"
    with pytest.raises(ValueError, match=r"must lie in \[0, 9\]"):
        E.explain(c3lt, x16, method, layer="conv1", **{key: 10})
    assert _hooks_empty(c3lt)
    for name in ("gradients", "guided_backprop", "deconvolution"):
        E.explain(c3lt, x16, name)
    assert _hooks_empty(c3lt)


def test_unknown_layer_lists_valid_ones(c3lt, x16):
    with pytest.raises(ValueError, match=r"unknown layer 'conv3'; valid conv layers: conv1, conv2"):
        E.grad_cam(c3lt, x16, layer="conv3")
    with pytest.raises(TypeError, match="layer must be a module name"):
        E.grad_cam(c3lt, x16, layer=c3lt.conv1)
    with pytest.raises(ValueError, match=r"must output feature maps shaped \(N, K, h, w\)"):
        E.grad_cam(c3lt, x16, layer="fc1")
    assert _hooks_empty(c3lt)


def test_model_without_convolutions_is_rejected(x16):
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(256, 3)).eval()
    with pytest.raises(ValueError, match="no convolution layers"):
        E.grad_cam(mlp, x16)


def test_bad_targets_and_inputs(c3lt, x16):
    with pytest.raises(ValueError, match=r"target must lie in \[0, 9\], got values in \[-1, 2\]"):
        E.grad_cam(c3lt, x16, torch.tensor([0, 1, 2, -1]))
    with pytest.raises(ValueError, match="contrast has 2 entries but there are 4 images"):
        E.contrast_cam(c3lt, x16, [1, 2])
    with pytest.raises(TypeError, match="contrast must contain integer class indices"):
        E.contrast_cam(c3lt, x16, [1.0, 2, 3, 4])
    with pytest.raises(TypeError, match="target must be a class index"):
        E.grad_cam(c3lt, x16, "cat")
    with pytest.raises(ValueError, match=r"target must lie in \[0, 9\]"):
        E.gradients(c3lt, x16, 12)
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, H, W\).*unsqueeze\(0\)"):
        E.grad_cam(c3lt, x16[0])
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        E.grad_cam(c3lt, x16.numpy())
    with pytest.raises(ValueError, match="unknown explanation method 'lime'; choose one of"):
        E.explain(c3lt, x16, "lime")
    with pytest.raises(ValueError, match="unknown smoothgrad method"):
        E.smoothgrad(c3lt, x16, method="gradcam")
    with pytest.raises(ValueError, match="n_samples must be >= 1"):
        E.smoothgrad(c3lt, x16, n_samples=0)
    assert _hooks_empty(c3lt)


def test_training_mode_rejected(x16):
    model = C3LTClassifier(input_size=16)              # fresh modules are in training mode
    for method in CAMS + ["gradients", "smoothgrad"]:
        with pytest.raises(RuntimeError, match=r"training mode.*call model\.eval\(\)"):
            E.explain(model, x16, method)
    model.eval()
    model.dropout.train()                              # one submodule left in training mode
    with pytest.raises(RuntimeError, match="dropout"):
        E.grad_cam(model, x16)
    assert _hooks_empty(model)


# --- pixel attributions -----------------------------------------------------------------------
@pytest.mark.requires("captum")
@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")
def test_pixel_attributions_shapes_and_reference(c3lt, x16):
    from captum.attr import GuidedBackprop, Saliency

    target = torch.tensor([3, 1, 4, 1])
    g = E.gradients(c3lt, x16, target)
    assert g.shape == x16.shape and not g.requires_grad
    xr = x16.clone().requires_grad_(True)
    c3lt(xr).gather(1, target[:, None]).sum().backward()
    torch.testing.assert_close(g, xr.grad)
    torch.testing.assert_close(E.gradients(c3lt, x16, target, absolute=True), xr.grad.abs())
    xg = x16.clone().requires_grad_(True)
    torch.testing.assert_close(E.guided_backprop(c3lt, x16, target),
                               GuidedBackprop(c3lt).attribute(xg, target=target))
    d = E.deconvolution(c3lt, x16, 2)
    assert d.shape == x16.shape and torch.isfinite(d).all()
    pred = c3lt(x16).argmax(1)
    ref = Saliency(c3lt).attribute(x16.clone().requires_grad_(True), target=pred, abs=False)
    torch.testing.assert_close(E.gradients(c3lt, x16), ref)
    assert _hooks_empty(c3lt)


def test_smoothgrad_seeded_batched_and_definition(c3lt, x16):
    s1 = E.smoothgrad(c3lt, x16, target=1, n_samples=5, seed=7)
    s2 = E.smoothgrad(c3lt, x16, target=1, n_samples=5, seed=7, max_batch=4)  # other chunking
    assert s1.shape == x16.shape
    torch.testing.assert_close(s1, s2)
    assert not torch.allclose(s1, E.smoothgrad(c3lt, x16, target=1, n_samples=5, seed=8))
    # definition: mean of gradients at x + noise, with the documented noise draw
    gen = torch.Generator().manual_seed(7)
    noise = torch.randn((5, *x16.shape), generator=gen) * 0.15
    expected = torch.stack([E.gradients(c3lt, x16 + noise[i], 1, value_range=None)
                            for i in range(5)]).mean(0)
    torch.testing.assert_close(s1, expected, atol=1e-6, rtol=1e-5)
    # sigma = 0 is the plain gradient; the global random state is untouched
    state = torch.random.get_rng_state()
    torch.testing.assert_close(E.smoothgrad(c3lt, x16, 1, n_samples=2, sigma=0.0), E.gradients(c3lt, x16, 1))
    assert torch.equal(state, torch.random.get_rng_state())
    gb = E.smoothgrad(c3lt, x16, n_samples=2, method="guided_backprop")
    assert gb.shape == x16.shape and torch.isfinite(gb).all()


def test_registries_document_questions():
    assert set(E.CAM_METHODS) == {"gradcam", "counterfactual", "contrast", "gradcam++"}
    assert set(E.METHODS) == set(E.CAM_METHODS) | set(E.ATTRIBUTION_METHODS) == set(E.QUESTIONS)
    assert E.QUESTIONS["contrast"] == "Why P, rather than Q?"
    for fn in E.METHODS.values():
        assert "Taught in Part 2" in fn.__doc__


# --- layers whose output is modified in place afterwards --------------------------------------
def _not_inplace(model):
    """A copy with every ``inplace`` flag off: the reference libraries' numbers are right there."""
    import copy

    ref = copy.deepcopy(model)
    for mod in ref.modules():
        if hasattr(mod, "inplace"):
            mod.inplace = False
    return ref


def _conv_bn_relu_inplace():
    torch.manual_seed(6)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True),
                      nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))
    m[3].running_mean.uniform_(-0.2, 0.2)
    m[3].running_var.uniform_(0.5, 1.5)
    return m.eval()


@pytest.fixture(scope="module")
def inplace_models():
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(7)
    squeeze = tv.models.squeezenet1_1(weights=None, num_classes=5).eval()
    resnet = tv.models.resnet18(weights=None, num_classes=5)
    for mod in resnet.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    return {"sequential": _conv_bn_relu_inplace(), "squeezenet1_1": squeeze, "resnet18": resnet.eval()}


# (model, layer): each layer's output is changed in place right after (ReLU(inplace=True))
INPLACE_CASES = [("sequential", "0"), ("sequential", "3"), ("squeezenet1_1", "features.0"),
                 ("squeezenet1_1", "features.3.expand3x3"), ("resnet18", "bn1"),
                 ("resnet18", "layer1.0.bn1")]


@pytest.mark.requires("captum")
@pytest.mark.parametrize("which,layer", INPLACE_CASES)
def test_cams_on_layers_followed_by_inplace_relu_match_captum_and_pytorch_grad_cam(which, layer,
                                                                                   inplace_models):
    """Used to raise "a leaf Variable that requires grad is being used in an in-place operation"."""
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = inplace_models[which]
    ref_model = _not_inplace(model)
    torch.manual_seed(8)
    x = torch.rand(2, 3, 32, 32)
    target = torch.tensor([1, 3])
    ours = E.grad_cam(model, x, target, layer=layer)
    assert ours.flatten(1).std(1).max() > 0                       # a real test: not all maps are flat
    torch.testing.assert_close(ours, _captum_gradcam(ref_model, x, layer, target), atol=1e-5, rtol=1e-5)
    module = dict(ref_model.named_modules())[layer]
    targets = [ClassifierOutputTarget(int(t)) for t in target]
    with pgc.GradCAM(model=ref_model, target_layers=[module]) as cam:
        torch.testing.assert_close(ours, torch.from_numpy(cam(x, targets=targets)), atol=1e-4, rtol=0)
    with pgc.GradCAMPlusPlus(model=ref_model, target_layers=[module]) as cam:
        torch.testing.assert_close(E.grad_cam_plus_plus(model, x, target, layer=layer),
                                   torch.from_numpy(cam(x, targets=targets)), atol=1e-4, rtol=0)
    for method in ("counterfactual", "contrast"):                # same maps as without in-place ops
        torch.testing.assert_close(E.explain(model, x, method, layer=layer),
                                   E.explain(ref_model, x, method, layer=layer), atol=1e-6, rtol=0)
    assert _hooks_empty(model)


def test_captured_activation_is_the_layer_output_before_the_inplace_relu(x16):
    model = _conv_bn_relu_inplace()
    x = torch.rand(2, 3, 8, 8)
    with E.capture_layer(model, "0") as store:
        out = model(x)
    a = store["activation"]
    torch.testing.assert_close(a, model[0](x))                   # the convolution's true output ...
    assert (a < 0).any() and a.requires_grad and a.is_leaf       # ... not the ReLU'd one
    torch.testing.assert_close(out, _not_inplace(model)(x))      # and the forward pass is unchanged
    assert _hooks_empty(model)


# --- inputs a reader may pass -------------------------------------------------------------------
def test_numpy_and_0d_tensor_targets_are_accepted(c3lt, x16):
    np = pytest.importorskip("numpy")
    ref = E.grad_cam(c3lt, x16, 3)
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.0])
    for t in (np.argmax(scores), np.int32(3), np.array(3), torch.tensor(3), [np.int64(3)] * 4,
              np.full(4, 3)):
        torch.testing.assert_close(E.grad_cam(c3lt, x16, t), ref)
    torch.testing.assert_close(E.contrast_cam(c3lt, x16, np.int64(3)), E.contrast_cam(c3lt, x16, 3))
    torch.testing.assert_close(E.gradients(c3lt, x16, np.int64(3)), E.gradients(c3lt, x16, 3))
    with pytest.raises(TypeError, match="integer class indices.*dtype float64.*astype"):
        E.grad_cam(c3lt, x16, np.full(4, 3.0))
    with pytest.raises(TypeError, match="target must be a class index"):
        E.grad_cam(c3lt, x16, True)


def test_float64_images_and_lists_get_clear_messages(c3lt, x16):
    with pytest.raises(TypeError, match=r"x has dtype torch.float64 but the model's parameters are "
                                        r"torch.float32; convert the images with x\.float\(\)"):
        E.grad_cam(c3lt, x16.double())
    with pytest.raises(TypeError, match=r"torch\.stack\(x\)"):
        E.grad_cam(c3lt, list(x16))
    torch.testing.assert_close(E.grad_cam(c3lt.double(), x16.double()).float(), E.grad_cam(c3lt.float(), x16),
                               atol=1e-4, rtol=0)
    assert _hooks_empty(c3lt)


def test_normalize_maps_refuses_nan_instead_of_returning_zeros():
    maps = torch.rand(3, 4, 4)
    maps[1, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="maps contains 1 NaN or infinite value"):
        E.normalize_maps(maps)
    with pytest.raises(ValueError, match="NaN or infinite"):
        E.normalize_maps(torch.tensor([[0.0, float("inf")]]))
    with pytest.raises(ValueError, match="non-empty batch"):
        E.normalize_maps(torch.zeros(0, 4, 4))
    with pytest.raises(TypeError, match="floating-point"):
        E.normalize_maps(torch.ones(2, 3, dtype=torch.long))


def test_smoothgrad_uses_the_shared_seed_check(c3lt, x16):
    np = pytest.importorskip("numpy")
    torch.testing.assert_close(E.smoothgrad(c3lt, x16, n_samples=2, seed=np.int64(4)),
                               E.smoothgrad(c3lt, x16, n_samples=2, seed=4))
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        E.smoothgrad(c3lt, x16, n_samples=2, seed=-1)
    with pytest.raises(TypeError, match="seed must be a non-negative integer"):
        E.smoothgrad(c3lt, x16, n_samples=2, seed=0.5)


def test_range_and_flags_are_checked_like_the_attacks(c3lt, x16):
    import numpy as np
    for fn in (E.grad_cam, E.counterfactual_cam, E.contrast_cam, E.grad_cam_plus_plus, E.smoothgrad):
        with pytest.raises(ValueError, match=r"must lie in \[0.0, 1.0\]"):
            fn(c3lt, x16 * 255)
    with pytest.raises(ValueError, match=r"must lie in \[0.0, 1.0\]"):
        E.explain(c3lt, x16 * 255, "gradcam")
    # value_range=None: a model that takes other inputs
    m = E.grad_cam(c3lt, x16 * 255, value_range=None)
    assert m.shape == (4, 16, 16) and torch.isfinite(m).all()
    with pytest.raises(TypeError, match="value_range must be"):
        E.grad_cam(c3lt, x16, value_range=1.0)
    # flags: bool or np.bool_, never a truthy string
    torch.testing.assert_close(E.grad_cam(c3lt, x16, relu=np.bool_(False)), E.grad_cam(c3lt, x16, relu=False))
    for kw in ({"relu": "no"}, {"upsample": 1}, {"normalize": None}):
        with pytest.raises(TypeError, match="must be True or False"):
            E.grad_cam(c3lt, x16, **kw)
    with pytest.raises(TypeError, match="must be True or False"):
        E.contrast_cam(c3lt, x16, relu="no")
    with pytest.raises(TypeError, match="absolute must be True or False"):
        E.gradients(c3lt, x16, absolute="yes")
    with pytest.raises(TypeError, match="float64"):
        E.grad_cam(c3lt, x16.double())


def test_grad_cam_plus_plus_eps_and_range_hint(c3lt, x16):
    with pytest.raises(ValueError, match="eps must be >= 0"):
        E.grad_cam_plus_plus(c3lt, x16, eps=-1.0)
    with pytest.raises(ValueError, match="divide by 255.*value_range=None"):
        E.grad_cam(c3lt, x16 * 255)
