// Package vcspcheck checks a served VCSP (vSphere Content Subscription
// Protocol) library the way a vSphere subscriber walks it: lib.json, then
// items.json through itemsHref, then every item's selfHref and files. It
// validates the manifests (field types, decimal versions and etags, sizes
// served, OVF References, .mf digests), optionally enforces the re-sync rules
// against a snapshot of the previous run, and optionally has vcsim pull every
// item into a local library and deploy each OVF template with govc.
//
// vcsim cannot subscribe to an external lib.json (it never fetches it), so
// the vcsim part imports each file with `govc library.import -pull`, which
// makes vcsim fetch it over HTTP, and deploys OVF items with
// `govc library.deploy`. See shared/research/vcsp.md.
package vcspcheck

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Errors Check wraps; Main maps them to exit codes.
var (
	// ErrUsage: bad options, or govc/vcsim missing.
	ErrUsage = errors.New("usage")
	// ErrManifest: the served library is invalid.
	ErrManifest = errors.New("manifest invalid")
	// ErrState: a re-sync rule against the previous snapshot is broken.
	ErrState = errors.New("state rule broken")
	// ErrImport: vcsim could not be started, import or deploy failed, or
	// vcsim's view differs from the manifest.
	ErrImport = errors.New("vcsim import/deploy failed")
)

// Item types.
const (
	TypeOVF   = "vcsp.ovf"
	TypeISO   = "vcsp.iso"
	TypeOther = "vcsp.other"
)

// DefaultUser is the user name vSphere subscribers send with a password.
const DefaultUser = "vcsp"

// Options configure Check.
type Options struct {
	// URL of lib.json.
	URL string
	// HTTPClient fetches the library (nil: DefaultHTTPClient(false)).
	HTTPClient *http.Client
	// User and Password are sent as HTTP basic auth when Password is set
	// (User defaults to "vcsp"), and given to vcsim inside the pull URLs.
	User, Password string
	// StatePath, when set, is a JSON snapshot of the previous run; the
	// re-sync rules are checked against it and it is rewritten when they
	// held (before the vcsim part runs).
	StatePath string
	// VerifySums downloads every file listed in a .mf and checks its digest
	// (and passes the digests to vcsim's pulls).
	VerifySums bool
	// Vcsim runs the vcsim + govc import and deploy part.
	Vcsim bool
	// Govc and VcsimBin are the binaries (empty: looked up on PATH).
	Govc, VcsimBin string
	// Stdout receives the progress log (nil: discarded).
	Stdout io.Writer
}

// Report is what Check found.
type Report struct {
	URL     string
	Library Library
	Items   []ItemReport
	// Removed lists the names of snapshot items no longer served.
	Removed []string
	// Problems are manifest errors, StateProblems broken re-sync rules,
	// VcsimProblems failures of the vcsim part; Warnings never fail.
	Problems      []string
	StateProblems []string
	VcsimProblems []string
	Warnings      []string
	// StateSaved says the snapshot at StatePath was (re)written.
	StateSaved bool
	// Vcsim describes the vcsim run, if any.
	Vcsim *VcsimRun
}

// Library is the lib.json summary.
type Library struct {
	ID, Name, Version, ContentVersion, Created string
}

// ItemReport is one item of items.json.
type ItemReport struct {
	ID, Name, Type, Version string
	Files                   []FileReport
	// State is the comparison with the snapshot: "new", "unchanged",
	// "version A -> B" or "new (id changed from X)"; empty without StatePath.
	State string
	// Imported, Deployed and Disks are filled by the vcsim part: Disks are
	// govc device.ls lines of the deployed VM's disks.
	Imported bool
	Deployed bool
	Disks    []string
	// VcsimFiles maps file name to the size vcsim recorded.
	VcsimFiles map[string]int64
}

// FileReport is one file of an item.
type FileReport struct {
	Name string
	Size int64
	Etag string
	// URL is the first href resolved against lib.json's URL.
	URL string
	// Digest is "ALG:hex" from the item's .mf, if listed there.
	Digest string
}

