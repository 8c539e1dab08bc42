package imagelist

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Real lists, copied from testdata/vectors (see testdata/README.md).
var vectorFiles = []string{
	"hepixvmitrust_imagelist.json",
	"cloudkeeper_imagelist01.json",
	"hepixbook_deprecated.json",
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

var (
	sha512A = strings.Repeat("a", 128)
	sha512B = strings.Repeat("b", 128)
)

// testImage returns a minimal valid hv:image object.
func testImage(id string) map[string]any {
	return map[string]any{
		"dc:identifier":      id,
		"dc:title":           "title " + id,
		"dc:description":     "",
		"hv:uri":             "https://example.org/" + id + ".img",
		"hv:size":            1024,
		"hv:version":         "1",
		"sl:checksum:sha512": sha512A,
		"hv:hypervisor":      "kvm",
		"sl:arch":            "x86_64",
		"sl:os":              "Linux",
		"sl:osversion":       "9",
		"sl:comments":        "",
	}
}

// testList returns a minimal valid list object (unwrapped) with the given
// hv:image objects.
func testList(images ...map[string]any) map[string]any {
	elems := []any{}
	for _, img := range images {
		elems = append(elems, map[string]any{"hv:image": img})
	}
	return map[string]any{
		"dc:date:created": "2024-01-02T03:04:05Z",
		"dc:date:expires": "2024-02-02T03:04:05Z",
		"dc:identifier":   "5f1c7a52-0000-4000-8000-000000000001",
		"dc:description":  "test list",
		"dc:title":        "Test",
		"dc:source":       "example.org",
		"hv:version":      "1",
		"hv:uri":          "https://example.org/image.list",
		"hv:endorser": map[string]any{"hv:x509": map[string]any{
			"hv:dn":      "/C=XX/O=Test/CN=Signer",
			"hv:ca":      "/C=XX/O=Test/CN=Test CA",
			"hv:email":   "signer@example.org",
			"dc:creator": "Signer",
		}},
		"hv:images": elems,
	}
}

func wrap(list map[string]any) map[string]any { return map[string]any{"hv:imagelist": list} }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func problemMessages(ps []Problem) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Message)
	}
	return out
}

// syntheticListJSON is a wrapped list exercising what the vectors do not:
// an OVF image with clr:files, a string size, upper-case hex, nested unknown
// values with unsorted keys and characters JSON encoders like to escape.
func syntheticListJSON(tb testing.TB) []byte {
	ovf := testImage("ovf")
	ovf["hv:format"] = "ovf"
	ovf["hv:size"] = "36"
	ovf["sl:checksum:sha512"] = strings.ToUpper(workedExampleDigest)
	ovf["clr:files"] = []any{
		map[string]any{"sl:checksum:sha512": workedExampleFiles[0].SHA512, "size": 18, "path": "demo-disk1.vmdk"},
		map[string]any{"path": "demo.ovf", "size": 12, "sl:checksum:sha512": workedExampleFiles[1].SHA512},
		map[string]any{"path": "docs/README.txt", "size": 6, "sl:checksum:sha512": strings.ToUpper(workedExampleFiles[2].SHA512)},
	}
	ovf["dc:date:created"] = "2024-01-01T00:00:00Z"
	ovf["ad:nested"] = map[string]any{"z": []any{1.5, "<&>", map[string]any{"y": nil, "x": 1e300}}, "a": "\u2028"}
	synthetic := testList(ovf, testImage("plain"))
	synthetic["ad:vo"] = "vo.example.org"
	synthetic["hv:endorser"].(map[string]any)["hv:x509"].(map[string]any)["x:extra"] = []any{"kept"}
	return mustJSON(tb, wrap(synthetic))
}
