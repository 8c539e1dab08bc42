package transport

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"

	"github.com/clr-suite/clr/internal/fsutil"
)

// fetchFile reads a file URL: file:///abs/path, file:/abs/path or
// file://localhost/abs/path.
func fetchFile(ctx context.Context, u *url.URL, req ListRequest) (*ListResponse, error) {
	if u.Host != "" && !strings.EqualFold(u.Host, "localhost") {
		return nil, fmt.Errorf("%w %s: file urls name a local file (file:///path); host %q is not supported", ErrInvalidURL, Redact(req.URL), u.Host)
	}
	if u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return nil, fmt.Errorf("%w %s: a file url needs an absolute path (file:///path)", ErrInvalidURL, Redact(req.URL))
	}
	if u.RawQuery != "" {
		return nil, fmt.Errorf("%w %s: a file url has no query", ErrInvalidURL, Redact(req.URL))
	}
	name := (&url.URL{Scheme: "file", Path: u.Path}).String()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fetch %s: %w", name, err)
	}
	body, err := fsutil.ReadFileCapped(u.Path, req.MaxSize)
	if errors.Is(err, fsutil.ErrTooLarge) {
		return nil, fmt.Errorf("fetch %s: %w", name, err)
	}
	if err != nil {
		// The URL already names the file: keep the operation and cause.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = fmt.Errorf("%s: %w", pe.Op, pe.Err)
		}
		return nil, &FetchError{URL: name, Err: err}
	}
	return &ListResponse{Body: body, URL: name}, nil
}
