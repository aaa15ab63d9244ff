"""Training the networks of Woods et al. (2019): eq. (4), L2 and L2,min adversarial training.

One loop, :func:`train_lipschitz`, covers every row of their Table 1. Per batch:

1. *adversarial examples* (optional): ``adv="l2"`` follows the cross-entropy gradient for
   seven steps, each normalised to :math:`\\epsilon / 7` in :math:`L_2` (Madry et al.'s training
   in the :math:`L_2` ball; seven steps of that size cannot leave it); ``adv="l2min"`` takes,
   before each step :math:`n`, the network's prediction: while it is right the step follows the
   normalised gradient with length :math:`\\psi_{7,n}\\epsilon`, once it is wrong the step goes
   back along :math:`-\\delta` with the same length, where :math:`\\psi_{k,n} = 2(k - n) / [k(k +
   1)]` (the steps sum to :math:`\\epsilon`): the examples sit near the decision boundary. With
   ``half_half`` each image is replaced by its adversarial example with probability 0.5;
2. the loss: cross-entropy on the (partly adversarial) batch plus eq. (4),
   :func:`robust_utils.lipschitz.lipschitz_penalty` with ``psi``, ``k``, ``z`` and the tandem
   probability ``zeta``, on the same batch;
3. optionally (``psi_adapt``) the authors' code's adaptation of :math:`\\psi` from the
   classification loss :math:`L`: :math:`r \\leftarrow \\max(0, r + \\mathrm{clip}(-\\ln(L / L^*),
   -0.01, 1))`, :math:`\\psi = \\psi_0 e^{0.02 r}` with :math:`L^* = 1.5`: :math:`\\psi` grows while
   the network classifies its training batch well and falls slowly when it does not.

Budgets :math:`\\epsilon` are r.m.s.e. on ``[0, 1]`` pixels, as the paper's (an :math:`L_2`
radius of :math:`\\epsilon \\sqrt{N}` for :math:`N` pixels). Registered objectives:
``lipschitz`` (everything above), ``l2_at`` and ``l2min_at`` (adversarial training alone).

Taught in Part 6, section "Training the networks of Table 1".
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import (check_bool, check_choice, check_eval_model, check_fraction, check_images, check_labels,
                      check_model_input, check_number, check_positive_int, model_device)
from .adv_explain import linear_step_sizes, rms
from .config import progress_bar
from .lipschitz import lipschitz_penalty
from .training import (_check_schedule, _loop_setup, evaluate_accuracy, iterate_minibatches,
                       recipe_data, register_trainer)

__all__ = ["ADVERSARIES", "DEFAULT_PARAMS", "l2_adversary", "l2min_adversary", "train_lipschitz",
           "input_gradient_stats"]

ADVERSARIES = ("none", "l2", "l2min")

_BASE = {"psi": 0.0, "k": 1, "z": 2.0, "zeta": 0.0, "adv": "none", "eps": 0.05, "adv_steps": 7,
         "half_half": False, "psi_adapt": False, "adapt_target": 1.5, "adapt_rate": 0.02}
#: Default parameters per registered objective: eq. (4) with psi = 1 and no adversary; Madry-style
#: L2 training at eps = 0.05 r.m.s.e. (an L2 radius of 1.4 on 28 x 28 images); L2,min at 0.1
#: r.m.s.e. (the authors' code's value) with half-half batches (the paper: more effective so).
DEFAULT_PARAMS = {
    "lipschitz": {**_BASE, "psi": 1.0},
    "l2_at": {**_BASE, "adv": "l2"},
    "l2min_at": {**_BASE, "adv": "l2min", "eps": 0.1, "half_half": True},
}


def _check_params(name: str, p: dict) -> dict:
    unknown = sorted(set(p) - set(DEFAULT_PARAMS[name]))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for {name!r}; valid: {sorted(DEFAULT_PARAMS[name])}.")
    p = {**DEFAULT_PARAMS[name], **p}
    check_number(p["psi"], "psi", strict=False, hint="the weight of eq. (4); 0 switches it off.")
    check_positive_int(p["k"], "k")
    check_number(p["z"], "z")
    check_fraction(p["zeta"], "zeta")
    check_choice(p["adv"], "adv", ADVERSARIES)
    check_number(p["eps"], "eps", strict=False, maximum=1.0, hint="an r.m.s.e. on [0, 1] pixels, e.g. 0.05.")
    check_positive_int(p["adv_steps"], "adv_steps")
    check_bool(p["half_half"], "half_half")
    check_bool(p["psi_adapt"], "psi_adapt")
    check_number(p["adapt_target"], "adapt_target")
    check_number(p["adapt_rate"], "adapt_rate", strict=False)
    if name != "lipschitz" and p["psi"] != 0:
        raise ValueError(f"{name!r} is adversarial training alone (psi = 0); use objective 'lipschitz' "
                         "with adv='l2' or 'l2min' to add eq. (4).")
    return p


def _ce_grad(model, x, y):
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        (g,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x)
    return g, logits.detach()


def _l2_unit(t):
    flat = t.flatten(1)
    return (flat / flat.norm(dim=1).clamp_min(1e-12)[:, None]).view_as(t)


def _check_adv_inputs(model, x, y, eps, steps):
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    x = check_images(x, "x", value_range=(0.0, 1.0))
    y = check_labels(y, n=x.shape[0], num_classes=getattr(model, "num_classes", None), name="y").to(x.device)
    eps = check_number(eps, "eps", strict=False, maximum=1.0, hint="an r.m.s.e. on [0, 1] pixels, e.g. 0.05.")
    return x, y, eps, check_positive_int(steps, "steps")


def l2_adversary(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 7) -> torch.Tensor:
    """Madry-style L2 examples: ``steps`` cross-entropy ascent steps of L2 length ``eps sqrt(N) / steps``.

    ``eps`` is an r.m.s.e.; the result is clipped to ``[0, 1]`` after every step and stays
    within r.m.s.e. ``eps`` of ``x``. Runs the model in whatever mode it is in.

    Taught in Part 6, section "Training the networks of Table 1".
    """
    x, y, eps, steps = _check_adv_inputs(model, x, y, eps, steps)
    radius = eps * math.sqrt(x[0].numel())
    xa = x.clone()
    for _ in range(steps):
        g, _ = _ce_grad(model, xa, y)
        xa = (xa + radius / steps * _l2_unit(g)).clamp(0, 1)
    return xa.detach()


def l2min_adversary(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 7) -> torch.Tensor:
    """L2,min examples: steps of length ``psi_{k,n} eps sqrt(N)``, towards higher loss while the
    network is right and back along ``-delta`` once it is wrong (see the module docstring).

    The step lengths sum to ``eps`` (r.m.s.e.), so the result stays within it. Runs the model in
    whatever mode it is in.

    Taught in Part 6, section "Training the networks of Table 1".
    """
    x, y, eps, steps = _check_adv_inputs(model, x, y, eps, steps)
    sizes = linear_step_sizes(steps, eps * math.sqrt(x[0].numel())).tolist()
    xa = x.clone()
    shape = (-1,) + (1,) * (x.dim() - 1)
    for n in range(steps):
        g, logits = _ce_grad(model, xa, y)
        right = (logits.argmax(1) == y).view(shape)
        direction = torch.where(right, _l2_unit(g), -_l2_unit(xa - x))
        xa = (xa + sizes[n] * direction).clamp(0, 1)
    return xa.detach()


def train_lipschitz(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int,
                    params: dict | None = None, objective: str = "lipschitz", batch_size: int = 128,
                    lr: float = 1e-3, optimizer: str = "adam", weight_decay: float = 0.0,
                    schedule: str = "cosine", device="cpu", seed: int = 0, progress: bool = True,
                    desc: str | None = None) -> dict:
    """Train ``model`` on ``[0, 1]`` images with eq. (4) and/or L2 / L2,min adversarial training.

    Parameters
    ----------
    model : nn.Module
        A classifier taking ``[0, 1]`` images without batch norm (eq. 4 needs each image's own
        input gradient from one backward pass).
    x, y : Tensor
        Training images and labels.
    epochs : int
    params : dict, optional
        ``psi``, ``k``, ``z``, ``zeta`` (eq. 4); ``adv`` (``"none"``, ``"l2"``, ``"l2min"``),
        ``eps`` (r.m.s.e.), ``adv_steps`` (7), ``half_half``; ``psi_adapt``, ``adapt_target``,
        ``adapt_rate`` (see the module docstring and :data:`DEFAULT_PARAMS`).
    objective : {"lipschitz", "l2_at", "l2min_at"}
        Whose defaults fill the missing parameters.
    batch_size, lr, optimizer, weight_decay, schedule, device, seed
        As in :func:`robust_utils.training.train_classifier`.

    Returns
    -------
    dict
        Per-epoch lists ``loss``, ``ce``, ``penalty`` (means over the batches), ``psi`` (its value
        at the end of the epoch), ``mean_rmse`` (of the adversarial perturbations, 0 without
        an adversary) and ``time``.

    Taught in Part 6, section "Training the networks of Table 1".
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    check_choice(objective, "objective", DEFAULT_PARAMS)
    p = _check_params(objective, dict(params or {}))
    x = check_images(x, "x", value_range=(0.0, 1.0))
    y = check_labels(y, n=x.shape[0], num_classes=getattr(model, "num_classes", None), name="y")
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()) and p["psi"] > 0:
        raise ValueError("eq. (4) needs every image's own input gradient, which batch norm in train mode mixes; "
                         "use a network without batch norm.")
    epochs, batch_size, lr, weight_decay, seed = _check_schedule(epochs, batch_size, lr, weight_decay,
                                                                 optimizer, schedule, seed)
    progress = check_bool(progress, "progress")
    run = _loop_setup(model, x, y, device=device, seed=seed, optimizer=optimizer, lr=lr,
                      weight_decay=weight_decay, schedule=schedule, epochs=epochs, batch_size=batch_size)
    dev, x, y, gen = run.dev, run.x, run.y, run.gen
    psi0, r = float(p["psi"]), 0.0
    psi = psi0
    adversary = {"l2": l2_adversary, "l2min": l2min_adversary}.get(p["adv"])
    hist = {k: [] for k in ("loss", "ce", "penalty", "psi", "mean_rmse", "time")}
    bar = progress_bar(total=epochs * run.steps_per_epoch, disable=not progress, unit="batch",
                       desc=desc or f"{objective} {getattr(model, 'arch', type(model).__name__)}")
    try:
        for epoch in range(epochs):
            t0 = time.perf_counter()
            sums = {k: 0.0 for k in ("loss", "ce", "pen", "rmse")}
            seen = 0
            for step, (xb, yb) in enumerate(iterate_minibatches(x, y, batch_size, shuffle=True,
                                                                generator=run.order_gen,
                                                                drop_last=run.drop_last)):
                model.train()
                if adversary is not None and p["eps"] > 0:
                    xa = adversary(model, xb, yb, p["eps"], p["adv_steps"])
                    if p["half_half"]:
                        keep = torch.rand(xb.shape[0], generator=gen, device=dev) < 0.5
                        xa = torch.where(keep.view(-1, *[1] * (xb.dim() - 1)), xb, xa)
                    sums["rmse"] += float(rms(xa - xb).sum())
                    xb = xa
                ce = F.cross_entropy(model(xb), yb)
                pen = (lipschitz_penalty(model, xb, yb, psi=psi, z=p["z"], k=p["k"], zeta=p["zeta"],
                                         generator=gen) if psi > 0 else ce.new_zeros(()))
                loss = ce + pen
                run.opt.zero_grad(set_to_none=True)
                loss.backward()
                run.opt.step()
                if run.scheduler is not None:
                    run.scheduler.step()
                if p["psi_adapt"] and psi0 > 0:
                    ce_v = max(float(ce.detach()), 1e-12)
                    r = max(0.0, r + min(max(-math.log(ce_v / p["adapt_target"]), -0.01), 1.0))
                    psi = psi0 * math.exp(p["adapt_rate"] * r)
                nb = yb.shape[0]
                sums["loss"] += float(loss.detach()) * nb
                sums["ce"] += float(ce.detach()) * nb
                sums["pen"] += float(pen.detach()) * nb
                seen += nb
                bar.update(1)
                if progress and step % 10 == 0:
                    bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", ce=f"{float(ce):.3f}",
                                    pen=f"{float(pen):.3f}", psi=f"{psi:.3g}")
            hist["loss"].append(sums["loss"] / seen)
            hist["ce"].append(sums["ce"] / seen)
            hist["penalty"].append(sums["pen"] / seen)
            hist["psi"].append(psi)
            hist["mean_rmse"].append(sums["rmse"] / seen)
            hist["time"].append(time.perf_counter() - t0)
    finally:
        bar.close()
        model.eval()
    return hist


