"""Test-time augmentation: views with known answers, the pooled prediction, agreement with ttach."""
import math

import pytest
import torch
from torch import nn

from robust_utils import tta
from robust_utils.metrics import score_direction


def _grid():
    return torch.arange(1.0, 10.0).view(1, 1, 3, 3)  # 1 2 3 / 4 5 6 / 7 8 9


def test_shift_by_hand():
    x = _grid()
    down = tta.shift(x, 1, 0)
    assert down[0, 0].tolist() == [[0, 0, 0], [1, 2, 3], [4, 5, 6]]
    left = tta.shift(x, 0, -1, fill=-1.0)
    assert left[0, 0].tolist() == [[2, 3, -1], [5, 6, -1], [8, 9, -1]]
    diag = tta.shift(x, -1, 1)
    assert diag[0, 0].tolist() == [[0, 4, 5], [0, 7, 8], [0, 0, 0]]
    assert torch.equal(tta.shift(x, 0, 0), x)
    assert torch.equal(tta.shift(x, 3, 0), torch.zeros_like(x))  # moved out entirely
    assert torch.equal(tta.shift(x, 0, -5, fill=2.0), torch.full_like(x, 2.0))


def test_hflip_and_its_inverse():
    x = _grid()
    assert tta.hflip(x)[0, 0, 0].tolist() == [3, 2, 1]
    assert torch.equal(tta.hflip(tta.hflip(x)), x)


def test_bad_shift_and_image_inputs():
    with pytest.raises(TypeError, match="whole number of pixels"):
        tta.shift(_grid(), 1.5, 0)
    with pytest.raises(TypeError, match="whole number of pixels"):
        tta.shift(_grid(), True, 0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        tta.hflip(torch.zeros(3, 3))


def test_random_shift_is_seeded_and_each_image_is_a_shift_of_its_own():
    x = torch.rand(40, 1, 6, 6)
    a, d = tta.random_shift(x, max_pixels=2, seed=3)
    b, d2 = tta.random_shift(x, max_pixels=2, seed=3)
    assert torch.equal(a, b) and torch.equal(d, d2) and d.shape == (40, 2)
    assert int(d.abs().max()) <= 2 and len({tuple(v) for v in d.tolist()}) > 5
    for i in range(len(x)):
        assert torch.equal(a[i:i + 1], tta.shift(x[i:i + 1], int(d[i, 0]), int(d[i, 1])))
    same, _ = tta.random_shift(x, max_pixels=0)
    assert torch.equal(same, x)


def test_standard_views():
    names = {k: [v.name for v in tta.standard_views(k)] for k in tta.VIEW_SETS}
    assert names["identity"] == ["identity"]
    assert names["flip"] == ["identity", "mirror"]
    assert names["shifts"] == ["identity", "shift 1 px up", "shift 1 px down", "shift 1 px left",
                               "shift 1 px right"]
    assert len(names["shifts+flip"]) == 6
    assert tta.standard_views("shifts", pixels=2)[2].name == "shift 2 px down"
    with pytest.raises(ValueError, match="view set"):
        tta.standard_views("rotations")
    with pytest.raises(ValueError):
        tta.standard_views("shifts", pixels=0)


def test_view_checks_its_output_and_its_fields():
    crop = tta.View("crop", lambda x: x[..., 1:, 1:])
    with pytest.raises(ValueError, match="input's shape"):
        crop(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="non-empty name"):
        tta.View(" ", lambda x: x)
    with pytest.raises(TypeError, match="callable"):
        tta.View("x", 3)


class _OnePixel(nn.Module):
    """Logits (0, 4 * x[0, 0, 1, 1]): a model that reads the centre pixel only."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(4.0))

    def forward(self, x):
        c = x[:, 0, 1, 1]
        return torch.stack([torch.zeros_like(c), self.w * c], 1)


def test_tta_decomposition_by_hand():
    # The centre pixel is 1; shifted right by one pixel, the centre shows the (empty) left column.
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 1, 1] = 1.0
    views = [tta.View("identity", lambda v: v), tta.View("right", lambda v: tta.shift(v, 0, 1))]
    out = tta.tta_predict(_OnePixel(), x, views)
    p1 = torch.softmax(torch.tensor([0.0, 4.0]), 0)
    p2 = torch.tensor([0.5, 0.5])
    mean = (p1 + p2) / 2
    h = lambda p: float(-(p * p.log()).sum())  # noqa: E731
    assert out["probs"].shape == (2, 1, 2)
    assert torch.allclose(out["mean_probs"][0], mean, atol=1e-6)
    assert out["predictive"].item() == pytest.approx(h(mean), abs=1e-6)
    assert out["aleatoric"].item() == pytest.approx((h(p1) + math.log(2)) / 2, abs=1e-6)
    assert out["epistemic"].item() == pytest.approx(h(mean) - (h(p1) + math.log(2)) / 2, abs=1e-6)
    assert out["prediction"].item() == 1
    assert score_direction(tta.tta_predict) == "more uncertain"


class _MeanInk(nn.Module):
    """Logits from the mean pixel: unchanged by mirroring and by shifts of an image with an empty border."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 3)

    def forward(self, x):
        return self.lin(x.mean((1, 2, 3)).unsqueeze(1))


def test_identity_view_is_the_plain_prediction_and_invariance_means_no_disagreement():
    torch.manual_seed(0)
    model = _MeanInk()
    x = torch.zeros(5, 1, 8, 8)
    x[:, :, 2:6, 2:6] = torch.rand(5, 1, 4, 4)
    model.train()
    plain = tta.tta_probs(model, x, tta.standard_views("identity"))
    assert model.training  # mode restored
    assert torch.allclose(plain[0], model.eval()(x).softmax(-1), atol=1e-6)
    out = tta.tta_predict(model, x, tta.standard_views("shifts+flip"), batch_size=2)
    assert out["probs"].shape == (6, 5, 3)
    assert torch.allclose(out["epistemic"], torch.zeros(5), atol=1e-6)


def test_agrees_with_ttach():
    ttach = pytest.importorskip("ttach")
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    x = torch.rand(7, 1, 8, 8)
    ours = tta.tta_predict(net, x, tta.standard_views("flip"))["mean_probs"]
    wrapped = ttach.ClassificationTTAWrapper(nn.Sequential(net, nn.Softmax(-1)),
                                             ttach.Compose([ttach.HorizontalFlip()]), merge_mode="mean")
    with torch.no_grad():
        theirs = wrapped(x)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_bad_views_and_models():
    x = torch.rand(2, 1, 4, 4)
    net = _MeanInk()
    with pytest.raises(ValueError, match="non-empty list"):
        tta.tta_probs(net, x, [])
    with pytest.raises(TypeError, match="wrap a single view"):
        tta.tta_probs(net, x, tta.View("identity", lambda v: v))
    with pytest.raises(TypeError, match="View objects"):
        tta.tta_probs(net, x, [lambda v: v])
    with pytest.raises(ValueError, match="distinct"):
        tta.tta_probs(net, x, [tta.View("a", lambda v: v), tta.View("a", tta.hflip)])
    with pytest.raises(TypeError, match="nn.Module"):
        tta.tta_probs(lambda v: v, x, tta.standard_views())
    with pytest.raises(ValueError, match="must lie in"):
        tta.tta_probs(net, 255 * x + 2, tta.standard_views())
