package smime

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/smallstep/pkcs7"
)

// mustSign signs content with the fixture signer.
func mustSign(t testing.TB, content []byte, opts SignOptions) []byte {
	t.Helper()
	p := testPKI(t)
	out, err := Sign(content, p.Signer.Cert, p.Signer.Key, opts)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return out
}

func TestSignRoundTrip(t *testing.T) {
	p := testPKI(t)
	tests := []struct {
		name   string
		digest crypto.Hash
		want   crypto.Hash
		micalg string
		id     func() (*x509.Certificate, crypto.Signer, []*x509.Certificate)
	}{
		{"default", 0, crypto.SHA512, "sha-512", nil},
		{"sha256", crypto.SHA256, crypto.SHA256, "sha-256", nil},
		{"sha384", crypto.SHA384, crypto.SHA384, "sha-384", nil},
		{"sha1", crypto.SHA1, crypto.SHA1, "sha1", nil},
		{"ecdsa", 0, crypto.SHA512, "sha-512", func() (*x509.Certificate, crypto.Signer, []*x509.Certificate) {
			return p.EC.Cert, p.EC.Key, nil
		}},
		{"chain", crypto.SHA256, crypto.SHA256, "sha-256", func() (*x509.Certificate, crypto.Signer, []*x509.Certificate) {
			return p.Leaf.Cert, p.Leaf.Key, []*x509.Certificate{p.Inter.Cert, p.Leaf.Cert}
		}},
		// Verify makes no time decision: an expired signer still verifies.
		{"expired signer", 0, crypto.SHA512, "sha-512", func() (*x509.Certificate, crypto.Signer, []*x509.Certificate) {
			return p.Expired.Cert, p.Expired.Key, nil
		}},
	}
	contents := map[string]string{
		"list":          smallList,
		"empty":         "",
		"no newline":    "{}",
		"crlf":          "a\r\nb\r\n",
		"blank at end":  "{}\n\n\n",
		"bare cr":       "a\rb\n",
		"delimiter-ish": "------\n--\n",
	}
	for _, tt := range tests {
		for cname, content := range contents {
			t.Run(tt.name+"/"+cname, func(t *testing.T) {
				cert, key, chain := p.Signer.Cert, crypto.Signer(p.Signer.Key), []*x509.Certificate(nil)
				if tt.id != nil {
					cert, key, chain = tt.id()
				}
				out, err := Sign([]byte(content), cert, key, SignOptions{Digest: tt.digest, Chain: chain})
				if err != nil {
					t.Fatalf("Sign: %v", err)
				}
				if !strings.Contains(string(out), `micalg="`+tt.micalg+`"`) {
					t.Errorf("micalg %q missing from %q", tt.micalg, out[:200])
				}
				m, err := Parse(out)
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if m.MicAlg != tt.micalg || m.Opaque {
					t.Errorf("MicAlg %q Opaque %v", m.MicAlg, m.Opaque)
				}
				s, err := m.Verify()
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if want := Canonicalize([]byte(content)); !bytes.Equal(s.Content, want) {
					t.Errorf("content %q, want %q", s.Content, want)
				}
				if s.Digest != tt.want {
					t.Errorf("digest %v, want %v", s.Digest, tt.want)
				}
				if !s.Signer.Equal(cert) {
					t.Errorf("signer %s, want %s", s.Signer.Subject, cert.Subject)
				}
				if len(s.Certificates) != 1+len(chain)-countEqual(chain, cert) {
					t.Errorf("%d embedded certificates", len(s.Certificates))
				}
				if s.SigningTime.IsZero() {
					t.Errorf("no signing time")
				}
			})
		}
	}
}

func countEqual(list []*x509.Certificate, c *x509.Certificate) int {
	n := 0
	for _, x := range list {
		if x.Equal(c) {
			n++
		}
	}
	return n
}

