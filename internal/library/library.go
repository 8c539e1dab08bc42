// Package library owns the served library tree: the vSphere Content Library
// (VCSP) manifests and the links from it into the cache's immutable
// versions, regenerated from the published versions and the catalog state
// kept in the database (DESIGN 8).
//
// Layout of Dir (the web root that `clr-cache serve` exports):
//
//	lib.json                          written last, atomically
//	items.json
//	<image-uuid>/item.json            one folder per image
//	<image-uuid>/<digest32>/<file>    symlink to the cache's version file
//
// Decisions:
//
//   - Items are keyed by image identifier, not by folder or title: a title
//     change renames the item (its version grows), its id stays. The folder
//     is the image UUID, which never changes.
//   - Every content version is served under its own path (<digest32>), so a
//     subscriber holding an older items.json still reads the files that
//     manifest describes, never a mix; old version paths disappear when the
//     cache drops the version (after its grace period).
//   - Ids ("urn:uuid:"), created times and versions live only in the
//     database: they are never derived from the served tree, so nothing a
//     sync does to the tree can reset them. A removed item keeps its row; if
//     the image comes back it gets its old id and a higher version.
//   - An item's version grows when its file set, a file's size or SHA-512,
//     its name, description or type changes; the library version grows when
//     any item was added, removed or changed, or the library's name or
//     description changed. Nothing else moves a version.
//   - etags are per file: the item version at which that file last changed
//     (a decimal integer, what vCenter parses). Unchanged files of a changed
//     item keep their etag.
//   - No content is read: sizes and digests come from the cache's records
//     (verified against the signed list when published). When nothing
//     changed and the last write completed, no file is written at all.
//   - Item names must be unique in a vSphere library: equal titles get
//     " (<first 8 of the UUID>)" appended.
package library

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/clr-suite/clr/internal/fsutil"
	"github.com/clr-suite/clr/internal/manifest/vcsp"
	"github.com/clr-suite/clr/internal/store"
)

// Kind is the catalog kind of the vSphere library in the store.
const Kind = "vcsp"

// DefaultName is the library name when none is configured (content-library-rsync's).
const DefaultName = "Library"

// ErrInvalidImage: an image cannot be described in the library.
var ErrInvalidImage = errors.New("invalid library image")

// File is one file of a published image version.
type File struct {
	Path   string // relative to the version directory, forward slashes
	Size   int64
	SHA512 string
}

// Image is one published image version.
type Image struct {
	UUID        string // image identifier, the item's key and folder
	SHA512      string
	Digest32    string // the version's short digest; part of every file href
	Dir         string // absolute path of the immutable version directory
	Title       string // item name; "" = the UUID
	Description string
	Files       []File
	// LinkOnly images are linked into the tree (served, e.g. for a
	// simplestreams catalog) but are not content library items.
	LinkOnly bool
}

// Options are the settings of one Update.
type Options struct {
	Dir         string    // the library root; created if missing
	Name        string    // library name; "" = DefaultName
	Description string    // library description
	Now         time.Time // the run's reference time (created times of new ids)
	// NewID returns a fresh canonical lower-case UUID (without "urn:uuid:").
	NewID  func() (string, error)
	Logger *slog.Logger
	// Clock, if set, is read once for the prune step (the moment the new
	// manifests are out); nil means Now.
	Clock func() time.Time
	// Grace is how long a version path stays after no manifest names it
	// any more (readers of the previous manifests: vCenter mid-sync, LXD
	// and Incus cache their index for an hour). Zero means one hour.
	Grace time.Duration
}

// Result says what Update did.
type Result struct {
	Version int64    // library version after the update
	Changed bool     // the version grew
	Written bool     // manifest files were written
	Added   []string // image UUIDs
	Updated []string
	Removed []string
	Items   int      // items in the library
	Pruned  []string // "<uuid>/<digest32>" version paths removed (their cache version is gone)
	Skipped []string // images left out: they cannot be served as a library item (logged)
}

