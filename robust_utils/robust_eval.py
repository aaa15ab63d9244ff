"""Evaluating robust networks as RobustBench does: the strongest attacks, per image, with statistics.

A robust accuracy is an *upper bound*: the fraction of test images for which the attacks found
no adversarial example inside the ball. A weak attack makes a network look robust, so robust
networks are evaluated with the strongest attacks available, run by their original code:

* :func:`autoattack`: AutoAttack (Croce & Hein, 2020), the ensemble RobustBench reports (APGD
  on the cross-entropy, targeted APGD on the DLR loss, targeted FAB, Square), through the
  original implementation (package ``pyautoattack``);
* :func:`brendel_bethge`: the Brendel & Bethge attack (2019), a *minimum-norm* attack that walks
  along the decision boundary towards the clean image (foolbox 3), started from PGD;
* :func:`torchattacks_autoattack`: torchattacks' port of AutoAttack, for one cross-check (its
  APGD and FAB run 10 iterations instead of 100, so it reports other numbers);
* :func:`robust_accuracy_vs_eps`: the robust accuracy as the budget grows.

Every attack returns adversarial images, so that :func:`robust_utils.attacks.robust_correct`
gives the per-image results two networks are compared on. Two accuracies measured on the same
``n`` images differ by chance as well as by skill: :func:`wilson_interval` gives each one's
uncertainty, :func:`mcnemar` the exact paired test of the difference (it uses only the images
on which the two networks disagree) and :func:`paired_comparison` both, with a verdict.

The external attacks never write the model's parameter ``.grad`` fields (their parameters are
frozen while they run and restored afterwards) and leave the global random state as it was.

Taught in Part 5, sections "Evaluating every network" and "Do UDR methods outperform?".
"""
from __future__ import annotations

import contextlib
import io
import logging
import logging.handlers
import math
import statistics
import sys
import warnings

import numpy as np
import torch
from torch import nn

from ._checks import as_numpy_1d, check_bool, check_choice, check_fraction, check_number, check_positive_int
from ._checks import check_seed, model_device
from .attacks import _check_eps, _check_eps_l2, _check_eval_model, _check_xy, fgsm, pgd, robust_correct
from .metrics import declares_direction

__all__ = [
    "AUTOATTACK_ATTACKS",
    "autoattack",
    "torchattacks_autoattack",
    "brendel_bethge",
    "robust_accuracy_vs_eps",
    "wilson_interval",
    "mcnemar",
    "paired_comparison",
]

#: The attacks AutoAttack can run (``version="custom"`` takes any non-empty subset).
AUTOATTACK_ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
_AA_VERSIONS = ("standard", "plus", "rand", "custom")
_AA_NORMS = {"linf": "Linf", "l2": "L2", "l1": "L1"}


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _frozen_parameters(model: nn.Module):
    """Parameters without ``requires_grad`` while an external attack runs, restored afterwards.

    FAB and foolbox call ``loss.backward()``, which would otherwise accumulate into the
    parameters' ``.grad`` fields (and compute gradients nobody needs).
    """
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device):
    """The global torch RNG seeded with ``seed`` inside, and restored to its old state after."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _num_classes(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad():
        return int(model(x[:1].to(model_device(model, x.device))).shape[1])


def _import(module: str, pip: str, what: str):
    try:
        return __import__(module)
    except ImportError as e:
        raise ImportError(f"{what} needs the package {module!r}, which could not be imported ({e}); "
                          f"install it with: pip install {pip}") from e


@contextlib.contextmanager
def _autoattack_output(verbose: bool):
    """AutoAttack's logger ('auto-attack') and prints: shown with ``verbose``, else silenced.

    Silenced, its progress (DEBUG/INFO records, prints) is dropped and its reliability warnings
    (a randomised or dynamic defence, zero gradients, Square stronger than the gradient attacks,
    too many target classes) are re-issued once each as ``UserWarning``. Its ``check_dynamic``
    replaces the trace function (``sys.settrace``); the caller's (a debugger, coverage) is put back.
    """
    logger = logging.getLogger("auto-attack")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    trace = sys.gettrace()
    collect = logging.handlers.BufferingHandler(capacity=10**6)   # keeps the WARNING records
    if verbose:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("AutoAttack: %(message)s"))
        logger.handlers = [handler]
        logger.setLevel(logging.DEBUG)
    else:
        logger.handlers = [collect]
        logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        with contextlib.redirect_stdout(sys.stdout if verbose else io.StringIO()):
            yield
    finally:
        logger.setLevel(saved[0])
        logger.propagate, logger.handlers = saved[1], saved[2]
        sys.settrace(trace)
    for msg in dict.fromkeys(r.getMessage() for r in collect.buffer):
        warnings.warn(f"AutoAttack: {msg}", UserWarning, stacklevel=3)


def _check_norm_eps(norm, eps) -> tuple[str, float]:
    """AutoAttack's norm name ('Linf', 'L2', 'L1'; any case) and a budget checked for it."""
    key = norm.lower() if isinstance(norm, str) else norm
    check_choice(key, "norm", list(_AA_NORMS))
    norm = _AA_NORMS[key]
    return norm, (_check_eps(eps) if norm == "Linf" else _check_eps_l2(eps))


