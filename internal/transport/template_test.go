package transport

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clr-suite/clr/internal/fsutil"
)

// randomBytes fills n bytes deterministically (incompressible for zstd).
func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	x := seed*0x9E3779B97F4A7C15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// putFiles writes files (slash paths) below dir.
func putFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// specs lists files with their real sizes.
func specs(files map[string][]byte) []FileSpec {
	var out []FileSpec
	for name, data := range files {
		out = append(out, FileSpec{Path: name, Size: int64(len(data))})
	}
	return out
}

// checkTree fails unless dir holds exactly files (and their directories).
func checkTree(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	seen := 0
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		want, ok := files[filepath.ToSlash(rel)]
		if !ok {
			t.Errorf("unexpected file %s in the stage", rel)
			return nil
		}
		seen++
		got, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes differ from the %d expected", rel, len(got), len(want))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != len(files) {
		t.Errorf("stage has %d of %d files", seen, len(files))
	}
}

// templateTransport exports a library directory over one transport.
type templateTransport struct {
	name string
	// serve exports lib; root is the URL of lib itself, ending in "/",
	// and setup completes a request (keys, roots...).
	serve func(t *testing.T, lib string) (root string, setup func(*TemplateRequest))
}

var templateTransports = []templateTransport{
	{"file", func(t *testing.T, lib string) (string, func(*TemplateRequest)) {
		return "file://" + lib + "/", func(*TemplateRequest) {}
	}},
	{"https", func(t *testing.T, lib string) (string, func(*TemplateRequest)) {
		srv, pool := serveTLS(t, http.FileServer(http.Dir(lib)).ServeHTTP)
		return srv.URL + "/", func(r *TemplateRequest) { r.RootCAs = pool }
	}},
	{"ssh", func(t *testing.T, lib string) (string, func(*TemplateRequest)) {
		s := startSSHServer(t, lib)
		return s.url("/"), s.setup
	}},
}

