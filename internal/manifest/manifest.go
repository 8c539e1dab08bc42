// Package manifest holds what the catalog renderers (vcsp, simplestreams)
// share: their JSON encoding and their write order. Standard library only.
package manifest

import (
	"bytes"
	"encoding/json"
	"sort"
)

// Encode is the catalogs' JSON form: 2-space indent, a trailing newline,
// no HTML escaping (hrefs keep their & and <).
func Encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Order returns paths sorted by rank (lowest first), then bytewise: the
// order in which a catalog's files are written so that an index is never
// visible before what it names.
func Order(paths []string, rank func(path string) int) []string {
	out := append([]string(nil), paths...)
	sort.SliceStable(out, func(i, j int) bool {
		ri, rj := rank(out[i]), rank(out[j])
		if ri != rj {
			return ri < rj
		}
		return out[i] < out[j]
	})
	return out
}
