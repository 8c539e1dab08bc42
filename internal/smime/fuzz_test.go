package smime

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/smallstep/pkcs7"
)

// vectorSigner returns the cloudkeeper vectors' test signer.
func vectorSigner(t testing.TB) (*x509.Certificate, crypto.Signer) {
	certs, err := ParseCertificates(readVector(t, "cloudkeeper/auth/cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ParsePrivateKey(readVector(t, "cloudkeeper/auth/key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := MatchKey(certs[0], key); err != nil {
		t.Fatal(err)
	}
	return certs[0], key
}

var sentinels = []error{ErrMalformed, ErrDigestMismatch, ErrBadSignature, ErrSignerCount, ErrNoSignerCert, ErrUnsupported, ErrTextMode}

func isSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// FuzzParse: Parse then Verify never panic, and every error is typed.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(vectorsDir, "*", "*.s*"))
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	// Sign with the vector's own test key: generating a PKI in every fuzz
	// worker (coverage-instrumented RSA key generation) takes minutes.
	cert, key := vectorSigner(f)
	signed, err := Sign([]byte(smallList), cert, key, SignOptions{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	f.Add(wholesaleCRLF(signed))
	f.Add(bytes.Replace(signed, []byte("small"), []byte("smalL"), 1))
	sd, _ := pkcs7.NewSignedData([]byte("{}\r\n"))
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(cert, key, pkcs7.SignerInfoConfig{}); err != nil {
		f.Fatal(err)
	}
	der, _ := sd.Finish()
	f.Add([]byte("Content-Type: application/pkcs7-mime; smime-type=signed-data\n\n" + b64(der)))
	f.Add([]byte("Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=b\n\n--b\nx\n--b\nContent-Type: application/pkcs7-signature\n\nMAA=\n--b--\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			if m != nil || !isSentinel(err) {
				t.Fatalf("Parse = %v, %v", m, err)
			}
			return
		}
		s, err := m.Verify()
		if err != nil {
			if s != nil || !isSentinel(err) {
				t.Fatalf("Verify = %v, %v", s, err)
			}
			return
		}
		if s.Signer == nil || len(s.Certificates) == 0 || s.Digest == 0 {
			t.Fatalf("incomplete result %+v", s)
		}
	})
}

// FuzzCanonicalize: idempotent; no bare LF; no CR left at a line end or at
// the end of the output (a CR inside a line is kept, as OpenSSL does); and
// only line endings change.
func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{"", "a\nb", "a\r\nb\r\n", "a\r\r\n", "\r", "\n\n", "a\rb\n", "x\r\r"} {
		f.Add([]byte(s))
	}
	files, _ := filepath.Glob(filepath.Join(vectorsDir, "*", "*"))
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil && len(b) < 64<<10 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out := Canonicalize(in)
		if again := Canonicalize(out); !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q -> %q", in, out, again)
		}
		for i, c := range out {
			if c == '\n' && (i == 0 || out[i-1] != '\r') {
				t.Fatalf("bare LF at %d in %q", i, out)
			}
			if c == '\r' && i+1 < len(out) && out[i+1] == '\r' && bytes.HasPrefix(out[i+1:], []byte("\r\n")) {
				t.Fatalf("CR before CRLF at %d in %q", i, out)
			}
		}
		if bytes.HasSuffix(out, []byte("\r")) {
			t.Fatalf("trailing CR in %q", out)
		}
		// Oracle, written independently of Canonicalize: every line loses
		// its trailing CRs and ends in CRLF; a CR inside a line stays.
		lines := bytes.Split(in, []byte("\n"))
		var want []byte
		for i, line := range lines {
			want = append(want, bytes.TrimRight(line, "\r")...)
			if i < len(lines)-1 {
				want = append(want, '\r', '\n')
			}
		}
		if !bytes.Equal(out, want) {
			t.Fatalf("Canonicalize(%q) = %q, want %q", in, out, want)
		}
	})
}
