"""Tests of robust_utils.rise: RISE and SHAPE on a model that only looks at one region, the
definition with explicit masks, shared forward passes and the error messages."""
import pytest
import torch
import torch.nn as nn

from robust_utils import rise as I
from robust_utils.models import C3LTClassifier

pytestmark = pytest.mark.usefixtures("one_thread")


class PatchModel(nn.Module):
    """Looks only at the top-left 8x8 patch: logit_1 = 20 * mean(patch) - 10, logit_0 = 0."""

    def forward(self, x):
        z = 20 * x[:, :, :8, :8].mean(dim=(1, 2, 3)) - 10
        return torch.stack([torch.zeros_like(z), z], 1)


def test_rise_masks_deterministic_and_smooth():
    m = I.rise_masks(200, (24, 24), grid=4, p_keep=0.5, seed=0)
    assert m.shape == (200, 24, 24) and float(m.min()) >= 0 and float(m.max()) <= 1
    assert abs(float(m.mean()) - 0.5) < 0.1
    assert torch.equal(m, I.rise_masks(200, (24, 24), grid=4, seed=0))
    assert not torch.equal(m, I.rise_masks(200, (24, 24), grid=4, seed=1))
    assert ((m > 0) & (m < 1)).any()                      # bilinear, not binary


@pytest.mark.parametrize("method", ["rise", "shape"])
def test_rise_and_shape_peak_in_the_region_the_model_looks_at(method):
    fn = getattr(I, method)
    x = torch.ones(2, 1, 24, 24)
    sal = fn(PatchModel().eval(), x, target=1, n_masks=300, grid=4, seed=0)
    assert sal.shape == (2, 24, 24)
    inside, outside = sal[:, :8, :8].mean(), sal[:, 14:, 14:].mean()
    assert inside > outside + 0.1
    for s in sal:
        r, c = divmod(int(s.argmax()), 24)
        assert r < 12 and c < 12
    # Batched over images and masks: the chunking does not change the result.
    again = fn(PatchModel().eval(), x, target=1, n_masks=300, grid=4, seed=0, batch_size=7)
    assert torch.allclose(sal, again, atol=1e-5)
    one = fn(PatchModel().eval(), x[:1], target=1, n_masks=300, grid=4, seed=0)
    assert torch.allclose(sal[:1], one, atol=1e-5)


def test_rise_matches_definition_with_explicit_masks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3)).eval()
    x = torch.rand(2, 1, 6, 6)
    masks = I.rise_masks(50, (6, 6), grid=3, p_keep=0.3, seed=5)
    with torch.no_grad():
        t = model(x).argmax(1)
        p = torch.stack([model(x * mk).softmax(1)[torch.arange(2), t] for mk in masks])   # (M, N)
        p0 = model(x).softmax(1)[torch.arange(2), t]
    rise_ref = torch.einsum("mn,mhw->nhw", p, masks) / (50 * 0.3)
    shape_ref = torch.einsum("mn,mhw->nhw", p0 - p, 1 - masks) / 50 / 0.7
    kw = dict(n_masks=50, grid=3, p_keep=0.3, seed=5)
    assert torch.allclose(I.rise(model, x, **kw), rise_ref, atol=1e-5)
    assert torch.allclose(I.shape(model, x, **kw), shape_ref, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------

def test_rise_bad_inputs_give_clear_errors(c3lt, x16, maps16):
    with pytest.raises(ValueError, match=r"p_keep must lie in \(0.0, 1.0\)"):
        I.rise(c3lt, x16, p_keep=1.0, n_masks=4)
    with pytest.raises(ValueError, match="n_masks must be >= 1"):
        I.shape(c3lt, x16, n_masks=0)
    with pytest.raises(TypeError, match="seed must be a non-negative integer"):
        I.rise(c3lt, x16, n_masks=4, seed=0.5)


def test_rise_and_shape_share_forward_passes():
    torch.manual_seed(0)
    model = C3LTClassifier(num_classes=3).eval()
    x = torch.rand(3, 1, 28, 28)
    r, s = I.rise_and_shape(model, x, n_masks=40, seed=1, batch_size=16)
    torch.testing.assert_close(r, I.rise(model, x, n_masks=40, seed=1, batch_size=16))
    torch.testing.assert_close(s, I.shape(model, x, n_masks=40, seed=1, batch_size=16))


def test_rise_checks_the_pixel_range_unless_told_not_to(c3lt, x16):
    with pytest.raises(ValueError, match=r"\[0.0, 1.0\]|\[0, 1\]"):
        I.rise(c3lt, x16 * 255, n_masks=4)
    sal = I.rise(c3lt, x16 * 2 - 1, n_masks=4, value_range=None)
    assert sal.shape == (x16.shape[0], *x16.shape[-2:]) and torch.isfinite(sal).all()
