"""Stage 1 of the digits pipeline: split the data set and save it in the run folder.

python examples/digits/prepare.py test_size=0.3
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import tether


@tether.experiment(config="prepare.yaml")
def main(cfg, run):
    """Split the digits into train/test sets saved as split.npz."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=cfg.test_size, random_state=cfg.seed, stratify=y
    )
    out = Path(cfg.save_dir) / "split.npz"
    np.savez_compressed(out, x_train=x_train, x_test=x_test, y_train=y_train, y_test=y_test)
    run.log_metrics({"train_size": len(x_train), "test_size": len(x_test)})
    print(f"wrote {out.name}: {len(x_train)} train / {len(x_test)} test images")


if __name__ == "__main__":
    main()
