#!/usr/bin/env bash
# mkpki.sh DIR — a throwaway CA with a CRL and one S/MIME signer, made with
# openssl, for the demo and the benchmarks:
#   DIR/ca/ca.pem, DIR/ca/ca.crl.pem (+ OpenSSL hashed names): the CA directory
#   DIR/signer.pem, DIR/signer.key: the publisher's certificate and key
set -euo pipefail
P=$1
mkdir -p "$P/ca"
cat >"$P/openssl.cnf" <<CNF
[ca]
default_ca = demo
[demo]
database = $P/index.txt
crlnumber = $P/crlnumber
default_md = sha256
default_crl_days = 7
[signer]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature,nonRepudiation
extendedKeyUsage = emailProtection
subjectAltName = email:publisher@demo.example
CNF
: >"$P/index.txt"
echo 01 >"$P/crlnumber"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -sha256 \
	-subj "/DC=example/DC=demo/O=CLR Demo/CN=CLR Demo CA" \
	-addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign" \
	-keyout "$P/ca.key" -out "$P/ca/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/DC=example/DC=demo/O=CLR Demo/CN=Demo Publisher" \
	-keyout "$P/signer.key" -out "$P/signer.csr" 2>/dev/null
openssl x509 -req -in "$P/signer.csr" -CA "$P/ca/ca.pem" -CAkey "$P/ca.key" -CAcreateserial -days 30 -sha256 \
	-extfile "$P/openssl.cnf" -extensions signer -out "$P/signer.pem" 2>/dev/null
openssl ca -config "$P/openssl.cnf" -gencrl -keyfile "$P/ca.key" -cert "$P/ca/ca.pem" -out "$P/ca/ca.crl.pem" 2>/dev/null
openssl rehash "$P/ca" >/dev/null
