package push

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clr-suite/clr/internal/imagelist"
	"github.com/clr-suite/clr/internal/publish"
	"github.com/clr-suite/clr/internal/testpki"
	"github.com/clr-suite/clr/internal/testsshd"
	"github.com/clr-suite/clr/internal/transport"
)

const base = "https://publisher.example/clr/"

func writeFile(t *testing.T, root, rel string, data []byte) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// publisher makes release tree versions the way clr-publish --tree does
// (scan, versioned build, place, pointers, record, prune), without the
// signature: push copies bytes and never reads the signature.
type publisher struct {
	t         *testing.T
	lib, tree string
	prev      *imagelist.List
	policy    publish.PrunePolicy
}

func (p *publisher) publish(now time.Time) *imagelist.List {
	t := p.t
	entries, _, err := publish.Scan(context.Background(), p.lib, publish.ScanOptions{Now: now, Rehash: true})
	if err != nil {
		t.Fatal(err)
	}
	l, _, err := publish.Build(p.prev, entries, publish.ListMeta{BaseURI: base, Versioned: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := publish.PlaceTree(context.Background(), p.lib, p.tree, entries, l, base); err != nil {
		t.Fatal(err)
	}
	signed, content, err := publish.Sign(l, signer(t), publish.SignOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	// the pointers, each replaced atomically, like clr-publish
	for name, data := range map[string][]byte{"imagelist.smime": signed, "imagelist.json": content} {
		tmp := filepath.Join(p.tree, "."+name+".tmp")
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(p.tree, name)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := publish.RecordTree(p.tree, l, base, nil, now); err != nil {
		t.Fatal(err)
	}
	if _, err := publish.PruneTree(p.tree, p.policy, now, false); err != nil {
		t.Fatal(err)
	}
	p.prev = l
	return l
}

var fixture = sync.OnceValues(func() (*testpki.Fixture, error) { return testpki.NewFixture(time.Now()) })

func signer(t *testing.T) publish.Signer {
	f, err := fixture()
	if err != nil {
		t.Fatal(err)
	}
	return publish.Signer{Cert: f.Signer.Cert, Key: f.Signer.Key}
}

func payload(seed string, n int) []byte {
	b := make([]byte, n)
	h := sha512.Sum512([]byte(seed))
	for i := range b {
		b[i] = h[i%len(h)] ^ byte(i/len(h))
	}
	return b
}

// mirrorOverSSH starts a real OpenSSH server whose only key may run rrsync
// into a fresh mirror folder, and returns the mirror folder and Mirror.
func mirrorOverSSH(t *testing.T) (string, Mirror) {
	testsshd.Require(t, "rsync", "ssh", "sshd", "rrsync")
	dir := t.TempDir()
	mirror := filepath.Join(dir, "mirror")
	if err := os.Mkdir(mirror, 0o755); err != nil {
		t.Fatal(err)
	}
	key, pub, err := testsshd.ClientKey(dir, "push")
	if err != nil {
		t.Fatal(err)
	}
	rrsync, err := lookPath("rrsync")
	if err != nil {
		t.Fatal(err)
	}
	srv := testsshd.Start(t, testsshd.Options{AuthorizedKeys: []string{
		fmt.Sprintf(`command="%s %s",restrict %s`, rrsync, mirror, pub),
	}})
	m, err := ParseMirror(fmt.Sprintf("ssh://%s@%s:%d/", srv.User, srv.Host, srv.Port))
	if err != nil {
		t.Fatal(err)
	}
	m.SSH = transport.SSHOptions{KeyFile: key, KnownHosts: srv.KnownHosts}
	return mirror, m
}

// reader is a client polling the mirror over HTTP: the list, then every
// file it names, each checked for status, size and SHA-512.
type reader struct {
	url        string
	pause      time.Duration // between the files of one iteration: a slow download
	hold       time.Duration // between reading the list and its first file
	iterations atomic.Int64
	mu         sync.Mutex
	failures   []string
}

func (r *reader) fail(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.failures) < 20 {
		r.failures = append(r.failures, fmt.Sprintf(format, args...))
	}
}

func (r *reader) get(client *http.Client, path string) ([]byte, int, error) {
	resp, err := client.Get(r.url + path)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}

func (r *reader) once(client *http.Client) {
	defer r.iterations.Add(1)
	data, code, err := r.get(client, "/imagelist.json")
	if err != nil || code != http.StatusOK {
		r.fail("list: %d %v", code, err)
		return
	}
	l, _, err := imagelist.Parse(data, imagelist.ParseOptions{})
	if err != nil {
		r.fail("list: %v", err)
		return
	}
	time.Sleep(r.hold)
	for _, img := range l.Images {
		rel, ok := publish.TreeRel(img.URI, base)
		if !ok {
			r.fail("hv:uri %s not in the tree", img.URI)
			continue
		}
		files := img.Files
		if len(files) == 0 { // a single file: rel names it
			files = []imagelist.File{{Size: img.Size, SHA512: img.SHA512}}
		}
		for _, f := range files {
			time.Sleep(r.pause)
			p := "/" + rel
			if f.Path != "" {
				p += "/" + f.Path
			}
			body, code, err := r.get(client, p)
			switch {
			case err != nil:
				r.fail("%s: %v", p, err)
			case code != http.StatusOK:
				r.fail("%s: HTTP %d (list version %s)", p, code, l.Version)
			default:
				sum := sha512.Sum512(body)
				if int64(len(body)) != f.Size || hex.EncodeToString(sum[:]) != strings.ToLower(f.SHA512) {
					r.fail("%s: %d bytes not the signed ones (list version %s)", p, len(body), l.Version)
				}
			}
		}
	}
}

// A reader polling a mirror while new versions are replicated to it (over
// a real OpenSSH server with rrsync) never gets a 404 or a wrong byte for
// a file the list it read names: at least 200 reads of list and files
// during replication, with versions added, replaced, removed and deleted
// from the mirror after the grace period.
func TestConcurrentReaderNever404(t *testing.T) {
	mirrorDir, m := mirrorOverSSH(t)
	srv := httptest.NewServer(http.FileServer(http.Dir(mirrorDir)))
	defer srv.Close()

	lib, tree := t.TempDir(), t.TempDir()
	for _, name := range []string{"alpha", "beta"} {
		writeFile(t, lib, name+"/"+name+".ovf", payload(name+"ovf", 700))
		writeFile(t, lib, name+"/"+name+"-disk1.vmdk", payload(name+"disk0", 96<<10))
	}
	writeFile(t, lib, "boot.iso", payload("iso0", 40<<10))
	// The tree keeps nothing retired (the worst case): only the mirror's
	// grace protects readers of the previous list.
	pub := &publisher{t: t, lib: lib, tree: tree, policy: publish.PrunePolicy{Keep: 1}}
	const grace = 5 * time.Second
	push := func(now time.Time) Report {
		rep, err := Push(context.Background(), m, Options{Tree: tree, Grace: grace, Clock: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	pub.publish(time.Now())
	push(time.Now())

	// A fast reader, a slow one that downloads for about a second, and
	// one that holds each list across the next push before it downloads
	// (all well within the grace period; with none, the holder fails).
	fast := &reader{url: srv.URL}
	slow := &reader{url: srv.URL, pause: 200 * time.Millisecond}
	holder := &reader{url: srv.URL, hold: 2500 * time.Millisecond}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, r := range []*reader{fast, slow, holder} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			for i := 0; i < 100000; i++ { // bounded; stopped long before
				select {
				case <-stop:
					return
				default:
				}
				r.once(client)
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}

	deleted, versions := 0, 0
	deadline := time.Now().Add(3 * time.Minute)
	for v := 1; v <= 60 && (v <= 8 || fast.iterations.Load() < 400 || holder.iterations.Load() < 5 || deleted == 0); v++ {
		if time.Now().After(deadline) {
			break
		}
		switch v % 4 {
		case 0: // replace a disk
			writeFile(t, lib, "alpha/alpha-disk1.vmdk", payload(fmt.Sprint("alphadisk", v), 96<<10))
		case 1: // replace a whole single-file image
			writeFile(t, lib, "boot.iso", payload(fmt.Sprint("iso", v), 40<<10))
		case 2: // an image leaves the list
			if err := os.RemoveAll(filepath.Join(lib, "beta")); err != nil {
				t.Fatal(err)
			}
		case 3: // and comes back changed
			writeFile(t, lib, "beta/beta.ovf", payload("betaovf", 700))
			writeFile(t, lib, "beta/beta-disk1.vmdk", payload(fmt.Sprint("betadisk", v), 96<<10))
		}
		pub.publish(time.Now())
		rep := push(time.Now())
		deleted += len(rep.Deleted)
		versions++
		time.Sleep(300 * time.Millisecond) // let readers hold the new list a while
	}
	close(stop)
	wg.Wait()

	n := fast.iterations.Load() + slow.iterations.Load() + holder.iterations.Load()
	t.Logf("%d versions pushed, %d reader iterations (%d slow, %d holding a list across a push), %d paths deleted from the mirror after the grace period",
		versions, n, slow.iterations.Load(), holder.iterations.Load(), deleted)
	for _, r := range []*reader{fast, slow, holder} {
		if len(r.failures) > 0 {
			t.Fatalf("a reader (pause %v) saw %d+ failures, first: %s", r.pause, len(r.failures), strings.Join(r.failures, "; "))
		}
	}
	if n < 200 {
		t.Fatalf("only %d reader iterations during replication, want at least 200", n)
	}
	if deleted == 0 {
		t.Fatalf("no retired version was ever deleted from the mirror: pass 3 was not exercised")
	}

	// After the grace period one more push leaves exactly the live
	// versions on the mirror.
	time.Sleep(grace)
	push(time.Now())
	st, err := publish.LoadTreeState(tree)
	if err != nil {
		t.Fatal(err)
	}
	var onMirror []string
	ids, _ := os.ReadDir(mirrorDir)
	for _, id := range ids {
		if !id.IsDir() || id.Name() == "streams" {
			continue
		}
		vs, _ := os.ReadDir(filepath.Join(mirrorDir, id.Name()))
		for _, v := range vs {
			onMirror = append(onMirror, id.Name()+"/"+v.Name())
		}
	}
	slices.Sort(onMirror)
	if !slices.Equal(onMirror, st.Live) {
		t.Errorf("mirror holds %v after the grace period, want the live %v", onMirror, st.Live)
	}
}

// A mirror that cannot be reached keeps its previous list: the push stops
// at the first pass and says so with ErrMirror.
func TestPushUnreachable(t *testing.T) {
	testsshd.Require(t, "rsync", "ssh")
	lib, tree := t.TempDir(), t.TempDir()
	writeFile(t, lib, "boot.iso", payload("iso", 1000))
	(&publisher{t: t, lib: lib, tree: tree, policy: publish.PrunePolicy{Keep: 1}}).publish(time.Now())
	dir := t.TempDir()
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := ParseMirror("ssh://nobody@127.0.0.1:1/srv")
	if err != nil {
		t.Fatal(err)
	}
	m.SSH = transport.SSHOptions{KnownHosts: kh, ConnectTimeout: 2 * time.Second}
	rep, err := Push(context.Background(), m, Options{Tree: tree, Timeout: 5 * time.Second})
	if !isMirrorErr(err) || rep.Pointers {
		t.Fatalf("Push = %+v, %v; want ErrMirror before the pointers", rep, err)
	}
	if !strings.Contains(err.Error(), "pass objects") {
		t.Errorf("error %q does not name the pass", err)
	}
}
