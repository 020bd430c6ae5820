#!/usr/bin/env bash
# Stop the one-node Slurm cluster that scripts/slurm-up.sh started (slurmd, slurmctld, munged).
# Jobs still queued or running are cancelled first. Safe to run when nothing is running.
set -uo pipefail

say() { echo "slurm-down: $*"; }

if command -v scancel >/dev/null 2>&1 && timeout 5 squeue -h >/dev/null 2>&1; then
    scancel --user="$(id -un)" >/dev/null 2>&1 || true
fi

stop() {
    local name=$1 pidfile=$2 pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile" 2>/dev/null) || return 0
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        say "stopping $name ($pid)"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
}

stop slurmd /run/slurmd.pid
stop slurmctld /run/slurmctld.pid
if [ "${1:-}" = "--all" ]; then
    stop munged /run/munge/munged.pid
fi
say "stopped${1:+ ($1)}"
