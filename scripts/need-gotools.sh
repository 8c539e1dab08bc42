#!/usr/bin/env bash
# need-gotools.sh — install the Go-built test tools into .tools/bin (pinned
# versions, from the Go module proxy) unless they are there already:
#   govc and vcsim v0.46.0: a vSphere-side client for the content library
#     test (the newest `go install`able govmomi; research/vcsp.md)
#   pebble: a local ACME server for the automatic-certificate test
# The Makefile puts .tools/bin first on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/.tools/bin
mkdir -p "$bin"
tools=(
	"govc github.com/vmware/govmomi/govc@v0.46.0"
	"vcsim github.com/vmware/govmomi/vcsim@v0.46.0"
	"pebble github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.1"
)
for t in "${tools[@]}"; do
	name=${t%% *}
	pkg=${t#* }
	stamp=$bin/.$name.version
	if [ -x "$bin/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$pkg" ]; then
		continue
	fi
	echo "installing $pkg into .tools/bin" >&2
	(cd "$bin" && GOBIN=$bin GOFLAGS=-mod=mod go install "$pkg")
	echo "$pkg" >"$stamp"
done
