package imagelist

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"
)

// Marshal encodes the list in the wrapped form {"hv:imagelist": {...}},
// deterministically: object keys sorted bytewise at every level (known and
// Extra keys mixed, and inside Extra values too), 4-space indent, no HTML
// escaping, a final newline. hv:size is written as a JSON number, optional
// image keys only when set, images in list order.
//
// Marshal does not validate the list (see List.Validate); it fails only when
// the list cannot be written faithfully: an Extra key that shadows a known
// key, an Extra value that is not JSON, or a time outside years 0-9999.
func (l *List) Marshal() ([]byte, error) {
	obj, err := l.jsonObject()
	if err != nil {
		return nil, fmt.Errorf("marshal image list: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "    ")
	if err := enc.Encode(map[string]any{KeyImageList: obj}); err != nil {
		return nil, fmt.Errorf("marshal image list: %w", err)
	}
	return buf.Bytes(), nil
}

func (l *List) jsonObject() (map[string]any, error) {
	created, err := marshalTime("dc:date:created", l.Created)
	if err != nil {
		return nil, err
	}
	expires, err := marshalTime("dc:date:expires", l.Expires)
	if err != nil {
		return nil, err
	}
	x509 := map[string]any{
		"hv:dn":      l.Endorser.DN,
		"hv:ca":      l.Endorser.CA,
		"hv:email":   l.Endorser.Email,
		"dc:creator": l.Endorser.Creator,
	}
	if err := addExtra(x509, l.Endorser.Extra, endorserKeys, KeyEndorser+"/"+KeyX509+"/"); err != nil {
		return nil, err
	}
	images := make([]any, 0, len(l.Images))
	for i := range l.Images {
		img, err := l.Images[i].jsonObject()
		if err != nil {
			return nil, fmt.Errorf("image %d: %w", i, err)
		}
		images = append(images, map[string]any{KeyImage: img})
	}
	obj := map[string]any{
		"dc:date:created": created,
		"dc:date:expires": expires,
		"dc:identifier":   l.Identifier,
		"dc:description":  l.Description,
		"dc:title":        l.Title,
		"dc:source":       l.Source,
		"hv:version":      l.Version,
		"hv:uri":          l.URI,
		KeyEndorser:       map[string]any{KeyX509: x509},
		KeyImages:         images,
	}
	if err := addExtra(obj, l.Extra, listKeys, ""); err != nil {
		return nil, err
	}
	return obj, nil
}

func (img *Image) jsonObject() (map[string]any, error) {
	obj := map[string]any{
		"dc:identifier":      img.Identifier,
		"dc:title":           img.Title,
		"dc:description":     img.Description,
		"hv:uri":             img.URI,
		"hv:size":            img.Size,
		"hv:version":         img.Version,
		"sl:checksum:sha512": img.SHA512,
		"hv:hypervisor":      img.Hypervisor,
		"sl:arch":            img.Arch,
		"sl:os":              img.OS,
		"sl:osversion":       img.OSVersion,
		"sl:comments":        img.Comments,
	}
	if img.Format != "" {
		obj["hv:format"] = img.Format
	}
	if !img.Created.IsZero() {
		s, err := marshalTime("dc:date:created", img.Created)
		if err != nil {
			return nil, err
		}
		obj["dc:date:created"] = s
	}
	if !img.Expires.IsZero() {
		s, err := marshalTime("dc:date:expires", img.Expires)
		if err != nil {
			return nil, err
		}
		obj["dc:date:expires"] = s
	}
	if img.Files != nil {
		files := make([]any, 0, len(img.Files))
		for _, f := range img.Files {
			files = append(files, map[string]any{
				"path":               f.Path,
				"size":               f.Size,
				"sl:checksum:sha512": f.SHA512,
			})
		}
		obj[KeyFiles] = files
	}
	if err := addExtra(obj, img.Extra, imageKeys, ""); err != nil {
		return nil, err
	}
	return obj, nil
}

func marshalTime(key string, t time.Time) (string, error) {
	if reason := checkTime(t); reason != "" {
		return "", fmt.Errorf("%s: %s", key, reason)
	}
	return FormatTime(t), nil
}

// addExtra copies Extra entries into obj in canonical form. An Extra key
// that is one of the known keys of the object is refused, even when the
// known field is unset, since Parse would read it back into that field.
func addExtra(obj map[string]any, extra map[string]json.RawMessage, known []string, prefix string) error {
	for k, v := range extra {
		if slices.Contains(known, k) {
			return fmt.Errorf("%s%s: known key in Extra", prefix, k)
		}
		c, err := canonicalJSON(v)
		if err != nil {
			return fmt.Errorf("%s%s: Extra value: %w", prefix, k, err)
		}
		obj[k] = c
	}
	return nil
}

// canonicalJSON re-encodes one JSON value compactly with object keys sorted
// bytewise, numbers kept as written and no HTML escaping. Applying it twice
// gives the same bytes.
func canonicalJSON(raw []byte) (json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after JSON value")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
