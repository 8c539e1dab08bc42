package transport

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// rangeServer serves one blob at /t/disk.img with an ETag, honouring Range
// and If-Range; cut, when > 0, makes it drop the connection after that
// many body bytes of a full response. It records Range and If-Range.
type rangeServer struct {
	mu    sync.Mutex
	data  []byte
	etag  string
	cut   int
	seen  []string // "range|if-range" per request
	plain bool     // ignore Range entirely
}

func (s *rangeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	data, etag, cut, plain := s.data, s.etag, s.cut, s.plain
	s.seen = append(s.seen, r.Header.Get("Range")+"|"+r.Header.Get("If-Range"))
	s.mu.Unlock()
	if r.URL.Path != "/t/disk.img" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("ETag", etag)
	if rg := r.Header.Get("Range"); rg != "" && !plain && (r.Header.Get("If-Range") == "" || r.Header.Get("If-Range") == etag) {
		var start int
		if _, err := fmt.Sscanf(rg, "bytes=%d-", &start); err != nil || start >= len(data) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", len(data)))
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(data)-1, len(data)))
		w.Header().Set("Content-Length", strconv.Itoa(len(data)-start))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(data[start:])
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	if cut > 0 {
		w.WriteHeader(http.StatusOK)
		w.Write(data[:cut])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection drops mid-body
	}
	w.Write(data)
}