// Update brings the catalog state and the library tree in line with the
// published images. It must run under the cache lock (one writer).
func Update(ctx context.Context, st *store.Store, images []Image, opts Options) (Result, error) {
	var res Result
	if opts.Dir == "" {
		return res, errors.New("library: no directory")
	}
	if opts.Now.IsZero() {
		return res, errors.New("library: no reference time")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// An image the library cannot describe is left out (and logged), never
	// allowed to stop the whole library: the rest keeps being updated.
	usable := images[:0:0]
	var linkOnly []Image
	for _, im := range images {
		if err := checkImage(im); err != nil {
			log.Error("image left out of the content library", "uuid", im.UUID, "err", err)
			res.Skipped = append(res.Skipped, im.UUID)
			continue
		}
		if im.LinkOnly {
			linkOnly = append(linkOnly, im)
			continue
		}
		usable = append(usable, im)
	}
	images = usable
	prev, err := st.LoadCatalog(ctx, Kind)
	found := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return res, fmt.Errorf("library: %w", err)
	}
	next, changed, err := Next(prev, found, images, opts)
	if err != nil {
		return res, err
	}
	skipped := res.Skipped
	res = summarize(prev, next, changed)
	res.Skipped = skipped
	if next.Version != prev.Version {
		if err := st.SaveCatalog(ctx, next, changed); err != nil {
			return res, fmt.Errorf("library: %w", err)
		}
	}
	res.Version = next.Version

	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return res, fmt.Errorf("library: %w", err)
	}
	_, statErr := os.Stat(filepath.Join(opts.Dir, vcsp.LibFile))
	complete := prev.WrittenVersion == prev.Version && found && statErr == nil
	if next.WrittenVersion < next.Version || statErr != nil {
		only := map[string]bool{}
		if complete { // the previous write finished: rewrite what changed
			for _, it := range changed {
				only[it.Image] = true
			}
		} else {
			only = nil // rewrite everything
		}
		if err := write(ctx, opts.Dir, next, images, only); err != nil {
			return res, err
		}
		if err := st.MarkCatalogWritten(ctx, Kind, next.Version); err != nil {
			return res, fmt.Errorf("library: %w", err)
		}
		res.Written = true
		log.Info("library manifests written", "version", next.Version, "items", res.Items,
			"added", len(res.Added), "updated", len(res.Updated), "removed", len(res.Removed))
	}
	current := map[string]string{}
	for _, it := range next.Items {
		if it.Present && len(it.Files) > 0 {
			d, _, _ := strings.Cut(it.Files[0].Href, "/")
			current[it.Image] = d
		}
	}
	// Every served version's links are checked on every run, not only
	// those of changed items: a version the cache re-fetched after a
	// failed check (same digest, new file) must not stay served through a
	// hard link to the old, corrupt file.
	for _, im := range append(append([]Image(nil), images...), linkOnly...) {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := linkVersion(opts.Dir, im); err != nil {
			return res, err
		}
	}
	for _, im := range linkOnly {
		current[im.UUID] = im.Digest32
	}
	grace := opts.Grace
	if grace <= 0 {
		grace = time.Hour
	}
	pruneAt := opts.Now
	if opts.Clock != nil {
		pruneAt = opts.Clock() // the grace starts when the manifests changed, not when the run began
	}
	pruned, err := prune(opts.Dir, current, pruneAt, grace)
	res.Pruned = pruned
	if err != nil {
		return res, err
	}
	return res, nil
}

