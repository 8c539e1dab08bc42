// Package cachecmd implements clr-cache (vmcatcher_cache): fetch the
// selected images (delta over rsync/SSH, or HTTPS, or file), verify every
// byte against the signed list, publish atomically, expire the rest and
// run the event hooks.
package cachecmd

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/clr-suite/clr/events"
	"github.com/clr-suite/clr/internal/cache"
	"github.com/clr-suite/clr/internal/cli"
	"github.com/clr-suite/clr/internal/hooks"
	"github.com/clr-suite/clr/internal/library"
	"github.com/clr-suite/clr/internal/store"
	"github.com/clr-suite/clr/internal/transport"
)

// Main runs clr-cache and returns its exit code.
func Main(env cli.Env) int {
	return cli.Run(env, newApp(env), classify)
}

// Exit codes of clr-cache beyond the suite's (docs/exit-codes.md).
const (
	ExitLocked   = 6  // another clr-cache run holds the cache
	ExitDownload = 10 // an image could not be downloaded
	ExitVerify   = 40 // an image failed size or SHA-512 verification (or a cached file was corrupt)
	ExitNoSpace  = 41 // not enough free space for an image
)

func classify(err error) (int, string) {
	switch {
	case errors.Is(err, cache.ErrLocked):
		return ExitLocked, "wait for the other run (cron and timers must not overlap), or check for a hung clr-cache"
	case errors.Is(err, cache.ErrNoSpace):
		return ExitNoSpace, "free space on the partial directory's file system, or move -p/-C"
	case errors.Is(err, cache.ErrVerify):
		return ExitVerify, "the source served other bytes than the publisher signed; the previous version stays served"
	}
	return cli.Classify(err)
}

const description = `clr-cache keeps the images selected with clr-image (state 3: selected and
available) in the cache directory, exactly as their publisher signed them:

  1. expire: images no longer selected, no longer in their list, or whose list
     expired or whose signer was revoked move to the expired directory;
  2. download: every wanted image whose signed SHA-512 differs from what is
     served is fetched into a fresh staging directory (rsync over SSH with the
     served version as delta basis, HTTPS with resume, or file://), every file
     is checked against its signed size and SHA-512, and only then the served
     name switches to the new version in one atomic step. The old version stays
     readable for --grace.

With no action both run (vmcatcher's default). The cache serves each image as
<cache>/<image uuid> (a file, or a folder for OVF templates), so vmcatcher
hooks reading ${VMCATCHER_CACHE_DIR_CACHE}${VMCATCHER_EVENT_DC_IDENTIFIER}
keep working. One run at a time per cache (exit 6 when another holds it).

Examples:
  clr-cache                                    # expire + download (cron)
  clr-cache -D --ssh-key /etc/clr/site.key --known-hosts /etc/clr/known_hosts
  clr-cache -s                                 # re-verify every cached file
  clr-cache --mirror ssh://publisher:2222/=ssh://regional:2222/`

