// Package vcsp renders vSphere Content Library (VCSP) subscription manifests
// (lib.json, items.json and one item.json per item folder) from a neutral
// model. It only renders: ids, created times, versions and etags are supplied
// by the caller (who persists them outside the synced tree), and nothing here
// touches the file system.
//
// Decisions (see ../shared/research/vcsp.md):
//
//   - vcspVersion is "2", lib contentVersion is always "1"; versions are
//     decimal integers written as strings. An item's contentVersion is written
//     equal to its version, so it moves with it.
//   - etags are decimal integer strings (vCenter parses them with Long.valueOf).
//   - Times are UTC in the layout the reference scripts use and vCenter
//     accepts: "2006-01-02T15:04Z" (minute precision, literal Z).
//   - hrefs are relative to the library root (itemsHref relative to lib.json)
//     and every path segment is percent-encoded like Python's
//     urllib.parse.quote(safe="/"): only A-Z a-z 0-9 - . _ ~ stay as they are,
//     every other byte becomes %XX (upper-case hex), and dots in runs of two
//     or more become %2E so no href contains "..".
//   - OVF items carry one "type-metadata" metadata entry whose value is valid
//     JSON built from the item's own id and current version (not the
//     single-quoted pseudo-JSON of the 2022/CLR scripts).
//   - Items are sorted by folder, files by name; output is 2-space indented
//     JSON with a trailing newline and no HTML escaping.
//   - Ids must be "urn:uuid:" followed by a canonical lower-case UUID.
package vcsp

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/clr-suite/clr/internal/manifest"
)

// Item types understood by vCenter.
const (
	TypeOVF   = "vcsp.ovf"
	TypeISO   = "vcsp.iso"
	TypeOther = "vcsp.other"
)

// Manifest file names.
const (
	LibFile   = "lib.json"
	ItemsFile = "items.json"
	ItemFile  = "item.json"
)

// TimeLayout is the layout of every "created" field (always rendered in UTC).
const TimeLayout = "2006-01-02T15:04Z"

// MaxNameLen is the longest item display name (in runes); longer names are
// truncated keeping the extension, as the 2022 and CLR scripts do.
const MaxNameLen = 80

// File is one content file of an item.
type File struct {
	Name string // relative to the item folder, forward slashes
	Size int64  // bytes, >= 0
	Etag int64  // >= 0, rendered as a decimal string
	// Href is where the file is served, relative to the item folder;
	// empty means Name. A caller that serves each content version under
	// its own path (so a changed file never changes under a reader that
	// holds the previous items.json) sets it.
	Href string
}

// Item is one content library item (one folder under the library root).
type Item struct {
	ID          string // urn:uuid:...
	Name        string // display name; empty means the last segment of Folder
	Description string
	Type        string // TypeOVF, TypeISO, TypeOther; empty means TypeOf(file names)
	Created     time.Time
	Version     int64  // >= 1
	Folder      string // relative to the library root, forward slashes
	Files       []File
}

// Library is the whole published library.
type Library struct {
	ID          string // urn:uuid:...
	Name        string
	Description string
	Created     time.Time
	Version     int64 // >= 1
	Items       []Item
}

// TypeOf picks an item type from the file names of an item folder, by
// extension only (case-insensitive, never by substring, so "foo.ovf.bak" and
// "notanovf.txt" are not OVF):
//
//   - exactly one top-level *.ovf file → TypeOVF (the disks, .mf and .cert
//     next to it are part of the template). Two or more descriptors are
//     ambiguous and give TypeOther.
//   - exactly one file, and it is *.iso → TypeISO.
//   - anything else → TypeOther.
//
// An .ova is TypeOther: vCenter's subscriber expects an OVF descriptor plus
// its files for a vcsp.ovf item, and this package never reads or unpacks
// content. A caller that wants OVA templates as VM templates must unpack
// them into an OVF folder first. Files in sub-directories (names containing
// "/") never decide the type.
func TypeOf(fileNames []string) string {
	ovf, iso := 0, 0
	for _, n := range fileNames {
		if strings.Contains(n, "/") {
			continue
		}
		ext := strings.ToLower(path.Ext(n))
		if len(n) == len(ext) { // ".ovf" alone has no stem
			continue
		}
		switch ext {
		case ".ovf":
			ovf++
		case ".iso":
			iso++
		}
	}
	switch {
	case ovf == 1:
		return TypeOVF
	case ovf == 0 && iso == 1 && len(fileNames) == 1:
		return TypeISO
	}
	return TypeOther
}

