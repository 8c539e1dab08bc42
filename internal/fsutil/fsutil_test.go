package fsutil

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.json")
	if err := WriteAtomic(p, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteAtomic(p, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != "two" {
		t.Fatalf("got %q, %v", got, err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("perm %v", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestWriteAtomicFailureKeepsOld(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteAtomic(p, []byte("good"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := WriteAtomicFunc(p, 0o644, func(w io.Writer) error {
		w.Write([]byte("half"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	got, _ := os.ReadFile(p)
	if string(got) != "good" {
		t.Fatalf("old content lost: %q", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestReadFileCapped(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	os.WriteFile(p, []byte(strings.Repeat("x", 10)), 0o644)
	for _, tc := range []struct {
		name string
		max  int64
		ok   bool
	}{{"under", 11, true}, {"exact", 10, true}, {"over", 9, false}} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadFileCapped(p, tc.max)
			if tc.ok != (err == nil) || (!tc.ok && !errors.Is(err, ErrTooLarge)) {
				t.Fatalf("max %d: err %v", tc.max, err)
			}
		})
	}
}

func TestWriteAtomicIfChanged(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f.json")
	for i, tc := range []struct {
		data  string
		wrote bool
	}{{"a", true}, {"a", false}, {"b", true}} {
		before, _ := os.Stat(p)
		wrote, err := WriteAtomicIfChanged(p, []byte(tc.data), 0o644)
		if err != nil || wrote != tc.wrote {
			t.Fatalf("step %d: wrote %v, %v; want %v", i, wrote, err, tc.wrote)
		}
		after, _ := os.Stat(p)
		if !tc.wrote && !os.SameFile(before, after) {
			t.Fatalf("step %d: an unchanged file was replaced", i)
		}
		if b, _ := os.ReadFile(p); string(b) != tc.data {
			t.Fatalf("step %d: content %q", i, b)
		}
	}
}