// Next computes the catalog after publishing images (pure: no I/O besides
// opts.NewID). It returns the new catalog (with all items) and the items
// whose rows changed. found says whether prev exists.
func Next(prev store.Catalog, found bool, images []Image, opts Options) (store.Catalog, []store.CatalogItem, error) {
	name := opts.Name
	if name == "" {
		name = DefaultName
	}
	newID := func() (string, error) {
		id, err := opts.NewID()
		if err != nil {
			return "", fmt.Errorf("library: new id: %w", err)
		}
		return "urn:uuid:" + id, nil
	}
	next := store.Catalog{Kind: Kind, Name: name, Description: opts.Description}
	if found {
		next.ID, next.Created, next.Version, next.WrittenVersion = prev.ID, prev.Created, prev.Version, prev.WrittenVersion
	} else {
		id, err := newID()
		if err != nil {
			return next, nil, err
		}
		next.ID, next.Created = id, opts.Now.UTC().Truncate(time.Minute)
	}
	old := make(map[string]store.CatalogItem, len(prev.Items))
	for _, it := range prev.Items {
		old[it.Image] = it
	}
	imgs := append([]Image(nil), images...)
	sort.Slice(imgs, func(i, j int) bool { return imgs[i].UUID < imgs[j].UUID })
	names := uniqueNames(imgs)

	var changed []store.CatalogItem
	seen := make(map[string]bool, len(imgs))
	for _, im := range imgs {
		if err := checkImage(im); err != nil {
			return next, nil, err
		}
		if seen[im.UUID] {
			return next, nil, fmt.Errorf("library: image %s listed twice: %w", im.UUID, ErrInvalidImage)
		}
		seen[im.UUID] = true
		files := make([]store.CatalogFile, len(im.Files))
		fnames := make([]string, len(im.Files))
		for i, f := range im.Files {
			files[i] = store.CatalogFile{Name: f.Path, Size: f.Size, SHA512: f.SHA512, Href: im.Digest32 + "/" + f.Path}
			fnames[i] = f.Path
		}
		sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
		it := store.CatalogItem{
			Image: im.UUID, Name: names[im.UUID], Description: im.Description,
			Type: vcsp.TypeOf(fnames), Folder: im.UUID, Files: files, Present: true,
		}
		o, had := old[im.UUID]
		switch {
		case !had:
			id, err := newID()
			if err != nil {
				return next, nil, err
			}
			it.ID, it.Created, it.Version = id, opts.Now.UTC().Truncate(time.Minute), 1
			for i := range it.Files {
				it.Files[i].Etag = 1
			}
			changed = append(changed, it)
		case sameItem(o, it):
			it = o
		default:
			it.ID, it.Created, it.Version = o.ID, o.Created, o.Version+1
			prevFiles := make(map[string]store.CatalogFile, len(o.Files))
			for _, f := range o.Files {
				prevFiles[f.Name] = f
			}
			for i, f := range it.Files {
				if p, ok := prevFiles[f.Name]; ok && o.Present && p.Size == f.Size && p.SHA512 == f.SHA512 && p.Etag > 0 {
					it.Files[i].Etag = p.Etag
				} else {
					it.Files[i].Etag = it.Version
				}
			}
			changed = append(changed, it)
		}
		next.Items = append(next.Items, it)
	}
	for _, o := range prev.Items {
		if seen[o.Image] {
			continue
		}
		if o.Present {
			o.Present = false
			o.Version++
			changed = append(changed, o)
		}
		next.Items = append(next.Items, o)
	}
	sort.Slice(next.Items, func(i, j int) bool { return next.Items[i].Image < next.Items[j].Image })
	sort.Slice(changed, func(i, j int) bool { return changed[i].Image < changed[j].Image })
	if !found || len(changed) > 0 || next.Name != prev.Name || next.Description != prev.Description {
		next.Version++
	}
	return next, changed, nil
}

func sameItem(o, n store.CatalogItem) bool {
	if !o.Present || o.Name != n.Name || o.Description != n.Description || o.Type != n.Type ||
		o.Folder != n.Folder || len(o.Files) != len(n.Files) {
		return false
	}
	for i := range o.Files {
		a, b := o.Files[i], n.Files[i]
		if a.Name != b.Name || a.Size != b.Size || a.SHA512 != b.SHA512 || a.Href != b.Href {
			return false
		}
	}
	return true
}

// uniqueNames gives every image a display name unique in the library,
// after truncation to vcsp.MaxNameLen: equal names get " (<first 8 of
// the UUID>)", and if that still collides, the whole UUID.
func uniqueNames(imgs []Image) map[string]string {
	base := make(map[string]string, len(imgs))
	count := map[string]int{}
	for _, im := range imgs {
		n := strings.TrimSpace(strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return ' '
			}
			return r
		}, strings.ToValidUTF8(im.Title, "?")))
		if n == "" {
			n = im.UUID
		}
		n = vcsp.TruncateName(n)
		base[im.UUID] = n
		count[n]++
	}
	with := func(n, suffix string) string {
		r := []rune(n)
		if max := vcsp.MaxNameLen - len([]rune(suffix)); len(r) > max {
			r = r[:max]
		}
		return string(r) + suffix
	}
	out := make(map[string]string, len(imgs))
	used := map[string]int{}
	for _, im := range imgs {
		n := base[im.UUID]
		if count[n] > 1 {
			short := im.UUID
			if len(short) > 8 {
				short = short[:8]
			}
			n = with(n, " ("+short+")")
		}
		out[im.UUID] = n
		used[n]++
	}
	for _, im := range imgs { // still equal (a title that looks like a suffix)
		if n := out[im.UUID]; used[n] > 1 {
			out[im.UUID] = with(base[im.UUID], " ("+im.UUID+")")
		}
	}
	return out
}

