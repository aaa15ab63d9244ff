"""Features, embeddings and figures: shapes, known answers and bad inputs."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from robust_utils import features, plotting  # noqa: E402


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 5))
        self.head = nn.Linear(5, 3)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x))


def test_extract_features_batched_and_restores_mode():
    m = Tiny().train()
    x = torch.rand(7, 1, 4, 4)
    f = features.extract_features(m, x, batch_size=3)
    torch.testing.assert_close(f, m.body(x).detach())
    assert m.training, "the model's mode must be restored"
    with pytest.raises(TypeError, match="no .features"):
        features.extract_features(nn.Linear(2, 2), x)


@pytest.mark.parametrize("method", ["pca", "isomap", "tsne"])
@pytest.mark.filterwarnings("ignore:The number of connected components:UserWarning")
@pytest.mark.filterwarnings("ignore:Changing the sparsity structure")
def test_embed_2d_separates_two_clusters(method):
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.1, (30, 6))
    b = rng.normal(5, 0.1, (30, 6))
    e = features.embed_2d(np.vstack([a, b]), method, n_neighbors=8)
    assert e.shape == (60, 2)
    # the two clusters stay apart: every between-cluster distance beats the mean within-cluster one
    d_between = np.linalg.norm(e[:30, None] - e[None, 30:], axis=-1).min()
    d_within = np.linalg.norm(e[:30, None] - e[None, :30], axis=-1).mean()
    assert d_between > d_within


def test_embed_2d_bad_inputs():
    with pytest.raises(ValueError, match="unknown embedding method"):
        features.embed_2d(np.zeros((5, 2)), "umap")
    with pytest.raises(ValueError, match="at least 3"):
        features.embed_2d(np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        features.embed_2d(np.zeros(5))


def test_figures_build_and_validate():
    imgs = torch.rand(5, 1, 8, 8)
    fig = plotting.show_images(imgs, list("abcde"), ncols=3)
    assert len(fig.axes) == 6
    plt.close(fig)
    fig = plotting.image_table([[imgs[0], imgs[1]], [imgs[2], imgs[3]]], ["r1", "r2"], ["c1", "c2"])
    assert len(fig.axes) == 4  # no colourbar unless asked for
    plt.close(fig)
    fig = plotting.image_table([[imgs[0], imgs[1]], [imgs[2], imgs[3]]], ["r1", "r2"], ["c1", "c2"],
                               cmap="magma", cbar_label="|value| / max", label_size=9)
    assert len(fig.axes) == 5 and fig.axes[-1].get_ylabel() == "|value| / max"
    assert fig.axes[0].title.get_fontsize() == 9
    plt.close(fig)
    fig = plotting.heatmap(np.arange(6).reshape(2, 3), ["a", "b"], ["x", "y", "z"], fmt=".0f")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["0", "1", "2", "3", "4", "5"]
    plt.close(fig)
    fig, axes = plt.subplots(1, 2)
    assert plotting.heatmap(np.ones((2, 2)), ["a", "b"], ["x", "y"], ax=axes[1]) is fig
    assert len(axes[1].texts) == 4 and len(axes[0].texts) == 0
    plt.close(fig)
    fig = plotting.scatter_groups(np.zeros((4, 2)), ["a", "a", "b", "b"])
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a", "b"]
    plt.close(fig)
    fig = plotting.overlaid_histograms({"a": [1.0, 2.0, 3.0], "b": [2.0, 5.0]})
    plt.close(fig)
    with pytest.raises(ValueError, match="titles"):
        plotting.show_images(imgs, ["a"])
    with pytest.raises(ValueError, match="does not match"):
        plotting.heatmap(np.zeros((2, 2)), ["a"], ["x", "y"])
    with pytest.raises(ValueError, match="no images"):
        plotting.show_images([])


def test_descent_plot_requires_broadcasting_function():
    f = lambda p: p[..., 0] ** 2 + p[..., 1] ** 2 + 0.1
    fig = plotting.descent_plot(f, {"path": torch.zeros(3, 2, dtype=torch.float64)}, arrows_at=[(1.0, 1.0)])
    ax = fig.axes[0]
    assert ax.get_xlabel() == r"$\theta_1$" and ax.get_ylabel() == r"$\theta_2$"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["path"]
    plt.close(fig)
    fig = plotting.descent_plot(f, {"path": torch.zeros(3, 2, dtype=torch.float64)}, minimum=(0, 0))
    star, = [ln for ln in fig.axes[0].lines if ln.get_label() == "minimum"]
    assert list(star.get_xdata()) == [0.0] and list(star.get_ydata()) == [0.0] and star.get_marker() == "*"
    plt.close(fig)
    with pytest.raises(ValueError, match="broadcast"):
        plotting.descent_plot(lambda p: torch.tensor(1.0), {})
    with pytest.raises(ValueError, match=r"minimum must be a point \(x, y\)"):
        plotting.descent_plot(f, {}, minimum=(1.0, 2.0, 3.0))
    with pytest.raises(TypeError, match="coordinate of minimum must be a number"):
        plotting.descent_plot(f, {}, minimum=("a", 1.0))


def test_extract_features_restores_every_submodule_mode_and_checks_dtype():
    m = Tiny().eval()
    m.body[1].train()                      # a mixed state is restored as it was
    x = torch.rand(4, 1, 4, 4)
    features.extract_features(m, x)
    assert not m.training and m.body[1].training and not m.head.training
    with pytest.raises(TypeError, match=r"x has dtype torch.float64.*x\.float\(\)"):
        features.extract_features(m, x.double())
    with pytest.raises(TypeError, match=r"torch\.stack\(x\)"):
        features.extract_features(m, list(x))


def test_embed_2d_refuses_nan_and_checks_seed():
    f = np.random.default_rng(0).random((6, 3))
    np.testing.assert_allclose(features.embed_2d(f, "pca", seed=np.int64(1)), features.embed_2d(f, "pca", seed=1))
    f[2, 1] = np.nan
    with pytest.raises(ValueError, match="features contain 1 NaN"):
        features.embed_2d(f, "pca")
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        features.embed_2d(f, "pca", seed=-3)


def test_plotting_bad_inputs_get_clear_messages():
    with pytest.raises(ValueError, match=r"values\['a'\] is empty"):
        plotting.overlaid_histograms({"a": [], "b": [1.0]})
    with pytest.raises(ValueError, match=r"values\['a'\] contains 1 NaN"):
        plotting.overlaid_histograms({"a": [1.0, float("nan")]})
    with pytest.raises(ValueError, match="log=False"):
        plotting.overlaid_histograms({"a": [-1.0, 0.0]})
    with pytest.raises(ValueError, match="bins must be >= 1"):
        plotting.overlaid_histograms({"a": [1.0, 2.0]}, bins=0)
    with pytest.raises(ValueError, match="ncols must be >= 1"):
        plotting.show_images(torch.rand(2, 1, 4, 4), ncols=0)
    plt.close("all")


def test_extract_features_checks_the_pixel_range():
    from robust_utils.models import build_model
    torch.manual_seed(0)
    m = build_model("c3lt_cnn", num_classes=4).eval()
    x = torch.rand(3, 1, 28, 28)
    with pytest.raises(ValueError, match=r"must lie in \[0.0, 1.0\]"):
        features.extract_features(m, x * 255)
    assert features.extract_features(m, x * 255, value_range=None).shape[0] == 3
