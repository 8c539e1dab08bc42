package push

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/clr-suite/clr/internal/imagelist"
	"github.com/clr-suite/clr/internal/publish"
	"github.com/clr-suite/clr/internal/testsshd"
)

// These run the real rsync against a local mirror folder.

func localMirror(t *testing.T) (string, Mirror) {
	t.Helper()
	testsshd.Require(t, "rsync")
	dir := filepath.Join(t.TempDir(), "mirror")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := ParseMirror(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, m
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	x, err1 := os.ReadFile(a)
	y, err2 := os.ReadFile(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

// The list on disk, not the tree's records, decides what is pushed: after
// a crash between writing the list and recording it, the folder the list
// names is still sent before the list.
func TestPushFollowsTheListOnDisk(t *testing.T) {
	mirror, m := localMirror(t)
	lib, tree := t.TempDir(), t.TempDir()
	writeFile(t, lib, "boot.iso", payload("iso1", 3000))
	pub := &publisher{t: t, lib: lib, tree: tree, policy: publish.PrunePolicy{Keep: 1}}
	pub.publish(time.Now())
	records, err := os.ReadFile(filepath.Join(tree, ".clr", "tree.json"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, lib, "boot.iso", payload("iso2", 3000))
	l2 := pub.publish(time.Now())
	// the records as they were before the second list: RecordTree "crashed"
	if err := os.WriteFile(filepath.Join(tree, ".clr", "tree.json"), records, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Push(context.Background(), m, Options{Tree: tree, Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	rel, _ := publish.TreeRel(l2.Images[0].URI, base)
	if !sameFile(t, filepath.Join(mirror, filepath.FromSlash(rel)), filepath.Join(lib, "boot.iso")) {
		t.Fatalf("the mirror's list names %s, which it did not get", rel)
	}
	// and prune keeps it although the records call it retired
	if pruned, err := publish.PruneTree(tree, publish.PrunePolicy{Keep: 1}, time.Now().Add(time.Hour), false); err != nil {
		t.Fatal(err)
	} else {
		for _, p := range pruned {
			if rel == p.Dir || filepath.Dir(rel) == p.Dir {
				t.Fatalf("prune removed %s, which the list on disk names", p.Dir)
			}
		}
	}
}

// A re-signed list of the same size written within the same second (same
// mtime) still reaches the mirror: rsync's quick check would skip it.
func TestPointersSameSizeSameSecond(t *testing.T) {
	mirror, m := localMirror(t)
	lib, tree := t.TempDir(), t.TempDir()
	writeFile(t, lib, "boot.iso", payload("iso1", 3000))
	pub := &publisher{t: t, lib: lib, tree: tree, policy: publish.PrunePolicy{Keep: 1}}
	pub.publish(time.Now())
	if _, err := Push(context.Background(), m, Options{Tree: tree}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(tree, "imagelist.json")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(p)
	l, _, err := imagelist.Parse(data, imagelist.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l.Title = l.Title[:len(l.Title)-1] + "X" // same length
	changed, err := l.Marshal()
	if err != nil || len(changed) != len(data) {
		t.Fatalf("could not make a same-size change: %v", err)
	}
	if err := os.WriteFile(p, changed, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if _, err := Push(context.Background(), m, Options{Tree: tree}); err != nil {
		t.Fatal(err)
	}
	if !sameFile(t, filepath.Join(mirror, "imagelist.json"), p) {
		t.Fatal("the mirror kept the previous imagelist.json")
	}
}

// Pass 3 removes only the tree's own layout, and nothing before the grace
// period after a mirror's first push (what it served before is unknown).
func TestRemovalScopeAndFirstPush(t *testing.T) {
	mirror, m := localMirror(t)
	stale := "0a0a0a0a-1111-4222-8333-444444444444/0123456789abcdef0123456789abcdef"
	others := []string{"index.html", "other/file", "home/u/.ssh/authorized_keys", ".keep", "not-a-uuid/0123456789abcdef0123456789abcdef/x"}
	for _, f := range append([]string{stale + "/old.iso"}, others...) {
		writeFile(t, mirror, f, []byte("there before"))
	}
	lib, tree := t.TempDir(), t.TempDir()
	writeFile(t, lib, "boot.iso", payload("iso1", 3000))
	(&publisher{t: t, lib: lib, tree: tree, policy: publish.PrunePolicy{Keep: 1}}).publish(time.Now())
	t0 := time.Now()
	rep, err := Push(context.Background(), m, Options{Tree: tree, Grace: time.Hour, Clock: func() time.Time { return t0 }})
	if err != nil || !rep.Deferred || len(rep.Deleted) != 0 {
		t.Fatalf("first push: %+v %v, want removal deferred", rep, err)
	}
	if _, err := os.Stat(filepath.Join(mirror, stale, "old.iso")); err != nil {
		t.Fatalf("first push removed a folder the mirror may be serving: %v", err)
	}
	rep, err = Push(context.Background(), m, Options{Tree: tree, Grace: time.Hour, Clock: func() time.Time { return t0.Add(2 * time.Hour) }})
	if err != nil || rep.Deferred {
		t.Fatalf("push after the grace: %+v %v", rep, err)
	}
	if _, err := os.Stat(filepath.Join(mirror, stale)); !os.IsNotExist(err) {
		t.Errorf("stale version folder still on the mirror: %v", err)
	}
	if !slices.Contains(rep.Deleted, stale+"/old.iso") {
		t.Errorf("deleted %v", rep.Deleted)
	}
	for _, f := range others {
		if _, err := os.Stat(filepath.Join(mirror, f)); err != nil {
			t.Errorf("%s outside the tree's layout was removed: %v", f, err)
		}
	}
}

// A push whose pass 2 failed, then a newer list pushed later: the list the
// mirror served until that later push keeps its whole grace period from
// then, not from the failed attempt.
func TestFailedPointersKeepPredecessorGrace(t *testing.T) {
	mirror, m := localMirror(t)
	lib, tree := t.TempDir(), t.TempDir()
	writeFile(t, lib, "boot.iso", payload("iso1", 3000))
	pub := &publisher{t: t, lib: lib, tree: tree, policy: publish.PrunePolicy{Keep: 1}}
	l1 := pub.publish(time.Now())
	rel1, _ := publish.TreeRel(l1.Images[0].URI, base)
	v1 := filepath.ToSlash(filepath.Dir(rel1)) // the version folder of the single file
	// rsync that fails pass 2 (the pointers) while the flag file exists
	dir := t.TempDir()
	flag := filepath.Join(dir, "fail")
	wrapper := filepath.Join(dir, "rsync")
	script := "#!/bin/sh\ncase \"$*\" in *--delay-updates*) [ -f " + flag + " ] && { echo 'rsync: permission denied' >&2; exit 23; } ;; esac\nexec rsync \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	push := func(at time.Duration) (Report, error) {
		return Push(context.Background(), m, Options{Tree: tree, Rsync: wrapper, Grace: time.Hour,
			Clock: func() time.Time { return t0.Add(at) }})
	}
	if _, err := push(0); err != nil { // v1 served from t0
		t.Fatal(err)
	}
	writeFile(t, lib, "boot.iso", payload("iso2", 3000))
	pub.publish(time.Now())
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := push(3 * time.Hour); err == nil { // v2 never reaches the mirror
		t.Fatal("pass 2 did not fail")
	}
	os.Remove(flag)
	writeFile(t, lib, "boot.iso", payload("iso3", 3000))
	pub.publish(time.Now())
	rep, err := push(6 * time.Hour) // v3 replaces v1 on the mirror now
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(rep.Protected, v1) {
		t.Errorf("v1, served until now, is not protected: %+v", rep)
	}
	if _, err := os.Stat(filepath.Join(mirror, filepath.FromSlash(v1))); err != nil {
		t.Errorf("v1 removed at once from the mirror: %v", err)
	}
}
