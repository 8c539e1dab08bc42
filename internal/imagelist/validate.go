package imagelist

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Validate applies the checks Parse applies to every image: dc:identifier
// is not empty, sl:checksum:sha512 is 128 lower-case hex digits, hv:size is
// not negative, optional times are representable in TimeLayout, Extra holds
// valid JSON and no known key, and, when Files is set, the file list follows
// the clr:files rules and hv:size and sl:checksum:sha512 equal what
// FilesDigest derives from it. It returns nil or an *ImageError.
func (img *Image) Validate() error {
	var e ImageError
	img.check(&e)
	if len(e.Invalid) == 0 {
		return nil
	}
	sortInvalid(e.Invalid)
	return &e
}

func (img *Image) check(e *ImageError) {
	bad := func(key, reason string) { e.Invalid = append(e.Invalid, InvalidKey{key, reason}) }
	if img.Identifier == "" {
		bad("dc:identifier", "empty")
	} else if !SafeIdentifier(img.Identifier) {
		bad("dc:identifier", "holds a control character or '/', or is '.' or '..'")
	}
	if !isLowerHex(img.SHA512, 128) {
		bad("sl:checksum:sha512", "not 128 lower-case hex digits")
	}
	if img.Size < 0 {
		bad("hv:size", "negative")
	}
	for _, tk := range []struct {
		key string
		t   time.Time
	}{{"dc:date:created", img.Created}, {"dc:date:expires", img.Expires}} {
		if !tk.t.IsZero() {
			if reason := checkTime(tk.t); reason != "" {
				bad(tk.key, reason)
			}
		}
	}
	if img.Files != nil {
		size, sum, err := FilesDigest(img.Files)
		switch {
		case err != nil:
			bad(KeyFiles, strings.TrimPrefix(err.Error(), ErrInvalidFiles.Error()+": "))
		default:
			if img.Size != size && img.Size >= 0 {
				bad("hv:size", fmt.Sprintf("%d, but the clr:files sizes add up to %d", img.Size, size))
			}
			if img.SHA512 != sum && isLowerHex(img.SHA512, 128) {
				bad("sl:checksum:sha512", "does not match the clr:files digest "+sum)
			}
		}
	}
	for _, iv := range checkExtra(img.Extra, imageKeys) {
		bad(iv.Key, iv.Reason)
	}
}

// Validate checks a list before it is signed: dc:identifier, hv:version,
// hv:uri, hv:dn and hv:ca are not empty, both times are representable and
// dc:date:expires is after dc:date:created, Extra maps hold valid JSON and no
// known key, every image passes Image.Validate and no two images share a
// dc:identifier. List-level findings come as a *ListError (ErrNotImageList),
// image findings as *ImageError (ErrInvalidImage) wrapped with the image
// index; several findings are joined with errors.Join.
//
// Parse does not call Validate: a list from the wild may, for example, have
// an empty dc:identifier and still be worth reading.
func (l *List) Validate() error {
	var le ListError
	bad := func(key, reason string) { le.Invalid = append(le.Invalid, InvalidKey{key, reason}) }
	for _, kv := range []struct{ key, val string }{
		{"dc:identifier", l.Identifier},
		{"hv:version", l.Version},
		{"hv:uri", l.URI},
		{KeyEndorser + "/" + KeyX509 + "/hv:dn", l.Endorser.DN},
		{KeyEndorser + "/" + KeyX509 + "/hv:ca", l.Endorser.CA},
	} {
		if kv.val == "" {
			bad(kv.key, "empty")
		}
	}
	createdOK, expiresOK := true, true
	if reason := checkTime(l.Created); reason != "" {
		bad("dc:date:created", reason)
		createdOK = false
	}
	if reason := checkTime(l.Expires); reason != "" {
		bad("dc:date:expires", reason)
		expiresOK = false
	}
	if createdOK && expiresOK && !l.Expires.After(l.Created) {
		bad("dc:date:expires", "not after dc:date:created")
	}
	le.Invalid = append(le.Invalid, checkExtra(l.Extra, listKeys)...)
	for _, iv := range checkExtra(l.Endorser.Extra, endorserKeys) {
		bad(KeyEndorser+"/"+KeyX509+"/"+iv.Key, iv.Reason)
	}

	var errs []error
	if len(le.Invalid) > 0 {
		sortInvalid(le.Invalid)
		errs = append(errs, &le)
	}
	firstIndex := map[string]int{}
	for i := range l.Images {
		img := &l.Images[i]
		if err := img.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", imageLabel(i, img.Identifier), err))
		}
		if img.Identifier == "" {
			continue
		}
		if first, dup := firstIndex[img.Identifier]; dup {
			errs = append(errs, fmt.Errorf("%s: %w", imageLabel(i, img.Identifier),
				&ImageError{Invalid: []InvalidKey{{"dc:identifier", fmt.Sprintf("duplicate of image %d", first)}}}))
		} else {
			firstIndex[img.Identifier] = i
		}
	}
	return errors.Join(errs...)
}

// checkExtra reports Extra entries that are not valid JSON or that shadow a
// known key (Marshal would not know which to write).
func checkExtra(extra map[string]json.RawMessage, known []string) []InvalidKey {
	var out []InvalidKey
	for k, v := range extra {
		switch {
		case slices.Contains(known, k):
			out = append(out, InvalidKey{k, "known key in Extra"})
		case !json.Valid(v):
			out = append(out, InvalidKey{k, "Extra value is not valid JSON"})
		}
	}
	sortInvalid(out)
	return out
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// SafeIdentifier reports whether a dc:identifier can be used as one field
// of a line of output and as one file name: no control characters (tab,
// newline, ...), no '/', not "." or "..". Real identifiers are UUIDs; an
// identifier that fails this could forge lines of `clr-image -l` or
// escape the cache directory.
func SafeIdentifier(s string) bool {
	if s == "" || s == "." || s == ".." || strings.ContainsRune(s, '/') {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError {
			return false
		}
	}
	return true
}
