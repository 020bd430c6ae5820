#!/usr/bin/env bash
# System packages the test suite uses. Installed through apt when run as root; otherwise the
# tests that need a missing one skip with a reason (outside CI) or fail (in CI).
set -euo pipefail
need=()
command -v git >/dev/null 2>&1 || need+=(git)
# The Slurm tests' one-node cluster (scripts/slurm-up.sh configures and starts it).
if [ "$(id -u)" = "0" ]; then
  command -v slurmctld >/dev/null 2>&1 || need+=(slurm-wlm)
  command -v munged >/dev/null 2>&1 || need+=(munge)
fi
# Open MPI: `tether launch` runs real 2-rank jobs through mpiexec (tests/integration/
# test_launch_mpi.py); libopenmpi-dev brings the headers and mpicc that mpi4py builds need.
command -v mpiexec >/dev/null 2>&1 || need+=(openmpi-bin)
command -v mpicc >/dev/null 2>&1 || need+=(libopenmpi-dev)
# rsync, tar, zstd: `tether env pack --compress zstd` and `tether env yeet` copy with real rsync
# between local folders standing for nodes (tests/integration/test_envpack.py).
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
command -v tar >/dev/null 2>&1 || need+=(tar)
# sshfs and OpenSSH's sftp-server: two FUSE mounts of one folder stand in for two hosts on a
# shared filesystem (tests/integration/test_sshfs.py; `sshfs -o passive` needs no sshd).
command -v sshfs >/dev/null 2>&1 || need+=(sshfs)
if ! [ -x /usr/lib/openssh/sftp-server ] && ! [ -x /usr/libexec/openssh/sftp-server ]; then
  need+=(openssh-sftp-server)
fi
# rclone: tether push/pull/sync, tested against `rclone serve webdav|sftp` on 127.0.0.1.
command -v rclone >/dev/null 2>&1 || need+=(rclone)
# The completion tests drive the real shells (tests/cli/test_completion_shells.py).
command -v zsh >/dev/null 2>&1 || need+=(zsh)
command -v fish >/dev/null 2>&1 || need+=(fish)
# Debian's Chromium for the browser tests (Playwright drives it through executable_path:
# no browser download): tests/web, and the SVG charts of tests/cli/test_sweep_report.py.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "missing system packages (install them as root): ${need[*]}" >&2
  fi
fi
# nushell, the fourth completion shell, comes from the npm registry (Debian has no package).
if ! command -v nu >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v npm >/dev/null 2>&1; then
    echo "installing nushell from the npm registry"
    npm install -g --silent nushell >/dev/null 2>&1 || echo "nushell: npm install failed" >&2
  else
    echo "missing nu (install it as root: npm install -g nushell)" >&2
  fi
fi
exit 0
