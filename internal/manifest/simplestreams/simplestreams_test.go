package simplestreams

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func updating() bool { return *update || os.Getenv("UPDATE_GOLDEN") == "1" }

func sum(b ...[]byte) string {
	h := sha256.New()
	for _, p := range b {
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// image is a fake metadata tarball with its root files, hashed like the
// caller will: sha256 of each file and sha256(meta || root) per root.
type image struct {
	meta  []byte
	roots map[string][]byte // ftype -> content
}

var rootExt = map[string]string{FTypeSquashfs: "squashfs", FTypeDiskKVM: "qcow2", FTypeRootTarXZ: "rootfs.tar.xz"}

func (im image) version(name, label string) Version {
	ms := sum(im.meta)
	v := Version{
		Name:     name,
		Label:    label,
		Combined: map[string]string{},
		Items: []Item{{
			Key: "meta", FType: FTypeMeta, Path: "images/" + ms + ".incus.tar.xz",
			Size: int64(len(im.meta)), SHA256: ms,
		}},
	}
	for _, ft := range slices.Sorted(maps.Keys(im.roots)) {
		b := im.roots[ft]
		key := map[string]string{FTypeSquashfs: "root.squashfs", FTypeDiskKVM: "disk.qcow2", FTypeRootTarXZ: "root.tar.xz"}[ft]
		v.Items = append(v.Items, Item{
			Key: key, FType: ft, Path: "images/" + ms + "." + rootExt[ft],
			Size: int64(len(b)), SHA256: sum(b),
		})
		v.Combined[ft] = sum(im.meta, b)
	}
	return v
}

// sample has a Debian product with two serials, the newer one with a
// container (squashfs) and a VM (disk-kvm.img) image sharing one metadata
// tarball, and an Ubuntu product with requirements, custom aliases and a
// root.tar.xz. Products, versions and items are deliberately unsorted.
func sample() Catalog {
	deb1 := image{meta: []byte("debian meta 1"), roots: map[string][]byte{FTypeSquashfs: []byte("debian squashfs 1")}}
	deb2 := image{meta: []byte("debian meta 2"), roots: map[string][]byte{
		FTypeSquashfs: []byte("debian squashfs 2"),
		FTypeDiskKVM:  []byte("debian qcow2 2"),
	}}
	ubu := image{meta: []byte("ubuntu meta"), roots: map[string][]byte{
		FTypeRootTarXZ: []byte("ubuntu rootfs"),
		FTypeDiskKVM:   []byte("ubuntu qcow2"),
	}}
	v2 := deb2.version("20261126_0102", "CLR build 7 <&>")
	slices.Reverse(v2.Items)
	chicago := time.FixedZone("CST", -6*3600)
	return Catalog{
		Updated: time.Date(2026, 11, 26, 1, 13, 2, 999, chicago), // 07:13:02 UTC
		Products: []Product{
			{
				OS: "ubuntu", Release: "noble", ReleaseTitle: "24.04 LTS", Arch: "arm64", Variant: "cloud",
				Aliases:      []string{"ubuntu/noble/cloud", "ubuntu/24.04/cloud"},
				Requirements: map[string]string{"secureboot": "false", "cgroup": "v2"},
				Versions:     []Version{ubu.version("20261120", "")},
			},
			{
				OS: "debian", Release: "bookworm", ReleaseTitle: "12 (bookworm)", Arch: "amd64", Variant: "default",
				Versions: []Version{v2, deb1.version("20261125_0102", "")},
			},
		},
	}
}

func TestRenderGolden(t *testing.T) {
	out, err := Render(sample())
	if err != nil {
		t.Fatal(err)
	}
	checkOutput(t, out)
	want := map[string]string{IndexPath: "index.json.golden", ImagesPath: "images.json.golden"}
	if len(out) != len(want) {
		t.Fatalf("got files %v", slices.Sorted(maps.Keys(out)))
	}
	for p, g := range want {
		golden := filepath.Join("testdata", g)
		if updating() {
			if err := os.MkdirAll("testdata", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(golden, out[p], 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		exp, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run with -update or UPDATE_GOLDEN=1)", err)
		}
		if !bytes.Equal(out[p], exp) {
			t.Errorf("%s differs from %s:\n%s", p, golden, out[p])
		}
	}
}

func TestRenderContent(t *testing.T) {
	c := sample()
	out, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out[ImagesPath], []byte(`\u003c`)) || !bytes.Contains(out[ImagesPath], []byte(`CLR build 7 <&>`)) {
		t.Error("label is HTML-escaped")
	}
	var idx struct {
		Format, Updated string
		Index           map[string]struct {
			Products []string
		}
	}
	mustJSON(t, out[IndexPath], &idx)
	if idx.Updated != "Thu, 26 Nov 2026 07:13:02 GMT" {
		t.Errorf("updated = %q", idx.Updated)
	}
	if got := idx.Index["images"].Products; !slices.Equal(got, []string{"debian:bookworm:default:amd64", "ubuntu:noble:cloud:arm64"}) {
		t.Errorf("index products = %v", got)
	}

	var img imagesJSON
	mustJSON(t, out[ImagesPath], &img)
	deb := img.Products["debian:bookworm:default:amd64"]
	if deb.Aliases != "debian/bookworm/default,debian/bookworm" || deb.ReleaseTitle != "12 (bookworm)" || deb.Requirements != nil {
		t.Errorf("debian product = %+v", deb)
	}
	v := deb.Versions["20261126_0102"]
	if v.Label != "CLR build 7 <&>" || len(v.Items) != 4 {
		t.Fatalf("debian version = %+v", v)
	}
	inc, lxd := v.Items["incus.tar.xz"], v.Items["lxd.tar.xz"]
	if inc.FType != "incus.tar.xz" || lxd.FType != "lxd.tar.xz" {
		t.Errorf("meta ftypes %q %q", inc.FType, lxd.FType)
	}
	want := sum([]byte("debian meta 2"), []byte("debian qcow2 2"))
	if inc.CombinedDiskKVM != want || lxd.CombinedDiskKVM != want {
		t.Errorf("combined disk-kvm = %q/%q, want %q", inc.CombinedDiskKVM, lxd.CombinedDiskKVM, want)
	}
	if inc.Combined != "" || inc.CombinedRootXZ != "" {
		t.Errorf("rootxz fields without a root.tar.xz: %+v", inc)
	}
	if v.Items["disk.qcow2"].FType != FTypeDiskKVM || v.Items["root.squashfs"].FType != FTypeSquashfs {
		t.Errorf("root items = %+v", v.Items)
	}

	ubu := img.Products["ubuntu:noble:cloud:arm64"]
	if ubu.Aliases != "ubuntu/noble/cloud,ubuntu/24.04/cloud" || ubu.Requirements["secureboot"] != "false" {
		t.Errorf("ubuntu product = %+v", ubu)
	}
	m := ubu.Versions["20261120"].Items["lxd.tar.xz"]
	want = sum([]byte("ubuntu meta"), []byte("ubuntu rootfs"))
	if m.CombinedRootXZ != want || m.Combined != want {
		t.Errorf("rootxz combined = %q legacy %q, want %q", m.CombinedRootXZ, m.Combined, want)
	}
	if _, ok := ubu.Versions["20261120"].Items["ubuntu meta"]; ok {
		t.Error("metadata Key rendered")
	}
}

func TestRenderDeterministic(t *testing.T) {
	a, err := Render(sample())
	if err != nil {
		t.Fatal(err)
	}
	c := sample()
	before := sample()
	b, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, before) {
		t.Error("Render modified its input")
	}
	if !reflect.DeepEqual(a, b) {
		t.Error("two renders differ")
	}
	for i := 0; i < 10; i++ {
		c := sample()
		slices.Reverse(c.Products)
		for j := range c.Products {
			slices.Reverse(c.Products[j].Versions)
			for k := range c.Products[j].Versions {
				slices.Reverse(c.Products[j].Versions[k].Items)
			}
		}
		c.Updated = c.Updated.UTC()
		got, err := Render(c)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, got) {
			t.Fatal("input order or time zone changed the output")
		}
	}
}

