package transport

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/clr-suite/clr/internal/fsutil"
)

// Template fetching: [FetchTemplate] copies the files of one template
// version into a staging directory, over rsync+ssh (with delta against the
// published version), https/http or the local file system. It never
// verifies content: the caller checks every staged file against its signed
// SHA-512 before publishing (DESIGN 5b). What it does guarantee is that no
// file is kept larger than its signed size, that every listed file is
// present after a successful fetch, and that nothing outside the listed
// files is written into the staging directory.

// Defaults of a [TemplateRequest].
const (
	// DefaultBlockSize is rsync's --block-size when TemplateRequest.BlockSize
	// is 0. VM disks change in 4 KiB pages: rsync's default block (about the
	// square root of the file size, 32 KiB for 1 GiB) sent 7.7x the changed
	// bytes for scattered page changes, 8 KiB blocks 2x, at 1 MB of block
	// checksums per GiB upstream (research/delta.md 2.3).
	DefaultBlockSize = 8192
	// DefaultIOTimeout is TemplateRequest.IOTimeout when 0.
	DefaultIOTimeout = 5 * time.Minute
	// DefaultConnectTimeout is SSHOptions.ConnectTimeout when 0.
	DefaultConnectTimeout = 20 * time.Second

	// Block sizes clr-server accepts (rsync's own maximum is 128 KiB).
	minBlockSize = 512
	maxBlockSize = 128 << 10
	// rsync's --timeout is at most a day on clr-server.
	maxIOTimeout = 24 * time.Hour
)

// Errors of FetchTemplate, besides *[FetchError] and *[RsyncError] (both
// match [ErrDownload]) and the URL errors of [FetchList].
var (
	// ErrInvalidRequest: the TemplateRequest itself is unusable (bad file
	// path, stage not an empty directory, bad bandwidth limit, ssh options
	// that cannot be passed safely...). Fix the configuration; retrying does
	// not help.
	ErrInvalidRequest = errors.New("invalid template request")
	// ErrMissingFile: a listed file is not at the source. It comes inside a
	// *FetchError, so it also matches ErrDownload.
	ErrMissingFile = errors.New("file missing at the source")
	// ErrTooLarge: a file at the source is larger than its signed size; the
	// transfer of that file was stopped or its result removed. It is
	// fsutil.ErrTooLarge (not ErrDownload), as for an oversized list.
	ErrTooLarge = fsutil.ErrTooLarge
)

// FileSpec is one file of a template, as signed.
type FileSpec struct {
	// Path is relative to the template root, with forward slashes and
	// clean (no "", ".", "..", leading or doubled slash); no control
	// characters.
	Path string
	// Size is the signed size in bytes. A source file larger than this is
	// refused with ErrTooLarge.
	Size int64
}

// SSHOptions configure the OpenSSH client that rsync runs for ssh:// URLs.
// Paths are passed inside rsync's -e command, which rsync splits on spaces,
// so they must not contain whitespace, quotes or backslashes.
type SSHOptions struct {
	// KeyFile is the identity file (ssh -i, with IdentitiesOnly=yes);
	// "" lets ssh use its default identities and agent.
	KeyFile string
	// KnownHosts is the file with the pinned host keys
	// (UserKnownHostsFile; the global known_hosts files are then not
	// consulted). Required for ssh:// unless AcceptNew.
	KnownHosts string
	// AcceptNew accepts and records an unknown host key on first use
	// (StrictHostKeyChecking=accept-new, into KnownHosts or ssh's default
	// file). A changed key is still refused. Only set it when the operator
	// explicitly asked for it.
	AcceptNew bool
	// Command is the ssh binary; "" means "ssh" from PATH.
	Command string
	// ConnectTimeout bounds connecting and the SSH handshake
	// (ConnectTimeout, whole seconds, rounded up); 0 means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
}

