package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fixture is a published tree (root) next to a version store (store) and a
// directory outside both (outside).
type fixture struct {
	base, root, store, outside string
	data                       []byte // content of /data.bin
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	base := t.TempDir()
	f := fixture{
		base:    base,
		root:    filepath.Join(base, "library"),
		store:   filepath.Join(base, "store"),
		outside: filepath.Join(base, "outside"),
	}
	for i := range 100 {
		f.data = append(f.data, byte('a'+i%26))
	}
	files := map[string]string{
		"lib.json":                 `{"vcsp":true}`,
		"items.json":               `{"items":[]}`,
		"tmpl/item.json":           `{}`,
		"tmpl/tmpl.ovf":            `<Envelope/>`,
		"tmpl/tmpl.mf":             `SHA256(tmpl.ovf)= 00`,
		"tmpl/TMPL-disk1.VMDK":     "vmdk",
		"iso/boot.ISO":             "iso",
		"notes.TXT":                "notes",
		"ca.cert":                  "cert",
		"disk.qcow2":               "q",
		"disk.img":                 "i",
		"app.ova":                  "o",
		"disk.raw":                 "r",
		"a.gz":                     "g",
		"a.xz":                     "x",
		"fs.squashfs":              "s",
		"unknown.bin":              "u",
		"noext":                    "n",
		"html.html":                "<html><script>alert(1)</script></html>",
		"sub/file.txt":             "sub",
		"a b#c?.txt":               "weird",
		`<b>&"q.txt`:               "html",
		"colon:name.txt":           "colon",
		".clr/state.json":          `{"secret":true}`,
		".partial/tmp.vmdk":        "partial",
		".hidden":                  "hidden",
		"sub/.partial/x":           "partial",
		"../store/v1/disk.vmdk":    "STORE",
		"../store/.staging/x.vmdk": "staging",
		"../outside/secret.txt":    "SECRET",
	}
	for name, content := range files {
		writeFile(t, filepath.Join(f.root, filepath.FromSlash(name)), []byte(content))
	}
	writeFile(t, filepath.Join(f.root, "data.bin"), f.data)
	links := map[string]string{
		"linked.vmdk":  "../store/v1/disk.vmdk",    // into the store: served with AllowedRoots
		"linkdir":      "../store/v1",              // directory in the store
		"staged.vmdk":  "../store/.staging/x.vmdk", // hidden part of the store
		"escape.txt":   "../outside/secret.txt",    // sibling outside both
		"passwd":       "/etc/passwd",              // absolute, outside
		"dotlink.json": ".clr/state.json",          // inside root, but hidden
		"broken":       "nowhere",
		"sub/up.json":  "../lib.json", // inside root: fine
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(f.root, filepath.FromSlash(name))); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(f.root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f fixture) handler(t *testing.T, opts HandlerOptions) http.Handler {
	t.Helper()
	if opts.Root == "" {
		opts.Root = f.root
	}
	if opts.AllowedRoots == nil {
		opts.AllowedRoots = []string{f.store}
	}
	h, err := Handler(opts)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// serve runs one request through h and fails if it does not finish in 5s
// (a FIFO opened for reading would block).
func serve(t *testing.T, h http.Handler, r *http.Request) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(rec, r)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s %s: handler blocked", r.Method, r.URL)
	}
	return rec.Result()
}