func (s *rangeServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

func (s *rangeServer) set(f func(*rangeServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func TestHTTPSTemplateResume(t *testing.T) {
	data := randomBytes(1<<20, 41)
	rs := &rangeServer{data: data, etag: `"v1"`, cut: 300 << 10}
	srv, pool := serveTLS(t, rs.ServeHTTP)
	srv.Config.ErrorLog = quietLog
	partial := filepath.Join(t.TempDir(), "partial")
	req := TemplateRequest{URL: srv.URL + "/t/", Files: []FileSpec{{"disk.img", int64(len(data))}}, PartialDir: partial, RootCAs: pool}

	run := func() (TemplateStats, string, error) {
		r := req
		r.Stage = t.TempDir()
		stats, err := FetchTemplate(t.Context(), r)
		return stats, r.Stage, err
	}
	// 1: the connection drops after 300 KiB: kept for the next run.
	_, _, err := run()
	if !errors.Is(err, ErrDownload) || !Retryable(err) {
		t.Fatalf("cut run: %v", err)
	}
	sum := sha256.Sum256([]byte("disk.img"))
	kept := filepath.Join(partial, httpPartialSub, hex.EncodeToString(sum[:16])+".data")
	if fi, err := os.Stat(kept); err != nil || fi.Size() != 300<<10 {
		t.Fatalf("partial after the cut: %v %v", fi, err)
	}
	// 2: resumed with Range and If-Range; 206 appended.
	rs.set(func(s *rangeServer) { s.cut = 0 })
	stats, stage, err := run()
	if err != nil {
		t.Fatal(err)
	}
	checkTree(t, stage, map[string][]byte{"disk.img": data})
	if !stats.Resumed || stats.WireBytesIn != int64(len(data))-300<<10 || stats.Files != 1 {
		t.Errorf("resumed stats %+v", stats)
	}
	if got := rs.requests(); got[len(got)-1] != fmt.Sprintf("bytes=%d-|\"v1\"", 300<<10) {
		t.Errorf("requests %q", got)
	}
	if _, err := os.Stat(kept); err == nil {
		t.Error("partial left after success")
	}

	// 3: cut again, then the file changes (new ETag): If-Range makes the
	// server send all of it (200), which replaces the partial.
	rs.set(func(s *rangeServer) { s.cut = 100 << 10 })
	if _, _, err := run(); err == nil {
		t.Fatal("cut run succeeded")
	}
	data2 := randomBytes(1<<20, 42)
	rs.set(func(s *rangeServer) { s.cut, s.data, s.etag = 0, data2, `"v2"` })
	req.Files[0].Size = int64(len(data2))
	stats, stage, err = run()
	if err != nil {
		t.Fatal(err)
	}
	checkTree(t, stage, map[string][]byte{"disk.img": data2})
	if stats.Resumed || stats.WireBytesIn != int64(len(data2)) {
		t.Errorf("restarted stats %+v", stats)
	}
	if got := rs.requests(); got[len(got)-1] != fmt.Sprintf("bytes=%d-|\"v1\"", 100<<10) {
		t.Errorf("requests %q", got)
	}

	// 4: a partial that no longer fits (416) restarts at once.
	rs.set(func(s *rangeServer) { s.cut = 200 << 10 })
	run()
	short := data2[:100<<10]
	rs.set(func(s *rangeServer) { s.cut, s.data = 0, short })
	req.Files[0].Size = 1 << 20 // the signed size still allows resuming
	stats, stage, err = run()
	if err != nil {
		t.Fatal(err)
	}
	checkTree(t, stage, map[string][]byte{"disk.img": short})
	if stats.Resumed {
		t.Errorf("stats %+v", stats)
	}

	// 5: a partial from another URL, or without meta, is not resumed.
	rs.set(func(s *rangeServer) { s.cut, s.data, s.etag = 100<<10, data, `"v1"` })
	req.Files[0].Size = int64(len(data))
	run()
	var m partialMeta
	raw, _ := os.ReadFile(strings.TrimSuffix(kept, ".data") + ".meta")
	if err := json.Unmarshal(raw, &m); err != nil || m.ETag != `"v1"` || m.Size != int64(len(data)) {
		t.Fatalf("meta %s: %v", raw, err)
	}
	m.URL = "https://elsewhere.example/t/disk.img"
	raw, _ = json.Marshal(m)
	os.WriteFile(strings.TrimSuffix(kept, ".data")+".meta", raw, 0o600)
	rs.set(func(s *rangeServer) { s.cut = 0 })
	n := len(rs.requests())
	if stats, _, err = run(); err != nil || stats.Resumed {
		t.Fatalf("%+v, %v", stats, err)
	}
	if got := rs.requests()[n]; got != "|" {
		t.Errorf("request %q, want no Range", got)
	}

	// 6: with a basis (an update) nothing is kept or resumed.
	rs.set(func(s *rangeServer) { s.cut = 100 << 10 })
	req.Basis = t.TempDir()
	run()
	if _, err := os.Stat(kept); err == nil {
		t.Error("an update kept a partial file")
	}
}

func TestHTTPSTemplateTooLarge(t *testing.T) {
	data := randomBytes(64<<10, 51)
	var streamed sync.Map
	srv, pool := serveTLS(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/announced.img":
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data)
		case "/streamed.img": // no Content-Length: counted while reading
			w.(http.Flusher).Flush()
			for i := 0; i < len(data); i += 4096 {
				w.Write(data[i : i+4096])
				w.(http.Flusher).Flush()
			}
			streamed.Store("done", true)
		}
	})
	for _, name := range []string{"announced.img", "streamed.img"} {
		stage := t.TempDir()
		_, err := FetchTemplate(t.Context(), TemplateRequest{URL: srv.URL + "/" + name, Files: []FileSpec{{name, 10000}}, Stage: stage, RootCAs: pool, PartialDir: t.TempDir()})
		if !errors.Is(err, ErrTooLarge) || errors.Is(err, ErrDownload) {
			t.Errorf("%s: error %v", name, err)
		}
		if entries, _ := os.ReadDir(stage); len(entries) != 0 {
			t.Errorf("%s: stage keeps %v", name, entries)
		}
	}
}

