package cachecmd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	ucli "github.com/urfave/cli/v2"

	"github.com/clr-suite/clr/internal/cli"
	"github.com/clr-suite/clr/internal/crl"
	"github.com/clr-suite/clr/internal/fsutil"
	"github.com/clr-suite/clr/internal/serve"
	"github.com/clr-suite/clr/internal/store"
	"github.com/clr-suite/clr/internal/transport"
)

// notifyHUP delivers SIGHUP until ctx is done (then the channel closes).
func notifyHUP(ctx context.Context) <-chan os.Signal {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	go func() {
		<-ctx.Done()
		signal.Stop(ch)
		close(ch)
	}()
	return ch
}

const serveDescription = `Serves the content library (lib.json, items.json, item.json and the
verified template files) over HTTP and HTTPS, read-only. Paste
http(s)://HOST:PORT/lib.json into vCenter's "Subscribed content library".

TLS: --tls-cert/--tls-key (PEM files, re-read on SIGHUP), or --acme-domain
for an automatic certificate (Let's Encrypt or --acme-directory); with TLS,
plain HTTP redirects to HTTPS (except /healthz). The certificate's SHA-1
thumbprint is printed: vCenter asks for it when subscribing.
--password-file turns on HTTP basic auth with user "vcsp" (what vSphere
sends). /healthz is always open; /metrics (Prometheus) needs the password
when one is set. Staging, partial and expired files are never served.

content-library-rsync names are accepted: TLS_NAME (with TLS_CUSTOM_CERT=true:
/etc/caddycerts/cert.pem and key.pem, else ACME), LIBRARY_BROWSE.`

func serveFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "listen", Value: ":8080", EnvVars: []string{"CLR_LISTEN"}, Usage: "plain HTTP `ADDR` (\"\" = none)"},
		&ucli.StringFlag{Name: "tls-listen", Value: ":8443", EnvVars: []string{"CLR_TLS_LISTEN"}, Usage: "HTTPS `ADDR`, used when a certificate is configured"},
		&ucli.StringFlag{Name: "tls-cert", EnvVars: []string{"CLR_TLS_CERT"}, Usage: "HTTPS certificate chain PEM `FILE`"},
		&ucli.StringFlag{Name: "tls-key", EnvVars: []string{"CLR_TLS_KEY"}, Usage: "HTTPS private key PEM `FILE`"},
		&ucli.StringSliceFlag{Name: "acme-domain", EnvVars: []string{"CLR_ACME_DOMAIN"}, Usage: "get a certificate for `NAME` over ACME (repeatable; needs port 80 reachable from the CA)"},
		&ucli.StringFlag{Name: "acme-directory", EnvVars: []string{"CLR_ACME_DIRECTORY"}, Usage: "ACME directory `URL` (default Let's Encrypt)"},
		&ucli.StringFlag{Name: "acme-email", EnvVars: []string{"CLR_ACME_EMAIL"}, Usage: "ACME account contact `ADDRESS`"},
		&ucli.StringFlag{Name: "acme-cache", EnvVars: []string{"CLR_ACME_CACHE"}, Usage: "ACME account and certificate `DIR` (default CACHE/.clr/acme)"},
		&ucli.StringFlag{Name: "acme-ca-file", EnvVars: []string{"CLR_ACME_CA_FILE"}, Usage: "extra CA `FILE` trusted for the ACME server's HTTPS (a private CA)"},
		&ucli.BoolFlag{Name: "no-redirect", EnvVars: []string{"CLR_NO_REDIRECT"}, Usage: "with TLS, serve plain HTTP too instead of redirecting"},
		&ucli.BoolFlag{Name: "browse", EnvVars: []string{"CLR_BROWSE", "LIBRARY_BROWSE"}, Usage: "directory listings"},
		&ucli.StringFlag{Name: "password-file", EnvVars: []string{"CLR_PASSWORD_FILE"}, Usage: "require HTTP basic auth, user vcsp, password in `FILE`"},
		&ucli.StringFlag{Name: "ready-file", Hidden: true, Usage: "write the bound addresses as JSON to `FILE` once listening (tests, health checks)"},
		&ucli.StringFlag{Name: "pid-file", EnvVars: []string{"CLR_PID_FILE"}, Usage: "write the process id to `FILE` (for kill -HUP)"},
	}
}

