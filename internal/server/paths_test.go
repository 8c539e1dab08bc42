package server

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// newLibrary builds a library in a temporary directory:
//
//	tmpl/v2/disk.vmdk          regular file
//	tmpl/v2/link.vmdk -> disk.vmdk   symlink inside, as the last component
//	tmpl/current -> v2          symlink to a directory inside
//	tmpl/dangling -> nowhere
//	evil -> /etc                symlink out of the library
//	up -> ..                    symlink to the parent of the library
//	tmpl/fifo                   named pipe
//	tmpl/sock                   unix socket
//	plain                       regular file
func newLibrary(t *testing.T) (*os.Root, string) {
	t.Helper()
	lib := filepath.Join(t.TempDir(), "lib")
	writeTree(t, lib, map[string]string{
		"tmpl/v2/disk.vmdk": "v2",
		"plain":             "x",
		"dir with space/a":  "a",
		"~":                 "tilde",
	})
	mustSymlink(t, "disk.vmdk", filepath.Join(lib, "tmpl/v2/link.vmdk"))
	mustSymlink(t, "v2", filepath.Join(lib, "tmpl/current"))
	mustSymlink(t, "nowhere", filepath.Join(lib, "tmpl/dangling"))
	mustSymlink(t, "/etc", filepath.Join(lib, "evil"))
	mustSymlink(t, "..", filepath.Join(lib, "up"))
	if err := syscall.Mkfifo(filepath.Join(lib, "tmpl/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(lib, "tmpl/sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: sock}); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(lib)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return root, lib
}

func TestConfinePaths(t *testing.T) {
	root, _ := newLibrary(t)
	tests := []struct {
		name  string
		paths []string
		want  error // nil: accepted
	}{
		{"root", []string{"."}, nil},
		{"file", []string{"tmpl/v2/disk.vmdk"}, nil},
		{"directory", []string{"tmpl/v2"}, nil},
		{"several", []string{"tmpl", "plain", "dir with space/a", "~"}, nil},
		{"empty list", nil, nil},
		{"symlink out as component", []string{"evil/passwd"}, ErrSymlink},
		{"symlink out as last", []string{"evil"}, ErrSymlink},
		{"symlink to parent", []string{"up/lib/plain"}, ErrSymlink},
		{"symlink inside as component", []string{"tmpl/current/disk.vmdk"}, ErrSymlink},
		{"symlink inside as last", []string{"tmpl/current"}, ErrSymlink},
		{"file symlink as last", []string{"tmpl/v2/link.vmdk"}, ErrSymlink},
		{"dangling symlink", []string{"tmpl/dangling"}, ErrSymlink},
		{"second path bad", []string{"tmpl", "evil"}, ErrSymlink},
		{"fifo", []string{"tmpl/fifo"}, ErrPath},
		{"socket", []string{"tmpl/sock"}, ErrPath},
		{"fifo as component", []string{"tmpl/fifo/x"}, ErrPath},
		{"missing", []string{"tmpl/v3"}, ErrNotFound},
		{"missing deep", []string{"tmpl/v3/disk.vmdk"}, ErrNotFound},
		{"absolute mapped", []string{"etc/passwd"}, ErrNotFound},
		{"file as directory", []string{"plain/x"}, ErrNotFound},
		{"dotdot", []string{"../lib/plain"}, ErrPath},
		{"dotdot inside", []string{"tmpl/../plain"}, ErrPath},
		{"absolute", []string{"/etc/passwd"}, ErrPath},
		{"unclean", []string{"tmpl//v2"}, ErrPath},
		{"trailing slash", []string{"tmpl/"}, ErrPath},
		{"dot component", []string{"tmpl/./v2"}, ErrPath},
		{"empty", []string{""}, ErrPath},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ConfinePaths(root, tc.paths)
			if tc.want == nil && err != nil || !errors.Is(err, tc.want) {
				t.Fatalf("ConfinePaths(%q) = %v, want %v", tc.paths, err, tc.want)
			}
		})
	}
}

func TestConfinePathsNilRoot(t *testing.T) {
	if err := ConfinePaths(nil, []string{"."}); err == nil {
		t.Fatal("nil root accepted")
	}
}

