// Package simplestreams renders the two simplestreams manifests that LXD and
// Incus read from an image server (streams/v1/index.json and
// streams/v1/images.json) from a neutral model. It only renders: sizes,
// sha256 sums and the combined fingerprints are supplied by the caller, and
// nothing here touches the file system.
//
// The rules follow the client code of lxc/incus and canonical/lxd
// (shared/simplestreams/products.go, index.go, simplestreams.go and
// shared/osarch/architectures.go; see ../shared/research/seeds-systems.md §2).
// Wherever a client would silently skip or silently mis-resolve something,
// Render refuses the catalog instead:
//
//   - A version name must start with a valid YYYYMMDD date (clients parse
//     name[0:8] with layout "20060102" and skip the version otherwise) and
//     may only contain A-Z a-z 0-9 '.', '_' and '-' so that names sort and
//     travel safely ("20261126_0102"; no colon).
//   - The architecture must be a name or alias that osarch.ArchitectureId
//     knows in both clients (KnownArch); the product is skipped otherwise.
//   - index.json's products list must not be empty (clients skip the entry).
//   - Every version has exactly one metadata tarball (Item.FType ==
//     FTypeMeta) and at least one root item (squashfs, disk-kvm.img or
//     root.tar.xz, at most one of each). The metadata tarball is rendered
//     twice, as item "incus.tar.xz" (ftype "incus.tar.xz", the only one Incus
//     reads) and item "lxd.tar.xz" (ftype "lxd.tar.xz", the only one LXD
//     reads), with the same path, size and sha256. Both carry the combined
//     fingerprint of every root item of the version:
//     combined_squashfs_sha256, combined_disk-kvm-img_sha256,
//     combined_rootxz_sha256 and the legacy combined_sha256 (equal to the
//     rootxz one). A client that finds no fingerprint skips the image, so
//     a root item without its combined hash is refused.
//   - A fingerprint (combined hash) must be unique in the catalog: clients
//     look images up by fingerprint and fail with "more than one match".
//   - An alias, expanded as clients do to "<alias>" and "<alias>/<arch>",
//     may be used by one product per architecture (after mapping arch
//     aliases such as amd64 and x86_64 to the same architecture): clients
//     silently resolve a shared alias to one of the products.
//
// Decisions:
//
//   - Item paths are written raw (clients join them to the base URL without
//     escaping in older LXD, with escaping in newer code). To make both
//     readings name the same file, a path may only use A-Z a-z 0-9 and
//     "-._~+" in its segments: spaces, '%', '?', '#', ':' and non-ASCII are
//     refused rather than encoded. No segment may be empty, "." or "..";
//     no leading "/". A path may not be streams/v1/index.json or
//     streams/v1/images.json, and one path must always carry the same size
//     and sha256 across the catalog.
//   - Sizes must be > 0; sha256 sums are 64 lower-case hex digits.
//   - OS, Release and Variant are required tokens of A-Z a-z 0-9 and
//     "._+~-". ReleaseTitle defaults to Release (as incus-simplestreams
//     does); it, Label and requirements are free text without control
//     characters.
//   - The product name is ProductName: "os:release:variant:arch" in lower
//     case (the incus-simplestreams convention); two products with the same
//     name are refused. Default aliases are lower-cased likewise; custom
//     aliases are written verbatim in the given order. An alias must be
//     non-empty, without commas, white space or control characters, and not
//     repeated within a product.
//   - The metadata item's Key is not rendered and not checked (the two keys
//     are fixed); root item keys must be unique in their version and not
//     "incus.tar.xz" or "lxd.tar.xz".
//   - Times are UTC in the HTTP date layout ("Mon, 02 Jan 2006 15:04:05 GMT");
//     Catalog.Updated must be set. Output is 2-space indented JSON with a
//     trailing newline, no HTML escaping, map keys sorted.
package simplestreams

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/clr-suite/clr/internal/manifest"
)

// Item file types (Item.FType).
const (
	FTypeSquashfs  = "squashfs"     // container root file system
	FTypeDiskKVM   = "disk-kvm.img" // virtual machine disk (qcow2)
	FTypeRootTarXZ = "root.tar.xz"  // container root file system tarball
	// FTypeMeta marks the metadata tarball. It is rendered as two items,
	// FTypeIncusMeta and FTypeLXDMeta.
	FTypeMeta = "meta"
)

// Rendered metadata item keys and ftypes.
const (
	FTypeIncusMeta = "incus.tar.xz"
	FTypeLXDMeta   = "lxd.tar.xz"
)

