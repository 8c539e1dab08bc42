// Package testsshd runs a real OpenSSH sshd on loopback for tests.
//
// It exists so that tests can exercise the genuine ssh/rsync/rrsync stack
// (for example `rsync -e ssh` into a directory restricted with rrsync via
// `command="/usr/bin/rrsync DIR",restrict` in authorized_keys) instead of an
// in-process imitation. Every server gets a fresh ed25519 host key, its own
// configuration, authorized_keys and log file, and listens only on
// 127.0.0.1 on a free port.
package testsshd

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Options configures a server started by Start or StartProcess.
type Options struct {
	// AuthorizedKeys are whole authorized_keys lines (options allowed, e.g.
	// command="/usr/bin/rrsync /dir",restrict ssh-ed25519 AAAA...).
	AuthorizedKeys []string
}

// Server describes a running sshd.
type Server struct {
	// Host is the address sshd listens on: "127.0.0.1".
	Host string
	// Port is the TCP port sshd listens on.
	Port int
	// User is the current user's name, which is the login user.
	User string
	// KnownHosts is the path of a known_hosts file pinning the host key as
	// "[127.0.0.1]:PORT ssh-ed25519 ...".
	KnownHosts string
	// Log is the path of sshd's -E log file.
	Log string
}

const (
	host = "127.0.0.1"
	// readyTimeout bounds how long one start attempt waits for sshd.
	readyTimeout = 10 * time.Second
	// stopTimeout is how long stop waits after SIGTERM before SIGKILL.
	stopTimeout = 5 * time.Second
	// attempts is how often the whole start is tried when the port was
	// taken between choosing it and sshd binding it.
	attempts = 3
	// privsepDir is the privilege-separation directory sshd requires when
	// run as root (Debian's _PATH_PRIVSEP_CHROOT_DIR).
	privsepDir = "/run/sshd"
)

// Start starts sshd for the test's lifetime (t.Cleanup stops it: SIGTERM
// then wait, SIGKILL after 5 s). Fails the test (t.Fatal) on error.
func Start(t testing.TB, opt Options) *Server {
	t.Helper()
	srv, stop, err := StartProcess(t.TempDir(), opt)
	if err != nil {
		t.Fatalf("testsshd: %v", err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("testsshd: %v", err)
		}
	})
	return srv
}

