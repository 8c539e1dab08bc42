package imagelist

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Known keys at each level; everything else goes to Extra.
var (
	listKeys = []string{
		"dc:date:created", "dc:date:expires", "dc:identifier", "dc:description",
		"dc:title", "dc:source", "hv:version", "hv:uri", KeyEndorser, KeyImages,
	}
	endorserKeys = []string{"hv:dn", "hv:ca", "hv:email", "dc:creator"}
	// imageRequired are the 12 keys vmcatcher requires of every image.
	imageRequired = []string{
		"dc:identifier", "dc:title", "dc:description", "hv:uri", "hv:size",
		"hv:version", "sl:checksum:sha512", "hv:hypervisor", "sl:arch",
		"sl:os", "sl:osversion", "sl:comments",
	}
	imageKeys = append(slices.Clone(imageRequired),
		"hv:format", "dc:date:created", "dc:date:expires", KeyFiles)
	fileKeys = []string{"path", "size", "sl:checksum:sha512"}
)

// Parse decodes an image list. It accepts the wrapped form
// {"hv:imagelist": {...}} and the deprecated unwrapped form (the list object
// at the top level), which it reports as a Problem.
//
// It fails with ErrTooLarge when data is longer than the cap, with ErrNotJSON
// when data is not a JSON object, and with a *ListError (ErrNotImageList)
// when a required list-level or endorser key is missing or invalid.
//
// An image that fails the image checks (see Image.Validate) or repeats an
// earlier image's dc:identifier is left out of List.Images and reported as a
// Problem naming it. Unknown keys at every level are kept in the Extra maps.
func Parse(data []byte, opts ParseOptions) (*List, []Problem, error) {
	limit := opts.MaxSize
	if limit == 0 {
		limit = DefaultMaxSize
	}
	if limit > 0 && int64(len(data)) > limit {
		return nil, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), limit)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return nil, nil, fmt.Errorf("%w: top level is %s, not an object", ErrNotJSON, kindArticle(ute.Value))
		}
		return nil, nil, fmt.Errorf("%w: %w", ErrNotJSON, err)
	}
	if top == nil {
		return nil, nil, fmt.Errorf("%w: top level is null, not an object", ErrNotJSON)
	}

	var problems []Problem
	obj := top
	if raw, ok := top[KeyImageList]; ok {
		obj, ok = rawObject(raw)
		if !ok {
			return nil, nil, &ListError{Invalid: []InvalidKey{{KeyImageList, wantGot("an object", raw)}}}
		}
		if len(top) > 1 {
			problems = append(problems, listProblem("ignored top-level keys next to hv:imagelist: "+
				quoteKeys(unknownKeys(top, []string{KeyImageList}))))
		}
	} else {
		problems = append(problems, listProblem("deprecated unwrapped image list format (no hv:imagelist key)"))
	}

	l, rawImages, more, err := decodeList(obj)
	if err != nil {
		return nil, nil, err
	}
	problems = append(problems, more...)

	firstIndex := map[string]int{}
	for i, raw := range rawImages {
		img, wrapperKeys, ierr := decodeImageElement(raw)
		if len(wrapperKeys) > 0 {
			problems = append(problems, Problem{
				Index: i, Image: img.Identifier,
				Message: fmt.Sprintf("%s: ignored keys next to hv:image: %s", imageLabel(i, img.Identifier), quoteKeys(wrapperKeys)),
			})
		}
		if ierr == nil {
			if first, dup := firstIndex[img.Identifier]; dup {
				ierr = &ImageError{Invalid: []InvalidKey{{"dc:identifier", fmt.Sprintf("duplicate of image %d", first)}}}
			} else {
				firstIndex[img.Identifier] = i
			}
		}
		if ierr != nil {
			problems = append(problems, Problem{
				Index: i, Image: img.Identifier, Missing: ierr.Keys(),
				Message: fmt.Sprintf("%s: %s; left out", imageLabel(i, img.Identifier), ierr.Error()),
			})
			continue
		}
		l.Images = append(l.Images, img)
	}
	return l, problems, nil
}

