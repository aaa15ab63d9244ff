"""Tests of robust_utils.uncertainty: tiny synthetic data and tiny models only."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from robust_utils import uncertainty as U
from robust_utils.metrics import score_direction
from robust_utils.models import build_model

# ---------------------------------------------------------------------------------------------
# helpers (make_mlp and images come from conftest.py)
# ---------------------------------------------------------------------------------------------
def _dirichlet(t: int, n: int, c: int, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.distributions.Dirichlet(torch.full((c,), 0.7)).sample((t, n))


# ---------------------------------------------------------------------------------------------
# entropy and decomposition
# ---------------------------------------------------------------------------------------------
def test_entropy_uniform_is_log_c_and_one_hot_is_zero():
    for c in (2, 5, 10):
        assert float(U.entropy(torch.full((1, c), 1.0 / c))) == pytest.approx(math.log(c), rel=1e-6)
    assert float(U.entropy(torch.tensor([1.0, 0.0, 0.0]))) == 0.0  # 0 log 0 = 0, no NaN


def test_entropy_dim_and_bad_inputs():
    p = _dirichlet(1, 6, 4)[0]
    torch.testing.assert_close(U.entropy(p.T, dim=0), U.entropy(p))
    with pytest.raises(ValueError, match="softmax"):
        U.entropy(torch.tensor([[2.0, -1.0]]))
    with pytest.raises(ValueError, match="out of range"):
        U.entropy(p, dim=2)
    with pytest.raises(TypeError, match="torch.Tensor"):
        U.entropy([0.5, 0.5])


def test_decomposition_identity_on_dirichlet_samples():
    p = _dirichlet(7, 50, 6)
    d = U.decompose_uncertainty(p)
    torch.testing.assert_close(d["predictive"], d["aleatoric"] + d["epistemic"], atol=1e-6, rtol=0)
    assert (d["epistemic"] >= 0).all() and (d["epistemic"] > 1e-3).any()
    torch.testing.assert_close(d["mean_probs"], p.mean(0))
    assert torch.equal(d["prediction"], p.mean(0).argmax(1))
    assert (d["predictive"] <= math.log(6) + 1e-6).all()


def test_identical_passes_have_zero_epistemic():
    p = _dirichlet(1, 20, 5).expand(8, 20, 5).contiguous()
    d = U.decompose_uncertainty(p)
    torch.testing.assert_close(d["epistemic"], torch.zeros(20), atol=1e-6, rtol=0)
    torch.testing.assert_close(d["predictive"], d["aleatoric"])


def test_decomposition_hand_case():
    # two confident passes that disagree: no aleatoric, all epistemic
    p = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    d = U.decompose_uncertainty(p)
    assert float(d["predictive"]) == pytest.approx(math.log(2))
    assert float(d["aleatoric"]) == pytest.approx(0.0, abs=1e-7)
    assert float(d["epistemic"]) == pytest.approx(math.log(2))
    # two uniform passes: all aleatoric
    d = U.decompose_uncertainty(torch.full((2, 1, 2), 0.5))
    assert float(d["aleatoric"]) == pytest.approx(math.log(2))
    assert float(d["epistemic"]) == pytest.approx(0.0, abs=1e-7)


def test_decomposition_bad_inputs():
    with pytest.raises(ValueError, match=r"\(T, N, C\).*unsqueeze"):
        U.decompose_uncertainty(torch.full((3, 2), 0.5))
    with pytest.raises(ValueError, match="sum to 1"):
        U.decompose_uncertainty(torch.ones(2, 3, 4))
    with pytest.raises(ValueError, match="T >= 1"):
        U.decompose_uncertainty(torch.ones(0, 3, 4))


# ---------------------------------------------------------------------------------------------
# MC dropout
# ---------------------------------------------------------------------------------------------
def test_mc_dropout_deterministic_and_passes_differ(make_mlp, images):
    m = make_mlp()
    state = torch.get_rng_state()
    a = U.mc_dropout_probs(m, images, n_samples=6, seed=3)
    assert torch.equal(torch.get_rng_state(), state), "the global RNG must be left untouched"
    b = U.mc_dropout_probs(m, images, n_samples=6, seed=3)
    c = U.mc_dropout_probs(m, images, n_samples=6, seed=4)
    assert a.shape == (6, 12, 4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert (a[0] - a[1]).abs().max() > 1e-3
    torch.testing.assert_close(a.sum(-1), torch.ones(6, 12))
    d = U.mc_dropout(m, images, n_samples=6, seed=3)
    torch.testing.assert_close(d["mean_probs"], a.mean(0))
    assert (d["epistemic"] > 0).all()


def test_mc_dropout_restores_modes_and_rates(make_mlp, images):
    m = make_mlp(dropout=0.3)
    m.train()
    m.body[0].eval()  # a mixed state must come back exactly
    modes = {name: mod.training for name, mod in m.named_modules()}
    U.mc_dropout_probs(m, images, n_samples=2, dropout_rate=0.6)
    assert {name: mod.training for name, mod in m.named_modules()} == modes
    assert m.body[2].p == 0.3
    # ... also when the forward pass raises
    m.eval()
    bad = torch.rand(2, 1, 10, 10)  # the model expects 8x8 images
    with pytest.raises(ValueError, match="8x8"):
        U.mc_dropout_probs(m, bad, n_samples=2, dropout_rate=0.6)
    assert not any(mod.training for mod in m.modules())
    assert m.body[2].p == 0.3


def test_mc_dropout_rate_zero_gives_identical_passes(make_mlp, images):
    d = U.mc_dropout(make_mlp(), images, n_samples=4, dropout_rate=0.0)
    torch.testing.assert_close(d["epistemic"], torch.zeros(12), atol=1e-6, rtol=0)


def test_mc_dropout_matches_eval_mean_only_with_dropout(make_mlp, images):
    # with dropout on, the mean of passes is not the deterministic output (passes are random)
    m = make_mlp(dropout=0.5)
    det = m(images).softmax(-1)
    mc = U.mc_dropout(m, images, n_samples=3)["mean_probs"]
    assert (det - mc).abs().max() > 1e-4


def test_mc_dropout_bad_inputs(make_mlp, images):
    with pytest.raises(ValueError, match="MC dropout needs a network trained with dropout"):
        U.mc_dropout_probs(make_mlp(dropout=0.0), images)
    with pytest.raises(ValueError, match="dropout_rate must be < 1"):
        U.mc_dropout_probs(make_mlp(), images, dropout_rate=1.0)
    with pytest.raises(ValueError, match="n_samples"):
        U.mc_dropout_probs(make_mlp(), images, n_samples=0)
    with pytest.raises(ValueError, match="seed"):
        U.mc_dropout_probs(make_mlp(), images, seed=-1)
    with pytest.raises(TypeError, match="seed"):
        U.mc_dropout_probs(make_mlp(), images, seed=1.5)
    with pytest.raises(ValueError, match="must lie in"):
        U.mc_dropout_probs(make_mlp(), images * 255)


# ---------------------------------------------------------------------------------------------
# Ensembles and confidence gap
# ---------------------------------------------------------------------------------------------
def test_ensemble_of_copies_has_zero_epistemic(make_mlp, images):
    m = make_mlp()
    d = U.ensemble_uncertainty([m, copy.deepcopy(m), copy.deepcopy(m)], images)
    torch.testing.assert_close(d["epistemic"], torch.zeros(12), atol=1e-6, rtol=0)
    torch.testing.assert_close(d["mean_probs"], m(images).softmax(-1), atol=1e-6, rtol=0)


def test_ensemble_of_different_members(make_mlp, images):
    members = [make_mlp(seed=s) for s in range(3)]
    members[1].train()
    p = U.ensemble_probs(members, images)
    assert p.shape == (3, 12, 4)
    assert members[1].training and not members[0].training  # modes restored
    torch.testing.assert_close(p[1], members[1].eval()(images).softmax(-1))
    assert (U.ensemble_uncertainty(members, images)["epistemic"] > 0).all()


def test_ensemble_bad_inputs(make_mlp, images):
    with pytest.raises(ValueError, match="same classes"):
        U.ensemble_probs([make_mlp(num_classes=4), make_mlp(num_classes=3)], images)
    with pytest.raises(TypeError, match=r"\[model\]"):
        U.ensemble_probs(make_mlp(), images)
    with pytest.raises(ValueError, match="empty"):
        U.ensemble_probs([], images)


def test_confidence_gap_hand_case():
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    labels = torch.tensor([0, 1, 1, 1])  # accuracy 2/4, mean confidence 0.75
    assert U.confidence_gap(probs, labels) == pytest.approx(0.25)
    assert U.confidence_gap(torch.tensor([[1.0, 0.0]]), torch.tensor([0])) == 0.0
    with pytest.raises(ValueError, match="one label per image"):
        U.confidence_gap(probs, labels[:3])




@pytest.mark.parametrize("rate", [None, 0.3])
def test_mc_dropout_fast_path_equals_full_passes(images, rate):
    """The C3LT CNN's trunk-once fast path gives the very numbers of T full forward passes."""
    torch.manual_seed(0)
    fast = build_model("c3lt_cnn", num_classes=4).eval()
    assert fast.dropout_before_head
    slow = copy.deepcopy(fast)
    slow.dropout_before_head = False  # forces T full passes
    x = torch.rand(10, 1, 28, 28)
    a = U.mc_dropout_probs(fast, x, n_samples=5, seed=2, batch_size=4, dropout_rate=rate)
    b = U.mc_dropout_probs(slow, x, n_samples=5, seed=2, batch_size=4, dropout_rate=rate)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not fast.training and not fast.dropout.training and fast.dropout.p == 0.5


