"""How good is a counterfactual? The metrics of C3LT (Khorram and Fuxin, CVPR 2022), Part 7.

For a query ``x`` of class ``c`` and a counterfactual (CF) ``x'`` meant for class ``c'``:

* **validity** (property I): the fraction of CFs that the classifier puts in ``c'`` (higher is
  better);
* **proximity** (II): the mean absolute change per pixel, :math:`\\lVert x - x' \\rVert_1 /
  (CHW)` (lower is better; the paper computes it on ``[-1, 1]`` pixels);
* **COUT** (I and III, the paper's eq. 8): insert the pixels of ``x'`` into ``x`` in the order of
  the normalised difference mask :math:`m = \\mathrm{minmax}(|x' - x|)`, largest first, in ``T``
  steps, record the classifier's softmax for ``c`` and ``c'`` after each step, and take the areas
  :math:`\\mathrm{AUPC}_k = \\frac1T \\sum_{t=0}^{T-1} \\frac12 (f_k(x^{(t)}) + f_k(x^{(t+1)}))`;
  :math:`\\mathrm{COUT} = \\mathrm{AUPC}_{c'} - \\mathrm{AUPC}_c \\in [-1, 1]` (higher is better);
* **IM1** and **IM2** (IV; Van Looveren and Klaise, 2021): with autoencoders of the query class,
  the CF class and all classes, :math:`\\mathrm{IM1} = \\lVert x' - AE_{c'}(x')\\rVert_2^2 /
  (\\lVert x' - AE_c(x')\\rVert_2^2 + \\epsilon)` and :math:`\\mathrm{IM2} = \\lVert AE_{c'}(x') -
  AE(x')\\rVert_2^2 / (\\lVert x' \\rVert_1 + \\epsilon)` (lower is better);
* **FID** and **KID** (IV): distances between the feature distributions of real images and of CFs,
  :math:`\\lVert\\mu_r - \\mu_g\\rVert^2 + \\mathrm{Tr}(\\Sigma_r + \\Sigma_g - 2(\\Sigma_r\\Sigma_g)^{1/2})`
  and the unbiased squared MMD with the kernel :math:`(f^\\top g / d + 1)^3` (lower is better).
  Inception weights cannot be loaded offline, so the book computes them on the features of a
  Fashion-MNIST network other than the explained classifier; the numbers are then not comparable
  with Inception-based ones.

When ``x' = x`` the mask is all zeros and the insertion order is the pixel order; every step
leaves the image unchanged, so both AUPCs equal the scores of ``x`` and COUT is defined (no NaN).

Taught in Part 7, sections "Table 1: COUT", "Realism: IM1, IM2, FID and KID" and "Table 3:
proximity and validity".
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_class_labels, check_eval_model, check_positive_int, model_device
from .metrics import declares_direction

__all__ = ["validity", "proximity", "cout", "im1", "im2", "fid_from_features", "kid_from_features"]


def _pair(x, x_cf):
    for name, t in (("x", x), ("x_cf", x_cf)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4 or not torch.is_floating_point(t):
            raise ValueError(f"{name} must be a float tensor of images (N, C, H, W).")
    if x.shape != x_cf.shape:
        raise ValueError(f"x and x_cf must have the same shape, got {tuple(x.shape)} and {tuple(x_cf.shape)}.")
    return x, x_cf


@declares_direction("better")
def validity(model: nn.Module, x_cf: torch.Tensor, target) -> float:
    """Fraction of counterfactuals the model assigns to ``target`` (an int or ``(N,)`` labels).

    Taught in Part 7, section "Table 3: proximity and validity".
    """
    check_eval_model(model, "the predictions would be random")
    _pair(x_cf, x_cf)
    dev = model_device(model, x_cf.device)
    t = check_class_labels(target, x_cf.shape[0], "target", getattr(model, "num_classes", None))
    with torch.no_grad():
        pred = model(x_cf.to(dev)).argmax(1).cpu()
    return float((pred == t.cpu()).float().mean())


@declares_direction("worse")
def proximity(x: torch.Tensor, x_cf: torch.Tensor) -> float:
    """Mean absolute change per pixel, ``sum |x - x_cf| / (N C H W)``.

    Taught in Part 7, section "Table 3: proximity and validity".
    """
    x, x_cf = _pair(x, x_cf)
    return float((x - x_cf).abs().mean())


def _minmax(m: torch.Tensor) -> torch.Tensor:
    lo = m.amin(1, keepdim=True)
    hi = m.amax(1, keepdim=True)
    return torch.where(hi > lo, (m - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(m))


@declares_direction("better")
def cout(model: nn.Module, x: torch.Tensor, x_cf: torch.Tensor, query, target, *, steps: int = 50,
         batch_size: int = 64) -> dict:
    """COUT of the paper's eq. (8), per image and on average.

    Parameters
    ----------
    model : nn.Module
        The classifier, in eval mode, taking the images as given (logits out).
    x, x_cf : Tensor (N, C, H, W)
        Queries and their counterfactuals.
    query, target : int or Tensor (N,)
        The query class ``c`` and the CF class ``c'``.
    steps : int, default 50
        Chunks of ``ceil(H W / steps)`` pixel positions (all channels of a position together) are
        inserted per step (the code: ``784 // 50 = 15`` pixels, 53 steps); ``T`` is the number of
        steps this gives.

    Returns
    -------
    dict
        ``cout`` (mean), ``aupc_cf`` and ``aupc_query`` (means), per-image numpy arrays
        ``cout_per_image``, ``aupc_cf_per_image``, ``aupc_query_per_image``, and the curves
        ``curve_cf`` and ``curve_query`` (numpy ``(N, T + 1)``); COUT is higher-is-better.

    Taught in Part 7, section "Table 1: COUT".
    """
    check_eval_model(model, "the scores would be random")
    x, x_cf = _pair(x, x_cf)
    steps = check_positive_int(steps, "steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    n, c, h, w = x.shape
    nc = getattr(model, "num_classes", None)

    cq, ct = check_class_labels(query, n, "query", nc), check_class_labels(target, n, "target", nc)
    dev = model_device(model, x.device)
    chunk = max(1, math.ceil(h * w / steps))
    t_steps = math.ceil(h * w / chunk)
    mask = _minmax((x_cf - x).abs().sum(1).flatten(1))                 # (N, HW), channels together
    order = torch.sort(mask, dim=1, descending=True, stable=True).indices
    curves_q, curves_t = [], []
    with torch.no_grad():
        for i in range(0, n, batch_size):
            xb, xcb = x[i:i + batch_size].to(dev), x_cf[i:i + batch_size].to(dev)
            ob = order[i:i + batch_size].to(dev)
            b = xb.shape[0]
            cur = xb.clone().view(b, c, h * w)
            src = xcb.view(b, c, h * w)
            imgs = [cur.clone()]
            for t in range(t_steps):
                idx = ob[:, t * chunk:(t + 1) * chunk]
                gidx = idx[:, None, :].expand(-1, c, -1)
                cur.scatter_(2, gidx, src.gather(2, gidx))
                imgs.append(cur.clone())
            stack = torch.stack(imgs, 1).view(b * (t_steps + 1), c, h, w)
            p = F.softmax(model(stack), 1).view(b, t_steps + 1, -1).cpu()
            curves_q.append(p.gather(2, cq[i:i + b, None, None].expand(-1, t_steps + 1, 1)).squeeze(2))
            curves_t.append(p.gather(2, ct[i:i + b, None, None].expand(-1, t_steps + 1, 1)).squeeze(2))
    cq_, ct_ = torch.cat(curves_q).numpy(), torch.cat(curves_t).numpy()

    def aupc(curve):
        return 0.5 * (curve[:, :-1] + curve[:, 1:]).mean(1)

    a_t, a_q = aupc(ct_), aupc(cq_)
    per = a_t - a_q
    return {"cout": float(per.mean()), "aupc_cf": float(a_t.mean()), "aupc_query": float(a_q.mean()),
            "cout_per_image": per, "aupc_cf_per_image": a_t, "aupc_query_per_image": a_q,
            "curve_cf": ct_, "curve_query": cq_}


def _recon_sq(ae: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        r = ae(x)
    if r.shape != x.shape:
        raise ValueError(f"an autoencoder must return its input's shape {tuple(x.shape)}, got {tuple(r.shape)}.")
    return r, (x - r).flatten(1).pow(2).sum(1)


@declares_direction("worse")
def im1(ae_query: nn.Module, ae_cf: nn.Module, x_cf: torch.Tensor, eps: float = 1e-8) -> float:
    """IM1: the CF class autoencoder's reconstruction error of ``x_cf`` over the query class's.

    Taught in Part 7, section "Realism: IM1, IM2, FID and KID".
    """
    _pair(x_cf, x_cf)
    _, e_cf = _recon_sq(ae_cf, x_cf)
    _, e_q = _recon_sq(ae_query, x_cf)
    return float((e_cf / (e_q + eps)).mean())


@declares_direction("worse")
def im2(ae_cf: nn.Module, ae_all: nn.Module, x_cf: torch.Tensor, eps: float = 1e-8) -> float:
    """IM2: the distance between the CF-class and all-class reconstructions of ``x_cf``, over
    ``||x_cf||_1``.

    Taught in Part 7, section "Realism: IM1, IM2, FID and KID".
    """
    _pair(x_cf, x_cf)
    r_cf, _ = _recon_sq(ae_cf, x_cf)
    r_all, _ = _recon_sq(ae_all, x_cf)
    return float(((r_cf - r_all).flatten(1).pow(2).sum(1) / (x_cf.flatten(1).abs().sum(1) + eps)).mean())


def _features(f, name):
    f = torch.as_tensor(f, dtype=torch.float64)
    if f.dim() != 2 or f.shape[0] < 2:
        raise ValueError(f"{name} must be features of shape (N >= 2, D), got {tuple(f.shape)}.")
    return f


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((a + a.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


@declares_direction("worse")
def fid_from_features(real, fake) -> float:
    """The Fréchet distance between Gaussian fits of two feature sets ``(N, D)``.

    ``Tr((S_r S_g)^{1/2})`` is computed as ``Tr((S_r^{1/2} S_g S_r^{1/2})^{1/2})``, which is
    symmetric positive semi-definite, so the result is real.

    Taught in Part 7, section "Realism: IM1, IM2, FID and KID".
    """
    r, g = _features(real, "real"), _features(fake, "fake")
    if r.shape[1] != g.shape[1]:
        raise ValueError(f"real and fake features differ in size: {r.shape[1]} and {g.shape[1]}.")
    mu_r, mu_g = r.mean(0).numpy(), g.mean(0).numpy()
    s_r, s_g = np.cov(r.numpy(), rowvar=False), np.cov(g.numpy(), rowvar=False)
    root = _sqrtm_psd(s_r)
    cross = np.trace(_sqrtm_psd(root @ s_g @ root))
    return float(((mu_r - mu_g) ** 2).sum() + np.trace(s_r) + np.trace(s_g) - 2 * cross)


@declares_direction("worse")
def kid_from_features(real, fake, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0,
                      rescale: bool = False) -> tuple[float, float]:
    """KID: the unbiased squared MMD with the kernel ``(x.y / d + 1)^3``, mean and std over subsets.

    The cubic kernel was chosen for Inception's pool features, whose coordinates are of order 1,
    so that ``x.y / d`` is too. Features of another network can be far larger, and then the
    cube blows KID up by orders of magnitude. ``rescale=True`` divides both sets by one number,
    the root mean square coordinate of ``real``, which puts ``x.y / d`` near 1 for a typical real
    feature; the result no longer depends on the features' overall scale. ``False`` (default) is
    the textbook KID, as torchmetrics computes it.

    Taught in Part 7, section "Realism: IM1, IM2, FID and KID".
    """
    r, g = _features(real, "real"), _features(fake, "fake")
    if not isinstance(rescale, bool):
        raise TypeError(f"rescale must be True or False, got {rescale!r}.")
    if r.shape[1] != g.shape[1]:
        raise ValueError(f"real and fake features differ in size: {r.shape[1]} and {g.shape[1]}.")
    if rescale:
        rms = float(r.pow(2).mean().sqrt())
        if rms == 0:
            raise ValueError("rescale=True needs real features that are not all zero.")
        r, g = r / rms, g / rms
    subsets = check_positive_int(subsets, "subsets")
    m = min(check_positive_int(subset_size, "subset_size"), r.shape[0], g.shape[0])
    if m < 2:
        raise ValueError("KID needs at least two features per set.")
    d = r.shape[1]
    gen = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(subsets):
        a = r[torch.randperm(r.shape[0], generator=gen)[:m]]
        b = g[torch.randperm(g.shape[0], generator=gen)[:m]]
        kxx, kyy, kxy = ((a @ a.T) / d + 1) ** 3, ((b @ b.T) / d + 1) ** 3, ((a @ b.T) / d + 1) ** 3
        mmd = ((kxx.sum() - kxx.diagonal().sum()) + (kyy.sum() - kyy.diagonal().sum())) / (m * (m - 1)) \
            - 2 * kxy.mean()
        vals.append(float(mmd))
    return float(np.mean(vals)), float(np.std(vals))
