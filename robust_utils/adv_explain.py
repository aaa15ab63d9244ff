"""Algorithm 1 of Woods et al. (2019): minimal adversarial examples and adversarial explanations.

Every image keeps its own perturbation :math:`\\delta` (start 0), its own optimiser state and its
own best result. At step :math:`n` the network sees :math:`\\hat x = c(x + \\delta)` (``c`` clips to
``[0, 1]``) and a goal :math:`g` is tested on :math:`s = \\mathrm{softmax}(f(\\hat x))`:

* while :math:`g` is false, the step follows the normalised gradient of the class score,
  :math:`\\Delta\\delta = \\eta\\, \\nabla s_c / \\lVert \\nabla s_c \\rVert_2` (the *tick*);
* once :math:`g` is true, the step shrinks the perturbation, :math:`\\Delta\\delta = 2\\delta` (the
  gradient of :math:`\\lVert\\delta\\rVert_2^2`, the *tock*), and the smallest :math:`\\delta` that met
  the goal so far is kept;

and an optimiser (SGD with momentum 0.9) applies :math:`\\delta \\leftarrow \\delta - a_n v`. The
paper uses a constant rate :math:`a_n = 0.01` for :math:`N = 450` steps and :math:`\\eta = 0.55`;
the book's default keeps the same total rate :math:`\\sum_n a_n = 0.01 N` but lets it fall
linearly, :math:`a_n = A\\, 2 (N - n) / (N (N + 1))` (the authors' code does this), so the last
steps are fine enough to settle on the boundary. The goals:

.. math::  g_{adv}: s_t < \\max_{j \\ne t} s_j \\;\\; (1), \\qquad
           g_{BTR}: s_t < 1 / V \\;\\; (3), \\qquad
           g_{explain\\pm}: \\lVert\\delta\\rVert_{rms} > \\rho \\;\\; (2).

``g_adv`` and ``g_BTR`` descend on :math:`s_t` (the true class) and return the smallest
successful perturbation; its r.m.s.e. :math:`\\lVert \\hat x - x \\rVert_2 / \\sqrt{N}` feeds the ARA
(:mod:`robust_utils.ara`). ``explain+`` *raises* the score of a chosen class (the true class by
default) and ``explain-`` lowers it (the paper: "maximize the selected class loss"), both
tick-tocking at the r.m.s.e. budget :math:`\\rho`; the result is the final image.

**Where the authors' code differs** (all available as options; the book follows the paper):
it follows the cross-entropy gradient :math:`-\\nabla \\log s_t` rather than :math:`\\nabla s_t`
(``gradient="ce"``; after normalisation the direction is the same, since
:math:`\\nabla \\log s_t = \\nabla s_t / s_t`, so only round-off differs), normalises steps to unit
r.m.s. rather than unit :math:`L_2` (``normalise="rms"``), shrinks along the normalised
perturbation rather than by :math:`2\\delta` (``shrink="normalised"``), averages its momentum
:math:`m \\leftarrow 0.9 m + 0.1 \\Delta` (``momentum_rule="average"``) and does not clip
(``clip=False``). :data:`CODE_OPTIONS` collects them, with the code's total budget of 20 r.m.s.

We record the perturbation the network actually sees, :math:`\\hat x - x`, whose norm never
exceeds :math:`\\lVert\\delta\\rVert` (the paper records :math:`\\lVert\\delta\\rVert`, which may hold
parts that clipping removes).

Taught in Part 6, section "Algorithm 1".
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._checks import (check_bool, check_choice, check_class_index, check_eval_model, check_labels,
                      check_model_input, check_number, check_positive_int, check_seed, model_device)
from .ara import accuracy_robustness_curve, ara

__all__ = ["GOALS", "PAPER_OPTIONS", "CODE_OPTIONS", "MIN_NORM_ATTACKS", "linear_step_sizes", "goal_met",
           "rms", "algorithm1", "ara_protocol", "foolbox_min_norm"]

#: The goals g of Algorithm 1 (eqs. 1-3).
GOALS = ("adv", "btr", "explain+", "explain-")
#: The paper's Methods: SGD with momentum 0.9, learning rate 0.01, N = 450, eta = 0.55 (the book
#: keeps the paper's choices but lets the rate fall linearly with the same total, 0.01 N).
PAPER_OPTIONS = {"steps": 450, "lr": 0.01, "momentum": 0.9, "eta": 0.55, "schedule": "constant",
                 "gradient": "softmax", "normalise": "l2", "shrink": "l2loss",
                 "momentum_rule": "sgd", "clip": True}
#: The authors' code: cross-entropy gradient, unit-r.m.s. steps, normalised shrink, averaged
#: momentum, no clipping, a linearly falling step whose sizes sum to 20 r.m.s.
CODE_OPTIONS = {"steps": 450, "lr": 20.0 / 450, "momentum": 0.9, "eta": 1.0, "schedule": "linear",
                "gradient": "ce", "normalise": "rms", "shrink": "normalised",
                "momentum_rule": "average", "clip": False}


def linear_step_sizes(steps: int, total: float) -> torch.Tensor:
    """``steps`` sizes that fall linearly to ``total / (N (N + 1) / 2)`` and sum to ``total``.

    :math:`a_n = \\mathrm{total} \\cdot 2 (N - n) / (N (N + 1))`, :math:`n = 0, \\dots, N - 1`: with
    ``total = eps`` and ``N = k`` these are the :math:`\\psi_{k,n}\\,\\epsilon` of :math:`L_{2,\\min}`
    adversarial training.

    Taught in Part 6, section "Algorithm 1".
    """
    steps = check_positive_int(steps, "steps")
    total = check_number(total, "total", strict=False, hint="the sum of the step sizes, e.g. 0.01 * steps.")
    n = torch.arange(steps, dtype=torch.float64)
    return (total * 2 * (steps - n) / (steps * (steps + 1))).float()


def rms(t: torch.Tensor) -> torch.Tensor:
    """Per-image root mean square of ``t`` ``(B, ...)``: the r.m.s.e. when ``t`` is a perturbation.

    Taught in Part 6, section "Algorithm 1".
    """
    if not isinstance(t, torch.Tensor) or t.dim() < 1:
        raise ValueError("rms needs a tensor of shape (B, ...).")
    return t.flatten(1).pow(2).mean(1).sqrt() if t.dim() > 1 else t.abs()


def goal_met(goal: str, probs: torch.Tensor, y: torch.Tensor, dist: torch.Tensor | None = None,
             rho: float | None = None) -> torch.Tensor:
    """Per image, whether ``goal`` holds for softmax outputs ``probs`` ``(B, V)`` and labels ``y``.

    ``adv``: the true class is no longer the top one (ties count as broken); ``btr``: its score
    is below ``1 / V``; ``explain+`` / ``explain-``: the perturbation's r.m.s.e. ``dist`` exceeds
    ``rho``.

    Taught in Part 6, section "Algorithm 1".
    """
    check_choice(goal, "goal", GOALS)
    if not isinstance(probs, torch.Tensor) or probs.dim() != 2:
        raise ValueError("probs must be softmax outputs of shape (B, V).")
    y = check_labels(y, n=probs.shape[0], num_classes=probs.shape[1], name="y").to(probs.device)
    if goal.startswith("explain") and (dist is None or rho is None):
        raise ValueError(f"goal {goal!r} needs the perturbation sizes dist and the budget rho.")
    return _goal_met(goal, probs, y, dist, rho)


def _goal_met(goal, probs, y, dist, rho):
    """:func:`goal_met` without the checks, for Algorithm 1's step loop (its inputs are checked once)."""
    if goal.startswith("explain"):
        return dist > rho
    s_t = probs.gather(1, y[:, None]).squeeze(1)
    if goal == "btr":
        return s_t < 1.0 / probs.shape[1]
    others = probs.scatter(1, y[:, None], -1.0).max(1).values
    return s_t - others <= 0


