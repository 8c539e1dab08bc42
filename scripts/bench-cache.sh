#!/usr/bin/env bash
# bench-cache.sh [OUT.md] — updating a site's copy of a template from v1 to
# v2 over rsync/SSH, three ways, in the same run against the same clr-server
# on 127.0.0.1:
#   clr-cache   the whole site path: clr-subscribe -U (not timed), then
#               clr-cache -D stages v2 with the served v1 as --copy-dest basis,
#               verifies its SHA-512, fsyncs and publishes it (also with
#               --block-size CACHE_BLOCK, default 4096, besides the default);
#   rsync -a    plain rsync -a over the OpenSSH client into a copy of the v1
#               tree, updated in place (what content-library-rsync does);
#   full copy   rsync -a -W into an empty directory;
# plus one SHA-512 pass over v2 (openssl dgst -sha512, page cache) as the
# other half of the time baseline: goal clr-cache <= 1.1x (rsync -a + SHA-512).
#
# Data (deterministic, generated once and kept in BENCH_DIR): a CACHE_MIB
# (default 1024) MiB v1 per data set, "rand" (pseudo-random) and "vmdk"
# (64 KiB blocks in runs: about 62 % zero, 22 % random, 16 % text-like, as in
# ../shared/research/delta.md 2.1), and four v2 variants of each: (a) 1 % of
# the 64 KiB blocks overwritten, (b) 16 MiB inserted mid-file at an unaligned
# offset, (c) 16 MiB appended, (d) 1 % of the 4 KiB pages overwritten.
# Every run starts from v1: the site's database and cache are restored from
# a snapshot (hard links; published versions are immutable), the rsync
# destination is a hard link to v1 (rsync writes a new file and renames it).
#
# Wire bytes: rsync --stats "Total bytes received" (down) and "Total bytes
# sent" (up), the rsync stream after compression, for all three (clr-cache
# reports the same counters as wire_bytes_in/out); SSH framing adds about
# 0.3 % on top (research 2.2). Wall: each command. CPU: user+system of the
# client command and its children (GNU time) plus the server's (clr-server
# and the rsync senders it reaped, /proc/PID/stat). Before each run: sync,
# inputs in the page cache, and a short wait for an idle machine. Reps are
# the outer loop, the configurations of one variant run back to back in a
# rotating order; reported are medians of RUNS and, for time, the median of
# the per-repetition ratios (min-max).
# Called by scripts/bench.sh (BENCH_ONLY=cache); progress goes to stderr.
#   BENCH_DIR        scratch directory (default: a temp dir, removed
#                    afterwards); the generated data is kept there and reused
#   CACHE_MIB        size of v1 in MiB (default 1024)
#   CACHE_DATA       data sets (default "rand vmdk")
#   CACHE_VARIANTS   variants (default "a b c d")
#   CACHE_BLOCK      extra clr-cache --block-size run ("" = none; default 4096)
#   RUNS             repetitions (default 3)
#   QUIET_WAIT, QUIET_TOTAL  wait up to QUIET_WAIT s before a run (QUIET_TOTAL s
#                    in all) for half a second with < 0.3 core busy (default 10, 120)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${BIN:-bin}
case "$BIN" in /*) ;; *) BIN=$ROOT/$BIN ;; esac
MIB=${CACHE_MIB:-1024}
DATASETS=${CACHE_DATA:-"rand vmdk"}
VARIANTS=${CACHE_VARIANTS:-"a b c d"}
XBLOCK=${CACHE_BLOCK-4096}
RUNS=${RUNS:-3}
QUIET_WAIT=${QUIET_WAIT:-10}
QUIET_TOTAL=${QUIET_TOTAL:-120}
OUT=${1:-/dev/stdout}
T=/usr/bin/time

die() { echo "bench-cache.sh: $*" >&2; exit 1; }
for c in rsync ssh ssh-keygen openssl cmp go awk; do
	command -v "$c" >/dev/null || die "$c not found"
done
[ -x "$T" ] || die "needs GNU time: apt-get install -y time"
for b in clr-server clr-publish clr-subscribe clr-cache; do
	[ -x "$BIN/$b" ] || die "$BIN/$b not found: run make build"
done
case "$RUNS" in '' | *[!0-9]* | 0) die "RUNS must be a positive integer" ;; esac
case "$MIB" in '' | *[!0-9]* | 0) die "CACHE_MIB must be a positive integer" ;; esac
for ds in $DATASETS; do case "$ds" in rand | vmdk) ;; *) die "CACHE_DATA: unknown data set $ds" ;; esac; done
for v in $VARIANTS; do case "$v" in a | b | c | d) ;; *) die "CACHE_VARIANTS: unknown variant $v" ;; esac; done

dir=${BENCH_DIR:-$(mktemp -d /tmp/clr-bench-cache.XXXXXX)}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
data=$dir/data # kept and reused
tmp=$dir/run   # everything else: always recreated
rm -rf "$tmp"
mkdir -p "$tmp" "$data"
chmod 700 "$tmp"
size=$((MIB * 1048576))

nds=0
for _ in $DATASETS; do nds=$((nds + 1)); done
need_kib=$(((nds * 7 + 3) * size / 1024 + 1048576))
have_kib=$(($(df -Pk "$dir" | awk 'NR == 2 { print $4 }') + $(du -sk "$data" | cut -f1)))
[ "$have_kib" -ge "$need_kib" ] || die "$dir: $((need_kib / 1048576)) GiB needed, $((have_kib / 1048576)) GiB available"

server_pid=""
cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	if [ -n "$server_pid" ]; then
		kill -TERM "$server_pid" 2>/dev/null || true
		for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$server_pid" 2>/dev/null || true
	fi
	if [ "$rc" -ne 0 ] && [ -d "$tmp" ]; then
		p=$(mktemp -d /tmp/clr-bench-cache-logs.XXXXXX)
		cp "$tmp"/*.log "$tmp"/*.err "$tmp"/*.out "$tmp"/*.csv "$p"/ 2>/dev/null || true
		echo "bench-cache.sh: failed; logs kept in $p" >&2
	fi
	rm -rf "$tmp"
	[ -n "${BENCH_DIR:-}" ] || rm -rf "$dir"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- data ----
mkdir -p "$tmp/gen"
cat >"$tmp/gen/go.mod" <<'EOF'
module benchgen

go 1.26
EOF
cat >"$tmp/gen/main.go" <<'EOF'
// gen makes the deterministic test images of scripts/bench-cache.sh.
//
//	gen v1 KIND SIZE SEED OUT        KIND rand (all pseudo-random) or vmdk
//	gen variant KIND V IN OUT SEED   V in a b c d; prints the changed bytes
package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
)

const (
	blk  = 64 << 10 // a: changed blocks; vmdk: run granularity
	page = 4 << 10  // d: changed pages
	grow = 16 << 20 // b, c: inserted / appended bytes
)

// src makes deterministic data (seeded ChaCha8). rand: all random. vmdk:
// 64 KiB blocks in runs (1-31 blocks) of zeros (61.7 %), random bytes
// (22.1 %) and text-like bytes (16.2 %, words from a fixed vocabulary,
// compresses about 3x): roughly a flat disk of a freshly installed OS.
type src struct {
	kind  string
	r     *rand.ChaCha8
	pick  *rand.Rand
	run   int // 0 zero, 1 random, 2 text
	left  int
	words [][]byte
}

func newSrc(kind string, seed uint64) *src {
	var k [32]byte
	for i := range 8 {
		k[i] = byte(seed >> (8 * i))
	}
	k[31] = 'c'
	s := &src{kind: kind, r: rand.NewChaCha8(k)}
	s.pick = rand.New(s.r)
	var vk [32]byte
	vk[0] = 'w'
	vr := rand.New(rand.NewChaCha8(vk))
	for range 1024 {
		w := make([]byte, 2+vr.IntN(9))
		for j := range w {
			w[j] = byte('a' + vr.IntN(26))
		}
		s.words = append(s.words, w)
	}
	return s
}

func (s *src) text(b []byte) {
	i := 0
	for i < len(b) {
		i += copy(b[i:], s.words[s.pick.IntN(len(s.words))])
		if i < len(b) {
			b[i] = ' '
			if s.pick.IntN(12) == 0 {
				b[i] = '\n'
			}
			i++
		}
	}
}

// fill fills b following the kind's mix (vmdk runs continue across calls).
func (s *src) fill(b []byte) {
	if s.kind == "rand" {
		s.r.Read(b)
		return
	}
	for off := 0; off < len(b); off += blk {
		e := min(off+blk, len(b))
		if s.left == 0 {
			switch p := s.pick.IntN(1000); {
			case p < 617:
				s.run = 0
			case p < 838:
				s.run = 1
			default:
				s.run = 2
			}
			s.left = 1 + s.pick.IntN(31)
		}
		s.left--
		switch s.run {
		case 0:
			clear(b[off:e])
		case 1:
			s.r.Read(b[off:e])
		default:
			s.text(b[off:e])
		}
	}
}

// changed fills b with new data: random, or for vmdk random or text-like
// in the mix's proportion (22:16), never zeros.
func (s *src) changed(b []byte) {
	if s.kind == "vmdk" && s.pick.IntN(38) >= 22 {
		s.text(b)
		return
	}
	s.r.Read(b)
}

func die(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func num(s string) uint64 {
	n, err := strconv.ParseUint(s, 10, 64)
	die(err)
	return n
}

func writeN(w io.Writer, s *src, n int64) {
	buf := make([]byte, 4<<20)
	for n > 0 {
		b := buf[:min(int64(len(buf)), n)]
		s.fill(b)
		_, err := w.Write(b)
		die(err)
		n -= int64(len(b))
	}
}

func main() {
	a := os.Args[1:]
	var s *src
	var out string
	var f *os.File
	var err error
	open := func(p string) {
		out = p
		f, err = os.Create(p + ".tmp")
		die(err)
	}
	switch {
	case len(a) == 5 && a[0] == "v1":
		s = newSrc(a[1], num(a[3]))
		open(a[4])
		writeN(f, s, int64(num(a[2])))
	case len(a) == 6 && a[0] == "variant":
		s = newSrc(a[1], num(a[5]))
		in, err := os.Open(a[3])
		die(err)
		defer in.Close()
		fi, err := in.Stat()
		die(err)
		size := fi.Size()
		open(a[4])
		var changed int64
		switch a[2] {
		case "a", "d": // 1 % of the blocks or pages, scattered, distinct
			_, err = io.Copy(f, in)
			die(err)
			unit := int64(blk)
			if a[2] == "d" {
				unit = page
			}
			n := size / unit
			count := n / 100
			b := make([]byte, unit)
			for _, i := range s.pick.Perm(int(n))[:count] {
				s.changed(b)
				_, err = f.WriteAt(b, int64(i)*unit)
				die(err)
			}
			changed = count * unit
		case "b": // inserted at an unaligned offset: the second half shifts
			_, err = io.CopyN(f, in, size/2+12345)
			die(err)
			writeN(f, s, grow)
			_, err = io.Copy(f, in)
			die(err)
			changed = grow
		case "c":
			_, err = io.Copy(f, in)
			die(err)
			writeN(f, s, grow)
			changed = grow
		default:
			die(fmt.Errorf("unknown variant %q", a[2]))
		}
		fmt.Println(changed)
	default:
		fmt.Fprintln(os.Stderr, "usage: gen v1 KIND SIZE SEED OUT | gen variant KIND a|b|c|d IN OUT SEED")
		os.Exit(2)
	}
	die(f.Close())
	die(os.Rename(out+".tmp", out))
}
EOF
(cd "$tmp/gen" && GOWORK=off GOFLAGS='' go build -o gen .) || die "building the data generator failed"
stamp="$(sha256sum "$tmp/gen/main.go" | cut -c1-16) $size"
declare -A changed
for ds in $DATASETS; do
	d=$data/$ds
	if [ "$(cat "$d/STAMP" 2>/dev/null)" != "$stamp" ]; then
		echo "generating $ds: v1 ($MIB MiB) and variants a b c d in $d" >&2
		rm -rf "$d"
		mkdir -p "$d"
		seed=1
		[ "$ds" = rand ] || seed=2
		"$tmp/gen/gen" v1 "$ds" "$size" "$seed" "$d/v1.img"
		k=10
		for v in a b c d; do
			k=$((k + 1))
			"$tmp/gen/gen" variant "$ds" "$v" "$d/v1.img" "$d/$v.img" $((seed * 100 + k)) >"$d/$v.changed"
		done
		echo "$stamp" >"$d/STAMP"
	fi
	# v1 and v2 differ in mtime, as versions do (a and d have v1's size)
	touch -d '3 hours ago' "$d/v1.img"
	for v in a b c d; do
		touch -d '2 hours ago' "$d/$v.img"
		changed[$ds,$v]=$(cat "$d/$v.changed")
	done
done

# ---- clr-server over the library, a signer, the site's key ----
scripts/mkpki.sh "$tmp/pki" >/dev/null
ssh-keygen -q -t ed25519 -N '' -C bench-site -f "$tmp/site_key"
cp "$tmp/site_key.pub" "$tmp/authorized_keys"
lib=$tmp/lib
for ds in $DATASETS; do
	mkdir -p "$lib/$ds"
	ln "$data/$ds/v1.img" "$lib/$ds/disk.img"
done
"$BIN/clr-server" --listen 127.0.0.1:0 --library "$lib" --authorized-keys "$tmp/authorized_keys" \
	--host-key "$tmp/host_key" --pid-file "$tmp/server.pid" >"$tmp/server.out" 2>"$tmp/server.log" &
server_pid=$!
for _ in $(seq 1 100); do grep -q '^clr-server: serving' "$tmp/server.out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/^clr-server: serving .* on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$tmp/server.out")
[ -n "$port" ] || { cat "$tmp/server.log" >&2; die "clr-server did not start"; }
sed -n 's/^clr-server: known_hosts line: //p' "$tmp/server.out" | sed 's/^\[HOST\]/[127.0.0.1]/' >"$tmp/known_hosts"
[ -s "$tmp/known_hosts" ] || die "clr-server printed no known_hosts line"
SSH="ssh -p $port -i $tmp/site_key -F /dev/null -o UserKnownHostsFile=$tmp/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes"
export CLR_DIR_CERT=$tmp/pki/ca CLR_SSH_KEY=$tmp/site_key CLR_KNOWN_HOSTS=$tmp/known_hosts

# site_env DS: senv = the environment of data set DS's site (database, cache)
senv=()
site_env() { senv=("CLR_RDBMS=$tmp/site/$1/clr.db" "CLR_CACHE_DIR_CACHE=$tmp/site/$1/cache"); }
publish() { # DS
	"$BIN/clr-publish" publish --library "$lib/$1" --base-uri "ssh://syncer@127.0.0.1:$port/$1/" \
		--cert "$tmp/pki/signer.pem" --key "$tmp/pki/signer.key" -o "$tmp/pub/$1" >>"$tmp/publish.log" 2>&1 ||
		{ cat "$tmp/publish.log" >&2; die "clr-publish failed for $1"; }
}
# json_num FIELD FILE: an integer field of clr-cache --json
json_num() { sed -n "s/^ *\"$1\": \\([0-9]*\\),*\$/\\1/p" "$2" | head -n 1; }
# stat_num LABEL FILE: a number from rsync --stats --no-human-readable
stat_num() { sed -n "s/^$1: \\([0-9]*\\).*/\\1/p" "$2" | head -n 1; }

