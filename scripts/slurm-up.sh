#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for tether's Slurm tests and benchmarks.
#
#   sudo bash scripts/slurm-up.sh      # install (Debian slurm-wlm + munge), configure, start
#   bash scripts/slurm-down.sh         # stop the daemons again
#
# Idempotent: when `sinfo` already answers with a usable node it does nothing. As root it
# installs the packages it lacks with apt; it writes /etc/slurm/slurm.conf for this host (its
# short name and CPU count; a slurm.conf that tether did not write is kept as
# slurm.conf.tether-backup), starts munged (as the munge user, with a generated key), slurmctld
# and slurmd, and waits (bounded, SLURM_UP_TIMEOUT seconds, default 60) until the node is idle.
# Settings known to work on these machines: SlurmUser=root, proctrack/linuxproc, task/none,
# select/cons_tres with CR_Core. No accounting daemon: `squeue` and `scontrol show job` (which
# keeps finished jobs for MinJobAge seconds) tell job states; tether falls back to them when
# `sacct` has no accounting storage.
set -euo pipefail

TIMEOUT=${SLURM_UP_TIMEOUT:-60}
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
STATE=/var/spool/tether-slurm
LOGS=/var/log/tether-slurm
MARK="# written by tether scripts/slurm-up.sh"

say() { echo "slurm-up: $*"; }
die() { echo "slurm-up: $*" >&2; exit 1; }

node_ready() {
    # A node that accepts jobs: idle, mixed or allocated (busy with someone's jobs is fine too).
    local states
    states=$(timeout 10 sinfo -h -N -o '%T' 2>/dev/null) || return 1
    grep -Eq '^(idle|mixed|allocated|completing)' <<<"$states"
}

if command -v sinfo >/dev/null 2>&1 && node_ready; then
    say "already running ($(sinfo -h -N -o '%N %T %c CPUs' | head -n 1))"
    exit 0
fi

if [ "$(id -u)" != "0" ]; then
    die "not root: cannot install or start Slurm (run it with sudo, or use --executor local)"
fi

need=()
command -v munged >/dev/null 2>&1 || need+=(munge)
command -v slurmctld >/dev/null 2>&1 || need+=(slurm-wlm)
if [ ${#need[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "missing ${need[*]} and no apt-get to install them"
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

HOST=$(hostname -s)
CPUS=$(nproc --all)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)

# -- munge ------------------------------------------------------------------------------------
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
    say "generating a munge key"
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --keyfile=/etc/munge/munge.key --force >/dev/null
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    pkill_pidfile() { [ -f "$1" ] && kill "$(cat "$1")" 2>/dev/null || true; }
    pkill_pidfile /run/munge/munged.pid
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 1 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
    munge -n | unmunge >/dev/null || die "munged does not answer"
fi

# -- slurm.conf -------------------------------------------------------------------------------
mkdir -p "$CONF_DIR" "$STATE/ctld" "$STATE/d" "$LOGS"
if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    say "keeping the existing $CONF as $CONF.tether-backup"
    cp -p "$CONF" "$CONF.tether-backup"
fi
cat >"$CONF.new" <<EOF
$MARK
ClusterName=tether
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SlurmctldParameters=preempt_send_user_signal
ReturnToService=2
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
# Quick turnaround for tests: short kill wait, finished jobs stay visible to scontrol 10 min.
KillWait=5
MinJobAge=600
InactiveLimit=0
SlurmdTimeout=60
MaxArraySize=10001
MaxJobCount=20000
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
if [ -f "$CONF" ] && cmp -s "$CONF" "$CONF.new"; then
    rm -f "$CONF.new"
else
    mv "$CONF.new" "$CONF"
fi
chmod 0644 "$CONF"

# -- daemons ----------------------------------------------------------------------------------
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if ! running /run/slurmctld.pid; then
    say "starting slurmctld"
    /usr/sbin/slurmctld -f "$CONF"
fi
if ! running /run/slurmd.pid; then
    say "starting slurmd ($HOST, $CPUS CPUs)"
    /usr/sbin/slurmd -f "$CONF"
fi

deadline=$((SECONDS + TIMEOUT))
while ! node_ready; do
    if [ $SECONDS -ge $deadline ]; then
        sinfo -N 2>&1 | sed 's/^/  /' >&2 || true
        tail -n 20 "$LOGS/slurmctld.log" "$LOGS/slurmd.log" 2>/dev/null | sed 's/^/  /' >&2 || true
        die "the node did not become idle within ${TIMEOUT}s (logs in $LOGS)"
    fi
    # A node left DOWN/DRAIN by an earlier run comes back on its own with ReturnToService=2,
    # except after an unexpected reboot: resume it.
    if timeout 5 sinfo -h -N -o '%T' 2>/dev/null | grep -Eq '^(down|drain)'; then
        scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
    fi
    sleep 0.5
done
say "ready: $(sinfo -h -N -o '%N %T %c CPUs')"
