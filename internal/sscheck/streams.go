package sscheck

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// The documents, with the clients' field names and Go types (so that what
// fails to decode here fails in the clients too). Size is a pointer only to
// tell a missing size from 0.

type streamDoc struct {
	Index   map[string]indexEntry `json:"index"`
	Updated string                `json:"updated,omitempty"`
	Format  string                `json:"format"`
}

type indexEntry struct {
	DataType string   `json:"datatype"`
	Path     string   `json:"path"`
	Updated  string   `json:"updated,omitempty"`
	Products []string `json:"products"`
	Format   string   `json:"format,omitempty"`
}

type productsDoc struct {
	ContentID string             `json:"content_id"`
	DataType  string             `json:"datatype"`
	Format    string             `json:"format"`
	License   string             `json:"license,omitempty"`
	Products  map[string]product `json:"products"`
	Updated   string             `json:"updated,omitempty"`
}

type product struct {
	Aliases         string                    `json:"aliases"`
	Architecture    string                    `json:"arch"`
	OperatingSystem string                    `json:"os"`
	LXDRequirements json.RawMessage           `json:"lxd_requirements,omitempty"` // LXD only: map[string]string
	Requirements    map[string]string         `json:"requirements,omitempty"`
	Release         string                    `json:"release"`
	ReleaseCodename string                    `json:"release_codename,omitempty"`
	ReleaseTitle    string                    `json:"release_title"`
	Supported       bool                      `json:"supported,omitempty"`
	SupportedEOL    string                    `json:"support_eol,omitempty"`
	Version         string                    `json:"version,omitempty"`
	Versions        map[string]productVersion `json:"versions"`
	Variant         string                    `json:"variant,omitempty"`
}

type productVersion struct {
	Items      map[string]item `json:"items"`
	Label      string          `json:"label,omitempty"`
	PublicName string          `json:"pubname,omitempty"`
}

type item struct {
	CombinedSha256DiskImg     string `json:"combined_disk1-img_sha256,omitempty"`
	CombinedSha256DiskKvmImg  string `json:"combined_disk-kvm-img_sha256,omitempty"`
	CombinedSha256DiskUefiImg string `json:"combined_uefi1-img_sha256,omitempty"`
	CombinedSha256RootXz      string `json:"combined_rootxz_sha256,omitempty"`
	CombinedSha256            string `json:"combined_sha256,omitempty"`
	CombinedSha256SquashFs    string `json:"combined_squashfs_sha256,omitempty"`
	FileType                  string `json:"ftype"`
	HashMd5                   string `json:"md5,omitempty"`
	Path                      string `json:"path"`
	HashSha256                string `json:"sha256,omitempty"`
	Size                      *int64 `json:"size"`
	DeltaBase                 string `json:"delta_base,omitempty"`
}

func (it *item) size() int64 {
	if it.Size == nil {
		return 0
	}
	return *it.Size
}

// The ftypes the clients know.
const (
	ftIncusMeta     = "incus.tar.xz"
	ftIncusCombined = "incus_combined.tar.gz"
	ftLXDMeta       = "lxd.tar.xz"
	ftLXDCombined   = "lxd_combined.tar.gz"
	ftSquashfs      = "squashfs"
	ftRootXz        = "root.tar.xz"
	ftDiskKVM       = "disk-kvm.img"
	ftDisk1         = "disk1.img"
	ftUEFI1         = "uefi1.img"
	ftSquashfsDelta = "squashfs.vcdiff"
	ftDiskKVMDelta  = "disk-kvm.img.vcdiff"
	typeTarGz       = "tar.gz" // the "type" property of a unified image
)

// rootFTypes are the root items paired with a metadata item (ToAPI/ToLXD).
var rootFTypes = []string{ftDisk1, ftDiskKVM, ftUEFI1, ftRootXz, ftSquashfs}

var knownFTypes = []string{
	ftIncusMeta, ftIncusCombined, ftLXDMeta, ftLXDCombined,
	ftSquashfs, ftRootXz, ftDiskKVM, ftDisk1, ftUEFI1, ftSquashfsDelta, ftDiskKVMDelta,
}