def _check_options(o: dict) -> dict:
    o = {**PAPER_OPTIONS, "schedule": "linear", **o}
    unknown = sorted(set(o) - set(PAPER_OPTIONS))
    if unknown:
        raise ValueError(f"unknown Algorithm 1 option(s) {unknown}; valid: {sorted(PAPER_OPTIONS)}.")
    o["steps"] = check_positive_int(o["steps"], "steps")
    o["lr"] = check_number(o["lr"], "lr", hint="the optimiser's rate, e.g. 0.01 (the paper).")
    o["momentum"] = check_number(o["momentum"], "momentum", strict=False, maximum=0.999999)
    o["eta"] = check_number(o["eta"], "eta", hint="the length of a normalised step, e.g. 0.55.")
    check_choice(o["schedule"], "schedule", ("constant", "linear"))
    check_choice(o["gradient"], "gradient", ("softmax", "ce"))
    check_choice(o["normalise"], "normalise", ("l2", "rms"))
    check_choice(o["shrink"], "shrink", ("l2loss", "normalised"))
    check_choice(o["momentum_rule"], "momentum_rule", ("sgd", "average"))
    o["clip"] = check_bool(o["clip"], "clip")
    return o


def _unit(t: torch.Tensor, how: str) -> torch.Tensor:
    """``t`` scaled per image to unit L2 norm (``"l2"``) or unit r.m.s. (``"rms"``); 0 stays 0."""
    flat = t.flatten(1)
    norm = flat.norm(dim=1)
    if how == "rms":
        norm = norm / math.sqrt(flat.shape[1])
    return (flat / norm.clamp_min(1e-30)[:, None]).view_as(t)


