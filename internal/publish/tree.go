package publish

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/clr-suite/clr/internal/fsutil"
	"github.com/clr-suite/clr/internal/imagelist"
	"github.com/clr-suite/clr/internal/manifest/simplestreams"
	"github.com/clr-suite/clr/internal/smime"
)

// A release tree is the publisher's served folder when lists are built
// with ListMeta.Versioned: every image version lives in its own folder
// TreeDir(identifier, sha512) that never changes once made, next to the
// mutable pointers (imagelist.smime, imagelist.json, streams/v1/). The
// tree's bookkeeping lives under StateDir, which is never served or
// replicated.
const (
	ListSigned = "imagelist.smime" // the signed list (what subscribers fetch)
	ListJSON   = "imagelist.json"  // the publisher's record of what was signed
	StateDir   = ".clr"
	treeState  = StateDir + "/tree.json"
	treeLock   = StateDir + "/lock"
	treeTmp    = StateDir + "/tmp"
)

var (
	// ErrChangedSinceHash: a library file no longer has the size or
	// SHA-512 it was hashed with (it is being written): nothing of that
	// version is placed.
	ErrChangedSinceHash = errors.New("library file changed since it was hashed")
	// ErrTreeLocked: another clr-publish holds the tree.
	ErrTreeLocked = errors.New("release tree is locked by another clr-publish")
)

// TreeDir is the folder of one image version, relative to the tree root:
// the image identifier, then the first 32 hex digits of its SHA-512.
func TreeDir(identifier, sha512 string) string {
	d := strings.ToLower(sha512)
	if len(d) > 32 {
		d = d[:32]
	}
	return strings.ToLower(identifier) + "/" + d
}

// LockTree takes the tree's lock (publish, prune and push exclude each
// other) without waiting; ErrTreeLocked when someone else has it.
func LockTree(tree string) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Join(tree, StateDir), 0o755); err != nil {
		return nil, fmt.Errorf("lock tree: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(tree, treeLock), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock tree: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", tree, ErrTreeLocked)
		}
		return nil, fmt.Errorf("lock tree: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// TreeRel returns the tree-relative path an image URI names (its folder
// for a folder image, its file for a single file): ok is false when the
// URI is not under base or not in the versioned layout.
func TreeRel(uri, base string) (rel string, ok bool) {
	if !strings.HasPrefix(uri, base) {
		return "", false
	}
	p, err := url.PathUnescape(strings.TrimPrefix(uri, base))
	if err != nil || p == "" || strings.HasPrefix(p, "/") {
		return "", false
	}
	p = strings.TrimSuffix(p, "/")
	if path.Clean(p) != p || p == "." || strings.HasPrefix(p, "../") || p == ".." || strings.HasPrefix(p, ".") {
		return "", false
	}
	if n := strings.Count(p, "/"); n < 1 || n > 2 {
		return "", false
	}
	return p, true
}

// versionDir is the version folder (identifier/digest32) of a tree path.
func versionDir(rel string) string {
	parts := strings.SplitN(rel, "/", 3)
	if len(parts) < 2 {
		return rel
	}
	return parts[0] + "/" + parts[1]
}

// LiveDirs are the version folders the list names under base.
func LiveDirs(l *imagelist.List, base string) map[string]bool {
	live := map[string]bool{}
	for _, img := range l.Images {
		if rel, ok := TreeRel(img.URI, base); ok {
			live[versionDir(rel)] = true
		}
	}
	return live
}

// DiskLive returns the version folders the pointers on disk name: the
// signed content of DIR/imagelist.smime (not verified: it is this
// publisher's own file), imagelist.json and streams/v1/images.json, each
// under base. This, not the records, is what prune and push protect: the
// records may lag behind the pointers after a crash.
func DiskLive(tree, base string) (map[string]bool, error) {
	live := map[string]bool{}
	// read returns nil, nil for a pointer that does not exist.
	read := func(name string, max int64) ([]byte, error) {
		raw, err := fsutil.ReadFileCapped(filepath.Join(tree, filepath.FromSlash(name)), max)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return raw, err
	}
	addList := func(name string, content []byte) error {
		l, _, err := imagelist.Parse(content, imagelist.ParseOptions{})
		if err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(tree, name), err)
		}
		for _, img := range l.Images {
			rel, ok := TreeRel(img.URI, base)
			if !ok {
				return fmt.Errorf("%s names %s, outside the tree's base %q: publish again to record the tree", name, img.URI, base)
			}
			live[versionDir(rel)] = true
		}
		return nil
	}
	raw, err := read(ListSigned, smime.MaxMessageSize)
	if err != nil {
		return nil, err
	}
	if raw != nil {
		msg, err := smime.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(tree, ListSigned), err)
		}
		if err := addList(ListSigned, msg.Content); err != nil {
			return nil, err
		}
	}
	if raw, err = read(ListJSON, imagelist.DefaultMaxSize); err != nil {
		return nil, err
	}
	if raw != nil {
		if err := addList(ListJSON, raw); err != nil {
			return nil, err
		}
	}
	// A catalog names paths relative to the tree root.
	if raw, err = read(simplestreams.ImagesPath, imagelist.DefaultMaxSize); err != nil {
		return nil, err
	}
	if raw != nil {
		paths, err := simplestreams.ItemPaths(raw)
		if err != nil {
			return nil, err
		}
		for _, p := range paths {
			if rel, ok := TreeRel(base+escapePath(p), base); ok {
				live[versionDir(rel)] = true
			}
		}
	}
	return live, nil
}

