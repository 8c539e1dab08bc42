package server

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// slowPull starts a bandwidth-limited pull of big.img (KiB/s) and waits
// until the server runs it.
func slowPull(t *testing.T, h *harness, kbps string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	var out strings.Builder
	cmd := exec.Command("rsync", "-a", "--bwlimit="+kbps, "-e", h.rsyncE(), "syncer@127.0.0.1:/big.img", filepath.Join(t.TempDir(), "big.img"))
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // rsync and its ssh
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	waitFor(t, "transfer to start", func() bool { return h.srv.Running() == 1 })
	return cmd, &out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestMaxSessions(t *testing.T) {
	h := newHarness(t, mkLibrary(t, 2), func(c *Config) { c.MaxSessions = 1 })
	slowPull(t, h, "256")
	out, err := run(t, "rsync", "-a", "-e", h.rsyncE(), "syncer@127.0.0.1:/tools.iso", t.TempDir())
	if err == nil || !strings.Contains(out, "clr-server: refused: server busy: 1 transfers running") {
		t.Fatalf("second transfer not refused: %v\n%s", err, out)
	}
}

func TestGracefulShutdownFinishesTransfers(t *testing.T) {
	h := newHarness(t, mkLibrary(t, 1), nil)
	cmd, out := slowPull(t, h, "512") // 1 MiB at 512 KiB/s: about 2 s
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		done <- h.srv.Shutdown(ctx)
	}()
	// no new connections while draining
	waitFor(t, "listener to close", func() bool {
		_, err := run(t, "ssh", append(h.sshArgs(h.key)[1:], "syncer@127.0.0.1", "true")...)
		return err != nil
	})
	if err := cmd.Wait(); err != nil {
		t.Fatalf("running transfer broken by shutdown: %v\n%s", err, out)
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func TestShutdownGraceKillsTransfers(t *testing.T) {
	h := newHarness(t, mkLibrary(t, 2), nil)
	cmd, _ := slowPull(t, h, "64") // would take 30 s
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := h.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shutdown = %v, want the grace period to run out", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("killing took %v", time.Since(start))
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("killed transfer reported success")
	}
	if n := h.srv.Running(); n != 0 {
		t.Fatalf("%d transfers still running", n)
	}
}

func TestIdleTimeout(t *testing.T) {
	h := newHarness(t, mkLibrary(t, 1), func(c *Config) { c.IdleTimeout = time.Second })
	client, err := ssh.Dial("tcp", h.addr.String(), &ssh.ClientConfig{User: "syncer",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(h.signer)}, HostKeyCallback: ssh.FixedHostKey(h.hostKey), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	closed := make(chan error, 1)
	go func() { closed <- client.Wait() }()
	select {
	case <-closed:
	case <-time.After(15 * time.Second):
		t.Fatal("idle connection not closed")
	}
}

// Reloading authorized_keys applies to new connections only: a running
// transfer of a removed key finishes.
func TestReloadKeysKeepsSessions(t *testing.T) {
	h := newHarness(t, mkLibrary(t, 1), nil)
	cmd, out := slowPull(t, h, "512")
	auth := filepath.Join(h.dir, "authorized_keys")
	if err := os.WriteFile(auth, []byte("# nobody\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := h.srv.cfg.Keys.Reload(); err != nil || n != 0 {
		t.Fatalf("reload: %d, %v", n, err)
	}
	if o, err := run(t, "rsync", "-a", "-e", h.rsyncE(), "syncer@127.0.0.1:/tools.iso", t.TempDir()); err == nil || !strings.Contains(o, "Permission denied") {
		t.Fatalf("removed key still accepted: %v\n%s", err, o)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("running transfer broken by reload: %v\n%s", err, out)
	}
	// a broken file keeps the previous set
	os.WriteFile(auth, []byte("garbage\n"), 0o600)
	if _, err := h.srv.cfg.Keys.Reload(); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("garbage accepted: %v", err)
	}
}

func TestHostKeyPersists(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state", "host_key")
	a, created, err := LoadOrCreateHostKey(p)
	if err != nil || !created {
		t.Fatal(err, created)
	}
	b, created, err := LoadOrCreateHostKey(p)
	if err != nil || created {
		t.Fatal(err, created)
	}
	if ssh.FingerprintSHA256(a.PublicKey()) != ssh.FingerprintSHA256(b.PublicKey()) || a.PublicKey().Type() != ssh.KeyAlgoED25519 {
		t.Fatal("host key changed or not ed25519")
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Fatalf("host key mode %v", st.Mode().Perm())
	}
	os.WriteFile(p, []byte("garbage"), 0o600)
	if _, _, err := LoadOrCreateHostKey(p); err == nil {
		t.Fatal("garbage host key accepted")
	}
}

func TestExampleAuthorizedKeys(t *testing.T) {
	k, err := LoadKeys("../../examples/sites.authorized_keys")
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := k.Reload(); n != 2 {
		t.Fatalf("%d keys", n)
	}
}

func dialClient(t *testing.T, h *harness) *ssh.Client {
	t.Helper()
	client, err := ssh.Dial("tcp", h.addr.String(), &ssh.ClientConfig{User: "syncer",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(h.signer)}, HostKeyCallback: ssh.FixedHostKey(h.hostKey), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// Review finding: requests piling up on a refused channel blocked the
// connection's reader, so neither the idle timeout nor shutdown could end it.
func TestRequestFloodDoesNotWedge(t *testing.T) {
	h := newHarness(t, mkLibrary(t, 1), func(c *Config) { c.IdleTimeout = time.Second })
	client := dialClient(t, h)
	ch, _, err := client.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	ch.SendRequest("exec", false, ssh.Marshal(struct{ Command string }{"id"}))
	for i := 0; i < 40; i++ {
		ch.SendRequest("env", false, ssh.Marshal(struct{ Name, Value string }{"A", "B"}))
	}
	closed := make(chan error, 1)
	go func() { closed <- client.Wait() }()
	select {
	case <-closed:
	case <-time.After(15 * time.Second):
		t.Fatal("connection wedged: idle timeout did not close it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// An idle authenticated connection does not hold shutdown for the whole
// grace period, and no transfer starts once shutdown began.
func TestShutdownClosesIdleConnections(t *testing.T) {
	h := newHarness(t, mkLibrary(t, 1), nil)
	client := dialClient(t, h)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil || time.Since(start) > 5*time.Second {
		t.Fatalf("shutdown took %v: %v", time.Since(start), err)
	}
	if _, err := client.NewSession(); err == nil {
		t.Fatal("idle connection still open after shutdown")
	}
}

// A transfer killed by the server is not reported to the client as a
// success (review finding: exit status 0).
func TestKilledTransferExitStatus(t *testing.T) {
	h := newHarness(t, mkLibrary(t, 1), nil)
	client := dialClient(t, h)
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	stdin, _ := sess.StdinPipe() // never written: rsync waits for the protocol
	defer stdin.Close()
	if err := sess.Start("rsync --server --sender -logDtpre.iLsfxCIvu . /big.img"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "transfer to start", func() bool { return h.srv.Running() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	h.srv.Shutdown(ctx)
	var ee *ssh.ExitError
	if err := sess.Wait(); !errors.As(err, &ee) || ee.ExitStatus() != 128+9 {
		t.Fatalf("killed transfer ended with %v, want exit status 137", err)
	}
}

// A key removed by a reload cannot start new transfers on a connection it
// opened before.
func TestRevokedKeyOnOpenConnection(t *testing.T) {
	h := newHarness(t, mkLibrary(t, 1), nil)
	client := dialClient(t, h)
	os.WriteFile(filepath.Join(h.dir, "authorized_keys"), []byte("# nobody\n"), 0o600)
	if _, err := h.srv.cfg.Keys.Reload(); err != nil {
		t.Fatal(err)
	}
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	sess.Stderr = &stderr
	if err := sess.Run("rsync --server --sender -logDtpre.iLsfxCIvu . /big.img"); err == nil || !strings.Contains(stderr.String(), "key no longer authorized") {
		t.Fatalf("revoked key ran a transfer: %v %q", err, stderr.String())
	}
}

func TestAuthorizedKeysOptions(t *testing.T) {
	for _, tc := range []struct {
		opts string
		ok   bool
	}{
		{"", true}, {"restrict ", true}, {"restrict,no-pty,no-port-forwarding ", true},
		{`from="10.0.0.0/8" `, false}, {`command="rrsync -ro /srv/a" `, false}, {`expiry-time="20300101" `, false},
	} {
		line := tc.opts + "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDdDOQn+aE127MUHCJdEoBbg/jB38px7VZ6rvWI68/Ek site\n"
		_, err := parseAuthorizedKeys([]byte(line))
		if (err == nil) != tc.ok {
			t.Errorf("options %q: err %v", tc.opts, err)
		}
	}
}

// OpenSSH clients list chacha20-poly1305 first, which is slow in Go: by
// default they must end up on AES-GCM.
func TestOpenSSHNegotiatesAESGCM(t *testing.T) {
	h := newHarness(t, mkLibrary(t, 1), nil)
	args := append(h.sshArgs(h.key), "-v", "syncer@127.0.0.1", "true")
	out, _ := run(t, args[0], args[1:]...)
	if !strings.Contains(out, "server->client cipher: aes128-gcm@openssh.com") {
		t.Fatalf("negotiated another cipher:\n%s", out)
	}
}
