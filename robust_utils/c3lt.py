"""C3LT (Khorram and Fuxin, CVPR 2022): counterfactuals by cycle-consistent latent transformations.

For a class pair ``(c, c')``, two small maps in the generator's latent space are learned: ``g``
moves a code of class ``c`` towards class ``c'`` and ``h`` moves it back. A step is residual and
keeps the code's norm (the authors' code),

.. math::  z \\leftarrow z + g(z), \\qquad z \\leftarrow z\\, \\lVert z_0\\rVert / \\lVert z\\rVert ,

repeated ``n`` times (:func:`transform`); the counterfactual of ``x`` is ``x' = G(g^n(E(x)))``.
Both maps are two 1 x 1 convolutions (100 -> 100) with a ReLU between (:class:`LatentMap`).

The losses of eqs. (3)-(7), with the code's weights, averaged over both directions
(:func:`c3lt_losses`): the classification loss (NLL of the CF class), the proximity loss
:math:`[\\lVert x - x'\\rVert_1 + 10\\, S(m) + E(m)] / 12` with the mask :math:`m = \\mathrm{minmax}((x' -
x)^2)`, its smoothness :math:`S` (mean squared difference of neighbouring mask pixels) and entropy
term :math:`E = \\mathrm{mean}(\\min(m, 1 - m))`, the cycle loss (L1 between ``x`` and the cycled
image ``G(h^n(g^n(z)))``, on the pixels and on the classifier's early feature maps, plus L1
between ``z`` and ``h^n(g^n(z))``), and the adversarial loss (the discriminator should call CFs
and cycled images real). Total: ``cls + 0.1 prox + 0.1 cyc + 0.001 adv``. Only ``g`` and ``h``
are trained (:func:`train_c3lt`); ``G``, ``D``, ``E`` and the classifier stay frozen.

Images: ``G`` and ``D`` work on ``[-1, 1]``, the book's classifiers take ``[0, 1]`` pixels; the
conversion happens here.

Taught in Part 7, section "C3LT".
"""
from __future__ import annotations

import contextlib
import time

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_bool, check_class_index, check_number, check_positive_int, check_seed
from .config import pick_device, progress_bar, seed_everything
from .generative import LATENT_DIM, from_tanh_range, to_tanh_range

__all__ = ["LatentMap", "transform", "mask_of", "proximity_loss", "c3lt_losses", "train_c3lt",
           "counterfactual", "latent_optimisation", "LOSS_WEIGHTS"]

#: The code's weights of the proximity, cycle and adversarial losses (classification: 1).
LOSS_WEIGHTS = {"prx": 0.1, "cyc": 0.1, "adv": 0.001}


