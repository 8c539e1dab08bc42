// Package smime reads and writes S/MIME signed messages as used for HEPiX
// image lists: clear-signed multipart/signed with a detached PKCS#7
// signature over the CRLF-canonicalised content (what `openssl smime -sign`
// and M2Crypto write), and, on input only, opaque application/pkcs7-mime
// signed-data.
//
// The package checks the signature over the exact content and nothing else:
// no certificate chain, validity period, key usage or CRL decisions are made
// here (internal/trust does that at the run's reference time). In
// particular, Verify never compares the signer-supplied signingTime with the
// certificate validity.
//
// The PKCS#7 library (github.com/smallstep/pkcs7) is used only inside this
// package; none of its types appear in the API.
package smime

import (
	"crypto"
	"crypto/x509"
	"errors"
	"time"
)

// Sentinel errors. Every error returned by Parse, Verify, Sign and the key
// helpers wraps one of them (or is a plain argument error), so callers can
// branch with errors.Is.
var (
	// ErrMalformed: not a parseable S/MIME signed message (missing boundary,
	// no signature part, bad base64, bad PKCS#7 DER, unsupported
	// Content-Type, too large).
	ErrMalformed = errors.New("malformed s/mime message")
	// ErrDigestMismatch: the content does not match the signed digest (it
	// was changed after signing).
	ErrDigestMismatch = errors.New("content does not match the signed digest")
	// ErrBadSignature: the signature does not verify with the signer's key.
	ErrBadSignature = errors.New("signature does not verify")
	// ErrSignerCount: the message does not have exactly one signer.
	ErrSignerCount = errors.New("not exactly one signer")
	// ErrNoSignerCert: the signer's certificate is not embedded.
	ErrNoSignerCert = errors.New("signer certificate not embedded in the signature")
	// ErrUnsupported: an algorithm or key type this package does not handle
	// (RSA-PSS, DSA, SHA-224, MD5, Ed25519, ...).
	ErrUnsupported = errors.New("unsupported algorithm")
	// ErrTextMode: the signed content starts with a MIME header block, i.e.
	// it was signed with `openssl smime -text`; it is not a bare image list.
	ErrTextMode = errors.New("signed content starts with a MIME header (signed with `openssl smime -text`), not a bare image list")
	// ErrEncryptedKey: the private key PEM is encrypted.
	ErrEncryptedKey = errors.New("encrypted private keys are not supported; decrypt it with `openssl pkey -in KEY -out PLAIN`")
	// ErrKeyMismatch: the private key does not belong to the certificate.
	ErrKeyMismatch = errors.New("private key does not match the certificate")
)

// MaxMessageSize is the largest message Parse accepts. Image lists are capped
// well below this (about 16 MiB); the margin covers base64 expansion of
// opaque messages and the embedded certificates.
const MaxMessageSize = 32 << 20

// Message is a parsed, not yet verified, S/MIME signed message.
type Message struct {
	// Content is the exact signed bytes. For multipart/signed it is the first
	// part with the one line break that belongs to the delimiter removed,
	// then CRLF-canonicalised (Canonicalize); for opaque messages it is the
	// embedded content, unchanged.
	Content []byte
	// Signature is the PKCS#7 SignedData (DER, or BER for streamed opaque
	// messages).
	Signature []byte
	// Opaque is true for application/(x-)pkcs7-mime signed-data.
	Opaque bool
	// MicAlg is the micalg parameter of a multipart/signed header, as sent.
	// Informational only: the digest that counts is the signer's (Signed.Digest).
	MicAlg string

	// raw is the first part as received (before canonicalisation), kept to
	// explain a digest mismatch caused by `openssl smime -binary`.
	raw []byte
}

// Signed is the result of a successful signature check.
type Signed struct {
	// Content is the verified content (Message.Content).
	Content []byte
	// Signer is the certificate whose key made the signature.
	Signer *x509.Certificate
	// Certificates are all certificates embedded in the signature, the
	// signer's included, for chain building.
	Certificates []*x509.Certificate
	// Digest is the signer's digest algorithm: crypto.SHA1, SHA256, SHA384
	// or SHA512.
	Digest crypto.Hash
	// SigningTime is the signer-asserted signingTime attribute, zero if
	// absent. It is not trustworthy and is not used for any decision here.
	SigningTime time.Time
}