func get(t *testing.T, h http.Handler, method, target string, hdr ...string) (*http.Response, string) {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	resp := serve(t, h, r)
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestHandlerContentTypes(t *testing.T) {
	f := newFixture(t)
	h := f.handler(t, HandlerOptions{})
	tests := []struct {
		path, ctype, body string
	}{
		{"/lib.json", "application/json", `{"vcsp":true}`},
		{"/items.json", "application/json", `{"items":[]}`},
		{"/tmpl/item.json", "application/json", `{}`},
		{"/tmpl/tmpl.ovf", "text/xml", `<Envelope/>`},
		{"/tmpl/tmpl.mf", "text/plain", `SHA256(tmpl.ovf)= 00`},
		{"/tmpl/TMPL-disk1.VMDK", "application/octet-stream", "vmdk"},
		{"/iso/boot.ISO", "application/x-iso9660-image", "iso"},
		{"/notes.TXT", "text/plain", "notes"},
		{"/ca.cert", "text/plain", "cert"},
		{"/disk.qcow2", "application/octet-stream", "q"},
		{"/disk.img", "application/octet-stream", "i"},
		{"/app.ova", "application/octet-stream", "o"},
		{"/disk.raw", "application/octet-stream", "r"},
		{"/a.gz", "application/octet-stream", "g"},
		{"/a.xz", "application/octet-stream", "x"},
		{"/fs.squashfs", "application/octet-stream", "s"},
		{"/unknown.bin", "application/octet-stream", "u"},
		{"/noext", "application/octet-stream", "n"},
		// never sniffed: HTML content without a known extension
		{"/html.html", "application/octet-stream", "<html><script>alert(1)</script></html>"},
		// percent-encoded names
		{"/a%20b%23c%3F.txt", "text/plain", "weird"},
		{"/colon:name.txt", "text/plain", "colon"},
		// the type comes from the requested name, not the link target
		{"/linked.vmdk", "application/octet-stream", "STORE"},
		{"/sub/up.json", "application/json", `{"vcsp":true}`},
		{"//lib.json", "application/json", `{"vcsp":true}`},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := get(t, h, http.MethodGet, tt.path)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
			if got := resp.Header.Get("Content-Type"); got != tt.ctype {
				t.Errorf("Content-Type %q, want %q", got, tt.ctype)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q, want nosniff", got)
			}
			if body != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
			if got := resp.Header.Get("Content-Length"); got != strconv.Itoa(len(tt.body)) {
				t.Errorf("Content-Length %s, want %d", got, len(tt.body))
			}
		})
	}
}

func TestHandlerRangeAndConditional(t *testing.T) {
	f := newFixture(t)
	h := f.handler(t, HandlerOptions{})
	fi, err := os.Stat(filepath.Join(f.root, "data.bin"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name         string
		hdr          []string
		status       int
		body         string
		contentRange string
	}{
		{"full", nil, http.StatusOK, string(f.data), ""},
		{"middle", []string{"Range", "bytes=10-19"}, http.StatusPartialContent, string(f.data[10:20]), "bytes 10-19/100"},
		{"suffix", []string{"Range", "bytes=-5"}, http.StatusPartialContent, string(f.data[95:]), "bytes 95-99/100"},
		{"open end", []string{"Range", "bytes=98-"}, http.StatusPartialContent, string(f.data[98:]), "bytes 98-99/100"},
		{"past end", []string{"Range", "bytes=200-300"}, http.StatusRequestedRangeNotSatisfiable, "", "bytes */100"},
		{"not modified", []string{"If-Modified-Since", fi.ModTime().Add(time.Hour).UTC().Format(http.TimeFormat)}, http.StatusNotModified, "", ""},
		{"modified", []string{"If-Modified-Since", fi.ModTime().Add(-time.Hour).UTC().Format(http.TimeFormat)}, http.StatusOK, string(f.data), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, h, http.MethodGet, "/data.bin", tt.hdr...)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status != http.StatusRequestedRangeNotSatisfiable && body != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
			if got := resp.Header.Get("Content-Range"); got != tt.contentRange {
				t.Errorf("Content-Range %q, want %q", got, tt.contentRange)
			}
			if tt.status == http.StatusOK || tt.status == http.StatusPartialContent {
				if got, want := resp.Header.Get("Content-Length"), strconv.Itoa(len(tt.body)); got != want {
					t.Errorf("Content-Length %s, want %s", got, want)
				}
				if got := resp.Header.Get("Accept-Ranges"); got != "bytes" {
					t.Errorf("Accept-Ranges %q, want bytes", got)
				}
			}
		})
	}

	t.Run("multi", func(t *testing.T) {
		resp, body := get(t, h, http.MethodGet, "/data.bin", "Range", "bytes=0-1,5-6")
		if resp.StatusCode != http.StatusPartialContent {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "multipart/byteranges") {
			t.Errorf("Content-Type %q", ct)
		}
		if !strings.Contains(body, "ab") || !strings.Contains(body, "fg") {
			t.Errorf("body %q lacks the ranges", body)
		}
	})

	t.Run("HEAD", func(t *testing.T) {
		resp, body := get(t, h, http.MethodHead, "/data.bin")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if got := resp.Header.Get("Content-Length"); got != "100" {
			t.Errorf("Content-Length %q, want 100", got)
		}
		if body != "" {
			t.Errorf("HEAD body %q", body)
		}
	})
}