// TemplateRequest says which template version to fetch, where to put it and
// how.
type TemplateRequest struct {
	// URL is where the template lives:
	//
	//	ssh://[user@]host[:port]/path   rsync over the OpenSSH client
	//	https://host/path, http://...   HTTP GET per file
	//	file:///path                    local copy
	//
	// A URL whose path ends in "/" is a folder template and Files are
	// paths inside it; otherwise the URL names a single file, and Files
	// has exactly one entry whose Path is the URL's base name (unescaped).
	// User information is allowed only as the ssh user (no password).
	URL string
	// Files lists the files to fetch, with their signed sizes.
	Files []FileSpec
	// Basis is a directory with the currently published version of the
	// template, laid out by the same relative paths; "" for a first
	// install. rsync uses it as the delta basis (--copy-dest) and only
	// reads it. https and file copy whole files and ignore it.
	Basis string
	// Stage is a fresh, empty directory, created by the caller, in which
	// the new version is built.
	Stage string
	// PartialDir keeps interrupted transfers of a first install so that
	// the next run resumes them (created if missing). Ignored when Basis
	// is set: resuming a cut delta from a partial file loses the basis
	// and costs far more than restarting the delta (research/delta.md
	// 2.5).
	PartialDir string
	// SSH configures the ssh client (ssh:// only).
	SSH SSHOptions
	// BWLimit caps the transfer rate, in rsync's units: "1.5m" is
	// 1.5 MiB/s, "500k" 500 KiB/s, a plain number KiB/s, "" or "0" no cap.
	// See ParseBWLimit.
	BWLimit string
	// IOTimeout fails the transfer when no data moved for this long
	// (rsync --timeout, whole seconds; https: per read); 0 means
	// DefaultIOTimeout.
	IOTimeout time.Duration
	// BlockSize is rsync's --block-size; 0 means DefaultBlockSize. It must
	// be within 512 bytes and 128 KiB.
	BlockSize int
	// Rsync is the rsync binary (ssh:// only); "" means "rsync" from PATH.
	Rsync string
	// Progress, if set, is called from time to time with the bytes of
	// this template done so far: for rsync the reconstructed bytes
	// (--info=progress2: matched data counts, so it races ahead of the
	// wire), for https and file the bytes received. For progress bars
	// only; never an accounting.
	Progress func(done int64)
	// RootCAs verifies HTTPS servers; nil means the system roots.
	RootCAs *x509.CertPool
}

// TemplateStats describe a fetch. After a failure they hold what is known
// (rsync prints its statistics only at the end).
type TemplateStats struct {
	// WireBytesIn and WireBytesOut are the bytes received and sent on the
	// transport: rsync's "Total bytes received/sent" (payload, before SSH
	// framing); https and file count body bytes read and send nothing.
	WireBytesIn, WireBytesOut int64
	// LiteralBytes and MatchedBytes are rsync's "Literal data" and
	// "Matched data": bytes sent as data versus rebuilt from the basis (or
	// a resumed partial file). https and file: all bytes read are literal.
	LiteralBytes, MatchedBytes int64
	// Files is the number of files staged (len(Files) after a success).
	Files int
	// Resumed reports that a partial transfer kept in PartialDir was
	// continued.
	Resumed bool
}

// FetchTemplate fetches the files of req into req.Stage (see
// [TemplateRequest] for the transports and docs/transport.md "Templates").
//
// On success every listed file exists in req.Stage as a regular file no
// larger than its signed size. Content is not verified: the caller checks
// sizes and SHA-512 against the signed list before publishing.
//
// Errors: an unusable request wraps [ErrInvalidRequest] or one of the URL
// errors; a source file over its signed size wraps [ErrTooLarge]; a
// listed file missing at the source is a *[FetchError] wrapping
// [ErrMissingFile]; rsync failures are *[RsyncError]; other download
// failures are *FetchError. All of those but the first two match
// [ErrDownload]. Cancelling ctx returns an error wrapping context.Canceled
// (not ErrDownload); ctx's deadline is a *FetchError wrapping
// context.DeadlineExceeded. Local failures (writing the stage, rsync or
// ssh not installed) are plain errors. [Retryable] tells whether trying
// again later may help. After a failure req.Stage may hold partial files:
// discard it.
func FetchTemplate(ctx context.Context, req TemplateRequest) (TemplateStats, error) {
	p, err := planTemplate(req)
	if err != nil {
		return TemplateStats{}, err
	}
	if err := ctx.Err(); err != nil {
		return TemplateStats{}, stopped(ctx, p.name, nil)
	}
	var stats TemplateStats
	switch p.u.Scheme {
	case "ssh":
		stats, err = fetchRsync(ctx, p)
	case "http", "https":
		stats, err = fetchHTTPTemplate(ctx, p)
	default:
		stats, err = fetchFileTemplate(ctx, p)
	}
	if err != nil {
		return stats, err
	}
	if err := p.checkStaged(); err != nil {
		return stats, err
	}
	stats.Files = len(p.files)
	return stats, nil
}