# ---------------------------------------------------------------------------------------------
# Attacks
# ---------------------------------------------------------------------------------------------
def autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, norm: str = "Linf",
               version: str = "standard", attacks: list[str] | None = None, batch_size: int = 250,
               seed: int = 0, verbose: bool = False) -> torch.Tensor:
    """AutoAttack through its original implementation (``pyautoattack.AutoAttack``).

    Runs the attacks of ``version`` one after the other, each only on the images that no
    earlier attack broke (``run_standard_evaluation``), and returns the adversarial images; an
    image that no attack broke (or that was misclassified to begin with) is returned unchanged.
    ``version="standard"`` is RobustBench's evaluation: APGD-CE (100 iterations), APGD-T (9
    target classes, targeted DLR loss), FAB-T (9 target classes) and Square (5,000 queries).
    ``version="custom"`` runs the ``attacks`` given, each with the standard version's settings
    (e.g. ``attacks=["apgd-ce", "apgd-t"]``, the first half of the standard ensemble, which is
    what the book's laptop profile runs), so its robust accuracy is an upper bound of the
    standard one. The number of target classes is capped at the model's classes minus one.

    Parameters
    ----------
    model, x, y
        A classifier in eval mode that returns logits, images ``(N, C, H, W)`` in ``[0, 1]`` and
        their true labels ``(N,)``.
    eps : float
        The budget in pixel units of ``[0, 1]`` images (``"Linf"``: in ``(0, 1]``, e.g. 0.3 on
        MNIST, 0.1 on Fashion-MNIST, 8/255 on CIFAR-10).
    norm : {"Linf", "L2", "L1"}, default "Linf"
        Case-insensitive (``"linf"`` as in :func:`~robust_utils.attacks.pgd` works too).
    version : {"standard", "plus", "rand", "custom"}, default "standard"
    attacks : list of str, optional
        With ``version="custom"`` only (and then required): a non-empty subset of
        :data:`AUTOATTACK_ATTACKS`, run in the order given.
    batch_size : int, default 250
    seed : int, default 0
        AutoAttack's seed (it seeds the global torch RNG; the global state is restored after).
    verbose : bool, default False
        Print AutoAttack's log (the accuracy after each attack). Otherwise it is silenced and
        only its reliability warnings are re-issued, as ``UserWarning``.

    Returns
    -------
    Tensor
        Adversarial images, same shape and device as ``x``, in ``[0, 1]`` and in the ball.

    Taught in Part 5, section "Evaluating every network".
    """
    _check_eval_model(model)
    y = _check_xy(model, x, y)
    norm, eps = _check_norm_eps(norm, eps)
    version = check_choice(version, "AutoAttack version", _AA_VERSIONS)
    if version == "custom":
        if not isinstance(attacks, (list, tuple)) or not attacks or len(set(attacks)) != len(attacks):
            raise ValueError(f"version='custom' needs attacks=[...], a non-empty list of different attacks from "
                             f"{list(AUTOATTACK_ATTACKS)}, e.g. ['apgd-ce', 'apgd-t']; got {attacks!r}.")
        for a in attacks:
            check_choice(a, "AutoAttack attack", AUTOATTACK_ATTACKS)
    elif attacks is not None:
        raise ValueError(f"attacks={attacks!r} is only used with version='custom'; version={version!r} runs "
                         "its own attacks. Pass version='custom' or drop attacks.")
    batch_size = check_positive_int(batch_size, "batch_size")
    seed = check_seed(seed)
    verbose = check_bool(verbose, "verbose")
    pyaa = _import("pyautoattack", "pyautoattack", "autoattack")
    dev = model_device(model, x.device)
    n_cls = _num_classes(model, x)
    with _autoattack_output(verbose):
        adversary = pyaa.AutoAttack(model, device=dev, eps=eps, norm=norm, seed=seed,
                                    version="standard" if version == "custom" else version)
        adversary.verbose = verbose
        if version == "custom":
            adversary.attacks_to_run, adversary.version = list(attacks), "custom"
    run = adversary.attacks_to_run
    need = max([4 if a == "apgd-t" else 3 if a == "apgd-dlr" else 2 for a in run])
    if n_cls < need:
        raise ValueError(f"the model has {n_cls} classes, but {'APGD-T' if need == 4 else 'APGD-DLR'} needs at "
                         f"least {need} (its DLR loss uses the {need - 1} largest logits); choose "
                         "version='custom' with attacks=['apgd-ce'] (or 'fab-t', 'square').")
    adversary.apgd_targeted.n_target_classes = min(adversary.apgd_targeted.n_target_classes, n_cls - 1)
    adversary.fab.n_target_classes = min(adversary.fab.n_target_classes, n_cls - 1)
    with _autoattack_output(verbose), _frozen_parameters(model), _seeded(seed, dev):
        x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
    return x_adv.to(x.dtype)


