"""Stage 1: split scikit-learn's digits into train and test sets, saved as split.npz.

Run by `tether run prepare` in a fresh run folder (the working directory).
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--test-size", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=args.test_size, random_state=args.seed, stratify=y
    )
    np.savez_compressed("split.npz", x_train=x_train, x_test=x_test, y_train=y_train, y_test=y_test)
    # `key: value` lines become the run's metrics.
    print(f"train_size: {len(x_train)}  test_size: {len(x_test)}")


if __name__ == "__main__":
    main()