// combinedField returns the fingerprint of the image meta+root and the name
// of the field it came from, as ToAPI/ToLXD pick it.
func combinedField(meta *item, rootFType string) (fp, field string) {
	switch rootFType {
	case ftRootXz:
		if meta.CombinedSha256RootXz != "" {
			return meta.CombinedSha256RootXz, "combined_rootxz_sha256"
		}
		return meta.CombinedSha256, "combined_sha256"
	case ftSquashfs:
		return meta.CombinedSha256SquashFs, "combined_squashfs_sha256"
	case ftDiskKVM:
		return meta.CombinedSha256DiskKvmImg, "combined_disk-kvm-img_sha256"
	case ftDisk1:
		return meta.CombinedSha256DiskImg, "combined_disk1-img_sha256"
	case ftUEFI1:
		return meta.CombinedSha256DiskUefiImg, "combined_uefi1-img_sha256"
	}
	return "", ""
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)
var md5Hex = regexp.MustCompile(`^[0-9a-f]{32}$`)

// versionAccepted mirrors the clients' version-name test: at least 8
// characters, the first 8 a 20060102 date.
func versionAccepted(name string) bool {
	if len(name) < 8 {
		return false
	}
	_, err := time.Parse("20060102", name[:8])
	return err == nil
}

// safePath reports why p is not a plain relative path under the base URL
// (the rule of simplestreams' assert_safe_path, plus URL pitfalls).
func safePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty path")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q is absolute", p)
	case strings.Contains(p, "\\"):
		return fmt.Errorf("path %q contains a backslash", p)
	case strings.Contains(p, "://"):
		return fmt.Errorf("path %q is a URL", p)
	case strings.ContainsAny(p, "?#"):
		return fmt.Errorf("path %q contains ? or #", p)
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("path %q contains a control character", p)
		}
	}
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "":
			return fmt.Errorf("path %q has an empty component", p)
		case ".", "..":
			return fmt.Errorf("path %q has a %q component", p, c)
		}
	}
	return nil
}

