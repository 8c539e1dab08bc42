package transport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clr-suite/clr/internal/fsutil"
)

const (
	testETag         = `"v42"`
	testLastModified = "Wed, 25 Nov 2026 12:00:00 GMT"
)

// listHandler serves "signed list" with validators and honours conditional
// requests; it records the request headers it got.
type listHandler struct {
	mu  sync.Mutex
	got []http.Header
}

func (h *listHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.got = append(h.got, r.Header.Clone())
	h.mu.Unlock()
	w.Header().Set("ETag", testETag)
	w.Header().Set("Last-Modified", testLastModified)
	if r.Header.Get("If-None-Match") == testETag || r.Header.Get("If-Modified-Since") == testLastModified {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	io.WriteString(w, "signed list")
}

func (h *listHandler) headers() []http.Header {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.got
}

func TestHTTPOK(t *testing.T) {
	h := &listHandler{}
	srv := serve(t, h.ServeHTTP)
	resp, err := fetch(t, ListRequest{URL: srv.URL + "/lists/image.list"})
	if err != nil {
		t.Fatal(err)
	}
	want := ListResponse{Body: []byte("signed list"), ETag: testETag, LastModified: testLastModified, URL: srv.URL + "/lists/image.list"}
	if string(resp.Body) != string(want.Body) || resp.NotModified || resp.ETag != want.ETag || resp.LastModified != want.LastModified || resp.URL != want.URL {
		t.Errorf("response %+v, want %+v", resp, want)
	}
	got := h.headers()[0]
	if got.Get("User-Agent") != "clr" {
		t.Errorf("User-Agent %q", got.Get("User-Agent"))
	}
	for _, k := range []string{"If-None-Match", "If-Modified-Since", "Authorization"} {
		if v := got.Get(k); v != "" {
			t.Errorf("unexpected %s: %s", k, v)
		}
	}

	if _, err := fetch(t, ListRequest{URL: srv.URL + "/l", UserAgent: "clr/1.2 (+ops@example.org)"}); err != nil {
		t.Fatal(err)
	}
	if got := h.headers()[1].Get("User-Agent"); got != "clr/1.2 (+ops@example.org)" {
		t.Errorf("User-Agent %q", got)
	}
}

func TestHTTPConditional(t *testing.T) {
	h := &listHandler{}
	srv := serve(t, h.ServeHTTP)
	bare := serve(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotModified) })
	for _, tc := range []struct {
		name, etag, lastModified string
		url                      string
		notModified              bool
		wantETag, wantLM         string
	}{
		{"etag matches", testETag, "", srv.URL, true, testETag, testLastModified},
		{"date matches", "", testLastModified, srv.URL, true, testETag, testLastModified},
		{"both match", testETag, testLastModified, srv.URL, true, testETag, testLastModified},
		{"etag changed", `"v41"`, "", srv.URL, false, testETag, testLastModified},
		{"304 without validators keeps ours", `"old"`, "Tue, 24 Nov 2026 12:00:00 GMT", bare.URL, true, `"old"`, "Tue, 24 Nov 2026 12:00:00 GMT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(h.headers())
			resp, err := fetch(t, ListRequest{URL: tc.url, ETag: tc.etag, LastModified: tc.lastModified})
			if err != nil {
				t.Fatal(err)
			}
			if resp.NotModified != tc.notModified || resp.ETag != tc.wantETag || resp.LastModified != tc.wantLM {
				t.Errorf("response %+v", resp)
			}
			if tc.notModified && resp.Body != nil {
				t.Errorf("body %q with 304", resp.Body)
			}
			if !tc.notModified && string(resp.Body) != "signed list" {
				t.Errorf("body %q", resp.Body)
			}
			if tc.url == srv.URL {
				got := h.headers()[n]
				if got.Get("If-None-Match") != tc.etag || got.Get("If-Modified-Since") != tc.lastModified {
					t.Errorf("sent If-None-Match %q, If-Modified-Since %q", got.Get("If-None-Match"), got.Get("If-Modified-Since"))
				}
			}
		})
	}

	t.Run("unconditional 304 is an error", func(t *testing.T) {
		_, err := fetch(t, ListRequest{URL: bare.URL})
		var fe *FetchError
		if !errors.As(err, &fe) || fe.Status != http.StatusNotModified {
			t.Errorf("error %v", err)
		}
	})
}

