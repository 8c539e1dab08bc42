#!/usr/bin/env bash
# bench-server.sh [OUT.md] — clr-server against OpenSSH sshd + rrsync, both on
# 127.0.0.1 in the same run: N concurrent OpenSSH/rsync clients each pull the
# whole library into their own empty directory. Writes one markdown section to
# OUT.md (default: stdout); progress goes to stderr. Called by scripts/bench.sh.
#
# Protocol: repetitions are the outer loop; inside one repetition every
# configuration (N, cipher, server) runs once, the two servers back to back
# and in alternating order, so a noisy minute hits both. Reported: the median
# over RUNS of wall time, aggregate MB/s and server CPU, and the median of the
# per-repetition ratios clr-server/sshd (min-max in brackets).
# Server CPU = utime+stime+cutime+cstime of the server process (/proc/PID/stat),
# read before a run and after every connection has ended and been reaped: for
# sshd (-D, no fork) the master's cutime/cstime include the per-connection sshd
# processes and the rrsync -> rsync they ran; for clr-server its own time plus
# the rsync senders it ran and reaped.
#
# Needs root for the private sshd (clients log in as root with a forced
# rrsync command). Only 127.0.0.1 is used; every process started is stopped
# by its PID on exit.
#   BENCH_DIR          scratch directory (default: a temp dir, removed afterwards);
#                      the library is kept there and reused, destinations are not
#   BENCH_DEST         where client destinations go (default: BENCH_DIR/dst)
#   SERVER_FILES       library files (default 4), SERVER_MIB size of each (default 256)
#   SERVER_CLIENTS     concurrency levels (default "1 16")
#   SERVER_CIPHERS     client cipher settings (default "default aes128-gcm@openssh.com";
#                      "default" = the OpenSSH client's own preference order)
#   RUNS               repetitions (default 3)
#   QUIET_WAIT, QUIET_TOTAL  wait for an idle machine before each run (default 30 s
#                      per run, 180 s in all; 0 = do not wait)
#   SSHD_LOGLEVEL      sshd LogLevel (default ERROR); logs are kept if the script fails
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
FILES=${SERVER_FILES:-4}
MIB=${SERVER_MIB:-256}
CLIENTS=${SERVER_CLIENTS:-"1 16"}
CIPHERS=${SERVER_CIPHERS:-"default aes128-gcm@openssh.com"}
RUNS=${RUNS:-3}
OUT=${1:-/dev/stdout}
SSHD=/usr/sbin/sshd

die() { echo "bench-server.sh: $*" >&2; exit 1; }
if [ "$(id -u)" -ne 0 ]; then
	die "the OpenSSH baseline runs a private sshd that lets root run rrsync: it needs root (run as root, or BENCH_ONLY=hash make bench to skip this part)"
fi
RRSYNC=$(command -v rrsync || true)
[ -n "$RRSYNC" ] || die "rrsync not found (Debian package rsync >= 3.2.4)"
[ -x "$SSHD" ] || die "$SSHD not found (Debian package openssh-server)"
for c in rsync ssh ssh-keygen openssl cmp pgrep; do
	command -v "$c" >/dev/null || die "$c not found"
done
[ -x "$BIN/clr-server" ] || die "$BIN/clr-server not found: run make build"
case "$RUNS" in '' | *[!0-9]* | 0) die "RUNS must be a positive integer" ;; esac

dir=${BENCH_DIR:-$(mktemp -d /tmp/clr-bench-server.XXXXXX)}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
dst=${BENCH_DEST:-$dir/dst}
tmp=$dir/run # keys, configs, logs: always recreated
lib=$dir/library
rm -rf "$tmp" "$dst"
mkdir -p "$tmp" "$dst" "$lib"
chmod 700 "$tmp"

