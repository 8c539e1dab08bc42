#!/usr/bin/env bash
# bench-subscribe.sh [OUT.md] — the subscriber on a signed list of IMAGES
# (default 10,000) images: wall time and peak RSS (GNU time) of
#   clr-subscribe -s (fetch file://, verify, parse, one transaction),
#   clr-subscribe -U with the list unchanged (no-op),
#   clr-subscribe -U with 1 % of the images changed,
#   clr-image -l,
# against a baseline measured in the same run: openssl smime -verify of
# the same signed list (signature + chain + CRL, no parsing, no database).
# Median of RUNS runs, each on a fresh database. Writes one markdown
# section to OUT.md (default: stdout); progress goes to stderr. Called by
# scripts/bench.sh (BENCH_ONLY=subscribe).
#   IMAGES  images in the list (default 10000)
#   RUNS    repetitions (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
N=${IMAGES:-10000}
RUNS=${RUNS:-5}
OUT=${1:-/dev/stdout}
T=/usr/bin/time
[ -x "$T" ] || { echo "bench-subscribe.sh: needs GNU time: apt-get install -y time" >&2; exit 1; }

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
scripts/mkpki.sh "$dir/pki"

# genlist VERSION CHANGED: a list of N images; the first CHANGED images get
# a digest that depends on VERSION.
genlist() {
	awk -v n="$N" -v ver="$1" -v changed="$2" 'BEGIN {
		printf "{\"hv:imagelist\": {\"dc:date:created\": \"2026-01-01T00:00:00Z\", \"dc:date:expires\": \"2026-02-01T00:00:00Z\",\n"
		printf "\"dc:description\": \"bench\", \"dc:identifier\": \"0e0e0e0e-0000-4000-8000-000000000001\", \"dc:source\": \"bench\",\n"
		printf "\"dc:title\": \"bench\", \"hv:endorser\": {\"hv:x509\": {\"dc:creator\": \"x\", \"hv:ca\": \"x\", \"hv:dn\": \"x\", \"hv:email\": \"x@bench.example\"}},\n"
		printf "\"hv:uri\": \"https://bench.example/list.smime\", \"hv:version\": \"%s\", \"hv:images\": [\n", ver
		for (i = 1; i <= n; i++) {
			v = (i <= changed) ? ver : 1
			printf "%s{\"hv:image\": {\"dc:description\": \"bench image %d\", \"dc:identifier\": \"%08x-0000-4000-8000-%012x\", \"dc:title\": \"image %d\",", (i > 1 ? ",\n" : ""), i, i, i, i
			printf " \"hv:hypervisor\": \"kvm\", \"hv:size\": %d, \"hv:uri\": \"https://bench.example/img%d.qcow2\", \"hv:version\": \"%d\", \"sl:arch\": \"x86_64\",", 1048576 + i, i, v
			printf " \"sl:checksum:sha512\": \"%064x%064x\", \"sl:comments\": \"\", \"sl:os\": \"Linux\", \"sl:osversion\": \"9\", \"ad:mpuri\": \"https://bench.example/mp/%d\"}}", v, i, i
		}
		printf "]}}\n"
	}'
}
echo "generating and signing two lists of $N images" >&2
genlist 1 0 >"$dir/v1.json"
genlist 2 $((N / 100)) >"$dir/v2.json"
"$BIN/clr-publish" sign --cert "$dir/pki/signer.pem" --key "$dir/pki/signer.key" "$dir/v1.json" -o "$dir/v1.smime"
sleep 1 # v2 is created a second later
"$BIN/clr-publish" sign --cert "$dir/pki/signer.pem" --key "$dir/pki/signer.key" "$dir/v2.json" -o "$dir/v2.smime"
list_bytes=$(stat -c %s "$dir/v1.smime")

