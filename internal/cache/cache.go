// Package cache keeps a subscriber site's published image cache (DESIGN
// section 5b): it stages each wanted image version in a fresh directory,
// verifies every file against its signed size and SHA-512, publishes the
// version with an atomic symlink switch, keeps a replaced version readable
// for a grace period, expires images into the expired directory under a
// retention policy, re-verifies what is served, and fires the
// vmcatcher-compatible events (DESIGN section 7).
//
// Layout (docs/cache.md): Dir/<uuid> is a relative symlink to
// Dir/.clr/v/<uuid>/<digest32> for a folder template, or to
// Dir/.clr/v/<uuid>/<digest32>/<file name> for a single-file image, where
// digest32 is the first 32 hex digits of the image's SHA-512. Version
// directories are immutable once published. Dir/.clr/v/<uuid>/<digest32>.json
// records what a version is (its digest, files and image metadata), and
// Dir/.clr/state.json holds bookkeeping that is not needed for safety:
// replaced versions waiting for their grace period, failed attempts, and
// superseded versions noticed by Expire.
//
// Nothing unverified is ever reachable from Dir/<uuid>, and a failure or a
// kill at any point leaves Dir/<uuid> pointing at a complete verified version
// (the old or the new one) or absent (first install). The next run cleans up.
//
// The package never prints; it logs to Cache.Logger.
package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/clr-suite/clr/events"
	"github.com/clr-suite/clr/internal/imagelist"
)

// Defaults used when the corresponding Cache field is zero.
const (
	DefaultGrace       = time.Hour
	DefaultMaxAttempts = 5
	DefaultFreeMargin  = 64 << 20 // bytes kept free on top of an image's size
)

// Names inside Dir.
const (
	metaName    = ".clr"       // Dir/.clr: everything that is not a served name
	versionsRel = ".clr/v"     // Dir/.clr/v/<uuid>/<digest32>
	trashRel    = ".clr/trash" // versions being deleted
	stateRel    = ".clr/state.json"
	lockName    = ".lock" // PartialDir/.lock
	stageMark   = ".stage-"
	partialExt  = ".partial"
	tmpMark     = ".tmp-"
	digestPart  = 32 // hex digits of the digest in a version directory name
)

// Errors. Per-image errors in Report.Errors and the errors returned by the
// methods match these with errors.Is.
var (
	// ErrLocked: another run holds the cache lock. The message names the
	// holder's process id when it is known.
	ErrLocked = errors.New("cache is locked by another run")
	// ErrVerify: a file is missing, not a regular file, of the wrong size
	// (or grew past its signed size while being read), has the wrong
	// SHA-512, or an unexpected file is present. The message names the
	// image, the file, the expected and the actual value.
	ErrVerify = errors.New("verification failed")
	// ErrNoSpace: the partial directory's file system has too little free
	// space for the image (the message gives the numbers), or a write
	// failed with ENOSPC.
	ErrNoSpace = errors.New("not enough free space")
	// ErrInvalidItem: an Item cannot be cached as given (unusable UUID,
	// malformed digest, file list that does not match the digest, a
	// duplicate UUID in one call).
	ErrInvalidItem = errors.New("invalid cache item")
)

// File is one file of an image version.
type File struct {
	Path   string `json:"path"`   // relative path inside the template, forward slashes; a single-file image: its file name
	Size   int64  `json:"size"`   // signed size in bytes
	SHA512 string `json:"sha512"` // signed SHA-512, 128 lower-case hex digits
}

// Item is one image version the caller wants served.
type Item struct {
	UUID           string // image dc:identifier; the served name Dir/<UUID>
	Subscription   string
	ListIdentifier string
	VO             string
	SHA512         string // image digest: for a single file the file's, for a folder imagelist.FilesDigest
	Size           int64
	URI            string // where to fetch from (hv:uri or a mirror override)
	// Files lists a folder template's files (bytewise sorted, as in the
	// signed list). Nil means a single-file image: the cache uses one File
	// named after the last path element of URI (or "image" when that is
	// not a usable file name), with the item's Size and SHA512.
	Files []File
	Event events.Image // image metadata for the hooks
}

// FetchRequest asks the fetch function to put one image version into Stage.
type FetchRequest struct {
	Item  Item
	Files []File // what must end up in Stage, relative to it; exactly these and nothing else
	// Basis is the directory of the currently published version of the
	// same image (a delta basis, e.g. rsync --copy-dest), "" on a first
	// install. It must only be read.
	Basis string
	// Stage is a fresh empty directory on the cache's file system. The
	// fetch function fills it; the cache verifies and publishes it.
	Stage string
	// PartialDir is a directory for resumable partial transfers of this
	// image version (PartialDir/<uuid>-<digest32>.partial). It survives a
	// failed or killed run and is removed once the version is published.
	// DESIGN 5b: rsync uses it only when Basis is "".
	PartialDir string
}