// Manifest paths, relative to the stream's base URL.
const (
	IndexPath  = "streams/v1/index.json"
	ImagesPath = "streams/v1/images.json"
)

// TimeLayout is the layout of every "updated" field (always in UTC).
const TimeLayout = "Mon, 02 Jan 2006 15:04:05 GMT"

// Errors returned (wrapped, with the product, version and item concerned)
// by Render. Test with errors.Is.
var (
	// ErrEmpty means there is nothing to publish: no products, or a
	// product without versions.
	ErrEmpty = errors.New("nothing to publish")
	// ErrVersionName means a version name does not start with a valid
	// YYYYMMDD date or has characters outside A-Z a-z 0-9 . _ -.
	ErrVersionName = errors.New("bad version name")
	// ErrArch means an architecture unknown to LXD or Incus.
	ErrArch = errors.New("unknown architecture")
	// ErrItems means a version without exactly one metadata tarball, without
	// a root item, with two root items of one type, or with a combined hash
	// missing or left over.
	ErrItems = errors.New("incomplete image items")
	// ErrInvalid means a malformed or inconsistent field: sha256, size,
	// path, key, ftype, text, time, a duplicate product name or a duplicate
	// fingerprint.
	ErrInvalid = errors.New("invalid field")
	// ErrAlias means a malformed alias or one that two products of the same
	// architecture use.
	ErrAlias = errors.New("alias conflict")
)

// Item is one file of a version.
type Item struct {
	Key    string // item key in images.json, unique in the version (ignored for FTypeMeta)
	FType  string // FTypeSquashfs, FTypeDiskKVM, FTypeRootTarXZ or FTypeMeta
	Path   string // relative to the stream's base URL, forward slashes, not escaped
	Size   int64  // bytes, > 0
	SHA256 string // 64 lower-case hex digits
}

// Version is one serial of a product.
type Version struct {
	Name  string // serial starting with YYYYMMDD, e.g. "20261126_0102"
	Items []Item // exactly one FTypeMeta item and at least one root item
	// Combined maps each root ftype present to sha256(meta bytes || root
	// bytes), lower-case hex: the image fingerprint clients verify.
	Combined map[string]string
	Label    string // optional
}

// Product is one os/release/variant/arch line of images.
type Product struct {
	OS, Release, ReleaseTitle, Arch, Variant string
	// Aliases are written comma-separated. Empty means "os/release/variant"
	// and, when Variant is "default", also "os/release" (lower-cased).
	Aliases      []string
	Requirements map[string]string // optional, e.g. {"secureboot": "false"}
	Versions     []Version
}

// Catalog is the whole stream.
type Catalog struct {
	Products []Product
	Updated  time.Time
}

// archNames lists every architecture name LXD and Incus know, with its
// aliases (shared/osarch/architectures.go: architectureNames and
// architectureAliases, identical in both). Incus also accepts x86_64_v1 to
// x86_64_v4, LXD does not, so they are left out.
var archNames = map[string][]string{
	"i686":        {"i386", "i586", "386", "x86", "generic_32"},
	"x86_64":      {"amd64", "generic_64"},
	"armv6l":      {"armel", "arm"},
	"armv7l":      {"armhf", "armhfp", "armv7a_hardfp", "armv7", "armv7a_vfpv3_hardfp"},
	"armv8l":      {},
	"aarch64":     {"arm64", "arm64_generic"},
	"ppc":         {"powerpc"},
	"ppc64":       {"powerpc64"},
	"ppc64le":     {"ppc64el"},
	"s390x":       {},
	"mips":        {"mipsel", "mipsle"},
	"mips64":      {"mips64el", "mips64le"},
	"riscv32":     {},
	"riscv64":     {},
	"loongarch64": {"loong64"},
}

// knownArch maps every name and alias to its canonical name.
var knownArch = func() map[string]string {
	m := map[string]string{}
	for name, aliases := range archNames {
		m[name] = name
		for _, a := range aliases {
			m[a] = name
		}
	}
	return m
}()

// KnownArch reports the canonical architecture name (as LXD and Incus
// report it, e.g. "x86_64" for "amd64") and whether arch is known to both.
func KnownArch(arch string) (string, bool) {
	c, ok := knownArch[arch]
	return c, ok
}

// rootFTypes are the root item types Render accepts, in output order.
var rootFTypes = []string{FTypeSquashfs, FTypeDiskKVM, FTypeRootTarXZ}

