// Package crl keeps the CRLs of a CA directory current and reports the
// directory's health: the job of the separate fetch-crl cron job that
// vmcatcher sites depend on, whose silent failure made every list fail and
// every image expire.
//
// Decisions:
//
//   - Sources, in order: the IGTF `<hash>.crl_url` file (one URL per line,
//     # comments), then the CA certificate's CRL distribution points (http,
//     https; file URLs from <hash>.crl_url too, for local mirrors). The first
//     source that yields a good CRL wins; every failure is reported.
//   - A downloaded CRL replaces `<hash>.r0` only if it parses as exactly one
//     full (not delta) CRL, names the CA as issuer, carries the CA's
//     signature, is not dated in the future (beyond a 5-minute skew) and is
//     not older than the CRL on disk (ThisUpdate, then CRL number). It is
//     written as PEM, atomically (temp file, fsync, rename). Anything else
//     leaves the file on disk as it is.
//   - `<hash>` is OpenSSL's subject hash of the CA (what `openssl rehash`
//     and trust.Load use), whatever the CA certificate's file is called.
package crl

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/clr-suite/clr/internal/fsutil"
	"github.com/clr-suite/clr/internal/trust"
)

// Sentinel errors of a refused download (wrapped with details).
var (
	ErrNoSource    = errors.New("no CRL source")           // no <hash>.crl_url and no distribution point
	ErrParse       = errors.New("not a CRL")               // truncated, HTML error page, several CRLs
	ErrDelta       = errors.New("delta CRL")               // not supported
	ErrWrongIssuer = errors.New("CRL of another issuer")   // names another CA
	ErrSignature   = errors.New("CRL signature invalid")   // not signed by the CA
	ErrFuture      = errors.New("CRL dated in the future") // thisUpdate ahead of the clock
	ErrOlder       = errors.New("CRL older than the one on disk")
	ErrFetch       = errors.New("CRL download failed")
)

// Skew is how far in the future a CRL's thisUpdate may be.
const Skew = 5 * time.Minute

// MaxSize caps a CRL download (the largest IGTF CRLs are a few MB); its
// PEM form (4/3 larger) stays under the trust store's file cap.
const MaxSize = 45 << 20

// Status is the outcome for one CA.
type Status string

const (
	Updated   Status = "updated"   // a newer CRL was written
	Unchanged Status = "unchanged" // the source serves the CRL already on disk
	Kept      Status = "kept"      // no source gave a usable CRL; the file on disk stays
	NoSource  Status = "no-source" // nothing to fetch from
)

// Attempt is one source tried.
type Attempt struct {
	URL string
	Err error // nil: this source gave the CRL
}

// Outcome is what Refresh did for one CA.
type Outcome struct {
	Subject    string
	Hash       string
	File       string // the <hash>.r0 path
	Status     Status
	Attempts   []Attempt
	ThisUpdate time.Time // of the CRL on disk afterwards (zero: none)
	NextUpdate time.Time
}

// Err is the last failure when the CRL was kept (nil otherwise).
func (o Outcome) Err() error {
	if o.Status != Kept && o.Status != NoSource {
		return nil
	}
	if o.Status == NoSource {
		return ErrNoSource
	}
	for i := len(o.Attempts) - 1; i >= 0; i-- {
		if o.Attempts[i].Err != nil {
			return o.Attempts[i].Err
		}
	}
	return nil
}

// FetchFunc downloads url (at most max bytes).
type FetchFunc func(ctx context.Context, url string, max int64) ([]byte, error)

// Options configure Refresh.
type Options struct {
	Dir    string
	Now    time.Time // the run's reference time
	Fetch  FetchFunc
	Logger *slog.Logger
}

// caGroup is the CA certificates of one exact subject (a renewed CA keeps
// its name): one CRL issuer.
type caGroup struct {
	hash    string
	subject string
	file    string // <hash>.r<N>: N counts distinct subjects sharing the hash, as openssl rehash does
	certs   []*x509.Certificate
}

