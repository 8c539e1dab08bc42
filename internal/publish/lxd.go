package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/clr-suite/clr/internal/fsutil"
	"github.com/clr-suite/clr/internal/imagelist"
	"github.com/clr-suite/clr/internal/manifest/simplestreams"
)

// KeySimpleStreams is the image-list key of an LXD/Incus image's
// simplestreams metadata (docs/imagelist.md): its product fields, the role
// (ftype) and SHA-256 of each file, and the combined fingerprints
// sha256(metadata || root) the clients verify. The SHA-256 values are
// signed with the list, so a site never re-hashes: its SHA-512 check
// proves the bytes are the publisher's.
const KeySimpleStreams = "clr:simplestreams"

// LXDRoot is the library folder holding LXD/Incus images as
// images/<os>/<release>/<arch>/<variant>/<serial>/.
const LXDRoot = "images"

// FormatLXD is the hv:format of an LXD/Incus image.
const FormatLXD = "lxd"

// SidecarFile optionally describes a serial folder: {"release_title",
// "aliases": [...], "requirements": {...}, "label"}. It is not an image file.
const SidecarFile = "simplestreams.json"

// SSInfo is the value of KeySimpleStreams.
type SSInfo struct {
	OS           string            `json:"os"`
	Release      string            `json:"release"`
	ReleaseTitle string            `json:"release_title,omitempty"`
	Arch         string            `json:"arch"`
	Variant      string            `json:"variant"`
	Serial       string            `json:"serial"`
	Label        string            `json:"label,omitempty"`
	Aliases      []string          `json:"aliases,omitempty"`
	Requirements map[string]string `json:"requirements,omitempty"`
	Files        map[string]SSFile `json:"files"`    // by clr:files path
	Combined     map[string]string `json:"combined"` // root ftype -> sha256(meta || root)
}

// SSFile is one file's role and SHA-256.
type SSFile struct {
	FType  string `json:"ftype"`
	SHA256 string `json:"sha256"`
}

// lxdFTypes maps the accepted file names of a serial folder to ftypes.
var lxdFTypes = map[string]string{
	"incus.tar.xz":    simplestreams.FTypeMeta,
	"lxd.tar.xz":      simplestreams.FTypeMeta,
	"meta.tar.xz":     simplestreams.FTypeMeta,
	"metadata.tar.xz": simplestreams.FTypeMeta,
	"rootfs.squashfs": simplestreams.FTypeSquashfs,
	"root.squashfs":   simplestreams.FTypeSquashfs,
	"disk.qcow2":      simplestreams.FTypeDiskKVM,
	"disk-kvm.img":    simplestreams.FTypeDiskKVM,
	"rootfs.tar.xz":   simplestreams.FTypeRootTarXZ,
	"root.tar.xz":     simplestreams.FTypeRootTarXZ,
}

var serialRe = regexp.MustCompile(`^[0-9]{8}`)

