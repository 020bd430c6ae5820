"""Stage 2: fit a logistic regression on split.npz (linked in by `tether run`), a few epochs.

Each epoch continues from the last one (warm start) for max_iter/epochs passes over the data
and prints its step and scores, which tether turns into metrics:
`step: 2  loss: 0.0631  accuracy: 0.9644`. The solver is SAG, whose iterations are passes over
the data: the loss goes down epoch by epoch. (lbfgs, the default, converges on these 1347
samples within the first epoch's iterations, so every later epoch printed the same loss.)
"""

from __future__ import annotations

import argparse
import pickle
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--C", type=float, default=1.0)
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    split = np.load("split.npz")
    x_train, y_train = split["x_train"], split["y_train"]
    x_val, y_val = split["x_test"], split["y_test"]
    per_epoch = max(1, args.max_iter // args.epochs)
    clf = LogisticRegression(
        C=args.C, max_iter=per_epoch, warm_start=True, solver="sag", random_state=0
    )
    model = make_pipeline(StandardScaler(), clf)
    warnings.simplefilter("ignore", ConvergenceWarning)
    for epoch in range(1, args.epochs + 1):
        model.fit(x_train, y_train)
        loss = log_loss(y_train, model.predict_proba(x_train))
        accuracy = model.score(x_val, y_val)
        print(
            f"epoch {epoch}/{args.epochs}  step: {epoch}  "
            f"loss: {loss:.4f}  accuracy: {accuracy:.4f}"
        )
    with open("model.pkl", "wb") as fh:
        pickle.dump(model, fh)


if __name__ == "__main__":
    main()