// VcsimRun describes the vcsim part.
type VcsimRun struct {
	URL     string // GOVC_URL without credentials
	PID     int    // vcsim's process id (stopped when Check returns)
	Library string
}

// OK reports whether nothing failed.
func (r *Report) OK() bool {
	return len(r.Problems) == 0 && len(r.StateProblems) == 0 && len(r.VcsimProblems) == 0
}

// Item returns the item named name, or nil.
func (r *Report) Item(name string) *ItemReport {
	for i := range r.Items {
		if r.Items[i].Name == name {
			return &r.Items[i]
		}
	}
	return nil
}

// Check walks the library at opts.URL. The returned error wraps ErrUsage,
// ErrManifest, ErrState or ErrImport when the library (or the run) failed;
// the Report is filled as far as the check got.
func Check(ctx context.Context, opts Options) (Report, error) {
	rep := Report{URL: opts.URL}
	if opts.Stdout == nil {
		opts.Stdout = io.Discard
	}
	if opts.User == "" {
		opts.User = DefaultUser
	}
	base, err := url.Parse(opts.URL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return rep, fmt.Errorf("%w: library URL %q is not an http(s) URL", ErrUsage, opts.URL)
	}
	if base.User != nil {
		return rep, fmt.Errorf("%w: put credentials in Options.User/Password, not in the URL", ErrUsage)
	}
	client := opts.HTTPClient
	if client == nil {
		client = DefaultHTTPClient(false)
	}
	f := &fetcher{client: client, user: opts.User, password: opts.Password}

	logf(opts.Stdout, "== manifest checks (%s)\n", opts.URL)
	lib := checkManifest(ctx, f, base, opts.VerifySums, &rep)
	for _, w := range rep.Warnings {
		logf(opts.Stdout, "WARN: %s\n", w)
	}
	for _, p := range rep.Problems {
		logf(opts.Stdout, "ERROR: %s\n", p)
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("check %s: %w", opts.URL, err)
	}
	if len(rep.Problems) > 0 {
		return rep, fmt.Errorf("%w: %s", ErrManifest, summarize(rep.Problems))
	}
	logf(opts.Stdout, "library %q id=%s version=%s items=%d\n", rep.Library.Name, rep.Library.ID, rep.Library.Version, len(rep.Items))

	if opts.StatePath != "" {
		if err := checkState(opts.StatePath, lib, &rep); err != nil {
			return rep, err
		}
		for _, it := range rep.Items {
			logf(opts.Stdout, "state: item %q %s\n", it.Name, it.State)
		}
		for _, name := range rep.Removed {
			logf(opts.Stdout, "state: item %q removed\n", name)
		}
		for _, p := range rep.StateProblems {
			logf(opts.Stdout, "ERROR: %s\n", p)
		}
		if len(rep.StateProblems) > 0 {
			return rep, fmt.Errorf("%w: %s", ErrState, summarize(rep.StateProblems))
		}
	}

	if opts.Vcsim {
		if err := runVcsim(ctx, opts, lib, &rep); err != nil {
			return rep, err
		}
		for _, p := range rep.VcsimProblems {
			logf(opts.Stdout, "ERROR: %s\n", p)
		}
		if len(rep.VcsimProblems) > 0 {
			return rep, fmt.Errorf("%w: %s", ErrImport, summarize(rep.VcsimProblems))
		}
	}
	logf(opts.Stdout, "== OK\n")
	return rep, nil
}

// DefaultHTTPClient has no overall timeout (VerifySums downloads whole
// disks; bound the run with the context) but gives up on servers that do
// not answer within a minute. insecure skips TLS certificate verification.
func DefaultHTTPClient(insecure bool) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = time.Minute
	if insecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	return &http.Client{Transport: tr}
}

func summarize(problems []string) string {
	const max = 5
	if len(problems) <= max {
		return strings.Join(problems, "; ")
	}
	return strings.Join(problems[:max], "; ") + fmt.Sprintf("; and %d more", len(problems)-max)
}

func logf(w io.Writer, format string, args ...any) {
	_, _ = fmt.Fprintf(w, format, args...)
}
