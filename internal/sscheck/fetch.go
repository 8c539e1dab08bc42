package sscheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"
)

// fetcher GETs paths under the base URL, joined as Incus joins them
// (url.JoinPath). Credentials in the base URL are sent as basic auth by
// net/http, as the clients allow.
type fetcher struct {
	client *http.Client
	base   *url.URL
}

func (f *fetcher) url(p string) *url.URL { return f.base.JoinPath(p) }

func (f *fetcher) open(ctx context.Context, p string) (*http.Response, string, error) {
	u := f.url(p)
	shown := u.Redacted()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, shown, fmt.Errorf("GET %s: %w", shown, err)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL would repeat credentials
		}
		return nil, shown, fmt.Errorf("GET %s: %w", shown, err)
	}
	if resp.StatusCode != http.StatusOK {
		_ = resp.Body.Close()
		return nil, shown, fmt.Errorf("GET %s: HTTP %s", shown, resp.Status)
	}
	return resp, shown, nil
}

// get returns the whole body of p; empty bodies and bodies over limit
// bytes are errors (Incus: "No content in download").
func (f *fetcher) get(ctx context.Context, p string, limit int64) ([]byte, error) {
	resp, shown, err := f.open(ctx, p)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", shown, err)
	}
	switch {
	case int64(len(b)) > limit:
		return nil, fmt.Errorf("GET %s: body larger than %d bytes", shown, limit)
	case len(b) == 0:
		return nil, fmt.Errorf("GET %s: empty body", shown)
	}
	return b, nil
}

// stream copies at most limit bytes of p's body to w.
func (f *fetcher) stream(ctx context.Context, p string, limit int64, w io.Writer) (int64, error) {
	resp, shown, err := f.open(ctx, p)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, io.LimitReader(resp.Body, limit))
	if err != nil {
		return n, fmt.Errorf("GET %s: %w", shown, err)
	}
	return n, nil
}

// NewHTTPClient returns the client Main uses: no overall timeout (bound the
// run with the context), a one-minute wait for response headers, TLS
// verification against the system roots plus the PEM certificates in
// caFile (if set), or none with insecure.
func NewHTTPClient(insecure bool, caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = time.Minute
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%w: read CA file: %w", ErrUsage, err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: no PEM certificate in %s", ErrUsage, caFile)
		}
		cfg.RootCAs = pool
	}
	if insecure {
		cfg.InsecureSkipVerify = true
	}
	tr.TLSClientConfig = cfg
	return &http.Client{Transport: tr}, nil
}
