package trust

import (
	"errors"
	"strings"
)

// Sentinel errors. Verify wraps exactly one of them in a *VerifyError; Load
// wraps ErrNoCAs.
var (
	// ErrNoCAs: the trust directory holds no usable CA certificate.
	ErrNoCAs = errors.New("no usable CA certificates")
	// ErrUnknownAuthority: no valid chain leads to a CA of the trust
	// directory. This includes a different CA that has the same name as a
	// trusted one, and chains that break for a reason without a sentinel of
	// its own (an unhandled critical extension, a CA not allowed to sign
	// certificates, path length or name constraints); the message says
	// which.
	ErrUnknownAuthority = errors.New("unknown authority")
	// ErrExpired: a certificate of the chain ended before the reference time.
	ErrExpired = errors.New("expired")
	// ErrNotYetValid: a certificate of the chain starts after the reference
	// time.
	ErrNotYetValid = errors.New("not yet valid")
	// ErrRevoked: a certificate of the chain is listed on its issuer's CRL.
	ErrRevoked = errors.New("revoked")
	// ErrNoCRL: the CRL policy requires a CRL and the issuer has none with a
	// valid signature.
	ErrNoCRL = errors.New("no valid CRL")
	// ErrCRLExpired: the issuer's freshest CRL is past its next update.
	ErrCRLExpired = errors.New("stale CRL")
	// ErrCRLNotYetValid: the issuer's freshest CRL was issued after the
	// reference time.
	ErrCRLNotYetValid = errors.New("CRL not yet valid")
	// ErrNamespace: the subject is outside the namespace the issuing CA's
	// signing_policy/namespaces files allow.
	ErrNamespace = errors.New("namespace violation")
	// ErrPurpose: the certificate may not be used for S/MIME signing.
	ErrPurpose = errors.New("unsuitable certificate purpose")
	// ErrInsecureAlgorithm: a certificate of the chain is signed with SHA-1
	// or MD5, which Go refuses.
	ErrInsecureAlgorithm = errors.New("insecure signature algorithm")
)

// VerifyError reports why a certificate is not trusted.
type VerifyError struct {
	Subject string // one-line DN of the certificate concerned
	CAFile  string // file of the CA concerned, if any
	CRLFile string // file of the CRL concerned, if any
	Err     error  // wraps one of the sentinel errors
}

// Error returns one operator-readable line, for example
//
//	certificate "/DC=org/CN=Test Signer": revoked by CRL /etc/grid-security/certificates/91ae41b2.r0 (serial 1001 = 0x3E9, reason keyCompromise)
func (e *VerifyError) Error() string {
	var b strings.Builder
	b.WriteString(`certificate "`)
	b.WriteString(e.Subject)
	b.WriteString(`": `)
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString("not trusted")
	}
	return b.String()
}

// Unwrap returns the wrapped error, so errors.Is finds the sentinel.
func (e *VerifyError) Unwrap() error { return e.Err }

// detail is an error that reads msg and unwraps to a sentinel.
type detail struct {
	sentinel error
	msg      string
}

func (d *detail) Error() string { return d.msg }
func (d *detail) Unwrap() error { return d.sentinel }

// wrap builds an error whose text is msg and which unwraps to sentinel.
func wrap(sentinel error, msg string) error { return &detail{sentinel: sentinel, msg: msg} }