// The layout matches `openssl smime -sign` byte for byte apart from the
// boundary and the signature.
func TestSignLayout(t *testing.T) {
	out := mustSign(t, []byte("a\nb\n"), SignOptions{})
	re := regexp.MustCompile(`\A` +
		`MIME-Version: 1\.0\n` +
		`Content-Type: multipart/signed; protocol="application/x-pkcs7-signature"; micalg="sha-512"; boundary="(----[0-9A-F]{32})"\n` +
		`\n` +
		`This is an S/MIME signed message\n` +
		`\n` +
		`--(----[0-9A-F]{32})\n` +
		`a\r\nb\r\n` +
		`\n` +
		`--(----[0-9A-F]{32})\n` +
		`Content-Type: application/x-pkcs7-signature; name="smime\.p7s"\n` +
		`Content-Transfer-Encoding: base64\n` +
		`Content-Disposition: attachment; filename="smime\.p7s"\n` +
		`\n` +
		`((?:[A-Za-z0-9+/]{64}\n)*[A-Za-z0-9+/]{1,63}=*\n)` +
		`\n` +
		`--(----[0-9A-F]{32})--\n` +
		`\n\z`)
	sm := re.FindSubmatch(out)
	if sm == nil {
		t.Fatalf("layout differs:\n%s", out)
	}
	for _, b := range sm[2:4] {
		if !bytes.Equal(b, sm[1]) {
			t.Errorf("boundary %q != %q", b, sm[1])
		}
	}
	if !bytes.Equal(sm[5], sm[1]) {
		t.Errorf("closing boundary %q != %q", sm[5], sm[1])
	}
	if other := mustSign(t, []byte("a\nb\n"), SignOptions{}); bytes.Contains(other, sm[1]) {
		t.Errorf("boundary not random")
	}
}

func TestSignErrors(t *testing.T) {
	p := testPKI(t)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name    string
		content string
		cert    *x509.Certificate
		key     crypto.Signer
		opts    SignOptions
		want    error
	}{
		{"key mismatch", "x", p.Signer.Cert, p.EC.Key, SignOptions{}, ErrKeyMismatch},
		{"key of another rsa cert", "x", p.Signer.Cert, p.Revoked.Key, SignOptions{}, ErrKeyMismatch},
		{"sha224", "x", p.Signer.Cert, p.Signer.Key, SignOptions{Digest: crypto.SHA224}, ErrUnsupported},
		{"md5", "x", p.Signer.Cert, p.Signer.Key, SignOptions{Digest: crypto.MD5}, ErrUnsupported},
		{"ed25519", "x", p.Signer.Cert, edKey, SignOptions{}, ErrKeyMismatch},
		{"text mode content", "Content-Type: text/plain\n\n{}", p.Signer.Cert, p.Signer.Key, SignOptions{}, ErrTextMode},
		{"nil chain cert", "x", p.Signer.Cert, p.Signer.Key, SignOptions{Chain: []*x509.Certificate{nil}}, nil},
		{"nil cert", "x", nil, p.Signer.Key, SignOptions{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Sign([]byte(tt.content), tt.cert, tt.key, tt.opts)
			if err == nil {
				t.Fatalf("Sign succeeded: %s", out)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
		})
	}
}

