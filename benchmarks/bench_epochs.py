"""Seconds per training epoch on the full Fashion-MNIST training set, against the brief's GPU targets.

The design brief names three reference times on one H100: a clean epoch of the C3LT classifier at
batch 512 takes 0.3 s, a PGD-10 adversarial epoch 2.8 s, a DCGAN epoch (width 64) 2.2 s at batch
256. This script times the package's own training loops (``training.train_classifier``,
``robust_training.train_robust`` with PGD-AT, ``generative.train_dcgan``) on all 60,000 images held
as device tensors, and prints each time beside its reference and
the ratio (the best of ``--repeats`` epochs, in interleaved rounds after one warm-up epoch each,
with ``_timing.best_of`` like every benchmark here). The clean and PGD epochs are also timed at the full
profile's batch size (128). With ``--n`` below 60,000 the per-call set-up (seeding, optimiser,
input checks) is scaled up with the epoch, so small-``n`` numbers overstate the time.

Run on the device machine by ``tools/device/run.sh epochs``; on a CPU pass ``--n`` to keep it short::

    python benchmarks/bench_epochs.py --device cpu --n 2048 --json /tmp/epochs.json

Not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import platform

import torch

from _timing import best_of
from robust_utils import config, data
from robust_utils.generative import DCGANDiscriminator, DCGANGenerator, train_dcgan
from robust_utils.models import build_model
from robust_utils.robust_training import train_robust
from robust_utils.training import train_classifier

#: (name, reference seconds on one H100 for 60,000 images, or None).
REFERENCES = {
    "clean C3LT CNN, batch 512": 0.3,
    "clean C3LT CNN, batch 128 (full profile)": None,
    "PGD-10 adversarial (PGD-AT, trades_cnn), batch 512": 2.8,
    "PGD-10 adversarial (PGD-AT, trades_cnn), batch 128 (full profile)": None,
    "DCGAN width 64, batch 256": 2.2,
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n", type=int, default=None, help="training images (default: all 60,000)")
    ap.add_argument("--repeats", type=int, default=2, help="timed epochs per run, the best reported (default 2)")
    ap.add_argument("--json", default=None, help="also write the times to this JSON file")
    args = ap.parse_args(argv)
    dev = torch.device(config.pick_device(args.device))
    x, y = data.load_fashion_mnist("train", n=args.n, device=dev)
    n = len(x)
    scale = 60000 / n  # times are reported per 60,000 images
    torch.manual_seed(0)
    cnn = {bs: build_model("c3lt_cnn") for bs in (512, 128)}
    robust = {bs: build_model("trades_cnn") for bs in (512, 128)}
    g, d = DCGANGenerator(width=64), DCGANDiscriminator(width=64)
    pgd10 = {"steps": 10, "alpha": 0.025, "track_n": 0}
    quiet = dict(epochs=1, device=dev, progress=False)
    runs = {
        "clean C3LT CNN, batch 512": lambda: train_classifier(cnn[512], x, y, batch_size=512, **quiet),
        "clean C3LT CNN, batch 128 (full profile)": lambda: train_classifier(cnn[128], x, y, batch_size=128, **quiet),
        "PGD-10 adversarial (PGD-AT, trades_cnn), batch 512":
            lambda: train_robust(robust[512], x, y, method="pgd_at", params=pgd10, batch_size=512, **quiet),
        "PGD-10 adversarial (PGD-AT, trades_cnn), batch 128 (full profile)":
            lambda: train_robust(robust[128], x, y, method="pgd_at", params=pgd10, batch_size=128, **quiet),
        "DCGAN width 64, batch 256": lambda: train_dcgan(g, d, x, batch_size=256, **quiet),
    }
    best, _ = best_of(runs, args.repeats, dev)  # one warm-up epoch each, then interleaved rounds
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    print(f"{n} training images on {dev} ({name}); seconds per 60,000 images")
    rows = []
    for label in runs:
        sec = best[label] * scale
        ref = REFERENCES[label]
        ratio = f"{sec / ref:.2f}x the target" if ref else "-"
        print(f"  {label:<66} {sec:8.2f} s   target {ref if ref else '-':>4}   {ratio}")
        rows.append({"run": label, "seconds_per_60k": round(sec, 3), "target_seconds": ref,
                     "ratio_to_target": round(sec / ref, 3) if ref else None})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": str(dev), "device_name": name, "n_train": n, "repeats": args.repeats,
                       "torch": torch.__version__,
                       "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
