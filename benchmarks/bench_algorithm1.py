"""Benchmark: Algorithm 1 batched vs a per-image loop, and vs foolbox's minimum-norm attacks.

On the first ``--n`` correctly classified Fashion-MNIST test images of one of Part 6's networks
(``--network``, a label of the recipe set ``part6``, from the model cache; a missing one is
trained by its recipe), the script times

1. :func:`robust_utils.adv_explain.algorithm1` on all images at once (batched: every image keeps
   its own state) and the same function called once per image, and prints the ratio and the
   largest difference of the minimal r.m.s.e.s (0 up to round-off: the same results);
2. foolbox 3's DDN and FMN with an increasing number of steps (``--fb-steps``), and reports the
   fastest foolbox run whose median minimal r.m.s.e. is equal to or smaller than Algorithm 1's,
   with the ratio of the times (Algorithm 1 / that run; below 1: Algorithm 1 is faster for the
   same quality). If no foolbox run reaches Algorithm 1's median, it says so.

Each time is the best of ``--repeats`` interleaved rounds after a warm-up (foolbox compiles
nothing here; its first call is the warm-up).

Usage::

    .venv/bin/python benchmarks/bench_algorithm1.py --profile laptop
    .venv/bin/python benchmarks/bench_algorithm1.py --network "Eq. (4) + L2,min training" --device cuda

Not a test: nothing is asserted. Run on an otherwise idle machine for stable numbers.
"""
from __future__ import annotations

import argparse
import platform
import warnings

import numpy as np
import torch

from _timing import best_of
from robust_utils import adv_explain, cache, data, recipes
from robust_utils.config import pick_device


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100, help="correctly classified test images (default 100)")
    ap.add_argument("--steps", type=int, default=100, help="Algorithm 1 steps N (default 100, the laptop profile's)")
    ap.add_argument("--network", default="Standard", help="a label of recipe set part6 (default Standard)")
    ap.add_argument("--profile", default="laptop", help="whose networks (default laptop)")
    ap.add_argument("--fb-steps", default="25,50,100,200", help="foolbox step counts to try (default 25,50,100,200)")
    ap.add_argument("--repeats", type=int, default=2, help="timed rounds (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = pick_device(args.device)
    model = cache.get_model(recipes.recipe_set("part6", args.profile)[args.network], device=dev).eval()
    x, y = data.load_fashion_mnist("test")
    with torch.no_grad():
        ok = (model(x[:10 * args.n].to(dev)).argmax(1).cpu() == y[:10 * args.n]).nonzero().flatten()[:args.n]
    x, y = x[ok].to(dev), y[ok].to(dev)
    alg = dict(steps=args.steps, lr=0.01 * 450 / args.steps)
    fns = {
        "batched": lambda: adv_explain.algorithm1(model, x, y, batch_size=len(x), **alg)["rmse"],
        "per-image loop": lambda: np.concatenate([adv_explain.algorithm1(model, x[i:i + 1], y[i:i + 1], **alg)["rmse"]
                                                  for i in range(len(x))]),
    }
    fb_steps = [int(s) for s in args.fb_steps.split(",")]
    for s in fb_steps:   # Algorithm 1 with as many steps as the foolbox runs (the same total step size)
        if s != args.steps:
            fns[f"Alg.1-{s}"] = (lambda k=s: adv_explain.algorithm1(model, x, y, batch_size=len(x), steps=k,
                                                                    lr=0.01 * 450 / k)["rmse"])
    for atk in ("ddn", "fmn"):
        for s in fb_steps:
            fns[f"{atk.upper()}-{s}"] = (lambda a=atk, k=s: adv_explain.foolbox_min_norm(
                model, x, y, attack=a, steps=k, batch_size=len(x))["rmse"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best, outs = best_of(fns, args.repeats, dev)
    print(f"Algorithm 1 (N = {args.steps}) on {len(x)} correctly classified Fashion-MNIST test images, network "
          f"{args.network!r} ({args.profile}); device {dev}, {args.threads} thread(s), torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}")
    a1 = outs["batched"]
    diff = float(np.max(np.abs(outs["per-image loop"] - a1)))
    print(f"  batched        {best['batched']:8.3f} s   median r.m.s.e. {np.median(a1):.5f}")
    print(f"  per-image loop {best['per-image loop']:8.3f} s   ratio loop / batched = "
          f"{best['per-image loop'] / best['batched']:.1f}x   largest |difference| of r.m.s.e. = {diff:.2e}")
    target = float(np.median(a1))
    good = []
    for k in fns:
        if k in ("batched", "per-image loop"):
            continue
        d = outs[k]
        med = float(np.median(d))
        print(f"  {k:14s} {best[k]:8.3f} s   median r.m.s.e. {med:.5f}   broken {np.isfinite(d).mean():.0%}")
        if med <= target:
            good.append((best[k], k))
    good = [(t, k) for t, k in good if not k.startswith("Alg.1")]
    if good:
        t, k = min(good)
        print(f"fastest foolbox run at an equal or smaller median than Algorithm 1 (N = {args.steps}): {k}; ratio "
              f"Algorithm 1 / {k} = {best['batched'] / t:.2f} (below 1: Algorithm 1 is faster at equal quality)")
    else:
        print(f"no foolbox run reached Algorithm 1's median r.m.s.e. ({target:.5f}) with {fb_steps} steps")
    # the same question with both sides free to choose their steps: the fastest run of each family whose
    # median is within 1 % of the smallest median any run found
    floor = min(float(np.median(outs[k])) for k in fns if k != "per-image loop")
    fam = {"Algorithm 1": [k for k in fns if k == "batched" or k.startswith("Alg.1")],
           "foolbox": [k for k in fns if k.startswith(("DDN", "FMN"))]}
    pick = {}
    for name, keys in fam.items():
        ok_ = [(best[k], k) for k in keys if float(np.median(outs[k])) <= 1.01 * floor]
        pick[name] = min(ok_) if ok_ else None
    if all(pick.values()):
        (ta, ka), (tf, kf) = pick["Algorithm 1"], pick["foolbox"]
        print(f"within 1 % of the best median ({floor:.5f}): fastest Algorithm 1 run {ka} ({ta:.3f} s), fastest foolbox "
              f"run {kf} ({tf:.3f} s); ratio {ta / tf:.2f}")
    else:
        print(f"within 1 % of the best median ({floor:.5f}): " + ", ".join(f"{n}: {'none' if v is None else v[1]}"
                                                                      for n, v in pick.items()))


if __name__ == "__main__":
    main()
