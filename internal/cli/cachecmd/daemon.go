package cachecmd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/clr-suite/clr/internal/cli"
	"github.com/clr-suite/clr/internal/cli/subscribecmd"
	"github.com/clr-suite/clr/internal/cli/trustcmd"
	"github.com/clr-suite/clr/internal/schedule"
)

// DefaultSchedule is content-library-rsync's SYNC_SCHEDULE default
// (Friday 21:00 in TZ): a site that swaps images keeps its sync window.
const DefaultSchedule = "0 21 * * 5"

const daemonDescription = `The long-running mode for containers and hosts without cron: an immediate
first run, then one run per tick of --schedule (cron syntax, in --tz), each
after a random delay of up to --splay. A run is: clr-subscribe -U (every
subscription, after clr-trust refresh of the CA directory's CRLs), then a cache run (expire + download + content library
manifests). One run at a time; a run that overruns a tick makes that tick
run once, right after. The content library is served concurrently from the
start (serve's flags), so the previous good state stays online during a run.

Signals: SIGTERM/SIGINT stop serving gracefully and stop a run in progress
(partial transfers resume on the next start). SIGHUP re-reads --env-file,
the TLS certificate files, --password-file and --browse; the cache and
subscription settings apply from the next run. --schedule, --tz, --splay,
the listen addresses and the TLS mode need a restart.

content-library-rsync's environment is understood: SYNC_PEER and SYNC_PORT
(fetch every ssh:// image from that host, see --peer), SYNC_SCHEDULE,
SYNC_DELAY=true with SYNC_DELAY_MAX_SECONDS (--splay, any length),
SYNC_MAX_BW (--bwlimit), TLS_NAME, TLS_CUSTOM_CERT, LIBRARY_NAME,
LIBRARY_BROWSE and TZ. See docs/deployment.md.`

func daemonFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "schedule", Value: DefaultSchedule, EnvVars: []string{"CLR_SCHEDULE", "SYNC_SCHEDULE"}, Usage: "cron `EXPR` (5 fields, or @hourly, @every 6h) for the runs after the first"},
		&ucli.StringFlag{Name: "tz", EnvVars: []string{"CLR_TZ", "TZ"}, Usage: "time `ZONE` of the schedule (IANA name; default UTC)"},
		&ucli.StringFlag{Name: "splay", EnvVars: []string{"CLR_SPLAY"}, Usage: "random delay up to `DURATION` before each scheduled run (e.g. 6h, 2d)"},
		&ucli.StringFlag{Name: "env-file", EnvVars: []string{"CLR_ENV_FILE"}, Usage: "`FILE` of KEY=VALUE settings (CLR_* or the names above), read at start and on SIGHUP"},
		&ucli.BoolFlag{Name: "no-serve", EnvVars: []string{"CLR_NO_SERVE"}, Usage: "do not serve the content library"},
		&ucli.BoolFlag{Name: "no-subscribe", EnvVars: []string{"CLR_NO_SUBSCRIBE"}, Usage: "do not run clr-subscribe -U before each cache run"},
		&ucli.BoolFlag{Name: "no-crl-refresh", EnvVars: []string{"CLR_NO_CRL_REFRESH"}, Usage: "do not run clr-trust refresh before updating subscriptions"},
		&ucli.BoolFlag{Name: "once", Hidden: true, Usage: "one run, then stop serving and exit (tests)"},
	}
}

func daemonCommand(env cli.Env) *ucli.Command {
	flags := append(append(cacheFlags(), serveFlags()...), daemonFlags()...)
	return &ucli.Command{
		Name:        "daemon",
		Usage:       "run on a schedule and serve the content library (containers)",
		Description: daemonDescription,
		Flags:       flags,
		Action:      func(c *ucli.Context) error { return daemon(env, c) },
	}
}

// envFile applies KEY=VALUE lines to the process environment (the flags'
// environment twins read it), restoring what a previous load set and the
// new file no longer has.
type envFile struct {
	mu   sync.Mutex
	path string
	orig map[string]*string // value before the file set it (nil = unset)
}

