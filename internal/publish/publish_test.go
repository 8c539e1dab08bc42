package publish

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clr-suite/clr/internal/imagelist"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func write(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(p, old, old)
}

func library(t *testing.T) string {
	root := t.TempDir()
	write(t, root, "web/web.ovf", "<Envelope/>")
	write(t, root, "web/web-disk1.vmdk", "disk")
	write(t, root, "web/sub/notes.txt", "n")
	write(t, root, "web/.DS_Store", "x")
	write(t, root, "tools.ISO", "iso")
	write(t, root, "a b.qcow2", "q")
	write(t, root, "readme.txt", "not an image")
	write(t, root, "noovf/disk.vmdk", "d")
	write(t, root, ".hidden.iso", "h")
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "link.iso")); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestScan(t *testing.T) {
	root := library(t)
	entries, st, err := Scan(context.Background(), root, ScanOptions{Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range entries {
		paths = append(paths, e.Path)
	}
	if want := []string{"a b.qcow2", "tools.ISO", "web"}; !slices.Equal(paths, want) {
		t.Fatalf("images %v, want %v", paths, want)
	}
	web := entries[2]
	var files []string
	for _, f := range web.Files {
		files = append(files, f.Path)
	}
	if want := []string{"sub/notes.txt", "web-disk1.vmdk", "web.ovf"}; !slices.Equal(files, want) {
		t.Errorf("template files %v, want %v", files, want)
	}
	size, sum, err := imagelist.FilesDigest(web.Files)
	if err != nil || size != web.Size || sum != web.SHA512 || web.Format != "ovf" {
		t.Errorf("template digest %d %s (%v), entry %d %s %s", size, sum, err, web.Size, web.SHA512, web.Format)
	}
	if entries[1].Format != "iso" {
		t.Errorf("format %q", entries[1].Format)
	}
	var skipped []string
	for _, s := range st.Skipped {
		skipped = append(skipped, s.Path)
	}
	slices.Sort(skipped)
	if want := []string{".hidden.iso", "link.iso", "noovf", "readme.txt", "web/.DS_Store"}; !slices.Equal(skipped, want) {
		t.Errorf("skipped %v, want %v", skipped, want)
	}
	if st.HashedFiles != 5 || st.Images != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestScanSkipsTemplateWithBadName(t *testing.T) {
	root := library(t)
	write(t, root, `bad/a\b.vmdk`, "x")
	write(t, root, "bad/bad.ovf", "<Envelope/>")
	entries, st, err := Scan(context.Background(), root, ScanOptions{Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 || st.Images != 3 {
		t.Fatalf("%d images, want the 3 good ones", len(entries))
	}
	if !slices.ContainsFunc(st.Skipped, func(s Skipped) bool { return s.Path == "bad" && strings.Contains(s.Reason, "backslash") }) {
		t.Fatalf("bad template not reported: %+v", st.Skipped)
	}
}

func TestScanProgress(t *testing.T) {
	root := library(t)
	var last Progress
	calls := 0
	_, st, err := Scan(context.Background(), root, ScanOptions{Now: time.Now(), Workers: 2, Progress: func(p Progress) {
		calls++
		if p.DoneBytes < last.DoneBytes || p.DoneFiles < last.DoneFiles {
			t.Errorf("progress went backwards: %+v after %+v", p, last)
		}
		last = p
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := Progress{DoneFiles: st.HashedFiles, TotalFiles: st.HashedFiles, DoneBytes: st.HashedBytes, TotalBytes: st.HashedBytes}
	if calls == 0 || last != want {
		t.Fatalf("%d calls, last %+v, want %+v", calls, last, want)
	}
}

func TestScanCancelled(t *testing.T) {
	root := library(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Scan(ctx, root, ScanOptions{Now: time.Now()}); err == nil {
		t.Fatal("cancelled scan succeeded")
	}
}

func TestScanMissingLibrary(t *testing.T) {
	_, _, err := Scan(context.Background(), filepath.Join(t.TempDir(), "none"), ScanOptions{})
	if !errors.Is(err, ErrLibrary) {
		t.Fatalf("err = %v, want ErrLibrary", err)
	}
}

func TestHashCache(t *testing.T) {
	root := library(t)
	cachePath := filepath.Join(t.TempDir(), "cache.json")
	scan := func(rehash bool) Stats {
		t.Helper()
		c, err := LoadHashCache(cachePath)
		if err != nil {
			t.Fatal(err)
		}
		entries, st, err := Scan(context.Background(), root, ScanOptions{Cache: c, Rehash: rehash, Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		c.Prune(entries)
		if err := c.Save(); err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := scan(false); st.HashedFiles != 5 {
		t.Fatalf("first scan hashed %d", st.HashedFiles)
	}
	if st := scan(false); st.HashedFiles != 0 || st.HashedBytes != 0 {
		t.Fatalf("no-change scan hashed %d files", st.HashedFiles)
	}
	if st := scan(true); st.HashedFiles != 5 {
		t.Fatalf("--rehash hashed %d", st.HashedFiles)
	}
	// same size, new content, mtime moved back in time: still detected
	// through the mtime change
	write(t, root, "tools.ISO", "ISO")
	if st := scan(false); st.HashedFiles != 1 {
		t.Fatalf("changed file: hashed %d", st.HashedFiles)
	}
	// new content with the old mtime put back (touch -d, cp -p, rsync -t):
	// the ctime gives it away
	vmdk := filepath.Join(root, "web/web-disk1.vmdk")
	fi, _ := os.Stat(vmdk)
	os.WriteFile(vmdk, []byte("DISK"), 0o644)
	os.Chtimes(vmdk, fi.ModTime(), fi.ModTime())
	if st := scan(false); st.HashedFiles != 1 {
		t.Fatalf("mtime-restored file: hashed %d, want 1", st.HashedFiles)
	}
	// a file modified just now is not trusted from the cache next time
	p := filepath.Join(root, "a b.qcow2")
	os.WriteFile(p, []byte("Q"), 0o644)
	scan(false)
	if st := scan(false); st.HashedFiles != 1 {
		t.Fatalf("racily clean file: hashed %d, want 1", st.HashedFiles)
	}
	// a corrupt cache only costs re-hashing
	os.WriteFile(cachePath, []byte("{garbage"), 0o644)
	if st := scan(false); st.HashedFiles != 5 {
		t.Fatalf("corrupt cache: hashed %d", st.HashedFiles)
	}
}

const listID = "2f9e8a43-3c1e-4d3f-9d5c-0a1b2c3d4e5f"

func TestBuildVersions(t *testing.T) {
	root := library(t)
	meta := ListMeta{Identifier: listID, BaseURI: "https://pub.example/lib/"}
	scan := func() []Entry {
		e, _, err := Scan(context.Background(), root, ScanOptions{Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	l1, ch, err := Build(nil, scan(), meta, t0)
	if err != nil {
		t.Fatal(err)
	}
	if !ch.NewRelease || l1.Version != "1" || len(ch.Added) != 3 || !l1.Expires.Equal(t0.Add(DefaultExpiry)) {
		t.Fatalf("first build: version %s changes %+v expires %v", l1.Version, ch, l1.Expires)
	}
	byPath := func(l *imagelist.List) map[string]imagelist.Image {
		m := map[string]imagelist.Image{}
		for _, img := range l.Images {
			m[img.URI] = img
		}
		return m
	}
	i1 := byPath(l1)
	web := i1["https://pub.example/lib/web/"]
	if web.Format != "ovf" || len(web.Files) != 3 || web.Version != "1" || !web.Created.Equal(t0) {
		t.Fatalf("template image %+v", web)
	}
	if _, ok := i1["https://pub.example/lib/a%20b.qcow2"]; !ok {
		t.Fatalf("space not percent-encoded: %v", i1)
	}
	// identifiers are name-based: a lost previous list gives the same ones
	l1b, _, _ := Build(nil, scan(), meta, t0.Add(time.Hour))
	for uri, img := range byPath(l1b) {
		if i1[uri].Identifier != img.Identifier {
			t.Errorf("%s: identifier %s then %s", uri, i1[uri].Identifier, img.Identifier)
		}
	}

	// no change: same list, byte for byte
	l2, ch, err := Build(l1, scan(), ListMeta{BaseURI: meta.BaseURI}, t0.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := l1.Marshal()
	b2, _ := l2.Marshal()
	if ch.NewRelease || ch.Changed() || string(b1) != string(b2) {
		t.Fatalf("no-change build differs: %+v\n%s\n%s", ch, b1, b2)
	}

	// curated metadata survives; one changed image bumps only itself
	l2.Images[0].Description = "curated"
	write(t, root, "tools.ISO", "new iso")
	t3 := t0.Add(48 * time.Hour)
	l3, ch, err := Build(l2, scan(), ListMeta{BaseURI: meta.BaseURI}, t3)
	if err != nil {
		t.Fatal(err)
	}
	if !ch.NewRelease || l3.Version != "2" || !slices.Equal(ch.Updated, []string{"tools.ISO"}) || !l3.Created.Equal(t3) {
		t.Fatalf("after change: version %s changes %+v", l3.Version, ch)
	}
	i3 := byPath(l3)
	if iso := i3["https://pub.example/lib/tools.ISO"]; iso.Version != "2" || !iso.Created.Equal(t3) || iso.Identifier != i1["https://pub.example/lib/tools.ISO"].Identifier {
		t.Errorf("changed image %+v", iso)
	}
	if w := i3["https://pub.example/lib/web/"]; w.Version != "1" || !w.Created.Equal(t0) {
		t.Errorf("unchanged image moved: %+v", w)
	}
	if l3.Images[0].Description != "curated" {
		t.Errorf("curated description lost")
	}

	// removal
	os.Remove(filepath.Join(root, "a b.qcow2"))
	l4, ch, _ := Build(l3, scan(), ListMeta{BaseURI: meta.BaseURI}, t3)
	if len(l4.Images) != 2 || !slices.Equal(ch.Removed, []string{"https://pub.example/lib/a%20b.qcow2"}) || l4.Version != "3" {
		t.Errorf("removal: %d images, %+v, version %s", len(l4.Images), ch, l4.Version)
	}
}

// Moving the library to another base URI keeps every image's identity,
// version and curated fields: the same UUID must never go backwards.
func TestBuildBaseURIChange(t *testing.T) {
	root := library(t)
	entries, _, err := Scan(context.Background(), root, ScanOptions{Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	l1, _, err := Build(nil, entries, ListMeta{Identifier: listID, BaseURI: "ssh://old:2222/"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	l1.Images[0].Version = "7"
	l1.Images[0].OS = "Linux"
	l2, ch, err := Build(l1, entries, ListMeta{BaseURI: "https://new.example/lib/"}, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Added)+len(ch.Removed) != 0 || len(ch.Updated) != 3 || !ch.NewRelease {
		t.Fatalf("changes %+v", ch)
	}
	for i, img := range l2.Images {
		old := l1.Images[i]
		if img.Identifier != old.Identifier || img.Version != old.Version || !img.Created.Equal(old.Created) || img.OS != old.OS {
			t.Errorf("image %d: %+v\nwas %+v", i, img, old)
		}
		if !strings.HasPrefix(img.URI, "https://new.example/lib/") {
			t.Errorf("uri %s", img.URI)
		}
	}
}

func TestBumpVersion(t *testing.T) {
	for _, v := range []string{"", "1", "9", "41", "1.0", "v2", "20150618211400", "3.3.0-1"} {
		got := BumpVersion(v)
		if v != "" && imagelist.Compare(v, got) >= 0 {
			t.Errorf("BumpVersion(%q) = %q, not newer", v, got)
		}
	}
}

func TestUUID5(t *testing.T) {
	// RFC 9562 appendix A.4: DNS namespace, "www.example.com"
	got, err := uuid5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "www.example.com")
	if err != nil || got != "2ed6657d-e927-568b-95e1-2665a8aea6a2" {
		t.Fatalf("uuid5 = %s, %v", got, err)
	}
}
