package publish

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clr-suite/clr/internal/imagelist"
)

const treeBase = "https://mirror.example/clr/"

// buildTree scans lib, builds a versioned list on prev and places it in
// tree, then records it: one publish of a release tree.
func buildTree(t *testing.T, lib, tree string, prev *imagelist.List, now time.Time) (*imagelist.List, []string) {
	t.Helper()
	entries, _, err := Scan(context.Background(), lib, ScanOptions{Now: now, Rehash: true})
	if err != nil {
		t.Fatal(err)
	}
	l, _, err := Build(prev, entries, ListMeta{BaseURI: treeBase, Versioned: true, Identifier: "9b1b5c36-1c37-4a3e-8f0b-0e5a4f0c1d2e"}, now)
	if err != nil {
		t.Fatal(err)
	}
	made, err := PlaceTree(context.Background(), lib, tree, entries, l, treeBase)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RecordTree(tree, l, treeBase, nil, now); err != nil {
		t.Fatal(err)
	}
	return l, made
}

func TestTreeVersionedURIs(t *testing.T) {
	lib, tree := t.TempDir(), t.TempDir()
	write(t, lib, "web/web.ovf", "<Envelope/>")
	write(t, lib, "web/web-disk1.vmdk", "disk v1")
	write(t, lib, "tools.iso", "iso")
	l1, made := buildTree(t, lib, tree, nil, t0)
	if len(made) != 2 {
		t.Fatalf("placed %v, want 2 folders", made)
	}
	folder := regexp.MustCompile(`^` + regexp.QuoteMeta(treeBase) + `[0-9a-f-]{36}/[0-9a-f]{32}/$`)
	file := regexp.MustCompile(`^` + regexp.QuoteMeta(treeBase) + `[0-9a-f-]{36}/[0-9a-f]{32}/tools\.iso$`)
	byTitle := map[string]imagelist.Image{}
	for _, img := range l1.Images {
		byTitle[img.Title] = img
	}
	if u := byTitle["web"].URI; !folder.MatchString(u) {
		t.Errorf("template hv:uri %s", u)
	}
	if u := byTitle["tools"].URI; !file.MatchString(u) {
		t.Errorf("single file hv:uri %s", u)
	}
	// Every file the list names is in the tree with its signed bytes.
	for _, img := range l1.Images {
		rel, ok := TreeRel(img.URI, treeBase)
		if !ok {
			t.Fatalf("TreeRel(%s) not ok", img.URI)
		}
		files := img.Files
		if len(files) == 0 {
			files = []imagelist.File{{Path: "", Size: img.Size, SHA512: img.SHA512}}
		}
		for _, f := range files {
			p := filepath.Join(tree, filepath.FromSlash(rel), filepath.FromSlash(f.Path))
			fi, err := os.Stat(p)
			if err != nil || fi.Size() != f.Size {
				t.Errorf("%s: %v size %v, want %d", p, err, fi, f.Size)
			}
		}
	}

	// A republish without change places nothing and keeps the URIs.
	l2, made := buildTree(t, lib, tree, l1, t0.Add(time.Hour))
	if len(made) != 0 || l2.Version != l1.Version {
		t.Errorf("unchanged library: placed %v, list version %s -> %s", made, l1.Version, l2.Version)
	}

	// A changed disk: a new folder for that image, same identifier, the
	// old folder untouched and recorded as retired.
	write(t, lib, "web/web-disk1.vmdk", "disk v2")
	l3, made := buildTree(t, lib, tree, l2, t0.Add(2*time.Hour))
	if len(made) != 1 {
		t.Fatalf("placed %v, want the new web version only", made)
	}
	var web3 imagelist.Image
	for _, img := range l3.Images {
		if img.Title == "web" {
			web3 = img
		}
	}
	if web3.Identifier != byTitle["web"].Identifier || web3.URI == byTitle["web"].URI || web3.Version != "2" {
		t.Errorf("changed template: id %s uri %s version %s", web3.Identifier, web3.URI, web3.Version)
	}
	oldRel, _ := TreeRel(byTitle["web"].URI, treeBase)
	if b, err := os.ReadFile(filepath.Join(tree, filepath.FromSlash(oldRel), "web-disk1.vmdk")); err != nil || string(b) != "disk v1" {
		t.Errorf("old version changed: %q %v", b, err)
	}
	st, err := LoadTreeState(tree)
	if err != nil {
		t.Fatal(err)
	}
	if v := st.Versions[oldRel]; v == nil || !v.Retired.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("old version record %+v", v)
	}
	if len(st.Live) != 2 || slices.Contains(st.Live, oldRel) || st.Base != treeBase || st.List != l3.Version {
		t.Errorf("state live %v base %s list %s", st.Live, st.Base, st.List)
	}
}