// templatePlan is a validated TemplateRequest.
type templatePlan struct {
	req       TemplateRequest
	u         *url.URL
	name      string // the URL for messages (redacted)
	folder    bool
	files     []FileSpec
	stage     string // absolute
	basis     string // absolute or ""
	partial   string // absolute or "" (always "" when basis is set)
	bwlimit   int64  // bytes per second, 0 = none
	ioTimeout time.Duration
	blockSize int
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, args...))
}

// planTemplate validates req.
func planTemplate(req TemplateRequest) (*templatePlan, error) {
	u, err := parseTemplateURL(req.URL)
	if err != nil {
		return nil, err
	}
	p := &templatePlan{req: req, u: u, name: Redact(req.URL), folder: strings.HasSuffix(u.Path, "/")}
	if len(req.Files) == 0 {
		return nil, invalid("%s: no files", p.name)
	}
	if p.folder && (u.RawQuery != "" || u.Fragment != "") {
		return nil, invalid("%s: a folder template url has no query or fragment", p.name)
	}
	seen := make(map[string]bool, len(req.Files))
	for _, f := range req.Files {
		if err := checkRelPath(f.Path); err != nil {
			return nil, invalid("%s: %v", p.name, err)
		}
		if f.Size < 0 {
			return nil, invalid("%s: %q: negative size %d", p.name, f.Path, f.Size)
		}
		if seen[f.Path] {
			return nil, invalid("%s: %q listed twice", p.name, f.Path)
		}
		seen[f.Path] = true
	}
	for _, f := range req.Files {
		for d := path.Dir(f.Path); d != "."; d = path.Dir(d) {
			if seen[d] {
				return nil, invalid("%s: %q is a file and a directory of %q", p.name, d, f.Path)
			}
		}
	}
	if !p.folder {
		base := path.Base(u.Path)
		if len(req.Files) != 1 || req.Files[0].Path != base {
			return nil, invalid("%s names a single file: Files must be exactly {Path: %q}", p.name, base)
		}
	}
	p.files = req.Files

	if p.stage, err = emptyDir(req.Stage); err != nil {
		return nil, invalid("stage: %v", err)
	}
	if req.Basis != "" {
		if p.basis, err = existingDir(req.Basis); err != nil {
			return nil, invalid("basis: %v", err)
		}
	} else if req.PartialDir != "" {
		if p.partial, err = filepath.Abs(req.PartialDir); err != nil {
			return nil, invalid("partial dir: %v", err)
		}
	}
	if p.bwlimit, err = ParseBWLimit(req.BWLimit); err != nil {
		return nil, err
	}
	switch t := req.IOTimeout; {
	case t == 0:
		p.ioTimeout = DefaultIOTimeout
	case t < 0 || t > maxIOTimeout:
		return nil, invalid("i/o timeout %s: want a positive duration of at most %s", t, maxIOTimeout)
	default:
		p.ioTimeout = t
	}
	switch b := req.BlockSize; {
	case b == 0:
		p.blockSize = DefaultBlockSize
	case b < minBlockSize || b > maxBlockSize:
		return nil, invalid("block size %d not within %d and %d", b, minBlockSize, maxBlockSize)
	default:
		p.blockSize = b
	}
	if u.Scheme == "ssh" {
		if err := checkSSHOptions(req.SSH); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// parseTemplateURL parses raw for FetchTemplate: the URLs of FetchList
// plus ssh://[user@]host[:port]/path.
func parseTemplateURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "ssh" {
		return parseURL(raw)
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			return nil, fmt.Errorf("%w %s: ssh urls carry no password; use a key file", ErrCredentialsInURL, Redact(raw))
		}
		if err := checkSSHWord("user", u.User.Username()); err != nil {
			return nil, fmt.Errorf("%w %s: %v", ErrInvalidURL, Redact(raw), err)
		}
	}
	host := u.Hostname()
	if host == "" {
		return nil, fmt.Errorf("%w: ssh url without a host", ErrInvalidURL)
	}
	if strings.Contains(host, ":") {
		if net.ParseIP(host) == nil {
			return nil, fmt.Errorf("%w %s: bad host %q", ErrInvalidURL, Redact(raw), host)
		}
	} else if err := checkSSHWord("host", host); err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrInvalidURL, Redact(raw), err)
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%w %s: bad port %q", ErrInvalidURL, Redact(raw), port)
		}
	}
	if u.Opaque != "" || !strings.HasPrefix(u.Path, "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w %s: an ssh url is ssh://[user@]host[:port]/path, without query", ErrInvalidURL, Redact(raw))
	}
	if hasControl(u.Path) {
		return nil, fmt.Errorf("%w %s: control character in the path", ErrInvalidURL, Redact(raw))
	}
	for _, el := range strings.Split(u.Path, "/") {
		if el == ".." {
			return nil, fmt.Errorf("%w %s: \"..\" in the path", ErrInvalidURL, Redact(raw))
		}
	}
	return u, nil
}