// JSON shapes. Field order is the output order.

type capabilities struct {
	TransferIn  []string `json:"transferIn"`
	TransferOut []string `json:"transferOut"`
}

type libJSON struct {
	VcspVersion    string       `json:"vcspVersion"`
	Version        string       `json:"version"`
	ContentVersion string       `json:"contentVersion"`
	Name           string       `json:"name"`
	Description    string       `json:"description"`
	ID             string       `json:"id"`
	Created        string       `json:"created"`
	Capabilities   capabilities `json:"capabilities"`
	ItemsHref      string       `json:"itemsHref"`
}

type fileJSON struct {
	Name  string   `json:"name"`
	Size  int64    `json:"size"`
	Etag  string   `json:"etag"`
	Hrefs []string `json:"hrefs"`
}

type metadataJSON struct {
	Key        string `json:"key"`
	Value      string `json:"value"`
	Type       string `json:"type"`
	Domain     string `json:"domain"`
	Visibility string `json:"visibility"`
}

type itemJSON struct {
	ID             string         `json:"id"`
	Name           string         `json:"name"`
	Description    string         `json:"description"`
	Type           string         `json:"type"`
	Created        string         `json:"created"`
	Version        string         `json:"version"`
	ContentVersion string         `json:"contentVersion"`
	SelfHref       string         `json:"selfHref"`
	Files          []fileJSON     `json:"files"`
	Metadata       []metadataJSON `json:"metadata,omitempty"`
	Properties     struct{}       `json:"properties"`
}

type itemsJSON struct {
	Items []itemJSON `json:"items"`
}

// typeMetadata is the value of the OVF "type-metadata" entry (valid JSON).
type typeMetadata struct {
	ID                  string   `json:"id"`
	Version             string   `json:"version"`
	LibraryIDParent     string   `json:"libraryIdParent"`
	IsVappTemplate      string   `json:"isVappTemplate"`
	VMTemplate          any      `json:"vmTemplate"`
	VappTemplate        any      `json:"vappTemplate"`
	Networks            []string `json:"networks"`
	StoragePolicyGroups any      `json:"storagePolicyGroups"`
}