def _run_batch(model, x, y, cls, sign, goal, rho, o, sizes, hist=None):
    b = x.shape[0]
    delta = torch.zeros_like(x)
    vel = torch.zeros_like(x)
    best = torch.full((b,), math.inf, device=x.device)
    best_x = x.clone()
    first = torch.full((b,), -1, dtype=torch.long, device=x.device)
    reached = torch.zeros(b, device=x.device)
    for n in range(o["steps"] + 1):
        xh = (x + delta).clamp(0, 1) if o["clip"] else x + delta
        xh = xh.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(xh)
            logp = F.log_softmax(logits, 1)
            score = logp if o["gradient"] == "ce" else logp.exp()
            (g,) = torch.autograd.grad((sign * score.gather(1, cls[:, None])).sum(), xh)
        if o["gradient"] == "softmax":        # s_c underflowed: its gradient is 0, use log s_c's
            dead = g.flatten(1).abs().amax(1) == 0
            if bool(dead.any()):
                with torch.enable_grad():
                    (g2,) = torch.autograd.grad((sign * F.log_softmax(model(xh), 1).gather(1, cls[:, None])).sum(), xh)
                g = torch.where(dead.view(-1, *[1] * (x.dim() - 1)), g2, g)
        xh = xh.detach()
        dist = rms(xh - x)
        reached = torch.maximum(reached, dist)
        met = _goal_met(goal, logp.detach().exp(), y, dist, rho)
        if hist is not None:
            hist["rmse"].append(dist.cpu())
            hist["score"].append(logp.detach().exp().gather(1, cls[:, None]).squeeze(1).cpu())
            hist["met"].append(met.cpu())
        first = torch.where(met & (first < 0), torch.full_like(first, n), first)
        if goal in ("adv", "btr"):
            better = met & (dist < best)
            best = torch.where(better, dist, best)
            best_x[better] = xh[better]
        if n == o["steps"]:
            break
        step = o["eta"] * _unit(g, o["normalise"])
        shrink = 2 * delta if o["shrink"] == "l2loss" else o["eta"] * _unit(delta, o["normalise"])
        d = torch.where(met.view(-1, *[1] * (x.dim() - 1)), shrink, step)
        vel = o["momentum"] * vel + ((1 - o["momentum"]) * d if o["momentum_rule"] == "average" else d)
        delta = delta - sizes[n] * vel
    if goal in ("adv", "btr"):
        return best_x, best, first, reached
    return xh, dist, first, reached


