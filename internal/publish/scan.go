// Package publish builds a HEPiX image list from a library folder and signs
// it: the publisher side of clr.
//
// A library is a folder whose top-level entries are images:
//   - a folder that directly holds at least one .ovf file is one template
//     image made of every regular file below it (a multi-file image, see
//     docs/imagelist.md);
//   - a regular file ending in .ova, .iso, .qcow2, .img or .vmdk is one image.
//
// Everything else at the top level, hidden entries (".name") anywhere and
// symbolic links are skipped and reported, never followed.
//
// Hashing is the expensive part and is done once per file content: a
// [HashCache] remembers each file's size, modification time and inode, and
// a file whose three values are unchanged is not read again.
package publish

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/clr-suite/clr/internal/imagelist"
)

// Kind is the shape of a library entry.
type Kind int

// Entry kinds.
const (
	SingleFile Kind = iota // one file is one image
	Template               // an OVF folder is one image
)

// singleFormats maps single-file image extensions to hv:format values.
var singleFormats = map[string]string{
	".ova":   "ova",
	".iso":   "iso",
	".qcow2": "qcow2",
	".img":   "raw",
	".vmdk":  "vmdk",
}

// Entry is one image found in the library.
type Entry struct {
	Path   string // relative to the library root, forward slashes
	Kind   Kind
	Format string            // hv:format
	Files  []imagelist.File  // Template: every file, sorted by path; SingleFile: the file itself
	Size   int64             // image size (imagelist rules)
	SHA512 string            // image digest (imagelist rules)
	SS     *SSInfo           // an LXD/Incus image (images/<os>/<release>/<arch>/<variant>/<serial>/)
	fi     map[string]fileID // stat identity of each file, for the cache
}

// Skipped is a library entry that is not an image.
type Skipped struct {
	Path   string
	Reason string
}

// Stats describes a scan.
type Stats struct {
	Images      int
	Files       int
	Bytes       int64 // total size of all image files
	HashedFiles int   // files whose content was read
	HashedBytes int64 // bytes read to hash
	Skipped     []Skipped
}

// Progress is reported while hashing.
type Progress struct {
	DoneFiles, TotalFiles int
	DoneBytes, TotalBytes int64
}

// ScanOptions configures Scan.
type ScanOptions struct {
	Workers  int        // parallel hashers; 0 means GOMAXPROCS
	Cache    *HashCache // nil: hash everything
	Rehash   bool       // ignore the cache (it is still refreshed)
	Now      time.Time  // the run's reference time (cache freshness)
	Progress func(Progress)
}

// ErrLibrary wraps problems with the library folder itself.
var ErrLibrary = errors.New("library")

// fileID is what must stay equal for a cached digest to be reused. The
// ctime is in it because mtime alone can be put back (touch -d, cp -p,
// rsync -t, tar) after the content changed; the ctime cannot.
type fileID struct {
	Size  int64
	Mtime int64 // ns
	Ctime int64 // ns
	Ino   uint64
	Dev   uint64
}

func statID(fi fs.FileInfo) fileID {
	id := fileID{Size: fi.Size(), Mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.Ino, id.Dev = st.Ino, uint64(st.Dev)
		id.Ctime = st.Ctim.Nano()
	}
	return id
}

func hidden(name string) bool { return strings.HasPrefix(name, ".") }

// Scan finds the images in root and hashes their files.
func Scan(ctx context.Context, root string, opts ScanOptions) ([]Entry, Stats, error) {
	var st Stats
	top, err := os.ReadDir(root)
	if err != nil {
		return nil, st, fmt.Errorf("%w: %v", ErrLibrary, err)
	}
	var entries []Entry
	for _, d := range top {
		name := d.Name()
		if hidden(name) {
			st.Skipped = append(st.Skipped, Skipped{name, "hidden"})
			continue
		}
		full := filepath.Join(root, name)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			st.Skipped = append(st.Skipped, Skipped{name, "symbolic link (not followed)"})
		case d.IsDir() && name == "streams":
			st.Skipped = append(st.Skipped, Skipped{name, "simplestreams catalog (--simplestreams writes it)"})
		case d.IsDir() && name == LXDRoot:
			lxd, skipped, err := scanLXD(root)
			if err != nil {
				return nil, st, err
			}
			st.Skipped = append(st.Skipped, skipped...)
			entries = append(entries, lxd...)
		case d.IsDir():
			e, skip, err := scanTemplate(root, name)
			if err != nil {
				return nil, st, err
			}
			if skip != "" {
				st.Skipped = append(st.Skipped, Skipped{name, skip})
				continue
			}
			st.Skipped = append(st.Skipped, e.skipped...)
			entries = append(entries, e.Entry)
		case d.Type().IsRegular():
			format, ok := singleFormats[strings.ToLower(filepath.Ext(name))]
			if !ok {
				st.Skipped = append(st.Skipped, Skipped{name, "not an image file (.ova .iso .qcow2 .img .vmdk) or OVF folder"})
				continue
			}
			fi, err := os.Lstat(full)
			if err != nil {
				return nil, st, fmt.Errorf("%w: %v", ErrLibrary, err)
			}
			entries = append(entries, Entry{
				Path: name, Kind: SingleFile, Format: format,
				Files: []imagelist.File{{Path: name, Size: fi.Size()}},
				fi:    map[string]fileID{name: statID(fi)},
			})
		default:
			st.Skipped = append(st.Skipped, Skipped{name, "not a regular file"})
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Path < entries[j].Path })
	if err := hashAll(ctx, root, entries, opts, &st); err != nil {
		return nil, st, err
	}
	images := entries[:0]
	for _, e := range entries {
		if e.Kind == SingleFile {
			e.Size, e.SHA512 = e.Files[0].Size, e.Files[0].SHA512
			images = append(images, e)
			continue
		}
		if e.Size, e.SHA512, err = imagelist.FilesDigest(e.Files); err != nil {
			// e.g. a file name the clr:files rules refuse (a backslash):
			// the other images are still published
			st.Skipped = append(st.Skipped, Skipped{e.Path, err.Error()})
			continue
		}
		images = append(images, e)
	}
	st.Images = len(images)
	return images, st, nil
}

