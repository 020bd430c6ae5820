#!/usr/bin/env bash
# The demo behind `make demo`: three real runs of the digits example, then the runs list.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
BIN="${BIN:-.venv/bin}"
export TETHER_RUNS="${DEMO_RUNS:-$here/../../.tether/demo-runs}"
rm -rf "$TETHER_RUNS"   # the demo's own runs root: start fresh so the listing shows three runs

echo "== 1/3: defaults (logistic regression, C=1.0)"
"$BIN/python" "$here/train.py"
echo "== 2/3: a smaller C"
"$BIN/python" "$here/train.py" model.C=0.05
echo "== 3/3: an SVM"
"$BIN/python" "$here/train.py" model.kind=svm model.C=5
echo
echo "== tether runs"
"$BIN/tether" runs
echo
echo "== tether show 1"
"$BIN/tether" show 1
echo
echo "The runs are in $TETHER_RUNS; list them again with:"
echo "  TETHER_RUNS=$TETHER_RUNS $BIN/tether runs"