// StartProcess is the same as Start without testing.TB, for testscript
// commands: it returns a stop function. dir is a directory it may write
// into; the server's files go into a fresh subdirectory of it, so several
// servers may share dir. The stop function may be called more than once;
// later calls return the first call's result.
func StartProcess(dir string, opt Options) (*Server, func() error, error) {
	sshd, err := sshdPath()
	if err != nil {
		return nil, nil, err
	}
	login, err := currentUser()
	if err != nil {
		return nil, nil, err
	}
	if os.Geteuid() == 0 {
		if err := os.MkdirAll(privsepDir, 0o755); err != nil {
			return nil, nil, fmt.Errorf("create privilege separation directory: %w", err)
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("resolve dir: %w", err)
	}
	work, err := os.MkdirTemp(abs, "sshd-")
	if err != nil {
		return nil, nil, fmt.Errorf("create server dir: %w", err)
	}

	hostKey := filepath.Join(work, "hostkey")
	hostPub, err := WriteKey(hostKey, "testsshd host key")
	if err != nil {
		return nil, nil, fmt.Errorf("write host key: %w", err)
	}
	authKeys := filepath.Join(work, "authorized_keys")
	var ak strings.Builder
	for _, line := range opt.AuthorizedKeys {
		line = strings.TrimSpace(line)
		if strings.ContainsAny(line, "\r\n") {
			return nil, nil, fmt.Errorf("authorized key line contains a newline: %q", line)
		}
		ak.WriteString(line)
		ak.WriteByte('\n')
	}
	if err := os.WriteFile(authKeys, []byte(ak.String()), 0o600); err != nil {
		return nil, nil, fmt.Errorf("write authorized_keys: %w", err)
	}

	cfg := config{
		hostKey:  hostKey,
		authKeys: authKeys,
		pidFile:  filepath.Join(work, "sshd.pid"),
	}
	cfg.perSource, err = supportsPerSource(sshd, work, cfg)
	if err != nil {
		return nil, nil, err
	}

	logFile := filepath.Join(work, "sshd.log")
	cfgFile := filepath.Join(work, "sshd_config")
	var lastErr error
	for range attempts {
		port, err := freePort()
		if err != nil {
			return nil, nil, err
		}
		cfg.port = port
		if err := os.WriteFile(cfgFile, []byte(cfg.String()), 0o600); err != nil {
			return nil, nil, fmt.Errorf("write sshd_config: %w", err)
		}
		p, err := launch(sshd, cfgFile, logFile, port)
		if err != nil {
			lastErr = err
			if errors.Is(err, errAddrInUse) {
				continue
			}
			return nil, nil, err
		}
		knownHosts := filepath.Join(work, "known_hosts")
		line := fmt.Sprintf("[%s]:%d %s", host, port, bytes.TrimSpace(ssh.MarshalAuthorizedKey(hostPub)))
		if err := os.WriteFile(knownHosts, []byte(line+"\n"), 0o600); err != nil {
			_ = p.stop()
			return nil, nil, fmt.Errorf("write known_hosts: %w", err)
		}
		srv := &Server{
			Host:       host,
			Port:       port,
			User:       login,
			KnownHosts: knownHosts,
			Log:        logFile,
		}
		return srv, p.stop, nil
	}
	return nil, nil, fmt.Errorf("start sshd: %d attempts failed: %w", attempts, lastErr)
}

// ClientKey writes a fresh ed25519 key pair into dir (OpenSSH private key
// format, mode 0600, and KEY.pub) and returns the private key path and the
// public key as an authorized_keys line (no options).
func ClientKey(dir, name string) (keyFile, pubLine string, err error) {
	if name == "" || strings.ContainsRune(name, filepath.Separator) {
		return "", "", fmt.Errorf("invalid key name %q", name)
	}
	keyFile = filepath.Join(dir, name)
	if abs, err := filepath.Abs(keyFile); err == nil {
		keyFile = abs
	}
	pub, err := WriteKey(keyFile, "testsshd client key "+name)
	if err != nil {
		return "", "", err
	}
	pubLine = string(bytes.TrimSpace(ssh.MarshalAuthorizedKey(pub)))
	if err := os.WriteFile(keyFile+".pub", []byte(pubLine+"\n"), 0o644); err != nil {
		return "", "", fmt.Errorf("write public key: %w", err)
	}
	return keyFile, pubLine, nil
}

// Require fails the test if any tool (looked up on PATH, and for "sshd"
// also /usr/sbin/sshd) is missing when CI=true, and skips it otherwise
// (with the missing tool named).
func Require(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if tool == "sshd" {
			if _, err := sshdPath(); err != nil {
				missing = append(missing, tool)
			}
			continue
		}
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("testsshd: missing tools: %s", strings.Join(missing, ", "))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// WriteKey generates an ed25519 key, writes its private half to path in
// OpenSSH format with mode 0600 and returns the public half.
func WriteKey(path, comment string) (ssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, fmt.Errorf("write private key: %w", err)
	}
	// WriteFile keeps the mode of an existing file; enforce 0600 since
	// ssh refuses private keys readable by others.
	if err := os.Chmod(path, 0o600); err != nil {
		return nil, fmt.Errorf("chmod private key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("convert public key: %w", err)
	}
	return sshPub, nil
}

// sshdPath returns an absolute path of sshd: from PATH, else
// /usr/sbin/sshd. sshd refuses to re-exec itself from a relative path.
func sshdPath() (string, error) {
	if p, err := exec.LookPath("sshd"); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs, nil
		}
	}
	const fallback = "/usr/sbin/sshd"
	if fi, err := os.Stat(fallback); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return fallback, nil
	}
	return "", errors.New("sshd not found on PATH or at /usr/sbin/sshd")
}

// currentUser returns the login name of the current user.
func currentUser() (string, error) {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username, nil
	}
	if name := os.Getenv("USER"); name != "" {
		return name, nil
	}
	return "", errors.New("cannot determine the current user name")
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	return port, nil
}

// config is an sshd_config for one server.
type config struct {
	port      int
	hostKey   string
	authKeys  string
	pidFile   string
	perSource bool
}