def input_gradient_stats(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None,
                         batch_size: int = 256) -> dict:
    """The eq. (8) view: mean and per-image maximum of :math:`|\\partial y_i / \\partial x_j|`.

    ``y_i`` is the pre-softmax output of the true class (the predicted class when ``y`` is
    None). Returns ``mean_abs`` (over images and pixels) and ``mean_max_abs`` (the mean over
    images of the largest absolute derivative), both "lower is smoother".

    Taught in Part 6, section "The eq. (8) view".
    """
    check_eval_model(model, "the input gradients would be random (dropout)")
    x = check_model_input(model, x, "x", value_range=(0.0, 1.0))
    if y is not None:
        y = check_labels(y, n=x.shape[0], num_classes=getattr(model, "num_classes", None), name="y")
    dev = model_device(model, x.device)
    tot_mean, tot_max, n = 0.0, 0.0, 0
    for i in range(0, x.shape[0], batch_size):
        xb = x[i:i + batch_size].to(dev).requires_grad_(True)
        with torch.enable_grad():
            out = model(xb)
            cls = out.argmax(1) if y is None else y[i:i + batch_size].to(dev)
            (g,) = torch.autograd.grad(out.gather(1, cls[:, None]).sum(), xb)
        a = g.abs().flatten(1)
        tot_mean += float(a.mean(1).sum())
        tot_max += float(a.amax(1).sum())
        n += a.shape[0]
    return {"mean_abs": tot_mean / n, "mean_max_abs": tot_max / n}


