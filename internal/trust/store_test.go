package trust

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clr-suite/clr/internal/testpki"
)

// TestLoadRehashed loads a directory laid out by testpki and `openssl
// rehash` (hash-named symlinks next to the .pem files) and verifies with it.
func TestLoadRehashed(t *testing.T) {
	requireOpenSSL(t)
	f := fx(t)
	root := t.TempDir()
	if err := f.Write(root); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "ca")
	runOpenSSL(t, "rehash", dir)
	hash := strings.TrimSpace(runOpenSSL(t, "x509", "-in", filepath.Join(dir, "ca.pem"), "-noout", "-subject_hash"))
	for _, name := range []string{hash + ".0", hash + ".r0"} {
		if fi, err := os.Lstat(filepath.Join(dir, name)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("openssl rehash made no symlink %s: %v", name, err)
		}
	}
	s := load(t, dir)
	if p := s.Problems(); len(p) != 0 {
		t.Errorf("problems: %q", p)
	}
	cas := s.CAs()
	if len(cas) != 1 {
		t.Fatalf("%d CAs, want 1 (ca.pem and its symlink are the same certificate)", len(cas))
	}
	ca := cas[0]
	if ca.Subject != testpki.CADN || ca.CRL == nil || ca.CRLFile != filepath.Join(dir, hash+".r0") || ca.HasPolicy {
		t.Errorf("CA = %+v", ca)
	}
	if ca.File != filepath.Join(dir, hash+".0") && ca.File != filepath.Join(dir, "ca.pem") {
		t.Errorf("CA file %q", ca.File)
	}
	res, err := s.Verify(f.Signer.Cert, nil, Policy{Time: ref})
	if err != nil {
		t.Fatal(err)
	}
	if res.CAFile != ca.File {
		t.Errorf("CAFile %q, want %q", res.CAFile, ca.File)
	}
	_, err = s.Verify(f.Revoked.Cert, nil, Policy{Time: ref})
	checkErr(t, err, ErrRevoked, "revoked by CRL "+filepath.Join(dir, hash+".r0"))
	if s.Dir() != dir {
		t.Errorf("Dir = %q", s.Dir())
	}

	// The same directory judged by OpenSSL agrees.
	out, _ := execOpenSSL(t, "verify", "-attime", strconv.FormatInt(ref.Unix(), 10), "-CApath", dir, "-crl_check", "-purpose", "smimesign", filepath.Join(root, "revoked.pem"))
	if !strings.Contains(out, "certificate revoked") {
		t.Errorf("openssl verify revoked: %s", out)
	}
	out, _ = execOpenSSL(t, "verify", "-attime", strconv.FormatInt(ref.Unix(), 10), "-CApath", dir, "-crl_check", "-purpose", "smimesign", filepath.Join(root, "signer.pem"))
	if !strings.Contains(out, ": OK") {
		t.Errorf("openssl verify signer: %s", out)
	}
}

// TestLoadPlainPEM: only *.pem files, no hashed names, no CRL.
func TestLoadPlainPEM(t *testing.T) {
	f := fx(t)
	k := newIntermediatePKI(t, ref.Add(1000*day), false, false)
	// One bundle with the root and the sub CA, plus a leaf that is no CA.
	bundle := append(append(certPEM(k.root.Cert), certPEM(k.sub.Cert)...), certPEM(k.leaf.Cert)...)
	dir := writeDir(t, map[string][]byte{
		"TestCA.pem": certPEM(f.CA.Cert),
		"bundle.pem": bundle,
	})
	s := load(t, dir)
	if n := len(s.CAs()); n != 3 {
		t.Fatalf("%d CAs, want 3", n)
	}
	probs := s.Problems()
	if len(probs) != 1 || !strings.Contains(probs[0], "bundle.pem: certificate \"/DC=org/DC=clr-test/O=People/CN=Leaf\" is not a CA certificate (ignored)") {
		t.Errorf("problems: %q", probs)
	}
	_, err := s.Verify(f.Signer.Cert, nil, Policy{Time: ref})
	checkErr(t, err, ErrNoCRL)
	if _, err := s.Verify(f.Signer.Cert, nil, Policy{Time: ref, CRL: CRLIfPresent}); err != nil {
		t.Fatal(err)
	}
	res, err := s.Verify(k.leaf.Cert, nil, Policy{Time: ref, CRL: CRLIfPresent})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Chain) != 3 || res.CAFile != filepath.Join(dir, "bundle.pem") {
		t.Errorf("chain of %d to %s: the full chain to the self-signed root must win", len(res.Chain), res.CAFile)
	}
}

