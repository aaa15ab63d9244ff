"""The pilot that chose Part 6's psi grid from clean accuracy alone (before any ARA was computed).

Trains the chapter's strided CNN (ReLU) with eq. (4) + L2 adversarial training (eps = 0.05
r.m.s.e.) at psi = 0, 0.1, 1, 10, 100, 1000 and 10000 on the laptop profile's data (10,000
training images, 5 epochs) and prints each network's clean accuracy on 2,000 test images, its
last-epoch cross-entropy and penalty, and the mean absolute input gradient. The grid of
``robust_utils.lipschitz_training.PART6_PSI`` keeps the values from "no loss" to "a large loss"
of clean accuracy against psi = 0.

On the 2-core machine of 2026-12-02 it printed accuracies of 76.8, 76.9, 76.8, 77.2, 76.4, 73.9
and 66.3 % (about 30 s per network).

Usage::

    .venv/bin/python tools/psi_pilot.py
"""
from __future__ import annotations

import time

from robust_utils import config, data, lipschitz_training as lt, models, training


def main() -> None:
    x, y = data.load_fashion_mnist("train", n=10000, seed=0)
    xt, yt = data.load_fashion_mnist("test", n=2000, seed=0)
    for psi in (0.0, 0.1, 1, 10, 100, 1000, 10000):
        config.seed_everything(0)
        m = models.build_model("strided_cnn", activation="relu")
        t = time.time()
        h = lt.train_lipschitz(m, x, y, epochs=5, params=dict(psi=psi, adv="l2", eps=0.05), progress=False)
        acc = training.evaluate_accuracy(m, xt, yt)
        st = lt.input_gradient_stats(m, xt[:500], yt[:500])
        print(f"psi {psi:>7g}: accuracy {acc:.4f}, ce {h['ce'][-1]:.3f}, penalty {h['penalty'][-1]:.4f}, "
              f"mean |dy/dx| {st['mean_abs']:.4f}, {time.time() - t:.0f} s", flush=True)


if __name__ == "__main__":
    main()