func TestDefaultsAndNames(t *testing.T) {
	p := Product{OS: "Debian", Release: "Bookworm", Variant: "default", Arch: "amd64"}
	if got := ProductName(p); got != "debian:bookworm:default:amd64" {
		t.Errorf("ProductName = %q", got)
	}
	if got := DefaultAliases(p); !slices.Equal(got, []string{"debian/bookworm/default", "debian/bookworm"}) {
		t.Errorf("DefaultAliases = %v", got)
	}
	p.Variant = "cloud"
	if got := DefaultAliases(p); !slices.Equal(got, []string{"debian/bookworm/cloud"}) {
		t.Errorf("DefaultAliases = %v", got)
	}
	for arch, want := range map[string]string{"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "armhf": "armv7l",
		"armel": "armv6l", "ppc64el": "ppc64le", "loong64": "loongarch64", "s390x": "s390x", "riscv64": "riscv64", "i386": "i686"} {
		if got, ok := KnownArch(arch); !ok || got != want {
			t.Errorf("KnownArch(%q) = %q, %v", arch, got, ok)
		}
	}
	for _, arch := range []string{"", "AMD64", "x86-64", "x86_64_v3", "sparc64"} {
		if _, ok := KnownArch(arch); ok {
			t.Errorf("KnownArch(%q) accepted", arch)
		}
	}
}