// cacheFlags are the flags of a cache run (also taken by the daemon). Every
// flag has an environment twin, so a container is configured by its
// environment alone.
func cacheFlags() []ucli.Flag {
	return append(append(cli.SubscriberFlags(), dirFlags()...),
		&ucli.BoolFlag{Name: "download", Aliases: []string{"D"}, Usage: "action: fetch, verify and publish the wanted images (also expires, as vmcatcher)"},
		&ucli.BoolFlag{Name: "expire", Aliases: []string{"E"}, Usage: "action: expire images that are no longer wanted"},
		&ucli.BoolFlag{Name: "sha512", Aliases: []string{"s"}, Usage: "action: re-hash every cached file; a corrupt image is expired (and fetched again by the next download)"},
		&ucli.StringFlag{Name: "execute", Aliases: []string{"x"}, EnvVars: []string{"CLR_CACHE_EVENT", "VMCATCHER_CACHE_EVENT"}, Usage: "run `CMD` (with /bin/sh) for every event; values in CLR_EVENT_*/VMCATCHER_EVENT_* and JSON on stdin"},
		&ucli.DurationFlag{Name: "hook-timeout", Value: hooks.DefaultTimeout, EnvVars: []string{"CLR_HOOK_TIMEOUT"}, Usage: "kill a hook after this `DURATION`"},
		&ucli.StringFlag{Name: "ssh-key", EnvVars: []string{"CLR_SSH_KEY"}, Usage: "SSH identity `FILE` for ssh:// sources"},
		&ucli.StringFlag{Name: "known-hosts", EnvVars: []string{"CLR_KNOWN_HOSTS"}, Usage: "pinned SSH host keys `FILE` for ssh:// sources"},
		&ucli.BoolFlag{Name: "accept-new-host-key", EnvVars: []string{"CLR_ACCEPT_NEW_HOST_KEY"}, Usage: "trust an SSH host key seen for the first time (and record it in --known-hosts)"},
		&ucli.StringFlag{Name: "bwlimit", EnvVars: []string{"CLR_BWLIMIT", "SYNC_MAX_BW"}, Usage: "bandwidth cap, rsync `RATE` units: 1.5m = 1.5 MiB/s, 500k, plain number = KiB/s"},
		&ucli.DurationFlag{Name: "io-timeout", Value: 5 * time.Minute, EnvVars: []string{"CLR_IO_TIMEOUT"}, Usage: "fail a transfer with no progress for this `DURATION`"},
		&ucli.IntFlag{Name: "block-size", Value: transport.DefaultBlockSize, EnvVars: []string{"CLR_BLOCK_SIZE"}, Usage: "rsync delta block `BYTES` (8192: VM disks change in 4 KiB pages, docs/benchmarks.md)"},
		&ucli.IntFlag{Name: "retries", Value: 3, EnvVars: []string{"CLR_RETRIES"}, Usage: "retry a failed transfer this many times (only retryable failures: network, timeout)"},
		&ucli.DurationFlag{Name: "retry-wait", Value: 10 * time.Second, EnvVars: []string{"CLR_RETRY_WAIT"}, Usage: "first wait before a retry; doubles each time"},
		&ucli.IntFlag{Name: "max-attempts", Value: cache.DefaultMaxAttempts, EnvVars: []string{"CLR_MAX_ATTEMPTS"}, Usage: "give up an image version after this many failed runs, until its list changes (vmcatcher: 5)"},
		&ucli.DurationFlag{Name: "grace", Value: cache.DefaultGrace, EnvVars: []string{"CLR_GRACE"}, Usage: "keep a replaced version readable this long"},
		&ucli.IntFlag{Name: "keep-expired", Value: 3, EnvVars: []string{"CLR_KEEP_EXPIRED"}, Usage: "expired versions kept per image (0 = all)"},
		&ucli.StringFlag{Name: "expired-max-age", Value: "30d", EnvVars: []string{"CLR_EXPIRED_MAX_AGE"}, Usage: "delete expired versions older than this (0 = never)"},
		&ucli.BoolFlag{Name: "dry-run", Usage: "with -E: only say what would be expired and pruned"},
		&ucli.StringSliceFlag{Name: "mirror", EnvVars: []string{"CLR_MIRROR"}, Usage: "fetch from a mirror: `FROM=TO` replaces the URI prefix FROM by TO (repeatable); the signed hashes make any mirror untrusted transport"},
		&ucli.StringFlag{Name: "cert-dir", Aliases: []string{"c"}, EnvVars: []string{"CLR_DIR_CERT", "VMCATCHER_DIR_CERT"}, Usage: "CA `DIR` also trusted for HTTPS sources (besides the system roots)"},
		&ucli.BoolFlag{Name: "json", Usage: "print the run's report as JSON on stdout"},
		&ucli.StringFlag{Name: "peer", EnvVars: []string{"CLR_PEER"}, Usage: "fetch every ssh:// image from `HOST[:PORT]` instead of the host its list names (content-library-rsync: SYNC_PEER, SYNC_PORT)"},
		&ucli.StringFlag{Name: "export-dir", EnvVars: []string{"CLR_EXPORT_DIR"}, Usage: "re-export the verified images and the signed lists to `DIR` in the publisher's layout, for downstream sites (serve it with clr-server; same file system as the cache)"},
		&ucli.BoolFlag{Name: "no-library", EnvVars: []string{"CLR_NO_LIBRARY"}, Usage: "do not regenerate the vSphere content library manifests"},
		&ucli.StringFlag{Name: "library-name", Value: library.DefaultName, EnvVars: []string{"CLR_LIBRARY_NAME", "LIBRARY_NAME"}, Usage: "content library `NAME` in lib.json"},
		&ucli.StringFlag{Name: "library-description", EnvVars: []string{"CLR_LIBRARY_DESCRIPTION"}, Usage: "content library `TEXT` in lib.json"},
	)
}

