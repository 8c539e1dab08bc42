package sscheck

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestCheckGoodTree(t *testing.T) {
	tr := newTree(t)
	s := serve(t, tr)
	rep, out, err := run(t, s, true)
	if err != nil {
		t.Fatalf("Check: %v\n%s", err, out)
	}
	if len(rep.Errors) != 0 || len(rep.Warnings) != 0 {
		t.Fatalf("errors %q warnings %q", rep.Errors, rep.Warnings)
	}
	if rep.Arch != "x86_64" {
		t.Errorf("Arch = %q, want x86_64", rep.Arch)
	}
	for _, client := range []string{ClientIncus, ClientLXD} {
		ims := rep.ImagesFor(client)
		if len(ims) != 4 {
			t.Fatalf("%s: %d images, want 4", client, len(ims))
		}
		for _, im := range ims {
			if !im.Verified {
				t.Errorf("%s %s %s: not verified", client, im.Version, im.RootType)
			}
			if want := tr.fp[im.Version][im.RootType]; im.Fingerprint != want {
				t.Errorf("%s %s %s: fingerprint %s, want %s", client, im.Version, im.RootType, im.Fingerprint, want)
			}
			wantType := TypeContainer
			if im.RootType == "disk-kvm.img" {
				wantType = TypeVM
			}
			if im.Type != wantType {
				t.Errorf("%s %s %s: type %s, want %s", client, im.Version, im.RootType, im.Type, wantType)
			}
		}
		// Newest serial first (the clients' sort).
		if ims[0].Version != tNew {
			t.Errorf("%s: first image is %s, want %s", client, ims[0].Version, tNew)
		}
		// Aliases resolve to the newest serial.
		for _, c := range []struct{ typ, name, root string }{
			{TypeContainer, "testos/1", "squashfs"},
			{TypeContainer, "testos/1/default", "squashfs"},
			{TypeContainer, "testos/1/amd64", "squashfs"},
			{TypeVM, "testos/1", "disk-kvm.img"},
			{TypeVM, "testos/1/default/amd64", "disk-kvm.img"},
			{"", "testos/1", "squashfs"}, // GetImageAlias prefers containers
		} {
			a, ok := rep.Resolve(client, c.typ, c.name)
			if !ok {
				t.Errorf("%s: alias %q (%q) does not resolve", client, c.name, c.typ)
				continue
			}
			if want := tr.fp[tNew][c.root]; a.Fingerprint != want || a.Version != tNew {
				t.Errorf("%s: alias %q (%q) -> %s %s, want %s %s", client, c.name, c.typ, a.Version, a.Fingerprint, tNew, want)
			}
		}
		// The older serial keeps no alias.
		for _, im := range ims {
			if im.Version == tOld && len(im.Aliases) != 0 {
				t.Errorf("%s: old image %s has aliases %q", client, im.RootType, im.Aliases)
			}
		}
	}
	// Six distinct files, each downloaded once.
	if len(rep.Files) != 6 {
		t.Errorf("%d files, want 6", len(rep.Files))
	}
	for p := range tr.blobs {
		if n := s.count(p); n != 1 {
			t.Errorf("%s fetched %d times, want 1", p, n)
		}
	}
	lineRE := regexp.MustCompile(`(?m)^IMAGE client=incus product=testos:1:default:amd64 version=20260102_0000 type=container fingerprint=` +
		tr.fp[tNew]["squashfs"] + ` aliases=testos/1,testos/1/amd64,testos/1/default,testos/1/default/amd64 root=squashfs arch=x86_64 verified=yes$`)
	if !lineRE.MatchString(out) {
		t.Errorf("no IMAGE line for the newest incus container:\n%s", out)
	}
	if !strings.Contains(out, "ALIAS client=lxd name=testos/1 type=virtual-machine arch=x86_64 fingerprint="+tr.fp[tNew]["disk-kvm.img"]) {
		t.Errorf("no ALIAS line for the lxd VM alias:\n%s", out)
	}
	if !strings.HasSuffix(out, "SUMMARY images=8 errors=0 warnings=0 incus=4 lxd=4 files=6\n") {
		t.Errorf("summary:\n%s", out)
	}
}