func serveCommand(env cli.Env) *ucli.Command {
	return &ucli.Command{
		Name:        "serve",
		Usage:       "serve the content library over HTTP(S) (vSphere subscribed content library)",
		Description: serveDescription,
		Flags: append(append(append(append([]ucli.Flag{}, cli.SubscriberFlags()...), dirFlags()...), serveFlags()...),
			&ucli.StringFlag{Name: "cert-dir", Aliases: []string{"c"}, EnvVars: []string{"CLR_DIR_CERT", "VMCATCHER_DIR_CERT", "X509_CERT_DIR"}, Usage: "CA `DIR` whose CRL and CA dates /metrics reports"}),
		Action: func(c *ucli.Context) error {
			ctx, cancel := context.WithCancel(c.Context)
			defer cancel()
			srv, err := newServer(env, c)
			if err != nil {
				return err
			}
			defer srv.close()
			hup := notifyHUP(ctx)
			go func() {
				for range hup {
					srv.reload(env, c)
				}
			}()
			return srv.run(ctx, env)
		},
	}
}

// server is the HTTP(S) side shared by `serve` and `daemon`.
type server struct {
	log     *slog.Logger
	st      *store.Store
	libDir  string
	cfg     serve.Config
	cert    *serve.FileCert
	handler atomic.Pointer[http.Handler]
	opts    serve.HandlerOptions
	ready   string
	certDir string           // CA directory for the CRL metrics ("" = none)
	now     func() time.Time // the clock (scrape time)
}

func newServer(env cli.Env, c *ucli.Context) (*server, error) {
	log := env.Logger(c.Count("verbose"), c.Count("quiet"))
	d, err := dirs(env, c)
	if err != nil {
		return nil, err
	}
	libDir, err := libraryDir(c, d[0])
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(libDir, 0o755); err != nil {
		return nil, fmt.Errorf("library directory: %w", err)
	}
	st, err := cli.OpenStore(c.Context, env, c)
	if err != nil {
		return nil, err
	}
	s := &server{log: log, st: st, libDir: libDir, ready: c.String("ready-file"), certDir: c.String("cert-dir"), now: env.Now}
	if pf := c.String("pid-file"); pf != "" {
		if err := fsutil.WriteAtomic(pf, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			st.Close()
			return nil, fmt.Errorf("pid file: %w", err)
		}
	}
	s.opts = serve.HandlerOptions{
		Root:         libDir,
		AllowedRoots: []string{filepath.Join(d[0], ".clr", "v")},
		Logger:       log,
		ExtraNoAuth:  []string{serve.HealthPath},
	}
	if err := s.applySettings(env, c); err != nil {
		st.Close()
		return nil, err
	}
	s.cfg = serve.Config{HTTPAddr: c.String("listen"), Logger: log, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*s.handler.Load()).ServeHTTP(w, r)
	})}
	if err := s.tlsConfig(env, c, d[0]); err != nil {
		st.Close()
		return nil, err
	}
	return s, nil
}

func (s *server) close() { s.st.Close() }

// applySettings builds the handler from the settings that may change on
// SIGHUP (browse, password, library location stays).
func (s *server) applySettings(env cli.Env, c *ucli.Context) error {
	o := s.opts
	o.Browse = c.Bool("browse")
	o.Password, o.User = "", ""
	if pf := c.String("password-file"); pf != "" {
		b, err := fsutil.ReadFileCapped(pf, 4096)
		if err != nil {
			return cli.Usagef("--password-file: %v", err)
		}
		o.Password = strings.TrimRight(string(b), "\r\n")
		if o.Password == "" {
			return cli.Usagef("--password-file %s is empty", pf)
		}
		o.User = "vcsp"
	}
	o.Extra = map[string]http.Handler{
		serve.HealthPath: s.health(),
		"/metrics":       s.metrics(),
	}
	h, err := serve.Handler(o)
	if err != nil {
		return err
	}
	s.handler.Store(&h)
	return nil
}