// dirFlags locate the cache tree (the cache run, serve and the daemon).
func dirFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "cache-dir", Aliases: []string{"C"}, EnvVars: []string{"CLR_CACHE_DIR_CACHE", "VMCATCHER_CACHE_DIR_CACHE"}, Usage: "published cache `DIR` (default /var/lib/clr/cache as root, else ~/.local/share/clr/cache)"},
		&ucli.StringFlag{Name: "partial-dir", Aliases: []string{"p"}, EnvVars: []string{"CLR_CACHE_DIR_DOWNLOAD", "VMCATCHER_CACHE_DIR_DOWNLOAD"}, Usage: "staging `DIR`, same file system as the cache (default CACHE/.clr/partial)"},
		&ucli.StringFlag{Name: "expired-dir", Aliases: []string{"e"}, EnvVars: []string{"CLR_CACHE_DIR_EXPIRE", "VMCATCHER_CACHE_DIR_EXPIRE"}, Usage: "expired images `DIR` (default CACHE/.clr/expired)"},
		&ucli.StringFlag{Name: "library-dir", EnvVars: []string{"CLR_LIBRARY_DIR"}, Usage: "web root `DIR` of the vSphere content library (lib.json; default CACHE/.clr/library)"},
	}
}

func newApp(env cli.Env) *ucli.App {
	return &ucli.App{
		Name:                      "clr-cache",
		Usage:                     "fetch, verify, publish and expire the selected images (vmcatcher_cache)",
		Description:               description,
		Flags:                     cacheFlags(),
		DisableSliceFlagSeparator: true,
		Action:                    func(c *ucli.Context) error { return run(env, c) },
		Commands:                  []*ucli.Command{serveCommand(env), daemonCommand(env)},
	}
}

// envOn reports vmcatcher's action variables (enabled when exactly "1").
func envOn(env cli.Env, names ...string) bool {
	for _, n := range names {
		if env.Getenv(n) == "1" {
			return true
		}
	}
	return false
}

type runConfig struct {
	dirs                    [3]string // cache, partial, expired
	download, expire, check bool
}

func dirs(env cli.Env, c *ucli.Context) ([3]string, error) {
	dir := c.String("cache-dir")
	if dir == "" {
		if os.Geteuid() == 0 {
			dir = "/var/lib/clr/cache"
		} else if h := env.Getenv("HOME"); filepath.IsAbs(h) {
			dir = filepath.Join(h, ".local", "share", "clr", "cache")
		} else {
			return [3]string{}, cli.Usagef("no cache directory: pass -C DIR or set CLR_CACHE_DIR_CACHE")
		}
	}
	partial, expired := c.String("partial-dir"), c.String("expired-dir")
	// Defaults under CACHE/.clr (vmcatcher used CACHE/partial and
	// CACHE/expired): unverified partial transfers and expired images
	// must not sit among the served names. Same file system as the cache.
	if partial == "" {
		partial = filepath.Join(dir, ".clr", "partial")
	}
	if expired == "" {
		expired = filepath.Join(dir, ".clr", "expired")
	}
	var out [3]string
	for i, d := range []string{dir, partial, expired} {
		abs, err := filepath.Abs(d)
		if err != nil {
			return out, fmt.Errorf("directory %s: %w", d, err)
		}
		out[i] = abs
	}
	return out, nil
}

