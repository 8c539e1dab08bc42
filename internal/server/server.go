// Package server is clr-server: an SSH server (golang.org/x/crypto/ssh)
// that exports a template library read-only to rsync clients, the way
// OpenSSH with `restrict,command="rrsync -ro DIR"` would, in one binary.
//
// Invariants:
//   - only public-key authentication, against a reloadable authorized_keys
//     file whose comments name the sites in logs;
//   - only "session" channels, and in them only one "exec" request whose
//     command is a validated `rsync --server --sender` invocation
//     ([ParseCommand]) on paths confined to the library ([ConfinePaths]);
//     shells, ptys, subsystems, env, agent and X11 forwarding, port
//     forwarding and global requests are refused;
//   - rsync runs without a shell, with a fixed binary, a minimal
//     environment, in the library root, in its own process group, and is
//     killed when the client goes away;
//   - every refusal is logged with the key and the reason, and the client
//     sees the reason on its stderr.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// Config configures a Server.
type Config struct {
	Library     string     // library root
	HostKey     ssh.Signer // persistent host key
	Keys        *Keys      // authorized keys
	Rsync       string     // rsync binary (absolute path)
	ConfineRoot bool       // rsync supports --confine-root (>= 3.5.0)
	// Sandbox, if set, is this program's own executable: rsync is then
	// started through it under Landlock (see SandboxMain).
	Sandbox string

	MaxSessions     int           // concurrent transfers; 0 -> 16
	MaxConnections  int           // concurrent connections, authenticated or not; 0 -> 4*MaxSessions
	MaxPreAuthPerIP int           // connections of one source address still authenticating; 0 -> 8
	AuthTimeout     time.Duration // handshake and authentication; 0 -> 20s
	IdleTimeout     time.Duration // no traffic at all on a connection; 0 -> 10m

	Ciphers []string // nil: DefaultCiphers

	Logger *slog.Logger // nil: discard
}

// maxChannelsPerConn bounds the session channels one connection may hold
// open at once (rsync uses one; OpenSSH multiplexing a few).
const maxChannelsPerConn = 4

// DefaultCiphers are the SSH ciphers clr-server offers unless configured.
var DefaultCiphers = []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}

// Server serves one library. Create it with New.
type Server struct {
	cfg  Config
	root *os.Root
	log  *slog.Logger
	ssh  *ssh.ServerConfig

	sessions chan struct{} // transfer slots
	conns    chan struct{} // connection slots

	mu        sync.Mutex
	preauth   map[string]int // source IP -> connections not yet authenticated
	lastFull  time.Time      // last "too many connections" log line
	listeners map[net.Listener]struct{}
	open      map[*ssh.ServerConn]*connState
	draining  bool
	wg        sync.WaitGroup // running connections

	// killCtx is cancelled when shutdown gives up waiting: running rsync
	// processes are then killed.
	killCtx  context.Context
	kill     context.CancelFunc
	transfer atomic.Int64 // running transfers (for tests and logs)
}

