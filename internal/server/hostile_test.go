package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// TestHostile throws a corpus of hostile requests at the server: every one
// must be refused, and the library must be byte-identical afterwards.
func TestHostile(t *testing.T) {
	lib := mkLibrary(t, 2)
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("top secret\n"), 0o600)
	if err := os.Symlink(outside, filepath.Join(lib, "evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("centos9", filepath.Join(lib, "inner")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(lib, "centos9", "secret.vmdk")); err != nil {
		t.Fatal(err)
	}
	// auth timeout well above the oversized-packet check below, so a loaded
	// machine cannot confuse the two
	h := newHarness(t, lib, func(c *Config) { c.AuthTimeout = 6 * time.Second })
	pwn := filepath.Join(t.TempDir(), "pwn") // what a successful attack would create
	before := treeHash(t, lib)
	beforeOutside := treeHash(t, outside)
	count := 0
	refused := func(name string, ok bool, detail string) {
		t.Helper()
		count++
		if !ok {
			t.Errorf("%s: not refused: %s", name, detail)
		}
	}

	// 1. exec requests through the real OpenSSH client
	execs := []string{
		"id",
		"sh",
		"cat /etc/passwd",
		"ls /",
		"true",
		"rsync --server . " + pwn,                // push
		"rsync --server -logDtpre.iLsfxCIvu . /", // push, real client form
		"rsync --server -logDtpre.iLsfxCIvu --delete . /", // push with delete
		"rsync --server --sender -logDtpre.iLsfxCIvu . /; id",
		"rsync --server --sender -logDtpre.iLsfxCIvu . / && id",
		"rsync --server --sender -logDtpre.iLsfxCIvu . / | sh",
		"rsync --server --sender -logDtpre.iLsfxCIvu . $(id)",
		"rsync --server --sender -logDtpre.iLsfxCIvu . `id`",
		"rsync --server --sender -e sh -logDtpr . /",
		"rsync --server --sender --rsh=sh -logDtpr . /",
		"rsync --server --sender --rsync-path=sh -logDtpr . /",
		"rsync --server --sender -logDtpre.iLsfxCIvu --remove-source-files . /big.img",
		"rsync --server --sender -logDtpre.iLsfxCIvu --remove-sent-files . /big.img",
		"rsync --server --sender -logDtpre.iLsfxCIvu --files-from=/etc/passwd . /",
		"rsync --server --sender -logDtpre.iLsfxCIvu --files-from=- . /",
		"rsync --server --sender -logDtpre.iLsfxCIvu --log-file=" + pwn + " . /",
		"rsync --server --sender -logDtpre.iLsfxCIvu --write-batch=" + pwn + " . /",
		"rsync --server --sender -logDtpre.iLsfxCIvu --only-write-batch=" + pwn + " . /",
		"rsync --server --sender -logDtpre.iLsfxCIvu --config=/etc/passwd . /",
		"rsync --server --sender -logDtpre.iLsfxCIvu --daemon . /",
		"rsync --server --sender -logDtpre.iLsfxCIvu --debug=ALL . /",
		"rsync --server --sender -logDtpre.iLsfxCIvu --iconv=. . /",
		"rsync --server --sender -logDtpre.iLsfxCIvu --copy-links . /evil",
		"rsync --server --sender -logDtpre.iLsfxCIvu --copy-unsafe-links . /",
		"rsync --server --sender -Llogtpre.iLsfxCIvu . /evil",
		"rsync --server --sender -slogtpre.iLsfxCIvu . /",
		"rsync --server --sender -logDtpre.iLsfxCIvu . ../",
		"rsync --server --sender -logDtpre.iLsfxCIvu . /../../etc/passwd",
		"rsync --server --sender -logDtpre.iLsfxCIvu . centos9/../../etc",
		"rsync --server --sender -logDtpre.iLsfxCIvu . /evil/secret",
		"rsync --server --sender -logDtpre.iLsfxCIvu . evil",
		"rsync --server --sender -logDtpre.iLsfxCIvu . /inner/disk1.vmdk",
		"rsync --server --sender -logDtpre.iLsfxCIvu . /centos9/secret.vmdk",
		"rsync --server --sender -logDtpre.iLsfxCIvu . /etc/passwd",
		"rsync --server --sender -logDtpre.iLsfxCIvu . /nonexistent",
		"rsync --server --sender -logDtpre.iLsfxCIvu . /*",
		"rsync --server --sender -logDtpre.iLsfxCIvu . -big.img",
		"/usr/bin/rsync --server --sender -logDtpre.iLsfxCIvu . /",
		"rsync --server --sender -logDtpre.iLsfxCIvu . /big.img\nid",
		"rsync --server --sender -logDtpre.iLsfxCIvu --max-alloc=0 . /",
		"rsync --server --sender -logDtpre.iLsfxCIvu . " + strings.Repeat("a/", 50000),
	}
	for _, c := range execs {
		args := append(h.sshArgs(h.key), "syncer@127.0.0.1", c)
		out, err := run(t, args[0], args[1:]...)
		refused(fmt.Sprintf("exec %.60q", c), err != nil && strings.Contains(out, "clr-server: refused"), out)
	}

	// 2. real rsync client invocations that must fail
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "planted"), []byte("x"), 0o644)
	dst := t.TempDir()
	rsyncs := [][]string{
		{"-a", src + "/", "syncer@127.0.0.1:/"},                                // push to the root
		{"-a", src + "/", "syncer@127.0.0.1:/centos9/"},                        // push into a template
		{"-a", "--delete", src + "/", "syncer@127.0.0.1:/"},                    // push with delete
		{"-a", "--remove-source-files", "syncer@127.0.0.1:/big.img", dst},      // delete on the server
		{"-a", "syncer@127.0.0.1:/evil/secret", dst},                           // symlink escape
		{"-aL", "syncer@127.0.0.1:/evil/", dst},                                // follow links
		{"-a", "--copy-unsafe-links", "syncer@127.0.0.1:/", dst},               // follow unsafe links
		{"-a", "syncer@127.0.0.1:/../", dst},                                   // dot-dot
		{"-a", "--rsync-path=sh -c id", "syncer@127.0.0.1:/", dst},             // remote command
		{"-a", "--files-from=/dev/null", "--from0", "syncer@127.0.0.1:/", dst}, // in-band names
	}
	for _, a := range rsyncs {
		args := append([]string{"-e", h.rsyncE()}, a...)
		out, err := run(t, "rsync", args...)
		refused(fmt.Sprintf("rsync %q", a), err != nil, out)
	}
	if entries, _ := os.ReadDir(dst); len(entries) != 0 {
		t.Errorf("hostile pulls delivered files: %v", entries)
	}

	// 3. authentication: unknown key, password, keyboard-interactive, none
	{
		args := append(h.sshArgs(h.otherKey), "syncer@127.0.0.1", "rsync --server --sender -logDtpre.iLsfxCIvu . /")
		out, err := run(t, args[0], args[1:]...)
		refused("unknown key", err != nil && strings.Contains(out, "Permission denied"), out)
	}
	for name, auth := range map[string]ssh.AuthMethod{
		"password":             ssh.Password("syncer"),
		"keyboard-interactive": ssh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) { return []string{"x"}, nil }),
	} {
		_, err := ssh.Dial("tcp", h.addr.String(), &ssh.ClientConfig{User: "syncer", Auth: []ssh.AuthMethod{auth},
			HostKeyCallback: ssh.FixedHostKey(h.hostKey), Timeout: 5 * time.Second})
		refused(name+" auth", err != nil, "authenticated")
	}

	// 4. session requests other than a validated exec, and forwarding
	client, err := ssh.Dial("tcp", h.addr.String(), &ssh.ClientConfig{User: "syncer",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(h.signer)}, HostKeyCallback: ssh.FixedHostKey(h.hostKey), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	session := func() *ssh.Session {
		s, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	{
		s := session()
		err := s.RequestPty("xterm", 40, 80, ssh.TerminalModes{})
		refused("pty", err != nil, "pty granted")
		s.Close()
	}
	{
		s := session()
		var stderr bytes.Buffer
		s.Stderr = &stderr
		err := s.Shell()
		if err == nil {
			err = s.Wait()
		}
		refused("shell", err != nil && strings.Contains(stderr.String(), "no shell"), stderr.String())
		s.Close()
	}
	{
		s := session()
		var stderr bytes.Buffer
		s.Stderr = &stderr
		err := s.RequestSubsystem("sftp")
		if err == nil {
			err = s.Wait()
		}
		refused("sftp subsystem", err != nil, stderr.String())
		s.Close()
	}
	{
		s := session()
		refused("env", s.Setenv("LD_PRELOAD", "/tmp/x.so") != nil, "env accepted")
		s.Close()
	}
	{
		s := session()
		ok, err := s.SendRequest("x11-req", true, ssh.Marshal(struct {
			Single        bool
			Proto, Cookie string
			Screen        uint32
		}{false, "MIT-MAGIC-COOKIE-1", "00", 0}))
		refused("x11", err != nil || !ok, "x11 granted")
		s.Close()
	}
	{
		s := session()
		refused("agent forwarding", agent.RequestAgentForwarding(s) != nil, "agent forwarding granted")
		s.Close()
	}
	{
		_, err := client.Dial("tcp", "127.0.0.1:22")
		refused("local port forwarding (-L)", err != nil, "direct-tcpip opened")
	}
	{
		ln, err := client.Listen("tcp", "127.0.0.1:0")
		if ln != nil {
			ln.Close()
		}
		refused("remote port forwarding (-R)", err != nil, "tcpip-forward granted")
	}
	{
		_, _, err := client.OpenChannel("direct-streamlocal@openssh.com", nil)
		refused("unix socket forwarding", err != nil, "streamlocal opened")
	}
	{
		// a plain command from an x/crypto client
		s := session()
		var stderr bytes.Buffer
		s.Stderr = &stderr
		err := s.Run("id")
		refused("exec over x/crypto", err != nil && strings.Contains(stderr.String(), "refused"), stderr.String())
	}

	// 5. garbage and oversized packets on the wire
	garbage := map[string][]byte{
		"http request":        []byte("GET / HTTP/1.0\r\n\r\n"),
		"random bytes":        pseudoRandom(64<<10, 7),
		"oversized packet":    append(append([]byte("SSH-2.0-evil\r\n"), binary.BigEndian.AppendUint32(nil, 0xFFFFFFF0)...), 4),
		"packet of zeros":     append([]byte("SSH-2.0-evil\r\n"), make([]byte, 4096)...),
		"endless version":     bytes.Repeat([]byte("SSH-2.0-"), 8<<10),
		"nothing (slowloris)": nil,
	}
	for name, payload := range garbage {
		conn, err := net.Dial("tcp", h.addr.String())
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		conn.Write(payload)
		conn.SetDeadline(time.Now().Add(15 * time.Second))
		_, err = io.Copy(io.Discard, conn) // the server must close it (auth timeout is 6 s)
		var ne net.Error
		refused(name, err == nil || !(errors.As(err, &ne) && ne.Timeout()), "connection left open")
		if name == "oversized packet" && time.Since(start) > 3*time.Second {
			t.Errorf("oversized packet: closed after %v, not on the length check", time.Since(start))
		}
		conn.Close()
	}

	if count < 50 {
		t.Errorf("only %d hostile requests", count)
	}
	t.Logf("%d hostile requests refused", count)
	if after := treeHash(t, lib); after != before {
		t.Error("library changed")
	}
	if after := treeHash(t, outside); after != beforeOutside {
		t.Error("files outside the library changed")
	}
	for _, p := range []string{pwn} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was created", p)
		}
	}
	// and the server still serves
	dst2 := t.TempDir()
	if out, err := run(t, "rsync", "-a", "-e", h.rsyncE(), "syncer@127.0.0.1:/centos9/", dst2+"/"); err != nil {
		t.Fatalf("pull after the attacks: %v\n%s", err, out)
	}
	// refusals are logged with the key and the reason
	if logs := h.logs.String(); !strings.Contains(logs, "msg=refused") || !strings.Contains(logs, "site=site-a") || !strings.Contains(logs, "msg=\"auth refused\"") {
		t.Errorf("refusals not logged:\n%.2000s", logs)
	}
}

