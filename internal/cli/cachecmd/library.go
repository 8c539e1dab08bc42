package cachecmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/clr-suite/clr/internal/imagelist"
	"github.com/clr-suite/clr/internal/publish"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/clr-suite/clr/internal/cache"
	"github.com/clr-suite/clr/internal/cli"
	"github.com/clr-suite/clr/internal/library"
	"github.com/clr-suite/clr/internal/store"
	"github.com/clr-suite/clr/internal/subscriber"
)

// libraryDir is the content library's web root: --library-dir, else
// CACHE/.clr/library (inside the cache tree, so its links into the
// version store are short and stay valid when the tree moves).
func libraryDir(c *ucli.Context, cacheDir string) (string, error) {
	def := filepath.Join(cacheDir, ".clr", "library")
	d := c.String("library-dir")
	if d == "" {
		return def, nil
	}
	abs, err := filepath.Abs(d)
	if err != nil {
		return "", err
	}
	// The library is a tree of links into the cache: it must not be the
	// cache's served names (CACHE/<uuid> links into the immutable
	// versions, which the library would then write into) nor hold it.
	// content-library-rsync served its synced folder itself; clr does not.
	if abs != def && !within(def, abs) && (within(cacheDir, abs) || within(abs, cacheDir)) {
		return "", cli.Usagef("--library-dir %s overlaps the cache directory %s: use a directory outside it (or the default %s)", abs, cacheDir, def)
	}
	return abs, nil
}

// within reports whether p is dir or below it (lexically).
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// updateLibrary regenerates the content library manifests from what the
// cache serves. It reads records, never content.
func updateLibrary(ctx context.Context, env cli.Env, c *ucli.Context, st *store.Store, ch *cache.Cache, now time.Time, log *slog.Logger) (library.Result, error) {
	dir, err := libraryDir(c, ch.Dir)
	if err != nil {
		return library.Result{}, err
	}
	served, err := ch.Served()
	if err != nil {
		return library.Result{}, err
	}
	// Titles and descriptions from the latest accepted lists: a new title
	// with unchanged content renames the item (the cache's record keeps
	// the metadata of the list that published the version).
	meta := map[string]store.Image{}
	if all, err := st.ListImages(ctx, store.ImageFilter{SelectedOnly: true}); err == nil {
		for _, im := range all {
			if _, dup := meta[im.UUID]; !dup {
				meta[im.UUID] = im
			}
		}
	} else {
		log.Warn("image titles not read; using the cached ones", "err", err)
	}
	imgs := make([]library.Image, 0, len(served))
	var ss []publish.SSImage
	var ssUpdated time.Time
	for _, s := range served {
		im := library.Image{UUID: s.UUID, SHA512: s.SHA512, Digest32: s.Digest32, Dir: s.Dir,
			Title: s.Image.Title, Description: s.Image.Description}
		if m, ok := meta[s.UUID]; ok && m.Latest.SHA512 == s.SHA512 {
			im.Title, im.Description = m.Latest.Title, m.Latest.Description
			if info, ok := ssInfo(m.Latest.Extra); ok {
				im.LinkOnly = true // an LXD/Incus image: in the simplestreams catalog, not in vSphere's
				ss = append(ss, publish.SSImage{Info: info, Prefix: s.UUID + "/" + s.Digest32, Files: imageFiles(s.Files)})
				if m.Latest.Created.After(ssUpdated) {
					ssUpdated = m.Latest.Created
				}
			}
		}
		for _, f := range s.Files {
			im.Files = append(im.Files, library.File{Path: f.Path, Size: f.Size, SHA512: f.SHA512})
		}
		imgs = append(imgs, im)
	}
	res, err := library.Update(ctx, st, imgs, library.Options{
		Dir: dir, Name: c.String("library-name"), Description: c.String("library-description"),
		Now: now, NewID: subscriber.NewUUID, Logger: log, Grace: c.Duration("grace"), Clock: env.Now,
	})
	if err != nil {
		return res, err
	}
	if err := updateStreams(dir, ss, ssUpdated, log); err != nil {
		return res, fmt.Errorf("simplestreams: %w", err)
	}
	if res.Changed {
		log.Info("content library updated", "version", res.Version, "items", res.Items,
			"added", len(res.Added), "updated", len(res.Updated), "removed", len(res.Removed))
		if err := st.AddCounters(ctx, nil, map[string]int64{
			store.GaugeCatalogVersion: res.Version, store.GaugeCatalogItems: int64(res.Items),
			store.GaugeCatalogLastWrite: now.Unix(),
		}); err != nil {
			log.Warn("metrics not recorded", "err", err)
		}
	}
	return res, nil
}