// scanLXD lists images/<os>/<release>/<arch>/<variant>/<serial>/ folders.
// A folder that breaks a rule the LXD and Incus clients apply (they would
// silently skip the image) is refused with the reason.
func scanLXD(root string) ([]Entry, []Skipped, error) {
	var out []Entry
	var skipped []Skipped
	base := filepath.Join(root, LXDRoot)
	var walk func(dir string, parts []string) error
	walk = func(dir string, parts []string) error {
		kids, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrLibrary, err)
		}
		rel := strings.Join(append([]string{LXDRoot}, parts...), "/")
		if len(parts) == 5 {
			e, reason := lxdEntry(dir, rel, parts, kids)
			if reason != "" {
				skipped = append(skipped, Skipped{rel, "LXD/Incus image refused: " + reason})
			} else {
				out = append(out, e)
			}
			return nil
		}
		for _, k := range kids {
			p := rel + "/" + k.Name()
			switch {
			case hidden(k.Name()):
				skipped = append(skipped, Skipped{p, "hidden"})
			case !k.IsDir():
				skipped = append(skipped, Skipped{p, "not in images/<os>/<release>/<arch>/<variant>/<serial>/"})
			default:
				if err := walk(filepath.Join(dir, k.Name()), append(append([]string{}, parts...), k.Name())); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(base, nil); err != nil {
		return nil, skipped, err
	}
	return out, skipped, nil
}

func lxdEntry(dir, rel string, parts []string, kids []os.DirEntry) (Entry, string) {
	info := &SSInfo{OS: parts[0], Release: parts[1], Arch: parts[2], Variant: parts[3], Serial: parts[4],
		Files: map[string]SSFile{}, Combined: map[string]string{}}
	if !serialRe.MatchString(info.Serial) {
		return Entry{}, fmt.Sprintf("serial %q must start with YYYYMMDD (clients skip other version names)", info.Serial)
	}
	if _, err := time.Parse("20060102", info.Serial[:8]); err != nil {
		return Entry{}, fmt.Sprintf("serial %q does not start with a valid date", info.Serial)
	}
	if _, ok := simplestreams.KnownArch(info.Arch); !ok {
		return Entry{}, fmt.Sprintf("architecture %q is not one the LXD and Incus clients know (amd64, arm64, armhf, i386, ppc64el, riscv64, s390x, ...)", info.Arch)
	}
	e := Entry{Path: rel, Kind: Template, Format: FormatLXD, fi: map[string]fileID{}, SS: info}
	roles := map[string]string{}
	for _, k := range kids {
		name := k.Name()
		if hidden(name) {
			continue
		}
		if name == SidecarFile {
			data, err := fsutil.ReadFileCapped(filepath.Join(dir, name), 1<<20)
			if err != nil {
				return Entry{}, fmt.Sprintf("%s: %v", SidecarFile, err)
			}
			var side struct {
				ReleaseTitle string            `json:"release_title"`
				Label        string            `json:"label"`
				Aliases      []string          `json:"aliases"`
				Requirements map[string]string `json:"requirements"`
			}
			dec := json.NewDecoder(strings.NewReader(string(data)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&side); err != nil {
				return Entry{}, fmt.Sprintf("%s: %v (keys: release_title, label, aliases, requirements)", SidecarFile, err)
			}
			info.ReleaseTitle, info.Label, info.Aliases, info.Requirements = side.ReleaseTitle, side.Label, side.Aliases, side.Requirements
			continue
		}
		ft, ok := lxdFTypes[name]
		if !ok || !k.Type().IsRegular() {
			return Entry{}, fmt.Sprintf("unexpected %q (a serial folder holds one metadata tarball incus.tar.xz|lxd.tar.xz|meta.tar.xz and rootfs.squashfs, disk.qcow2 and/or rootfs.tar.xz, plus an optional %s)", name, SidecarFile)
		}
		if other, dup := roles[ft]; dup {
			return Entry{}, fmt.Sprintf("two files of type %s: %s and %s", ft, other, name)
		}
		roles[ft] = name
		fi, err := k.Info()
		if err != nil {
			return Entry{}, err.Error()
		}
		e.Files = append(e.Files, imagelist.File{Path: name, Size: fi.Size()})
		e.fi[rel+"/"+name] = statID(fi)
		info.Files[name] = SSFile{FType: ft}
	}
	if roles[simplestreams.FTypeMeta] == "" {
		return Entry{}, "no metadata tarball (incus.tar.xz, lxd.tar.xz or meta.tar.xz)"
	}
	if len(roles) < 2 {
		return Entry{}, "no root file (rootfs.squashfs, disk.qcow2 or rootfs.tar.xz)"
	}
	sort.Slice(e.Files, func(i, j int) bool { return e.Files[i].Path < e.Files[j].Path })
	return e, ""
}

// HashSimpleStreams fills the SHA-256 of every LXD/Incus file and the
// combined fingerprints, reusing the values of prev (the previous list)
// for files whose size and SHA-512 did not change, so a no-change rebuild
// reads nothing. Then each image is rendered alone to apply the clients'
// rules; an image that breaks one is dropped and reported in skipped.
func HashSimpleStreams(ctx context.Context, root string, entries []Entry, prev *imagelist.List, st *Stats) ([]Entry, error) {
	old := map[string]imagelist.Image{} // by path under the base URI
	if prev != nil {
		for _, img := range prev.Images {
			if _, ok := img.Extra[KeySimpleStreams]; ok {
				if i := strings.Index(img.URI, LXDRoot+"/"); i >= 0 {
					old[strings.TrimSuffix(img.URI[i:], "/")] = img
				}
			}
		}
	}
	out := entries[:0]
	for _, e := range entries {
		if e.SS == nil {
			out = append(out, e)
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var prevInfo SSInfo
		prevFiles := map[string]imagelist.File{}
		if img, ok := old[escapePath(e.Path)]; ok {
			_ = json.Unmarshal(img.Extra[KeySimpleStreams], &prevInfo)
			for _, f := range img.Files {
				prevFiles[f.Path] = f
			}
		}
		reused := map[string]bool{}
		meta := ""
		for _, f := range e.Files {
			sf := e.SS.Files[f.Path]
			if sf.FType == simplestreams.FTypeMeta {
				meta = f.Path
			}
			if p, ok := prevFiles[f.Path]; ok && p.Size == f.Size && p.SHA512 == f.SHA512 && prevInfo.Files[f.Path].SHA256 != "" {
				sf.SHA256 = prevInfo.Files[f.Path].SHA256
				reused[f.Path] = true
			} else {
				sum, n, err := sha256Of(ctx, filepath.Join(root, e.Path, f.Path))
				if err != nil {
					return nil, fmt.Errorf("%w: %v", ErrLibrary, err)
				}
				sf.SHA256 = sum
				st.HashedFiles++
				st.HashedBytes += n
			}
			e.SS.Files[f.Path] = sf
		}
		for _, f := range e.Files {
			sf := e.SS.Files[f.Path]
			if f.Path == meta {
				continue
			}
			if v := prevInfo.Combined[sf.FType]; v != "" && reused[meta] && reused[f.Path] {
				e.SS.Combined[sf.FType] = v
				continue
			}
			sum, n, err := sha256Of(ctx, filepath.Join(root, e.Path, meta), filepath.Join(root, e.Path, f.Path))
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrLibrary, err)
			}
			e.SS.Combined[sf.FType] = sum
			st.HashedBytes += n
		}
		if _, err := simplestreams.Render(simplestreams.Catalog{Updated: time.Unix(0, 0), Products: []simplestreams.Product{e.SS.Product(e.Path, e.Files)}}); err != nil {
			st.Skipped = append(st.Skipped, Skipped{e.Path, "LXD/Incus image refused: " + err.Error()})
			continue
		}
		out = append(out, e)
	}
	st.Images = len(out)
	return out, nil
}

// Product is the image as a one-version simplestreams product whose item
// paths are prefix + "/" + file.
func (s *SSInfo) Product(prefix string, files []imagelist.File) simplestreams.Product {
	p := simplestreams.Product{OS: s.OS, Release: s.Release, ReleaseTitle: s.ReleaseTitle, Arch: s.Arch, Variant: s.Variant,
		Aliases: s.Aliases, Requirements: s.Requirements}
	if p.ReleaseTitle == "" {
		p.ReleaseTitle = p.Release
	}
	v := simplestreams.Version{Name: s.Serial, Label: s.Label, Combined: map[string]string{}}
	for k, c := range s.Combined {
		v.Combined[k] = c
	}
	for _, f := range files {
		sf := s.Files[f.Path]
		v.Items = append(v.Items, simplestreams.Item{Key: f.Path, FType: sf.FType, Path: prefix + "/" + f.Path, Size: f.Size, SHA256: sf.SHA256})
	}
	p.Versions = []simplestreams.Version{v}
	return p
}

// sha256Of hashes the concatenation of files.
func sha256Of(ctx context.Context, files ...string) (string, int64, error) {
	h := sha256.New()
	var n int64
	for _, name := range files {
		if err := ctx.Err(); err != nil {
			return "", n, err
		}
		f, err := os.Open(name)
		if err != nil {
			return "", n, err
		}
		m, err := io.Copy(h, f)
		f.Close()
		n += m
		if err != nil {
			return "", n, err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// SSImage is one LXD/Incus image placed in a stream: its metadata, its
// files (clr:files) and the URL prefix its files are served under.
type SSImage struct {
	Info   SSInfo
	Files  []imagelist.File
	Prefix string // relative to the stream's base URL, no trailing "/"
}

// SSInfoOf returns the clr:simplestreams metadata of img (ok false when it
// has none or it does not parse).
func SSInfoOf(img imagelist.Image) (SSInfo, bool) {
	raw, ok := img.Extra[KeySimpleStreams]
	if !ok {
		return SSInfo{}, false
	}
	var s SSInfo
	if err := json.Unmarshal(raw, &s); err != nil || s.Files == nil {
		return SSInfo{}, false
	}
	return s, true
}

// SimpleStreamsCatalog groups images into products (one version per
// image) for simplestreams.Render.
func SimpleStreamsCatalog(imgs []SSImage, updated time.Time) simplestreams.Catalog {
	byName := map[string]*simplestreams.Product{}
	var names []string
	for _, im := range imgs {
		p := im.Info.Product(im.Prefix, im.Files)
		name := simplestreams.ProductName(p)
		if have, ok := byName[name]; ok {
			have.Versions = append(have.Versions, p.Versions...)
			continue
		}
		byName[name] = &p
		names = append(names, name)
	}
	sort.Strings(names)
	c := simplestreams.Catalog{Updated: updated}
	for _, n := range names {
		c.Products = append(c.Products, *byName[n])
	}
	return c
}

// WriteSimpleStreams renders the catalog and writes streams/v1/images.json
// then index.json under dir, each atomically and only when its bytes
// changed. It reports whether anything was written.
func WriteSimpleStreams(dir string, c simplestreams.Catalog) (bool, error) {
	files, err := simplestreams.Render(c)
	if err != nil {
		return false, err
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	wrote := false
	for _, p := range simplestreams.WriteOrder(paths) {
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return wrote, err
		}
		w, err := fsutil.WriteAtomicIfChanged(dst, files[p], 0o644)
		if err != nil {
			return wrote, fmt.Errorf("write %s: %w", p, err)
		}
		wrote = wrote || w
	}
	return wrote, nil
}

// SimpleStreamsCatalogSafe is SimpleStreamsCatalog that leaves out (and
// reports) every image the catalog cannot hold together with the others
// (a duplicate serial from a second subscription, a republished serial with
// identical bytes, incomplete metadata), so one bad image never stops the
// catalog of all the others from updating.
func SimpleStreamsCatalogSafe(imgs []SSImage, updated time.Time) (simplestreams.Catalog, []error) {
	sorted := append([]SSImage(nil), imgs...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Prefix < sorted[j].Prefix })
	var ok []SSImage
	var errs []error
	for _, im := range sorted {
		try := append(append([]SSImage(nil), ok...), im)
		if _, err := simplestreams.Render(SimpleStreamsCatalog(try, updated)); err != nil {
			errs = append(errs, fmt.Errorf("%s %s %s %s %s (%s): %w", im.Info.OS, im.Info.Release, im.Info.Variant, im.Info.Arch, im.Info.Serial, im.Prefix, err))
			continue
		}
		ok = append(ok, im)
	}
	return SimpleStreamsCatalog(ok, updated), errs
}