func listProblem(msg string) Problem { return Problem{Index: -1, Message: msg} }

func imageLabel(i int, id string) string {
	if id == "" {
		return fmt.Sprintf("image %d", i)
	}
	return fmt.Sprintf("image %d (dc:identifier %s)", i, plain(id))
}

// decodeList decodes the list object. It returns the raw hv:images elements
// for the caller to decode one by one.
func decodeList(obj map[string]json.RawMessage) (*List, []json.RawMessage, []Problem, error) {
	f := fields{obj: obj}
	l := &List{
		Created:     f.time("dc:date:created", true),
		Expires:     f.time("dc:date:expires", true),
		Identifier:  f.str("dc:identifier"),
		Description: f.str("dc:description"),
		Title:       f.str("dc:title"),
		Source:      f.str("dc:source"),
		Version:     f.str("hv:version"),
		URI:         f.str("hv:uri"),
	}
	var problems []Problem
	if endorser := f.object(KeyEndorser); endorser != nil {
		ef := fields{obj: endorser, prefix: KeyEndorser + "/"}
		if x509 := ef.object(KeyX509); x509 != nil {
			xf := fields{obj: x509, prefix: KeyEndorser + "/" + KeyX509 + "/"}
			l.Endorser = Endorser{
				DN:      xf.str("hv:dn"),
				CA:      xf.str("hv:ca"),
				Email:   xf.str("hv:email"),
				Creator: xf.str("dc:creator"),
			}
			l.Endorser.Extra = extra(x509, endorserKeys)
			ef.merge(&xf)
		}
		if unknown := unknownKeys(endorser, []string{KeyX509}); len(unknown) > 0 {
			problems = append(problems, listProblem("ignored keys next to hv:x509 in hv:endorser: "+quoteKeys(unknown)))
		}
		f.merge(&ef)
	}
	var images []json.RawMessage
	if raw, ok := obj[KeyImages]; !ok {
		f.miss(KeyImages)
	} else if images, ok = rawArray(raw); !ok {
		f.bad(KeyImages, wantGot("an array", raw))
	}
	if e := f.listError(); e != nil {
		return nil, nil, nil, e
	}
	l.Extra = extra(obj, listKeys)
	return l, images, problems, nil
}

// decodeImageElement decodes one hv:images element, {"hv:image": {...}}. It
// returns the image (with whatever fields could be read, for the Problem),
// the unknown keys next to hv:image, and why the image is not acceptable.
func decodeImageElement(raw json.RawMessage) (Image, []string, *ImageError) {
	wrapper, ok := rawObject(raw)
	if !ok {
		return Image{}, nil, &ImageError{Invalid: []InvalidKey{{KeyImage, "element is " + kindArticle(kind(raw)) + ", want {\"hv:image\": {...}}"}}}
	}
	inner, ok := wrapper[KeyImage]
	if !ok {
		return Image{}, nil, &ImageError{Missing: []string{KeyImage}}
	}
	wrapperKeys := unknownKeys(wrapper, []string{KeyImage})
	obj, ok := rawObject(inner)
	if !ok {
		return Image{}, wrapperKeys, &ImageError{Invalid: []InvalidKey{{KeyImage, wantGot("an object", inner)}}}
	}
	img, ierr := decodeImage(obj)
	return img, wrapperKeys, ierr
}

