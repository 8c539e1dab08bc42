package cachecmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/clr-suite/clr/internal/cache"
	"github.com/clr-suite/clr/internal/fsutil"
	"github.com/clr-suite/clr/internal/store"
)

// exportTree re-exports the verified cache for downstream sites (a
// cascade: central -> regional -> local), in the publisher's layout so a
// downstream site only needs a mirror rule (--mirror
// ssh://publisher:2222/=ssh://regional:2222/) and no trust in this site:
// it verifies the publisher's signature and every hash itself.
//
//	<path of hv:uri>              each served image, hard links to the cache's verified versions
//	lists/<subscription-uuid>.smime  each subscription's latest accepted list, byte for byte as signed
//
// Order (research seeds-systems 3.3): image files first (each replaced by
// an atomic rename, never written in place), then the signed lists, then
// files no list names any more are removed once they have been unnamed for
// --grace (a downstream site may still be fetching what the previous list
// named). Only images whose served
// version is the one their latest list names are exported.
func exportTree(ctx context.Context, dir string, st *store.Store, ch *cache.Cache, now time.Time, grace time.Duration, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	served, err := ch.Served()
	if err != nil {
		return err
	}
	bySHA := map[string]cache.Served{}
	for _, s := range served {
		bySHA[s.UUID+"\x00"+s.SHA512] = s
	}
	imgs, err := st.ListImages(ctx, store.ImageFilter{SelectedOnly: true})
	if err != nil {
		return err
	}
	want := map[string]bool{} // relative paths exported this run
	exported := 0
	for _, im := range imgs {
		s, ok := bySHA[im.UUID+"\x00"+im.Latest.SHA512]
		if !ok {
			continue // not (yet) served in the version its list names
		}
		rel, folder, err := exportPath(im.Latest.URI)
		if err != nil {
			log.Warn("image not exported", "uuid", im.UUID, "err", err)
			continue
		}
		for _, f := range s.Files {
			p := rel
			if folder {
				p = path.Join(rel, f.Path)
			}
			if want[p] {
				log.Warn("image not exported: another image has the same path", "uuid", im.UUID, "path", p)
				continue
			}
			want[p] = true
			if err := placeLink(filepath.Join(s.Dir, filepath.FromSlash(f.Path)), filepath.Join(dir, filepath.FromSlash(p))); err != nil {
				return fmt.Errorf("export %s: %w", p, err)
			}
		}
		exported++
	}
	subs, err := st.ListSubscriptions(ctx)
	if err != nil {
		return err
	}
	for _, sub := range subs {
		if sub.LatestList == nil {
			continue
		}
		l, err := st.GetList(ctx, sub.LatestList.ID)
		if err != nil {
			return err
		}
		p := "lists/" + sub.UUID + ".smime"
		if strings.ContainsAny(sub.UUID, "/\\") || want[p] {
			continue
		}
		want[p] = true
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if _, err := fsutil.WriteAtomicIfChanged(dst, l.Raw, 0o644); err != nil {
			return fmt.Errorf("export %s: %w", p, err)
		}
	}
	removed, err := removeUnwanted(dir, want, filepath.Join(ch.Dir, ".clr", "export-retired.json"), now, grace)
	if err != nil {
		return err
	}
	log.Info("export updated", "dir", dir, "images", exported, "removed_files", removed)
	return nil
}

// exportPath is the path of an image URI below its host, and whether it is
// a folder (a trailing "/"). It refuses paths that could leave the tree.
func exportPath(uri string) (string, bool, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", false, err
	}
	p := strings.TrimPrefix(u.Path, "/")
	folder := strings.HasSuffix(p, "/")
	p = strings.TrimSuffix(p, "/")
	if p == "" || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") || strings.Contains(p, "\\") ||
		p == "lists" || strings.HasPrefix(p, "lists/") {
		return "", false, fmt.Errorf("unusable path %q", u.Path)
	}
	for _, seg := range strings.Split(p, "/") {
		if strings.HasPrefix(seg, ".") {
			return "", false, fmt.Errorf("hidden segment in %q", u.Path)
		}
	}
	return p, folder, nil
}

// placeLink makes dst a hard link to src, replacing what is there with one
// rename (a reader sees the old file or the new one, never a mix). It never
// follows a symbolic link on the way.
func placeLink(src, dst string) error {
	if a, err := os.Lstat(dst); err == nil && a.Mode().IsRegular() {
		if b, err := os.Stat(src); err == nil && os.SameFile(a, b) {
			return nil
		}
	}
	if err := mkdirNoSymlink(filepath.Dir(dst)); err != nil {
		return err
	}
	tmp := dst + ".clr-tmp"
	_ = os.Remove(tmp)
	if err := os.Link(src, tmp); err != nil {
		return fmt.Errorf("the export directory must be on the cache's file system: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// mkdirNoSymlink creates dir, refusing symbolic links on the way.
func mkdirNoSymlink(dir string) error {
	if fi, err := os.Lstat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if err := mkdirNoSymlink(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

// removeUnwanted deletes files under dir that are not in want (relative
// slash paths) once they have been unwanted for grace (readers of the
// previous list), and empty folders. stateFile remembers since when.
func removeUnwanted(dir string, want map[string]bool, stateFile string, now time.Time, grace time.Duration) (int, error) {
	since := map[string]time.Time{}
	if b, err := os.ReadFile(stateFile); err == nil {
		_ = json.Unmarshal(b, &since)
	}
	var files, dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		if want[rel] {
			delete(since, rel)
			return nil
		}
		t, ok := since[rel]
		if !ok {
			since[rel] = now
			return nil
		}
		if now.Sub(t) >= grace {
			files = append(files, p)
			delete(since, rel)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, f := range files {
		if err := os.Remove(f); err != nil {
			return 0, err
		}
	}
	if b, err := json.Marshal(since); err == nil {
		if _, err := fsutil.WriteAtomicIfChanged(stateFile, b, 0o644); err != nil {
			return len(files), err
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		_ = os.Remove(d) // only empty ones go
	}
	return len(files), nil
}