// FetchStats are the transfer counters of one fetch.
type FetchStats struct {
	WireBytesIn, WireBytesOut  int64
	LiteralBytes, MatchedBytes int64
	Resumed                    bool
}

// FetchFunc fetches one image version into req.Stage. It should stop a file
// that grows past its signed size; the cache verifies everything anyway.
type FetchFunc func(ctx context.Context, req FetchRequest) (FetchStats, error)

// Retention bounds what stays in ExpiredDir, per image UUID. Zero values
// mean no limit.
type Retention struct {
	Keep   int           // keep at most this many expired versions per image (the newest)
	MaxAge time.Duration // remove expired versions older than this
}

// Cache is one cache directory tree and the settings of one run. Methods are
// not safe for concurrent use on the same Cache; separate processes (or
// separate Cache values) exclude each other with Lock.
type Cache struct {
	Dir        string // published tree (vmcatcher -C); created if missing
	PartialDir string // staging and partial transfers (-p); created if missing; same file system as Dir
	ExpiredDir string // expired versions (-e); created if missing
	Fetch      FetchFunc
	// Hook is called for every event; nil means none. Its errors are
	// logged and never stop the run.
	Hook   func(ctx context.Context, ev events.Event) error
	Logger *slog.Logger // nil: discard
	// Now is the run's reference time; zero means the wall clock, read
	// once per call.
	Now time.Time
	// Grace is how long a replaced version stays readable, and how long
	// Expire keeps serving a version whose image has a new digest that was
	// not yet published. Zero (or negative) means DefaultGrace.
	Grace time.Duration
	// MaxAttempts is the number of failed fetch or verification attempts
	// per image digest after which the image is skipped (with a warning)
	// until its digest changes. Zero (or negative) means DefaultMaxAttempts.
	MaxAttempts int
	Retention   Retention
	Session     string // the run's session id, copied into every event
	// FreeMargin is kept free on the partial directory's file system on
	// top of an image's size; zero means DefaultFreeMargin, negative none.
	FreeMargin int64

	lock *os.File // held flock, set by Lock
}

// Report says what a call did. Image lists hold UUIDs.
type Report struct {
	Published []string // made the served version (fetched, or a verified leftover adopted)
	Unchanged []string // already served with the wanted digest
	Failed    []string // could not be published (see Errors); the served tree is untouched
	Expired   []string // moved to ExpiredDir (with dryRun: would be)
	Skipped   []string // attempt limit reached for this digest
	Verified  []string // Check: re-hashed and intact
	Removed   []string // "<uuid>/<digest32>" replaced versions deleted after their grace period
	Pruned    []string // ExpiredDir entries deleted by retention (with dryRun: would be)

	WireBytesIn, WireBytesOut, LiteralBytes, MatchedBytes int64
	Resumed                                               int // fetches that resumed a partial transfer

	Errors []error // one per failed image or problem, each matching the package errors where it applies
}

// spec is a validated Item.
type spec struct {
	it     Item
	d32    string
	files  []File // relative to the version directory
	single string // file name of a single-file image, "" for a folder
}

func (c *Cache) specOf(it Item) (spec, error) {
	s := spec{it: it}
	if err := checkName(it.UUID); err != nil {
		return s, fmt.Errorf("%w: uuid %q: %s", ErrInvalidItem, it.UUID, err)
	}
	if !isLowerHex(it.SHA512, 128) {
		return s, fmt.Errorf("%w: %s: sha512 is not 128 lower-case hex digits", ErrInvalidItem, it.UUID)
	}
	if it.Size < 0 {
		return s, fmt.Errorf("%w: %s: negative size", ErrInvalidItem, it.UUID)
	}
	s.d32 = it.SHA512[:digestPart]
	if it.Files == nil {
		s.single = singleName(it.URI)
		s.files = []File{{Path: s.single, Size: it.Size, SHA512: it.SHA512}}
		return s, nil
	}
	lf := make([]imagelist.File, len(it.Files))
	for i, f := range it.Files {
		lf[i] = imagelist.File{Path: f.Path, Size: f.Size, SHA512: f.SHA512}
	}
	size, digest, err := imagelist.FilesDigest(lf)
	if err != nil {
		return s, fmt.Errorf("%w: %s: %w", ErrInvalidItem, it.UUID, err)
	}
	if digest != it.SHA512 || size != it.Size {
		return s, fmt.Errorf("%w: %s: the file list gives size %d and sha512 %s, the image says size %d and sha512 %s",
			ErrInvalidItem, it.UUID, size, digest, it.Size, it.SHA512)
	}
	s.files = append([]File(nil), it.Files...)
	return s, nil
}

// checkName accepts a UUID (or file name) that is safe as one path element
// of the served tree.
func checkName(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) > 200:
		return errors.New("longer than 200 bytes")
	case strings.HasPrefix(s, "."):
		return errors.New("starts with a dot")
	case strings.ContainsAny(s, "/\\"):
		return errors.New("contains a slash")
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("contains a control character")
	}
	return nil
}

