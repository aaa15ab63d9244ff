"""CausalCAM: the fuzzy set difference by hand, agreement with the package's CAMs, bad inputs;
the structure-wise bit ratio at equal accuracy by hand."""
import math

import pytest
import torch

from robust_utils import causalcam, explanations, models, structure
from robust_utils.interventions import InterventionResult


def test_causal_from_maps_by_hand():
    g = torch.tensor([[[1.0, 0.5], [0.2, 0.0]]])                       # Grad-CAM of P = 0
    c = torch.zeros(3, 1, 2, 2)
    c[0] = 7.0                                                          # P's own row: ignored
    c[1] = torch.tensor([[0.0, 0.0], [1.8, 0.0]])                       # raw maps; joint maximum 2
    c[2] = torch.tensor([[0.5, 0.0], [0.0, 2.0]])
    # context = max(c1, c2) / 2 = [[.25, 0], [.9, 1]]; min(g, 1 - context) = [[.75, .5], [.1, 0]]
    got = causalcam.causal_from_maps(g, c, 0)
    assert torch.allclose(got, torch.tensor([[[0.75, 0.5], [0.1, 0.0]]]) / 0.75)   # min-max normalised
    # joint scaling: a contrast twice as strong everywhere removes the same; one alone is scaled to 1
    assert torch.allclose(causalcam.causal_from_maps(g, 3 * c, 0), got)
    # with P = 1, the row of class 1 is ignored and class 0 (uniform) removes everything: a flat map
    assert torch.equal(causalcam.causal_from_maps(g, c, [1]), torch.zeros_like(g))


def test_causal_cam_combines_the_package_maps():
    torch.manual_seed(0)
    m = models.build_model("c3lt_cnn").eval()
    x = torch.rand(3, 1, 28, 28)
    out = causalcam.causal_cam(m, x)
    assert out.shape == (3, 28, 28) and float(out.min()) >= 0 and float(out.max()) <= 1
    p = m(x).argmax(1)
    g = explanations.grad_cam(m, x)
    cs = torch.stack([explanations.contrast_cam(m, x, contrast=q, normalize=False) for q in range(10)])
    assert torch.allclose(out, causalcam.causal_from_maps(g, cs, p), atol=1e-6)
    # where Grad-CAM is empty, CausalCAM is too (it only removes evidence)
    assert bool(((g.flatten(1).amax(1) == 0) <= (out.flatten(1).amax(1) == 0)).all())
    assert torch.equal(causalcam.causal_cam(m, x, target=p), out)
    with pytest.raises(ValueError, match="predicted class only"):
        causalcam.causal_cam(m, x, target=(p + 1) % 10)


def test_causal_from_maps_bad_inputs():
    g = torch.rand(2, 4, 4)
    with pytest.raises(ValueError, match=r"\(C, N, H, W\)"):
        causalcam.causal_from_maps(g, torch.rand(2, 4, 4), 0)
    with pytest.raises(ValueError, match=r"must be \(C, \*gradcam.shape\)"):
        causalcam.causal_from_maps(g, torch.rand(3, 2, 4, 5), 0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        causalcam.causal_from_maps(2 * g + 1.5, torch.rand(3, 2, 4, 4), 0)
    with pytest.raises(ValueError, match="non-negative"):
        causalcam.causal_from_maps(g, torch.rand(3, 2, 4, 4) - 0.5, 0)


def _curve(ratios, accs):
    r = torch.tensor(ratios, dtype=torch.float64)
    return InterventionResult("structure_insertion", True, torch.zeros(1),
                              extra={"mean_bit_ratio": r, "accuracy": torch.tensor(accs, dtype=torch.float64)})


def test_bit_ratio_at_accuracy_by_hand():
    c = _curve([1.0, 0.6, 0.2, 0.0], [0.9, 0.8, 0.4, 0.1])            # thresholds 0 .. 1
    assert structure.bit_ratio_at_accuracy(c, 0.6) == pytest.approx(0.4)   # between (0.2, .4) and (0.6, .8)
    assert structure.bit_ratio_at_accuracy(c, 0.8) == pytest.approx(0.6)
    assert structure.bit_ratio_at_accuracy(c, 0.05) == 0.0
    assert math.isnan(structure.bit_ratio_at_accuracy(c, 0.95))
    unsorted = _curve([0.2, 1.0, 0.0, 0.6], [0.4, 0.9, 0.1, 0.8])    # thresholds need not be in bit order
    assert structure.bit_ratio_at_accuracy(unsorted, 0.6) == pytest.approx(0.4)
    with pytest.raises(TypeError, match="structure_insertion"):
        structure.bit_ratio_at_accuracy(InterventionResult("deletion", False, torch.zeros(1)), 0.5)
    deletion = InterventionResult("structure_deletion", False, torch.zeros(1), extra=dict(c.extra))
    with pytest.raises(ValueError, match="after deleting"):
        structure.bit_ratio_at_accuracy(deletion, 0.5)
    with pytest.raises(ValueError, match="NaN"):
        structure.bit_ratio_at_accuracy(_curve([1.0, 0.5], [0.9, float("nan")]), 0.5)
    with pytest.raises(ValueError):
        structure.bit_ratio_at_accuracy(c, 1.5)
