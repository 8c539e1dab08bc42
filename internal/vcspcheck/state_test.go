package vcspcheck

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"

	"github.com/clr-suite/clr/internal/ovfgen"
)

// stateRun serves lib (after writing it) and checks it against statePath.
func stateRun(t *testing.T, lib *fxLib, statePath string) (Report, error) {
	t.Helper()
	lib.write(t)
	srv := serve(t, lib.root, nil)
	return check(t, Options{URL: srv.libURL(), StatePath: statePath})
}

func firstRun(t *testing.T) (*fxLib, string) {
	t.Helper()
	lib := newFixture(t)
	statePath := filepath.Join(t.TempDir(), "state", "vcsp-state.json")
	rep, err := stateRun(t, lib, statePath)
	if err != nil {
		t.Fatalf("first run: %v\n%s", err, dump(rep))
	}
	if !rep.StateSaved {
		t.Fatal("first run did not save the snapshot")
	}
	for _, it := range rep.Items {
		if it.State != "new" {
			t.Errorf("first run: item %s state %q, want new", it.Name, it.State)
		}
	}
	return lib, statePath
}

// rewriteISO gives the ISO new content of the same size.
func rewriteISO(t *testing.T, lib *fxLib, seed int64) {
	t.Helper()
	if err := ovfgen.WriteISO(lib.path("media", "disc.iso"), 64<<10, seed); err != nil {
		t.Fatal(err)
	}
}

func states(rep Report) map[string]string {
	m := map[string]string{}
	for _, it := range rep.Items {
		m[it.Name] = it.State
	}
	return m
}

func TestStateProperBump(t *testing.T) {
	lib, statePath := firstRun(t)

	// Nothing changed: everything unchanged, snapshot rewritten.
	rep, err := stateRun(t, lib, statePath)
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, dump(rep))
	}
	for name, st := range states(rep) {
		if st != "unchanged" {
			t.Errorf("unchanged run: %s is %q", name, st)
		}
	}

	// The ISO changes; its etag, its version and lib.json's version grow.
	rewriteISO(t, lib, 2)
	iso := lib.item("media")
	lib.rescan(t, iso, "2")
	iso.Version, iso.ContentVersion, lib.Version = "3", "3", "2"
	rep, err = stateRun(t, lib, statePath)
	if err != nil {
		t.Fatalf("bumped run: %v\n%s", err, dump(rep))
	}
	want := map[string]string{"tpl": "unchanged", "media": "version 2 -> 3", "notes": "unchanged"}
	got := states(rep)
	for name, st := range want {
		if got[name] != st {
			t.Errorf("item %s: state %q, want %q", name, got[name], st)
		}
	}
	if !rep.StateSaved {
		t.Error("snapshot not saved after a proper bump")
	}
}