func TestVerifyErrors(t *testing.T) {
	p := testPKI(t)
	content := []byte(smallList)
	signed := mustSign(t, content, SignOptions{})
	m, err := Parse(signed)
	if err != nil {
		t.Fatal(err)
	}
	// For RSA without unsigned attributes the SignerInfo's encryptedDigest
	// (256 bytes for RSA-2048) is the tail of the DER.
	badSig := bytes.Clone(m.Signature)
	badSig[len(badSig)-10] ^= 0xff

	tampered := bytes.Replace(signed, []byte("small"), []byte("smalL"), 1)

	// An attached (opaque) SignedData.
	sd, _ := pkcs7.NewSignedData(content)
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(p.Signer.Cert, p.Signer.Key, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	der, _ := sd.Finish()
	// Two signers.
	two, _ := pkcs7.NewSignedData(content)
	two.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	_ = two.AddSigner(p.Signer.Cert, p.Signer.Key, pkcs7.SignerInfoConfig{})
	_ = two.AddSigner(p.EC.Cert, p.EC.Key, pkcs7.SignerInfoConfig{})
	two.Detach()
	twoDER, _ := two.Finish()
	// SHA-224 digest and RSA-PSS signature algorithm identifiers, patched
	// into a SHA-256 signature (the library cannot make either).
	sha256Sig := mustSignature(t, string(content))
	oidSHA256DER := []byte{0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01}
	s224DER := bytes.ReplaceAll(sha256Sig, oidSHA256DER, append(oidSHA256DER[:10:10], 0x04))
	oidRSASHA256DER := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b}
	pssDER := bytes.Clone(sha256Sig)
	i := bytes.LastIndex(pssDER, oidRSASHA256DER) // the SignerInfo's, after the certificates
	pssDER[i+10] = 0x0a

	tests := []struct {
		name string
		msg  *Message
		want error
	}{
		{"content tampered in the file", mustParse(t, tampered), ErrDigestMismatch},
		{"content changed", &Message{Content: append(bytes.Clone(m.Content), ' '), Signature: m.Signature}, ErrDigestMismatch},
		{"content not canonical", &Message{Content: content, Signature: m.Signature}, ErrDigestMismatch},
		{"signature bytes flipped", &Message{Content: m.Content, Signature: badSig}, ErrBadSignature},
		{"two signers", &Message{Content: content, Signature: twoDER}, ErrSignerCount},
		{"sha-224", &Message{Content: content, Signature: s224DER}, ErrUnsupported},
		{"rsa-pss", &Message{Content: content, Signature: pssDER}, ErrUnsupported},
		{"no signature", &Message{Content: content}, ErrMalformed},
		{"garbage signature", &Message{Content: content, Signature: []byte("garbage")}, ErrMalformed},
		{"text mode", &Message{Content: []byte("Content-Type: text/plain\r\n\r\n{}"), Signature: mustSignature(t, "Content-Type: text/plain\r\n\r\n{}")}, ErrTextMode},
		{"attached, content replaced", &Message{Content: []byte("other"), Signature: der, Opaque: true}, ErrDigestMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := tt.msg.Verify()
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, %v; want %v", s, err, tt.want)
			}
			t.Logf("%v", err)
			if err.Error() != strings.ToLower(err.Error()[:1])+err.Error()[1:] {
				t.Errorf("error not lower-case: %v", err)
			}
		})
	}
}

