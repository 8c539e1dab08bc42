package publish

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/clr-suite/clr/internal/imagelist"
)

// ListMeta holds the list-level fields a build sets. Empty fields are taken
// from the previous list, then from defaults.
type ListMeta struct {
	Identifier  string
	Title       string
	Description string
	Source      string
	URI         string // the list's own URL (hv:uri)
	BaseURI     string // prefix of every image hv:uri; must end in "/"
	ExpiresIn   time.Duration
	// Versioned gives every image version its own hv:uri in a release
	// tree (see TreeDir): BASE/<image identifier>/<digest32>/ for a
	// folder image, plus the file name for a single file. Such a path
	// never changes content, so mirrors can copy new versions without
	// overwriting anything a reader may be fetching.
	Versioned bool
	// PathIDs (versioned builds) maps library paths to the identifiers
	// the previous build used (TreeState.Paths): they continue an image
	// whose identifier is not the one its path would get.
	PathIDs map[string]string
}

// DefaultExpiry is the validity window of a new list.
const DefaultExpiry = 28 * 24 * time.Hour

// Changes summarises what a build changed compared with the previous list.
type Changes struct {
	Added, Updated, Removed, Unchanged []string // image paths (Removed: hv:uri)
	// NewRelease is true when Build gave the list a new hv:version and
	// dates: there was no previous list, or images or list fields changed.
	NewRelease bool
}

// Changed reports whether the image set differs from the previous list.
func (c Changes) Changed() bool {
	return len(c.Added)+len(c.Updated)+len(c.Removed) > 0
}

// Build makes the list for entries. prev (may be nil) supplies stable image
// identifiers, curated metadata (title, description, os...) and versions.
// An image's hv:version and dc:date:created move only when its content
// changed; the list's hv:version grows by one when anything changed.
// Dates are set to now and now+ExpiresIn when anything changed (or there is
// no previous list); otherwise the previous dates are kept, so a no-change
// build reproduces the previous list byte for byte.
func Build(prev *imagelist.List, entries []Entry, meta ListMeta, now time.Time) (*imagelist.List, Changes, error) {
	var ch Changes
	now = now.UTC().Truncate(time.Second) // list times have whole seconds
	if !strings.HasSuffix(meta.BaseURI, "/") {
		return nil, ch, fmt.Errorf("base uri %q must end with /", meta.BaseURI)
	}
	l := &imagelist.List{}
	if prev != nil {
		c := *prev
		l = &c
	}
	set := func(dst *string, v, def string) {
		if v != "" {
			*dst = v
		} else if *dst == "" {
			*dst = def
		}
	}
	newID, err := uuid4()
	if err != nil {
		return nil, ch, err
	}
	set(&l.Identifier, meta.Identifier, newID)
	set(&l.Title, meta.Title, "clr image list")
	set(&l.Description, meta.Description, "Images published with clr-publish")
	set(&l.Source, meta.Source, meta.BaseURI)
	set(&l.URI, meta.URI, meta.BaseURI+ListSigned)
	if _, err := parseUUID(l.Identifier); err != nil {
		return nil, ch, fmt.Errorf("list identifier: %w", err)
	}

	// A previous image is the same image when its hv:uri is the same, or
	// else when its identifier is the one this path gets (the base URI
	// changed): either way it keeps its identifier, version and curated
	// fields, so subscribers see no rollback.
	byURI := map[string]int{}
	byID := map[string]int{}
	if prev != nil {
		for i, img := range prev.Images {
			byURI[img.URI] = i
			byID[img.Identifier] = i
		}
	}
	images := make([]imagelist.Image, 0, len(entries))
	matched := map[int]bool{}
	for _, e := range entries {
		uri := meta.BaseURI + escapePath(e.Path)
		if e.Kind == Template {
			uri += "/"
		}
		id, err := uuid5(l.Identifier, e.Path)
		if err != nil {
			return nil, ch, err
		}
		idx, had := byURI[uri]
		if !had || meta.Versioned {
			// Versioned URIs change with every version: the
			// identifier is what continues an image.
			if i, ok := byID[meta.PathIDs[e.Path]]; ok && meta.Versioned {
				idx, had = i, true
			} else if i, ok := byID[id]; ok {
				idx, had = i, true
			}
		}
		if had && matched[idx] {
			had = false // two entries cannot both continue one image
		}
		var old, img imagelist.Image
		if had {
			matched[idx] = true
			old = prev.Images[idx]
			img = old
		} else {
			img = imagelist.Image{
				Identifier: id,
				Title:      titleFor(e),
				Hypervisor: hypervisorFor(e.Format),
				Arch:       "x86_64",
				Version:    "1",
				Created:    now,
			}
		}
		img.URI = uri
		if meta.Versioned {
			if _, err := parseUUID(img.Identifier); err != nil {
				return nil, ch, fmt.Errorf("image %s: identifier %q: a release tree names version folders by image UUID; publish this list without --tree, or give the image a UUID in the previous list", e.Path, img.Identifier)
			}
			img.URI = meta.BaseURI + TreeDir(img.Identifier, e.SHA512) + "/"
			if e.Kind == SingleFile {
				img.URI += url.PathEscape(path.Base(e.Path))
			}
		}
		img.Format = e.Format
		img.Size = e.Size
		img.SHA512 = e.SHA512
		img.Files = nil
		if e.Kind == Template {
			img.Files = append([]imagelist.File(nil), e.Files...)
		}
		if e.SS != nil {
			raw, err := json.Marshal(e.SS)
			if err != nil {
				return nil, ch, err
			}
			extra := map[string]json.RawMessage{}
			for k, v := range img.Extra {
				extra[k] = v
			}
			var was SSInfo
			if old, ok := img.Extra[KeySimpleStreams]; ok && json.Unmarshal(old, &was) == nil && reflect.DeepEqual(&was, e.SS) {
				raw = old // the same metadata, as the previous list wrote it
			}
			extra[KeySimpleStreams] = raw
			img.Extra = extra
			img.Hypervisor = "LXD,Incus"
			if !had {
				img.Title = strings.Join([]string{e.SS.OS, e.SS.Release, e.SS.Variant, e.SS.Arch, e.SS.Serial}, " ")
				img.Arch = slArch(e.SS.Arch)
			}
		}
		switch {
		case !had:
			ch.Added = append(ch.Added, e.Path)
		case !reflect.DeepEqual(normalise(old), normalise(img)):
			if old.SHA512 != img.SHA512 || old.Size != img.Size {
				img.Version = BumpVersion(old.Version)
				img.Created = now
			}
			ch.Updated = append(ch.Updated, e.Path)
		default:
			ch.Unchanged = append(ch.Unchanged, e.Path)
		}
		if err := img.Validate(); err != nil {
			return nil, ch, fmt.Errorf("image %s: %w", e.Path, err)
		}
		images = append(images, img)
	}
	if prev != nil {
		for i, img := range prev.Images {
			if !matched[i] {
				ch.Removed = append(ch.Removed, img.URI)
			}
		}
	}
	l.Images = images
	if prev == nil || ch.Changed() || meta.changesList(prev) {
		ch.NewRelease = true
		if prev == nil {
			l.Version = "1"
		} else {
			l.Version = BumpVersion(prev.Version)
		}
		l.Created = now
		exp := meta.ExpiresIn
		if exp <= 0 {
			exp = DefaultExpiry
		}
		l.Expires = now.Add(exp)
	}
	return l, ch, nil
}

