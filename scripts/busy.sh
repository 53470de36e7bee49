#!/usr/bin/env bash
# busy.sh runs a command while a CPU burner keeps every core busy, the way a
# shared or overloaded machine would: Debian's stress-ng --cpu N (N = the
# number of cores unless BUSY_CPUS says otherwise), installed with apt-get
# when it is missing (as root). The burner stops when the command ends; the
# script exits with the command's status.
#
#   scripts/busy.sh make test     (make test-busy)
set -euo pipefail

if ! command -v stress-ng >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "busy.sh: stress-ng not found; installing Debian's stress-ng package" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq stress-ng >&2 ||
      { echo "busy.sh: apt-get install stress-ng failed" >&2; exit 1; }
  else
    echo "busy.sh: stress-ng is needed: install Debian's stress-ng package (or run as root to let this script do it)" >&2
    exit 1
  fi
fi

cpus=${BUSY_CPUS:-$(nproc)}
stress-ng --cpu "$cpus" --quiet &
burner=$!
trap 'kill "$burner" 2>/dev/null; wait "$burner" 2>/dev/null || true' EXIT
echo "busy.sh: stress-ng --cpu $cpus running (pid $burner) beside: $*" >&2
"$@"
