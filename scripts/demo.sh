#!/usr/bin/env bash
# demo.sh — the main job end to end on embedded defaults, in ./.demo:
#   1. a throwaway CA (with a CRL) and a signer certificate, made with openssl;
#   2. a small generated template library (an OVF folder, an ISO, a qcow2);
#   3. clr-publish publish: hash, build the HEPiX list, sign it (S/MIME);
#   4. clr-publish verify, and openssl smime -verify as an independent check;
#   5. a no-change rebuild;
#   6. clr-server exports the library over rsync/SSH on 127.0.0.1;
#   7. a "site" pulls it with real rsync + OpenSSH, host key pinned, and checks
#      every file against the signed SHA-512s.
#   8. the site subscribes to the signed list (clr-endorser, clr-subscribe,
#      clr-image: vmcatcher's commands renamed), updates it and selects images.
#   9. clr-cache fetches the selected images from clr-server over rsync/SSH,
#      verifies every byte against the signed list, publishes them and writes
#      the vSphere content library manifests (lib.json, items.json, item.json);
#  10. clr-cache serve exports the content library over HTTP; a subscriber's
#      walk (vcspcheck) shows what vCenter sees, and govmomi's vcsim imports
#      every item and deploys the OVF template (when govc/vcsim are
#      installed: make demo installs them into .tools/bin);
#      The LXD/Incus image is served as a simplestreams catalog (streams/v1),
#      walked the way the LXD and Incus clients do;
#  11. one template changes: only the delta crosses the wire, and only that
#      item's version (and the library's) grows.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
D=${DEMO_DIR:-.demo}
rm -rf "$D"
mkdir -p "$D/pki/ca" "$D/library" "$D/pub"
say() { printf '\n== %s\n' "$*"; }
# the demo's template generator and subscriber walk (test tools, not shipped)
go build -o "$D/tools/" ./internal/tools/...

say "1. throwaway CA and signer ($D/pki)"
P=$D/pki
scripts/mkpki.sh "$P"
openssl x509 -in "$P/signer.pem" -noout -subject -issuer -nameopt compat

say "2. a small template library ($D/library)"
L=$D/library
# a deployable OVF template: descriptor, streamOptimized disk, .mf
"$D/tools/mktemplate" -dir "$L/centos9-template" -name centos9 -seed 1 -disk-capacity 16MiB -data-size 1MiB \
	-iso "$L/tools.iso" -iso-size 1MiB
head -c 2097152 /dev/urandom >"$L/alpine-3.20.qcow2"
# an LXD/Incus container image: metadata tarball + squashfs root
lxd="$L/images/alpine/3.20/amd64/default/$(date -u +%Y%m%d_%H%M)"
mkdir -p "$lxd"
head -c 4096 /dev/urandom >"$lxd/incus.tar.xz"
head -c 262144 /dev/urandom >"$lxd/rootfs.squashfs"
# A library at rest: files modified within 2 s of being hashed are hashed
# again on the next run (see docs/publish.md, "hash cache").
find "$L" -exec touch -d '1 hour ago' {} +
ls -lR "$L"

say "3. clr-publish publish (hash, build, sign)"
"$BIN/clr-publish" publish --library "$L" --base-uri ssh://127.0.0.1:2222/ --simplestreams \
	--title "CLR demo library" --cert "$P/signer.pem" --key "$P/signer.key" --hash-cache "$D/hashes.json" -o "$D/pub"

say "4. clr-publish verify (chain, CRL, endorser, dates)"
"$BIN/clr-publish" verify --ca-dir "$P/ca" --json "$D/pub/imagelist.smime"
"$BIN/clr-publish" verify --ca-dir "$P/ca" "$D/pub/imagelist.smime" >"$D/verified.json"
openssl smime -verify -CApath "$P/ca" -crl_check -in "$D/pub/imagelist.smime" -out "$D/openssl.json"
cmp "$D/verified.json" "$D/openssl.json"
echo "clr and openssl agree on the signed content"

say "5. a no-change rebuild reads no file"
"$BIN/clr-publish" publish --library "$L" --base-uri ssh://127.0.0.1:2222/ \
	--cert "$P/signer.pem" --key "$P/signer.key" --hash-cache "$D/hashes.json" -o "$D/pub"

say "6. clr-server exports the library read-only over rsync/SSH (127.0.0.1)"
ssh-keygen -q -t ed25519 -N '' -C demo-site -f "$D/site.key"
cp "$D/site.key.pub" "$D/authorized_keys"
# port 0: the kernel picks a free port, clr-server prints it
"$BIN/clr-server" --listen "127.0.0.1:0" --library "$L" --authorized-keys "$D/authorized_keys" \
	--host-key "$D/server/host_key" --pid-file "$D/server.pid" >"$D/server.out" 2>"$D/server.log" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null' EXIT
for _ in $(seq 1 100); do grep -q '^clr-server: serving' "$D/server.out" 2>/dev/null && break; sleep 0.1; done
cat "$D/server.out"
port=$(sed -n 's/^clr-server: serving .* on 127.0.0.1:\([0-9]*\) .*/\1/p' "$D/server.out")
[ -n "$port" ] || { echo "clr-server did not start:"; cat "$D/server.log"; exit 1; }
# the site pins the printed host key
sed -n 's/^clr-server: known_hosts line: //p' "$D/server.out" | sed "s/^\[HOST\]/[127.0.0.1]/" >"$D/known_hosts"