// PlaceTree copies every image version the list names that the tree does
// not have yet into its version folder. entries are the scan that built
// l (Build keeps their order). Each file is hashed while it is copied and
// must match the list; a version folder appears complete in one rename,
// and an existing one is never touched. It returns the folders it made.
func PlaceTree(ctx context.Context, lib, tree string, entries []Entry, l *imagelist.List, base string) ([]string, error) {
	if len(entries) != len(l.Images) {
		return nil, fmt.Errorf("place tree: %d entries for %d images", len(entries), len(l.Images))
	}
	tmpRoot := filepath.Join(tree, filepath.FromSlash(treeTmp))
	_ = os.RemoveAll(tmpRoot) // leftovers of an interrupted run (the lock is held)
	if err := os.MkdirAll(tmpRoot, 0o755); err != nil {
		return nil, fmt.Errorf("place tree: %w", err)
	}
	defer os.RemoveAll(tmpRoot)
	var made []string
	for i, e := range entries {
		img := l.Images[i]
		dir := TreeDir(img.Identifier, e.SHA512)
		rel, ok := TreeRel(img.URI, base)
		if !ok || versionDir(rel) != dir {
			return made, fmt.Errorf("place tree: image %s: hv:uri %s is not %s%s/", e.Path, img.URI, base, dir)
		}
		dst := filepath.Join(tree, filepath.FromSlash(dir))
		if fi, err := os.Stat(dst); err == nil {
			if !fi.IsDir() {
				return made, fmt.Errorf("place tree: %s is not a folder", dst)
			}
			continue // immutable: made by an earlier run
		}
		tmp, err := os.MkdirTemp(tmpRoot, "version-")
		if err != nil {
			return made, fmt.Errorf("place tree: %w", err)
		}
		if e.Kind == Template {
			for _, f := range e.Files {
				if err := ctx.Err(); err != nil {
					return made, err
				}
				src := filepath.Join(lib, filepath.FromSlash(e.Path), filepath.FromSlash(f.Path))
				if err := copyVerified(src, filepath.Join(tmp, filepath.FromSlash(f.Path)), f.Size, f.SHA512); err != nil {
					return made, fmt.Errorf("place %s: %w", e.Path, err)
				}
			}
		} else {
			src := filepath.Join(lib, filepath.FromSlash(e.Path))
			if err := copyVerified(src, filepath.Join(tmp, path.Base(e.Path)), e.Size, e.SHA512); err != nil {
				return made, fmt.Errorf("place %s: %w", e.Path, err)
			}
		}
		if err := syncTree(tmp); err != nil {
			return made, fmt.Errorf("place %s: %w", e.Path, err)
		}
		if _, err := os.Stat(filepath.Dir(dst)); errors.Is(err, fs.ErrNotExist) {
			if err := os.Mkdir(filepath.Dir(dst), 0o755); err != nil {
				return made, fmt.Errorf("place %s: %w", e.Path, err)
			}
			if err := fsutil.SyncDir(tree); err != nil {
				return made, fmt.Errorf("place %s: %w", e.Path, err)
			}
		}
		if err := os.Chmod(tmp, 0o755); err != nil {
			return made, fmt.Errorf("place %s: %w", e.Path, err)
		}
		if err := os.Rename(tmp, dst); err != nil {
			return made, fmt.Errorf("place %s: %w", e.Path, err)
		}
		if err := fsutil.SyncDir(filepath.Dir(dst)); err != nil {
			return made, fmt.Errorf("place %s: %w", e.Path, err)
		}
		made = append(made, dir)
	}
	return made, nil
}

