package trust

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// tlv encodes one DER element with a one-byte tag.
func tlv(tag byte, content []byte) []byte {
	n := len(content)
	var out []byte
	switch {
	case n < 0x80:
		out = []byte{tag, byte(n)}
	case n < 0x100:
		out = []byte{tag, 0x81, byte(n)}
	case n < 0x10000:
		out = []byte{tag, 0x82, byte(n >> 8), byte(n)}
	default:
		out = []byte{tag, 0x83, byte(n >> 16), byte(n >> 8), byte(n)}
	}
	return append(out, content...)
}

// oidBytes encodes the content octets of an OBJECT IDENTIFIER.
func oidBytes(dotted string) []byte {
	parts := strings.Split(dotted, ".")
	arcs := make([]*big.Int, len(parts))
	for i, p := range parts {
		arcs[i], _ = new(big.Int).SetString(p, 10)
	}
	first := new(big.Int).Mul(arcs[0], big.NewInt(40))
	first.Add(first, arcs[1])
	var out []byte
	for _, a := range append([]*big.Int{first}, arcs[2:]...) {
		var groups []byte
		v := new(big.Int).Set(a)
		for {
			groups = append([]byte{byte(new(big.Int).And(v, big.NewInt(0x7f)).Int64())}, groups...)
			v.Rsh(v, 7)
			if v.Sign() == 0 {
				break
			}
		}
		for i := 0; i < len(groups)-1; i++ {
			groups[i] |= 0x80
		}
		out = append(out, groups...)
	}
	return out
}

// av is one attribute: dotted type, value tag, value bytes.
type av struct {
	oid string
	tag byte
	val string
}

// name encodes RDNs of attributes in the given order (no DER SET sorting:
// OpenSSL keeps the encoded order, and so must Oneline).
func name(rdns ...[]av) []byte {
	var seq []byte
	for _, rdn := range rdns {
		var set []byte
		for _, a := range rdn {
			set = append(set, tlv(0x30, append(tlv(0x06, oidBytes(a.oid)), tlv(a.tag, []byte(a.val))...))...)
		}
		seq = append(seq, tlv(0x31, set)...)
	}
	return tlv(0x30, seq)
}

const (
	utf8T  = 12
	printT = 19
	t61T   = 20
	ia5T   = 22
	univT  = 28
	bmpT   = 30
	oidCN  = "2.5.4.3"
	oidOU  = "2.5.4.11"
	oidO   = "2.5.4.10"
	oidDC  = "0.9.2342.19200300.100.1.25"
	oidC   = "2.5.4.6"
	oidE   = "1.2.840.113549.1.9.1"
	oidSN  = "2.5.4.5"
)

func one(oid string, tag byte, val string) []av { return []av{{oid, tag, val}} }

