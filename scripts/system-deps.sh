#!/usr/bin/env bash
# System packages the test suite uses. Installed through apt when run as root; otherwise the
# tests that need a missing one skip with a reason (outside CI) or fail (in CI).
set -euo pipefail
need=()
command -v git >/dev/null 2>&1 || need+=(git)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "missing system packages (install them as root): ${need[*]}" >&2
fi
