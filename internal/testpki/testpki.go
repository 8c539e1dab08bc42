// Package testpki makes throwaway certificate authorities, signer
// certificates and CRLs for tests and the demo. Nothing it makes is meant to
// be trusted: keys are generated fresh on every call and never persisted
// beyond the directory a test writes them to.
//
// Names are given in OpenSSL one-line form ("/DC=org/DC=example/CN=x",
// "+" joining the parts of a multi-valued RDN) and encoded in exactly that
// order (the parts inside one multi-valued RDN are sorted, as DER
// requires), so tests can exercise the DN rendering of internal/trust.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Attribute type OIDs for the short names ParseDN accepts.
var attrOIDs = map[string]asn1.ObjectIdentifier{
	"C":            {2, 5, 4, 6},
	"ST":           {2, 5, 4, 8},
	"L":            {2, 5, 4, 7},
	"O":            {2, 5, 4, 10},
	"OU":           {2, 5, 4, 11},
	"CN":           {2, 5, 4, 3},
	"serialNumber": {2, 5, 4, 5},
	"DC":           {0, 9, 2342, 19200300, 100, 1, 25},
	"UID":          {0, 9, 2342, 19200300, 100, 1, 1},
	"emailAddress": {1, 2, 840, 113549, 1, 9, 1},
}

// ParseDN encodes a one-line DN ("/DC=org/CN=a+OU=b") as a DER RDNSequence,
// keeping the given order. Values are UTF8String, except C (PrintableString),
// DC and emailAddress (IA5String), as OpenSSL encodes them.
func ParseDN(oneline string) ([]byte, error) {
	if !strings.HasPrefix(oneline, "/") {
		return nil, fmt.Errorf("dn %q: must start with /", oneline)
	}
	var seq []pkix.RelativeDistinguishedNameSET
	for _, rdn := range strings.Split(oneline[1:], "/") {
		var set pkix.RelativeDistinguishedNameSET
		for _, ava := range strings.Split(rdn, "+") {
			k, v, ok := strings.Cut(ava, "=")
			oid, known := attrOIDs[k]
			if !ok || !known {
				return nil, fmt.Errorf("dn %q: bad attribute %q", oneline, ava)
			}
			tag := asn1.TagUTF8String
			switch k {
			case "C":
				tag = asn1.TagPrintableString
			case "DC", "emailAddress":
				tag = asn1.TagIA5String
			}
			set = append(set, pkix.AttributeTypeAndValue{Type: oid, Value: asn1.RawValue{Tag: tag, Bytes: []byte(v)}})
		}
		seq = append(seq, set)
	}
	return asn1.Marshal(pkix.RDNSequence(seq))
}

// Identity is a certificate with its private key.
type Identity struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Spec describes a certificate to issue.
type Spec struct {
	Subject   string // one-line DN
	NotBefore time.Time
	NotAfter  time.Time
	Serial    int64 // 0 picks a random serial
	IsCA      bool
	EKU       []x509.ExtKeyUsage // nil: none (any purpose)
	Email     string             // SAN rfc822Name
	ECDSA     bool               // P-256 instead of RSA-2048
	CRLURL    string             // CRL distribution point
}

func newKey(ec bool) (crypto.Signer, error) {
	if ec {
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	return rsa.GenerateKey(rand.Reader, 2048)
}

func template(s Spec) (*x509.Certificate, error) {
	raw, err := ParseDN(s.Subject)
	if err != nil {
		return nil, err
	}
	serial := big.NewInt(s.Serial)
	if s.Serial == 0 {
		serial, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
		if err != nil {
			return nil, err
		}
		serial.Add(serial, big.NewInt(2))
	}
	t := &x509.Certificate{
		SerialNumber:          serial,
		RawSubject:            raw,
		NotBefore:             s.NotBefore,
		NotAfter:              s.NotAfter,
		ExtKeyUsage:           s.EKU,
		BasicConstraintsValid: true,
		IsCA:                  s.IsCA,
	}
	if s.IsCA {
		t.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		t.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment
	}
	if s.Email != "" {
		t.EmailAddresses = []string{s.Email}
	}
	if s.CRLURL != "" {
		t.CRLDistributionPoints = []string{s.CRLURL}
	}
	return t, nil
}

// NewCA makes a self-signed CA.
func NewCA(s Spec) (*Identity, error) {
	s.IsCA = true
	t, err := template(s)
	if err != nil {
		return nil, err
	}
	key, err := newKey(s.ECDSA)
	if err != nil {
		return nil, err
	}
	t.RawIssuer = t.RawSubject
	der, err := x509.CreateCertificate(rand.Reader, t, t, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create ca: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Identity{Cert: cert, Key: key}, nil
}

// Issue signs a new certificate for s with ca.
func (ca *Identity) Issue(s Spec) (*Identity, error) {
	t, err := template(s)
	if err != nil {
		return nil, err
	}
	key, err := newKey(s.ECDSA)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, t, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issue %s: %w", s.Subject, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Identity{Cert: cert, Key: key}, nil
}

// CRL returns a DER CRL signed by ca revoking the given serials.
func (ca *Identity) CRL(number int64, thisUpdate, nextUpdate time.Time, revoked ...*big.Int) ([]byte, error) {
	var entries []x509.RevocationListEntry
	for _, s := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: thisUpdate, ReasonCode: 1})
	}
	return x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(number),
		ThisUpdate:                thisUpdate,
		NextUpdate:                nextUpdate,
		RevokedCertificateEntries: entries,
	}, ca.Cert, ca.Key)
}

// CertPEM returns the certificate in PEM form.
func (id *Identity) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: id.Cert.Raw})
}