// A file rewritten between hashing and placing is not placed: no folder,
// no half version, ErrChangedSinceHash.
func TestPlaceTreeChangedSinceHash(t *testing.T) {
	lib, tree := t.TempDir(), t.TempDir()
	write(t, lib, "web/web.ovf", "<Envelope/>")
	write(t, lib, "web/web-disk1.vmdk", "disk v1")
	entries, _, err := Scan(context.Background(), lib, ScanOptions{Now: t0, Rehash: true})
	if err != nil {
		t.Fatal(err)
	}
	l, _, err := Build(nil, entries, ListMeta{BaseURI: treeBase, Versioned: true}, t0)
	if err != nil {
		t.Fatal(err)
	}
	write(t, lib, "web/web-disk1.vmdk", "disk v1 and more being uploaded")
	made, err := PlaceTree(context.Background(), lib, tree, entries, l, treeBase)
	if !errors.Is(err, ErrChangedSinceHash) || len(made) != 0 {
		t.Fatalf("PlaceTree = %v, %v; want ErrChangedSinceHash", made, err)
	}
	folders, err := VersionFolders(tree)
	if err != nil || len(folders) != 0 {
		t.Errorf("version folders after a refused place: %v %v", folders, err)
	}
}

func TestLockTree(t *testing.T) {
	tree := t.TempDir()
	unlock, err := LockTree(tree)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockTree(tree); !errors.Is(err, ErrTreeLocked) {
		t.Errorf("second lock: %v, want ErrTreeLocked", err)
	}
	unlock()
	unlock2, err := LockTree(tree)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}

func TestTreeRel(t *testing.T) {
	for _, tc := range []struct {
		uri, rel string
		ok       bool
	}{
		{treeBase + "id/0123/", "id/0123", true},
		{treeBase + "id/0123/a%20b.iso", "id/0123/a b.iso", true},
		{"https://other/clr/id/0123/", "", false},
		{treeBase + "id/", "", false},
		{treeBase + "id/0123/x/y", "", false},
		{treeBase + "../etc/passwd/", "", false},
		{treeBase + "id/../0123/", "", false},
		{treeBase + ".clr/tree.json/", "", false},
		{treeBase + "%zz/0123/", "", false},
	} {
		rel, ok := TreeRel(tc.uri, treeBase)
		if rel != tc.rel || ok != tc.ok {
			t.Errorf("TreeRel(%s) = %q %v, want %q %v", tc.uri, rel, ok, tc.rel, tc.ok)
		}
	}
}

