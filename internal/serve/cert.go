package serve

import (
	"crypto/sha1" // the thumbprint vCenter asks for, not a security check
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
)

// CertSource is a reloadable certificate holder that a TLS listener asks on
// every handshake.
type CertSource interface {
	// GetCertificate has the signature of tls.Config.GetCertificate.
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Reload re-reads the certificate. On error the previous certificate
	// stays in use.
	Reload() error
}

// FileCert is a CertSource backed by a PEM certificate (chain) file and a
// PEM key file. It is safe for concurrent use.
type FileCert struct {
	certFile, keyFile string

	mu  sync.Mutex // serializes Reload
	cur atomic.Pointer[tls.Certificate]
}

var _ CertSource = (*FileCert)(nil)

// NewFileCert loads certFile and keyFile and returns a holder that Reload
// can refresh later (on SIGHUP, for example).
func NewFileCert(certFile, keyFile string) (*FileCert, error) {
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("serve: load certificate: %w: certificate and key file are both required", ErrInvalidConfig)
	}
	c := &FileCert{certFile: certFile, keyFile: keyFile}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload re-reads the certificate and key files. If they do not load (or the
// key does not match the certificate), the previous certificate stays in use
// and the error is returned.
func (c *FileCert) Reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	kp, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("serve: load certificate: %w", err)
	}
	if kp.Leaf == nil {
		leaf, err := x509.ParseCertificate(kp.Certificate[0])
		if err != nil {
			return fmt.Errorf("serve: load certificate: %w", err)
		}
		kp.Leaf = leaf
	}
	c.cur.Store(&kp)
	return nil
}

// Certificate returns the certificate in use.
func (c *FileCert) Certificate() *tls.Certificate { return c.cur.Load() }

// GetCertificate returns the certificate in use, whatever the client asks.
func (c *FileCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cert := c.cur.Load()
	if cert == nil {
		return nil, fmt.Errorf("serve: %w loaded", ErrNoCertificate)
	}
	return cert, nil
}

// LeafOf returns the parsed leaf certificate of c: c.Leaf when set, else the
// parse of the first certificate of the chain.
func LeafOf(c *tls.Certificate) (*x509.Certificate, error) {
	if c == nil || len(c.Certificate) == 0 {
		return nil, fmt.Errorf("serve: leaf certificate: %w", ErrNoCertificate)
	}
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("serve: leaf certificate: %w", err)
	}
	return leaf, nil
}

// Thumbprints returns the SHA-1 and SHA-256 fingerprints of the DER
// certificate as upper-case hex pairs joined by ":"
// ("AB:CD:..."), the form vCenter asks for when subscribing to an HTTPS
// library it does not trust. A nil certificate gives two empty strings.
func Thumbprints(cert *x509.Certificate) (sha1Print, sha256Print string) {
	if cert == nil {
		return "", ""
	}
	s1 := sha1.Sum(cert.Raw)
	s256 := sha256.Sum256(cert.Raw)
	return colonHex(s1[:]), colonHex(s256[:])
}

func colonHex(b []byte) string {
	h := strings.ToUpper(hex.EncodeToString(b))
	var sb strings.Builder
	sb.Grow(len(h) + len(b))
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteString(h[i : i+2])
	}
	return sb.String()
}
