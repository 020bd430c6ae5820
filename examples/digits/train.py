"""Stage 2 of the digits pipeline: train a classifier on the prepared split, epoch by epoch.

python examples/digits/train.py                    # defaults from config.yaml
python examples/digits/train.py model.C=0.1        # override a key
python examples/digits/train.py model=svm --print-config       # a config group's option
python examples/digits/train.py -m model=logistic,svm model.C=0.5,1   # a batch of 4 runs

Each epoch logs train/loss, train/acc and eval/acc through `tether.History` (written to the run's
metrics.jsonl in the background), so `tether plot 1` charts the training curves and
`tether report 1` writes report.md with PNG charts.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

import tether

log = logging.getLogger("digits")

LOSSES = {"logistic": "log_loss", "svm": "hinge"}


@tether.experiment(config="config.yaml", data=["data.split"])
def main(cfg, run):
    """Train a digits classifier on the output of the prepare stage."""
    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import hinge_loss, log_loss
    from sklearn.preprocessing import StandardScaler

    if cfg.model.kind not in LOSSES:
        raise ValueError(f"model.kind must be logistic or svm, not {cfg.model.kind!r}")
    split = np.load(cfg.data.split)
    scaler = StandardScaler().fit(split["x_train"])
    x_train, y_train = scaler.transform(split["x_train"]), split["y_train"]
    x_test, y_test = scaler.transform(split["x_test"]), split["y_test"]
    classes = np.unique(y_train)
    clf = SGDClassifier(
        loss=LOSSES[cfg.model.kind],
        alpha=1.0 / (cfg.model.C * len(y_train)),
        learning_rate="constant",
        eta0=cfg.model.lr,
        random_state=cfg.seed,
    )
    rng = np.random.default_rng(cfg.seed)
    history = tether.History(run)  # rows go to the run's metrics.jsonl, flushed in the background
    log.info(
        "training %s (C=%s, lr=%s) for %d epochs on %d images",
        *(cfg.model.kind, cfg.model.C, cfg.model.lr, cfg.model.epochs, len(y_train)),
    )
    for epoch in range(cfg.model.epochs):
        order = rng.permutation(len(y_train))
        clf.partial_fit(x_train[order], y_train[order], classes=classes)
        if cfg.model.kind == "logistic":
            loss = log_loss(y_train, clf.predict_proba(x_train), labels=classes)
        else:
            loss = hinge_loss(y_train, clf.decision_function(x_train), labels=classes)
        history.update(
            {
                "train/loss": float(loss),
                "train/acc": float(clf.score(x_train, y_train)),
                "eval/acc": float(clf.score(x_test, y_test)),
            },
            step=epoch,
        )
    test_acc = float(clf.score(x_test, y_test))
    print(f"test accuracy: {test_acc:.4f}")
    Path(cfg.save_dir, "result.json").write_text(json.dumps({"test_acc": test_acc}))
    return test_acc


if __name__ == "__main__":
    main()
