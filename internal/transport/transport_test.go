package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"testing"

	"github.com/clr-suite/clr/internal/fsutil"
)

const (
	testUser     = "alice-user"
	testPassword = "s3cret-Pa55word"
)

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://lists.example.org/a/list.smime", "https://lists.example.org/a/list.smime"},
		{"https://alice:s3cret@lists.example.org/a?x=1#f", "https://lists.example.org/a?x=REDACTED#f"},
		{"https://lists.example.org/l?token=s3cret&a=b", "https://lists.example.org/l?a=REDACTED&token=REDACTED"},
		{"https://alice@lists.example.org:8443/a", "https://lists.example.org:8443/a"},
		{"http://a:b@c@host/p@q", "http://host/p@q"},
		{"http://@host/", "http://host/"},
		{"file://alice:pw@localhost/tmp/l", "file://localhost/tmp/l"},
		{"file:///tmp/a@b", "file:///tmp/a@b"},
		{"http:alice:s3cret@host/x", "http:host/x"},
		// Unparseable: cut by hand.
		{"http://alice:s3cret@host/%zz", "http://host/%zz"},
		{"http://alice:s3 cret@host:bad/", "http://host:bad/"},
		{"not a url", "not a url"},
		{"", ""},
	} {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestFetchError(t *testing.T) {
	cause := errors.New("http status 404 not found")
	var err error = &FetchError{URL: "https://lists.example.org/list", Status: 404, Err: cause}
	if got, want := err.Error(), "download failed: https://lists.example.org/list: http status 404 not found"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	wrapped := fmt.Errorf("update sub: %w", err)
	if !errors.Is(wrapped, ErrDownload) || !errors.Is(wrapped, cause) {
		t.Error("errors.Is misses ErrDownload or the cause")
	}
	if errors.Is(wrapped, ErrInvalidURL) {
		t.Error("a FetchError matches ErrInvalidURL")
	}
	var fe *FetchError
	if !errors.As(wrapped, &fe) || fe.Status != 404 || fe.ExitCode() != 10 {
		t.Errorf("errors.As: %+v", fe)
	}
	var coder interface{ ExitCode() int }
	if !errors.As(wrapped, &coder) || coder.ExitCode() != ExitDownload {
		t.Error("no ExitCode() int in the chain")
	}
}

func TestCredentialsNeverPrinted(t *testing.T) {
	c := Credentials{User: testUser, Password: testPassword}
	req := ListRequest{URL: "https://x.example/l", Credentials: &c, MaxSize: 1}
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%d", "%x", "%T"} {
		out = append(out, fmt.Sprintf(verb, c), fmt.Sprintf(verb, &c), fmt.Sprintf(verb, req), fmt.Sprintf(verb, &req))
	}
	out = append(out, fmt.Sprint(c), fmt.Sprintln(&c))
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	logger.Info("fetch", "credentials", c, "ptr", &c)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("fetch", "credentials", c)
	out = append(out, buf.String())
	for _, s := range out {
		if strings.Contains(s, testPassword) {
			t.Errorf("password printed: %s", s)
		}
	}
	if got := fmt.Sprintf("%v", c); got != "{User:alice-user Password:[redacted]}" {
		t.Errorf("%%v = %s", got)
	}
	if got := fmt.Sprintf("%v", (*Credentials)(nil)); got != "<nil>" {
		t.Errorf("nil %%v = %s", got)
	}
}

func TestRequestRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  ListRequest
		want error  // nil: just not ErrDownload
		text string // in the message
	}{
		{"no max size", ListRequest{URL: "file:///x"}, nil, "max size must be positive"},
		{"negative max size", ListRequest{URL: "file:///x", MaxSize: -1}, nil, "max size"},
		{"negative timeout", ListRequest{URL: "file:///x", MaxSize: 1, Timeout: -1}, nil, "negative timeout"},
		{"ftp", ListRequest{URL: "ftp://lists.example.org/l", MaxSize: 1}, ErrUnsupportedScheme, `"ftp"`},
		{"rsync", ListRequest{URL: "rsync://lists.example.org/l", MaxSize: 1}, ErrUnsupportedScheme, "use file://, http:// or https://"},
		{"no scheme", ListRequest{URL: "lists.example.org/l", MaxSize: 1}, ErrUnsupportedScheme, "not an absolute url"},
		{"credentials in url", ListRequest{URL: "https://" + testUser + ":" + testPassword + "@lists.example.org/l", MaxSize: 1}, ErrCredentialsInURL, "not in the url"},
		{"user in url", ListRequest{URL: "https://" + testUser + "@lists.example.org/l", MaxSize: 1}, ErrCredentialsInURL, "https://lists.example.org/l"},
		{"bad escape", ListRequest{URL: "https://" + testUser + ":" + testPassword + "@lists.example.org/%zz", MaxSize: 1}, ErrInvalidURL, "invalid url https://lists.example.org/%zz"},
		{"http no host", ListRequest{URL: "http:///list", MaxSize: 1}, ErrInvalidURL, "without a host"},
		{"opaque http", ListRequest{URL: "http:" + testUser + ":" + testPassword + "@host/x", MaxSize: 1}, ErrInvalidURL, "without a host"},
		{"file foreign host", ListRequest{URL: "file://fileserver/srv/list", MaxSize: 1}, ErrInvalidURL, `host "fileserver"`},
		{"file relative", ListRequest{URL: "file:lists/list", MaxSize: 1}, ErrInvalidURL, "absolute path"},
		{"file query", ListRequest{URL: "file:///srv/list?x=1", MaxSize: 1}, ErrInvalidURL, "no query"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FetchList(context.Background(), tc.req)
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %q is not %v", err, tc.want)
			}
			if errors.Is(err, ErrDownload) {
				t.Errorf("error %q is ErrDownload", err)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q lacks %q", err, tc.text)
			}
			checkClean(t, err)
		})
	}
}

func TestFetchFile(t *testing.T) {
	dir := t.TempDir()
	list := writeFile(t, dir, "image.list", "signed list")
	writeFile(t, dir, "big.list", strings.Repeat("x", 100))
	for _, tc := range []struct {
		name    string
		url     string
		max     int64
		body    string // want this body...
		wantErr error  // ...or this error
		text    string
	}{
		{"three slashes", "file://" + list, 100, "signed list", nil, ""},
		{"one slash", "file:" + list, 100, "signed list", nil, ""},
		{"localhost", "file://localhost" + list, 100, "signed list", nil, ""},
		{"LOCALHOST", "file://LOCALHOST" + list, 100, "signed list", nil, ""},
		{"escaped", "file://" + strings.ReplaceAll(list, "image.list", "image%2Elist"), 100, "signed list", nil, ""},
		{"exactly the cap", "file://" + list, int64(len("signed list")), "signed list", nil, ""},
		{"missing", "file://" + dir + "/gone.list", 100, "", ErrDownload, "open: no such file or directory"},
		{"directory", "file://" + dir, 100, "", ErrDownload, "download failed: file://" + dir},
		{"oversize", "file://" + dir + "/big.list", 99, "", fsutil.ErrTooLarge, "limit 99 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := FetchList(context.Background(), ListRequest{URL: tc.url, MaxSize: tc.max, ETag: `"e"`})
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("fetched %q", resp.Body)
				}
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("error %q is not %v", err, tc.wantErr)
				}
				if tc.wantErr == fsutil.ErrTooLarge && errors.Is(err, ErrDownload) {
					t.Errorf("oversize is ErrDownload: %v", err)
				}
				if !strings.Contains(err.Error(), tc.text) {
					t.Errorf("error %q lacks %q", err, tc.text)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(resp.Body) != tc.body || resp.NotModified || resp.ETag != "" || resp.LastModified != "" {
				t.Errorf("response %+v", resp)
			}
			if resp.URL != "file://"+list {
				t.Errorf("URL = %q, want file://%s", resp.URL, list)
			}
		})
	}

	t.Run("missing is not exist", func(t *testing.T) {
		_, err := FetchList(context.Background(), ListRequest{URL: "file://" + dir + "/gone", MaxSize: 1})
		var fe *FetchError
		if !errors.As(err, &fe) || !errors.Is(err, fs.ErrNotExist) || fe.ExitCode() != 10 || fe.Status != 0 {
			t.Errorf("error %#v", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := FetchList(ctx, ListRequest{URL: "file://" + list, MaxSize: 100})
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrDownload) {
			t.Errorf("error %v", err)
		}
	})
}
