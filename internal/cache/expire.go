package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/clr-suite/clr/events"
	"github.com/clr-suite/clr/internal/fsutil"
)

// expiredLayout is the UTC timestamp in an ExpiredDir entry name,
// "<uuid>-20260102T150405Z" (a second entry of the same image and second
// gets ".1", ".2", ... appended).
const expiredLayout = "20060102T150405Z"

// Expire takes out of service every served image whose UUID is not in
// keep, and every served image whose digest differs from keep's when that
// difference was first seen by Expire at least Grace ago (until then the
// old version stays served so that Download can replace it in one step).
// Expiring an image removes Dir/<uuid> first, then moves the version (the
// file of a single-file image, the folder of a template) to
// ExpiredDir/<uuid>-<UTC timestamp>, with ExpirePrefix and ExpirePostfix
// around it. Afterwards the Retention policy prunes ExpiredDir, and
// partial transfers and attempt counters of images not in keep are dropped.
//
// With dryRun set nothing is changed and no event fires (beyond creating
// missing directories and the lock file): the report lists what would be
// expired and pruned.
func (c *Cache) Expire(ctx context.Context, keep []Item, dryRun bool) (Report, error) {
	var rep Report
	r, done, err := c.begin(ctx, &rep, !dryRun, !dryRun)
	if err != nil {
		return rep, err
	}
	defer done()
	want := make(map[string]string, len(keep))
	for _, it := range keep {
		want[it.UUID] = it.SHA512
	}
	served, err := c.listCurrent()
	if err != nil {
		return rep, fmt.Errorf("cache: %w", err)
	}
	changed := false
	isServed := map[string]bool{}
	for _, v := range served {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		isServed[v.uuid] = true
		digest, ok := want[v.uuid]
		reason := ""
		switch {
		case !ok:
			reason = "no longer wanted"
		case v.m == nil || v.dangling:
			continue // Download repairs or replaces it
		case v.m.SHA512 == digest:
			if _, ok := r.st.Outdated[v.uuid]; ok {
				delete(r.st.Outdated, v.uuid)
				changed = true
			}
			continue
		default:
			o, ok := r.st.Outdated[v.uuid]
			if !ok || o.SHA512 != digest {
				o = outdated{SHA512: digest, Since: r.now}
				r.st.Outdated[v.uuid] = o
				changed = true
			}
			if r.now.Before(o.Since.Add(r.grace)) {
				continue
			}
			reason = "superseded by a version not yet published"
		}
		if dryRun {
			rep.Expired = append(rep.Expired, v.uuid)
			continue
		}
		if err := r.expire(v, reason); err != nil {
			rep.Errors = append(rep.Errors, fmt.Errorf("image %s: %w", v.uuid, err))
		}
	}
	for uuid := range r.st.Outdated {
		if !isServed[uuid] || want[uuid] == "" {
			delete(r.st.Outdated, uuid)
			changed = true
		}
	}
	for uuid, a := range r.st.Attempts {
		if d, ok := want[uuid]; !ok || d != a.SHA512 {
			delete(r.st.Attempts, uuid)
			changed = true
		}
	}
	if !dryRun {
		entries, _ := os.ReadDir(c.PartialDir)
		for _, e := range entries {
			if uuid, d, ok := parsePartial(e.Name()); ok && !strings.HasPrefix(want[uuid], d) {
				if err := forceRemoveAll(filepath.Join(c.PartialDir, e.Name())); err != nil {
					r.log.Warn("cannot remove partial transfer", "path", e.Name(), "err", err)
				}
			}
		}
		if changed {
			if err := c.saveState(r.st); err != nil {
				rep.Errors = append(rep.Errors, fmt.Errorf("cache: state: %w", err))
			}
		}
	}
	if err := r.prune(dryRun); err != nil {
		return rep, err
	}
	return rep, ctx.Err()
}

// Check re-hashes every served version against its record (vmcatcher -s).
// A version that fails (or whose record is missing) is expired like in
// Expire, with the events, and reported in Expired and Errors (matching
// ErrVerify); the next Download fetches the image again. Intact images are
// listed in Verified.
func (c *Cache) Check(ctx context.Context) (Report, error) {
	var rep Report
	r, done, err := c.begin(ctx, &rep, true, true)
	if err != nil {
		return rep, err
	}
	defer done()
	served, err := c.listCurrent()
	if err != nil {
		return rep, fmt.Errorf("cache: %w", err)
	}
	for _, v := range served {
		var verr error
		switch {
		case v.dangling:
			verr = fmt.Errorf("%w: %s: %s points at a missing version", ErrVerify, v.uuid, c.link(v.uuid))
		case v.m == nil:
			verr = fmt.Errorf("%w: %s: %w", ErrVerify, v.uuid, v.merr)
		default:
			verr = verifyTree(ctx, v.uuid, v.dir(c), v.files(), false)
		}
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if verr == nil {
			rep.Verified = append(rep.Verified, v.uuid)
			continue
		}
		r.log.Error("served version is corrupt; expiring it", "uuid", v.uuid, "err", verr)
		rep.Errors = append(rep.Errors, fmt.Errorf("image %s: %w", v.uuid, verr))
		if err := r.expire(v, "failed verification"); err != nil {
			rep.Errors = append(rep.Errors, fmt.Errorf("image %s: %w", v.uuid, err))
		}
	}
	return rep, nil
}