def torchattacks_autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                            norm: str = "Linf", seed: int = 0, batch_size: int = 250) -> torch.Tensor:
    """torchattacks' port of AutoAttack (standard version): a cross-check of :func:`autoattack`.

    The same four attacks (APGD-CE, APGD-T, FAB-T, Square with 5,000 queries), but torchattacks'
    APGD, APGD-T and FAB default to **10 iterations instead of the original 100**, so the port
    is weaker and reports a higher robust accuracy than the original; the chapter shows the two
    side by side once. Images that no attack broke are returned unchanged.

    Parameters
    ----------
    model, x, y, eps, seed, batch_size
        As in :func:`autoattack`; the model needs at least 4 classes (APGD-T's DLR loss).
    norm : {"Linf", "L2"}, default "Linf"

    Returns
    -------
    Tensor
        Adversarial images, same shape and device as ``x``.

    Taught in Part 5, section "Evaluating every network".
    """
    _check_eval_model(model)
    y = _check_xy(model, x, y)
    norm, eps = _check_norm_eps(norm, eps)
    if norm == "L1":
        raise ValueError("torchattacks' AutoAttack supports norm='Linf' or 'L2', not 'L1'; use autoattack().")
    seed = check_seed(seed)
    batch_size = check_positive_int(batch_size, "batch_size")
    ta = _import("torchattacks", "torchattacks", "torchattacks_autoattack")
    dev = model_device(model, x.device)
    n_cls = _num_classes(model, x)
    if n_cls < 4:
        raise ValueError(f"the model has {n_cls} classes; torchattacks' AutoAttack runs APGD-T, whose DLR loss "
                         "needs at least 4.")
    out = []
    with _frozen_parameters(model), _seeded(seed, dev):
        atk = ta.AutoAttack(model, norm=norm, eps=eps, version="standard", n_classes=n_cls, seed=seed)
        for i in range(0, x.shape[0], batch_size):
            out.append(atk(x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev)).detach().to(x.device))
    return torch.cat(out)


