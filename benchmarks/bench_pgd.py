"""Benchmark: our PGD (L-infinity) vs torchattacks' PGD on Fashion-MNIST (CPU by default).

Times :func:`robust_utils.attacks.pgd` against ``torchattacks.PGD`` on ``--n`` Fashion-MNIST test
images (uniform random images if the data do not load; the script says which), with the same
untrained but seeded model, the same ``eps``, ``alpha``, number of steps and the *same random
start*: the start is drawn exactly as torchattacks draws it (``torch.manual_seed(seed)``, then
``uniform_(-eps, eps)`` on the global RNG) and handed to ours as ``start=``, and the global
seed is set again before each torchattacks call. The model is the "trades_cnn" architecture
when :data:`robust_utils.models.ARCHITECTURES` has it (the network of Part 5), else
"c3lt_cnn". Both attacks see all images in batches of ``--batch-size`` (torchattacks is called
once per batch). After one warm-up call each, the two are timed in interleaved rounds, and each
time is the best of ``--repeats``. The script prints both times, the ratio ours / torchattacks
(the goal is <= 1.0: at least as fast) and the largest absolute difference between the two sets
of adversarial images (0.0 means identical), so a fast but wrong attack cannot pass.

Usage::

    .venv/bin/python benchmarks/bench_pgd.py                 # 1000 images, PGD-10, 1 thread
    .venv/bin/python benchmarks/bench_pgd.py --threads 2 --steps 20 --device cuda

Not a test: nothing is asserted. Run on an otherwise idle machine for stable numbers.
"""
from __future__ import annotations

import argparse
import platform

import torch

from _timing import best_of, load_test_images
from robust_utils.attacks import pgd
from robust_utils.models import ARCHITECTURES, build_model


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="number of test images (default 1000)")
    ap.add_argument("--eps", type=float, default=0.1, help="L-infinity budget (default 0.1)")
    ap.add_argument("--steps", type=int, default=10, help="PGD steps (default 10)")
    ap.add_argument("--batch-size", type=int, default=500, help="images per call (default 500)")
    ap.add_argument("--repeats", type=int, default=3, help="best-of repeats (default 3)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torchattacks

    torch.set_num_threads(args.threads)
    arch = "trades_cnn" if "trades_cnn" in ARCHITECTURES else "c3lt_cnn"
    torch.manual_seed(args.seed)
    model = build_model(arch).to(args.device).eval()
    x, y, data_kind = load_test_images(args.n)
    x, y = x.to(args.device), y.to(args.device)
    eps, steps = args.eps, args.steps
    alpha = 2.5 * eps / steps
    bs = args.batch_size

    # The start torchattacks draws: one uniform_ call per batch on the global RNG, seeded once
    # before each full pass.
    torch.manual_seed(args.seed)
    start = torch.cat([torch.clamp(x[i:i + bs] + torch.empty_like(x[i:i + bs]).uniform_(-eps, eps), 0, 1)
                       for i in range(0, len(x), bs)])

    def ours():
        return pgd(model, x, y, eps, alpha=alpha, steps=steps, start=start, batch_size=bs)

    def theirs():
        torch.manual_seed(args.seed)
        atk = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
        return torch.cat([atk(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)])

    best, outs = best_of({"ours": ours, "torchattacks": theirs}, args.repeats)
    diff = float((outs["ours"] - outs["torchattacks"]).abs().max())
    n_diff = int((outs["ours"] != outs["torchattacks"]).flatten(1).any(1).sum())
    if n_diff:
        # Untimed diagnosis: torchattacks differentiates the batch-*mean* loss, ours the *sum*
        # (each image's own gradient); rounding can flip the sign of a near-zero gradient entry.
        # torchattacks with a summed loss must give ours exactly.
        ce = torch.nn.CrossEntropyLoss
        torch.nn.CrossEntropyLoss = lambda: ce(reduction="sum")
        try:
            diff_sum = float((theirs() - outs["ours"]).abs().max())
        finally:
            torch.nn.CrossEntropyLoss = ce
    print(f"torch {torch.__version__}, torchattacks {torchattacks.__version__}, {platform.processor() or platform.machine()}, "
          f"device {args.device}, {args.threads} thread(s)")
    print(f"{args.n} {data_kind} images, model {arch} (untrained, seed {args.seed}), PGD-{steps} L-inf, "
          f"eps {eps:g}, alpha {alpha:g}, batch {bs}, best of {args.repeats}")
    print(f"  ours (robust_utils.attacks.pgd)  {best['ours']:.3f} s")
    print(f"  torchattacks.PGD                 {best['torchattacks']:.3f} s")
    print(f"  ours / torchattacks              {best['ours'] / best['torchattacks']:.3f} (goal <= 1.0)")
    print(f"  max |ours - torchattacks|        {diff:.3g} ({'identical adversarial images' if diff == 0 else f'{n_diff} of {args.n} images differ'})")
    if n_diff:
        print(f"  ... with torchattacks' loss summed instead of averaged over the batch: max difference {diff_sum:.3g}")


if __name__ == "__main__":
    main()
