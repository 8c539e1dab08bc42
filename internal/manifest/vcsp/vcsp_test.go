package vcsp

import (
	"bytes"
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func updating() bool { return *update || os.Getenv("UPDATE_GOLDEN") == "1" }

const (
	libID  = "urn:uuid:aa465152-4ed2-44f5-8fb0-4fac5e03016a"
	ovfID  = "urn:uuid:ef91d5be-9951-4abc-abc7-96180463232b"
	isoID  = "urn:uuid:0b8c3d4e-1111-4222-8333-944455556666"
	qcowID = "urn:uuid:7c1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"
)

// sample is a library with an OVF template, an ISO with spaces and
// non-ASCII in its names, and an "other" qcow2 item. Items and files are
// deliberately unsorted.
func sample() Library {
	chicago := time.FixedZone("CST", -6*3600)
	return Library{
		ID:          libID,
		Name:        "CLR Library",
		Description: "images from <clr> & friends",
		Created:     time.Date(2026, 1, 2, 1, 22, 33, 444, chicago), // 07:22 UTC
		Version:     7,
		Items: []Item{
			{
				ID: qcowID, Type: TypeOther, Created: time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC),
				Version: 2, Folder: "debian-12",
				Files: []File{{Name: "debian-12.qcow2", Size: 1 << 30, Etag: 1767225600000000}},
			},
			{
				ID: ovfID, Name: "tiny-template", Description: "A tiny template", Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
				Version: 3, Folder: "tiny-template",
				Files: []File{
					{Name: "tiny-template.ovf", Size: 2391, Etag: 42},
					{Name: "tiny-template-disk2.vmdk", Size: 131072, Etag: 42},
					{Name: "tiny-template-disk1.vmdk", Size: 65536, Etag: 42},
					{Name: "tiny-template.mf", Size: 191, Etag: 42},
				},
			},
			{
				ID: isoID, Created: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
				Version: 2, Folder: "my iso ünïcödé",
				Files: []File{{Name: "My Disk – 日本.iso", Size: 0, Etag: 0}},
			},
		},
	}
}

func TestRenderGolden(t *testing.T) {
	out, err := Render(sample())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"lib.json":                 "lib.json.golden",
		"items.json":               "items.json.golden",
		"tiny-template/item.json":  "item-ovf.json.golden",
		"my iso ünïcödé/item.json": "item-iso.json.golden",
		"debian-12/item.json":      "item-other.json.golden",
	}
	if len(out) != len(want) {
		t.Fatalf("got %d files %v, want %d", len(out), slices.Sorted(maps.Keys(out)), len(want))
	}
	for p, g := range want {
		got, ok := out[p]
		if !ok {
			t.Errorf("missing %s", p)
			continue
		}
		golden := filepath.Join("testdata", g)
		if updating() {
			if err := os.WriteFile(golden, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		exp, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run with -update or UPDATE_GOLDEN=1)", err)
		}
		if !bytes.Equal(got, exp) {
			t.Errorf("%s differs from %s:\n%s", p, golden, got)
		}
	}
}