// String renders the configuration file.
func (c config) String() string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("Port %d", c.port)
	line("ListenAddress %s", host)
	line("HostKey %s", quote(c.hostKey))
	// AuthorizedKeysFile undergoes %-token expansion.
	line("AuthorizedKeysFile %s", quote(strings.ReplaceAll(c.authKeys, "%", "%%")))
	line("PidFile %s", quote(c.pidFile))
	line("UsePAM no")
	line("StrictModes no")
	line("PubkeyAuthentication yes")
	line("PasswordAuthentication no")
	line("KbdInteractiveAuthentication no")
	line("PermitRootLogin prohibit-password")
	line("LogLevel VERBOSE")
	line("PermitUserEnvironment no")
	line("AllowTcpForwarding no")
	line("X11Forwarding no")
	line("PrintMotd no")
	line("UseDNS no")
	line("MaxStartups 100:30:200")
	if c.perSource {
		line("PerSourceMaxStartups none")
	}
	return b.String()
}

// quote double-quotes a path for sshd_config when it contains blanks.
func quote(s string) string {
	if strings.ContainsAny(s, " \t") {
		return `"` + s + `"`
	}
	return s
}

var (
	perSourceMu    sync.Mutex
	perSourceCache = map[string]bool{}
)

// supportsPerSource reports whether the installed sshd accepts
// PerSourceMaxStartups (OpenSSH 8.5 and later), checked once per sshd
// binary with `sshd -t` on a configuration written into work.
func supportsPerSource(sshd, work string, c config) (bool, error) {
	perSourceMu.Lock()
	defer perSourceMu.Unlock()
	if ok, found := perSourceCache[sshd]; found {
		return ok, nil
	}
	probe := filepath.Join(work, "sshd_config.probe")
	defer os.Remove(probe)
	c.port = 22
	c.perSource = true
	if err := os.WriteFile(probe, []byte(c.String()), 0o600); err != nil {
		return false, fmt.Errorf("write probe config: %w", err)
	}
	out, err := exec.Command(sshd, "-t", "-f", probe).CombinedOutput()
	if err == nil {
		perSourceCache[sshd] = true
		return true, nil
	}
	if !bytes.Contains(out, []byte("PerSourceMaxStartups")) {
		return false, fmt.Errorf("sshd -t rejected the configuration: %v: %s", err, bytes.TrimSpace(out))
	}
	perSourceCache[sshd] = false
	return false, nil
}

// errAddrInUse marks a start that failed because the port was taken.
var errAddrInUse = errors.New("address already in use")

// process is a running sshd.
type process struct {
	cmd      *exec.Cmd
	done     chan struct{} // closed when cmd.Wait returned
	waitErr  error         // valid after done is closed
	stopOnce sync.Once
	stopErr  error
}

