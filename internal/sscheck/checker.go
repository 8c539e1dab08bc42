package sscheck

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"
	"strings"
)

// maxDocument bounds index and products files.
const maxDocument = 256 << 20

// clientSpec is what differs between the two clients.
type clientSpec struct {
	name     string
	title    string
	meta     string // split-image metadata ftype
	combined string // unified-image ftype
	arches   osarchTable
}

var clients = []*clientSpec{
	{name: ClientIncus, title: "Incus", meta: ftIncusMeta, combined: ftIncusCombined, arches: incusArches},
	{name: ClientLXD, title: "LXD", meta: ftLXDMeta, combined: ftLXDCombined, arches: lxdArches},
}

// productsFile is a products file an index entry points to.
type productsFile struct {
	path string
	doc  *productsDoc
}

// dupAlias is an alias claimed by two products (same name, type and arch).
type dupAlias struct {
	name, typ, arch string
	winner, loser   string // product names
	winnerFP        string
	tie             bool
	clients         []string
}

type checker struct {
	f     *fetcher
	rep   *Report
	out   io.Writer
	local string

	files []productsFile
	// fails marks a client whose whole listing fails (a products file it
	// cannot fetch or decode).
	fails  map[string]bool
	images map[string][]*Image
	dups   []*dupAlias
	seen   map[string]bool
}

func (c *checker) errorf(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	if !c.seen["E"+s] {
		c.seen["E"+s] = true
		c.rep.Errors = append(c.rep.Errors, s)
	}
}

func (c *checker) warnf(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	if !c.seen["W"+s] {
		c.seen["W"+s] = true
		c.rep.Warnings = append(c.rep.Warnings, s)
	}
}

func (c *checker) failAll() {
	c.fails = map[string]bool{ClientIncus: true, ClientLXD: true}
}

// walk reads the index and every products file it uses, and validates them.
func (c *checker) walk(ctx context.Context) {
	c.fails = map[string]bool{}
	body, err := c.f.get(ctx, IndexPath, maxDocument)
	if err != nil {
		if ctx.Err() == nil {
			c.errorf("cannot fetch the index: %v: LXD and Incus list nothing", err)
		}
		c.failAll()
		return
	}
	var st streamDoc
	if err := json.Unmarshal(body, &st); err != nil {
		c.errorf("%s: cannot decode (%v): LXD and Incus fail to list this remote", IndexPath, err)
		c.failAll()
		return
	}
	if st.Format != "index:1.0" {
		c.errorf("%s: format %q, want \"index:1.0\"", IndexPath, st.Format)
	}
	if len(st.Index) == 0 {
		c.errorf("%s: no index entries: LXD and Incus list nothing", IndexPath)
	}
	docs := map[string]*productsDoc{}
	bases := map[string]string{"index.json": IndexPath}
	for _, key := range sortedKeys(st.Index) {
		e := st.Index[key]
		where := fmt.Sprintf("%s entry %q", IndexPath, key)
		if e.DataType != "image-downloads" {
			c.errorf("%s: datatype %q: LXD and Incus only read \"image-downloads\" entries and skip this one", where, e.DataType)
			continue
		}
		if len(e.Products) == 0 {
			c.errorf("%s: empty products list: LXD and Incus skip the entry without reading %q", where, e.Path)
			continue
		}
		if e.Format != "" && e.Format != "products:1.0" {
			c.errorf("%s: format %q, want \"products:1.0\"", where, e.Format)
		}
		if err := safePath(e.Path); err != nil {
			c.errorf("%s: %v", where, err)
			c.failAll()
			continue
		}
		doc, ok := docs[e.Path]
		if !ok {
			if other, ok := bases[path.Base(e.Path)]; ok && other != e.Path {
				c.warnf("%s: %q and %q share the file name %q: the daemons' on-disk cache, keyed by file name, mixes them up", where, other, e.Path, path.Base(e.Path))
			}
			bases[path.Base(e.Path)] = e.Path
			doc = c.readProducts(ctx, where, e.Path)
			if ctx.Err() != nil {
				return
			}
			docs[e.Path] = doc
			if doc != nil {
				c.checkProducts(e.Path, doc)
			}
		}
		if doc == nil {
			continue
		}
		c.checkEntry(key, e, doc)
		// Two entries naming the same file make the clients list its
		// images twice; the duplicate fingerprints are reported later.
		c.files = append(c.files, productsFile{path: e.Path, doc: doc})
	}
}

// readProducts fetches and decodes a products file; nil when a client
// cannot (the error is recorded and the client's listing marked failed).
func (c *checker) readProducts(ctx context.Context, where, p string) *productsDoc {
	body, err := c.f.get(ctx, p, maxDocument)
	if err != nil {
		if ctx.Err() == nil {
			c.errorf("%s: cannot fetch %s: %v: LXD and Incus fail to list the whole remote", where, p, err)
		}
		c.failAll()
		return nil
	}
	var doc productsDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		c.errorf("%s: cannot decode %s (%v): LXD and Incus fail to list the whole remote", where, p, err)
		c.failAll()
		return nil
	}
	for _, name := range sortedKeys(doc.Products) {
		raw := doc.Products[name].LXDRequirements
		if len(raw) == 0 {
			continue
		}
		var m map[string]string
		if err := json.Unmarshal(raw, &m); err != nil {
			c.errorf("%s: product %q: lxd_requirements is not an object of strings (%v): canonical LXD fails to decode %s and lists nothing from this remote", p, name, err, p)
			c.fails[ClientLXD] = true
		}
	}
	return &doc
}