// recordRun adds the run to the counters /metrics exposes. A failure to
// record is logged, never the run's result.
func recordRun(ctx context.Context, st *store.Store, now time.Time, r cache.Report, runErr error, log *slog.Logger) {
	verify := 0
	for _, e := range r.Errors {
		if errors.Is(e, cache.ErrVerify) {
			verify++
		}
	}
	code := 0
	if runErr != nil {
		code, _ = cli.ExitCode(runErr, classify)
	}
	add := map[string]int64{
		store.CounterCacheRuns: 1, store.CounterBytesIn: r.WireBytesIn, store.CounterBytesOut: r.WireBytesOut,
		store.CounterImagesPublished: int64(len(r.Published)), store.CounterImagesExpired: int64(len(r.Expired)),
		store.CounterVerifyFailures: int64(verify),
	}
	set := map[string]int64{store.GaugeCacheLastRun: now.Unix(), store.GaugeCacheLastResult: int64(code)}
	if runErr != nil {
		add[store.CounterCacheFailedRuns] = 1
	} else {
		set[store.GaugeCacheLastSuccess] = now.Unix()
	}
	if err := st.AddCounters(context.WithoutCancel(ctx), add, set); err != nil {
		log.Warn("metrics not recorded", "err", err)
	}
}

func ssInfo(extra json.RawMessage) (publish.SSInfo, bool) {
	if len(extra) == 0 {
		return publish.SSInfo{}, false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(extra, &m) != nil {
		return publish.SSInfo{}, false
	}
	return publish.SSInfoOf(imagelist.Image{Extra: m})
}

func imageFiles(fs []cache.File) []imagelist.File {
	out := make([]imagelist.File, len(fs))
	for i, f := range fs {
		out[i] = imagelist.File{Path: f.Path, Size: f.Size, SHA512: f.SHA512}
	}
	return out
}

// updateStreams writes LIBRARY/streams/v1 for the served LXD/Incus images
// (images.json before index.json, only when changed). Item paths are the
// immutable version paths, so files a previous index named stay
// downloadable while the cache keeps that version (--grace, 1 h: the
// clients' index cache time). With no LXD/Incus image served, an existing
// catalog is removed (an index with no products is refused by clients).
func updateStreams(dir string, imgs []publish.SSImage, updated time.Time, log *slog.Logger) error {
	if len(imgs) == 0 {
		for _, f := range []string{"index.json", "images.json"} {
			if err := os.Remove(filepath.Join(dir, "streams", "v1", f)); err == nil {
				log.Info("simplestreams catalog removed: no LXD/Incus image served")
			}
		}
		return nil
	}
	cat, bad := publish.SimpleStreamsCatalogSafe(imgs, updated)
	for _, err := range bad {
		log.Error("LXD/Incus image left out of the simplestreams catalog", "err", err)
	}
	if len(cat.Products) == 0 {
		return nil
	}
	wrote, err := publish.WriteSimpleStreams(dir, cat)
	if err != nil {
		return err
	}
	if wrote {
		log.Info("simplestreams catalog written", "images", len(imgs))
	}
	return nil
}
