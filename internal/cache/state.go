package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/clr-suite/clr/events"
	"github.com/clr-suite/clr/internal/fsutil"
)

const (
	stateVersion    = 1
	manifestVersion = 1
	maxMetaFile     = 64 << 20 // cap on reading state.json and version records
)

// state is Dir/.clr/state.json. Losing it is safe: what is served is
// defined by the symlinks and version records alone.
type state struct {
	Version int `json:"version"`
	// Retired lists versions that are no longer served, with the time
	// they stopped being served (or were first found unreferenced). They
	// are deleted once the grace period has passed.
	Retired []retired `json:"retired,omitempty"`
	// Attempts counts failed attempts per image, for its current digest.
	Attempts map[string]attempt `json:"attempts,omitempty"`
	// Outdated records, per served image, when Expire first saw that the
	// wanted digest differs from the served one.
	Outdated map[string]outdated `json:"outdated,omitempty"`
}

type retired struct {
	UUID  string    `json:"uuid"`
	D32   string    `json:"digest32"`
	Since time.Time `json:"since"`
}

type attempt struct {
	SHA512 string    `json:"sha512"`
	Count  int       `json:"count"`
	Last   time.Time `json:"last"`
	Error  string    `json:"error,omitempty"`
}

type outdated struct {
	SHA512 string    `json:"sha512"` // the wanted digest
	Since  time.Time `json:"since"`
}

// manifest is Dir/.clr/v/<uuid>/<digest32>.json: what a version is. It is
// written (fsynced) before the version directory appears under that name,
// and never changed afterwards (except rewritten identically on adoption).
type manifest struct {
	Version        int          `json:"version"`
	UUID           string       `json:"uuid"`
	SHA512         string       `json:"sha512"`
	Size           int64        `json:"size"`
	Single         string       `json:"single,omitempty"` // file name of a single-file image
	Files          []File       `json:"files"`
	Published      time.Time    `json:"published"`
	Subscription   string       `json:"subscription,omitempty"`
	ListIdentifier string       `json:"list_identifier,omitempty"`
	VO             string       `json:"vo,omitempty"`
	Image          events.Image `json:"image"`
}

func (c *Cache) loadState() *state {
	st := &state{Version: stateVersion}
	data, err := fsutil.ReadFileCapped(filepath.Join(c.Dir, stateRel), maxMetaFile)
	if err == nil {
		err = json.Unmarshal(data, st)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		// Nothing in the state is needed for safety: start afresh
		// (unreferenced versions are found again by gc).
		c.logger().Warn("cache state unreadable, starting with an empty one", "path", filepath.Join(c.Dir, stateRel), "err", err)
		st = &state{Version: stateVersion}
	}
	if st.Attempts == nil {
		st.Attempts = map[string]attempt{}
	}
	if st.Outdated == nil {
		st.Outdated = map[string]outdated{}
	}
	return st
}

func (c *Cache) saveState(st *state) error {
	st.Version = stateVersion
	sort.Slice(st.Retired, func(i, j int) bool {
		a, b := st.Retired[i], st.Retired[j]
		if a.UUID != b.UUID {
			return a.UUID < b.UUID
		}
		return a.D32 < b.D32
	})
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return noSpace(fsutil.WriteAtomic(filepath.Join(c.Dir, stateRel), append(data, '\n'), 0o644))
}

func (c *Cache) writeManifest(s spec, now time.Time) error {
	m := manifest{
		Version: manifestVersion, UUID: s.it.UUID, SHA512: s.it.SHA512, Size: s.it.Size,
		Single: s.single, Files: s.files, Published: now,
		Subscription: s.it.Subscription, ListIdentifier: s.it.ListIdentifier, VO: s.it.VO,
		Image: eventImage(s.it),
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return noSpace(fsutil.WriteAtomic(c.manifestPath(s.it.UUID, s.d32), append(data, '\n'), 0o644))
}

func (c *Cache) readManifest(uuid, d string) (*manifest, error) {
	data, err := fsutil.ReadFileCapped(c.manifestPath(uuid, d), maxMetaFile)
	if err != nil {
		return nil, err
	}
	m := &manifest{}
	if err := json.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("version record %s: %w", c.manifestPath(uuid, d), err)
	}
	if m.UUID != uuid || !isLowerHex(m.SHA512, 128) || m.SHA512[:digestPart] != d || len(m.Files) == 0 {
		return nil, fmt.Errorf("version record %s does not describe %s/%s", c.manifestPath(uuid, d), uuid, d)
	}
	if m.Single != "" && (len(m.Files) != 1 || m.Files[0].Path != m.Single) {
		return nil, fmt.Errorf("version record %s: inconsistent single-file entry", c.manifestPath(uuid, d))
	}
	return m, nil
}

// version is what Dir/<uuid> points at.
type version struct {
	uuid, d32 string
	single    string    // file name for a single-file link, "" for a folder link
	m         *manifest // nil when the record is missing or does not match
	merr      error
	dangling  bool // the version directory does not exist
}

func (v version) dir(c *Cache) string { return c.versionDir(v.uuid, v.d32) }

// files is what the version should contain, from its record.
func (v version) files() []File { return v.m.Files }