func (e *envFile) load() error {
	if e.path == "" {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	f, err := os.Open(e.path)
	if err != nil {
		return fmt.Errorf("env file: %w", err)
	}
	defer f.Close()
	vals, err := parseEnvFile(f, e.path)
	if err != nil {
		return err
	}
	if e.orig == nil {
		e.orig = map[string]*string{}
	}
	for k, o := range e.orig { // keys the file no longer sets
		if _, ok := vals[k]; !ok {
			if o == nil {
				os.Unsetenv(k)
			} else {
				os.Setenv(k, *o)
			}
			delete(e.orig, k)
		}
	}
	for k, v := range vals {
		if _, ok := e.orig[k]; !ok {
			if o, had := os.LookupEnv(k); had {
				e.orig[k] = &o
			} else {
				e.orig[k] = nil
			}
		}
		os.Setenv(k, v)
	}
	return nil
}

// parseEnvFile reads KEY=VALUE lines (docker env_file / systemd
// EnvironmentFile style): blank lines and # comments are skipped, "export "
// is allowed, one pair of matching quotes around the value is removed. A
// line without "=" or a key with blanks is an error naming the line.
func parseEnvFile(r io.Reader, name string) (map[string]string, error) {
	vals := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t\x00") || strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("env file %s line %d: want KEY=VALUE", name, n)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		vals[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("env file %s: %w", name, err)
	}
	return vals, nil
}

// reparse evaluates the daemon's command line again (with the current
// environment) and calls fn with the fresh context.
// Parses are serialised: urfave/cli's flag set-up touches package state.
func reparse(ctx context.Context, env cli.Env, fn func(c *ucli.Context) error) error {
	parseMu.Lock()
	released := false
	app := newApp(env)
	for _, cmd := range app.Commands {
		if cmd.Name == "daemon" {
			cmd.Action = func(c *ucli.Context) error {
				released = true
				parseMu.Unlock()
				return fn(c)
			}
		}
	}
	args := cli.Prepare(env, app)
	err := app.RunContext(ctx, args)
	if !released { // a parse error: fn never ran
		parseMu.Unlock()
	}
	return err
}

var parseMu sync.Mutex

// splayOf is --splay, else content-library-rsync's SYNC_DELAY=true with
// SYNC_DELAY_MAX_SECONDS (default 21600).
func splayOf(env cli.Env, c *ucli.Context) (time.Duration, error) {
	if s := c.String("splay"); s != "" {
		return cli.ParseDuration(s)
	}
	if strings.EqualFold(env.Getenv("SYNC_DELAY"), "true") {
		max := env.Getenv("SYNC_DELAY_MAX_SECONDS")
		if max == "" {
			return 21600 * time.Second, nil
		}
		n, err := strconv.ParseInt(max, 10, 64)
		if err != nil || n < 0 {
			return 0, cli.Usagef("SYNC_DELAY_MAX_SECONDS=%q: want a number of seconds", max)
		}
		return time.Duration(n) * time.Second, nil
	}
	return 0, nil
}

func daemon(env cli.Env, c *ucli.Context) error {
	ctx := c.Context
	ef := &envFile{path: c.String("env-file")}
	if err := ef.load(); err != nil {
		return cli.Usagef("%v", err)
	}
	if ef.path != "" { // the file may set any flag's twin: parse again
		return reparse(ctx, env, func(c2 *ucli.Context) error { return daemonMain(env, c2, ef) })
	}
	return daemonMain(env, c, ef)
}