func run(env cli.Env, c *ucli.Context) error {
	ctx := c.Context
	now := env.Now()
	log := env.Logger(c.Count("verbose"), c.Count("quiet"))
	d, err := dirs(env, c)
	if err != nil {
		return err
	}
	rc := runConfig{dirs: d,
		download: c.Bool("download") || envOn(env, "CLR_CACHE_ACTION_DOWNLOAD", "VMCATCHER_CACHE_ACTION_DOWNLOAD"),
		expire:   c.Bool("expire") || envOn(env, "CLR_CACHE_ACTION_EXPIRE", "VMCATCHER_CACHE_ACTION_EXPIRE"),
		check:    c.Bool("sha512") || envOn(env, "CLR_CACHE_ACTION_CHECK", "VMCATCHER_CACHE_ACTION_CHECK"),
	}
	if !rc.download && !rc.expire && !rc.check {
		rc.download, rc.expire = true, true // vmcatcher: no action = expire + download
	}
	if rc.download {
		rc.expire = true // vmcatcher: download implies expire
	}
	if c.Bool("dry-run") && (rc.download || rc.check) {
		return cli.Usagef("--dry-run goes with -E only")
	}
	maxAge := time.Duration(0)
	if s := c.String("expired-max-age"); s != "0" && s != "" {
		if maxAge, err = cli.ParseDuration(s); err != nil {
			return err
		}
	}
	mirrors, err := parseMirrors(c.StringSlice("mirror"))
	if err != nil {
		return err
	}
	if p := peerOf(env, c); p != "" {
		mirrors = append(mirrors, mirror{from: peerAny, to: p})
	}
	if _, err := transport.ParseBWLimit(c.String("bwlimit")); c.String("bwlimit") != "" && err != nil {
		return cli.Usagef("--bwlimit: %v", err)
	}
	st, err := cli.OpenExistingStore(ctx, env, c)
	if err != nil {
		return err
	}
	defer st.Close()

	roots, err := rootPool(c.String("cert-dir"), log)
	if err != nil {
		return err
	}
	session := cli.SessionID()
	var bar *progressBar
	if env.StderrTTY && c.Count("quiet") == 0 {
		bar = &progressBar{out: env.Stderr}
	}
	ch := &cache.Cache{
		Dir: d[0], PartialDir: d[1], ExpiredDir: d[2],
		Logger: log, Now: now, Grace: c.Duration("grace"), MaxAttempts: c.Int("max-attempts"),
		Retention: cache.Retention{Keep: c.Int("keep-expired"), MaxAge: maxAge},
		Session:   session,
		Fetch:     fetcher(c, roots, log, bar),
	}
	if cmd := c.String("execute"); cmd != "" {
		r := hooks.Runner{Command: cmd, Timeout: c.Duration("hook-timeout"), Environ: hookEnviron(d, st.Path())}
		ch.Hook = func(ctx context.Context, ev events.Event) error {
			_, err := r.Run(ctx, ev)
			return err
		}
	}
	unlock, err := ch.Lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()

	var total cache.Report
	var runErr error
	if !c.Bool("dry-run") { // every run counts on /metrics, failed ones too
		defer func() { recordRun(ctx, st, now, total, runErr, log) }()
	}
	runErr = cacheSteps(ctx, env, c, rc, st, ch, mirrors, now, log, &total)
	return runErr
}