func TestCheckForeignArchShortAlias(t *testing.T) {
	s := serve(t, newTree(t))
	rep, err := Check(context.Background(), Options{BaseURL: s.base(), HTTPClient: s.Client(), Arch: "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	// The images are amd64: on an arm64 host the short alias is not shown
	// on them, the medium one is.
	for _, im := range rep.ImagesFor(ClientIncus) {
		if im.Version != tNew {
			continue
		}
		for _, a := range im.Aliases {
			if !strings.HasSuffix(a, "/amd64") {
				t.Errorf("alias %q shown on an amd64 image for an arm64 host", a)
			}
		}
	}
}

func TestCheckNoDownload(t *testing.T) {
	tr := newTree(t)
	s := serve(t, tr)
	rep, _, err := run(t, s, false)
	if err != nil {
		t.Fatal(err)
	}
	for p := range tr.blobs {
		if n := s.count(p); n != 0 {
			t.Errorf("%s fetched %d times without Download", p, n)
		}
	}
	if len(rep.Images) != 8 || len(rep.Files) != 0 {
		t.Errorf("%d images, %d files; want 8, 0", len(rep.Images), len(rep.Files))
	}
	for _, im := range rep.Images {
		if im.Verified {
			t.Errorf("%s %s verified without Download", im.Client, im.RootType)
		}
	}
}

func TestCheckBroken(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(tr *tree)
		want   []string // substrings of one error
		nodl   bool     // detected without downloading
	}{
		{
			name:   "wrong sha256",
			break_: func(tr *tree) { tr.item(tNew, "root.squashfs").SHA256 = sha([]byte("something else")) },
			want:   []string{"sha256 mismatch for images/testos/1/amd64/default/20260102_0000/root.squashfs", "Hash mismatch"},
		},
		{
			name:   "wrong size",
			break_: func(tr *tree) { tr.item(tNew, "disk.qcow2").Size++ },
			want:   []string{"size mismatch for images/testos/1/amd64/default/20260102_0000/disk.qcow2: got 3000 bytes, the index declares 3001"},
		},
		{
			name:   "size too small",
			break_: func(tr *tree) { tr.item(tOld, "disk.qcow2").Size -= 10 },
			want:   []string{"size mismatch", "more than the 2990 bytes"},
		},
		{
			name:   "404",
			break_: func(tr *tree) { delete(tr.blobs, "images/testos/1/amd64/default/20260101_0000/disk.qcow2") },
			want:   []string{"20260101_0000/disk.qcow2: HTTP 404", "fail to download"},
		},
		{
			name: "combined fingerprint in the wrong order",
			break_: func(tr *tree) {
				dir := "images/testos/1/amd64/default/" + tNew + "/"
				wrong := sha(tr.blobs[dir+"root.squashfs"], tr.blobs[dir+"meta.tar.xz"])
				tr.item(tNew, "incus.tar.xz").CombinedSquash = wrong
				tr.item(tNew, "lxd.tar.xz").CombinedSquash = wrong
			},
			want: []string{"incus: product", "fingerprint mismatch: combined_squashfs_sha256", "wrong order", "lxd-image-server"},
		},
		{
			name:   "version v1",
			break_: func(tr *tree) { p := tr.product(); p.Versions["v1"] = p.Versions[tNew]; delete(p.Versions, tNew) },
			want:   []string{`version "v1": name does not start with a YYYYMMDD date: LXD and Incus skip the version`},
			nodl:   true,
		},
		{
			name:   "unknown arch",
			break_: func(tr *tree) { tr.product().Arch = "z80" },
			want:   []string{`arch "z80" is unknown to osarch: LXD and Incus skip the product`},
			nodl:   true,
		},
		{
			name:   "arch only Incus knows",
			break_: func(tr *tree) { tr.product().Arch = "x86_64_v3" },
			want:   []string{`arch "x86_64_v3" is unknown to canonical LXD's osarch`},
			nodl:   true,
		},
		{
			name:   "empty index products list",
			break_: func(tr *tree) { tr.index.Index["images"].Products = []string{} },
			want:   []string{`entry "images": empty products list: LXD and Incus skip the entry`},
			nodl:   true,
		},
		{
			name:   "index products list differs",
			break_: func(tr *tree) { tr.index.Index["images"].Products = []string{"other:product"} },
			want:   []string{`lists product "other:product", which streams/v1/images.json does not have`},
			nodl:   true,
		},
		{
			name:   "other datatype",
			break_: func(tr *tree) { tr.index.Index["images"].DataType = "image-ids" },
			want:   []string{`datatype "image-ids"`},
			nodl:   true,
		},
		{
			name:   "unsafe path",
			break_: func(tr *tree) { tr.item(tNew, "disk.qcow2").Path = "images/../../etc/passwd" },
			want:   []string{`has a ".." component`},
			nodl:   true,
		},
		{
			name:   "missing combined field",
			break_: func(tr *tree) { tr.item(tNew, "incus.tar.xz").CombinedDiskKVM = "" },
			want:   []string{`incus.tar.xz item "incus.tar.xz" has no combined_disk-kvm-img_sha256 for root item "disk.qcow2"`, "Incus drops this image"},
			nodl:   true,
		},
		{
			name:   "upper-case sha256",
			break_: func(tr *tree) { it := tr.item(tOld, "root.squashfs"); it.SHA256 = strings.ToUpper(it.SHA256) },
			want:   []string{"is not 64 lower-case hex digits"},
			nodl:   true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTree(t)
			tc.break_(tr)
			s := serve(t, tr)
			for _, download := range []bool{true, false} {
				if !download && !tc.nodl {
					continue
				}
				rep, out, err := run(t, s, download)
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("download=%t: err = %v, want ErrInvalid\n%s", download, err, out)
				}
				if !hasLine(rep.Errors, tc.want...) {
					t.Fatalf("download=%t: no error with %q in:\n%s", download, tc.want, strings.Join(rep.Errors, "\n"))
				}
				if !strings.Contains(out, "ERROR: ") || !regexp.MustCompile(`SUMMARY images=\d+ errors=[1-9]`).MatchString(out) {
					t.Errorf("download=%t: report lacks ERROR/SUMMARY lines:\n%s", download, out)
				}
			}
		})
	}
}

