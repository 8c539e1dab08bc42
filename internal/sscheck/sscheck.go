// Package sscheck checks a simplestreams image tree the way the LXD and
// Incus simplestreams clients read it, and reports what each client would
// list: its images, their fingerprints and types, and the alias table.
//
// The walk follows the clients step by step: GET <base>/streams/v1/index.json,
// then every products file an index entry points to, then (with
// Options.Download) every item file, recomputing each image fingerprint as
// sha256(meta bytes || root bytes). Everything a client would silently skip
// (an index entry, a product, a version, an image) is reported as an error,
// because skipping is how a broken tree loses images without anyone noticing.
//
// Client behaviours mirrored (read from the upstream sources named below;
// lxc/incus under shared/simplestreams/ and client/, canonical/lxd likewise):
//
//   - The index is always <base>/streams/v1/index.json, and every path is
//     joined to the base URL (lxc/incus shared/simplestreams/simplestreams.go
//     parseStream, cachedDownload with url.JoinPath; canonical/lxd
//     shared/simplestreams/simplestreams.go). An empty body is an error there.
//   - Index entries are used only when datatype is "image-downloads" and the
//     products list is non-empty; every other entry is skipped without its
//     file being read (getImages and GetFiles in both simplestreams.go files;
//     the Stream/StreamIndex types in canonical/lxd
//     shared/simplestreams/index.go).
//   - Documents are decoded with encoding/json into the clients' structs, so a
//     field of the wrong JSON type (a string size, a boolean requirement)
//     makes the whole remote fail to list; the same types are used here
//     (Products/Product/ProductVersion/ProductVersionItem in
//     shared/simplestreams/products.go of both repositories; LXD also has
//     lxd_requirements).
//   - A product is skipped when its arch is unknown to osarch; the tables of
//     lxc/incus shared/osarch/architectures.go and canonical/lxd
//     shared/osarch/architectures.go are copied (Incus alone knows
//     x86_64_v1..x86_64_v4).
//   - A version is skipped unless its name is at least 8 characters long and
//     those parse with layout "20060102" (Incus ToAPI); canonical/lxd ToLXD
//     first tries the whole name with "20060102_0304" (that is the layout in
//     the source, not "20060102_1504") and then the first 8 characters, which
//     only changes the creation date, not what is accepted.
//   - Images are built per version from a metadata item and a root item:
//     Incus takes ftype "incus.tar.xz" (split) or "incus_combined.tar.gz"
//     (unified), canonical LXD "lxd.tar.xz" or "lxd_combined.tar.gz"
//     (lxdCompatItems/lxdCompatCombinedItems). Root ftypes are squashfs,
//     root.tar.xz, disk-kvm.img, disk1.img, uefi1.img. The fingerprint is
//     combined_squashfs_sha256, combined_rootxz_sha256 (else combined_sha256),
//     combined_disk-kvm-img_sha256, combined_disk1-img_sha256 or
//     combined_uefi1-img_sha256 of the metadata item, or the unified
//     tarball's own sha256; an empty one drops the image ("No image
//     fingerprint found"). disk-kvm.img, disk1.img and uefi1.img make
//     virtual-machine images, the rest containers (ToAPI/ToLXD).
//   - Downloads are checked against each item's sha256 (lxc/incus
//     shared/util DownloadFileHash via client/simplestreams_images.go
//     GetImageFile, "Hash mismatch"; a 404 is util.ErrNotFound), and canonical
//     LXD's client then checks sha256(meta || root) against the fingerprint
//     (canonical/lxd client/simplestreams_images.go GetImageFile, "Image
//     fingerprint mismatch"). The Incus message "Image fingerprint doesn't
//     match" is taken from the project research (seeds-systems.md §2.1): the
//     Incus GetImageFile version read here checks per-file hashes only. The
//     clients do not compare sizes; this checker does, as sstream-mirror and
//     incus-simplestreams verify do.
//   - Aliases: images are sorted by os, release, variant, serial (newest
//     first), architecture, then type preference squashfs > root.tar.xz >
//     disk-kvm.img > uefi1.img > disk1.img (sortedImages in
//     shared/simplestreams/sort.go of both repositories; an unknown type such
//     as a unified tarball scores like squashfs). Each comma-separated entry of
//     "aliases" (not trimmed) registers "<alias>" and "<alias>/<arch>" per
//     image type and architecture; the first image in that order wins and
//     later claims are dropped silently (applyAliases). The short alias shows
//     on images of the local architecture only. Alias lookups prefer the
//     local architecture, then its personalities (sortedAliases, GetAlias,
//     ListAliases; client/simplestreams_images.go GetImageAlias tries
//     "container" before "virtual-machine").
//   - Two images with the same fingerprint make GetImage fail ("More than one
//     match for the provided partial fingerprint").
//   - The daemon's on-disk cache keys index and products files by their last
//     path component (readCache/cachedDownload), so two products files with
//     the same base name are a warning.
//
// Not mirrored: the clients fetch item files over plain http:// first and
// fall back to https://; this checker fetches them from the base URL only.
// Delta (.vcdiff) items are size- and sha256-checked but never applied.
// The LXD "cloud-images.ubuntu.com drops the ubuntu/ alias prefix" rule is
// not applied.
package sscheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Errors Check wraps; Main maps them to exit codes.
var (
	// ErrUsage: bad options (base URL, architecture, CA file).
	ErrUsage = errors.New("usage")
	// ErrInvalid: the tree has errors, or its index could not be fetched.
	ErrInvalid = errors.New("simplestreams tree invalid")
)