func TestHTTPSTemplateRedirects(t *testing.T) {
	data := []byte("template bytes")
	plain := serve(t, func(w http.ResponseWriter, r *http.Request) { w.Write(data) })
	var secure *httptest.Server
	secure, pool := serveTLS(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/moved/disk.img":
			http.Redirect(w, r, "/real/disk.img", http.StatusFound)
		case "/real/disk.img":
			w.Write(data)
		case "/down/disk.img":
			http.Redirect(w, r, plain.URL+"/disk.img", http.StatusFound)
		case "/loop/disk.img":
			http.Redirect(w, r, "/loop/disk.img", http.StatusFound)
		}
	})
	files := []FileSpec{{"disk.img", int64(len(data))}}
	stage := t.TempDir()
	if _, err := FetchTemplate(t.Context(), TemplateRequest{URL: secure.URL + "/moved/", Files: files, Stage: stage, RootCAs: pool}); err != nil {
		t.Fatal(err)
	}
	checkTree(t, stage, map[string][]byte{"disk.img": data})

	_, err := FetchTemplate(t.Context(), TemplateRequest{URL: secure.URL + "/down/", Files: files, Stage: t.TempDir(), RootCAs: pool})
	if !errors.Is(err, ErrDownload) || Retryable(err) || !strings.Contains(err.Error(), "redirect from https to "+plain.URL+"/disk.img refused") {
		t.Errorf("downgrade: %v", err)
	}
	_, err = FetchTemplate(t.Context(), TemplateRequest{URL: secure.URL + "/loop/", Files: files, Stage: t.TempDir(), RootCAs: pool})
	if !errors.Is(err, ErrDownload) || !strings.Contains(err.Error(), "stopped after 10 redirects") {
		t.Errorf("loop: %v", err)
	}
}

func TestHTTPSTemplateFailures(t *testing.T) {
	srv, pool := serveTLS(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/t/stall.img":
			w.Header().Set("Content-Length", "1000")
			w.Write([]byte("some"))
			w.(http.Flusher).Flush()
			stall(r)
		case "/t/busy.img":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/t/secret.img":
			w.WriteHeader(http.StatusForbidden)
		case "/t/gone.img":
			w.WriteHeader(http.StatusGone)
		}
	})
	run := func(name string, mod func(*TemplateRequest)) error {
		req := TemplateRequest{URL: srv.URL + "/t/", Files: []FileSpec{{name, 1000}}, Stage: t.TempDir(), RootCAs: pool}
		if mod != nil {
			mod(&req)
		}
		_, err := FetchTemplate(t.Context(), req)
		return err
	}
	start := time.Now()
	err := run("stall.img", func(r *TemplateRequest) { r.IOTimeout = 300 * time.Millisecond })
	if !errors.Is(err, ErrDownload) || !Retryable(err) || !strings.Contains(err.Error(), "stall.img: no data received for 300ms") {
		t.Errorf("stall: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("i/o timeout took %s", d)
	}
	for name, want := range map[string]struct {
		text      string
		retryable bool
		missing   bool
	}{
		"busy.img":   {"http status 503 service unavailable", true, false},
		"secret.img": {"http status 403 forbidden", false, false},
		"gone.img":   {"file missing at the source (http status 410 gone)", false, true},
	} {
		err := run(name, nil)
		var fe *FetchError
		if !errors.As(err, &fe) || fe.Status == 0 || !strings.Contains(err.Error(), want.text) || Retryable(err) != want.retryable || errors.Is(err, ErrMissingFile) != want.missing {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Not trusted: the system roots do not know the test CA.
	err = run("busy.img", func(r *TemplateRequest) { r.RootCAs = nil })
	if !errors.Is(err, ErrDownload) || Retryable(err) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted: %v", err)
	}
}

// TestHTTPSTemplateBWLimit: reads are paced to the limit.
func TestHTTPSTemplateBWLimit(t *testing.T) {
	data := randomBytes(256<<10, 61)
	srv, pool := serveTLS(t, func(w http.ResponseWriter, r *http.Request) { w.Write(data) })
	start := time.Now()
	stats, err := FetchTemplate(t.Context(), TemplateRequest{URL: srv.URL + "/disk.img", Files: []FileSpec{{"disk.img", int64(len(data))}}, Stage: t.TempDir(), RootCAs: pool, BWLimit: "512k"})
	if err != nil {
		t.Fatal(err)
	}
	// 256 KiB at 512 KiB/s: half a second, less the first chunk's burst.
	if d := time.Since(start); d < 400*time.Millisecond || d > 3*time.Second {
		t.Errorf("took %s for 256 KiB at 512 KiB/s", d)
	}
	if stats.WireBytesIn != int64(len(data)) || stats.LiteralBytes != int64(len(data)) {
		t.Errorf("stats %+v", stats)
	}
}

// TestHTTPSTemplateProxy: https templates go through HTTPS_PROXY with
// CONNECT, verified end to end.
func TestHTTPSTemplateProxy(t *testing.T) {
	data := []byte("via the proxy")
	srv, pool := serveTLS(t, func(w http.ResponseWriter, r *http.Request) { w.Write(data) })
	// The test certificate is valid for example.com.
	testProxy.route("example.com:443", strings.TrimPrefix(srv.URL, "https://"))
	stage := t.TempDir()
	if _, err := FetchTemplate(t.Context(), TemplateRequest{URL: "https://example.com/lib/disk.img", Files: []FileSpec{{"disk.img", int64(len(data))}}, Stage: stage, RootCAs: pool}); err != nil {
		t.Fatal(err)
	}
	checkTree(t, stage, map[string][]byte{"disk.img": data})
	if got := testProxy.requests(); !slices.Contains(got, "CONNECT example.com:443") {
		t.Errorf("proxy saw %q", got)
	}
}

func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 100-199/200", 100, 200, true},
		{"bytes 0-0/*", 0, -1, true},
		{"bytes 100-199/150", 0, 0, false},
		{"bytes */200", 0, 0, false},
		{"items 1-2/3", 0, 0, false},
		{"bytes 5-4/10", 0, 0, false},
	} {
		start, total, ok := parseContentRange(tc.in)
		if ok != tc.ok || ok && (start != tc.start || total != tc.total) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v", tc.in, start, total, ok)
		}
	}
}

