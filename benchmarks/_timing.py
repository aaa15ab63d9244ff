"""What the benchmark scripts share: best-of timing in interleaved rounds, and their test images.

The scripts run as ``python benchmarks/bench_*.py``, so this module is imported as ``_timing``.
"""
from __future__ import annotations

import time
from typing import Callable

import torch


def sync(device) -> None:
    """Wait for queued CUDA work, so that a timer stops when the work is done."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def best_of(fns: dict, repeats: int, device="cpu") -> tuple[dict, dict]:
    """Best time of each callable over ``repeats`` rounds, interleaved, after one warm-up call.

    Entries that are ``None`` (a library that is not installed) are skipped. Interleaving (every
    method once per round) spreads any change in machine load over all methods instead of
    penalising whichever happened to run during it. Returns ``(best seconds, warm-up outputs)``.
    """
    fns: dict[str, Callable] = {k: f for k, f in fns.items() if f is not None}
    outs = {}
    for k, f in fns.items():               # warm-up (and the outputs to compare)
        outs[k] = f()
        sync(device)
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            sync(device)
            best[k] = min(best[k], time.perf_counter() - t0)
    return best, outs


def load_test_images(n: int, split: str = "test"):
    """``n`` Fashion-MNIST images and labels of ``split``, or seeded uniform random ones if they
    do not load (the timings do not depend on the pixels): ``(x, y, description)``."""
    try:
        from robust_utils.data import load_fashion_mnist

        x, y = load_fashion_mnist(split, n=n)
        return x, y, f"Fashion-MNIST {split}"
    except Exception as e:
        print(f"(Fashion-MNIST unavailable: {e}; using uniform random images)")
        g = torch.Generator().manual_seed(0)
        return (torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g),
                "uniform random images")