# Per data set: subscribe to v1 and cache it (the first install, recorded),
# snapshot the site, then sign one list per variant.
declare -A uuid first
for ds in $DATASETS; do
	echo "$ds: publish v1, subscribe, first install" >&2
	mkdir -p "$tmp/site/$ds" "$tmp/pub/$ds" "$tmp/lists"
	publish "$ds"
	cp "$tmp/pub/$ds/imagelist.smime" "$tmp/lists/$ds.served.smime"
	site_env "$ds"
	env "${senv[@]}" "$BIN/clr-subscribe" -s "file://$tmp/lists/$ds.served.smime" --auto-endorse \
		--imagelist-newimage-subscribe >>"$tmp/subscribe.log" 2>&1 || { cat "$tmp/subscribe.log" >&2; die "clr-subscribe failed"; }
	cat "$data/$ds/v1.img" >/dev/null
	t0=$(date +%s%N)
	env "${senv[@]}" "$BIN/clr-cache" -D --json --retries 0 >"$tmp/first-$ds.out" 2>"$tmp/first-$ds.err" ||
		{ cat "$tmp/first-$ds.err" >&2; die "clr-cache first install of $ds failed"; }
	t1=$(date +%s%N)
	uuid[$ds]=$(sed -n '/"published"/{n;s/^ *"\([0-9a-f-]*\)".*/\1/p}' "$tmp/first-$ds.out")
	[ -n "${uuid[$ds]}" ] || die "clr-cache published nothing for $ds"
	cmp "$tmp/site/$ds/cache/${uuid[$ds]}" "$data/$ds/v1.img" || die "$ds: cached v1 differs"
	first[$ds]="$(json_num wire_bytes_in "$tmp/first-$ds.out") $(json_num wire_bytes_out "$tmp/first-$ds.out") $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')"
	mkdir -p "$tmp/snap/$ds"
	cp -a "$tmp/site/$ds/clr.db" "$tmp/snap/$ds/"
	cp -al "$tmp/site/$ds/cache" "$tmp/snap/$ds/cache"
	for v in $VARIANTS; do
		ln -f "$data/$ds/$v.img" "$lib/$ds/disk.img"
		publish "$ds"
		cp "$tmp/pub/$ds/imagelist.smime" "$tmp/lists/$ds-$v.smime"
	done