func TestHandlerRefusedPaths(t *testing.T) {
	f := newFixture(t)
	h := f.handler(t, HandlerOptions{Browse: true})
	for _, p := range []string{
		"/.clr/state.json",
		"/.clr/",
		"/.clr",
		"/.hidden",
		"/.partial/tmp.vmdk",
		"/sub/.partial/x",
		"/%2eclr/state.json",
		"/../outside/secret.txt",
		"/..%2foutside/secret.txt",
		"/%2e%2e/outside/secret.txt",
		"/sub/../../outside/secret.txt",
		"/sub/../lib.json", // harmless, but ".." is refused outright
		"/./lib.json",
		"/lib.json%00",
		"/lib.json%00.txt",
		"/sub%5c..%5c..%5coutside%5csecret.txt",
		"/escape.txt",   // symlink to a sibling outside root and store
		"/passwd",       // symlink to /etc/passwd
		"/dotlink.json", // symlink inside root into a hidden directory
		"/staged.vmdk",  // symlink into a hidden directory of the store
		"/broken",
		"/fifo",
		"/missing.json",
		"/lib.json/", // a file with a trailing slash
		"//etc/passwd",
		"/etc/passwd",
	} {
		t.Run(p, func(t *testing.T) {
			resp, body := get(t, h, http.MethodGet, p)
			if resp.StatusCode != http.StatusNotFound {
				t.Fatalf("status %d, want 404; body %q", resp.StatusCode, body)
			}
			for _, leak := range []string{"SECRET", "secret", "partial", "hidden", "staging", "root:"} {
				if strings.Contains(body, leak) {
					t.Errorf("body %q leaks %q", body, leak)
				}
			}
		})
	}
}

