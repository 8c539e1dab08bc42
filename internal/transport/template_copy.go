package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Whole-file copies for https:// and file:// templates: a capped, paced,
// cancellable copy loop.

// copyChunk is the largest read of the copy loop.
const copyChunk = 64 << 10

// pacer spreads reads so that they average at most rate bytes per second
// since the first one (a token bucket with a burst of one chunk).
type pacer struct {
	mu    sync.Mutex
	rate  int64 // bytes per second; 0 = unlimited
	start time.Time
	total int64
	// onBytes reports the bytes moved by all copies of this pacer so
	// far (TemplateRequest.Progress); nil = none.
	onBytes func(done int64)
	done    int64
}

// moved adds n to the progress count and reports it.
func (p *pacer) moved(n int) {
	if p.onBytes == nil || n == 0 {
		return
	}
	p.mu.Lock()
	p.done += int64(n)
	d := p.done
	p.mu.Unlock()
	p.onBytes(d)
}

func newPacer(rate int64) *pacer { return &pacer{rate: rate} }

// chunk is the read size: about an eighth of a second of data when paced.
func (p *pacer) chunk() int {
	if p.rate == 0 {
		return copyChunk
	}
	return int(min(max(p.rate/8, 512), copyChunk))
}

// wait accounts n bytes and sleeps until they are due.
func (p *pacer) wait(ctx context.Context, n int) error {
	if p.rate == 0 || n == 0 {
		return nil
	}
	p.mu.Lock()
	if p.start.IsZero() {
		p.start = time.Now()
	}
	p.total += int64(n)
	due := p.start.Add(time.Duration(float64(p.total) / float64(p.rate) * float64(time.Second)))
	p.mu.Unlock()
	d := time.Until(due)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// writeError is a failure to write the staged copy: a local problem
// (full disk...), not a download failure.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// errOverCap reports that the source had more than the allowed bytes.
var errOverCap = errors.New("over the cap")

// copyCapped copies src to dst until EOF, reading at most limit+1 bytes:
// more than limit is errOverCap. It checks ctx before every read, paces
// reads with pace and calls progress after each one that moved data.
// Write failures come back as *writeError.
func copyCapped(ctx context.Context, dst io.Writer, src io.Reader, limit int64, pace *pacer, progress func(int)) (int64, error) {
	buf := make([]byte, pace.chunk())
	var n int64
	for {
		if err := context.Cause(ctx); err != nil {
			return n, err
		}
		want := int64(len(buf))
		if rest := limit + 1 - n; rest < want {
			want = rest
		}
		r, rerr := src.Read(buf[:want])
		if r > 0 {
			if _, err := dst.Write(buf[:r]); err != nil {
				return n, &writeError{err}
			}
			n += int64(r)
			pace.moved(r)
			if progress != nil {
				progress(r)
			}
			if n > limit {
				return n, errOverCap
			}
			if err := pace.wait(ctx, r); err != nil {
				return n, err
			}
			if progress != nil {
				progress(0)
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// stageFile creates the staged file for rel (and its directories).
func stageFile(stage, rel string) (*os.File, error) {
	dst := filepath.Join(stage, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return nil, &writeError{pathErr(err)}
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, &writeError{pathErr(err)}
	}
	return f, nil
}

// fetchFileTemplate copies the files of a file:// template.
func fetchFileTemplate(ctx context.Context, p *templatePlan) (TemplateStats, error) {
	u := p.u
	if u.Host != "" && !strings.EqualFold(u.Host, "localhost") {
		return TemplateStats{}, fmt.Errorf("%w %s: file urls name a local path (file:///path); host %q is not supported", ErrInvalidURL, p.name, u.Host)
	}
	if u.Opaque != "" || !strings.HasPrefix(u.Path, "/") || u.RawQuery != "" {
		return TemplateStats{}, fmt.Errorf("%w %s: a file url needs an absolute path (file:///path) and no query", ErrInvalidURL, p.name)
	}
	name := (&url.URL{Scheme: "file", Path: u.Path}).String()
	pace := newPacer(p.bwlimit)
	pace.onBytes = p.req.Progress
	var stats TemplateStats
	for _, f := range p.files {
		src := u.Path
		if p.folder {
			src = filepath.Join(u.Path, filepath.FromSlash(f.Path))
		}
		n, err := copyLocal(ctx, p, name, src, f, pace)
		stats.WireBytesIn += n
		stats.LiteralBytes += n
		if err != nil {
			return stats, err
		}
	}
	return stats, nil
}

// copyLocal copies one file of a file:// template into the stage.
func copyLocal(ctx context.Context, p *templatePlan, name, src string, f FileSpec, pace *pacer) (int64, error) {
	// Stat first: opening a FIFO or a device would block or act.
	if fi, err := os.Stat(src); err == nil && !fi.Mode().IsRegular() {
		return 0, &FetchError{URL: name, Err: permanent(fmt.Errorf("%s: not a regular file at the source", f.Path))}
	}
	in, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, &FetchError{URL: name, Err: fmt.Errorf("%s: %w", f.Path, ErrMissingFile)}
	}
	if err != nil {
		return 0, &FetchError{URL: name, Err: fmt.Errorf("%s: %w", f.Path, pathErr(err))}
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return 0, &FetchError{URL: name, Err: fmt.Errorf("%s: %w", f.Path, pathErr(err))}
	}
	if !fi.Mode().IsRegular() {
		return 0, &FetchError{URL: name, Err: permanent(fmt.Errorf("%s: not a regular file at the source", f.Path))}
	}
	if fi.Size() > f.Size {
		return 0, tooLarge(name, f, fi.Size())
	}
	out, err := stageFile(p.stage, f.Path)
	if err != nil {
		return 0, fmt.Errorf("fetch %s: %w", name, err)
	}
	n, err := copyCapped(ctx, out, in, f.Size, pace, nil)
	if cerr := out.Close(); err == nil && cerr != nil {
		err = &writeError{cerr}
	}
	var we *writeError
	switch {
	case err == nil:
		return n, nil
	case ctx.Err() != nil:
		return n, stopped(ctx, name, nil)
	case errors.Is(err, errOverCap):
		os.Remove(out.Name())
		return n, tooLarge(name, f, -1) // it grew while being copied
	case errors.As(err, &we):
		return n, fmt.Errorf("fetch %s: write %s: %w", name, f.Path, err)
	default:
		return n, &FetchError{URL: name, Err: fmt.Errorf("%s: %w", f.Path, pathErr(err))}
	}
}
