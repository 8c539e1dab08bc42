package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/clr-suite/clr/internal/testpki"
)

// harness is a running server on 127.0.0.1 with one authorized site key,
// and the files an OpenSSH client needs to reach it.
type harness struct {
	srv        *Server
	addr       *net.TCPAddr
	lib        string
	dir        string
	key        string // client private key file (authorized, comment "site-a")
	otherKey   string // a key that is not authorized
	knownHosts string
	signer     ssh.Signer // the authorized client key, for x/crypto clients
	hostKey    ssh.PublicKey
	logs       *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func writeClientKey(t *testing.T, path string) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

func newHarness(t *testing.T, lib string, mod func(*Config)) *harness {
	t.Helper()
	testpki.RequireTools(t, "ssh", "rsync")
	h := &harness{lib: lib, dir: t.TempDir(), logs: &syncBuffer{}}
	h.key = filepath.Join(h.dir, "id_site")
	h.otherKey = filepath.Join(h.dir, "id_other")
	h.signer = writeClientKey(t, h.key)
	writeClientKey(t, h.otherKey)
	auth := filepath.Join(h.dir, "authorized_keys")
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(h.signer.PublicKey()))) + " site-a\n"
	if err := os.WriteFile(auth, []byte("# sites\nrestrict "+line), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := LoadKeys(auth)
	if err != nil {
		t.Fatal(err)
	}
	host, created, err := LoadOrCreateHostKey(filepath.Join(h.dir, "host_key"))
	if err != nil || !created {
		t.Fatalf("host key: %v (created %v)", err, created)
	}
	h.hostKey = host.PublicKey()
	info, err := ProbeRsync(context.Background(), "/usr/bin/rsync")
	if err != nil {
		t.Fatal(err)
	}
	sandbox := ""
	if LandlockABI() > 0 {
		if sandbox, err = os.Executable(); err != nil { // TestMain runs SandboxMain
			t.Fatal(err)
		}
	}
	cfg := Config{Library: lib, HostKey: host, Keys: keys, Rsync: info.Path, ConfineRoot: info.ConfineRoot, Sandbox: sandbox,
		AuthTimeout: 2 * time.Second, Logger: slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if mod != nil {
		mod(&cfg)
	}
	h.srv, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().(*net.TCPAddr)
	done := make(chan error, 1)
	go func() { done <- h.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h.srv.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", h.logs.String())
		}
	})
	h.knownHosts = filepath.Join(h.dir, "known_hosts")
	kh := fmt.Sprintf("[127.0.0.1]:%d %s", h.addr.Port, ssh.MarshalAuthorizedKey(h.hostKey))
	if err := os.WriteFile(h.knownHosts, []byte(kh), 0o600); err != nil {
		t.Fatal(err)
	}
	return h
}

// sshArgs is the OpenSSH client command line (rsync's -e) with key.
func (h *harness) sshArgs(key string) []string {
	return []string{"ssh", "-p", strconv.Itoa(h.addr.Port), "-i", key, "-F", "/dev/null",
		"-o", "UserKnownHostsFile=" + h.knownHosts, "-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=5"}
}

func (h *harness) rsyncE() string { return strings.Join(h.sshArgs(h.key), " ") }

// run runs a command with a deadline and returns its combined output.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// treeHash hashes every path and mode below dir, in order, and the mtime,
// link target and content of every file and link.
func treeHash(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.IsDir() { // directory times are not content: rsync sets them last, if at all
			fmt.Fprintf(h, "%s %v\n", rel, fi.Mode())
			return nil
		}
		fmt.Fprintf(h, "%s %v %d\n", rel, fi.Mode(), fi.ModTime().UnixNano())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			fmt.Fprintf(h, "-> %s\n", target)
		case fi.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			io.Copy(h, f)
			f.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// pseudoRandom fills n bytes deterministically (incompressible).
func pseudoRandom(n int, seed uint64) []byte {
	b := make([]byte, n)
	x := seed*0x9E3779B97F4A7C15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

func mkLibrary(t *testing.T, bigMiB int) string {
	t.Helper()
	lib := t.TempDir()
	files := map[string][]byte{
		"big.img":                 pseudoRandom(bigMiB<<20, 1),
		"centos9/centos9.ovf":     []byte("<Envelope/>\n"),
		"centos9/disk1.vmdk":      pseudoRandom(1<<20, 2),
		"centos9/centos9.mf":      []byte("SHA256(centos9.ovf)= 00\n"),
		"name with space.iso":     pseudoRandom(4096, 3),
		"tools.iso":               pseudoRandom(2048, 5),
		"imagelist/list.smime":    []byte("signed\n"),
		"deep/a/b/c/d/file.qcow2": pseudoRandom(8192, 4),
	}
	for name, data := range files {
		p := filepath.Join(lib, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return lib
}

var literalRE = regexp.MustCompile(`Literal data: ([\d,]+) bytes`)
var matchedRE = regexp.MustCompile(`Matched data: ([\d,]+) bytes`)

func statNum(t *testing.T, re *regexp.Regexp, out string) int64 {
	t.Helper()
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %s in rsync output:\n%s", re, out)
	}
	n, _ := strconv.ParseInt(strings.ReplaceAll(m[1], ",", ""), 10, 64)
	return n
}

// TestPullAndDelta: real OpenSSH client and real rsync pull the library,
// then a second pull after a 1 MiB change inside a 48 MiB file sends only
// about the changed bytes.
func TestPullAndDelta(t *testing.T) {
	lib := mkLibrary(t, 48)
	h := newHarness(t, lib, nil)
	dst := filepath.Join(t.TempDir(), "dst")
	out, err := run(t, "rsync", "-a", "--stats", "-e", h.rsyncE(), "syncer@127.0.0.1:/", dst+"/")
	if err != nil {
		t.Fatalf("first pull: %v\n%s", err, out)
	}
	if got, want := treeHash(t, dst), treeHash(t, lib); got != want {
		t.Fatalf("pulled tree differs from the library\n%s", out)
	}
	if lit := statNum(t, literalRE, out); lit < 48<<20 {
		t.Fatalf("first pull sent only %d literal bytes", lit)
	}

	// change 1 MiB in the middle of big.img, same size
	f, err := os.OpenFile(filepath.Join(lib, "big.img"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(pseudoRandom(1<<20, 99), 20<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// --ignore-times as clr-cache pulls: size and mtime may not have moved
	out, err = run(t, "rsync", "-a", "--stats", "--no-whole-file", "--ignore-times", "-e", h.rsyncE(), "syncer@127.0.0.1:/big.img", dst+"/big.img")
	if err != nil {
		t.Fatalf("delta pull: %v\n%s", err, out)
	}
	lit, matched := statNum(t, literalRE, out), statNum(t, matchedRE, out)
	if lit > 2<<20 || matched < 46<<20 {
		t.Fatalf("delta pull sent %d literal bytes and matched %d: not a delta\n%s", lit, matched, out)
	}
	t.Logf("delta pull: %d literal bytes, %d matched", lit, matched)
	if got, want := treeHash(t, dst), treeHash(t, lib); got != want {
		t.Fatal("tree differs after the delta pull")
	}
	// one log line per transfer, naming the site
	if logs := h.logs.String(); strings.Count(logs, "msg=transfer") != 2 || !strings.Contains(logs, "site=site-a") || !strings.Contains(logs, "rsync_exit=0") {
		t.Errorf("transfer log lines missing:\n%s", logs)
	}
}
