#!/usr/bin/env bash
# fuzz.sh runs every fuzz target of the module for FUZZTIME each (default 5s).
# Go fuzzes one target per invocation, so the targets are listed first.
# A failing input is kept by go test under the package's testdata/fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
time=${1:-${FUZZTIME:-5s}}
found=0
while read -r pkg; do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    found=$((found + 1))
    echo "fuzz: $pkg $target for $time"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$time" "$pkg"
  done
done < <(go list ./...)
echo "fuzz: $found targets passed"
