"""Tests of robust_utils.voice: agreement with explanations.contrast_cam / grad_cam /
grad_cam_plus_plus and with pytorch-grad-cam, the variance on a model whose contrastive maps are
known to coincide, hand-computed IoU and SNR, batching, and error messages. Tiny models only."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from robust_utils import explanations as E
from robust_utils import voice as V
from robust_utils.models import C3LTClassifier, PreActResNet

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(1)
    m = PreActResNet(widths=(4, 8, 8), blocks_per_stage=(1, 1, 1), input_size=16)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


@pytest.fixture(scope="module")
def x16():  # five images (seed 2), not conftest's four
    torch.manual_seed(2)
    return torch.rand(5, 1, 16, 16)


@pytest.fixture(scope="module")
def one_direction(conv_gap_linear):
    """Only class 0's logit depends on the input (y_0 = w . s(A) > 0, y_c = 0 otherwise), so P = 0
    and d CE(y, Q) / d A = p_0 w . ds/dA for every Q != 0: all contrastive maps but P's coincide."""
    torch.manual_seed(4)
    m = conv_gap_linear(k=3, classes=5)
    with torch.no_grad():
        m.conv.weight.uniform_(0.1, 1.0)
        m.conv.bias.fill_(0.1)
        m.fc.weight.zero_()
        m.fc.weight[0] = torch.tensor([0.5, 1.0, 2.0])
        m.fc.bias.zero_()
    return m.eval()


def _hooks_empty(model):
    return all(len(m._forward_hooks) == 0 and len(m._backward_hooks) == 0 for m in model.modules())


# --- agreement with the explanations module --------------------------------------------------
@pytest.mark.parametrize("which,layer", [("c3lt", None), ("resnet", "stages.2.0.conv1")])
def test_contrast_maps_equal_contrast_cam(which, layer, request, x16):
    model = request.getfixturevalue(which)
    maps = V.contrastive_maps(model, x16, layer=layer)
    assert maps.shape == (5, 10, 16, 16)
    for q in range(10):
        ref = E.normalize_maps(E.contrast_cam(model, x16, contrast=q, layer=layer))
        torch.testing.assert_close(maps[:, q], ref, atol=1e-5, rtol=0)
    assert _hooks_empty(model)


def test_explanations_equal_grad_cam_and_grad_cam_plus_plus(c3lt, x16):
    out = V.voice(c3lt, x16)
    torch.testing.assert_close(out["explanation"], E.grad_cam(c3lt, x16), atol=1e-6, rtol=0)
    torch.testing.assert_close(out["prediction"], c3lt(x16).argmax(1))
    out = V.voice(c3lt, x16, method="grad_cam_plus_plus", layer="conv1")
    torch.testing.assert_close(out["explanation"], E.grad_cam_plus_plus(c3lt, x16, layer="conv1"),
                               atol=1e-6, rtol=0)