func TestHTTPStatus(t *testing.T) {
	for _, tc := range []struct {
		code int
		text string
	}{
		{http.StatusNotFound, "http status 404 not found"},
		{http.StatusForbidden, "http status 403 forbidden"},
		{http.StatusUnauthorized, "http status 401 unauthorized (the server wants credentials)"},
		{http.StatusInternalServerError, "http status 500 internal server error"},
		{599, "http status 599"},
		{http.StatusMultipleChoices, "http status 300 multiple choices"},
		{http.StatusFound, "http status 302 found"}, // no Location
	} {
		t.Run(strconv.Itoa(tc.code), func(t *testing.T) {
			srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.code)
				io.WriteString(w, "<html>nope</html>")
			})
			resp, err := fetch(t, ListRequest{URL: srv.URL + "/list"})
			if err == nil {
				t.Fatalf("fetched %+v", resp)
			}
			var fe *FetchError
			if !errors.As(err, &fe) || !errors.Is(err, ErrDownload) {
				t.Fatalf("error %#v is not a download failure", err)
			}
			if fe.Status != tc.code || fe.ExitCode() != 10 || fe.URL != srv.URL+"/list" {
				t.Errorf("FetchError %+v", fe)
			}
			if want := "download failed: " + srv.URL + "/list: " + tc.text; err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
		})
	}
}

func TestHTTPRedirects(t *testing.T) {
	var srv *httptest.Server
	srv = serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == "/list":
			io.WriteString(w, "signed list")
		case p == "/moved":
			http.Redirect(w, r, "/list", http.StatusMovedPermanently)
		case p == "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case strings.HasPrefix(p, "/hops/"):
			// /hops/N redirects N times, then serves the list.
			n, _ := strconv.Atoi(strings.TrimPrefix(p, "/hops/"))
			if n == 0 {
				io.WriteString(w, "signed list")
				return
			}
			http.Redirect(w, r, fmt.Sprintf("/hops/%d", n-1), http.StatusTemporaryRedirect)
		case p == "/to-userinfo":
			http.Redirect(w, r, "http://"+testUser+":"+testPassword+"@"+r.Host+"/list", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	})
	for _, tc := range []struct {
		path  string
		final string // want this final path...
		err   string // ...or this error
	}{
		{"/moved", "/list", ""},
		{"/hops/1", "/hops/0", ""},
		{"/hops/10", "/hops/0", ""},
		{"/hops/11", "", "stopped after 10 redirects"},
		{"/loop", "", "stopped after 10 redirects"},
		{"/to-userinfo", "", "redirect to a url with user information refused"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, err := fetch(t, ListRequest{URL: srv.URL + tc.path})
			if tc.err != "" {
				if err == nil {
					t.Fatalf("fetched %+v", resp)
				}
				if !errors.Is(err, ErrDownload) || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("error %q, want ErrDownload with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(resp.Body) != "signed list" || resp.URL != srv.URL+tc.final {
				t.Errorf("response %+v, want final URL %s", resp, srv.URL+tc.final)
			}
		})
	}
}

func TestHTTPSDowngradeRefused(t *testing.T) {
	plain := serve(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "tampered list") })
	var secure *httptest.Server
	secure, pool := serveTLS(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/down":
			http.Redirect(w, r, plain.URL+"/list", http.StatusFound)
		case "/down-later":
			http.Redirect(w, r, "/down", http.StatusFound)
		default:
			io.WriteString(w, "signed list")
		}
	})
	for _, path := range []string{"/down", "/down-later"} {
		_, err := fetch(t, ListRequest{URL: secure.URL + path, RootCAs: pool})
		if !errors.Is(err, ErrDownload) || !strings.Contains(err.Error(), "redirect from https to "+plain.URL+"/list refused") {
			t.Errorf("%s: error %v", path, err)
		}
	}

	// Upgrades are fine.
	up := serve(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, secure.URL+"/list", http.StatusMovedPermanently)
	})
	resp, err := fetch(t, ListRequest{URL: up.URL + "/list", RootCAs: pool})
	if err != nil || string(resp.Body) != "signed list" || resp.URL != secure.URL+"/list" {
		t.Errorf("upgrade: %+v, %v", resp, err)
	}
}