func TestWriteOrder(t *testing.T) {
	got := WriteOrder([]string{IndexPath, "streams/v1/index.sjson", ImagesPath, "streams/v1/images.sjson"})
	want := []string{"streams/v1/images.sjson", "streams/v1/index.sjson", ImagesPath, IndexPath}
	if !slices.Equal(got, want) {
		t.Errorf("WriteOrder = %v, want %v", got, want)
	}
	out, err := Render(sample())
	if err != nil {
		t.Fatal(err)
	}
	if got := WriteOrder(slices.Collect(maps.Keys(out))); !slices.Equal(got, []string{ImagesPath, IndexPath}) {
		t.Errorf("WriteOrder(Render) = %v", got)
	}
}

var sentinels = []error{ErrEmpty, ErrVersionName, ErrArch, ErrItems, ErrInvalid, ErrAlias}

// checkErr requires err to wrap want and no other sentinel, and to start
// with the package prefix.
func checkErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
	for _, s := range sentinels {
		if s != want && errors.Is(err, s) {
			t.Errorf("error %v also matches %v", err, s)
		}
	}
	if !strings.HasPrefix(err.Error(), "simplestreams: ") {
		t.Errorf("error %q lacks the package prefix", err)
	}
}

func TestRenderRefuses(t *testing.T) {
	const deb = `product "debian:bookworm:default:amd64"`
	const v2 = `version "20261126_0102"`
	// ver returns the newer Debian version for editing.
	ver := func(c *Catalog) *Version { return &c.Products[1].Versions[0] }
	item := func(c *Catalog, key string) *Item {
		v := ver(c)
		for i := range v.Items {
			if v.Items[i].Key == key {
				return &v.Items[i]
			}
		}
		panic(key)
	}
	other := image{meta: []byte("other meta"), roots: map[string][]byte{FTypeSquashfs: []byte("other root")}}
	tests := []struct {
		name   string
		edit   func(c *Catalog)
		want   error
		inMsgs []string
	}{
		{"no products", func(c *Catalog) { c.Products = nil }, ErrEmpty, nil},
		{"no versions", func(c *Catalog) { c.Products[1].Versions = nil }, ErrEmpty, []string{deb, "no versions"}},
		{"zero time", func(c *Catalog) { c.Updated = time.Time{} }, ErrInvalid, nil},

		{"version not a date", func(c *Catalog) { ver(c).Name = "v1" }, ErrVersionName, []string{deb, `"v1"`}},
		{"version short", func(c *Catalog) { ver(c).Name = "2026112" }, ErrVersionName, nil},
		{"version bad month", func(c *Catalog) { ver(c).Name = "20261326_0102" }, ErrVersionName, []string{`"20261326_0102"`}},
		{"version bad day", func(c *Catalog) { ver(c).Name = "20260230" }, ErrVersionName, nil},
		{"version sign", func(c *Catalog) { ver(c).Name = "+2026112_0102" }, ErrVersionName, nil},
		{"version colon", func(c *Catalog) { ver(c).Name = "20261126_01:02" }, ErrVersionName, nil},
		{"version space", func(c *Catalog) { ver(c).Name = "20261126 0102" }, ErrVersionName, nil},

		{"arch unknown", func(c *Catalog) { c.Products[1].Arch = "x86-64" }, ErrArch, []string{`"x86-64"`}},
		{"arch empty", func(c *Catalog) { c.Products[1].Arch = "" }, ErrArch, nil},
		{"arch incus only", func(c *Catalog) { c.Products[1].Arch = "x86_64_v3" }, ErrArch, nil},
		{"arch upper case", func(c *Catalog) { c.Products[1].Arch = "AMD64" }, ErrArch, nil},

		{"no meta", func(c *Catalog) {
			v := ver(c)
			v.Items = slices.DeleteFunc(v.Items, func(it Item) bool { return it.FType == FTypeMeta })
		}, ErrItems, []string{deb, v2, "no metadata"}},
		{"two metas", func(c *Catalog) {
			v := ver(c)
			m := *item(c, "meta")
			m.Key = "meta2"
			v.Items = append(v.Items, m)
		}, ErrItems, []string{"two metadata"}},
		{"no root", func(c *Catalog) {
			v := ver(c)
			v.Items = slices.DeleteFunc(v.Items, func(it Item) bool { return it.FType != FTypeMeta })
			v.Combined = nil
		}, ErrItems, []string{"no root item"}},
		{"two squashfs", func(c *Catalog) {
			v := ver(c)
			r := *item(c, "root.squashfs")
			r.Key = "other.squashfs"
			v.Items = append(v.Items, r)
		}, ErrItems, []string{`"root.squashfs"`, `"other.squashfs"`}},
		{"root without combined", func(c *Catalog) { delete(ver(c).Combined, FTypeDiskKVM) }, ErrItems, []string{deb, v2, "disk-kvm.img", `"disk.qcow2"`}},
		{"root with empty combined", func(c *Catalog) { ver(c).Combined[FTypeSquashfs] = "" }, ErrItems, nil},
		{"combined without root", func(c *Catalog) { ver(c).Combined[FTypeRootTarXZ] = strings.Repeat("a", 64) }, ErrItems, nil},
		{"combined unknown type", func(c *Catalog) { ver(c).Combined["uefi1.img"] = strings.Repeat("a", 64) }, ErrItems, nil},

		{"sha256 upper case", func(c *Catalog) { it := item(c, "disk.qcow2"); it.SHA256 = strings.ToUpper(it.SHA256) }, ErrInvalid, []string{deb, v2, `"disk.qcow2"`, "sha256"}},
		{"sha256 short", func(c *Catalog) { item(c, "disk.qcow2").SHA256 = "abc" }, ErrInvalid, nil},
		{"meta sha256 empty", func(c *Catalog) { item(c, "meta").SHA256 = "" }, ErrInvalid, []string{"metadata item"}},
		{"combined bad hex", func(c *Catalog) { ver(c).Combined[FTypeSquashfs] = strings.Repeat("g", 64) }, ErrInvalid, nil},
		{"size zero", func(c *Catalog) { item(c, "root.squashfs").Size = 0 }, ErrInvalid, []string{"size 0"}},
		{"size negative", func(c *Catalog) { item(c, "meta").Size = -1 }, ErrInvalid, nil},
		{"path empty", func(c *Catalog) { item(c, "root.squashfs").Path = "" }, ErrInvalid, nil},
		{"path dotdot", func(c *Catalog) { item(c, "root.squashfs").Path = "images/../x.squashfs" }, ErrInvalid, []string{`".."`}},
		{"path dot", func(c *Catalog) { item(c, "root.squashfs").Path = "./x.squashfs" }, ErrInvalid, nil},
		{"path absolute", func(c *Catalog) { item(c, "root.squashfs").Path = "/images/x.squashfs" }, ErrInvalid, nil},
		{"path empty segment", func(c *Catalog) { item(c, "root.squashfs").Path = "images//x.squashfs" }, ErrInvalid, nil},
		{"path trailing slash", func(c *Catalog) { item(c, "root.squashfs").Path = "images/" }, ErrInvalid, nil},
		{"path space", func(c *Catalog) { item(c, "root.squashfs").Path = "images/x y.squashfs" }, ErrInvalid, nil},
		{"path percent", func(c *Catalog) { item(c, "root.squashfs").Path = "images/x%20y.squashfs" }, ErrInvalid, nil},
		{"path query", func(c *Catalog) { item(c, "root.squashfs").Path = "images/x.squashfs?v=1" }, ErrInvalid, nil},
		{"path backslash", func(c *Catalog) { item(c, "root.squashfs").Path = `images\x.squashfs` }, ErrInvalid, nil},
		{"path colon", func(c *Catalog) { item(c, "root.squashfs").Path = "c:x.squashfs" }, ErrInvalid, nil},
		{"path non-ascii", func(c *Catalog) { item(c, "root.squashfs").Path = "images/ü.squashfs" }, ErrInvalid, nil},
		{"path is a manifest", func(c *Catalog) { item(c, "root.squashfs").Path = ImagesPath }, ErrInvalid, nil},
		{"path two contents", func(c *Catalog) {
			item(c, "root.squashfs").Path = c.Products[1].Versions[1].Items[1].Path
		}, ErrInvalid, []string{"path", `version "20261125_0102"`}},
		{"duplicate item key", func(c *Catalog) { item(c, "disk.qcow2").Key = "root.squashfs" }, ErrInvalid, []string{"duplicate item key"}},
		{"empty item key", func(c *Catalog) { item(c, "disk.qcow2").Key = "" }, ErrInvalid, nil},
		{"reserved item key", func(c *Catalog) { item(c, "disk.qcow2").Key = "lxd.tar.xz" }, ErrInvalid, []string{"reserved"}},
		{"unknown ftype", func(c *Catalog) { item(c, "disk.qcow2").FType = "disk1.img" }, ErrInvalid, []string{`"disk1.img"`}},
		{"meta given as incus ftype", func(c *Catalog) { item(c, "meta").FType = FTypeIncusMeta }, ErrInvalid, []string{"FTypeMeta"}},
		{"duplicate product name", func(c *Catalog) {
			p := c.Products[1]
			p.OS = "Debian"
			c.Products = append(c.Products, p)
		}, ErrInvalid, []string{"duplicate product name", deb}},
		{"duplicate version", func(c *Catalog) {
			c.Products[1].Versions[1].Name = "20261126_0102"
		}, ErrInvalid, []string{"duplicate version"}},
		{"duplicate fingerprint", func(c *Catalog) {
			p := c.Products[1]
			p.Variant = "copy"
			p.Versions = p.Versions[1:]
			c.Products = append(c.Products, p)
		}, ErrInvalid, []string{"fingerprint", `product "debian:bookworm:copy:amd64"`}},
		{"os with colon", func(c *Catalog) { c.Products[1].OS = "deb:ian" }, ErrInvalid, []string{"os"}},
		{"os with slash", func(c *Catalog) { c.Products[1].OS = "deb/ian" }, ErrInvalid, nil},
		{"release empty", func(c *Catalog) { c.Products[1].Release = "" }, ErrInvalid, nil},
		{"variant empty", func(c *Catalog) { c.Products[1].Variant = "" }, ErrInvalid, nil},
		{"title control", func(c *Catalog) { c.Products[1].ReleaseTitle = "12\n" }, ErrInvalid, nil},
		{"label control", func(c *Catalog) { ver(c).Label = "a\x00b" }, ErrInvalid, []string{"label"}},
		{"label bad utf8", func(c *Catalog) { ver(c).Label = "a\xffb" }, ErrInvalid, nil},
		{"requirement empty key", func(c *Catalog) { c.Products[0].Requirements[""] = "x" }, ErrInvalid, nil},
		{"requirement control", func(c *Catalog) { c.Products[0].Requirements["a"] = "\t" }, ErrInvalid, nil},

		{"alias shared by two products", func(c *Catalog) {
			c.Products = append(c.Products, Product{OS: "clr", Release: "1", Arch: "amd64", Variant: "x",
				Aliases: []string{"debian/bookworm"}, Versions: []Version{other.version("20261101", "")}})
		}, ErrAlias, []string{`"debian/bookworm"`, deb, `product "clr:1:x:amd64"`}},
		{"alias shared via arch alias", func(c *Catalog) {
			c.Products = append(c.Products, Product{OS: "clr", Release: "1", Arch: "x86_64", Variant: "x",
				Aliases: []string{"debian/bookworm/default"}, Versions: []Version{other.version("20261101", "")}})
		}, ErrAlias, []string{"x86_64"}},
		{"alias equal to an expanded alias", func(c *Catalog) {
			c.Products = append(c.Products, Product{OS: "clr", Release: "1", Arch: "x86_64", Variant: "x",
				Aliases: []string{"debian/bookworm/amd64"}, Versions: []Version{other.version("20261101", "")}})
		}, ErrAlias, []string{`"debian/bookworm/amd64"`}},
		{"default alias shared", func(c *Catalog) {
			c.Products = append(c.Products, Product{OS: "ubuntu", Release: "noble", Arch: "aarch64", Variant: "x",
				Aliases: []string{"ubuntu/noble/cloud"}, Versions: []Version{other.version("20261101", "")}})
		}, ErrAlias, nil},
		{"alias with comma", func(c *Catalog) { c.Products[0].Aliases = []string{"a,b"} }, ErrAlias, []string{"comma"}},
		{"alias with space", func(c *Catalog) { c.Products[0].Aliases = []string{"a b"} }, ErrAlias, nil},
		{"alias empty", func(c *Catalog) { c.Products[0].Aliases = []string{"a", ""} }, ErrAlias, nil},
		{"alias twice", func(c *Catalog) { c.Products[0].Aliases = []string{"a", "a"} }, ErrAlias, []string{"twice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sample()
			tt.edit(&c)
			out, err := Render(c)
			if err == nil {
				t.Fatalf("accepted:\n%s", out[ImagesPath])
			}
			checkErr(t, err, tt.want)
			for _, s := range tt.inMsgs {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %s", err, s)
				}
			}
		})
	}
}

