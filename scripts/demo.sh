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
#      verifies every byte against the signed list and publishes them.
# The vSphere manifests join the chain when they land.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
D=${DEMO_DIR:-.demo}
rm -rf "$D"
mkdir -p "$D/pki/ca" "$D/library/centos9-template" "$D/pub"
say() { printf '\n== %s\n' "$*"; }

say "1. throwaway CA and signer ($D/pki)"
P=$D/pki
scripts/mkpki.sh "$P"
openssl x509 -in "$P/signer.pem" -noout -subject -issuer -nameopt compat

say "2. a small template library ($D/library)"
L=$D/library
head -c 3145728 /dev/urandom >"$L/centos9-template/centos9-disk1.vmdk"
cat >"$L/centos9-template/centos9.ovf" <<'OVF'
<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References><File ovf:href="centos9-disk1.vmdk" ovf:id="file1"/></References>
</Envelope>
OVF
(cd "$L/centos9-template" && sha256sum centos9.ovf centos9-disk1.vmdk | awk '{print "SHA256(" $2 ")= " $1}' >centos9.mf)
head -c 1048576 /dev/urandom >"$L/tools.iso"
head -c 2097152 /dev/urandom >"$L/alpine-3.20.qcow2"
# A library at rest: files modified within 2 s of being hashed are hashed
# again on the next run (see docs/publish.md, "hash cache").
find "$L" -exec touch -d '1 hour ago' {} +
ls -lR "$L"

say "3. clr-publish publish (hash, build, sign)"
"$BIN/clr-publish" publish --library "$L" --base-uri ssh://127.0.0.1:2222/ \
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

say "9. clr-cache fetches the selected images from clr-server, verifies and publishes them"
# The list names ssh://127.0.0.1:2222/; the demo server got another port:
# a mirror override (any mirror is untrusted transport: the hashes are signed).
"$BIN/clr-cache" -C "$D/cache" --ssh-key "$D/site.key" --known-hosts "$D/known_hosts" \
	--mirror "ssh://127.0.0.1:2222/=ssh://syncer@127.0.0.1:$port/" \
	-x 'echo "event: $CLR_EVENT_TYPE ${CLR_EVENT_DC_TITLE:-}"' --json
ls -l "$D/cache"
"$BIN/clr-cache" -C "$D/cache" -s -v
kill -TERM "$server"; wait "$server" || true
trap - EXIT
echo "server log:"; cat "$D/server.log"

say "the signed list ($D/pub/imagelist.json)"
cat "$D/pub/imagelist.json"