func daemonMain(env cli.Env, c *ucli.Context, ef *envFile) error {
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	log := env.Logger(c.Count("verbose"), c.Count("quiet"))
	loc, err := schedule.LoadLocation(c.String("tz"))
	if err != nil {
		return cli.Usagef("--tz: %v", err)
	}
	sched, err := schedule.Parse(c.String("schedule"), loc)
	if err != nil {
		return cli.Usagef("--schedule: %v", err)
	}
	splay, err := splayOf(env, c)
	if err != nil {
		return err
	}
	if _, err := dirs(env, c); err != nil {
		return err
	}

	var srv *server
	serveDone := make(chan error, 1)
	if !c.Bool("no-serve") {
		if srv, err = newServer(env, c); err != nil {
			return err
		}
		defer srv.close()
		go func() { serveDone <- srv.run(ctx, env) }()
	} else {
		serveDone <- nil
	}

	// Settings change only between runs: SIGHUP during a run is applied
	// when it ends (a run never sees half-old, half-new settings). The
	// certificate files are re-read at once.
	var runMu sync.Mutex
	var pending atomic.Bool
	applyReload := func() {
		if err := ef.load(); err != nil {
			log.Error("env file not reloaded; the previous settings stay", "err", err)
			return
		}
		if srv != nil {
			if err := reparse(ctx, env, func(c2 *ucli.Context) error { srv.reload(env, c2); return nil }); err != nil {
				log.Error("settings not reloaded", "err", err)
			}
		} else {
			log.Warn("reloaded")
		}
	}
	runOnce := func(ctx context.Context, reason string) error {
		runMu.Lock()
		defer runMu.Unlock()
		err := reparse(ctx, env, func(c2 *ucli.Context) error { return cycle(env, c2, reason) })
		if pending.Swap(false) {
			applyReload()
		}
		return err
	}
	loop := &schedule.Loop{Schedule: sched, Splay: splay, Logger: log, RunAtStart: true, Run: runOnce}

	go func() {
		for range notifyHUP(ctx) {
			log.Warn("SIGHUP: reloading settings")
			if srv != nil && srv.cert != nil {
				if err := srv.cert.Reload(); err != nil {
					log.Error("TLS certificate not reloaded; the previous one stays in use", "err", err)
				}
			}
			if runMu.TryLock() {
				applyReload()
				runMu.Unlock()
			} else {
				pending.Store(true)
				log.Warn("a run is in progress: the new settings apply when it ends")
			}
		}
	}()

	if c.Bool("once") {
		err := runOnce(ctx, schedule.ReasonStart)
		cancel()
		if serr := <-serveDone; serr != nil && err == nil {
			err = serr
		}
		return err
	}
	loopDone := make(chan error, 1)
	go func() { loopDone <- loop.Start(ctx) }()
	select {
	case err := <-serveDone: // the server failed (port taken, bad certificate)
		cancel()
		<-loopDone
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	case err := <-loopDone:
		cancel()
		if serr := <-serveDone; serr != nil && err == nil {
			err = serr
		}
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
}

// cycle is one scheduled run: update every subscription, then the cache
// and the content library. A failed update is logged and the cache run
// still happens (it works from the last accepted lists).
func cycle(env cli.Env, c *ucli.Context, reason string) error {
	log := env.Logger(c.Count("verbose"), c.Count("quiet"))
	start := time.Now()
	log.Info("run starting", "reason", reason)
	if !c.Bool("no-crl-refresh") {
		// fetch-crl's job, before the lists are verified against the CRLs
		args := []string{"clr-trust", "refresh", "-q"}
		if cd := c.String("cert-dir"); cd != "" {
			args = append(args, "-c", cd)
		}
		tenv := env
		tenv.Args = args
		if code := trustcmd.Main(tenv); code != 0 {
			log.Error("CRL refresh incomplete; the CRLs on disk stay (clr-trust health tells how long they are valid)", "exit_code", code)
		}
	}
	if !c.Bool("no-subscribe") {
		args := []string{"clr-subscribe", "-U"}
		if d := c.String("database"); d != "" {
			args = append(args, "-d", d)
		}
		if cd := c.String("cert-dir"); cd != "" {
			args = append(args, "-c", cd)
		}
		for i := 0; i < c.Count("verbose"); i++ {
			args = append(args, "-v")
		}
		senv := env
		senv.Args = args
		if code := subscribecmd.Main(senv); code != 0 {
			log.Error("subscription update failed; caching from the last accepted lists", "exit_code", code)
		}
	}
	if err := c.Context.Err(); err != nil {
		return err
	}
	err := run(env, c)
	if err != nil {
		code, _ := cli.ExitCode(err, classify)
		log.Error("run failed", "exit_code", code, "err", err, "duration", time.Since(start).Round(time.Millisecond))
		return err
	}
	log.Info("run done", "duration", time.Since(start).Round(time.Millisecond))
	return nil
}