done

# ---- measurement ----
hz=$(getconf CLK_TCK)
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 + $14 + $15 }'; }
stat_cpu() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $9 }' /proc/stat; } # busy steal
settle() { # wait until clr-server has no children left (at most 30 s)
	for _ in $(seq 1 300); do
		pgrep -P "$server_pid" >/dev/null || return 0
		sleep 0.1
	done
	die "clr-server still has children 30 s after a run"
}
waited=0 unquiet=0
quiet() {
	local b0 b1 s0 s1 i
	[ "$QUIET_WAIT" -gt 0 ] || return 0
	for ((i = 0; i < QUIET_WAIT * 2; i++)); do
		[ "$waited" -lt $((QUIET_TOTAL * 2)) ] || break
		read -r b0 s0 < <(stat_cpu)
		sleep 0.5
		read -r b1 s1 < <(stat_cpu)
		[ "$((b1 - b0))" -lt "$((hz * 15 / 100))" ] && return 0
		waited=$((waited + 1))
	done
	unquiet=$((unquiet + 1))
}

csv=$tmp/runs.csv
echo "rep,data,variant,cfg,wall_s,client_cpu_s,server_cpu_s,busy_s,steal_s,down,up,literal,matched,sync_s" >"$csv"

# measure REP DS V CFG CMD...: one timed run; stdout in $tmp/run.out
measure() {
	local rep=$1 ds=$2 v=$3 cfg=$4 t0 t1 c0 c1 b0 s0 b1 s1 ucpu
	shift 4
	kill -0 "$server_pid" 2>/dev/null || die "clr-server is gone; log: $(cat "$tmp/server.log")"
	sync
	cat "$data/$ds/v1.img" "$data/$ds/$v.img" "$tmp/site/$ds/cache/${uuid[$ds]}" >/dev/null 2>&1 || true
	settle
	quiet
	c0=$(cpu_ticks "$server_pid")
	read -r b0 s0 < <(stat_cpu)
	t0=$(date +%s%N)
	"$T" -f '%U %S' -o "$tmp/time" "$@" >"$tmp/run.out" 2>"$tmp/run.err" ||
		{ cat "$tmp/run.err" >&2; die "$cfg failed on $ds $v (rep $rep)"; }
	t1=$(date +%s%N)
	settle
	c1=$(cpu_ticks "$server_pid")
	read -r b1 s1 < <(stat_cpu)
	ucpu=$(awk '{ print $1 + $2 }' "$tmp/time")
	M="$rep,$ds,$v,$cfg,$(awk -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v u="$ucpu" -v b0="$b0" -v b1="$b1" \
		-v s0="$s0" -v s1="$s1" -v hz="$hz" 'BEGIN { printf "%.3f,%.2f,%.2f,%.2f,%.2f", (t1 - t0) / 1e9, u, (c1 - c0) / hz, (b1 - b0) / hz, (s1 - s0) / hz }')"
}
# timed_sync: seconds that a sync takes now (the writeback plain rsync leaves behind)
timed_sync() {
	local t0 t1
	t0=$(date +%s%N)
	sync
	t1=$(date +%s%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'
}

verified=" "
check_once() { # KEY FILE WANT: cmp once per configuration
	[[ "$verified" == *" $1 "* ]] && return 0
	cmp -s "$2" "$3" || die "$1: $2 differs from $3"
	verified="$verified$1 "
}

run_clr() { # REP DS V CFG [BLOCK]
	local rep=$1 ds=$2 v=$3 cfg=$4 site=$tmp/site/$2 bs=() down up lit mat
	[ -z "${5:-}" ] || bs=(--block-size "$5")
	rm -rf "$site"
	mkdir -p "$site"
	cp -a "$tmp/snap/$ds/clr.db" "$site/"
	cp -al "$tmp/snap/$ds/cache" "$site/cache"
	cp "$tmp/lists/$ds-$v.smime" "$tmp/lists/$ds.served.smime"
	site_env "$ds"
	env "${senv[@]}" "$BIN/clr-subscribe" -U >>"$tmp/subscribe.log" 2>&1 || { tail "$tmp/subscribe.log" >&2; die "clr-subscribe -U failed"; }
	measure "$rep" "$ds" "$v" "$cfg" env "${senv[@]}" "$BIN/clr-cache" -D --json --retries 0 "${bs[@]}"
	grep -q "\"${uuid[$ds]}\"" <(sed -n '/"published"/,/\]/p' "$tmp/run.out") || { cat "$tmp/run.out" "$tmp/run.err" >&2; die "$cfg did not publish $ds $v"; }
	down=$(json_num wire_bytes_in "$tmp/run.out") up=$(json_num wire_bytes_out "$tmp/run.out")
	lit=$(json_num literal_bytes "$tmp/run.out") mat=$(json_num matched_bytes "$tmp/run.out")
	check_once "$cfg-$ds-$v" "$site/cache/${uuid[$ds]}" "$data/$ds/$v.img"
	echo "$M,$down,$up,$lit,$mat," >>"$csv"
}
run_rsync() { # REP DS V CFG: rsync -a into a copy of the v1 tree, or -W into an empty dir
	local rep=$1 ds=$2 v=$3 cfg=$4 dst=$tmp/dst extra=() s
	rm -rf "$dst"
	mkdir -p "$dst"
	if [ "$cfg" = rsync ]; then
		ln "$data/$ds/v1.img" "$dst/disk.img"
		touch -r "$data/$ds/v1.img" "$dst"
	else
		extra=(-W)
	fi
	measure "$rep" "$ds" "$v" "$cfg" rsync -a "${extra[@]}" --stats --no-human-readable -e "$SSH" "syncer@127.0.0.1:/$ds/" "$dst/"
	s=$(timed_sync)
	check_once "$cfg-$ds-$v" "$dst/disk.img" "$data/$ds/$v.img"
	echo "$M,$(stat_num 'Total bytes received' "$tmp/run.out"),$(stat_num 'Total bytes sent' "$tmp/run.out"),$(stat_num 'Literal data' "$tmp/run.out"),$(stat_num 'Matched data' "$tmp/run.out"),$s" >>"$csv"
	rm -rf "$dst"
}
run_sha() { # REP DS V CFG
	measure "$1" "$2" "$3" "$4" openssl dgst -sha512 "$data/$2/$3.img"
	echo "$M,0,0,0,0," >>"$csv"
}
one() { # REP DS V CFG
	case "$4" in
	clr) run_clr "$@" ;;
	clrB) run_clr "$@" "$XBLOCK" ;;
	rsync | full) run_rsync "$@" ;;
	sha) run_sha "$@" ;;
	esac
	tail -n 1 "$csv" | awk -F, '{ printf "  rep %s %-4s %s %-5s %7.2f s  CPU %5.2f + %5.2f s  down %11s  up %9s\n", $1, $2, $3, $4, $5, $6, $7, $10, $11 }' >&2
}

