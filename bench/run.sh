#!/usr/bin/env bash
# Run every bench/bench_*.py in a separate environment, .venv-bench, that holds tether and its
# peers (dvc, hydra-core, mlflow, torch) only, so the numbers are not skewed by dev tools or by the
# main venv.
#
#   make bench                      # or: bash bench/run.sh
#   bash bench/run.sh startup       # only the benchmarks whose name contains "startup"
#
# Environment: PYTHON (interpreter that creates the venv, default python3),
# BENCH_VENV (default .venv-bench), BENCH_REPEAT (repetitions per measurement, default per script).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
VENV=${BENCH_VENV:-$ROOT/.venv-bench}
STAMP=$VENV/.bench-installed
# torch for bench_launch.py's torchrun; pinned (an unpinned torch pulls a multi-GB CUDA build).
BENCH_PEERS=(dvc hydra-core mlflow "torch==2.13.0" joblib submitit)

if [[ ! -x $VENV/bin/python ]]; then
    echo "bench: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

# Reinstall only when pyproject.toml (or this script's peer list) changed since the last install.
if [[ ! -f $STAMP || pyproject.toml -nt $STAMP || bench/run.sh -nt $STAMP ]]; then
    echo "bench: installing tether and peers (${BENCH_PEERS[*]}) into $VENV"
    log=$VENV/pip-install.log
    if ! { "$VENV/bin/python" -m pip install -q --upgrade pip &&
        "$VENV/bin/python" -m pip install -q -e . "${BENCH_PEERS[@]}"; } >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "bench: installing into $VENV failed (full log: $log)" >&2
        exit 1
    fi
    touch "$STAMP"
fi

shopt -s nullglob
scripts=(bench/bench_*.py)
if [[ $# -gt 0 ]]; then
    selected=()
    for script in "${scripts[@]}"; do
        for pattern in "$@"; do
            if [[ $script == *"$pattern"* ]]; then
                selected+=("$script")
                break
            fi
        done
    done
    scripts=("${selected[@]}")
fi
if [[ ${#scripts[@]} -eq 0 ]]; then
    echo "bench: no bench/bench_*.py matched" >&2
    exit 1
fi

echo "bench: $(nproc) cores, $("$VENV/bin/python" -c 'import platform; print("Python", platform.python_version(), platform.platform())')"
started=$(date +%s)
failed=()
fallback=()
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for script in "${scripts[@]}"; do
    echo
    echo "== $script"
    # Each script exits 0 even when it misses its goal (it prints MISSED); a non-zero exit means
    # the benchmark itself broke.
    if PATH="$VENV/bin:$PATH" "$VENV/bin/python" "$script" 2>&1 | tee "$out"; then
        name=$(basename "$script" .py)
        name=${name#bench_}
        # A script that records its goals (benchlib.record) is in the summary table; for one
        # that does not yet, its own ratio lines are repeated below it.
        if ! "$VENV/bin/python" scripts/bench_docs.py --has-rows "$name" --since "$started"; then
            while IFS= read -r line; do
                fallback+=("$name: $line")
            done < <(grep -E '(^|[[:space:]])ratio[[:space:]]' "$out" || true)
        fi
    else
        failed+=("$script")
    fi
done

echo
echo "== summary: every goal measured in this run (bench/results/*.json)"
"$VENV/bin/python" scripts/bench_docs.py --summary --since "$started"
if [[ ${#fallback[@]} -gt 0 ]]; then
    echo "  ratio lines of scripts that record no goals:"
    for line in "${fallback[@]}"; do
        echo "  $line"
    done
fi
echo "(docs/benchmarks.md: python scripts/bench_docs.py regenerates its tables from these)"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "bench: BROKEN: ${failed[*]}" >&2
    exit 1
fi
echo "bench: done (${#scripts[@]} benchmarks)"
