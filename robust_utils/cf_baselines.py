"""The baselines of C3LT's Tables 1-3: CEM's pertinent negative, CVE, and the targeted PGD attack.

* :func:`cem_pertinent_negative` (Dhurandhar et al., 2018): the smallest elastic-net
  perturbation :math:`\\delta` that changes the decision away from the query class :math:`t_0`,

  .. math:: \\min_\\delta\\; c\\, \\max\\big(Z_{t_0}(x+\\delta) - \\max_{i \\ne t_0} Z_i(x+\\delta), -\\kappa\\big)
            + \\beta \\lVert\\delta\\rVert_1 + \\lVert\\delta\\rVert_2^2
            + \\gamma \\lVert x + \\delta - \\mathrm{AE}(x + \\delta)\\rVert_2^2 ,

  with :math:`Z` the logits, solved by FISTA (a gradient step on the smooth part, then the
  soft-threshold :math:`S_\\beta` and the projection onto the pixel range) and a binary search
  over :math:`c` per image. The pertinent negative only has to leave :math:`t_0` (CEM is not
  targeted): it may land in another class than the CF class, which is why its validity is low.
* :func:`cve` (Goyal et al., 2019): greedy exhaustive search over the cells of the classifier's
  last convolutional map: at each step the (query cell, distractor cell) pair whose swap most
  raises :math:`\\log p_{c'}` is applied, until the classifier (on the edited features) predicts
  :math:`c'` or ``max_edits`` is reached. The image is the query with the matching pixel blocks
  pasted from the distractor, so its class can differ from the edited features' class.
* :func:`adversarial_cf`: the targeted :math:`L_\\infty` PGD attack ("Adv. Attack").

All take and return ``[0, 1]`` images.

Taught in Part 7, section "The baselines".
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_class_labels, check_eval_model, check_images, check_number, check_positive_int
from .attacks import pgd

__all__ = ["cem_pertinent_negative", "cve", "edit_cout", "adversarial_cf"]


def _labels(v, n: int, name: str, nc, device) -> torch.Tensor:
    return check_class_labels(v, n, name, nc).to(device)


def cem_pertinent_negative(model: nn.Module, x: torch.Tensor, query, *, autoencoder: nn.Module | None = None,
                           kappa: float = 0.1, beta: float = 0.1, gamma: float = 100.0, c_init: float = 10.0,
                           search_steps: int = 5, steps: int = 300, lr: float = 1e-2) -> dict:
    """CEM's pertinent negative for each image of ``x`` (predicted class ``query``).

    Parameters
    ----------
    model : nn.Module
        A classifier in eval mode (``[0, 1]`` images -> logits).
    x : Tensor (N, C, H, W) in [0, 1]
    query : int or sequence of int
        The class each image must leave (its prediction).
    autoencoder : nn.Module, optional
        The AE term's autoencoder (``[0, 1]`` images); ``None`` (or ``gamma=0``) drops the term.
    kappa, beta, gamma, c_init : float
        The paper's confidence margin, L1 weight, AE weight and first value of ``c``.
    search_steps, steps : int
        Binary-search rounds over ``c`` (found: ``c`` halves towards the last failure; not found:
        ``c`` x 10 until a bound is known) and FISTA iterations per round.
    lr : float
        The FISTA step, decaying as the square root to 0 (the authors' code's polynomial decay).

    Returns
    -------
    dict
        ``x_cf`` (the best pertinent negative, or ``x`` where none was found), ``found`` (bool
        per image), ``l1`` and ``l2sq`` of the returned perturbations.

    Taught in Part 7, section "The baselines".
    """
    check_eval_model(model, "dropout would make the search random")
    x = check_images(x, "x", value_range=(0.0, 1.0))
    n = x.shape[0]
    q = _labels(query, n, "query", getattr(model, "num_classes", None), x.device)
    kappa = check_number(kappa, "kappa", strict=False)
    beta = check_number(beta, "beta", strict=False)
    gamma = check_number(gamma, "gamma", strict=False)
    c = torch.full((n,), check_number(c_init, "c_init"), device=x.device)
    search_steps, steps = check_positive_int(search_steps, "search_steps"), check_positive_int(steps, "steps")
    lr = check_number(lr, "lr")
    if autoencoder is not None:
        check_eval_model(autoencoder, "the autoencoder term would change between steps")
    use_ae = autoencoder is not None and gamma > 0
    lo, hi = torch.zeros(n, device=x.device), torch.full((n,), float("inf"), device=x.device)
    best_x, best_d = x.clone(), torch.full((n,), float("inf"), device=x.device)
    with torch.no_grad():
        onehot = F.one_hot(q, model(x[:1]).shape[1]).bool()
    for _ in range(search_steps):
        delta = torch.zeros_like(x)
        slack = delta.clone()
        found_now = torch.zeros(n, dtype=torch.bool, device=x.device)
        for k in range(steps):
            rate = lr * (1 - k / steps) ** 0.5
            s = slack.detach().requires_grad_(True)
            adv = x + s
            z = model(adv)
            other = z.masked_fill(onehot, float("-inf")).amax(1)
            attack = torch.clamp(z.gather(1, q[:, None]).squeeze(1) - other, min=-kappa)
            loss = (c * attack).sum() + s.pow(2).sum()
            if use_ae:
                loss = loss + gamma * (adv - autoencoder(adv)).pow(2).sum()
            grad, = torch.autograd.grad(loss, s)
            with torch.no_grad():
                v = slack - rate * grad
                new = torch.sign(v) * torch.clamp(v.abs() - beta, min=0.0)   # S_beta
                new = torch.clamp(x + new, 0.0, 1.0) - x                       # the pixel range
                slack = new + k / (k + 3) * (new - delta)
                delta = new
                cand = x + delta
                pred = model(cand).argmax(1)
                dist = beta * delta.abs().flatten(1).sum(1) + delta.pow(2).flatten(1).sum(1)
                ok = (pred != q) & (dist < best_d)
                best_d = torch.where(ok, dist, best_d)
                best_x[ok] = cand[ok]
                found_now |= pred != q
        # binary search on c, per image
        hi = torch.where(found_now, torch.minimum(hi, c), hi)
        lo = torch.where(found_now, lo, torch.maximum(lo, c))
        c = torch.where(torch.isfinite(hi), (lo + hi) / 2, c * 10)
    found = torch.isfinite(best_d)
    d = best_x - x
    return {"x_cf": best_x, "found": found.cpu().numpy(), "l1": d.abs().flatten(1).sum(1).cpu().numpy(),
            "l2sq": d.pow(2).flatten(1).sum(1).cpu().numpy()}


def cve(model: nn.Module, x: torch.Tensor, distractor: torch.Tensor, target, *, max_edits: int = 8) -> dict:
    """Counterfactual Visual Explanations by greedy cell swaps from a distractor of class ``target``.

    ``model`` must expose ``spatial_features`` and ``classify_spatial`` (the C3LT CNN does). At
    each edit every pair (query cell ``i`` not yet replaced, distractor cell ``j``) is tried on the
    features and the one with the largest ``log p_target`` is kept; the search stops for an
    image once the edited features are classified ``target``.

    Returns
    -------
    dict
        ``x_cf`` (the query with the chosen pixel blocks pasted from the distractor), ``found``
        (the edited *features* reached ``target`` within ``max_edits``), ``n_edits``, ``edits``
        (per image, the list of ``(i, j)`` cell pairs) and ``sequence``: the images after
        ``0, 1, ..., max_edits`` edits, shape ``(max_edits + 1, N, C, H, W)`` (an image repeats its
        last state once it stops), for :func:`edit_cout`.

    Taught in Part 7, section "The baselines".
    """
    check_eval_model(model, "dropout would make the search random")
    if not (hasattr(model, "spatial_features") and hasattr(model, "classify_spatial")):
        raise TypeError(f"cve needs a model with spatial_features and classify_spatial (e.g. the C3LT CNN), "
                        f"got {type(model).__name__}.")
    x = check_images(x, "x", value_range=(0.0, 1.0))
    distractor = check_images(distractor, "distractor", value_range=(0.0, 1.0))
    if distractor.shape != x.shape:
        raise ValueError(f"distractor must hold one image per query, shape {tuple(x.shape)}, got {tuple(distractor.shape)}.")
    n = x.shape[0]
    t = _labels(target, n, "target", getattr(model, "num_classes", None), x.device)
    max_edits = check_positive_int(max_edits, "max_edits")
    with torch.no_grad():
        fq, fd = model.spatial_features(x), model.spatial_features(distractor)
    _, d, gh, gw = fq.shape
    cells = gh * gw
    H, W = x.shape[-2:]
    bh, bw = H // gh, W // gw
    if bh == 0 or bw == 0:
        raise ValueError(f"the feature grid {gh}x{gw} is finer than the image {H}x{W}.")
    x_cf = x.clone()
    seq = [x.clone()]
    edits: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    found = np.zeros(n, dtype=bool)
    with torch.no_grad():
        for b in range(n):
            f = fq[b].flatten(1).T.clone()                 # (cells, d)
            src = fd[b].flatten(1).T                       # (cells, d)
            used = torch.zeros(cells, dtype=torch.bool, device=x.device)
            if int(model.classify_spatial(f.T.reshape(1, d, gh, gw)).argmax(1)) == int(t[b]):
                found[b] = True
                continue
            for _ in range(max_edits):
                cand = f.unsqueeze(0).unsqueeze(0).repeat(cells, cells, 1, 1)   # (i, j, cells, d)
                idx = torch.arange(cells, device=x.device)
                cand[idx, :, idx, :] = src.unsqueeze(0).expand(cells, cells, d)
                logp = F.log_softmax(model.classify_spatial(
                    cand.reshape(cells * cells, cells, d).transpose(1, 2).reshape(-1, d, gh, gw)), 1)[:, int(t[b])]
                logp = logp.reshape(cells, cells).masked_fill(used[:, None], float("-inf"))
                i, j = divmod(int(logp.argmax()), cells)
                f[i] = src[j]
                used[i] = True
                edits[b].append((i, j))
                if int(model.classify_spatial(f.T.reshape(1, d, gh, gw)).argmax(1)) == int(t[b]):
                    found[b] = True
                    break
    for k in range(max_edits):
        for b in range(n):
            if k < len(edits[b]):
                i, j = edits[b][k]
                (ri, ci), (rj, cj) = divmod(i, gw), divmod(j, gw)
                x_cf[b, :, ri * bh:(ri + 1) * bh, ci * bw:(ci + 1) * bw] = \
                    distractor[b, :, rj * bh:(rj + 1) * bh, cj * bw:(cj + 1) * bw]
        seq.append(x_cf.clone())
    return {"x_cf": x_cf, "found": found, "n_edits": np.array([len(e) for e in edits]), "edits": edits,
            "sequence": torch.stack(seq)}


def edit_cout(model: nn.Module, sequence: torch.Tensor, n_edits, query, target) -> dict:
    """COUT over a method's own edits (the paper's variant for CVE): ``AUPC_k`` is the trapezoid
    area of ``p_k`` over the images after ``0 .. K`` edits, ``K`` each image's number of edits,
    with width ``1 / K``; an image with no edits scores its single point. Returns per-image
    arrays ``aupc_query``, ``aupc_target`` and ``cout`` (= target - query; higher is better).

    Taught in Part 7, section "The baselines".
    """
    check_eval_model(model, "dropout would make the curves random")
    if not isinstance(sequence, torch.Tensor) or sequence.dim() != 5:
        raise ValueError("sequence must be the images after 0..K edits, shape (K + 1, N, C, H, W).")
    k1, n = sequence.shape[:2]
    n_edits = np.asarray(n_edits, dtype=int)
    if n_edits.shape != (n,) or (n_edits < 0).any() or (n_edits >= k1).any():
        raise ValueError(f"n_edits must give 0..{k1 - 1} edits for each of the {n} images.")
    nc = getattr(model, "num_classes", None)
    q = _labels(query, n, "query", nc, sequence.device).cpu().numpy()
    t = _labels(target, n, "target", nc, sequence.device).cpu().numpy()
    with torch.no_grad():
        p = torch.stack([model(s).softmax(1) for s in sequence]).cpu().numpy()   # (K + 1, N, classes)
    out = {"aupc_query": np.zeros(n), "aupc_target": np.zeros(n)}
    for b in range(n):
        k = n_edits[b]
        for key, cls in (("aupc_query", q[b]), ("aupc_target", t[b])):
            curve = p[:k + 1, b, cls]
            out[key][b] = curve[0] if k == 0 else float(np.sum((curve[1:] + curve[:-1]) / 2) / k)
    out["cout"] = out["aupc_target"] - out["aupc_query"]
    return out


def adversarial_cf(model: nn.Module, x: torch.Tensor, target, *, eps: float = 0.1, steps: int = 40,
                   alpha: float | None = None, seed: int = 0) -> torch.Tensor:
    """The "Adv. Attack" baseline: targeted :math:`L_\\infty` PGD towards ``target`` within ``eps``
    (``[0, 1]`` pixels; step ``alpha`` default ``2.5 eps / steps``), no random start.

    Taught in Part 7, section "The baselines".
    """
    check_eval_model(model, "dropout would make the attack random")
    x = check_images(x, "x", value_range=(0.0, 1.0))
    t = _labels(target, x.shape[0], "target", getattr(model, "num_classes", None), x.device)
    steps = check_positive_int(steps, "steps")
    alpha = 2.5 * eps / steps if alpha is None else alpha
    return pgd(model, x, t, eps, alpha=alpha, steps=steps, random_start=False, targeted=True, seed=seed)