func TestHandlerSymlinks(t *testing.T) {
	f := newFixture(t)
	t.Run("allowed root", func(t *testing.T) {
		h := f.handler(t, HandlerOptions{})
		resp, body := get(t, h, http.MethodGet, "/linked.vmdk")
		if resp.StatusCode != http.StatusOK || body != "STORE" {
			t.Fatalf("status %d body %q, want 200 STORE", resp.StatusCode, body)
		}
		resp, body = get(t, h, http.MethodGet, "/linkdir/disk.vmdk")
		if resp.StatusCode != http.StatusOK || body != "STORE" {
			t.Fatalf("through a directory link: status %d body %q", resp.StatusCode, body)
		}
	})
	t.Run("not allowed", func(t *testing.T) {
		h := f.handler(t, HandlerOptions{AllowedRoots: []string{}})
		for _, p := range []string{"/linked.vmdk", "/linkdir/disk.vmdk"} {
			if resp, _ := get(t, h, http.MethodGet, p); resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s: status %d, want 404 without AllowedRoots", p, resp.StatusCode)
			}
		}
	})
	t.Run("control: outside allowed explicitly", func(t *testing.T) {
		// The same links are served once their target root is allowed, so
		// the 404s of TestHandlerRefusedPaths come from the containment
		// check and not from a broken fixture.
		h := f.handler(t, HandlerOptions{AllowedRoots: []string{f.store, f.outside}})
		if resp, body := get(t, h, http.MethodGet, "/escape.txt"); resp.StatusCode != http.StatusOK || body != "SECRET" {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
		if resp, _ := get(t, h, http.MethodGet, "/staged.vmdk"); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("hidden part of an allowed root: status %d, want 404", resp.StatusCode)
		}
	})
	t.Run("allowed root via symlink", func(t *testing.T) {
		link := filepath.Join(f.base, "store-link")
		if err := os.Symlink(f.store, link); err != nil {
			t.Fatal(err)
		}
		h := f.handler(t, HandlerOptions{AllowedRoots: []string{link}})
		if resp, body := get(t, h, http.MethodGet, "/linked.vmdk"); resp.StatusCode != http.StatusOK || body != "STORE" {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
	})
	t.Run("root swapped", func(t *testing.T) {
		// Root is a symlink that the publisher re-points atomically; the
		// handler must follow the swap.
		gen1 := filepath.Join(f.base, "gen1")
		gen2 := filepath.Join(f.base, "gen2")
		writeFile(t, filepath.Join(gen1, "lib.json"), []byte("gen1"))
		writeFile(t, filepath.Join(gen2, "lib.json"), []byte("gen2"))
		current := filepath.Join(f.base, "current")
		if err := os.Symlink("gen1", current); err != nil {
			t.Fatal(err)
		}
		h := f.handler(t, HandlerOptions{Root: current})
		if _, body := get(t, h, http.MethodGet, "/lib.json"); body != "gen1" {
			t.Fatalf("body %q, want gen1", body)
		}
		tmp := filepath.Join(f.base, "current.tmp")
		if err := os.Symlink("gen2", tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, current); err != nil {
			t.Fatal(err)
		}
		if _, body := get(t, h, http.MethodGet, "/lib.json"); body != "gen2" {
			t.Fatalf("after swap: body %q, want gen2", body)
		}
	})
}

