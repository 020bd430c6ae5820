#!/usr/bin/env bash
# The demo behind `make demo`: a two-stage pipeline (prepare -> train) on scikit-learn's digits,
# trained three times with different overrides, then the runs list, one run, its lineage, a
# terminal chart of its per-epoch metrics and a report.md with PNG charts.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
BIN="${BIN:-.venv/bin}"
export TETHER_RUNS="${DEMO_RUNS:-$here/../../.tether/demo-runs}"
rm -rf "$TETHER_RUNS"   # the demo's own runs root: start fresh so the listing is predictable

echo "== prepare: split the digits into train and test sets"
"$BIN/python" "$here/prepare.py"
echo "== train 1/3: defaults (logistic regression by SGD, C=1.0, lr=0.01, 15 epochs)"
"$BIN/python" "$here/train.py"
echo "== train 2/3: a smaller learning rate"
"$BIN/python" "$here/train.py" model.lr=0.003
echo "== train 3/3: a linear SVM"
"$BIN/python" "$here/train.py" model.kind=svm model.C=5
echo
echo "== tether runs"
"$BIN/tether" runs
echo
echo "== tether show 1"
"$BIN/tether" show 1
echo
echo "== tether lineage 1"
"$BIN/tether" lineage 1
echo
echo "== tether plot 1:3 --key eval/acc   (the three trainings compared)"
"$BIN/tether" plot 1:3 --key eval/acc --height 14
echo
echo "== tether plot 1   (the newest run's curves, one chart per key group)"
"$BIN/tether" plot 1
echo
echo "== tether report 1"
"$BIN/tether" report 1
echo
echo "The runs are in $TETHER_RUNS; list them again with:"
echo "  TETHER_RUNS=$TETHER_RUNS $BIN/tether runs"
