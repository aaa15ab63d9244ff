"""Sanity checks for explanations: does a map depend on what the network learned?

Adebayo et al. ("Sanity checks for saliency maps", NeurIPS 2018) re-initialise the layers of a
trained network one after another, *from the top* (the output layer first), and compare the
explanations of the partly random networks with those of the trained one. A map that stays the
same while the weights become random cannot be explaining what the network learned: it shows
the image (edges) or the architecture instead.

The comparison is the Spearman rank correlation of the two maps of each image, over pixels:

.. math::  \\rho(a, b) = \\frac{\\sum_i (r_i - \\bar r)(s_i - \\bar s)}
           {\\sqrt{\\sum_i (r_i - \\bar r)^2 \\sum_i (s_i - \\bar s)^2}},

with ``r`` and ``s`` the ranks of the pixels of ``a`` and ``b`` (ties get their average rank),
i.e. the Pearson correlation of the ranks. It is 1 for identical maps (and for any increasing
function of a map) and near 0 for unrelated ones.

Taught in Part 2, section "Sanity check: does the explanation depend on what the network
learned?".
"""
from __future__ import annotations

import copy
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

from ._checks import check_eval_model, check_finite, check_seed

__all__ = ["spearman_rows", "randomize_layer", "cascading_randomization"]


def _as_rows(m, name: str) -> np.ndarray:
    if isinstance(m, torch.Tensor):
        check_finite(m, name)
        m = m.detach().cpu().numpy()
    m = np.asarray(m, dtype=np.float64)
    if m.ndim < 2 or m.shape[0] == 0 or m[0].size == 0:
        raise ValueError(f"{name} must be a non-empty batch of maps shaped (N, ...) (one map per row), got "
                         f"shape {m.shape}; add a batch dimension with [None] for a single map.")
    if not np.isfinite(m).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return m.reshape(m.shape[0], -1)


def spearman_rows(a, b) -> np.ndarray:
    """Spearman rank correlation of each map of ``a`` with the same map of ``b``, over pixels.

    Parameters
    ----------
    a, b : torch.Tensor or array, shape (N, ...)
        Two batches of maps of the same shape (e.g. ``(N, H, W)`` class activation maps).

    Returns
    -------
    numpy.ndarray
        ``(N,)`` correlations in ``[-1, 1]``, equal to :func:`scipy.stats.spearmanr` of each pair
        of flattened maps. A constant map (e.g. a Grad-CAM that the ReLU zeroed) has no ranking,
        so its correlation is defined as 0 (scipy returns NaN).

    Taught in Part 2, section "Sanity check: does the explanation depend on what the network
    learned?".
    """
    fa, fb = _as_rows(a, "a"), _as_rows(b, "b")
    if tuple(np.shape(a)) != tuple(np.shape(b)):
        raise ValueError(f"a and b must have the same shape, got {tuple(np.shape(a))} and "
                         f"{tuple(np.shape(b))}.")
    ra, rb = rankdata(fa, axis=1), rankdata(fb, axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra ** 2).sum(1) * (rb ** 2).sum(1))
    return np.where(den > 0, (ra * rb).sum(1) / np.where(den > 0, den, 1.0), 0.0)


def randomize_layer(model: nn.Module, layer: str) -> nn.Module:
    """Re-initialise the parameters of one layer of ``model`` in place (returns ``model``).

    Every submodule of ``layer`` with a ``reset_parameters()`` method is reset (its default
    initialisation, drawn from the global random state; batch-norm layers also reset their
    running statistics). ``layer`` is a name from :meth:`~torch.nn.Module.named_modules`, e.g.
    ``"head"`` or ``"conv2"``.

    Taught in Part 2, section "Sanity check: does the explanation depend on what the network
    learned?".
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    modules = dict(model.named_modules())
    if not isinstance(layer, str) or layer == "" or layer not in modules:
        names = [n for n, m in modules.items() if n and any(True for _ in m.parameters(recurse=False))]
        raise ValueError(f"unknown layer {layer!r}; layers with parameters: {', '.join(names) or '(none)'}.")
    reset = [m for m in modules[layer].modules() if callable(getattr(m, "reset_parameters", None))]
    if not reset:
        raise ValueError(f"layer {layer!r} has nothing to re-initialise (no submodule with "
                         "reset_parameters()); choose a layer with weights.")
    for m in reset:
        m.reset_parameters()
    return model


def cascading_randomization(model: nn.Module, explain: Callable[[nn.Module], Mapping[str, torch.Tensor]],
                            layers: Sequence[str], *, seed: int = 0) -> dict:
    """Adebayo et al.'s cascading randomisation: re-initialise ``layers`` cumulatively, in order.

    Step 0 (``"trained"``) explains a copy of the trained model; step ``k`` explains the copy
    with ``layers[0], ..., layers[k-1]`` re-initialised (pass them top-down: the output layer
    first). Every map is compared with the trained model's map of the same method and image by
    :func:`spearman_rows`. The model itself is not modified (a deep copy is randomised); the
    re-initialisation draws from a random state seeded with ``seed`` and the global random
    state is restored afterwards.

    Parameters
    ----------
    model : torch.nn.Module
        The trained network, in eval mode.
    explain : callable
        ``explain(network) -> {method name: maps (N, ...)}`` (or a single tensor of maps, named
        ``"map"``): the explanations of the same images under every network.
    layers : sequence of str
        Layer names (as in ``named_modules()``) in the order they are re-initialised.
    seed : int, default 0

    Returns
    -------
    dict
        ``"steps"``: ``["trained", *layers]``; ``"maps"``: step -> method -> maps;
        ``"spearman"``: step -> method -> ``(N,)`` NumPy array of correlations with the trained
        map (1 at step ``"trained"``, except 0 for constant maps).

    Taught in Part 2, section "Sanity check: does the explanation depend on what the network
    learned?".
    """
    check_eval_model(model, "dropout and batch-norm batch statistics would change the maps between calls, "
                            "and the comparison would measure that noise")
    if not callable(explain):
        raise TypeError(f"explain must be a function network -> maps, got {type(explain).__name__}.")
    if isinstance(layers, str) or not isinstance(layers, Sequence):
        raise TypeError(f"layers must be a sequence of layer names such as ['head', 'conv2'], got {layers!r}.")
    seed = check_seed(seed)
    names = dict(model.named_modules())
    unknown = [n for n in layers if not isinstance(n, str) or n == "" or n not in names]
    if unknown:
        raise ValueError(f"unknown layer(s) {unknown}; use names from model.named_modules().")

    def run(net):
        out = explain(net)
        return dict(out) if isinstance(out, Mapping) else {"map": out}

    net = copy.deepcopy(model).eval()
    steps = ["trained", *layers]
    maps: dict = {}
    devices = [d for d in {p.device for p in model.parameters()} if d.type == "cuda"]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for step in steps:
            if step != "trained":
                randomize_layer(net, step)
            maps[step] = run(net)
    trained = maps["trained"]
    spearman = {}
    for step in steps:
        if set(maps[step]) != set(trained):
            raise ValueError(f"explain returned methods {sorted(maps[step])} at step {step!r} but "
                             f"{sorted(trained)} for the trained model; return the same names every time.")
        spearman[step] = {k: spearman_rows(trained[k], v) for k, v in maps[step].items()}
    return {"steps": steps, "maps": maps, "spearman": spearman}