// TestTemplateConformance is the suite every transport passes.
func TestTemplateConformance(t *testing.T) {
	folder := map[string][]byte{
		"disk.img":                   randomBytes(96<<10, 1),
		"empty.txt":                  {},
		"sub/deeper/disk2.vmdk":      randomBytes(10<<10, 2),
		"sub/odd name [1]*?.txt":     []byte("odd\n"),
		"sub/deeper/disk2.vmdk.ovf!": []byte("<Envelope/>\n"),
	}
	var folderBytes int64
	for _, d := range folder {
		folderBytes += int64(len(d))
	}
	oldFolder := map[string][]byte{"disk.img": randomBytes(96<<10, 3), "sub/deeper/disk2.vmdk": randomBytes(10<<10, 2)}
	single := randomBytes(5000, 4)
	big := randomBytes(8<<20, 5)

	for _, tr := range templateTransports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			lib := t.TempDir()
			for name, data := range folder {
				putFiles(t, lib, map[string][]byte{"tmpl/" + name: data})
			}
			putFiles(t, lib, map[string][]byte{
				"tmpl/unlisted.bin":        []byte("not listed\n"),
				"tmpl/sub/also-unlisted/x": []byte("x\n"),
				"single.iso":               single,
				"over/a.bin":               randomBytes(2000, 6),
				"over/b.bin":               randomBytes(3000, 7),
				"big/huge.img":             big,
			})
			basis := t.TempDir()
			putFiles(t, basis, oldFolder)
			root, setup := tr.serve(t, lib)
			fetchT := func(t *testing.T, ctx context.Context, req TemplateRequest) (TemplateStats, string, error) {
				t.Helper()
				if req.Stage == "" {
					req.Stage = t.TempDir()
				}
				setup(&req)
				stats, err := FetchTemplate(ctx, req)
				return stats, req.Stage, err
			}

			for _, tc := range []struct {
				name  string
				basis string
			}{{"first install", ""}, {"update", basis}} {
				t.Run("folder "+tc.name, func(t *testing.T) {
					stats, stage, err := fetchT(t, t.Context(), TemplateRequest{URL: root + "tmpl/", Files: specs(folder), Basis: tc.basis, PartialDir: filepath.Join(t.TempDir(), "partial")})
					if err != nil {
						t.Fatal(err)
					}
					checkTree(t, stage, folder)
					if stats.Files != len(folder) || stats.Resumed {
						t.Errorf("stats %+v", stats)
					}
					if tc.basis == "" && (stats.LiteralBytes != folderBytes || stats.MatchedBytes != 0 || stats.WireBytesIn < folderBytes/2) {
						t.Errorf("first install of %d bytes: stats %+v", folderBytes, stats)
					}
					if tc.basis != "" && stats.LiteralBytes+stats.MatchedBytes != folderBytes {
						t.Errorf("update of %d bytes: stats %+v", folderBytes, stats)
					}
					for name, data := range oldFolder { // the basis is only read
						if got, _ := os.ReadFile(filepath.Join(basis, name)); !bytes.Equal(got, data) {
							t.Errorf("basis %s changed", name)
						}
					}
				})
			}

			t.Run("single file", func(t *testing.T) {
				stats, stage, err := fetchT(t, t.Context(), TemplateRequest{URL: root + "single.iso", Files: []FileSpec{{"single.iso", 5000}}})
				if err != nil {
					t.Fatal(err)
				}
				checkTree(t, stage, map[string][]byte{"single.iso": single})
				if stats.Files != 1 || stats.LiteralBytes != 5000 {
					t.Errorf("stats %+v", stats)
				}
			})

			for _, tc := range []struct {
				name  string
				url   string
				files []FileSpec
			}{
				{"larger than signed (single)", root + "over/a.bin", []FileSpec{{"a.bin", 1999}}},
				// b.bin's signed size is the largest: the cap on a.bin
				// cannot be rsync's --max-size alone.
				{"larger than signed (folder)", root + "over/", []FileSpec{{"a.bin", 1000}, {"b.bin", 5000}}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					_, stage, err := fetchT(t, t.Context(), TemplateRequest{URL: tc.url, Files: tc.files})
					if !errors.Is(err, fsutil.ErrTooLarge) || !errors.Is(err, ErrTooLarge) || errors.Is(err, ErrDownload) || Retryable(err) {
						t.Fatalf("error %v, want ErrTooLarge", err)
					}
					if !strings.Contains(err.Error(), "a.bin: file too large") {
						t.Errorf("error %q does not name a.bin", err)
					}
					if fi, err := os.Stat(filepath.Join(stage, "a.bin")); err == nil {
						t.Errorf("oversized a.bin kept in the stage (%d bytes)", fi.Size())
					}
				})
			}

			t.Run("missing file", func(t *testing.T) {
				files := append(specs(folder), FileSpec{"sub/not-there.img", 10})
				_, _, err := fetchT(t, t.Context(), TemplateRequest{URL: root + "tmpl/", Files: files})
				if !errors.Is(err, ErrMissingFile) || !errors.Is(err, ErrDownload) || Retryable(err) {
					t.Fatalf("error %v, want ErrMissingFile", err)
				}
				if !strings.Contains(err.Error(), "not-there.img") {
					t.Errorf("error %q does not name the file", err)
				}
			})

			t.Run("cancel", func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				time.AfterFunc(500*time.Millisecond, cancel)
				start := time.Now()
				// 8 MiB at 256 KiB/s would take 32 s.
				_, _, err := fetchT(t, ctx, TemplateRequest{URL: root + "big/", Files: []FileSpec{{"huge.img", int64(len(big))}}, BWLimit: "256k"})
				if !errors.Is(err, context.Canceled) || errors.Is(err, ErrDownload) || Retryable(err) {
					t.Fatalf("error %v, want context.Canceled", err)
				}
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("cancel took %s", d)
				}
			})

			t.Run("deadline", func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
				defer cancel()
				_, _, err := fetchT(t, ctx, TemplateRequest{URL: root + "big/", Files: []FileSpec{{"huge.img", int64(len(big))}}, BWLimit: "256k"})
				var fe *FetchError
				if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &fe) || !errors.Is(err, ErrDownload) || !Retryable(err) {
					t.Fatalf("error %v, want a retryable FetchError wrapping context.DeadlineExceeded", err)
				}
			})

			t.Run("stage not empty", func(t *testing.T) {
				stage := t.TempDir()
				writeFile(t, stage, "left-over", "x")
				_, _, err := fetchT(t, t.Context(), TemplateRequest{URL: root + "single.iso", Files: []FileSpec{{"single.iso", 5000}}, Stage: stage})
				if !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), "is not empty") {
					t.Errorf("error %v", err)
				}
			})
		})
	}
}

