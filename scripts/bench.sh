#!/usr/bin/env bash
# bench.sh — measure clr-publish against the reference tools in one run and
# write docs/benchmarks.md. The machine is small and noisy: every number is
# the best of RUNS runs, and goals are ratios against a baseline measured in
# the same run, never absolute times.
#   BENCH_DIR   scratch directory (default: a temp dir, removed afterwards)
#   BENCH_FILES number of files (default 8), BENCH_MIB size of each (default 256)
#   RUNS        repetitions (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
FILES=${BENCH_FILES:-8}
MIB=${BENCH_MIB:-256}
RUNS=${RUNS:-3}
dir=${BENCH_DIR:-$(mktemp -d)}
[ -n "${BENCH_DIR:-}" ] || trap 'rm -rf "$dir"' EXIT
lib=$dir/library
mkdir -p "$lib"
total=$((FILES * MIB * 1048576))

echo "creating $FILES x $MIB MiB in $lib" >&2
for i in $(seq 1 "$FILES"); do
	[ -f "$lib/disk$i.qcow2" ] && [ "$(stat -c %s "$lib/disk$i.qcow2")" -eq $((MIB * 1048576)) ] ||
		head -c $((MIB * 1048576)) /dev/urandom >"$lib/disk$i.qcow2"
done
touch -d '1 hour ago' "$lib"/*
cat "$lib"/* >/dev/null # page cache: measure hashing, not the disk

now() { date +%s%N; }
# best NAME CMD...: run CMD RUNS times, print the best wall time in seconds
best() {
	local b="" t0 t1 dt
	for _ in $(seq 1 "$RUNS"); do
		t0=$(now)
		"$@" >/dev/null
		t1=$(now)
		dt=$((t1 - t0))
		if [ -z "$b" ] || [ "$dt" -lt "$b" ]; then b=$dt; fi
	done
	awk -v ns="$b" 'BEGIN { printf "%.3f", ns / 1e9 }'
}
mbs() { awk -v s="$1" -v n="$total" 'BEGIN { printf "%.0f", n / s / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }

out=$dir/out
mkdir -p "$out"
echo "openssl dgst -sha512" >&2
t_openssl=$(best openssl dgst -sha512 "$lib"/*)
echo "sha512sum" >&2
t_sum=$(best sha512sum "$lib"/*)
echo "clr-publish build, 1 worker" >&2
t_clr1=$(best "$BIN/clr-publish" build --library "$lib" --base-uri https://bench.example/ -o "$out/list.json" --rehash --workers 1)
echo "clr-publish build, 2 workers" >&2
t_clr2=$(best "$BIN/clr-publish" build --library "$lib" --base-uri https://bench.example/ -o "$out/list.json" --rehash --workers 2)
echo "clr-publish build, no change" >&2
"$BIN/clr-publish" build --library "$lib" --base-uri https://bench.example/ -o "$out/list.json" >/dev/null
t_nochange=$(best "$BIN/clr-publish" build --library "$lib" --base-uri https://bench.example/ -o "$out/list.json")
hashed=$("$BIN/clr-publish" build --library "$lib" --base-uri https://bench.example/ -o "$out/list.json" --json | awk -F': ' '/"hashed_bytes"/ { gsub(",", "", $2); print $2 }')

# Same digests as the reference tools?
"$BIN/clr-publish" build --library "$lib" --base-uri https://bench.example/ -o "$out/list.json" --rehash >/dev/null
for f in "$lib"/*; do
	want=$(sha512sum "$f" | cut -d' ' -f1)
	grep -q "\"sl:checksum:sha512\": \"$want\"" "$out/list.json" || { echo "digest mismatch for $f" >&2; exit 1; }
done

cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
r1=$(ratio "$t_clr1" "$t_openssl")
r2=$(ratio "$t_clr2" "$t_clr1")
{
	echo "# Benchmarks"
	echo
	echo "Produced by \`make bench\` (scripts/bench.sh) on $(date -u +%Y-%m-%d), $(nproc) cores ($cpu),"
	echo "$(go version | cut -d' ' -f3), $(openssl version | cut -d' ' -f1-2). Best of $RUNS runs each; the"
	echo "files are in the page cache, so this measures hashing, not the disk. Ratios compare numbers"
	echo "measured in the same run on this noisy 2-core machine."
	echo
	echo "## SHA-512 hashing of a $((total / 1048576)) MiB library ($FILES files of $MIB MiB)"
	echo
	echo "| command | wall s | MB/s | ratio |"
	echo "| --- | --- | --- | --- |"
	echo "| \`openssl dgst -sha512\` (1 core) | $t_openssl | $(mbs "$t_openssl") | baseline |"
	echo "| \`sha512sum\` (1 core) | $t_sum | $(mbs "$t_sum") | $(ratio "$t_sum" "$t_openssl")x openssl |"
	echo "| \`clr-publish build --rehash --workers 1\` | $t_clr1 | $(mbs "$t_clr1") | **${r1}x openssl** (goal ≥ 0.9) |"
	echo "| \`clr-publish build --rehash --workers 2\` | $t_clr2 | $(mbs "$t_clr2") | **${r2}x one worker** (goal ≥ 1.7) |"
	echo
	echo "## No-change rebuild"
	echo
	echo "| command | wall s | bytes hashed |"
	echo "| --- | --- | --- |"
	echo "| \`clr-publish build\` with nothing changed | $t_nochange | $hashed (goal: 0) |"
	echo
	echo "The no-change rebuild stats every file and compares size, mtime, inode and device with the hash"
	echo "cache; no file content is read. The digests of the --rehash run were checked against sha512sum."
} >docs/benchmarks.md
cat docs/benchmarks.md
