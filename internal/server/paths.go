package server

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

const (
	maxPathLen      = 4095 // PATH_MAX - 1
	maxComponentLen = 255  // NAME_MAX
)

// confineArg maps one path argument, backslash escapes already removed, into
// the library: a leading "/" means the library root, the result is relative.
// It returns the argument to give rsync and the cleaned path for
// ConfinePaths ("." for the root).
//
// The argument keeps what changes rsync's behaviour: a trailing "/" or "/."
// (send the directory's contents, not the directory) becomes a trailing "/",
// and under --relative the first "/./" marker (where the transmitted name
// starts) is kept. Everything else is cleaned.
func confineArg(p string, relative bool) (arg, clean string, err error) {
	switch {
	case p == "":
		return "", "", fmt.Errorf("%w: empty path", ErrPath)
	case len(p) > maxPathLen:
		return "", "", fmt.Errorf("%w: path longer than %d bytes", ErrPath, maxPathLen)
	case strings.HasPrefix(p, "-"):
		return "", "", fmt.Errorf("%w: %s starts with \"-\"", ErrPath, quote(p))
	case strings.ContainsAny(p, "*?[]\\"):
		// rsync's sender expands wildcards itself (and honours backslash
		// escapes while doing so): no glob may bypass ConfinePaths, so
		// neither wildcards nor literal backslashes are accepted, escaped
		// or not.
		return "", "", fmt.Errorf("%w: %s: wildcards and backslashes are not supported", ErrPath, quote(p))
	}
	for _, c := range strings.Split(p, "/") {
		switch {
		case c == "..":
			return "", "", fmt.Errorf("%w: %s: \"..\" is not allowed", ErrPath, quote(p))
		case len(c) > maxComponentLen:
			return "", "", fmt.Errorf("%w: %s: component longer than %d bytes", ErrPath, quote(p), maxComponentLen)
		}
	}
	contents := p == "/" || strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.")
	clean = cleanRel(p)
	arg = clean
	if i := strings.Index(p, "/./"); relative && i >= 0 {
		anchor, rest := cleanRel(p[:i]), cleanRel(p[i+3:])
		switch {
		case anchor == ".":
			arg = rest // names are relative to the root anyway
		case rest == ".":
			arg = anchor + "/./"
		default:
			arg = anchor + "/./" + rest
		}
	}
	if contents && arg != "." && !strings.HasSuffix(arg, "/") {
		arg += "/"
	}
	if strings.HasPrefix(arg, "-") || strings.HasPrefix(clean, "-") {
		return "", "", fmt.Errorf("%w: %s starts with \"-\"", ErrPath, quote(p))
	}
	return arg, clean, nil
}

// cleanRel cleans p as a path below the root: "" and "/" become ".".
func cleanRel(p string) string {
	c := strings.TrimPrefix(path.Clean("/"+p), "/")
	if c == "" {
		return "."
	}
	return c
}

// ConfinePaths checks every path (as in Command.Paths) inside the library
// opened as root: each component is Lstat'ed through root, one at a time,
// so no symlink is ever followed. A symlink anywhere, including the last
// component, is refused with ErrSymlink; the last component must be a
// directory or a regular file (ErrPath otherwise); a missing path is
// ErrNotFound. Symlinks inside a requested directory are not looked at:
// rsync sends them as links, it never follows them with the options
// ParseCommand accepts.
//
// This is a check, not a pin: a writer of the library could swap a
// directory for a symlink between the check and rsync's open. Keep the
// library immutable for the serving user (publish by rename) and rely on
// rsync >= 3.5.0's own RESOLVE_BENEATH opens.
func ConfinePaths(root *os.Root, paths []string) error {
	if root == nil {
		return errors.New("confine paths: no library root")
	}
	for _, p := range paths {
		if err := confinePath(root, p); err != nil {
			return err
		}
	}
	return nil
}

func confinePath(root *os.Root, p string) error {
	if p == "." {
		fi, err := root.Lstat(".")
		if err != nil {
			return fmt.Errorf("%w: library root: %v", ErrPath, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%w: library root is not a directory", ErrPath)
		}
		return nil
	}
	if p == "" || !filepath.IsLocal(p) || path.Clean(p) != p || strings.ContainsRune(p, '\\') {
		return fmt.Errorf("%w: %s is not a clean relative path", ErrPath, quote(p))
	}
	comps := strings.Split(p, "/")
	for i := range comps {
		sub := strings.Join(comps[:i+1], "/")
		last := i == len(comps)-1
		fi, err := root.Lstat(sub)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%w: %s", ErrNotFound, quote(p))
			}
			return fmt.Errorf("%w: %s: %v", ErrPath, quote(sub), err)
		}
		mode := fi.Mode()
		switch {
		case mode&fs.ModeSymlink != 0:
			return fmt.Errorf("%w: %s", ErrSymlink, quote(sub))
		case mode.IsDir():
		case mode.IsRegular() && last:
		case mode.IsRegular():
			return fmt.Errorf("%w: %s (%s is a file)", ErrNotFound, quote(p), quote(sub))
		default:
			return fmt.Errorf("%w: %s is not a regular file or directory", ErrPath, quote(sub))
		}
	}
	return nil
}