func TestLoadProblems(t *testing.T) {
	f := fx(t)
	der := f.CA.Cert.Raw
	dir := writeDir(t, map[string][]byte{
		"ca000001.0":              der, // DER is accepted
		"deadbeef.0":              []byte("garbage"),
		"junk.pem":                []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
		"deadbeef.r0":             []byte("not a crl"),
		"key.pem":                 pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}),
		"crl.pem":                 testpki.CRLPEM(f.CRL), // a PEM CRL named .pem: silently not a certificate
		"deadbeef.signing_policy": []byte("nonsense\n"),
		"other.namespaces":        []byte("TO Issuer SELF PERMIT Subject \".*\"\n"), // SELF without a hash name
		"TestCA.info":             []byte("alias = TestCA\n"),
		"TestCA.crl_url":          []byte("http://example.org/crl\n"),
		"ca000001.r0":             f.CRL, // DER CRL
		"README":                  []byte("x"),
	})
	if err := os.Symlink(filepath.Join(dir, "missing.pem"), filepath.Join(dir, "abcdef01.0")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.pem"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := load(t, dir)
	want := []string{
		"abcdef01.0: open ",
		"deadbeef.0: no certificate (neither PEM CERTIFICATE blocks nor DER)",
		"deadbeef.r0: no CRL (neither PEM X509 CRL blocks nor DER)",
		"deadbeef.signing_policy:1: unsupported statement \"nonsense\"",
		"junk.pem: PEM block 1: x509: malformed certificate",
		"key.pem: no certificate",
		"sub.pem: not a regular file",
		"other.namespaces: line 1: TO Issuer SELF, but no CA certificate file",
	}
	probs := s.Problems()
	if len(probs) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(probs), len(want), strings.Join(probs, "\n"))
	}
	for _, w := range want {
		found := false
		for _, p := range probs {
			if strings.Contains(p, w) && strings.HasPrefix(p, dir) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem %q in:\n%s", w, strings.Join(probs, "\n"))
		}
	}
	cas := s.CAs()
	if len(cas) != 1 || cas[0].File != filepath.Join(dir, "ca000001.0") || cas[0].CRLFile != filepath.Join(dir, "ca000001.r0") {
		t.Fatalf("CAs = %+v", cas)
	}
	// The unparsable deadbeef.signing_policy belongs to no loaded CA, so the
	// CA stays unconstrained.
	if cas[0].HasPolicy {
		t.Error("HasPolicy set")
	}
	if _, err := s.Verify(f.Signer.Cert, nil, Policy{Time: ref}); err != nil {
		t.Fatal(err)
	}
}

func TestLoadRogueCRLReported(t *testing.T) {
	f := fx(t)
	rogueCRL, err := f.Rogue.CRL(5, ref.Add(-time.Hour), ref.Add(day))
	if err != nil {
		t.Fatal(err)
	}
	dir := writeDir(t, map[string][]byte{"ca000001.0": certPEM(f.CA.Cert), "ca000001.r0": testpki.CRLPEM(rogueCRL)})
	s := load(t, dir)
	probs := s.Problems()
	if len(probs) != 1 || !strings.Contains(probs[0], "ca000001.r0: CRL issuer \""+testpki.CADN+"\" is a CA of this directory, but no CA of that name signed it (ignored)") {
		t.Errorf("problems: %q", probs)
	}
	if s.CAs()[0].CRL != nil {
		t.Error("rogue CRL attached to the CA")
	}
}

