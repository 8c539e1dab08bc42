package vcspcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// fetcher makes the subscriber's requests, with basic auth when a password
// is set.
type fetcher struct {
	client         *http.Client
	user, password string
}

func (f *fetcher) do(ctx context.Context, method, u string, hdr map[string]string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	if f.password != "" {
		req.SetBasicAuth(f.user, f.password)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	return resp, nil
}

func statusErr(method, u string, resp *http.Response) error {
	return fmt.Errorf("%s %s: HTTP %s", method, u, resp.Status)
}

// get fetches u whole; bodies over limit bytes are refused.
func (f *fetcher) get(ctx context.Context, u string, limit int64) ([]byte, error) {
	resp, err := f.do(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusErr("GET", u, resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("GET %s: body larger than %d bytes", u, limit)
	}
	return b, nil
}

// stream GETs u and copies its body to w, returning the byte count.
func (f *fetcher) stream(ctx context.Context, u string, w io.Writer) (int64, error) {
	resp, err := f.do(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, statusErr("GET", u, resp)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("GET %s: %w", u, err)
	}
	return n, nil
}

// size returns the length the server announces for u: HEAD's
// Content-Length, or, when HEAD is refused or has no length, the total of a
// one-byte ranged GET.
func (f *fetcher) size(ctx context.Context, u string) (int64, error) {
	resp, err := f.do(ctx, http.MethodHead, u, nil)
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK && resp.ContentLength >= 0:
		return resp.ContentLength, nil
	case resp.StatusCode == http.StatusOK, resp.StatusCode == http.StatusMethodNotAllowed, resp.StatusCode == http.StatusNotImplemented:
	default:
		return 0, statusErr("HEAD", u, resp)
	}
	resp, err = f.do(ctx, http.MethodGet, u, map[string]string{"Range": "bytes=0-0"})
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		cr := resp.Header.Get("Content-Range")
		_, total, ok := strings.Cut(cr, "/")
		n, err := strconv.ParseInt(total, 10, 64)
		if !ok || err != nil {
			return 0, fmt.Errorf("GET %s: unusable Content-Range %q", u, cr)
		}
		return n, nil
	case http.StatusOK:
		if resp.ContentLength < 0 {
			return 0, fmt.Errorf("GET %s: no Content-Length", u)
		}
		return resp.ContentLength, nil
	case http.StatusRequestedRangeNotSatisfiable:
		return 0, nil // empty file
	}
	return 0, statusErr("GET", u, resp)
}

// head512 returns up to the first 512 bytes of u.
func (f *fetcher) head512(ctx context.Context, u string) ([]byte, error) {
	resp, err := f.do(ctx, http.MethodGet, u, map[string]string{"Range": "bytes=0-511"})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		return nil, statusErr("GET", u, resp)
	}
	b := make([]byte, 512)
	n, err := io.ReadFull(resp.Body, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return b[:n], nil
}
