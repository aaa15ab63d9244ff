"""Per-sample gradients, Fisher information and gradient surprise: known answers and bad inputs."""
import pytest
import torch
from torch import nn

from robust_utils import gradients as G


class LinearSoftmax(nn.Module):
    """logits = head(flatten(x)): the gradient of the loss w.r.t. head.weight is (p - e_y) x^T."""

    def __init__(self, d=4, c=3):
        super().__init__()
        self.head = nn.Linear(d, c)

    def forward(self, x):
        return self.head(x.flatten(1))


def _setup(n=6, seed=0):
    torch.manual_seed(seed)
    m = LinearSoftmax().eval()
    x = torch.rand(n, 1, 2, 2)
    return m, x


def test_matches_analytic_formula():
    m, x = _setup()
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    g = G.per_sample_gradients(m, x, y, mode="given")
    p = m(x).softmax(1).detach()
    e = torch.nn.functional.one_hot(y, 3).float()
    expected_w = (p - e)[:, :, None] * x.flatten(1)[:, None, :]
    torch.testing.assert_close(g["head.weight"], expected_w, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g["head.bias"], p - e, rtol=1e-5, atol=1e-6)


def test_matches_per_sample_loop_for_all_params():
    torch.manual_seed(1)
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).eval()
    x = torch.rand(5, 1, 6, 6)
    g = G.per_sample_gradients(m, x, params="all")
    pred = m(x).argmax(1)
    for i in range(5):
        m.zero_grad()
        torch.nn.functional.cross_entropy(m(x[i:i + 1]), pred[i:i + 1]).backward()
        for name, p in m.named_parameters():
            torch.testing.assert_close(g[name][i], p.grad, rtol=1e-5, atol=1e-6)


def test_predicted_mode_uses_argmax():
    m, x = _setup()
    pred = m(x).argmax(1)
    a = G.per_sample_gradients(m, x)
    b = G.per_sample_gradients(m, x, pred, mode="given")
    torch.testing.assert_close(a["head.weight"], b["head.weight"])


def test_sampled_score_has_zero_mean_in_expectation():
    # E_{y ~ p}[grad log p(y|x)] = 0: averaged over many sampled labels the score vanishes.
    m, x = _setup(n=1)
    xs = x.repeat(4000, 1, 1, 1)
    gen = torch.Generator().manual_seed(0)
    u = G.flatten_gradients(G.per_sample_gradients(m, xs, mode="sampled", generator=gen))
    assert G.score_mean(u).abs().max() < 0.03
    # ... and then E[U U^T] equals Var(U) up to sampling noise
    torch.testing.assert_close(G.empirical_fisher(u), G.empirical_fisher(u, centered=True),
                               rtol=0.05, atol=2e-3)


def test_fisher_known_answer_and_psd():
    u = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 2.0]])
    f = G.empirical_fisher(u)
    # off the diagonal: (1*0 + 0*2 + 1*2) / 3
    torch.testing.assert_close(f, torch.tensor([[2 / 3, 2 / 3], [2 / 3, 8 / 3]]))
    assert torch.linalg.eigvalsh(f).min() >= -1e-6


def test_gradient_norms_batched_equals_unbatched():
    m, x = _setup(n=7)
    a = G.gradient_norms(m, x, batch_size=3)
    b = G.gradient_norms(m, x, batch_size=100)
    torch.testing.assert_close(a, b)
    assert a.shape == (7,) and (a >= 0).all()


def test_layer_gradient_norms_are_squared_norms():
    m, x = _setup(n=4)
    d = G.layer_gradient_norms(m, x, batch_size=3)
    g = G.per_sample_gradients(m, x, params="all")
    torch.testing.assert_close(d["head.weight"], g["head.weight"].flatten(1).pow(2).sum(1))


def test_bad_inputs():
    m, x = _setup()
    with pytest.raises(RuntimeError, match="eval"):
        G.per_sample_gradients(m.train(), x)
    m.eval()
    with pytest.raises(ValueError, match="batch dimension"):
        G.per_sample_gradients(m, x[0])
    with pytest.raises(ValueError, match="unknown parameter"):
        G.per_sample_gradients(m, x, params=["nope"])
    with pytest.raises(ValueError, match="mode='given'"):
        G.per_sample_gradients(m, x, torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match="needs labels"):
        G.per_sample_gradients(m, x, mode="given")
    with pytest.raises(ValueError, match="unknown label mode"):
        G.per_sample_gradients(m, x, mode="oracle")
    with pytest.raises(ValueError, match="one label per image"):
        G.per_sample_gradients(m, x, torch.zeros(2, dtype=torch.long), mode="given")
    with pytest.raises(ValueError, match="flatten_gradients"):
        G.empirical_fisher(torch.zeros(3))
    with pytest.raises(ValueError, match="at least 2"):
        G.empirical_fisher(torch.zeros(1, 3), centered=True)


def test_descent_path_decreases_a_quadratic():
    f = lambda p: (p[..., 0] - 1) ** 2 + 3 * (p[..., 1] + 0.5) ** 2
    path = G.gradient_descent_path(f, (-1.5, 2.0), lr=0.1, steps=60)
    values = torch.stack([f(p) for p in path])
    assert path.shape == (61, 2)
    assert (values[1:] <= values[:-1] + 1e-12).all()
    torch.testing.assert_close(path[-1], torch.tensor([1.0, -0.5], dtype=torch.float64), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="2-D point"):
        G.gradient_descent_path(f, (1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="lr must be > 0"):
        G.gradient_descent_path(f, (1.0, 2.0), lr=0)


def test_loss_along_gradient_is_first_order_accurate():
    m, x = _setup(n=8)
    r = G.loss_along_gradient(m, x, alphas=[0.0, 1e-4, 1e-3, 3.0])
    assert r["loss"][0] == pytest.approx(float(r["linear"][0]), abs=1e-6)
    # the linear model is accurate to O(alpha^2) near zero ...
    assert abs(float(r["loss"][1] - r["linear"][1])) < 1e-6
    # ... the true loss decreases along the negative gradient for a small step ...
    assert r["loss"][2] < r["loss"][0]
    # ... and far away the linear prediction (which falls without bound) is badly wrong
    assert r["linear"][3] < r["loss"][3] - 0.1
    before = [p.clone() for p in m.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))
    with pytest.raises(ValueError, match="non-negative"):
        G.loss_along_gradient(m, x, alphas=[-1.0])


class FeatureHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(4, 6), nn.ReLU())
        self.head = nn.Linear(6, 3)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x))


def test_last_layer_factors_match_torch_func_gradient_norm():
    torch.manual_seed(0)
    m = FeatureHead().eval()
    x = torch.rand(9, 1, 2, 2)
    f = G.last_layer_factors(m, x, batch_size=4)
    torch.testing.assert_close(f["grad_norm"], G.gradient_norms(m, x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(f["feature_norm"], m.features(x).norm(dim=1).detach())
    with pytest.raises(TypeError, match="features"):
        G.last_layer_factors(LinearSoftmax().eval(), x)


class DropoutNet(nn.Module):
    """features -> dropout -> head, with ``features``/``head`` as the book's models have."""

    def __init__(self, d=4, c=3):
        super().__init__()
        self.body = nn.Linear(d, 8)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(8, c)

    def features(self, x):
        return self.drop(torch.relu(self.body(x.flatten(1))))

    def forward(self, x):
        return self.head(self.features(x))


def test_dropout_submodule_left_in_training_mode_is_refused():
    """model.eval() then model.drop.train(): used to give a different answer per call (or a vmap error)."""
    torch.manual_seed(0)
    m = DropoutNet().eval()
    m.drop.train()
    x = torch.rand(5, 1, 2, 2)
    for call in (lambda: G.per_sample_gradients(m, x), lambda: G.gradient_norms(m, x),
                 lambda: G.last_layer_factors(m, x), lambda: G.layer_gradient_norms(m, x),
                 lambda: G.loss_along_gradient(m, x, alphas=[0.1])):
        with pytest.raises(RuntimeError, match=r"submodules are in training mode \(drop\).*call model\.eval\(\)"):
            call()
    m.eval()
    torch.testing.assert_close(G.gradient_norms(m, x), G.gradient_norms(m, x))


def test_lists_float64_and_label_ranges_get_clear_messages():
    m, x = _setup()
    with pytest.raises(TypeError, match=r"x is a list of 6 items, not a tensor; stack .* torch\.stack\(x\)"):
        G.gradient_norms(m, list(x))
    with pytest.raises(TypeError, match=r"torch\.stack\(x\)"):
        G.per_sample_gradients(m, tuple(x))
    with pytest.raises(TypeError, match=r"x has dtype torch.float64 .*x\.float\(\)"):
        G.gradient_norms(m, x.double())
    torch.testing.assert_close(G.gradient_norms(m.double(), x.double()).float(), G.gradient_norms(m.float(), x))
    with pytest.raises(ValueError, match=r"y must lie in \[0, 2\], got values in \[0, 7\]"):
        G.per_sample_gradients(m, x, torch.tensor([0, 1, 2, 0, 1, 7]), mode="given")
    with pytest.raises(ValueError, match="x is an empty batch"):
        G.gradient_norms(m, x[:0])
    with pytest.raises(TypeError, match="lr must be a number"):
        G.gradient_descent_path(lambda p: (p ** 2).sum(), (1.0, 1.0), lr="fast")


def test_range_dtype_generator_and_label_dtypes():
    m, x = _setup()
    # [0, 1] by default, as in attacks and GradTrust; value_range=None opts out
    for fn in (G.per_sample_gradients, G.gradient_norms, G.layer_gradient_norms, G.last_layer_factors):
        with pytest.raises(ValueError, match=r"must lie in \[0.0, 1.0\]"):
            fn(m, x * 255)
    with pytest.raises(ValueError, match=r"must lie in \[0.0, 1.0\]"):
        G.loss_along_gradient(m, x * 255, alphas=[0.0, 0.1])
    g = G.gradient_norms(m, x * 255, value_range=None)
    assert g.shape == (6,) and torch.isfinite(g).all()
    # an integer is not a generator
    with pytest.raises(TypeError, match="generator must be None or a torch.Generator"):
        G.per_sample_gradients(m, x, mode="sampled", generator=0)
    with pytest.raises(TypeError, match="generator must be None or a torch.Generator"):
        G.gradient_norms(m, x, mode="sampled", generator=0)
    # any integer label dtype works and gives the int64 answer
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    ref = G.per_sample_gradients(m, x, y, mode="given")
    for dt in (torch.uint8, torch.int32):
        out = G.per_sample_gradients(m, x, y.to(dt), mode="given")
        torch.testing.assert_close(out, ref)
    torch.testing.assert_close(G.gradient_norms(m, x, y.int(), mode="given"),
                               G.gradient_norms(m, x, y, mode="given"))
    r = G.loss_along_gradient(m, x, y.to(torch.uint8), alphas=[0.0])
    assert r["loss"].shape == (1,)
    with pytest.raises(TypeError, match="centered must be True or False"):
        G.empirical_fisher(torch.ones(3, 2), centered="no")


def test_loss_along_gradient_checks_the_label_range():
    m, x = _setup()
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\]"):
        G.loss_along_gradient(m, x, torch.tensor([0, 1, 2, 3, 0, 1]), alphas=[0.0])