def _adversarial_starts(model, x, y, eps, init_steps, seed, batch_size, need):
    """PGD starts for B&B: at ``eps`` on every image, then at 2, 4, ... times ``eps`` up to 1 (the
    whole cube) on the images of ``need`` that are not fooled yet.

    Returns (start images, fooled-at-eps mask, has-a-start mask); the images that even PGD at
    budget 1 does not fool get foolbox's blended-uniform-noise search in :func:`brendel_bethge`.
    """
    start = pgd(model, x, y, eps, steps=init_steps, seed=seed, batch_size=batch_size)
    found = ~robust_correct(model, start, y, batch_size=batch_size)
    fooled_at_eps = found.clone()
    found |= ~need
    budget = eps
    while budget < 1.0 and not bool(found.all()):
        budget = min(1.0, 2 * budget)
        rest = (~found).nonzero().flatten()
        adv = pgd(model, x[rest], y[rest], budget, steps=init_steps, seed=seed, batch_size=batch_size)
        hit = ~robust_correct(model, adv, y[rest], batch_size=batch_size)
        start[rest[hit]] = adv[hit]
        found[rest[hit]] = True
    return start, fooled_at_eps, found & need


def brendel_bethge(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, steps: int = 200,
                   init_steps: int = 20, batch_size: int = 100, seed: int = 0) -> torch.Tensor:
    """The :math:`L_\\infty` Brendel & Bethge attack (foolbox 3), started from PGD adversarials.

    B&B is a minimum-norm attack: from an adversarial starting point it follows the decision
    boundary towards the clean image, so it needs an adversarial start for every image it
    attacks. Per image:

    1. misclassified already: not robust, returned unchanged (no attack needed);
    2. PGD-``init_steps`` (:func:`~robust_utils.attacks.pgd`) at ``eps`` fools it: broken, and
       PGD's adversarial is returned (B&B from there could only find a closer one, which does
       not change the verdict, so it is not run);
    3. otherwise B&B runs, started from a PGD adversarial with a larger budget (2, 4, 8, ...
       times ``eps``, up to 1, the whole pixel cube; the first budget that fools the model),
       and, for the rare image that even this leaves unfooled, from foolbox's
       blended-uniform-noise search (``LinearSearchBlendedUniformNoiseAttack``); an image
       with no adversarial start at all is counted robust.

    An image counts as broken only if the final perturbation has :math:`L_\\infty` norm
    ``<= eps + 1e-6`` and the model misclassifies it; then its adversarial is returned, else
    ``x`` itself. So the robust accuracy is never above that of ``pgd(model, x, y, eps,
    steps=init_steps, seed=seed)``, whose result step 2 uses.

    Parameters
    ----------
    model, x, y
        A classifier in eval mode that returns logits, images ``(N, C, H, W)`` in ``[0, 1]`` and
        their true labels ``(N,)``.
    eps : float in (0, 1]
        :math:`L_\\infty` budget in pixel units.
    steps : int >= 1, default 200
        B&B iterations (foolbox's default is 1000).
    init_steps : int >= 1, default 20
        Steps of the PGD runs that give the starting points.
    batch_size : int, default 100
        Images per B&B run. foolbox scales the trust region of every image by the number of
        values in its batch (``np.prod(x.shape)``), so tiny batches take tiny steps and may not
        reach the boundary within ``steps``: keep batches of tens of images.
    seed : int, default 0
        Seeds PGD (``seed``) and the noise search (global RNG, restored after).

    Returns
    -------
    Tensor
        Same shape and device as ``x``: the adversarial within ``eps`` where one was found,
        else ``x``. (foolbox's optimiser is compiled by numba on the first call of a process,
        which takes 20-40 s on a laptop CPU; later calls start at once.)

    Taught in Part 5, section "Evaluating every network".
    """
    _check_eval_model(model)
    y = _check_xy(model, x, y)
    eps = _check_eps(eps)
    steps = check_positive_int(steps, "steps")
    init_steps = check_positive_int(init_steps, "init_steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    seed = check_seed(seed)
    fb = _import("foolbox", "foolbox numba", "brendel_bethge")
    dev = model_device(model, x.device)
    clean = robust_correct(model, x, y, batch_size=batch_size)
    start, fooled, found = _adversarial_starts(model, x, y, eps, init_steps, seed, batch_size, need=clean)
    out = x.clone()
    out[fooled & clean] = start[fooled & clean]
    rest = (clean & ~fooled).nonzero().flatten()          # what B&B has to decide
    if rest.numel() == 0:
        return out
    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=dev)
    with _frozen_parameters(model), _seeded(seed, dev):
        missing = rest[~found[rest]]
        if missing.numel():                      # no PGD start at any budget: blended noise
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "failed to draw sufficient random inputs": checked below
                noise = fb.attacks.LinearSearchBlendedUniformNoiseAttack().run(
                    fmodel, x[missing].to(dev), fb.criteria.Misclassification(y[missing].to(dev))).to(x.device)
            hit = ~robust_correct(model, noise, y[missing], batch_size=batch_size)
            start[missing[hit]] = noise[hit]
            found[missing[hit]] = True
        rest = rest[found[rest]]
        attack = fb.attacks.LinfinityBrendelBethgeAttack(steps=steps)
        for i in range(0, rest.numel(), batch_size):
            idx = rest[i:i + batch_size]
            xb, yb, sb = x[idx].to(dev), y[idx].to(dev), start[idx].to(dev)
            with torch.no_grad():
                ok = model(sb).argmax(1) != yb   # foolbox asserts that every start is adversarial
            if not bool(ok.any()):
                continue
            idx, xb, yb, sb = idx[ok.cpu()], xb[ok], yb[ok], sb[ok]
            adv = attack.run(fmodel, xb, fb.criteria.Misclassification(yb), starting_points=sb)
            dist = (adv - xb).flatten(1).abs().amax(1)
            with torch.no_grad():
                broken = (dist <= eps + 1e-6) & (model(adv).argmax(1) != yb)
            out[idx[broken.cpu()]] = adv[broken].to(x.device, x.dtype)
    return out


