"""One training loop for every robust objective of Part 5, and the trainers the model cache calls.

:func:`train_robust` runs the three steps of the slides' UDR algorithm for every method (the
non-UDR methods skip the second):

1. for each training image, the adversarial example of the method's inner problem
   (:func:`robust_utils.robust_objectives.inner_maximise`, or WRM's penalised ascent);
2. UDR only: every ``lambda_every`` batches (counted across epochs), :math:`\\lambda \\leftarrow \\lambda -
   \\eta_\\lambda(\\epsilon - \\overline{\\hat d}(x^{adv}, x))` over the period;
3. a gradient step of the parameters on the mean outer risk :math:`g_\\theta(x^{adv}, x, y)`.

Data stay as tensors on the device (no ``DataLoader``); batch order, random starts and dropout
are seeded. The network is in eval mode while the inner attack runs (``attack_mode="eval"``, as
in the TRADES and MART code: dropout off, so the attack sees the network that will be tested)
and in train mode for the parameter step. With ``val_data`` the clean and PGD-10 accuracy on a
held-out subset are recorded after every epoch, which shows robust overfitting.

The registered objectives (names of :data:`robust_utils.training.TRAINERS`): ``pgd_at``,
``trades``, ``mart``, ``wrm``, ``udr_pgd``, ``udr_trades``, ``udr_mart``.

Taught in Part 5, section "Training the eight networks".
"""
from __future__ import annotations

import time

import torch
from torch import nn

from ._checks import (check_bool, check_choice, check_images, check_labels, check_number,
                      check_positive_int, check_seed)
from .config import progress_bar
from .robust_objectives import (KL_DIRECTIONS, PULLBACK_RULES, inner_maximise, robust_risk,
                                smoothed_cost, update_lambda, wrm_maximise)
from .training import (_check_schedule, _loop_setup, evaluate_accuracy, iterate_minibatches,
                       recipe_data, register_trainer)

__all__ = [
    "ROBUST_METHODS",
    "DEFAULT_PARAMS",
    "train_robust",
    "pgd_accuracy",
]

#: Method name -> (outer risk, uses UDR's pull-back and lambda).
ROBUST_METHODS = {
    "pgd_at": ("pgd", False), "trades": ("trades", False), "mart": ("mart", False),
    "wrm": ("wrm", False),
    "udr_pgd": ("pgd", True), "udr_trades": ("trades", True), "udr_mart": ("mart", True),
}

_ATTACK = {"eps": 0.1, "alpha": 0.025, "steps": 10, "attack_mode": "eval", "track_n": 500}
_UDR = {"tau": 2.0, "lambda0": 1.0, "lambda_lr": 0.02, "lambda_every": 10, "lambda_clamp": True,
        "pullback": "slides"}
_TRADES = {"beta": 6.0, "kl_direction": "slides"}
_MART = {"beta": 6.0, "kl_direction": "slides", "mart_bce_on": "clean"}

#: Default objective parameters: the slides' beta = 1 for PGD-AT, TRADES' headline beta = 6, MART's
#: 6; L-infinity eps = 0.1 (Fashion-MNIST's usual budget) with 10 steps of eps / 4; UDR's code
#: constants lambda0 = 1 and eta_lambda = 0.02 every 10 batches, and tau = 2 (the slides leave tau
#: free; the code's tau = alpha makes lambda = 1 a hard clip); WRM's gamma of the reference code
#: and its 15 ascent steps. ``track_n`` held-out images are attacked after every epoch.
DEFAULT_PARAMS = {
    "pgd_at": {"beta": 1.0, **_ATTACK},
    "trades": {**_TRADES, **_ATTACK},
    "mart": {**_MART, **_ATTACK},
    "wrm": {"gamma": 0.385, "wrm_steps": 15, "track_n": 500},
    "udr_pgd": {"beta": 1.0, **_ATTACK, **_UDR},
    "udr_trades": {**_TRADES, **_ATTACK, **_UDR},
    "udr_mart": {**_MART, **_ATTACK, **_UDR},
}


