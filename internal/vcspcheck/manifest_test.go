package vcspcheck

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func check(t *testing.T, opts Options) (Report, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return Check(ctx, opts)
}

func TestCheckValidLibrary(t *testing.T) {
	for _, verify := range []bool{false, true} {
		t.Run("verify-sums="+strconv.FormatBool(verify), func(t *testing.T) {
			lib := newFixture(t)
			lib.write(t)
			srv := serve(t, lib.root, nil)
			var log bytes.Buffer
			rep, err := check(t, Options{URL: srv.libURL(), VerifySums: verify, Stdout: &log})
			if err != nil {
				t.Fatalf("Check: %v\n%s", err, dump(rep))
			}
			if len(rep.Warnings) != 0 || !rep.OK() {
				t.Errorf("unexpected findings:\n%s", dump(rep))
			}
			if rep.Library.ID != fxLibID || rep.Library.Version != "1" || rep.Library.Name != "Test Library" {
				t.Errorf("library %+v", rep.Library)
			}
			if len(rep.Items) != 3 {
				t.Fatalf("%d items", len(rep.Items))
			}
			tpl := rep.Item("tpl")
			if tpl == nil || tpl.Type != TypeOVF || len(tpl.Files) != 3 {
				t.Fatalf("tpl item %+v", tpl)
			}
			for _, f := range tpl.Files {
				if f.Name != "tpl.mf" && !strings.HasPrefix(f.Digest, "SHA256:") {
					t.Errorf("file %s has no .mf digest: %+v", f.Name, f)
				}
				if !strings.HasPrefix(f.URL, srv.URL+"/tpl/") {
					t.Errorf("file %s URL %s", f.Name, f.URL)
				}
			}
			if !strings.Contains(log.String(), "== OK") {
				t.Errorf("log lacks == OK:\n%s", log.String())
			}
		})
	}
}

