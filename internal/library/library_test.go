package library

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clr-suite/clr/internal/store"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// fixture is a fake cache: version directories with real files.
type fixture struct {
	t     *testing.T
	root  string // holds v/ (versions) and lib/ (the library)
	st    *store.Store
	ids   int
	now   time.Time
	files map[string]map[string]string // uuid -> path -> content
	title map[string]string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := t.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(root, "clr.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &fixture{t: t, root: root, st: st, now: time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC),
		files: map[string]map[string]string{}, title: map[string]string{}}
}

func (f *fixture) newID() (string, error) {
	f.ids++
	return fmt.Sprintf("00000000-0000-4000-8000-%012d", f.ids), nil
}

func sum(s string) string {
	h := sha512.Sum512([]byte(s))
	return hex.EncodeToString(h[:])
}

// images materialises the current files as immutable version directories
// (like the cache) and returns the published images.
func (f *fixture) images() []Image {
	f.t.Helper()
	var out []Image
	for uuid, files := range f.files {
		all := ""
		var fl []File
		paths := make([]string, 0, len(files))
		for p := range files {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		for _, p := range paths {
			c := files[p]
			fl = append(fl, File{Path: p, Size: int64(len(c)), SHA512: sum(c)})
			all += p + "\x00" + c + "\x00"
		}
		d32 := sum(all)[:32]
		dir := filepath.Join(f.root, "v", uuid, d32)
		if _, err := os.Stat(dir); err != nil {
			for p, c := range files {
				fp := filepath.Join(dir, p)
				if err := os.MkdirAll(filepath.Dir(fp), 0o755); err != nil {
					f.t.Fatal(err)
				}
				if err := os.WriteFile(fp, []byte(c), 0o644); err != nil {
					f.t.Fatal(err)
				}
			}
		}
		out = append(out, Image{UUID: uuid, SHA512: sum(all), Digest32: d32, Dir: dir, Title: f.title[uuid], Files: fl})
	}
	return out
}

func (f *fixture) run(name string) Result {
	f.t.Helper()
	res, err := Update(context.Background(), f.st, f.images(), Options{
		Dir: filepath.Join(f.root, "lib"), Name: name, Now: f.now, NewID: f.newID,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return res
}

func (f *fixture) read(p string) []byte {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.root, "lib", p))
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

type libDoc struct {
	ID      string `json:"id"`
	Version string `json:"version"`
	Created string `json:"created"`
}

type itemDoc struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Type    string `json:"type"`
	Version string `json:"version"`
	Created string `json:"created"`
	Files   []struct {
		Name  string   `json:"name"`
		Size  int64    `json:"size"`
		Etag  string   `json:"etag"`
		Hrefs []string `json:"hrefs"`
	} `json:"files"`
}

func (f *fixture) docs() (libDoc, map[string]itemDoc) {
	f.t.Helper()
	var l libDoc
	if err := json.Unmarshal(f.read("lib.json"), &l); err != nil {
		f.t.Fatal(err)
	}
	var items struct {
		Items []itemDoc `json:"items"`
	}
	if err := json.Unmarshal(f.read("items.json"), &items); err != nil {
		f.t.Fatal(err)
	}
	out := map[string]itemDoc{}
	for _, it := range items.Items {
		out[it.Name] = it
	}
	return l, out
}

const (
	uA = "aaaaaaaa-0000-4000-8000-000000000001"
	uB = "bbbbbbbb-0000-4000-8000-000000000002"
	uC = "cccccccc-0000-4000-8000-000000000003"
)

func TestGolden(t *testing.T) {
	f := newFixture(t)
	f.files[uA] = map[string]string{"tpl.ovf": "<ovf/>", "tpl-disk1.vmdk": "disk", "tpl.mf": "SHA256(x)= y"}
	f.title[uA] = "Debian 12 template"
	f.files[uB] = map[string]string{"boot.iso": "iso bytes"}
	f.title[uB] = "Boot ISO"
	f.files[uC] = map[string]string{"disk.qcow2": "qcow"}
	f.run("Site library")
	f.now = f.now.Add(24 * time.Hour)
	f.files[uA]["tpl-disk1.vmdk"] = "disk v2"
	f.run("Site library")
	for _, p := range []string{"lib.json", "items.json", uA + "/item.json", uB + "/item.json", uC + "/item.json"} {
		got := f.read(p)
		golden := filepath.Join("testdata", "golden", strings.ReplaceAll(p, "/", "-"))
		if *update {
			if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(golden, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run with -update to create)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s:\n%s", p, golden, got)
		}
	}
	// Every href resolves to the bytes the manifest describes.
	_, items := f.docs()
	for _, it := range items {
		for _, fl := range it.Files {
			b := f.read(fl.Hrefs[0])
			if int64(len(b)) != fl.Size {
				t.Errorf("%s: %d bytes, manifest says %d", fl.Hrefs[0], len(b), fl.Size)
			}
		}
	}
}

// TestStableOverRuns: 100 re-runs without change move nothing and write
// nothing; ids and created times never change.
func TestStableOverRuns(t *testing.T) {
	f := newFixture(t)
	f.files[uA] = map[string]string{"a.ovf": "x", "a.vmdk": "y"}
	f.files[uB] = map[string]string{"b.iso": "z"}
	first := f.run("")
	if !first.Written || first.Version != 1 || len(first.Added) != 2 {
		t.Fatalf("first run %+v", first)
	}
	lib0, items0 := f.docs()
	st0, err := os.Stat(filepath.Join(f.root, "lib", "lib.json"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		f.now = f.now.Add(time.Hour)
		res := f.run("")
		if res.Changed || res.Written || res.Version != 1 {
			t.Fatalf("run %d without change: %+v", i, res)
		}
	}
	lib1, items1 := f.docs()
	if lib1 != lib0 {
		t.Fatalf("lib.json moved: %+v -> %+v", lib0, lib1)
	}
	for n, it := range items0 {
		if items1[n].ID != it.ID || items1[n].Created != it.Created || items1[n].Version != it.Version {
			t.Fatalf("item %s moved: %+v -> %+v", n, it, items1[n])
		}
	}
	st1, _ := os.Stat(filepath.Join(f.root, "lib", "lib.json"))
	if !st1.ModTime().Equal(st0.ModTime()) || !os.SameFile(st0, st1) {
		t.Fatal("lib.json was rewritten by a run without change")
	}
}

// TestVersionRules is a property test: random changes over many runs;
// after every run the manifests obey the re-sync rules a subscriber relies
// on.
func TestVersionRules(t *testing.T) {
	f := newFixture(t)
	rnd := rand.New(rand.NewSource(7))
	uuids := []string{uA, uB, uC, "dddddddd-0000-4000-8000-000000000004"}
	type snap struct {
		id, created string
		version     int64
		files       map[string]string // name -> size/etag
	}
	prevLib := int64(0)
	prevItems := map[string]snap{} // by uuid
	ids := map[string]string{}     // uuid -> first id ever seen
	for run := 0; run < 150; run++ {
		changedWant := map[string]bool{}
		for _, u := range uuids {
			switch rnd.Intn(6) {
			case 0: // add or change one file
				if f.files[u] == nil {
					f.files[u] = map[string]string{}
				}
				f.files[u][fmt.Sprintf("f%d.img", rnd.Intn(3))] = strconv.Itoa(rnd.Int())
				changedWant[u] = true
			case 1: // remove the image
				if f.files[u] != nil {
					delete(f.files, u)
					changedWant[u] = true
				}
			case 2: // rename
				if f.files[u] != nil {
					f.title[u] = fmt.Sprintf("title %d", rnd.Intn(2))
				}
			}
		}
		f.now = f.now.Add(time.Hour)
		res := f.run("")
		lib, _ := f.docs()
		lv, err := strconv.ParseInt(lib.Version, 10, 64)
		if err != nil {
			t.Fatalf("lib version %q", lib.Version)
		}
		var items struct {
			Items []struct {
				itemDoc
				SelfHref string `json:"selfHref"`
			} `json:"items"`
		}
		if err := json.Unmarshal(f.read("items.json"), &items); err != nil {
			t.Fatal(err)
		}
		now := map[string]snap{}
		anyChange := false
		for _, it := range items.Items {
			u := filepath.Dir(it.SelfHref)
			v, err := strconv.ParseInt(it.Version, 10, 64)
			if err != nil {
				t.Fatalf("item version %q", it.Version)
			}
			s := snap{id: it.ID, created: it.Created, version: v, files: map[string]string{}}
			for _, fl := range it.Files {
				e, err := strconv.ParseInt(fl.Etag, 10, 64)
				if err != nil || e < 1 || e > v {
					t.Fatalf("run %d: item %s file %s etag %q not a decimal in [1, version]", run, u, fl.Name, fl.Etag)
				}
				s.files[fl.Name] = fmt.Sprintf("%d/%s/%s", fl.Size, fl.Etag, fl.Hrefs[0])
			}
			if first, ok := ids[u]; ok && first != it.ID {
				t.Fatalf("run %d: item %s id changed %s -> %s", run, u, first, it.ID)
			}
			ids[u] = it.ID
			p, had := prevItems[u]
			switch {
			case !had:
				anyChange = true
			case fmt.Sprint(p.files) != fmt.Sprint(s.files):
				if v <= p.version {
					t.Fatalf("run %d: item %s content changed without a version bump (%d)", run, u, v)
				}
				anyChange = true
			case v < p.version:
				t.Fatalf("run %d: item %s version went down", run, u)
			case v > p.version:
				anyChange = true // a rename
			}
			if had && p.created != s.created {
				t.Fatalf("run %d: item %s created changed", run, u)
			}
			now[u] = s
		}
		for u := range prevItems {
			if _, ok := now[u]; !ok {
				anyChange = true
			}
		}
		for u := range changedWant {
			if _, a := prevItems[u]; a || now[u].id != "" {
				if fmt.Sprint(prevItems[u]) == fmt.Sprint(now[u]) {
					t.Fatalf("run %d: image %s changed but its item did not", run, u)
				}
			}
		}
		switch {
		case anyChange && lv <= prevLib:
			t.Fatalf("run %d: items changed but lib version stayed %d", run, lv)
		case !anyChange && lv != prevLib:
			t.Fatalf("run %d: nothing changed but lib version %d -> %d", run, prevLib, lv)
		case anyChange != res.Changed:
			t.Fatalf("run %d: Changed %v, manifests say %v", run, res.Changed, anyChange)
		}
		prevLib, prevItems = lv, now
	}
}

// TestEtagsPerFile: a changed file gets the new item version as etag; the
// other files of the item keep theirs.
func TestEtagsPerFile(t *testing.T) {
	f := newFixture(t)
	f.files[uA] = map[string]string{"t.ovf": "o", "t.vmdk": "d", "t.mf": "m"}
	f.run("")
	f.files[uA]["t.vmdk"] = "d2"
	f.files[uA]["t.mf"] = "m2"
	f.run("")
	_, items := f.docs()
	it := items[uA]
	if it.Version != "2" || it.Type != "vcsp.ovf" {
		t.Fatalf("item %+v", it)
	}
	want := map[string]string{"t.ovf": "1", "t.vmdk": "2", "t.mf": "2"}
	for _, fl := range it.Files {
		if fl.Etag != want[fl.Name] {
			t.Errorf("%s etag %s, want %s", fl.Name, fl.Etag, want[fl.Name])
		}
	}
}

// TestRemovedAndBack: a removed image leaves the manifests; when it comes
// back it has its old id and a higher version.
func TestRemovedAndBack(t *testing.T) {
	f := newFixture(t)
	f.files[uA] = map[string]string{"a.iso": "1"}
	f.files[uB] = map[string]string{"b.iso": "2"}
	f.run("")
	_, items := f.docs()
	idB := items[uB].ID
	saved := f.files[uB]
	delete(f.files, uB)
	res := f.run("")
	if len(res.Removed) != 1 || res.Version != 2 {
		t.Fatalf("remove: %+v", res)
	}
	if _, items = f.docs(); len(items) != 1 {
		t.Fatalf("items after remove: %v", items)
	}
	f.files[uB] = saved
	res = f.run("")
	_, items = f.docs()
	if len(res.Added) != 1 || items[uB].ID != idB || items[uB].Version != "3" {
		t.Fatalf("back: %+v %+v", res, items[uB])
	}
}

// TestDuplicateTitles get unique names; renaming bumps only that item.
func TestDuplicateTitles(t *testing.T) {
	f := newFixture(t)
	f.files[uA] = map[string]string{"a.iso": "1"}
	f.files[uB] = map[string]string{"b.iso": "2"}
	f.title[uA], f.title[uB] = "Same", "Same"
	f.run("")
	_, items := f.docs()
	if _, ok := items["Same (aaaaaaaa)"]; !ok {
		t.Fatalf("names %v", items)
	}
	f.title[uB] = "Other"
	f.run("")
	_, items = f.docs()
	if items["Same"].Version != "2" || items["Other"].Version != "2" {
		t.Fatalf("after rename %+v", items)
	}
}

// TestInterruptedWriteIsRepaired: the database says version 2 but the
// write of the files did not finish; the next run writes everything.
func TestInterruptedWriteIsRepaired(t *testing.T) {
	f := newFixture(t)
	f.files[uA] = map[string]string{"a.iso": "1"}
	f.run("")
	f.files[uA] = map[string]string{"a.iso": "2"}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Update(ctx, f.st, f.images(), Options{Dir: filepath.Join(f.root, "lib"), Now: f.now, NewID: f.newID})
	if err == nil {
		t.Fatal("a cancelled update reported success")
	}
	lib, _ := f.docs()
	if lib.Version != "1" {
		t.Fatalf("lib.json moved to %s before its items were written", lib.Version)
	}
	res := f.run("")
	lib, items := f.docs()
	if !res.Written || lib.Version != "2" || items[uA].Version != "2" {
		t.Fatalf("repair: %+v lib %+v item %+v", res, lib, items[uA])
	}
}

// TestPrune: a version path no manifest names stays readable for the
// grace period even after the cache dropped (expired) the version: the
// library holds hard links. Then it goes; the current one stays.
func TestPrune(t *testing.T) {
	f := newFixture(t)
	f.files[uA] = map[string]string{"a.iso": "1"}
	old := f.images()[0]
	f.run("")
	_, items := f.docs()
	oldHref := items[uA].Files[0].Hrefs[0]
	f.files[uA] = map[string]string{"a.iso": "2"}
	res := f.run("")
	if len(res.Pruned) != 0 {
		t.Fatalf("pruned %v at once", res.Pruned)
	}
	// the cache expires the old version: a reader of the previous
	// manifests still gets its bytes
	if err := os.RemoveAll(old.Dir); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(59 * time.Minute)
	if res = f.run(""); len(res.Pruned) != 0 {
		t.Fatalf("pruned %v within the grace period", res.Pruned)
	}
	if b := f.read(oldHref); string(b) != "1" {
		t.Fatalf("previous version reads %q within the grace period", b)
	}
	f.now = f.now.Add(2 * time.Minute)
	res = f.run("")
	if len(res.Pruned) != 1 || res.Pruned[0] != uA+"/"+old.Digest32 {
		t.Fatalf("pruned %v after the grace period", res.Pruned)
	}
	_, items = f.docs()
	if b := f.read(items[uA].Files[0].Hrefs[0]); string(b) != "2" {
		t.Fatalf("current file reads %q", b)
	}
	// A removed image keeps its folder for the grace period, then it goes.
	delete(f.files, uA)
	f.run("")
	if _, err := os.Stat(filepath.Join(f.root, "lib", uA)); err != nil {
		t.Fatalf("removed item's folder gone at once: %v", err)
	}
	f.now = f.now.Add(2 * time.Hour)
	f.run("")
	if _, err := os.Stat(filepath.Join(f.root, "lib", uA)); err == nil {
		t.Fatal("removed item's folder still there after the grace period")
	}
}

// TestUnsafeImagesLeftOut: an image the library cannot serve is left out
// and reported; it never stops the rest of the library (a dot file or a
// stray item.json in one template must not freeze every other item).
func TestUnsafeImagesLeftOut(t *testing.T) {
	f := newFixture(t)
	f.files[uA] = map[string]string{"a.ovf": "x", "item.json": "content-library-rsync leftover"}
	good := f.images()
	bad := []Image{
		{UUID: "../x", Digest32: "0123456789abcdef0123456789abcdef", Dir: "/v", Files: []File{{Path: "a"}}},
		{UUID: "u1", Digest32: "0123456789abcdef0123456789abcdef", Dir: "/v", Files: []File{{Path: "../a"}}},
		{UUID: "u2", Digest32: "0123456789abcdef0123456789abcdef", Dir: "/v", Files: []File{{Path: ".DS_Store"}}},
		{UUID: "lib.json", Digest32: "0123456789abcdef0123456789abcdef", Dir: "/v", Files: []File{{Path: "a"}}},
		{UUID: "u3", Digest32: "0123456789abcdef0123456789abcdef", Dir: "rel", Files: []File{{Path: "a"}}},
		{UUID: "u4", Digest32: "0123456789abcdef0123456789abcdef", Dir: "/v"},
		{UUID: "u5", Digest32: "not-a-digest", Dir: "/v", Files: []File{{Path: "a"}}},
	}
	res, err := Update(context.Background(), f.st, append(good, bad...), Options{Dir: filepath.Join(f.root, "lib"), Now: f.now, NewID: f.newID})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Skipped) != len(bad) || res.Items != 1 || len(res.Added) != 1 {
		t.Fatalf("result %+v", res)
	}
	_, items := f.docs()
	it := items[uA]
	if len(items) != 1 || len(it.Files) != 2 {
		t.Fatalf("items %+v", items)
	}
	for _, fl := range it.Files {
		if b := f.read(fl.Hrefs[0]); int64(len(b)) != fl.Size {
			t.Errorf("%s: %d bytes", fl.Hrefs[0], len(b))
		}
	}
	if b := f.read(uA + "/item.json"); !strings.Contains(string(b), `"selfHref": "`+uA+`/item.json"`) {
		t.Errorf("the item manifest was overwritten by the template's item.json: %s", b)
	}
	for _, p := range []string{"x", "lib.json/item.json"} {
		if _, err := os.Lstat(filepath.Join(f.root, p)); err == nil {
			t.Errorf("%s exists", p)
		}
	}
}

// TestLongEqualTitlesStayUnique: names are unique after truncation to 80.
func TestLongEqualTitlesStayUnique(t *testing.T) {
	long := strings.Repeat("x", 100)
	imgs := []Image{{UUID: uA, Title: long}, {UUID: uB, Title: long}, {UUID: uC, Title: "T (" + uA[:8] + ")"}, {UUID: "dddddddd-0000-4000-8000-000000000004", Title: "T"}, {UUID: "aaaaaaaa-1111-4000-8000-000000000005", Title: "T"}}
	names := uniqueNames(imgs)
	seen := map[string]string{}
	for u, n := range names {
		if len([]rune(n)) > 80 {
			t.Errorf("%s: %d runes", u, len([]rune(n)))
		}
		if o, dup := seen[n]; dup {
			t.Errorf("%s and %s both named %q", u, o, n)
		}
		seen[n] = u
	}
}

// TestRepairedVersionRelinked: the cache re-fetched a version after a
// failed check (same digest, new file): the library serves the new file,
// not the old one through a stale hard link.
func TestRepairedVersionRelinked(t *testing.T) {
	f := newFixture(t)
	f.files[uA] = map[string]string{"a.iso": "GOOD"}
	im := f.images()[0]
	f.run("")
	// corruption, then the cache's repair: the version moves away and is
	// fetched again under the same path
	p := filepath.Join(im.Dir, "a.iso")
	if err := os.Rename(p, p+".corrupt"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("GOOD"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p+".corrupt", []byte("BAD!"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := f.run(""); res.Changed {
		t.Fatalf("a repair changed the catalog: %+v", res)
	}
	_, items := f.docs()
	lib := filepath.Join(f.root, "lib", filepath.FromSlash(items[uA].Files[0].Hrefs[0]))
	a, _ := os.Stat(lib)
	b, _ := os.Stat(p)
	if !os.SameFile(a, b) {
		t.Fatal("the library still links the replaced file")
	}
}

// TestPruneLeavesForeignFolders: a digest-named folder the library did not
// make is never removed.
func TestPruneLeavesForeignFolders(t *testing.T) {
	f := newFixture(t)
	f.files[uA] = map[string]string{"a.iso": "1"}
	f.run("")
	foreign := filepath.Join(f.root, "lib", "assets", "0123456789abcdef0123456789abcdef")
	if err := os.MkdirAll(foreign, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(foreign, "site.css"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(3 * time.Hour)
	f.run("")
	if _, err := os.Stat(filepath.Join(foreign, "site.css")); err != nil {
		t.Fatalf("a foreign folder was pruned: %v", err)
	}
}
