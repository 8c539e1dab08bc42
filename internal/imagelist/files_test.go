package imagelist

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/clr-suite/clr/internal/testpki"
)

// The worked example of docs/imagelist.md: an OVF folder of three files,
//
//	printf 'not really a disk\n' > demo-disk1.vmdk
//	printf '<Envelope/>\n'       > demo.ovf
//	printf 'hello\n'             > docs/README.txt
var (
	workedExampleContent = map[string]string{
		"demo-disk1.vmdk": "not really a disk\n",
		"demo.ovf":        "<Envelope/>\n",
		"docs/README.txt": "hello\n",
	}
	workedExampleFiles = []File{
		{Path: "demo-disk1.vmdk", Size: 18, SHA512: "f6e404846dd010bf48b3eaa236a54d00db6d1c17a458267404f2c49a09b13ca82c794e02b91e39a1b4e3322bfe202b083e48fbf50b6e6ec86b900b79bd03dda7"},
		{Path: "demo.ovf", Size: 12, SHA512: "39b787aae58d307365731954c1f66e5af9b87c5a5b3fe915135e9f752f13228414c2e0e096fb283167ed22c09b12cc3c8b797e46ea4b1bcf6b080546c26df929"},
		{Path: "docs/README.txt", Size: 6, SHA512: "e7c22b994c59d9cf2b48e549b1e24666636045930d3da7c1acb299d1c3b7f931f94aae41edda2c2b207a36e10f8bcb8d45223e54878f5b316e7ce3b6bc019629"},
	}
	workedExampleDigest = "8f0abd787488700db04b82ee67e1f0f51b4dc24cab6b66cea4a71c4ff129c2d1666c9d94698807fdafc287da6073e1061a6d8928954ed2f8ef51fd83211f662a"
)

func TestWorkedExample(t *testing.T) {
	for _, f := range workedExampleFiles {
		sum := sha512.Sum512([]byte(workedExampleContent[f.Path]))
		if got := hex.EncodeToString(sum[:]); got != f.SHA512 || int64(len(workedExampleContent[f.Path])) != f.Size {
			t.Errorf("%s: sha512 %s size %d, want %s %d", f.Path, got, len(workedExampleContent[f.Path]), f.SHA512, f.Size)
		}
	}
	size, digest, err := FilesDigest(workedExampleFiles)
	if err != nil {
		t.Fatal(err)
	}
	if size != 36 || digest != workedExampleDigest {
		t.Errorf("FilesDigest = %d, %s; want 36, %s", size, digest, workedExampleDigest)
	}
}