func isRoot(ftype string) bool {
	for _, r := range rootFTypes {
		if r == ftype {
			return true
		}
	}
	return false
}

// ProductName returns the product key "os:release:variant:arch" in lower
// case (the incus-simplestreams convention).
func ProductName(p Product) string {
	return strings.ToLower(p.OS + ":" + p.Release + ":" + p.Variant + ":" + p.Arch)
}

// DefaultAliases returns the aliases used when Product.Aliases is empty:
// "os/release/variant", plus "os/release" when Variant is "default", in
// lower case.
func DefaultAliases(p Product) []string {
	base := strings.ToLower(p.OS + "/" + p.Release)
	a := []string{base + "/" + strings.ToLower(p.Variant)}
	if p.Variant == "default" {
		a = append(a, base)
	}
	return a
}

// JSON shapes. Field order is the output order.

type indexJSON struct {
	Format  string                    `json:"format"`
	Updated string                    `json:"updated"`
	Index   map[string]indexEntryJSON `json:"index"`
}

type indexEntryJSON struct {
	DataType string   `json:"datatype"`
	Path     string   `json:"path"`
	Format   string   `json:"format"`
	Updated  string   `json:"updated"`
	Products []string `json:"products"`
}

type imagesJSON struct {
	ContentID string                 `json:"content_id"`
	DataType  string                 `json:"datatype"`
	Format    string                 `json:"format"`
	Updated   string                 `json:"updated"`
	Products  map[string]productJSON `json:"products"`
}

type productJSON struct {
	Aliases      string                 `json:"aliases"`
	Arch         string                 `json:"arch"`
	OS           string                 `json:"os"`
	Release      string                 `json:"release"`
	ReleaseTitle string                 `json:"release_title"`
	Variant      string                 `json:"variant"`
	Requirements map[string]string      `json:"requirements,omitempty"`
	Versions     map[string]versionJSON `json:"versions"`
}

type versionJSON struct {
	Items map[string]itemJSON `json:"items"`
	Label string              `json:"label,omitempty"`
}

type itemJSON struct {
	FType            string `json:"ftype"`
	Path             string `json:"path"`
	Size             int64  `json:"size"`
	SHA256           string `json:"sha256"`
	CombinedSquashfs string `json:"combined_squashfs_sha256,omitempty"`
	CombinedDiskKVM  string `json:"combined_disk-kvm-img_sha256,omitempty"`
	CombinedRootXZ   string `json:"combined_rootxz_sha256,omitempty"`
	Combined         string `json:"combined_sha256,omitempty"` // legacy, = CombinedRootXZ
}

// fileRef records where a path or fingerprint was first seen.
type fileRef struct {
	size   int64
	sha256 string
	where  string
}

// renderer carries the catalog-wide checks.
type renderer struct {
	paths        map[string]fileRef // path -> first use
	fingerprints map[string]string  // combined hash -> where
	aliases      map[string]string  // canonical arch + "\x00" + alias -> product name
}

// ItemPaths returns the path of every item an images.json names (as
// written, relative to the stream's base), for callers that must know
// which files a served catalog still points at.
func ItemPaths(imagesJSONData []byte) ([]string, error) {
	var img imagesJSON
	if err := json.Unmarshal(imagesJSONData, &img); err != nil {
		return nil, fmt.Errorf("simplestreams: %s: %w", ImagesPath, err)
	}
	var out []string
	for _, p := range img.Products {
		for _, v := range p.Versions {
			for _, it := range v.Items {
				out = append(out, it.Path)
			}
		}
	}
	return out, nil
}

