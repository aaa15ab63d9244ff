"""Membership inference: a negative intervention that asks "was this image in the training set?".

A membership-inference attack (Shokri et al., IEEE S&P 2017) is given a trained *target* model
as a black box and a labelled image ``(x, y)``, and decides whether ``(x, y)`` was one of the
target's training images. If it can, the model leaks its training data (medical records, faces).
The attack exploits the difference between the model's behaviour on images it was trained on
(confident, low loss) and on new images: the generalisation gap.

*Shadow models.* The attacker trains ``k`` shadow models with the target's recipe on data of
the same distribution that it owns, each on an "in" set and with an equally large held-out
"out" set. For a shadow, membership is known, so the pairs

.. math::  \\big(\\phi(f_i(x), y),\\ 1\\big)\\ \\text{for } x \\in D_i^{in}, \\qquad
           \\big(\\phi(f_i(x), y),\\ 0\\big)\\ \\text{for } x \\in D_i^{out}

train a binary *attack model* ``A``; applied to the target's outputs, ``A(phi(f(x), y))``
predicts membership. Here ``phi`` is label-agnostic (one attack model for all classes, as in
Salem et al.'s ML-Leaks, NDSS 2019, instead of Shokri's one attack model per class on the full
probability vector): the softmax vector sorted in decreasing order, the probability of the true
label and the cross-entropy loss,

.. math::  \\phi(f(x), y) = \\big(p_{(1)} \\ge \\dots \\ge p_{(C)},\\ p_y,\\
           -\\log p_y\\big), \\qquad p = \\mathrm{softmax}(f(x)).

*Baseline.* Yeom et al. (CSF 2018) need no shadow model: predict "member" when the loss is
below the average training loss, ``-log p_y < (1/n) sum_train -log p_y``. Their membership
advantage ``Adv = TPR - FPR`` is tied to the generalisation gap; for the 0-1 loss it *equals*
train accuracy minus test accuracy. Both attacks are measured by the AUC of their membership
score and by the advantage.

Prevention is a robustness problem at training time (weight decay, dropout, early stopping,
differential privacy): :func:`train_shadow_models` takes ``weight_decay`` and ``dropout`` so
that the chapter can compare targets trained with and without them.

Taught in Part 4, section "Repeated interventions: membership inference".
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._checks import (check_choice, check_fraction, check_images, check_labels,
                      check_positive_int, check_seed)
from .recipes import ARCH_DEFAULTS
from .config import seed_everything
from .metrics import auroc
from .models import ARCHITECTURES, build_model
from .training import OPTIMIZERS, predict_logits, train_classifier

__all__ = [
    "ATTACK_MODELS",
    "ShadowModel",
    "train_shadow_models",
    "attack_features",
    "membership_inference",
    "loss_threshold_attack",
]

#: Attack classifiers :func:`membership_inference` can fit (scikit-learn).
ATTACK_MODELS = ("gradient_boosting", "logistic_regression")


@dataclass
class ShadowModel:
    """A shadow model and the pool indices of its training ("in") and held-out ("out") images.

    Attributes
    ----------
    model : torch.nn.Module
        The trained shadow model, in eval mode.
    in_idx, out_idx : torch.Tensor
        ``(n_train,)`` int64 indices into the pool the shadows were drawn from; disjoint.
    seed : int
        Seed of its initial weights and training order.
    history : dict
        What :func:`robust_utils.training.train_classifier` returned.

    Taught in Part 4, section "Repeated interventions: membership inference".
    """

    model: nn.Module
    in_idx: torch.Tensor
    out_idx: torch.Tensor
    seed: int
    history: dict = field(default_factory=dict, repr=False)


# ---------------------------------------------------------------------------------------------
# Shadow models
# ---------------------------------------------------------------------------------------------
def train_shadow_models(arch: str, x_pool: torch.Tensor, y_pool: torch.Tensor, *, n_shadow: int = 4,
                        n_train: int = 1000, epochs: int = 10, batch_size: int = 128,
                        lr: float | None = None, optimizer: str | None = None,
                        weight_decay: float = 0.0, dropout: float | None = None,
                        num_classes: int | None = None, model_kwargs: dict | None = None,
                        seed: int = 0, device="auto", progress: bool = False) -> list[ShadowModel]:
    """Train ``n_shadow`` shadow models, each on its own ``n_train`` images of the pool.

    The pool is shuffled once (with ``seed``) and cut into ``2 * n_shadow`` disjoint blocks of
    ``n_train`` indices: shadow ``i`` trains on block ``2i`` ("in") and holds block ``2i + 1``
    out. No image is used by two shadows, so the attack's training pairs are independent; the
    pool needs ``2 * n_shadow * n_train`` images. Each shadow is built by
    :func:`robust_utils.models.build_model` after :func:`robust_utils.config.seed_everything`
    with ``seed + i`` and trained by :func:`robust_utils.training.train_classifier` (seed
    ``seed + i``, cosine schedule) with the optimiser and learning rate of
    :data:`robust_utils.recipes.ARCH_DEFAULTS` unless given.

    The attacker's pool must not contain the target's training images: in Shokri et al.'s
    setting the attacker owns data of the same distribution, not the target's data. Use the
    target's recipe (architecture, epochs, training-set size, regularisation) so that the
    shadows over-fit as much as the target does.

    Parameters
    ----------
    arch : str
        An architecture of :data:`robust_utils.models.ARCHITECTURES`.
    x_pool, y_pool : torch.Tensor
        The attacker's images ``(M, C, H, W)`` in ``[0, 1]`` and int labels ``(M,)``.
    n_shadow : int, default 4
    n_train : int, default 1000
        Training-set size of each shadow (and size of its held-out set).
    epochs, batch_size : int, default 10, 128
    lr : float, optional
        Default: ``ARCH_DEFAULTS[arch]["lr"]``.
    optimizer : {"adam", "sgd"}, optional
        Default: ``ARCH_DEFAULTS[arch]["optimizer"]``.
    weight_decay : float, default 0
    dropout : float, optional
        Dropout probability passed to the architecture (``"c3lt_cnn"``, ``"mlp"``); ``None``
        keeps the architecture's default.
    num_classes : int, optional
        Default: ``model_kwargs["num_classes"]`` if given, else ``y_pool.max() + 1``.
    model_kwargs : dict, optional
        Further constructor arguments for :func:`~robust_utils.models.build_model` (e.g.
        ``{"in_features": 64, "hidden": (32,)}`` for small images).
    seed : int, default 0
        Seeds the split of the pool and, as ``seed + i``, shadow ``i``.
    device : str or torch.device, default "auto"
    progress : bool, default False
        Show the training progress bars.

    Returns
    -------
    list of ShadowModel

    Taught in Part 4, section "Repeated interventions: membership inference".
    """
    if not isinstance(arch, str):
        raise TypeError(f"arch must be an architecture name; choose one of: {', '.join(ARCHITECTURES)}.")
    check_choice(arch, "architecture", ARCHITECTURES)
    check_images(x_pool, "x_pool")
    y_pool = check_labels(y_pool, n=x_pool.shape[0], name="y_pool")
    n_shadow = check_positive_int(n_shadow, "n_shadow")
    n_train = check_positive_int(n_train, "n_train", minimum=2)
    seed = check_seed(seed)
    need = 2 * n_shadow * n_train
    if need > x_pool.shape[0]:
        raise ValueError(f"the pool has {x_pool.shape[0]} images but {n_shadow} shadow models with "
                         f"n_train={n_train} need 2 * {n_shadow} * {n_train} = {need} disjoint images "
                         "(an 'in' and an 'out' set each); reduce n_shadow or n_train, or pass a larger pool.")
    if model_kwargs is not None and not isinstance(model_kwargs, dict):
        raise TypeError(f"model_kwargs must be a dict of constructor arguments (e.g. "
                        f"{{'hidden': (64,)}}), got {type(model_kwargs).__name__}.")
    kwargs = dict(model_kwargs or {})
    if num_classes is None:
        num_classes = kwargs.get("num_classes", max(2, int(y_pool.max()) + 1))
    num_classes = check_positive_int(num_classes, "num_classes", minimum=2)
    if int(y_pool.min()) < 0 or int(y_pool.max()) >= num_classes:
        raise ValueError(f"y_pool must lie in [0, {num_classes - 1}] for num_classes={num_classes}, got "
                         f"values in [{int(y_pool.min())}, {int(y_pool.max())}].")
    kwargs["num_classes"] = num_classes
    if dropout is not None:
        if "dropout" not in inspect.signature(ARCHITECTURES[arch].__init__).parameters:
            raise ValueError(f"architecture {arch!r} has no dropout; pass dropout=None, or use "
                             "'c3lt_cnn' or 'mlp'.")
        kwargs["dropout"] = check_fraction(dropout, "dropout")
    defaults = ARCH_DEFAULTS[arch]
    lr = defaults["lr"] if lr is None else lr
    optimizer = defaults["optimizer"] if optimizer is None else optimizer
    check_choice(optimizer, "optimizer", OPTIMIZERS)

    order = torch.randperm(x_pool.shape[0], generator=torch.Generator().manual_seed(seed))
    shadows = []
    for i in range(n_shadow):
        in_idx = order[2 * i * n_train:(2 * i + 1) * n_train].clone()
        out_idx = order[(2 * i + 1) * n_train:(2 * i + 2) * n_train].clone()
        seed_everything(seed + i)
        model = build_model(arch, **kwargs)
        idx = in_idx.to(x_pool.device)
        history = train_classifier(model, x_pool[idx], y_pool[idx.to(y_pool.device)], epochs=epochs,
                                   batch_size=batch_size, lr=lr, optimizer=optimizer,
                                   weight_decay=weight_decay, device=device, seed=seed + i,
                                   progress=progress, desc=f"shadow model {i + 1}/{n_shadow}")
        shadows.append(ShadowModel(model.eval(), in_idx, out_idx, seed + i, history))
    return shadows


# ---------------------------------------------------------------------------------------------
# Features and the attack
# ---------------------------------------------------------------------------------------------
def attack_features(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                    batch_size: int = 1024) -> torch.Tensor:
    """The attack model's input, computed from a (target or shadow) model's outputs.

    ``phi(f(x), y) = (sorted softmax, p_y, -log p_y)``: the ``C`` class probabilities in
    decreasing order (label-agnostic, so one attack model serves every class; Salem et al.
    2019), the probability of the true label and the cross-entropy loss (computed from the
    log-softmax, so it stays finite for confident models). Shokri et al. instead train one attack
    model per class on the unsorted probability vector.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits; evaluated in eval mode (its mode is restored).
    x : torch.Tensor
        Images ``(N, C_in, H, W)`` in ``[0, 1]``.
    y : torch.Tensor
        True labels ``(N,)``.
    batch_size : int, default 1024

    Returns
    -------
    torch.Tensor
        ``(N, C + 2)`` float features on ``x``'s device.

    Taught in Part 4, section "Repeated interventions: membership inference".
    """
    check_images(x, "x")
    y = check_labels(y, n=x.shape[0], name="y")
    logits = predict_logits(model, x, batch_size=batch_size).float()
    if logits.dim() != 2:
        raise ValueError(f"the model must return logits shaped (N, num_classes), got {tuple(logits.shape)}.")
    y = check_labels(y, n=x.shape[0], num_classes=logits.shape[1], name="y")
    log_p = F.log_softmax(logits, dim=1)
    yi = y.to(logits.device).long()[:, None]
    sorted_p = log_p.exp().sort(dim=1, descending=True).values
    p_true = log_p.gather(1, yi).exp()
    loss = -log_p.gather(1, yi)
    return torch.cat([sorted_p, p_true, loss], dim=1)


def _check_shadows(shadows, pool_size: int) -> list[ShadowModel]:
    if isinstance(shadows, ShadowModel):
        shadows = [shadows]
    if not isinstance(shadows, (list, tuple)) or not shadows:
        raise ValueError("shadows must be a non-empty list of ShadowModel, as returned by "
                         "train_shadow_models(...).")
    for i, s in enumerate(shadows):
        if not isinstance(s, ShadowModel):
            raise TypeError(f"shadows[{i}] must be a ShadowModel, got {type(s).__name__}.")
        for name in ("in_idx", "out_idx"):
            idx = getattr(s, name)
            if not isinstance(idx, torch.Tensor) or idx.dim() != 1 or idx.numel() == 0 \
                    or torch.is_floating_point(idx):
                raise ValueError(f"shadows[{i}].{name} must be a non-empty 1-D integer tensor of pool indices.")
            if int(idx.min()) < 0 or int(idx.max()) >= pool_size:
                raise ValueError(f"shadows[{i}].{name} indexes outside the pool of {pool_size} images; "
                                 "pass the x_pool, y_pool the shadows were trained from.")
    return list(shadows)


def _check_member_sets(x_members, y_members, x_nonmembers, y_nonmembers) -> None:
    check_images(x_members, "x_members")
    check_labels(y_members, n=x_members.shape[0], name="y_members")
    check_images(x_nonmembers, "x_nonmembers")
    check_labels(y_nonmembers, n=x_nonmembers.shape[0], name="y_nonmembers")


def _make_attack(name: str, seed: int):
    if name == "gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, early_stopping=True,
                                              validation_fraction=0.1, n_iter_no_change=10,
                                              random_state=seed)
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


def _attack_scores(scores: np.ndarray, decisions: np.ndarray, n_members: int) -> dict:
    """Accuracy, AUC, advantages, precision and recall of membership scores (members first)."""
    from sklearn.metrics import roc_curve

    labels = np.r_[np.ones(n_members, dtype=np.int64), np.zeros(len(scores) - n_members, dtype=np.int64)]
    tpr = float(decisions[labels == 1].mean())
    fpr = float(decisions[labels == 0].mean())
    flagged = int(decisions.sum())
    roc_fpr, roc_tpr, _ = roc_curve(labels, scores)
    return {
        "accuracy": float((decisions == labels).mean()),
        "auc": auroc(scores, labels),
        "advantage": tpr - fpr,
        "max_advantage": float(np.max(roc_tpr - roc_fpr)),
        "precision": float(decisions[labels == 1].sum() / flagged) if flagged else 0.0,
        "recall": tpr,
    }


def _target_accuracies(logits_m: torch.Tensor, y_m, logits_n: torch.Tensor, y_n) -> dict:
    train = float((logits_m.argmax(1).cpu() == y_m.cpu()).double().mean())
    test = float((logits_n.argmax(1).cpu() == y_n.cpu()).double().mean())
    return {"train_accuracy": train, "test_accuracy": test, "generalization_gap": train - test}


def membership_inference(target_model: nn.Module, x_members: torch.Tensor, y_members: torch.Tensor,
                         x_nonmembers: torch.Tensor, y_nonmembers: torch.Tensor,
                         shadows: Sequence[ShadowModel], x_pool: torch.Tensor, y_pool: torch.Tensor, *,
                         attack: str = "gradient_boosting", seed: int = 0,
                         batch_size: int = 1024) -> dict:
    """Shokri et al.'s shadow-model attack on ``target_model``, and how well it works.

    The attack classifier is fitted on the :func:`attack_features` of every shadow's "in"
    (label 1) and "out" (label 0) images, then scores the target's members and non-members.

    Parameters
    ----------
    target_model : torch.nn.Module
        The attacked classifier (returns logits; evaluated in eval mode).
    x_members, y_members : torch.Tensor
        Images of the target's training set and their labels.
    x_nonmembers, y_nonmembers : torch.Tensor
        Images of the same distribution that the target never saw. Use as many as members:
        then chance accuracy is 0.5.
    shadows : list of ShadowModel
        From :func:`train_shadow_models`.
    x_pool, y_pool : torch.Tensor
        The pool the shadows were trained from (their indices point into it).
    attack : {"gradient_boosting", "logistic_regression"}, default "gradient_boosting"
        scikit-learn's ``HistGradientBoostingClassifier`` (200 rounds at most, early stopping on
        10 % of the shadow pairs), or a ``LogisticRegression`` on standardised features.
    seed : int, default 0
        Seeds the attack classifier.
    batch_size : int, default 1024

    Returns
    -------
    dict
        ``"accuracy"`` (attack decisions at probability 0.5 on members + non-members), ``"auc"``
        (ROC AUC of the attack's membership probability; 0.5 = chance), ``"advantage"``
        (``TPR - FPR`` of those decisions, Yeom et al.'s membership advantage; ``2 * accuracy -
        1`` when the two sets have equal size), ``"max_advantage"`` (the largest ``TPR - FPR``
        over all thresholds of the score: an optimistic upper bound, the threshold being chosen
        on the evaluation data), ``"precision"``, ``"recall"``, the target's
        ``"train_accuracy"`` (on the members), ``"test_accuracy"`` (on the non-members) and
        ``"generalization_gap"`` (their difference), ``"attack"`` (the fitted scikit-learn
        classifier), ``"member_scores"`` and ``"nonmember_scores"`` (numpy arrays of the
        membership probability), and ``"shadow_train_accuracy"`` (the attack's accuracy on its
        own shadow pairs).

    Taught in Part 4, section "Repeated interventions: membership inference".
    """
    _check_member_sets(x_members, y_members, x_nonmembers, y_nonmembers)
    check_images(x_pool, "x_pool")
    y_pool = check_labels(y_pool, n=x_pool.shape[0], name="y_pool")
    shadows = _check_shadows(shadows, x_pool.shape[0])
    if not isinstance(attack, str):
        raise TypeError(f"attack must be a string; choose one of: {', '.join(ATTACK_MODELS)}.")
    check_choice(attack, "attack model", ATTACK_MODELS)
    seed = check_seed(seed)
    batch_size = check_positive_int(batch_size, "batch_size")

    feats, labels = [], []
    for s in shadows:
        for idx, label in ((s.in_idx, 1), (s.out_idx, 0)):
            f = attack_features(s.model, x_pool[idx.to(x_pool.device)], y_pool[idx.to(y_pool.device)],
                                batch_size=batch_size)
            feats.append(f.cpu().numpy())
            labels.append(np.full(len(f), label, dtype=np.int64))
    f_train, l_train = np.concatenate(feats), np.concatenate(labels)

    f_mem = attack_features(target_model, x_members, y_members, batch_size=batch_size).cpu().numpy()
    f_non = attack_features(target_model, x_nonmembers, y_nonmembers, batch_size=batch_size).cpu().numpy()
    if f_mem.shape[1] != f_train.shape[1]:
        raise ValueError(f"the target model has {f_mem.shape[1] - 2} classes but the shadow models have "
                         f"{f_train.shape[1] - 2}; train the shadows with the target's num_classes.")

    clf = _make_attack(attack, seed).fit(f_train, l_train)
    f_eval = np.concatenate([f_mem, f_non])
    scores = clf.predict_proba(f_eval)[:, 1]
    decisions = (scores > 0.5).astype(np.int64)
    result = _attack_scores(scores, decisions, len(f_mem))
    with torch.no_grad():
        logits_m = predict_logits(target_model, x_members, batch_size=batch_size)
        logits_n = predict_logits(target_model, x_nonmembers, batch_size=batch_size)
    result.update(_target_accuracies(logits_m, y_members, logits_n, y_nonmembers))
    result.update({
        "attack": clf,
        "member_scores": scores[:len(f_mem)],
        "nonmember_scores": scores[len(f_mem):],
        "shadow_train_accuracy": float((clf.predict(f_train) == l_train).mean()),
    })
    return result


def loss_threshold_attack(target_model: nn.Module, x_members: torch.Tensor, y_members: torch.Tensor,
                          x_nonmembers: torch.Tensor, y_nonmembers: torch.Tensor, *,
                          threshold: float | None = None, batch_size: int = 1024) -> dict:
    """Yeom et al.'s baseline: "member" when the cross-entropy loss is below a threshold.

    No shadow models: the attacker is assumed to know the target's average training loss and
    predicts "member" when ``-log p_y < threshold``. By default the threshold is the mean loss
    on ``x_members`` (the members stand for the training set). The membership score for the AUC
    is the negated loss.

    Parameters
    ----------
    target_model : torch.nn.Module
    x_members, y_members, x_nonmembers, y_nonmembers : torch.Tensor
        As in :func:`membership_inference`.
    threshold : float, optional
        The loss threshold; default the members' mean loss.
    batch_size : int, default 1024

    Returns
    -------
    dict
        ``"accuracy"``, ``"auc"``, ``"advantage"``, ``"max_advantage"``, ``"precision"``,
        ``"recall"`` (as in :func:`membership_inference`), ``"threshold"``, the target's
        ``"train_accuracy"``, ``"test_accuracy"``, ``"generalization_gap"``, and the per-image
        ``"member_losses"`` and ``"nonmember_losses"`` (numpy arrays).

    Taught in Part 4, section "Repeated interventions: membership inference".
    """
    _check_member_sets(x_members, y_members, x_nonmembers, y_nonmembers)
    batch_size = check_positive_int(batch_size, "batch_size")
    with torch.no_grad():
        logits_m = predict_logits(target_model, x_members, batch_size=batch_size).float()
        logits_n = predict_logits(target_model, x_nonmembers, batch_size=batch_size).float()
    y_members = check_labels(y_members, num_classes=logits_m.shape[1], name="y_members")
    y_nonmembers = check_labels(y_nonmembers, num_classes=logits_n.shape[1], name="y_nonmembers")
    loss_m = F.cross_entropy(logits_m, y_members.to(logits_m.device).long(), reduction="none").cpu().numpy()
    loss_n = F.cross_entropy(logits_n, y_nonmembers.to(logits_n.device).long(), reduction="none").cpu().numpy()
    if threshold is None:
        threshold = float(loss_m.mean())
    else:
        try:
            threshold = float(threshold)
        except (TypeError, ValueError):
            raise TypeError(f"threshold must be a number (a loss value), got {threshold!r}.") from None
        if not np.isfinite(threshold):
            raise ValueError(f"threshold must be finite, got {threshold}.")
    losses = np.concatenate([loss_m, loss_n]).astype(np.float64)
    decisions = (losses < threshold).astype(np.int64)
    result = _attack_scores(-losses, decisions, len(loss_m))
    result.update(_target_accuracies(logits_m, y_members, logits_n, y_nonmembers))
    result.update({"threshold": threshold, "member_losses": loss_m, "nonmember_losses": loss_n})
    return result