func TestRenderAccepts(t *testing.T) {
	other := image{meta: []byte("other meta"), roots: map[string][]byte{FTypeSquashfs: []byte("other root")}}
	tests := []struct {
		name string
		edit func(c *Catalog)
	}{
		{"same aliases on another arch", func(c *Catalog) {
			c.Products = append(c.Products, Product{OS: "debian", Release: "bookworm", Arch: "arm64", Variant: "default",
				Versions: []Version{other.version("20261101", "")}})
		}},
		{"alias repeated within a product's expansion", func(c *Catalog) {
			c.Products[0].Aliases = []string{"u", "u/arm64"}
		}},
		{"shared file across versions and products", func(c *Catalog) {
			// Same metadata tarball and path in another product; the
			// fingerprints differ because the roots differ.
			v := other.version("20261101", "")
			v.Items[0] = c.Products[1].Versions[0].Items[len(c.Products[1].Versions[0].Items)-1]
			if v.Items[0].FType != FTypeMeta {
				panic("sample order changed")
			}
			c.Products = append(c.Products, Product{OS: "clr", Release: "1", Arch: "riscv64", Variant: "x", Versions: []Version{v}})
		}},
		{"date-only version and long serial", func(c *Catalog) {
			c.Products[1].Versions[1].Name = "20240229"
			c.Products[1].Versions[0].Name = "20261126_0102.build-7"
		}},
		{"plus in path", func(c *Catalog) {
			c.Products[1].Versions[1].Items[1].Path = "images/debian_12.1+b2~rc.squashfs"
		}},
		{"empty requirements omitted", func(c *Catalog) { c.Products[0].Requirements = map[string]string{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sample()
			tt.edit(&c)
			out, err := Render(c)
			if err != nil {
				t.Fatal(err)
			}
			checkOutput(t, out)
			if bytes.Contains(out[ImagesPath], []byte(`"requirements": {}`)) {
				t.Error("empty requirements rendered")
			}
		})
	}
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, b)
	}
}