pids=() # every long-running process started here, by PID
cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	if [ -f "$tmp/clients.pids" ]; then
		while read -r p; do kill "$p" 2>/dev/null || true; done <"$tmp/clients.pids"
	fi
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do
		for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
	done
	if [ "$rc" -ne 0 ] && [ -d "$tmp" ]; then
		p=$(mktemp -d /tmp/clr-bench-server-logs.XXXXXX)
		cp "$tmp"/*.log "$tmp"/*.err "$tmp"/*.csv "$tmp"/*_config "$p"/ 2>/dev/null || true
		echo "bench-server.sh: failed; logs kept in $p" >&2
	fi
	rm -rf "$dst" "$tmp"
	[ -n "${BENCH_DIR:-}" ] || rm -rf "$dir"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

total=$((FILES * MIB * 1048576))
maxn=0
for n in $CLIENTS; do [ "$n" -gt "$maxn" ] && maxn=$n; done
need_kib=$(((maxn + 1) * total / 1024 + 1048576))
avail_kib=$(df -Pk "$dst" | awk 'NR == 2 { print $4 }')
[ "$avail_kib" -ge "$need_kib" ] ||
	die "$dst has $((avail_kib / 1048576)) GiB free, $((need_kib / 1048576)) GiB needed ($maxn destinations of $((total / 1048576)) MiB); set BENCH_DEST"

# Deterministic, incompressible library: AES-128-CTR keystream.
echo "library: $FILES x $MIB MiB in $lib" >&2
for i in $(seq 1 "$FILES"); do
	f=$lib/disk$i.img
	[ -f "$f" ] && [ "$(stat -c %s "$f")" -eq $((MIB * 1048576)) ] && continue
	openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:clr-bench-$i" </dev/zero 2>/dev/null |
		head -c $((MIB * 1048576)) >"$f" || true
	[ "$(stat -c %s "$f")" -eq $((MIB * 1048576)) ] || die "could not create $f"
done
touch -d '1 hour ago' "$lib"/*

free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((20000 + RANDOM % 40000))
		[ "$p" != "${1:-}" ] || continue
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
	done
	die "no free port on 127.0.0.1"
}
# wait_file FILE PID: wait (at most 10 s) until FILE is non-empty while PID lives
wait_file() {
	for _ in $(seq 1 100); do
		[ -s "$1" ] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

ssh-keygen -q -t ed25519 -N '' -C bench-site -f "$tmp/client_key"
pub=$(cat "$tmp/client_key.pub")

# clr-server
clr_port=$(free_port)
echo "$pub" >"$tmp/clr_authorized_keys"
"$BIN/clr-server" --listen "127.0.0.1:$clr_port" --library "$lib" \
	--authorized-keys "$tmp/clr_authorized_keys" --host-key "$tmp/clr_host_key" \
	--max-sessions 32 --pid-file "$tmp/clr.pid" >"$tmp/clr.out" 2>"$tmp/clr.log" &
clr_pid=$!
pids+=("$clr_pid")
wait_file "$tmp/clr.pid" "$clr_pid" || { cat "$tmp/clr.log" >&2; die "clr-server did not start"; }
sed -n 's/^clr-server: known_hosts line: //p' "$tmp/clr.out" >"$tmp/clr_known_hosts"
[ -s "$tmp/clr_known_hosts" ] || die "clr-server printed no known_hosts line"

# OpenSSH sshd + rrsync, same library
sshd_port=$(free_port "$clr_port")
ssh-keygen -q -t ed25519 -N '' -C bench-sshd -f "$tmp/sshd_host_key"
echo "restrict,command=\"$RRSYNC -ro $lib\" $pub" >"$tmp/sshd_authorized_keys"
cat >"$tmp/sshd_config" <<EOF
Port $sshd_port
ListenAddress 127.0.0.1
HostKey $tmp/sshd_host_key
PidFile $tmp/sshd.pid
AuthorizedKeysFile $tmp/sshd_authorized_keys
PermitRootLogin forced-commands-only
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
AllowTcpForwarding no
AllowAgentForwarding no
X11Forwarding no
PermitTTY no
MaxStartups 64
MaxSessions 64
LogLevel ${SSHD_LOGLEVEL:-ERROR}
EOF
mkdir -p /run/sshd
"$SSHD" -t -f "$tmp/sshd_config" || die "sshd rejects the generated config"
"$SSHD" -D -e -f "$tmp/sshd_config" 2>"$tmp/sshd.log" &
sshd_pid=$!
pids+=("$sshd_pid")
wait_file "$tmp/sshd.pid" "$sshd_pid" || { cat "$tmp/sshd.log" >&2; die "sshd did not start"; }
echo "[127.0.0.1]:$sshd_port $(cut -d' ' -f1-2 "$tmp/sshd_host_key.pub")" >"$tmp/sshd_known_hosts"

ssh_cmd() { # SERVER CIPHER
	local port kh
	if [ "$1" = clr ]; then port=$clr_port kh=$tmp/clr_known_hosts; else port=$sshd_port kh=$tmp/sshd_known_hosts; fi
	printf 'ssh -p %s -i %s -F /dev/null -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes' \
		"$port" "$tmp/client_key" "$kh"
	[ "$2" = default ] || printf ' -c %s' "$2"
}
login() { if [ "$1" = clr ]; then echo syncer; else echo root; fi; }

# The cipher each server ends up with, per client setting (ssh -v, one probe).
# rrsync lets "true" through; clr-server refuses it after the key exchange.
negotiated() { # SERVER CIPHER
	# shellcheck disable=SC2046
	$(ssh_cmd "$1" "$2") -v "$(login "$1")@127.0.0.1" true </dev/null 2>&1 |
		sed -n 's/.*kex: server->client cipher: \([^ ]*\) .*/\1/p' | head -n 1 || true
}
declare -A cipher_of
for c in $CIPHERS; do
	for s in clr sshd; do
		cipher_of[$s,$c]=$(negotiated "$s" "$c")
		[ -n "${cipher_of[$s,$c]}" ] || die "no key exchange with $s (cipher setting $c); logs in $tmp"
		echo "$s, client cipher setting $c: negotiated ${cipher_of[$s,$c]}" >&2
	done
