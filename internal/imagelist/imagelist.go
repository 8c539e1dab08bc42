// Package imagelist parses, validates and marshals HEPiX image lists (the
// JSON document inside a signed vmcatcher/AppDB image list) and orders list
// versions the way vmcatcher does.
//
// The package does no I/O, checks no signatures and reads no clock: callers
// pass bytes and times in and get values or bytes out.
//
// Parse is as tolerant as vmcatcher where real lists need it (the deprecated
// unwrapped form, hv:size as a string, unknown keys at every level) and
// reports every tolerated irregularity, and every image it leaves out, as a
// Problem instead of dropping it silently. Marshal writes the wrapped form
// deterministically, so that Parse(Marshal(l)) equals l.
//
// The format as clr reads and writes it, including the clr:files extension
// for multi-file (OVF folder) images, is described in docs/imagelist.md.
package imagelist

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultMaxSize is the input cap Parse applies when ParseOptions.MaxSize is 0.
const DefaultMaxSize = 16 << 20 // bytes

// TimeLayout is the only time format of an image list: UTC, whole seconds.
const TimeLayout = "2006-01-02T15:04:05Z"

// JSON keys clr defines or reads.
const (
	KeyImageList = "hv:imagelist"
	KeyImages    = "hv:images"
	KeyImage     = "hv:image"
	KeyEndorser  = "hv:endorser"
	KeyX509      = "hv:x509"
	// KeyFiles is the clr extension key listing the files of a multi-file
	// (template folder) image.
	KeyFiles = "clr:files"
	// FormatOVF is the hv:format value clr writes for an OVF template folder.
	FormatOVF = "ovf"
)

var (
	// ErrTooLarge means the input is longer than the size cap.
	ErrTooLarge = errors.New("image list too large")
	// ErrNotJSON means the input is not JSON or its top level is not an
	// object (vmcatcher error 37).
	ErrNotJSON = errors.New("not a json object")
	// ErrNotImageList means a required list-level or endorser key is missing,
	// of the wrong type or has a bad value such as an unparsable time
	// (vmcatcher error 38). Errors matching it are usually a *ListError.
	ErrNotImageList = errors.New("not an image list")
	// ErrInvalidImage means an image fails the checks Parse applies to images.
	// Errors matching it are usually an *ImageError.
	ErrInvalidImage = errors.New("invalid image")
	// ErrInvalidTime means a time is not in TimeLayout.
	ErrInvalidTime = errors.New("invalid time")
	// ErrInvalidFiles means a clr:files file list breaks the rules of FilesDigest.
	ErrInvalidFiles = errors.New("invalid clr:files")
)

// InvalidKey names a key whose value is unacceptable and why.
type InvalidKey struct {
	Key    string // the key, nested keys joined with "/", e.g. "hv:endorser/hv:x509/hv:dn"
	Reason string // e.g. "want a string, got number"
}

// ListError reports what makes a document not an image list: required
// list-level or endorser keys that are missing or invalid. It matches
// ErrNotImageList, and its message reads for example
// `not an image list: missing required keys dc:title, hv:uri`.
type ListError struct {
	Missing []string     // required keys that are absent, sorted
	Invalid []InvalidKey // keys with a wrong type or bad value, sorted by key
}

func (e *ListError) Error() string { return "not an image list: " + describe(e.Missing, e.Invalid) }

// Is reports whether target is ErrNotImageList.
func (e *ListError) Is(target error) bool { return target == ErrNotImageList }

// Keys returns the missing and invalid keys, sorted and without duplicates.
func (e *ListError) Keys() []string { return keysOf(e.Missing, e.Invalid) }

// ImageError reports why an image is not acceptable. It matches
// ErrInvalidImage, and its message reads for example
// `missing required keys hv:size, sl:arch; invalid sl:checksum:sha512 (not 128 hex digits)`.
type ImageError struct {
	Missing []string     // required keys that are absent, sorted
	Invalid []InvalidKey // keys with a wrong type or bad value, sorted by key
}

func (e *ImageError) Error() string { return describe(e.Missing, e.Invalid) }

// Is reports whether target is ErrInvalidImage.
func (e *ImageError) Is(target error) bool { return target == ErrInvalidImage }

// Keys returns the missing and invalid keys, sorted and without duplicates.
func (e *ImageError) Keys() []string { return keysOf(e.Missing, e.Invalid) }

// ParseOptions tunes Parse.
type ParseOptions struct {
	// MaxSize caps the input length in bytes: 0 means DefaultMaxSize,
	// negative means unlimited.
	MaxSize int64
}

// List is a HEPiX image list (the object under hv:imagelist).
type List struct {
	Created     time.Time // dc:date:created (UTC)
	Expires     time.Time // dc:date:expires (UTC)
	Identifier  string    // dc:identifier
	Description string    // dc:description
	Title       string    // dc:title
	Source      string    // dc:source
	Version     string    // hv:version
	URI         string    // hv:uri
	Endorser    Endorser  // hv:endorser -> hv:x509
	Images      []Image   // hv:images[i]["hv:image"], in list order
	// Extra holds the unknown list-level keys (ad:vo, ...) as compact JSON
	// with object keys sorted; Marshal writes them back.
	Extra map[string]json.RawMessage
}