def _check_params(method: str, p: dict) -> dict:
    """Validate a method's parameters (unknown names, ranges, choices) with a clear message."""
    unknown = sorted(set(p) - set(DEFAULT_PARAMS[method]))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for {method!r}; valid: {sorted(DEFAULT_PARAMS[method])}.")
    p = {**DEFAULT_PARAMS[method], **p}
    if "beta" in p:
        check_number(p["beta"], "beta", strict=False, hint="the weight of the adversarial term.")
    if "eps" in p:
        check_number(p["eps"], "eps", maximum=1.0, hint="in [0, 1] pixel units: 0.1, not 25.")
        check_number(p["alpha"], "alpha", maximum=1.0, hint="the inner step size, e.g. eps / 4.")
        check_positive_int(p["steps"], "steps")
        check_choice(p["attack_mode"], "attack_mode", ("eval", "train"))
    if "kl_direction" in p:
        check_choice(p["kl_direction"], "kl_direction", KL_DIRECTIONS)
    if "mart_bce_on" in p:
        check_choice(p["mart_bce_on"], "mart_bce_on", ("clean", "adversarial"))
    if "gamma" in p:
        check_number(p["gamma"], "gamma")
        check_positive_int(p["wrm_steps"], "wrm_steps")
    if "tau" in p:
        check_number(p["tau"], "tau")
        check_number(p["lambda0"], "lambda0", strict=False)
        check_number(p["lambda_lr"], "lambda_lr", strict=False)
        check_positive_int(p["lambda_every"], "lambda_every")
        check_bool(p["lambda_clamp"], "lambda_clamp")
        check_choice(p["pullback"], "pullback", PULLBACK_RULES)
    check_positive_int(p["track_n"], "track_n", minimum=0)
    return p


@torch.no_grad()
def _correct(model, x, y, batch_size=1024):
    return sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
               for i in range(0, x.shape[0], batch_size))