// The prune policy: the live version always stays; of the retired ones a
// version goes only when it is beyond the Keep newest of its image, older
// than MaxAge and retired longer than Grace.
func TestPruneTreePolicy(t *testing.T) {
	const img = "11111111-2222-4333-8444-555555555555"
	day := 24 * time.Hour
	now := t0.Add(30 * day)
	// versions of one image, newest first: v4 live, v3 retired 1h ago,
	// v2 retired 10 days ago, v1 retired 20 days ago
	recs := map[string]*TreeVersion{
		img + "/" + "44444444444444444444444444444444": {Image: img, Created: now.Add(-1 * time.Hour)},
		img + "/" + "33333333333333333333333333333333": {Image: img, Created: now.Add(-10 * day), Retired: now.Add(-1 * time.Hour)},
		img + "/" + "22222222222222222222222222222222": {Image: img, Created: now.Add(-20 * day), Retired: now.Add(-10 * day)},
		img + "/" + "11111111111111111111111111111111": {Image: img, Created: now.Add(-29 * day), Retired: now.Add(-20 * day)},
	}
	short := func(ps []Pruned) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Dir[len(img)+1:len(img)+2])
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		policy PrunePolicy
		want   []string
	}{
		{"keep everything young", PrunePolicy{Keep: 1, MaxAge: 60 * day}, nil},
		{"keep 1, no age, no grace: all retired go", PrunePolicy{Keep: 1}, []string{"1", "2", "3"}},
		{"keep 2", PrunePolicy{Keep: 2}, []string{"1", "2"}},
		{"grace keeps the one retired an hour ago", PrunePolicy{Keep: 1, Grace: 2 * time.Hour}, []string{"1", "2"}},
		{"max age 15 days keeps v3", PrunePolicy{Keep: 1, MaxAge: 15 * day}, []string{"1", "2"}},
		{"max age 25 days keeps v2 and v3", PrunePolicy{Keep: 1, MaxAge: 25 * day}, []string{"1"}},
		{"keep 10", PrunePolicy{Keep: 10}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tree := t.TempDir()
			st := &TreeState{Base: treeBase, Versions: map[string]*TreeVersion{}}
			for dir, v := range recs {
				c := *v
				st.Versions[dir] = &c
				write(t, tree, dir+"/f.iso", dir)
			}
			if err := st.save(tree); err != nil {
				t.Fatal(err)
			}
			dry, err := PruneTree(tree, tc.policy, now, true)
			if err != nil || !slices.Equal(short(dry), tc.want) {
				t.Fatalf("dry run: %v %v, want %v", short(dry), err, tc.want)
			}
			if f, _ := VersionFolders(tree); len(f) != 4 {
				t.Fatalf("dry run removed folders: %d left", len(f))
			}
			got, err := PruneTree(tree, tc.policy, now, false)
			if err != nil || !slices.Equal(short(got), tc.want) {
				t.Fatalf("prune: %v %v, want %v", short(got), err, tc.want)
			}
			left, _ := VersionFolders(tree)
			if len(left) != 4-len(tc.want) {
				t.Errorf("%d folders left, want %d", len(left), 4-len(tc.want))
			}
			if _, ok := left[img+"/44444444444444444444444444444444"]; !ok {
				t.Errorf("the live version was pruned")
			}
			st2, _ := LoadTreeState(tree)
			if len(st2.Versions) != len(left) {
				t.Errorf("records %d, folders %d", len(st2.Versions), len(left))
			}
		})
	}
}

// An image no list names any more is not kept by --keep: its versions age
// out by MaxAge and Grace alone.
func TestPruneRemovedImageAgesOut(t *testing.T) {
	tree := t.TempDir()
	now := t0.Add(30 * 24 * time.Hour)
	const gone, live = "aaaaaaaa-2222-4333-8444-555555555555", "bbbbbbbb-2222-4333-8444-555555555555"
	st := &TreeState{Base: treeBase, Versions: map[string]*TreeVersion{
		gone + "/11111111111111111111111111111111": {Image: gone, Created: now.Add(-20 * 24 * time.Hour), Retired: now.Add(-10 * 24 * time.Hour)},
		live + "/22222222222222222222222222222222": {Image: live, Created: now.Add(-20 * 24 * time.Hour)},
	}}
	for dir := range st.Versions {
		write(t, tree, dir+"/f.iso", dir)
	}
	if err := st.save(tree); err != nil {
		t.Fatal(err)
	}
	got, err := PruneTree(tree, PrunePolicy{Keep: 2, MaxAge: 7 * 24 * time.Hour, Grace: time.Hour}, now, false)
	if err != nil || len(got) != 1 || got[0].Image != gone {
		t.Fatalf("pruned %+v %v, want the removed image's version", got, err)
	}
}

