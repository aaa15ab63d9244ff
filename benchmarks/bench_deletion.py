"""Benchmark: our batched pixel-wise deletion vs Quantus's PixelFlipping on Fashion-MNIST (CPU).

Times :func:`robust_utils.interventions.deletion` against ``quantus.PixelFlipping`` on ``--n``
Fashion-MNIST test images with the C3LT classifier, with the same model, the same Grad-CAM
explanations (:func:`robust_utils.explanations.grad_cam`, predicted class), the same target
classes (the predictions), the same number of steps (Quantus: ``features_in_step = H * W /
steps``), the same black substrate (Quantus's ``"black"`` is each image's minimum, 0 for these
images; the script checks) and the same quantity (softmax probability of the target:
``softmax=True`` in Quantus). After one warm-up call, the two are timed in interleaved rounds
and each gets its best of ``--repeats``.

It also prints how well the curves agree. Quantus's curve holds the ``steps`` points *after*
each perturbation step; ours also holds the unperturbed point, so ``ours.curves[:, 1:]`` is
compared with it. Two comparisons are made:

* with the Grad-CAM maps as they are. Grad-CAM maps have ties (the ReLU zeroes whole regions),
  and Quantus orders them with ``np.argsort(-a)`` (not a stable sort) while we keep raster
  order, so tied pixels are deleted in a different order and the curves can differ a little;
* with the ties broken (each map replaced by minus our pixel rank, which both libraries sort
  the same way): the curves must then agree to float precision.

Usage::

    .venv/bin/python benchmarks/bench_deletion.py           # 100 images, 28 steps, 1 thread
    .venv/bin/python benchmarks/bench_deletion.py --n 1000 --threads 2

Needs ``pip install quantus`` (see the report in benchmarks/README.md). Not a test: nothing is
asserted. Run on an otherwise idle machine for stable numbers.
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import platform
import warnings

import numpy as np
import torch

from _timing import best_of
from robust_utils import explanations as E
from robust_utils import interventions as I


def _load_model():
    from robust_utils import cache

    recipe = cache.default_recipe("c3lt_cnn", profile="smoke")
    cached = cache.checkpoint_path(recipe).exists()
    model = cache.get_model(recipe, device="cpu", progress=True).eval()
    return model, "cached smoke profile" if cached else "trained now (smoke profile)"


def _agreement(ours: torch.Tensor, theirs: np.ndarray) -> tuple[float, float, float]:
    """Max |difference| of the curves, Pearson correlation of all points, and of the AUCs."""
    a = ours.double().numpy()
    b = np.asarray(theirs, dtype=np.float64)
    corr = float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    auc_a, auc_b = np.trapezoid(a, axis=1), np.trapezoid(b, axis=1)
    corr_auc = float(np.corrcoef(auc_a, auc_b)[0, 1]) if auc_a.std() > 0 and auc_b.std() > 0 else float("nan")
    return float(np.abs(a - b).max()), corr, corr_auc


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100, help="number of test images (default 100)")
    ap.add_argument("--steps", type=int, default=28, help="deletion steps (default 28: 28 pixels a step)")
    ap.add_argument("--batch-size", type=int, default=512, help="our masked images per forward pass")
    ap.add_argument("--quantus-batch-size", type=int, default=None,
                    help="Quantus images per batch (default: all n, its fastest setting)")
    ap.add_argument("--repeats", type=int, default=3, help="best-of repeats (default 3)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    args = ap.parse_args(argv)

    import quantus

    torch.set_num_threads(args.threads)
    from robust_utils.data import load_fashion_mnist

    model, model_kind = _load_model()
    x, _ = load_fashion_mnist("test", n=args.n)
    n, c, h, w = x.shape
    if (h * w) % args.steps:
        raise SystemExit(f"--steps must divide {h * w} so that Quantus's features_in_step is an integer.")
    per_step = h * w // args.steps
    maps = E.grad_cam(model, x)                                    # (N, H, W), predicted class
    with torch.no_grad():
        pred = model(x).argmax(1)
    mins = x.flatten(1).min(1).values
    if (mins != 0).any():
        print(f"note: {int((mins != 0).sum())} images have a non-zero minimum, so Quantus's 'black' "
              "(the image minimum) differs from ours (zeros) for them.")
    q_bs = args.quantus_batch_size or n
    x_np, y_np = x.numpy(), pred.numpy()

    def ours(m):
        return lambda: I.deletion(model, x, m, steps=args.steps, substrate="black",
                                  batch_size=args.batch_size)

    def theirs(m, bs=q_bs):
        a_np = m[:, None].numpy()

        def run():
            metric = quantus.PixelFlipping(features_in_step=per_step, perturb_baseline="black",
                                           abs=False, normalise=False, disable_warnings=True,
                                           display_progressbar=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return metric(model=model, x_batch=x_np, y_batch=y_np, a_batch=a_np,
                              channel_first=True, softmax=True, device="cpu", batch_size=bs)
        return run

    times, outs = best_of({"ours": ours(maps), "quantus": theirs(maps),
                            "quantus_1": theirs(maps, 1)}, args.repeats)
    res = outs["ours"]
    # Ties broken identically: minus our rank of each pixel (0 = most important).
    order = torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(h * w).expand(n, h * w))
    tie_free = (-rank.to(torch.float32)).view(n, h, w)
    _, outs_tf = best_of({"ours": ours(tie_free), "quantus": theirs(tie_free)}, 0)

    n_ties = int(sum(len(r) - len(torch.unique(r)) for r in maps.flatten(1)))
    print(f"torch {torch.__version__}, numpy {np.__version__}, quantus {md.version('quantus')}, "
          f"{platform.processor() or platform.machine()}, threads={args.threads}")
    print(f"{n} Fashion-MNIST test images, model C3LT ({model_kind}), Grad-CAM maps "
          f"({n_ties} tied pixel values in all), {args.steps} steps of {per_step} pixels, black "
          f"substrate, softmax probability of the predicted class; our batch {args.batch_size} masked "
          f"images, Quantus batch {q_bs} images; best of {args.repeats}\n")
    t_o, t_q, t_1 = times["ours"], times["quantus"], times["quantus_1"]
    q_auc = np.trapezoid(np.c_[res.curves[:, :1].numpy(), np.asarray(outs["quantus"])],
                         dx=1 / args.steps, axis=1).mean()
    print(f"{'':<44}{'time [s]':>9}{'vs ours':>9}")
    print(f"{'ours (robust_utils.interventions.deletion)':<44}{t_o:9.3f}{1.0:8.1f}x")
    print(f"{f'quantus.PixelFlipping, batch {q_bs} images':<44}{t_q:9.3f}{t_q / t_o:8.1f}x")
    print(f"{'quantus.PixelFlipping, batch 1 image':<44}{t_1:9.3f}{t_1 / t_o:8.1f}x")
    print("(goal: >= 10x; the forward passes are the same in number: N * (steps + 1) for us,")
    print(" N * steps for Quantus, so on a CPU the time is bounded by the model, not the masking)")
    print(f"\nmean deletion AUC on [0, 1]: ours {res.mean:.4f}, Quantus {q_auc:.4f} "
          "(Quantus's curve with the unperturbed point prepended)")
    print("\nagreement of the curves (ours without its first, unperturbed point):")
    for label, o, q in [("Grad-CAM maps as they are", outs["ours"], outs["quantus"]),
                        ("ties broken identically", outs_tf["ours"], outs_tf["quantus"])]:
        d, corr, corr_auc = _agreement(o.curves[:, 1:], q)
        print(f"  {label:<28} max|diff| {d:.2e}   corr(points) {corr:.6f}   corr(AUC) {corr_auc:.6f}")


if __name__ == "__main__":
    main()
