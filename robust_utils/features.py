"""Penultimate features and 2-D views of the learned manifold.

The slides visualise real data manifolds with Isomap: here we embed the penultimate features
of the classifier for clean test images and novel images together, so a reader can see where
novel data land relative to the training distribution.

Taught in Part 1, section "A manifold view".
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ._checks import check_choice, check_positive_int, check_seed, model_device
from ._checks import PIXELS, check_model_input, check_value_range

__all__ = ["extract_features", "embed_2d", "EMBEDDINGS"]

EMBEDDINGS = ("isomap", "tsne", "pca")


@torch.no_grad()
def extract_features(model: nn.Module, x: torch.Tensor, batch_size: int = 1024, *,
                     value_range: tuple[float, float] | None = PIXELS) -> torch.Tensor:
    """Penultimate-layer features ``model.features(x)`` in eval mode, batched; returns (N, D) on CPU.

    ``x`` must lie in ``value_range`` (default ``(0, 1)``, the pixels the book's models take);
    pass ``value_range=None`` for a model that takes other inputs.

    Taught in Part 1, section "A manifold view".
    """
    if not hasattr(model, "features"):
        raise TypeError(f"{type(model).__name__} has no .features(x) method; use a model from "
                        "robust_utils.models.")
    check_model_input(model, x, value_range=check_value_range(value_range))
    batch_size = check_positive_int(batch_size, "batch_size")
    modes = [(m, m.training) for m in model.modules()]   # restored afterwards, submodule by submodule
    model.eval()
    device = model_device(model, x.device)
    try:
        out = [model.features(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
    finally:
        for m, mode in modes:
            m.training = mode
    return torch.cat(out)


def embed_2d(features, method: str = "isomap", *, n_neighbors: int = 10, seed: int = 0) -> np.ndarray:
    """Embed (N, D) features in 2-D with Isomap, t-SNE or PCA (scikit-learn); returns (N, 2).

    Taught in Part 1, section "A manifold view".
    """
    check_choice(method, "embedding method", EMBEDDINGS)
    seed = check_seed(seed)
    f = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    if f.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {f.shape}.")
    if not np.issubdtype(f.dtype, np.number) or np.issubdtype(f.dtype, np.complexfloating):
        raise TypeError(f"features must be real numbers, got dtype {f.dtype}.")
    if not np.isfinite(f).all():
        raise ValueError(f"features contain {int((~np.isfinite(f)).sum())} NaN or infinite value(s); "
                         "find where they come from before embedding them.")
    n = f.shape[0]
    if n < 3:
        raise ValueError(f"need at least 3 points to embed, got {n}.")
    check_positive_int(n_neighbors, "n_neighbors")
    f = f.astype(np.float64)
    if method == "pca":
        from sklearn.decomposition import PCA
        return PCA(n_components=2, random_state=seed).fit_transform(f)
    if method == "isomap":
        from sklearn.manifold import Isomap
        return Isomap(n_neighbors=min(n_neighbors, n - 1), n_components=2).fit_transform(f)
    from sklearn.manifold import TSNE
    return TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca",
                random_state=seed).fit_transform(f)
