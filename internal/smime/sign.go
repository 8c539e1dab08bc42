package smime

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/smallstep/pkcs7"
)

// DefaultDigest is the digest Sign uses when SignOptions.Digest is zero. (The
// pkcs7 library's own default is SHA-1.)
const DefaultDigest = crypto.SHA512

// SignOptions tunes Sign.
type SignOptions struct {
	// Digest is crypto.SHA1, SHA256, SHA384 or SHA512; 0 means SHA-512.
	Digest crypto.Hash
	// Chain lists extra certificates to embed (intermediates), in any order.
	// The signer's own certificate is always embedded.
	Chain []*x509.Certificate
}

// Sign returns a detached multipart/signed message laid out exactly as
// `openssl smime -sign` writes it: LF-terminated headers,
// protocol="application/x-pkcs7-signature", the micalg of the digest, a
// random "----<32 upper-case hex>" boundary, the preamble "This is an S/MIME
// signed message", part 1 = Canonicalize(content) with no part headers, and
// the DER signature as smime.p7s in base64 at 64 columns. The signed bytes
// are the canonical content, so `openssl smime -verify` accepts the message
// and outputs Canonicalize(content).
//
// The key must be RSA (PKCS#1 v1.5 signatures) or ECDSA and must belong to
// cert. The signingTime attribute is set by the pkcs7 library from the system
// clock.
func Sign(content []byte, cert *x509.Certificate, key crypto.Signer, opts SignOptions) ([]byte, error) {
	if cert == nil || key == nil {
		return nil, errors.New("sign: certificate and key are required")
	}
	if err := MatchKey(cert, key); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	switch key.Public().(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
	default:
		return nil, fmt.Errorf("sign: %w: %T keys (use RSA or ECDSA)", ErrUnsupported, key.Public())
	}
	h := opts.Digest
	if h == 0 {
		h = DefaultDigest
	}
	var micalg string
	var oid asn1.ObjectIdentifier
	for _, d := range digests {
		if d.hash == h {
			micalg, oid = d.micalg, d.oid
		}
	}
	if micalg == "" {
		return nil, fmt.Errorf("sign: %w: digest %v (use SHA-1, SHA-256, SHA-384 or SHA-512)", ErrUnsupported, h)
	}
	canon := Canonicalize(content)
	if isTextMode(canon) {
		return nil, fmt.Errorf("sign: %w: the content itself begins with a MIME header block", ErrTextMode)
	}

	sd, err := pkcs7.NewSignedData(canon)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	sd.SetDigestAlgorithm(oid) // before AddSigner: the library defaults to SHA-1
	if err := sd.AddSigner(cert, key, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, fmt.Errorf("sign: adding signer: %w", err)
	}
	for i, c := range opts.Chain {
		if c == nil {
			return nil, fmt.Errorf("sign: chain certificate %d is nil", i)
		}
		if !c.Equal(cert) {
			sd.AddCertificate(c)
		}
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("sign: encoding pkcs#7: %w", err)
	}

	boundary, err := newBoundary(canon)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	var b bytes.Buffer
	b.Grow(len(canon) + len(der)*4/3 + 1024)
	b.WriteString("MIME-Version: 1.0\n")
	fmt.Fprintf(&b, "Content-Type: multipart/signed; protocol=\"application/x-pkcs7-signature\"; micalg=\"%s\"; boundary=\"%s\"\n\n", micalg, boundary)
	b.WriteString("This is an S/MIME signed message\n\n")
	b.WriteString("--" + boundary + "\n")
	b.Write(canon)
	b.WriteString("\n--" + boundary + "\n")
	b.WriteString("Content-Type: application/x-pkcs7-signature; name=\"smime.p7s\"\n")
	b.WriteString("Content-Transfer-Encoding: base64\n")
	b.WriteString("Content-Disposition: attachment; filename=\"smime.p7s\"\n\n")
	enc := base64.StdEncoding.EncodeToString(der)
	for len(enc) > 64 {
		b.WriteString(enc[:64] + "\n")
		enc = enc[64:]
	}
	b.WriteString(enc + "\n\n")
	b.WriteString("--" + boundary + "--\n\n")
	return b.Bytes(), nil
}

// newBoundary returns "----" and 32 random upper-case hex digits, as OpenSSL
// does, making sure the boundary does not occur in the content.
func newBoundary(content []byte) (string, error) {
	for range 8 {
		var r [16]byte
		if _, err := rand.Read(r[:]); err != nil {
			return "", fmt.Errorf("random boundary: %w", err)
		}
		bd := fmt.Sprintf("----%X", r[:])
		if !bytes.Contains(content, []byte(bd)) {
			return bd, nil
		}
	}
	return "", errors.New("no boundary absent from the content")
}