func TestCheckWrongSHADoesNotAlsoBlameTheFingerprint(t *testing.T) {
	tr := newTree(t)
	tr.item(tNew, "root.squashfs").SHA256 = sha([]byte("x"))
	rep, _, _ := run(t, serve(t, tr), true)
	if hasLine(rep.Errors, "fingerprint mismatch") {
		t.Errorf("a bad root file also reported as a fingerprint mismatch:\n%s", strings.Join(rep.Errors, "\n"))
	}
	for _, im := range rep.Images {
		if im.Version == tNew && im.RootType == "squashfs" && im.Verified {
			t.Errorf("%s image with a bad root file marked verified", im.Client)
		}
	}
}

func TestCheckLXDOnly(t *testing.T) {
	tr := newTree(t)
	for _, v := range tr.product().Versions {
		delete(v.Items, "incus.tar.xz")
	}
	rep, out, err := run(t, serve(t, tr), true)
	if err != nil {
		t.Fatalf("Check: %v\n%s", err, out)
	}
	if n := len(rep.ImagesFor(ClientIncus)); n != 0 {
		t.Errorf("incus sees %d images, want 0", n)
	}
	if n := len(rep.ImagesFor(ClientLXD)); n != 4 {
		t.Errorf("lxd sees %d images, want 4", n)
	}
	if !hasLine(rep.Warnings, "only LXD metadata", "Incus >= 0.1 lists nothing") {
		t.Errorf("no LXD-only warning in %q", rep.Warnings)
	}
	if !hasLine(rep.Warnings, "Incus lists no image from this remote") {
		t.Errorf("no Incus-sees-nothing warning in %q", rep.Warnings)
	}
	if _, ok := rep.Resolve(ClientIncus, "", "testos/1"); ok {
		t.Error("incus resolves an alias of an LXD-only tree")
	}
	if !strings.Contains(out, "SUMMARY images=4 errors=0 warnings=3 incus=0 lxd=4") {
		t.Errorf("summary:\n%s", out)
	}
}