// TestOpenNoBlockFIFO: the open used for files and directories returns at
// once on a FIFO, and openChecked refuses a file that is not the one
// Lstat'ed (a swap between Lstat and open).
func TestOpenNoBlockFIFO(t *testing.T) {
	f := newFixture(t)
	fifo := filepath.Join(f.root, "fifo")
	done := make(chan error, 1)
	go func() {
		fh, err := openNoBlock(fifo)
		if err == nil {
			fh.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("openNoBlock(fifo): %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("openNoBlock blocked on a FIFO")
	}

	regular, err := os.Lstat(filepath.Join(f.root, "lib.json"))
	if err != nil {
		t.Fatal(err)
	}
	if fh, ok := openChecked(fifo, regular); ok {
		fh.Close()
		t.Error("openChecked accepted a FIFO in place of a regular file")
	}
	if fh, ok := openChecked(filepath.Join(f.root, "items.json"), regular); ok {
		fh.Close()
		t.Error("openChecked accepted a different file")
	}
	if _, ok := openChecked(filepath.Join(f.root, "linked.vmdk"), regular); ok {
		t.Error("openChecked followed a symlink")
	}
	fh, ok := openChecked(filepath.Join(f.root, "lib.json"), regular)
	if !ok {
		t.Fatal("openChecked refused the Lstat'ed file")
	}
	fh.Close()
}

func TestHandlerBrowse(t *testing.T) {
	f := newFixture(t)
	on := f.handler(t, HandlerOptions{Browse: true})
	off := f.handler(t, HandlerOptions{Browse: false})

	t.Run("root listing", func(t *testing.T) {
		resp, body := get(t, on, http.MethodGet, "/")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("Content-Type %q", ct)
		}
		for _, want := range []string{
			`<a href="lib.json">lib.json</a>`,
			`<a href="tmpl/">tmpl/</a>`,
			`<a href="linked.vmdk">linked.vmdk</a>`, // resolves into the store
			`<a href="linkdir/">linkdir/</a>`,
			`<a href="a%20b%23c%3F.txt">a b#c?.txt</a>`,
			`<a href="%3Cb%3E&amp;%22q.txt">&lt;b&gt;&amp;&#34;q.txt</a>`,
			`<a href="./colon:name.txt">colon:name.txt</a>`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("listing lacks %s\n%s", want, body)
			}
		}
		for _, hidden := range []string{".clr", ".partial", ".hidden", "fifo", "passwd", "escape.txt", "dotlink.json", "staged.vmdk", "broken", "<b>", `href="../"`} {
			if strings.Contains(body, hidden) {
				t.Errorf("listing shows %q\n%s", hidden, body)
			}
		}
		// sorted by name
		last := -1
		for _, name := range []string{">a.gz<", ">ca.cert<", ">data.bin<", ">items.json<", ">lib.json<", ">sub/<", ">tmpl/<"} {
			i := strings.Index(body, name)
			if i <= last {
				t.Errorf("%s out of order", name)
			}
			last = i
		}
	})
	t.Run("sub listing", func(t *testing.T) {
		resp, body := get(t, on, http.MethodGet, "/sub/")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		for _, want := range []string{`href="../"`, `href="file.txt"`, `href="up.json"`, "Index of /sub/"} {
			if !strings.Contains(body, want) {
				t.Errorf("listing lacks %s\n%s", want, body)
			}
		}
		if strings.Contains(body, ".partial") {
			t.Errorf("listing shows .partial")
		}
	})
	t.Run("store directory", func(t *testing.T) {
		resp, body := get(t, on, http.MethodGet, "/linkdir/")
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `href="disk.vmdk"`) {
			t.Fatalf("status %d body %s", resp.StatusCode, body)
		}
	})
	t.Run("HEAD", func(t *testing.T) {
		resp, body := get(t, on, http.MethodHead, "/")
		if resp.StatusCode != http.StatusOK || body != "" || resp.Header.Get("Content-Length") == "" {
			t.Fatalf("status %d body %q Content-Length %q", resp.StatusCode, body, resp.Header.Get("Content-Length"))
		}
	})
	t.Run("redirect", func(t *testing.T) {
		for target, want := range map[string]string{
			"/sub":         "./sub/",
			"/sub?x=1&y=2": "./sub/?x=1&y=2",
			"/tmpl":        "./tmpl/",
			"/linkdir":     "./linkdir/",
		} {
			resp, _ := get(t, on, http.MethodGet, target)
			if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != want {
				t.Errorf("%s: status %d Location %q, want 301 %q", target, resp.StatusCode, resp.Header.Get("Location"), want)
			}
		}
	})
	t.Run("off", func(t *testing.T) {
		for _, p := range []string{"/", "/sub/", "/sub", "/tmpl/", "/linkdir/"} {
			if resp, _ := get(t, off, http.MethodGet, p); resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s: status %d, want 404", p, resp.StatusCode)
			}
		}
		if resp, _ := get(t, off, http.MethodGet, "/sub/file.txt"); resp.StatusCode != http.StatusOK {
			t.Errorf("files must still be served, status %d", resp.StatusCode)
		}
	})
	t.Run("no index.html magic", func(t *testing.T) {
		writeFile(t, filepath.Join(f.root, "sub", "index.html"), []byte("INDEX"))
		if _, body := get(t, on, http.MethodGet, "/sub/"); strings.Contains(body, "INDEX") || !strings.Contains(body, `href="index.html"`) {
			t.Errorf("index.html served in place of the listing: %s", body)
		}
		if resp, _ := get(t, off, http.MethodGet, "/sub/"); resp.StatusCode != http.StatusNotFound {
			t.Errorf("browse off: status %d, want 404", resp.StatusCode)
		}
	})
}

