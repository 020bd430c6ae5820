"""Rank the train runs summarised in train-runs.json (a runs-summary dependency)."""

from __future__ import annotations

import json


def main() -> None:
    with open("train-runs.json") as fh:
        runs = json.load(fh)
    scored = [
        (r["metrics"]["accuracy"]["last"], r["config"]["C"], r["config"]["max_iter"], r["id"])
        for r in runs
        if "accuracy" in (r.get("metrics") or {})
    ]
    scored.sort(reverse=True)
    # A table without `key: value` pairs, so that only the last line becomes metrics.
    print(f"{'run':<13}  {'C':>6}  {'max_iter':>8}  {'accuracy':>8}")
    for accuracy, c, max_iter, run_id in scored:
        print(f"{run_id[:13]}  {c:>6}  {max_iter:>8}  {accuracy:>8.4f}")
    if scored:
        print(f"runs: {len(scored)}  best_accuracy: {scored[0][0]:.4f}")


if __name__ == "__main__":
    main()
