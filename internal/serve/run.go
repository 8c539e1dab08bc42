package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// DefaultShutdownTimeout is how long Run waits for requests in flight when
// Config.ShutdownTimeout is zero.
const DefaultShutdownTimeout = 10 * time.Second

// HealthPath is the default Config.NoRedirect path.
const HealthPath = "/healthz"

const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	challengePrefix   = "/.well-known/acme-challenge/"
)

// ACMEConfig gets the HTTPS certificate from an ACME CA with autocert.
type ACMEConfig struct {
	// Domains are the only names a certificate is requested for (autocert
	// HostWhitelist). Required.
	Domains []string
	// CacheDir keeps the account key and the certificates across restarts
	// (autocert.DirCache). Required.
	CacheDir string
	// DirectoryURL is the CA's directory; "" means Let's Encrypt.
	DirectoryURL string
	// Email is the optional contact address of the account.
	Email string
	// HTTPClient talks to the CA; nil means http.DefaultClient. Set it to
	// trust a private CA's TLS certificate (Pebble's, for example).
	HTTPClient *http.Client
	// RenewBefore is how long before expiry to renew; 0 means autocert's
	// default (30 days).
	RenewBefore time.Duration
}

// Addrs are the addresses Run listens on; "" for a listener not started.
type Addrs struct {
	HTTP  string
	HTTPS string
}

// Config configures Run.
type Config struct {
	// Handler serves the requests (usually from Handler). Required.
	Handler http.Handler
	// HTTPAddr is the plain-HTTP listen address ("127.0.0.1:8080", ":0");
	// "" means no HTTP listener.
	HTTPAddr string
	// HTTPSAddr is the HTTPS listen address; "" means no TLS. It needs
	// exactly one certificate source: Cert, CertFile+KeyFile, or ACME.
	HTTPSAddr string

	// CertFile and KeyFile are PEM files loaded into a FileCert that Run
	// owns. Use Cert instead to keep the holder and Reload it.
	CertFile, KeyFile string
	// Cert is a certificate holder the caller keeps (NewFileCert).
	Cert CertSource
	// ACME gets the certificate from an ACME CA.
	ACME *ACMEConfig

	// Redirect makes the HTTP listener redirect to HTTPS (ignored without
	// HTTPSAddr): 301 for GET and HEAD, 308 otherwise, path and query kept.
	Redirect bool
	// RedirectHost is the host (or host:port) of the redirect target; ""
	// means the request's host with the HTTPS listener's port (omitted when
	// 443).
	RedirectHost string
	// NoRedirect lists exact paths the HTTP listener passes to Handler even
	// when redirecting; nil means []string{HealthPath}.
	NoRedirect []string

	// ShutdownTimeout bounds the graceful shutdown; 0 means
	// DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Logger receives listener events, server errors and ACME challenge
	// requests; nil discards them.
	Logger *slog.Logger
	// Ready, if set, is called once every listener is bound, with the
	// actual addresses.
	Ready func(Addrs)
}

func (cfg *Config) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("serve: run: %w: "+format, append([]any{ErrInvalidConfig}, a...)...)
	}
	if cfg.Handler == nil {
		return bad("no handler")
	}
	if cfg.HTTPAddr == "" && cfg.HTTPSAddr == "" {
		return bad("no listen address")
	}
	sources := 0
	if cfg.Cert != nil {
		sources++
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		sources++
		if cfg.CertFile == "" || cfg.KeyFile == "" {
			return bad("certificate and key file are both required")
		}
	}
	if cfg.ACME != nil {
		sources++
		if len(cfg.ACME.Domains) == 0 {
			return bad("acme: no domains")
		}
		for _, d := range cfg.ACME.Domains {
			if d == "" || net.ParseIP(d) != nil {
				return bad("acme: domain %q is not a DNS name", d)
			}
		}
		if cfg.ACME.CacheDir == "" {
			return bad("acme: no cache directory")
		}
	}
	switch {
	case cfg.HTTPSAddr != "" && sources == 0:
		return bad("https needs a certificate source")
	case cfg.HTTPSAddr == "" && sources > 0:
		return bad("certificate source without an https address")
	case sources > 1:
		return bad("more than one certificate source")
	}
	return nil
}