say "7. a site pulls the templates with rsync and verifies every byte against the signed list"
SSH="ssh -p $port -i $D/site.key -F /dev/null -o UserKnownHostsFile=$D/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes"
rsync -a --stats -e "$SSH" syncer@127.0.0.1:/ "$D/site/" | grep -E 'Number of regular files transferred|Total bytes received'
fail=0
while IFS= read -r line; do
	sum=${line%% *} file=${line#*  }
	if grep -q "\"sl:checksum:sha512\": \"$sum\"" "$D/verified.json"; then
		echo "ok    $file"
	else
		echo "FAIL  $file"; fail=1
	fi
done < <(cd "$D/site" && sha512sum *.iso *.qcow2 centos9-template/*)
[ "$fail" = 0 ]
if $SSH syncer@127.0.0.1 'cat /etc/passwd' 2>"$D/refused.txt"; then echo "shell command was not refused"; exit 1; fi
echo "a shell command is refused: $(cat "$D/refused.txt")"

say "8. the site subscribes to the signed list and selects its images for the cache"
export CLR_RDBMS=$D/site.db CLR_DIR_CERT=$P/ca
"$BIN/clr-subscribe" -s "file://$PWD/$D/pub/imagelist.smime" --auto-endorse
"$BIN/clr-subscribe" -U
"$BIN/clr-endorser" -l
"$BIN/clr-subscribe" -l
echo "images before selection (uuid, state: 2 = available, subscription):"
"$BIN/clr-image" -l
"$BIN/clr-image" -l | cut -f1 | while read -r id; do "$BIN/clr-image" -a -u "$id"; done
echo "after clr-image -a (state 3 = selected and available):"
"$BIN/clr-image" -l
"$BIN/clr-subscribe" -i

say "9. clr-cache fetches the selected images from clr-server, verifies, publishes them and writes the content library"
# The list names ssh://127.0.0.1:2222/; the demo server got another port:
# a mirror override (any mirror is untrusted transport: the hashes are signed).
"$BIN/clr-cache" -C "$D/cache" --ssh-key "$D/site.key" --known-hosts "$D/known_hosts" \
	--mirror "ssh://127.0.0.1:2222/=ssh://syncer@127.0.0.1:$port/" \
	-x 'echo "event: $CLR_EVENT_TYPE ${CLR_EVENT_DC_TITLE:-}"' --json
ls -l "$D/cache"
"$BIN/clr-cache" -C "$D/cache" -s -v
echo "content library (lib.json is written last; ids and versions live in the database):"
(cd "$D/cache/.clr/library" && ls -l . && cat lib.json)

say "10. clr-cache serve: the content library over HTTP, as a vCenter subscriber sees it"
"$BIN/clr-cache" serve -C "$D/cache" --listen 127.0.0.1:0 --ready-file "$D/serve.json" >"$D/serve.out" 2>"$D/serve.log" &
web=$!
trap 'kill "$server" "$web" 2>/dev/null; wait "$server" "$web" 2>/dev/null' EXIT
for _ in $(seq 1 100); do [ -s "$D/serve.json" ] && break; sleep 0.1; done
httpaddr=$(sed -n 's/.*"http":"\([^"]*\)".*/\1/p' "$D/serve.json")
[ -n "$httpaddr" ] || { echo "clr-cache serve did not start:"; cat "$D/serve.log"; exit 1; }
url="http://$httpaddr/lib.json"
echo "subscribe a vCenter content library to: $url"
vcsim=()
if command -v govc >/dev/null && command -v vcsim >/dev/null; then vcsim=(-vcsim); fi
"$D/tools/vcspcheck" -state "$D/vcsp-state.json" -verify-sums "${vcsim[@]}" "$url"
echo "LXD/Incus: incus remote add site https://SITE --protocol=simplestreams (clients need https);"
echo "the catalog as the LXD and Incus clients read it (every fingerprint recomputed):"
"$D/tools/sscheck" "http://$httpaddr/" | grep -E '^(IMAGE|SUMMARY)' 

say "11. one template changes: only the delta crosses the wire, only its item's version grows"
# 4 KiB in the middle of the 2 MiB qcow2 image
head -c 4096 /dev/urandom | dd of="$L/alpine-3.20.qcow2" bs=4096 seek=256 conv=notrunc status=none
touch -d '1 hour ago' "$L/alpine-3.20.qcow2"
"$BIN/clr-publish" publish --library "$L" --base-uri ssh://127.0.0.1:2222/ \
	--cert "$P/signer.pem" --key "$P/signer.key" --hash-cache "$D/hashes.json" -o "$D/pub"
"$BIN/clr-subscribe" -U
"$BIN/clr-cache" -C "$D/cache" --ssh-key "$D/site.key" --known-hosts "$D/known_hosts" \
	--mirror "ssh://127.0.0.1:2222/=ssh://syncer@127.0.0.1:$port/" --json >"$D/run2.json"
grep -E '"(published|wire_bytes_in|wire_bytes_out|literal_bytes|matched_bytes)"' -A0 "$D/run2.json"
"$D/tools/vcspcheck" -state "$D/vcsp-state.json" "$url" | grep -E '^(library|state:)'
kill -TERM "$server" "$web"; wait "$server" "$web" || true
trap - EXIT
echo "server log:"; cat "$D/server.log"

say "the signed list ($D/pub/imagelist.json)"
cat "$D/pub/imagelist.json"