func TestHandlerBasicAuth(t *testing.T) {
	f := newFixture(t)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	h := f.handler(t, HandlerOptions{
		Browse:      true,
		Password:    "s3cret",
		Extra:       map[string]http.Handler{"/healthz": ok, "/metrics": ok},
		ExtraNoAuth: []string{"/healthz"},
	})
	custom := f.handler(t, HandlerOptions{User: "admin", Password: "s3cret"})
	const challenge = `Basic realm="clr", charset="UTF-8"`
	tests := []struct {
		name       string
		h          http.Handler
		path       string
		user, pass string
		auth       bool
		status     int
	}{
		{"no header", h, "/lib.json", "", "", false, http.StatusUnauthorized},
		{"wrong user", h, "/lib.json", "root", "s3cret", true, http.StatusUnauthorized},
		{"wrong password", h, "/lib.json", "vcsp", "s3cret!", true, http.StatusUnauthorized},
		{"empty password", h, "/lib.json", "vcsp", "", true, http.StatusUnauthorized},
		{"right", h, "/lib.json", "vcsp", "s3cret", true, http.StatusOK},
		{"listing needs auth", h, "/", "", "", false, http.StatusUnauthorized},
		{"listing with auth", h, "/", "vcsp", "s3cret", true, http.StatusOK},
		{"refused path still 401 first", h, "/.clr/state.json", "", "", false, http.StatusUnauthorized},
		{"refused path with auth", h, "/.clr/state.json", "vcsp", "s3cret", true, http.StatusNotFound},
		{"no-auth extra", h, "/healthz", "", "", false, http.StatusOK},
		{"auth extra without", h, "/metrics", "", "", false, http.StatusUnauthorized},
		{"auth extra with", h, "/metrics", "vcsp", "s3cret", true, http.StatusOK},
		{"custom user, default name", custom, "/lib.json", "vcsp", "s3cret", true, http.StatusUnauthorized},
		{"custom user", custom, "/lib.json", "admin", "s3cret", true, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tt.path, nil)
			if tt.auth {
				r.SetBasicAuth(tt.user, tt.pass)
			}
			resp := serve(t, tt.h, r)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			got := resp.Header.Get("WWW-Authenticate")
			if tt.status == http.StatusUnauthorized && got != challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, challenge)
			}
			if tt.status != http.StatusUnauthorized && got != "" {
				t.Errorf("WWW-Authenticate %q on a %d", got, tt.status)
			}
		})
	}
}

func TestHandlerMethodNotAllowed(t *testing.T) {
	f := newFixture(t)
	h := f.handler(t, HandlerOptions{Browse: true})
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions, "PROPFIND"} {
		for _, p := range []string{"/lib.json", "/", "/missing"} {
			resp, _ := get(t, h, m, p)
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("%s %s: status %d, want 405", m, p, resp.StatusCode)
			}
			if got := resp.Header.Get("Allow"); got != "GET, HEAD" {
				t.Errorf("%s %s: Allow %q", m, p, got)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(f.root, "lib.json")); err != nil {
		t.Fatal(err)
	}
}

func TestHandlerAccessLog(t *testing.T) {
	f := newFixture(t)
	var buf lockedBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	h := f.handler(t, HandlerOptions{Logger: logger})
	get(t, h, http.MethodGet, "/lib.json")
	get(t, h, http.MethodGet, "/.clr/state.json")
	get(t, h, http.MethodGet, "/data.bin", "Range", "bytes=0-9")

	var recs []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		recs = append(recs, m)
	}
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3:\n%s", len(recs), buf.String())
	}
	want := []struct {
		path   string
		status float64
		bytes  float64
	}{{"/lib.json", 200, 13}, {"/.clr/state.json", 404, 19}, {"/data.bin", 206, 10}}
	for i, w := range want {
		r := recs[i]
		if r["level"] != "INFO" || r["method"] != "GET" || r["path"] != w.path || r["status"] != w.status || r["bytes"] != w.bytes {
			t.Errorf("record %d: %v, want path %s status %v bytes %v", i, r, w.path, w.status, w.bytes)
		}
		if r["remote"] == "" || r["remote"] == nil || r["duration"] == nil {
			t.Errorf("record %d lacks remote or duration: %v", i, r)
		}
	}
}