def pgd_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int = 10,
                 alpha: float | None = None, seed: int = 0, batch_size: int = 500) -> float:
    """Accuracy under an L-infinity PGD attack (random start, hard clip) of a model in eval mode.

    The quick robust accuracy recorded during training; the chapter's evaluation uses
    :func:`robust_utils.attacks.pgd` and the stronger attacks of :mod:`robust_utils.robust_eval`.

    Taught in Part 5, section "Training the eight networks".
    """
    check_images(x, "x")
    y = check_labels(y, n=x.shape[0], name="y")
    eps = check_number(eps, "eps", maximum=1.0)
    steps = check_positive_int(steps, "steps")
    alpha = 2.5 * eps / steps if alpha is None else check_number(alpha, "alpha", maximum=1.0)
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=x.device).manual_seed(check_seed(seed))
    correct = 0
    try:
        for i in range(0, x.shape[0], batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            adv = inner_maximise(model, xb, yb, eps=eps, alpha=alpha, steps=steps, generator=gen)
            correct += _correct(model, adv, yb)
    finally:
        model.train(was_training)
    return correct / max(1, x.shape[0])


def train_robust(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, method: str, epochs: int,
                 params: dict | None = None, batch_size: int = 128, lr: float = 1e-3,
                 optimizer: str = "adam", weight_decay: float = 0.0, schedule: str = "cosine",
                 device="cpu", seed: int = 0, val_data: tuple | None = None,
                 box: tuple[float, float] | None = (0.0, 1.0), progress: bool = True,
                 desc: str | None = None) -> dict:
    """Train ``model`` with a robust objective of :data:`ROBUST_METHODS` on ``[0, 1]`` images.

    Parameters
    ----------
    model : nn.Module
        A classifier taking ``[0, 1]`` images (e.g. ``build_model("trades_cnn")``).
    x, y : Tensor
        Training images ``(N, C, H, W)`` in ``box`` and labels (any ``(N, ...)`` float inputs
        when ``box`` is None).
    method : str
        ``"pgd_at"``, ``"trades"``, ``"mart"``, ``"wrm"``, ``"udr_pgd"``, ``"udr_trades"`` or
        ``"udr_mart"``.
    epochs : int
    params : dict, optional
        The method's parameters (see :data:`DEFAULT_PARAMS`): ``eps``, ``alpha``, ``steps``,
        ``beta``, ``attack_mode``, ``kl_direction``, ``mart_bce_on``; UDR's ``tau``,
        ``lambda0``, ``lambda_lr``, ``lambda_every``, ``lambda_clamp``, ``pullback``; WRM's
        ``gamma``, ``wrm_steps``; ``track_n`` held-out images for the per-epoch accuracies.
    batch_size, lr, optimizer, weight_decay, schedule, device, seed
        As in :func:`robust_utils.training.train_classifier`.
    val_data : (Tensor, Tensor), optional
        Held-out images; the first ``track_n`` are evaluated (clean and PGD-10 at ``eps``) after
        every epoch.
    box : (float, float) or None, default (0, 1)
        The range the adversarial inputs are clipped to: the pixel range for images, ``None``
        for unbounded inputs such as the 2-D points of the toy example.
    progress : bool
        A progress bar showing the clean and adversarial loss and, for UDR, lambda.

    Returns
    -------
    dict
        Per-epoch lists ``loss``, ``clean_loss``, ``adv_loss`` (means over the training
        batches), ``time``; ``mean_abs_delta`` and ``beyond_eps`` (fraction of perturbation
        elements with ``|delta| > eps``) of the training adversarial examples; ``lambda`` (UDR:
        its value after every update) and ``final_lambda``; with ``val_data``: ``val_accuracy``
        and ``val_pgd_accuracy``.

    Taught in Part 5, section "Training the eight networks".
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    check_choice(method, "robust method", ROBUST_METHODS)
    p = _check_params(method, dict(params or {}))
    risk, udr = ROBUST_METHODS[method]
    if box is not None:
        x = check_images(x, "x")
    elif not isinstance(x, torch.Tensor) or not torch.is_floating_point(x) or x.dim() < 2:
        raise ValueError("x must be a floating-point tensor of shape (N, ...).")
    y = check_labels(y, n=x.shape[0], num_classes=getattr(model, "num_classes", None), name="y")
    epochs, batch_size, lr, weight_decay, seed = _check_schedule(epochs, batch_size, lr, weight_decay,
                                                                 optimizer, schedule, seed)
    progress = check_bool(progress, "progress")

    run = _loop_setup(model, x, y, device=device, seed=seed, optimizer=optimizer, lr=lr,
                      weight_decay=weight_decay, schedule=schedule, epochs=epochs, batch_size=batch_size)
    dev, x, y, order_gen, start_gen = run.dev, run.x, run.y, run.order_gen, run.gen
    opt, drop_last, steps_per_epoch, scheduler = run.opt, run.drop_last, run.steps_per_epoch, run.scheduler
    lam = float(p["lambda0"]) if udr else None
    period_cost, period_n, batches_done = 0.0, 0, 0
    hist = {k: [] for k in ("loss", "clean_loss", "adv_loss", "time", "mean_abs_delta",
                            "beyond_eps")}
    hist["lambda"] = [lam] if udr else []
    if val_data is not None and box is not None:
        xv, yv = val_data[0][:p["track_n"]].to(dev), val_data[1][:p["track_n"]].to(dev)
        hist["val_accuracy"], hist["val_pgd_accuracy"] = [], []
    eps = p.get("eps")
    bar = progress_bar(total=epochs * steps_per_epoch, disable=not progress, unit="batch",
                       desc=desc or f"{method} {getattr(model, 'arch', type(model).__name__)}")
    try:
        for epoch in range(epochs):
            t0 = time.perf_counter()
            sums = {k: torch.zeros((), device=dev) for k in ("loss", "clean", "adv", "abs", "beyond")}
            seen = 0
            batches = iterate_minibatches(x, y, batch_size, shuffle=True, generator=order_gen,
                                          drop_last=drop_last)
            for step, (xb, yb) in enumerate(batches):
                # 1. the adversarial examples, with the network in the chosen mode
                model.train(p.get("attack_mode", "eval") == "train")
                if risk == "wrm":
                    xa = wrm_maximise(model, xb, yb, gamma=p["gamma"], steps=p["wrm_steps"])  # no box
                else:
                    xa = inner_maximise(model, xb, yb, eps=eps, alpha=p["alpha"], steps=p["steps"],
                                        objective="ce" if risk == "pgd" else "kl",
                                        kl_direction=p.get("kl_direction", "slides"),
                                        udr={"lam": lam, "tau": p["tau"], "rule": p["pullback"]} if udr else None,
                                        generator=start_gen, box=box)
                delta = (xa - xb).flatten(1)
                # 2. UDR: lambda follows the mean smoothed cost of the period
                if udr:
                    period_cost += float(smoothed_cost(delta, eps, p["tau"]).mean()) * yb.shape[0]
                    period_n += yb.shape[0]
                    if (batches_done + 1) % p["lambda_every"] == 0:
                        lam = update_lambda(lam, eps, period_cost / period_n, p["lambda_lr"],
                                            clamp=p["lambda_clamp"])
                        hist["lambda"].append(lam)
                        period_cost, period_n = 0.0, 0
                # 3. the parameter step on the outer risk
                model.train()
                total, clean, adv = robust_risk(model, xb, xa, yb, risk=risk, beta=p.get("beta", 1.0),
                                                kl_direction=p.get("kl_direction", "slides"),
                                                mart_bce_on=p.get("mart_bce_on", "clean"))
                loss = total.mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if scheduler is not None:
                    scheduler.step()
                nb = yb.shape[0]
                sums["loss"] += loss.detach() * nb
                sums["clean"] += clean.detach().sum()
                sums["adv"] += adv.detach().sum()
                sums["abs"] += delta.abs().mean(1).sum()
                if eps is not None:
                    sums["beyond"] += (delta.abs() > eps + 1e-6).float().mean(1).sum()
                seen += nb
                batches_done += 1
                bar.update(1)
                if progress and step % 10 == 0:
                    post = {"epoch": f"{epoch + 1}/{epochs}", "clean": f"{float(clean.detach().mean()):.3f}",
                            "adv": f"{float(adv.detach().mean()):.3f}"}
                    if udr:
                        post["lambda"] = f"{lam:.3f}"
                    bar.set_postfix(**post)
            model.eval()
            hist["loss"].append(float(sums["loss"]) / seen)
            hist["clean_loss"].append(float(sums["clean"]) / seen)
            hist["adv_loss"].append(float(sums["adv"]) / seen)
            hist["mean_abs_delta"].append(float(sums["abs"]) / seen)
            hist["beyond_eps"].append(float(sums["beyond"]) / seen)
            hist["time"].append(time.perf_counter() - t0)
            if val_data is not None and box is not None:
                hist["val_accuracy"].append(_correct(model, xv, yv) / max(1, xv.shape[0]))
                hist["val_pgd_accuracy"].append(
                    pgd_accuracy(model, xv, yv, eps=eps if eps is not None else 0.1, steps=10))
    finally:
        bar.close()
        model.eval()
    hist["final_lambda"] = lam
    return hist


def _register(method: str) -> None:
    def fn(model, recipe, *, device, progress=True, deps=None):
        d = recipe_data(recipe, device)
        hist = train_robust(model, d["x_train"], d["y_train"], method=method, epochs=recipe.epochs,
                            params=dict(recipe.objective_params), batch_size=recipe.batch_size,
                            lr=recipe.lr, optimizer=recipe.optimizer,
                            weight_decay=recipe.weight_decay, schedule=recipe.schedule,
                            device=device, seed=recipe.seed, val_data=(d["x_test"], d["y_test"]),
                            progress=progress, desc=f"training {recipe.key}")
        return {"test_accuracy": evaluate_accuracy(model, d["x_test"], d["y_test"]),
                "train_seconds": round(sum(hist["time"]), 2), "n_train": int(d["x_train"].shape[0]),
                "n_test": int(d["x_test"].shape[0]), "history": hist}

    fn.__name__ = f"train_{method}"
    fn.__doc__ = (f"The cache's trainer of objective ``{method!r}``: :func:`train_robust` on the "
                  f"recipe's data.\n\n    Taught in Part 5, section \"Training the eight networks\".\n    ")
    register_trainer(method, params=DEFAULT_PARAMS[method],
                     check=lambda q, m=method: _check_params(m, q))(fn)


for _method in ROBUST_METHODS:
    _register(_method)


# ---------------------------------------------------------------------------------------------
# The chapter's eight networks
# ---------------------------------------------------------------------------------------------
#: Per profile: training images, epochs, inner-attack steps (step size 2.5 eps / steps) and the
#: held-out images attacked after every epoch (and WRM's ascent steps where not the default 15).
#: Full: the whole training set, 30 epochs, PGD-10.
PART5_SETTINGS = {
    "smoke": {"n_train": 1024, "epochs": 2, "steps": 2, "track_n": 64, "wrm_steps": 5},
    "laptop": {"n_train": 8000, "epochs": 4, "steps": 5, "track_n": 500},
    "full": {"n_train": None, "epochs": 30, "steps": 10, "track_n": 1000},
}
#: The chapter's L-infinity budget on [0, 1] pixels (the usual Fashion-MNIST one; MNIST's is 0.3).
PART5_EPS = 0.1
#: Chapter label -> method (the standard network is trained with cross-entropy).
PART5_METHODS = {"PGD-AT": "pgd_at", "TRADES": "trades", "MART": "mart", "WRM": "wrm",
                 "UDR-PGD": "udr_pgd", "UDR-TRADES": "udr_trades", "UDR-MART": "udr_mart"}


def _part5(p, seed: int) -> dict:
    from .recipes import default_recipe

    s = PART5_SETTINGS[p.name]
    common = dict(profile=p, seed=seed, n_train=s["n_train"], epochs=s["epochs"])
    out = {"Standard": default_recipe("trades_cnn", **common)}
    attack = {"eps": PART5_EPS, "steps": s["steps"], "alpha": round(2.5 * PART5_EPS / s["steps"], 6),
              "track_n": s["track_n"]}
    for label, method in PART5_METHODS.items():
        params = dict(attack)
        if method == "wrm":
            params = {"track_n": s["track_n"], **({"wrm_steps": s["wrm_steps"]} if "wrm_steps" in s else {})}
        kwargs = {"arch_kwargs": {"activation": "elu"}} if method == "wrm" else {}
        out[label] = default_recipe("trades_cnn", objective=method, objective_params=params,
                                    **kwargs, **common)
    return out


def _register_part5() -> None:
    from .recipes import register_recipe_set

    register_recipe_set("part5")(_part5)


_register_part5()