// singleName is the file name of a single-file image: the URI's last path
// element (query and fragment removed, percent-escapes decoded), or
// "image" when that is not a usable name.
func singleName(uri string) string {
	s, _, _ := strings.Cut(uri, "#")
	s, _, _ = strings.Cut(s, "?")
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.Contains(uri, "/") {
		s = s[i+1:] // host:file
	}
	if u, err := url.PathUnescape(s); err == nil {
		s = u
	}
	if checkName(s) != nil {
		return "image"
	}
	return s
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !('0' <= s[i] && s[i] <= '9' || 'a' <= s[i] && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// Paths.

func (c *Cache) link(uuid string) string          { return filepath.Join(c.Dir, uuid) }
func (c *Cache) uuidDir(uuid string) string       { return filepath.Join(c.Dir, versionsRel, uuid) }
func (c *Cache) versionDir(uuid, d string) string { return filepath.Join(c.Dir, versionsRel, uuid, d) }
func (c *Cache) manifestPath(uuid, d string) string {
	return filepath.Join(c.Dir, versionsRel, uuid, d+".json")
}
func (c *Cache) partialPath(uuid, d string) string {
	return filepath.Join(c.PartialDir, uuid+"-"+d+partialExt)
}

// linkTarget is the relative symlink target of Dir/<uuid>.
func linkTarget(uuid, d, single string) string {
	t := versionsRel + "/" + uuid + "/" + d
	if single != "" {
		t += "/" + single
	}
	return t
}

func (c *Cache) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

func (c *Cache) grace() time.Duration {
	if c.Grace <= 0 {
		return DefaultGrace
	}
	return c.Grace
}

func (c *Cache) maxAttempts() int {
	if c.MaxAttempts <= 0 {
		return DefaultMaxAttempts
	}
	return c.MaxAttempts
}

func (c *Cache) freeMargin() int64 {
	switch {
	case c.FreeMargin == 0:
		return DefaultFreeMargin
	case c.FreeMargin < 0:
		return 0
	}
	return c.FreeMargin
}

func (c *Cache) now() time.Time {
	if c.Now.IsZero() {
		return time.Now().UTC()
	}
	return c.Now.UTC()
}

// Published returns what is served: image UUID -> SHA-512 of the version
// Dir/<uuid> points at. Links whose version or record is missing are left
// out (Download repairs them). It takes no lock.
func (c *Cache) Published() (map[string]string, error) {
	vs, err := c.listCurrent()
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(vs))
	for _, v := range vs {
		if v.m != nil && !v.dangling {
			out[v.uuid] = v.m.SHA512
		}
	}
	return out, nil
}

// Served describes one published image version, from its record.
type Served struct {
	UUID     string
	SHA512   string
	Digest32 string // the version's directory name under the version store
	// Dir is the absolute path of the version directory; every file of
	// Files is Dir/<Path>, also for a single-file image. Versions are
	// immutable: nothing under Dir changes while it exists.
	Dir    string
	Single bool   // a single-file image (Files has one entry)
	Files  []File // relative to Dir
	Image  events.Image
}

// VersionStore is the directory that holds every immutable version
// (Dir/.clr/v): a server that follows links into it may serve what is in it.
func (c *Cache) VersionStore() string { return filepath.Join(c.Dir, versionsRel) }

// Served returns every published version (sorted by UUID) with its files,
// read from the records only: no content is read. Links whose version or
// record is missing are left out. It takes no lock.
func (c *Cache) Served() ([]Served, error) {
	vs, err := c.listCurrent()
	if err != nil {
		return nil, err
	}
	out := make([]Served, 0, len(vs))
	for _, v := range vs {
		if v.m == nil || v.dangling {
			continue
		}
		s := Served{
			UUID:     v.uuid,
			SHA512:   v.m.SHA512,
			Digest32: v.d32,
			Dir:      v.dir(c),
			Single:   v.single != "",
			Files:    append([]File(nil), v.m.Files...),
			Image:    v.m.Image,
		}
		out = append(out, s)
	}
	return out, nil
}

// ExtendGrace restarts the grace period of the versions retired at or
// after since (this run) at at: a version replaced early in a long run
// stays readable for the whole grace period after the moment a catalog
// (the content library) stops naming it, not after the run began. The
// caller holds the lock.
func (c *Cache) ExtendGrace(ctx context.Context, since, at time.Time) error {
	unlock, err := c.ensureLocked(ctx, false)
	if err != nil {
		return err
	}
	defer unlock()
	st := c.loadState()
	changed := false
	for i, rv := range st.Retired {
		if !rv.Since.Before(since) && rv.Since.Before(at) {
			st.Retired[i].Since = at
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if err := c.saveState(st); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}
