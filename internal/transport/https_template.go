package transport

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// https:// (and http://) templates: one GET per file, whole files (no
// delta: the basis is not used), resumable with Range for first installs.

// httpPartialSub is the directory inside PartialDir that keeps interrupted
// HTTP downloads: "<escaped path>" (data) and "<escaped path>.meta" (where
// it came from and its validators). rsync keeps its partial files in
// PartialDir itself, by base name.
const httpPartialSub = ".clr-https"

// idleTimeoutError is the cause of a transfer that moved no data for the
// I/O timeout.
type idleTimeoutError struct{ d time.Duration }

func (e *idleTimeoutError) Error() string { return "no data received for " + e.d.String() }
func (e *idleTimeoutError) Timeout() bool { return true }

// partialMeta describes a partial download, to resume it only from the
// same URL, signed size and representation.
type partialMeta struct {
	URL          string `json:"url"`
	Size         int64  `json:"size"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
}

// validator is the If-Range value for m: a strong ETag, else the date.
func (m partialMeta) validator() string {
	if m.ETag != "" && !strings.HasPrefix(m.ETag, "W/") {
		return m.ETag
	}
	return m.LastModified
}

// fetchHTTPTemplate downloads every file of an http(s) template.
func fetchHTTPTemplate(ctx context.Context, p *templatePlan) (TemplateStats, error) {
	// Phase limits (connect 15 s, TLS 15 s, headers 30 s) stay; the body
	// is bounded by the I/O timeout, not by a total.
	tr := newTransport(p.req.RootCAs, 365*24*time.Hour)
	tr.DisableCompression = true // bytes as stored: Range offsets and sizes must mean the file
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: checkTemplateRedirect}
	pace := newPacer(p.bwlimit)
	pace.onBytes = p.req.Progress
	var stats TemplateStats
	for _, f := range p.files {
		src := p.u
		if p.folder {
			src = p.u.ResolveReference(&url.URL{Path: f.Path})
		}
		g := &httpGet{p: p, client: client, pace: pace, f: f, src: src.String(), stats: &stats}
		if err := g.run(ctx); err != nil {
			return stats, err
		}
	}
	return stats, nil
}

// checkTemplateRedirect follows at most MaxRedirects redirects, never from
// https to anything else, never to a URL with user information.
func checkTemplateRedirect(next *http.Request, via []*http.Request) error {
	if len(via) > MaxRedirects {
		return permanent(fmt.Errorf("stopped after %d redirects", MaxRedirects))
	}
	if next.URL.User != nil {
		return permanent(errors.New("redirect to a url with user information refused"))
	}
	if next.URL.Scheme != "https" {
		for _, r := range via {
			if r.URL.Scheme == "https" {
				return permanent(fmt.Errorf("redirect from https to %s refused", Redact(next.URL.String())))
			}
		}
	}
	return nil
}

// httpGet is the download of one file.
type httpGet struct {
	p      *templatePlan
	client *http.Client
	pace   *pacer
	f      FileSpec
	src    string
	stats  *TemplateStats
}

// partialPaths are the data and meta files of f in PartialDir ("" when
// downloads are not kept).
func (g *httpGet) partialPaths() (data, meta string) {
	if g.p.partial == "" {
		return "", ""
	}
	dir := filepath.Join(g.p.partial, httpPartialSub)
	// A hash, not the path: any path length or alphabet fits a file name,
	// and "x.meta" of one file never meets the data of another.
	sum := sha256.Sum256([]byte(g.f.Path))
	name := hex.EncodeToString(sum[:16])
	return filepath.Join(dir, name+".data"), filepath.Join(dir, name+".meta")
}

// resumable returns the offset and validators of a partial download of g
// that may be continued (0 if none).
func (g *httpGet) resumable(data, meta string) (int64, partialMeta) {
	var m partialMeta
	if data == "" {
		return 0, m
	}
	raw, err := os.ReadFile(meta)
	if err != nil || json.Unmarshal(raw, &m) != nil || m.URL != g.src || m.Size != g.f.Size || m.validator() == "" {
		return 0, partialMeta{}
	}
	fi, err := os.Stat(data)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() <= 0 || fi.Size() >= g.f.Size {
		return 0, partialMeta{}
	}
	return fi.Size(), m
}

func (g *httpGet) run(ctx context.Context) error {
	data, meta := g.partialPaths()
	if data != "" {
		if err := os.MkdirAll(filepath.Dir(data), 0o700); err != nil {
			return fmt.Errorf("fetch %s: partial dir: %w", Redact(g.src), pathErr(err))
		}
	}
	offset, m := g.resumable(data, meta)
	err := g.get(ctx, data, meta, offset, m)
	if errors.Is(err, errRangeRefused) {
		// The partial file does not fit the resource: start over.
		os.Remove(data)
		os.Remove(meta)
		err = g.get(ctx, data, meta, 0, partialMeta{})
	}
	return err
}

// errRangeRefused: the server answered a resumed request with 416 or
// with another range than the one asked for.
var errRangeRefused = errors.New("range not satisfiable")

// get makes one request, from offset (with If-Range m's validator) when
// offset > 0, and writes the body into the stage (via data when partial
// downloads are kept).
func (g *httpGet) get(parent context.Context, data, meta string, offset int64, m partialMeta) error {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	idle := g.p.ioTimeout
	timer := time.AfterFunc(idle, func() { cancel(&idleTimeoutError{idle}) })
	defer timer.Stop()

	at := Redact(g.src)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, g.src, nil)
	if err != nil {
		return fmt.Errorf("%w %s: %v", ErrInvalidURL, at, err)
	}
	hreq.Header.Set("User-Agent", DefaultUserAgent)
	hreq.Header.Set("Accept-Encoding", "identity")
	if offset > 0 {
		hreq.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
		hreq.Header.Set("If-Range", m.validator())
	}
	resp, err := g.client.Do(hreq)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			at, err = Redact(ue.URL), ue.Err
		}
		return g.failure(parent, ctx, at, err)
	}
	defer resp.Body.Close()
	at = Redact(resp.Request.URL.String())

	appending := false
	switch code := resp.StatusCode; {
	case code == http.StatusPartialContent && offset > 0:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != offset {
			return errRangeRefused // not the range asked for: start over
		}
		if total > g.f.Size {
			g.dropPartial(data, meta)
			return tooLarge(at, g.f, total)
		}
		appending = true
	case code == http.StatusRequestedRangeNotSatisfiable && offset > 0:
		return errRangeRefused
	case code == http.StatusOK:
	case code == http.StatusNotFound || code == http.StatusGone:
		return &FetchError{URL: at, Status: code, Err: fmt.Errorf("%w (%v)", ErrMissingFile, statusError(code, false, false))}
	default:
		return &FetchError{URL: at, Status: code, Err: statusError(code, false, false)}
	}
	var have int64 // bytes already in the target
	if appending {
		have = offset
	}
	if resp.ContentLength >= 0 && have+resp.ContentLength > g.f.Size {
		g.dropPartial(data, meta)
		return tooLarge(at, g.f, have+resp.ContentLength)
	}

	// Where the bytes go: straight into the stage, or into the partial
	// file that is moved there when complete.
	target := filepath.Join(g.p.stage, filepath.FromSlash(g.f.Path))
	if data != "" {
		target = data
		nm := partialMeta{URL: g.src, Size: g.f.Size, ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified")}
		raw, _ := json.Marshal(nm)
		if err := os.WriteFile(meta, raw, 0o600); err != nil {
			return fmt.Errorf("fetch %s: partial dir: %w", at, pathErr(err))
		}
	}
	staged := filepath.Join(g.p.stage, filepath.FromSlash(g.f.Path))
	if err := os.MkdirAll(filepath.Dir(staged), 0o755); err != nil {
		return fmt.Errorf("fetch %s: write %s: %w", at, g.f.Path, pathErr(err))
	}
	var out *os.File
	if appending {
		out, err = os.OpenFile(target, os.O_WRONLY|os.O_APPEND, 0o644)
	} else {
		out, err = os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	}
	if err != nil {
		return fmt.Errorf("fetch %s: write %s: %w", at, g.f.Path, pathErr(err))
	}
	if appending {
		g.stats.Resumed = true
	}
	n, err := copyCapped(ctx, out, resp.Body, g.f.Size-have, g.pace, func(int) { timer.Reset(idle) })
	g.stats.WireBytesIn += n
	g.stats.LiteralBytes += n
	if cerr := out.Close(); err == nil && cerr != nil {
		err = &writeError{cerr}
	}
	var we *writeError
	switch {
	case err == nil:
	case errors.Is(err, errOverCap):
		os.Remove(target)
		g.dropPartial(data, meta)
		return tooLarge(at, g.f, -1)
	case errors.As(err, &we):
		return fmt.Errorf("fetch %s: write %s: %w", at, g.f.Path, err)
	default:
		return g.failure(parent, ctx, at, err)
	}
	if data != "" {
		if err := moveFile(data, staged); err != nil {
			return fmt.Errorf("fetch %s: write %s: %w", at, g.f.Path, err)
		}
		os.Remove(meta)
	}
	return nil
}

// dropPartial removes a partial download that must not be resumed.
func (g *httpGet) dropPartial(data, meta string) {
	if data != "" {
		os.Remove(data)
		os.Remove(meta)
	}
}

// failure turns a request or body error into what FetchTemplate returns.
func (g *httpGet) failure(parent, ctx context.Context, at string, err error) error {
	if parent.Err() != nil {
		return stopped(parent, at, nil)
	}
	var idle *idleTimeoutError
	if cause := context.Cause(ctx); errors.As(cause, &idle) {
		err = cause
	}
	return &FetchError{URL: at, Err: err}
}

// parseContentRange parses "bytes START-END/TOTAL"; total is -1 for "*".
func parseContentRange(s string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, false
	}
	total = -1
	if tot != "*" {
		t, err := strconv.ParseInt(tot, 10, 64)
		if err != nil || t <= end {
			return 0, 0, false
		}
		total = t
	}
	return start, total, true
}

// moveFile renames src to dst, copying when they are on different file
// systems.
func moveFile(src, dst string) error {
	err := os.Rename(src, dst)
	if err == nil || !errors.Is(err, syscall.EXDEV) {
		return pathErrOrNil(err)
	}
	in, err := os.Open(src)
	if err != nil {
		return pathErr(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return pathErr(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	if err := out.Close(); err != nil {
		os.Remove(dst)
		return err
	}
	return os.Remove(src)
}

func pathErrOrNil(err error) error {
	if err == nil {
		return nil
	}
	return pathErr(err)
}