func checkImage(im Image) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("library: image %q: %s: %w", im.UUID, fmt.Sprintf(format, a...), ErrInvalidImage)
	}
	if !safeSegment(im.UUID) {
		return bad("unusable identifier as a folder name")
	}
	if !digestShaped(im.Digest32) {
		return bad("unusable digest %q", im.Digest32)
	}
	if !filepath.IsAbs(im.Dir) {
		return bad("version directory %q is not absolute", im.Dir)
	}
	if len(im.Files) == 0 {
		return bad("no files")
	}
	for _, f := range im.Files {
		if f.Path == "" || path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || strings.HasPrefix(f.Path, "../") ||
			f.Path == ".." || strings.Contains(f.Path, "\\") {
			return bad("unusable file path %q", f.Path)
		}
		for _, seg := range strings.Split(f.Path, "/") {
			if strings.HasPrefix(seg, ".") {
				return bad("file %q has a hidden name segment, which is never served", f.Path)
			}
		}
	}
	return nil
}

func safeSegment(s string) bool {
	if s == "" || s == "." || s == ".." || strings.HasPrefix(s, ".") || s == vcsp.LibFile || s == vcsp.ItemsFile {
		return false
	}
	return !strings.ContainsAny(s, "/\\\x00")
}

func summarize(prev, next store.Catalog, changed []store.CatalogItem) Result {
	var r Result
	was := map[string]bool{}
	for _, it := range prev.Items {
		if it.Present {
			was[it.Image] = true
		}
	}
	for _, it := range changed {
		switch {
		case !it.Present:
			r.Removed = append(r.Removed, it.Image)
		case was[it.Image]:
			r.Updated = append(r.Updated, it.Image)
		default:
			r.Added = append(r.Added, it.Image)
		}
	}
	for _, it := range next.Items {
		if it.Present {
			r.Items++
		}
	}
	r.Changed = next.Version != prev.Version
	return r
}

// render turns the catalog into the vcsp model (present items only).
func render(c store.Catalog) (map[string][]byte, error) {
	lib := vcsp.Library{ID: c.ID, Name: c.Name, Description: c.Description, Created: c.Created, Version: c.Version}
	for _, it := range c.Items {
		if !it.Present {
			continue
		}
		vi := vcsp.Item{ID: it.ID, Name: it.Name, Description: it.Description, Type: it.Type,
			Created: it.Created, Version: it.Version, Folder: it.Folder}
		for _, f := range it.Files {
			vi.Files = append(vi.Files, vcsp.File{Name: f.Name, Size: f.Size, Etag: f.Etag, Href: f.Href})
		}
		lib.Items = append(lib.Items, vi)
	}
	out, err := vcsp.Render(lib)
	if err != nil {
		return nil, fmt.Errorf("library: %w", err)
	}
	return out, nil
}

// write puts the links of every present item, then the item manifests
// (all, or those in only), then items.json, then lib.json, each atomically.
func write(ctx context.Context, dir string, c store.Catalog, images []Image, only map[string]bool) error {
	files, err := render(c)
	if err != nil {
		return err
	}
	byUUID := make(map[string]Image, len(images))
	for _, im := range images {
		byUUID[im.UUID] = im
	}
	for _, it := range c.Items {
		if !it.Present || (only != nil && !only[it.Image]) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := linkVersion(dir, byUUID[it.Image]); err != nil {
			return err
		}
	}
	for _, p := range vcsp.WriteOrder(keys(files)) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if path.Base(p) == vcsp.ItemFile && only != nil && !only[path.Dir(p)] {
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("library: %w", err)
		}
		if err := fsutil.WriteAtomic(dst, files[p], 0o644); err != nil {
			return fmt.Errorf("library: write %s: %w", p, err)
		}
	}
	return nil
}

func keys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// linkVersion makes <dir>/<uuid>/<digest32>/<file> relative symlinks to the
// version's files. Existing correct links are kept; a link is replaced
// atomically (rename over it).
func linkVersion(dir string, im Image) error {
	vdir := filepath.Join(dir, im.UUID, im.Digest32)
	changed := false
	// The marker says the library made this version path: prune removes
	// only such paths (a hidden file, never served). Its presence also
	// means the folder exists.
	if _, err := os.Lstat(filepath.Join(vdir, versionMarker)); err != nil {
		if err := os.MkdirAll(vdir, 0o755); err != nil {
			return fmt.Errorf("library: %w", err)
		}
		if err := os.WriteFile(filepath.Join(vdir, versionMarker), nil, 0o644); err != nil {
			return fmt.Errorf("library: %w", err)
		}
		changed = true
	}
	for _, f := range im.Files {
		link := filepath.Join(vdir, filepath.FromSlash(f.Path))
		target := filepath.Join(im.Dir, filepath.FromSlash(f.Path))
		// fast path (every run, every file): the hard link is in place
		a, lerr := os.Lstat(link)
		if lerr == nil && a.Mode()&fs.ModeSymlink == 0 {
			if b, err := os.Stat(target); err == nil && os.SameFile(a, b) {
				continue
			}
		}
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			return fmt.Errorf("library: %w", err)
		}
		rel, err := relTarget(filepath.Dir(link), target)
		if err != nil {
			return err
		}
		if lerr == nil && a.Mode()&fs.ModeSymlink != 0 {
			if cur, err := os.Readlink(link); err == nil && cur == rel {
				continue
			}
		}
		tmp := link + ".tmp-link"
		_ = os.Remove(tmp)
		// A hard link keeps the bytes readable for the grace period even
		// after the cache expires the version (readers of the previous
		// index); across file systems, a relative symlink.
		if err := os.Link(target, tmp); err != nil {
			if err := os.Symlink(rel, tmp); err != nil {
				return fmt.Errorf("library: link %s: %w", f.Path, err)
			}
		}
		if err := os.Rename(tmp, link); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("library: link %s: %w", f.Path, err)
		}
		changed = true
	}
	if !changed {
		return nil
	}
	return fsutil.SyncDir(vdir)
}