func TestRenderContent(t *testing.T) {
	out, err := Render(sample())
	if err != nil {
		t.Fatal(err)
	}
	var lib map[string]any
	mustJSON(t, out["lib.json"], &lib)
	for k, v := range map[string]string{
		"vcspVersion": "2", "version": "7", "contentVersion": "1", "id": libID,
		"created": "2026-01-02T07:22Z", "itemsHref": "items.json",
	} {
		if lib[k] != v {
			t.Errorf("lib.json %s = %v, want %q", k, lib[k], v)
		}
	}

	var items struct{ Items []map[string]any }
	mustJSON(t, out["items.json"], &items)
	if len(items.Items) != 3 {
		t.Fatalf("items.json has %d items", len(items.Items))
	}
	// Sorted by folder; each entry equals its item.json.
	for i, folder := range []string{"debian-12", "my iso ünïcödé", "tiny-template"} {
		var self map[string]any
		mustJSON(t, out[folder+"/item.json"], &self)
		a, _ := json.Marshal(self)
		b, _ := json.Marshal(items.Items[i])
		if !bytes.Equal(a, b) {
			t.Errorf("items.json[%d] != %s/item.json", i, folder)
		}
	}

	iso := items.Items[1]
	if iso["type"] != TypeISO || iso["name"] != "my iso ünïcödé" {
		t.Errorf("iso item: type %v name %v", iso["type"], iso["name"])
	}
	if got, want := iso["selfHref"], "my%20iso%20%C3%BCn%C3%AFc%C3%B6d%C3%A9/item.json"; got != want {
		t.Errorf("selfHref = %v, want %v", got, want)
	}
	f := iso["files"].([]any)[0].(map[string]any)
	wantHref := "my%20iso%20%C3%BCn%C3%AFc%C3%B6d%C3%A9/My%20Disk%20%E2%80%93%20%E6%97%A5%E6%9C%AC.iso"
	if h := f["hrefs"].([]any)[0]; h != wantHref {
		t.Errorf("href = %v, want %v", h, wantHref)
	}
	if f["etag"] != "0" || f["size"] != float64(0) {
		t.Errorf("iso file etag %v size %v", f["etag"], f["size"])
	}

	other := items.Items[0]
	if other["type"] != TypeOther || other["metadata"] != nil {
		t.Errorf("other item: type %v metadata %v", other["type"], other["metadata"])
	}

	ovf := items.Items[2]
	if ovf["type"] != TypeOVF || ovf["version"] != "3" || ovf["contentVersion"] != "3" {
		t.Errorf("ovf item: %v", ovf)
	}
	var names []string
	for _, f := range ovf["files"].([]any) {
		fm := f.(map[string]any)
		names = append(names, fm["name"].(string))
		if fm["etag"] != "42" {
			t.Errorf("etag %v", fm["etag"])
		}
	}
	if !slices.IsSorted(names) || len(names) != 4 {
		t.Errorf("files not sorted: %v", names)
	}
	md := ovf["metadata"].([]any)[0].(map[string]any)
	if md["key"] != "type-metadata" {
		t.Fatalf("metadata key %v", md["key"])
	}
	var tm map[string]any
	if err := json.Unmarshal([]byte(md["value"].(string)), &tm); err != nil {
		t.Fatalf("type-metadata value is not valid JSON: %v", err)
	}
	if tm["id"] != ovfID || tm["version"] != "3" || tm["libraryIdParent"] != libID || tm["isVappTemplate"] != "false" {
		t.Errorf("type-metadata = %v", tm)
	}
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, b)
	}
}

func TestRenderDeterministic(t *testing.T) {
	a, err := Render(sample())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		lib := sample()
		// Reverse items and files: input order must not matter.
		slices.Reverse(lib.Items)
		for j := range lib.Items {
			slices.Reverse(lib.Items[j].Files)
		}
		if i%2 == 1 {
			lib = sample()
		}
		b, err := Render(lib)
		if err != nil {
			t.Fatal(err)
		}
		if len(a) != len(b) {
			t.Fatalf("file count differs")
		}
		for k := range a { // map iteration order varies per loop
			if !bytes.Equal(a[k], b[k]) {
				t.Fatalf("%s differs between renders", k)
			}
		}
	}
}

func TestRenderDoesNotModifyInput(t *testing.T) {
	lib := sample()
	before, _ := json.Marshal(lib)
	if _, err := Render(lib); err != nil {
		t.Fatal(err)
	}
	after, _ := json.Marshal(lib)
	if !bytes.Equal(before, after) {
		t.Error("Render modified its input")
	}
}

func TestRenderEmptyLibrary(t *testing.T) {
	lib := sample()
	lib.Items = nil
	out, err := Render(lib)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out["items.json"]), `"items": []`) {
		t.Errorf("items.json = %s", out["items.json"])
	}
}

