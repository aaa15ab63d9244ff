"""Benchmark: C3LT's counterfactuals against per-image latent optimisation at equal validity.

On the first ``--n`` correctly classified Fashion-MNIST test images of the query class of a Part 7
pair (``--pair``, default coat -> shirt), with the chapter's models from the cache (recipe set
``part7`` of ``--profile``; missing ones are trained by their recipes), the script

1. times C3LT, ``x' = G(g(E(x)))`` on all images at once (best of ``--repeats`` after a warm-up),
   and measures its validity;
2. runs :func:`robust_utils.c3lt.latent_optimisation` (Adam on the codes, from ``E(x)``) with
   ``--steps`` steps in turn until its validity reaches C3LT's, timing each run;
3. prints the ratio (latent optimisation / C3LT; the issue's goal: at least 100) and, as the
   physical floor of any per-image search, the time of ONE forward and backward pass through
   ``G`` and the classifier: latent optimisation needs at least one per step.

Usage::

    .venv/bin/python benchmarks/bench_c3lt.py --profile laptop
    .venv/bin/python benchmarks/bench_c3lt.py --profile full --device cuda

Not a test: nothing is asserted. Run on an otherwise idle machine for stable numbers.
"""
from __future__ import annotations

import argparse
import platform

import torch
import torch.nn.functional as F

from _timing import best_of, sync
from robust_utils import c3lt, cache, cf_models, data, recipes
from robust_utils.config import pick_device
from robust_utils.generative import from_tanh_range, to_tanh_range


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="query images (default 200)")
    ap.add_argument("--pair", default="4,6", help="query,target classes of a trained pair (default 4,6)")
    ap.add_argument("--profile", default="laptop", help="whose models (default laptop)")
    ap.add_argument("--steps", default="10,20,50,100,200,400,800", help="latent-optimisation steps to try")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds of C3LT (default 5)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = pick_device(args.device)
    q, t = (int(c) for c in args.pair.split(","))
    rs = recipes.recipe_set("part7", args.profile)
    get = lambda label: cache.get_model(rs[label], device=dev).eval()  # noqa: E731
    f, gan, E, maps = get("classifier"), get("gan"), get("encoder"), get(cf_models.map_label(q, t))
    G = gan["G"]
    x, y = data.load_fashion_mnist("test")
    x = x[y == q][:10 * args.n].to(dev)
    with torch.no_grad():
        x = x[f(x).argmax(1) == q][:args.n]
        z0 = E(to_tanh_range(x))
        x0 = from_tanh_range(G(z0))

    def floor():  # one forward + backward through G and f: the least one step of any latent search costs
        # Gradient with respect to the codes only, as in the search (whose networks are frozen);
        # a plain .backward() would also compute every weight gradient and overstate the floor.
        z = z0.clone().requires_grad_(True)
        loss = F.cross_entropy(f(from_tanh_range(G(z))), torch.full((len(z),), t, device=dev))
        torch.autograd.grad(loss, z)

    best, outs = best_of({"C3LT": lambda: c3lt.counterfactual(E, G, maps["g"], x), "one step": floor},
                         args.repeats, dev)
    with torch.no_grad():
        val = float((f(outs["C3LT"]).argmax(1) == t).float().mean())
    sync(dev)
    eq = c3lt.latent_optimisation_to_validity(f, G, z0, x0, t, val, steps_grid=[int(s) for s in args.steps.split(",")])
    print(f"C3LT vs latent optimisation, {len(x)} Fashion-MNIST test images {q} -> {t} ({args.profile} models); "
          f"device {dev}, {args.threads} thread(s), torch {torch.__version__}, {platform.processor() or platform.machine()}")
    print(f"  C3LT                {best['C3LT']:9.4f} s  ({1000 * best['C3LT'] / len(x):.3f} ms per CF)  validity {val:.3f}")
    for s, v, sec in eq["runs"]:
        print(f"  latent opt. {s:4d} st {sec:9.4f} s  ({1000 * sec / len(x):.3f} ms per CF)  validity {v:.3f}")
    ratio = eq["seconds"] / best["C3LT"]
    verdict = "reached C3LT's validity" if eq["reached"] else "never reached C3LT's validity (ratio is a lower bound)"
    print(f"  latent optimisation {verdict} with {eq['steps']} steps: {ratio:.0f} x slower than C3LT (goal: >= 100 x)")
    print(f"  one forward+backward step of G and f: {best['one step']:.4f} s = {best['one step'] / best['C3LT']:.1f} x "
          "C3LT's whole forward pass (any per-image search pays this per step)")


if __name__ == "__main__":
    main()