// checkSSHWord accepts a user or host name that ssh cannot mistake for an
// option and rsync cannot split.
func checkSSHWord(what, s string) error {
	if s == "" || s[0] == '-' {
		return fmt.Errorf("bad %s %q", what, s)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("bad %s %q", what, s)
		}
	}
	return nil
}

// checkRelPath accepts a clean relative slash path.
func checkRelPath(p string) error {
	switch {
	case p == "" || p == ".":
		return errors.New("empty file path")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("file path %q is absolute", p)
	case path.Clean(p) != p:
		return fmt.Errorf("file path %q is not clean", p)
	case hasControl(p):
		return fmt.Errorf("file path %q has a control character", p)
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return fmt.Errorf("file path %q leaves the template", p)
		}
	}
	return nil
}

func hasControl(s string) bool {
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return true
		}
	}
	return false
}

// existingDir returns dir made absolute after checking it is a directory.
func existingDir(dir string) (string, error) {
	if dir == "" {
		return "", errors.New("no directory given")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", pathErr(err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s is not a directory", abs)
	}
	return abs, nil
}

// emptyDir is existingDir for a directory that must also be empty.
func emptyDir(dir string) (string, error) {
	abs, err := existingDir(dir)
	if err != nil {
		return "", err
	}
	f, err := os.Open(abs)
	if err != nil {
		return "", pathErr(err)
	}
	defer f.Close()
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return "", fmt.Errorf("%s is not empty", abs)
	}
	return abs, nil
}

// pathErr keeps a *fs.PathError's text ("stat /x: no such file or
// directory") but drops the type, whose Op/Path callers need not see.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s %s: %w", pe.Op, pe.Path, pe.Err)
	}
	return err
}

// checkStaged makes sure every listed file arrived as a regular file no
// larger than signed.
func (p *templatePlan) checkStaged() error {
	for _, f := range p.files {
		dst := filepath.Join(p.stage, filepath.FromSlash(f.Path))
		fi, err := os.Lstat(dst)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return &FetchError{URL: p.name, Err: fmt.Errorf("%s: %w", f.Path, ErrMissingFile)}
		case err != nil:
			return fmt.Errorf("fetch %s: %w", p.name, pathErr(err))
		case !fi.Mode().IsRegular():
			return &FetchError{URL: p.name, Err: permanent(fmt.Errorf("%s: not a regular file at the source", f.Path))}
		case fi.Size() > f.Size:
			os.Remove(dst)
			return tooLarge(p.name, f, fi.Size())
		}
	}
	return nil
}