var onelineCases = []struct {
	name   string
	raw    []byte
	want   string
	legacy string // OnelineLegacy, when it differs
}{
	{name: "grid DN", raw: name(one(oidDC, ia5T, "org"), one(oidDC, ia5T, "example"), one(oidO, utf8T, "Grid"), one(oidCN, utf8T, "John Doe")),
		want: "/DC=org/DC=example/O=Grid/CN=John Doe"},
	{name: "country and email", raw: name(one(oidC, printT, "NL"), one(oidCN, utf8T, "x"), one(oidE, ia5T, "x@example.org"), one(oidSN, printT, "1234")),
		want: "/C=NL/CN=x/emailAddress=x@example.org/serialNumber=1234"},
	{name: "multi-valued RDN in encoded order", raw: name(one(oidDC, ia5T, "org"), []av{{oidOU, utf8T, "B"}, {oidOU, utf8T, "A"}, {oidCN, utf8T, "c"}}),
		want: "/DC=org/OU=B+OU=A+CN=c", legacy: "/DC=org/OU=B/OU=A/CN=c"},
	{name: "UTF-8 umlaut", raw: name(one(oidO, utf8T, "Grid Ümlaut")), want: `/O=Grid \xC3\x9Cmlaut`},
	{name: "slash and plus in a value", raw: name(one(oidCN, utf8T, "a/b+c")), want: `/CN=a\/b\+c`, legacy: "/CN=a/b+c"},
	{name: "spaces, equals, backslash, comma, quotes", raw: name(one(oidCN, utf8T, ` a = b\c, "d" 'e' `)), want: `/CN= a = b\c, "d" 'e' `},
	{name: "control characters and DEL", raw: name(one(oidCN, utf8T, "a\x00b\x1fc\x7fd\te\n")), want: `/CN=a\x00b\x1Fc\x7Fd\x09e\x0A`},
	{name: "empty value", raw: name(one(oidCN, utf8T, "")), want: "/CN="},
	{name: "T61String byte", raw: name(one(oidCN, t61T, "caf\xe9")), want: `/CN=caf\xE9`},
	{name: "BMPString is not decoded", raw: name(one(oidCN, bmpT, "\x00A\x00\xdc\x00/")), want: `/CN=\x00A\x00\xDC\x00\/`, legacy: `/CN=\x00A\x00\xDC\x00/`},
	{name: "UniversalString is not decoded", raw: name(one(oidCN, univT, "\x00\x00\x00A")), want: `/CN=\x00\x00\x00A`},
	{name: "unknown type in dotted form", raw: name(one("1.2.3.4.5", utf8T, "x")), want: "/1.2.3.4.5=x"},
	{name: "long OID cut at 79 characters", raw: name(one("1.2.3.4.5.1234567890.1234567890.1234567890.1234567890.1234567890.1234567890.1234567890", utf8T, "x")),
		want: "/1.2.3.4.5.1234567890.1234567890.1234567890.1234567890.1234567890.1234567890.123=x"},
	{name: "first arc 2 with a large second arc", raw: name(one("2.999.3", utf8T, "x")), want: "/2.999.3=x"},
	{name: "arc beyond 64 bits", raw: name(one("1.3.123456789012345678901234567890", utf8T, "x")), want: "/1.3.123456789012345678901234567890=x"},
	{name: "DN qualifier, title, given name", raw: name(one("2.5.4.46", printT, "q"), one("2.5.4.12", utf8T, "Dr"), one("2.5.4.42", utf8T, "G"), one("2.5.4.4", utf8T, "S"), one("0.9.2342.19200300.100.1.1", utf8T, "uid")),
		want: "/dnQualifier=q/title=Dr/GN=G/SN=S/UID=uid"},
	{name: "empty RDN set", raw: name(one(oidCN, utf8T, "a"), nil, one(oidCN, utf8T, "b")), want: "/CN=a/CN=b"},
	{name: "empty name", raw: name(), want: ""},
}

func TestOneline(t *testing.T) {
	for _, tc := range onelineCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Oneline(tc.raw)
			if err != nil || got != tc.want {
				t.Errorf("Oneline = %q, %v; want %q", got, err, tc.want)
			}
			want := tc.legacy
			if want == "" {
				want = tc.want
			}
			if got, err := OnelineLegacy(tc.raw); err != nil || got != want {
				t.Errorf("OnelineLegacy = %q, %v; want %q", got, err, want)
			}
		})
	}
}

