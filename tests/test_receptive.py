"""Receptive-field centres (hand-computed and measured by gradients) and aligned CAM upsampling."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robust_utils import explanations as E
from robust_utils import models
from robust_utils import receptive as R


def test_c3lt_cnn_centres_by_hand():
    # conv 5x5 -> first centre 2; max-pool 2 -> 2 + 0.5 = 2.5, stride 2; conv 5x5 -> 2.5 + 2 * 2 = 6.5.
    m = models.C3LTClassifier()
    g = R.cell_geometry(m, "conv2")
    assert g == R.CellGeometry((6.5, 6.5), (2.0, 2.0), (8, 8))
    assert g.centres(0)[-1] == 20.5                      # the 8 x 8 map covers pixels 6.5 .. 20.5
    assert R.cell_geometry(m, "pool1") == R.CellGeometry((2.5, 2.5), (2.0, 2.0), (12, 12))
    assert R.cell_geometry(m, "relu2") == g              # activations do not move centres


class _Chain(nn.Module):
    """A linear chain with padding, stride and dilation: all-ones kernels, no bias, no ReLU."""
    in_channels, input_size = 1, (30, 30)

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.b = nn.Conv2d(2, 2, 3, stride=2, bias=False)
        self.p = nn.AvgPool2d(2)
        self.c = nn.Conv2d(2, 1, 3, dilation=2, padding=1, bias=False)
        for conv in (self.a, self.b, self.c):
            nn.init.ones_(conv.weight)

    def forward(self, x):
        return self.c(self.p(self.b(self.a(x))))


def test_centres_agree_with_the_gradient_centre_of_mass():
    net = _Chain()
    g = R.cell_geometry(net, "c")
    x = torch.zeros(1, 1, 30, 30, requires_grad=True)
    out = net(x)
    assert tuple(out.shape[-2:]) == g.size
    rows, cols = torch.arange(30.0).view(30, 1), torch.arange(30.0).view(1, 30)
    for i, j in ((2, 2), (2, 3), (3, 2)):            # interior cells: their fields are not clipped
        (grad,) = torch.autograd.grad(out[0, 0, i, j], x, retain_graph=True)
        w = grad[0, 0]
        assert float((w * rows).sum() / w.sum()) == pytest.approx(float(g.centres(0)[i]), abs=1e-5)
        assert float((w * cols).sum() / w.sum()) == pytest.approx(float(g.centres(1)[j]), abs=1e-5)


def test_stretch_geometry_reproduces_interpolate():
    maps = torch.rand(3, 8, 8)
    ours = R.aligned_upsample(maps, R.stretch_geometry((8, 8), (28, 28)), 28)
    ref = F.interpolate(maps.unsqueeze(1), size=(28, 28), mode="bilinear", align_corners=False).squeeze(1)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_a_hot_cell_lands_on_its_centre():
    g = R.CellGeometry((6.5, 6.5), (2.0, 2.0), (8, 8))
    maps = torch.zeros(1, 8, 8)
    maps[0, 3, 5] = 1.0                                  # centre: pixel (12.5, 16.5)
    up = R.aligned_upsample(maps, g, (28, 28))[0]
    # pixel 12 sits at fractional cell 2.75, pixel 13 at 3.25: weight 0.75 on cell 3 each; same for 16, 17.
    torch.testing.assert_close(up[12:14, 16:18], torch.full((2, 2), 0.5625))
    assert float(up.max()) == pytest.approx(0.5625)
    assert float(up[:10].abs().max()) == 0.0 and float(up[:, :14].abs().max()) == 0.0
    const = R.aligned_upsample(torch.full((2, 8, 8), 0.3), g, 28)
    torch.testing.assert_close(const, torch.full((2, 28, 28), 0.3))
    # beyond the outermost centres the border value is kept
    ramp = torch.arange(8.0).repeat(8, 1).unsqueeze(0)
    row = R.aligned_upsample(ramp, g, 28)[0, 0]
    assert float(row[0]) == 0.0 and float(row[27]) == 7.0 and float(row[6]) == 0.0 and float(row[21]) == 7.0


def test_grad_cam_aligned_differs_from_the_stretch_only_for_unpadded_networks():
    torch.manual_seed(0)
    c3 = models.C3LTClassifier().eval()
    x = torch.rand(2, 1, 28, 28)
    aligned = E.grad_cam(c3, x, target=1, upsample="aligned", normalize=False)
    raw = E.grad_cam(c3, x, target=1, upsample=False, normalize=False)
    torch.testing.assert_close(aligned, R.aligned_upsample(raw, R.cell_geometry(c3, "conv2"), 28))
    stretched = E.grad_cam(c3, x, target=1, normalize=False)
    assert float((aligned - stretched).abs().max()) > 1e-3
    # a "same"-padded layer whose cells sit where the stretch puts them: the two agree
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 2, stride=2), nn.Flatten(),
                        nn.Linear(4 * 14 * 14, 3)).eval()
    net.in_channels, net.input_size = 1, (28, 28)
    g = R.cell_geometry(net, "2")
    assert g == R.stretch_geometry((14, 14), (28, 28))
    for fn in (E.grad_cam, E.counterfactual_cam, E.grad_cam_plus_plus):
        torch.testing.assert_close(fn(net, x, target=0, layer="2", upsample="aligned"),
                                   fn(net, x, target=0, layer="2"), atol=1e-5, rtol=0)


class _Residual(nn.Module):
    in_channels, input_size = 1, (8, 8)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, stride=2, padding=1)
        self.short = nn.Conv2d(1, 2, 1, stride=2)
        self.out = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        return self.out(self.conv(x) + self.short(x))


def test_bad_inputs_say_what_to_do():
    c3 = models.C3LTClassifier()
    with pytest.raises(ValueError, match="branches"):
        R.cell_geometry(_Residual(), "out")
    with pytest.raises(ValueError, match="unknown layer"):
        R.cell_geometry(c3, "conv9")
    with pytest.raises(TypeError, match="nn.Module"):
        R.cell_geometry("net", "conv2")
    with pytest.raises(ValueError, match="input_size"):
        R.cell_geometry(nn.Sequential(nn.Conv2d(1, 1, 3)), "0")
    g = R.cell_geometry(c3, "conv2")
    with pytest.raises(ValueError, match=r"\(N, h, w\)"):
        R.aligned_upsample(torch.rand(8, 8), g, 28)
    with pytest.raises(ValueError, match="geometry is for a"):
        R.aligned_upsample(torch.rand(1, 6, 6), g, 28)
    with pytest.raises(TypeError, match="CellGeometry"):
        R.aligned_upsample(torch.rand(1, 8, 8), (6.5, 2.0), 28)
    with pytest.raises(ValueError, match="NaN"):
        R.aligned_upsample(torch.full((1, 8, 8), float("nan")), g, 28)
    with pytest.raises(ValueError, match="'aligned'"):
        E.grad_cam(c3.eval(), torch.rand(1, 1, 28, 28), upsample="stretch")
