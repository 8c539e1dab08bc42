package smime

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clr-suite/clr/internal/testpki"
)

// pki is the shared test PKI, written to pkiDir (ca/ is rehashed for
// openssl -CApath when openssl is available).
type pki struct {
	*testpki.Fixture
	Dir   string
	Inter *testpki.Identity // intermediate CA under CA
	Leaf  *testpki.Identity // signer issued by Inter
}

var (
	pkiOnce sync.Once
	pkiVal  *pki
	pkiErr  error
	tmpRoot string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if tmpRoot != "" {
		os.RemoveAll(tmpRoot)
	}
	os.Exit(code)
}

// testPKI builds the fixture once per test binary.
func testPKI(t testing.TB) *pki {
	t.Helper()
	pkiOnce.Do(func() { pkiVal, pkiErr = buildPKI() })
	if pkiErr != nil {
		t.Fatalf("test pki: %v", pkiErr)
	}
	return pkiVal
}

func buildPKI() (*pki, error) {
	now := time.Now()
	day := 24 * time.Hour
	f, err := testpki.NewFixture(now)
	if err != nil {
		return nil, err
	}
	inter, err := f.CA.Issue(testpki.Spec{Subject: "/DC=org/DC=clr-test/O=Test Grid/CN=Test Intermediate CA", IsCA: true, NotBefore: now.Add(-60 * day), NotAfter: now.Add(3000 * day)})
	if err != nil {
		return nil, err
	}
	leaf, err := inter.Issue(testpki.Spec{Subject: "/DC=org/DC=clr-test/O=Test Grid/CN=Chained Signer", NotBefore: now.Add(-30 * day), NotAfter: now.Add(365 * day),
		EKU: f.Signer.Cert.ExtKeyUsage})
	if err != nil {
		return nil, err
	}
	interCRL, err := inter.CRL(1, now.Add(-day), now.Add(7*day))
	if err != nil {
		return nil, err
	}
	if tmpRoot, err = os.MkdirTemp("", "smime-test-"); err != nil {
		return nil, err
	}
	dir := filepath.Join(tmpRoot, "pki")
	if err := f.Write(dir); err != nil {
		return nil, err
	}
	// chainca/: the root, its CRL and the intermediate's CRL (the
	// intermediate itself travels in the message).
	files := map[string][]byte{
		"chainca/ca.pem":        f.CA.CertPEM(),
		"chainca/ca.crl.pem":    testpki.CRLPEM(f.CRL),
		"chainca/inter.crl.pem": testpki.CRLPEM(interCRL),
		"inter.pem":             inter.CertPEM(),
		"leaf.pem":              leaf.CertPEM(),
		"leaf.key":              leaf.KeyPEM(),
	}
	for name, data := range files {
		if err := testpki.WriteFile(filepath.Join(dir, filepath.Dir(name)), filepath.Base(name), data); err != nil {
			return nil, err
		}
	}
	if _, err := exec.LookPath("openssl"); err == nil {
		for _, d := range []string{"ca", "chainca"} {
			if out, err := exec.Command("openssl", "rehash", filepath.Join(dir, d)).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("openssl rehash: %v: %s", err, out)
			}
		}
	}
	return &pki{Fixture: f, Dir: dir, Inter: inter, Leaf: leaf}, nil
}

// needOpenSSL: see testpki.RequireTools.
func needOpenSSL(t testing.TB) {
	t.Helper()
	testpki.RequireTools(t, "openssl")
}

// openssl runs the CLI in dir and fails the test on a non-zero exit.
func openssl(t testing.TB, dir string, args ...string) []byte {
	t.Helper()
	out, err := opensslErr(dir, args...)
	if err != nil {
		t.Fatalf("openssl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func opensslErr(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%v: %s", err, stderr.String())
	}
	return out, nil
}

// bigList returns a ~90 KB JSON-ish image list with LF line endings.
func bigList() []byte {
	var b strings.Builder
	b.WriteString("{\n    \"hv:imagelist\": {\n        \"dc:title\": \"big list \u00fcmlaut\",\n        \"hv:images\": [\n")
	for i := 0; b.Len() < 90_000; i++ {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, "            {\"hv:image\": {\"dc:identifier\": \"%08d-0000-4000-8000-000000000000\", \"hv:uri\": \"https://example.org/img/%d.qcow2\", \"hv:size\": %d, \"sl:checksum:sha512\": \"%0128x\"}}", i, i, i*1024, i)
	}
	b.WriteString("\n        ]\n    }\n}\n")
	return []byte(b.String())
}

// smallList is a short list with LF line endings, trailing spaces after
// commas (as hepixvmitrust writes) and UTF-8.
const smallList = "{\n    \"hv:imagelist\": {\n        \"dc:title\": \"small \u00fcmlaut list\", \n        \"hv:version\": \"1\"\n    }\n}\n"