// An identifier carried over from an older list (not the one its path
// would get, upper case) continues its image over several tree publishes.
func TestTreeKeepsCarriedOverIdentifier(t *testing.T) {
	lib, tree := t.TempDir(), t.TempDir()
	write(t, lib, "tools.iso", "iso v1")
	const listID = "9b1b5c36-1c37-4a3e-8f0b-0e5a4f0c1d2e"
	const carried = "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE"
	prev := &imagelist.List{Identifier: listID, Version: "1", Images: []imagelist.Image{{
		Identifier: carried, Title: "tools", URI: treeBase + "tools.iso", Version: "1",
		Size: 6, SHA512: "00", Created: t0,
	}}}
	l := prev
	for i, content := range []string{"iso v1", "iso v2", "iso v3"} {
		write(t, lib, "tools.iso", content)
		entries, _, err := Scan(context.Background(), lib, ScanOptions{Now: t0, Rehash: true})
		if err != nil {
			t.Fatal(err)
		}
		st, err := LoadTreeState(tree)
		if err != nil {
			t.Fatal(err)
		}
		l, _, err = Build(l, entries, ListMeta{BaseURI: treeBase, Versioned: true, PathIDs: st.Paths}, t0.Add(time.Duration(i)*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Images) != 1 || l.Images[0].Identifier != carried {
			t.Fatalf("publish %d: images %+v, want the carried identifier", i+1, l.Images)
		}
		if _, err := PlaceTree(context.Background(), lib, tree, entries, l, treeBase); err != nil {
			t.Fatal(err)
		}
		if _, err := RecordTree(tree, l, treeBase, map[string]string{"tools.iso": l.Images[0].Identifier}, t0); err != nil {
			t.Fatal(err)
		}
	}
	folders, _ := VersionFolders(tree)
	if len(folders) != 3 {
		t.Errorf("folders %v, want three versions of one image", folders)
	}
	for d := range folders {
		if d[:36] != strings.ToLower(carried) {
			t.Errorf("folder %s not under the lower-case identifier", d)
		}
	}
}

// Records that lag behind the list (another base URI) make DiskLive fail
// rather than protect nothing.
func TestDiskLiveOutsideBase(t *testing.T) {
	tree := t.TempDir()
	l := &imagelist.List{Identifier: "9b1b5c36-1c37-4a3e-8f0b-0e5a4f0c1d2e", Version: "1", Images: []imagelist.Image{{
		Identifier: "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee", Title: "t", Version: "1", Size: 1, SHA512: strings.Repeat("0", 128),
		URI: "https://elsewhere.example/aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee/00000000000000000000000000000000/t.iso", Created: t0,
	}}}
	data, err := l.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	write(t, tree, "imagelist.json", string(data))
	if _, err := DiskLive(tree, treeBase); err == nil || !strings.Contains(err.Error(), "outside the tree's base") {
		t.Errorf("DiskLive = %v, want an error naming the base", err)
	}
}

// TreeRel turns signed hv:uris into paths inside the tree: whatever the
// URI, the result is clean, relative, never climbs out of the tree and
// never names the bookkeeping folder.
func FuzzTreeRel(f *testing.F) {
	for _, s := range []string{"id/0123/", "id/0123/a%20b.iso", "../x/", "id/..%2f../", ".clr/tree.json/", "%zz/0/", "a//b/", "a/b/c/d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tail string) {
		rel, ok := TreeRel(treeBase+tail, treeBase)
		if !ok {
			return
		}
		if rel == "" || strings.HasPrefix(rel, "/") || strings.HasPrefix(rel, ".") || filepath.Clean(rel) != rel ||
			strings.Contains(rel, "/../") || strings.HasSuffix(rel, "/..") || strings.Count(rel, "/") > 2 {
			t.Fatalf("TreeRel(%q) = %q", tail, rel)
		}
	})
}
