#!/usr/bin/env bash
# fuzz.sh runs every fuzz target of the module for FUZZTIME each (default 5s).
# Go fuzzes one target per invocation, so the targets are listed first.
# A failing input is kept by go test under the package's testdata/fuzz/.
#
# Go 1.26's fuzzing coordinator can fail a target that found nothing with a
# bare "context deadline exceeded" as -fuzztime runs out (go.dev/issue/75804,
# fixed in Go 1.27): such a run, and only such a run (no failing input
# written), is tried again, up to three times in all.
set -euo pipefail
cd "$(dirname "$0")/.."
time=${1:-${FUZZTIME:-5s}}
found=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
while read -r pkg; do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    found=$((found + 1))
    for try in 1 2 3; do
      echo "fuzz: $pkg $target for $time"
      if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$time" "$pkg" 2>&1 | tee "$log"; then
        break
      fi
      if grep -q 'Failing input written to' "$log" || ! grep -q 'context deadline exceeded' "$log" || [ "$try" = 3 ]; then
        exit 1
      fi
      echo "fuzz: $target hit the Go fuzzing coordinator's deadline race (no input written); again"
    done
  done
done < <(go list ./...)
echo "fuzz: $found targets passed"