// TestCheckBroken breaks the fixture one way at a time; each must fail the
// manifest check with its own message.
func TestCheckBroken(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, l *fxLib)
		opts   func(o *Options)
		want   string
	}{
		{"hex etag", func(t *testing.T, l *fxLib) {
			l.item("media").Files[0].Etag = "9526baba0c4b4cbd2f1f5e8e1d1e4f11"
		}, nil, `file "disc.iso": etag "9526baba0c4b4cbd2f1f5e8e1d1e4f11" is not a decimal integer`},
		{"etag too big for a long", func(t *testing.T, l *fxLib) {
			l.item("media").Files[0].Etag = "99999999999999999999"
		}, nil, "is not a decimal integer"},
		{"size mismatch", func(t *testing.T, l *fxLib) {
			appendFile(t, l.path("media", "disc.iso"), make([]byte, 4464))
		}, nil, `file "disc.iso": manifest size 65536 but server has 70000 bytes`},
		{"missing file", func(t *testing.T, l *fxLib) {
			if err := os.Remove(l.path("notes", "readme.txt")); err != nil {
				t.Fatal(err)
			}
		}, nil, `file "readme.txt": HEAD ` + "http://"},
		{"OVF reference size mismatch", func(t *testing.T, l *fxLib) {
			b := readFile(t, l.path("tpl", "tpl.ovf"))
			size := strconv.FormatInt(fileSize(t, l.path("tpl", "tpl-disk1.vmdk")), 10)
			wrong := strconv.FormatInt(fileSize(t, l.path("tpl", "tpl-disk1.vmdk"))+1, 10)
			b = bytes.Replace(b, []byte(`ovf:size="`+size+`"`), []byte(`ovf:size="`+wrong+`"`), 1)
			writeFile(t, l.path("tpl", "tpl.ovf"), b)
			l.rescan(t, l.item("tpl"), "1")
		}, nil, "OVF says tpl-disk1.vmdk is "},
		{"OVF references a missing file", func(t *testing.T, l *fxLib) {
			it := l.item("tpl")
			var keep []fxFile
			for _, f := range it.Files {
				if f.Name != "tpl-disk1.vmdk" {
					keep = append(keep, f)
				}
			}
			it.Files = keep
		}, nil, "OVF references tpl-disk1.vmdk, which is not a file of the item"},
		{".mf digest mismatch", func(t *testing.T, l *fxLib) {
			corruptMF(t, l, "tpl-disk1.vmdk")
		}, func(o *Options) { o.VerifySums = true }, "SHA256 digest of tpl-disk1.vmdk does not match the .mf"},
		{"malformed .mf line", func(t *testing.T, l *fxLib) {
			appendFile(t, l.path("tpl", "tpl.mf"), []byte("SHA256 tpl.ovf = abc\n"))
			l.rescan(t, l.item("tpl"), "1")
		}, nil, `tpl.mf line 3 "SHA256 tpl.ovf = abc" is not ALG(file)= hex`},
		{"VMDK not streamOptimized", func(t *testing.T, l *fxLib) {
			p := l.path("tpl", "tpl-disk1.vmdk")
			b := readFile(t, p)
			b[10] = 0 // clear the compressed-grain flag (bit 16)
			writeFile(t, p, b)
		}, nil, "sparse VMDK but not streamOptimized"},
		{"wrong vcspVersion", func(t *testing.T, l *fxLib) { l.VcspVersion = "1" }, nil, `vcspVersion "1", want "2"`},
		{"library id not urn:uuid", func(t *testing.T, l *fxLib) { l.ID = "9fc8c3cb-1111" }, nil, `lib.json: id "9fc8c3cb-1111" is not urn:uuid`},
		{"library version not decimal", func(t *testing.T, l *fxLib) { l.Version = "v1" }, nil, `lib.json: version "v1" is not a decimal integer string`},
		{"created with seconds", func(t *testing.T, l *fxLib) { l.Created = "2026-01-02T03:04:05Z" }, nil, "not in the UTC format YYYY-MM-DDTHH:MMZ"},
		{"created with offset", func(t *testing.T, l *fxLib) { l.Created = "2026-01-02T03:04+01:00" }, nil, "not in the UTC format"},
		{"no httpGet", func(t *testing.T, l *fxLib) { l.Capabilities.TransferOut = []string{"httpPut"} }, nil, `capabilities.transferOut lacks "httpGet"`},
		{"missing itemsHref", func(t *testing.T, l *fxLib) { l.ItemsHref = "nothere.json" }, nil, "items.json: GET "},
		{"bad item type", func(t *testing.T, l *fxLib) { l.item("notes").Type = "vcsp.file" }, nil, `item "notes": type "vcsp.file" is not one of`},
		{"duplicate item id", func(t *testing.T, l *fxLib) { l.item("notes").ID = fxISOID }, nil, "duplicate item id " + fxISOID},
		{"duplicate item name", func(t *testing.T, l *fxLib) {
			l.item("notes").Name = "media"
		}, nil, `duplicate item name "media"`},
		{"item version empty", func(t *testing.T, l *fxLib) { l.item("notes").Version = "" }, nil, `item "notes": version "" is not a decimal integer string`},
		{"two .ovf files", func(t *testing.T, l *fxLib) {
			writeFile(t, l.path("tpl", "other.ovf"), readFile(t, l.path("tpl", "tpl.ovf")))
			l.rescan(t, l.item("tpl"), "1")
		}, nil, "needs exactly one .ovf file, has 2"},
		{"type-metadata single quotes", func(t *testing.T, l *fxLib) {
			it := l.item("tpl")
			it.Metadata[0].Value = "{'id':'" + it.ID + "'}"
		}, nil, "type-metadata value is not valid JSON"},
		{"type-metadata stale id", func(t *testing.T, l *fxLib) {
			it := l.item("tpl")
			it.Metadata[0].Value = `{"id":"urn:uuid:00000000-0000-4000-8000-000000000000","version":"2"}`
		}, nil, `type-metadata id "urn:uuid:00000000-0000-4000-8000-000000000000" != item id`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lib := newFixture(t)
			tt.break_(t, lib)
			lib.write(t)
			srv := serve(t, lib.root, nil)
			opts := Options{URL: srv.libURL()}
			if tt.opts != nil {
				tt.opts(&opts)
			}
			rep, err := check(t, opts)
			if !errors.Is(err, ErrManifest) {
				t.Fatalf("err = %v, want ErrManifest\n%s", err, dump(rep))
			}
			if !hasProblem(rep.Problems, tt.want) {
				t.Fatalf("no problem containing %q:\n%s", tt.want, dump(rep))
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
			if ExitCode(err) != ExitManifest {
				t.Errorf("exit code %d", ExitCode(err))
			}
		})
	}
}

