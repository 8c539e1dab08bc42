package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/clr-suite/clr/internal/fsutil"
)

// Lock takes the cache's run lock, a non-blocking flock on
// PartialDir/.lock, after creating the three directories if missing and
// checking that PartialDir is on Dir's file system. When another process
// (or another Cache value) holds it, the error matches ErrLocked and names
// the holder's pid. Once locked, Lock removes what an interrupted run left
// behind: staging directories, temporary links and files, and the trash.
//
// Download, Expire and Check take the lock themselves for the duration of
// the call when the caller does not hold it. The returned unlock is
// idempotent.
func (c *Cache) Lock(ctx context.Context) (unlock func(), err error) {
	if err := c.prepare(); err != nil {
		return nil, err
	}
	unlock, err = c.lockOnly()
	if err != nil {
		return nil, err
	}
	if err := c.cleanup(ctx); err != nil {
		unlock()
		return nil, err
	}
	return unlock, nil
}

// prepare creates the directories and checks the file systems.
func (c *Cache) prepare() error {
	for _, d := range []struct{ flag, path string }{{"cache", c.Dir}, {"partial", c.PartialDir}, {"expired", c.ExpiredDir}} {
		if d.path == "" {
			return fmt.Errorf("cache: no %s directory configured", d.flag)
		}
		if err := os.MkdirAll(d.path, 0o755); err != nil {
			return fmt.Errorf("cache: %s directory: %w", d.flag, err)
		}
		if fi, err := os.Stat(d.path); err != nil {
			return fmt.Errorf("cache: %s directory: %w", d.flag, err)
		} else if !fi.IsDir() {
			return fmt.Errorf("cache: %s directory %s is not a directory", d.flag, d.path)
		}
	}
	for _, d := range []string{versionsRel, trashRel} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o755); err != nil {
			return fmt.Errorf("cache: %w", err)
		}
	}
	dc, err := device(c.Dir)
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	dp, err := device(c.PartialDir)
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	if dc != dp {
		return fmt.Errorf("cache: the partial directory %s (device %d) and the cache directory %s (device %d) are on different file systems; "+
			"a verified version is published by renaming it from the one into the other, so put both on the same file system",
			c.PartialDir, dp, c.Dir, dc)
	}
	return nil
}

func device(p string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return 0, &fs.PathError{Op: "stat", Path: p, Err: err}
	}
	return uint64(st.Dev), nil // Dev is not uint64 on every platform
}

// lockOnly takes the flock without cleaning up.
func (c *Cache) lockOnly() (func(), error) {
	p := filepath.Join(c.PartialDir, lockName)
	if c.lock != nil {
		return nil, fmt.Errorf("%w: %s is already held by this Cache (pid %d)", ErrLocked, p, os.Getpid())
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cache: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := "unknown pid"
			if b, rerr := fsutil.ReadAllCapped(f, 64, p); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
					holder = "pid " + strconv.Itoa(pid)
				}
			}
			return nil, fmt.Errorf("%w: %s is held by %s", ErrLocked, p, holder)
		}
		return nil, fmt.Errorf("cache: lock %s: %w", p, err)
	}
	// The pid is for the message of a second run only.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	c.lock = f
	var once sync.Once
	return func() {
		once.Do(func() {
			if c.lock == f {
				c.lock = nil
			}
			syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			f.Close()
		})
	}, nil
}

// ensureLocked takes the lock (with cleanup, or without for a dry run) for
// one call unless the caller holds it.
func (c *Cache) ensureLocked(ctx context.Context, clean bool) (func(), error) {
	if c.lock != nil {
		return func() {}, nil
	}
	if !clean {
		if err := c.prepare(); err != nil {
			return nil, err
		}
		return c.lockOnly()
	}
	return c.Lock(ctx)
}

// cleanup removes what an interrupted run left behind. Nothing it removes
// is ever reachable from a served name.
func (c *Cache) cleanup(ctx context.Context) error {
	log := c.logger()
	rm := func(p, what string) {
		if err := forceRemoveAll(p); err != nil {
			log.Warn("cannot remove leftover "+what, "path", p, "err", err)
		} else {
			log.Info("removed leftover "+what+" of an interrupted run", "path", p)
		}
	}
	scan := func(dir string, match func(name string) bool, what string) error {
		entries, err := os.ReadDir(dir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("cache: cleanup: %w", err)
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return err
			}
			if match(e.Name()) {
				rm(filepath.Join(dir, e.Name()), what)
			}
		}
		return nil
	}
	isTmp := func(name string) bool { return strings.HasPrefix(name, ".") && strings.Contains(name, tmpMark) }
	steps := []struct {
		dir   string
		match func(string) bool
		what  string
	}{
		{c.PartialDir, func(n string) bool { return strings.Contains(n, stageMark) && !strings.HasSuffix(n, partialExt) }, "staging directory"},
		{c.Dir, isTmp, "temporary link"},
		{filepath.Join(c.Dir, metaName), isTmp, "temporary file"},
		{filepath.Join(c.Dir, trashRel), func(string) bool { return true }, "version being deleted"},
		{c.ExpiredDir, isTmp, "partial copy"},
	}
	for _, s := range steps {
		if err := scan(s.dir, s.match, s.what); err != nil {
			return err
		}
	}
	uuids, err := os.ReadDir(filepath.Join(c.Dir, versionsRel))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cache: cleanup: %w", err)
	}
	for _, u := range uuids {
		if u.IsDir() {
			if err := scan(filepath.Join(c.Dir, versionsRel, u.Name()), isTmp, "temporary file"); err != nil {
				return err
			}
		}
	}
	return nil
}

// forceRemoveAll is os.RemoveAll that also copes with directories a fetch
// left without write permission.
func forceRemoveAll(p string) error {
	err := os.RemoveAll(p)
	if err == nil {
		return nil
	}
	filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(q, 0o700)
		} else if err != nil && d != nil && d.IsDir() {
			os.Chmod(q, 0o700)
		}
		return nil
	})
	os.Chmod(p, 0o700)
	return os.RemoveAll(p)
}

func randomSuffix() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// freeBytes is the space available to an unprivileged writer on dir's file
// system.
func freeBytes(dir string) (int64, error) {
	var s syscall.Statfs_t
	if err := syscall.Statfs(dir, &s); err != nil {
		return 0, &fs.PathError{Op: "statfs", Path: dir, Err: err}
	}
	return int64(s.Bavail) * int64(s.Bsize), nil
}

// noSpace makes an ENOSPC failure match ErrNoSpace too.
func noSpace(err error) error {
	if err != nil && errors.Is(err, syscall.ENOSPC) && !errors.Is(err, ErrNoSpace) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}