// splitAliases splits the aliases string as the clients do (no trimming).
func splitAliases(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// checkEntry compares an index entry's products list with the products of
// the file it points to.
func (c *checker) checkEntry(contentID string, entry indexEntry, doc *productsDoc) {
	if doc.ContentID != contentID {
		c.warnf("%s: content_id %q differs from its index key %q", entry.Path, doc.ContentID, contentID)
	}
	listed := map[string]bool{}
	for _, name := range entry.Products {
		if listed[name] {
			c.warnf("index entry %q lists product %q twice", contentID, name)
		}
		listed[name] = true
		if _, ok := doc.Products[name]; !ok {
			c.errorf("index entry %q lists product %q, which %s does not have", contentID, name, entry.Path)
		}
	}
	for _, name := range sortedKeys(doc.Products) {
		if !listed[name] {
			c.errorf("%s has product %q, which index entry %q does not list", entry.Path, name, contentID)
		}
	}
}

// checkProducts validates one decoded products file; file is its path.
func (c *checker) checkProducts(file string, doc *productsDoc) {
	if doc.Format != "products:1.0" {
		c.errorf("%s: format %q, want \"products:1.0\"", file, doc.Format)
	}
	if doc.DataType != "" && doc.DataType != "image-downloads" {
		c.warnf("%s: datatype %q, want \"image-downloads\"", file, doc.DataType)
	}
	if len(doc.Products) == 0 {
		c.errorf("%s has no products", file)
	}
	for _, name := range sortedKeys(doc.Products) {
		p := doc.Products[name]
		c.checkProduct(file, name, &p)
	}
}

func (c *checker) checkProduct(file, name string, p *product) {
	where := fmt.Sprintf("%s: product %q", file, name)
	_, incusOK := incusArches.canonical(p.Architecture)
	_, lxdOK := lxdArches.canonical(p.Architecture)
	switch {
	case p.Architecture == "":
		c.errorf("%s: no arch: LXD and Incus skip the product", where)
	case !incusOK:
		c.errorf("%s: arch %q is unknown to osarch: LXD and Incus skip the product", where, p.Architecture)
	case !lxdOK:
		c.errorf("%s: arch %q is unknown to canonical LXD's osarch (only Incus knows it): LXD skips the product", where, p.Architecture)
	}
	if p.OperatingSystem == "" {
		c.errorf("%s: no os", where)
	}
	if p.Release == "" {
		c.errorf("%s: no release", where)
	}
	if p.ReleaseTitle == "" {
		c.warnf("%s: no release_title (image descriptions become %q)", where, p.OperatingSystem+"  "+p.Architecture)
	}
	if p.Aliases == "" {
		c.warnf("%s: no aliases: its images are reachable by fingerprint only", where)
	}
	for _, a := range splitAliases(p.Aliases) {
		switch {
		case a == "":
			c.warnf("%s: aliases %q has an empty entry (the clients register an alias \"\")", where, p.Aliases)
		case strings.TrimSpace(a) != a:
			c.warnf("%s: alias %q has surrounding spaces (the clients do not trim them)", where, a)
		case strings.ContainsAny(a, " \t"):
			c.warnf("%s: alias %q contains blanks", where, a)
		}
	}
	if len(p.Versions) == 0 {
		c.warnf("%s: no versions", where)
	}
	for _, vname := range sortedKeys(p.Versions) {
		v := p.Versions[vname]
		c.checkVersion(where, p, vname, &v)
	}
}

func (c *checker) checkVersion(productWhere string, p *product, name string, v *productVersion) {
	where := fmt.Sprintf("%s version %q", productWhere, name)
	accepted := versionAccepted(name)
	if !accepted {
		c.errorf("%s: name does not start with a YYYYMMDD date: LXD and Incus skip the version", where)
	}
	if len(v.Items) == 0 {
		c.errorf("%s: no items", where)
		return
	}
	var hasIncus, hasLXD, hasRoot bool
	for _, key := range sortedKeys(v.Items) {
		it := v.Items[key]
		c.checkItem(where, key, &it)
		switch it.FileType {
		case ftIncusMeta, ftIncusCombined:
			hasIncus = true
		case ftLXDMeta, ftLXDCombined:
			hasLXD = true
		}
		if slices.Contains(rootFTypes, it.FileType) {
			hasRoot = true
		}
	}
	if !accepted {
		return
	}
	switch {
	case !hasIncus && !hasLXD:
		c.errorf("%s: no metadata item (ftype %s, %s, %s or %s): LXD and Incus list nothing for it", where, ftIncusMeta, ftLXDMeta, ftIncusCombined, ftLXDCombined)
	case hasLXD && !hasIncus:
		c.warnf("%s: only LXD metadata (%s/%s): Incus >= 0.1 lists nothing for it", where, ftLXDMeta, ftLXDCombined)
	case hasIncus && !hasLXD:
		c.warnf("%s: only Incus metadata (%s/%s): canonical LXD lists nothing for it", where, ftIncusMeta, ftIncusCombined)
	}
	if !hasRoot {
		for _, it := range v.Items {
			if it.FileType == ftIncusMeta || it.FileType == ftLXDMeta {
				c.errorf("%s: a %s item but no root item (%s): no image", where, it.FileType, strings.Join(rootFTypes, ", "))
				break
			}
		}
	}
}

func (c *checker) checkItem(versionWhere, key string, it *item) {
	where := fmt.Sprintf("%s item %q", versionWhere, key)
	switch {
	case it.FileType == "":
		c.errorf("%s: no ftype", where)
	case !slices.Contains(knownFTypes, it.FileType):
		c.warnf("%s: ftype %q is not used by LXD or Incus", where, it.FileType)
	}
	if err := safePath(it.Path); err != nil {
		c.errorf("%s: %v", where, err)
	}
	switch {
	case it.Size == nil:
		c.errorf("%s: no size", where)
	case *it.Size < 0:
		c.errorf("%s: negative size %d", where, *it.Size)
	case *it.Size == 0:
		c.warnf("%s: size 0", where)
	}
	switch {
	case it.HashSha256 == "":
		c.errorf("%s: no sha256: the clients' download hash check fails", where)
	case !sha256Hex.MatchString(it.HashSha256):
		c.errorf("%s: sha256 %q is not 64 lower-case hex digits (the clients compare lower-case hex)", where, it.HashSha256)
	}
	if it.HashMd5 != "" && !md5Hex.MatchString(it.HashMd5) {
		c.warnf("%s: md5 %q is not 32 lower-case hex digits", where, it.HashMd5)
	}
	for _, f := range []struct{ name, value string }{
		{"combined_squashfs_sha256", it.CombinedSha256SquashFs},
		{"combined_rootxz_sha256", it.CombinedSha256RootXz},
		{"combined_sha256", it.CombinedSha256},
		{"combined_disk-kvm-img_sha256", it.CombinedSha256DiskKvmImg},
		{"combined_disk1-img_sha256", it.CombinedSha256DiskImg},
		{"combined_uefi1-img_sha256", it.CombinedSha256DiskUefiImg},
	} {
		if f.value != "" && !sha256Hex.MatchString(f.value) {
			c.errorf("%s: %s %q is not 64 lower-case hex digits", where, f.name, f.value)
		}
	}
	// A delta_base naming a pruned version is normal (the clients skip such
	// deltas on purpose: "Delta for a since expired image").
	if strings.HasSuffix(it.FileType, ".vcdiff") && it.DeltaBase == "" {
		c.warnf("%s: delta without delta_base: the clients never use it", where)
	}
}
