"""Figures used across the book: image grids, heatmap tables, embeddings, histograms.

Every function returns the matplotlib ``Figure`` (so notebooks can save or test it) and draws
nothing else globally. Taught throughout; first used in Part 1.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from ._checks import check_number, check_positive_int

__all__ = [
    "show_images",
    "image_table",
    "heatmap",
    "scatter_groups",
    "overlaid_histograms",
    "descent_plot",
]


def _to_hw(img) -> np.ndarray:
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().float().numpy()
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[0] in (1, 3):
        img = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
    if img.ndim not in (2, 3):
        raise ValueError(f"cannot show an image of shape {img.shape}; pass (C, H, W) or (H, W).")
    return img


def show_images(images, titles: Sequence[str] | None = None, *, ncols: int = 8,
                cmap: str = "gray", size: float = 1.4, suptitle: str | None = None,
                title_colors: Sequence[str] | None = None):
    """Show a batch of images (N, C, H, W) in a grid with optional per-image titles.

    Taught in Part 1, section "Novel data at inference".
    """
    n = len(images)
    if n == 0:
        raise ValueError("no images to show.")
    if titles is not None and len(titles) != n:
        raise ValueError(f"got {n} images but {len(titles)} titles.")
    ncols = min(check_positive_int(ncols, "ncols"), n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * 1.15), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(_to_hw(images[i]), cmap=cmap, vmin=0, vmax=1)
            if titles is not None:
                color = title_colors[i] if title_colors is not None else "black"
                ax.set_title(titles[i], fontsize=9, color=color)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def image_table(rows: Sequence, row_labels: Sequence[str], col_labels: Sequence[str], *,
                cell_titles: Sequence[Sequence[str]] | None = None, cmap: str = "gray",
                size: float = 1.2, suptitle: str | None = None, cbar_label: str | None = None,
                label_size: float = 8):
    """A table of images: ``rows[i][j]`` is the image at row i, column j (e.g. type x level).

    Images are drawn on the ``[0, 1]`` scale of ``cmap``; ``cbar_label`` adds one colourbar for
    the whole table with that label (for heat maps such as attributions). ``label_size`` is the
    font size of the row, column and cell labels, in points.

    Taught in Part 1, section "A suite of novel data".
    """
    nr, nc = len(rows), len(col_labels)
    if nr == 0 or nr != len(row_labels):
        raise ValueError(f"need one row label per row: {nr} rows, {len(row_labels)} labels.")
    fig, axes = plt.subplots(nr, nc, figsize=(size * nc + 1.2, size * nr * 1.1), squeeze=False)
    for i in range(nr):
        if len(rows[i]) != nc:
            raise ValueError(f"row {i} has {len(rows[i])} images but there are {nc} column labels.")
        for j in range(nc):
            ax = axes[i, j]
            ax.imshow(_to_hw(rows[i][j]), cmap=cmap, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(col_labels[j], fontsize=label_size)
            if j == 0:
                ax.set_ylabel(row_labels[i], fontsize=label_size, rotation=0, ha="right", va="center")
            if cell_titles is not None:
                ax.set_xlabel(cell_titles[i][j], fontsize=label_size)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    if cbar_label is not None:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize
        cb = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap=cmap), ax=list(axes.flat),
                          fraction=0.025, pad=0.02)
        cb.set_label(cbar_label, fontsize=label_size)
        cb.ax.tick_params(labelsize=label_size)
    return fig


def heatmap(matrix, row_labels: Sequence[str], col_labels: Sequence[str], *, fmt: str = ".2f",
            cmap: str = "viridis", title: str | None = None, cbar_label: str | None = None,
            vmin: float | None = None, vmax: float | None = None, figsize=None, ax=None):
    """A heatmap with the value written in every cell (a results table a reader can scan).

    Draws into ``ax`` when given (e.g. one panel of a figure of several), else a new figure.

    Taught in Part 1, section "How the classifier does on novel data".
    """
    m = np.asarray(matrix.detach().cpu() if isinstance(matrix, torch.Tensor) else matrix, dtype=float)
    if m.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"matrix shape {m.shape} does not match {len(row_labels)} row labels x "
                         f"{len(col_labels)} column labels.")
    if ax is None:
        figsize = figsize or (0.9 * len(col_labels) + 3, 0.35 * len(row_labels) + 1.5)
        fig, ax = plt.subplots(figsize=figsize)
    else:
        fig = ax.figure
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    long_labels = max((len(str(c)) for c in col_labels), default=0) > 7
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=40 if long_labels else 0,
                  ha="right" if long_labels else "center")
    ax.set_yticks(range(len(row_labels)), row_labels)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if np.isfinite(m[i, j]):
                r, g, b, _ = im.cmap(im.norm(m[i, j]))
                dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5  # perceived luminance of the cell
                ax.text(j, i, format(m[i, j], fmt), ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
    cb = fig.colorbar(im, ax=ax)
    if cbar_label:
        cb.set_label(cbar_label)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def scatter_groups(points, groups: Sequence[str], *, title: str | None = None,
                   order: Sequence[str] | None = None, size: float = 6, alpha: float = 0.6,
                   figsize=(7, 6)):
    """Scatter 2-D points coloured by group name (e.g. clean test vs each novel set).

    Taught in Part 1, section "A manifold view".
    """
    p = np.asarray(points)
    g = np.asarray(groups)
    if p.ndim != 2 or p.shape[1] != 2 or len(g) != len(p):
        raise ValueError(f"points must be (N, 2) with one group per point, got {p.shape} and {len(g)} groups.")
    names = list(order) if order is not None else list(dict.fromkeys(g.tolist()))
    fig, ax = plt.subplots(figsize=figsize)
    cmap = plt.get_cmap("tab10")
    for k, name in enumerate(names):
        sel = g == name
        ax.scatter(p[sel, 0], p[sel, 1], s=size, alpha=alpha, color=cmap(k % 10), label=name)
    ax.legend(markerscale=3, fontsize=8, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def overlaid_histograms(values: Mapping[str, Sequence[float]], *, bins: int = 40, log: bool = True,
                        xlabel: str = "", title: str | None = None, figsize=(7, 4)):
    """Overlaid, density-normalised histograms of several score distributions.

    Taught in Part 1, section "Gradient surprise on novel data".
    """
    if not values:
        raise ValueError("values is empty: pass a mapping name -> scores.")
    bins = check_positive_int(bins, "bins")
    arrays = {k: np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, dtype=float).ravel()
              for k, v in values.items()}
    for k, v in arrays.items():
        if v.size == 0:
            raise ValueError(f"values[{k!r}] is empty; pass at least one score per distribution.")
        if not np.isfinite(v).all():
            raise ValueError(f"values[{k!r}] contains {int((~np.isfinite(v)).sum())} NaN or infinite "
                             "score(s); find where they come from before plotting.")
    allv = np.concatenate(list(arrays.values()))
    if log:
        allv = allv[allv > 0]
        if allv.size == 0:
            raise ValueError("no score is > 0, so there is nothing to show on a log axis; pass log=False.")
        edges = np.geomspace(max(allv.min(), 1e-8), allv.max() * 1.01, bins + 1)
    else:
        edges = np.linspace(allv.min(), allv.max(), bins + 1)
    fig, ax = plt.subplots(figsize=figsize)
    for k, v in arrays.items():
        ax.hist(v, bins=edges, density=True, histtype="stepfilled", alpha=0.35, label=k)
        ax.hist(v, bins=edges, density=True, histtype="step", linewidth=1)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def descent_plot(f: Callable[[torch.Tensor], torch.Tensor], paths: Mapping[str, torch.Tensor], *,
                 xlim=(-2.0, 2.0), ylim=(-1.0, 3.0), levels: int = 30, title: str | None = None,
                 arrows_at=None, minimum=None, figsize=(6, 5)):
    """Contours of a 2-D function with gradient-descent paths and (optionally) -grad arrows.

    ``f`` takes points ``p`` with ``p[..., 0]`` and ``p[..., 1]`` as coordinates, so it evaluates a
    whole grid in one call. ``minimum`` (a point), if given, is marked with a black star. The axes
    are the two parameters, labelled theta_1 and theta_2.

    Taught in Part 1, section "Gradients are local information, and the negative gradient is a
    descent direction".
    """
    if minimum is not None:  # checked before any figure is made
        if isinstance(minimum, (str, bytes)) or not isinstance(minimum, Sequence) or len(minimum) != 2:
            raise ValueError(f"minimum must be a point (x, y), e.g. (1, 1); got {minimum!r}.")
        mx, my = (check_number(v, "a coordinate of minimum", minimum=None) for v in minimum)
    xs = torch.linspace(*xlim, 200, dtype=torch.float64)
    ys = torch.linspace(*ylim, 200, dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    z = f(torch.stack([gx, gy], dim=-1))  # f indexes p[..., 0], p[..., 1]: it broadcasts over the grid
    if z.shape != gx.shape:
        raise ValueError("f must broadcast over leading dimensions: write it with p[..., 0] and p[..., 1].")
    fig, ax = plt.subplots(figsize=figsize)
    ax.contour(gx.numpy(), gy.numpy(), z.numpy(), levels=np.geomspace(max(float(z.min()), 1e-3),
                                                                      float(z.max()), levels),
               colors="0.55", linewidths=0.7)
    for name, path in paths.items():
        p = path.numpy()
        ax.plot(p[:, 0], p[:, 1], ".-", ms=3, label=name)
    if arrows_at is not None:
        for pt in arrows_at:
            q = torch.tensor(pt, dtype=torch.float64, requires_grad=True)
            (g,) = torch.autograd.grad(f(q), q)
            d = -g / (g.norm() + 1e-12) * 0.35
            ax.annotate("", xy=(pt[0] + float(d[0]), pt[1] + float(d[1])), xytext=pt,
                        arrowprops=dict(arrowstyle="->", color="crimson", lw=1.5))
    if minimum is not None:
        ax.plot([mx], [my], marker="*", color="black", ms=12, ls="none", label="minimum")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set(xlabel=r"$\theta_1$", ylabel=r"$\theta_2$")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