type templateScan struct {
	Entry
	skipped []Skipped
}

// scanTemplate lists an OVF folder. skip is non-empty when the folder is not
// a template.
func scanTemplate(root, name string) (templateScan, string, error) {
	var t templateScan
	dir := filepath.Join(root, name)
	kids, err := os.ReadDir(dir)
	if err != nil {
		return t, "", fmt.Errorf("%w: %v", ErrLibrary, err)
	}
	hasOVF := false
	for _, k := range kids {
		if k.Type().IsRegular() && strings.EqualFold(filepath.Ext(k.Name()), ".ovf") && !hidden(k.Name()) {
			hasOVF = true
		}
	}
	if !hasOVF {
		return t, "folder without an .ovf file", nil
	}
	t.Entry = Entry{Path: name, Kind: Template, Format: "ovf", fi: map[string]fileID{}}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if p != dir && hidden(d.Name()) {
			t.skipped = append(t.skipped, Skipped{rel, "hidden"})
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case d.IsDir():
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			t.skipped = append(t.skipped, Skipped{rel, "symbolic link (not followed)"})
			return nil
		case !d.Type().IsRegular():
			t.skipped = append(t.skipped, Skipped{rel, "not a regular file"})
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		inner := strings.TrimPrefix(rel, name+"/")
		t.Files = append(t.Files, imagelist.File{Path: inner, Size: fi.Size()})
		t.fi[rel] = statID(fi)
		return nil
	})
	if err != nil {
		return t, "", fmt.Errorf("%w: %v", ErrLibrary, err)
	}
	sort.Slice(t.Files, func(i, j int) bool { return t.Files[i].Path < t.Files[j].Path })
	return t, "", nil
}

// job is one file to hash.
type job struct {
	rel string          // library-relative path (cache key)
	dst *imagelist.File // where the digest goes
	id  fileID
}

func hashAll(ctx context.Context, root string, entries []Entry, opts ScanOptions, st *Stats) error {
	var jobs []job
	var total int64
	for i := range entries {
		e := &entries[i]
		for j := range e.Files {
			f := &e.Files[j]
			rel := f.Path
			if e.Kind == Template {
				rel = path.Join(e.Path, f.Path)
			}
			id := e.fi[rel]
			st.Files++
			st.Bytes += f.Size
			if opts.Cache != nil && !opts.Rehash {
				if sum, ok := opts.Cache.lookup(rel, id); ok {
					f.SHA512 = sum
					continue
				}
			}
			jobs = append(jobs, job{rel: rel, dst: f, id: id})
			total += f.Size
		}
	}
	if len(jobs) == 0 {
		return nil
	}
	// Largest first keeps the workers busy until the end.
	sort.SliceStable(jobs, func(i, j int) bool { return jobs[i].id.Size > jobs[j].id.Size })
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, len(jobs))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next      atomic.Int64
		doneBytes atomic.Int64
		doneFiles atomic.Int64
		wg        sync.WaitGroup
		errOnce   sync.Once
		firstErr  error
	)
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if opts.Progress == nil {
			return
		}
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		report := func() {
			opts.Progress(Progress{int(doneFiles.Load()), len(jobs), doneBytes.Load(), total})
		}
		for {
			select {
			case <-tick.C:
				report()
			case <-stopProgress:
				report()
				return
			}
		}
	}()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for {
				i := int(next.Add(1) - 1)
				if i >= len(jobs) || ctx.Err() != nil {
					return
				}
				j := jobs[i]
				sum, id, err := hashFile(ctx, filepath.Join(root, filepath.FromSlash(j.rel)), buf, &doneBytes)
				if err == nil && id != j.id {
					err = fmt.Errorf("%s changed while it was being hashed; run again once it is complete", j.rel)
				}
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				j.dst.SHA512 = sum
				doneFiles.Add(1)
				if opts.Cache != nil {
					opts.Cache.store(j.rel, id, sum, opts.Now)
				}
			}
		}()
	}
	wg.Wait()
	close(stopProgress)
	<-progressDone
	if firstErr != nil {
		return fmt.Errorf("hash: %w", firstErr)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	st.HashedFiles = len(jobs)
	st.HashedBytes = total
	return nil
}

// hashFile returns the SHA-512 of the file and its stat identity taken after
// reading, so a file modified during hashing is detected.
func hashFile(ctx context.Context, name string, buf []byte, done *atomic.Int64) (string, fileID, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", fileID{}, err
	}
	defer f.Close()
	h := sha512.New()
	for {
		if err := ctx.Err(); err != nil {
			return "", fileID{}, err
		}
		n, err := f.Read(buf)
		h.Write(buf[:n])
		done.Add(int64(n))
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fileID{}, fmt.Errorf("read %s: %w", name, err)
		}
	}
	fi, err := f.Stat()
	if err != nil {
		return "", fileID{}, err
	}
	return hex.EncodeToString(h.Sum(nil)), statID(fi), nil
}
