package sscheck

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// The fixture: one product with two serials; each serial has one metadata
// tarball (listed twice, as incus.tar.xz and lxd.tar.xz) shared by a
// container image (squashfs) and a VM image (disk-kvm.img).

type tItem struct {
	FType           string `json:"ftype"`
	Path            string `json:"path"`
	Size            int64  `json:"size"`
	SHA256          string `json:"sha256"`
	CombinedSquash  string `json:"combined_squashfs_sha256,omitempty"`
	CombinedDiskKVM string `json:"combined_disk-kvm-img_sha256,omitempty"`
}

type tVersion struct {
	Items map[string]*tItem `json:"items"`
}

type tProduct struct {
	Aliases      string               `json:"aliases"`
	Arch         string               `json:"arch"`
	OS           string               `json:"os"`
	Release      string               `json:"release"`
	ReleaseTitle string               `json:"release_title"`
	Variant      string               `json:"variant,omitempty"`
	Versions     map[string]*tVersion `json:"versions"`
	// Free-typed, to break them.
	Requirements    any `json:"requirements,omitempty"`
	LXDRequirements any `json:"lxd_requirements,omitempty"`
}

type tEntry struct {
	DataType string   `json:"datatype"`
	Path     string   `json:"path"`
	Format   string   `json:"format"`
	Products []string `json:"products"`
}

type tIndex struct {
	Format string             `json:"format"`
	Index  map[string]*tEntry `json:"index"`
}

type tProducts struct {
	ContentID string               `json:"content_id"`
	DataType  string               `json:"datatype"`
	Format    string               `json:"format"`
	Products  map[string]*tProduct `json:"products"`
}

type tree struct {
	index    tIndex
	products tProducts
	blobs    map[string][]byte
	// fp[serial][root ftype] is the expected fingerprint.
	fp map[string]map[string]string
}

const (
	tProductName = "testos:1:default:amd64"
	tOld         = "20260101_0000"
	tNew         = "20260102_0000"
)

func sha(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// metaTarball is a tiny metadata tarball (a plain tar; the name says .xz,
// which no check looks at).
func metaTarball(t *testing.T, serial string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := fmt.Sprintf("architecture: x86_64\ncreation_date: 1767225600\nproperties:\n  os: testos\n  release: \"1\"\n  serial: %q\n", serial)
	if err := tw.WriteHeader(&tar.Header{Name: "metadata.yaml", Mode: 0o644, Size: int64(len(body))}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func newTree(t *testing.T) *tree {
	t.Helper()
	tr := &tree{
		index: tIndex{Format: "index:1.0", Index: map[string]*tEntry{
			"images": {DataType: "image-downloads", Path: "streams/v1/images.json", Format: "products:1.0", Products: []string{tProductName}},
		}},
		products: tProducts{ContentID: "images", DataType: "image-downloads", Format: "products:1.0", Products: map[string]*tProduct{}},
		blobs:    map[string][]byte{},
		fp:       map[string]map[string]string{},
	}
	p := &tProduct{
		Aliases: "testos/1,testos/1/default", Arch: "amd64", OS: "testos", Release: "1", ReleaseTitle: "1",
		Variant: "default", Versions: map[string]*tVersion{},
	}
	tr.products.Products[tProductName] = p
	for _, serial := range []string{tOld, tNew} {
		dir := "images/testos/1/amd64/default/" + serial + "/"
		meta := metaTarball(t, serial)
		root := bytes.Repeat([]byte("squashfs "+serial+"\n"), 100)
		disk := bytes.Repeat([]byte("qcow2 "+serial+"\n"), 150)
		tr.blobs[dir+"meta.tar.xz"] = meta
		tr.blobs[dir+"root.squashfs"] = root
		tr.blobs[dir+"disk.qcow2"] = disk
		tr.fp[serial] = map[string]string{"squashfs": sha(meta, root), "disk-kvm.img": sha(meta, disk)}
		metaItem := func(ftype string) *tItem {
			return &tItem{FType: ftype, Path: dir + "meta.tar.xz", Size: int64(len(meta)), SHA256: sha(meta),
				CombinedSquash: sha(meta, root), CombinedDiskKVM: sha(meta, disk)}
		}
		p.Versions[serial] = &tVersion{Items: map[string]*tItem{
			"incus.tar.xz":  metaItem("incus.tar.xz"),
			"lxd.tar.xz":    metaItem("lxd.tar.xz"),
			"root.squashfs": {FType: "squashfs", Path: dir + "root.squashfs", Size: int64(len(root)), SHA256: sha(root)},
			"disk.qcow2":    {FType: "disk-kvm.img", Path: dir + "disk.qcow2", Size: int64(len(disk)), SHA256: sha(disk)},
		}}
	}
	return tr
}

func (tr *tree) product() *tProduct { return tr.products.Products[tProductName] }

func (tr *tree) item(serial, key string) *tItem { return tr.product().Versions[serial].Items[key] }

// server serves a tree; requests counts the GETs per path.
type server struct {
	*httptest.Server
	mu       sync.Mutex
	requests map[string]int
}

func serve(t *testing.T, tr *tree) *server {
	t.Helper()
	files := map[string][]byte{}
	for p, b := range tr.blobs {
		files[p] = b
	}
	var err error
	if files["streams/v1/index.json"], err = json.Marshal(tr.index); err != nil {
		t.Fatal(err)
	}
	if files["streams/v1/images.json"], err = json.Marshal(tr.products); err != nil {
		t.Fatal(err)
	}
	s := &server{requests: map[string]int{}}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/")
		s.mu.Lock()
		s.requests[p]++
		s.mu.Unlock()
		b, ok := files[p]
		if !ok || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) count(p string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[p]
}

func (s *server) base() string { return s.URL + "/" }

// run checks the tree served by s with downloads.
func run(t *testing.T, s *server, download bool) (Report, string, error) {
	t.Helper()
	var out bytes.Buffer
	rep, err := Check(context.Background(), Options{
		BaseURL:    s.base(),
		HTTPClient: s.Client(),
		Download:   download,
		Stdout:     &out,
	})
	return rep, out.String(), err
}

func hasLine(lines []string, substrings ...string) bool {
	for _, l := range lines {
		ok := true
		for _, s := range substrings {
			if !strings.Contains(l, s) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