// Render validates c and returns the manifests keyed by IndexPath and
// ImagesPath. The output is deterministic; c is not modified.
func Render(c Catalog) (map[string][]byte, error) {
	if len(c.Products) == 0 {
		return nil, fmt.Errorf("simplestreams: %w: no products", ErrEmpty)
	}
	if c.Updated.IsZero() {
		return nil, fmt.Errorf("simplestreams: %w: zero updated time", ErrInvalid)
	}
	updated := c.Updated.UTC().Format(TimeLayout)

	products := make([]Product, len(c.Products))
	copy(products, c.Products)
	sort.SliceStable(products, func(i, j int) bool { return ProductName(products[i]) < ProductName(products[j]) })

	r := &renderer{
		paths:        map[string]fileRef{},
		fingerprints: map[string]string{},
		aliases:      map[string]string{},
	}
	img := imagesJSON{
		ContentID: "images",
		DataType:  "image-downloads",
		Format:    "products:1.0",
		Updated:   updated,
		Products:  make(map[string]productJSON, len(products)),
	}
	names := make([]string, 0, len(products))
	for _, p := range products {
		name := ProductName(p)
		if _, dup := img.Products[name]; dup {
			return nil, fmt.Errorf("simplestreams: product %q: %w: duplicate product name", name, ErrInvalid)
		}
		pj, err := r.product(name, p)
		if err != nil {
			return nil, err
		}
		img.Products[name] = pj
		names = append(names, name)
	}

	idx := indexJSON{
		Format:  "index:1.0",
		Updated: updated,
		Index: map[string]indexEntryJSON{
			"images": {
				DataType: "image-downloads",
				Path:     ImagesPath,
				Format:   "products:1.0",
				Updated:  updated,
				Products: names, // sorted: products were sorted by name
			},
		},
	}
	ib, err := manifest.Encode(img)
	if err != nil {
		return nil, fmt.Errorf("simplestreams: encode images: %w", err)
	}
	xb, err := manifest.Encode(idx)
	if err != nil {
		return nil, fmt.Errorf("simplestreams: encode index: %w", err)
	}
	return map[string][]byte{ImagesPath: ib, IndexPath: xb}, nil
}

func (r *renderer) product(name string, p Product) (productJSON, error) {
	fail := func(sentinel error, format string, a ...any) (productJSON, error) {
		return productJSON{}, fmt.Errorf("simplestreams: product %q: %w: %s", name, sentinel, fmt.Sprintf(format, a...))
	}
	canon, ok := KnownArch(p.Arch)
	if !ok {
		return fail(ErrArch, "arch %q is not known to LXD and Incus", p.Arch)
	}
	for _, f := range []struct{ field, v string }{{"os", p.OS}, {"release", p.Release}, {"variant", p.Variant}} {
		if err := checkToken(f.v); err != nil {
			return fail(ErrInvalid, "%s: %v", f.field, err)
		}
	}
	title := p.ReleaseTitle
	if title == "" {
		title = p.Release
	}
	if err := checkText(title); err != nil {
		return fail(ErrInvalid, "release title: %v", err)
	}
	for k, v := range p.Requirements {
		if k == "" {
			return fail(ErrInvalid, "empty requirement key")
		}
		if err := checkText(k); err != nil {
			return fail(ErrInvalid, "requirement key: %v", err)
		}
		if err := checkText(v); err != nil {
			return fail(ErrInvalid, "requirement %q: %v", k, err)
		}
	}

	aliases := p.Aliases
	if len(aliases) == 0 {
		aliases = DefaultAliases(p)
	}
	if err := r.claimAliases(name, p.Arch, canon, aliases); err != nil {
		return productJSON{}, err
	}

	if len(p.Versions) == 0 {
		return fail(ErrEmpty, "no versions")
	}
	versions := make([]Version, len(p.Versions))
	copy(versions, p.Versions)
	sort.SliceStable(versions, func(i, j int) bool { return versions[i].Name < versions[j].Name })
	vj := make(map[string]versionJSON, len(versions))
	for i, v := range versions {
		if i > 0 && versions[i-1].Name == v.Name {
			return fail(ErrInvalid, "duplicate version %q", v.Name)
		}
		j, err := r.version(name, v)
		if err != nil {
			return productJSON{}, err
		}
		vj[v.Name] = j
	}

	var req map[string]string
	if len(p.Requirements) > 0 {
		req = make(map[string]string, len(p.Requirements))
		for k, v := range p.Requirements {
			req[k] = v
		}
	}
	return productJSON{
		Aliases:      strings.Join(aliases, ","),
		Arch:         p.Arch,
		OS:           p.OS,
		Release:      p.Release,
		ReleaseTitle: title,
		Variant:      p.Variant,
		Requirements: req,
		Versions:     vj,
	}, nil
}

