"""Stage 2 of the digits pipeline: train a classifier on the prepared split.

python examples/digits/train.py                    # defaults from config.yaml
python examples/digits/train.py model.C=0.1        # override a key
python examples/digits/train.py model.kind=svm --print-config
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

import tether

log = logging.getLogger("digits")


@tether.experiment(config="config.yaml", data=["data.split"])
def main(cfg, run):
    """Train a digits classifier on the output of the prepare stage."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    split = np.load(cfg.data.split)
    if cfg.model.kind == "logistic":
        clf = LogisticRegression(C=cfg.model.C, max_iter=cfg.model.max_iter)
    elif cfg.model.kind == "svm":
        clf = SVC(C=cfg.model.C)
    else:
        raise ValueError(f"model.kind must be logistic or svm, not {cfg.model.kind!r}")
    model = make_pipeline(StandardScaler(), clf)
    log.info("training %s (C=%s) on %d images", cfg.model.kind, cfg.model.C, len(split["y_train"]))
    model.fit(split["x_train"], split["y_train"])
    train_acc = float(model.score(split["x_train"], split["y_train"]))
    test_acc = float(model.score(split["x_test"], split["y_test"]))
    run.log_metrics({"train/acc": train_acc, "test/acc": test_acc}, step=0)
    print(f"test accuracy: {test_acc:.4f}")
    Path(cfg.save_dir, "result.json").write_text(json.dumps({"test_acc": test_acc}))
    return test_acc


if __name__ == "__main__":
    main()
