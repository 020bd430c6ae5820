#!/usr/bin/env bash
# The demo behind `make demo`: a two-stage pipeline (prepare -> train) on scikit-learn's digits,
# trained three times with different overrides, then the runs list, one run and its lineage.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
BIN="${BIN:-.venv/bin}"
export TETHER_RUNS="${DEMO_RUNS:-$here/../../.tether/demo-runs}"
rm -rf "$TETHER_RUNS"   # the demo's own runs root: start fresh so the listing is predictable

echo "== prepare: split the digits into train and test sets"
"$BIN/python" "$here/prepare.py"
echo "== train 1/3: defaults (logistic regression, C=1.0)"
"$BIN/python" "$here/train.py"
echo "== train 2/3: a smaller C"
"$BIN/python" "$here/train.py" model.C=0.05
echo "== train 3/3: an SVM"
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
echo "The runs are in $TETHER_RUNS; list them again with:"
echo "  TETHER_RUNS=$TETHER_RUNS $BIN/tether runs"
