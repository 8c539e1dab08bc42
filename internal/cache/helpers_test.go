package cache

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clr-suite/clr/events"
	"github.com/clr-suite/clr/internal/imagelist"
)

// TestMain doubles as the child process of the kill test (kill_test.go):
// the test binary re-executes itself with helperEnv set and never reaches
// m.Run then.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(runHelper())
	}
	os.Exit(m.Run())
}

// t0 is the tests' fixed clock.
var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// fixture is one image version with its source files.
type fixture struct {
	item  Item
	src   string            // directory holding the files as the fetch should deliver them
	files map[string][]byte // relative path -> content
}

func sum(b []byte) string {
	h := sha512.Sum512(b)
	return hex.EncodeToString(h[:])
}

// folderFixture makes a folder template version of uuid.
func folderFixture(t testing.TB, uuid string, files map[string]string) fixture {
	t.Helper()
	src := t.TempDir()
	fx := fixture{src: src, files: map[string][]byte{}}
	var lf []imagelist.File
	for p, content := range files {
		writeFile(t, filepath.Join(src, p), []byte(content))
		fx.files[p] = []byte(content)
		lf = append(lf, imagelist.File{Path: p, Size: int64(len(content)), SHA512: sum([]byte(content))})
	}
	sort.Slice(lf, func(i, j int) bool { return lf[i].Path < lf[j].Path })
	size, digest, err := imagelist.FilesDigest(lf)
	if err != nil {
		t.Fatal(err)
	}
	var cf []File
	for _, f := range lf {
		cf = append(cf, File{Path: f.Path, Size: f.Size, SHA512: f.SHA512})
	}
	fx.item = Item{
		UUID: uuid, Subscription: "sub-1", ListIdentifier: "list-1", VO: "vo.example.org",
		SHA512: digest, Size: size, URI: "rsync://mirror.example.org/library/" + uuid + "/", Files: cf,
		Event: events.Image{Title: "template " + uuid, Format: "ovf", Version: "1"},
	}
	return fx
}

// singleFixture makes a single-file image version of uuid.
func singleFixture(t testing.TB, uuid, name, content string) fixture {
	t.Helper()
	src := t.TempDir()
	writeFile(t, filepath.Join(src, name), []byte(content))
	return fixture{
		src:   src,
		files: map[string][]byte{name: []byte(content)},
		item: Item{
			UUID: uuid, Subscription: "sub-1", ListIdentifier: "list-1", VO: "vo.example.org",
			SHA512: sum([]byte(content)), Size: int64(len(content)), URI: "https://images.example.org/" + name,
			Event: events.Image{Title: "image " + uuid, Version: "1"},
		},
	}
}

func writeFile(t testing.TB, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// fakeFetch copies a version from its fixture's source directory, with
// knobs for the faults a real transport can produce.
type fakeFetch struct {
	mu   sync.Mutex
	srcs map[string]string // image digest -> source directory
	reqs []FetchRequest

	corrupt    bool          // flip a byte of the first file
	tooLarge   bool          // append a byte to the first file
	omit       bool          // leave out the last file
	extra      bool          // add a file that is not listed
	hang       bool          // block until ctx is done
	failMidway bool          // write half of the first file, then fail
	chunkDelay time.Duration // sleep per 16 KiB copied
}

func newFake(fxs ...fixture) *fakeFetch {
	f := &fakeFetch{srcs: map[string]string{}}
	f.add(fxs...)
	return f
}

func (f *fakeFetch) add(fxs ...fixture) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fx := range fxs {
		f.srcs[fx.item.SHA512] = fx.src
	}
}

func (f *fakeFetch) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

func (f *fakeFetch) last() FetchRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[len(f.reqs)-1]
}

func (f *fakeFetch) Fetch(ctx context.Context, req FetchRequest) (FetchStats, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	src := f.srcs[req.Item.SHA512]
	f.mu.Unlock()
	var st FetchStats
	if f.hang {
		<-ctx.Done()
		return st, ctx.Err()
	}
	if src == "" {
		return st, fmt.Errorf("fake: no source for %s", req.Item.SHA512[:16])
	}
	for i, file := range req.Files {
		if f.omit && i == len(req.Files)-1 {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, file.Path))
		if err != nil {
			return st, err
		}
		if i == 0 {
			switch {
			case f.failMidway:
				writeRaw(filepath.Join(req.Stage, file.Path), data[:len(data)/2])
				return st, errors.New("fake: connection reset")
			case f.corrupt:
				data = append([]byte(nil), data...)
				data[len(data)/2] ^= 0x55
			case f.tooLarge:
				data = append(append([]byte(nil), data...), 'x')
			}
		}
		if err := copySlow(ctx, filepath.Join(req.Stage, file.Path), data, f.chunkDelay); err != nil {
			return st, err
		}
		st.WireBytesIn += int64(len(data))
		st.LiteralBytes += int64(len(data))
	}
	if f.extra {
		writeRaw(filepath.Join(req.Stage, "unexpected.txt"), []byte("surprise"))
	}
	return st, nil
}