// TestCheckItemJSONDiffers serves an item.json that disagrees with its
// items.json entry.
func TestCheckItemJSONDiffers(t *testing.T) {
	lib := newFixture(t)
	lib.write(t)
	it := lib.item("media")
	it.Version = "3"
	it.Description = "changed"
	writeJSON(t, lib.path("media", "item.json"), it)
	srv := serve(t, lib.root, nil)
	rep, err := check(t, Options{URL: srv.libURL()})
	if !errors.Is(err, ErrManifest) || !hasProblem(rep.Problems, `item "media": item.json (media/item.json) differs from its items.json entry in description, version`) {
		t.Fatalf("err = %v\n%s", err, dump(rep))
	}
}

// TestCheckVersionNumber: versions must be JSON strings, not numbers.
func TestCheckVersionNumber(t *testing.T) {
	lib := newFixture(t)
	lib.write(t)
	b := readFile(t, lib.path("lib.json"))
	writeFile(t, lib.path("lib.json"), bytes.Replace(b, []byte(`"version": "1"`), []byte(`"version": 1`), 1))
	srv := serve(t, lib.root, nil)
	rep, err := check(t, Options{URL: srv.libURL()})
	if !errors.Is(err, ErrManifest) || !hasProblem(rep.Problems, `lib.json: field "version" is a number, want a string`) {
		t.Fatalf("err = %v\n%s", err, dump(rep))
	}
}

// TestCheckMFDigestIgnoredWithoutVerify: without VerifySums the digests
// are parsed but not compared.
func TestCheckMFDigestIgnoredWithoutVerify(t *testing.T) {
	lib := newFixture(t)
	corruptMF(t, lib, "tpl-disk1.vmdk")
	lib.write(t)
	srv := serve(t, lib.root, nil)
	if rep, err := check(t, Options{URL: srv.libURL()}); err != nil {
		t.Fatalf("Check: %v\n%s", err, dump(rep))
	}
}

func TestCheckBasicAuth(t *testing.T) {
	lib := newFixture(t)
	lib.write(t)
	srv := serve(t, lib.root, func(s *server) { s.password = "s3cret" })
	rep, err := check(t, Options{URL: srv.libURL()})
	if !errors.Is(err, ErrManifest) || !hasProblem(rep.Problems, "HTTP 401") {
		t.Fatalf("without password: err = %v\n%s", err, dump(rep))
	}
	rep, err = check(t, Options{URL: srv.libURL(), Password: "wrong"})
	if !errors.Is(err, ErrManifest) || !hasProblem(rep.Problems, "HTTP 401") {
		t.Fatalf("wrong password: err = %v\n%s", err, dump(rep))
	}
	if rep, err := check(t, Options{URL: srv.libURL(), Password: "s3cret", VerifySums: true}); err != nil {
		t.Fatalf("with password: %v\n%s", err, dump(rep))
	}
}

// TestCheckHeadRefused: servers that refuse HEAD are sized with a ranged
// GET instead.
func TestCheckHeadRefused(t *testing.T) {
	lib := newFixture(t)
	lib.write(t)
	srv := serve(t, lib.root, func(s *server) { s.noHead = true })
	if rep, err := check(t, Options{URL: srv.libURL()}); err != nil {
		t.Fatalf("Check: %v\n%s", err, dump(rep))
	}
	appendFile(t, lib.path("media", "disc.iso"), []byte("x"))
	rep, err := check(t, Options{URL: srv.libURL()})
	if !errors.Is(err, ErrManifest) || !hasProblem(rep.Problems, "manifest size 65536 but server has 65537 bytes") {
		t.Fatalf("err = %v\n%s", err, dump(rep))
	}
}

func TestCheckUsage(t *testing.T) {
	for _, u := range []string{"", "ftp://x/lib.json", "lib.json", "http://vcsp:pw@127.0.0.1/lib.json"} {
		if _, err := Check(context.Background(), Options{URL: u}); !errors.Is(err, ErrUsage) {
			t.Errorf("URL %q: err = %v, want ErrUsage", u, err)
		}
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, p string, b []byte) {
	t.Helper()
	writeFile(t, p, append(readFile(t, p), b...))
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// corruptMF flips the first hex digit of name's digest in tpl.mf (the file
// keeps its size).
func corruptMF(t *testing.T, l *fxLib, name string) {
	t.Helper()
	p := l.path("tpl", "tpl.mf")
	b := readFile(t, p)
	i := bytes.Index(b, []byte(name+")= "))
	if i < 0 {
		t.Fatalf("%s not in tpl.mf", name)
	}
	i += len(name) + 3
	if b[i] == '0' {
		b[i] = '1'
	} else {
		b[i] = '0'
	}
	writeFile(t, p, b)
}