export CLR_DIR_CERT=$dir/pki/ca
# measure NAME CMD...: append "wall_s maxrss_kib" of one run to $dir/NAME
measure() {
	local name=$1
	shift
	"$T" -f '%e %M' -o "$dir/t" "$@" >/dev/null
	cat "$dir/t" >>"$dir/$name"
}
for r in $(seq 1 "$RUNS"); do
	echo "run $r/$RUNS" >&2
	db=$dir/run$r.db
	cp "$dir/v1.smime" "$dir/served.smime"
	measure openssl openssl smime -verify -CApath "$dir/pki/ca" -crl_check -in "$dir/served.smime" -out /dev/null
	measure subscribe "$BIN/clr-subscribe" -q -d "$db" -s "file://$dir/served.smime" --auto-endorse
	measure noop "$BIN/clr-subscribe" -q -d "$db" -U
	cp "$dir/v2.smime" "$dir/served.smime"
	measure update "$BIN/clr-subscribe" -q -d "$db" -U
	measure list "$BIN/clr-image" -d "$db" -l
	rm -f "$db" "$db"-wal "$db"-shm
done
lines=$("$BIN/clr-image" -d "$dir/check.db" -l | wc -l) || true
"$BIN/clr-subscribe" -q -d "$dir/check.db" -s "file://$dir/v1.smime" --auto-endorse
lines=$("$BIN/clr-image" -d "$dir/check.db" -l | wc -l)
[ "$lines" -eq "$N" ] || { echo "clr-image -l printed $lines lines, want $N" >&2; exit 1; }

med() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
wall() { awk '{ print $1 }' "$dir/$1" | med; }
rss() { awk '{ print $2 }' "$dir/$1" | med | awk '{ printf "%.0f", $1 / 1024 }'; }
ratio() { awk -v a="$(wall "$1")" -v b="$(wall openssl)" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "n/a" }'; }
cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
{
	echo "<!-- bench:subscribe -->"
	echo "## Subscriber: a signed list of $N images"
	echo
	echo "Produced by \`make bench\` (or \`BENCH_ONLY=subscribe make bench\`; the part is scripts/bench-subscribe.sh)"
	echo "on $(date -u +%Y-%m-%d), $(nproc) cores ($cpu), $(go version | cut -d' ' -f3), $(openssl version | cut -d' ' -f1-2)."
	echo "The signed list is $list_bytes bytes. Median of $RUNS runs, each on a fresh SQLite file; wall"
	echo "time and peak RSS from GNU time. The baseline is \`openssl smime -verify -CApath -crl_check\` of the"
	echo "same signed list (what any subscriber must at least do); the ratio is clr's time over it."
	echo
	echo "| step | wall s | peak RSS MiB | ratio to openssl | goal |"
	echo "| --- | --- | --- | --- | --- |"
	echo "| \`openssl smime -verify\` (baseline) | $(wall openssl) | $(rss openssl) | 1.0 | |"
	echo "| \`clr-subscribe -s file://... --auto-endorse\` | $(wall subscribe) | $(rss subscribe) | $(ratio subscribe) | < 2 s, < 200 MiB |"
	echo "| \`clr-subscribe -U\`, list unchanged | $(wall noop) | $(rss noop) | $(ratio noop) | < 2 s, < 200 MiB |"
	echo "| \`clr-subscribe -U\`, 1 % of images changed | $(wall update) | $(rss update) | $(ratio update) | < 2 s, < 200 MiB |"
	echo "| \`clr-image -l\` ($N lines) | $(wall list) | $(rss list) | $(ratio list) | |"
	echo
	echo "Subscribe verifies the signature and chain, parses the list and writes the endorser, the"
	echo "subscription, the raw list and $N image definitions and instances in one transaction. An"
	echo "unchanged list is verified again (the file transport has no conditional GET) and recognised by"
	echo "its SHA-512. The 1 % update writes one new instance per changed image, not $N."
	echo "<!-- /bench:subscribe -->"
} >"$OUT"