// claimAliases checks the aliases of one product and registers them, as
// clients expand them ("<alias>" and "<alias>/<arch>"), under the canonical
// architecture.
func (r *renderer) claimAliases(name, arch, canon string, aliases []string) error {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("simplestreams: product %q: %w: %s", name, ErrAlias, fmt.Sprintf(format, a...))
	}
	seen := make(map[string]bool, len(aliases))
	for _, a := range aliases {
		switch {
		case a == "":
			return fail("empty alias")
		case !utf8.ValidString(a):
			return fail("alias %q is not valid UTF-8", a)
		case strings.Contains(a, ","):
			return fail("alias %q has a comma", a)
		case strings.ContainsFunc(a, func(r rune) bool { return unicode.IsSpace(r) || isControl(r) }):
			return fail("alias %q has white space or control characters", a)
		case seen[a]:
			return fail("alias %q listed twice", a)
		}
		seen[a] = true
	}
	for _, a := range aliases {
		for _, full := range []string{a, a + "/" + arch} {
			k := canon + "\x00" + full
			if other, ok := r.aliases[k]; ok && other != name {
				return fail("alias %q (architecture %s) is also used by product %q", full, canon, other)
			}
			r.aliases[k] = name
		}
	}
	return nil
}

func (r *renderer) version(product string, v Version) (versionJSON, error) {
	where := fmt.Sprintf("product %q: version %q", product, v.Name)
	fail := func(sentinel error, format string, a ...any) (versionJSON, error) {
		return versionJSON{}, fmt.Errorf("simplestreams: %s: %w: %s", where, sentinel, fmt.Sprintf(format, a...))
	}
	if err := checkVersionName(v.Name); err != nil {
		return fail(ErrVersionName, "%v", err)
	}
	if err := checkText(v.Label); err != nil {
		return fail(ErrInvalid, "label: %v", err)
	}

	var meta *Item
	roots := map[string]Item{} // ftype -> item
	items := make(map[string]itemJSON, len(v.Items)+1)
	for i := range v.Items {
		it := v.Items[i]
		if err := checkFile(it); err != nil {
			if it.FType == FTypeMeta {
				return fail(ErrInvalid, "metadata item: %v", err)
			}
			return fail(ErrInvalid, "item %q: %v", it.Key, err)
		}
		switch {
		case it.FType == FTypeMeta:
			if meta != nil {
				return fail(ErrItems, "two metadata items (%q and %q)", meta.Path, it.Path)
			}
			meta = &v.Items[i]
			continue
		case !isRoot(it.FType):
			hint := ""
			if it.FType == FTypeIncusMeta || it.FType == FTypeLXDMeta {
				hint = " (use FTypeMeta for the metadata tarball)"
			}
			return fail(ErrInvalid, "item %q: unknown ftype %q%s", it.Key, it.FType, hint)
		}
		switch {
		case it.Key == "":
			return fail(ErrInvalid, "empty item key")
		case !utf8.ValidString(it.Key) || strings.ContainsFunc(it.Key, isControl):
			return fail(ErrInvalid, "item key %q has control characters or invalid UTF-8", it.Key)
		case it.Key == FTypeIncusMeta || it.Key == FTypeLXDMeta:
			return fail(ErrInvalid, "item key %q is reserved for the metadata tarball", it.Key)
		}
		if _, dup := items[it.Key]; dup {
			return fail(ErrInvalid, "duplicate item key %q", it.Key)
		}
		if prev, dup := roots[it.FType]; dup {
			return fail(ErrItems, "two %s items (%q and %q)", it.FType, prev.Key, it.Key)
		}
		roots[it.FType] = it
		items[it.Key] = itemJSON{FType: it.FType, Path: it.Path, Size: it.Size, SHA256: it.SHA256}
	}
	if meta == nil {
		return fail(ErrItems, "no metadata item (FTypeMeta)")
	}
	if len(roots) == 0 {
		return fail(ErrItems, "no root item (squashfs, disk-kvm.img or root.tar.xz)")
	}
	for _, ft := range sortedKeys(v.Combined) {
		if _, ok := roots[ft]; !ok {
			return fail(ErrItems, "combined hash for %q but no such root item", ft)
		}
	}

	m := itemJSON{Path: meta.Path, Size: meta.Size, SHA256: meta.SHA256}
	for _, ft := range rootFTypes {
		if _, ok := roots[ft]; !ok {
			continue
		}
		h, ok := v.Combined[ft]
		if !ok || h == "" {
			return fail(ErrItems, "no combined hash for the %s item %q", ft, roots[ft].Key)
		}
		if !isSHA256(h) {
			return fail(ErrInvalid, "combined hash for %s %q is not 64 lower-case hex digits", ft, h)
		}
		img := fmt.Sprintf("%s: %s image", where, ft)
		if other, dup := r.fingerprints[h]; dup {
			return fail(ErrInvalid, "fingerprint %s of the %s image is also the fingerprint of %s", h, ft, other)
		}
		r.fingerprints[h] = img
		switch ft {
		case FTypeSquashfs:
			m.CombinedSquashfs = h
		case FTypeDiskKVM:
			m.CombinedDiskKVM = h
		case FTypeRootTarXZ:
			m.CombinedRootXZ = h
			m.Combined = h
		}
	}
	m.FType = FTypeIncusMeta
	items[FTypeIncusMeta] = m
	m.FType = FTypeLXDMeta
	items[FTypeLXDMeta] = m

	// One path, one file: record sizes and sums across the catalog.
	all := append([]Item{*meta}, sortedRoots(roots)...)
	for _, it := range all {
		ref := fileRef{size: it.Size, sha256: it.SHA256, where: where}
		if prev, ok := r.paths[it.Path]; ok {
			if prev.size != it.Size || prev.sha256 != it.SHA256 {
				return fail(ErrInvalid, "path %q has size %d sha256 %s here but size %d sha256 %s in %s",
					it.Path, it.Size, it.SHA256, prev.size, prev.sha256, prev.where)
			}
			continue
		}
		r.paths[it.Path] = ref
	}
	return versionJSON{Items: items, Label: v.Label}, nil
}

