#!/usr/bin/env bash
# bench-library.sh [OUT.md] — content library manifest regeneration for
# 1,000 items (3 files each) after a cache run: with no change, and with
# one changed item, against a baseline measured in the same run: rendering
# the same manifests in memory (no database, no files). The template files
# are named pipes: opening one would block, so finishing proves no content
# was read (TestNoContentRead asserts the same in `make test`). Median of
# COUNT benchmark runs of ITER iterations. Called by scripts/bench.sh
# (BENCH_ONLY=library).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/dev/stdout}
COUNT=${COUNT:-5}
ITER=${ITER:-20}
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
cmd="go test -run '^\$' -bench 'Render1000|UpdateNoChange1000|UpdateOneChanged1000' -benchtime ${ITER}x -count $COUNT ./internal/library/"
echo "$cmd" >&2
eval "$cmd" | tee "$raw" >&2
med() { awk -v n="$1" '$1 ~ "^Benchmark" n "-" { print $3 }' "$raw" | sort -n | awk '{ a[NR] = $1 } END { printf "%.1f", a[int((NR + 1) / 2)] / 1e6 }'; }
r=$(med Render1000)
n=$(med UpdateNoChange1000)
o=$(med UpdateOneChanged1000)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
{
	echo "<!-- bench:library -->"
	echo "## Content library manifests: regeneration for 1,000 items"
	echo
	echo "Produced by \`make bench\` (or \`BENCH_ONLY=library make bench\`; the part is scripts/bench-library.sh) on"
	echo "$(date -u +%Y-%m-%d), $(nproc) cores ($cpu), $(go version | cut -d' ' -f3). Command:"
	echo "\`$cmd\`; median of $COUNT runs of $ITER iterations; a real SQLite file in WAL mode on the same disk."
	echo "Every template file is a named pipe, so any read of content would block: the runs finishing show that no"
	echo "content is read (the records the cache verified at publication carry sizes and digests)."
	echo
	echo "| case | ms per regeneration | ratio | goal |"
	echo "| --- | --- | --- | --- |"
	echo "| baseline: render lib.json, items.json and 1,000 item.json in memory | $r | 1.00x | |"
	echo "| \`library.Update\`, nothing changed (load catalog, compare, stat lib.json, check every link, prune scan; writes nothing) | $n | $(ratio "$n" "$r")x | < 500 ms, no file reads |"
	echo "| \`library.Update\`, one item changed (save 1 row, link, write its item.json, items.json, lib.json, fsync each) | $o | $(ratio "$o" "$r")x | |"
	echo "<!-- /bench:library -->"
} >"$OUT"