// expire takes one served version out of service: the link goes first (so
// no reader ever resolves a half-moved version), then the version moves to
// ExpiredDir. A kill in between leaves an unreferenced version directory
// that gc deletes after the grace period.
func (r *run) expire(v version, reason string) error {
	c := r.c
	r.log.Info("expiring image", "uuid", v.uuid, "reason", reason)
	r.fire(r.ctx, manifestEvent(events.ExpirePrefix, v, c.link(v.uuid)))
	if err := os.Remove(c.link(v.uuid)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cache: expire %s: %w", v.uuid, err)
	}
	if err := fsutil.SyncDir(c.Dir); err != nil {
		return fmt.Errorf("cache: expire %s: %w", v.uuid, err)
	}
	dest := ""
	src := v.dir(c)
	if v.single != "" {
		src = filepath.Join(src, v.single)
	}
	if !v.dangling && exists(src) {
		var err error
		if dest, err = c.expiredName(v.uuid, r.now); err != nil {
			return err
		}
		if err := moveInto(src, dest); err != nil {
			r.st.Retired = append(r.st.Retired, retired{UUID: v.uuid, D32: v.d32, Since: r.now})
			c.saveState(r.st)
			return fmt.Errorf("cache: expire %s: %w", v.uuid, noSpace(err))
		}
	}
	if exists(v.dir(c)) {
		if err := c.removeVersion(v.uuid, v.d32); err != nil {
			r.log.Warn("cannot remove the rest of an expired version", "uuid", v.uuid, "err", err)
		}
	} else {
		os.Remove(c.manifestPath(v.uuid, v.d32))
	}
	os.Remove(c.uuidDir(v.uuid)) // only when empty
	r.dropRetired(v.uuid, v.d32)
	delete(r.st.Outdated, v.uuid)
	if err := c.saveState(r.st); err != nil {
		r.log.Warn("cannot save cache state", "err", err)
	}
	r.rep.Expired = append(r.rep.Expired, v.uuid)
	r.fire(r.ctx, manifestEvent(events.ExpirePostfix, v, dest))
	return nil
}

// expiredName picks a free name ExpiredDir/<uuid>-<timestamp>[.n].
func (c *Cache) expiredName(uuid string, now time.Time) (string, error) {
	base := filepath.Join(c.ExpiredDir, uuid+"-"+now.UTC().Format(expiredLayout))
	p := base
	for i := 1; exists(p); i++ {
		if i > 1000 {
			return "", fmt.Errorf("cache: no free name for %s in %s", uuid, c.ExpiredDir)
		}
		p = base + "." + strconv.Itoa(i)
	}
	return p, nil
}

// parseExpired splits an ExpiredDir entry name made by expiredName.
func parseExpired(name string) (uuid string, t time.Time, ok bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 {
		return "", t, false
	}
	ts := name[i+1:]
	if j := strings.IndexByte(ts, '.'); j >= 0 {
		if _, err := strconv.Atoi(ts[j+1:]); err != nil {
			return "", t, false
		}
		ts = ts[:j]
	}
	t, err := time.Parse(expiredLayout, ts)
	if err != nil || checkName(name[:i]) != nil {
		return "", t, false
	}
	return name[:i], t, true
}

// prune applies the retention policy to ExpiredDir. Entries not named by
// the cache are left alone.
func (r *run) prune(dryRun bool) error {
	ret := r.c.Retention
	if ret.Keep <= 0 && ret.MaxAge <= 0 {
		return nil
	}
	entries, err := os.ReadDir(r.c.ExpiredDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("cache: %w", err)
	}
	type entry struct {
		name string
		t    time.Time
	}
	groups := map[string][]entry{}
	for _, e := range entries {
		if uuid, t, ok := parseExpired(e.Name()); ok {
			groups[uuid] = append(groups[uuid], entry{e.Name(), t})
		}
	}
	uuids := make([]string, 0, len(groups))
	for u := range groups {
		uuids = append(uuids, u)
	}
	sort.Strings(uuids)
	for _, u := range uuids {
		g := groups[u]
		sort.Slice(g, func(i, j int) bool {
			if !g[i].t.Equal(g[j].t) {
				return g[i].t.After(g[j].t)
			}
			return g[i].name > g[j].name
		})
		for i, e := range g {
			if (ret.Keep > 0 && i >= ret.Keep) || (ret.MaxAge > 0 && r.now.Sub(e.t) > ret.MaxAge) {
				if !dryRun {
					if err := forceRemoveAll(filepath.Join(r.c.ExpiredDir, e.name)); err != nil {
						r.rep.Errors = append(r.rep.Errors, fmt.Errorf("cache: prune %s: %w", e.name, err))
						continue
					}
					r.log.Info("pruned expired version", "name", e.name)
				}
				r.rep.Pruned = append(r.rep.Pruned, e.name)
			}
		}
	}
	return nil
}

// moveInto renames src to dest, copying across file systems when needed
// (into a temporary name first, so dest never holds a partial copy).
func moveInto(src, dest string) error {
	err := os.Rename(src, dest)
	if err == nil || !errors.Is(err, syscall.EXDEV) {
		if err == nil {
			err = fsutil.SyncDir(filepath.Dir(dest))
		}
		return err
	}
	tmp := filepath.Join(filepath.Dir(dest), "."+filepath.Base(dest)+tmpMark+randomSuffix())
	if err := copyTree(src, tmp); err != nil {
		forceRemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, dest); err != nil {
		forceRemoveAll(tmp)
		return err
	}
	if err := fsutil.SyncDir(filepath.Dir(dest)); err != nil {
		return err
	}
	return forceRemoveAll(src)
}

// copyTree copies a file or a tree of directories and regular files.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			return copyFile(p, target)
		default:
			return fmt.Errorf("copy %s: not a regular file", p)
		}
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
