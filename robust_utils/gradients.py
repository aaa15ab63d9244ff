"""Gradients at inference: per-sample gradients, Fisher information and gradient "surprise".

At inference there is one image and no label. Backpropagating a loss between the network's
output and a label *we choose* (the prediction, a label sampled from the predictive
distribution, or any other class) still gives a gradient, and that gradient measures how much
the network would have to change to accommodate the image: its "surprise". The Fisher
information of the parameters is the covariance of these gradients,

.. math::  I(\\theta) = \\mathrm{Var}\\big(\\nabla_\\theta \\ell(\\theta \\mid x)\\big)
           = \\mathbb{E}\\big[U_\\theta U_\\theta^\\top\\big],
           \\qquad U_\\theta = \\nabla_\\theta \\log p_\\theta(y \\mid x),

(the second form because the score :math:`U_\\theta` has zero mean when :math:`y` is drawn from
the model). Everything here is vectorised over the batch with :mod:`torch.func` (``vmap`` of
``grad``): one call, no Python loop over images.

Taught in Part 1, section "Gradients at inference".
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from ._checks import (check_bool, check_choice, check_eval_model, check_generator, check_head_model, check_labels,
                      check_model_input, check_number, check_positive_int, check_value_range, PIXELS)

__all__ = [
    "LABEL_MODES",
    "per_sample_gradients",
    "flatten_gradients",
    "gradient_norms",
    "layer_gradient_norms",
    "empirical_fisher",
    "score_mean",
    "loss_along_gradient",
    "last_layer_factors",
    "gradient_descent_path",
]

LABEL_MODES = ("predicted", "sampled", "given")


def _check_x(model: nn.Module, x, value_range) -> torch.Tensor:
    """Images the model can take, in ``value_range`` (default [0, 1]; ``None``: any range)."""
    return check_model_input(model, x, value_range=check_value_range(value_range))


_EVAL_CONSEQUENCE = ("dropout and batch-norm batch statistics would make the gradients random "
                     "(a different answer per call)")


def _check_eval(model: nn.Module) -> None:
    check_eval_model(model, _EVAL_CONSEQUENCE)


def _check_inputs(model: nn.Module, x, y, value_range):
    """The checks every per-sample-gradient function starts with; returns the int64 labels (or None)."""
    _check_eval(model)
    _check_x(model, x, value_range)
    return None if y is None else check_labels(y, n=x.shape[0], name="y")


def _resolve_params(model: nn.Module, params: str | Sequence[str] | None) -> list[str]:
    names = [n for n, _ in model.named_parameters()]
    if params is None:
        head = getattr(model, "head", None)
        if isinstance(head, nn.Linear):
            return [n for n in names if n.startswith("head.")]
        params = "all"
    if params == "all":
        return names
    if isinstance(params, str):
        params = [params]
    params = list(params)
    unknown = [p for p in params if p not in names]
    if unknown:
        raise ValueError(f"unknown parameter name(s) {unknown}; valid names are: {', '.join(names)}.")
    if not params:
        raise ValueError("params is empty; name at least one parameter, or pass 'all'.")
    return params


def _labels(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, mode: str,
            generator: torch.Generator | None) -> torch.Tensor:
    check_choice(mode, "label mode", LABEL_MODES)
    if mode == "given":
        if y is None:
            raise ValueError("label mode 'given' needs labels y; pass y=..., or use mode='predicted'.")
        with torch.no_grad():
            num_classes = model(x[:1]).shape[-1]
        return check_labels(y, n=x.shape[0], num_classes=num_classes, name="y").to(x.device)
    if y is not None:
        raise ValueError(f"labels were passed but label mode is {mode!r}; use mode='given' to use them.")
    with torch.no_grad():
        logits = model(x)
    if mode == "predicted":
        return logits.argmax(1)
    probs = logits.softmax(1)
    if generator is not None and generator.device != probs.device:
        probs = probs.to(generator.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1).to(x.device)


def per_sample_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *,
                         mode: str = "predicted", params: str | Sequence[str] | None = None,
                         generator: torch.Generator | None = None,
                         chunk_size: int | None = None,
                         value_range: tuple[float, float] | None = PIXELS) -> dict[str, torch.Tensor]:
    """Gradient of the cross-entropy loss of every image, w.r.t. chosen parameters.

    Parameters
    ----------
    model: a classifier in eval mode returning logits.
    x: images (N, C, H, W) in [0, 1].
    y: labels, only with ``mode="given"``.
    mode: which label the loss uses: ``"predicted"`` (argmax: the label available at
        inference), ``"sampled"`` (drawn from the softmax: gives the true Fisher information),
        or ``"given"`` (ground truth: the empirical Fisher of training).
    params: parameter names; default the final linear layer ``head`` (or all parameters when the
        model has no ``head``); ``"all"`` for every parameter.
    generator: ``None`` or a :class:`torch.Generator` for ``mode="sampled"`` (an integer seed is
        refused: pass ``torch.Generator().manual_seed(seed)``).
    chunk_size: passed to ``vmap`` to bound memory on large batches.
    value_range: the range ``x`` must lie in, default ``(0, 1)`` (the book's models take [0, 1]
        pixels); ``None`` for a model that takes other inputs (e.g. normalised images).

    Returns
    -------
    dict name -> tensor of shape (N, *param.shape): ``U_theta`` of each image is
    ``-grad`` of the log-likelihood, i.e. the gradient of the loss.

    Taught in Part 1, section "Gradients at inference".
    """
    y = _check_inputs(model, x, y, value_range)
    generator = check_generator(generator)
    if chunk_size is not None:
        check_positive_int(chunk_size, "chunk_size")
    names = _resolve_params(model, params)
    labels = _labels(model, x, y, mode, generator)
    all_params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    chosen = {n: all_params[n] for n in names}
    fixed = {n: p for n, p in all_params.items() if n not in chosen}

    def loss_one(p: dict, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, ({**fixed, **p}, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    return vmap(grad(loss_one), in_dims=(None, 0, 0), chunk_size=chunk_size)(chosen, x, labels)


def flatten_gradients(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    """Concatenate a dict of per-sample gradients into one (N, P) matrix.

    Taught in Part 1, section "Gradients at inference".
    """
    if not isinstance(grads, dict) or not grads:
        raise ValueError("grads must be a non-empty dict name -> (N, ...) tensor, "
                         "as returned by per_sample_gradients.")
    ns = {g.shape[0] for g in grads.values()}
    if len(ns) != 1:
        raise ValueError(f"all gradients must share the batch size, got {sorted(ns)}.")
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], dim=1)


def gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *,
                   mode: str = "predicted", params: str | Sequence[str] | None = None,
                   batch_size: int = 512, generator: torch.Generator | None = None,
                   value_range: tuple[float, float] | None = PIXELS) -> torch.Tensor:
    """The L2 norm of each image's loss gradient: the network's "surprise" at the image.

    Large when the network would need a large update to explain the image with the label it
    predicts, which is what novel inputs tend to cause. Returns a (N,) tensor. ``value_range``
    as in :func:`per_sample_gradients` (default ``(0, 1)``; ``None`` for any range).
    Taught in Part 1, section "Gradient surprise on novel data".
    """
    y = _check_inputs(model, x, y, value_range)
    batch_size = check_positive_int(batch_size, "batch_size")
    generator = check_generator(generator)
    out = []
    for i in range(0, x.shape[0], batch_size):
        yi = None if y is None else y[i:i + batch_size]
        g = per_sample_gradients(model, x[i:i + batch_size], yi, mode=mode, params=params,
                                 generator=generator, value_range=value_range)
        out.append(flatten_gradients(g).norm(dim=1))
    return torch.cat(out)


def layer_gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *,
                         mode: str = "predicted", batch_size: int = 256,
                         value_range: tuple[float, float] | None = PIXELS) -> dict[str, torch.Tensor]:
    """Squared L2 norm of each parameter tensor's per-sample gradient: name -> (N,).

    ``value_range`` as in :func:`per_sample_gradients` (default ``(0, 1)``; ``None``: any range).

    Taught in Part 1, section "Gradient surprise on novel data".
    """
    y = _check_inputs(model, x, y, value_range)
    batch_size = check_positive_int(batch_size, "batch_size")
    parts: dict[str, list[torch.Tensor]] = {}
    for i in range(0, x.shape[0], batch_size):
        yi = None if y is None else y[i:i + batch_size]
        g = per_sample_gradients(model, x[i:i + batch_size], yi, mode=mode, params="all",
                                 value_range=value_range)
        for n, t in g.items():
            parts.setdefault(n, []).append(t.reshape(t.shape[0], -1).pow(2).sum(1))
    return {n: torch.cat(v) for n, v in parts.items()}


@torch.no_grad()
def last_layer_factors(model: nn.Module, x: torch.Tensor, batch_size: int = 1024, *,
                       value_range: tuple[float, float] | None = PIXELS) -> dict[str, torch.Tensor]:
    """The two factors of the last layer's gradient norm, in closed form.

    For ``logits = W h + b`` and the predicted label ``y_hat``, the loss gradient is
    ``(p - e_y_hat) h^T`` for ``W`` and ``p - e_y_hat`` for ``b``, so its norm is
    ``||p - e_y_hat|| * sqrt(||h||^2 + 1)``: a *confidence* factor times a *feature-magnitude*
    factor. Returns ``{"confidence_gap": ||p - e||, "feature_norm": ||h||, "grad_norm": product}``,
    each (N,). Needs a model with ``features(x)`` and a linear ``head`` (the book's models).
    ``value_range`` as in :func:`per_sample_gradients`.
    Taught in Part 1, section "Gradient surprise on novel data".
    """
    _check_eval(model)
    _check_x(model, x, value_range)
    batch_size = check_positive_int(batch_size, "batch_size")
    check_head_model(model, _EVAL_CONSEQUENCE)  # features(x) and a linear head (after the input checks)
    gaps, norms = [], []
    for i in range(0, x.shape[0], batch_size):
        h = model.features(x[i:i + batch_size])
        p = model.head(h).softmax(1)
        e = F.one_hot(p.argmax(1), p.shape[1]).to(p.dtype)
        gaps.append((p - e).norm(dim=1))
        norms.append(h.flatten(1).norm(dim=1))
    gap, norm = torch.cat(gaps), torch.cat(norms)
    grad_norm = gap * (norm.pow(2) + (1.0 if model.head.bias is not None else 0.0)).sqrt()
    return {"confidence_gap": gap, "feature_norm": norm, "grad_norm": grad_norm}


def empirical_fisher(u: torch.Tensor, centered: bool = False) -> torch.Tensor:
    """Fisher information estimate from per-sample gradients ``u`` of shape (N, P).

    ``E[U U^T] = u.T @ u / N``. With ``centered=True`` the sample covariance ``Var(U)`` is
    returned instead; the two agree when the score has zero mean (labels sampled from the
    model), which is the identity the slides use.

    Taught in Part 1, section "Gradients at inference".
    """
    centered = check_bool(centered, "centered")
    if not isinstance(u, torch.Tensor) or u.dim() != 2:
        raise ValueError(f"u must be a (N, P) tensor of flattened per-sample gradients, got "
                         f"{getattr(u, 'shape', type(u).__name__)}; use flatten_gradients(...) first.")
    n = u.shape[0]
    if n < (2 if centered else 1):
        raise ValueError(f"need at least {2 if centered else 1} gradient(s) to estimate the Fisher "
                         f"information, got {n}.")
    if centered:
        u = u - u.mean(0, keepdim=True)
        return u.T @ u / (n - 1)
    return u.T @ u / n


def score_mean(u: torch.Tensor) -> torch.Tensor:
    """Mean per-sample gradient (N, P) -> (P,): near zero for labels sampled from the model.

    Taught in Part 1, section "Gradients at inference".
    """
    if not isinstance(u, torch.Tensor) or u.dim() != 2 or u.shape[0] == 0:
        raise ValueError("u must be a non-empty (N, P) tensor of flattened per-sample gradients.")
    return u.mean(0)


def loss_along_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *,
                        alphas, params: str | Sequence[str] | None = None,
                        value_range: tuple[float, float] | None = PIXELS) -> dict[str, torch.Tensor]:
    """How far does the gradient's local information reach?

    For a batch ``x`` (labels ``y``, default the predictions), move the chosen parameters along
    the negative gradient of the mean loss, ``theta - alpha * g``, and return the true loss
    at each ``alpha`` next to the first-order prediction ``L(theta) - alpha * ||g||^2``. The two
    agree for small ``alpha`` and part ways further out: the gradient is *local* information.
    The model itself is not modified. Returns a dict with ``alpha``, ``loss`` and ``linear``.
    ``value_range`` as in :func:`per_sample_gradients`.
    Taught in Part 1, section "Gradients at inference".
    """
    _check_eval(model)
    _check_x(model, x, value_range)
    alphas = torch.as_tensor(alphas, dtype=torch.float64).flatten()
    if alphas.numel() == 0 or (alphas < 0).any():
        raise ValueError("alphas must be a non-empty sequence of non-negative step sizes.")
    names = _resolve_params(model, params)
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1) if y is None else y
    y = check_labels(y, n=x.shape[0], num_classes=logits.shape[-1], name="y")
    all_params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def loss_at(p: dict) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, ({**all_params, **p}, buffers), (x,)), y)

    theta = {n: all_params[n] for n in names}
    g = grad(loss_at)(theta)
    g2 = sum(float(v.pow(2).sum()) for v in g.values())
    with torch.no_grad():
        base = float(loss_at(theta))
        losses = [float(loss_at({n: theta[n] - float(a) * g[n] for n in names})) for a in alphas]
    return {"alpha": alphas, "loss": torch.tensor(losses, dtype=torch.float64),
            "linear": base - alphas * g2}


def gradient_descent_path(f: Callable[[torch.Tensor], torch.Tensor], start: Iterable[float], *,
                          lr: float = 0.1, steps: int = 50) -> torch.Tensor:
    """Follow the negative gradient of a scalar function of a 2-D point.

    Returns the (steps + 1, 2) path, starting at ``start``. Used for the book's illustration
    that the negative gradient is a descent direction known from local information alone.

    Taught in Part 1, section "Gradients are local information, and the negative gradient is a
    descent direction".
    """
    check_positive_int(steps, "steps")
    lr = check_number(lr, "lr")
    p = torch.tensor(list(start), dtype=torch.float64)
    if p.shape != (2,):
        raise ValueError(f"start must be a 2-D point (two numbers), got {list(start)}.")
    path = [p.clone()]
    for _ in range(steps):
        p = p.detach().requires_grad_(True)
        value = f(p)
        if value.dim() != 0:
            raise ValueError("f must return a scalar tensor.")
        (g,) = torch.autograd.grad(value, p)
        p = p - lr * g
        path.append(p.detach().clone())
    return torch.stack(path)
