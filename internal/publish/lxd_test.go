package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clr-suite/clr/internal/imagelist"
)

func sum256(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestLXDScan: serial folders become images with signed SHA-256 and
// combined fingerprints in a defined order (metadata then root); what the
// clients would skip is refused with the reason; a rebuild reads nothing.
func TestLXDScan(t *testing.T) {
	root := t.TempDir()
	base := "images/debian/bookworm/amd64/default/"
	write(t, root, base+"20261120_0100/incus.tar.xz", "META")
	write(t, root, base+"20261120_0100/rootfs.squashfs", "SQUASH")
	write(t, root, base+"20261120_0100/disk.qcow2", "QCOW")
	write(t, root, base+"20261120_0100/simplestreams.json", `{"release_title":"12 (bookworm)","aliases":["debian/12"],"requirements":{"secureboot":"false"}}`)
	refused := map[string]string{
		base + "v1":            "must start with YYYYMMDD",
		base + "20261399_0100": "valid date",
		"images/debian/bookworm/sparc9/default/20261120_0100": "sparc9",
		"images/fedora/41/amd64/default/20261120_0100":        "no metadata tarball",
		"images/fedora/42/amd64/default/20261120_0100":        "no root file",
		"images/fedora/43/amd64/default/20261120_0100":        `unexpected "notes.txt"`,
		"images/fedora/44/amd64/default/20261120_0100":        "two files of type",
	}
	for dir := range refused {
		write(t, root, dir+"/incus.tar.xz", "M")
		write(t, root, dir+"/rootfs.squashfs", "R")
	}
	removeFile(t, root, "images/fedora/41/amd64/default/20261120_0100/incus.tar.xz")
	removeFile(t, root, "images/fedora/42/amd64/default/20261120_0100/rootfs.squashfs")
	write(t, root, "images/fedora/43/amd64/default/20261120_0100/notes.txt", "x")
	write(t, root, "images/fedora/44/amd64/default/20261120_0100/root.squashfs", "R2")

	ctx := context.Background()
	scan := func() ([]Entry, Stats) {
		entries, st, err := Scan(ctx, root, ScanOptions{Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return entries, st
	}
	entries, st := scan()
	entries, err := HashSimpleStreams(ctx, root, entries, nil, &st)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("entries %+v skipped %+v", entries, st.Skipped)
	}
	for dir, why := range refused {
		found := false
		for _, s := range st.Skipped {
			if s.Path == dir && strings.Contains(s.Reason, why) && strings.Contains(s.Reason, "LXD/Incus image refused") {
				found = true
			}
		}
		if !found {
			t.Errorf("%s not refused with %q: %+v", dir, why, st.Skipped)
		}
	}
	e := entries[0]
	ss := e.SS
	if e.Format != FormatLXD || ss.OS != "debian" || ss.Arch != "amd64" || ss.Serial != "20261120_0100" || ss.ReleaseTitle != "12 (bookworm)" || ss.Requirements["secureboot"] != "false" {
		t.Fatalf("info %+v", ss)
	}
	if len(e.Files) != 3 {
		t.Fatalf("files %+v (the sidecar is not an image file)", e.Files)
	}
	if ss.Files["incus.tar.xz"].SHA256 != sum256("META") || ss.Files["disk.qcow2"].FType != "disk-kvm.img" {
		t.Fatalf("files %+v", ss.Files)
	}
	if ss.Combined["squashfs"] != sum256("META", "SQUASH") || ss.Combined["disk-kvm.img"] != sum256("META", "QCOW") {
		t.Fatalf("combined %+v", ss.Combined)
	}

	// a rebuild with the previous list reads nothing
	l, _, err := Build(nil, entries, ListMeta{BaseURI: "https://x.example/"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	entries2, st2 := scan()
	st2.HashedFiles, st2.HashedBytes = 0, 0
	entries2, err = HashSimpleStreams(ctx, root, entries2, l, &st2)
	if err != nil {
		t.Fatal(err)
	}
	if st2.HashedBytes != 0 || st2.HashedFiles != 0 {
		t.Errorf("rebuild hashed %d files, %d bytes for SHA-256", st2.HashedFiles, st2.HashedBytes)
	}
	if entries2[0].SS.Combined["squashfs"] != ss.Combined["squashfs"] {
		t.Error("reused fingerprint differs")
	}
	l2, ch, err := Build(l, entries2, ListMeta{BaseURI: "https://x.example/"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if ch.Changed() || l2.Images[0].Title != "debian bookworm default amd64 20261120_0100" || l2.Images[0].Arch != "x86_64" {
		t.Fatalf("rebuild: changed %+v, image %+v", ch, l2.Images[0])
	}
	// a changed root gets a new SHA-256 and fingerprint
	write(t, root, base+"20261120_0100/rootfs.squashfs", "SQUASH2")
	entries3, st3, err := Scan(ctx, root, ScanOptions{Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	entries3, err = HashSimpleStreams(ctx, root, entries3, l2, &st3)
	if err != nil {
		t.Fatal(err)
	}
	if got := entries3[0].SS.Combined["squashfs"]; got != sum256("META", "SQUASH2") {
		t.Errorf("changed root: combined %s", got)
	}
	if entries3[0].SS.Combined["disk-kvm.img"] != sum256("META", "QCOW") {
		t.Error("unchanged VM fingerprint changed")
	}
}

func removeFile(t *testing.T, root, rel string) {
	t.Helper()
	if err := os.Remove(filepath.Join(root, rel)); err != nil {
		t.Fatal(err)
	}
}

// TestSafeCatalog: an image that cannot join the catalog (the same serial
// twice, here from a second subscription) is left out; the rest renders.
func TestSafeCatalog(t *testing.T) {
	info := SSInfo{OS: "debian", Release: "bookworm", Arch: "amd64", Variant: "default", Serial: "20261120_0100",
		Files:    map[string]SSFile{"incus.tar.xz": {FType: "meta", SHA256: sum256("M")}, "rootfs.squashfs": {FType: "squashfs", SHA256: sum256("R")}},
		Combined: map[string]string{"squashfs": sum256("M", "R")}}
	files := []imagelist.File{{Path: "incus.tar.xz", Size: 1}, {Path: "rootfs.squashfs", Size: 1}}
	other := info
	other.Serial = "20261121_0100"
	other.Files = map[string]SSFile{"incus.tar.xz": {FType: "meta", SHA256: sum256("M2")}, "rootfs.squashfs": {FType: "squashfs", SHA256: sum256("R2")}}
	other.Combined = map[string]string{"squashfs": sum256("M2", "R2")}
	cat, bad := SimpleStreamsCatalogSafe([]SSImage{
		{Info: info, Files: files, Prefix: "a/1"},
		{Info: info, Files: files, Prefix: "b/1"}, // the same serial again
		{Info: other, Files: files, Prefix: "c/1"},
	}, time.Unix(1, 0))
	if len(bad) != 1 || len(cat.Products) != 1 || len(cat.Products[0].Versions) != 2 {
		t.Fatalf("catalog %+v, left out %v", cat, bad)
	}
}
