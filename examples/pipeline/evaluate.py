"""Stage 3: score the trained model (model.pkl) on the test set of the split it was trained on."""

from __future__ import annotations

import pickle

import numpy as np
from sklearn.metrics import accuracy_score, f1_score


def main() -> None:
    split = np.load("split.npz")
    with open("model.pkl", "rb") as fh:
        model = pickle.load(fh)
    predicted = model.predict(split["x_test"])
    accuracy = accuracy_score(split["y_test"], predicted)
    f1 = f1_score(split["y_test"], predicted, average="macro")
    print(f"test_accuracy: {accuracy:.4f}")
    print(f"test_f1: {f1:.4f}")


if __name__ == "__main__":
    main()