func (s *server) tlsConfig(env cli.Env, c *ucli.Context, cacheDir string) error {
	certFile, keyFile := c.String("tls-cert"), c.String("tls-key")
	domains := c.StringSlice("acme-domain")
	// content-library-rsync: TLS_NAME = site name; TLS_CUSTOM_CERT=true =
	// the certificate in /etc/caddycerts, else Caddy's automatic ACME.
	if name := env.Getenv("TLS_NAME"); name != "" && certFile == "" && len(domains) == 0 {
		if strings.EqualFold(env.Getenv("TLS_CUSTOM_CERT"), "true") {
			certFile, keyFile = "/etc/caddycerts/cert.pem", "/etc/caddycerts/key.pem"
		} else {
			domains = []string{name}
		}
	}
	switch {
	case certFile != "" && len(domains) > 0:
		return cli.Usagef("--tls-cert and --acme-domain exclude each other")
	case (certFile == "") != (keyFile == ""):
		return cli.Usagef("--tls-cert and --tls-key go together")
	case certFile != "":
		fc, err := serve.NewFileCert(certFile, keyFile)
		if err != nil {
			return fmt.Errorf("TLS certificate: %w", err)
		}
		s.cert, s.cfg.Cert = fc, fc
	case len(domains) > 0:
		cacheDirACME := c.String("acme-cache")
		if cacheDirACME == "" {
			cacheDirACME = filepath.Join(cacheDir, ".clr", "acme")
		}
		a := &serve.ACMEConfig{Domains: domains, CacheDir: cacheDirACME, DirectoryURL: c.String("acme-directory"), Email: c.String("acme-email")}
		if caf := c.String("acme-ca-file"); caf != "" {
			pool, err := x509.SystemCertPool()
			if err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
			b, err := os.ReadFile(caf)
			if err != nil || !pool.AppendCertsFromPEM(b) {
				return cli.Usagef("--acme-ca-file %s: no PEM certificate", caf)
			}
			a.HTTPClient = &http.Client{Timeout: time.Minute, Transport: &http.Transport{
				Proxy: http.ProxyFromEnvironment, TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			}}
		}
		s.cfg.ACME = a
	default:
		return nil
	}
	s.cfg.HTTPSAddr = c.String("tls-listen")
	s.cfg.Redirect = !c.Bool("no-redirect")
	return nil
}

// reload re-reads the certificate files and the SIGHUP-able settings.
func (s *server) reload(env cli.Env, c *ucli.Context) {
	if s.cert != nil {
		if err := s.cert.Reload(); err != nil {
			s.log.Error("TLS certificate not reloaded; the previous one stays in use", "err", err)
		} else {
			s.printThumbprint(env)
		}
	}
	if err := s.applySettings(env, c); err != nil {
		s.log.Error("settings not reloaded", "err", err)
		return
	}
	s.log.Warn("reloaded")
}

func (s *server) printThumbprint(env cli.Env) {
	if s.cert == nil {
		return
	}
	leaf, err := serve.LeafOf(s.cert.Certificate())
	if err != nil {
		return
	}
	sha1, sha256 := serve.Thumbprints(leaf)
	fmt.Fprintf(env.Stdout, "certificate %s, expires %s\n  SHA-1 thumbprint (vCenter): %s\n  SHA-256: %s\n",
		leaf.Subject, leaf.NotAfter.UTC().Format(time.RFC3339), sha1, sha256)
}

func (s *server) run(ctx context.Context, env cli.Env) error {
	cfg := s.cfg
	cfg.Ready = func(a serve.Addrs) {
		if a.HTTPS != "" {
			fmt.Fprintf(env.Stdout, "serving %s\n  subscribe vCenter to https://%s/lib.json\n", s.libDir, hostPort(a.HTTPS))
			s.printThumbprint(env)
		}
		if a.HTTP != "" {
			what := "serving"
			if cfg.HTTPSAddr != "" && cfg.Redirect {
				what = "redirecting to HTTPS"
			}
			fmt.Fprintf(env.Stdout, "%s on http://%s/lib.json\n", what, hostPort(a.HTTP))
		}
		if s.ready != "" {
			b, _ := json.Marshal(map[string]string{"http": a.HTTP, "https": a.HTTPS})
			if err := fsutil.WriteAtomic(s.ready, b, 0o644); err != nil {
				s.log.Error("ready file", "err", err)
			}
		}
	}
	if err := serve.Run(ctx, cfg); err != nil {
		if errors.Is(err, serve.ErrInvalidConfig) {
			return cli.Usagef("%v", err)
		}
		return err
	}
	return nil
}