func writeRaw(p string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, b, 0o644)
}

// copySlow writes data to p in 16 KiB chunks, sleeping delay after each.
func copySlow(ctx context.Context, p string, data []byte, delay time.Duration) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	out, err := os.Create(p)
	if err != nil {
		return err
	}
	defer out.Close()
	for len(data) > 0 {
		n := min(len(data), 16<<10)
		if _, err := out.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
		if delay > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(delay):
			}
		}
	}
	return out.Close()
}

// recorder collects hook events.
type recorder struct {
	mu  sync.Mutex
	evs []events.Event
	err error // returned by every call
}

func (r *recorder) hook(_ context.Context, ev events.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
	return r.err
}

func (r *recorder) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.evs {
		s := string(ev.Type)
		if ev.Image != nil {
			s += ":" + ev.Image.Identifier
		}
		out = append(out, s)
	}
	return out
}

// newCache makes a cache in fresh directories with the fake fetch and a
// recording hook.
func newCache(t testing.TB, f *fakeFetch) (*Cache, *recorder) {
	t.Helper()
	root := t.TempDir()
	rec := &recorder{}
	var out io.Writer = io.Discard
	if tt, ok := t.(*testing.T); ok {
		out = tt.Output()
	}
	c := &Cache{
		Dir:        filepath.Join(root, "cache"),
		PartialDir: filepath.Join(root, "partial"),
		ExpiredDir: filepath.Join(root, "expired"),
		Fetch:      f.Fetch,
		Hook:       rec.hook,
		Logger:     slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:        t0,
		Session:    "session-1",
		FreeMargin: -1,
	}
	return c, rec
}

func download(t testing.TB, c *Cache, items ...Item) Report {
	t.Helper()
	rep, err := c.Download(context.Background(), items)
	if err != nil {
		t.Fatalf("Download: %v", err)
	}
	return rep
}

// servedDigest resolves Dir/<uuid> independently of the package and
// returns the digest of what it finds: the file's SHA-512 or the folder's
// imagelist.FilesDigest. "" when Dir/<uuid> does not exist.
func servedDigest(t testing.TB, dir, uuid string) string {
	t.Helper()
	d, err := resolveDigest(filepath.Join(dir, uuid))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func resolveDigest(link string) (string, error) {
	if _, err := os.Lstat(link); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	p, err := filepath.EvalSymlinks(link)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", link, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		return sum(b), nil
	}
	var lf []imagelist.File
	err = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file", q)
		}
		b, err := os.ReadFile(q)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(p, q)
		lf = append(lf, imagelist.File{Path: filepath.ToSlash(rel), Size: int64(len(b)), SHA512: sum(b)})
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Slice(lf, func(i, j int) bool { return lf[i].Path < lf[j].Path })
	_, digest, err := imagelist.FilesDigest(lf)
	return digest, err
}

// snapshot maps every path under root (except skip) to its type, mode,
// link target or content digest.
func snapshot(t testing.TB, root string, skip ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		for _, s := range skip {
			if rel == s {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		v := fi.Mode().String()
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			v += " -> " + target
		case d.Type().IsRegular():
			b, _ := os.ReadFile(p)
			v += " " + sum(b)[:16]
		}
		out[rel] = v
		return nil
	})
	return out
}

// leftovers lists staging directories, temporary names and trash entries.
func leftovers(t testing.TB, c *Cache) []string {
	t.Helper()
	var out []string
	for _, dir := range []string{c.PartialDir, c.Dir, filepath.Join(c.Dir, metaName), filepath.Join(c.Dir, trashRel), c.ExpiredDir} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			n := e.Name()
			if strings.Contains(n, stageMark) || strings.Contains(n, tmpMark) || dir == filepath.Join(c.Dir, trashRel) {
				out = append(out, filepath.Join(dir, n))
			}
		}
	}
	return out
}
