package testsshd

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshCmd is the ssh command line (for rsync -e) that logs in to srv with
// key, trusting only srv's pinned host key and ignoring all user config.
func sshCmd(srv *Server, key string) []string {
	return []string{
		"ssh", "-p", fmt.Sprint(srv.Port), "-i", key,
		"-o", "IdentitiesOnly=yes",
		"-F", "/dev/null",
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + srv.KnownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=10",
	}
}

// run runs argv with a timeout and returns its combined output.
func run(t *testing.T, argv ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("timed out: %s", strings.Join(argv, " "))
	}
}

func TestRsyncIntoRrsync(t *testing.T) {
	Require(t, "sshd", "ssh", "rsync", "rrsync")
	rrsync, err := exec.LookPath("rrsync")
	if err != nil {
		t.Fatal(err)
	}

	base := t.TempDir()
	mirror := filepath.Join(base, "mirror")
	src := filepath.Join(base, "src")
	for _, d := range []string{mirror, src, filepath.Join(src, "sub")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"a.txt":     "alpha\n",
		"sub/b.txt": "beta\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	key, pub, err := ClientKey(base, "client")
	if err != nil {
		t.Fatal(err)
	}
	stranger, _, err := ClientKey(base, "stranger")
	if err != nil {
		t.Fatal(err)
	}
	srv := Start(t, Options{AuthorizedKeys: []string{
		fmt.Sprintf("command=%q,restrict %s", rrsync+" "+mirror, pub),
	}})
	if srv.Host != "127.0.0.1" || srv.Port <= 0 || srv.User == "" {
		t.Fatalf("bad server description: %+v", srv)
	}
	kh, err := os.ReadFile(srv.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("[127.0.0.1]:%d ssh-ed25519 ", srv.Port); !strings.HasPrefix(string(kh), want) {
		t.Fatalf("known_hosts = %q, want prefix %q", kh, want)
	}
	target := srv.User + "@" + srv.Host
	rsyncTo := func(key, dest string) []string {
		return []string{"rsync", "-rt", "-e", strings.Join(sshCmd(srv, key), " "), src + "/", target + ":" + dest}
	}

	// The upload must land inside mirror.
	if out, err := run(t, rsyncTo(key, "/")...); err != nil {
		t.Fatalf("rsync into rrsync dir: %v\n%s\nsshd log:\n%s", err, out, logTail(srv.Log))
	}
	for name, body := range files {
		got, err := os.ReadFile(filepath.Join(mirror, name))
		if err != nil || string(got) != body {
			t.Errorf("mirror/%s = %q, %v; want %q", name, got, err, body)
		}
	}

	tests := []struct {
		name    string
		argv    []string
		wantErr bool
		// wantOut must appear in the output.
		wantOut string
		// notOut must not appear in the output.
		notOut string
		// check, if set, verifies the file system afterwards.
		check func(t *testing.T)
	}{
		{
			name:    "shell command refused by rrsync",
			argv:    append(sshCmd(srv, key), target, "id"),
			wantErr: true,
			notOut:  "uid=",
		},
		{
			name:    "rsync outside restricted dir",
			argv:    rsyncTo(key, "/../escape"),
			wantErr: true,
			check: func(t *testing.T) {
				if _, err := os.Stat(filepath.Join(base, "escape")); !os.IsNotExist(err) {
					t.Errorf("escape directory exists outside mirror (stat err %v)", err)
				}
			},
		},
		{
			name:    "unknown key refused",
			argv:    append(sshCmd(srv, stranger), target, "true"),
			wantErr: true,
			wantOut: "Permission denied (publickey)",
		},
		{
			name:    "unknown key cannot rsync",
			argv:    rsyncTo(stranger, "/stranger"),
			wantErr: true,
			wantOut: "Permission denied (publickey)",
			check: func(t *testing.T) {
				if _, err := os.Stat(filepath.Join(mirror, "stranger")); !os.IsNotExist(err) {
					t.Errorf("stranger upload exists (stat err %v)", err)
				}
			},
		},
		{
			name: "rsync into subdirectory",
			argv: rsyncTo(key, "/nested/"),
			check: func(t *testing.T) {
				if _, err := os.Stat(filepath.Join(mirror, "nested", "sub", "b.txt")); err != nil {
					t.Error(err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(t, tt.argv...)
			t.Logf("err = %v, output:\n%s", err, out)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v\n%s", err, tt.wantErr, out)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("output lacks %q", tt.wantOut)
			}
			if tt.notOut != "" && strings.Contains(out, tt.notOut) {
				t.Errorf("output contains %q:\n%s", tt.notOut, out)
			}
			if tt.check != nil {
				tt.check(t)
			}
		})
	}
}

func TestHostKeyMismatchRefused(t *testing.T) {
	Require(t, "sshd", "ssh")
	dir := t.TempDir()
	key, pub, err := ClientKey(dir, "client")
	if err != nil {
		t.Fatal(err)
	}
	a := Start(t, Options{AuthorizedKeys: []string{pub}})
	b := Start(t, Options{AuthorizedKeys: []string{pub}})
	if a.Port == b.Port || a.KnownHosts == b.KnownHosts {
		t.Fatalf("servers share port or files: %+v %+v", a, b)
	}
	// b's known_hosts pins b's key for b's port; rewrite it for a's port so
	// the pinned key is wrong for a.
	kh, err := os.ReadFile(b.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(dir, "wrong_known_hosts")
	line := strings.Replace(string(kh), fmt.Sprintf(":%d ", b.Port), fmt.Sprintf(":%d ", a.Port), 1)
	if err := os.WriteFile(wrong, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := *a
	bad.KnownHosts = wrong
	if out, err := run(t, append(sshCmd(&bad, key), a.User+"@"+a.Host, "true")...); err == nil {
		t.Fatalf("ssh with wrong pinned host key succeeded:\n%s", out)
	}
	// The right pin works (unrestricted key, so a plain command runs).
	if out, err := run(t, append(sshCmd(a, key), a.User+"@"+a.Host, "echo", "ok")...); err != nil || strings.TrimSpace(out) != "ok" {
		t.Fatalf("ssh = %q, %v\nsshd log:\n%s", out, err, logTail(a.Log))
	}
}

func TestStartProcessStop(t *testing.T) {
	Require(t, "sshd")
	srv, stop, err := StartProcess(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("%s:%d", srv.Host, srv.Port)
	if !accepts(addr) {
		t.Fatalf("%s does not accept connections", addr)
	}
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if accepts(addr) {
		t.Errorf("%s still accepts connections after stop; sshd log:\n%s", addr, logTail(srv.Log))
	}
	if log, err := os.ReadFile(srv.Log); err != nil || !bytes.Contains(log, []byte("Server listening")) {
		t.Errorf("log %s: %v\n%s", srv.Log, err, log)
	}
}

func TestAddrInUseDetected(t *testing.T) {
	Require(t, "sshd")
	sshd, err := sshdPath()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	if os.Geteuid() == 0 {
		if err := os.MkdirAll(privsepDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	c := config{
		port:     port,
		hostKey:  filepath.Join(dir, "hostkey"),
		authKeys: filepath.Join(dir, "authorized_keys"),
		pidFile:  filepath.Join(dir, "sshd.pid"),
	}
	if _, err := WriteKey(c.hostKey, "host"); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgFile, []byte(c.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := launch(sshd, cfgFile, filepath.Join(dir, "sshd.log"), port)
	if err == nil {
		_ = p.stop()
		t.Fatal("sshd started on a port already in use")
	}
	if !errors.Is(err, errAddrInUse) {
		t.Fatalf("err = %v, want errAddrInUse", err)
	}
}

func TestClientKey(t *testing.T) {
	dir := t.TempDir()
	keyFile, pubLine, err := ClientKey(dir, "id")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(pem, []byte("-----BEGIN OPENSSH PRIVATE KEY-----")) {
		t.Errorf("not an OpenSSH private key:\n%s", pem)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(pubLine))
	if err != nil || len(rest) != 0 {
		t.Fatalf("parse %q: %v (rest %q)", pubLine, err, rest)
	}
	if !bytes.Equal(pub.Marshal(), signer.PublicKey().Marshal()) || pub.Type() != ssh.KeyAlgoED25519 {
		t.Errorf("public key %q does not match private key", pubLine)
	}
	onDisk, err := os.ReadFile(keyFile + ".pub")
	if err != nil || strings.TrimSpace(string(onDisk)) != pubLine {
		t.Errorf("%s.pub = %q, %v; want %q", keyFile, onDisk, err, pubLine)
	}
	for _, bad := range []string{"", "a/b"} {
		if _, _, err := ClientKey(dir, bad); err == nil {
			t.Errorf("ClientKey(%q) succeeded", bad)
		}
	}
}

func TestConfig(t *testing.T) {
	c := config{port: 2222, hostKey: "/tmp/a b/hk", authKeys: "/tmp/50%/ak", pidFile: "/p", perSource: true}
	s := c.String()
	for _, want := range []string{
		"Port 2222\n",
		"ListenAddress 127.0.0.1\n",
		`HostKey "/tmp/a b/hk"` + "\n",
		"AuthorizedKeysFile /tmp/50%%/ak\n",
		"MaxStartups 100:30:200\n",
		"PerSourceMaxStartups none\n",
		"StrictModes no\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("config lacks %q:\n%s", want, s)
		}
	}
	c.perSource = false
	if strings.Contains(c.String(), "PerSourceMaxStartups") {
		t.Error("PerSourceMaxStartups present although unsupported")
	}
}