// hostPort shows a listen address as a URL host (":8080" → "HOST:8080"
// with the machine's name, "127.0.0.1:8080" as is).
func hostPort(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "::" || host == "0.0.0.0" {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return net.JoinHostPort(host, port)
}

// health answers 200 while the database is readable, with the last cache
// run; 503 otherwise.
func (s *server) health() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		cs, err := s.st.Counters(ctx)
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]string{"status": "error", "error": "database unreadable"})
			s.log.Error("health check", "err", err)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"status":             "ok",
			"last_run":           unixOrNull(cs[store.GaugeCacheLastRun]),
			"last_run_exit_code": cs[store.GaugeCacheLastResult],
			"last_success":       unixOrNull(cs[store.GaugeCacheLastSuccess]),
			"library_version":    cs[store.GaugeCatalogVersion],
			"library_items":      cs[store.GaugeCatalogItems],
		})
	})
}

func unixOrNull(v int64) any {
	if v == 0 {
		return nil
	}
	return time.Unix(v, 0).UTC().Format(time.RFC3339)
}

// metrics is a Prometheus registry whose clr_* values are read from the
// database at scrape time (runs happen in other processes: cron, timers).
func (s *server) metrics() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&dbCollector{st: s.st, log: s.log}, &trustCollector{dir: s.certDir, now: s.now, log: s.log})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: nil, ErrorHandling: promhttp.ContinueOnError})
}

type dbCollector struct {
	st  *store.Store
	log *slog.Logger
}

var (
	counterHelp = map[string]string{
		store.CounterCacheRuns:           "clr-cache runs",
		store.CounterCacheFailedRuns:     "clr-cache runs that exited non-zero",
		store.CounterBytesIn:             "bytes received by image transfers",
		store.CounterBytesOut:            "bytes sent by image transfers (rsync checksums)",
		store.CounterImagesPublished:     "image versions verified and published",
		store.CounterImagesExpired:       "images expired",
		store.CounterVerifyFailures:      "images that failed size or SHA-512 verification",
		store.CounterSubscriptionUpdates: "subscription update attempts",
	}
	gaugeHelp = map[string]string{
		store.GaugeCacheLastRun:     "time of the last clr-cache run",
		store.GaugeCacheLastResult:  "exit code of the last clr-cache run (0 = success)",
		store.GaugeCacheLastSuccess: "time of the last successful clr-cache run",
		store.GaugeCatalogVersion:   "content library (lib.json) version",
		store.GaugeCatalogItems:     "content library items",
		store.GaugeCatalogLastWrite: "time the content library last changed",
	}
	subLastAttempt = prometheus.NewDesc("clr_subscription_last_update_timestamp_seconds", "time of the last update attempt", []string{"subscription", "url"}, nil)
	subLastResult  = prometheus.NewDesc("clr_subscription_last_update_exit_code", "exit code of the last update attempt (0 = success)", []string{"subscription", "url"}, nil)
	subUp          = prometheus.NewDesc("clr_subscription_up", "1 when the last update attempt succeeded", []string{"subscription", "url"}, nil)
	subAccepted    = prometheus.NewDesc("clr_subscription_last_accepted_timestamp_seconds", "time the latest list was accepted", []string{"subscription", "url"}, nil)
	subExpires     = prometheus.NewDesc("clr_subscription_list_expires_timestamp_seconds", "expiry of the latest accepted list", []string{"subscription", "url"}, nil)
)

// counterDescs and gaugeDescs: one Desc per stored counter, made once.
var counterDescs, gaugeDescs = descs(counterHelp), descs(gaugeHelp)

func descs(help map[string]string) map[string]*prometheus.Desc {
	out := make(map[string]*prometheus.Desc, len(help))
	for k, h := range help {
		out[k] = prometheus.NewDesc("clr_"+k, h, nil, nil)
	}
	return out
}

func (d *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, dsc := range counterDescs {
		ch <- dsc
	}
	for _, dsc := range gaugeDescs {
		ch <- dsc
	}
	for _, dsc := range []*prometheus.Desc{subLastAttempt, subLastResult, subUp, subAccepted, subExpires} {
		ch <- dsc
	}
}