// Client names used in reports.
const (
	ClientIncus = "incus"
	ClientLXD   = "lxd"
)

// Image types, as the clients name them.
const (
	TypeContainer = "container"
	TypeVM        = "virtual-machine"
)

// DefaultArch is the local architecture assumed for short aliases.
const DefaultArch = "amd64"

// IndexPath is where both clients look for the index, under the base URL.
const IndexPath = "streams/v1/index.json"

// Options configure Check.
type Options struct {
	// BaseURL is the remote as given to `incus remote add` (https://host:port/
	// or http://...); a URL ending in streams/v1/index.json is accepted and
	// trimmed, with a warning.
	BaseURL string
	// HTTPClient fetches everything (nil: NewHTTPClient(false, "")).
	HTTPClient *http.Client
	// Arch is the local architecture short aliases are shown for, in any
	// osarch spelling (empty: DefaultArch).
	Arch string
	// Download fetches every item, checks its size and sha256 and recomputes
	// every image fingerprint.
	Download bool
	// Stdout receives the FILE progress lines and the final report
	// (nil: discarded).
	Stdout io.Writer
}

// Report is what Check found.
type Report struct {
	// BaseURL is the base URL used, Arch the canonical local architecture.
	BaseURL string
	Arch    string
	// Images lists what each client would show, Incus first, each client's
	// images in that client's sort order.
	Images []Image
	// Aliases is each client's alias table as ListAliases returns it: sorted
	// with the local architecture first and one entry per (name, type).
	Aliases []Alias
	// Files lists the downloaded item files (empty without Download).
	Files []File
	// Errors fail the check; Warnings do not.
	Errors   []string
	Warnings []string
}

// Image is one image as a client lists it.
type Image struct {
	Client  string
	Product string
	Version string
	// Arch is the canonical (osarch) architecture name, e.g. x86_64.
	Arch string
	// Type is TypeContainer or TypeVM; RootType the root item's ftype, or
	// "tar.gz" for a unified tarball.
	Type     string
	RootType string
	// Fingerprint and the metadata item field it came from.
	Fingerprint      string
	FingerprintField string
	MetaPath         string
	RootPath         string
	Size             int64
	// Aliases are the names the client shows on this image (the short ones
	// only when Arch is the local architecture).
	Aliases []string
	// Verified says the files were downloaded and the fingerprint recomputed
	// and matched.
	Verified bool

	props   map[string]string
	entries []string // the product's alias entries
}

// Alias is one row of a client's alias table.
type Alias struct {
	Client      string
	Name        string
	Type        string
	Arch        string
	Fingerprint string
	Product     string
	Version     string
}

// File is one downloaded item file.
type File struct {
	Path   string
	Size   int64
	SHA256 string
	OK     bool
}

// OK reports whether the check found no error.
func (r *Report) OK() bool { return len(r.Errors) == 0 }

// ImagesFor returns the images client lists.
func (r *Report) ImagesFor(client string) []Image {
	var out []Image
	for _, im := range r.Images {
		if im.Client == client {
			out = append(out, im)
		}
	}
	return out
}

// Resolve returns what client's GetImageAlias/GetImageAliasType would return
// for name: with imageType empty, a container alias first, else a
// virtual-machine one.
func (r *Report) Resolve(client, imageType, name string) (Alias, bool) {
	types := []string{imageType}
	if imageType == "" {
		types = []string{TypeContainer, TypeVM}
	}
	for _, typ := range types {
		for _, a := range r.Aliases {
			if a.Client == client && a.Name == name && a.Type == typ {
				return a, true
			}
		}
	}
	return Alias{}, false
}

