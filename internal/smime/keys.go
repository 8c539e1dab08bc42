package smime

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// ParseCertificates returns every CERTIFICATE block in pemData, in order.
// Other PEM blocks (keys, CRLs) are skipped. It fails if there is none or one
// does not parse.
func ParseCertificates(pemData []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := pemData
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no CERTIFICATE block in the pem data")
	}
	return certs, nil
}

// ParsePrivateKey returns the first private key in pemData: PKCS#8 ("PRIVATE
// KEY"), PKCS#1 ("RSA PRIVATE KEY") or SEC1 ("EC PRIVATE KEY"). Other blocks
// (EC PARAMETERS, certificates) are skipped. Encrypted keys ("ENCRYPTED
// PRIVATE KEY", or a Proc-Type: 4,ENCRYPTED header) give ErrEncryptedKey;
// keys other than RSA and ECDSA give ErrUnsupported.
func ParsePrivateKey(pemData []byte) (crypto.Signer, error) {
	rest := pemData
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no private key in the pem data (want PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)")
		}
		switch block.Type {
		case "ENCRYPTED PRIVATE KEY":
			return nil, ErrEncryptedKey
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
		default:
			continue
		}
		if strings.Contains(strings.ToUpper(block.Headers["Proc-Type"]), "ENCRYPTED") || block.Headers["DEK-Info"] != "" {
			return nil, ErrEncryptedKey
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			key, err = x509.ParseECPrivateKey(block.Bytes)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", strings.ToLower(block.Type), err)
		}
		switch k := key.(type) {
		case *rsa.PrivateKey:
			return k, nil
		case *ecdsa.PrivateKey:
			return k, nil
		}
		return nil, fmt.Errorf("%w: %T private key (use RSA or ECDSA)", ErrUnsupported, key)
	}
}

// MatchKey returns an error wrapping ErrKeyMismatch unless key is the private
// key of cert's public key.
func MatchKey(cert *x509.Certificate, key crypto.Signer) error {
	if cert == nil || key == nil {
		return fmt.Errorf("%w: missing certificate or key", ErrKeyMismatch)
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return fmt.Errorf("%w: the key is not the one of %q", ErrKeyMismatch, cert.Subject.String())
	}
	return nil
}