func TestLoadCAFields(t *testing.T) {
	f := fx(t)
	dir := writeDir(t, map[string][]byte{
		"ca000001.0":          certPEM(f.CA.Cert),
		"ca000001.r0":         testpki.CRLPEM(f.StaleCRL),
		"ca000001.r1":         testpki.CRLPEM(f.CRL),
		"ca000001.namespaces": []byte("TO Issuer SELF PERMIT Subject \".*\"\n"),
		"rogue.pem":           certPEM(f.Rogue.Cert), // a same-DN CA: both are listed
	})
	cas := load(t, dir).CAs()
	if len(cas) != 2 {
		t.Fatalf("%d CAs", len(cas))
	}
	for _, ca := range cas {
		if ca.Subject != testpki.CADN || !ca.HasPolicy {
			t.Errorf("CA %s: %+v", ca.File, ca)
		}
		switch ca.File {
		case filepath.Join(dir, "ca000001.0"):
			if ca.CRLFile != filepath.Join(dir, "ca000001.r1") || ca.CRL.Number.Int64() != 2 {
				t.Errorf("freshest CRL = %s", ca.CRLFile)
			}
		case filepath.Join(dir, "rogue.pem"):
			if ca.CRL != nil {
				t.Errorf("rogue CA got CRL %s", ca.CRLFile)
			}
		default:
			t.Errorf("unexpected CA file %s", ca.File)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	f := fx(t)
	tests := []struct {
		name   string
		files  map[string][]byte
		noDir  bool
		noCAs  bool
		substr string
	}{
		{name: "empty directory", files: map[string][]byte{}, noCAs: true, substr: "no usable CA certificates"},
		{name: "only garbage", files: map[string][]byte{"deadbeef.0": []byte("x")}, noCAs: true, substr: "(1 problem(s), first: "},
		{name: "only a leaf", files: map[string][]byte{"signer.pem": certPEM(f.Signer.Cert)}, noCAs: true, substr: "is not a CA certificate"},
		{name: "only CRLs", files: map[string][]byte{"ca000001.r0": f.CRL}, noCAs: true},
		{name: "missing directory", noDir: true, substr: "trust directory: open "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "nonexistent")
			if !tc.noDir {
				dir = writeDir(t, tc.files)
			}
			s, err := Load(dir)
			if err == nil || s != nil {
				t.Fatalf("Load = %v, %v", s, err)
			}
			if errors.Is(err, ErrNoCAs) != tc.noCAs {
				t.Errorf("errors.Is(ErrNoCAs) = %v: %v", !tc.noCAs, err)
			}
			if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), tc.substr) {
				t.Errorf("error %q does not name %s or contain %q", err, dir, tc.substr)
			}
		})
	}
}

// TestCloudkeeperVector: the cloudkeeper mock CA directory holds one
// self-signed certificate with CA:TRUE, which also signed the vector lists
// itself (auth/cert.pem is the same certificate). Load accepts it as a CA;
// verifying it as a signer gives a one-certificate chain, which needs no
// CRL even under CRLRequire.
func TestCloudkeeperVector(t *testing.T) {
	const vectors = "../../testdata/vectors/cloudkeeper"
	if _, err := os.Stat(vectors); err != nil {
		t.Skipf("vectors not present: %v", err)
	}
	s := load(t, filepath.Join(vectors, "ca"))
	if len(s.CAs()) != 1 || len(s.Problems()) != 0 {
		t.Fatalf("CAs %d, problems %q", len(s.CAs()), s.Problems())
	}
	const dn = "/C=AU/ST=Some-State/O=Internet Widgits Pty Ltd"
	if got := s.CAs()[0].Subject; got != dn {
		t.Errorf("subject %q", got)
	}
	data, err := os.ReadFile(filepath.Join(vectors, "auth", "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	signer, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	res, err := s.Verify(signer, nil, Policy{Time: at})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Chain) != 1 || res.SubjectDN != dn || res.IssuerDN != dn || res.CAFile != filepath.Join(vectors, "ca", "9da13359.0") {
		t.Errorf("result %+v", res)
	}
	_, err = s.Verify(signer, nil, Policy{Time: time.Date(2028, 3, 1, 0, 0, 0, 0, time.UTC)})
	checkErr(t, err, ErrExpired, "valid until 2028-02-17T08:53:53Z")
}

func TestLoadDeltaCRLIgnored(t *testing.T) {
	f := fx(t)
	base, err := asn1.Marshal(1)
	if err != nil {
		t.Fatal(err)
	}
	delta, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(9), ThisUpdate: ref.Add(-time.Hour), NextUpdate: ref.Add(day),
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 27}, Critical: true, Value: base}},
	}, f.CA.Cert, f.CA.Key)
	if err != nil {
		t.Fatal(err)
	}
	dir := writeDir(t, map[string][]byte{"ca000001.0": certPEM(f.CA.Cert), "ca000001.r0": f.CRL, "ca000001.r1": delta})
	s := load(t, dir)
	if p := s.Problems(); len(p) != 1 || !strings.HasSuffix(p[0], "ca000001.r1: delta CRL (not supported, ignored)") {
		t.Errorf("problems %q", p)
	}
	_, err = s.Verify(f.Revoked.Cert, nil, Policy{Time: ref})
	checkErr(t, err, ErrRevoked, "ca000001.r0")
}