def _register(name: str) -> None:
    def fn(model, recipe, *, device, progress=True, deps=None):
        d = recipe_data(recipe, device)
        hist = train_lipschitz(model, d["x_train"], d["y_train"], epochs=recipe.epochs,
                               params=dict(recipe.objective_params), objective=name,
                               batch_size=recipe.batch_size, lr=recipe.lr, optimizer=recipe.optimizer,
                               weight_decay=recipe.weight_decay, schedule=recipe.schedule,
                               device=device, seed=recipe.seed, progress=progress,
                               desc=f"training {recipe.key}")
        return {"test_accuracy": evaluate_accuracy(model, d["x_test"], d["y_test"]),
                "train_seconds": round(sum(hist["time"]), 2), "n_train": int(d["x_train"].shape[0]),
                "n_test": int(d["x_test"].shape[0]), "history": hist}

    fn.__name__ = f"train_{name}"
    fn.__doc__ = (f"The cache's trainer of objective ``{name!r}``: :func:`train_lipschitz` on the "
                  f"recipe's data.\n\n    Taught in Part 6, section \"Training the networks of Table 1\".\n    ")
    register_trainer(name, params=DEFAULT_PARAMS[name], check=lambda q, m=name: _check_params(m, q))(fn)


for _name in DEFAULT_PARAMS:
    _register(_name)