// checkOutput parses a rendered catalog the way LXD and Incus do
// (shared/simplestreams: index entries, ToLXD/ToAPI) and checks every
// property the clients rely on.
func checkOutput(t *testing.T, out map[string][]byte) {
	t.Helper()
	if len(out) != 2 {
		t.Fatalf("files %v", slices.Sorted(maps.Keys(out)))
	}
	for p, b := range out {
		if !bytes.HasSuffix(b, []byte("}\n")) || !bytes.HasPrefix(b, []byte("{\n  \"")) {
			t.Errorf("%s is not 2-space indented JSON with a trailing newline", p)
		}
	}
	var idx struct {
		Format  string `json:"format"`
		Updated string `json:"updated"`
		Index   map[string]struct {
			DataType string   `json:"datatype"`
			Path     string   `json:"path"`
			Format   string   `json:"format"`
			Updated  string   `json:"updated"`
			Products []string `json:"products"`
		} `json:"index"`
	}
	mustJSON(t, out[IndexPath], &idx)
	if idx.Format != "index:1.0" || len(idx.Index) != 1 {
		t.Fatalf("index = %+v", idx)
	}
	if _, err := time.Parse(TimeLayout, idx.Updated); err != nil {
		t.Errorf("index updated %q: %v", idx.Updated, err)
	}
	e := idx.Index["images"]
	if e.DataType != "image-downloads" || e.Path != ImagesPath || e.Format != "products:1.0" || e.Updated != idx.Updated {
		t.Errorf("index entry = %+v", e)
	}
	if len(e.Products) == 0 {
		t.Error("empty index products")
	}

	var img struct {
		ContentID string `json:"content_id"`
		DataType  string `json:"datatype"`
		Format    string `json:"format"`
		Updated   string `json:"updated"`
		Products  map[string]struct {
			Aliases  string `json:"aliases"`
			Arch     string `json:"arch"`
			OS       string `json:"os"`
			Release  string `json:"release"`
			Title    string `json:"release_title"`
			Variant  string `json:"variant"`
			Versions map[string]struct {
				Items map[string]map[string]any `json:"items"`
			} `json:"versions"`
		} `json:"products"`
	}
	mustJSON(t, out[ImagesPath], &img)
	if img.ContentID != "images" || img.DataType != "image-downloads" || img.Format != "products:1.0" || img.Updated != idx.Updated {
		t.Errorf("images header = %q %q %q %q", img.ContentID, img.DataType, img.Format, img.Updated)
	}
	if keys := slices.Sorted(maps.Keys(img.Products)); !slices.Equal(keys, e.Products) {
		t.Errorf("index products %v != images products %v", e.Products, keys)
	}

	combinedField := map[string]string{
		FTypeSquashfs:  "combined_squashfs_sha256",
		FTypeDiskKVM:   "combined_disk-kvm-img_sha256",
		FTypeRootTarXZ: "combined_rootxz_sha256",
	}
	fingerprints := map[string]bool{}
	type aliasKey struct{ flavor, typ, arch, name string }
	aliasOwner := map[aliasKey]string{}
	for name, p := range img.Products {
		canon, ok := KnownArch(p.Arch)
		if !ok {
			t.Errorf("%s: arch %q", name, p.Arch)
		}
		if p.OS == "" || p.Release == "" || p.Title == "" || p.Variant == "" || p.Aliases == "" {
			t.Errorf("%s: missing product field", name)
		}
		if len(p.Versions) == 0 {
			t.Errorf("%s: no versions", name)
		}
		for vn, v := range p.Versions {
			if len(vn) < 8 {
				t.Fatalf("%s: version %q", name, vn)
			}
			if _, err := time.Parse("20060102", vn[:8]); err != nil {
				t.Errorf("%s: version %q: %v", name, vn, err)
			}
			for _, flavor := range []string{FTypeIncusMeta, FTypeLXDMeta} {
				meta := v.Items[flavor]
				if meta == nil || meta["ftype"] != flavor {
					t.Fatalf("%s %s: no %s item", name, vn, flavor)
				}
				for _, f := range []string{"path", "size", "sha256"} {
					if meta[f] != v.Items[FTypeIncusMeta][f] {
						t.Errorf("%s %s: %s %s differs between metadata items", name, vn, flavor, f)
					}
				}
				images := 0
				for key, it := range v.Items {
					if key == FTypeIncusMeta || key == FTypeLXDMeta {
						continue
					}
					ft, _ := it["ftype"].(string)
					field, ok := combinedField[ft]
					if !ok {
						t.Errorf("%s %s: item %q has ftype %q", name, vn, key, ft)
						continue
					}
					fp, _ := meta[field].(string)
					if !isSHA256(fp) {
						t.Errorf("%s %s %s: no %s for item %q", name, vn, flavor, field, key)
					}
					if ft == FTypeRootTarXZ && meta["combined_sha256"] != fp {
						t.Errorf("%s %s %s: combined_sha256 %v != %s", name, vn, flavor, meta["combined_sha256"], fp)
					}
					if flavor == FTypeIncusMeta {
						if fingerprints[fp] {
							t.Errorf("fingerprint %s used twice", fp)
						}
						fingerprints[fp] = true
					}
					if s, ok := it["size"].(float64); !ok || s <= 0 {
						t.Errorf("%s %s: item %q size %v", name, vn, key, it["size"])
					}
					if s, _ := it["sha256"].(string); !isSHA256(s) {
						t.Errorf("%s %s: item %q sha256 %q", name, vn, key, s)
					}
					if p, _ := it["path"].(string); checkPath(p) != nil {
						t.Errorf("%s %s: item %q path %q", name, vn, key, p)
					}
					typ := "container"
					if ft == FTypeDiskKVM {
						typ = "virtual-machine"
					}
					for _, a := range strings.Split(p.Aliases, ",") {
						for _, full := range []string{a, a + "/" + p.Arch} {
							k := aliasKey{flavor, typ, canon, full}
							if o, ok := aliasOwner[k]; ok && o != name {
								t.Errorf("alias %q (%s %s) in %s and %s", full, typ, canon, o, name)
							}
							aliasOwner[k] = name
						}
					}
					images++
				}
				for ft, field := range combinedField {
					if _, ok := meta[field]; ok && !slices.ContainsFunc(slices.Collect(maps.Values(v.Items)), func(it map[string]any) bool { return it["ftype"] == ft }) {
						t.Errorf("%s %s: %s without a %s item", name, vn, field, ft)
					}
				}
				if images == 0 {
					t.Errorf("%s %s: %s gives no image", name, vn, flavor)
				}
			}
		}
	}
}