// cacheSteps is a locked cache run: expire, check, download and the
// content library, which is regenerated right after an expiry (an expired
// image must leave the manifests at once, not after hours of downloads)
// and at the end.
func cacheSteps(ctx context.Context, env cli.Env, c *ucli.Context, rc runConfig, st *store.Store, ch *cache.Cache,
	mirrors []mirror, now time.Time, log *slog.Logger, total *cache.Report) error {
	want, err := wanted(ctx, st, mirrors, log)
	if err != nil {
		return err
	}
	lib := !c.Bool("no-library") && !c.Bool("dry-run")
	if rc.expire {
		rep, err := ch.Expire(ctx, want, c.Bool("dry-run"))
		merge(total, rep)
		if err != nil {
			return err
		}
		if lib && len(rep.Expired) > 0 && rc.download {
			if _, err := updateLibrary(ctx, env, c, st, ch, now, log); err != nil {
				log.Error("content library manifests not updated after expiry", "err", err)
			}
		}
	}
	if rc.check {
		rep, err := ch.Check(ctx)
		merge(total, rep)
		if err != nil {
			return err
		}
	}
	if rc.download {
		rep, err := ch.Download(ctx, want)
		merge(total, rep)
		if err != nil {
			return err
		}
	}
	var libErr error
	if lib {
		if _, libErr = updateLibrary(ctx, env, c, st, ch, now, log); libErr != nil {
			log.Error("content library manifests not updated; the previous ones stay served", "err", libErr)
		} else if err := ch.ExtendGrace(ctx, now, env.Now()); err != nil {
			// The versions this run replaced stay readable for --grace
			// from now, when the library stopped naming them.
			log.Warn("grace period not extended", "err", err)
		}
	}
	var expErr error
	if d := c.String("export-dir"); d != "" && !c.Bool("dry-run") {
		if abs, err := filepath.Abs(d); err != nil || within(ch.Dir, abs) || within(abs, ch.Dir) {
			return cli.Usagef("--export-dir %s overlaps the cache directory %s", d, ch.Dir)
		} else if expErr = exportTree(ctx, abs, st, ch, env.Now(), c.Duration("grace"), log); expErr != nil {
			log.Error("export not updated completely", "err", expErr)
		}
	}
	summarize(env, c, log, now, *total)
	if c.Bool("json") {
		if err := cli.WriteJSON(env.Stdout, reportJSON(*total)); err != nil {
			return err
		}
	}
	runErr := reportError(*total)
	if runErr == nil && libErr != nil {
		runErr = fmt.Errorf("content library manifests: %w", libErr)
	}
	if runErr == nil && expErr != nil {
		runErr = fmt.Errorf("export: %w", expErr)
	}
	return runErr
}

// wanted maps the images that are selected and available to cache items.
func wanted(ctx context.Context, st *store.Store, mirrors []mirror, log *slog.Logger) ([]cache.Item, error) {
	imgs, err := st.ListImages(ctx, store.ImageFilter{SelectedOnly: true, AvailableOnly: true})
	if err != nil {
		return nil, err
	}
	// The same image UUID wanted from two subscriptions cannot be one
	// served name: neither is cached, and the operator is told.
	count := map[string]int{}
	for _, im := range imgs {
		count[im.UUID]++
	}
	out := make([]cache.Item, 0, len(imgs))
	for _, im := range imgs {
		l := im.Latest
		if count[im.UUID] > 1 {
			log.Error("image selected in several subscriptions: not cached; unselect it in all but one (clr-image -r -u UUID --subscription SUB)",
				"uuid", im.UUID, "subscription", im.Subscription)
			continue
		}
		uri, mirrored := rewrite(l.URI, mirrors)
		if strings.HasPrefix(strings.ToLower(uri), "file:") && !mirrored {
			// A signed list must not make the site publish its own
			// local files; a local source is the operator's choice.
			log.Error("file:// image URI not cached: a local source is accepted only through --mirror", "uuid", im.UUID, "uri", l.URI)
			continue
		}
		it := cache.Item{
			UUID: im.UUID, Subscription: im.Subscription, ListIdentifier: im.Subscription,
			SHA512: l.SHA512, Size: l.Size, URI: uri,
			Event: events.Image{
				Identifier: l.Identifier, Title: l.Title, Description: l.Description, URI: l.URI, Size: l.Size,
				Version: l.Version, Hypervisor: l.Hypervisor, Format: l.Format, Arch: l.Arch, OS: l.OS,
				OSVersion: l.OSVersion, Comments: l.Comments, SHA512: l.SHA512,
			},
		}
		if len(l.Extra) > 0 {
			var extra map[string]json.RawMessage
			if json.Unmarshal(l.Extra, &extra) == nil {
				_ = json.Unmarshal(extra["ad:mpuri"], &it.Event.MPURI)
			}
		}
		if len(l.Files) > 0 {
			var fs []struct {
				Path   string `json:"path"`
				Size   int64  `json:"size"`
				SHA512 string `json:"sl:checksum:sha512"`
			}
			if err := json.Unmarshal(l.Files, &fs); err != nil {
				return nil, fmt.Errorf("image %s: stored clr:files: %w", im.UUID, err)
			}
			for _, f := range fs {
				it.Files = append(it.Files, cache.File{Path: f.Path, Size: f.Size, SHA512: f.SHA512})
			}
		}
		out = append(out, it)
	}
	return out, nil
}

