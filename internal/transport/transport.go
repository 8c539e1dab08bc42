// Package transport fetches what a subscriber downloads from a publisher.
// Its first piece is [FetchList]: one signed image list document from a
// file://, http:// or https:// URL, with a size cap, timeouts, conditional
// GET, proxy support and careful redirect and credential handling
// (docs/transport.md).
//
// The package never prints. Errors are one lower-case line without user
// information or passwords; callers branch on them with errors.Is against
// [ErrDownload] (vmcatcher's exit code 10), fsutil.ErrTooLarge, and the URL
// errors [ErrInvalidURL], [ErrUnsupportedScheme] and [ErrCredentialsInURL].
package transport

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// Defaults of a [ListRequest].
const (
	DefaultTimeout   = 60 * time.Second // ListRequest.Timeout 0
	DefaultUserAgent = "clr"            // ListRequest.UserAgent ""
	MaxRedirects     = 10               // redirects followed before giving up
)

// ExitDownload is vmcatcher's exit code for a failed download, returned by
// [FetchError.ExitCode].
const ExitDownload = 10

// Errors. Every failure to get the document from a usable URL is a
// *[FetchError], which matches ErrDownload. A body over the cap wraps
// fsutil.ErrTooLarge instead, and a URL that cannot be used at all wraps
// one of the URL errors; neither matches ErrDownload.
var (
	// ErrDownload: the document could not be fetched (missing file,
	// connection or TLS failure, timeout, HTTP status other than 2xx or an
	// expected 304, refused redirect).
	ErrDownload = errors.New("download failed")
	// ErrInvalidURL: the URL does not parse, has no host (http/https), or
	// is a file URL without an absolute path or with a host other than
	// localhost.
	ErrInvalidURL = errors.New("invalid url")
	// ErrUnsupportedScheme: the URL is not file://, http:// or https://.
	ErrUnsupportedScheme = errors.New("unsupported url scheme")
	// ErrCredentialsInURL: the URL carries user:password@; credentials
	// are passed in ListRequest.Credentials instead.
	ErrCredentialsInURL = errors.New("credentials in url")
)

// Credentials are sent as HTTP basic authentication, only to the host:port
// of the request URL (see [FetchList]). Formatting them with fmt or log/slog
// never shows the password.
type Credentials struct {
	User     string
	Password string
}

// Format prints the user and a placeholder for the password, whatever the
// verb, so that a stray %v, %+v, %#v or %s cannot leak the password.
func (c Credentials) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprintf(f, "transport.Credentials{User:%q, Password:\"[redacted]\"}", c.User)
		return
	}
	fmt.Fprintf(f, "{User:%s Password:[redacted]}", c.User)
}

// LogValue implements slog.LogValuer: the user, never the password.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("user", c.User), slog.String("password", "[redacted]"))
}

// ListRequest says what to fetch and how.
type ListRequest struct {
	// URL is file:///abs/path (also file:/abs/path and
	// file://localhost/abs/path), http://... or https://...; it must not
	// contain user information.
	URL string
	// Credentials, when not nil and not empty, are sent as HTTP basic
	// authentication (http/https only; ignored for file URLs).
	Credentials *Credentials
	// MaxSize caps the document in bytes; it must be positive. At most
	// MaxSize+1 bytes are read.
	MaxSize int64
	// ETag and LastModified are the validators of the copy the caller
	// has, from a previous ListResponse. When either is set the request
	// is conditional (If-None-Match, If-Modified-Since), and an unchanged
	// document yields NotModified. http/https only.
	ETag         string
	LastModified string
	// RootCAs verifies HTTPS servers; nil means the system roots.
	RootCAs *x509.CertPool
	// Timeout bounds the whole fetch, body and redirects included;
	// 0 means DefaultTimeout.
	Timeout time.Duration
	// UserAgent is the User-Agent header; "" means DefaultUserAgent.
	UserAgent string
}

// ListResponse is a fetched document, or the news that it did not change.
type ListResponse struct {
	// Body is the document (nil when NotModified).
	Body []byte
	// NotModified: the server answered 304 to a conditional request; the
	// caller's copy is current.
	NotModified bool
	// ETag and LastModified are the validators to send next time, exactly
	// as the server sent them ("" if none; file URLs have none). After a
	// 304 that omits them, they are the request's.
	ETag         string
	LastModified string
	// URL is the address the document came from: the final URL after
	// redirects, without user information (file URLs as file:///path).
	URL string
}