func TestTemplateRequestRefused(t *testing.T) {
	stage := t.TempDir()
	known := writeFile(t, t.TempDir(), "known_hosts", "")
	ok := []FileSpec{{"disk.img", 1}}
	for _, tc := range []struct {
		name string
		req  TemplateRequest
		is   error
		text string
	}{
		{"no files", TemplateRequest{URL: "file:///lib/t/"}, ErrInvalidRequest, "no files"},
		{"absolute path", TemplateRequest{URL: "file:///lib/t/", Files: []FileSpec{{"/etc/passwd", 1}}}, ErrInvalidRequest, "is absolute"},
		{"dot dot", TemplateRequest{URL: "file:///lib/t/", Files: []FileSpec{{"a/../../x", 1}}}, ErrInvalidRequest, "not clean"},
		{"leading dot dot", TemplateRequest{URL: "file:///lib/t/", Files: []FileSpec{{"../x", 1}}}, ErrInvalidRequest, "leaves the template"},
		{"unclean", TemplateRequest{URL: "file:///lib/t/", Files: []FileSpec{{"a//b", 1}}}, ErrInvalidRequest, "not clean"},
		{"control character", TemplateRequest{URL: "file:///lib/t/", Files: []FileSpec{{"a\nb", 1}}}, ErrInvalidRequest, "control character"},
		{"negative size", TemplateRequest{URL: "file:///lib/t/", Files: []FileSpec{{"a", -1}}}, ErrInvalidRequest, "negative size"},
		{"twice", TemplateRequest{URL: "file:///lib/t/", Files: []FileSpec{{"a", 1}, {"a", 1}}}, ErrInvalidRequest, "listed twice"},
		{"file and dir", TemplateRequest{URL: "file:///lib/t/", Files: []FileSpec{{"a", 1}, {"a/b", 1}}}, ErrInvalidRequest, "is a file and a directory"},
		{"single file name", TemplateRequest{URL: "file:///lib/disk.img", Files: []FileSpec{{"other.img", 1}}}, ErrInvalidRequest, `Files must be exactly {Path: "disk.img"}`},
		{"single file two", TemplateRequest{URL: "file:///lib/disk.img", Files: []FileSpec{{"disk.img", 1}, {"b", 1}}}, ErrInvalidRequest, "Files must be exactly"},
		{"folder query", TemplateRequest{URL: "https://h.example/t/?x=1", Files: ok}, ErrInvalidRequest, "no query"},
		{"missing stage", TemplateRequest{URL: "file:///lib/t/", Files: ok, Stage: "/nonexistent/stage"}, ErrInvalidRequest, "no such file"},
		{"missing basis", TemplateRequest{URL: "file:///lib/t/", Files: ok, Basis: "/nonexistent/basis"}, ErrInvalidRequest, "basis"},
		{"bad bwlimit", TemplateRequest{URL: "file:///lib/t/", Files: ok, BWLimit: "fast"}, ErrInvalidRequest, "bandwidth limit"},
		{"block size", TemplateRequest{URL: "file:///lib/t/", Files: ok, BlockSize: 100}, ErrInvalidRequest, "block size 100"},
		{"timeout", TemplateRequest{URL: "file:///lib/t/", Files: ok, IOTimeout: -time.Second}, ErrInvalidRequest, "i/o timeout"},
		{"scheme", TemplateRequest{URL: "rsync://h/mod/t/", Files: ok}, ErrUnsupportedScheme, "rsync"},
		{"https credentials", TemplateRequest{URL: "https://u:p@h.example/t/", Files: ok}, ErrCredentialsInURL, ""},
		{"ssh password", TemplateRequest{URL: "ssh://u:p@h.example/t/", Files: ok}, ErrCredentialsInURL, ""},
		{"ssh option host", TemplateRequest{URL: "ssh://-oProxyCommand=x/t/", Files: ok}, ErrInvalidURL, ""},
		{"ssh option user", TemplateRequest{URL: "ssh://-oProxyCommand=x@h/t/", Files: ok}, ErrInvalidURL, "bad user"},
		{"ssh port", TemplateRequest{URL: "ssh://h.example:0/t/", Files: ok}, ErrInvalidURL, "bad port"},
		{"ssh query", TemplateRequest{URL: "ssh://h.example/t/?x", Files: ok}, ErrInvalidURL, "without query"},
		{"ssh dot dot", TemplateRequest{URL: "ssh://h.example/t/../../etc/", Files: ok}, ErrInvalidURL, `".."`},
		{"ssh no host", TemplateRequest{URL: "ssh:///t/", Files: ok}, ErrInvalidURL, "without a host"},
		{"ssh no known hosts", TemplateRequest{URL: "ssh://h.example/t/", Files: ok}, ErrInvalidRequest, "known_hosts file with the server's pinned host key"},
		{"ssh known hosts missing", TemplateRequest{URL: "ssh://h.example/t/", Files: ok, SSH: SSHOptions{KnownHosts: "/nonexistent/known_hosts"}}, ErrInvalidRequest, "no such file"},
		{"ssh key with space", TemplateRequest{URL: "ssh://h.example/t/", Files: ok, SSH: SSHOptions{KnownHosts: known, KeyFile: "/keys/my key"}}, ErrInvalidRequest, "whitespace"},
		{"ssh known hosts with quote", TemplateRequest{URL: "ssh://h.example/t/", Files: ok, SSH: SSHOptions{KnownHosts: `/k/it's`, AcceptNew: true}}, ErrInvalidRequest, "quotes"},
		{"ssh command option", TemplateRequest{URL: "ssh://h.example/t/", Files: ok, SSH: SSHOptions{KnownHosts: known, Command: "-oProxyCommand=x"}}, ErrInvalidRequest, `starts with "-"`},
		{"ssh key missing", TemplateRequest{URL: "ssh://h.example/t/", Files: ok, SSH: SSHOptions{KnownHosts: known, KeyFile: "/nonexistent/id"}}, ErrInvalidRequest, "ssh key file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.req.Stage == "" {
				tc.req.Stage = stage
			}
			_, err := FetchTemplate(t.Context(), tc.req)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("error %v, want %v containing %q", err, tc.is, tc.text)
			}
			if errors.Is(err, ErrDownload) || Retryable(err) {
				t.Errorf("%v is a download failure or retryable", err)
			}
			if strings.Contains(err.Error(), "u:p@") {
				t.Errorf("error shows credentials: %v", err)
			}
		})
	}
}

