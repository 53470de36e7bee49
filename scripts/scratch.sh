#!/usr/bin/env bash
# scratch.sh uses the contrib modules the way a user outside this repository
# does: a new module in a temporary directory requires each contrib module by
# its release version (VERSION, default the next release, v0.1.0), builds a
# program importing it, and runs the contrib module's Examples from there.
# Go ignores the replace directives of dependencies, so the contrib go.mod
# files must require the root module by a version a user can fetch; until the
# first tag, the scratch module (and only it) replaces both modules at that
# version with this checkout, as a user trying an untagged release would: a
# contrib go.mod asking for any other version of the root module (a
# pseudo-version, say) fails here, because Go then tries to download it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=${VERSION:-v0.1.0}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mod=github.com/stickyroute/stickyroute
for name in grpc kratos; do
  rm -rf "${dir:?}"/*
  cat >"$dir/go.mod" <<MOD
module example.com/scratch

go 1.26.0

require $mod/contrib/$name $version

replace (
	$mod $version => $root
	$mod/contrib/$name $version => $root/contrib/$name
)
MOD
  cat >"$dir/main.go" <<GO
// Command scratch is a user's program: it imports the contrib module and
// checks that a bad configuration is refused with an error.
package main

import (
	"fmt"
	"os"

	sticky "$mod/contrib/$name"
)

func main() {
	if _, err := sticky.New(sticky.Config{}); err == nil {
		fmt.Println("an empty Config was accepted")
		os.Exit(1)
	} else {
		fmt.Println("empty Config refused:", err)
	}
}
GO
  echo "scratch: a module outside the repository requires $mod/contrib/$name $version"
  (
    cd "$dir"
    go get -t "$mod/contrib/$name@$version" >/dev/null
    go mod tidy
    go build -o scratch .
    ./scratch
    go test -count=1 -run '^Example' "$mod/contrib/$name"
  )
done