// launch starts sshd with cfgFile, logging to logFile, and waits until it
// accepts connections on port and has logged "Server listening".
func launch(sshd, cfgFile, logFile string, port int) (*process, error) {
	if err := os.Remove(logFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove old log: %w", err)
	}
	// sshd opens its -E file with O_APPEND too; early errors written to
	// stderr before that happens land in the same file.
	lf, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create log: %w", err)
	}
	defer lf.Close()

	cmd := exec.Command(sshd, "-D", "-E", logFile, "-f", cfgFile)
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start sshd: %w", err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()

	addr := net.JoinHostPort(host, strconv.Itoa(port))
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-p.done:
			tail := logTail(logFile)
			err := fmt.Errorf("sshd exited early (%v); log tail:\n%s", p.waitErr, tail)
			if strings.Contains(tail, "Address already in use") {
				return nil, fmt.Errorf("%w: %w", errAddrInUse, err)
			}
			return nil, err
		default:
		}
		if listening(logFile) && accepts(addr) {
			return p, nil
		}
		if time.Now().After(deadline) {
			_ = p.stop()
			return nil, fmt.Errorf("sshd not ready on %s after %v; log tail:\n%s", addr, readyTimeout, logTail(logFile))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// listening reports whether sshd has logged that it listens.
func listening(logFile string) bool {
	b, err := os.ReadFile(logFile)
	return err == nil && bytes.Contains(b, []byte("Server listening"))
}

// accepts reports whether addr accepts TCP connections.
func accepts(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// logTail returns the last lines of the log file.
func logTail(logFile string) string {
	b, err := os.ReadFile(logFile)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", logFile, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	const keep = 20
	if len(lines) > keep {
		lines = lines[len(lines)-keep:]
	}
	return strings.Join(lines, "\n")
}

// stop terminates sshd with SIGTERM, waits, and uses SIGKILL after
// stopTimeout. It is idempotent.
//
// sshd forks a child per connection. The child stays in sshd's process
// group until it has re-executed itself and called setsid; until then it
// still holds the listening socket, and after the re-exec it reopens the
// -E log. So that neither the port nor the directory is touched once stop
// returns, the listener is frozen with SIGSTOP while its children are
// recorded, and stop waits for those children and for every process left
// in the group, not only for sshd itself.
func (p *process) stop() error {
	p.stopOnce.Do(func() { p.stopErr = p.terminate() })
	return p.stopErr
}

func (p *process) terminate() error {
	select {
	case <-p.done:
		return fmt.Errorf("sshd had already exited: %v", p.waitErr)
	default:
	}
	deadline := time.Now().Add(stopTimeout)
	pid := p.cmd.Process.Pid
	pgid := -pid

	// Freeze the listener so that it forks no more children, then record
	// the ones it has (some may have left the group already).
	var children []procID
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err == nil {
		for time.Now().Before(deadline) && !stopped(pid) {
			time.Sleep(2 * time.Millisecond)
		}
		children = childrenOf(pid)
	}
	for _, c := range children {
		c.signal(syscall.SIGTERM)
	}
	if err := syscall.Kill(pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		_ = syscall.Kill(pgid, syscall.SIGCONT)
		return fmt.Errorf("signal sshd: %w", err)
	}
	_ = syscall.Kill(pgid, syscall.SIGCONT)

	var killed int
	select {
	case <-p.done:
	case <-time.After(time.Until(deadline)):
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-p.done
		killed++
	}

	// A connection accepted between SIGSTOP and the listener's exit may
	// have forked a child that is still in the group: terminate those too.
	signalled := map[procID]bool{}
	for {
		members := groupMembers(pid)
		for _, c := range children {
			if c.alive() && !slices.Contains(members, c) {
				members = append(members, c)
			}
		}
		if len(members) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, c := range members {
				c.signal(syscall.SIGKILL)
				killed++
			}
			deadline = time.Now().Add(time.Second)
			children = nil
			for len(groupMembers(pid)) > 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			break
		}
		for _, c := range members {
			if !signalled[c] {
				signalled[c] = true
				c.signal(syscall.SIGTERM)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if killed > 0 {
		return fmt.Errorf("sshd did not exit within %v of SIGTERM; killed %d process(es)", stopTimeout, killed)
	}
	return nil
}

// procID identifies a process across pid reuse by its start time.
type procID struct {
	pid   int
	start string
}

// procStat returns the state, parent pid and start time of pid from
// /proc/PID/stat; ok is false if it cannot be read (no such process, or no
// /proc on this system).
func procStat(pid int) (state byte, ppid, pgrp int, start string, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, 0, "", false
	}
	// The command name (field 2) is parenthesised and may contain blanks
	// and parentheses; the remaining fields follow the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, 0, "", false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), f[1] field 4 (ppid), f[2] field 5 (pgrp),
	// f[19] field 22 (starttime).
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, 0, "", false
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgrp, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil {
		return 0, 0, 0, "", false
	}
	return f[0][0], ppid, pgrp, f[19], true
}

// dead reports whether a /proc state letter means the process has exited
// (a zombie has released its files and sockets).
func dead(state byte) bool { return state == 'Z' || state == 'X' || state == 'x' }

// stopped reports whether pid is in the stopped state (or gone).
func stopped(pid int) bool {
	state, _, _, _, ok := procStat(pid)
	return !ok || state == 'T' || state == 't' || dead(state)
}

// childrenOf lists the live children of pid. It returns nil where /proc
// is unavailable.
func childrenOf(pid int) []procID {
	return scan(func(ppid, _ int) bool { return ppid == pid })
}

// groupMembers lists the live processes in process group pgid. It returns
// nil where /proc is unavailable.
func groupMembers(pgid int) []procID {
	return scan(func(_, pgrp int) bool { return pgrp == pgid })
}

// scan lists the live processes whose parent and group match.
func scan(match func(ppid, pgrp int) bool) []procID {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []procID
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if state, ppid, pgrp, start, ok := procStat(n); ok && !dead(state) && match(ppid, pgrp) {
			out = append(out, procID{pid: n, start: start})
		}
	}
	return out
}

// alive reports whether the recorded process still runs (a zombie counts
// as gone).
func (c procID) alive() bool {
	state, _, _, start, ok := procStat(c.pid)
	return ok && start == c.start && !dead(state)
}

// signal sends sig to the recorded process if it is still the same one.
func (c procID) signal(sig syscall.Signal) {
	if c.alive() {
		_ = syscall.Kill(c.pid, sig)
	}
}