func TestRenderRefuses(t *testing.T) {
	cases := map[string]func(*Library){
		"empty lib id":        func(l *Library) { l.ID = "" },
		"non-URN lib id":      func(l *Library) { l.ID = "aa465152-4ed2-44f5-8fb0-4fac5e03016a" },
		"upper-case uuid":     func(l *Library) { l.ID = strings.ToUpper(libID[9:]); l.ID = "urn:uuid:" + l.ID },
		"short uuid":          func(l *Library) { l.ID = "urn:uuid:1234" },
		"lib version 0":       func(l *Library) { l.Version = 0 },
		"lib zero created":    func(l *Library) { l.Created = time.Time{} },
		"empty item id":       func(l *Library) { l.Items[0].ID = "" },
		"non-URN item id":     func(l *Library) { l.Items[0].ID = "urn:isbn:0451450523" },
		"duplicate item id":   func(l *Library) { l.Items[1].ID = l.Items[0].ID },
		"item id = lib id":    func(l *Library) { l.Items[1].ID = libID },
		"duplicate folder":    func(l *Library) { l.Items[1].Folder = l.Items[0].Folder },
		"nested folder":       func(l *Library) { l.Items[1].Folder = l.Items[0].Folder + "/sub" },
		"empty folder":        func(l *Library) { l.Items[0].Folder = "" },
		"dotdot folder":       func(l *Library) { l.Items[0].Folder = "../etc" },
		"inner dotdot folder": func(l *Library) { l.Items[0].Folder = "a/../../b" },
		"dot folder":          func(l *Library) { l.Items[0].Folder = "." },
		"absolute folder":     func(l *Library) { l.Items[0].Folder = "/srv/lib" },
		"trailing slash":      func(l *Library) { l.Items[0].Folder = "debian/" },
		"backslash folder":    func(l *Library) { l.Items[0].Folder = `..\x` },
		"folder lib.json":     func(l *Library) { l.Items[0].Folder = "lib.json" },
		"folder items.json":   func(l *Library) { l.Items[0].Folder = "items.json/x" },
		"control char folder": func(l *Library) { l.Items[0].Folder = "a\nb" },
		"invalid utf8 folder": func(l *Library) { l.Items[0].Folder = "a\xffb" },
		"dotdot file":         func(l *Library) { l.Items[0].Files[0].Name = "../debian.qcow2" },
		"absolute file":       func(l *Library) { l.Items[0].Files[0].Name = "/etc/passwd" },
		"empty file name":     func(l *Library) { l.Items[0].Files[0].Name = "" },
		"file item.json":      func(l *Library) { l.Items[0].Files[0].Name = "item.json" },
		"duplicate file": func(l *Library) {
			l.Items[0].Files = append(l.Items[0].Files, l.Items[0].Files[0])
		},
		"negative size":     func(l *Library) { l.Items[0].Files[0].Size = -1 },
		"negative etag":     func(l *Library) { l.Items[0].Files[0].Etag = -1 },
		"item version 0":    func(l *Library) { l.Items[0].Version = 0 },
		"item zero created": func(l *Library) { l.Items[0].Created = time.Time{} },
		"unknown type":      func(l *Library) { l.Items[0].Type = "vcsp.ova" },
		"control char name": func(l *Library) { l.Items[0].Name = "a\x00b" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			lib := sample()
			mutate(&lib)
			out, err := Render(lib)
			if err == nil {
				t.Fatalf("no error; rendered %d files", len(out))
			}
			if out != nil {
				t.Error("partial output returned with error")
			}
			if !strings.HasPrefix(err.Error(), "vcsp: ") {
				t.Errorf("error %q lacks package prefix", err)
			}
		})
	}
}

func TestRenderDefaults(t *testing.T) {
	lib := sample()
	lib.Items = []Item{{
		ID: ovfID, Created: time.Unix(0, 0), Version: 2, Folder: "group/" + strings.Repeat("n", 100),
		Files: []File{{Name: "x.OVF"}, {Name: "x-disk1.vmdk"}, {Name: "sub/readme.txt"}},
	}}
	out, err := Render(lib)
	if err != nil {
		t.Fatal(err)
	}
	var it map[string]any
	mustJSON(t, out["group/"+strings.Repeat("n", 100)+"/item.json"], &it)
	if it["type"] != TypeOVF {
		t.Errorf("empty Type not derived: %v", it["type"])
	}
	if n := it["name"].(string); n != strings.Repeat("n", MaxNameLen) {
		t.Errorf("name not defaulted/truncated: %q", n)
	}
	if it["created"] != "1970-01-01T00:00Z" {
		t.Errorf("created = %v", it["created"])
	}
}

func TestTruncateName(t *testing.T) {
	long := strings.Repeat("a", 100) + ".iso"
	got := truncateName(long)
	if len([]rune(got)) != MaxNameLen || !strings.HasSuffix(got, ".iso") {
		t.Errorf("truncateName = %q", got)
	}
	u := strings.Repeat("ü", 90)
	if got := truncateName(u); len([]rune(got)) != MaxNameLen {
		t.Errorf("rune truncation: %d runes", len([]rune(got)))
	}
	if truncateName("short.ovf") != "short.ovf" {
		t.Error("short name changed")
	}
}