func TestOnelineErrors(t *testing.T) {
	good := name(one(oidCN, utf8T, "x"))
	tests := []struct {
		name string
		raw  []byte
		frag string
	}{
		{"nil", nil, "truncated"},
		{"trailing bytes", append(append([]byte{}, good...), 0), "trailing bytes"},
		{"SET instead of SEQUENCE", tlv(0x31, nil), "not a SEQUENCE"},
		{"RDN not a SET", tlv(0x30, tlv(0x30, nil)), "not a SET"},
		{"OCTET STRING value", name(one(oidCN, 0x04, "x")), "unsupported value type"},
		{"GeneralString value", name(one(oidCN, 0x1b, "x")), "unsupported value type"},
		{"VisibleString value", name(one(oidCN, 0x1a, "x")), "unsupported value type"},
		{"constructed value", name(one(oidCN, 0x30, "")), "unsupported value type"},
		{"indefinite length", []byte{0x30, 0x80, 0, 0}, "indefinite length"},
		{"non-minimal length", []byte{0x30, 0x81, 0x00}, "not minimally encoded"},
		{"length beyond input", []byte{0x30, 0x05, 0x31}, "truncated"},
		{"empty OID", tlv(0x30, tlv(0x31, tlv(0x30, append(tlv(0x06, nil), tlv(utf8T, []byte("x"))...)))), "empty OBJECT IDENTIFIER"},
		{"OID arc with 0x80 padding", tlv(0x30, tlv(0x31, tlv(0x30, append(tlv(0x06, []byte{0x55, 0x80, 0x04}), tlv(utf8T, []byte("x"))...)))), "not minimally encoded"},
		{"truncated OID", tlv(0x30, tlv(0x31, tlv(0x30, append(tlv(0x06, []byte{0x55, 0x84}), tlv(utf8T, []byte("x"))...)))), "truncated OBJECT IDENTIFIER"},
		{"type not an OID", tlv(0x30, tlv(0x31, tlv(0x30, append(tlv(0x0c, []byte("x")), tlv(utf8T, []byte("x"))...)))), "not an OBJECT IDENTIFIER"},
		{"missing value", tlv(0x30, tlv(0x31, tlv(0x30, tlv(0x06, oidBytes(oidCN))))), "attribute value"},
		{"extra element in AVA", tlv(0x30, tlv(0x31, tlv(0x30, append(append(tlv(0x06, oidBytes(oidCN)), tlv(utf8T, []byte("x"))...), tlv(utf8T, []byte("y"))...)))), "trailing bytes after the attribute value"},
		{"empty BIT STRING", name(one("2.5.4.45", 0x03, "")), "empty BIT STRING"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Oneline(tc.raw)
			if err == nil || !strings.Contains(err.Error(), tc.frag) {
				t.Fatalf("Oneline = %q, %v; want an error with %q", got, err, tc.frag)
			}
		})
	}
}