func TestStateRulesBroken(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, l *fxLib)
		want   []string
		states map[string]string
	}{
		{"content changed, no bumps", func(t *testing.T, l *fxLib) {
			rewriteISO(t, l, 2)
			l.rescan(t, l.item("media"), "2")
		}, []string{
			`item "media": files changed but version not bumped (2)`,
			"items changed but lib.json version not bumped (1): subscribers stop at lib.json",
		}, map[string]string{"media": "changed, version not bumped", "tpl": "unchanged"}},
		{"content changed, only lib bumped", func(t *testing.T, l *fxLib) {
			rewriteISO(t, l, 2)
			l.rescan(t, l.item("media"), "2")
			l.Version = "2"
		}, []string{`item "media": files changed but version not bumped (2)`}, nil},
		{"item bumped, lib not", func(t *testing.T, l *fxLib) {
			rewriteISO(t, l, 2)
			l.rescan(t, l.item("media"), "2")
			l.item("media").Version = "3"
		}, []string{"items changed but lib.json version not bumped (1)"}, map[string]string{"media": "version 2 -> 3"}},
		{"size changed, etag kept", func(t *testing.T, l *fxLib) {
			appendFile(t, l.path("notes", "readme.txt"), []byte("more\n"))
			l.rescan(t, l.item("notes"), "1")
			l.Version = "2"
		}, []string{`item "notes": files changed but version not bumped (2)`}, nil},
		{"file added without bump", func(t *testing.T, l *fxLib) {
			writeFile(t, l.path("notes", "more.txt"), []byte("x"))
			l.rescan(t, l.item("notes"), "1")
			l.Version = "2"
		}, []string{`item "notes": files changed but version not bumped (2)`}, nil},
		{"id changed", func(t *testing.T, l *fxLib) {
			l.item("notes").ID = "urn:uuid:9fc8c3cb-5555-4aaa-8bbb-000000000005"
			l.Version = "2"
		}, []string{`item "notes": id changed from ` + fxNotesID + ` to urn:uuid:9fc8c3cb-5555-4aaa-8bbb-000000000005`},
			map[string]string{"notes": "new (id changed from " + fxNotesID + ")"}},
		{"library id changed", func(t *testing.T, l *fxLib) {
			l.ID = "urn:uuid:9fc8c3cb-9999-4aaa-8bbb-000000000009"
		}, []string{"library id changed from " + fxLibID}, nil},
		{"item version went down", func(t *testing.T, l *fxLib) {
			l.item("notes").Version = "1"
			l.Version = "2"
		}, []string{`item "notes": version went down from 2 to 1`}, nil},
		{"lib version went down", func(t *testing.T, l *fxLib) {
			l.Version = "0"
		}, []string{"lib.json version went down from 1 to 0"}, nil},
		{"item added without lib bump", func(t *testing.T, l *fxLib) {
			it := *l.item("notes")
			it.Name, it.ID, it.dir, it.SelfHref = "notes2", "urn:uuid:9fc8c3cb-6666-4aaa-8bbb-000000000006", "notes", "notes/item2.json"
			l.items = append(l.items, &it)
		}, []string{"items changed but lib.json version not bumped (1)"}, map[string]string{"notes2": "new"}},
		{"item removed without lib bump", func(t *testing.T, l *fxLib) {
			l.items = l.items[:2]
		}, []string{"items changed but lib.json version not bumped (1)"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lib, statePath := firstRun(t)
			before := readFile(t, statePath)
			tt.change(t, lib)
			rep, err := stateRun(t, lib, statePath)
			if !errors.Is(err, ErrState) {
				t.Fatalf("err = %v, want ErrState\n%s", err, dump(rep))
			}
			if ExitCode(err) != ExitState {
				t.Errorf("exit code %d", ExitCode(err))
			}
			for _, w := range tt.want {
				if !hasProblem(rep.StateProblems, w) {
					t.Errorf("no state problem containing %q:\n%s", w, dump(rep))
				}
			}
			got := states(rep)
			for name, st := range tt.states {
				if got[name] != st {
					t.Errorf("item %s: state %q, want %q", name, got[name], st)
				}
			}
			if rep.StateSaved || !bytes.Equal(before, readFile(t, statePath)) {
				t.Error("snapshot was rewritten although a rule was broken")
			}
		})
	}
}

// TestStateRemovedWithBump: removing an item with a lib bump is fine and
// reported.
func TestStateRemovedWithBump(t *testing.T) {
	lib, statePath := firstRun(t)
	lib.items = lib.items[:2]
	lib.Version = "2"
	rep, err := stateRun(t, lib, statePath)
	if err != nil {
		t.Fatalf("%v\n%s", err, dump(rep))
	}
	if len(rep.Removed) != 1 || rep.Removed[0] != "notes" {
		t.Errorf("Removed = %q", rep.Removed)
	}
}

// TestStateManifestErrorWins: an invalid manifest fails before the state
// rules and leaves the snapshot alone.
func TestStateManifestErrorWins(t *testing.T) {
	lib, statePath := firstRun(t)
	before := readFile(t, statePath)
	lib.item("media").Files[0].Etag = "abc"
	lib.Version = "2"
	rep, err := stateRun(t, lib, statePath)
	if !errors.Is(err, ErrManifest) {
		t.Fatalf("err = %v\n%s", err, dump(rep))
	}
	if !bytes.Equal(before, readFile(t, statePath)) {
		t.Error("snapshot changed")
	}
}

func TestStateCorruptSnapshot(t *testing.T) {
	lib := newFixture(t)
	statePath := filepath.Join(t.TempDir(), "state.json")
	writeFile(t, statePath, []byte("{not json"))
	_, err := stateRun(t, lib, statePath)
	if err == nil || errors.Is(err, ErrState) || ExitCode(err) != ExitUsage {
		t.Fatalf("err = %v", err)
	}
}