// TestParseAndConfine runs both steps the SSH server runs on hostile
// requests that ParseCommand alone lets through.
func TestParseAndConfine(t *testing.T) {
	root, _ := newLibrary(t)
	tests := []struct {
		name string
		cmd  string
		want error // nil: accepted
	}{
		{"library file", pull + ". /tmpl/v2/disk.vmdk", nil},
		{"whole library", pull + ". /", nil},
		{"escaped tilde is a name", pull + `. \~`, nil},
		{"escaped space", pull + `. /dir\ with\ space/a`, nil},
		{"etc passwd stays inside", pull + ". /etc/passwd", ErrNotFound},
		{"root home", pull + ". /root/.ssh/authorized_keys", ErrNotFound},
		{"symlink to etc", pull + ". /evil/shadow", ErrSymlink},
		{"symlink to etc, contents", pull + ". /evil/", ErrSymlink},
		{"symlink to parent", pull + ". /up/", ErrSymlink},
		{"symlink inside", pull + ". tmpl/current/", ErrSymlink},
		{"relative through symlink", "rsync --server --sender -lRe.iLsfxCIvu . /evil/./passwd", ErrSymlink},
		{"fifo", pull + ". tmpl/fifo", ErrPath},
		{"fullwidth dots are a name", pull + ". /\uff0e\uff0e/etc/passwd", ErrNotFound},
		{"one dot leader", pull + ". /\u2024\u2024/etc", ErrNotFound},
		{"fullwidth solidus", pull + ". /tmpl\uff0fv2", ErrNotFound},
		{"many slashes", pull + ". ////etc////passwd", ErrNotFound},
		{"dot dirs", pull + ". /./././etc/./passwd", ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd, err := ParseCommand(tc.cmd, ValidateOptions{ConfineRoot: testRoot})
			if err == nil {
				err = ConfinePaths(root, cmd.Paths)
			}
			if tc.want == nil && err != nil || !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestConfineArg(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		relative  bool
		wantArg   string
		wantClean string
		wantErr   error
	}{
		{"root slash", "/", false, ".", ".", nil},
		{"dot", ".", false, ".", ".", nil},
		{"absolute file", "/a/b", false, "a/b", "a/b", nil},
		{"relative file", "a/b", false, "a/b", "a/b", nil},
		{"trailing slash", "/a/", false, "a/", "a", nil},
		{"trailing slash dot", "a/.", false, "a/", "a", nil},
		{"double slashes", "//a//b//", false, "a/b/", "a/b", nil},
		{"dot slash dot", "./.", false, ".", ".", nil},
		{"marker without -R", "a/./b", false, "a/b", "a/b", nil},
		{"marker with -R", "/a/./b/c", true, "a/./b/c", "a/b/c", nil},
		{"marker at root", "/./a", true, "a", "a", nil},
		{"marker at end", "a/./", true, "a/./", "a", nil},
		{"marker with trailing slash", "a/./b/", true, "a/./b/", "a/b", nil},
		{"two markers", "a/./b/./c", true, "a/./b/c", "a/b/c", nil},
		{"empty", "", false, "", "", ErrPath},
		{"dotdot", "a/../b", false, "", "", ErrPath},
		{"leading dash", "-x", false, "", "", ErrPath},
		{"dash after dot slash", "./-x", false, "", "", ErrPath},
		{"dash after root", "/-x", false, "", "", ErrPath},
		{"dash after marker at root", "/./-x", true, "", "", ErrPath},
		{"dash inside is fine", "a/-x", false, "a/-x", "a/-x", nil},
		{"star", "a*", false, "", "", ErrPath},
		{"backslash", `a\b`, false, "", "", ErrPath},
		{"too long", "/" + string(make([]byte, 4096)), false, "", "", ErrPath},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			arg, clean, err := confineArg(tc.in, tc.relative)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || arg != tc.wantArg || clean != tc.wantClean {
				t.Fatalf("confineArg(%q) = %q, %q, %v; want %q, %q", tc.in, arg, clean, err, tc.wantArg, tc.wantClean)
			}
		})
	}
}