// copyVerified copies src to dst (read-only), hashing on the way: the
// copy must have the given size and SHA-512.
func copyVerified(src, dst string, size int64, sum string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o444)
	if err != nil {
		return err
	}
	h := sha512.New()
	n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(in, size+1))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if n != size || !strings.EqualFold(hex.EncodeToString(h.Sum(nil)), sum) {
		return fmt.Errorf("%s: %w", src, ErrChangedSinceHash)
	}
	return nil
}

func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return fsutil.SyncDir(p)
	})
}

// TreeVersion is the tree's record of one version folder.
type TreeVersion struct {
	Image   string    `json:"image"`            // image identifier
	Created time.Time `json:"created"`          // when the folder was first recorded
	Retired time.Time `json:"retired,omitzero"` // when it left the live list; zero while live
}

// TreeState maps version folders (TreeDir) to their records.
type TreeState struct {
	// Base is the list's base URI (image hv:uri = Base + tree path) and
	// List the hv:version of the list last recorded: what push reads to
	// know which folders the live list names.
	Base     string                  `json:"base"`
	List     string                  `json:"list_version"`
	Live     []string                `json:"live"` // version folders the live list names, sorted
	Versions map[string]*TreeVersion `json:"versions"`
	// Paths maps library paths to the image identifiers the tree used:
	// an identifier carried over from an older list (not the one the
	// path would get) is found again although the versioned hv:uri moved.
	Paths map[string]string `json:"paths,omitempty"`
}

// LoadTreeState reads the tree's records (empty when there are none).
func LoadTreeState(tree string) (*TreeState, error) {
	st := &TreeState{Versions: map[string]*TreeVersion{}}
	data, err := os.ReadFile(filepath.Join(tree, filepath.FromSlash(treeState)))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tree state: %w", err)
	}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("tree state %s: %w", treeState, err)
	}
	if st.Versions == nil {
		st.Versions = map[string]*TreeVersion{}
	}
	return st, nil
}

func (st *TreeState) save(tree string) error {
	if err := os.MkdirAll(filepath.Join(tree, StateDir), 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	_, err = fsutil.WriteAtomicIfChanged(filepath.Join(tree, filepath.FromSlash(treeState)), append(data, '\n'), 0o644)
	return err
}

// RecordTree brings the tree's records in line with the list just
// published: the folders it names are live, every other version folder
// on disk is retired from now on (unless it already was), and records of
// folders that are gone are dropped.
func RecordTree(tree string, l *imagelist.List, base string, paths map[string]string, now time.Time) (*TreeState, error) {
	st, err := LoadTreeState(tree)
	if err != nil {
		return nil, err
	}
	live := LiveDirs(l, base)
	onDisk, err := VersionFolders(tree)
	if err != nil {
		return nil, err
	}
	for dir, mtime := range onDisk {
		v := st.Versions[dir]
		if v == nil {
			created := mtime
			if live[dir] || created.After(now) {
				created = now
			}
			v = &TreeVersion{Image: strings.SplitN(dir, "/", 2)[0], Created: created.UTC()}
			st.Versions[dir] = v
		}
		switch {
		case live[dir]:
			v.Retired = time.Time{}
		case v.Retired.IsZero():
			v.Retired = now.UTC()
		}
	}
	for dir := range st.Versions {
		if _, ok := onDisk[dir]; !ok {
			delete(st.Versions, dir)
		}
	}
	st.Base, st.List, st.Live = base, l.Version, slices.Sorted(maps.Keys(live))
	if paths != nil {
		st.Paths = paths
	}
	if err := st.save(tree); err != nil {
		return nil, fmt.Errorf("tree state: %w", err)
	}
	return st, nil
}

// VersionFolders lists the identifier/digest32 folders of a tree with
// their mtimes.
func VersionFolders(tree string) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	tops, err := os.ReadDir(tree)
	if err != nil {
		return nil, fmt.Errorf("read tree: %w", err)
	}
	for _, top := range tops {
		if !top.IsDir() || !looksLikeUUID(top.Name()) {
			continue
		}
		subs, err := os.ReadDir(filepath.Join(tree, top.Name()))
		if err != nil {
			return nil, fmt.Errorf("read tree: %w", err)
		}
		for _, sub := range subs {
			if !sub.IsDir() || !isHex32(sub.Name()) {
				continue
			}
			fi, err := sub.Info()
			if err != nil {
				return nil, fmt.Errorf("read tree: %w", err)
			}
			out[top.Name()+"/"+sub.Name()] = fi.ModTime()
		}
	}
	return out, nil
}

