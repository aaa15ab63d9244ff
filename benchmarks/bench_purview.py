"""Benchmark: vectorised purview gradient features vs the plain per-image loop (CPU by default).

Times :func:`robust_utils.detection.purview_features` (squared gradient norm of every parameter
tensor, per image, for the BCE-vs-all-ones confounding loss) on ``--n`` images of shape
(1, 28, 28) with the C3LT classifier (eval mode, random weights by default: the timings hardly
depend on them; ``--cached`` uses the cached trained model), against
:func:`robust_utils.detection.purview_features_loop`, the plain reference that runs one autograd
backward pass per image, in the same run, on the same model and images.
Both of our methods are timed: ``method="auto"`` (the default: exact closed forms for the
Linear and Conv2d layers from one batched forward and backward pass) and ``method="vmap"``
(``torch.func``: ``vmap`` of ``grad`` through ``functional_call``), once per ``--batch-size``.
After one warm-up call each, the methods are timed in interleaved rounds and a method's time
is its best of ``--repeats`` passes over all images. The script prints each time, the ratio
loop / ours, and the largest relative difference from the loop, so a fast but wrong method
cannot pass.

Images: Fashion-MNIST test images (``robust_utils.data.load_fashion_mnist("test", n=...)``)
when they load, else uniform random images; the script says which.

Usage::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_purview.py          # 2000 images, CPU
    .venv/bin/python benchmarks/bench_purview.py --batch-size 128 512 --repeats 3
    .venv/bin/python benchmarks/bench_purview.py --device cuda

Not a test: nothing is asserted. Run on an otherwise idle machine for stable numbers.
"""
from __future__ import annotations

import argparse
import platform

import torch

from _timing import best_of, load_test_images
from robust_utils.detection import purview_features, purview_features_loop
from robust_utils.models import build_model


def _load_model(cached: bool, seed: int):
    """A seeded random C3LT classifier, or with --cached the cached smoke-profile one if present."""
    if cached:
        try:
            from robust_utils import cache

            recipe = cache.default_recipe("c3lt_cnn", profile="smoke")
            if cache.checkpoint_path(recipe).exists():
                return cache.get_model(recipe, device="cpu", progress=False).eval(), "cached (smoke profile)"
            print("(no cached model; using random weights)")
        except Exception as e:
            print(f"(model cache unavailable: {e}; using random weights)")
    torch.manual_seed(seed)
    return build_model("c3lt_cnn").eval(), "random init"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="number of images (default 2000)")
    ap.add_argument("--batch-size", type=int, nargs="+", default=[128, 512],
                    help="batch size(s) of the vectorised methods (default 128 512)")
    ap.add_argument("--repeats", type=int, default=3, help="best-of repeats (default 3)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads (default: leave torch's default, i.e. OMP_NUM_THREADS)")
    ap.add_argument("--cached", action="store_true",
                    help="use the cached trained C3LT model (smoke profile) if present, else random weights")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, model_kind = _load_model(args.cached, args.seed)
    model = model.to(device)
    x, _, data_kind = load_test_images(args.n)
    x = x.to(device)
    n_params = sum(p.numel() for p in model.parameters())

    fns = {"loop": lambda: purview_features_loop(model, x)}
    for bs in args.batch_size:
        fns[f"auto, batch {bs}"] = lambda bs=bs: purview_features(model, x, batch_size=bs)
        fns[f"vmap, batch {bs}"] = lambda bs=bs: purview_features(model, x, batch_size=bs, method="vmap")
    times, outs = best_of(fns, args.repeats, device)

    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, device {device}, "
          f"threads={torch.get_num_threads()}")
    print(f"{len(x)} images ({data_kind}), model C3LT ({model_kind}, eval, {n_params:,} parameters in "
          f"{len(outs['loop'][0])} tensors), best of {args.repeats}\n")
    ref = outs["loop"]
    header = f"{'method':<18} {'time [s]':>9} {'ms/image':>9} {'loop/ours':>10} {'max rel diff':>13}"
    print(header)
    print("-" * len(header))
    for k, t in times.items():
        rel = float(((outs[k] - ref).abs() / ref.abs().clamp_min(1e-30)).max())
        ratio = times["loop"] / t
        print(f"{k:<18} {t:9.3f} {1000 * t / len(x):9.3f} {ratio:9.2f}x {rel:13.1e}")
    print("\nGoal: loop/ours >= 10 on CPU; max rel diff <= 1e-4 (the tests' tolerance).")


if __name__ == "__main__":
    main()