// New checks cfg and opens the library root.
func New(cfg Config) (*Server, error) {
	if cfg.HostKey == nil || cfg.Keys == nil || cfg.Rsync == "" {
		return nil, errors.New("server: host key, authorized keys and rsync are required")
	}
	root, err := os.OpenRoot(cfg.Library)
	if err != nil {
		return nil, fmt.Errorf("library: %w", err)
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 16
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = 4 * cfg.MaxSessions
	}
	if cfg.MaxPreAuthPerIP <= 0 {
		cfg.MaxPreAuthPerIP = 8
	}
	if cfg.AuthTimeout <= 0 {
		cfg.AuthTimeout = 20 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg: cfg, root: root, log: log,
		sessions:  make(chan struct{}, cfg.MaxSessions),
		conns:     make(chan struct{}, cfg.MaxConnections),
		listeners: map[net.Listener]struct{}{},
		preauth:   map[string]int{},
		open:      map[*ssh.ServerConn]*connState{},
	}
	s.killCtx, s.kill = context.WithCancel(context.Background())
	s.ssh = &ssh.ServerConfig{
		MaxAuthTries:  6,
		ServerVersion: "SSH-2.0-clr-server",
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			site, ok := cfg.Keys.Lookup(key)
			if !ok {
				return nil, fmt.Errorf("unknown key %s", ssh.FingerprintSHA256(key))
			}
			return &ssh.Permissions{
				Extensions: map[string]string{"site": site.Name, "fp": site.Fingerprint},
				ExtraData:  map[any]any{"key": key},
			}, nil
		},
		AuthLogCallback: func(meta ssh.ConnMetadata, method string, err error) {
			if err != nil && method != "none" {
				log.Warn("auth refused", "remote", meta.RemoteAddr().String(), "user", meta.User(), "method", method, "reason", err.Error())
			}
		},
	}
	// Only AES-GCM by default: the client picks the first of its own
	// ciphers the server offers, OpenSSH clients list chacha20-poly1305
	// first, and x/crypto's ChaCha20 (no assembly) is the slowest cipher
	// through rsync while its AES-GCM (AES-NI) is the fastest
	// (research/delta.md 2.8; docs/benchmarks.md: 0.74x sshd's throughput
	// with chacha20, 1.0x with aes128-gcm). Every OpenSSH since 6.2 has it.
	s.ssh.Ciphers = cfg.Ciphers
	if len(s.ssh.Ciphers) == 0 {
		s.ssh.Ciphers = DefaultCiphers
	}
	s.ssh.AddHostKey(cfg.HostKey)
	return s, nil
}

// admit counts a new connection from ip against MaxPreAuthPerIP, so one
// address cannot hold every slot with connections that never authenticate
// (as OpenSSH's MaxStartups/PerSourceMaxStartups).
func (s *Server) admit(ip string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.preauth[ip] >= s.cfg.MaxPreAuthPerIP {
		return false
	}
	s.preauth[ip]++
	return true
}

func (s *Server) authDone(ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.preauth[ip]--; s.preauth[ip] <= 0 {
		delete(s.preauth, ip)
	}
}

// logFull logs a refused connection at most once a second: a flood must
// not flood the log too.
func (s *Server) logFull(conn net.Conn, reason string) {
	s.mu.Lock()
	now := time.Now()
	quiet := now.Sub(s.lastFull) < time.Second
	if !quiet {
		s.lastFull = now
	}
	s.mu.Unlock()
	if !quiet {
		s.log.Warn("connection refused", "remote", conn.RemoteAddr().String(), "reason", reason, "max_connections", s.cfg.MaxConnections, "max_preauth_per_ip", s.cfg.MaxPreAuthPerIP)
	}
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return c.RemoteAddr().String()
}

type keyCtx struct{}

// connState is what shutdown needs to know of a connection.
type connState struct{ transfers atomic.Int32 }

type stateCtx struct{}

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// Running reports the number of transfers in progress.
func (s *Server) Running() int { return int(s.transfer.Load()) }

// Serve accepts connections on ln until it is closed or Shutdown is
// called; it then returns nil.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return errors.New("server: shutting down")
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	for {
		conn, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			draining := s.draining
			delete(s.listeners, ln)
			s.mu.Unlock()
			if draining || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		ip := remoteIP(conn)
		if !s.admit(ip) {
			s.logFull(conn, "too many unauthenticated connections from this address")
			conn.Close()
			continue
		}
		select {
		case s.conns <- struct{}{}:
		default:
			s.authDone(ip)
			s.logFull(conn, "too many connections")
			conn.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.conns }()
			s.handleConn(conn)
		}()
	}
}

// Shutdown stops accepting connections and waits for running transfers to
// finish. When ctx ends first, the remaining rsync processes are killed and
// their connections closed; Shutdown then returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		// connections without a running transfer have nothing to finish
		s.mu.Lock()
		for c, st := range s.open {
			if st.transfers.Load() == 0 {
				c.Close()
			}
		}
		s.mu.Unlock()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
		case <-tick.C:
			continue
		}
		break
	}
	s.kill()
	// let the killed transfers report their exit status before the
	// connections go
	for deadline := time.Now().Add(5 * time.Second); s.Running() > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	s.mu.Lock()
	for c := range s.open {
		c.Close()
	}
	s.mu.Unlock()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.log.Error("connections still open 10 s after they were closed")
	}
	return ctx.Err()
}

