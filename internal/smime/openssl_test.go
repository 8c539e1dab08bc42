package smime

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// opensslContent returns what `openssl smime -verify -noverify` outputs as
// the signed content of the message file, or an error if it refuses it.
func opensslContent(t testing.TB, file string) ([]byte, error) {
	t.Helper()
	out := file + ".out"
	if _, err := opensslErr(filepath.Dir(file), "smime", "-verify", "-noverify", "-in", file, "-out", out); err != nil {
		return nil, err
	}
	return os.ReadFile(out)
}

// wholesaleLF removes every CR (dos2unix-like `tr -d '\r'`); wholesaleCRLF
// then turns every LF into CRLF (unix2dos).
func wholesaleLF(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\r"), nil) }
func wholesaleCRLF(b []byte) []byte {
	return bytes.ReplaceAll(wholesaleLF(b), []byte("\n"), []byte("\r\n"))
}

// Lists signed by the openssl CLI parse and verify, and Content is exactly
// what `openssl smime -verify -noverify -out` prints, also after the whole
// file is converted to LF or CRLF.
func TestOpenSSLSignedVerify(t *testing.T) {
	needOpenSSL(t)
	p := testPKI(t)
	big := bigList()
	oneLine := bytes.ReplaceAll(big, []byte("\n"), nil)
	signer := []string{"-signer", filepath.Join(p.Dir, "signer.pem"), "-inkey", filepath.Join(p.Dir, "signer.key")}
	ec := []string{"-signer", filepath.Join(p.Dir, "ec.pem"), "-inkey", filepath.Join(p.Dir, "ec.key")}
	expired := []string{"-signer", filepath.Join(p.Dir, "expired.pem"), "-inkey", filepath.Join(p.Dir, "expired.key")}
	tests := []struct {
		name    string
		content []byte
		args    []string // the openssl command without -in/-out
		digest  crypto.Hash
		opaque  bool
		cert    *x509.Certificate
		bareCR  bool // content has a CR inside a line: wholesale LF conversion changes it
	}{
		{"smime sha1", []byte(smallList), cat([]string{"smime", "-sign", "-md", "sha1"}, signer), crypto.SHA1, false, p.Signer.Cert, false},
		{"smime sha256", []byte(smallList), cat([]string{"smime", "-sign", "-md", "sha256"}, signer), crypto.SHA256, false, p.Signer.Cert, false},
		{"smime sha384", []byte(smallList), cat([]string{"smime", "-sign", "-md", "sha384"}, signer), crypto.SHA384, false, p.Signer.Cert, false},
		{"smime sha512", []byte(smallList), cat([]string{"smime", "-sign", "-md", "sha512"}, signer), crypto.SHA512, false, p.Signer.Cert, false},
		{"smime default digest", []byte(smallList), cat([]string{"smime", "-sign"}, signer), crypto.SHA256, false, p.Signer.Cert, false},
		{"cms sha512 (protocol without x-)", []byte(smallList), cat([]string{"cms", "-sign", "-md", "sha512"}, signer), crypto.SHA512, false, p.Signer.Cert, false},
		{"ecdsa sha512", []byte(smallList), cat([]string{"smime", "-sign", "-md", "sha512"}, ec), crypto.SHA512, false, p.EC.Cert, false},
		{"cms ecdsa sha256", []byte(smallList), cat([]string{"cms", "-sign", "-md", "sha256"}, ec), crypto.SHA256, false, p.EC.Cert, false},
		{"expired signer", []byte(smallList), cat([]string{"smime", "-sign", "-md", "sha512"}, expired), crypto.SHA512, false, p.Expired.Cert, false},
		{"nodetach", []byte(smallList), cat([]string{"smime", "-sign", "-nodetach", "-md", "sha256"}, signer), crypto.SHA256, true, p.Signer.Cert, false},
		{"nodetach 90k", big, cat([]string{"smime", "-sign", "-nodetach", "-md", "sha512"}, signer), crypto.SHA512, true, p.Signer.Cert, false},
		{"nodetach stream 90k (ber, chunked)", big, cat([]string{"smime", "-sign", "-nodetach", "-stream", "-md", "sha512"}, signer), crypto.SHA512, true, p.Signer.Cert, false},
		{"cms nodetach stream 90k", big, cat([]string{"cms", "-sign", "-nodetach", "-stream", "-md", "sha256"}, ec), crypto.SHA256, true, p.EC.Cert, false},
		{"detached 90k", big, cat([]string{"smime", "-sign", "-md", "sha512"}, signer), crypto.SHA512, false, p.Signer.Cert, false},
		{"one 90k line", oneLine, cat([]string{"smime", "-sign", "-md", "sha512"}, signer), crypto.SHA512, false, p.Signer.Cert, false},
		{"no trailing newline", []byte("{\n  \"a\": 1\n}"), cat([]string{"smime", "-sign"}, signer), crypto.SHA256, false, p.Signer.Cert, false},
		{"trailing spaces", []byte("{  \n  \"a\": 1, \t\n}  \n"), cat([]string{"smime", "-sign"}, signer), crypto.SHA256, false, p.Signer.Cert, false},
		{"blank lines at end", []byte("{}\n\n\n\n"), cat([]string{"smime", "-sign"}, signer), crypto.SHA256, false, p.Signer.Cert, false},
		{"crlf content", []byte("{\r\n  \"a\": 1\r\n}\r\n"), cat([]string{"smime", "-sign"}, signer), crypto.SHA256, false, p.Signer.Cert, false},
		{"mixed content", []byte("{\r\n  \"a\": 1\n}\r\r\n"), cat([]string{"smime", "-sign"}, signer), crypto.SHA256, false, p.Signer.Cert, false},
		{"bare cr inside a line", []byte("{\"a\":\r1}\n"), cat([]string{"smime", "-sign"}, signer), crypto.SHA256, false, p.Signer.Cert, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			in := writeFile(t, dir, "list.json", tt.content)
			signed := filepath.Join(dir, "signed.smime")
			openssl(t, dir, cat(tt.args, []string{"-in", in, "-out", signed})...)
			orig, err := os.ReadFile(signed)
			if err != nil {
				t.Fatal(err)
			}
			want, err := opensslContent(t, signed)
			if err != nil {
				t.Fatalf("openssl rejects its own output: %v", err)
			}
			variants := []struct {
				name string
				data []byte
			}{
				{"as written", orig},
				{"wholesale LF", wholesaleLF(orig)},
				{"wholesale CRLF", wholesaleCRLF(orig)},
			}
			for _, v := range variants {
				file := writeFile(t, dir, strings.ReplaceAll(v.name, " ", "_")+".smime", v.data)
				osslOut, osslErr := opensslContent(t, file)
				m, err := Parse(v.data)
				if err != nil {
					t.Fatalf("%s: Parse: %v", v.name, err)
				}
				s, err := m.Verify()
				if osslErr != nil {
					// Only a CR inside a line is lost by the conversion;
					// then both must refuse the message.
					if !tt.bareCR || v.name == "as written" {
						t.Fatalf("%s: openssl refuses: %v", v.name, osslErr)
					}
					if !errors.Is(err, ErrDigestMismatch) {
						t.Fatalf("%s: openssl refuses, Verify = %v, want ErrDigestMismatch", v.name, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: Verify: %v", v.name, err)
				}
				if !bytes.Equal(s.Content, osslOut) || !bytes.Equal(s.Content, want) {
					t.Fatalf("%s: content differs from openssl's output\n go:      %q\n openssl: %q", v.name, trunc(s.Content), trunc(osslOut))
				}
				if m.Opaque != tt.opaque || s.Digest != tt.digest || !s.Signer.Equal(tt.cert) {
					t.Errorf("%s: opaque %v digest %v signer %s", v.name, m.Opaque, s.Digest, s.Signer.Subject)
				}
				if s.SigningTime.IsZero() {
					t.Errorf("%s: no signing time", v.name)
				}
			}
			if !tt.opaque && !bytes.Equal(want, Canonicalize(tt.content)) {
				t.Errorf("openssl signed %q, Canonicalize gives %q", trunc(want), trunc(Canonicalize(tt.content)))
			}
		})
	}
}

func trunc(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

func cat(a, b []string) []string { return append(append([]string(nil), a...), b...) }

// Lists signed by Sign verify with `openssl smime -verify -CApath -crl_check`
// and `openssl cms -verify`, which output exactly Canonicalize(input).
func TestSignOpenSSLVerify(t *testing.T) {
	needOpenSSL(t)
	p := testPKI(t)
	ca := filepath.Join(p.Dir, "ca")
	chainCA := filepath.Join(p.Dir, "chainca")
	big := bigList()
	tests := []struct {
		name    string
		content []byte
		cert    *x509.Certificate
		key     crypto.Signer
		opts    SignOptions
		capath  string
		micalg  string
	}{
		{"default sha512", []byte(smallList), p.Signer.Cert, p.Signer.Key, SignOptions{}, ca, "sha-512"},
		{"sha256", []byte(smallList), p.Signer.Cert, p.Signer.Key, SignOptions{Digest: crypto.SHA256}, ca, "sha-256"},
		{"sha384", []byte(smallList), p.Signer.Cert, p.Signer.Key, SignOptions{Digest: crypto.SHA384}, ca, "sha-384"},
		{"sha1", []byte(smallList), p.Signer.Cert, p.Signer.Key, SignOptions{Digest: crypto.SHA1}, ca, "sha1"},
		{"ecdsa", []byte(smallList), p.EC.Cert, p.EC.Key, SignOptions{}, ca, "sha-512"},
		{"chain cert", []byte(smallList), p.Leaf.Cert, p.Leaf.Key, SignOptions{Chain: []*x509.Certificate{p.Inter.Cert}}, chainCA, "sha-512"},
		{"90k", big, p.Signer.Cert, p.Signer.Key, SignOptions{}, ca, "sha-512"},
		{"no trailing newline", []byte("{\n}"), p.Signer.Cert, p.Signer.Key, SignOptions{}, ca, "sha-512"},
		{"trailing spaces, blank lines", []byte("{ \n} \t\n\n\n"), p.Signer.Cert, p.Signer.Key, SignOptions{}, ca, "sha-512"},
		{"crlf and mixed", []byte("{\r\n\"a\": 1\n}\r\r\n"), p.Signer.Cert, p.Signer.Key, SignOptions{}, ca, "sha-512"},
		{"bare cr inside a line", []byte("{\"a\":\r1}\n"), p.Signer.Cert, p.Signer.Key, SignOptions{}, ca, "sha-512"},
		{"empty", nil, p.Signer.Cert, p.Signer.Key, SignOptions{}, ca, "sha-512"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			signed, err := Sign(tt.content, tt.cert, tt.key, tt.opts)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if !bytes.Contains(signed, []byte(`micalg="`+tt.micalg+`"`)) {
				t.Errorf("micalg %q missing", tt.micalg)
			}
			file := writeFile(t, dir, "signed.smime", signed)
			want := Canonicalize(tt.content)
			for _, cmd := range []string{"smime", "cms"} {
				out := filepath.Join(dir, cmd+".out")
				openssl(t, dir, cmd, "-verify", "-CApath", tt.capath, "-crl_check", "-in", file, "-out", out)
				got, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("openssl %s -verify output %q, want %q", cmd, trunc(got), trunc(want))
				}
			}
			s, err := mustParse(t, signed).Verify()
			if err != nil || !bytes.Equal(s.Content, want) {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
	// Sanity: the same openssl command rejects a revoked signer, so the
	// checks above really ran against the CRL.
	dir := t.TempDir()
	signed, err := Sign([]byte(smallList), p.Revoked.Cert, p.Revoked.Key, SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	file := writeFile(t, dir, "revoked.smime", signed)
	if _, err := opensslErr(dir, "smime", "-verify", "-CApath", ca, "-crl_check", "-in", file, "-out", filepath.Join(dir, "out")); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("openssl accepted a revoked signer: %v", err)
	}
	// ... but Verify (signature level only) accepts it.
	if _, err := mustParse(t, signed).Verify(); err != nil {
		t.Errorf("Verify of a revoked signer's list: %v", err)
	}
}

// Messages openssl can make that clr must refuse, with the error it gives.
func TestOpenSSLRejected(t *testing.T) {
	needOpenSSL(t)
	p := testPKI(t)
	signer := []string{"-signer", filepath.Join(p.Dir, "signer.pem"), "-inkey", filepath.Join(p.Dir, "signer.key")}
	ec := []string{"-signer", filepath.Join(p.Dir, "ec.pem"), "-inkey", filepath.Join(p.Dir, "ec.key")}
	tests := []struct {
		name      string
		args      []string
		edit      func([]byte) []byte // applied to the signed file
		editMsg   func(*Message)      // applied to the parsed message
		parseErr  error               // expected from Parse, or nil
		verifyErr error               // expected from Verify
	}{
		{"tampered content", cat([]string{"smime", "-sign"}, signer),
			func(b []byte) []byte { return bytes.Replace(b, []byte("small"), []byte("smalL"), 1) }, nil, nil, ErrDigestMismatch},
		{"tampered opaque content", cat([]string{"smime", "-sign", "-nodetach"}, signer), nil,
			func(m *Message) { m.Content = bytes.Replace(m.Content, []byte("small"), []byte("smalL"), 1) }, nil, ErrDigestMismatch},
		{"two signers", cat(cat([]string{"cms", "-sign"}, signer), ec), nil, nil, nil, ErrSignerCount},
		{"nocerts", cat([]string{"smime", "-sign", "-nocerts"}, signer), nil, nil, nil, ErrNoSignerCert},
		{"text mode", cat([]string{"smime", "-sign", "-text"}, signer), nil, nil, ErrTextMode, nil},
		{"text mode opaque", cat([]string{"smime", "-sign", "-text", "-nodetach"}, signer), nil, nil, ErrTextMode, nil},
		{"rsa-pss", cat(cat([]string{"cms", "-sign"}, signer), []string{"-keyopt", "rsa_padding_mode:pss"}), nil, nil, nil, ErrUnsupported},
		{"sha224", cat([]string{"smime", "-sign", "-md", "sha224"}, signer), nil, nil, nil, ErrUnsupported},
		// -binary signs the raw LF bytes; like `openssl smime -verify`, the
		// reader canonicalises the clear-signed part, so the digest fails.
		{"binary", cat([]string{"smime", "-sign", "-binary"}, signer), nil, nil, nil, ErrDigestMismatch},
		{"truncated", cat([]string{"smime", "-sign"}, signer),
			func(b []byte) []byte { return b[:len(b)*2/3] }, nil, ErrMalformed, nil},
		{"enveloped", []string{"smime", "-encrypt", "-aes256", filepath.Join(p.Dir, "signer.pem")}, nil, nil, ErrMalformed, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			in := writeFile(t, dir, "list.json", []byte(smallList))
			file := filepath.Join(dir, "signed.smime")
			// -in/-out right after the command: positional arguments last.
			openssl(t, dir, cat(cat(tt.args[:1], []string{"-in", in, "-out", file}), tt.args[1:])...)
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if tt.edit != nil {
				data = tt.edit(data)
			}
			m, err := Parse(data)
			if tt.parseErr != nil {
				if !errors.Is(err, tt.parseErr) {
					t.Fatalf("Parse = %v, want %v", err, tt.parseErr)
				}
				t.Logf("Parse: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tt.editMsg != nil {
				tt.editMsg(m)
			}
			_, err = m.Verify()
			if !errors.Is(err, tt.verifyErr) {
				t.Fatalf("Verify = %v, want %v", err, tt.verifyErr)
			}
			if strings.Contains(tt.name, "binary") != strings.Contains(err.Error(), "-binary") {
				t.Errorf("-binary hint wrong: %v", err)
			}
			t.Logf("Verify: %v", err)
		})
	}
}

// The signed vectors give the same content as openssl.
func TestVectorsMatchOpenSSL(t *testing.T) {
	needOpenSSL(t)
	for _, name := range []string{
		"cloudkeeper/imagelist01.signed",
		"cloudkeeper/imagelist04.signed",
		"hepixvmitrust/readme_example_signed.smime",
		"hepix-book/book_example_reconstructed_deprecated_format.smime",
	} {
		t.Run(name, func(t *testing.T) {
			path, err := filepath.Abs(filepath.Join(vectorsDir, name))
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "out")
			openssl(t, filepath.Dir(out), "smime", "-verify", "-noverify", "-in", path, "-out", out)
			want, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			s, err := mustParse(t, readVector(t, name)).Verify()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(s.Content, want) {
				t.Errorf("content differs from openssl's")
			}
		})
	}
}

// Keys written by openssl: traditional and PKCS#8 forms, encrypted or not.
func TestOpenSSLKeys(t *testing.T) {
	needOpenSSL(t)
	p := testPKI(t)
	dir := t.TempDir()
	rsaKey := filepath.Join(p.Dir, "signer.key")
	ecKey := filepath.Join(p.Dir, "ec.key")
	tests := []struct {
		name string
		args []string
		cert *x509.Certificate
		err  error
	}{
		{"pkcs1", []string{"rsa", "-in", rsaKey, "-traditional"}, p.Signer.Cert, nil},
		{"sec1", []string{"ec", "-in", ecKey}, p.EC.Cert, nil},
		{"pkcs8 rsa", []string{"pkey", "-in", rsaKey}, p.Signer.Cert, nil},
		{"pkcs8 encrypted", []string{"pkey", "-in", rsaKey, "-aes256", "-passout", "pass:secret"}, nil, ErrEncryptedKey},
		{"pkcs1 encrypted", []string{"rsa", "-in", rsaKey, "-traditional", "-aes256", "-passout", "pass:secret"}, nil, ErrEncryptedKey},
		{"sec1 encrypted", []string{"ec", "-in", ecKey, "-aes256", "-passout", "pass:secret"}, nil, ErrEncryptedKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pemData := openssl(t, dir, tt.args...)
			key, err := ParsePrivateKey(pemData)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("ParsePrivateKey = %v, want %v\n%s", err, tt.err, pemData[:60])
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := MatchKey(tt.cert, key); err != nil {
				t.Fatal(err)
			}
		})
	}
	// A key generated with `openssl ecparam -genkey` (EC PARAMETERS block first).
	pemData := openssl(t, dir, "ecparam", "-genkey", "-name", "prime256v1")
	if _, err := ParsePrivateKey(pemData); err != nil {
		t.Errorf("ecparam -genkey output: %v", err)
	}
}
