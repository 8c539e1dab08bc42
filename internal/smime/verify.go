package smime

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"

	"github.com/smallstep/pkcs7"
)

// Digest algorithm OIDs (RFC 3370, RFC 5754).
var (
	oidSHA1   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
	oidSHA224 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 4}
	oidMD5    = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 5}
)

// Signature algorithm OIDs found in SignerInfo.digestEncryptionAlgorithm.
var (
	oidRSA         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidRSASHA1     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
	oidRSASHA256   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidRSASHA384   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidRSASHA512   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	oidRSAPSS      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	oidECDSASHA1   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}
	oidECDSASHA2   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3} // prefix of ecdsa-with-SHA224..512
	oidECP256      = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidECP384      = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidECP521      = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
	oidDSA         = asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 1}
	oidDSASHA1     = asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 3}
	oidEd25519     = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
)

// digests maps the supported crypto.Hash values to their OID and the
// multipart/signed micalg name OpenSSL writes.
var digests = []struct {
	hash   crypto.Hash
	oid    asn1.ObjectIdentifier
	micalg string
}{
	{crypto.SHA1, oidSHA1, "sha1"},
	{crypto.SHA256, oidSHA256, "sha-256"},
	{crypto.SHA384, oidSHA384, "sha-384"},
	{crypto.SHA512, oidSHA512, "sha-512"},
}

func hashForOID(oid asn1.ObjectIdentifier) (crypto.Hash, error) {
	for _, d := range digests {
		if d.oid.Equal(oid) {
			return d.hash, nil
		}
	}
	name := oid.String()
	switch {
	case oid.Equal(oidSHA224):
		name = "SHA-224"
	case oid.Equal(oidMD5):
		name = "MD5"
	}
	return 0, fmt.Errorf("%w: digest algorithm %s (supported: SHA-1, SHA-256, SHA-384, SHA-512)", ErrUnsupported, name)
}

// checkSignatureAlgorithm accepts the RSA PKCS#1 v1.5 and ECDSA identifiers
// the pkcs7 library can verify and reports the others as ErrUnsupported.
func checkSignatureAlgorithm(oid asn1.ObjectIdentifier) error {
	switch {
	case oid.Equal(oidRSA), oid.Equal(oidRSASHA1), oid.Equal(oidRSASHA256), oid.Equal(oidRSASHA384), oid.Equal(oidRSASHA512),
		oid.Equal(oidECDSASHA1), oid.Equal(oidECP256), oid.Equal(oidECP384), oid.Equal(oidECP521):
		return nil
	case len(oid) == len(oidECDSASHA2)+1 && oid[:len(oidECDSASHA2)].Equal(oidECDSASHA2) && oid[len(oid)-1] >= 2 && oid[len(oid)-1] <= 4:
		return nil // ecdsa-with-SHA256/384/512
	case oid.Equal(oidRSAPSS):
		return fmt.Errorf("%w: RSA-PSS signature; sign with RSA PKCS#1 v1.5 (the openssl default, no -keyopt rsa_padding_mode:pss)", ErrUnsupported)
	case oid.Equal(oidDSA), oid.Equal(oidDSASHA1):
		return fmt.Errorf("%w: DSA signature", ErrUnsupported)
	case oid.Equal(oidEd25519):
		return fmt.Errorf("%w: Ed25519 signature", ErrUnsupported)
	case oid.Equal(oidECPublicKey):
		return fmt.Errorf("%w: ECDSA signature identified by id-ecPublicKey instead of ecdsa-with-SHAx", ErrUnsupported)
	}
	return fmt.Errorf("%w: signature algorithm %s", ErrUnsupported, oid)
}

// farFuture is later than any certificate's NotAfter (X.509 GeneralizedTime
// stops at year 9999).
var farFuture = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// Verify checks that the message has exactly one signer whose certificate is
// embedded, that the signer's messageDigest matches Content, and that the
// signature verifies with the certificate's public key. It makes no chain,
// validity period, key usage or revocation decision and ignores the
// signingTime attribute for validation (it is returned for information).
//
// Errors wrap ErrMalformed, ErrSignerCount, ErrNoSignerCert, ErrUnsupported,
// ErrDigestMismatch, ErrBadSignature or ErrTextMode.
func (m *Message) Verify() (*Signed, error) {
	if m == nil {
		return nil, fmt.Errorf("%w: nil message", ErrMalformed)
	}
	p7, err := parsePKCS7(m.Signature)
	if err != nil {
		return nil, err
	}
	if n := len(p7.Signers); n != 1 {
		return nil, fmt.Errorf("%w: the signature has %d signers, want exactly 1", ErrSignerCount, n)
	}
	si := p7.Signers[0]
	hash, err := hashForOID(si.DigestAlgorithm.Algorithm)
	if err != nil {
		return nil, err
	}
	if err := checkSignatureAlgorithm(si.DigestEncryptionAlgorithm.Algorithm); err != nil {
		return nil, err
	}
	signer := p7.GetOnlySigner()
	if signer == nil {
		return nil, fmt.Errorf("%w: no embedded certificate matches the signer's issuer and serial (signed with -nocerts?)", ErrNoSignerCert)
	}
	embedded := p7.Certificates

	// The library's Verify rejects a signingTime outside the signer's
	// NotBefore..NotAfter, and offers no way to skip it. That is a time
	// decision on a signer-asserted value, which belongs to internal/trust
	// (at the run's reference time). Hand the library a copy of the signer
	// certificate whose validity spans all time, placed first so its
	// issuer-and-serial lookup finds it; the key, issuer and serial are
	// unchanged, so digest and signature are checked exactly as before.
	relaxed := *signer
	relaxed.NotBefore, relaxed.NotAfter = time.Time{}, farFuture
	p7.Certificates = append([]*x509.Certificate{&relaxed}, embedded...)
	p7.Content = m.Content

	if err := libVerify(p7); err != nil {
		if errors.Is(err, ErrDigestMismatch) && m.raw != nil && !bytes.Equal(m.raw, m.Content) {
			p7.Content = m.raw
			if libVerify(p7) == nil {
				return nil, fmt.Errorf("%w: the signature covers the raw, non-canonical bytes (signed with `openssl smime -binary`?), which `openssl smime -verify` and vmcatcher cannot verify either; re-sign without -binary", ErrDigestMismatch)
			}
		}
		return nil, err
	}
	if isTextMode(m.Content) {
		return nil, fmt.Errorf("%w: re-sign the list without -text", ErrTextMode)
	}
	var signingTime time.Time
	if err := p7.UnmarshalSignedAttribute(pkcs7.OIDAttributeSigningTime, &signingTime); err != nil {
		signingTime = time.Time{}
	}
	return &Signed{
		Content:      m.Content,
		Signer:       signer,
		Certificates: embedded,
		Digest:       hash,
		SigningTime:  signingTime,
	}, nil
}

// libVerify runs the library's digest and signature check (no trust store,
// so no chain) and maps its errors onto the sentinels.
func libVerify(p7 *pkcs7.PKCS7) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: pkcs#7 verifier failed: %v", ErrMalformed, r)
		}
	}()
	err = p7.Verify()
	if err == nil {
		return nil
	}
	var mismatch *pkcs7.MessageDigestMismatchError
	var insecure x509.InsecureAlgorithmError
	switch {
	case errors.As(err, &mismatch):
		return fmt.Errorf("%w: the content was changed after signing", ErrDigestMismatch)
	case errors.Is(err, x509.ErrUnsupportedAlgorithm), errors.As(err, &insecure):
		return fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	return fmt.Errorf("%w: %v", ErrBadSignature, err)
}