// idleConn closes a connection on which nothing moved for the timeout:
// every read and write pushes the deadline forward.
type idleConn struct {
	net.Conn
	idle atomic.Int64 // ns; 0 while the handshake deadline applies
}

func (c *idleConn) Read(p []byte) (int, error) {
	if d := time.Duration(c.idle.Load()); d > 0 {
		c.Conn.SetDeadline(time.Now().Add(d))
	}
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	if d := time.Duration(c.idle.Load()); d > 0 {
		c.Conn.SetDeadline(time.Now().Add(d))
	}
	return c.Conn.Write(p)
}

func (s *Server) handleConn(nc net.Conn) {
	remote := nc.RemoteAddr().String()
	conn := &idleConn{Conn: nc}
	nc.SetDeadline(time.Now().Add(s.cfg.AuthTimeout))
	sc, chans, reqs, err := ssh.NewServerConn(conn, s.ssh)
	s.authDone(remoteIP(nc))
	if err != nil {
		s.log.Info("connection closed before authentication", "remote", remote, "reason", err.Error())
		nc.Close()
		return
	}
	nc.SetDeadline(time.Time{})
	conn.idle.Store(int64(s.cfg.IdleTimeout))
	conn.Conn.SetDeadline(time.Now().Add(s.cfg.IdleTimeout))
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		sc.Close()
		return
	}
	state := &connState{}
	s.open[sc] = state
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.open, sc)
		s.mu.Unlock()
		sc.Close()
	}()
	site := sc.Permissions.Extensions["site"]
	fp := sc.Permissions.Extensions["fp"]
	log := s.log.With("site", site, "key", fp, "remote", remote)
	log.Debug("authenticated", "user", sc.User())

	go func() {
		for r := range reqs {
			// tcpip-forward (ssh -R) and every other global request
			log.Warn("refused", "request", r.Type, "reason", "global requests are not allowed")
			if r.WantReply {
				r.Reply(false, nil)
			}
		}
	}()
	// connCtx ends when the connection does: a client that goes away
	// takes its rsync with it.
	connCtx, cancel := context.WithCancel(context.WithValue(context.WithValue(s.killCtx, keyCtx{}, sc.Permissions.ExtraData["key"]), stateCtx{}, state))
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var open atomic.Int32 // session channels open on this connection
	for nch := range chans {
		if nch.ChannelType() != "session" {
			// direct-tcpip (ssh -L/-W), x11, forwarded agent channels...
			log.Warn("refused", "channel", nch.ChannelType(), "reason", "only session channels are allowed")
			nch.Reject(ssh.Prohibited, "clr-server: only rsync pulls are allowed, no forwarding")
			continue
		}
		if open.Load() >= maxChannelsPerConn {
			log.Warn("refused", "channel", "session", "reason", "too many channels on one connection")
			nch.Reject(ssh.ResourceShortage, "clr-server: too many sessions on one connection")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			continue
		}
		open.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer open.Add(-1)
			s.session(connCtx, ch, creqs, log)
		}()
	}
}

// refuse tells the client why on its stderr and ends the channel with
// exit status 1.
func refuse(ch ssh.Channel, log *slog.Logger, what, reason string) {
	log.Warn("refused", "request", what, "reason", reason)
	fmt.Fprintf(ch.Stderr(), "clr-server: refused: %s\n", reason)
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{1}))
	ch.Close()
}

func (s *Server) session(ctx context.Context, ch ssh.Channel, reqs <-chan *ssh.Request, log *slog.Logger) {
	defer ch.Close()
	// Whatever ends the session, its request queue must keep being read:
	// x/crypto blocks the whole connection (idle timeout and shutdown
	// included) once 16 unread requests pile up on one channel.
	defer func() { go ssh.DiscardRequests(reqs) }()
	for r := range reqs {
		switch r.Type {
		case "exec":
			var payload struct{ Command string }
			if err := ssh.Unmarshal(r.Payload, &payload); err != nil {
				r.Reply(false, nil)
				refuse(ch, log, "exec", "malformed exec request")
				return
			}
			r.Reply(true, nil)
			s.exec(ctx, ch, reqs, payload.Command, log)
			return
		case "env":
			// OpenSSH clients send LANG and LC_* (SendEnv): ignored.
			r.Reply(false, nil)
		case "shell":
			r.Reply(true, nil)
			refuse(ch, log, "shell", "no shell: only rsync pulls are allowed")
			return
		case "subsystem":
			r.Reply(true, nil)
			refuse(ch, log, "subsystem", "no subsystems (sftp): only rsync pulls are allowed")
			return
		default:
			// pty-req, x11-req, auth-agent-req@openssh.com, signal,
			// window-change, keepalive@openssh.com ...
			if r.Type != "keepalive@openssh.com" {
				log.Warn("refused", "request", r.Type, "reason", "not allowed")
			}
			if r.WantReply {
				r.Reply(false, nil)
			}
		}
	}
}