// Check walks the tree at opts.BaseURL like the clients do. The returned
// error wraps ErrUsage for bad options and ErrInvalid when the tree has
// errors; the Report is filled as far as the check got and, except for
// usage errors, written to opts.Stdout.
func Check(ctx context.Context, opts Options) (Report, error) {
	rep := Report{BaseURL: opts.BaseURL}
	out := opts.Stdout
	if out == nil {
		out = io.Discard
	}
	base, trimmed, err := parseBase(opts.BaseURL)
	if err != nil {
		return rep, err
	}
	rep.BaseURL = base.String()
	if opts.Arch == "" {
		opts.Arch = DefaultArch
	}
	local, ok := incusArches.canonical(opts.Arch)
	if !ok {
		return rep, fmt.Errorf("%w: architecture %q is unknown to osarch", ErrUsage, opts.Arch)
	}
	rep.Arch = local
	client := opts.HTTPClient
	if client == nil {
		if client, err = NewHTTPClient(false, ""); err != nil {
			return rep, err
		}
	}

	c := &checker{
		f:     &fetcher{client: client, base: base},
		rep:   &rep,
		out:   out,
		local: local,
	}
	if trimmed {
		c.warnf("base URL %q ends in %s: LXD and Incus take the base URL and append %s themselves", opts.BaseURL, IndexPath, IndexPath)
	}
	if base.Scheme == "http" {
		c.warnf("base URL is http://: `incus/lxc remote add` only accept https:// for simplestreams remotes")
	}
	c.walk(ctx)
	if ctx.Err() == nil {
		c.buildAll()
		if opts.Download {
			c.downloadAll(ctx)
		}
	}
	c.finish()
	WriteReport(out, &rep)
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("check %s: %w", rep.BaseURL, err)
	}
	if len(rep.Errors) > 0 {
		return rep, fmt.Errorf("%w: %s", ErrInvalid, summarize(rep.Errors))
	}
	return rep, nil
}

// parseBase validates the base URL and gives it a trailing slash; a URL
// ending in the index path is trimmed back to its base (trimmed is true).
func parseBase(raw string) (*url.URL, bool, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, false, fmt.Errorf("%w: base URL %q is not an http(s) URL", ErrUsage, raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, false, fmt.Errorf("%w: base URL %q has a query or fragment", ErrUsage, raw)
	}
	trimmed := false
	if p, ok := strings.CutSuffix(u.Path, "/"+IndexPath); ok {
		u.Path, u.RawPath, trimmed = p, "", true
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		u.RawPath = ""
	}
	return u, trimmed, nil
}

// WriteReport prints the report: IMAGE and ALIAS lines, WARN and ERROR
// lines, and a final SUMMARY line.
func WriteReport(w io.Writer, r *Report) {
	for _, im := range r.Images {
		aliases := "-"
		if len(im.Aliases) > 0 {
			aliases = strings.Join(im.Aliases, ",")
		}
		verified := "no"
		if im.Verified {
			verified = "yes"
		}
		logf(w, "IMAGE client=%s product=%s version=%s type=%s fingerprint=%s aliases=%s root=%s arch=%s verified=%s\n",
			im.Client, im.Product, im.Version, im.Type, im.Fingerprint, aliases, im.RootType, im.Arch, verified)
	}
	for _, a := range r.Aliases {
		logf(w, "ALIAS client=%s name=%s type=%s arch=%s fingerprint=%s product=%s version=%s\n",
			a.Client, a.Name, a.Type, a.Arch, a.Fingerprint, a.Product, a.Version)
	}
	for _, s := range r.Warnings {
		logf(w, "WARN: %s\n", s)
	}
	for _, s := range r.Errors {
		logf(w, "ERROR: %s\n", s)
	}
	logf(w, "SUMMARY images=%d errors=%d warnings=%d incus=%d lxd=%d files=%d\n",
		len(r.Images), len(r.Errors), len(r.Warnings), len(r.ImagesFor(ClientIncus)), len(r.ImagesFor(ClientLXD)), len(r.Files))
}

func summarize(problems []string) string {
	const max = 3
	if len(problems) <= max {
		return strings.Join(problems, "; ")
	}
	return strings.Join(problems[:max], "; ") + fmt.Sprintf("; and %d more", len(problems)-max)
}

func logf(w io.Writer, format string, args ...any) {
	_, _ = fmt.Fprintf(w, format, args...)
}
