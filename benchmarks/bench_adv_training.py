"""Benchmark: one adversarial-training epoch against its physical limit (Part 5).

PGD-k adversarial training cannot be cheaper than the passes it must make: per batch, ``k``
forward-and-backward passes with respect to the *input* (the inner attack) and one
forward-and-backward pass with respect to the *parameters* plus an optimiser step. The issue
states the limit as ``(k + 1)`` clean epochs of the same network; this script measures, in the
same run, on the same network (``trades_cnn``), data and batch size:

* ``clean``: one epoch of cross-entropy training (forward, backward, Adam step) on ``x``;
* ``attack``: one epoch of input-gradient passes (what one inner PGD step costs);
* ``pgd_at``: one epoch of :func:`robust_utils.robust_training.train_robust` with ``steps = k``;

It prints the ratios ``pgd_at / ((k + 1) * clean)`` (the issue's limit; goal <= 1.15) and
``pgd_at / (k * attack + 2 * clean)`` (the limit of the slides' objective, whose parameter step
sees the clean *and* the adversarial batch: twice the images of a clean step).

Usage::

    .venv/bin/python benchmarks/bench_adv_training.py                  # CPU, 2,048 images
    .venv/bin/python benchmarks/bench_adv_training.py --device cuda --n 60000 --batch-size 128

Not a test: nothing is asserted. Run on an otherwise idle machine for stable numbers.
"""
from __future__ import annotations

import argparse
import platform

import torch
import torch.nn.functional as F

from _timing import best_of, load_test_images
from robust_utils.models import build_model
from robust_utils.robust_training import train_robust
from robust_utils.training import iterate_minibatches


def clean_epoch(model, x, y, batch_size):
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    model.train()
    for xb, yb in iterate_minibatches(x, y, batch_size, generator=torch.Generator().manual_seed(0)):
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def attack_epoch(model, x, y, batch_size):
    model.eval()
    for xb, yb in iterate_minibatches(x, y, batch_size, generator=torch.Generator().manual_seed(0)):
        xb = xb.detach().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xb), yb, reduction="sum"), xb)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    x, y, src = load_test_images(args.n, split="train")
    x, y = x.to(dev), y.to(dev)
    torch.manual_seed(0)
    model = build_model("trades_cnn").to(dev)
    k = args.steps
    runs = {
        "clean": lambda: clean_epoch(model, x, y, args.batch_size),
        "attack": lambda: attack_epoch(model, x, y, args.batch_size),
        "pgd_at": lambda: train_robust(model, x, y, method="pgd_at", epochs=1,
                                       params={"steps": k, "alpha": 2.5 * 0.1 / k},
                                       batch_size=args.batch_size, device=dev, progress=False),
    }
    best, _ = best_of(runs, args.repeats, dev)  # a warm-up call, then interleaved rounds
    print(f"{src}: {args.n} images, batch {args.batch_size}, PGD-{k}, trades_cnn, {dev} "
          f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), "
          f"best of {args.repeats}")
    for name, t in best.items():
        print(f"  {name:8s} {t:8.3f} s/epoch")
    limit_issue = (k + 1) * best["clean"]
    limit_ours = k * best["attack"] + 2 * best["clean"]
    print(f"  (k + 1) clean epochs            {limit_issue:8.3f} s   ratio pgd_at / limit = "
          f"{best['pgd_at'] / limit_issue:.2f}  (goal <= 1.15)")
    print(f"  k attack + 2 clean epochs       {limit_ours:8.3f} s   ratio pgd_at / limit = "
          f"{best['pgd_at'] / limit_ours:.2f}  (the slides' objective: clean + adversarial batch)")
    print(f"  one inner step / one clean step: {best['attack'] / best['clean']:.2f}")


if __name__ == "__main__":
    main()