def test_contrastive_grad_cam_plus_plus_closed_form(tiny, x16):
    # conv -> GAP -> linear: g = (p - e_Q)^T W / hw is spatially constant, so
    # a = g^2 / (2 g^2 + sum(A) g^3 + eps), w_k = hw * a * relu(g), map = relu(sum_k w_k A_k).
    a = tiny.conv(x16).detach()
    hw = a.shape[-2] * a.shape[-1]
    p = tiny(x16).softmax(1).detach()
    maps = V.contrastive_maps(tiny, x16, method="grad_cam_plus_plus")
    for q in range(4):
        g = (p - F.one_hot(torch.tensor(q), 4).float()) @ tiny.fc.weight.detach() / hw   # (N, K)
        s = a.sum(dim=(2, 3))
        alpha = g ** 2 / (2 * g ** 2 + s * g ** 3 + 1e-6)
        weights = hw * alpha * F.relu(g)
        raw = F.relu(torch.einsum("nk,nkhw->nhw", weights, a))
        up = F.interpolate(raw[:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
        torch.testing.assert_close(maps[:, q], E.normalize_maps(up), atol=1e-5, rtol=0)


def test_contrastive_grad_cam_plus_plus_matches_pytorch_grad_cam(c3lt, x16):
    pgc = pytest.importorskip("pytorch_grad_cam")

    class CrossEntropyTarget:
        """pytorch-grad-cam target whose backward signal is CE(logits, Q)."""

        def __init__(self, q):
            self.q = q

        def __call__(self, out):
            out = out if out.dim() == 2 else out[None]
            return F.cross_entropy(out, torch.full((out.shape[0],), self.q)).sum()

    maps = V.contrastive_maps(c3lt, x16, method="grad_cam_plus_plus")
    for q in (0, 3, 7):
        with pgc.GradCAMPlusPlus(model=c3lt, target_layers=[c3lt.conv2]) as cam:
            ref = torch.from_numpy(cam(x16, targets=[CrossEntropyTarget(q)] * len(x16)))
        torch.testing.assert_close(maps[:, q], ref, atol=1e-4, rtol=0)


# --- the variance --------------------------------------------------------------------------
def test_uncertainty_is_normalised_variance_over_contrast_classes_except_prediction(resnet, x16):
    out = V.voice(resnet, x16)
    pred = resnet(x16).argmax(1)
    for i in range(len(x16)):
        others = [q for q in range(10) if q != int(pred[i])]
        stack = torch.stack([E.contrast_cam(resnet, x16[i:i + 1], contrast=q)[0] for q in others])
        ref = E.normalize_maps(stack.var(0, correction=0)[None])[0]
        torch.testing.assert_close(out["uncertainty"][i], ref, atol=1e-4, rtol=0)


def test_identical_contrast_maps_give_zero_uncertainty(one_direction, x16):
    out = V.voice(one_direction, x16)
    assert (out["prediction"] == 0).all()
    maps = out["contrast_maps"]
    # the maps of Q != P coincide (and are not trivial), the map of Q = P differs
    assert torch.equal(maps[:, 1:], maps[:, 1:2].expand_as(maps[:, 1:]))
    assert maps[:, 1].amax(dim=(1, 2)).min() == 1.0
    assert not torch.allclose(maps[:, 0], maps[:, 1])
    assert torch.equal(out["uncertainty"], torch.zeros_like(out["uncertainty"]))
    assert torch.isfinite(out["uncertainty"]).all()
    assert torch.equal(V.voice_snr(out["uncertainty"]), torch.zeros(5))
    assert torch.equal(V.voice_iou(out["explanation"], out["uncertainty"]), torch.zeros(5))


def test_output_shapes_ranges_and_batching(c3lt, x16):
    out = V.voice(c3lt, x16, batch_size=256)
    assert set(out) == {"prediction", "explanation", "uncertainty", "contrast_maps"}
    assert out["prediction"].shape == (5,) and out["prediction"].dtype == torch.long
    assert out["explanation"].shape == out["uncertainty"].shape == (5, 16, 16)
    assert out["contrast_maps"].shape == (5, 10, 16, 16)
    for k in ("explanation", "uncertainty", "contrast_maps"):
        assert out[k].min() >= 0 and out[k].max() <= 1
    assert (out["uncertainty"].amax(dim=(1, 2)) == 1).all()       # c3lt maps do disagree
    small = V.voice(c3lt, x16, batch_size=2)
    for k in out:
        torch.testing.assert_close(small[k], out[k], atol=1e-6, rtol=0)
    one = V.voice(c3lt, x16[:1])
    assert one["uncertainty"].shape == (1, 16, 16) and one["contrast_maps"].shape == (1, 10, 16, 16)
    torch.testing.assert_close(one["uncertainty"], out["uncertainty"][:1], atol=1e-6, rtol=0)
    assert V.voice_iou(one["explanation"], one["uncertainty"]).shape == (1,)
    assert V.voice_snr(one["uncertainty"]).shape == (1,)


def test_looped_backward_fallback_gives_the_same_maps(c3lt, x16, monkeypatch):
    batched = V.contrastive_maps(c3lt, x16, method="grad_cam_plus_plus")

    def no_vmap(logits, a, v):
        return V._looped_vjp(logits, a, v)

    monkeypatch.setattr(V, "_batched_vjp", no_vmap)
    torch.testing.assert_close(V.contrastive_maps(c3lt, x16, method="grad_cam_plus_plus"), batched,
                               atol=1e-6, rtol=0)


# --- IoU and SNR by hand ------------------------------------------------------------------
def test_iou_by_hand():
    e = torch.tensor([[[0.0, 0.5], [0.2, 0.05]],
                      [[0.0, 0.1], [0.05, 0.0]],       # nothing above 0.1 (0.1 is not > 0.1)
                      [[0.9, 0.0], [0.0, 0.3]]])
    u = torch.tensor([[[0.3, 0.6], [0.05, 0.0]],
                      [[0.0, 0.0], [0.0, 0.1]],
                      [[0.9, 0.0], [0.0, 0.3]]])
    # image 0: E = {(0,1), (1,0)}, U = {(0,0), (0,1)} -> 1 / 3; image 1: both empty -> 0; image 2: 1
    torch.testing.assert_close(V.voice_iou(e, u), torch.tensor([1 / 3, 0.0, 1.0]))
    # a lower threshold: image 1 has E = {(0,1), (1,0)}, U = {(1,1)} -> 0
    torch.testing.assert_close(V.voice_iou(e, u, threshold=0.01)[1], torch.tensor(0.0))


def test_snr_by_hand():
    u = torch.tensor([[[0.0, 1.0], [0.0, 1.0]],       # mean 0.5, std 0.5 -> 1
                      [[0.0, 0.0], [0.0, 3.0]],       # mean 0.75, std sqrt(27)/4 -> 1/sqrt(3)
                      [[0.4, 0.4], [0.4, 0.4]]])      # std 0 -> 0
    torch.testing.assert_close(V.voice_snr(u), torch.tensor([1.0, 3 ** -0.5, 0.0]))


# --- errors ------------------------------------------------------------------------------
def test_bad_inputs(c3lt, x16):
    with pytest.raises(ValueError, match="unsqueeze"):
        V.voice(c3lt, x16[0])
    with pytest.raises(TypeError, match="torch.Tensor"):
        V.contrastive_maps(c3lt, x16.numpy())
    with pytest.raises(ValueError, match="unknown VOICE method"):
        V.voice(c3lt, x16, method="gradcam")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        V.voice(c3lt, x16, batch_size=0)
    with pytest.raises(ValueError, match="unknown layer"):
        V.voice(c3lt, x16, layer="nope")
    c3lt.train()
    try:
        with pytest.raises(RuntimeError, match="model.eval"):
            V.voice(c3lt, x16)
    finally:
        c3lt.eval()
    assert _hooks_empty(c3lt)


def test_models_without_convolutions_or_with_two_classes(x16, conv_gap_linear):
    from robust_utils.models import MLP

    mlp = MLP(in_features=256, hidden=(8,)).eval()
    with pytest.raises(ValueError, match="no convolution layers"):
        V.voice(mlp, x16)
    two = conv_gap_linear(classes=2).eval()
    with pytest.raises(ValueError, match="at least 3 classes"):
        V.voice(two, x16)
    assert V.contrastive_maps(two, x16).shape == (5, 2, 16, 16)


def test_iou_and_snr_bad_inputs():
    m = torch.rand(2, 4, 4)
    with pytest.raises(ValueError, match="same shape"):
        V.voice_iou(m, torch.rand(2, 4, 5))
    with pytest.raises(ValueError, match=r"\(N, H, W\).*unsqueeze"):
        V.voice_iou(m[0], m[0])
    with pytest.raises(ValueError, match="threshold must lie in"):
        V.voice_iou(m, m, threshold=1.5)
    with pytest.raises(TypeError, match="floating-point"):
        V.voice_snr(torch.ones(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        V.voice_snr(torch.full((1, 2, 2), float("nan")))
    with pytest.raises(TypeError, match="torch.Tensor"):
        V.voice_snr([[0.0]])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_model_cpu_images(x16):
    torch.manual_seed(0)
    model = C3LTClassifier(input_size=16).eval()
    cpu = V.voice(model, x16)
    gpu = V.voice(model.cuda(), x16)
    assert gpu["uncertainty"].device == x16.device
    torch.testing.assert_close(gpu["uncertainty"], cpu["uncertainty"], atol=1e-3, rtol=0)


def test_layer_followed_by_inplace_relu_and_dtype_and_dropout_checks(x16):
    """A conv + BatchNorm + ReLU(inplace=True) stack used to fail with the in-place leaf error."""
    import copy

    torch.manual_seed(9)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
                          nn.Conv2d(4, 4, 3), nn.ReLU(inplace=True), nn.Dropout(0.5),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)).eval()
    ref = copy.deepcopy(model)
    for mod in ref.modules():
        if hasattr(mod, "inplace"):
            mod.inplace = False
    for layer in ("0", "1", "3"):
        got, want = V.voice(model, x16, layer=layer), V.voice(ref, x16, layer=layer)
        for key in ("contrast_maps", "explanation", "uncertainty"):
            torch.testing.assert_close(got[key], want[key], atol=1e-6, rtol=0)
        torch.testing.assert_close(got["contrast_maps"][:, 2],
                                   E.contrast_cam(ref, x16, 2, layer=layer), atol=1e-5, rtol=0)
    with pytest.raises(TypeError, match=r"x has dtype torch.float64.*x\.float\(\)"):
        V.voice(model, x16.double())
    model[5].train()                                  # dropout left in training mode
    with pytest.raises(RuntimeError, match=r"training mode \(5\).*call model\.eval\(\)"):
        V.contrastive_maps(model, x16)
    assert _hooks_empty(model)


def test_voice_range_and_progress_flag(c3lt, x16):
    with pytest.raises(ValueError, match=r"must lie in \[0.0, 1.0\]"):
        V.voice(c3lt, x16 * 255)
    with pytest.raises(ValueError, match=r"must lie in \[0.0, 1.0\]"):
        V.contrastive_maps(c3lt, x16 * 255)
    assert V.contrastive_maps(c3lt, x16 * 255, value_range=None).shape[:2] == (5, 10)
    with pytest.raises(TypeError, match="progress must be True or False"):
        V.voice(c3lt, x16, progress="no")