def algorithm1(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, goal: str = "adv",
               target=None, rho: float | None = None, batch_size: int = 250, history: bool = False,
               **options) -> dict:
    """Run Algorithm 1 on a batch of images, every image with its own state.

    Parameters
    ----------
    model : nn.Module
        A classifier in eval mode taking ``[0, 1]`` images.
    x, y : Tensor
        Images ``(B, C, H, W)`` in ``[0, 1]`` and their true labels.
    goal : {"adv", "btr", "explain+", "explain-"}
        ``g_adv`` (eq. 1), ``g_BTR`` (eq. 3), or an explanation at r.m.s.e. ``rho`` (eq. 2).
    target : int or Tensor (B,), optional
        ``explain+`` / ``explain-`` only: the class whose score is raised / lowered (default:
        the true class).
    rho : float, optional
        The explanations' r.m.s.e. budget (e.g. 0.1 on ``[0, 1]`` pixels).
    batch_size : int
        Images per chunk (results do not depend on it).
    history : bool, default False
        Also return, per step ``n = 0 .. N``, each image's r.m.s.e., the score ``s_c`` of the
        attacked class and whether the goal held (for figures of the tick-tock).
    **options
        ``steps`` (N, default 450), ``lr`` (0.01), ``momentum`` (0.9), ``eta`` (0.55),
        ``schedule`` (``"linear"``: the rate falls linearly, summing to ``lr * steps``;
        ``"constant"``: the paper's), and the code's variants ``gradient``, ``normalise``,
        ``shrink``, ``momentum_rule``, ``clip`` (see the module docstring, :data:`CODE_OPTIONS`).

    Returns
    -------
    dict
        ``x_adv`` (the smallest successful example for ``adv``/``btr``, the final one for the
        explanations; the image itself where the goal was never met), ``rmse`` (numpy, its
        r.m.s.e.; ``inf`` where ``adv``/``btr`` was never met), ``met`` (bool numpy: the goal
        held at some step; for the explanations, the budget ``rho`` was reached),
        ``first_step`` (the step at which the goal was first met, -1 if never), ``reached``
        (the largest r.m.s.e. visited), ``options``; with ``history``, ``history`` (a dict of
        ``(N + 1, B)`` numpy arrays ``rmse``, ``score``, ``met``).

    Taught in Part 6, section "Algorithm 1".
    """
    check_eval_model(model, "Algorithm 1 would be random (dropout) and would mix images (batch norm)")
    check_choice(goal, "goal", GOALS)
    x = check_model_input(model, x, "x", value_range=(0.0, 1.0))
    dev = model_device(model, x.device)
    x = x.to(dev)
    y = check_labels(y, n=x.shape[0], num_classes=getattr(model, "num_classes", None), name="y").to(dev)
    o = _check_options(dict(options))
    batch_size = check_positive_int(batch_size, "batch_size")
    if goal.startswith("explain"):
        if rho is None:
            raise ValueError(f"goal {goal!r} needs rho, the explanation's r.m.s.e. budget (e.g. 0.1).")
        rho = check_number(rho, "rho", hint="an r.m.s.e. on [0, 1] pixels, e.g. 0.1.")
        if target is None:
            cls = y
        elif isinstance(target, torch.Tensor) and target.dim() == 1:
            cls = check_labels(target, n=x.shape[0], num_classes=getattr(model, "num_classes", None),
                               name="target").to(dev)
        else:
            cls = torch.full_like(y, check_class_index(target, "target", getattr(model, "num_classes", None)))
    else:
        if target is not None or rho is not None:
            raise ValueError(f"goal {goal!r} attacks the true class: target and rho are for the explanations.")
        cls = y
    sign = -1.0 if goal == "explain+" else 1.0   # the optimiser descends: -s_c raises s_c
    total = o["lr"] * o["steps"]
    sizes = (linear_step_sizes(o["steps"], total) if o["schedule"] == "linear"
             else torch.full((o["steps"],), o["lr"])).to(dev)
    history = check_bool(history, "history")
    hists = [{"rmse": [], "score": [], "met": []} if history else None for _ in range(0, x.shape[0], batch_size)]
    outs = [_run_batch(model, x[i:i + batch_size], y[i:i + batch_size], cls[i:i + batch_size], sign, goal,
                       rho, o, sizes, hists[j]) for j, i in enumerate(range(0, x.shape[0], batch_size))]
    x_adv, dist, first, reached = (torch.cat(t) for t in zip(*outs))
    extra = {}
    if history:
        extra["history"] = {k: torch.cat([torch.stack(h[k]) for h in hists], 1).numpy() for k in ("rmse", "score", "met")}
    return {**extra, "x_adv": x_adv, "rmse": dist.cpu().numpy().astype(float), "met": (first >= 0).cpu().numpy(),
            "first_step": first.cpu().numpy(),
            "reached": reached.cpu().numpy().astype(float), "options": o}