// changesList reports whether meta sets a list field to a new value.
func (m ListMeta) changesList(prev *imagelist.List) bool {
	diff := func(v, old string) bool { return v != "" && v != old }
	return diff(m.Identifier, prev.Identifier) || diff(m.Title, prev.Title) ||
		diff(m.Description, prev.Description) || diff(m.Source, prev.Source) || diff(m.URI, prev.URI)
}

// normalise strips nothing today; it exists so comparisons ignore fields
// that carry no content should the image model grow such fields.
func normalise(img imagelist.Image) imagelist.Image {
	img.Created = img.Created.UTC()
	if len(img.Files) == 0 {
		img.Files = nil
	}
	if len(img.Extra) == 0 {
		img.Extra = nil
	}
	return img
}

func titleFor(e Entry) string {
	name := e.Path
	if e.Kind == SingleFile {
		if i := strings.LastIndexByte(name, '.'); i > 0 {
			name = name[:i]
		}
	}
	return name
}

// slArch maps LXD architecture names to the sl:arch convention.
func slArch(a string) string {
	switch a {
	case "amd64", "x86_64":
		return "x86_64"
	case "arm64", "aarch64":
		return "aarch64"
	case "i386", "i686":
		return "i686"
	}
	return a
}

func hypervisorFor(format string) string {
	switch format {
	case "ovf", "ova", "vmdk":
		return "VMware"
	case "qcow2", "raw":
		return "QEMU,KVM"
	}
	return ""
}

// BumpVersion returns a version that imagelist.Compare orders after v:
// an integer grows by one, anything else gets ".1" appended.
func BumpVersion(v string) string {
	if n, err := strconv.ParseUint(v, 10, 63); err == nil {
		return strconv.FormatUint(n+1, 10)
	}
	if v == "" {
		return "1"
	}
	return v + ".1"
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

func parseUUID(s string) ([16]byte, error) {
	var u [16]byte
	h := strings.ReplaceAll(s, "-", "")
	if len(s) != 36 || len(h) != 32 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, fmt.Errorf("%q is not a UUID", s)
	}
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, fmt.Errorf("%q is not a UUID", s)
	}
	return u, nil
}

func formatUUID(u [16]byte) string {
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// uuid5 is the RFC 9562 name-based (SHA-1) UUID of name in the namespace
// of the list identifier: the same path in the same list always gets the
// same image identifier, even if the previous list is lost.
func uuid5(namespace, name string) (string, error) {
	ns, err := parseUUID(namespace)
	if err != nil {
		return "", err
	}
	h := sha1.New()
	h.Write(ns[:])
	h.Write([]byte(name))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return formatUUID(u), nil
}

func uuid4() (string, error) {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return "", err
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return formatUUID(u), nil
}