func decodeImage(obj map[string]json.RawMessage) (Image, *ImageError) {
	f := fields{obj: obj}
	img := Image{
		Identifier:  f.str("dc:identifier"),
		Title:       f.str("dc:title"),
		Description: f.str("dc:description"),
		URI:         f.str("hv:uri"),
		Size:        f.size("hv:size"),
		Version:     f.str("hv:version"),
		SHA512:      normaliseHex(f.str("sl:checksum:sha512")),
		Hypervisor:  f.str("hv:hypervisor"),
		Arch:        f.str("sl:arch"),
		OS:          f.str("sl:os"),
		OSVersion:   f.str("sl:osversion"),
		Comments:    f.str("sl:comments"),
		Format:      f.optStr("hv:format"),
		Created:     f.time("dc:date:created", false),
		Expires:     f.time("dc:date:expires", false),
		Files:       f.files(KeyFiles),
		Extra:       extra(obj, imageKeys),
	}
	// Value checks on the keys that decoded; do not report a key twice.
	reported := map[string]bool{}
	for _, k := range f.missing {
		reported[k] = true
	}
	for _, iv := range f.invalid {
		reported[iv.Key] = true
	}
	var e ImageError
	img.check(&e)
	for _, iv := range e.Invalid {
		if !reported[iv.Key] {
			f.invalid = append(f.invalid, iv)
		}
	}
	if len(f.missing) == 0 && len(f.invalid) == 0 {
		return img, nil
	}
	slices.Sort(f.missing)
	sortInvalid(f.invalid)
	return img, &ImageError{Missing: f.missing, Invalid: f.invalid}
}

// fields reads typed values out of one JSON object and collects what is
// missing or wrong.
type fields struct {
	obj     map[string]json.RawMessage
	prefix  string // prepended to key names in reports
	missing []string
	invalid []InvalidKey
}

func (f *fields) miss(key string) { f.missing = append(f.missing, f.prefix+key) }
func (f *fields) bad(key, reason string) {
	f.invalid = append(f.invalid, InvalidKey{f.prefix + key, reason})
}

func (f *fields) merge(sub *fields) {
	f.missing = append(f.missing, sub.missing...)
	f.invalid = append(f.invalid, sub.invalid...)
}

func (f *fields) listError() *ListError {
	if len(f.missing) == 0 && len(f.invalid) == 0 {
		return nil
	}
	slices.Sort(f.missing)
	sortInvalid(f.invalid)
	return &ListError{Missing: f.missing, Invalid: f.invalid}
}

// str reads a required string.
func (f *fields) str(key string) string {
	raw, ok := f.obj[key]
	if !ok {
		f.miss(key)
		return ""
	}
	s, ok := rawString(raw)
	if !ok {
		f.bad(key, wantGot("a string", raw))
	}
	return s
}

// optStr reads an optional string.
func (f *fields) optStr(key string) string {
	if _, ok := f.obj[key]; !ok {
		return ""
	}
	return f.str(key)
}

// time reads a time string; an absent optional time is the zero time.
func (f *fields) time(key string, required bool) time.Time {
	raw, ok := f.obj[key]
	if !ok {
		if required {
			f.miss(key)
		}
		return time.Time{}
	}
	s, ok := rawString(raw)
	if !ok {
		f.bad(key, wantGot("a string", raw))
		return time.Time{}
	}
	t, err := ParseTime(s)
	if err != nil {
		f.bad(key, fmt.Sprintf("%s is not YYYY-MM-DDTHH:MM:SSZ", quote(s)))
	}
	return t
}

// object reads a required object.
func (f *fields) object(key string) map[string]json.RawMessage {
	raw, ok := f.obj[key]
	if !ok {
		f.miss(key)
		return nil
	}
	obj, ok := rawObject(raw)
	if !ok {
		f.bad(key, wantGot("an object", raw))
		return nil
	}
	return obj
}

// size reads a required byte count: a JSON integer or a decimal string.
func (f *fields) size(key string) int64 {
	raw, ok := f.obj[key]
	if !ok {
		f.miss(key)
		return 0
	}
	var text string
	switch kind(raw) {
	case "string":
		text, _ = rawString(raw)
	case "number":
		text = string(bytes.TrimSpace(raw))
	default:
		f.bad(key, wantGot("a number or a decimal string", raw))
		return 0
	}
	n, reason := parseInteger(text)
	if reason != "" {
		f.bad(key, reason)
	}
	return n
}