// tooLarge is the error for f found larger than signed (size < 0: by how
// much is unknown; f.Size < 0: the signed size is unknown).
func tooLarge(at string, f FileSpec, size int64) error {
	switch {
	case f.Size < 0:
		return fmt.Errorf("fetch %s: %s: %w (over its signed size)", at, f.Path, ErrTooLarge)
	case size < 0:
		return fmt.Errorf("fetch %s: %s: %w (over its signed size of %d bytes)", at, f.Path, ErrTooLarge, f.Size)
	}
	return fmt.Errorf("fetch %s: %s: %w (%d bytes, signed size %d)", at, f.Path, ErrTooLarge, size, f.Size)
}

// stopped is the error of a fetch of at that ctx ended; detail, if not
// nil, says how the transfer stopped.
func stopped(ctx context.Context, at string, detail error) error {
	suffix := ""
	if detail != nil {
		suffix = " (" + detail.Error() + ")"
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &FetchError{URL: at, Err: fmt.Errorf("%w%s", context.DeadlineExceeded, suffix)}
	}
	return fmt.Errorf("fetch %s: %w%s", at, context.Canceled, suffix)
}

// permanentError marks a download failure that trying again will not fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return &permanentError{err} }

// Retryable reports whether trying the same fetch again later may succeed:
//   - an *RsyncError with Retryable set (see RsyncError);
//   - a *FetchError for a connection, TLS handshake or I/O failure, a
//     timeout, or HTTP status 408, 425, 429, 500, 502, 503 or 504;
//
// and not: other HTTP statuses, certificate verification failures, missing
// files, files over their signed size, cancellation, invalid requests and
// URLs, local errors (such as a full disk), and nil.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrMissingFile) {
		return false
	}
	var re *RsyncError
	if errors.As(err, &re) {
		return re.Retryable
	}
	var fe *FetchError
	if !errors.As(err, &fe) {
		return false
	}
	var pe *permanentError
	if errors.As(err, &pe) {
		return false
	}
	if fe.Status != 0 {
		switch fe.Status {
		case 408, 425, 429, 500, 502, 503, 504:
			return true
		}
		return false
	}
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalidCert      x509.CertificateInvalidError
	)
	if errors.As(err, &unknownAuthority) || errors.As(err, &hostname) || errors.As(err, &invalidCert) {
		return false
	}
	return true
}

// ParseBWLimit parses a bandwidth limit the way rsync's --bwlimit does and
// returns it in bytes per second; 0 (also for "") means no limit.
//
// A number, possibly with a fraction ("1.5"), and an optional unit: none or
// K is KiB, M MiB, G GiB, B bytes (case-insensitive); "KB", "MB", "GB"
// are powers of 1000 and "KiB", "MiB", "GiB" powers of 1024. Like rsync it
// refuses limits below 512 bytes per second other than 0. rsync itself is
// given the limit rounded to whole KiB/s.
func ParseBWLimit(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	bad := func(why string) error {
		return fmt.Errorf("%w: bandwidth limit %q: %s", ErrInvalidRequest, s, why)
	}
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.ToLower(s[i:])
	if num == "" || num == "." || strings.Count(num, ".") > 1 {
		return 0, bad("want a number and an optional unit (500k, 1.5m)")
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, bad("want a number and an optional unit (500k, 1.5m)")
	}
	mult := map[string]float64{
		"": 1 << 10, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
		"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
		"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	}[unit]
	if mult == 0 {
		return 0, bad("unknown unit " + strconv.Quote(s[i:]) + " (use k, m or g)")
	}
	bytes := v * mult
	switch {
	case bytes == 0:
		return 0, nil
	case bytes < 512:
		return 0, bad("below rsync's minimum of 512 bytes per second")
	case bytes > math.MaxInt64/2:
		return 0, bad("too large")
	}
	return int64(bytes), nil
}