func TestTypeOf(t *testing.T) {
	cases := []struct {
		files []string
		want  string
	}{
		{[]string{"t.ovf", "t-disk1.vmdk", "t-disk2.vmdk", "t.mf"}, TypeOVF},
		{[]string{"x.OVF", "x.vmdk"}, TypeOVF}, // extension is case-insensitive
		{[]string{"t.ovf", "notes.iso"}, TypeOVF},
		{[]string{"a.ovf", "b.ovf"}, TypeOther}, // ambiguous
		{[]string{"foo.iso"}, TypeISO},
		{[]string{"FOO.ISO"}, TypeISO},
		{[]string{"foo.iso", "foo.iso.sha256"}, TypeOther}, // not a single file
		{[]string{"a.iso", "b.iso"}, TypeOther},
		{[]string{"notanovf.txt"}, TypeOther},
		{[]string{"foo.ovf.bak"}, TypeOther}, // never by substring
		{[]string{"isofile"}, TypeOther},
		{[]string{"t.ova"}, TypeOther}, // OVA is not unpacked
		{[]string{".ovf"}, TypeOther},
		{[]string{"sub/t.ovf", "x.vmdk"}, TypeOther},
		{[]string{"debian.qcow2"}, TypeOther},
		{nil, TypeOther},
	}
	for _, c := range cases {
		if got := TypeOf(c.files); got != c.want {
			t.Errorf("TypeOf(%q) = %s, want %s", c.files, got, c.want)
		}
	}
}

func TestWriteOrder(t *testing.T) {
	out, err := Render(sample())
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for p := range out {
		paths = append(paths, p)
	}
	paths = append(paths, "extra.txt")
	order := WriteOrder(paths)
	if len(order) != len(paths) {
		t.Fatalf("lost paths: %v", order)
	}
	if order[len(order)-1] != "lib.json" || order[len(order)-2] != "items.json" {
		t.Errorf("order = %v", order)
	}
	if order[0] != "extra.txt" {
		t.Errorf("other files should come first: %v", order)
	}
	for _, p := range order[1 : len(order)-2] {
		if !strings.HasSuffix(p, "/item.json") {
			t.Errorf("unexpected %s among item.json files: %v", p, order)
		}
	}
	// Input is not modified, and the result is independent of input order.
	rev := slices.Clone(paths)
	slices.Reverse(rev)
	if !slices.Equal(WriteOrder(rev), order) {
		t.Error("WriteOrder depends on input order")
	}
}

func TestEscapePath(t *testing.T) {
	for in, want := range map[string]string{
		"a/b c/d.iso":   "a/b%20c/d.iso",
		"x+y&z=1?#%":    "x%2By%26z%3D1%3F%23%25",
		"ü":             "%C3%BC",
		"A-Z_a.z~09":    "A-Z_a.z~09",
		"dir/item.json": "dir/item.json",
		"a..b/c...iso":  "a%2E%2Eb/c%2E%2E%2Eiso",
	} {
		if got := EscapePath(in); got != want {
			t.Errorf("EscapePath(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzRenderEscaping: whatever folder and file names Render accepts, no
// href it writes contains "..", a space or a raw non-ASCII byte, and every
// href decodes to the path it names.
func FuzzRenderEscaping(f *testing.F) {
	f.Add("my iso", "My Disk.iso")
	f.Add("ünï", "日本.ovf")
	f.Add("a/b", "c/../d")
	f.Add("..", "x")
	f.Add("a..b", "..x..")
	f.Add("%2e%2e", "%2F")
	f.Fuzz(func(t *testing.T, folder, file string) {
		lib := sample()
		lib.Items = []Item{{ID: ovfID, Created: time.Unix(1, 0), Version: 2, Folder: folder,
			Files: []File{{Name: file, Size: 1, Etag: 1}}}}
		out, err := Render(lib)
		if err != nil {
			return
		}
		var it struct {
			SelfHref string
			Files    []struct {
				Name  string
				Hrefs []string
			}
		}
		mustJSON(t, out[folder+"/item.json"], &it)
		hrefs := []string{it.SelfHref}
		for _, f := range it.Files {
			hrefs = append(hrefs, f.Hrefs...)
		}
		for _, h := range hrefs {
			if strings.Contains(h, "..") || strings.Contains(h, " ") || strings.HasPrefix(h, "/") {
				t.Fatalf("bad href %q", h)
			}
			for i := 0; i < len(h); i++ {
				if h[i] >= 0x80 || h[i] < 0x20 {
					t.Fatalf("raw byte %#x in href %q", h[i], h)
				}
			}
		}
		if want := EscapePath(folder + "/" + file); it.Files[0].Hrefs[0] != want {
			t.Fatalf("href %q, want %q", it.Files[0].Hrefs[0], want)
		}
	})
}