// Render validates lib and returns every manifest file, keyed by path
// relative to the library root: "lib.json", "items.json" and
// "<folder>/item.json" per item. The output is deterministic. lib is not
// modified.
func Render(lib Library) (map[string][]byte, error) {
	if err := checkID(lib.ID); err != nil {
		return nil, fmt.Errorf("vcsp: library: %w", err)
	}
	if lib.Version < 1 {
		return nil, fmt.Errorf("vcsp: library: version %d < 1", lib.Version)
	}
	if lib.Created.IsZero() {
		return nil, errors.New("vcsp: library: zero created time")
	}

	items := make([]Item, len(lib.Items))
	copy(items, lib.Items)
	sort.Slice(items, func(i, j int) bool { return items[i].Folder < items[j].Folder })

	ids := map[string]string{lib.ID: "the library"}
	folders := map[string]bool{}
	out := make(map[string][]byte, len(items)+2)
	rendered := make([]itemJSON, 0, len(items))
	for _, it := range items {
		ij, err := renderItem(lib.ID, it)
		if err != nil {
			return nil, err
		}
		if prev, dup := ids[it.ID]; dup {
			return nil, fmt.Errorf("vcsp: item %q: id %s already used by %s", it.Folder, it.ID, prev)
		}
		ids[it.ID] = fmt.Sprintf("item %q", it.Folder)
		if folders[it.Folder] {
			return nil, fmt.Errorf("vcsp: duplicate item folder %q", it.Folder)
		}
		folders[it.Folder] = true
		rendered = append(rendered, ij)
	}
	// No item folder may contain another (its files would belong to both).
	for f := range folders {
		for p := path.Dir(f); p != "."; p = path.Dir(p) {
			if folders[p] {
				return nil, fmt.Errorf("vcsp: item folder %q is inside item folder %q", f, p)
			}
		}
	}

	for i, ij := range rendered {
		b, err := manifest.Encode(ij)
		if err != nil {
			return nil, err
		}
		out[items[i].Folder+"/"+ItemFile] = b
	}
	b, err := manifest.Encode(itemsJSON{Items: rendered})
	if err != nil {
		return nil, err
	}
	out[ItemsFile] = b
	b, err = manifest.Encode(libJSON{
		VcspVersion:    "2",
		Version:        strconv.FormatInt(lib.Version, 10),
		ContentVersion: "1",
		Name:           lib.Name,
		Description:    lib.Description,
		ID:             lib.ID,
		Created:        formatTime(lib.Created),
		Capabilities:   capabilities{TransferIn: []string{"httpGet"}, TransferOut: []string{"httpGet"}},
		ItemsHref:      EscapePath(ItemsFile),
	})
	if err != nil {
		return nil, err
	}
	out[LibFile] = b
	return out, nil
}

func renderItem(libID string, it Item) (itemJSON, error) {
	fail := func(format string, a ...any) (itemJSON, error) {
		return itemJSON{}, fmt.Errorf("vcsp: item %q: %s", it.Folder, fmt.Sprintf(format, a...))
	}
	if err := checkRelPath(it.Folder); err != nil {
		return fail("folder: %v", err)
	}
	if first, _, _ := strings.Cut(it.Folder, "/"); first == LibFile || first == ItemsFile {
		return fail("folder collides with %s", first)
	}
	if err := checkID(it.ID); err != nil {
		return fail("%v", err)
	}
	if it.Version < 1 {
		return fail("version %d < 1", it.Version)
	}
	if it.Created.IsZero() {
		return fail("zero created time")
	}
	files := make([]File, len(it.Files))
	copy(files, it.Files)
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	names := make([]string, len(files))
	fj := make([]fileJSON, len(files))
	for i, f := range files {
		if err := checkRelPath(f.Name); err != nil {
			return fail("file: %v", err)
		}
		if i > 0 && files[i-1].Name == f.Name {
			return fail("duplicate file %q", f.Name)
		}
		if f.Size < 0 {
			return fail("file %q: negative size %d", f.Name, f.Size)
		}
		if f.Etag < 0 {
			return fail("file %q: negative etag %d", f.Name, f.Etag)
		}
		href := f.Href
		if href == "" {
			href = f.Name
		} else if err := checkRelPath(href); err != nil {
			return fail("file %q: href: %v", f.Name, err)
		}
		if href == ItemFile {
			return fail("file %q: href collides with the item manifest", f.Name)
		}
		names[i] = f.Name
		fj[i] = fileJSON{
			Name:  f.Name,
			Size:  f.Size,
			Etag:  strconv.FormatInt(f.Etag, 10),
			Hrefs: []string{EscapePath(it.Folder + "/" + href)},
		}
	}
	typ := it.Type
	if typ == "" {
		typ = TypeOf(names)
	}
	switch typ {
	case TypeOVF, TypeISO, TypeOther:
	default:
		return fail("unknown type %q", typ)
	}
	name := it.Name
	if name == "" {
		name = path.Base(it.Folder)
	}
	if strings.ContainsFunc(name, isControl) || !utf8.ValidString(name) {
		return fail("name %q has control characters or invalid UTF-8", name)
	}
	if !utf8.ValidString(it.Description) {
		return fail("description is not valid UTF-8")
	}
	version := strconv.FormatInt(it.Version, 10)
	ij := itemJSON{
		ID:             it.ID,
		Name:           truncateName(name),
		Description:    it.Description,
		Type:           typ,
		Created:        formatTime(it.Created),
		Version:        version,
		ContentVersion: version,
		SelfHref:       EscapePath(it.Folder + "/" + ItemFile),
		Files:          fj,
	}
	if typ == TypeOVF {
		v, err := json.Marshal(typeMetadata{
			ID:              it.ID,
			Version:         version,
			LibraryIDParent: libID,
			IsVappTemplate:  "false",
			Networks:        []string{},
		})
		if err != nil {
			return itemJSON{}, err
		}
		ij.Metadata = []metadataJSON{{
			Key:        "type-metadata",
			Value:      string(v),
			Type:       "String",
			Domain:     "SYSTEM",
			Visibility: "READONLY",
		}}
	}
	return ij, nil
}