# ---------------------------------------------------------------------------------------------
# The chapter's networks: Table 1 redone on Fashion-MNIST
# ---------------------------------------------------------------------------------------------
#: Per profile: training images and epochs (the paper: CIFAR-10, 200 epochs of SGD).
PART6_SETTINGS = {
    "smoke": {"n_train": 1024, "epochs": 2},
    "laptop": {"n_train": 10000, "epochs": 5},
    "full": {"n_train": None, "epochs": 30},
}
#: The psi grid of the "regularisation strength" rows. Chosen from clean accuracy alone, before
#: any ARA was computed: a laptop-profile pilot of eq. (4) + L2 training at psi = 0, 0.1, 1, 10,
#: 100, 1000 and 10000 lost 0, 0, 0, 0, 0.5, 3 and 10 points of clean accuracy against psi = 0; the
#: grid keeps the four from "no loss" to "a large loss" (the paper's 0.55-220 lose 0-8 points).
PART6_PSI = (10.0, 100.0, 1000.0, 10000.0)
#: The "high psi" of the HHReLU rows: three times the grid's top (the paper: 12,000, 55 times its
#: 220), where a ReLU network loses a large part of its accuracy.
PART6_PSI_HIGH = 30000.0
#: L2 adversarial training budget (r.m.s.e.; an L2 radius of 1.4 on 28 x 28): the pilot's L2
#: training alone at 0.05 lost 6 points of clean accuracy, close to the paper's Madry network (4.8).
PART6_EPS_L2 = 0.05
#: L2,min budget (r.m.s.e.), the authors' code's value, with half-half batches.
PART6_EPS_L2MIN = 0.1