func (d *dbCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := d.st.Counters(ctx)
	if err != nil {
		d.log.Error("metrics", "err", err)
		return
	}
	for k, dsc := range counterDescs {
		ch <- prometheus.MustNewConstMetric(dsc, prometheus.CounterValue, float64(cs[k]))
	}
	for k, dsc := range gaugeDescs {
		ch <- prometheus.MustNewConstMetric(dsc, prometheus.GaugeValue, float64(cs[k]))
	}
	subs, err := d.st.ListSubscriptions(ctx)
	if err != nil {
		d.log.Error("metrics", "err", err)
		return
	}
	atts, err := d.st.Attempts(ctx)
	if err != nil {
		d.log.Error("metrics", "err", err)
		return
	}
	for _, s := range subs {
		a := atts[s.UUID]
		labels := []string{strings.ToValidUTF8(s.UUID, "?"), strings.ToValidUTF8(transport.Redact(s.URL), "?")}
		if !a.At.IsZero() {
			ch <- prometheus.MustNewConstMetric(subLastAttempt, prometheus.GaugeValue, float64(a.At.Unix()), labels...)
			ch <- prometheus.MustNewConstMetric(subLastResult, prometheus.GaugeValue, float64(a.ExitCode), labels...)
			up := 0.0
			if a.ExitCode == 0 {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(subUp, prometheus.GaugeValue, up, labels...)
		}
		if !s.Updated.IsZero() {
			ch <- prometheus.MustNewConstMetric(subAccepted, prometheus.GaugeValue, float64(s.Updated.Unix()), labels...)
		}
		if s.LatestList != nil && !s.LatestList.Expires.IsZero() {
			ch <- prometheus.MustNewConstMetric(subExpires, prometheus.GaugeValue, float64(s.LatestList.Expires.Unix()), labels...)
		}
	}
}

// trustCollector reports the CA directory's CRL and CA dates (clr-trust
// health as metrics), re-read at most once a minute.
type trustCollector struct {
	dir  string
	now  func() time.Time
	log  *slog.Logger
	mu   sync.Mutex
	at   time.Time
	last crl.Health
	err  error
}

var (
	crlNext  = prometheus.NewDesc("clr_crl_next_update_timestamp_seconds", "nextUpdate of the CA's CRL", []string{"ca", "hash", "file"}, nil)
	crlThis  = prometheus.NewDesc("clr_crl_this_update_timestamp_seconds", "thisUpdate of the CA's CRL", []string{"ca", "hash", "file"}, nil)
	crlAge   = prometheus.NewDesc("clr_crl_age_seconds", "age of the CA's CRL (now - thisUpdate)", []string{"ca", "hash", "file"}, nil)
	caExpiry = prometheus.NewDesc("clr_ca_not_after_timestamp_seconds", "expiry of the CA certificate", []string{"ca", "hash", "file"}, nil)
	caLevel  = prometheus.NewDesc("clr_ca_health_level", "clr-trust health level of the CA: 0 ok, 1 notice, 2 warning, 3 critical", []string{"ca", "hash", "file"}, nil)
)

func (t *trustCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{crlNext, crlThis, crlAge, caExpiry, caLevel} {
		ch <- d
	}
}

func (t *trustCollector) Collect(ch chan<- prometheus.Metric) {
	if t.dir == "" {
		return
	}
	t.mu.Lock()
	now := t.now()
	if t.at.IsZero() || now.Sub(t.at) > time.Minute {
		t.last, t.err = crl.Check(t.dir, now, crl.Thresholds{})
		t.at = now
		if t.err != nil {
			t.log.Error("metrics: CA directory", "err", t.err)
		}
	}
	h, err := t.last, t.err
	t.mu.Unlock()
	if err != nil {
		return
	}
	for _, ca := range h.CAs {
		l := []string{strings.ToValidUTF8(ca.Subject, "?"), ca.Hash, ca.File}
		ch <- prometheus.MustNewConstMetric(caExpiry, prometheus.GaugeValue, float64(ca.NotAfter.Unix()), l...)
		ch <- prometheus.MustNewConstMetric(caLevel, prometheus.GaugeValue, float64(ca.Level), l...)
		if ca.CRLThisUpdate != nil {
			ch <- prometheus.MustNewConstMetric(crlThis, prometheus.GaugeValue, float64(ca.CRLThisUpdate.Unix()), l...)
			ch <- prometheus.MustNewConstMetric(crlAge, prometheus.GaugeValue, now.Sub(*ca.CRLThisUpdate).Seconds(), l...)
		}
		if ca.CRLNextUpdate != nil {
			ch <- prometheus.MustNewConstMetric(crlNext, prometheus.GaugeValue, float64(ca.CRLNextUpdate.Unix()), l...)
		}
	}
}
