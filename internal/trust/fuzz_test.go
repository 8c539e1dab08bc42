package trust

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/clr-suite/clr/internal/testpki"
)

func FuzzOneline(f *testing.F) {
	for _, tc := range onelineCases {
		f.Add(tc.raw)
	}
	f.Add([]byte{0x30, 0x80, 0x00, 0x00})
	f.Add([]byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x30, 0x03, 0x31, 0x01, 0x30})
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := Oneline(raw)
		legacy, lerr := OnelineLegacy(raw)
		if (err == nil) != (lerr == nil) {
			t.Fatalf("Oneline error %v, OnelineLegacy error %v", err, lerr)
		}
		if err != nil {
			return
		}
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] > 0x7e {
				t.Fatalf("unescaped byte %#x in %q", s[i], s)
			}
		}
		if !utf8.ValidString(s) || len(legacy) > len(s) {
			t.Fatalf("Oneline %q, legacy %q", s, legacy)
		}
		if s != "" && s[0] != '/' {
			t.Fatalf("%q does not start with /", s)
		}
	})
}

func FuzzParseSigningPolicy(f *testing.F) {
	f.Add("access_id_CA X509 '/CN=A'\npos_rights globus CA:sign\ncond_subjects globus '\"/O=A/*\" \"/O=?/*\"'\n")
	f.Add("# c\n access_id_CA\tX509\t'/C=NL/O=NIKHEF/CN=x'\r\n pos_rights globus CA:sign\r\n cond_subjects globus /O=x/*\r\n")
	f.Add("access_id_CA X509 '/CN=A'\npos_rights globus CA:sign\ncond_subjects globus '\"\"\"'\n")
	f.Add("access_id_CA X509 '")
	f.Fuzz(func(t *testing.T, in string) {
		rules, err := parseSigningPolicy([]byte(in), "f")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		if len(rules) == 0 {
			t.Fatal("no rules and no error")
		}
		for _, r := range rules {
			if r.re == nil || !r.permit || !strings.HasPrefix(r.issuer, "/") {
				t.Fatalf("bad rule %+v", r)
			}
			// Every glob matches itself when it has no wildcard.
			if !strings.ContainsAny(r.pattern, "*?") && checkNamespace([]rule{r}, r.pattern) != nil {
				t.Fatalf("literal glob %q does not match itself", r.pattern)
			}
			_ = checkNamespace([]rule{r}, in)
		}
	})
}

func FuzzParseNamespaces(f *testing.F) {
	f.Add("#NAMESPACES-VERSION: 1.0\nTO Issuer \"/CN=A\" \\\n  PERMIT Subject \"/O=A/.*\"\n")
	f.Add("to issuer self deny subject \".*\\\"x\\\"#\" # c\n")
	f.Add("TO Issuer SELF PERMIT Subject \"(a\"\n")
	f.Add("TO Issuer \"/CN=A\" PERMIT Subject \"x)|(y\"\\")
	f.Fuzz(func(t *testing.T, in string) {
		rules, err := parseNamespaces([]byte(in), "f")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		if len(rules) == 0 {
			t.Fatal("no rules and no error")
		}
		for _, r := range rules {
			if r.re == nil || r.self == (r.issuer != "") {
				t.Fatalf("bad rule %+v", r)
			}
			_ = checkNamespace([]rule{r}, in)
		}
	})
}

// FuzzParseBundle exercises the certificate and CRL file readers.
func FuzzParseBundle(f *testing.F) {
	ca, err := testpki.NewCA(testpki.Spec{Subject: "/DC=org/CN=Fuzz CA", ECDSA: true, NotBefore: ref, NotAfter: ref.Add(day)})
	if err != nil {
		f.Fatal(err)
	}
	crl, err := ca.CRL(1, ref, ref.Add(day), ca.Cert.SerialNumber)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(certPEM(ca.Cert))
	f.Add(ca.Cert.Raw)
	f.Add(testpki.CRLPEM(crl))
	f.Add(crl)
	f.Add(append(certPEM(ca.Cert), testpki.CRLPEM(crl)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := parseCerts(data)
		if err == nil && len(certs) == 0 && !strings.Contains(string(data), "CERTIFICATE") {
			t.Fatal("no certificate and no error")
		}
		for _, c := range certs {
			_ = onelineOr(c.RawSubject)
		}
		rls, err := parseCRLs(data)
		if err == nil && len(rls) == 0 && !strings.Contains(string(data), "X509 CRL") {
			t.Fatal("no CRL and no error")
		}
	})
}