done

server_pid() { if [ "$1" = clr ]; then echo "$clr_pid"; else echo "$sshd_pid"; fi; }
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 + $14 + $15 }'; }
stat_cpu() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $9 }' /proc/stat; } # busy steal
# wait until the server has no children left (running or unreaped), at most 30 s
settle() {
	for _ in $(seq 1 300); do
		pgrep -P "$1" >/dev/null || return 0
		sleep 0.1
	done
	die "server $1 still has children 30 s after the clients ended"
}
hz=$(getconf CLK_TCK)
# quiet: before a run, wait (at most QUIET_WAIT s per run, QUIET_TOTAL s in
# all) for one second in which the machine is nearly idle (< 0.3 core busy):
# other work on a shared machine (builds, tests, fuzzing) would otherwise land
# in one server's run only.
QUIET_WAIT=${QUIET_WAIT:-30}
QUIET_TOTAL=${QUIET_TOTAL:-180}
waited=0 unquiet=0
quiet() {
	local b0 b1 s0 s1
	[ "$QUIET_WAIT" -gt 0 ] || return 0
	for _ in $(seq 1 "$QUIET_WAIT"); do
		[ "$waited" -lt "$QUIET_TOTAL" ] || break
		read -r b0 s0 < <(stat_cpu)
		sleep 1
		read -r b1 s1 < <(stat_cpu)
		[ "$((b1 - b0))" -lt "$((hz * 3 / 10))" ] && return 0
		waited=$((waited + 1))
	done
	unquiet=$((unquiet + 1))
}
now() { date +%s%N; }

csv=$tmp/runs.csv
echo "rep,n,cipher,server,wall_s,server_cpu_s,client_cpu_s,busy_s,steal_s" >"$csv"
verified=()