// TestHTTPSTemplateCancelWhilePaced: cancelling during a pacing sleep
// returns at once.
func TestHTTPSTemplateCancelWhilePaced(t *testing.T) {
	srv, pool := serveTLS(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, io.LimitReader(bytes.NewReader(randomBytes(4<<20, 71)), 4<<20))
	})
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	_, err := FetchTemplate(ctx, TemplateRequest{URL: srv.URL + "/d.img", Files: []FileSpec{{"d.img", 4 << 20}}, Stage: t.TempDir(), RootCAs: pool, BWLimit: "1k"})
	if !errors.Is(err, context.Canceled) || time.Since(start) > 2*time.Second {
		t.Errorf("error %v after %s", err, time.Since(start))
	}
}

// TestHTTPSTemplateWrongRange: a 206 for another range than asked drops
// the partial file and starts over.
func TestHTTPSTemplateWrongRange(t *testing.T) {
	data := randomBytes(64<<10, 81)
	var mu sync.Mutex
	var seen []string
	srv, pool := serveTLS(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Range"))
		n := len(seen)
		mu.Unlock()
		w.Header().Set("ETag", `"x"`)
		switch {
		case n == 1: // cut after 10 KiB
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data[:10<<10])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		case r.Header.Get("Range") != "": // wrong range: from 0
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(data)-1, len(data)))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data)
		default:
			w.Write(data)
		}
	})
	srv.Config.ErrorLog = quietLog
	req := TemplateRequest{URL: srv.URL + "/d.img", Files: []FileSpec{{"d.img", int64(len(data))}}, RootCAs: pool, PartialDir: t.TempDir()}
	req.Stage = t.TempDir()
	if _, err := FetchTemplate(t.Context(), req); err == nil {
		t.Fatal("cut transfer succeeded")
	}
	req.Stage = t.TempDir()
	stats, err := FetchTemplate(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	checkTree(t, req.Stage, map[string][]byte{"d.img": data})
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"", "bytes=10240-", ""}; !slices.Equal(seen, want) || stats.Resumed {
		t.Errorf("requests %q (want %q), stats %+v", seen, want, stats)
	}
}