@declares_direction("better")
def robust_accuracy_vs_eps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_grid, *,
                           attack: str = "pgd", steps: int = 10, norm: str = "linf", restarts: int = 1,
                           seed: int = 0, batch_size: int = 512, attack_kwargs: dict | None = None) -> np.ndarray:
    """Robust accuracy for each budget of ``eps_grid`` (``eps = 0``: the clean accuracy).

    The budgets are attacked in increasing order, and an image broken at a smaller budget
    counts as broken at every larger one (its adversarial lies in the larger ball too), as does
    an image misclassified without attack; so the curve never rises with ``eps``, whatever the
    randomness of the attack. Higher is better.

    Parameters
    ----------
    model, x, y
        A classifier in eval mode, images in ``[0, 1]`` and their labels.
    eps_grid : sequence of float >= 0
        The budgets, in any order (the result follows it); each is checked by the attack
        (``"linf"``: at most 1).
    attack : {"pgd", "fgsm", "autoattack", "brendel_bethge"}, default "pgd"
    steps, restarts : int, default 10, 1
        PGD's steps and random restarts (``attack="pgd"`` only).
    norm : {"linf", "l2"}, default "linf"
        The threat model of ``"pgd"`` and ``"autoattack"``; ``"fgsm"`` and ``"brendel_bethge"``
        are :math:`L_\\infty` attacks.
    seed, batch_size : int, default 0, 512
    attack_kwargs : dict, optional
        More keyword arguments of the attack, e.g. ``{"version": "custom", "attacks":
        ["apgd-ce"]}`` for AutoAttack or ``{"steps": 100}`` for B&B.

    Returns
    -------
    np.ndarray (len(eps_grid),)
        Accuracies in ``[0, 1]``.

    Taught in Part 5, section "Evaluating every network".
    """
    _check_eval_model(model)
    y = _check_xy(model, x, y)
    attack = check_choice(attack, "attack", ("pgd", "fgsm", "autoattack", "brendel_bethge"))
    norm = check_choice(norm, "norm", ("linf", "l2"))
    if norm == "l2" and attack in ("fgsm", "brendel_bethge"):
        raise ValueError(f"attack={attack!r} is an L-infinity attack; use norm='linf', or attack='pgd' or "
                         "'autoattack' for norm='l2'.")
    steps = check_positive_int(steps, "steps")
    restarts = check_positive_int(restarts, "restarts")
    seed = check_seed(seed)
    batch_size = check_positive_int(batch_size, "batch_size")
    if attack_kwargs is not None and not isinstance(attack_kwargs, dict):
        raise TypeError(f"attack_kwargs must be a dict of keyword arguments or None, got {type(attack_kwargs).__name__}.")
    extra = dict(attack_kwargs or {})
    grid = as_numpy_1d(eps_grid, "eps_grid")
    grid = np.array([check_number(e, f"eps_grid[{i}]", minimum=0.0, strict=False) for i, e in enumerate(grid)])

    def run(eps):
        if attack == "pgd":
            return pgd(model, x, y, eps, steps=steps, norm=norm, restarts=restarts, seed=seed,
                       batch_size=batch_size, **extra)
        if attack == "fgsm":
            return fgsm(model, x, y, eps, batch_size=batch_size, **extra)
        if attack == "autoattack":
            return autoattack(model, x, y, eps, norm=norm, seed=seed, batch_size=batch_size, **extra)
        return brendel_bethge(model, x, y, eps, seed=seed, batch_size=batch_size, **extra)

    robust = robust_correct(model, x, y, batch_size=batch_size)
    acc = np.empty(grid.size)
    for i in np.argsort(grid, kind="stable"):
        if grid[i] > 0:
            robust &= robust_correct(model, run(float(grid[i])), y, batch_size=batch_size)
        acc[i] = int(robust.sum()) / robust.numel()
    return acc


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------
def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (e.g. an accuracy on ``n`` test images).

    .. math::  \\frac{k + z^2/2}{n + z^2} \\pm \\frac{z}{n + z^2}
               \\sqrt{\\frac{k (n - k)}{n} + \\frac{z^2}{4}}, \\qquad
               z = \\Phi^{-1}\\big(\\tfrac{1 + \\text{confidence}}{2}\\big).

    Unlike the normal approximation :math:`\\hat p \\pm z \\sqrt{\\hat p (1 - \\hat p) / n}` it
    stays inside ``[0, 1]`` and does not shrink to a point at ``k = 0`` or ``k = n`` (which
    robust accuracies near 0 reach). Equals SciPy's ``binomtest(k, n).proportion_ci(method=
    "wilson")`` (tested).

    Parameters
    ----------
    k, n : int
        Successes (correct images) and trials (images), ``0 <= k <= n``, ``n >= 1``.
    confidence : float in (0, 1), default 0.95

    Returns
    -------
    (float, float)
        ``(low, high)``, with ``0 <= low <= k/n <= high <= 1``.

    Taught in Part 5, section "Do UDR methods outperform?".
    """
    k, n = check_positive_int(k, "k", minimum=0), check_positive_int(n, "n", minimum=0)
    if n == 0:
        raise ValueError("n must be >= 1: a proportion of zero trials has no interval (were the images filtered away?).")
    if k > n:
        raise ValueError(f"k must be <= n, got k = {k} > n = {n}.")
    confidence = check_fraction(confidence, "confidence", inclusive=False)
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    z2 = z * z
    centre = (k + z2 / 2) / (n + z2)
    half = z / (n + z2) * math.sqrt(k * (n - k) / n + z2 / 4)
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def _check_correct(v, name: str) -> np.ndarray:
    a = as_numpy_1d(v, name)
    if a.dtype != np.bool_:
        if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)) \
                or not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name} must hold one True/False (or 1/0) per image, 'still classified correctly'; "
                             "get it from robust_utils.attacks.robust_correct(model, x_adv, y).")
        a = a.astype(bool)
    return a


def mcnemar(correct_a, correct_b) -> dict:
    """Exact McNemar test: do two classifiers, evaluated on the *same* images, differ in accuracy?

    Only the discordant images count: ``b`` = A correct and B wrong, ``c`` = A wrong and B
    correct. Under the null hypothesis (equal accuracy) each discordant image is a fair coin,
    so ``min(b, c)`` follows :math:`\\mathrm{Binom}(b + c, 1/2)` and the two-sided p-value is

    .. math::  p = \\min\\big(1,\\; 2\\, P[\\mathrm{Binom}(b + c, \\tfrac12) \\le \\min(b, c)]\\big),

    with ``p = 1`` when ``b + c = 0``, computed with exact integers. The exact test is valid for
    any number of discordant images (the chi-squared version needs ``b + c`` of 25 or more).

    Parameters
    ----------
    correct_a, correct_b : array-like of bool (N,)
        Per image, whether A (resp. B) classifies it correctly, e.g. from
        :func:`robust_utils.attacks.robust_correct`; 0/1 integers are accepted.

    Returns
    -------
    dict
        ``b``, ``c``, ``n`` (images), ``n_discordant`` (``b + c``), ``statistic``
        (``min(b, c)``), ``p_value``, ``method`` (``"exact binomial"``).

    Taught in Part 5, section "Do UDR methods outperform?".
    """
    a = _check_correct(correct_a, "correct_a")
    bb = _check_correct(correct_b, "correct_b")
    if a.shape != bb.shape:
        raise ValueError(f"correct_a and correct_b must have one entry per image of the same images, got "
                         f"lengths {a.size} and {bb.size}.")
    b, c = int((a & ~bb).sum()), int((~a & bb).sum())
    m, s = b + c, min(b, c)
    term = tail = 1                              # C(m, 0); then C(m, i + 1) = C(m, i) (m - i) / (i + 1)
    for i in range(s):
        term = term * (m - i) // (i + 1)
        tail += term
    p = 1.0 if m == 0 else min(1.0, 2 * tail / 2 ** m)   # exact integers, one rounding
    return {"b": b, "c": c, "n": int(a.size), "n_discordant": m, "statistic": s, "p_value": p,
            "method": "exact binomial"}


def paired_comparison(correct_a, correct_b, *, names: tuple[str, str] = ("A", "B"),
                      alpha: float = 0.05) -> dict:
    """Two classifiers on the same images: accuracies, Wilson intervals, difference, McNemar, verdict.

    The difference is called *larger than the noise* when McNemar's exact p-value is below
    ``alpha``, else *within the noise* (it could be chance: the same networks on other test
    images might swap places).

    Parameters
    ----------
    correct_a, correct_b : array-like of bool (N,)
        Per image, whether A (resp. B) classifies it correctly (see :func:`mcnemar`).
    names : (str, str), default ("A", "B")
        The two classifiers' names, for the summary.
    alpha : float in (0, 1), default 0.05
        Significance level; the intervals have confidence ``1 - alpha``.

    Returns
    -------
    dict
        ``names``, ``n``, ``accuracy_a``, ``accuracy_b`` (fractions), ``ci_a``, ``ci_b`` (Wilson
        intervals), ``difference_points`` (``100 * (accuracy_a - accuracy_b)``, A minus B, in
        percentage points: positive when A is better), ``b``, ``c``, ``p_value`` (from :func:`mcnemar`), ``significant``
        (``p_value < alpha``), ``verdict`` (``"larger than the noise"`` or ``"within the
        noise"``), ``summary`` (one sentence) and ``higher_means`` (``"better"``: the
        direction of the accuracies).

    Taught in Part 5, section "Do UDR methods outperform?".
    """
    if not (isinstance(names, (tuple, list)) and len(names) == 2 and all(isinstance(s, str) for s in names)):
        raise TypeError(f"names must be two strings such as ('PGD-AT', 'UDR-PGD'), got {names!r}.")
    alpha = check_fraction(alpha, "alpha", inclusive=False)
    test = mcnemar(correct_a, correct_b)
    n = test["n"]
    ka, kb = (int(_check_correct(v, name).sum()) for v, name in ((correct_a, "correct_a"), (correct_b, "correct_b")))
    ci_a, ci_b = wilson_interval(ka, n, 1 - alpha), wilson_interval(kb, n, 1 - alpha)
    diff = 100 * (ka - kb) / n
    significant = test["p_value"] < alpha
    verdict = "larger than the noise" if significant else "within the noise"
    pct = int(round(100 * (1 - alpha)))
    summary = (f"{names[0]} {100 * ka / n:.1f}% [{100 * ci_a[0]:.1f}, {100 * ci_a[1]:.1f}] vs {names[1]} "
               f"{100 * kb / n:.1f}% [{100 * ci_b[0]:.1f}, {100 * ci_b[1]:.1f}] ({pct}% Wilson intervals, {n} images): "
               f"{diff:+.1f} points, McNemar p = {test['p_value']:.3g} ({test['b']} vs {test['c']} discordant "
               f"images), {verdict}.")
    return {"names": tuple(names), "n": n, "accuracy_a": ka / n, "accuracy_b": kb / n, "ci_a": ci_a, "ci_b": ci_b,
            "difference_points": diff, "b": test["b"], "c": test["c"], "p_value": test["p_value"],
            "significant": significant, "verdict": verdict, "summary": summary, "higher_means": "better"}