// FetchError is a failed download. It matches [ErrDownload] with
// errors.Is, and its ExitCode is vmcatcher's download failure code.
type FetchError struct {
	URL    string // the URL that failed (after redirects), user information removed
	Status int    // the HTTP status when the server's answer was refused, else 0
	Err    error  // the cause
}

// Error returns one line, for example
//
//	download failed: https://lists.example.org/image.list: http status 404 not found
func (e *FetchError) Error() string {
	msg := "download failed: " + e.URL
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the cause.
func (e *FetchError) Unwrap() error { return e.Err }

// Is reports whether target is ErrDownload.
func (e *FetchError) Is(target error) bool { return target == ErrDownload }

// ExitCode returns [ExitDownload] (10), vmcatcher's code for a failed
// download.
func (e *FetchError) ExitCode() int { return ExitDownload }

// FetchList fetches the document at req.URL.
//
// File URLs are read from the local file system. HTTP and HTTPS go through
// the proxy named by HTTP_PROXY/HTTPS_PROXY/NO_PROXY, verify servers against
// req.RootCAs with TLS 1.2 or later, follow at most [MaxRedirects]
// redirects but never from https to http, and send req.Credentials only to
// the host:port of req.URL: after a redirect to any other host or port they
// are dropped for the rest of the chain. Any status other than 2xx (or 304
// to a conditional request) is a *[FetchError] with the status.
//
// A document larger than req.MaxSize, by Content-Length or counted while
// reading, is an error wrapping fsutil.ErrTooLarge (not ErrDownload).
// Cancelling ctx returns an error wrapping context.Canceled (not
// ErrDownload); running out of req.Timeout or ctx's deadline is a
// *FetchError wrapping context.DeadlineExceeded.
func FetchList(ctx context.Context, req ListRequest) (*ListResponse, error) {
	if req.MaxSize <= 0 {
		return nil, fmt.Errorf("fetch list: max size must be positive, not %d", req.MaxSize)
	}
	if req.Timeout < 0 {
		return nil, fmt.Errorf("fetch list: negative timeout %s", req.Timeout)
	}
	u, err := parseURL(req.URL)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "file" {
		return fetchFile(ctx, u, req)
	}
	return fetchHTTP(ctx, u, req)
}

// parseURL parses raw and refuses what FetchList cannot use. Its errors
// show the URL redacted.
func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats raw, user information included.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%w %s: %v", ErrInvalidURL, Redact(raw), err)
	}
	switch u.Scheme {
	case "file", "http", "https":
	case "":
		return nil, fmt.Errorf("%w: %s is not an absolute url (file://, http:// or https://)", ErrUnsupportedScheme, Redact(raw))
	default:
		return nil, fmt.Errorf("%w %q in %s: use file://, http:// or https://", ErrUnsupportedScheme, u.Scheme, Redact(raw))
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w %s: give the user and password as subscription credentials, not in the url", ErrCredentialsInURL, Redact(raw))
	}
	if u.Scheme != "file" && u.Hostname() == "" {
		// Not shown: without a host, what follows the scheme may be
		// anything, a password included.
		return nil, fmt.Errorf("%w: %s url without a host", ErrInvalidURL, u.Scheme)
	}
	return u, nil
}

// Redact returns rawURL without its user information (user:password@), for
// logs and messages. A URL without user information is returned unchanged;
// one that does not parse is cut by hand.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		scheme, rest, ok := strings.Cut(rawURL, "://")
		if !ok {
			return rawURL
		}
		return scheme + "://" + cutUserinfo(rest)
	}
	if u.User == nil && !strings.Contains(u.Opaque, "@") && u.RawQuery == "" {
		return rawURL
	}
	u.User = nil
	u.Opaque = cutUserinfo(u.Opaque) // "http:user:pw@host" parses as opaque
	if u.RawQuery != "" {
		// ?token=... is a secret as often as user info is: keep the keys.
		q := u.Query()
		for k := range q {
			q[k] = []string{"REDACTED"}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// cutUserinfo drops everything up to the last "@" of the authority that
// starts s (which ends at the first "/", "?" or "#").
func cutUserinfo(s string) string {
	end := strings.IndexAny(s, "/?#")
	if end < 0 {
		end = len(s)
	}
	if at := strings.LastIndex(s[:end], "@"); at >= 0 {
		return s[at+1:]
	}
	return s
}