// opensslSubject writes a self-signed certificate with the given raw
// subject and returns what `openssl x509 -noout -subject -nameopt compat`
// prints after "subject=" (ok false if OpenSSL refuses the certificate).
func opensslSubject(t *testing.T, raw []byte) (string, bool) {
	t.Helper()
	requireOpenSSL(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), RawSubject: raw, NotBefore: ref, NotAfter: ref.Add(day)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	file := filepath.Join(t.TempDir(), "c.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return opensslSubjectOf(t, file)
}

func opensslSubjectOf(t *testing.T, file string) (string, bool) {
	t.Helper()
	out, err := execOpenSSL(t, "x509", "-in", file, "-noout", "-subject", "-nameopt", "compat")
	if err != nil {
		return "", false
	}
	s, ok := strings.CutPrefix(strings.TrimRight(out, "\n"), "subject=")
	if !ok {
		t.Fatalf("unexpected openssl output %q", out)
	}
	return s, true
}

func TestOnelineMatchesOpenSSL(t *testing.T) {
	for _, tc := range onelineCases {
		t.Run(tc.name, func(t *testing.T) {
			want, ok := opensslSubject(t, tc.raw)
			if !ok {
				t.Fatalf("openssl refused the name")
			}
			if got, _ := Oneline(tc.raw); got != want {
				t.Errorf("Oneline = %q, openssl prints %q", got, want)
			}
		})
	}
	// A BIT STRING value (x500UniqueIdentifier): OpenSSL prints the bits
	// without the unused-bits octet.
	raw := name(one("2.5.4.45", 0x03, "\x00AB"))
	want, ok := opensslSubject(t, raw)
	if got, err := Oneline(raw); !ok || err != nil || got != want {
		t.Errorf("BIT STRING: Oneline = %q, %v; openssl %q (ok %v)", got, err, want, ok)
	}
	// Values OpenSSL refuses to load are errors for Oneline too.
	for _, tag := range []byte{0x04, 0x1a, 0x1b} {
		raw := name(one(oidCN, tag, "x"))
		if _, ok := opensslSubject(t, raw); ok {
			t.Errorf("openssl accepts value tag %d, Oneline does not", tag)
		}
	}
}

// TestOnelineAllKnownTypes renders one name holding every attribute type of
// the OpenSSL name table and compares it with openssl.
func TestOnelineAllKnownTypes(t *testing.T) {
	oids := make([]string, 0, len(opensslShortNames))
	for oid := range opensslShortNames {
		oids = append(oids, oid)
	}
	sort.Strings(oids)
	var rdns [][]av
	for i, oid := range oids {
		rdns = append(rdns, one(oid, utf8T, "v"+strconv.Itoa(i)))
	}
	raw := name(rdns...)
	want, ok := opensslSubject(t, raw)
	if !ok {
		t.Fatal("openssl refused the name")
	}
	got, err := Oneline(raw)
	if err != nil || got != want {
		gotParts, wantParts := strings.Split(got, "/"), strings.Split(want, "/")
		for i := range gotParts {
			if i < len(wantParts) && gotParts[i] != wantParts[i] {
				t.Errorf("attribute %d: Oneline %q, openssl %q", i, gotParts[i], wantParts[i])
			}
		}
		t.Fatalf("Oneline = %q, %v\nopenssl  %q", got, err, want)
	}
}

// TestOnelineOpenSSLReq compares certificates made by `openssl req -subj`
// (parsed by crypto/x509, as the verifier sees them) and by testpki.
func TestOnelineOpenSSLReq(t *testing.T) {
	requireOpenSSL(t)
	subjects := []string{
		`/DC=org/DC=example/O=Grid Ümlaut/OU=A+OU=B/CN=a\/b c=d/emailAddress=a@b.c/serialNumber=123`,
		`/C=DE/O=GermanGrid/OU=KIT/CN=Jörg Müller`,
		`/DC=EU/DC=EGI/C=NL/O=Hosts/O=EGI.eu/CN=appdb.egi.eu`,
		`/CN=x+UID=y/title=T/GN=G/SN=S/street=St/L=Town/ST=State/postalCode=123/name=N/initials=I/pseudonym=P/dnQualifier=Q/description=D/businessCategory=B/jurisdictionC=DE/organizationIdentifier=OI`,
		`/CN=  spaces  /O=a=b,c`,
	}
	for i, subj := range subjects {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "c.pem")
			runOpenSSL(t, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
				"-keyout", filepath.Join(dir, "k.pem"), "-out", file, "-days", "1", "-utf8", "-multivalue-rdn", "-subj", subj)
			want, ok := opensslSubjectOf(t, file)
			if !ok {
				t.Fatal("openssl cannot read its own certificate")
			}
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			block, _ := pem.Decode(data)
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := Oneline(c.RawSubject); err != nil || got != want {
				t.Errorf("Oneline = %q, %v; openssl %q", got, err, want)
			}
		})
	}
	// testpki.ParseDN goes through encoding/asn1, which sorts the members
	// of a multi-valued RDN (DER SET OF order), so only openssl is the
	// reference there.
	for _, subj := range []string{"/DC=org/DC=clr-test/O=Test Grid/OU=A+OU=B+CN=C/emailAddress=e@x.org/serialNumber=7", "/C=AU/ST=Some-State/O=Internet Widgits Pty Ltd/UID=u"} {
		raw := dn(t, subj)
		want, ok := opensslSubject(t, raw)
		if got, err := Oneline(raw); !ok || err != nil || got != want || (!strings.Contains(subj, "+") && got != subj) {
			t.Errorf("testpki %q: Oneline %q, %v; openssl %q", subj, got, err, want)
		}
	}
}
