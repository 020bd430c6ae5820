"""A stand-in for a training script: the loss falls with each epoch towards a floor that
depends on the flags (best near lr=3e-3, width=64, act=tanh), logged with tether.History so a
search can prune a trial that does worse than the others at the same epoch.

Its epochs take a little time, more for some learning rates than others, so that the trials of
a search end at different times, as real ones do.
"""

from __future__ import annotations

import argparse
import math
import time

import tether


def floor(lr: float, width: int, act: str) -> float:
    return (math.log10(lr) + 2.5) ** 2 + ((width - 64) / 48) ** 2 + (0.0 if act == "tanh" else 0.4)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--act", required=True)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    history = tether.History()
    best = floor(args.lr, args.width, args.act)
    pause = 0.05 + 0.05 * (int(args.lr * 1e7) % 4)  # 0.05 to 0.2 s an epoch
    for epoch in range(args.epochs):
        time.sleep(pause)
        history.update({"loss": best + 2.0 / (epoch + 1)}, step=epoch)
    print(f"final loss {best + 2.0 / args.epochs:.4f}")


if __name__ == "__main__":
    main()