// One connection cannot hold an unbounded number of session channels.
func TestChannelLimit(t *testing.T) {
	h := newHarness(t, mkLibrary(t, 1), nil)
	client, err := ssh.Dial("tcp", h.addr.String(), &ssh.ClientConfig{User: "syncer",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(h.signer)}, HostKeyCallback: ssh.FixedHostKey(h.hostKey), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var refused int
	for i := 0; i < 3*maxChannelsPerConn; i++ {
		if _, err := client.NewSession(); err != nil {
			refused++
		}
	}
	if refused != 2*maxChannelsPerConn {
		t.Fatalf("%d of %d sessions refused, want %d", refused, 3*maxChannelsPerConn, 2*maxChannelsPerConn)
	}
}

// Connections that never authenticate from one address cannot lock out
// the others (review finding: 64 idle TCP connections refused every site).
func TestPreAuthFloodFromOneAddress(t *testing.T) {
	h := newHarness(t, mkLibrary(t, 1), func(c *Config) { c.AuthTimeout = 10 * time.Second; c.MaxConnections = 16 })
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	refused := 0
	for i := 0; i < 40; i++ { // bounded flood
		c, err := d.Dial("tcp", h.addr.String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		c.SetReadDeadline(time.Now().Add(3 * time.Second)) // admitted: the banner; refused: EOF
		if _, err := c.Read(make([]byte, 64)); err == io.EOF || (err != nil && !isTimeout(err)) {
			refused++
		}
	}
	if refused < 40-8 {
		t.Fatalf("only %d of 40 flood connections refused", refused)
	}
	// a site from another address still gets in
	if out, err := run(t, "rsync", "-a", "-e", h.rsyncE(), "syncer@127.0.0.1:/tools.iso", t.TempDir()); err != nil {
		t.Fatalf("legitimate pull locked out by the flood: %v\n%s", err, out)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