// Run serves cfg.Handler on the configured listeners until ctx is done, then
// shuts down gracefully and returns nil. It returns an error if the
// configuration is invalid, a listener cannot be bound, a server fails, or
// the shutdown does not finish within the timeout.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	var (
		tlsConf *tls.Config
		mgr     *autocert.Manager
	)
	if cfg.HTTPSAddr != "" {
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
		switch {
		case cfg.ACME != nil:
			mgr = newManager(cfg.ACME)
			tlsConf.GetCertificate = mgr.GetCertificate
			tlsConf.NextProtos = []string{"h2", "http/1.1", acme.ALPNProto}
		case cfg.Cert != nil:
			tlsConf.GetCertificate = cfg.Cert.GetCertificate
		default:
			fc, err := NewFileCert(cfg.CertFile, cfg.KeyFile)
			if err != nil {
				return err
			}
			tlsConf.GetCertificate = fc.GetCertificate
		}
	}

	var lc net.ListenConfig
	var httpLn, httpsLn net.Listener
	var addrs Addrs
	if cfg.HTTPSAddr != "" {
		ln, err := lc.Listen(ctx, "tcp", cfg.HTTPSAddr)
		if err != nil {
			return fmt.Errorf("serve: listen https: %w", err)
		}
		httpsLn, addrs.HTTPS = ln, ln.Addr().String()
	}
	if cfg.HTTPAddr != "" {
		ln, err := lc.Listen(ctx, "tcp", cfg.HTTPAddr)
		if err != nil {
			if httpsLn != nil {
				httpsLn.Close()
			}
			return fmt.Errorf("serve: listen http: %w", err)
		}
		httpLn, addrs.HTTP = ln, ln.Addr().String()
	}

	errLog := slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	newServer := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       idleTimeout,
			ErrorLog:          errLog,
		}
	}

	type served struct {
		name string
		srv  *http.Server
		err  error
	}
	var servers []*http.Server
	done := make(chan served, 2)
	if httpsLn != nil {
		srv := newServer(cfg.Handler)
		srv.TLSConfig = tlsConf
		servers = append(servers, srv)
		go func() { done <- served{"https", srv, srv.ServeTLS(httpsLn, "", "")} }()
	}
	if httpLn != nil {
		h := cfg.Handler
		if httpsLn != nil && cfg.Redirect {
			_, port, _ := net.SplitHostPort(addrs.HTTPS)
			noRedirect := cfg.NoRedirect
			if noRedirect == nil {
				noRedirect = []string{HealthPath}
			}
			h = redirectHandler(h, cfg.RedirectHost, port, noRedirect)
		}
		if mgr != nil {
			h = logChallenges(logger, mgr.HTTPHandler(h))
		}
		srv := newServer(h)
		servers = append(servers, srv)
		go func() { done <- served{"http", srv, srv.Serve(httpLn)} }()
	}
	logger.Info("serve: listening", slog.String("http", addrs.HTTP), slog.String("https", addrs.HTTPS))
	if cfg.Ready != nil {
		cfg.Ready(addrs)
	}

	var errs []error
	running := len(servers)
	select {
	case <-ctx.Done():
	case s := <-done:
		running--
		errs = append(errs, fmt.Errorf("serve: %s server: %w", s.name, s.err))
	}

	timeout := cfg.ShutdownTimeout
	if timeout <= 0 {
		timeout = DefaultShutdownTimeout
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for _, srv := range servers {
		wg.Go(func() {
			if err := srv.Shutdown(sctx); err != nil {
				srv.Close()
				mu.Lock()
				errs = append(errs, fmt.Errorf("serve: shutdown: %w", err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for ; running > 0; running-- {
		if s := <-done; !errors.Is(s.err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("serve: %s server: %w", s.name, s.err))
		}
	}
	logger.Info("serve: stopped")
	return errors.Join(errs...)
}

func newManager(c *ACMEConfig) *autocert.Manager {
	allowed := autocert.HostWhitelist(c.Domains...)
	return &autocert.Manager{
		Prompt: autocert.AcceptTOS,
		Cache:  autocert.DirCache(c.CacheDir),
		// A CA validating http-01 on a port other than 80 (Pebble) sends
		// "Host: name:port"; the whitelist knows names only.
		HostPolicy: func(ctx context.Context, host string) error {
			if h, _, err := net.SplitHostPort(host); err == nil {
				host = h
			}
			return allowed(ctx, strings.ToLower(host))
		},
		RenewBefore: c.RenewBefore,
		Email:       c.Email,
		Client: &acme.Client{
			DirectoryURL: c.DirectoryURL,
			HTTPClient:   c.HTTPClient,
			UserAgent:    "clr-serve",
		},
	}
}

// logChallenges logs the ACME http-01 requests that h answers.
func logChallenges(logger *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, challengePrefix) {
			h.ServeHTTP(w, r)
			return
		}
		lw := &logWriter{ResponseWriter: w}
		start := time.Now()
		h.ServeHTTP(lw, r)
		lw.log(logger, r, "serve: acme http-01 challenge", time.Since(start))
	})
}

// redirectHandler sends every request, except the noRedirect paths, to
// https. host is the fixed target host ("" for the request's host with
// httpsPort).
func redirectHandler(next http.Handler, host, httpsPort string, noRedirect []string) http.Handler {
	exempt := make(map[string]bool, len(noRedirect))
	for _, p := range noRedirect {
		exempt[p] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if exempt[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		target, ok := redirectTarget(r, host, httpsPort)
		if !ok {
			http.Error(w, "400 bad request: no host", http.StatusBadRequest)
			return
		}
		code := http.StatusPermanentRedirect
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			code = http.StatusMovedPermanently
		}
		w.Header().Set("Location", target)
		w.WriteHeader(code)
	})
}

// redirectTarget is the https URL for r: host (or the request's host with
// httpsPort, the port left out when 443), the request's path and query.
func redirectTarget(r *http.Request, host, httpsPort string) (string, bool) {
	if host == "" {
		h := r.Host
		if hh, _, err := net.SplitHostPort(h); err == nil {
			h = hh
		} else {
			h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		}
		if h == "" {
			return "", false
		}
		switch {
		case httpsPort != "" && httpsPort != "443":
			host = net.JoinHostPort(h, httpsPort)
		case strings.Contains(h, ":"):
			host = "[" + h + "]"
		default:
			host = h
		}
	}
	return "https://" + host + r.URL.RequestURI(), true
}