# one_run REP N CIPHER SERVER: N concurrent pulls of the whole library
one_run() {
	local rep=$1 n=$2 cipher=$3 srv=$4 spid e cmd user c0 c1 b0 s0 b1 s1 t0 t1 res fails ccpu i f
	spid=$(server_pid "$srv")
	kill -0 "$spid" 2>/dev/null || die "$srv (pid $spid) is gone; logs in $tmp"
	cmd=$(ssh_cmd "$srv" "$cipher")
	user=$(login "$srv")
	rm -rf "$dst"
	mkdir -p "$dst"
	for i in $(seq 1 "$n"); do mkdir "$dst/c$i"; done
	cat "$lib"/* >/dev/null # library in the page cache
	settle "$spid"
	quiet
	c0=$(cpu_ticks "$spid")
	read -r b0 s0 < <(stat_cpu)
	: >"$tmp/clients.pids"
	rm -f "$tmp/clients.fail" "$tmp"/client*.err
	t0=$(now)
	# The clients run in a background subshell that reaps them, so its cutime +
	# cstime is the client CPU, and a signal to this script is handled at once.
	(
		me=$BASHPID # (expanded in a forked child, $BASHPID would name that child)
		cps=()
		# Client i connects from 127.0.0.i: clr-server admits at most 8
		# unauthenticated connections per address, and 16 clients from one
		# address would trip that DoS limit (sshd has no such limit with
		# MaxStartups 64). Same for both servers.
		for i in $(seq 1 "$n"); do
			rsync -a -e "$cmd -o BindAddress=127.0.0.$i" "$user@127.0.0.1:/" "$dst/c$i/" 2>"$tmp/client$i.err" &
			cps+=($!)
			echo $! >>"$tmp/clients.pids"
		done
		f=0
		i=0
		for p in "${cps[@]}"; do
			i=$((i + 1))
			wait "$p" || { echo "client $i exit $? at $(date +%T.%N)" >>"$tmp/clients.fail"; f=$((f + 1)); }
		done
		sed 's/.*) //' "/proc/$me/stat" | awk -v f="$f" '{ print f, $14 + $15 }'
	) >"$tmp/clients.res" &
	echo $! >>"$tmp/clients.pids"
	wait $! || die "client group failed"
	t1=$(now)
	rm -f "$tmp/clients.pids"
	res=$(cat "$tmp/clients.res")
	read -r fails ccpu <<<"$res"
	if [ "$fails" -ne 0 ]; then
		cat "$tmp/clients.fail" >&2
		for i in $(seq 1 "$n"); do
			[ -s "$tmp/client$i.err" ] && sed "s/^/client $i: /" "$tmp/client$i.err" >&2
		done
		die "$fails of $n pulls from $srv failed (cipher $cipher)"
	fi
	settle "$spid"
	c1=$(cpu_ticks "$spid")
	read -r b1 s1 < <(stat_cpu)
	# every destination complete; the first one byte-identical (once per configuration)
	for i in $(seq 1 "$n"); do
		for f in "$lib"/*; do
			[ "$(stat -c %s "$dst/c$i/${f##*/}" 2>/dev/null)" = "$(stat -c %s "$f")" ] ||
				die "$srv: $dst/c$i/${f##*/} missing or wrong size"
		done
	done
	e="$n,$cipher,$srv"
	if [[ ! " ${verified[*]} " == *" $e "* ]]; then
		for f in "$lib"/*; do cmp -s "$f" "$dst/c1/${f##*/}" || die "$srv: $dst/c1/${f##*/} differs from the library"; done
		verified+=("$e")
	fi
	rm -rf "$dst"
	awk -v r="$rep" -v n="$n" -v c="$cipher" -v s="$srv" -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" \
		-v cc="$ccpu" -v b0="$b0" -v b1="$b1" -v s0="$s0" -v s1="$s1" -v hz="$hz" \
		'BEGIN { printf "%d,%d,%s,%s,%.3f,%.2f,%.2f,%.2f,%.2f\n", r, n, c, s, (t1 - t0) / 1e9,
			(c1 - c0) / hz, cc / hz, (b1 - b0) / hz, (s1 - s0) / hz }' >>"$csv"
	tail -n 1 "$csv" | awk -F, -v tot="$total" '{ printf "  rep %s  N=%-2s %-28s %-5s %7.2f s %5.0f MB/s  server CPU %6.2f s\n",
		$1, $2, $3, $4, $5, $2 * tot / $5 / 1e6, $6 }' >&2
}

