// Package servercmd implements clr-server: a read-only rsync-over-SSH
// export of a template library.
package servercmd

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"

	"github.com/clr-suite/clr/internal/cli"
	"github.com/clr-suite/clr/internal/fsutil"
	"github.com/clr-suite/clr/internal/server"
)

// Main runs clr-server and returns its exit code. When the process is the
// sandbox clr-server re-executes around rsync, Main never returns.
func Main(env cli.Env) int {
	server.SandboxMain()
	return cli.Run(env, newApp(env), nil)
}

func newApp(env cli.Env) *ucli.App {
	return &ucli.App{
		Name:      "clr-server",
		Usage:     "export a template library read-only to rsync clients over SSH",
		ArgsUsage: " ",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "listen", Value: ":2222", Usage: "`ADDR` to listen on"},
			&ucli.StringFlag{Name: "library", Usage: "library `DIR` to export", Required: true},
			&ucli.StringFlag{Name: "authorized-keys", Usage: "OpenSSH authorized_keys `FILE`; the key comment names the site in logs (SIGHUP re-reads it)", Required: true},
			&ucli.StringFlag{Name: "host-key", Usage: "ed25519 host key `FILE`, generated on first start", Required: true},
			&ucli.StringFlag{Name: "rsync", Value: "/usr/bin/rsync", Usage: "rsync `BINARY` to run as sender"},
			&ucli.IntFlag{Name: "max-sessions", Value: 16, Usage: "concurrent transfers"},
			&ucli.IntFlag{Name: "max-connections", Value: 64, Usage: "concurrent connections, authenticated or not"},
			&ucli.IntFlag{Name: "max-preauth-per-ip", Value: 8, Usage: "connections from one address still authenticating (raise for many sites behind one NAT)"},
			&ucli.DurationFlag{Name: "auth-timeout", Value: 20 * time.Second, Usage: "time to complete the SSH handshake and authentication"},
			&ucli.DurationFlag{Name: "idle-timeout", Value: 10 * time.Minute, Usage: "close a connection with no traffic for this long"},
			&ucli.DurationFlag{Name: "shutdown-grace", Value: 2 * time.Minute, Usage: "on SIGTERM, how long running transfers may finish"},
			&ucli.StringFlag{Name: "ciphers", Value: strings.Join(server.DefaultCiphers, ","), Usage: "SSH ciphers to offer, comma-separated (chacha20-poly1305@openssh.com is much slower in Go)"},
			&ucli.BoolFlag{Name: "no-sandbox", Usage: "do not run rsync in a Landlock domain confined to the library"},
			&ucli.BoolFlag{Name: "allow-unconfined", Usage: "run with an rsync without --confine-root (< 3.5.0): filter files outside the library become readable"},
			&ucli.StringFlag{Name: "pid-file", Usage: "write the process id to `FILE` once listening (removed on exit)"},
			&ucli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "more log output (repeatable)", Count: new(int)},
			&ucli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "less log output (repeatable)", Count: new(int)},
		},
		Action: func(c *ucli.Context) error {
			if c.NArg() > 0 {
				return cli.Usagef("clr-server takes no arguments")
			}
			// transfers and refusals are logged at info: one line each
			log := env.Logger(1+max(c.Count("verbose"), 0), max(c.Count("quiet"), 0))
			library, err := filepath.Abs(c.String("library"))
			if err != nil {
				return err
			}
			if st, err := os.Stat(library); err != nil || !st.IsDir() {
				return fmt.Errorf("library %s is not a directory", library)
			}
			rs, err := server.ProbeRsync(c.Context, c.String("rsync"))
			if err != nil {
				return err
			}
			if !rs.ConfineRoot {
				if !c.Bool("allow-unconfined") {
					return fmt.Errorf("rsync %s (%s) has no --confine-root (3.5.0): a client could make it read filter files outside the library; install rsync >= 3.5.0 or pass --allow-unconfined", rs.Path, rs.Version)
				}
				log.Warn("running rsync without --confine-root", "rsync", rs.Version)
			}
			keys, err := server.LoadKeys(c.String("authorized-keys"))
			if err != nil {
				return err
			}
			hostKey, created, err := server.LoadOrCreateHostKey(c.String("host-key"))
			if err != nil {
				return err
			}
			sandbox := ""
			if c.Bool("no-sandbox") {
				log.Warn("rsync runs without the Landlock sandbox (--no-sandbox)")
			} else if abi := server.LandlockABI(); abi == 0 {
				log.Warn("the kernel has no Landlock: rsync runs unsandboxed; keep the library read-only for this user")
			} else if sandbox, err = os.Executable(); err != nil {
				return fmt.Errorf("sandbox: %w", err)
			}
			srv, err := server.New(server.Config{
				Library: library, HostKey: hostKey, Keys: keys, Rsync: rs.Path, ConfineRoot: rs.ConfineRoot, Sandbox: sandbox,
				Ciphers:     strings.Split(c.String("ciphers"), ","),
				MaxSessions: c.Int("max-sessions"), MaxConnections: c.Int("max-connections"), MaxPreAuthPerIP: c.Int("max-preauth-per-ip"),
				AuthTimeout: c.Duration("auth-timeout"), IdleTimeout: c.Duration("idle-timeout"),
				Logger: log,
			})
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", c.String("listen"))
			if err != nil {
				return err
			}
			state := "loaded"
			if created {
				state = "generated"
			}
			addr := ln.Addr().(*net.TCPAddr)
			pub := hostKey.PublicKey()
			// What clients pin: the fingerprint, and a known_hosts line.
			fmt.Fprintf(env.Stdout, "clr-server: host key %s (%s, %s %s)\n", ssh.FingerprintSHA256(pub), pub.Type(), state, c.String("host-key"))
			fmt.Fprintf(env.Stdout, "clr-server: known_hosts line: [%s]:%d %s", knownHost(addr), addr.Port, ssh.MarshalAuthorizedKey(pub))
			fmt.Fprintf(env.Stdout, "clr-server: serving %s read-only on %s (rsync %s, confine-root %v, sandbox %v)\n", library, addr, rs.Version, rs.ConfineRoot, sandbox != "")

			if pf := c.String("pid-file"); pf != "" {
				if err := fsutil.WriteAtomic(pf, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
					ln.Close()
					return err
				}
				defer os.Remove(pf)
			}

			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					if n, err := keys.Reload(); err != nil {
						log.Error("reload of authorized keys failed; keeping the previous set", "err", err)
					} else {
						log.Info("authorized keys reloaded", "keys", n)
					}
				}
			}()

			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			select {
			case err := <-errc:
				return err
			case <-c.Context.Done():
			}
			log.Info("shutting down: waiting for running transfers", "running", srv.Running(), "grace", c.Duration("shutdown-grace").String())
			ctx, cancel := context.WithTimeout(context.Background(), c.Duration("shutdown-grace"))
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				log.Warn("grace period over: remaining transfers killed")
			}
			<-errc
			return nil
		},
	}
}

func knownHost(a *net.TCPAddr) string {
	if a.IP.IsUnspecified() {
		return "HOST"
	}
	return a.IP.String()
}
