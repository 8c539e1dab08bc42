package cache

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/clr-suite/clr/internal/fsutil"
)

// maxProblems bounds the structural problems named in one error.
const maxProblems = 5

// verifyTree checks that root holds exactly files and nothing else: every
// entry below root is either a listed regular file or a directory on the
// path to one; no symlinks, devices or extra files. Each file must have its
// signed size (a file that grows past it while being read fails) and its
// signed SHA-512. Errors match ErrVerify.
//
// With stage set (a fresh staging tree, not yet visible), verifyTree also
// sets the published permissions (files 0444, directories 0755) and fsyncs
// every file and directory, so that the tree is durable before it is
// renamed into place.
func verifyTree(ctx context.Context, uuid, root string, files []File, stage bool) error {
	want := make(map[string]File, len(files))
	dirs := map[string]bool{}
	for _, f := range files {
		want[f.Path] = f
		for d := path.Dir(f.Path); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var problems []string
	problem := func(format string, a ...any) {
		problems = append(problems, fmt.Sprintf(format, a...))
	}
	found := map[string]bool{}
	var seenDirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		rel, rerr := filepath.Rel(root, p)
		if rerr != nil {
			return rerr
		}
		rel = filepath.ToSlash(rel)
		t := d.Type()
		switch {
		case rel == ".":
			if !t.IsDir() {
				problem("%s is not a directory", root)
				return filepath.SkipDir
			}
		case t.IsDir():
			if !dirs[rel] {
				problem("unexpected directory %s", rel)
				return filepath.SkipDir
			}
		case t.IsRegular():
			if _, ok := want[rel]; !ok {
				problem("unexpected file %s", rel)
			} else {
				found[rel] = true
			}
			return nil
		default:
			problem("%s is not a regular file (%s)", rel, t.Type())
			return nil
		}
		if stage {
			if err := os.Chmod(p, 0o755); err != nil {
				return err
			}
		}
		seenDirs = append(seenDirs, p)
		return nil
	})
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		return fmt.Errorf("%w: %s: %w", ErrVerify, uuid, err)
	}
	for _, f := range files {
		if !found[f.Path] {
			problem("missing file %s", f.Path)
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		more := ""
		if len(problems) > maxProblems {
			more = fmt.Sprintf(" (and %d more)", len(problems)-maxProblems)
			problems = problems[:maxProblems]
		}
		return fmt.Errorf("%w: %s: %s%s", ErrVerify, uuid, strings.Join(problems, "; "), more)
	}
	for _, f := range files {
		if err := verifyFile(ctx, uuid, filepath.Join(root, filepath.FromSlash(f.Path)), f, stage); err != nil {
			return err
		}
	}
	if stage {
		for _, d := range slices.Backward(seenDirs) {
			if err := fsutil.SyncDir(d); err != nil {
				return noSpace(err)
			}
		}
	}
	return nil
}

// verifyFile checks one file's size and SHA-512 (and, for a staging tree,
// sets its mode and fsyncs it).
func verifyFile(ctx context.Context, uuid, p string, f File, stage bool) error {
	fd, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("%w: %s: %s: %w", ErrVerify, uuid, f.Path, err)
	}
	defer fd.Close()
	fi, err := fd.Stat()
	if err != nil {
		return fmt.Errorf("%w: %s: %s: %w", ErrVerify, uuid, f.Path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s: %s is not a regular file", ErrVerify, uuid, f.Path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 && stage {
		// A published file must not share its inode with anything
		// still writable (a future fetch method that links files).
		return fmt.Errorf("%w: %s: %s has %d hard links", ErrVerify, uuid, f.Path, st.Nlink)
	}
	if fi.Size() != f.Size {
		return fmt.Errorf("%w: %s: %s: size: expected %d bytes, got %d", ErrVerify, uuid, f.Path, f.Size, fi.Size())
	}
	if stage {
		if err := fd.Chmod(0o444); err != nil {
			return err
		}
	}
	h := sha512.New()
	n, err := io.Copy(h, io.LimitReader(ctxReader{ctx, fd}, f.Size+1))
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		return fmt.Errorf("%w: %s: %s: %w", ErrVerify, uuid, f.Path, err)
	}
	switch {
	case n > f.Size:
		return fmt.Errorf("%w: %s: %s: size: expected %d bytes, the file grew past it while being verified", ErrVerify, uuid, f.Path, f.Size)
	case n < f.Size:
		return fmt.Errorf("%w: %s: %s: size: expected %d bytes, read only %d (the file shrank)", ErrVerify, uuid, f.Path, f.Size, n)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA512 {
		return fmt.Errorf("%w: %s: %s: sha512: expected %s, got %s", ErrVerify, uuid, f.Path, f.SHA512, got)
	}
	if stage {
		if err := fd.Sync(); err != nil {
			return noSpace(fmt.Errorf("%s: sync: %w", p, err))
		}
	}
	return nil
}

// ctxReader stops a long read when the context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	if len(p) > 1<<20 {
		p = p[:1<<20]
	}
	return c.r.Read(p)
}