start=$(now)
echo "runs: $RUNS x N in {$CLIENTS} x cipher in {$CIPHERS} x {clr-server, sshd+rrsync}" >&2
for rep in $(seq 1 "$RUNS"); do
	k=0
	for n in $CLIENTS; do
		for c in $CIPHERS; do
			# alternate which server goes first
			if [ $(((rep + k) % 2)) -eq 1 ]; then order="clr sshd"; else order="sshd clr"; fi
			k=$((k + 1))
			for s in $order; do one_run "$rep" "$n" "$c" "$s"; done
		done
	done
done
elapsed=$((($(now) - start) / 1000000000))
grep -q . "$tmp/sshd.log" && { echo "sshd log:" >&2; cat "$tmp/sshd.log" >&2; }

# ---- report ----
cpu_model=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
mem=$(awk '/MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
rsync_v=$(rsync --version | awk 'NR == 1 { print $3 }')
ssh_v=$(ssh -V 2>&1 | cut -d, -f1)
fs=$(df -PT "$dst" 2>/dev/null | awk 'NR == 2 { print $2 }' || true)
[ -n "$fs" ] || fs=$(df -PT "$dir" | awk 'NR == 2 { print $2 }')
gib=$((total / 1048576))
read -ra words <<<"$CLIENTS"
ns=${words[-1]}
[ "${#words[@]}" -lt 2 ] || ns="$(IFS=,; echo "${words[*]:0:${#words[@]}-1}" | sed 's/,/, /g') and $ns"
if [ $((total % 1073741824)) -eq 0 ]; then libsize="$((total / 1073741824)) GiB"; else libsize="$gib MiB"; fi

# summarize: one line per (n, cipher): medians and per-rep ratios
summary=$(awk -F, -v tot="$total" '
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
NR > 1 {
	key = $2 SUBSEP $3
	if (!(key in seen)) { seen[key] = 1; order[++nk] = key }
	wall[key, $4] = wall[key, $4] " " $5; cpu[key, $4] = cpu[key, $4] " " $6; cl[key, $4] = cl[key, $4] " " $7
	w[$1, key, $4] = $5; c[$1, key, $4] = $6; reps[$1] = 1
}
END {
	for (i = 1; i <= nk; i++) {
		key = order[i]; split(key, kk, SUBSEP); rt = ""; rc = ""
		for (r in reps) if ((r, key, "clr") in w && (r, key, "sshd") in w) {
			rt = rt " " w[r, key, "sshd"] / w[r, key, "clr"]
			if (c[r, key, "sshd"] > 0) rc = rc " " c[r, key, "clr"] / c[r, key, "sshd"]
		}
		wc = median(wall[key, "clr"]); ws = median(wall[key, "sshd"])
		printf "%s|%s|%.2f|%.0f|%.2f|%.2f|%.2f|%.0f|%.2f|%.2f|%.2f|%s|%.2f|%s\n", kk[1], kk[2],
			wc, kk[1] * tot / wc / 1e6, median(cpu[key, "clr"]), median(cl[key, "clr"]),
			ws, kk[1] * tot / ws / 1e6, median(cpu[key, "sshd"]), median(cl[key, "sshd"]),
			median(rt), minmax(rt), median(rc), minmax(rc)
	}
}' "$csv")
steal=$(awk -F, 'NR > 1 { b += $8; s += $9; w += $5 } END { printf "%.1f|%.1f|%.0f", s, w, 100 * s / (2 * w) }' "$csv")
IFS='|' read -r steal_s wall_sum steal_pct <<<"$steal"

{
	echo "<!-- bench:server -->"
	echo "## clr-server vs OpenSSH sshd + rrsync: $ns concurrent pulls of a $libsize library"
	echo
	echo "Produced by \`make bench\` (or \`BENCH_ONLY=server make bench\`; the part is scripts/bench-server.sh)"
	echo "on $(date -u +%Y-%m-%d) as root, $(nproc) cores ($cpu_model), ${mem} GiB RAM, kernel $(uname -r),"
	echo "rsync $rsync_v, $ssh_v (client and sshd), rrsync from rsync $rsync_v. Both servers ran at the"
	echo "same time on 127.0.0.1 and exported the same library: $FILES files of $MIB MiB, pseudo-random"
	echo "(incompressible), in the page cache. Each of N concurrent clients runs"
	echo "\`rsync -a -e 'ssh -p PORT -i KEY -F /dev/null -o BatchMode=yes ... -o BindAddress=127.0.0.i [-c CIPHER]' USER@127.0.0.1:/ DST/\`"
	echo "into its own empty directory on $fs (deleted after each run); client i connects from 127.0.0.i"
	echo "because clr-server admits at most 8 unauthenticated connections per source address. clr-server runs with"
	echo "\`--max-sessions 32\`, sshd with \`restrict,command=\"rrsync -ro LIB\"\` and \`MaxStartups 64\`."
	echo "Each number is the **median of $RUNS** runs; repetitions are the outer loop, and within one"
	echo "repetition the two servers run back to back in alternating order. The ratios are the median of the"
	echo "per-repetition ratios (min-max in brackets). Aggregate MB/s = N x $libsize / wall (MB = 10^6 B)."
	echo "Server CPU = user+system time of the server process and its reaped children (/proc/PID/stat),"
	echo "read after every connection ended: sshd's master includes the per-connection sshd processes,"
	echo "rrsync and the rsync senders; clr-server includes its rsync senders. Clients and servers share"
	echo "the $(nproc) cores, so wall time is bounded by the total CPU of both ends."
	echo
	echo "| N | client cipher (negotiated) | clr-server wall s | MB/s | server CPU s | sshd wall s | MB/s | server CPU s | throughput clr/sshd (goal ≥ 0.9) | server CPU clr/sshd |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
	while IFS='|' read -r n c wc mc cc clc ws ms cs cls rt rtr rc rcr; do
		if [ "$c" = default ]; then
			label="OpenSSH default (${cipher_of[clr,$c]}"
			[ "${cipher_of[clr,$c]}" = "${cipher_of[sshd,$c]}" ] || label="$label / sshd: ${cipher_of[sshd,$c]}"
			label="$label)"
		else
			label="\`-c $c\` (${cipher_of[clr,$c]})"
		fi
		echo "| $n | $label | $wc | $mc | $cc | $ws | $ms | $cs | **${rt}x** ($rtr) | ${rc}x ($rcr) |"
	done <<<"$summary"
	echo
	echo "CPU per GiB pulled (median CPU-s / (N x library size in GiB)); client = the rsync receivers and ssh:"
	echo
	echo "| N | client cipher | server CPU s/GiB: clr-server | sshd + rrsync | client CPU s/GiB: against clr-server | against sshd |"
	echo "| --- | --- | --- | --- | --- | --- |"
	while IFS='|' read -r n c wc mc cc clc ws ms cs cls rest; do
		awk -v n="$n" -v c="$c" -v g="$total" -v a="$cc" -v b="$cs" -v x="$clc" -v y="$cls" \
			'BEGIN { g = n * g / 1073741824; printf "| %s | %s | %.2f | %.2f | %.2f | %.2f |\n", n, c, a / g, b / g, x / g, y / g }'
	done <<<"$summary"
	echo
	echo "Hypervisor steal during the runs: ${steal_s} CPU-s over ${wall_sum} s of runs (${steal_pct} % of the"
	echo "$(nproc) cores). \"Other\" CPU in the table of every run below is the machine's busy CPU minus the"
	echo "server's and the clients': kernel writeback of the destinations, network softirq work not charged to"
	echo "a process, and anything else running on the machine; a large value marks a disturbed run. Before"
	echo "each run the script waited for a second with the machine nearly idle (< 0.3 core busy): ${waited} s of"
	echo "waiting in all (at most ${QUIET_WAIT} s per run, ${QUIET_TOTAL} s in all); $unquiet run(s) started without one. Every pull exited 0"
	echo "with complete files; the first destination of every configuration was compared byte for byte (\`cmp\`) with the library. The server part took ${elapsed} s."
	echo
	awk -F'|' '
	function range(lo, hi) { return lo == hi ? sprintf("%.2fx", lo) : sprintf("%.2f-%.2fx", lo, hi) }
	{ rt = $11 + 0; rc = $13 + 0; cr = ($10 > 0 ? $6 / $10 : 1)
	  if (NR == 1 || rt < minrt) { minrt = rt; minwhere = "N=" $1 ", cipher " $2 }
	  if (NR == 1 || rc < lorc) lorc = rc; if (NR == 1 || rc > hirc) hirc = rc
	  if (NR == 1 || cr < locr) locr = cr; if (NR == 1 || cr > hicr) hicr = cr
	  if (rt >= 0.9) ok++; tot++ }
	END {
	  printf "**Interpretation.** "
	  if (ok == tot) printf "clr-server meets the goal in every row: aggregate throughput at least 0.9x that of sshd + rrsync (lowest %.2fx, %s). ", minrt, minwhere
	  else printf "clr-server misses the 0.9x throughput goal in %d of %d rows (lowest %.2fx, %s). ", tot - ok, tot, minrt, minwhere
	  printf "Its server CPU is %s that of sshd + rrsync, ", range(lorc, hirc)
	  printf "and the OpenSSH clients spent %s as much CPU against it as against sshd. ", range(locr, hicr)
	}' <<<"$summary"
	echo "Both servers run the same \`rsync --server --sender\`, so the difference is the SSH layer (x/crypto/ssh"
	echo "in Go against OpenSSH in C) plus, for sshd, a shell and a python rrsync per connection, which matters"
	echo "only for short transfers. The client chooses the cipher: the OpenSSH client's default order puts"
	echo "chacha20-poly1305 first, and x/crypto's ChaCha20 has no amd64 assembly (its Poly1305 has), so the"
	echo "default rows pit pure-Go ChaCha20 against OpenSSL's; the \`-c aes128-gcm@openssh.com\` rows compare the"
	echo "servers with the same AES-NI cipher. Clients and servers share the $(nproc) cores, so wall time is bounded"
	echo "by the CPU of both ends: client CPU that a server causes costs it throughput here though it would not"
	echo "across a network. Server CPU per GiB is the number that carries over to a real deployment."
	echo
	echo "<details><summary>every run: wall s and CPU-s (other = machine busy CPU minus server and client CPU)</summary>"
	echo
	echo "| rep | N | cipher | server | wall s | server CPU s | client CPU s | other CPU s | steal s |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
	awk -F, 'NR > 1 { s = ($4 == "clr" ? "clr-server" : "sshd+rrsync")
		printf "| %s | %s | %s | %s | %s | %s | %s | %.2f | %s |\n", $1, $2, $3, s, $5, $6, $7, $8 - $6 - $7, $9 }' "$csv"
	echo
	echo "</details>"
	echo "<!-- /bench:server -->"
} >"$OUT"
echo "server part done in ${elapsed} s" >&2