// TestHandlerOverListener runs the handler behind a real 127.0.0.1 listener:
// what the wire carries (Content-Length on HEAD, Range), and a FIFO does not
// hang the server.
func TestHandlerOverListener(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.handler(t, HandlerOptions{}))
	defer srv.Close()
	c := &http.Client{Timeout: 5 * time.Second}

	resp, err := c.Head(srv.URL + "/data.bin")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength != 100 {
		t.Fatalf("HEAD: status %d length %d", resp.StatusCode, resp.ContentLength)
	}

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/data.bin", nil)
	req.Header.Set("Range", "bytes=50-59")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(body) != string(f.data[50:60]) {
		t.Fatalf("Range: status %d body %q", resp.StatusCode, body)
	}

	resp, err = c.Get(srv.URL + "/fifo")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("fifo: status %d", resp.StatusCode)
	}
}

func TestHandlerOptionErrors(t *testing.T) {
	f := newFixture(t)
	ok := http.NotFoundHandler()
	tests := []struct {
		name     string
		opts     HandlerOptions
		notExist bool
	}{
		{"empty root", HandlerOptions{}, false},
		{"missing root", HandlerOptions{Root: filepath.Join(f.base, "nope")}, true},
		{"file root", HandlerOptions{Root: filepath.Join(f.root, "lib.json")}, false},
		{"empty allowed root", HandlerOptions{Root: f.root, AllowedRoots: []string{""}}, false},
		{"extra without slash", HandlerOptions{Root: f.root, Extra: map[string]http.Handler{"healthz": ok}}, false},
		{"extra nil handler", HandlerOptions{Root: f.root, Extra: map[string]http.Handler{"/healthz": nil}}, false},
		{"no-auth not extra", HandlerOptions{Root: f.root, Extra: map[string]http.Handler{"/healthz": ok}, ExtraNoAuth: []string{"/metrics"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Handler(tt.opts)
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err %v, want ErrInvalidConfig", err)
			}
			if tt.notExist && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("err %v, want fs.ErrNotExist too", err)
			}
			if !strings.HasPrefix(err.Error(), "serve: ") {
				t.Errorf("err %q lacks the package prefix", err)
			}
		})
	}
}

func TestCleanRequestPath(t *testing.T) {
	tests := []struct {
		in    string
		rel   string
		slash bool
		ok    bool
	}{
		{"/", "", true, true},
		{"/lib.json", "lib.json", false, true},
		{"/a//b/", "a/b", true, true},
		{"/a/b.c/d", "a/b.c/d", false, true},
		{"", "", false, false},
		{"lib.json", "", false, false},
		{"/..", "", false, false},
		{"/a/../b", "", false, false},
		{"/a/./b", "", false, false},
		{"/.git/config", "", false, false},
		{"/a/.b", "", false, false},
		{"/a\\b", "", false, false},
		{"/a\x00b", "", false, false},
	}
	for _, tt := range tests {
		rel, slash, ok := cleanRequestPath(tt.in)
		if rel != tt.rel || slash != tt.slash || ok != tt.ok {
			t.Errorf("cleanRequestPath(%q) = %q, %v, %v; want %q, %v, %v", tt.in, rel, slash, ok, tt.rel, tt.slash, tt.ok)
		}
	}
}

// sanity: the fixture really has the things the refusals are about.
func TestFixtureSanity(t *testing.T) {
	f := newFixture(t)
	for _, p := range []string{".clr/state.json", "escape.txt", "dotlink.json"} {
		b, err := os.ReadFile(filepath.Join(f.root, p))
		if err != nil || len(b) == 0 {
			t.Errorf("%s: %v", p, err)
		}
	}
	fi, err := os.Lstat(filepath.Join(f.root, "fifo"))
	if err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
		t.Errorf("fifo: %v %v", fi, err)
	}
	if !bytes.Equal(f.data[:3], []byte("abc")) {
		t.Error("data")
	}
}