// TestFilesDigestMatchesSHA512Sum checks the claim made to operators: the
// image checksum is what `cd folder && sha512sum <sorted paths> | sha512sum`
// prints.
func TestFilesDigestMatchesSHA512Sum(t *testing.T) {
	testpki.RequireTools(t, "sha512sum")
	sha512sum, _ := exec.LookPath("sha512sum")
	content := map[string]string{
		"demo-disk1.vmdk":      "not really a disk\n",
		"demo.ovf":             "<Envelope/>\n",
		"docs/README.txt":      "hello\n",
		"empty":                "",
		"name with spaces.txt": "spaces are fine\n",
		"ünïcode/ñame.bin":     "\x00\x01\x02",
		"B-upper-sorts-first":  "B\n",
	}
	dir := t.TempDir()
	for p, c := range content {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var files []File
	for p, c := range content {
		sum := sha512.Sum512([]byte(c))
		files = append(files, File{Path: p, Size: int64(len(c)), SHA512: hex.EncodeToString(sum[:])})
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
	}

	cmd := exec.Command(sha512sum, append([]string{"--"}, paths...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	lines, err := cmd.Output()
	if err != nil {
		t.Fatalf("sha512sum: %v", err)
	}
	outer := exec.Command(sha512sum)
	outer.Stdin = bytes.NewReader(lines)
	out, err := outer.Output()
	if err != nil {
		t.Fatalf("sha512sum: %v", err)
	}
	want, _, _ := strings.Cut(string(out), " ")

	size, got, err := FilesDigest(files)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("FilesDigest = %s\nsha512sum   = %s\nsha512sum lines:\n%s", got, want, lines)
	}
	var total int64
	for _, c := range content {
		total += int64(len(c))
	}
	if size != total {
		t.Errorf("size = %d, want %d", size, total)
	}
}

func TestFilesDigestRules(t *testing.T) {
	f := func(path string) File { return File{Path: path, Size: 1, SHA512: sha512A} }
	tests := []struct {
		name    string
		files   []File
		wantErr string // substring; "" means valid
	}{
		{"one file", []File{f("disk.img")}, ""},
		{"nested", []File{f("a/b/c"), f("a/b/d"), f("a/c")}, ""},
		{"dash sorts before dot", []File{f("demo-disk1.vmdk"), f("demo.ovf")}, ""},
		{"upper before lower", []File{f("Z"), f("a")}, ""},
		{"dotfile", []File{f(".hidden")}, ""},
		{"zero size", []File{{Path: "a", Size: 0, SHA512: sha512A}}, ""},
		{"nil", nil, "no files"},
		{"empty", []File{}, "no files"},
		{"unsorted", []File{f("b"), f("a")}, "sorts before the previous path"},
		{"duplicate", []File{f("a"), f("a")}, "duplicate path"},
		{"empty path", []File{f("")}, "empty"},
		{"absolute", []File{f("/etc/passwd")}, "absolute"},
		{"dotdot", []File{f("../x")}, "outside the folder"},
		{"dotdot alone", []File{f("..")}, "outside the folder"},
		{"dot", []File{f(".")}, "outside the folder"},
		{"dotdot inside", []File{f("a/../b")}, "not clean"},
		{"dot inside", []File{f("a/./b")}, "not clean"},
		{"leading dot slash", []File{f("./a")}, "not clean"},
		{"trailing slash", []File{f("a/")}, "not clean"},
		{"double slash", []File{f("a//b")}, "not clean"},
		{"backslash", []File{f(`a\b`)}, "backslash"},
		{"newline", []File{f("a\nb")}, "control character"},
		{"tab", []File{f("a\tb")}, "control character"},
		{"invalid utf8", []File{f("a\xffb")}, "UTF-8"},
		{"file and directory", []File{f("a"), f("a-b"), f("a/b")}, `inside "a"`},
		{"negative size", []File{{Path: "a", Size: -1, SHA512: sha512A}}, "negative size"},
		{"overflow", []File{{Path: "a", Size: math.MaxInt64, SHA512: sha512A}, {Path: "b", Size: 1, SHA512: sha512A}}, "overflows"},
		{"upper-case hex", []File{{Path: "a", Size: 1, SHA512: strings.ToUpper(sha512A)}}, "lower-case hex"},
		{"short hex", []File{{Path: "a", Size: 1, SHA512: "ab"}}, "lower-case hex"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			size, sum, err := FilesDigest(tc.files)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("FilesDigest: %v", err)
				}
				if size != int64(len(tc.files))*tc.files[0].Size || len(sum) != 128 {
					t.Errorf("FilesDigest = %d, %q", size, sum)
				}
				return
			}
			if !errors.Is(err, ErrInvalidFiles) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("FilesDigest error = %v, want ErrInvalidFiles containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestFilesDigestLineFormat(t *testing.T) {
	files := []File{{Path: "a b", Size: 3, SHA512: sha512A}, {Path: "c", Size: 4, SHA512: sha512B}}
	text := sha512A + "  a b\n" + sha512B + "  c\n"
	sum := sha512.Sum512([]byte(text))
	size, got, err := FilesDigest(files)
	if err != nil {
		t.Fatal(err)
	}
	if size != 7 || got != hex.EncodeToString(sum[:]) {
		t.Errorf("FilesDigest = %d, %s; want 7, sha512 of %q", size, got, text)
	}
}

func TestImageValidate(t *testing.T) {
	valid := func() Image {
		return Image{Identifier: "id", SHA512: sha512A, Size: 1}
	}
	ovf := func() Image {
		return Image{Identifier: "id", Format: FormatOVF, Size: 36, SHA512: workedExampleDigest, Files: workedExampleFiles}
	}
	tests := []struct {
		name     string
		img      func() Image
		wantKeys []string // nil means valid
	}{
		{"valid", valid, nil},
		{"valid ovf", ovf, nil},
		{"empty identifier", func() Image { i := valid(); i.Identifier = ""; return i }, []string{"dc:identifier"}},
		{"upper-case sha512", func() Image { i := valid(); i.SHA512 = strings.ToUpper(sha512A); return i }, []string{"sl:checksum:sha512"}},
		{"negative size", func() Image { i := valid(); i.Size = -5; return i }, []string{"hv:size"}},
		{"year out of range", func() Image { i := valid(); i.Expires = i.Expires.AddDate(10000, 0, 0); return i }, []string{"dc:date:expires"}},
		{"extra shadows known key", func() Image {
			i := valid()
			i.Extra = map[string]json.RawMessage{"hv:format": json.RawMessage(`"x"`)}
			return i
		}, []string{"hv:format"}},
		{"extra not json", func() Image {
			i := valid()
			i.Extra = map[string]json.RawMessage{"ad:x": json.RawMessage(`{`)}
			return i
		}, []string{"ad:x"}},
		{"ovf size mismatch", func() Image { i := ovf(); i.Size = 35; return i }, []string{"hv:size"}},
		{"ovf digest mismatch", func() Image { i := ovf(); i.SHA512 = sha512B; return i }, []string{"sl:checksum:sha512"}},
		{"ovf empty files", func() Image { i := ovf(); i.Files = []File{}; return i }, []string{"clr:files"}},
		{"ovf bad path", func() Image {
			i := ovf()
			i.Files = append([]File{{Path: "/abs", Size: 0, SHA512: sha512A}}, i.Files...)
			return i
		}, []string{"clr:files"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := tc.img()
			err := img.Validate()
			if tc.wantKeys == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var ie *ImageError
			if !errors.As(err, &ie) || !errors.Is(err, ErrInvalidImage) {
				t.Fatalf("Validate = %v, want *ImageError", err)
			}
			if got := ie.Keys(); !slices.Equal(got, tc.wantKeys) {
				t.Errorf("keys = %q, want %q (%v)", got, tc.wantKeys, err)
			}
		})
	}
}