// relTarget is target relative to dir, through the real paths of both (so
// that a library inside the cache tree gets short, movable links).
func relTarget(dir, target string) (string, error) {
	rd, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("library: %w", err)
	}
	tdir, err := filepath.EvalSymlinks(filepath.Dir(target))
	if err != nil {
		return "", fmt.Errorf("library: version of %s: %w", target, err)
	}
	rel, err := filepath.Rel(rd, filepath.Join(tdir, filepath.Base(target)))
	if err != nil {
		return "", fmt.Errorf("library: %w", err)
	}
	return rel, nil
}

// versionMarker marks a version path the library made.
const versionMarker = ".clr-version"

// retiredFile (a dot file: never served) records since when each version
// path is no longer named by a manifest.
const retiredFile = ".retired.json"

// prune removes version paths no manifest names (current: uuid ->
// digest32) once they have been unnamed for grace, or at once when they
// are links that lead nowhere; and folders of removed items once they
// hold no version path. Files the library did not make are left alone.
func prune(dir string, current map[string]string, now time.Time, grace time.Duration) ([]string, error) {
	retired := map[string]time.Time{}
	if b, err := os.ReadFile(filepath.Join(dir, retiredFile)); err == nil {
		_ = json.Unmarshal(b, &retired)
	}
	seen := map[string]bool{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("library: %w", err)
	}
	var pruned []string
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		uuid := e.Name()
		udir := filepath.Join(dir, uuid)
		sub, err := os.ReadDir(udir)
		if err != nil {
			continue
		}
		live := 0
		for _, s := range sub {
			if !s.IsDir() || !digestShaped(s.Name()) {
				continue
			}
			if _, err := os.Lstat(filepath.Join(udir, s.Name(), versionMarker)); err != nil && !dangling(filepath.Join(udir, s.Name())) {
				continue // not made by the library (or before markers): left alone
			}
			key := uuid + "/" + s.Name()
			if s.Name() == current[uuid] {
				live++
				continue
			}
			since, ok := retired[key]
			if !ok {
				since = now
				retired[key] = now
			}
			if now.Sub(since) < grace && !dangling(filepath.Join(udir, s.Name())) {
				seen[key] = true
				live++
				continue
			}
			if err := os.RemoveAll(filepath.Join(udir, s.Name())); err != nil {
				return pruned, fmt.Errorf("library: prune: %w", err)
			}
			pruned = append(pruned, key)
		}
		if _, ok := current[uuid]; !ok && live == 0 {
			_ = os.Remove(filepath.Join(udir, vcsp.ItemFile))
			_ = os.Remove(udir) // only if empty: foreign files keep it
		}
	}
	for k := range retired {
		if !seen[k] {
			delete(retired, k)
		}
	}
	b, err := json.Marshal(retired)
	if err != nil {
		return pruned, err
	}
	if _, err := fsutil.WriteAtomicIfChanged(filepath.Join(dir, retiredFile), b, 0o644); err != nil {
		return pruned, fmt.Errorf("library: %w", err)
	}
	return pruned, nil
}

// dangling reports whether every link under a version path points at
// nothing (the cache dropped that version).
func dangling(vdir string) bool {
	alive, links := false, 0
	err := filepath.WalkDir(vdir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			links++
			if _, err := os.Stat(p); err == nil {
				alive = true
				return filepath.SkipAll
			}
		}
		return nil
	})
	// Only a version path made of links that all lead nowhere is ours to
	// remove; an unreadable one or one without links is left alone.
	return err == nil && links > 0 && !alive
}

func digestShaped(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
