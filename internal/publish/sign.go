package publish

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/clr-suite/clr/internal/imagelist"
	"github.com/clr-suite/clr/internal/smime"
	"github.com/clr-suite/clr/internal/trust"
)

// Signer is a certificate, its key and the chain certificates to embed.
type Signer struct {
	Cert  *x509.Certificate
	Key   crypto.Signer
	Chain []*x509.Certificate
}

// ErrSigner marks an unusable signer certificate or key.
var ErrSigner = errors.New("signer")

// LoadSigner reads a PEM certificate (the first one is the signer, any
// further ones are chain certificates), an unencrypted PEM private key and
// an optional PEM file of extra chain certificates.
func LoadSigner(certFile, keyFile, chainFile string) (Signer, error) {
	var s Signer
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrSigner, err)
		}
		return b, nil
	}
	b, err := read(certFile)
	if err != nil {
		return s, err
	}
	certs, err := smime.ParseCertificates(b)
	if err != nil {
		return s, fmt.Errorf("%w: certificate %s: %w", ErrSigner, certFile, err)
	}
	s.Cert, s.Chain = certs[0], certs[1:]
	if b, err = read(keyFile); err != nil {
		return s, err
	}
	if s.Key, err = smime.ParsePrivateKey(b); err != nil {
		return s, fmt.Errorf("%w: key %s: %w", ErrSigner, keyFile, err)
	}
	if err := smime.MatchKey(s.Cert, s.Key); err != nil {
		return s, fmt.Errorf("%w: key %s does not belong to certificate %s: %w", ErrSigner, keyFile, certFile, err)
	}
	if chainFile != "" {
		if b, err = read(chainFile); err != nil {
			return s, err
		}
		chain, err := smime.ParseCertificates(b)
		if err != nil {
			return s, fmt.Errorf("%w: chain %s: %w", ErrSigner, chainFile, err)
		}
		s.Chain = append(s.Chain, chain...)
	}
	return s, nil
}

// SignOptions configures Sign.
type SignOptions struct {
	Now          time.Time     // the run's reference time
	ExpiresIn    time.Duration // 0: DefaultExpiry
	KeepDates    bool          // keep dc:date:created/expires from the input
	KeepEndorser bool          // keep hv:endorser from the input
	Digest       crypto.Hash   // 0: SHA-512
}

// Sign fills the list's endorser from the certificate and its dates from
// the reference time (unless told to keep them), checks the list, marshals
// it deterministically and signs it. It returns the signed S/MIME document
// and the exact JSON that was signed.
func Sign(l *imagelist.List, s Signer, opts SignOptions) (signed, content []byte, err error) {
	if err := smime.MatchKey(s.Cert, s.Key); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrSigner, err)
	}
	if !opts.KeepEndorser {
		e, err := EndorserFor(s.Cert)
		if err != nil {
			return nil, nil, err
		}
		e.Extra = l.Endorser.Extra
		l.Endorser = e
	}
	if !opts.KeepDates {
		exp := opts.ExpiresIn
		if exp <= 0 {
			exp = DefaultExpiry
		}
		l.Created = opts.Now.UTC().Truncate(time.Second)
		l.Expires = l.Created.Add(exp)
	}
	if opts.Now.After(s.Cert.NotAfter) || opts.Now.Before(s.Cert.NotBefore) {
		return nil, nil, fmt.Errorf("%w: certificate is not valid now (valid %s to %s)", ErrSigner,
			imagelist.FormatTime(s.Cert.NotBefore), imagelist.FormatTime(s.Cert.NotAfter))
	}
	if l.Expires.After(s.Cert.NotAfter) {
		// Subscribers check the chain at their own time: a list that
		// outlives its signer becomes unverifiable before it expires.
		l.Expires = s.Cert.NotAfter.UTC().Truncate(time.Second)
	}
	if err := l.Validate(); err != nil {
		return nil, nil, err
	}
	content, err = l.Marshal()
	if err != nil {
		return nil, nil, err
	}
	signed, err = smime.Sign(content, s.Cert, s.Key, smime.SignOptions{Digest: opts.Digest, Chain: s.Chain})
	if err != nil {
		return nil, nil, err
	}
	return signed, content, nil
}

var oidEmail = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}

// EndorserFor derives hv:endorser from a signer certificate: subject and
// issuer in OpenSSL one-line form (what subscribers compare), the first
// e-mail address (SAN, else the emailAddress attribute) and the common name
// as dc:creator.
func EndorserFor(cert *x509.Certificate) (imagelist.Endorser, error) {
	dn, err := trust.Oneline(cert.RawSubject)
	if err != nil {
		return imagelist.Endorser{}, fmt.Errorf("signer subject: %w", err)
	}
	ca, err := trust.Oneline(cert.RawIssuer)
	if err != nil {
		return imagelist.Endorser{}, fmt.Errorf("signer issuer: %w", err)
	}
	e := imagelist.Endorser{DN: dn, CA: ca, Creator: cert.Subject.CommonName}
	if len(cert.EmailAddresses) > 0 {
		e.Email = cert.EmailAddresses[0]
	} else {
		for _, n := range cert.Subject.Names {
			if n.Type.Equal(oidEmail) {
				if s, ok := n.Value.(string); ok {
					e.Email = s
					break
				}
			}
		}
	}
	return e, nil
}
