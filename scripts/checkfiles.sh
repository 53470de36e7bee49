#!/usr/bin/env bash
# checkfiles.sh fails when the repository tracks a build output: a file over
# 1 MiB (MAX_BYTES), an executable that is not a script (mode 755 without a
# "#!" line), or a compiled program whatever its mode (an ELF, Mach-O, PE or
# wasm header). make lint runs it; internal/repocheck tests it.
#
#   scripts/checkfiles.sh [DIR]    (DIR: a git work tree, default this one)
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
max=${MAX_BYTES:-1048576}
bad=0
while IFS= read -r -d '' entry; do
  mode=${entry%% *}
  path=${entry#*$'\t'}
  [ -f "$path" ] || continue # deleted in the work tree, or a submodule
  size=$(stat -c %s -- "$path")
  if [ "$size" -gt "$max" ]; then
    echo "checkfiles: $path is $size bytes, over $max: build outputs and data this big stay out of git" >&2
    bad=1
  fi
  magic=$(head -c 4 -- "$path" | od -An -tx1 | tr -d ' \n')
  case $magic in
  7f454c46 | cffaedfe | cefaedfe | feedfacf | feedface | cafebabe | 0061736d | 4d5a*)
    echo "checkfiles: $path is a compiled program (header $magic): build outputs stay out of git" >&2
    bad=1
    continue
    ;;
  esac
  if [ "$mode" = 100755 ] && [ "$(head -c 2 -- "$path")" != '#!' ]; then
    echo "checkfiles: $path is executable but not a script (no #! line)" >&2
    bad=1
  fi
done < <(git ls-files -s -z)
exit "$bad"