// mustSignature returns a detached SHA-256 signature over content, made
// directly with the library (Sign refuses text-mode content).
func mustSignature(t testing.TB, content string) []byte {
	t.Helper()
	p := testPKI(t)
	sd, err := pkcs7.NewSignedData([]byte(content))
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(p.Signer.Cert, p.Signer.Key, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func mustParse(t testing.TB, b []byte) *Message {
	t.Helper()
	m, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return m
}

func b64(b []byte) string {
	enc := base64.StdEncoding.EncodeToString(b)
	var s strings.Builder
	for len(enc) > 64 {
		s.WriteString(enc[:64] + "\n")
		enc = enc[64:]
	}
	s.WriteString(enc + "\n")
	return s.String()
}

// multipart assembles a multipart/signed message by hand.
func multipart(ctype, part1, sigHeaders, sigBody string) string {
	return "MIME-Version: 1.0\nContent-Type: " + ctype + "\n\nThis is an S/MIME signed message\n\n" +
		"------B\n" + part1 + "\n------B\n" + sigHeaders + "\n" + sigBody + "\n------B--\n\n"
}

const (
	ctSigned    = `multipart/signed; protocol="application/x-pkcs7-signature"; micalg="sha-256"; boundary="----B"`
	sigHeaders  = "Content-Type: application/x-pkcs7-signature; name=\"smime.p7s\"\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"smime.p7s\"\n"
	sigHeadersC = "Content-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: BASE64\r\n"
)

func TestParseVariants(t *testing.T) {
	content := "{\n  \"a\": 1\n}"
	sig := mustSignature(t, string(Canonicalize([]byte(content))))
	sigB64 := b64(sig)
	crlf := func(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n") }
	tests := []struct {
		name string
		msg  string
	}{
		{"plain", multipart(ctSigned, content, sigHeaders, sigB64)},
		{"all crlf", crlf(multipart(ctSigned, content, sigHeaders, sigB64))},
		{"protocol without x-, upper case", multipart(`multipart/signed; protocol="Application/PKCS7-Signature"; micalg=sha-256; boundary="----B"`, content, sigHeadersC, sigB64)},
		{"crlf part headers", multipart(ctSigned, content, sigHeadersC, sigB64)},
		{"no preamble", strings.Replace(multipart(ctSigned, content, sigHeaders, sigB64), "This is an S/MIME signed message\n\n", "", 1)},
		{"trailing blanks on delimiter lines", strings.ReplaceAll(multipart(ctSigned, content, sigHeaders, sigB64), "------B\n", "------B \t\n")},
		{"base64 without line breaks, no padding", multipart(ctSigned, content, sigHeaders, strings.TrimRight(base64.StdEncoding.EncodeToString(sig), "="))},
		{"base64 with spaces and crlf", multipart(ctSigned, content, sigHeaders, strings.ReplaceAll(sigB64, "\n", " \r\n"))},
		{"epilogue", multipart(ctSigned, content, sigHeaders, sigB64) + "epilogue\n--------B\n"},
		{"folded content-type", strings.Replace(multipart(ctSigned, content, sigHeaders, sigB64), "; micalg", ";\n\tmicalg", 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.msg))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if _, err := m.Verify(); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if string(m.Content) != "{\r\n  \"a\": 1\r\n}" {
				t.Errorf("content %q", m.Content)
			}
		})
	}
}

func TestParseOpaque(t *testing.T) {
	p := testPKI(t)
	content := []byte("{\r\n}\r\n")
	sd, _ := pkcs7.NewSignedData(content)
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA512)
	if err := sd.AddSigner(p.EC.Cert, p.EC.Key, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range []string{
		`application/x-pkcs7-mime; smime-type=signed-data; name="smime.p7m"`,
		`application/pkcs7-mime; smime-type=Signed-Data`,
		`application/pkcs7-mime`,
	} {
		msg := "MIME-Version: 1.0\nContent-Disposition: attachment; filename=\"smime.p7m\"\nContent-Type: " + ct + "\nContent-Transfer-Encoding: base64\n\n" + b64(der) + "\n"
		m, err := Parse([]byte(msg))
		if err != nil {
			t.Fatalf("%s: Parse: %v", ct, err)
		}
		if !m.Opaque || !bytes.Equal(m.Content, content) || m.MicAlg != "" {
			t.Errorf("%s: opaque %v content %q", ct, m.Opaque, m.Content)
		}
		s, err := m.Verify()
		if err != nil {
			t.Fatalf("%s: Verify: %v", ct, err)
		}
		if s.Digest != crypto.SHA512 || !s.Signer.Equal(p.EC.Cert) {
			t.Errorf("digest %v signer %s", s.Digest, s.Signer.Subject)
		}
	}
}

func TestParseMalformed(t *testing.T) {
	content := "{}"
	sig := mustSignature(t, content)
	sigB64 := b64(sig)
	good := multipart(ctSigned, content, sigHeaders, sigB64)
	if _, err := Parse([]byte(good)); err != nil {
		t.Fatalf("baseline: %v", err)
	}
	deep := b64(bytes.Repeat([]byte{0x30, 0x80}, 100_000))
	tests := []struct {
		name string
		msg  string
	}{
		{"empty", ""},
		{"plain json", "{\n \"a\": 1\n}\n"},
		{"headers only", "MIME-Version: 1.0\nContent-Type: multipart/signed; boundary=x\n"},
		{"no content-type", "MIME-Version: 1.0\n\nbody\n"},
		{"bad content-type", "Content-Type: ;;;\n\nbody\n"},
		{"text/plain", "Content-Type: text/plain\n\nbody\n"},
		{"multipart/mixed", strings.Replace(good, "multipart/signed", "multipart/mixed", 1)},
		{"no boundary", strings.Replace(good, `; boundary="----B"`, "", 1)},
		{"no protocol", strings.Replace(good, `protocol="application/x-pkcs7-signature"; `, "", 1)},
		{"pgp protocol", strings.Replace(good, `application/x-pkcs7-signature"; micalg`, `application/pgp-signature"; micalg`, 1)},
		{"wrong boundary", strings.Replace(good, `boundary="----B"`, `boundary="----C"`, 1)},
		{"no signature part", "Content-Type: " + ctSigned + "\n\n------B\n{}\n------B--\n"},
		{"no closing boundary", strings.Replace(good, "------B--", "", 1)},
		{"three parts", strings.Replace(good, "------B--", "------B\n\nx\n------B--", 1)},
		{"signature part wrong type", strings.Replace(good, "Content-Type: application/x-pkcs7-signature", "Content-Type: text/plain", 1)},
		{"signature part no headers", multipart(ctSigned, content, "", sigB64)},
		{"signature part binary", strings.Replace(good, "Content-Transfer-Encoding: base64", "Content-Transfer-Encoding: binary", 1)},
		{"bad base64", multipart(ctSigned, content, sigHeaders, "!!!not base64!!!")},
		{"empty signature", multipart(ctSigned, content, sigHeaders, "")},
		{"base64 of garbage", multipart(ctSigned, content, sigHeaders, b64([]byte("garbage garbage garbage")))},
		{"base64 of data content info", multipart(ctSigned, content, sigHeaders, b64([]byte{0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01, 0xa0, 0x00}))},
		{"signed-data without signers", multipart(ctSigned, content, sigHeaders, b64([]byte{0x30, 0x0f, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02, 0xa0, 0x02, 0x30, 0x00}))},
		{"deeply nested ber", multipart(ctSigned, content, sigHeaders, deep)},
		{"truncated der", multipart(ctSigned, content, sigHeaders, b64(sig[:len(sig)/2]))},
		{"attached signature in multipart", multipart(ctSigned, content, sigHeaders, b64(attached(t, content)))},
		{"opaque enveloped", "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\n\n" + sigB64},
		{"opaque detached (no content)", "Content-Type: application/pkcs7-mime; smime-type=signed-data\n\n" + sigB64},
		{"opaque bad base64", "Content-Type: application/pkcs7-mime\n\n@@@\n"},
		{"too large", "Content-Type: " + ctSigned + "\n\n" + strings.Repeat("x", MaxMessageSize)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.msg))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse = %+v, %v; want ErrMalformed", m, err)
			}
			if len(err.Error()) > 300 {
				t.Errorf("error too long: %.300s", err)
			}
		})
	}
}