func sortedRoots(roots map[string]Item) []Item {
	out := make([]Item, 0, len(roots))
	for _, ft := range rootFTypes {
		if it, ok := roots[ft]; ok {
			out = append(out, it)
		}
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkFile checks the fields every item has: path, size and sha256.
func checkFile(it Item) error {
	if err := checkPath(it.Path); err != nil {
		return err
	}
	if it.Size <= 0 {
		return fmt.Errorf("size %d is not positive", it.Size)
	}
	if !isSHA256(it.SHA256) {
		return fmt.Errorf("sha256 %q is not 64 lower-case hex digits", it.SHA256)
	}
	return nil
}

// checkPath accepts a relative path of segments made of A-Z a-z 0-9 and
// "-._~+", none empty, "." or "..", that is not one of the manifests.
func checkPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q is absolute", p)
	case p == IndexPath || p == ImagesPath:
		return fmt.Errorf("path %q is a manifest", p)
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c != '/' && !isPathByte(c) {
			return fmt.Errorf("path %q has byte %q (only A-Z a-z 0-9 - . _ ~ + and /)", p, c)
		}
	}
	for _, s := range strings.Split(p, "/") {
		switch s {
		case "":
			return fmt.Errorf("path %q has an empty segment", p)
		case ".", "..":
			return fmt.Errorf("path %q has a %q segment", p, s)
		}
	}
	return nil
}

func isPathByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~' || c == '+'
}

// checkToken accepts a non-empty string of A-Z a-z 0-9 and "._+~-".
func checkToken(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '_' || c == '+' || c == '~' || c == '-') {
			return fmt.Errorf("%q has byte %q (only A-Z a-z 0-9 . _ + ~ -)", s, c)
		}
	}
	return nil
}

// checkText accepts valid UTF-8 without control characters.
func checkText(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%q is not valid UTF-8", s)
	}
	if strings.ContainsFunc(s, isControl) {
		return fmt.Errorf("%q has control characters", s)
	}
	return nil
}

// checkVersionName accepts names whose first 8 bytes are a valid YYYYMMDD
// date and whose bytes are all A-Z a-z 0-9 . _ -.
func checkVersionName(n string) error {
	if len(n) < 8 {
		return fmt.Errorf("%q does not start with YYYYMMDD", n)
	}
	for i := 0; i < 8; i++ {
		if n[i] < '0' || n[i] > '9' {
			return fmt.Errorf("%q does not start with YYYYMMDD", n)
		}
	}
	if _, err := time.Parse("20060102", n[:8]); err != nil {
		return fmt.Errorf("%q does not start with a valid YYYYMMDD date", n)
	}
	for i := 8; i < len(n); i++ {
		c := n[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%q has byte %q (only A-Z a-z 0-9 . _ -)", n, c)
		}
	}
	return nil
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// WriteOrder returns paths in the order they should be written (each
// atomically) so that a client never sees an index naming a products file
// that is not there yet: any other file first, then images.json, and
// index.json last. Within a group the order is sorted.
func WriteOrder(paths []string) []string {
	rank := func(p string) int {
		switch p {
		case IndexPath:
			return 2
		case ImagesPath:
			return 1
		}
		return 0
	}
	return manifest.Order(paths, rank)
}
