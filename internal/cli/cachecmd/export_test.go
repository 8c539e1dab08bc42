package cachecmd

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestExportGrace: a file no list names any more stays for the grace
// period (a downstream site may be fetching what the previous list named),
// then goes; a named file never goes.
func TestExportGrace(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(t.TempDir(), "state.json")
	for _, f := range []string{"keep.img", "old/gone.img"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]bool{"keep.img": true}
	t0 := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	for i, tc := range []struct {
		at      time.Time
		removed int
	}{{t0, 0}, {t0.Add(59 * time.Minute), 0}, {t0.Add(61 * time.Minute), 1}} {
		n, err := removeUnwanted(dir, want, state, tc.at, time.Hour)
		if err != nil || n != tc.removed {
			t.Fatalf("run %d: removed %d, %v; want %d", i, n, err, tc.removed)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "keep.img")); err != nil {
		t.Fatal("a named file was removed")
	}
	if _, err := os.Stat(filepath.Join(dir, "old")); err == nil {
		t.Fatal("the emptied folder stayed")
	}
}