// buildAll builds every client's images and alias table.
func (c *checker) buildAll() {
	c.images = map[string][]*Image{}
	for _, spec := range clients {
		if c.fails[spec.name] {
			continue
		}
		images := c.build(spec)
		sort.SliceStable(images, func(i, j int) bool { return lessImage(images[i], images[j]) })
		c.checkDupFingerprints(spec, images)
		c.applyAliases(spec, images)
		c.images[spec.name] = images
	}
}

// build mirrors ToAPI (Incus) and ToLXD (LXD) over every products file.
// The clients iterate maps; the keys are sorted here so the output is
// stable.
func (c *checker) build(spec *clientSpec) []*Image {
	var images []*Image
	for _, pf := range c.files {
		for _, pname := range sortedKeys(pf.doc.Products) {
			p := pf.doc.Products[pname]
			arch, ok := spec.arches.canonical(p.Architecture)
			if !ok {
				continue // "Skip unsupported architectures"
			}
			for _, vname := range sortedKeys(p.Versions) {
				if !versionAccepted(vname) {
					continue
				}
				v := p.Versions[vname]
				keys := sortedKeys(v.Items)
				for _, k := range keys {
					it := v.Items[k]
					if it.FileType == spec.combined {
						if im := c.newImage(spec, pf.path, pname, &p, vname, &v, arch, k, &it, "", nil); im != nil {
							images = append(images, im)
						}
					}
					if it.FileType != spec.meta {
						continue
					}
					for _, sk := range keys {
						sub := v.Items[sk]
						if !slices.Contains(rootFTypes, sub.FileType) {
							continue
						}
						if im := c.newImage(spec, pf.path, pname, &p, vname, &v, arch, k, &it, sk, &sub); im != nil {
							images = append(images, im)
						}
					}
				}
			}
		}
	}
	return images
}

// newImage is the clients' addImage; nil when they drop the image.
func (c *checker) newImage(spec *clientSpec, file, pname string, p *product, vname string, v *productVersion, arch, metaKey string, meta *item, rootKey string, root *item) *Image {
	where := fmt.Sprintf("%s: product %q version %q", file, pname, vname)
	var fp, field string
	if root != nil {
		fp, field = combinedField(meta, root.FileType)
	} else {
		fp, field = meta.HashSha256, "sha256"
	}
	if fp == "" {
		if root != nil {
			c.errorf("%s: %s item %q has no %s for root item %q (%s): %s drops this image (\"No image fingerprint found\")", where, meta.FileType, metaKey, field, rootKey, root.FileType, spec.title)
		} else {
			c.errorf("%s: %s item %q has no sha256: %s drops this image", where, meta.FileType, metaKey, spec.title)
		}
		return nil
	}
	if meta.Path == "" {
		return nil // "Missing path field on metadata entry"; reported by checkItem
	}
	props := map[string]string{
		"os":           p.OperatingSystem,
		"release":      p.Release,
		"version":      p.Version,
		"architecture": p.Architecture,
		"label":        v.Label,
		"serial":       vname,
		"variant":      p.Variant,
	}
	im := &Image{
		Client:           spec.name,
		Product:          pname,
		Version:          vname,
		Arch:             arch,
		Type:             TypeContainer,
		RootType:         typeTarGz,
		Fingerprint:      fp,
		FingerprintField: field,
		MetaPath:         meta.Path,
		Size:             meta.size(),
		props:            props,
		entries:          splitAliases(p.Aliases),
	}
	if root != nil {
		im.RootType = root.FileType
		im.RootPath = root.Path
		im.Size += root.size()
		switch root.FileType {
		case ftDisk1, ftDiskKVM, ftUEFI1:
			im.Type = TypeVM
		}
	}
	props["type"] = im.RootType
	return im
}

// lessImage is sortedImages.Less of both clients' sort.go.
func lessImage(a, b *Image) bool {
	for _, prop := range []string{"os", "release", "variant", "serial", "architecture"} {
		av, bv := a.props[prop], b.props[prop]
		if av == bv {
			continue
		}
		if av == "" {
			return false
		}
		// The clients test a[i] for "" a second time here (a typo for
		// a[j]), so an empty b value falls through to the comparison.
		if prop == "serial" {
			return av > bv
		}
		return av < bv
	}
	if a.props["type"] != b.props["type"] {
		return typeScore(a.props["type"]) < typeScore(b.props["type"])
	}
	return false
}