// files reads the optional clr:files list. Path, order and digest rules are
// checked later by Image.Validate.
func (f *fields) files(key string) []File {
	raw, ok := f.obj[key]
	if !ok {
		return nil
	}
	elems, ok := rawArray(raw)
	if !ok {
		f.bad(key, wantGot("an array", raw))
		return nil
	}
	files := make([]File, 0, len(elems))
	for i, el := range elems {
		obj, ok := rawObject(el)
		if !ok {
			f.bad(key, fmt.Sprintf("file %d: %s", i, wantGot("an object", el)))
			return nil
		}
		ff := fields{obj: obj}
		file := File{Path: ff.str("path"), SHA512: normaliseHex(ff.str("sl:checksum:sha512"))}
		if raw, ok := obj["size"]; !ok {
			ff.miss("size")
		} else if kind(raw) != "number" {
			ff.bad("size", wantGot("a number", raw))
		} else {
			var reason string
			if file.Size, reason = parseInteger(string(bytes.TrimSpace(raw))); reason != "" {
				ff.bad("size", reason)
			}
		}
		var parts []string
		if len(ff.missing) > 0 || len(ff.invalid) > 0 {
			slices.Sort(ff.missing)
			sortInvalid(ff.invalid)
			parts = append(parts, describe(ff.missing, ff.invalid))
		}
		if unknown := unknownKeys(obj, fileKeys); len(unknown) > 0 {
			parts = append(parts, "unknown keys "+quoteKeys(unknown))
		}
		if len(parts) > 0 {
			f.bad(key, fmt.Sprintf("file %d: %s", i, strings.Join(parts, "; ")))
			return nil
		}
		files = append(files, file)
	}
	return files
}

// parseInteger parses an optionally negative decimal integer that fits in
// int64; reason is "" on success.
func parseInteger(s string) (int64, string) {
	digits := strings.TrimPrefix(s, "-")
	if digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, quote(s) + " is not an integer"
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, quote(s) + " is out of range"
	}
	return n, ""
}

// normaliseHex lower-cases s if it is 128 hex digits of any case, and
// returns it unchanged otherwise (for Validate to reject).
func normaliseHex(s string) string {
	if len(s) != 128 {
		return s
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return s
		}
	}
	return strings.ToLower(s)
}

// extra returns the keys of obj that are not in known, canonicalised, or
// nil when there are none.
func extra(obj map[string]json.RawMessage, known []string) map[string]json.RawMessage {
	var out map[string]json.RawMessage
	for k, v := range obj {
		if slices.Contains(known, k) {
			continue
		}
		if out == nil {
			out = map[string]json.RawMessage{}
		}
		c, err := canonicalJSON(v)
		if err != nil {
			// Unreachable: v was decoded from valid JSON. Keep it verbatim.
			c = slices.Clone(v)
		}
		out[k] = c
	}
	return out
}

// unknownKeys returns the keys of obj not in known, sorted.
func unknownKeys(obj map[string]json.RawMessage, known []string) []string {
	var out []string
	for k := range obj {
		if !slices.Contains(known, k) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// kind names the JSON type of a valid raw value.
func kind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

func kindArticle(k string) string {
	switch k {
	case "array", "object":
		return "an " + k
	case "null", "nothing":
		return k
	default:
		return "a " + k
	}
}

func wantGot(want string, raw json.RawMessage) string {
	return "want " + want + ", got " + kind(raw)
}

func rawString(raw json.RawMessage) (string, bool) {
	var s string
	if kind(raw) != "string" || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

func rawObject(raw json.RawMessage) (map[string]json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if kind(raw) != "object" || json.Unmarshal(raw, &m) != nil {
		return nil, false
	}
	return m, true
}

func rawArray(raw json.RawMessage) ([]json.RawMessage, bool) {
	var a []json.RawMessage
	if kind(raw) != "array" || json.Unmarshal(raw, &a) != nil {
		return nil, false
	}
	return a, true
}