type mirror struct{ from, to string }

func parseMirrors(specs []string) ([]mirror, error) {
	var out []mirror
	for _, s := range specs {
		from, to, ok := strings.Cut(s, "=")
		if !ok || from == "" || to == "" {
			return nil, cli.Usagef("--mirror %q: want FROM=TO, e.g. ssh://publisher:2222/=ssh://regional:2222/", s)
		}
		out = append(out, mirror{from, to})
	}
	return out, nil
}

// peerAny is the FROM of the --peer rule: any ssh:// authority.
const peerAny = "ssh://*"

// peerOf is --peer, else content-library-rsync's SYNC_PEER with SYNC_PORT
// (default 2222, its server's published port).
func peerOf(env cli.Env, c *ucli.Context) string {
	if p := c.String("peer"); p != "" {
		return p
	}
	if p := env.Getenv("SYNC_PEER"); p != "" {
		if _, _, err := net.SplitHostPort(p); err == nil {
			return p // already host:port
		}
		port := env.Getenv("SYNC_PORT")
		if port == "" {
			port = "2222"
		}
		return net.JoinHostPort(p, port)
	}
	return ""
}

// rewrite applies the first mirror whose FROM prefixes uri. The --peer
// rule replaces the host and port of any ssh:// URI, keeping its user and
// path.
func rewrite(uri string, ms []mirror) (string, bool) {
	for _, m := range ms {
		if m.from == peerAny {
			u, err := url.Parse(uri)
			if err != nil || !strings.EqualFold(u.Scheme, "ssh") {
				continue
			}
			u.Host = m.to
			return u.String(), true
		}
		if rest, ok := strings.CutPrefix(uri, m.from); ok {
			return m.to + rest, true
		}
	}
	return uri, false
}

func rootPool(certDir string, log *slog.Logger) (*x509.CertPool, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if certDir == "" {
		return roots, nil
	}
	entries, err := os.ReadDir(certDir)
	if err != nil {
		log.Debug("CA directory not used for HTTPS", "dir", certDir, "err", err)
		return roots, nil
	}
	for _, e := range entries {
		if b, err := os.ReadFile(filepath.Join(certDir, e.Name())); err == nil {
			roots.AppendCertsFromPEM(b)
		}
	}
	return roots, nil
}

// fetcher adapts internal/transport to the cache, with retries and
// backoff for the failures worth retrying (network, timeouts).
func fetcher(c *ucli.Context, roots *x509.CertPool, log *slog.Logger, bar *progressBar) cache.FetchFunc {
	ssh := transport.SSHOptions{KeyFile: c.String("ssh-key"), KnownHosts: c.String("known-hosts"), AcceptNew: c.Bool("accept-new-host-key")}
	bw, ioTimeout, block := c.String("bwlimit"), c.Duration("io-timeout"), c.Int("block-size")
	retries, wait := c.Int("retries"), c.Duration("retry-wait")
	return func(ctx context.Context, req cache.FetchRequest) (cache.FetchStats, error) {
		specs := make([]transport.FileSpec, len(req.Files))
		for i, f := range req.Files {
			specs[i] = transport.FileSpec{Path: f.Path, Size: f.Size}
		}
		tr := transport.TemplateRequest{
			URL: req.Item.URI, Files: specs, Basis: req.Basis, Stage: req.Stage, PartialDir: req.PartialDir,
			SSH: ssh, BWLimit: bw, IOTimeout: ioTimeout, BlockSize: block, RootCAs: roots,
		}
		if bar != nil {
			name := req.Item.Event.Title
			if name == "" {
				name = req.Item.UUID
			}
			tr.Progress = bar.start(name, req.Item.Size)
			defer bar.finish()
		}
		for attempt := 0; ; attempt++ {
			st, err := transport.FetchTemplate(ctx, tr)
			if err == nil || attempt >= retries || !transport.Retryable(err) || ctx.Err() != nil {
				return cache.FetchStats{WireBytesIn: st.WireBytesIn, WireBytesOut: st.WireBytesOut,
					LiteralBytes: st.LiteralBytes, MatchedBytes: st.MatchedBytes, Resumed: st.Resumed}, err
			}
			d := wait << attempt
			log.Warn("transfer failed, retrying", "image", req.Item.UUID, "attempt", attempt+1, "wait", d, "err", err)
			// A retry starts from an empty stage: whatever the cut
			// transfer left is not a basis (research delta 2.5).
			if err := clearDir(req.Stage); err != nil {
				return cache.FetchStats{}, err
			}
			select {
			case <-ctx.Done():
				return cache.FetchStats{}, ctx.Err()
			case <-time.After(d):
			}
		}
	}
}

func clearDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// hookEnviron is the process environment plus vmcatcher's cache variables
// (directories with a trailing slash: hooks concatenate
// ${VMCATCHER_CACHE_DIR_CACHE}${VMCATCHER_EVENT_DC_IDENTIFIER}).
func hookEnviron(d [3]string, db string) []string {
	env := os.Environ()
	for i, name := range []string{"CACHE", "DOWNLOAD", "EXPIRE"} {
		v := d[i] + string(filepath.Separator)
		env = append(env, "CLR_CACHE_DIR_"+name+"="+v, "VMCATCHER_CACHE_DIR_"+name+"="+v)
	}
	return append(env, "CLR_RDBMS="+db, "VMCATCHER_RDBMS="+db)
}

func merge(t *cache.Report, r cache.Report) {
	t.Published = append(t.Published, r.Published...)
	t.Unchanged = append(t.Unchanged, r.Unchanged...)
	t.Failed = append(t.Failed, r.Failed...)
	t.Expired = append(t.Expired, r.Expired...)
	t.Skipped = append(t.Skipped, r.Skipped...)
	t.Verified = append(t.Verified, r.Verified...)
	t.Removed = append(t.Removed, r.Removed...)
	t.Pruned = append(t.Pruned, r.Pruned...)
	t.WireBytesIn += r.WireBytesIn
	t.WireBytesOut += r.WireBytesOut
	t.LiteralBytes += r.LiteralBytes
	t.MatchedBytes += r.MatchedBytes
	t.Resumed += r.Resumed
	t.Errors = append(t.Errors, r.Errors...)
}

// summarize prints one rsync-like summary line on stderr when the run
// changed something or failed (cron mails only news; -v always, -q never);
// an idle run is logged at info level.
func summarize(env cli.Env, c *ucli.Context, log *slog.Logger, now time.Time, r cache.Report) {
	// each failure was logged by the cache when it happened
	var b strings.Builder
	fmt.Fprintf(&b, "%s clr-cache: published %d, expired %d, failed %d, skipped %d, unchanged %d",
		now.UTC().Format(time.RFC3339), len(r.Published), len(r.Expired), len(r.Failed), len(r.Skipped), len(r.Unchanged))
	if len(r.Verified) > 0 {
		fmt.Fprintf(&b, ", verified %d", len(r.Verified))
	}
	if r.WireBytesIn+r.WireBytesOut > 0 {
		fmt.Fprintf(&b, "; received %s, sent %s, literal %s, matched %s", cli.HumanBytes(r.WireBytesIn), cli.HumanBytes(r.WireBytesOut),
			cli.HumanBytes(r.LiteralBytes), cli.HumanBytes(r.MatchedBytes))
		fmt.Fprintf(&b, ", speedup %.2f", float64(r.LiteralBytes+r.MatchedBytes)/float64(r.WireBytesIn+r.WireBytesOut))
	}
	if c.Bool("dry-run") {
		b.WriteString(" (dry run: nothing changed)")
	}
	news := len(r.Published)+len(r.Expired)+len(r.Failed)+len(r.Skipped) > 0
	switch {
	case c.Count("quiet") > 0:
		log.Info(b.String())
	case news || c.Count("verbose") > 0:
		fmt.Fprintln(env.Stderr, b.String())
	default:
		log.Info(b.String())
	}
}