// FuzzRender builds catalogs from fuzzed fields and checks that every
// refusal wraps exactly one sentinel and every accepted catalog renders to
// JSON that both clients read completely.
func FuzzRender(f *testing.F) {
	f.Add("debian", "bookworm", "default", "amd64", "20261126_0102", "", "", "images/x", uint16(0xffff))
	f.Add("ubuntu", "noble", "cloud", "arm64", "20261120", "label", "u/n", "images/y", uint16(0x0f))
	f.Add("debian", "bookworm", "default", "x86_64", "20261126", "", "debian/bookworm", "images/z", uint16(0x2f))
	f.Add("a", "b", "c", "s390x", "20240229_1", "", "a,b", "a/../b", uint16(0x07))
	f.Add("A", "B", "default", "loong64", "00000101", "x", "", "p", uint16(0x1ff))
	f.Fuzz(func(t *testing.T, osName, release, variant, arch, serial, label, alias, path string, mask uint16) {
		bit := func(i int) bool { return mask&(1<<i) != 0 }
		im := image{meta: []byte("meta " + serial), roots: map[string][]byte{}}
		for i, ft := range rootFTypes {
			if bit(i) {
				im.roots[ft] = []byte(ft + " " + serial + " " + path)
			}
		}
		v := im.version(serial, label)
		if bit(3) && len(v.Items) > 1 {
			v.Items[1].Path = path
		}
		if bit(4) {
			v.Items = v.Items[1:] // drop the metadata item
		}
		if bit(5) {
			for k := range v.Combined {
				delete(v.Combined, k)
				break
			}
		}
		p := Product{OS: osName, Release: release, Variant: variant, Arch: arch, Versions: []Version{v}}
		if bit(6) {
			p.Aliases = strings.Split(alias, ";")
		}
		if bit(7) {
			p.Requirements = map[string]string{"secureboot": label}
		}
		c := Catalog{Products: []Product{p}, Updated: time.Unix(int64(mask)*1e5, 0)}
		if bit(8) {
			// A second, fixed product that may collide on name, alias,
			// path or fingerprint.
			s := sample()
			c.Products = append(c.Products, s.Products...)
		}
		out, err := Render(c)
		if err != nil {
			n := 0
			for _, s := range sentinels {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 || !strings.HasPrefix(err.Error(), "simplestreams: ") {
				t.Fatalf("error %q wraps %d sentinels", err, n)
			}
			return
		}
		checkOutput(t, out)
		again, err := Render(c)
		if err != nil || !reflect.DeepEqual(out, again) {
			t.Fatalf("second render differs (%v)", err)
		}
	})
}

// ItemPaths reads back every item path Render wrote, and refuses what is
// not JSON.
func TestItemPaths(t *testing.T) {
	c := sample()
	out, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, p := range c.Products {
		for _, v := range p.Versions {
			for _, it := range v.Items {
				want = append(want, it.Path)
			}
		}
	}
	got, err := ItemPaths(out[ImagesPath])
	if err != nil {
		t.Fatal(err)
	}
	// (the metadata file is written as one item per client: compare sets)
	slices.Sort(want)
	slices.Sort(got)
	want, got = slices.Compact(want), slices.Compact(got)
	if len(want) == 0 || !slices.Equal(got, want) {
		t.Errorf("ItemPaths = %v, want %v", got, want)
	}
	if _, err := ItemPaths([]byte("not json")); err == nil {
		t.Error("ItemPaths accepted what is not JSON")
	}
}