def _part6(p, seed: int) -> dict:
    from .recipes import default_recipe

    s = PART6_SETTINGS[p.name]
    common = dict(profile=p, seed=seed, n_train=s["n_train"], epochs=s["epochs"])
    relu, hh = {"activation": "relu"}, {"activation": "hhrelu"}

    def eq4(psi, arch_kwargs=relu, **params):
        return default_recipe("strided_cnn", objective="lipschitz", arch_kwargs=arch_kwargs,
                              objective_params={"psi": psi, **params}, **common)

    l2 = {"adv": "l2", "eps": PART6_EPS_L2}
    out = {"Standard": default_recipe("strided_cnn", arch_kwargs=relu, **common)}
    for psi in PART6_PSI:
        out[f"ψ = {psi:g}"] = eq4(psi, **l2)
    for k in (2, 4, 8):
        out[f"ψ = {PART6_PSI[-1]:g}, K = {k}"] = eq4(PART6_PSI[-1], k=k, **l2)
    out[f"ψ = {PART6_PSI_HIGH:g}, ReLU"] = eq4(PART6_PSI_HIGH, **l2)
    out[f"ψ = {PART6_PSI_HIGH:g}, HHReLU"] = eq4(PART6_PSI_HIGH, hh, **l2)
    out["L2 adversarial training"] = default_recipe("strided_cnn", objective="l2_at", arch_kwargs=relu,
                                                    objective_params={"eps": PART6_EPS_L2}, **common)
    out["Eq. (4) + L2,min training"] = eq4(PART6_PSI[-1], hh, adv="l2min", eps=PART6_EPS_L2MIN, half_half=True)
    out["Eq. (4) only"] = eq4(PART6_PSI[-1], hh)
    return out


def _register_part6() -> None:
    from .recipes import register_recipe_set

    register_recipe_set("part6")(_part6)


_register_part6()