// Endorser is the hv:x509 object inside hv:endorser.
type Endorser struct {
	DN      string                     // hv:dn, signer subject in OpenSSL one-line form
	CA      string                     // hv:ca, subject of the signer's issuer, same form
	Email   string                     // hv:email
	Creator string                     // dc:creator
	Extra   map[string]json.RawMessage // unknown keys inside hv:x509
}

// Image is one hv:image object.
type Image struct {
	Identifier  string // dc:identifier
	Title       string // dc:title
	Description string // dc:description
	URI         string // hv:uri
	// Size is hv:size in bytes. Parse accepts a JSON integer or a decimal
	// string; Marshal writes a JSON number.
	Size       int64
	Version    string    // hv:version
	SHA512     string    // sl:checksum:sha512, 128 lower-case hex digits
	Hypervisor string    // hv:hypervisor
	Arch       string    // sl:arch
	OS         string    // sl:os
	OSVersion  string    // sl:osversion
	Comments   string    // sl:comments
	Format     string    // hv:format, optional ("" = absent)
	Created    time.Time // dc:date:created, optional (zero = absent)
	Expires    time.Time // dc:date:expires, optional (zero = absent)
	// Files is the clr:files extension: the files of a multi-file image
	// sorted by path. Nil means a single-file image. When set, Size and
	// SHA512 must equal what FilesDigest returns for it.
	Files []File
	// Extra holds every other key (ad:*, sl:osname, hv:core_minimum, ...) as
	// compact JSON with object keys sorted; Marshal writes them back.
	Extra map[string]json.RawMessage
}

// File is one entry of clr:files.
type File struct {
	Path   string // relative path inside the template folder: forward slashes, clean, no "..", not absolute
	Size   int64  // bytes
	SHA512 string // 128 lower-case hex digits
}

// Problem reports something Parse tolerated: the deprecated unwrapped form,
// ignored keys, or an image it left out.
type Problem struct {
	Index   int      // image index in hv:images, -1 for list-level problems
	Image   string   // the image's dc:identifier if it had one
	Missing []string // keys that were missing or invalid, sorted
	Message string   // one line, e.g. `image 3 (dc:identifier 488d...): missing required keys hv:size, sl:arch; left out`
}

func (p Problem) String() string { return p.Message }

// ParseTime parses a time in TimeLayout strictly: exactly
// YYYY-MM-DDTHH:MM:SSZ, no fractional seconds, no offset other than Z.
func ParseTime(s string) (time.Time, error) {
	if len(s) == len(TimeLayout) {
		if t, err := time.Parse(TimeLayout, s); err == nil && t.Format(TimeLayout) == s {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w %s: want YYYY-MM-DDTHH:MM:SSZ", ErrInvalidTime, quote(s))
}

// FormatTime formats t in UTC in TimeLayout, dropping fractional seconds.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// checkTime reports whether FormatTime(t) can be parsed back by ParseTime.
func checkTime(t time.Time) string {
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		return fmt.Sprintf("year %d out of range 0-9999", y)
	}
	return ""
}

func describe(missing []string, invalid []InvalidKey) string {
	var parts []string
	switch len(missing) {
	case 0:
	case 1:
		parts = append(parts, "missing required key "+missing[0])
	default:
		parts = append(parts, "missing required keys "+strings.Join(missing, ", "))
	}
	for _, iv := range invalid {
		parts = append(parts, "invalid "+iv.Key+" ("+iv.Reason+")")
	}
	if len(parts) == 0 {
		return "no details"
	}
	return strings.Join(parts, "; ")
}

func keysOf(missing []string, invalid []InvalidKey) []string {
	keys := slices.Clone(missing)
	for _, iv := range invalid {
		keys = append(keys, iv.Key)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

func sortInvalid(iv []InvalidKey) {
	sort.SliceStable(iv, func(i, j int) bool { return iv[i].Key < iv[j].Key })
}

// quote renders an untrusted string for a one-line message: Go-quoted and
// clipped to a readable length.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}

// plain renders an identifier for a message: as is when it is short and
// made of printable non-space characters, quoted otherwise.
func plain(s string) string {
	if s == "" || len(s) > 64 {
		return quote(s)
	}
	for _, r := range s {
		if r == utf8.RuneError || r == '"' || r == '\\' || !strconv.IsGraphic(r) || r == ' ' {
			return quote(s)
		}
	}
	return s
}

// quoteKeys renders unknown keys for a message, at most ten of them.
func quoteKeys(keys []string) string {
	const max = 10
	var b strings.Builder
	for i, k := range keys {
		if i == max {
			fmt.Fprintf(&b, " and %d more", len(keys)-max)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quote(k))
	}
	return b.String()
}