// KeyPEM returns the private key as unencrypted PKCS#8 PEM.
func (id *Identity) KeyPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(id.Key)
	if err != nil {
		panic(err) // only rsa/ecdsa keys made above
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// CRLPEM encodes a DER CRL as PEM.
func CRLPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// WriteFile writes data to dir/name, creating dir.
func WriteFile(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name), data, 0o600)
}

// Fixture is the standard test PKI: one root CA with a CRL, and signers in
// the states the verification tests need. Write lays it out on disk.
type Fixture struct {
	CA       *Identity
	Signer   *Identity // emailProtection, valid now
	EC       *Identity // ECDSA P-256 signer
	Revoked  *Identity // listed on the CRL
	Expired  *Identity // validity ended a year ago
	HostOnly *Identity // EKU serverAuth+clientAuth only
	Rogue    *Identity // a second CA with the same DN as CA (untrusted)
	RogueSig *Identity // issued by Rogue, same DN as Signer
	CRL      []byte    // DER, valid now, revoking Revoked
	StaleCRL []byte    // DER, NextUpdate a day ago
}

// Fixture DNs.
const (
	CADN     = "/DC=org/DC=clr-test/O=Test Grid/CN=Test Trusted CA"
	SignerDN = "/DC=org/DC=clr-test/O=Test Grid/OU=Publishers/CN=Test Signer"
)

// NewFixture builds the standard test PKI around now.
func NewFixture(now time.Time) (*Fixture, error) {
	day := 24 * time.Hour
	f := &Fixture{}
	var err error
	must := func(id *Identity, e error) *Identity {
		if err == nil && e != nil {
			err = e
		}
		return id
	}
	email := []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection, x509.ExtKeyUsageClientAuth}
	f.CA = must(NewCA(Spec{Subject: CADN, NotBefore: now.Add(-365 * day), NotAfter: now.Add(3650 * day)}))
	if err != nil {
		return nil, err
	}
	f.Signer = must(f.CA.Issue(Spec{Subject: SignerDN, NotBefore: now.Add(-30 * day), NotAfter: now.Add(365 * day), EKU: email, Email: "signer@clr-test.org"}))
	f.EC = must(f.CA.Issue(Spec{Subject: "/DC=org/DC=clr-test/O=Test Grid/CN=EC Signer", NotBefore: now.Add(-30 * day), NotAfter: now.Add(365 * day), EKU: email, ECDSA: true}))
	f.Revoked = must(f.CA.Issue(Spec{Subject: "/DC=org/DC=clr-test/O=Test Grid/CN=Revoked Signer", Serial: 1001, NotBefore: now.Add(-30 * day), NotAfter: now.Add(365 * day), EKU: email}))
	f.Expired = must(f.CA.Issue(Spec{Subject: "/DC=org/DC=clr-test/O=Test Grid/CN=Expired Signer", NotBefore: now.Add(-730 * day), NotAfter: now.Add(-365 * day), EKU: email}))
	f.HostOnly = must(f.CA.Issue(Spec{Subject: "/DC=org/DC=clr-test/O=Hosts/CN=host.clr-test.org", NotBefore: now.Add(-30 * day), NotAfter: now.Add(365 * day), EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}))
	f.Rogue = must(NewCA(Spec{Subject: CADN, NotBefore: now.Add(-365 * day), NotAfter: now.Add(3650 * day)}))
	if err != nil {
		return nil, err
	}
	f.RogueSig = must(f.Rogue.Issue(Spec{Subject: SignerDN, NotBefore: now.Add(-30 * day), NotAfter: now.Add(365 * day), EKU: email}))
	if err != nil {
		return nil, err
	}
	if f.CRL, err = f.CA.CRL(2, now.Add(-day), now.Add(7*day), f.Revoked.Cert.SerialNumber); err != nil {
		return nil, err
	}
	if f.StaleCRL, err = f.CA.CRL(1, now.Add(-10*day), now.Add(-day), f.Revoked.Cert.SerialNumber); err != nil {
		return nil, err
	}
	return f, nil
}

// Write lays the fixture out in dir:
//
//	ca/ca.pem, ca/ca.crl.pem       the trusted CA and its current CRL (PEM);
//	                               run `openssl rehash ca` for hashed names
//	rogue/ca.pem                   the untrusted same-DN CA
//	<name>.pem, <name>.key         each signer's certificate and key
//	stale.crl.pem                  an expired CRL of the trusted CA
func (f *Fixture) Write(dir string) error {
	files := map[string][]byte{
		"ca/ca.pem":       f.CA.CertPEM(),
		"ca/ca.crl.pem":   CRLPEM(f.CRL),
		"ca.key":          f.CA.KeyPEM(),
		"rogue/ca.pem":    f.Rogue.CertPEM(),
		"stale.crl.pem":   CRLPEM(f.StaleCRL),
		"signer.pem":      f.Signer.CertPEM(),
		"signer.key":      f.Signer.KeyPEM(),
		"ec.pem":          f.EC.CertPEM(),
		"ec.key":          f.EC.KeyPEM(),
		"revoked.pem":     f.Revoked.CertPEM(),
		"revoked.key":     f.Revoked.KeyPEM(),
		"expired.pem":     f.Expired.CertPEM(),
		"expired.key":     f.Expired.KeyPEM(),
		"hostonly.pem":    f.HostOnly.CertPEM(),
		"hostonly.key":    f.HostOnly.KeyPEM(),
		"roguesigner.pem": f.RogueSig.CertPEM(),
		"roguesigner.key": f.RogueSig.KeyPEM(),
	}
	for name, data := range files {
		if err := WriteFile(filepath.Join(dir, filepath.Dir(name)), filepath.Base(name), data); err != nil {
			return err
		}
	}
	return nil
}