class LatentMap(nn.Module):
    """``g`` or ``h``: two 1 x 1 convolutions ``latent_dim -> latent_dim`` with a ReLU between.

    Takes and returns codes ``(B, latent_dim)`` (viewed as ``(B, latent_dim, 1, 1)`` inside).

    Taught in Part 7, section "C3LT".
    """

    def __init__(self, latent_dim: int = LATENT_DIM):
        super().__init__()
        d = check_positive_int(latent_dim, "latent_dim")
        self.latent_dim = d
        self.net = nn.Sequential(nn.Conv2d(d, d, 1), nn.ReLU(), nn.Conv2d(d, d, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"a latent map takes codes of shape (B, {self.latent_dim}), got "
                             f"{tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}.")
        return self.net(z[:, :, None, None]).flatten(1)


def transform(latent_map: nn.Module, z: torch.Tensor, n: int = 1) -> torch.Tensor:
    """``n`` residual steps ``z <- z + map(z)``, each rescaled to the norm of the starting code.

    Taught in Part 7, section "C3LT".
    """
    n = check_positive_int(n, "n")
    norm0 = z.norm(dim=1, keepdim=True)
    for _ in range(n):
        z = z + latent_map(z)
        z = z * norm0 / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return z


def mask_of(x: torch.Tensor, x_cf: torch.Tensor) -> torch.Tensor:
    """The proximity mask ``m = minmax((x_cf - x)^2)`` per image, ``(B, 1, H, W)`` (channels summed).

    Taught in Part 7, section "C3LT".
    """
    m = (x_cf - x).pow(2).sum(1, keepdim=True)
    lo = m.amin(dim=(2, 3), keepdim=True)
    hi = m.amax(dim=(2, 3), keepdim=True)
    return (m - lo) / (hi - lo).clamp_min(1e-12)


def proximity_loss(x: torch.Tensor, x_cf: torch.Tensor) -> torch.Tensor:
    """``[L1(x, x') + 10 smoothness(m) + entropy(m)] / 12``, the code's proximity loss (a scalar).

    Taught in Part 7, section "C3LT".
    """
    m = mask_of(x, x_cf)
    smooth = ((m[..., 1:, :] - m[..., :-1, :]).pow(2).mean() + (m[..., :, 1:] - m[..., :, :-1]).pow(2).mean()) / 2
    entropy = torch.minimum(m, 1 - m).mean()
    return ((x - x_cf).abs().mean() + 10 * smooth + entropy) / 12


def _early_features(classifier: nn.Module, x01: torch.Tensor) -> list[torch.Tensor]:
    """The classifier's first two activation maps (before pooling) where it names them
    ``relu1``/``relu2`` (the C3LT CNN) or ``act1``/``act2``; none otherwise."""
    names = [n for n in ("relu1", "relu2", "act1", "act2") if hasattr(classifier, n)][:2]
    out: list[torch.Tensor] = []
    hooks = [getattr(classifier, n).register_forward_hook(lambda _m, _i, o: out.append(o)) for n in names]
    try:
        classifier(x01)
    finally:
        for h in hooks:
            h.remove()
    return out


def _check_weights(weights) -> dict:
    """``None`` -> :data:`LOSS_WEIGHTS`; otherwise a dict over the same names, each >= 0."""
    if weights is None:
        return dict(LOSS_WEIGHTS)
    if not isinstance(weights, dict) or set(weights) != set(LOSS_WEIGHTS):
        raise ValueError(f"weights must be a dict with the keys {sorted(LOSS_WEIGHTS)} (e.g. "
                         f"{{**c3lt.LOSS_WEIGHTS, 'cyc': 0.0}} to drop the cycle loss), got {weights!r}.")
    return {k: check_number(v, f"weights[{k!r}]", strict=False) for k, v in weights.items()}


def c3lt_losses(classifier: nn.Module, generator: nn.Module, discriminator: nn.Module, g: nn.Module,
                h: nn.Module, z: torch.Tensor, query: int, target: int, n: int = 1, weights=None) -> dict:
    """The four C3LT losses of one direction: codes ``z`` of class ``query`` mapped to ``target``
    by ``g`` and back by ``h``. :func:`train_c3lt` calls it for both directions (codes of each
    class, maps swapped) and averages the two. ``weights`` (default :data:`LOSS_WEIGHTS`, the
    code's) weight the proximity, cycle and adversarial terms against the classification loss;
    a weight of 0 removes a term from the total (the chapter's ablations).

    Returns
    -------
    dict
        ``total`` (differentiable), ``cls``, ``prx``, ``cyc``, ``adv`` (detached 0-d tensors for the
        record, on the codes' device: read them with ``float()``; left as tensors so that training
        does not wait for the GPU at every step).

    Taught in Part 7, section "C3LT".
    """
    x = generator(z)                                    # [-1, 1]
    z_cf = transform(g, z, n)
    x_cf = generator(z_cf)
    z_back = transform(h, z_cf, n)
    x_back = generator(z_back)
    logits = classifier(from_tanh_range(x_cf))
    tgt = torch.full((z.shape[0],), target, dtype=torch.long, device=z.device)
    cls = F.cross_entropy(logits, tgt)
    prx = proximity_loss(x, x_cf)
    feats_x = _early_features(classifier, from_tanh_range(x))
    feats_b = _early_features(classifier, from_tanh_range(x_back))
    perceptual = sum(((a - b).abs().mean() for a, b in zip(feats_x, feats_b)), torch.zeros((), device=z.device))
    cyc = (perceptual + (x - x_back).abs().mean()) / (len(feats_x) + 1) + (z - z_back).abs().mean()
    d_cf, d_back = discriminator(x_cf), discriminator(x_back)
    adv = (F.binary_cross_entropy_with_logits(d_cf, torch.ones_like(d_cf))
           + F.binary_cross_entropy_with_logits(d_back, torch.ones_like(d_back))) / 2
    w = _check_weights(weights)
    total = cls + w["prx"] * prx + w["cyc"] * cyc + w["adv"] * adv
    return {"total": total, "cls": cls.detach(), "prx": prx.detach(), "cyc": cyc.detach(), "adv": adv.detach()}


@contextlib.contextmanager
def _frozen(*modules: nn.Module):
    """Eval mode and no gradients for ``modules`` inside the block; their ``requires_grad``
    flags are restored afterwards (eval mode stays)."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for m in modules:
        m.eval()
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


def train_c3lt(classifier: nn.Module, generator: nn.Module, discriminator: nn.Module, z_query: torch.Tensor,
               z_target: torch.Tensor, query: int, target: int, *, epochs: int, n: int = 1,
               batch_size: int = 128, lr: float = 1e-3, decay_every: int = 25, device="cpu", seed: int = 0,
               progress: bool = True, weights=None) -> tuple[nn.Module, nn.Module, dict]:
    """Train ``g`` (query -> target) and ``h`` (target -> query) on latent codes of the two classes.

    ``z_query`` and ``z_target`` are codes of images of each class (``E(x)``, or generator samples
    the classifier assigns to the class). The classifier, generator and discriminator are frozen
    (no gradients, eval mode) and restored to their ``requires_grad`` flags afterwards. Adam on
    ``g`` and ``h`` only, halving the rate every ``decay_every`` epochs. ``weights`` as in
    :func:`c3lt_losses`.

    Returns ``(g, h, history)`` with per-epoch means of ``total``, ``cls``, ``prx``, ``cyc``,
    ``adv`` and ``time``.

    Taught in Part 7, section "C3LT".
    """
    nc = getattr(classifier, "num_classes", None)
    query, target = check_class_index(query, "query", nc), check_class_index(target, "target", nc)
    if query == target:
        raise ValueError("query and target must be different classes.")
    for name, zz in (("z_query", z_query), ("z_target", z_target)):
        if not isinstance(zz, torch.Tensor) or zz.dim() != 2 or zz.shape[0] == 0:
            raise ValueError(f"{name} must be latent codes of shape (B, D), B >= 1.")
    epochs, n = check_positive_int(epochs, "epochs"), check_positive_int(n, "n")
    batch_size, decay_every = check_positive_int(batch_size, "batch_size"), check_positive_int(decay_every, "decay_every")
    lr = check_number(lr, "lr")
    progress = check_bool(progress, "progress")
    weights = _check_weights(weights)
    dev = pick_device(device)
    seed_everything(check_seed(seed))
    frozen = (classifier, generator, discriminator)
    for m in frozen:
        m.to(dev)
    d = z_query.shape[1]
    g, h = LatentMap(d).to(dev), LatentMap(d).to(dev)
    opt = torch.optim.Adam(list(g.parameters()) + list(h.parameters()), lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=decay_every, gamma=0.5)
    zq, zt = z_query.to(dev), z_target.to(dev)
    order = torch.Generator().manual_seed(seed)
    steps = max(1, (min(zq.shape[0], zt.shape[0]) + batch_size - 1) // batch_size)
    hist = {k: [] for k in ("total", "cls", "prx", "cyc", "adv", "time")}
    bar = progress_bar(total=epochs * steps, disable=not progress, unit="batch", desc=f"C3LT {query}<->{target}")
    with _frozen(*frozen):
        try:
            for _ in range(epochs):
                t0 = time.perf_counter()
                pq, pt = torch.randperm(zq.shape[0], generator=order), torch.randperm(zt.shape[0], generator=order)
                sums = {k: torch.zeros((), dtype=torch.float64, device=dev)  # read once per epoch
                        for k in ("total", "cls", "prx", "cyc", "adv")}
                for s in range(steps):
                    bq = zq[pq[s * batch_size:(s + 1) * batch_size].to(dev)]
                    bt = zt[pt[s * batch_size:(s + 1) * batch_size].to(dev)]
                    fwd = c3lt_losses(classifier, generator, discriminator, g, h, bq, query, target, n, weights)
                    bwd = c3lt_losses(classifier, generator, discriminator, h, g, bt, target, query, n, weights)
                    loss = (fwd["total"] + bwd["total"]) / 2
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    for k in sums:
                        sums[k] += (loss.detach() if k == "total" else (fwd[k] + bwd[k]) / 2) / steps
                    bar.update(1)
                sched.step()
                for k, v in sums.items():
                    hist[k].append(float(v))
                hist["time"].append(time.perf_counter() - t0)
        finally:
            bar.close()
    return g.eval(), h.eval(), hist


def counterfactual(encoder: nn.Module, generator: nn.Module, g: nn.Module, x: torch.Tensor, n: int = 1) -> torch.Tensor:
    """``x' = G(g^n(E(x)))`` for ``[0, 1]`` images ``x``; returns ``[0, 1]`` images.

    Taught in Part 7, section "C3LT".
    """
    with torch.no_grad():
        return from_tanh_range(generator(transform(g, encoder(to_tanh_range(x)), n)))


def latent_optimisation(classifier: nn.Module, generator: nn.Module, z0: torch.Tensor, x: torch.Tensor,
                        target: int, *, steps: int = 100, lr: float = 0.05, prox_weight: float = 0.1) -> dict:
    """The per-image baseline C3LT replaces: ``argmin_z CE(f(G(z)), c') + w * proximity(G(z), x)``.

    Starts from ``z0`` (``E(x)``, say) and runs Adam on the codes only (``classifier`` and
    ``generator`` get no gradients); ``x`` are ``[0, 1]`` images. Returns ``x_cf`` (``[0, 1]``),
    ``z`` and the per-step ``loss`` list.

    Taught in Part 7, section "The baselines".
    """
    nc = getattr(classifier, "num_classes", None)
    target = check_class_index(target, "target", nc)
    steps, lr = check_positive_int(steps, "steps"), check_number(lr, "lr")
    prox_weight = check_number(prox_weight, "prox_weight", strict=False)
    if not isinstance(z0, torch.Tensor) or z0.dim() != 2 or z0.shape[0] != x.shape[0]:
        raise ValueError("z0 must hold one latent code per image, shape (B, D).")
    z = z0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    tgt = torch.full((z.shape[0],), target, dtype=torch.long, device=z.device)
    x_t = to_tanh_range(x)
    losses = []
    with _frozen(classifier, generator):
        for _ in range(steps):
            x_cf = generator(z)
            loss = F.cross_entropy(classifier(from_tanh_range(x_cf)), tgt) + prox_weight * proximity_loss(x_t, x_cf)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    with torch.no_grad():
        x_cf = from_tanh_range(generator(z))
    return {"x_cf": x_cf, "z": z.detach(), "loss": losses}


def latent_optimisation_to_validity(classifier: nn.Module, generator: nn.Module, z0: torch.Tensor, x: torch.Tensor,
                                    target: int, validity: float, *, steps_grid=(10, 20, 50, 100, 200, 400),
                                    **kwargs) -> dict:
    """Per-image latent optimisation with ever more steps until its validity reaches ``validity``.

    Runs :func:`latent_optimisation` with each number of steps of ``steps_grid`` in turn (each
    run from ``z0``, timed) and stops at the first whose counterfactuals the classifier assigns
    to ``target`` at least as often as ``validity`` (C3LT's, for the speed comparison at equal
    validity). Returns ``steps``, ``validity`` and ``seconds`` of that run (of the last run,
    with ``reached=False``, when none reached it), and ``runs``: every ``(steps, validity,
    seconds)``.

    Taught in Part 7, section "Speed".
    """
    validity = check_number(validity, "validity", maximum=1.0, strict=False)
    grid = [check_positive_int(s, "each entry of steps_grid") for s in steps_grid]
    if not grid:
        raise ValueError("steps_grid must name at least one number of steps.")
    tgt = check_class_index(target, "target", getattr(classifier, "num_classes", None))
    runs = []
    for s in grid:
        t0 = time.perf_counter()
        out = latent_optimisation(classifier, generator, z0, x, tgt, steps=s, **kwargs)
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            val = float((classifier(out["x_cf"]).argmax(1) == tgt).float().mean())
        runs.append((s, val, seconds))
        if val >= validity:
            return {"steps": s, "validity": val, "seconds": seconds, "reached": True, "runs": runs}
    return {"steps": s, "validity": val, "seconds": seconds, "reached": False, "runs": runs}