def ara_protocol(model: nn.Module, x_pool: torch.Tensor, y_pool: torch.Tensor, *, n_correct: int,
                 goal: str = "adv", seed: int = 0, batch_size: int = 250, **options) -> dict:
    """The ARA (``goal="adv"``) or BTR ARA (``goal="btr"``) as the paper's Methods define it.

    Test images are drawn in a random order (``seed``) until ``n_correct`` are correctly
    classified. Images for which the goal already holds without an attack (misclassified ones,
    for the ARA; true-class score below ``1 / V``, for the BTR ARA) enter with r.m.s.e. 0; the
    others get the r.m.s.e. of Algorithm 1's smallest successful perturbation. An image the
    attack never broke enters with the largest r.m.s.e. it visited (counted in ``n_unbroken``).

    Returns
    -------
    dict
        ``ara`` (larger is better), ``rmse`` (per evaluated image), ``curve`` (``(r, acc)`` of
        :func:`robust_utils.ara.accuracy_robustness_curve`), ``n_evaluated``, ``n_correct``,
        ``n_unbroken``, ``clean_accuracy`` (of the evaluated images), ``median_rmse`` (of the
        attacked ones), ``index`` (pool indices evaluated, in order), ``baseline`` (``1 / V``).

    Taught in Part 6, section "ARA and BTR ARA".
    """
    check_choice(goal, "ARA goal", ("adv", "btr"))
    check_eval_model(model, "the clean predictions and the attack would be random")
    x_pool = check_model_input(model, x_pool, "x_pool", value_range=(0.0, 1.0))
    y_pool = check_labels(y_pool, n=x_pool.shape[0], name="y_pool")
    n_correct = check_positive_int(n_correct, "n_correct")
    dev = model_device(model, x_pool.device)
    order = torch.randperm(x_pool.shape[0], generator=torch.Generator().manual_seed(check_seed(seed)))
    with torch.no_grad():
        probs = torch.cat([F.softmax(model(x_pool[order[i:i + 1000]].to(dev)), 1)
                           for i in range(0, len(order), 1000)])
    yo = y_pool[order].to(dev)
    correct = probs.argmax(1) == yo
    if int(correct.sum()) < n_correct:
        raise ValueError(f"the pool holds only {int(correct.sum())} correctly classified images; "
                         f"n_correct = {n_correct} needs a larger pool or a smaller n_correct.")
    stop = int(torch.nonzero(correct.cumsum(0) == n_correct)[0]) + 1
    index = order[:stop]
    v = probs.shape[1]
    already = goal_met(goal, probs[:stop], yo[:stop]).cpu().numpy()
    rmse = np.zeros(stop)
    todo = np.flatnonzero(~already)
    n_unbroken, med = 0, float("nan")
    if todo.size:
        res = algorithm1(model, x_pool[index[todo]].to(dev), yo[:stop][todo], goal=goal,
                         batch_size=batch_size, **options)
        d = res["rmse"].copy()
        broken = np.isfinite(d)
        n_unbroken = int((~broken).sum())
        d[~broken] = res["reached"][~broken]
        rmse[todo] = d
        med = float(np.median(d))
    return {"ara": ara(rmse, 1.0 / v), "rmse": rmse, "curve": accuracy_robustness_curve(rmse),
            "n_evaluated": stop, "n_correct": n_correct, "n_unbroken": n_unbroken,
            "clean_accuracy": n_correct / stop, "median_rmse": med, "index": index.numpy(),
            "baseline": 1.0 / v, "goal": goal}


#: foolbox 3's L2 minimum-norm attacks the chapter compares Algorithm 1 with.
MIN_NORM_ATTACKS = {"ddn": "DDNAttack", "fmn": "L2FMNAttack", "cw": "L2CarliniWagnerAttack"}


def foolbox_min_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, attack: str = "fmn",
                     steps: int = 100, batch_size: int = 250) -> dict:
    """The smallest L2 adversarial foolbox 3 finds per image: DDN, FMN or Carlini-Wagner L2.

    DDN (Rony et al., 2019: the normalised steps Algorithm 1 borrows), FMN (Pintor et al.,
    2021) and C&W L2 (``steps`` inner steps, foolbox's 9 binary-search steps) minimise the
    perturbation of a misclassified example. Images misclassified already get 0.

    Returns
    -------
    dict
        ``x_adv`` and ``rmse`` (numpy; ``inf`` where the attack found no adversarial, like
        :func:`algorithm1`), ``met`` (bool numpy).

    Taught in Part 6, section "Is Algorithm 1 a strong enough attack?".
    """
    check_eval_model(model, "the attack would be random (dropout) and would mix images (batch norm)")
    check_choice(attack, "attack", MIN_NORM_ATTACKS)
    x = check_model_input(model, x, "x", value_range=(0.0, 1.0))
    y = check_labels(y, n=x.shape[0], num_classes=getattr(model, "num_classes", None), name="y")
    steps = check_positive_int(steps, "steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    from .robust_eval import _import

    fb = _import("foolbox", "foolbox numba", "foolbox_min_norm")
    dev = model_device(model, x.device)
    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=dev)
    maker = getattr(fb.attacks, MIN_NORM_ATTACKS[attack])
    atk = maker(steps=steps) if attack != "cw" else maker(steps=steps, binary_search_steps=9)
    outs = []
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev)
        _, clipped, success = atk(fmodel, xb, fb.criteria.Misclassification(yb), epsilons=None)
        clipped = torch.where(success.view(-1, 1, 1, 1), clipped, xb)
        outs.append((clipped.detach(), success))
    x_adv = torch.cat([o[0] for o in outs])
    met = torch.cat([o[1] for o in outs])
    with torch.no_grad():
        wrong = torch.cat([model(x_adv[i:i + 1000]).argmax(1) != y[i:i + 1000].to(dev)
                           for i in range(0, x.shape[0], 1000)])
    met = met & wrong
    d = rms(x_adv - x.to(dev))
    d = torch.where(met, d, torch.full_like(d, math.inf))
    return {"x_adv": x_adv, "rmse": d.cpu().numpy().astype(float), "met": met.cpu().numpy()}