// authRecorder records, per server, the basic auth each request carried.
type authRecorder struct {
	mu  sync.Mutex
	got map[string][]string // path -> "user:password" or "-"
}

func (a *authRecorder) record(r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	v := "-"
	if u, p, ok := r.BasicAuth(); ok {
		v = u + ":" + p
	}
	a.got[r.Host+r.URL.Path] = append(a.got[r.Host+r.URL.Path], v)
}

func (a *authRecorder) seen(key string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.got[key]
}

func TestHTTPCredentials(t *testing.T) {
	rec := &authRecorder{got: map[string][]string{}}
	wantAuth := func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != testUser || p != testPassword {
			w.Header().Set("WWW-Authenticate", `Basic realm="lists"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "signed list")
	}
	other := serve(t, func(w http.ResponseWriter, r *http.Request) {
		rec.record(r)
		switch r.URL.Path {
		case "/back":
			http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
		case "/open":
			io.WriteString(w, "signed list")
		default:
			wantAuth(w, r)
		}
	})
	var srv *httptest.Server
	srv = serve(t, func(w http.ResponseWriter, r *http.Request) {
		rec.record(r)
		switch r.URL.Path {
		case "/same":
			http.Redirect(w, r, "/list", http.StatusFound)
		case "/other-port":
			http.Redirect(w, r, other.URL+"/list", http.StatusFound)
		case "/other-port-open":
			http.Redirect(w, r, other.URL+"/open", http.StatusFound)
		case "/other-name":
			// Same port, another host name: localhost instead of 127.0.0.1.
			http.Redirect(w, r, fmt.Sprintf("http://localhost:%d/list", srv.Listener.Addr().(*net.TCPAddr).Port), http.StatusFound)
		case "/away-and-back":
			http.Redirect(w, r, other.URL+"/back?to="+srv.URL+"/list", http.StatusFound)
		default:
			wantAuth(w, r)
		}
	})
	host := strings.TrimPrefix(srv.URL, "http://")
	otherHost := strings.TrimPrefix(other.URL, "http://")
	localhost := fmt.Sprintf("localhost:%d", srv.Listener.Addr().(*net.TCPAddr).Port)
	creds := &Credentials{User: testUser, Password: testPassword}
	sent := testUser + ":" + testPassword

	t.Run("sent", func(t *testing.T) {
		resp, err := fetch(t, ListRequest{URL: srv.URL + "/list", Credentials: creds})
		if err != nil || string(resp.Body) != "signed list" {
			t.Fatalf("%+v, %v", resp, err)
		}
	})
	t.Run("kept on the same host", func(t *testing.T) {
		resp, err := fetch(t, ListRequest{URL: srv.URL + "/same", Credentials: creds})
		if err != nil || string(resp.Body) != "signed list" {
			t.Fatalf("%+v, %v", resp, err)
		}
		if got := rec.seen(host + "/same"); len(got) != 1 || got[0] != sent {
			t.Errorf("/same got %v", got)
		}
	})
	for _, tc := range []struct {
		name, path, hint string
		dropped          []string // hops that must not see the credentials
	}{
		{"another port", "/other-port", "credentials are not sent after a redirect to another host or port", []string{otherHost + "/list"}},
		{"another name", "/other-name", "credentials are not sent after a redirect to another host or port", []string{localhost + "/list"}},
		{"not back after leaving", "/away-and-back", "credentials are not sent after a redirect", []string{otherHost + "/back", host + "/list"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := map[string]int{}
			for _, k := range tc.dropped {
				before[k] = len(rec.seen(k))
			}
			_, err := fetch(t, ListRequest{URL: srv.URL + tc.path, Credentials: creds})
			var fe *FetchError
			if !errors.As(err, &fe) || fe.Status != http.StatusUnauthorized || !strings.Contains(err.Error(), tc.hint) {
				t.Errorf("error %v, want 401 with %q", err, tc.hint)
			}
			for _, k := range tc.dropped {
				got := rec.seen(k)[before[k]:]
				if len(got) != 1 || got[0] != "-" {
					t.Errorf("%s got %v, want no credentials", k, got)
				}
			}
		})
	}
	t.Run("open target after redirect", func(t *testing.T) {
		resp, err := fetch(t, ListRequest{URL: srv.URL + "/other-port-open", Credentials: creds})
		if err != nil || resp.URL != other.URL+"/open" {
			t.Fatalf("%+v, %v", resp, err)
		}
		if got := rec.seen(otherHost + "/open"); len(got) != 1 || got[0] != "-" {
			t.Errorf("/open got %v", got)
		}
	})
	t.Run("refused", func(t *testing.T) {
		_, err := fetch(t, ListRequest{URL: srv.URL + "/list", Credentials: &Credentials{User: testUser, Password: "wrong-" + testPassword}})
		if !errors.Is(err, ErrDownload) || !strings.HasSuffix(err.Error(), "401 unauthorized (credentials refused)") {
			t.Errorf("error %v", err)
		}
		if strings.Contains(err.Error(), "wrong-") {
			t.Errorf("password in %v", err)
		}
	})
	t.Run("empty credentials are none", func(t *testing.T) {
		_, err := fetch(t, ListRequest{URL: srv.URL + "/empty", Credentials: &Credentials{}})
		if !strings.Contains(fmt.Sprint(err), "(the server wants credentials)") {
			t.Errorf("error %v", err)
		}
		if got := rec.seen(host + "/empty"); len(got) != 1 || got[0] != "-" {
			t.Errorf("/empty got %v", got)
		}
	})
}

// TestPasswordNeverInErrors provokes every kind of failure with
// credentials set; fetch (checkClean) fails on an error showing them.
func TestPasswordNeverInErrors(t *testing.T) {
	creds := &Credentials{User: testUser, Password: testPassword}
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/401":
			w.WriteHeader(http.StatusUnauthorized)
		case "/echo":
			// A hostile server echoing the credentials in a redirect.
			w.Header().Set("Location", "http://"+testUser+":"+testPassword+"@127.0.0.1:1/")
			w.WriteHeader(http.StatusFound)
		case "/big":
			io.WriteString(w, strings.Repeat(testPassword, 100))
		case "/slow":
			stall(r)
		default:
			http.Redirect(w, r, "http://127.0.0.1:1/list", http.StatusFound) // nothing listens on port 1
		}
	})
	closed := serve(t, func(http.ResponseWriter, *http.Request) {})
	closed.Close()
	for _, req := range []ListRequest{
		{URL: srv.URL + "/401"},
		{URL: srv.URL + "/echo"},
		{URL: srv.URL + "/big", MaxSize: 10},
		{URL: srv.URL + "/slow", Timeout: 50 * time.Millisecond},
		{URL: srv.URL + "/refused"},
		{URL: closed.URL + "/list"},
		{URL: "https://" + strings.TrimPrefix(srv.URL, "http://") + "/tls"},
		{URL: "http://" + testUser + ":" + testPassword + "@" + strings.TrimPrefix(srv.URL, "http://") + "/"},
		{URL: "file:///nonexistent/" + testUser},
	} {
		req.Credentials = creds
		if req.MaxSize == 0 {
			req.MaxSize = 1 << 20
		}
		_, err := FetchList(t.Context(), req)
		if err == nil {
			t.Errorf("%s: no error", req.URL)
			continue
		}
		if s := err.Error(); strings.Contains(s, testPassword) || strings.Contains(s, "@") && !strings.HasPrefix(req.URL, "file:") {
			t.Errorf("%s: error shows credentials: %s", req.URL, s)
		}
	}
}

func TestHTTPSizeCap(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/exact":
			io.WriteString(w, strings.Repeat("x", 1000))
		case "/exact-chunked":
			http.NewResponseController(w).Flush() // no Content-Length
			io.WriteString(w, strings.Repeat("x", 1000))
		case "/declared":
			// Announces 1 GiB, sends a little, then waits: a client that
			// reads the body would run into the timeout.
			w.Header().Set("Content-Length", strconv.Itoa(1<<30))
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, "xxxx")
			http.NewResponseController(w).Flush()
			stall(r)
		case "/chunked":
			// No Content-Length: streamed without end.
			chunk := []byte(strings.Repeat("x", 512))
			for r.Context().Err() == nil {
				if _, err := w.Write(chunk); err != nil {
					return
				}
				http.NewResponseController(w).Flush()
			}
		}
	})
	resp, err := fetch(t, ListRequest{URL: srv.URL + "/exact", MaxSize: 1000})
	if err != nil || len(resp.Body) != 1000 {
		t.Fatalf("exact cap: %v", err)
	}
	for _, tc := range []struct{ path, text string }{
		{"/exact", "file too large (content-length 1000, limit 999 bytes)"},
		{"/exact-chunked", "read response body: file too large (limit 999 bytes)"},
		{"/declared", "file too large (content-length 1073741824, limit 999 bytes)"},
		{"/chunked", "read response body: file too large (limit 999 bytes)"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			start := time.Now()
			_, err := fetch(t, ListRequest{URL: srv.URL + tc.path, MaxSize: 999, Timeout: 5 * time.Second})
			if !errors.Is(err, fsutil.ErrTooLarge) || errors.Is(err, ErrDownload) {
				t.Fatalf("error %v, want ErrTooLarge and not ErrDownload", err)
			}
			if want := "fetch " + srv.URL + tc.path + ": " + tc.text; err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %s: the body was read", d)
			}
		})
	}
}

// countingReader is an endless body that counts what was read from it.
type countingReader struct{ n int64 }

func (c *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	c.n += int64(len(p))
	return len(p), nil
}

func TestReadBodyStopsAtCap(t *testing.T) {
	for _, max := range []int64{1, 100, 4096, 100000} {
		body := &countingReader{}
		_, err := readBody(&http.Response{ContentLength: -1, Body: io.NopCloser(body)}, max)
		if !errors.Is(err, fsutil.ErrTooLarge) {
			t.Errorf("max %d: error %v", max, err)
		}
		if body.n != max+1 {
			t.Errorf("max %d: read %d bytes, want %d", max, body.n, max+1)
		}
	}
	body := &countingReader{}
	if _, err := readBody(&http.Response{ContentLength: 11, Body: io.NopCloser(body)}, 10); !errors.Is(err, fsutil.ErrTooLarge) || body.n != 0 {
		t.Errorf("declared length: error %v after reading %d bytes", err, body.n)
	}
}

func TestHTTPTimeout(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow-body" {
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, "partial")
			http.NewResponseController(w).Flush()
		}
		stall(r)
	})
	for _, path := range []string{"/slow-headers", "/slow-body"} {
		t.Run(path, func(t *testing.T) {
			start := time.Now()
			_, err := fetch(t, ListRequest{URL: srv.URL + path, Timeout: 200 * time.Millisecond})
			d := time.Since(start)
			var fe *FetchError
			if !errors.As(err, &fe) || !errors.Is(err, ErrDownload) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("error %#v", err)
			}
			if want := "download failed: " + srv.URL + path + ": timed out after 200ms"; err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
			if d < 200*time.Millisecond || d > 3*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}

	t.Run("caller deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		_, err := FetchList(ctx, ListRequest{URL: srv.URL + "/slow-headers", MaxSize: 10})
		if !errors.Is(err, ErrDownload) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error %v", err)
		}
	})
}

func TestHTTPCancel(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) { stall(r) })
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := FetchList(ctx, ListRequest{URL: srv.URL + "/list", MaxSize: 10})
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrDownload) {
		t.Errorf("error %v, want context.Canceled and not ErrDownload", err)
	}
	if want := "fetch " + srv.URL + "/list: context canceled"; fmt.Sprint(err) != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %s", d)
	}
}

func TestHTTPS(t *testing.T) {
	srv, pool := serveTLS(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", testETag)
		io.WriteString(w, "signed list")
	})
	t.Run("trusted", func(t *testing.T) {
		resp, err := fetch(t, ListRequest{URL: srv.URL + "/list", RootCAs: pool})
		if err != nil || string(resp.Body) != "signed list" || resp.ETag != testETag {
			t.Fatalf("%+v, %v", resp, err)
		}
	})
	for name, roots := range map[string]*x509.CertPool{
		"system roots": nil,
		"empty pool":   x509.NewCertPool(),
		"other CA":     otherCA(t),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := fetch(t, ListRequest{URL: srv.URL + "/list", RootCAs: roots})
			var unknown x509.UnknownAuthorityError
			if !errors.Is(err, ErrDownload) || !errors.As(err, &unknown) {
				t.Errorf("error %v, want ErrDownload and an unknown authority", err)
			}
		})
	}
	t.Run("wrong name", func(t *testing.T) {
		// localhost is not in httptest's certificate.
		u := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
		_, err := fetch(t, ListRequest{URL: u + "/list", RootCAs: pool})
		var host x509.HostnameError
		if !errors.Is(err, ErrDownload) || !errors.As(err, &host) {
			t.Errorf("error %v, want a hostname error", err)
		}
	})
	t.Run("TLS 1.1 refused", func(t *testing.T) {
		old := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "signed list") }))
		old.Config.ErrorLog = quietLog
		old.TLS = &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
		old.StartTLS()
		defer old.Close()
		_, err := fetch(t, ListRequest{URL: old.URL + "/list", RootCAs: pool})
		if !errors.Is(err, ErrDownload) || !strings.Contains(err.Error(), "protocol version") {
			t.Errorf("error %v, want a protocol version failure", err)
		}
	})
}

// otherCA returns a pool holding a freshly made CA that signed nothing.
func otherCA(t *testing.T) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Other CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// TestProxy fetches names that only the test proxy (HTTP_PROXY and
// HTTPS_PROXY, set by TestMain) can reach: the request must have gone
// through it.
func TestProxy(t *testing.T) {
	h := &listHandler{}
	plain := serve(t, h.ServeHTTP)
	secure, pool := serveTLS(t, h.ServeHTTP)
	testProxy.route("plain.example.com:80", plain.Listener.Addr().String())
	testProxy.route("secure.example.com:443", secure.Listener.Addr().String())

	for _, tc := range []struct{ url, proxied string }{
		{"http://plain.example.com/image.list", "GET plain.example.com:80"},
		{"https://secure.example.com/image.list", "CONNECT secure.example.com:443"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			n := len(testProxy.requests())
			resp, err := fetch(t, ListRequest{URL: tc.url, RootCAs: pool, Credentials: &Credentials{User: testUser, Password: testPassword}})
			if err != nil {
				t.Fatal(err)
			}
			if string(resp.Body) != "signed list" || resp.URL != tc.url || resp.ETag != testETag {
				t.Errorf("response %+v", resp)
			}
			if got := testProxy.requests()[n:]; len(got) != 1 || got[0] != tc.proxied {
				t.Errorf("proxy saw %v, want [%s]", got, tc.proxied)
			}
			last := h.headers()[len(h.headers())-1]
			if u, p, ok := (&http.Request{Header: last}).BasicAuth(); !ok || u != testUser || p != testPassword {
				t.Errorf("credentials did not reach the server through the proxy")
			}
		})
	}

	t.Run("loopback bypasses the proxy", func(t *testing.T) {
		n := len(testProxy.requests())
		if _, err := fetch(t, ListRequest{URL: plain.URL + "/image.list"}); err != nil {
			t.Fatal(err)
		}
		if got := testProxy.requests()[n:]; len(got) != 0 {
			t.Errorf("proxy saw %v", got)
		}
	})
	t.Run("proxy failure", func(t *testing.T) {
		_, err := fetch(t, ListRequest{URL: "http://unrouted.example.com/image.list"})
		var fe *FetchError
		if !errors.As(err, &fe) || fe.Status != http.StatusBadGateway {
			t.Errorf("error %v, want the proxy's 502", err)
		}
	})
}