# ---------------------------------------------------------------------------------------------
# the (T, N, C) layout, shared seed check, directions
# ---------------------------------------------------------------------------------------------
def test_decompose_rejects_inputs_first_stack_when_n_is_given():
    p = _dirichlet(5, 7, 3)                      # (T=5, N=7, C=3)
    ok = U.decompose_uncertainty(p, n=7)
    assert ok["predictive"].shape == (7,)
    with pytest.raises(ValueError, match=r"looks like \(N, T, C\).*transpose\(0, 1\)"):
        U.decompose_uncertainty(p.transpose(0, 1), n=7)
    with pytest.raises(ValueError, match="N = n = 4"):
        U.decompose_uncertainty(p, n=4)
    with pytest.raises(TypeError, match="floating-point"):
        U.decompose_uncertainty(torch.ones(2, 3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        U.decompose_uncertainty(torch.full((2, 3, 2), float("nan")))


def test_mc_dropout_and_ensemble_return_one_value_per_input(make_mlp, images):
    m = make_mlp()
    assert U.mc_dropout(m, images, n_samples=3)["epistemic"].shape == (12,)
    assert U.ensemble_uncertainty([m, make_mlp(seed=1)], images)["epistemic"].shape == (12,)


def test_mc_dropout_seed_accepts_numpy_ints(make_mlp, images):
    a = U.mc_dropout_probs(make_mlp(), images, n_samples=2, seed=np.int64(3))
    b = U.mc_dropout_probs(make_mlp(), images, n_samples=2, seed=3)
    torch.testing.assert_close(a, b)
    assert U.entropy(a, dim=np.int64(-1)).shape == (2, 12)


def test_uncertainty_scores_declare_their_direction():
    for fn in (U.entropy, U.decompose_uncertainty, U.mc_dropout, U.ensemble_uncertainty):
        assert score_direction(fn) == "more uncertain"
    assert score_direction(U.confidence_gap) == "more confident"


def test_nan_and_integer_probabilities_get_clear_errors():
    with pytest.raises(ValueError, match="NaN"):
        U.confidence_gap(torch.full((2, 2), float("nan")), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        U.entropy(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(TypeError, match="dtype torch.int64"):
        U.entropy(torch.tensor([[1, 0]]))
