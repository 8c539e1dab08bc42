package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseDSN(t *testing.T) {
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		dsn  string
		want string // "" = ErrInvalid
	}{
		{"/var/lib/clr/clr.db", "/var/lib/clr/clr.db"},
		{"rel/clr.db", filepath.Join(cwd, "rel/clr.db")},
		{"sqlite:///vmcatcher.db", filepath.Join(cwd, "vmcatcher.db")},
		{"sqlite:////var/lib/vmcatcher/vmcatcher.db", "/var/lib/vmcatcher/vmcatcher.db"},
		{"file:/abs/x.db", "/abs/x.db"},
		{"file:///abs/x.db", "/abs/x.db"},
		{"file://localhost/abs/x.db", "/abs/x.db"},
		{"file:rel.db", filepath.Join(cwd, "rel.db")},
		{"file:/abs/with%20space.db", "/abs/with space.db"},
		{"/odd/na?me#1%.db", "/odd/na?me#1%.db"},
		{"", ""},
		{"sqlite://", ""},
		{"sqlite:///:memory:", ""},
		{"sqlite://host/x.db", ""},
		{"sqlite:///x.db?timeout=5", ""},
		{"file:x.db?mode=ro", ""},
		{"file://otherhost/x.db", ""},
		{":memory:", ""},
		{"file::memory:", ""},
		{"postgresql://user@db/clr", ""},
		{"mysql://db/clr", ""},
	}
	for _, tt := range tests {
		got, err := ParseDSN(tt.dsn)
		if tt.want == "" {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseDSN(%q) = %q, %v; want ErrInvalid", tt.dsn, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseDSN(%q) = %q, %v; want %q", tt.dsn, got, err, tt.want)
		}
	}
}

func TestDriverDSN(t *testing.T) {
	got := driverDSN("/a b/c?d#e%f.db")
	for _, want := range []string{"file:/a b/c%3Fd%23e%25f.db?", "_busy_timeout=10000", "_journal_mode=WAL", "_txlock=immediate", "_foreign_keys=1", "_synchronous=FULL"} {
		if !strings.Contains(got, want) {
			t.Errorf("driverDSN = %q, missing %q", got, want)
		}
	}
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaultPath(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		euid int
		want string
	}{
		{"root", map[string]string{"HOME": "/root", "XDG_DATA_HOME": "/x"}, 0, "/var/lib/clr/clr.db"},
		{"xdg", map[string]string{"HOME": "/home/u", "XDG_DATA_HOME": "/data/u"}, 1000, "/data/u/clr/clr.db"},
		{"relative xdg ignored", map[string]string{"HOME": "/home/u", "XDG_DATA_HOME": "data"}, 1000, "/home/u/.local/share/clr/clr.db"},
		{"home", map[string]string{"HOME": "/home/u"}, 1000, "/home/u/.local/share/clr/clr.db"},
		{"nothing", map[string]string{}, 1000, ""},
	}
	for _, tt := range tests {
		if got := DefaultPath(env(tt.env), tt.euid); got != tt.want {
			t.Errorf("%s: DefaultPath = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestResolveDSN(t *testing.T) {
	all := map[string]string{"CLR_RDBMS": "clr.db", "VMCATCHER_RDBMS": "sqlite:///vmc.db", "HOME": "/home/u"}
	tests := []struct {
		name string
		flag string
		env  map[string]string
		want string
	}{
		{"flag wins", "flag.db", all, "flag.db"},
		{"CLR_RDBMS", "", all, "clr.db"},
		{"VMCATCHER_RDBMS", "", map[string]string{"VMCATCHER_RDBMS": "sqlite:///vmc.db", "HOME": "/home/u"}, "sqlite:///vmc.db"},
		{"default", "", map[string]string{"HOME": "/home/u"}, "/home/u/.local/share/clr/clr.db"},
	}
	for _, tt := range tests {
		if got := ResolveDSN(tt.flag, env(tt.env), 1000); got != tt.want {
			t.Errorf("%s: ResolveDSN = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestCheckCredentialRef(t *testing.T) {
	tests := []struct {
		ref string
		ok  bool
	}{
		{"", true},
		{"file:/etc/clr/cred", true},
		{"env:CLR_LIST_CRED", true},
		{"file:relative", false},
		{"file:/etc/../etc/cred", false},
		{"env:1BAD", false},
		{"env:", false},
		{"user:secret", false},
		{"s3cr3t", false},
	}
	for _, tt := range tests {
		err := CheckCredentialRef(tt.ref)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrInvalid)) {
			t.Errorf("CheckCredentialRef(%q) = %v", tt.ref, err)
		}
		if err != nil && (strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "s3cr3t")) {
			t.Errorf("error %q repeats the value", err)
		}
	}
}

func TestOpenCreatesPrivateParent(t *testing.T) {
	// SQLAlchemy URLs cannot carry ? or #; plain paths and file: URIs can.
	dir := filepath.Join(t.TempDir(), "new", "odd?#% dir")
	path := filepath.Join(dir, "clr.db")
	link := filepath.Join(filepath.Dir(dir), "plain")
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Base(dir), link); err != nil {
		t.Fatal(err)
	}
	escaped := strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(path)
	for i, dsn := range []string{path, "file:" + escaped, "sqlite:///" + filepath.Join(link, "clr.db")} {
		s, err := Open(context.Background(), dsn)
		if err != nil {
			t.Fatalf("Open(%q): %v", dsn, err)
		}
		if p := s.Path(); p != path && p != filepath.Join(link, "clr.db") {
			t.Errorf("Path() = %q, want %q", p, path)
		}
		mustSub(t, s, fmt.Sprintf("sub-%d", i), NewImagesRefuse)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("parent mode %v, want 0700", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) == 0 || names[0] != "clr.db" {
		t.Errorf("files in %s: %v, want clr.db (and its -wal/-shm)", dir, names)
	}
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	subs, err := s.ListSubscriptions(context.Background())
	if err != nil || len(subs) != 3 {
		t.Errorf("all three DSN forms must reach one file: %d subscriptions, %v", len(subs), err)
	}
	var mode string
	s.db.Raw("PRAGMA journal_mode").Scan(&mode)
	if mode != "wal" {
		t.Errorf("journal_mode = %q, want wal", mode)
	}
	var fk, busy int
	s.db.Raw("PRAGMA foreign_keys").Scan(&fk)
	s.db.Raw("PRAGMA busy_timeout").Scan(&busy)
	if fk != 1 || busy != BusyTimeoutMillis {
		t.Errorf("foreign_keys = %d, busy_timeout = %d", fk, busy)
	}
}
