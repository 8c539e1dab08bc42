package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// libraryHandler is a Handler over a one-file tree with /healthz open.
func libraryHandler(t *testing.T) http.Handler {
	t.Helper()
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "lib.json"), []byte(`{"vcsp":true}`))
	health := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	h, err := Handler(HandlerOptions{
		Root:        root,
		Password:    "pw",
		Extra:       map[string]http.Handler{HealthPath: health},
		ExtraNoAuth: []string{HealthPath},
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func fetch(t *testing.T, c *http.Client, method, url string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(DefaultUser, "pw")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// TestRunFileCert: HTTPS with a reloadable file certificate, the HTTP
// redirect, /healthz on plain HTTP, TLS 1.2 minimum, Reload of a new
// certificate and of a broken file, and a clean stop.
func TestRunFileCert(t *testing.T) {
	dir := t.TempDir()
	cert1 := newCert(t, nil, "clr test 1", false, "127.0.0.1")
	certFile, keyFile := cert1.write(t, dir, "server")
	fc, err := NewFileCert(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	run := startRun(t, Config{
		Handler:   libraryHandler(t),
		HTTPAddr:  "127.0.0.1:0",
		HTTPSAddr: "127.0.0.1:0",
		Cert:      fc,
		Redirect:  true,
	})
	httpsURL := "https://" + run.addrs.HTTPS
	httpURL := "http://" + run.addrs.HTTP
	_, httpsPort, _ := net.SplitHostPort(run.addrs.HTTPS)

	// peer fetches lib.json over a new connection and returns the leaf.
	peer := func(c *http.Client) []byte {
		t.Helper()
		resp, body := fetch(t, c, http.MethodGet, httpsURL+"/lib.json")
		if resp.StatusCode != http.StatusOK || body != `{"vcsp":true}` {
			t.Fatalf("https: status %d body %q", resp.StatusCode, body)
		}
		if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
			t.Fatalf("https: TLS state %+v", resp.TLS)
		}
		return resp.TLS.PeerCertificates[0].Raw
	}

	t.Run("https", func(t *testing.T) {
		if got := peer(tlsClient(cert1.pool(), "")); string(got) != string(cert1.cert.Raw) {
			t.Error("served certificate is not cert1")
		}
	})
	t.Run("TLS 1.1 refused", func(t *testing.T) {
		c := tlsClient(cert1.pool(), "")
		tc := c.Transport.(*http.Transport).TLSClientConfig
		tc.MinVersion, tc.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
		resp, err := c.Get(httpsURL + "/lib.json")
		if err == nil {
			resp.Body.Close()
			t.Fatal("TLS 1.1 handshake succeeded")
		}
		// The server refused it (an alert), not the client itself.
		if !strings.Contains(err.Error(), "protocol version") {
			t.Fatalf("TLS 1.1: %v, want a protocol version alert", err)
		}
	})
	t.Run("untrusted", func(t *testing.T) {
		other := newCert(t, nil, "other", false, "127.0.0.1")
		if resp, err := tlsClient(other.pool(), "").Get(httpsURL + "/lib.json"); err == nil {
			resp.Body.Close()
			t.Fatal("handshake succeeded with the wrong trust anchor")
		}
	})
	t.Run("redirect", func(t *testing.T) {
		c := tlsClient(nil, "")
		for _, tt := range []struct {
			method, path string
			status       int
		}{
			{http.MethodGet, "/tmpl/a%20b.json?x=1&y=%2F", http.StatusMovedPermanently},
			{http.MethodHead, "/lib.json", http.StatusMovedPermanently},
			{http.MethodPost, "/lib.json?z", http.StatusPermanentRedirect},
			{http.MethodPut, "/a%2Fb", http.StatusPermanentRedirect},
		} {
			resp, _ := fetch(t, c, tt.method, httpURL+tt.path)
			want := "https://127.0.0.1:" + httpsPort + tt.path
			if resp.StatusCode != tt.status || resp.Header.Get("Location") != want {
				t.Errorf("%s %s: %d %q, want %d %q", tt.method, tt.path, resp.StatusCode, resp.Header.Get("Location"), tt.status, want)
			}
		}
		// Following the redirect ends at the file.
		follow := tlsClient(cert1.pool(), "")
		follow.CheckRedirect = nil
		if resp, body := fetch(t, follow, http.MethodGet, httpURL+"/lib.json"); resp.StatusCode != http.StatusOK || body != `{"vcsp":true}` {
			t.Errorf("followed redirect: %d %q", resp.StatusCode, body)
		}
	})
	t.Run("healthz on http", func(t *testing.T) {
		resp, err := tlsClient(nil, "").Get(httpURL + HealthPath)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "ok" {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
	})
	t.Run("reload", func(t *testing.T) {
		cert2 := newCert(t, nil, "clr test 2", false, "127.0.0.1")
		cert2.write(t, dir, "server")
		if err := fc.Reload(); err != nil {
			t.Fatalf("Reload: %v", err)
		}
		if got := peer(tlsClient(cert2.pool(), "")); string(got) != string(cert2.cert.Raw) {
			t.Fatal("after Reload the server still sends the old certificate")
		}
		if s1, _ := Thumbprints(fc.Certificate().Leaf); s1 == "" {
			t.Error("no leaf after Reload")
		}

		// A broken certificate file: Reload fails, cert2 stays.
		writeFile(t, certFile, []byte("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"))
		if err := fc.Reload(); err == nil || !strings.HasPrefix(err.Error(), "serve: load certificate: ") {
			t.Fatalf("Reload of a broken file: %v", err)
		}
		if got := peer(tlsClient(cert2.pool(), "")); string(got) != string(cert2.cert.Raw) {
			t.Fatal("a failed Reload replaced the certificate")
		}

		// A certificate with somebody else's key: refused too.
		cert3 := newCert(t, nil, "clr test 3", false, "127.0.0.1")
		writeFile(t, certFile, cert3.certPEM)
		if err := fc.Reload(); err == nil {
			t.Fatal("Reload accepted a certificate that does not match the key")
		}
		if got := peer(tlsClient(cert2.pool(), "")); string(got) != string(cert2.cert.Raw) {
			t.Fatal("a failed Reload replaced the certificate")
		}
	})

	if err := run.stop(); err != nil {
		t.Fatalf("Run: %v, want nil on a clean stop", err)
	}
	if _, err := net.DialTimeout("tcp", run.addrs.HTTPS, time.Second); err == nil {
		t.Error("https listener still open after Run returned")
	}
}

// TestRunCertFilesNoRedirect: CertFile/KeyFile (a FileCert Run owns) and,
// without Redirect, the HTTP listener serving the handler itself.
func TestRunCertFilesNoRedirect(t *testing.T) {
	dir := t.TempDir()
	cert := newCert(t, nil, "clr", false, "127.0.0.1")
	certFile, keyFile := cert.write(t, dir, "server")
	run := startRun(t, Config{
		Handler:   libraryHandler(t),
		HTTPAddr:  "127.0.0.1:0",
		HTTPSAddr: "127.0.0.1:0",
		CertFile:  certFile,
		KeyFile:   keyFile,
	})
	for _, url := range []string{"https://" + run.addrs.HTTPS + "/lib.json", "http://" + run.addrs.HTTP + "/lib.json"} {
		if resp, body := fetch(t, tlsClient(cert.pool(), ""), http.MethodGet, url); resp.StatusCode != http.StatusOK || body != `{"vcsp":true}` {
			t.Errorf("%s: %d %q", url, resp.StatusCode, body)
		}
	}
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
}

// TestRunPlainHTTP: without TLS the HTTP listener serves the handler and
// Redirect is ignored.
func TestRunPlainHTTP(t *testing.T) {
	run := startRun(t, Config{Handler: libraryHandler(t), HTTPAddr: "127.0.0.1:0", Redirect: true})
	if run.addrs.HTTPS != "" {
		t.Errorf("HTTPS address %q without TLS", run.addrs.HTTPS)
	}
	resp, body := fetch(t, tlsClient(nil, ""), http.MethodGet, "http://"+run.addrs.HTTP+"/lib.json")
	if resp.StatusCode != http.StatusOK || body != `{"vcsp":true}` {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
}

// blockingHandler blocks every request until release is closed.
type blockingHandler struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func newBlockingHandler() *blockingHandler {
	return &blockingHandler{entered: make(chan struct{}, 8), release: make(chan struct{})}
}

func (b *blockingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.entered <- struct{}{}
	<-b.release
	_, _ = io.WriteString(w, "done")
}

func (b *blockingHandler) unblock() { b.once.Do(func() { close(b.release) }) }

// TestRunGracefulShutdown: a request in flight when ctx is cancelled
// completes, and Run returns nil.
func TestRunGracefulShutdown(t *testing.T) {
	bh := newBlockingHandler()
	t.Cleanup(bh.unblock)
	run := startRun(t, Config{Handler: bh, HTTPAddr: "127.0.0.1:0", ShutdownTimeout: 10 * time.Second})
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + run.addrs.HTTP + "/x")
		if err != nil {
			got <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- result{string(b), err}
	}()
	<-bh.entered
	stopped := make(chan error, 1)
	go func() { stopped <- run.stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("Run returned (%v) with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	bh.unblock()
	if r := <-got; r.err != nil || r.body != "done" {
		t.Fatalf("in-flight request: %q %v", r.body, r.err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestRunShutdownTimeout: a request that outlives ShutdownTimeout makes Run
// return a deadline error instead of hanging.
func TestRunShutdownTimeout(t *testing.T) {
	bh := newBlockingHandler()
	t.Cleanup(bh.unblock)
	run := startRun(t, Config{Handler: bh, HTTPAddr: "127.0.0.1:0", ShutdownTimeout: 100 * time.Millisecond})
	go func() {
		if resp, err := http.Get("http://" + run.addrs.HTTP + "/x"); err == nil {
			resp.Body.Close()
		}
	}()
	<-bh.entered
	start := time.Now()
	err := run.stop()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run took %v to give up", d)
	}
}

func TestRunListenError(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, cfg := range []Config{
		{Handler: http.NotFoundHandler(), HTTPAddr: busy.Addr().String()},
		{Handler: http.NotFoundHandler(), HTTPAddr: busy.Addr().String(), HTTPSAddr: "127.0.0.1:0", Cert: &FileCert{}},
	} {
		called := false
		cfg.Ready = func(Addrs) { called = true }
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := Run(ctx, cfg)
		cancel()
		if err == nil || !strings.HasPrefix(err.Error(), "serve: listen http: ") {
			t.Errorf("Run on a busy port: %v", err)
		}
		if called {
			t.Error("Ready called although a listener failed")
		}
	}
}

func TestRunConfigErrors(t *testing.T) {
	h := http.NotFoundHandler()
	fc := &FileCert{}
	acmeOK := &ACMEConfig{Domains: []string{"lib.example.org"}, CacheDir: t.TempDir()}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no handler", Config{HTTPAddr: ":0"}},
		{"no address", Config{Handler: h}},
		{"https without certificate", Config{Handler: h, HTTPSAddr: ":0"}},
		{"cert file without key", Config{Handler: h, HTTPSAddr: ":0", CertFile: "c.pem"}},
		{"key file without cert", Config{Handler: h, HTTPSAddr: ":0", KeyFile: "k.pem"}},
		{"two sources", Config{Handler: h, HTTPSAddr: ":0", Cert: fc, ACME: acmeOK}},
		{"files and holder", Config{Handler: h, HTTPSAddr: ":0", Cert: fc, CertFile: "c", KeyFile: "k"}},
		{"certificate without https", Config{Handler: h, HTTPAddr: ":0", Cert: fc}},
		{"acme without https", Config{Handler: h, HTTPAddr: ":0", ACME: acmeOK}},
		{"acme no domains", Config{Handler: h, HTTPSAddr: ":0", ACME: &ACMEConfig{CacheDir: "x"}}},
		{"acme empty domain", Config{Handler: h, HTTPSAddr: ":0", ACME: &ACMEConfig{Domains: []string{""}, CacheDir: "x"}}},
		{"acme IP domain", Config{Handler: h, HTTPSAddr: ":0", ACME: &ACMEConfig{Domains: []string{"127.0.0.1"}, CacheDir: "x"}}},
		{"acme no cache", Config{Handler: h, HTTPSAddr: ":0", ACME: &ACMEConfig{Domains: []string{"lib.example.org"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Ready = func(Addrs) { t.Error("Ready called") }
			err := Run(context.Background(), tt.cfg)
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err %v, want ErrInvalidConfig", err)
			}
		})
	}
	t.Run("missing certificate file", func(t *testing.T) {
		err := Run(context.Background(), Config{
			Handler: h, HTTPSAddr: "127.0.0.1:0",
			CertFile: filepath.Join(t.TempDir(), "none.crt"), KeyFile: filepath.Join(t.TempDir(), "none.key"),
			Ready: func(Addrs) { t.Error("Ready called") },
		})
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("err %v, want fs.ErrNotExist", err)
		}
	})
}

func TestRedirectTarget(t *testing.T) {
	tests := []struct {
		name, host, fixed, port, uri, want string
	}{
		{"host with port", "lib.example.org:8080", "", "8443", "/lib.json?x=1", "https://lib.example.org:8443/lib.json?x=1"},
		{"443 omitted", "lib.example.org:80", "", "443", "/lib.json", "https://lib.example.org/lib.json"},
		{"host without port", "lib.example.org", "", "443", "/", "https://lib.example.org/"},
		{"ipv6", "[::1]:8080", "", "8443", "/a", "https://[::1]:8443/a"},
		{"ipv6 443", "[::1]:80", "", "443", "/a", "https://[::1]/a"},
		{"ipv6 no port", "[::1]", "", "443", "/a", "https://[::1]/a"},
		{"fixed host", "10.0.0.1:8080", "lib.example.org", "8443", "/a?b", "https://lib.example.org/a?b"},
		{"fixed host:port", "10.0.0.1:8080", "lib.example.org:9443", "8443", "/a", "https://lib.example.org:9443/a"},
		{"encoded path kept", "h:80", "", "443", "/a%2Fb/c%20d?q=%26", "https://h/a%2Fb/c%20d?q=%26"},
		{"no host", "", "", "443", "/a", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tt.uri, nil)
			r.Host = tt.host
			got, ok := redirectTarget(r, tt.fixed, tt.port)
			if ok != (tt.want != "") || got != tt.want {
				t.Fatalf("redirectTarget = %q, %v; want %q", got, ok, tt.want)
			}
		})
	}

	t.Run("handler", func(t *testing.T) {
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
		h := redirectHandler(next, "", "443", []string{HealthPath, "/metrics"})
		for _, tt := range []struct {
			method, path string
			status       int
		}{
			{http.MethodGet, "/x", http.StatusMovedPermanently},
			{http.MethodHead, "/x", http.StatusMovedPermanently},
			{http.MethodPost, "/x", http.StatusPermanentRedirect},
			{http.MethodDelete, "/x", http.StatusPermanentRedirect},
			{http.MethodGet, HealthPath, http.StatusTeapot},
			{http.MethodGet, "/metrics", http.StatusTeapot},
			{http.MethodGet, HealthPath + "/", http.StatusMovedPermanently},
		} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, "http://lib.example.org"+tt.path, nil))
			if rec.Code != tt.status {
				t.Errorf("%s %s: %d, want %d", tt.method, tt.path, rec.Code, tt.status)
			}
		}
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "/x", nil)
		r.Host = ""
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("no host: %d, want 400", rec.Code)
		}
	})
}