func groups(st *trust.Store) ([]caGroup, error) {
	bySubject := map[string]*caGroup{}
	var order []*caGroup
	for _, ca := range st.CAs() {
		g, ok := bySubject[string(ca.Cert.RawSubject)]
		if !ok {
			h, err := trust.SubjectHash(ca.Cert.RawSubject)
			if err != nil {
				return nil, fmt.Errorf("subject hash of %s: %w", ca.File, err)
			}
			g = &caGroup{hash: h, subject: ca.Subject}
			bySubject[string(ca.Cert.RawSubject)] = g
			order = append(order, g)
		}
		g.certs = append(g.certs, ca.Cert)
	}
	sort.SliceStable(order, func(i, j int) bool {
		if order[i].hash != order[j].hash {
			return order[i].hash < order[j].hash
		}
		return order[i].subject < order[j].subject
	})
	out := make([]caGroup, len(order))
	n := map[string]int{}
	for i, g := range order {
		g.file = fmt.Sprintf("%s.r%d", g.hash, n[g.hash])
		n[g.hash]++
		out[i] = *g
	}
	return out, nil
}

// Refresh fetches a CRL for every CA of the directory. Per-CA failures are
// in the outcomes (Status Kept or NoSource); the error is for the
// directory itself.
func Refresh(ctx context.Context, opts Options) ([]Outcome, error) {
	if opts.Now.IsZero() || opts.Fetch == nil {
		return nil, errors.New("crl: refresh needs a time and a fetch function")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := trust.Load(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("crl: %w", err)
	}
	gs, err := groups(st)
	if err != nil {
		return nil, fmt.Errorf("crl: %w", err)
	}
	var out []Outcome
	for _, g := range gs {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		o := refreshOne(ctx, opts, g)
		switch o.Status {
		case Updated:
			log.Info("CRL updated", "ca", o.Subject, "file", o.File, "next_update", o.NextUpdate)
		case Kept:
			log.Warn("CRL not refreshed; the file on disk stays", "ca", o.Subject, "file", o.File, "err", o.Err())
		}
		out = append(out, o)
	}
	return out, nil
}

func refreshOne(ctx context.Context, opts Options, g caGroup) Outcome {
	o := Outcome{Subject: g.subject, Hash: g.hash, File: filepath.Join(opts.Dir, g.file)}
	cur := currentCRL(o.File, g.certs)
	if cur != nil {
		o.ThisUpdate, o.NextUpdate = cur.ThisUpdate, cur.NextUpdate
	}
	urls := sources(opts.Dir, g)
	if len(urls) == 0 {
		o.Status = NoSource
		return o
	}
	o.Status = Kept
	for _, u := range urls {
		rl, raw, err := fetchOne(ctx, opts, u, g)
		if err == nil && cur != nil && rl.ThisUpdate.After(opts.Now) {
			// within the skew, but verification has none: a CRL that is
			// not valid yet must not replace one that is
			err = fmt.Errorf("%w: %s has thisUpdate %s, after now (%s); the current CRL stays", ErrFuture, redact(u), ts(rl.ThisUpdate), ts(opts.Now))
		}
		if err == nil && cur != nil {
			switch c := compare(rl, cur); {
			case c < 0:
				err = fmt.Errorf("%w: %s has thisUpdate %s, %s has %s", ErrOlder, redact(u), ts(rl.ThisUpdate), o.File, ts(cur.ThisUpdate))
			case c == 0:
				o.Attempts = append(o.Attempts, Attempt{URL: redact(u)})
				o.Status = Unchanged
				return o
			}
		}
		if err == nil {
			pemBytes := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: raw})
			if werr := fsutil.WriteAtomic(o.File, pemBytes, 0o644); werr != nil {
				err = fmt.Errorf("write %s: %w", o.File, werr)
			} else {
				o.Attempts = append(o.Attempts, Attempt{URL: redact(u)})
				o.Status = Updated
				o.ThisUpdate, o.NextUpdate = rl.ThisUpdate, rl.NextUpdate
				return o
			}
		}
		o.Attempts = append(o.Attempts, Attempt{URL: redact(u), Err: err})
		if ctx.Err() != nil {
			break
		}
	}
	return o
}

