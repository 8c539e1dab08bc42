package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/clr-suite/clr/internal/fsutil"
)

// Per-phase limits of one HTTP request, each also bounded by the overall
// timeout (ListRequest.Timeout). They catch a server that hangs early
// without waiting for the whole budget.
const (
	dialTimeout   = 15 * time.Second
	tlsTimeout    = 15 * time.Second
	headerTimeout = 30 * time.Second
)

// testHookDial, when set, vets every address dialled (the server or the
// proxy). Tests use it to keep all connections on the loopback network.
var testHookDial func(addr string) error

// timeoutError is the cause of a fetch that ran out of ListRequest.Timeout.
type timeoutError struct{ d time.Duration }

func (e *timeoutError) Error() string { return "timed out after " + e.d.String() }
func (e *timeoutError) Unwrap() error { return context.DeadlineExceeded }
func (e *timeoutError) Timeout() bool { return true }

// fetchHTTP fetches an http or https URL.
func fetchHTTP(parent context.Context, u *url.URL, req ListRequest) (*ListResponse, error) {
	timeout := req.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeoutCause(parent, timeout, &timeoutError{timeout})
	defer cancel()
	tr := newTransport(req.RootCAs, timeout)
	defer tr.CloseIdleConnections()

	creds := req.Credentials
	if creds != nil && creds.User == "" && creds.Password == "" {
		creds = nil
	}
	origin := hostPort(u)
	authSent := creds != nil // on the request being made
	client := &http.Client{
		Transport: tr,
		CheckRedirect: func(next *http.Request, via []*http.Request) error {
			if len(via) > MaxRedirects {
				return fmt.Errorf("stopped after %d redirects", MaxRedirects)
			}
			if next.URL.User != nil {
				return errors.New("redirect to a url with user information refused")
			}
			if next.URL.Scheme != "https" {
				for _, r := range via {
					if r.URL.Scheme == "https" {
						return fmt.Errorf("redirect from https to %s refused", Redact(next.URL.String()))
					}
				}
			}
			// net/http forwards Authorization to any port of the same
			// host name and to its subdomains; clr only to the original
			// host:port, and never again once the chain left it.
			next.Header.Del("Authorization")
			authSent = authSent && hostPort(next.URL) == origin
			if authSent {
				next.SetBasicAuth(creds.User, creds.Password)
			}
			return nil
		},
	}

	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrInvalidURL, Redact(req.URL), err)
	}
	ua := req.UserAgent
	if ua == "" {
		ua = DefaultUserAgent
	}
	hreq.Header.Set("User-Agent", ua)
	if creds != nil {
		hreq.SetBasicAuth(creds.User, creds.Password)
	}
	conditional := req.ETag != "" || req.LastModified != ""
	if req.ETag != "" {
		hreq.Header.Set("If-None-Match", req.ETag)
	}
	if req.LastModified != "" {
		hreq.Header.Set("If-Modified-Since", req.LastModified)
	}

	resp, err := client.Do(hreq)
	if err != nil {
		at := u.String()
		var ue *url.Error
		if errors.As(err, &ue) {
			// Drop url.Error's "Get URL:" prefix; its URL is the hop that
			// failed, with the user kept (only the password is masked).
			at, err = ue.URL, ue.Err
		}
		return nil, failure(parent, ctx, at, err)
	}
	defer resp.Body.Close()
	final := Redact(resp.Request.URL.String())

	switch code := resp.StatusCode; {
	case code == http.StatusNotModified && conditional:
		return &ListResponse{
			NotModified:  true,
			ETag:         or(resp.Header.Get("ETag"), req.ETag),
			LastModified: or(resp.Header.Get("Last-Modified"), req.LastModified),
			URL:          final,
		}, nil
	case code < 200 || code > 299:
		return nil, &FetchError{URL: final, Status: code, Err: statusError(code, creds != nil, authSent)}
	}
	body, err := readBody(resp, req.MaxSize)
	if errors.Is(err, fsutil.ErrTooLarge) {
		return nil, fmt.Errorf("fetch %s: %w", final, err)
	}
	if err != nil {
		return nil, failure(parent, ctx, final, err)
	}
	return &ListResponse{
		Body:         body,
		ETag:         resp.Header.Get("ETag"),
		LastModified: resp.Header.Get("Last-Modified"),
		URL:          final,
	}, nil
}

// newTransport is a one-fetch HTTP transport: proxy from the environment,
// TLS 1.2 or later against roots, phase timeouts within timeout.
func newTransport(roots *x509.CertPool, timeout time.Duration) *http.Transport {
	// A phase limit at or over the overall timeout is left to the
	// context, whose error names the timeout.
	phase := func(d time.Duration) time.Duration {
		if d < timeout {
			return d
		}
		return 0
	}
	dialer := &net.Dialer{Timeout: phase(dialTimeout), KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if testHookDial != nil {
				if err := testHookDial(addr); err != nil {
					return nil, err
				}
			}
			return dialer.DialContext(ctx, network, addr)
		},
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots},
		TLSHandshakeTimeout:   phase(tlsTimeout),
		ResponseHeaderTimeout: phase(headerTimeout),
		ForceAttemptHTTP2:     true,
	}
}

// readBody reads at most max+1 bytes of resp's body; a Content-Length over
// max fails before reading anything.
func readBody(resp *http.Response, max int64) ([]byte, error) {
	if resp.ContentLength > max {
		return nil, fmt.Errorf("%w (content-length %d, limit %d bytes)", fsutil.ErrTooLarge, resp.ContentLength, max)
	}
	return fsutil.ReadAllCapped(resp.Body, max, "response body")
}

// failure turns the error of a fetch of at into what FetchList returns:
// cancellation by the caller stays a plain context.Canceled error, the
// rest is a *FetchError, with the timeout as its cause when time ran out.
func failure(parent, ctx context.Context, at string, err error) error {
	at = Redact(at)
	if errors.Is(parent.Err(), context.Canceled) {
		return fmt.Errorf("fetch %s: %w", at, context.Canceled)
	}
	if ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	return &FetchError{URL: at, Err: err}
}

// statusError describes a refused HTTP status.
func statusError(code int, haveCreds, authSent bool) error {
	msg := fmt.Sprintf("http status %d", code)
	if text := http.StatusText(code); text != "" {
		msg += " " + strings.ToLower(text)
	}
	if code == http.StatusUnauthorized {
		switch {
		case !haveCreds:
			msg += " (the server wants credentials)"
		case !authSent:
			msg += " (credentials are not sent after a redirect to another host or port)"
		default:
			msg += " (credentials refused)"
		}
	}
	return errors.New(msg)
}

// hostPort is u's host name (lower case) and port, the default port of the
// scheme if none is given.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
