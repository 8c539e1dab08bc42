package vcspcheck

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/clr-suite/clr/internal/ovfgen"
)

// The fixture library: a hand-built VCSP manifest over three item folders
// made with ovfgen (OVF template, ISO) plus a plain "other" file.
type fxFile struct {
	Name  string   `json:"name"`
	Size  int64    `json:"size"`
	Etag  string   `json:"etag"`
	Hrefs []string `json:"hrefs"`
}

type fxMeta struct {
	Key        string `json:"key"`
	Value      string `json:"value"`
	Type       string `json:"type"`
	Domain     string `json:"domain"`
	Visibility string `json:"visibility"`
}

type fxItem struct {
	Created        string         `json:"created"`
	Description    string         `json:"description"`
	Version        string         `json:"version"`
	ContentVersion string         `json:"contentVersion,omitempty"`
	Files          []fxFile       `json:"files"`
	ID             string         `json:"id"`
	Name           string         `json:"name"`
	Metadata       []fxMeta       `json:"metadata,omitempty"`
	Properties     map[string]any `json:"properties"`
	SelfHref       string         `json:"selfHref"`
	Type           string         `json:"type"`

	dir string // folder under the root
}

type fxCaps struct {
	TransferIn  []string `json:"transferIn"`
	TransferOut []string `json:"transferOut"`
}

type fxLib struct {
	VcspVersion    string `json:"vcspVersion"`
	Version        string `json:"version"`
	ContentVersion string `json:"contentVersion"`
	Name           string `json:"name"`
	ID             string `json:"id"`
	Created        string `json:"created"`
	Capabilities   fxCaps `json:"capabilities"`
	ItemsHref      string `json:"itemsHref"`

	root  string
	items []*fxItem
}

const (
	fxLibID   = "urn:uuid:9fc8c3cb-1111-4aaa-8bbb-000000000001"
	fxTplID   = "urn:uuid:9fc8c3cb-2222-4aaa-8bbb-000000000002"
	fxISOID   = "urn:uuid:9fc8c3cb-3333-4aaa-8bbb-000000000003"
	fxNotesID = "urn:uuid:9fc8c3cb-4444-4aaa-8bbb-000000000004"
	fxCreated = "2026-01-02T03:04Z"
)

// newFixture writes the three item folders under a temp root and returns
// the manifest model (not yet written: call write).
func newFixture(t *testing.T) *fxLib {
	t.Helper()
	root := t.TempDir()
	if _, err := ovfgen.WriteOVF(filepath.Join(root, "tpl"), "tpl", ovfgen.OVFOptions{Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "media"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ovfgen.WriteISO(filepath.Join(root, "media", "disc.iso"), 64<<10, 1); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "notes"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "notes", "readme.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lib := &fxLib{
		VcspVersion: "2", Version: "1", ContentVersion: "1", Name: "Test Library", ID: fxLibID,
		Created:      fxCreated,
		Capabilities: fxCaps{TransferIn: []string{"httpGet"}, TransferOut: []string{"httpGet"}},
		ItemsHref:    "items.json",
		root:         root,
	}
	lib.items = []*fxItem{
		{Name: "tpl", ID: fxTplID, Type: TypeOVF, dir: "tpl"},
		{Name: "media", ID: fxISOID, Type: TypeISO, dir: "media"},
		{Name: "notes", ID: fxNotesID, Type: TypeOther, dir: "notes"},
	}
	for _, it := range lib.items {
		it.Created, it.Version, it.ContentVersion = fxCreated, "2", "2"
		it.Properties = map[string]any{}
		it.SelfHref = it.dir + "/item.json"
		lib.rescan(t, it, "1")
	}
	lib.setTypeMetadata(lib.item("tpl"))
	return lib
}

func (l *fxLib) item(name string) *fxItem {
	for _, it := range l.items {
		if it.Name == name {
			return it
		}
	}
	panic("no fixture item " + name)
}

// rescan rebuilds an item's file list from its folder, with etag on every
// file.
func (l *fxLib) rescan(t *testing.T, it *fxItem, etag string) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(l.root, it.dir))
	if err != nil {
		t.Fatal(err)
	}
	it.Files = nil
	for _, e := range ents {
		if e.Name() == "item.json" {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		it.Files = append(it.Files, fxFile{Name: e.Name(), Size: fi.Size(), Etag: etag, Hrefs: []string{it.dir + "/" + e.Name()}})
	}
	sort.Slice(it.Files, func(i, j int) bool { return it.Files[i].Name < it.Files[j].Name })
}

func (l *fxLib) setTypeMetadata(it *fxItem) {
	v, _ := json.Marshal(map[string]any{
		"id": it.ID, "version": it.Version, "libraryIdParent": l.ID, "isVappTemplate": "false",
		"vmTemplate": nil, "vappTemplate": nil, "networks": []string{}, "storagePolicyGroups": nil,
	})
	it.Metadata = []fxMeta{{Key: "type-metadata", Value: string(v), Type: "String", Domain: "SYSTEM", Visibility: "READONLY"}}
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// write renders lib.json, items.json and every item's selfHref file.
func (l *fxLib) write(t *testing.T) {
	t.Helper()
	writeJSON(t, filepath.Join(l.root, "lib.json"), l)
	writeJSON(t, filepath.Join(l.root, "items.json"), map[string]any{"items": l.items})
	for _, it := range l.items {
		writeJSON(t, filepath.Join(l.root, filepath.FromSlash(it.SelfHref)), it)
	}
}

func (l *fxLib) path(parts ...string) string {
	return filepath.Join(append([]string{l.root}, parts...)...)
}

// server serves root over HTTP on 127.0.0.1.
type server struct {
	*httptest.Server
	password string
	noHead   bool
}

func serve(t *testing.T, root string, configure func(*server)) *server {
	t.Helper()
	s := &server{}
	if configure != nil {
		configure(s)
	}
	files := http.FileServer(http.Dir(root))
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.password != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != "vcsp" || p != s.password {
				w.Header().Set("WWW-Authenticate", `Basic realm="vcsp"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		if s.noHead && r.Method == http.MethodHead {
			http.Error(w, "no HEAD here", http.StatusMethodNotAllowed)
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) libURL() string { return s.URL + "/lib.json" }

func hasProblem(list []string, sub string) bool {
	for _, p := range list {
		if strings.Contains(p, sub) {
			return true
		}
	}
	return false
}

func dump(rep Report) string {
	var b strings.Builder
	for _, p := range rep.Problems {
		fmt.Fprintf(&b, "  ERROR %s\n", p)
	}
	for _, p := range rep.StateProblems {
		fmt.Fprintf(&b, "  STATE %s\n", p)
	}
	for _, p := range rep.VcsimProblems {
		fmt.Fprintf(&b, "  VCSIM %s\n", p)
	}
	for _, p := range rep.Warnings {
		fmt.Fprintf(&b, "  WARN  %s\n", p)
	}
	return b.String()
}

// findTestTool finds govc or vcsim for tests: PATH, then $ENV, then
// /tmp/gotools/bin. Missing tools skip the test, except in CI.
func findTestTool(t *testing.T, name, env string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range []string{os.Getenv(env), filepath.Join("/tmp/gotools/bin", name)} {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	msg := fmt.Sprintf("%s not found on PATH, in $%s or /tmp/gotools/bin (go install github.com/vmware/govmomi/%s@v0.46.0)", name, env, name)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