// fetchOne downloads and checks one CRL; it returns the CRL and its DER.
func fetchOne(ctx context.Context, opts Options, u string, g caGroup) (*x509.RevocationList, []byte, error) {
	data, err := opts.Fetch(ctx, u, MaxSize)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %w", ErrFetch, redact(u), err)
	}
	rls, err := trust.ParseCRLs(data)
	if err != nil || len(rls) != 1 {
		n := len(rls)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %s (%d bytes): %v", ErrParse, redact(u), len(data), err)
		}
		return nil, nil, fmt.Errorf("%w: %s holds %d CRLs", ErrParse, redact(u), n)
	}
	rl := rls[0]
	if trust.IsDeltaCRL(rl) {
		return nil, nil, fmt.Errorf("%w: %s", ErrDelta, redact(u))
	}
	if !bytes.Equal(rl.RawIssuer, g.certs[0].RawSubject) {
		issuer, _ := trust.Oneline(rl.RawIssuer)
		return nil, nil, fmt.Errorf("%w: %s is issued by %q, not %q", ErrWrongIssuer, redact(u), issuer, g.subject)
	}
	if !signedByAny(rl, g.certs) {
		return nil, nil, fmt.Errorf("%w: %s is not signed by the CA %q", ErrSignature, redact(u), g.subject)
	}
	if rl.ThisUpdate.After(opts.Now.Add(Skew)) {
		return nil, nil, fmt.Errorf("%w: %s has thisUpdate %s, now is %s", ErrFuture, redact(u), ts(rl.ThisUpdate), ts(opts.Now))
	}
	return rl, rl.Raw, nil
}

func signedByAny(rl *x509.RevocationList, certs []*x509.Certificate) bool {
	for _, c := range certs {
		if rl.CheckSignatureFrom(c) == nil {
			return true
		}
	}
	return false
}

// currentCRL is the valid CRL in file (signed by the CA), or nil.
func currentCRL(file string, certs []*x509.Certificate) *x509.RevocationList {
	data, err := fsutil.ReadFileCapped(file, 64<<20)
	if err != nil {
		return nil
	}
	rls, err := trust.ParseCRLs(data)
	if err != nil {
		return nil
	}
	var best *x509.RevocationList
	for _, rl := range rls {
		if !trust.IsDeltaCRL(rl) && bytes.Equal(rl.RawIssuer, certs[0].RawSubject) && signedByAny(rl, certs) {
			if best == nil || compare(rl, best) > 0 {
				best = rl
			}
		}
	}
	return best
}

// compare orders two CRLs of one issuer: by thisUpdate, then CRL number.
func compare(a, b *x509.RevocationList) int {
	if c := a.ThisUpdate.Compare(b.ThisUpdate); c != 0 {
		return c
	}
	an, bn := a.Number, b.Number
	if an == nil {
		an = new(big.Int)
	}
	if bn == nil {
		bn = new(big.Int)
	}
	if c := an.Cmp(bn); c != 0 {
		return c
	}
	if bytes.Equal(a.Raw, b.Raw) {
		return 0
	}
	return 1 // same time and number, other bytes: take the new one
}

// sources lists the URLs for a CA: <hash>.crl_url lines, then the
// certificates' http(s) distribution points, without duplicates.
func sources(dir string, g caGroup) []string {
	var out []string
	seen := map[string]bool{}
	add := func(u string, allowFile bool) {
		u = strings.TrimSpace(u)
		if u == "" || strings.HasPrefix(u, "#") || seen[u] {
			return
		}
		p, err := url.Parse(u)
		if err != nil {
			return
		}
		switch strings.ToLower(p.Scheme) {
		case "http", "https":
		case "file":
			if !allowFile {
				return
			}
		default:
			return
		}
		seen[u] = true
		out = append(out, u)
	}
	if f, err := os.Open(filepath.Join(dir, g.hash+".crl_url")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			add(sc.Text(), true)
		}
		f.Close()
	}
	for _, c := range g.certs {
		for _, u := range c.CRLDistributionPoints {
			add(u, false) // a certificate does not point at local files
		}
	}
	return out
}

func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	p.User = nil
	return p.String()
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }
