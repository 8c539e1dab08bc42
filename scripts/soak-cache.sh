#!/usr/bin/env bash
# soak-cache.sh [ITERATIONS] — kill -9 clr-cache at random moments, many
# times, and check after every kill that the served tree is never mixed:
# every served name resolves to a complete version whose SHA-512 is one the
# publisher signed (old or new), and the next run finishes the job.
# The test suite runs 50 kills in-process (internal/cache kill_test.go);
# this is the longer soak on the real binaries. Default 200 iterations.
#   BIN     binaries (default bin; run `make build` first)
#   SOAK_MIB size of the template (default 32)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
N=${1:-200}
MIB=${SOAK_MIB:-32}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
scripts/mkpki.sh "$dir/pki"
export CLR_RDBMS=$dir/clr.db CLR_DIR_CERT=$dir/pki/ca CLR_CACHE_DIR_CACHE=$dir/cache
mkdir -p "$dir/lib"
head -c $((MIB << 20)) /dev/urandom >"$dir/lib/disk.img"
publish() {
	"$BIN/clr-publish" publish -q --library "$dir/lib" --base-uri "file://$dir/lib/" \
		--cert "$dir/pki/signer.pem" --key "$dir/pki/signer.key" -o "$dir/pub" >/dev/null
	grep -o '"sl:checksum:sha512": "[0-9a-f]*"' "$dir/pub/imagelist.json" | cut -d'"' -f4 >>"$dir/signed"
}
publish
"$BIN/clr-subscribe" -q -s "file://$dir/pub/imagelist.smime" --auto-endorse --imagelist-newimage-subscribe
check() {
	local f sum
	for f in "$dir"/cache/*; do
		[ -L "$f" ] || continue
		sum=$(sha512sum <"$f" | cut -d' ' -f1)
		grep -qx "$sum" "$dir/signed" || { echo "iteration $1: $f serves unsigned bytes ($sum)" >&2; exit 1; }
		case "$(readlink "$f")" in *partial* | *stage*) echo "iteration $1: $f points into staging" >&2; exit 1 ;; esac
	done
}
kills=0
for i in $(seq 1 "$N"); do
	if [ $((i % 2)) -eq 1 ]; then
		# a new version every few kills: 1 MiB somewhere changed
		dd if=/dev/urandom of="$dir/lib/disk.img" bs=1M count=1 seek=$((RANDOM % MIB)) conv=notrunc status=none
		sleep 1 # a new mtime second for the hash cache
		publish
		"$BIN/clr-subscribe" -q -U || true
	fi
	"$BIN/clr-cache" -q --mirror "file://$dir/lib/=file://$dir/lib/" --bwlimit 16m --grace 0s >/dev/null 2>&1 &
	pid=$!
	sleep "0.$((RANDOM % 90 + 5))"
	if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
	wait "$pid" 2>/dev/null || true
	check "$i"
done
"$BIN/clr-cache" -q --mirror "file://$dir/lib/=file://$dir/lib/"
check final
want=$(tail -n 1 "$dir/signed")
got=$(sha512sum <"$dir"/cache/*-*-*-*-* | cut -d' ' -f1)
[ "$got" = "$want" ] || { echo "final run did not publish the newest version" >&2; exit 1; }
echo "soak-cache: $N iterations, $kills kill -9 during a run, served tree never mixed, final version current"