// current reads Dir/<uuid>. ok is false when there is no entry or the entry
// was not made by the cache (a plain file, a directory, a foreign symlink);
// kind then says what it is ("" when absent).
func (c *Cache) current(uuid string) (v version, ok bool, kind string) {
	p := c.link(uuid)
	fi, err := os.Lstat(p)
	if err != nil {
		return v, false, ""
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		if fi.IsDir() {
			return v, false, "directory"
		}
		return v, false, "file"
	}
	target, err := os.Readlink(p)
	if err != nil {
		return v, false, "symlink"
	}
	rest, found := strings.CutPrefix(target, versionsRel+"/"+uuid+"/")
	if !found {
		return v, false, "symlink"
	}
	d, single, _ := strings.Cut(rest, "/")
	if !isLowerHex(d, digestPart) || strings.Contains(single, "/") || (single != "" && checkName(single) != nil) {
		return v, false, "symlink"
	}
	v = version{uuid: uuid, d32: d, single: single}
	if _, err := os.Lstat(v.dir(c)); err != nil {
		v.dangling = true
	}
	m, err := c.readManifest(uuid, d)
	switch {
	case err != nil:
		v.merr = err
	case m.Single != single:
		v.merr = fmt.Errorf("version record %s does not match the link %s", c.manifestPath(uuid, d), p)
	default:
		v.m = m
	}
	return v, true, "symlink"
}

// listCurrent returns every cache-made link in Dir, sorted by UUID.
func (c *Cache) listCurrent() ([]version, error) {
	entries, err := os.ReadDir(c.Dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []version
	for _, e := range entries {
		if e.Type()&fs.ModeSymlink == 0 || checkName(e.Name()) != nil {
			continue
		}
		if v, ok, _ := c.current(e.Name()); ok {
			out = append(out, v)
		}
	}
	return out, nil
}

// gc deletes retired versions whose grace period has passed, then retires
// version directories that nothing references (leftovers of a crash) with
// the current time, so they too survive at least one grace period and can
// still be adopted by Download. Orphan version records and empty
// directories are removed.
func (r *run) gc() error {
	c := r.c
	cur, err := c.listCurrent()
	if err != nil {
		return err
	}
	served := map[string]string{}
	for _, v := range cur {
		served[v.uuid] = v.d32
	}
	changed := false
	var keep []retired
	for _, rv := range r.st.Retired {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		switch {
		case checkName(rv.UUID) != nil || !isLowerHex(rv.D32, digestPart):
			changed = true
		case served[rv.UUID] == rv.D32: // served again
			changed = true
		case !exists(c.versionDir(rv.UUID, rv.D32)):
			os.Remove(c.manifestPath(rv.UUID, rv.D32))
			changed = true
		case !r.now.Before(rv.Since.Add(r.grace)):
			if err := c.removeVersion(rv.UUID, rv.D32); err != nil {
				r.log.Warn("cannot remove replaced version", "uuid", rv.UUID, "version", rv.D32, "err", err)
				keep = append(keep, rv)
				continue
			}
			r.log.Info("removed replaced version after its grace period", "uuid", rv.UUID, "version", rv.D32)
			r.rep.Removed = append(r.rep.Removed, rv.UUID+"/"+rv.D32)
			changed = true
		default:
			keep = append(keep, rv)
		}
	}
	r.st.Retired = keep

	uuids, err := os.ReadDir(filepath.Join(c.Dir, versionsRel))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, ud := range uuids {
		uuid := ud.Name()
		if !ud.IsDir() || checkName(uuid) != nil {
			continue
		}
		entries, err := os.ReadDir(c.uuidDir(uuid))
		if err != nil {
			return err
		}
		live := 0
		for _, e := range entries {
			name := e.Name()
			switch {
			case e.IsDir() && isLowerHex(name, digestPart):
				live++
				if served[uuid] == name || slices.ContainsFunc(r.st.Retired, func(rv retired) bool { return rv.UUID == uuid && rv.D32 == name }) {
					continue
				}
				r.log.Info("found an unreferenced version; it is removed after the grace period unless adopted", "uuid", uuid, "version", name)
				r.st.Retired = append(r.st.Retired, retired{UUID: uuid, D32: name, Since: r.now})
				changed = true
			case strings.HasSuffix(name, ".json") && isLowerHex(strings.TrimSuffix(name, ".json"), digestPart):
				if !exists(c.versionDir(uuid, strings.TrimSuffix(name, ".json"))) {
					os.Remove(filepath.Join(c.uuidDir(uuid), name))
				} else {
					live++
				}
			default:
				live++ // temporary files are cleanup's business; anything else is left alone
			}
		}
		if live == 0 && served[uuid] == "" {
			os.Remove(c.uuidDir(uuid))
		}
	}
	if changed {
		return c.saveState(r.st)
	}
	return nil
}

// removeVersion deletes a version that is not served: the directory is
// first renamed into the trash (so a half-deleted tree never sits under a
// version name), then its record, then the trash copy.
func (c *Cache) removeVersion(uuid, d string) error {
	trash := filepath.Join(c.Dir, trashRel)
	if err := os.MkdirAll(trash, 0o755); err != nil {
		return err
	}
	dst := filepath.Join(trash, uuid+"-"+d+"-"+randomSuffix())
	if err := os.Rename(c.versionDir(uuid, d), dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := fsutil.SyncDir(c.uuidDir(uuid)); err != nil {
		return err
	}
	if err := os.Remove(c.manifestPath(uuid, d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return forceRemoveAll(dst)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
