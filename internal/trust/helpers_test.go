package trust

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clr-suite/clr/internal/testpki"
)

// ref is the reference time of the tests: fixtures are built around it.
var ref = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

var (
	fixtureOnce sync.Once
	fixture     *testpki.Fixture
	fixtureErr  error
)

// fx returns the standard test PKI around ref (built once per test binary:
// RSA key generation is slow).
func fx(t testing.TB) *testpki.Fixture {
	t.Helper()
	fixtureOnce.Do(func() { fixture, fixtureErr = testpki.NewFixture(ref) })
	if fixtureErr != nil {
		t.Fatalf("fixture: %v", fixtureErr)
	}
	return fixture
}

// writeDir writes files (name -> content) into a fresh directory.
func writeDir(t testing.TB, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func load(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Load(dir)
	if err != nil {
		t.Fatalf("Load(%s): %v", dir, err)
	}
	return s
}

// requireOpenSSL returns the openssl CLI (see testpki.RequireTools).
func requireOpenSSL(t testing.TB) string {
	t.Helper()
	testpki.RequireTools(t, "openssl")
	path, _ := exec.LookPath("openssl")
	return path
}

func runOpenSSL(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(requireOpenSSL(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// issue signs tmpl with parent's key; the subject key is a fresh P-256 key.
func issue(t testing.TB, parent *testpki.Identity, tmpl *x509.Certificate) *testpki.Identity {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.SerialNumber == nil {
		if tmpl.SerialNumber, err = rand.Int(rand.Reader, big.NewInt(1<<62)); err != nil {
			t.Fatal(err)
		}
		tmpl.SerialNumber.Add(tmpl.SerialNumber, big.NewInt(1))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Cert, key.Public(), parent.Key)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testpki.Identity{Cert: c, Key: key}
}

func dn(t testing.TB, oneline string) []byte {
	t.Helper()
	raw, err := testpki.ParseDN(oneline)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// checkErr asserts err wraps want (nil: no error), is a one-line
// *VerifyError when want is a sentinel, and contains every fragment.
func checkErr(t *testing.T, err, want error, fragments ...string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("error %T is not a *VerifyError: %v", err, err)
	}
	msg := err.Error()
	t.Log(msg)
	if strings.ContainsAny(msg, "\n\r") {
		t.Errorf("error is not one line: %q", msg)
	}
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			t.Errorf("error %q does not contain %q", msg, f)
		}
	}
}

// execOpenSSL runs openssl and returns its combined output and error.
func execOpenSSL(t testing.TB, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(requireOpenSSL(t), args...).CombinedOutput()
	return string(out), err
}