func TestCheckDuplicateAlias(t *testing.T) {
	tr := newTree(t)
	// A second product (another variant) claiming the same aliases.
	orig := tr.product()
	dup := &tProduct{Aliases: orig.Aliases, Arch: orig.Arch, OS: orig.OS, Release: orig.Release,
		ReleaseTitle: orig.ReleaseTitle, Variant: "cloud", Versions: map[string]*tVersion{}}
	dup.Versions[tNew] = orig.Versions[tNew]
	tr.products.Products["testos:1:cloud:amd64"] = dup
	e := tr.index.Index["images"]
	e.Products = append(e.Products, "testos:1:cloud:amd64")
	rep, out, err := run(t, serve(t, tr), false)
	// Same items in two products: the fingerprints collide too.
	if !errors.Is(err, ErrInvalid) || !hasLine(rep.Errors, "More than one match") {
		t.Fatalf("err = %v; errors %q", err, rep.Errors)
	}
	if !hasLine(rep.Warnings, `alias "testos/1" (container, x86_64) is claimed by products "testos:1:cloud:amd64" and "testos:1:default:amd64": incus and lxd resolve it`) {
		t.Errorf("no duplicate-alias warning:\n%s", out)
	}
	// The medium alias collides too, but is not reported twice.
	if hasLine(rep.Warnings, `alias "testos/1/amd64"`) {
		t.Errorf("medium alias reported separately:\n%s", out)
	}
}

func TestCheckUsage(t *testing.T) {
	for _, o := range []Options{
		{BaseURL: "ftp://example.org/"},
		{BaseURL: "https://"},
		{BaseURL: "https://example.org/?x=1"},
		{BaseURL: "https://example.org/", Arch: "z80"},
	} {
		if _, err := Check(context.Background(), o); !errors.Is(err, ErrUsage) {
			t.Errorf("%+v: err = %v, want ErrUsage", o, err)
		}
	}
}

func TestCheckIndexURLAndHTTP(t *testing.T) {
	s := serve(t, newTree(t))
	rep, err := Check(context.Background(), Options{BaseURL: s.URL + "/streams/v1/index.json", HTTPClient: s.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.BaseURL != s.base() || !hasLine(rep.Warnings, "ends in streams/v1/index.json") {
		t.Errorf("base %q warnings %q", rep.BaseURL, rep.Warnings)
	}
}

func TestCheckUnreachable(t *testing.T) {
	s := serve(t, newTree(t))
	base := s.base()
	s.Close()
	rep, _, err := func() (Report, string, error) {
		var out bytes.Buffer
		rep, err := Check(context.Background(), Options{BaseURL: base, HTTPClient: s.Client(), Stdout: &out})
		return rep, out.String(), err
	}()
	if !errors.Is(err, ErrInvalid) || !hasLine(rep.Errors, "cannot fetch the index") {
		t.Fatalf("err = %v, errors %q", err, rep.Errors)
	}
}

func TestSafePath(t *testing.T) {
	for p, ok := range map[string]bool{
		"images/a/b.tar.xz": true,
		"streams/v1/x.json": true,
		"":                  false,
		"/etc/passwd":       false,
		"a/../b":            false,
		"a//b":              false,
		"./a":               false,
		"a\\b":              false,
		"http://x/y":        false,
		"a?b":               false,
		"a/\n":              false,
	} {
		if err := safePath(p); (err == nil) != ok {
			t.Errorf("safePath(%q) = %v", p, err)
		}
	}
}

func TestVersionAccepted(t *testing.T) {
	for name, ok := range map[string]bool{
		"20260102_0000":  true,
		"20260102":       true,
		"20210101_12:00": true, // lxd-image-server's names
		"202601021504":   true,
		"v1":             false,
		"2026010":        false,
		"2026-01-02":     false,
		"20261302_0000":  false,
	} {
		if versionAccepted(name) != ok {
			t.Errorf("versionAccepted(%q) = %t", name, !ok)
		}
	}
}

func TestMainExitCodes(t *testing.T) {
	good := serve(t, newTree(t))
	brokenTree := newTree(t)
	brokenTree.product().Arch = "z80"
	broken := serve(t, brokenTree)

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: good.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	brokenCA := filepath.Join(t.TempDir(), "broken.pem")
	if err := os.WriteFile(brokenCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: broken.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(t.TempDir(), "x.pem")
	if err := os.WriteFile(notPEM, []byte("nothing"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"ok with -ca", []string{"-ca", caFile, good.base()}, ExitOK, "SUMMARY images=8 errors=0 warnings=0 incus=4 lxd=4 files=6", ""},
		{"ok -insecure -no-download", []string{"-insecure", "-no-download", good.base()}, ExitOK, "files=0", ""},
		{"ok -arch arm64", []string{"-insecure", "-no-download", "-arch", "arm64", good.base()}, ExitOK, "aliases=testos/1/amd64,testos/1/default/amd64 ", ""},
		{"untrusted certificate", []string{good.base()}, ExitInvalid, "", "certificate"},
		{"invalid", []string{"-ca", brokenCA, broken.base()}, ExitInvalid, "ERROR: ", `arch "z80" is unknown to osarch`},
		{"no args", nil, ExitUsage, "", "usage: sscheck"},
		{"two args", []string{"a", "b"}, ExitUsage, "", "unexpected arguments: b"},
		{"bad flag", []string{"-bogus"}, ExitUsage, "", "flag provided but not defined"},
		{"bad url", []string{"ftp://x/"}, ExitUsage, "", "not an http(s) URL"},
		{"bad arch", []string{"-arch", "z80", good.base()}, ExitUsage, "", `architecture "z80"`},
		{"missing ca", []string{"-ca", filepath.Join(t.TempDir(), "none"), good.base()}, ExitUsage, "", "read CA file"},
		{"ca not PEM", []string{"-ca", notPEM, good.base()}, ExitUsage, "", "no PEM certificate"},
		{"help", []string{"-h"}, ExitOK, "", "usage: sscheck"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdout, stdout.String())
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, stderr.String())
			}
		})
	}
}