// WriteOrder returns paths in the order they should be written (each
// atomically) so that a subscriber never sees an index pointing at a manifest
// that is not there yet: any other file first, then every item.json, then
// items.json, and lib.json last. Within a group the order is sorted.
func WriteOrder(paths []string) []string {
	rank := func(p string) int {
		switch {
		case p == LibFile:
			return 3
		case p == ItemsFile:
			return 2
		case path.Base(p) == ItemFile:
			return 1
		}
		return 0
	}
	return manifest.Order(paths, rank)
}

// EscapePath percent-encodes every segment of a slash-separated relative
// path, keeping the slashes: only RFC 3986 unreserved bytes are kept, except
// that dots in a run of two or more are encoded too (%2E), so that no href
// ever contains ".." (Render refuses ".." segments; "a..b" becomes
// "a%2E%2Eb", which servers decode back to the same name).
func EscapePath(p string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		dotRun := c == '.' && (i > 0 && p[i-1] == '.' || i+1 < len(p) && p[i+1] == '.')
		if c == '/' || isUnreserved(c) && !dotRun {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// checkRelPath accepts a clean, non-empty, relative, forward-slash path of
// valid UTF-8 without control characters or backslashes, none of whose
// segments is empty, "." or "..".
func checkRelPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case !utf8.ValidString(p):
		return fmt.Errorf("%q is not valid UTF-8", p)
	case strings.ContainsFunc(p, isControl):
		return fmt.Errorf("%q has control characters", p)
	case strings.Contains(p, `\`):
		return fmt.Errorf("%q has a backslash", p)
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("%q is absolute", p)
	}
	for _, s := range strings.Split(p, "/") {
		switch s {
		case "":
			return fmt.Errorf("%q has an empty segment", p)
		case ".", "..":
			return fmt.Errorf("%q has a %q segment", p, s)
		}
	}
	return nil
}

// checkID accepts "urn:uuid:" followed by a canonical lower-case UUID.
func checkID(id string) error {
	if id == "" {
		return errors.New("empty id")
	}
	u, ok := strings.CutPrefix(id, "urn:uuid:")
	if !ok || len(u) != 36 {
		return fmt.Errorf("id %q is not urn:uuid:<uuid>", id)
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return fmt.Errorf("id %q is not urn:uuid:<uuid>", id)
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return fmt.Errorf("id %q is not urn:uuid:<lower-case uuid>", id)
			}
		}
	}
	return nil
}

func formatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// truncateName cuts name to MaxNameLen runes, keeping its extension when
// the extension is short enough to keep.
// TruncateName shortens a display name to MaxNameLen runes keeping its
// extension, as the reference scripts do (Render applies it).
func TruncateName(name string) string { return truncateName(name) }

func truncateName(name string) string {
	r := []rune(name)
	if len(r) <= MaxNameLen {
		return name
	}
	ext := []rune(path.Ext(name))
	if len(ext) >= MaxNameLen/2 {
		ext = nil
	}
	return string(r[:MaxNameLen-len(ext)]) + string(ext)
}
