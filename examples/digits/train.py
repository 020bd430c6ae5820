"""Classify scikit-learn's handwritten digits, with every run recorded by tether.

python examples/digits/train.py                    # defaults from config.yaml
python examples/digits/train.py model.C=0.1        # override a key
python examples/digits/train.py model.kind=svm --print-config
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import tether

log = logging.getLogger("digits")


@tether.experiment(config="config.yaml")
def main(cfg, run):
    """Train a digits classifier and record its accuracy."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=cfg.data.test_size, random_state=cfg.seed, stratify=y
    )
    if cfg.model.kind == "logistic":
        clf = LogisticRegression(C=cfg.model.C, max_iter=cfg.model.max_iter)
    elif cfg.model.kind == "svm":
        clf = SVC(C=cfg.model.C)
    else:
        raise ValueError(f"model.kind must be logistic or svm, not {cfg.model.kind!r}")
    model = make_pipeline(StandardScaler(), clf)
    log.info("training %s (C=%s) on %d images", cfg.model.kind, cfg.model.C, len(x_train))
    model.fit(x_train, y_train)
    train_acc = float(model.score(x_train, y_train))
    test_acc = float(model.score(x_test, y_test))
    run.log_metrics({"train/acc": train_acc, "test/acc": test_acc}, step=0)
    print(f"test accuracy: {test_acc:.4f}")
    Path(cfg.save_dir, "result.json").write_text(json.dumps({"test_acc": test_acc}))
    return test_acc


if __name__ == "__main__":
    main()