func TestCheckUnifiedTarball(t *testing.T) {
	tr := newTree(t)
	dir := "images/testos/1/amd64/default/" + tNew + "/"
	unified := bytes.Repeat([]byte("unified "), 64)
	tr.blobs[dir+"incus.tar.gz"] = unified
	item := func(ftype string) *tItem {
		return &tItem{FType: ftype, Path: dir + "incus.tar.gz", Size: int64(len(unified)), SHA256: sha(unified)}
	}
	tr.product().Versions[tNew] = &tVersion{Items: map[string]*tItem{
		"incus.tar.gz": item("incus_combined.tar.gz"),
		"lxd.tar.gz":   item("lxd_combined.tar.gz"),
	}}
	rep, out, err := run(t, serve(t, tr), true)
	if err != nil {
		t.Fatalf("Check: %v\n%s", err, out)
	}
	for _, client := range []string{ClientIncus, ClientLXD} {
		a, ok := rep.Resolve(client, TypeContainer, "testos/1")
		if !ok || a.Fingerprint != sha(unified) || a.Version != tNew {
			t.Errorf("%s: testos/1 -> %+v, want the unified image of %s", client, a, tNew)
		}
		// The VM alias still points at the older split image.
		if a, ok := rep.Resolve(client, TypeVM, "testos/1"); !ok || a.Version != tOld {
			t.Errorf("%s: VM testos/1 -> %+v, want %s", client, a, tOld)
		}
		for _, im := range rep.ImagesFor(client) {
			if im.RootType == "tar.gz" && (!im.Verified || im.Type != TypeContainer) {
				t.Errorf("%s: unified image %+v", client, im)
			}
		}
	}
}

func TestCheckUndecodableRequirements(t *testing.T) {
	// lxd_requirements is read by canonical LXD only: LXD fails, Incus lists.
	tr := newTree(t)
	tr.product().LXDRequirements = map[string]any{"secureboot": false}
	rep, _, err := run(t, serve(t, tr), false)
	if !errors.Is(err, ErrInvalid) || !hasLine(rep.Errors, "lxd_requirements is not an object of strings", "canonical LXD fails to decode") {
		t.Fatalf("err = %v, errors %q", err, rep.Errors)
	}
	if len(rep.ImagesFor(ClientIncus)) != 4 || len(rep.ImagesFor(ClientLXD)) != 0 {
		t.Errorf("incus %d lxd %d images, want 4 and 0", len(rep.ImagesFor(ClientIncus)), len(rep.ImagesFor(ClientLXD)))
	}
	// requirements is read by both: the whole remote fails.
	tr = newTree(t)
	tr.product().Requirements = map[string]any{"secureboot": false}
	rep, _, err = run(t, serve(t, tr), false)
	if !errors.Is(err, ErrInvalid) || !hasLine(rep.Errors, "cannot decode streams/v1/images.json", "fail to list the whole remote") {
		t.Fatalf("err = %v, errors %q", err, rep.Errors)
	}
	if len(rep.Images) != 0 {
		t.Errorf("%d images from an undecodable products file", len(rep.Images))
	}
}
