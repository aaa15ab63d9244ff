"""Seconds per training epoch on the full Fashion-MNIST training set, against the brief's GPU targets.

The design brief names three reference times on one H100: a clean epoch of the C3LT classifier at
batch 512 takes 0.3 s, a PGD-10 adversarial epoch 2.8 s, a DCGAN epoch (width 64) 2.2 s at batch
256. This script times the package's own training loops (``training.train_classifier``,
``robust_training.train_robust`` with PGD-AT, ``generative.train_dcgan``) on all 60,000 images held
as device tensors, each after a one-epoch warm-up, and prints each time beside its reference and
the ratio (the best of ``--repeats`` epochs). The clean and PGD epochs are also timed at the full
profile's batch size (128). With ``--n`` below 60,000 the per-call set-up (seeding, optimiser,
input checks) is scaled up with the epoch, so small-``n`` numbers overstate the time.

Run on the device machine by ``tools/device/run.sh epochs``; on a CPU pass ``--n`` to keep it short::

    python tools/device/epoch_times.py --device cpu --n 2048 --json /tmp/epochs.json

Not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch

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


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(fn, dev: torch.device, repeats: int) -> float:
    """The best of ``repeats`` timed calls of ``fn`` (each a full epoch), the device synchronised."""
    best = float("inf")
    for _ in range(repeats):
        _sync(dev)
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        best = min(best, time.perf_counter() - t0)
    return best


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
    warm = (x[:2048], y[:2048])

    def clean(bs):
        torch.manual_seed(0)
        m = build_model("c3lt_cnn")
        train_classifier(m, *warm, epochs=1, batch_size=bs, device=dev, progress=False)
        return _timed(lambda: train_classifier(m, x, y, epochs=1, batch_size=bs, device=dev, progress=False),
                      dev, args.repeats)

    def pgd(bs):
        torch.manual_seed(0)
        m = build_model("trades_cnn")
        params = {"steps": 10, "alpha": 0.025, "track_n": 0}
        train_robust(m, *warm, method="pgd_at", epochs=1, params=params, batch_size=bs, device=dev, progress=False)
        return _timed(lambda: train_robust(m, x, y, method="pgd_at", epochs=1, params=params, batch_size=bs,
                                           device=dev, progress=False), dev, args.repeats)

    def dcgan():
        torch.manual_seed(0)
        g, d = DCGANGenerator(width=64), DCGANDiscriminator(width=64)
        train_dcgan(g, d, warm[0], epochs=1, batch_size=256, device=dev, progress=False)
        return _timed(lambda: train_dcgan(g, d, x, epochs=1, batch_size=256, device=dev, progress=False),
                      dev, args.repeats)

    runs = {
        "clean C3LT CNN, batch 512": lambda: clean(512),
        "clean C3LT CNN, batch 128 (full profile)": lambda: clean(128),
        "PGD-10 adversarial (PGD-AT, trades_cnn), batch 512": lambda: pgd(512),
        "PGD-10 adversarial (PGD-AT, trades_cnn), batch 128 (full profile)": lambda: pgd(128),
        "DCGAN width 64, batch 256": dcgan,
    }
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    print(f"{n} training images on {dev} ({name}); seconds per 60,000 images")
    rows = []
    for label, fn in runs.items():
        sec = fn() * scale
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
