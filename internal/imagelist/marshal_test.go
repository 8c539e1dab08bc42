package imagelist

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func listsEqual(a, b *List) bool { return reflect.DeepEqual(a, b) }

// TestMarshalGolden pins the exact bytes Marshal writes for the real lists.
func TestMarshalGolden(t *testing.T) {
	for _, name := range vectorFiles {
		t.Run(name, func(t *testing.T) {
			l, _, err := Parse(readTestdata(t, name), ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := l.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", strings.TrimSuffix(name, ".json")+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Marshal differs from %s (run go test -update):\n%s", golden, got)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	inputs := map[string][]byte{}
	for _, name := range vectorFiles {
		inputs[name] = readTestdata(t, name)
	}
	inputs["synthetic"] = syntheticListJSON(t)
	inputs["empty images"] = mustJSON(t, wrap(testList()))
	plain := mustJSON(t, wrap(testList(testImage("a"))))
	inputs["odd unknown values"] = append([]byte("{\"hv:imagelist\":{\"ad:weird\": {\"b\": 1, \"b\": \"\xff\\u00e9\", \"a\": 1E+2, \"c\": -0.0}, \"ad:s\": \"</script>\","),
		bytes.TrimPrefix(plain, []byte(`{"hv:imagelist":{`))...)

	for name, data := range inputs {
		t.Run(name, func(t *testing.T) {
			l, _, err := Parse(data, ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			out, err := l.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			l2, problems, err := Parse(out, ParseOptions{})
			if err != nil {
				t.Fatalf("reparse: %v\n%s", err, out)
			}
			if len(problems) != 0 {
				t.Errorf("reparse problems: %q", problemMessages(problems))
			}
			if !listsEqual(l, l2) {
				t.Errorf("Parse(Marshal(l)) != l\nl  = %+v\nl2 = %+v", l, l2)
			}
			out2, err := l2.Marshal()
			if err != nil || !bytes.Equal(out, out2) {
				t.Errorf("Marshal not stable: %v\n%s\n%s", err, out, out2)
			}
			// Unknown keys survive with the same JSON value.
			var before, after any
			json.Unmarshal(data, &before)
			json.Unmarshal(out, &after)
			if m, ok := before.(map[string]any); ok {
				if _, wrapped := m["hv:imagelist"]; !wrapped {
					before = map[string]any{"hv:imagelist": before}
				}
			}
			if name == "synthetic" {
				// Normalised on purpose: string size, upper-case hex.
				img := before.(map[string]any)["hv:imagelist"].(map[string]any)["hv:images"].([]any)[0].(map[string]any)["hv:image"].(map[string]any)
				img["hv:size"] = 36.0
				img["sl:checksum:sha512"] = workedExampleDigest
				img["clr:files"].([]any)[2].(map[string]any)["sl:checksum:sha512"] = workedExampleFiles[2].SHA512
			}
			if name == "cloudkeeper_imagelist01.json" {
				for _, el := range before.(map[string]any)["hv:imagelist"].(map[string]any)["hv:images"].([]any) {
					img := el.(map[string]any)["hv:image"].(map[string]any)
					img["hv:size"] = mustFloat(t, img["hv:size"].(string))
				}
			}
			if !reflect.DeepEqual(before, after) {
				t.Errorf("JSON value changed by Parse+Marshal:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

func mustFloat(t *testing.T, s string) float64 {
	var f float64
	if err := json.Unmarshal([]byte(s), &f); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestMarshalFormat(t *testing.T) {
	l := &List{
		Created:    time.Date(2024, 1, 2, 3, 4, 5, 600, time.FixedZone("X", 3600)),
		Expires:    time.Date(2024, 2, 2, 3, 4, 5, 0, time.UTC),
		Identifier: "id", Version: "1", URI: "https://example.org/l",
		Endorser: Endorser{DN: "/CN=a", CA: "/CN=b"},
		Extra: map[string]json.RawMessage{
			"zz:last":  json.RawMessage(`{"b": 2, "a": "<&>"}`),
			"ad:first": json.RawMessage(`1.50`),
		},
		Images: []Image{{Identifier: "img", Size: 5, SHA512: sha512A}},
	}
	got, err := l.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := `{
    "hv:imagelist": {
        "ad:first": 1.50,
        "dc:date:created": "2024-01-02T02:04:05Z",
        "dc:date:expires": "2024-02-02T03:04:05Z",
        "dc:description": "",
        "dc:identifier": "id",
        "dc:source": "",
        "dc:title": "",
        "hv:endorser": {
            "hv:x509": {
                "dc:creator": "",
                "hv:ca": "/CN=b",
                "hv:dn": "/CN=a",
                "hv:email": ""
            }
        },
        "hv:images": [
            {
                "hv:image": {
                    "dc:description": "",
                    "dc:identifier": "img",
                    "dc:title": "",
                    "hv:hypervisor": "",
                    "hv:size": 5,
                    "hv:uri": "",
                    "hv:version": "",
                    "sl:arch": "",
                    "sl:checksum:sha512": "` + sha512A + `",
                    "sl:comments": "",
                    "sl:os": "",
                    "sl:osversion": ""
                }
            }
        ],
        "hv:uri": "https://example.org/l",
        "hv:version": "1",
        "zz:last": {
            "a": "<&>",
            "b": 2
        }
    }
}
`
	if string(got) != want {
		t.Errorf("Marshal =\n%s\nwant\n%s", got, want)
	}
	empty := &List{}
	out, err := empty.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(`"hv:images": []`)) {
		t.Errorf("nil Images not written as []:\n%s", out)
	}
}

func TestMarshalErrors(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(l *List)
		wantErr string
	}{
		{"list extra shadows key", func(l *List) { l.Extra = map[string]json.RawMessage{"hv:uri": json.RawMessage(`"x"`)} }, "hv:uri: known key in Extra"},
		{"endorser extra shadows key", func(l *List) { l.Endorser.Extra = map[string]json.RawMessage{"hv:dn": json.RawMessage(`"x"`)} }, "hv:endorser/hv:x509/hv:dn: known key"},
		{"image extra shadows unset optional key", func(l *List) {
			l.Images[0].Extra = map[string]json.RawMessage{"hv:format": json.RawMessage(`"x"`)}
		}, "image 0: hv:format: known key"},
		{"extra not json", func(l *List) { l.Extra = map[string]json.RawMessage{"ad:x": json.RawMessage(`{`)} }, "ad:x: Extra value"},
		{"extra two values", func(l *List) { l.Extra = map[string]json.RawMessage{"ad:x": json.RawMessage(`1 2`)} }, "ad:x: Extra value"},
		{"year 10000", func(l *List) { l.Expires = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "dc:date:expires: year 10000"},
		{"image year -1", func(l *List) { l.Images[0].Created = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) }, "image 0: dc:date:created: year -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := validList()
			tc.mutate(l)
			_, err := l.Marshal()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Marshal error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func validList() *List {
	return &List{
		Created:    time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		Expires:    time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC),
		Identifier: "list", Version: "1", URI: "https://example.org/l",
		Endorser: Endorser{DN: "/CN=a", CA: "/CN=b"},
		Images:   []Image{{Identifier: "img", Size: 5, SHA512: sha512A}},
	}
}

func TestListValidate(t *testing.T) {
	tests := []struct {
		name      string
		mutate    func(l *List)
		wantList  []string // ListError keys
		wantImage []string // messages of image errors, in order
	}{
		{"valid", func(l *List) {}, nil, nil},
		{"valid without images", func(l *List) { l.Images = nil }, nil, nil},
		{"empty identifier version uri", func(l *List) { l.Identifier, l.Version, l.URI = "", "", "" }, []string{"dc:identifier", "hv:uri", "hv:version"}, nil},
		{"empty endorser", func(l *List) { l.Endorser = Endorser{} }, []string{"hv:endorser/hv:x509/hv:ca", "hv:endorser/hv:x509/hv:dn"}, nil},
		{"expires before created", func(l *List) { l.Expires = l.Created.Add(-time.Second) }, []string{"dc:date:expires"}, nil},
		{"expires equal created", func(l *List) { l.Expires = l.Created }, []string{"dc:date:expires"}, nil},
		{"year out of range", func(l *List) { l.Created = time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC) }, []string{"dc:date:created"}, nil},
		{"extra shadows", func(l *List) {
			l.Extra = map[string]json.RawMessage{"hv:images": json.RawMessage(`[]`)}
			l.Endorser.Extra = map[string]json.RawMessage{"hv:email": json.RawMessage(`""`)}
		}, []string{"hv:endorser/hv:x509/hv:email", "hv:images"}, nil},
		{"bad and duplicate images", func(l *List) {
			l.Images = append(l.Images, Image{Identifier: "bad", SHA512: "x"}, Image{Identifier: "img", SHA512: sha512B})
		}, nil, []string{
			"image 1 (dc:identifier bad): invalid sl:checksum:sha512 (not 128 lower-case hex digits)",
			"image 2 (dc:identifier img): invalid dc:identifier (duplicate of image 0)",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := validList()
			tc.mutate(l)
			err := l.Validate()
			if tc.wantList == nil && tc.wantImage == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var le *ListError
			if got := errors.As(err, &le); got != (tc.wantList != nil) {
				t.Fatalf("Validate = %v; *ListError found %v, want %v", err, got, tc.wantList != nil)
			}
			if le != nil {
				if !errors.Is(err, ErrNotImageList) || !slices.Equal(le.Keys(), tc.wantList) {
					t.Errorf("list keys = %q, want %q", le.Keys(), tc.wantList)
				}
			}
			if tc.wantImage != nil {
				if !errors.Is(err, ErrInvalidImage) {
					t.Errorf("Validate = %v, want it to match ErrInvalidImage", err)
				}
				if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, tc.wantImage) {
					t.Errorf("Validate =\n%q\nwant\n%q", got, tc.wantImage)
				}
			}
		})
	}
}

// TestParsedVectorsValidate: the real lists pass Validate once parsed.
func TestParsedVectorsValidate(t *testing.T) {
	for _, name := range vectorFiles {
		l, _, err := Parse(readTestdata(t, name), ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Validate(); err != nil {
			t.Errorf("%s: Validate: %v", name, err)
		}
	}
}
