package transport

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/clr-suite/clr/internal/server"
	"github.com/clr-suite/clr/internal/testpki"
)

// sshServer is clr-server on 127.0.0.1 exporting a library to one site
// key, with the files an OpenSSH client needs to reach it.
type sshServer struct {
	port       int
	key        string // authorized client key
	knownHosts string // the server's host key, pinned
	hostLine   string // its known_hosts line
	logs       *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// writeSSHKey writes a new ed25519 private key in OpenSSH format.
func writeSSHKey(t *testing.T, path string) ssh.Signer {
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

// startSSHServer runs clr-server (internal/server) for lib until the test
// ends. Tests using it need rsync and the OpenSSH client.
func startSSHServer(t *testing.T, lib string) *sshServer {
	t.Helper()
	testpki.RequireTools(t, "rsync", "ssh")
	dir := t.TempDir()
	s := &sshServer{key: filepath.Join(dir, "id_site"), knownHosts: filepath.Join(dir, "known_hosts"), logs: &lockedBuffer{}}
	signer := writeSSHKey(t, s.key)
	auth := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(auth, append([]byte("restrict "), ssh.MarshalAuthorizedKey(signer.PublicKey())...), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := server.LoadKeys(auth)
	if err != nil {
		t.Fatal(err)
	}
	host, _, err := server.LoadOrCreateHostKey(filepath.Join(dir, "host_key"))
	if err != nil {
		t.Fatal(err)
	}
	rsyncPath, err := exec.LookPath("rsync")
	if err != nil {
		t.Fatal(err)
	}
	info, err := server.ProbeRsync(t.Context(), rsyncPath)
	if err != nil {
		t.Fatal(err)
	}
	sandbox := ""
	if server.LandlockABI() > 0 {
		if sandbox, err = os.Executable(); err != nil { // TestMain runs SandboxMain
			t.Fatal(err)
		}
	}
	srv, err := server.New(server.Config{Library: lib, HostKey: host, Keys: keys, Rsync: info.Path, ConfineRoot: info.ConfineRoot,
		Sandbox: sandbox, AuthTimeout: 5 * time.Second, Logger: slog.New(slog.NewTextHandler(s.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = ln.Addr().(*net.TCPAddr).Port
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("clr-server log:\n%s", s.logs.String())
		}
	})
	s.hostLine = fmt.Sprintf("[127.0.0.1]:%d %s", s.port, ssh.MarshalAuthorizedKey(host.PublicKey()))
	if err := os.WriteFile(s.knownHosts, []byte(s.hostLine), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// url is the ssh:// URL of path in the library.
func (s *sshServer) url(path string) string {
	return fmt.Sprintf("ssh://site@127.0.0.1:%d%s", s.port, path)
}

// setup points a request at the server's key and pinned host key.
func (s *sshServer) setup(r *TemplateRequest) {
	r.SSH.KeyFile = s.key
	if r.SSH.KnownHosts == "" && !r.SSH.AcceptNew {
		r.SSH.KnownHosts = s.knownHosts
	}
	r.SSH.ConnectTimeout = 5 * time.Second
}

func TestRsyncArgs(t *testing.T) {
	basis, stage, partial := t.TempDir(), t.TempDir(), t.TempDir()
	known := writeFile(t, t.TempDir(), "known%hosts", "")
	key := writeFile(t, t.TempDir(), "id", "")
	req := TemplateRequest{
		URL:   "ssh://site@mirror.example.org:2222/lib/tmpl/v2/",
		Files: []FileSpec{{"disk.vmdk", 5 << 30}, {"tmpl.ovf", 4096}, {"sub/dir/[x]*.iso", 10}, {"sub/a b", 0}},
		Stage: stage, PartialDir: partial, BWLimit: "1.5m",
		SSH: SSHOptions{KeyFile: key, KnownHosts: known},
	}
	p, err := planTemplate(req)
	if err != nil {
		t.Fatal(err)
	}
	args, stdin := rsyncArgs(p)
	want := []string{"--recursive", "--times", "--ignore-times", "--no-whole-file",
		"--compress-choice=zstd", "--checksum-choice=xxh128", "--block-size=8192", "--timeout=300", "--bwlimit=1536",
		"--stats", "--no-human-readable", "--info=skip1", "--no-inc-recursive",
		"--partial-dir=" + partial, "--max-size=5368709120",
		"--from0", "--include-from=-", "--exclude=*",
		"-e", "ssh -p 2222 -i " + key + " -o IdentitiesOnly=yes -F /dev/null -o BatchMode=yes -o ConnectTimeout=20 -o ServerAliveInterval=15 -o ServerAliveCountMax=4 -o StrictHostKeyChecking=yes -o UserKnownHostsFile=" + strings.ReplaceAll(known, "%", "%%") + " -o GlobalKnownHostsFile=/dev/null",
		"--", "site@mirror.example.org:/lib/tmpl/v2/", stage + "/"}
	if !slices.Equal(args, want) {
		t.Errorf("first install args\n got %q\nwant %q", args, want)
	}
	wantRules := "/disk.vmdk\x00/tmpl.ovf\x00/sub/\x00/sub/dir/\x00/sub/dir/\\[x]\\*.iso\x00/sub/a b\x00"
	if string(stdin) != wantRules {
		t.Errorf("rules %q, want %q", stdin, wantRules)
	}

	// An update: the basis, never a partial dir; a single file pulls its
	// folder with one include rule.
	req.Basis = basis
	req.URL = "ssh://[::1]/lib/tmpl/v2/disk.vmdk"
	req.Files = []FileSpec{{"disk.vmdk", 100}}
	req.BWLimit, req.IOTimeout, req.BlockSize = "", 90*time.Second+time.Millisecond, 4096
	req.SSH = SSHOptions{AcceptNew: true, Command: "/usr/local/bin/ssh", ConnectTimeout: 1500 * time.Millisecond}
	if p, err = planTemplate(req); err != nil {
		t.Fatal(err)
	}
	args, stdin = rsyncArgs(p)
	want = []string{"--recursive", "--times", "--ignore-times", "--no-whole-file", "--copy-dest=" + basis + "/",
		"--compress-choice=zstd", "--checksum-choice=xxh128", "--block-size=4096", "--timeout=91",
		"--stats", "--no-human-readable", "--info=skip1", "--no-inc-recursive", "--max-size=100",
		"--from0", "--include-from=-", "--exclude=*",
		"-e", "/usr/local/bin/ssh -F /dev/null -o BatchMode=yes -o ConnectTimeout=2 -o ServerAliveInterval=15 -o ServerAliveCountMax=4 -o StrictHostKeyChecking=accept-new",
		"--", "[::1]:/lib/tmpl/v2/", stage + "/"}
	if !slices.Equal(args, want) {
		t.Errorf("update args\n got %q\nwant %q", args, want)
	}
	if string(stdin) != "/disk.vmdk\x00" {
		t.Errorf("rules %q", stdin)
	}
	for _, a := range args {
		if a == "--inplace" || a == "--whole-file" || a == "-W" || strings.HasPrefix(a, "--partial") {
			t.Errorf("forbidden argument %s", a)
		}
	}
}

func TestRsyncError(t *testing.T) {
	stderr := "clr-server: refused: path not found in library: \"tmpl/x\"\nrsync: connection unexpectedly closed (0 bytes received so far) [Receiver]\nrsync error: error in rsync protocol data stream (code 12) at io.c(285) [Receiver=3.5.0]"
	var err error = newRsyncError("ssh://h.example/tmpl/", 12, stderr)
	if got, want := err.Error(), `download failed: ssh://h.example/tmpl/: rsync exit 12 (error in rsync protocol data stream): clr-server: refused: path not found in library: "tmpl/x"`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	wrapped := fmt.Errorf("cache: %w", err)
	var re *RsyncError
	if !errors.Is(wrapped, ErrDownload) || !errors.As(wrapped, &re) || re.ExitCode() != ExitDownload || re.Code != 12 || !Retryable(wrapped) {
		t.Errorf("RsyncError %+v", re)
	}
	if got := newRsyncError("u", 23, "").Error(); got != "download failed: u: rsync exit 23 (partial transfer due to error)" {
		t.Errorf("Error() = %q", got)
	}
	if got := newRsyncError("u", 137, "").Error(); got != "download failed: u: rsync exit 137 (killed by signal 9)" {
		t.Errorf("Error() = %q", got)
	}
	if got := newRsyncError("u", 255, "rsync error: unexplained error (code 255) at io.c(232) [Receiver=3.5.0]").Error(); !strings.HasSuffix(got, "(ssh failed): rsync error: unexplained error (code 255) at io.c(232) [Receiver=3.5.0]") {
		t.Errorf("Error() = %q", got)
	}
	for code, want := range map[int]bool{1: false, 2: false, 3: false, 4: false, 5: false, 10: true, 11: false, 12: true, 20: true, 23: true, 24: true, 30: true, 35: true, 137: false} {
		if got := newRsyncError("u", code, "").Retryable; got != want {
			t.Errorf("exit %d: Retryable %v, want %v", code, got, want)
		}
	}
	for stderr, want := range map[string]bool{
		"ssh: connect to host 127.0.0.1 port 1: Connection refused": true,
		"Host key verification failed.":                             false,
		"site@127.0.0.1: Permission denied (publickey).":            false,
	} {
		for _, code := range []int{12, 255} {
			if got := newRsyncError("u", code, stderr).Retryable; got != want {
				t.Errorf("exit %d %q: Retryable %v, want %v", code, stderr, got, want)
			}
		}
	}
}

func TestParseRsyncStats(t *testing.T) {
	out := `
Number of files: 6 (reg: 4, dir: 2)
Literal data: 5003 bytes
Matched data: 1,048,576 bytes
File list size: 120
Total bytes sent: 152
Total bytes received: 5264

sent 152 bytes  received 5264 bytes  10832.00 bytes/sec
`
	want := TemplateStats{WireBytesIn: 5264, WireBytesOut: 152, LiteralBytes: 5003, MatchedBytes: 1 << 20}
	if got := parseRsyncStats(out); got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
	over := overMaxSize("sub/a b is over max-size\nweird\\#012name is over max-size\n", []FileSpec{{"sub/a b", 3}})
	if len(over) != 2 || over[0] != (FileSpec{"sub/a b", 3}) || over[1].Size != -1 {
		t.Errorf("over max-size %+v", over)
	}
}

// changeBlocks returns a copy of data with every step-th block of size
// bs, starting at block first, replaced by other bytes, and the number of
// bytes changed.
func changeBlocks(data []byte, bs, first, step int) ([]byte, int) {
	v2 := bytes.Clone(data)
	changed := 0
	for off := first * bs; off+bs <= len(v2); off += step * bs {
		copy(v2[off:off+bs], randomBytes(bs, uint64(off)+99))
		changed += bs
	}
	return v2, changed
}

// TestRsyncDelta: an update sends about the changed blocks, not the file.
func TestRsyncDelta(t *testing.T) {
	lib, basis := t.TempDir(), t.TempDir()
	v1 := randomBytes(8<<20, 11)
	// 1 % of the 128 64 KiB blocks, rounded up: 2 blocks.
	v2, changed := changeBlocks(v1, 64<<10, 17, 100)
	if changed != 2*64<<10 {
		t.Fatalf("changed %d bytes", changed)
	}
	putFiles(t, lib, map[string][]byte{"tmpl/v2/disk.img": v2, "tmpl/v2/tmpl.ovf": []byte("<Envelope v2/>")})
	putFiles(t, basis, map[string][]byte{"disk.img": v1, "tmpl.ovf": []byte("<Envelope v1/>")})
	s := startSSHServer(t, lib)
	stage := t.TempDir()
	req := TemplateRequest{URL: s.url("/tmpl/v2/"), Files: []FileSpec{{"disk.img", int64(len(v2))}, {"tmpl.ovf", 14}}, Basis: basis, Stage: stage}
	s.setup(&req)
	stats, err := FetchTemplate(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	checkTree(t, stage, map[string][]byte{"disk.img": v2, "tmpl.ovf": []byte("<Envelope v2/>")})
	t.Logf("changed %d bytes: %+v", changed, stats)
	if lo, hi := int64(changed), int64(changed)*11/10+64<<10; stats.LiteralBytes < lo || stats.LiteralBytes > hi {
		t.Errorf("literal %d bytes, want within [%d, %d]", stats.LiteralBytes, lo, hi)
	}
	if stats.MatchedBytes < int64(len(v2)-changed)-64<<10 {
		t.Errorf("matched only %d bytes", stats.MatchedBytes)
	}
	if stats.WireBytesIn > int64(len(v2))/16 || stats.WireBytesIn < int64(changed) {
		t.Errorf("received %d bytes on the wire for an %d byte file with %d changed", stats.WireBytesIn, len(v2), changed)
	}
	// Block checksums went up: ~8 bytes per 8 KiB block.
	if stats.WireBytesOut < int64(len(v1))/8192*4 || stats.WireBytesOut > 64<<10 {
		t.Errorf("sent %d bytes", stats.WireBytesOut)
	}
	if stats.Files != 2 || stats.Resumed {
		t.Errorf("stats %+v", stats)
	}
}

// TestRsyncIgnoreTimes: a basis with the new file's size and mtime but
// other content is still compared block by block, not copied as is.
func TestRsyncIgnoreTimes(t *testing.T) {
	lib, basis := t.TempDir(), t.TempDir()
	v1 := randomBytes(1<<20, 21)
	v2 := bytes.Clone(v1)
	copy(v2[4096:], "changed in place, same size, same mtime")
	putFiles(t, lib, map[string][]byte{"t/disk.img": v2})
	putFiles(t, basis, map[string][]byte{"disk.img": v1})
	mtime := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for _, p := range []string{filepath.Join(lib, "t", "disk.img"), filepath.Join(basis, "disk.img")} {
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	s := startSSHServer(t, lib)
	req := TemplateRequest{URL: s.url("/t/disk.img"), Files: []FileSpec{{"disk.img", 1 << 20}}, Basis: basis, Stage: t.TempDir()}
	s.setup(&req)
	stats, err := FetchTemplate(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	checkTree(t, req.Stage, map[string][]byte{"disk.img": v2})
	if stats.LiteralBytes == 0 || stats.LiteralBytes > 64<<10 || stats.MatchedBytes < 900<<10 {
		t.Errorf("stats %+v: want a small delta", stats)
	}
}

// TestRsyncResume: an interrupted first install keeps its partial file in
// PartialDir, and the next run continues from it.
func TestRsyncResume(t *testing.T) {
	lib := t.TempDir()
	data := randomBytes(8<<20, 31)
	putFiles(t, lib, map[string][]byte{"t/disk.img": data})
	s := startSSHServer(t, lib)
	partial := filepath.Join(t.TempDir(), "partial")
	req := TemplateRequest{URL: s.url("/t/"), Files: []FileSpec{{"disk.img", int64(len(data))}}, Stage: t.TempDir(), PartialDir: partial, BWLimit: "2m"}
	s.setup(&req)
	// Interrupt once rsync's temporary file in the stage holds 1 MiB.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		defer cancel()
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			entries, _ := os.ReadDir(req.Stage)
			for _, e := range entries {
				if fi, err := e.Info(); err == nil && fi.Size() >= 1<<20 {
					return
				}
			}
		}
	}()
	_, err := FetchTemplate(ctx, req)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrDownload) || !strings.Contains(err.Error(), "(rsync stopped, exit ") {
		t.Fatalf("interrupted run: %v", err)
	}
	fi, err := os.Stat(filepath.Join(partial, "disk.img"))
	if err != nil || fi.Size() == 0 || fi.Size() >= int64(len(data)) {
		t.Fatalf("partial file after the interruption: %v, %v", fi, err)
	}
	kept := fi.Size()

	req.Stage, req.BWLimit = t.TempDir(), ""
	stats, err := FetchTemplate(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	checkTree(t, req.Stage, map[string][]byte{"disk.img": data})
	t.Logf("kept %d bytes: %+v", kept, stats)
	if !stats.Resumed || stats.MatchedBytes < kept-64<<10 || stats.LiteralBytes > int64(len(data))-kept+64<<10 {
		t.Errorf("resumed run after keeping %d bytes: %+v", kept, stats)
	}
	if _, err := os.Stat(filepath.Join(partial, "disk.img")); err == nil {
		t.Error("partial file left behind after success")
	}

	// With a basis the partial dir is not used: a cut delta restarts.
	req.Basis, req.Stage = t.TempDir(), t.TempDir()
	writeFile(t, partial, "disk.img", "stale")
	stats, err = FetchTemplate(t.Context(), req)
	if err != nil || stats.Resumed {
		t.Fatalf("update: %+v, %v", stats, err)
	}
	if b, _ := os.ReadFile(filepath.Join(partial, "disk.img")); string(b) != "stale" {
		t.Error("an update touched the partial dir")
	}
}

func TestRsyncHostKeys(t *testing.T) {
	lib := t.TempDir()
	putFiles(t, lib, map[string][]byte{"t/a": []byte("a")})
	s := startSSHServer(t, lib)
	files := []FileSpec{{"a", 1}}

	t.Run("changed host key", func(t *testing.T) {
		other := writeSSHKey(t, filepath.Join(t.TempDir(), "other"))
		kh := writeFile(t, t.TempDir(), "known_hosts", fmt.Sprintf("[127.0.0.1]:%d %s", s.port, ssh.MarshalAuthorizedKey(other.PublicKey())))
		req := TemplateRequest{URL: s.url("/t/"), Files: files, Stage: t.TempDir(), SSH: SSHOptions{KnownHosts: kh}}
		s.setup(&req)
		_, err := FetchTemplate(t.Context(), req)
		var re *RsyncError
		if !errors.As(err, &re) || re.Code != 255 && re.Code != 12 || re.Retryable || Retryable(err) || !strings.Contains(err.Error(), "Host key verification failed") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("unknown host", func(t *testing.T) {
		kh := writeFile(t, t.TempDir(), "known_hosts", "")
		req := TemplateRequest{URL: s.url("/t/"), Files: files, Stage: t.TempDir(), SSH: SSHOptions{KnownHosts: kh}}
		s.setup(&req)
		_, err := FetchTemplate(t.Context(), req)
		// rsync exits 255 (ssh's code) or 12 (the pipe closed first).
		var re *RsyncError
		if !errors.As(err, &re) || re.Code != 255 && re.Code != 12 || re.Retryable || !strings.Contains(err.Error(), "Host key verification failed") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("accept new", func(t *testing.T) {
		kh := filepath.Join(t.TempDir(), "known_hosts")
		req := TemplateRequest{URL: s.url("/t/"), Files: files, Stage: t.TempDir(), SSH: SSHOptions{KnownHosts: kh, AcceptNew: true}}
		s.setup(&req)
		if _, err := FetchTemplate(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(kh)
		if err != nil || !strings.Contains(string(b), strings.Fields(s.hostLine)[2]) {
			t.Fatalf("known_hosts after first use: %q, %v", b, err)
		}
	})
	t.Run("unauthorized key", func(t *testing.T) {
		req := TemplateRequest{URL: s.url("/t/"), Files: files, Stage: t.TempDir()}
		s.setup(&req)
		req.SSH.KeyFile = filepath.Join(t.TempDir(), "stranger")
		writeSSHKey(t, req.SSH.KeyFile)
		_, err := FetchTemplate(t.Context(), req)
		var re *RsyncError
		if !errors.As(err, &re) || re.Code != 255 && re.Code != 12 || re.Retryable || !strings.Contains(re.Stderr, "Permission denied") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		req := TemplateRequest{URL: "ssh://site@127.0.0.1:" + strconv.Itoa(port) + "/t/", Files: files, Stage: t.TempDir()}
		s.setup(&req)
		_, err = FetchTemplate(t.Context(), req)
		var re *RsyncError
		if !errors.As(err, &re) || re.Code != 255 && re.Code != 12 || !re.Retryable {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("missing folder", func(t *testing.T) {
		req := TemplateRequest{URL: s.url("/nothing/here/"), Files: files, Stage: t.TempDir()}
		s.setup(&req)
		_, err := FetchTemplate(t.Context(), req)
		var re *RsyncError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), "path not found in library") {
			t.Fatalf("error %v", err)
		}
	})
}

// TestRsyncToolsMissing: a missing rsync or ssh binary is a plain local
// error, not a download failure.
func TestRsyncToolsMissing(t *testing.T) {
	known := writeFile(t, t.TempDir(), "known_hosts", "")
	for _, req := range []TemplateRequest{
		{Rsync: "/nonexistent/rsync"},
		{SSH: SSHOptions{Command: "/nonexistent/ssh"}},
	} {
		req.URL, req.Files, req.Stage = "ssh://h.example/t/", []FileSpec{{"a", 1}}, t.TempDir()
		req.SSH.KnownHosts = known
		_, err := FetchTemplate(t.Context(), req)
		if err == nil || errors.Is(err, ErrDownload) || Retryable(err) || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("error %v", err)
		}
	}
}