cfgs="clr rsync sha full"
[ -z "$XBLOCK" ] || cfgs="clr clrB rsync sha full"
read -ra cfgl <<<"$cfgs"
start=$(date +%s)
echo "runs: $RUNS x data {$DATASETS} x variants {$VARIANTS} x {$cfgs}" >&2
k=0
for rep in $(seq 1 "$RUNS"); do
	for ds in $DATASETS; do
		for v in $VARIANTS; do
			ln -f "$data/$ds/$v.img" "$lib/$ds/disk.img"
			# rotate the order of the configurations from one variant to the next
			k=$((k + 1))
			for i in "${!cfgl[@]}"; do
				one "$rep" "$ds" "$v" "${cfgl[$(((i + k) % ${#cfgl[@]}))]}"
			done
		done
	done
done
elapsed=$(($(date +%s) - start))

# ---- report ----
cpu_model=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
mem=$(awk '/MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
rsync_v=$(rsync --version | awk 'NR == 1 { print $3 }')
ssh_v=$(ssh -V 2>&1 | cut -d, -f1)
fs=$(df -PT "$dir" | awk 'NR == 2 { print $2 }')
if [ $((size % 1073741824)) -eq 0 ]; then human="$((size / 1073741824)) GiB"; else human="$MIB MiB"; fi
chg_list=""
for ds in $DATASETS; do for v in $VARIANTS; do chg_list="$chg_list $ds,$v,${changed[$ds,$v]}"; done; done
# per (data, variant, cfg): medians; per (data, variant): per-rep time ratios
summary=$(awk -F, -v chg="$chg_list" '
function median(s,   a, k, i, j, t) {
	k = split(s, a, " ")
	for (i = 2; i <= k; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
}
function minmax(s,   a, k, i, lo, hi) {
	k = split(s, a, " "); lo = hi = a[1]
	for (i = 2; i <= k; i++) { if (a[i] + 0 < lo + 0) lo = a[i]; if (a[i] + 0 > hi + 0) hi = a[i] }
	return sprintf("%.2f-%.2f", lo, hi)
}
BEGIN { n = split(chg, c, " "); for (i = 1; i <= n; i++) { split(c[i], f, ","); changed[f[1], f[2]] = f[3]; order[i] = f[1] SUBSEP f[2] }; nk = n }
NR > 1 {
	key = $2 SUBSEP $3
	wall[key, $4] = wall[key, $4] " " $5; cpu[key, $4] = cpu[key, $4] " " ($6 + $7)
	down[key, $4] = down[key, $4] " " $10; up[key, $4] = up[key, $4] " " $11; lit[key, $4] = lit[key, $4] " " $12
	syn[key, $4] = syn[key, $4] " " $14
	w[$1, key, $4] = $5; reps[$1] = 1; has[$4] = 1
}
END {
	for (i = 1; i <= nk; i++) {
		key = order[i]; split(key, kk, SUBSEP)
		line = kk[1] "|" kk[2] "|" changed[key]
		for (q = 1; q <= 4; q++) {
			cf = (q == 1 ? "clr" : q == 2 ? "clrB" : q == 3 ? "rsync" : "full")
			if (!(cf in has)) { line = line "|-|-|-|-|-|-"; continue }
			line = line sprintf("|%d|%d|%d|%.3f|%.2f|%.3f", median(down[key, cf]), median(up[key, cf]), median(lit[key, cf]),
				median(wall[key, cf]), median(cpu[key, cf]), (cf == "rsync" || cf == "full") ? median(syn[key, cf]) : 0)
		}
		line = line sprintf("|%.3f|%.2f", median(wall[key, "sha"]), median(cpu[key, "sha"]))
		for (q = 1; q <= 2; q++) {
			cf = (q == 1 ? "clr" : "clrB"); rt = ""
			for (r in reps) if ((r, key, cf) in w && (r, key, "rsync") in w && (r, key, "sha") in w)
				rt = rt " " w[r, key, cf] / (w[r, key, "rsync"] + w[r, key, "sha"])
			line = line (rt == "" ? "|-|-" : sprintf("|%.3f|%s", median(rt), minmax(rt)))
		}
		print line
	}
}' "$csv")
steal=$(awk -F, 'NR > 1 { s += $9; w += $5 } END { printf "%.1f|%.0f|%.1f", s, w, 100 * s / (2 * w) }' "$csv")
IFS='|' read -r steal_s wall_sum steal_pct <<<"$steal"

mb() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1e6 }'; }
x() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
goal_of() { if [ "$1" = d ]; then echo 1.5; else echo 1.1; fi; }
ok() { awk -v a="$1" -v g="$2" 'BEGIN { if (a + 0 <= g + 0) print "met"; else print "**missed**" }'; }
declare -A vname=([a]="(a) 1 % of 64 KiB blocks" [b]="(b) 16 MiB inserted" [c]="(c) 16 MiB appended" [d]="(d) 1 % of 4 KiB pages")
bl=""
[ -z "$XBLOCK" ] || bl=" \`--block-size $XBLOCK\`"
bytes_met=0 bytes_tot=0 time_met=0 time_tot=0 bytes_missed="" time_missed="" xb_met=0 xb_missed=""
{
	echo "<!-- bench:cache -->"
	echo "## Delta updates of a $human template: clr-cache vs plain \`rsync -a\` vs a full copy"
	echo
	echo "Produced by \`make bench\` (or \`BENCH_ONLY=cache make bench\`; the part is scripts/bench-cache.sh) on"
	echo "$(date -u +%Y-%m-%d), $(nproc) cores ($cpu_model), ${mem} GiB RAM, kernel $(uname -r), $fs,"
	echo "rsync $rsync_v at both ends, $ssh_v client, clr-server as the server for every configuration, $(go version | cut -d' ' -f3)."
	echo "Data (deterministic, seeded ChaCha8): a $human v1 per data set, **rand** (pseudo-random, incompressible)"
	echo "and **vmdk** (64 KiB blocks in runs: about 62 % zero, 22 % random, 16 % text-like that zstd shrinks"
	echo "about 3x, like a flat disk of a fresh OS install), and four v2 variants of each: (a) 1 % of the 64 KiB"
	echo "blocks overwritten, scattered; (b) 16 MiB inserted at an unaligned offset mid-file; (c) 16 MiB appended;"
	echo "(d) 1 % of the 4 KiB pages overwritten, scattered (what a guest file system does to a flat disk)."
	echo "New data is random or text-like (vmdk: in the mix's proportion). Every run updates a site holding v1:"
	echo
	echo "- **clr-cache**: \`clr-subscribe -U\` (not timed), then \`clr-cache -D\`, which stages v2 with the served v1"
	echo "  as \`--copy-dest\` basis (\`--ignore-times --compress-choice=zstd --checksum-choice=xxh128\`, default"
	echo "  \`--block-size 8192\`), checks size and SHA-512 against the signed list, fsyncs and publishes it;"
	[ -z "$XBLOCK" ] || echo "  also with \`--block-size $XBLOCK\`;"
	echo "- **rsync -a**: \`rsync -a -e 'ssh -p PORT -i KEY -F /dev/null ...' syncer@127.0.0.1:/DS/ DST/\` into a copy"
	echo "  of the v1 tree (in-place tree update, rsync's default block size √size, no compression): what"
	echo "  content-library-rsync does; it neither verifies nor fsyncs;"
	echo "- **full copy**: the same with \`-W\` into an empty directory;"
	echo "- **SHA-512**: \`openssl dgst -sha512\` of v2 from the page cache, the other half of the time baseline."
	echo
	echo "Wire bytes are rsync's own counters for all three: \"Total bytes received\" (down, server to site) and"
	echo "\"Total bytes sent\" (up: block checksums), i.e. the rsync stream after compression as it enters SSH;"
	echo "clr-cache reports the same counters as \`wire_bytes_in/out\`. SSH framing adds about 0.3 % on top"
	echo "(../shared/research/delta.md 2.2). Ratios are (down + up) / changed bytes. Times: wall time of the"
	echo "command; CPU = user+system of the site command and its children (GNU time) plus clr-server's"
	echo "(including the rsync senders it reaped). Before each run: \`sync\`, inputs in the page cache, a wait for"
	echo "an idle machine. Each number is the **median of $RUNS** runs; repetitions are the outer loop and the"
	echo "configurations of one variant run back to back in a rotating order. The time ratio is the median of"
	echo "the per-repetition ratios clr-cache / (rsync -a + SHA-512) (min-max in brackets)."
	echo
	echo "### Wire bytes"
	echo
	echo "| data | v2 variant | changed bytes | clr-cache down / up | ratio (goal) |${bl:+ clr-cache$bl down / up | ratio |} rsync -a down / up | ratio | full copy down |"
	echo "| --- | --- | --- | --- | --- |${bl:+ --- | --- |} --- | --- | --- |"
	while IFS='|' read -r ds v ch cd cu _ _ _ _ bd bu _ _ _ _ rd ru _ _ _ _ fd _; do
		g=$(goal_of "$v")
		r=$(awk -v a=$((cd + cu)) -v b="$ch" 'BEGIN { printf "%.3fx", a / b }')
		res=$(ok "${r%x}" "$g")
		bytes_tot=$((bytes_tot + 1))
		if [ "$res" = met ]; then bytes_met=$((bytes_met + 1)); else bytes_missed="$bytes_missed, $ds ${vname[$v]%% *} $r"; fi
		row="| $ds | ${vname[$v]} | $ch | $(mb "$cd") / $(mb "$cu") MB | **$r** (≤ ${g}x: $res) |"
		if [ -n "$bl" ]; then
			row="$row $(mb "$bd") / $(mb "$bu") MB | $(x $((bd + bu)) "$ch") |"
			r=$(awk -v a=$((bd + bu)) -v b="$ch" 'BEGIN { printf "%.3fx", a / b }')
			if [ "$(ok "${r%x}" "$g")" = met ]; then xb_met=$((xb_met + 1)); else xb_missed="$xb_missed, $ds ${vname[$v]%% *} $r"; fi
		fi
		echo "$row $(mb "$rd") / $(mb "$ru") MB | $(x $((rd + ru)) "$ch") | $(mb "$fd") MB |"
	done <<<"$summary"
	echo
	echo "Literal bytes (data rsync sent rather than rebuilt from the basis), same order:"
	echo
	echo "| data | v2 variant | changed bytes | clr-cache literal |${bl:+ clr-cache$bl literal |} rsync -a literal |"
	echo "| --- | --- | --- | --- |${bl:+ --- |} --- |"
	while IFS='|' read -r ds v ch _ _ cl _ _ _ _ _ bli _ _ _ _ _ rl _; do
		row="| $ds | ${vname[$v]} | $ch | $cl ($(x "$cl" "$ch")) |"
		[ -z "$bl" ] || row="$row $bli ($(x "$bli" "$ch")) |"
		echo "$row $rl ($(x "$rl" "$ch")) |"
	done <<<"$summary"
	echo
	echo "### Time and CPU"
	echo
	echo "| data | v2 variant | clr-cache wall s | CPU s |${bl:+ clr-cache$bl wall s |} rsync -a wall s | CPU s | SHA-512 s | **clr-cache / (rsync -a + SHA-512)** (goal ≤ 1.1) |${bl:+ same,$bl |} full copy wall s | CPU s |"
	echo "| --- | --- | --- | --- |${bl:+ --- |} --- | --- | --- | --- |${bl:+ --- |} --- | --- |"
	while IFS='|' read -r ds v ch _ _ _ cw cc _ _ _ _ bw _ _ _ _ _ rw rc _ _ _ _ fw fc _ sw _ tr trr tbr tbrr; do
		res=$(ok "$tr" 1.1)
		time_tot=$((time_tot + 1))
		if [ "$res" = met ]; then time_met=$((time_met + 1)); else time_missed="$time_missed, $ds ${vname[$v]%% *} ${tr}x"; fi
		row="| $ds | ${vname[$v]} | $cw | $cc |"
		[ -z "$bl" ] || row="$row $bw |"
		row="$row $rw | $rc | $sw | **${tr}x** ($trr) $res |"
		[ -z "$bl" ] || row="$row ${tbr}x ($tbrr) |"
		echo "$row $fw | $fc |"
	done <<<"$summary"
	echo
	echo -n "First install of v1 (clr-cache, empty cache, one run):"
	for ds in $DATASETS; do
		read -r fin _ fwall <<<"${first[$ds]}"
		echo -n " $ds $(mb "$fin") MB down, $fwall s;"
	done
	echo " the full copies above send the whole v2 uncompressed."
	echo
	echo "**Goals.** Wire bytes (clr-cache, default block size, ≤ 1.1x the changed bytes in (a)-(c), ≤ 1.5x in"
	echo "(d)): met in $bytes_met of $bytes_tot rows${bytes_missed:+; missed in${bytes_missed#,}}."
	[ -z "$bl" ] || echo "With$bl the same goals are met in $xb_met of $bytes_tot rows${xb_missed:+; missed in${xb_missed#,}}."
	echo "Update time (clr-cache ≤ 1.1x rsync -a + one SHA-512 pass): met in $time_met of $time_tot rows${time_missed:+; missed in${time_missed#,}}."
	echo "Wire ratios count both directions: the block checksums that go up double when the block size halves"
	echo "(7-8 bytes per block of the basis), while the literal bytes of scattered 4 KiB changes grow with it."
	echo "rsync -a's ratio in (d) is its default block size (√size) at work: every changed 4 KiB page costs"
	echo "a whole block. clr-cache's time includes what rsync -a leaves out: the SHA-512 verification, the"
	echo "fsync of the new version before it is published, and the database and lock work of a cache run."
	echo "What writeback each rsync run left behind was measured with a \`sync\` right after it (median s):"
	[ "$fs" != ext4 ] || echo "on ext4, a file replaced by rename (rsync -a) starts its writeback at the rename (auto_da_alloc)."
	echo
	echo "| data | v2 variant | sync after rsync -a, s | sync after full copy, s |"
	echo "| --- | --- | --- | --- |"
	while IFS='|' read -r ds v _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ rs _ _ _ _ _ fs2 _; do
		echo "| $ds | ${vname[$v]} | $rs | $fs2 |"
	done <<<"$summary"
	echo
	echo "Hypervisor steal during the runs: ${steal_s} CPU-s over ${wall_sum} s of runs (${steal_pct} % of the"
	echo "$(nproc) cores); ${waited} half-second waits for an idle machine, $unquiet run(s) started without one."
	echo "Every result was compared byte for byte (\`cmp\`) with v2 once per configuration and variant;"
	echo "clr-cache also checked each against the signed SHA-512. The cache part took ${elapsed} s of runs."
	echo
	echo "<details><summary>every run (down/up/literal in bytes; CPU = site + server)</summary>"
	echo
	echo "| rep | data | variant | configuration | wall s | CPU s site | CPU s server | steal s | down | up | literal |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
	awk -F, -v xb="$XBLOCK" 'NR > 1 { c = $4 == "clr" ? "clr-cache" : $4 == "clrB" ? "clr-cache -B " xb : $4 == "rsync" ? "rsync -a" : $4 == "full" ? "full copy" : "SHA-512"
		printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, c, $5, $6, $7, $9, $10, $11, $12 }' "$csv"
	echo
	echo "</details>"
	echo "<!-- /bench:cache -->"
} >"$OUT"
echo "cache part done in ${elapsed} s" >&2