// exec validates the command and runs rsync for it.
func (s *Server) exec(ctx context.Context, ch ssh.Channel, reqs <-chan *ssh.Request, cmdline string, log *slog.Logger) {
	opts := ValidateOptions{}
	if s.cfg.ConfineRoot {
		opts.ConfineRoot = s.root.Name()
	}
	if s.isDraining() {
		refuse(ch, log, "exec", "server shutting down, try again later")
		return
	}
	if key := ctx.Value(keyCtx{}); key != nil {
		if _, ok := s.cfg.Keys.Lookup(key.(ssh.PublicKey)); !ok {
			refuse(ch, log, "exec", "key no longer authorized")
			return
		}
	}
	cmd, err := ParseCommand(cmdline, opts)
	if err == nil {
		err = ConfinePaths(s.root, cmd.Paths)
	}
	if err != nil {
		refuse(ch, log.With("command", truncate(cmdline, 200)), "exec", err.Error())
		return
	}
	select {
	case s.sessions <- struct{}{}:
		defer func() { <-s.sessions }()
	default:
		refuse(ch, log, "exec", fmt.Sprintf("server busy: %d transfers running, try again later", s.cfg.MaxSessions))
		return
	}
	s.transfer.Add(1)
	defer s.transfer.Add(-1)
	if st, ok := ctx.Value(stateCtx{}).(*connState); ok {
		st.transfers.Add(1)
		defer st.transfers.Add(-1)
	}
	go ssh.DiscardRequests(reqs) // signals, window-change...: ignored

	start := time.Now()
	bin, argv := s.cfg.Rsync, cmd.Args
	if s.cfg.Sandbox != "" {
		bin, argv = s.cfg.Sandbox, append([]string{SandboxArg, s.root.Name(), s.cfg.Rsync}, cmd.Args...)
	}
	proc := exec.CommandContext(ctx, bin, argv...)
	proc.Dir = s.root.Name()
	proc.Env = []string{"PATH=/usr/bin:/bin", "LANG=C"}
	proc.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	proc.Cancel = func() error { return syscall.Kill(-proc.Process.Pid, syscall.SIGKILL) }
	proc.WaitDelay = 5 * time.Second
	out := &countWriter{w: ch}
	proc.Stdout = out
	proc.Stderr = ch.Stderr()
	stdin, err := proc.StdinPipe()
	if err != nil {
		refuse(ch, log, "exec", "internal error")
		return
	}
	if err := proc.Start(); err != nil {
		log.Error("rsync did not start", "err", err)
		refuse(ch, log, "exec", "rsync could not be started")
		return
	}
	// Not waited for: the client closes its side only after the session
	// ends, so waiting for EOF here would hang every transfer
	// (research/delta.md 1.3). When rsync exits the pipe is closed.
	in := &countReader{r: ch}
	go func() {
		io.Copy(stdin, in)
		stdin.Close() // the client sent EOF or went away: so does rsync's stdin
	}()
	err = proc.Wait()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		code = 255
		if errors.As(err, &ee) {
			code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int(ws.Signal()) // as a shell reports it; never 0
			}
		}
	}
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
	level := slog.LevelInfo
	if code != 0 {
		level = slog.LevelWarn
	}
	log.Log(context.Background(), level, "transfer",
		"path", strings.Join(cmd.Paths, " "), "bytes_sent", out.n.Load(), "bytes_received", in.n.Load(),
		"duration", time.Since(start).Round(time.Millisecond).String(), "rsync_exit", code)
}

type countWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

type countReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
