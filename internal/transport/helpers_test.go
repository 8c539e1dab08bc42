package transport

import (
	"crypto/x509"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// checkClean fails when err's text shows the test credentials.
func checkClean(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if s := err.Error(); strings.Contains(s, testPassword) || strings.Contains(s, testUser) {
		t.Errorf("error shows credentials: %s", s)
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// serve starts a loopback HTTP server for the test.
func serve(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// quietLog drops the log lines of test servers.
var quietLog = log.New(io.Discard, "", 0)

// serveTLS starts a loopback HTTPS server and returns it with a pool that
// trusts its certificate.
func serveTLS(t *testing.T, h http.HandlerFunc) (*httptest.Server, *x509.CertPool) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = quietLog // refused handshakes are what the tests want
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return srv, pool
}

// stall blocks a handler until the client goes away (or a safety limit,
// so that a broken test cannot hang the server's Close).
func stall(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

// fetch is FetchList with a background context.
func fetch(t *testing.T, req ListRequest) (*ListResponse, error) {
	t.Helper()
	if req.MaxSize == 0 {
		req.MaxSize = 1 << 20
	}
	if req.Timeout == 0 {
		req.Timeout = 10 * time.Second
	}
	resp, err := FetchList(t.Context(), req)
	checkClean(t, err)
	return resp, err
}