func TestParseBWLimit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{"", 0, ""},
		{"0", 0, ""},
		{"100", 100 << 10, ""},
		{"500k", 500 << 10, ""},
		{"500K", 500 << 10, ""},
		{"1.5m", 3 << 19, ""},
		{"1.5M", 3 << 19, ""},
		{"2g", 2 << 30, ""},
		{"10mb", 10e6, ""},
		{"10MiB", 10 << 20, ""},
		{"1kb", 1000, ""},
		{"4096b", 4096, ""},
		{"0.5", 512, ""},
		{"511b", 0, "below rsync's minimum"},
		{"0.1", 0, "below rsync's minimum"},
		{"-1", 0, "want a number"},
		{"1,5m", 0, "unknown unit"},
		{"1.2.3", 0, "want a number"},
		{".", 0, "want a number"},
		{"m", 0, "want a number"},
		{"10x", 0, "unknown unit"},
		{"10 m", 0, "unknown unit"},
		{"1e9", 0, "unknown unit"},
		{"99999999999999g", 0, "too large"},
	} {
		got, err := ParseBWLimit(tc.in)
		if tc.err != "" {
			if !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseBWLimit(%q) = %d, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseBWLimit(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("local"), false},
		{&FetchError{URL: "u", Err: errors.New("connection refused")}, true},
		{&FetchError{URL: "u", Status: 503}, true},
		{&FetchError{URL: "u", Status: 429}, true},
		{&FetchError{URL: "u", Status: 404}, false},
		{&FetchError{URL: "u", Status: 403}, false},
		{&FetchError{URL: "u", Err: context.DeadlineExceeded}, true},
		{&FetchError{URL: "u", Err: ErrMissingFile}, false},
		{&FetchError{URL: "u", Err: permanent(errors.New("redirect from https to http://x refused"))}, false},
		{context.Canceled, false},
		{ErrTooLarge, false},
		{newRsyncError("u", 12, ""), true},
		{newRsyncError("u", 1, ""), false},
	} {
		if got := Retryable(tc.err); got != tc.want {
			t.Errorf("Retryable(%v) = %v", tc.err, got)
		}
	}
}

func TestFileTemplateNotRegular(t *testing.T) {
	lib := t.TempDir()
	if err := os.MkdirAll(filepath.Join(lib, "t", "disk.img"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := FetchTemplate(t.Context(), TemplateRequest{URL: "file://" + lib + "/t/", Files: []FileSpec{{"disk.img", 1}}, Stage: t.TempDir()})
	if !errors.Is(err, ErrDownload) || Retryable(err) || !strings.Contains(err.Error(), "disk.img: not a regular file") {
		t.Errorf("error %v", err)
	}
	_, err = FetchTemplate(t.Context(), TemplateRequest{URL: "file://server/t/", Files: []FileSpec{{"disk.img", 1}}, Stage: t.TempDir()})
	if !errors.Is(err, ErrInvalidURL) {
		t.Errorf("error %v", err)
	}
}