// typeScore is the clients' type preference; unknown types (a unified
// tarball's "tar.gz") score 0 like squashfs.
func typeScore(t string) int {
	for score, pref := range []string{ftSquashfs, ftRootXz, ftDiskKVM, ftUEFI1, ftDisk1} {
		if t == pref {
			return score
		}
	}
	return 0
}

func (c *checker) checkDupFingerprints(spec *clientSpec, images []*Image) {
	first := map[string]*Image{}
	for _, im := range images {
		if o, ok := first[im.Fingerprint]; ok {
			c.errorf("%s: fingerprint %s is shared by product %q version %q (%s) and product %q version %q (%s): GetImage fails with \"More than one match for the provided partial fingerprint\"",
				spec.name, im.Fingerprint, o.Product, o.Version, o.RootType, im.Product, im.Version, im.RootType)
			continue
		}
		first[im.Fingerprint] = im
	}
}

// applyAliases mirrors applyAliases and ListAliases: the registration
// (first image in sort order wins per name, type and architecture), the
// aliases shown on each image, and the alias table.
func (c *checker) applyAliases(spec *clientSpec, images []*Image) {
	var list []Alias
	winners := map[int]*Image{}
	add := func(im *Image, name string, medium bool, base string) bool {
		for i, e := range list {
			if e.Name != name || e.Type != im.Type || e.Arch != im.Arch {
				continue
			}
			if w := winners[i]; w.Product != im.Product {
				c.noteDup(spec, w, im, name, medium, base)
			}
			return false
		}
		winners[len(list)] = im
		list = append(list, Alias{
			Client: spec.name, Name: name, Type: im.Type, Arch: im.Arch,
			Fingerprint: im.Fingerprint, Product: im.Product, Version: im.Version,
		})
		return true
	}
	for _, im := range images {
		for _, entry := range im.entries {
			if add(im, entry, false, entry) && im.Arch == c.local {
				im.Aliases = append(im.Aliases, entry)
			}
			medium := entry + "/" + im.props["architecture"]
			if add(im, medium, true, entry) {
				im.Aliases = append(im.Aliases, medium)
			}
		}
	}
	// ListAliases: sort with the local architecture first, then its
	// personalities, and keep the first entry per name and type.
	native := func(arch string) bool { return arch == c.local }
	personality := func(arch string) bool { return spec.arches.isPersonality(c.local, arch) }
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i].Arch, list[j].Arch
		switch {
		case a == b:
			return false
		case native(a):
			return true
		case personality(a) && !native(b):
			return true
		}
		return false
	})
	type nameType struct{ name, typ string }
	done := map[nameType]bool{}
	for _, a := range list {
		k := nameType{a.Name, a.Type}
		if done[k] {
			continue
		}
		done[k] = true
		c.rep.Aliases = append(c.rep.Aliases, a)
	}
}

// noteDup records that loser's alias name was already taken by winner (of
// another product).
func (c *checker) noteDup(spec *clientSpec, winner, loser *Image, name string, medium bool, base string) {
	if medium {
		// Reported once, on the short alias, when that collided too.
		for _, d := range c.dups {
			if d.name == base && d.typ == loser.Type && d.arch == loser.Arch && d.winner == winner.Product && d.loser == loser.Product {
				return
			}
		}
	}
	for _, d := range c.dups {
		if d.name == name && d.typ == loser.Type && d.arch == loser.Arch && d.winner == winner.Product && d.loser == loser.Product {
			if !slices.Contains(d.clients, spec.name) {
				d.clients = append(d.clients, spec.name)
			}
			return
		}
	}
	c.dups = append(c.dups, &dupAlias{
		name: name, typ: loser.Type, arch: loser.Arch,
		winner: winner.Product, loser: loser.Product, winnerFP: winner.Fingerprint,
		tie:     !lessImage(winner, loser) && !lessImage(loser, winner),
		clients: []string{spec.name},
	})
}

// finish fills the report from the per-client results.
func (c *checker) finish() {
	for _, d := range c.dups {
		msg := fmt.Sprintf("alias %q (%s, %s) is claimed by products %q and %q: %s resolve it to %q (%s) silently",
			d.name, d.typ, d.arch, d.winner, d.loser, strings.Join(d.clients, " and "), d.winner, d.winnerFP)
		if d.tie {
			msg += "; their sort keys are equal, so the clients' choice depends on map order"
		}
		c.warnf("%s", msg)
	}
	total := 0
	for _, spec := range clients {
		for _, im := range c.images[spec.name] {
			c.rep.Images = append(c.rep.Images, *im)
		}
		total += len(c.images[spec.name])
	}
	if c.images == nil || (c.fails[ClientIncus] && c.fails[ClientLXD]) {
		return // the walk failed, and said so
	}
	if total == 0 {
		c.errorf("neither LXD nor Incus would list any image from this remote")
		return
	}
	for _, spec := range clients {
		if !c.fails[spec.name] && len(c.images[spec.name]) == 0 {
			c.warnf("%s lists no image from this remote", spec.title)
		}
	}
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, cmp.Compare[string])
	return keys
}
