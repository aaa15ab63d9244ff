"""Fixtures and markers shared by the unit tests.

Fixtures (module-scoped ones are built once per test module, as when each module defined them):

* ``one_thread``: torch runs on one thread for the module (restored afterwards). Tiny tensors gain
  nothing from more threads, and one thread does not fight other jobs for a shared CPU. A module
  opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
* ``c3lt``: the book's C3LT classifier for 16x16 images, seed 0, eval mode.
* ``x16`` / ``maps16``: four random 1x16x16 images (seed 1) and four random 16x16 maps (seed 2);
  a module that needs other images defines its own ``x16``, which takes precedence.
* ``conv_gap_linear`` (the class) and ``tiny`` (an instance, seed 3): conv -> global average pool
  -> linear, whose gradients are known in closed form.
* ``linear_two_class`` (the class): logit_0 = 0, logit_1 = w . x - b, a two-class model whose
  probabilities are known in closed form.
* ``make_mlp``: builds the small MLP of the uncertainty tests; ``images``: twelve random 1x8x8
  images (seed 1).

Marker ``@pytest.mark.requires("module", ...)``: the test needs an optional or reference library
(torchattacks, scikit-learn, SciPy, captum, torchmetrics, ...) and is skipped, with the import
error as the reason, when one cannot be imported. Only that test skips: the rest of its module
still runs. Import the library inside the test (never at module level).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from robust_utils.models import C3LTClassifier, build_model


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "requires(*modules): skip the test when one of these modules cannot be imported")


def pytest_runtest_setup(item):
    for marker in item.iter_markers("requires"):
        if not marker.args or not all(isinstance(m, str) for m in marker.args):
            raise TypeError(f"{item.nodeid}: @pytest.mark.requires takes module names, "
                            f"got {marker.args!r}")
        for module in marker.args:
            # exc_type=ImportError: a broken install (an ImportError raised inside the package)
            # skips as well as a missing one (ModuleNotFoundError).
            pytest.importorskip(module, exc_type=ImportError)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread avoids contention on a shared CPU (restored afterwards)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def c3lt():
    torch.manual_seed(0)
    return C3LTClassifier(input_size=16).eval()


@pytest.fixture(scope="module")
def x16():
    torch.manual_seed(1)
    return torch.rand(4, 1, 16, 16)


@pytest.fixture(scope="module")
def maps16():
    torch.manual_seed(2)
    return torch.rand(4, 16, 16)


class ConvGapLinear(nn.Module):
    """conv -> global average pool -> linear: d y_c / d A_k^{ij} = W[c, k] / (h w)."""

    def __init__(self, k=3, classes=4):
        super().__init__()
        self.conv = nn.Conv2d(1, k, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(k, classes)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x)).flatten(1))


@pytest.fixture(scope="session")
def conv_gap_linear():
    """The class ConvGapLinear, for tests that build their own instances."""
    return ConvGapLinear


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(3)
    return ConvGapLinear().eval()


class LinearTwoClass(nn.Module):
    """logit_0 = 0, logit_1 = w . x - b, so p(class 1) = sigmoid(w . x - b) in closed form."""

    def __init__(self, w: torch.Tensor, b: float = 0.0):
        super().__init__()
        self.register_buffer("w", w.flatten())
        self.b = b

    def forward(self, x):
        z = (x.flatten(1) * self.w.to(x.dtype)).sum(1) - self.b
        return torch.stack([torch.zeros_like(z), z], 1)


@pytest.fixture(scope="session")
def linear_two_class():
    """The class LinearTwoClass, for tests that build it with their own weights."""
    return LinearTwoClass


def _mlp(dropout: float = 0.3, num_classes: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("mlp", in_features=64, hidden=(16,), num_classes=num_classes,
                       dropout=dropout).eval()


@pytest.fixture(scope="session")
def make_mlp():
    """``make_mlp(dropout=0.3, num_classes=4, seed=0)``: a 64-16-classes MLP in eval mode."""
    return _mlp


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(1))