func looksLikeUUID(s string) bool {
	_, err := parseUUID(s)
	return err == nil
}

func isHex32(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// PrunePolicy says which retired versions a prune keeps. A version the
// live list (or catalog) names is always kept.
type PrunePolicy struct {
	Keep   int           // the Keep newest versions of each image the live list names (live one included)
	MaxAge time.Duration // versions created less than MaxAge ago
	Grace  time.Duration // versions retired less than Grace ago (readers of the previous list)
}

// Pruned is one version folder a prune removed (or would remove).
type Pruned struct {
	Dir     string
	Image   string
	Created time.Time
	Retired time.Time
}

// PruneTree removes the retired version folders the policy does not keep
// (with dryRun, only reports them). Run it after RecordTree for the live
// list. A folder disappears in one rename before it is deleted.
func PruneTree(tree string, p PrunePolicy, now time.Time, dryRun bool) ([]Pruned, error) {
	st, err := LoadTreeState(tree)
	if err != nil {
		return nil, err
	}
	trash := filepath.Join(tree, StateDir, "trash")
	if !dryRun {
		_ = os.RemoveAll(trash) // what an interrupted prune left (the lock is held)
	}
	if st.Base == "" && len(st.Versions) > 0 {
		return nil, fmt.Errorf("prune: %s has version records but no base URI: publish again to record the tree", treeState)
	}
	// What the pointers on disk name is live whatever the records say
	// (they lag after a crash between the list and RecordTree).
	onDisk, err := DiskLive(tree, st.Base)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	liveImage := map[string]bool{}
	for dir, v := range st.Versions {
		if v.Retired.IsZero() || onDisk[dir] {
			liveImage[v.Image] = true
		}
	}
	byImage := map[string][]string{}
	for dir, v := range st.Versions {
		byImage[v.Image] = append(byImage[v.Image], dir)
	}
	var out []Pruned
	for _, dirs := range byImage {
		sort.Slice(dirs, func(i, j int) bool {
			a, b := st.Versions[dirs[i]], st.Versions[dirs[j]]
			if !a.Created.Equal(b.Created) {
				return a.Created.After(b.Created)
			}
			return dirs[i] > dirs[j]
		})
		for rank, dir := range dirs {
			v := st.Versions[dir]
			switch {
			case v.Retired.IsZero(), onDisk[dir],
				rank < p.Keep && liveImage[v.Image], // an image no list names any more ages out
				now.Sub(v.Created) < p.MaxAge, now.Sub(v.Retired) < p.Grace:
				continue
			}
			out = append(out, Pruned{Dir: dir, Image: v.Image, Created: v.Created, Retired: v.Retired})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dir < out[j].Dir })
	if dryRun || len(out) == 0 {
		return out, nil
	}
	if err := os.MkdirAll(trash, 0o755); err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	var done []Pruned
	var firstErr error
	for _, pr := range out {
		src := filepath.Join(tree, filepath.FromSlash(pr.Dir))
		dst, err := os.MkdirTemp(trash, "pruned-")
		if err == nil {
			err = os.Rename(src, filepath.Join(dst, "v"))
		}
		if err == nil {
			err = os.RemoveAll(dst)
		}
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("prune %s: %w", pr.Dir, err)
			}
			continue
		}
		delete(st.Versions, pr.Dir)
		_ = os.Remove(filepath.Dir(src)) // the image folder, once empty
		done = append(done, pr)
	}
	if err := st.save(tree); err != nil && firstErr == nil {
		firstErr = fmt.Errorf("tree state: %w", err)
	}
	return done, firstErr
}