func attached(t testing.TB, content string) []byte {
	p := testPKI(t)
	sd, _ := pkcs7.NewSignedData([]byte(content))
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(p.Signer.Cert, p.Signer.Key, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// Every cut of a message before its closing boundary is malformed.
func TestParseTruncated(t *testing.T) {
	signed := mustSign(t, []byte(smallList), SignOptions{})
	end := bytes.LastIndex(signed, []byte("\n--")) + 1
	for cut := 0; cut < end; cut++ {
		if _, err := Parse(signed[:cut]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("cut at %d/%d: %v, want ErrMalformed", cut, len(signed), err)
		}
	}
}

func TestParseTextMode(t *testing.T) {
	content := "Content-Type: text/plain\r\n\r\n{}"
	msg := multipart(ctSigned, content, sigHeaders, b64(mustSignature(t, content)))
	_, err := Parse([]byte(msg))
	if !errors.Is(err, ErrTextMode) || !strings.Contains(err.Error(), "-text") {
		t.Fatalf("Parse = %v, want ErrTextMode mentioning -text", err)
	}
}

func TestCheckBER(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"primitive", []byte{0x04, 0x01, 0xaa}, true},
		{"definite", []byte{0x30, 0x03, 0x04, 0x01, 0xaa}, true},
		{"indefinite", []byte{0x30, 0x80, 0x04, 0x01, 0xaa, 0x00, 0x00}, true},
		{"long length", append([]byte{0x04, 0x81, 0x80}, make([]byte, 128)...), true},
		{"trailing ignored", []byte{0x04, 0x00, 0xff}, true},
		{"depth 40", append(bytes.Repeat([]byte{0x30, 0x80}, 40), bytes.Repeat([]byte{0, 0}, 40)...), true},
		{"depth 41", append(bytes.Repeat([]byte{0x30, 0x80}, 41), bytes.Repeat([]byte{0, 0}, 41)...), false},
		{"empty", nil, false},
		{"truncated length", []byte{0x04}, false},
		{"overlong", []byte{0x04, 0x05, 0x00}, false},
		{"child overruns parent", []byte{0x30, 0x02, 0x04, 0x02, 0xaa, 0xbb}, false},
		{"unterminated indefinite", []byte{0x30, 0x80, 0x04, 0x00}, false},
		{"indefinite primitive", []byte{0x04, 0x80, 0x00, 0x00}, false},
		{"5-byte length", []byte{0x04, 0x85, 1, 0, 0, 0, 0}, false},
		{"too many elements", append([]byte{0x30, 0x80}, bytes.Repeat([]byte{0x04, 0x00}, maxBERElements)...), false},
	}
	for _, tt := range tests {
		if err := checkBER(tt.in); (err == nil) != tt.ok {
			t.Errorf("%s: checkBER = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestParseCertificates(t *testing.T) {
	p := testPKI(t)
	bundle := append(append(p.Signer.CertPEM(), p.Signer.KeyPEM()...), p.Inter.CertPEM()...)
	certs, err := ParseCertificates(append([]byte("junk\n"), bundle...))
	if err != nil || len(certs) != 2 || !certs[0].Equal(p.Signer.Cert) || !certs[1].Equal(p.Inter.Cert) {
		t.Fatalf("ParseCertificates = %d certs, %v", len(certs), err)
	}
	for name, in := range map[string][]byte{
		"empty":   nil,
		"key":     p.Signer.KeyPEM(),
		"garbage": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("nope")}),
	} {
		if _, err := ParseCertificates(in); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParsePrivateKey(t *testing.T) {
	p := testPKI(t)
	rsaKey := p.Signer.Key.(*rsa.PrivateKey)
	ecKey := p.EC.Key.(*ecdsa.PrivateKey)
	sec1, _ := x509.MarshalECPrivateKey(ecKey)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ed8, _ := x509.MarshalPKCS8PrivateKey(edKey)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384der, _ := x509.MarshalECPrivateKey(p384)
	ecParams := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	enc := func(typ string, h map[string]string) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: typ, Headers: h, Bytes: []byte{1, 2, 3}})
	}
	tests := []struct {
		name string
		in   []byte
		want crypto.PublicKey // nil: error expected
		err  error
	}{
		{"pkcs8 rsa", p.Signer.KeyPEM(), rsaKey.Public(), nil},
		{"pkcs8 ec", p.EC.KeyPEM(), ecKey.Public(), nil},
		{"pkcs1", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), rsaKey.Public(), nil},
		{"sec1 after ec parameters", append(ecParams, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...), ecKey.Public(), nil},
		{"sec1 p384", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: p384der}), p384.Public(), nil},
		{"cert then key", append(p.Signer.CertPEM(), p.Signer.KeyPEM()...), rsaKey.Public(), nil},
		{"encrypted pkcs8", enc("ENCRYPTED PRIVATE KEY", nil), nil, ErrEncryptedKey},
		{"encrypted pkcs1", enc("RSA PRIVATE KEY", map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00"}), nil, ErrEncryptedKey},
		{"encrypted sec1", enc("EC PRIVATE KEY", map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}), nil, ErrEncryptedKey},
		{"ed25519", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ed8}), nil, ErrUnsupported},
		{"none", p.Signer.CertPEM(), nil, nil},
		{"garbage key", enc("PRIVATE KEY", nil), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := ParsePrivateKey(tt.in)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("no error")
				}
				if tt.err != nil && !errors.Is(err, tt.err) {
					t.Fatalf("error %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(tt.want) {
				t.Errorf("wrong key")
			}
		})
	}
	if !strings.Contains(ErrEncryptedKey.Error(), "openssl pkey -in KEY -out PLAIN") {
		t.Errorf("ErrEncryptedKey lacks the hint: %v", ErrEncryptedKey)
	}
}

func TestMatchKey(t *testing.T) {
	p := testPKI(t)
	if err := MatchKey(p.Signer.Cert, p.Signer.Key); err != nil {
		t.Errorf("own key: %v", err)
	}
	if err := MatchKey(p.EC.Cert, p.EC.Key); err != nil {
		t.Errorf("own ec key: %v", err)
	}
	for name, c := range map[string]struct {
		cert *x509.Certificate
		key  crypto.Signer
	}{
		"rsa/other rsa": {p.Signer.Cert, p.Revoked.Key},
		"rsa/ec":        {p.Signer.Cert, p.EC.Key},
		"ec/rsa":        {p.EC.Cert, p.Signer.Key},
		"nil key":       {p.Signer.Cert, nil},
	} {
		if err := MatchKey(c.cert, c.key); !errors.Is(err, ErrKeyMismatch) {
			t.Errorf("%s: %v, want ErrKeyMismatch", name, err)
		}
	}
}
