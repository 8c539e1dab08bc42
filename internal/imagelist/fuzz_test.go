package imagelist

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzParse: Parse never panics, and any list it accepts survives
// Marshal -> Parse unchanged, with no problems and byte-identical output.
func FuzzParse(f *testing.F) {
	for _, name := range vectorFiles {
		f.Add(readTestdata(f, name))
	}
	f.Add(syntheticListJSON(f))
	for _, seed := range []string{
		`{}`, `[]`, `null`, `{"hv:imagelist": {}}`, `{"hv:imagelist": 1}`,
		`{"hv:imagelist": {"dc:date:created": "2024-01-02T03:04:05Z", "dc:date:expires": "2024-01-02T03:04:05Z", "dc:identifier": "", "dc:description": "", "dc:title": "", "dc:source": "", "hv:version": "", "hv:uri": "", "hv:endorser": {"hv:x509": {"hv:dn": "", "hv:ca": "", "hv:email": "", "dc:creator": ""}}, "hv:images": [1, {}, {"hv:image": {}}]}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, problems, err := Parse(data, ParseOptions{})
		if err != nil {
			if l != nil || problems != nil {
				t.Fatalf("error %v with a list or problems", err)
			}
			return
		}
		for _, img := range l.Images {
			if err := img.Validate(); err != nil {
				t.Fatalf("kept image fails Validate: %v", err)
			}
		}
		out, err := l.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed list: %v", err)
		}
		l2, problems2, err := Parse(out, ParseOptions{MaxSize: -1})
		if err != nil {
			t.Fatalf("Parse(Marshal(l)): %v\n%s", err, out)
		}
		if len(problems2) != 0 {
			t.Fatalf("Parse(Marshal(l)) problems: %q\n%s", problemMessages(problems2), out)
		}
		if !reflect.DeepEqual(l, l2) {
			t.Fatalf("Parse(Marshal(l)) != l\nl  = %#v\nl2 = %#v", l, l2)
		}
		out2, err := l2.Marshal()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("Marshal not stable (%v):\n%s\n%s", err, out, out2)
		}
	})
}

// FuzzCompare: Compare is reflexive and antisymmetric and returns -1, 0 or 1.
func FuzzCompare(f *testing.F) {
	for _, p := range [][2]string{
		{"1", "2"}, {"2", "10"}, {"1.0", "1.0.1"}, {"1.0a", "1.0b"}, {"3.3.0-1", "3.3.0-2"},
		{"v2", "v10"}, {"1.a", "1.1"}, {"20150618211400", "20150619000000"}, {"1.0", "1-0"},
		{"1.0", "1.0a"}, {"01", "1"}, {"", "0"}, {"1.01.5", "1.1.2"},
	} {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ab, ba := Compare(a, b), Compare(b, a)
		if ab != -ba {
			t.Fatalf("Compare(%q, %q) = %d but Compare(%q, %q) = %d", a, b, ab, b, a, ba)
		}
		if ab < -1 || ab > 1 {
			t.Fatalf("Compare(%q, %q) = %d", a, b, ab)
		}
		if Compare(a, a) != 0 {
			t.Fatalf("Compare(%q, %q) != 0", a, a)
		}
		if a == b && ab != 0 {
			t.Fatalf("equal strings compare %d", ab)
		}
	})
}
