#!/usr/bin/env bash
# The `tether run` demo: prepare -> train -> a 6-trial grid batch -> evaluate -> compare, on
# scikit-learn's digits, then the runs list and the lineage of the evaluation.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
BIN="${BIN:-.venv/bin}"
BIN="$(cd "$BIN" && pwd)"
top="$(cd "$here/../.." && pwd)"
export TETHER_RUNS="${DEMO_RUNS:-$top/.tether/demo-runs}-pipeline"
rm -rf "$TETHER_RUNS"   # the demo's own runs root: start fresh so the listing is predictable
cd "$here"              # tether finds tether.toml from the working folder

echo "== tether ops"
"$BIN/tether" ops
echo
echo "== tether run prepare"
"$BIN/tether" run prepare
echo
echo "== tether run train C=0.5 (links split.npz from the prepare run)"
"$BIN/tether" run train C=0.5
echo
echo "== tether run train C=[0.1,1,10] max_iter=[50,100] --n-jobs 2: a grid batch of 6 trials,"
echo "   two at a time on the local executor (joblib), with a progress bar"
"$BIN/tether" run train 'C=[0.1,1,10]' 'max_iter=[50,100]' -y --n-jobs 2
echo
echo "== tether run evaluate (the latest train run's model)"
"$BIN/tether" run evaluate
echo
echo "== tether run compare (a runs-summary of every completed train run)"
"$BIN/tether" run compare
echo
echo "== tether runs"
"$BIN/tether" runs
echo
echo "== tether lineage 2 (the evaluate run)"
"$BIN/tether" lineage 2
echo
echo "The runs are in $TETHER_RUNS; list them again with:"
echo "  TETHER_RUNS=$TETHER_RUNS $BIN/tether runs"
