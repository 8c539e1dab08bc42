package serve

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pebbleBinary finds Pebble: $PEBBLE, else "pebble" on PATH. Missing, the
// test is skipped, unless CI=true where it fails.
func pebbleBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PEBBLE"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("PEBBLE=%s: %v", p, err)
		}
		return p
	}
	if p, err := exec.LookPath("pebble"); err == nil {
		return p
	}
	msg := "pebble not found: set PEBBLE or put it on PATH (go install github.com/letsencrypt/pebble/v2/cmd/pebble@latest)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// freePort returns a 127.0.0.1 port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// pebble is a Pebble process: newPebble fixes its CA and ports, start runs
// it.
type pebble struct {
	ca     *testCert
	listen string // ACME API address
	mgmt   string // management API address
	client *http.Client
	log    *lockedBuffer
}

func newPebble(t *testing.T) *pebble {
	t.Helper()
	ca := newCert(t, nil, "clr test pebble CA", true)
	return &pebble{
		ca:     ca,
		listen: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))),
		mgmt:   net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))),
		client: tlsClient(ca.pool(), ""),
		log:    &lockedBuffer{},
	}
}

func (p *pebble) dirURL() string { return "https://" + p.listen + "/dir" }

// start runs Pebble with a TLS certificate signed by p.ca, resolving names
// through dnsAddr and validating http-01 on httpPort and tls-alpn-01 on
// tlsPort, and waits until its directory answers.
func (p *pebble) start(t *testing.T, bin, dnsAddr string, httpPort, tlsPort int) {
	t.Helper()
	dir := t.TempDir()
	leaf := newCert(t, p.ca, "pebble", false, "127.0.0.1", "localhost")
	certFile, keyFile := leaf.write(t, dir, "pebble")
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":           p.listen,
		"managementListenAddress": p.mgmt,
		"certificate":             certFile,
		"privateKey":              keyFile,
		"httpPort":                httpPort,
		"tlsPort":                 tlsPort,
		"keyAlgorithm":            "ecdsa",
		// no retryAfter: the ACME client polls without waiting seconds
	}}
	b, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	confFile := filepath.Join(dir, "pebble-config.json")
	writeFile(t, confFile, b)

	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PEBBLE_") { // never inherit PEBBLE_VA_ALWAYS_VALID
			env = append(env, e)
		}
	}
	env = append(env, "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")

	cmd := exec.Command(bin, "-config", confFile, "-dnsserver", dnsAddr)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = p.log, p.log
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("pebble output:\n%s", p.log.String())
		}
	})

	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := p.client.Get(p.dirURL())
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			t.Fatalf("pebble exited:\n%s", p.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble not up after 10s (%v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cert fetches a PEM certificate from the management API.
func (p *pebble) cert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	resp, err := p.client.Get("https://" + p.mgmt + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM in %q", path, b)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRunACMEPebble gets the HTTPS certificate from a real Pebble. Pebble
// resolves the domain through an in-test DNS server to 127.0.0.1 and
// validates for real (PEBBLE_VA_ALWAYS_VALID is not set):
//
//   - http-01: Pebble's VA fetches the token from our HTTP listener (its
//     httpPort is our HTTP port). autocert tries tls-alpn-01 first, so
//     Pebble's tlsPort points at our plain HTTP port as well: that
//     handshake fails at once and autocert falls back to http-01.
//   - tls-alpn-01: tlsPort is our HTTPS port, and the acme-tls/1 handshake
//     is answered by the HTTPS listener.
func TestRunACMEPebble(t *testing.T) {
	bin := pebbleBinary(t)
	const domain = "library.clr.test"
	for _, tt := range []struct {
		name   string
		http01 bool
	}{
		{"http-01", true},
		{"tls-alpn-01", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dnsAddr := startDNS(t)
			peb := newPebble(t)
			var logBuf lockedBuffer
			run := startRun(t, Config{
				Handler:   libraryHandler(t),
				HTTPAddr:  "127.0.0.1:0",
				HTTPSAddr: "127.0.0.1:0",
				ACME: &ACMEConfig{
					Domains:      []string{domain},
					CacheDir:     t.TempDir(),
					DirectoryURL: peb.dirURL(),
					Email:        "ops@clr.test",
					HTTPClient:   peb.client,
				},
				Redirect: true,
				Logger:   slog.New(slog.NewJSONHandler(&logBuf, nil)),
			})
			httpPort := portOf(t, run.addrs.HTTP)
			tlsPort := portOf(t, run.addrs.HTTPS)
			if tt.http01 {
				tlsPort = httpPort
			}
			peb.start(t, bin, dnsAddr, httpPort, tlsPort)
			root := peb.cert(t, "/roots/0")
			intermediate := peb.cert(t, "/intermediates/0")

			// The first handshake for the domain makes autocert get the
			// certificate; the client trusts Pebble's root only.
			pool := x509.NewCertPool()
			pool.AddCert(root)
			c := tlsClient(pool, domain)
			c.Timeout = 30 * time.Second
			c.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, run.addrs.HTTPS)
			}
			url := "https://" + net.JoinHostPort(domain, strconv.Itoa(portOf(t, run.addrs.HTTPS))) + "/lib.json"
			resp, body := fetch(t, c, http.MethodGet, url)
			if resp.StatusCode != http.StatusOK || body != `{"vcsp":true}` {
				t.Fatalf("status %d body %q", resp.StatusCode, body)
			}
			leaf := resp.TLS.PeerCertificates[0]
			if err := leaf.VerifyHostname(domain); err != nil {
				t.Errorf("leaf: %v", err)
			}
			if err := leaf.CheckSignatureFrom(intermediate); err != nil || leaf.Issuer.String() != intermediate.Subject.String() {
				t.Errorf("leaf issued by %q, not Pebble's intermediate %q: %v", leaf.Issuer, intermediate.Subject, err)
			}
			if resp.TLS.VerifiedChains == nil {
				t.Error("chain not verified")
			}

			// A second request reuses the certificate.
			if resp, _ := fetch(t, c, http.MethodGet, url); resp.TLS.PeerCertificates[0].SerialNumber.Cmp(leaf.SerialNumber) != 0 {
				t.Error("second handshake got another certificate")
			}

			// The validation was real, and used the expected challenge.
			plog := peb.log.String()
			if strings.Contains(plog, "Skipping real validation") {
				t.Error("pebble skipped validation")
			}
			if !strings.Contains(plog, "set VALID by completed challenge") {
				t.Error("pebble log has no valid authorization")
			}
			challengeLogged := strings.Contains(logBuf.String(), `"msg":"serve: acme http-01 challenge"`) &&
				strings.Contains(logBuf.String(), `"status":200`)
			if tt.http01 {
				if !strings.Contains(plog, "Attempting to validate w/ HTTP: http://"+domain+":"+strconv.Itoa(httpPort)+"/.well-known/acme-challenge/") {
					t.Error("pebble did not fetch the http-01 token from our HTTP listener")
				}
				if !challengeLogged {
					t.Errorf("our HTTP listener did not answer a challenge:\n%s", logBuf.String())
				}
			} else if strings.Contains(plog, "Attempting to validate w/ HTTP") || challengeLogged {
				t.Error("http-01 used where tls-alpn-01 should have succeeded")
			}

			// Plain HTTP still redirects with ACME on.
			resp, _ = fetch(t, tlsClient(nil, ""), http.MethodGet, "http://"+run.addrs.HTTP+"/lib.json?x=1")
			if want := "https://127.0.0.1:" + strconv.Itoa(portOf(t, run.addrs.HTTPS)) + "/lib.json?x=1"; resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != want {
				t.Errorf("redirect: %d %q, want 301 %q", resp.StatusCode, resp.Header.Get("Location"), want)
			}
			if err := run.stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
		})
	}
}