type reportOut struct {
	Published    []string `json:"published"`
	Unchanged    []string `json:"unchanged"`
	Failed       []string `json:"failed"`
	Expired      []string `json:"expired"`
	Skipped      []string `json:"skipped"`
	Verified     []string `json:"verified,omitempty"`
	Removed      []string `json:"removed,omitempty"`
	Pruned       []string `json:"pruned,omitempty"`
	WireBytesIn  int64    `json:"wire_bytes_in"`
	WireBytesOut int64    `json:"wire_bytes_out"`
	LiteralBytes int64    `json:"literal_bytes"`
	MatchedBytes int64    `json:"matched_bytes"`
	Resumed      int      `json:"resumed"`
	Errors       []string `json:"errors"`
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func reportJSON(r cache.Report) reportOut {
	out := reportOut{
		Published: nonNil(r.Published), Unchanged: nonNil(r.Unchanged), Failed: nonNil(r.Failed),
		Expired: nonNil(r.Expired), Skipped: nonNil(r.Skipped), Verified: r.Verified, Removed: r.Removed, Pruned: r.Pruned,
		WireBytesIn: r.WireBytesIn, WireBytesOut: r.WireBytesOut, LiteralBytes: r.LiteralBytes, MatchedBytes: r.MatchedBytes,
		Resumed: r.Resumed, Errors: []string{},
	}
	for _, e := range r.Errors {
		out.Errors = append(out.Errors, e.Error())
	}
	return out
}

// reportError turns per-image failures into the run's exit code: the
// first verification failure (40), else no space (41), else the first
// download failure (10). Each failure was logged already.
func reportError(r cache.Report) error {
	if len(r.Errors) == 0 {
		return nil
	}
	pick := r.Errors[0]
	for _, target := range []error{cache.ErrVerify, cache.ErrNoSpace} {
		for _, e := range r.Errors {
			if errors.Is(e, target) {
				code, hint := classify(e)
				return &cli.ExitError{Code: code, Err: fmt.Errorf("%d image(s) failed: %w", len(r.Errors), e), Hint: hint}
			}
		}
	}
	code, hint := classify(pick)
	if code == 0 || code == cli.ExitFailure {
		code = ExitDownload
	}
	return &cli.ExitError{Code: code, Err: fmt.Errorf("%d image(s) failed: %w", len(r.Errors), pick), Hint: hint}
}

// progressBar draws one line per image on a terminal: bytes, percentage,
// rate and ETA, rewritten in place. The byte count is rsync's
// reconstructed bytes (matched data counts), so on a delta it races ahead
// of the wire; the summary line gives the wire bytes.
type progressBar struct {
	out   io.Writer
	mu    sync.Mutex
	name  string
	total int64
	began time.Time
	drawn time.Time
	done  int64
	n     int
}

func (b *progressBar) start(name string, total int64) func(int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	b.name, b.total, b.done, b.began, b.drawn = name, total, 0, time.Now(), time.Time{}
	b.draw(true)
	return func(done int64) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.done = done
		b.draw(false)
	}
}

func (b *progressBar) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.draw(true)
	fmt.Fprintln(b.out)
}

// draw rewrites the line at most five times a second unless forced.
func (b *progressBar) draw(force bool) {
	now := time.Now()
	if !force && now.Sub(b.drawn) < 200*time.Millisecond {
		return
	}
	b.drawn = now
	pct := 0.0
	if b.total > 0 {
		pct = 100 * float64(min(b.done, b.total)) / float64(b.total)
	}
	el := now.Sub(b.began).Seconds()
	rate, eta := 0.0, "--:--:--"
	if el > 0 && b.done > 0 {
		rate = float64(b.done) / el
		left := time.Duration(float64(max(b.total-b.done, 0)) / rate * float64(time.Second))
		eta = fmt.Sprintf("%d:%02d:%02d", int(left.Hours()), int(left.Minutes())%60, int(left.Seconds())%60)
	}
	name := b.name
	if len(name) > 30 {
		name = name[:29] + "…"
	}
	fmt.Fprintf(b.out, "\r[%d] %-30s %3.0f%% %10s / %-10s %10s/s  ETA %s ", b.n, name, pct,
		cli.HumanBytes(b.done), cli.HumanBytes(b.total), cli.HumanBytes(int64(rate)), eta)
}
