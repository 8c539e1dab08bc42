package imagelist

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Time
		wantErr bool
	}{
		{"valid", "2011-03-10T17:09:12Z", time.Date(2011, 3, 10, 17, 9, 12, 0, time.UTC), false},
		{"appdb far future", "2499-12-31T22:00:00Z", time.Date(2499, 12, 31, 22, 0, 0, 0, time.UTC), false},
		{"year zero", "0000-01-01T00:00:00Z", time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{"fractional seconds", "2011-03-10T17:09:12.5Z", time.Time{}, true},
		{"offset", "2011-03-10T17:09:12+00:00", time.Time{}, true},
		{"lower-case z", "2011-03-10T17:09:12z", time.Time{}, true},
		{"space separator", "2011-03-10 17:09:12Z", time.Time{}, true},
		{"no zone", "2011-03-10T17:09:12", time.Time{}, true},
		{"one-digit hour padded elsewhere", "2011-03-10T7:09:12ZZ", time.Time{}, true},
		{"day out of range", "2011-02-30T17:09:12Z", time.Time{}, true},
		{"hour 24", "2011-03-10T24:00:00Z", time.Time{}, true},
		{"leap second", "2016-12-31T23:59:60Z", time.Time{}, true},
		{"empty", "", time.Time{}, true},
		{"date only", "2011-03-10", time.Time{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTime(tc.in)
			if tc.wantErr {
				if !errors.Is(err, ErrInvalidTime) {
					t.Fatalf("ParseTime(%q) = %v, %v; want ErrInvalidTime", tc.in, got, err)
				}
				return
			}
			if err != nil || !got.Equal(tc.want) || got.Location() != time.UTC {
				t.Fatalf("ParseTime(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			if s := FormatTime(got); s != tc.in {
				t.Errorf("FormatTime = %q, want %q", s, tc.in)
			}
		})
	}
}

func TestFormatTime(t *testing.T) {
	cet := time.FixedZone("CET", 3600)
	got := FormatTime(time.Date(2024, 1, 2, 4, 4, 5, 999_999_999, cet))
	if want := "2024-01-02T03:04:05Z"; got != want {
		t.Errorf("FormatTime = %q, want %q", got, want)
	}
}

func TestParseVectors(t *testing.T) {
	t.Run("hepixvmitrust readme list", func(t *testing.T) {
		l, problems, err := Parse(readTestdata(t, "hepixvmitrust_imagelist.json"), ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(problems) != 0 {
			t.Errorf("problems = %q, want none", problemMessages(problems))
		}
		want := &List{
			Created:     time.Date(2011, 3, 10, 17, 9, 12, 0, time.UTC),
			Expires:     time.Date(2011, 4, 7, 17, 9, 12, 0, time.UTC),
			Identifier:  "4e186b44-2c64-40ea-97d5-e9e5c0bce059",
			Description: "a README example of an image list",
			Title:       "README example",
			Source:      "example.org",
			Version:     "1",
			URI:         "http://example.org/example-image-list.image_list",
			Endorser: Endorser{
				DN:      "/C=DE/O=GermanGrid/OU=DESY/CN=Owen Synge",
				CA:      "/C=DE/O=GermanGrid/CN=GridKa-CA",
				Email:   "owen.synge@desy.de",
				Creator: "Owen Synge",
			},
			Images: []Image{{
				Identifier:  "488dcdc4-9ab1-4fc8-a7ba-b7a5428ecb3d",
				Title:       "README example VM",
				Description: "This is an README example VM",
				URI:         "http://example.org/example-image.img",
				Size:        2147483648,
				Version:     "1",
				SHA512:      "8b4c269a60da1061b434b696c4a89293bea847b66bd8ba486a914d4209df651193ee8d454f8231840b7500fab6740620c7111d9a17d08b743133dc393ba2c0d4",
				Hypervisor:  "kvm",
				Arch:        "x86_64",
				OS:          "Linux",
				OSVersion:   "SL 5.5",
				Comments:    "Vanila install with contextulization scripts",
			}},
		}
		if !listsEqual(l, want) {
			t.Errorf("Parse =\n%+v\nwant\n%+v", l, want)
		}
	})

	t.Run("cloudkeeper appdb list", func(t *testing.T) {
		l, problems, err := Parse(readTestdata(t, "cloudkeeper_imagelist01.json"), ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(problems) != 0 {
			t.Errorf("problems = %q, want none", problemMessages(problems))
		}
		if l.Version != "20150618211400" || string(l.Extra["ad:vo"]) != `"some1.vo.net"` || len(l.Extra) != 1 {
			t.Errorf("list version %q extra %q", l.Version, l.Extra)
		}
		if len(l.Images) != 2 {
			t.Fatalf("%d images, want 2", len(l.Images))
		}
		img := l.Images[0]
		if img.Size != 121243136 || img.Format != "OVA" || img.Version != "3.3.0-1" ||
			!img.Expires.Equal(time.Date(2499, 12, 31, 22, 0, 0, 0, time.UTC)) || !img.Created.IsZero() || img.Files != nil {
			t.Errorf("image 0 = %+v", img)
		}
		for key, want := range map[string]string{
			"sl:osname":        `"Scientific Linux"`,
			"hv:ram_minimum":   `"512"`,
			"hv:core_minimum":  `"1"`,
			"ad:user:fullname": `"Bruce Wayne"`,
			"ad:mpuri":         `"https://appdb.somewhere.net/store/vo/image/c0482bc2-bf41-5d49-aaaa-a750174a186b:484/"`,
		} {
			if got := string(img.Extra[key]); got != want {
				t.Errorf("image 0 Extra[%s] = %s, want %s", key, got, want)
			}
		}
		if len(img.Extra) != 10 {
			t.Errorf("image 0 has %d Extra keys, want 10: %q", len(img.Extra), img.Extra)
		}
		if l.Images[1].Size != 581816320 {
			t.Errorf("image 1 size %d", l.Images[1].Size)
		}
	})

	t.Run("hepix book deprecated unwrapped list", func(t *testing.T) {
		l, problems, err := Parse(readTestdata(t, "hepixbook_deprecated.json"), ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := []Problem{{Index: -1, Message: "deprecated unwrapped image list format (no hv:imagelist key)"}}
		if !slices.EqualFunc(problems, want, problemEqual) {
			t.Errorf("problems = %+v, want %+v", problems, want)
		}
		// Same content as the README list, only not wrapped.
		readme, _, err := Parse(readTestdata(t, "hepixvmitrust_imagelist.json"), ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !listsEqual(l, readme) {
			t.Errorf("deprecated list differs from wrapped README list")
		}
	})
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name     string
		data     []byte
		opts     ParseOptions
		wantErr  error
		wantMsg  string   // exact message, if set
		wantKeys []string // ListError.Keys(), if set
	}{
		{"over cap", []byte(`{"hv:imagelist": {}}`), ParseOptions{MaxSize: 10}, ErrTooLarge,
			"image list too large: 20 bytes, limit 10", nil},
		{"not json", []byte(`{"hv:imagelist": `), ParseOptions{}, ErrNotJSON, "", nil},
		{"empty input", nil, ParseOptions{}, ErrNotJSON, "", nil},
		{"trailing garbage", []byte(`{} x`), ParseOptions{}, ErrNotJSON, "", nil},
		{"top-level array", []byte(`[{"hv:imagelist": {}}]`), ParseOptions{}, ErrNotJSON,
			"not a json object: top level is an array, not an object", nil},
		{"top-level string", []byte(`"x"`), ParseOptions{}, ErrNotJSON,
			"not a json object: top level is a string, not an object", nil},
		{"top-level null", []byte(`null`), ParseOptions{}, ErrNotJSON,
			"not a json object: top level is null, not an object", nil},
		{"hv:imagelist not an object", []byte(`{"hv:imagelist": []}`), ParseOptions{}, ErrNotImageList,
			"not an image list: invalid hv:imagelist (want an object, got array)", nil},
		{"empty object", []byte(`{}`), ParseOptions{}, ErrNotImageList, "",
			[]string{"dc:date:created", "dc:date:expires", "dc:description", "dc:identifier", "dc:source", "dc:title", "hv:endorser", "hv:images", "hv:uri", "hv:version"}},
		{"missing title and uri", listWithout(t, "dc:title", "hv:uri"), ParseOptions{}, ErrNotImageList,
			"not an image list: missing required keys dc:title, hv:uri", []string{"dc:title", "hv:uri"}},
		{"missing images", listWithout(t, "hv:images"), ParseOptions{}, ErrNotImageList,
			"not an image list: missing required key hv:images", nil},
		{"wrong types", listWith(t, map[string]any{"hv:version": 2, "dc:source": nil, "hv:images": map[string]any{}}), ParseOptions{}, ErrNotImageList,
			"not an image list: invalid dc:source (want a string, got null); invalid hv:images (want an array, got object); invalid hv:version (want a string, got number)", nil},
		{"fractional created", listWith(t, map[string]any{"dc:date:created": "2024-01-02T03:04:05.123Z"}), ParseOptions{}, ErrNotImageList,
			`not an image list: invalid dc:date:created ("2024-01-02T03:04:05.123Z" is not YYYY-MM-DDTHH:MM:SSZ)`, nil},
		{"offset expires", listWith(t, map[string]any{"dc:date:expires": "2024-02-02T03:04:05+01:00"}), ParseOptions{}, ErrNotImageList,
			"", []string{"dc:date:expires"}},
		{"endorser without x509", listWith(t, map[string]any{"hv:endorser": map[string]any{}}), ParseOptions{}, ErrNotImageList,
			"not an image list: missing required key hv:endorser/hv:x509", nil},
		{"endorser not an object", listWith(t, map[string]any{"hv:endorser": "me"}), ParseOptions{}, ErrNotImageList,
			"not an image list: invalid hv:endorser (want an object, got string)", nil},
		{"x509 missing dn and email", listWith(t, map[string]any{"hv:endorser": map[string]any{"hv:x509": map[string]any{"hv:ca": "/CN=CA", "dc:creator": "x", "hv:email": 1}}}), ParseOptions{}, ErrNotImageList,
			"not an image list: missing required key hv:endorser/hv:x509/hv:dn; invalid hv:endorser/hv:x509/hv:email (want a string, got number)", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, problems, err := Parse(tc.data, tc.opts)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Parse error = %v, want %v", err, tc.wantErr)
			}
			if l != nil || problems != nil {
				t.Errorf("Parse returned a list or problems along with an error")
			}
			if tc.wantMsg != "" && err.Error() != tc.wantMsg {
				t.Errorf("error = %q\nwant    %q", err, tc.wantMsg)
			}
			if tc.wantKeys != nil {
				var le *ListError
				if !errors.As(err, &le) {
					t.Fatalf("error %v is not a *ListError", err)
				}
				if !slices.Equal(le.Keys(), tc.wantKeys) {
					t.Errorf("keys = %q, want %q", le.Keys(), tc.wantKeys)
				}
			}
		})
	}
}

func TestParseSizeCap(t *testing.T) {
	data := readTestdata(t, "cloudkeeper_imagelist01.json")
	tests := []struct {
		name    string
		max     int64
		wantErr bool
	}{
		{"default", 0, false},
		{"unlimited", -1, false},
		{"exact", int64(len(data)), false},
		{"one short", int64(len(data)) - 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse(data, ParseOptions{MaxSize: tc.max})
			if got := errors.Is(err, ErrTooLarge); got != tc.wantErr {
				t.Errorf("Parse error = %v, want ErrTooLarge %v", err, tc.wantErr)
			}
		})
	}
	big := make([]byte, DefaultMaxSize+1)
	if _, _, err := Parse(big, ParseOptions{}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("input of DefaultMaxSize+1 bytes: error = %v, want ErrTooLarge", err)
	}
}

func TestParseListProblems(t *testing.T) {
	tests := []struct {
		name string
		doc  map[string]any
		want []string
	}{
		{"clean wrapped", wrap(testList(testImage("a"))), nil},
		{"deprecated", testList(testImage("a")),
			[]string{"deprecated unwrapped image list format (no hv:imagelist key)"}},
		{"keys next to hv:imagelist", map[string]any{"hv:imagelist": testList(), "zz": 1, "aa": "x"},
			[]string{`ignored top-level keys next to hv:imagelist: "aa", "zz"`}},
		{"keys next to hv:x509", wrap(func() map[string]any {
			l := testList()
			l["hv:endorser"].(map[string]any)["hv:dn"] = "misplaced"
			return l
		}()), []string{`ignored keys next to hv:x509 in hv:endorser: "hv:dn"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, problems, err := Parse(mustJSON(t, tc.doc), ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				if p.Index != -1 || p.Image != "" || p.Missing != nil {
					t.Errorf("list-level problem %+v has image fields", p)
				}
			}
			if got := problemMessages(problems); !slices.Equal(got, tc.want) {
				t.Errorf("problems = %q\nwant       %q", got, tc.want)
			}
		})
	}
}

func TestParseImages(t *testing.T) {
	const id = "488dcdc4-9ab1-4fc8-a7ba-b7a5428ecb3d"
	with := func(changes map[string]any, del ...string) map[string]any {
		img := testImage(id)
		for k, v := range changes {
			img[k] = v
		}
		for _, k := range del {
			delete(img, k)
		}
		return img
	}
	ovf := func(changes map[string]any) map[string]any {
		img := with(map[string]any{
			"hv:format":          "ovf",
			"hv:size":            36,
			"sl:checksum:sha512": workedExampleDigest,
			"clr:files": []any{
				map[string]any{"path": "demo-disk1.vmdk", "size": 18, "sl:checksum:sha512": workedExampleFiles[0].SHA512},
				map[string]any{"path": "demo.ovf", "size": 12, "sl:checksum:sha512": workedExampleFiles[1].SHA512},
				map[string]any{"path": "docs/README.txt", "size": 6, "sl:checksum:sha512": workedExampleFiles[2].SHA512},
			},
		})
		for k, v := range changes {
			img[k] = v
		}
		return img
	}
	tests := []struct {
		name        string
		elem        any // one hv:images element
		wantKept    bool
		wantMissing []string
		wantMsg     string // exact Problem message, if set
		check       func(t *testing.T, img Image)
	}{
		{name: "valid", elem: map[string]any{"hv:image": with(nil)}, wantKept: true},
		{name: "size as string", elem: map[string]any{"hv:image": with(map[string]any{"hv:size": "121243136"})}, wantKept: true,
			check: func(t *testing.T, img Image) {
				if img.Size != 121243136 {
					t.Errorf("size %d", img.Size)
				}
			}},
		{name: "upper-case sha512 normalised", elem: map[string]any{"hv:image": with(map[string]any{"sl:checksum:sha512": strings.Repeat("AbC", 42) + "Ef"})}, wantKept: true,
			check: func(t *testing.T, img Image) {
				if img.SHA512 != strings.Repeat("abc", 42)+"ef" {
					t.Errorf("sha512 %s", img.SHA512)
				}
			}},
		{name: "unknown values canonicalised", elem: map[string]any{"hv:image": with(map[string]any{
			"ad:x": json.RawMessage("{\"b\": 1, \"b\": \"\xff\\u00e9\", \"a\": 1E+2, \"c\": [-0.0, \"</script>\"]}"),
		})}, wantKept: true,
			check: func(t *testing.T, img Image) {
				if got, want := string(img.Extra["ad:x"]), "{\"a\":1E+2,\"b\":\"\uFFFD\u00e9\",\"c\":[-0.0,\"</script>\"]}"; got != want {
					t.Errorf("Extra ad:x = %s, want %s", got, want)
				}
			}},
		{name: "optional keys", elem: map[string]any{"hv:image": with(map[string]any{
			"hv:format": "qcow2", "dc:date:created": "2024-01-01T00:00:00Z", "dc:date:expires": "2499-12-31T22:00:00Z", "sl:osname": "AlmaLinux", "ad:x": map[string]any{"b": 1, "a": []any{true, nil}},
		})}, wantKept: true,
			check: func(t *testing.T, img Image) {
				if img.Format != "qcow2" || img.Created.Year() != 2024 || img.Expires.Year() != 2499 {
					t.Errorf("optional fields %+v", img)
				}
				if got := string(img.Extra["ad:x"]); got != `{"a":[true,null],"b":1}` {
					t.Errorf("Extra ad:x = %s", got)
				}
			}},
		{name: "ovf folder with clr:files", elem: map[string]any{"hv:image": ovf(nil)}, wantKept: true,
			check: func(t *testing.T, img Image) {
				if len(img.Files) != 3 || img.Files[2].Path != "docs/README.txt" || img.Files[2].Size != 6 || img.Format != "ovf" {
					t.Errorf("files %+v", img.Files)
				}
			}},
		{name: "missing size and arch", elem: map[string]any{"hv:image": with(nil, "hv:size", "sl:arch")},
			wantMissing: []string{"hv:size", "sl:arch"},
			wantMsg:     "image 0 (dc:identifier " + id + "): missing required keys hv:size, sl:arch; left out"},
		{name: "all keys missing", elem: map[string]any{"hv:image": map[string]any{}},
			wantMissing: imageRequiredSorted(),
			wantMsg:     "image 0: missing required keys " + strings.Join(imageRequiredSorted(), ", ") + "; left out"},
		{name: "bad sha512", elem: map[string]any{"hv:image": with(map[string]any{"sl:checksum:sha512": "abc"})},
			wantMissing: []string{"sl:checksum:sha512"},
			wantMsg:     "image 0 (dc:identifier " + id + "): invalid sl:checksum:sha512 (not 128 lower-case hex digits); left out"},
		{name: "sha512 not hex", elem: map[string]any{"hv:image": with(map[string]any{"sl:checksum:sha512": strings.Repeat("g", 128)})},
			wantMissing: []string{"sl:checksum:sha512"}},
		{name: "negative size", elem: map[string]any{"hv:image": with(map[string]any{"hv:size": -1})},
			wantMissing: []string{"hv:size"},
			wantMsg:     "image 0 (dc:identifier " + id + "): invalid hv:size (negative); left out"},
		{name: "negative size string", elem: map[string]any{"hv:image": with(map[string]any{"hv:size": "-1"})},
			wantMissing: []string{"hv:size"}},
		{name: "fractional size", elem: map[string]any{"hv:image": with(map[string]any{"hv:size": 1.5})},
			wantMissing: []string{"hv:size"},
			wantMsg:     "image 0 (dc:identifier " + id + `): invalid hv:size ("1.5" is not an integer); left out`},
		{name: "exponent size", elem: map[string]any{"hv:image": with(map[string]any{"hv:size": json.RawMessage("1e3")})},
			wantMissing: []string{"hv:size"}},
		{name: "size string not decimal", elem: map[string]any{"hv:image": with(map[string]any{"hv:size": "12 MB"})},
			wantMissing: []string{"hv:size"}},
		{name: "size string empty", elem: map[string]any{"hv:image": with(map[string]any{"hv:size": ""})},
			wantMissing: []string{"hv:size"}},
		{name: "size overflow", elem: map[string]any{"hv:image": with(map[string]any{"hv:size": "9223372036854775808"})},
			wantMissing: []string{"hv:size"},
			wantMsg:     "image 0 (dc:identifier " + id + `): invalid hv:size ("9223372036854775808" is out of range); left out`},
		{name: "size boolean", elem: map[string]any{"hv:image": with(map[string]any{"hv:size": true})},
			wantMissing: []string{"hv:size"},
			wantMsg:     "image 0 (dc:identifier " + id + "): invalid hv:size (want a number or a decimal string, got boolean); left out"},
		{name: "title wrong type", elem: map[string]any{"hv:image": with(map[string]any{"dc:title": []any{}})},
			wantMissing: []string{"dc:title"}},
		{name: "empty identifier", elem: map[string]any{"hv:image": with(map[string]any{"dc:identifier": ""})},
			wantMissing: []string{"dc:identifier"},
			wantMsg:     "image 0: invalid dc:identifier (empty); left out"},
		{name: "bad per-image expires", elem: map[string]any{"hv:image": with(map[string]any{"dc:date:expires": "2499-12-31"})},
			wantMissing: []string{"dc:date:expires"}},
		{name: "hv:format not a string", elem: map[string]any{"hv:image": with(map[string]any{"hv:format": 3})},
			wantMissing: []string{"hv:format"}},
		{name: "missing key and bad sha512 together", elem: map[string]any{"hv:image": with(map[string]any{"sl:checksum:sha512": "x"}, "sl:os")},
			wantMissing: []string{"sl:checksum:sha512", "sl:os"},
			wantMsg:     "image 0 (dc:identifier " + id + "): missing required key sl:os; invalid sl:checksum:sha512 (not 128 lower-case hex digits); left out"},
		{name: "element not an object", elem: "hv:image",
			wantMissing: []string{"hv:image"},
			wantMsg:     `image 0: invalid hv:image (element is a string, want {"hv:image": {...}}); left out`},
		{name: "element without hv:image", elem: with(nil),
			wantMissing: []string{"hv:image"},
			wantMsg:     "image 0: missing required key hv:image; left out"},
		{name: "hv:image not an object", elem: map[string]any{"hv:image": []any{}},
			wantMissing: []string{"hv:image"}},
		{name: "identifier with newline quoted", elem: map[string]any{"hv:image": with(map[string]any{"dc:identifier": "a\nb"}, "hv:uri")},
			wantMissing: []string{"dc:identifier", "hv:uri"},
			wantMsg:     `image 0 (dc:identifier "a\nb"): missing required key hv:uri; invalid dc:identifier (holds a control character or '/', or is '.' or '..'); left out`},
		{name: "identifier forging a line of clr-image -l", elem: map[string]any{"hv:image": with(map[string]any{"dc:identifier": "x\t3\tother"})},
			wantMissing: []string{"dc:identifier"},
			wantMsg:     `image 0 (dc:identifier "x\t3\tother"): invalid dc:identifier (holds a control character or '/', or is '.' or '..'); left out`},
		{name: "identifier escaping the cache dir", elem: map[string]any{"hv:image": with(map[string]any{"dc:identifier": "../etc"})},
			wantMissing: []string{"dc:identifier"},
			wantMsg:     `image 0 (dc:identifier ../etc): invalid dc:identifier (holds a control character or '/', or is '.' or '..'); left out`},
		{name: "clr:files size mismatch", elem: map[string]any{"hv:image": ovf(map[string]any{"hv:size": 37})},
			wantMissing: []string{"hv:size"},
			wantMsg:     "image 0 (dc:identifier " + id + "): invalid hv:size (37, but the clr:files sizes add up to 36); left out"},
		{name: "clr:files digest mismatch", elem: map[string]any{"hv:image": ovf(map[string]any{"sl:checksum:sha512": sha512A})},
			wantMissing: []string{"sl:checksum:sha512"},
			wantMsg:     "image 0 (dc:identifier " + id + "): invalid sl:checksum:sha512 (does not match the clr:files digest " + workedExampleDigest + "); left out"},
		{name: "clr:files unsorted", elem: map[string]any{"hv:image": ovf(map[string]any{"clr:files": []any{
			map[string]any{"path": "demo.ovf", "size": 12, "sl:checksum:sha512": workedExampleFiles[1].SHA512},
			map[string]any{"path": "demo-disk1.vmdk", "size": 18, "sl:checksum:sha512": workedExampleFiles[0].SHA512},
			map[string]any{"path": "docs/README.txt", "size": 6, "sl:checksum:sha512": workedExampleFiles[2].SHA512},
		}})},
			wantMissing: []string{"clr:files"},
			wantMsg:     "image 0 (dc:identifier " + id + `): invalid clr:files (file 1: path "demo-disk1.vmdk" sorts before the previous path "demo.ovf" (want bytewise order)); left out`},
		{name: "clr:files empty", elem: map[string]any{"hv:image": ovf(map[string]any{"clr:files": []any{}})},
			wantMissing: []string{"clr:files"}},
		{name: "clr:files not an array", elem: map[string]any{"hv:image": ovf(map[string]any{"clr:files": map[string]any{}})},
			wantMissing: []string{"clr:files"}},
		{name: "clr:files entry with unknown key and string size", elem: map[string]any{"hv:image": ovf(map[string]any{"clr:files": []any{
			map[string]any{"path": "a", "size": "1", "sl:checksum:sha512": sha512A, "mode": "0644"},
		}})},
			wantMissing: []string{"clr:files"},
			wantMsg:     "image 0 (dc:identifier " + id + `): invalid clr:files (file 0: invalid size (want a number, got string); unknown keys "mode"); left out`},
		{name: "clr:files dotdot path", elem: map[string]any{"hv:image": ovf(map[string]any{"clr:files": []any{
			map[string]any{"path": "../etc/passwd", "size": 1, "sl:checksum:sha512": sha512A},
		}})},
			wantMissing: []string{"clr:files"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			list := testList()
			list["hv:images"] = []any{tc.elem}
			l, problems, err := Parse(mustJSON(t, wrap(list)), ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantKept {
				if len(l.Images) != 1 || len(problems) != 0 {
					t.Fatalf("images %d, problems %q; want the image kept without problems", len(l.Images), problemMessages(problems))
				}
				if err := l.Images[0].Validate(); err != nil {
					t.Errorf("kept image fails Validate: %v", err)
				}
				if tc.check != nil {
					tc.check(t, l.Images[0])
				}
				return
			}
			if len(l.Images) != 0 {
				t.Errorf("image kept, want it left out")
			}
			if len(problems) != 1 {
				t.Fatalf("problems = %q, want one", problemMessages(problems))
			}
			p := problems[0]
			if p.Index != 0 || !slices.Equal(p.Missing, tc.wantMissing) {
				t.Errorf("problem index %d missing %q, want 0 %q (%s)", p.Index, p.Missing, tc.wantMissing, p.Message)
			}
			if !strings.HasSuffix(p.Message, "; left out") || strings.Contains(p.Message, "\n") {
				t.Errorf("message %q is not one line ending in '; left out'", p.Message)
			}
			if tc.wantMsg != "" && p.Message != tc.wantMsg {
				t.Errorf("message = %q\nwant      %q", p.Message, tc.wantMsg)
			}
		})
	}
}

func TestParseImagesMixed(t *testing.T) {
	bad := testImage("bad")
	delete(bad, "sl:arch")
	list := testList(testImage("one"), bad, testImage("two"), testImage("one"))
	list["hv:images"] = append(list["hv:images"].([]any), map[string]any{"hv:image": testImage("three"), "note": "x"})
	l, problems, err := Parse(mustJSON(t, wrap(list)), ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, img := range l.Images {
		ids = append(ids, img.Identifier)
	}
	if want := []string{"one", "two", "three"}; !slices.Equal(ids, want) {
		t.Errorf("kept images %q, want %q (order kept)", ids, want)
	}
	want := []Problem{
		{Index: 1, Image: "bad", Missing: []string{"sl:arch"}, Message: "image 1 (dc:identifier bad): missing required key sl:arch; left out"},
		{Index: 3, Image: "one", Missing: []string{"dc:identifier"}, Message: "image 3 (dc:identifier one): invalid dc:identifier (duplicate of image 0); left out"},
		{Index: 4, Image: "three", Message: `image 4 (dc:identifier three): ignored keys next to hv:image: "note"`},
	}
	if !slices.EqualFunc(problems, want, problemEqual) {
		t.Errorf("problems =\n%+v\nwant\n%+v", problems, want)
	}
}

func TestImageErrorIs(t *testing.T) {
	img := Image{Identifier: "x", SHA512: "nope"}
	err := img.Validate()
	var ie *ImageError
	if !errors.Is(err, ErrInvalidImage) || !errors.As(err, &ie) {
		t.Fatalf("Validate error %v does not match ErrInvalidImage/*ImageError", err)
	}
	if errors.Is(err, ErrNotImageList) {
		t.Errorf("image error matches ErrNotImageList")
	}
}

func imageRequiredSorted() []string {
	keys := slices.Clone(imageRequired)
	slices.Sort(keys)
	return keys
}

func listWithout(t *testing.T, keys ...string) []byte {
	l := testList()
	for _, k := range keys {
		delete(l, k)
	}
	return mustJSON(t, wrap(l))
}

func listWith(t *testing.T, changes map[string]any) []byte {
	l := testList()
	for k, v := range changes {
		l[k] = v
	}
	return mustJSON(t, wrap(l))
}

func problemEqual(a, b Problem) bool {
	return a.Index == b.Index && a.Image == b.Image && slices.Equal(a.Missing, b.Missing) && a.Message == b.Message
}

func TestMessageHelpers(t *testing.T) {
	long := strings.Repeat("x", 63) + "é" + "tail"
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"plain uuid", plain("488dcdc4-9ab1-4fc8-a7ba-b7a5428ecb3d"), "488dcdc4-9ab1-4fc8-a7ba-b7a5428ecb3d"},
		{"plain with space", plain("a b"), `"a b"`},
		{"plain empty", plain(""), `""`},
		{"plain long clipped at rune boundary", plain(long), `"` + strings.Repeat("x", 63) + `"...`},
		{"quote control", quote("a\x00b"), `"a\x00b"`},
		{"quote keys capped", quoteKeys([]string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"}),
			`"a", "b", "c", "d", "e", "f", "g", "h", "i", "j" and 2 more`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %s, want %s", tc.got, tc.want)
			}
		})
	}
}
