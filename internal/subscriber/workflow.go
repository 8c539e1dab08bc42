package subscriber

import (
	"context"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/clr-suite/clr/events"
	"github.com/clr-suite/clr/internal/fsutil"
	"github.com/clr-suite/clr/internal/imagelist"
	"github.com/clr-suite/clr/internal/store"
	"github.com/clr-suite/clr/internal/transport"
	"github.com/clr-suite/clr/internal/trust"
)

// This file is the update workflow (DESIGN section 5): fetch → Verify →
// endorser check → Decide → one store transaction → events after commit.

// Errors of the workflow steps outside Verify and Decide.
var (
	// ErrEndorserUnknown: `-s` found no endorser with the signer's subject
	// and issuer, and --auto-endorse was not given [13].
	ErrEndorserUnknown = errors.New("signer is not a known endorser")
	// ErrNewImageRefused: the accepted list has images the subscription
	// does not create (--imagelist-newimage-refuse) [32].
	ErrNewImageRefused = errors.New("new images refused by the subscription")
	// ErrAlreadySubscribed: the list identifier is subscribed from
	// another URL.
	ErrAlreadySubscribed = errors.New("list already subscribed")
	// ErrCredentials: the subscription's credential reference cannot be
	// resolved.
	ErrCredentials = errors.New("credentials unavailable")
)

// codedError gives an error a vmcatcher exit code for ExitCode.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }
func (e *codedError) ExitCode() int { return e.code }

// Fetcher fetches a list document; transport.FetchList in production.
type Fetcher func(ctx context.Context, req transport.ListRequest) (*transport.ListResponse, error)

// Workflow holds what every subscribe and update of one run shares.
type Workflow struct {
	Store   *store.Store
	Trust   *trust.Store // nil: every verification fails with trust.ErrNoCAs
	Policy  trust.Policy // Policy.Time is the run's reference time
	MaxSize int64        // cap on the list; 0 = imagelist.DefaultMaxSize
	// RootCAs verify HTTPS servers (nil = system roots).
	RootCAs *x509.CertPool
	Timeout time.Duration // per download; 0 = transport default
	Fetch   Fetcher       // nil = transport.FetchList
	Getenv  func(string) string
	// Hook runs a SubscriptionImageNew event; nil = no hook. Its error
	// is logged and never stops the update.
	Hook    func(ctx context.Context, ev events.Event) error
	Logger  *slog.Logger
	Session string // events' session id
	// Reprocess: the update mode changed; an unchanged list is applied
	// again so its refused images are created (vmcatcher's re-process).
	Reprocess bool
}

func (w *Workflow) now() time.Time { return w.Policy.Time }

func (w *Workflow) log() *slog.Logger {
	if w.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Logger
}

func (w *Workflow) maxSize() int64 {
	if w.MaxSize > 0 {
		return w.MaxSize
	}
	return imagelist.DefaultMaxSize
}

func (w *Workflow) verify(raw []byte) (*Verified, error) {
	if w.Trust == nil {
		return nil, fmt.Errorf("verify signer: %w", trust.ErrNoCAs)
	}
	return Verify(raw, VerifyOptions{Trust: w.Trust, Policy: w.Policy, MaxSize: w.maxSize()})
}

// fetch downloads the list at rawURL. The signed message may be larger
// than the list it carries (see Verify).
func (w *Workflow) fetch(ctx context.Context, rawURL, credRef string, v store.Validators) (*transport.ListResponse, error) {
	creds, err := w.credentials(credRef)
	if err != nil {
		return nil, err
	}
	f := w.Fetch
	if f == nil {
		f = transport.FetchList
	}
	resp, err := f(ctx, transport.ListRequest{
		URL:          rawURL,
		Credentials:  creds,
		MaxSize:      w.maxSize()*3/2 + 64<<10,
		ETag:         v.ETag,
		LastModified: v.LastModified,
		RootCAs:      w.RootCAs,
		Timeout:      w.Timeout,
		UserAgent:    "clr-subscribe",
	})
	if err != nil {
		if errors.Is(err, fsutil.ErrTooLarge) {
			return nil, fmt.Errorf("download %s: %w", transport.Redact(rawURL), imagelist.ErrTooLarge)
		}
		return nil, err
	}
	return resp, nil
}

// credentials resolves a credential reference (store.CheckCredentialRef)
// to user and password. The secret never appears in an error.
func (w *Workflow) credentials(ref string) (*transport.Credentials, error) {
	var raw, where string
	switch {
	case ref == "":
		return nil, nil
	case strings.HasPrefix(ref, "file:"):
		where = ref
		b, err := fsutil.ReadFileCapped(strings.TrimPrefix(ref, "file:"), 4096)
		if err != nil {
			return nil, fmt.Errorf("%w: read %s: %v", ErrCredentials, where, errors.Unwrap(err))
		}
		raw = strings.TrimRight(string(b), "\r\n")
	case strings.HasPrefix(ref, "env:"):
		where = ref
		getenv := w.Getenv
		if getenv == nil {
			getenv = os.Getenv
		}
		raw = getenv(strings.TrimPrefix(ref, "env:"))
	default:
		return nil, fmt.Errorf("%w: unknown reference kind", ErrCredentials)
	}
	user, pass, ok := strings.Cut(raw, ":")
	if !ok || user == "" {
		return nil, fmt.Errorf("%w: %s does not hold user:password", ErrCredentials, where)
	}
	return &transport.Credentials{User: user, Password: pass}, nil
}

func sha512Hex(b []byte) string {
	s := sha512.Sum512(b)
	return hex.EncodeToString(s[:])
}

// SubscribeOptions configures Subscribe.
type SubscribeOptions struct {
	URL           string
	AutoEndorse   bool
	Mode          store.UpdateMode // what later updates do with new images
	CredentialRef string
}

// SubscribeResult reports a subscription.
type SubscribeResult struct {
	Subscription store.Subscription
	Accept       store.AcceptResult
	NewEndorser  string // set when --auto-endorse created an endorser
	Existing     bool   // the URL was subscribed already: nothing changed
	Warnings     []string
}

// Subscribe fetches and verifies the list at opts.URL and creates its
// subscription, linked to the endorser whose principal signed it, with the
// list as its first accepted version, in one transaction. Unlike
// vmcatcher, the subscription keeps opts.URL (not the list's hv:uri), and
// an expired list or one created in the future is refused.
//
// Every image of the first list is created (selected when opts.Mode is
// subscribe), as vmcatcher created image definitions on subscribe; later
// updates apply opts.Mode to images that lists add.
func (w *Workflow) Subscribe(ctx context.Context, opts SubscribeOptions) (SubscribeResult, error) {
	var res SubscribeResult
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "file" && u.Scheme != "http" && u.Scheme != "https") {
		return res, fmt.Errorf("subscribe: %w: want a file://, http:// or https:// URL", store.ErrInvalid)
	}
	if u.User != nil || strings.Contains(u.Opaque, "@") {
		return res, fmt.Errorf("subscribe: %w: the URL holds credentials, which would be stored in clear; put user:password in a file and pass --credentials file:/path (or env:NAME)", store.ErrInvalid)
	}
	if existing, err := w.Store.GetSubscription(ctx, opts.URL); err == nil {
		res.Subscription, res.Existing = existing, true
		return res, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return res, err
	}
	resp, err := w.fetch(ctx, opts.URL, opts.CredentialRef, store.Validators{})
	if err != nil {
		return res, err
	}
	v, err := w.verify(resp.Body)
	if err != nil {
		return res, err
	}
	w.warnProblems(v)
	l := v.List
	if strings.TrimSpace(l.Identifier) == "" || strings.TrimSpace(l.Version) == "" {
		// A subscription pins dc:identifier (R1) and orders by hv:version (R5).
		return res, fmt.Errorf("%w: dc:identifier and hv:version must not be empty", imagelist.ErrNotImageList)
	}
	if !imagelist.SafeIdentifier(l.Identifier) {
		return res, fmt.Errorf("%w: dc:identifier %q holds a control character or '/'", imagelist.ErrNotImageList, l.Identifier)
	}
	if sub, err := w.Store.GetSubscription(ctx, l.Identifier); err == nil {
		return res, fmt.Errorf("%w: %s is subscribed from %s", ErrAlreadySubscribed, l.Identifier, sub.URL)
	}
	req := store.SubscribeRequest{
		Subscription: store.Subscription{
			UUID: l.Identifier, URL: opts.URL, Description: l.Description, Authorised: true,
			UpdateMode: opts.Mode, CredentialRef: opts.CredentialRef, Updated: w.now(),
		},
		List:   listInstance(v, resp.Body, w.now()),
		Images: imageInstances(l),
		Options: store.AcceptOptions{
			NewImages:      store.NewImagesAccept,
			CompareVersion: imagelist.Compare,
			Validators:     &store.Validators{ETag: resp.ETag, LastModified: resp.LastModified},
		},
	}
	if opts.Mode.SelectsNew() {
		req.Options.NewImages = store.NewImagesSubscribe
	}
	e, err := w.Store.FindEndorserByPrincipal(ctx, v.SubjectDN, v.IssuerDN)
	switch {
	case err == nil:
		req.Endorser = e.UUID
	case errors.Is(err, store.ErrNotFound) && opts.AutoEndorse:
		id, err := NewUUID()
		if err != nil {
			return res, err
		}
		req.NewEndorser = &store.Endorser{UUID: id, Principals: []store.Principal{{SubjectDN: v.SubjectDN, IssuerDN: v.IssuerDN}}}
		res.NewEndorser = id
	case errors.Is(err, store.ErrNotFound):
		return res, &codedError{codeEndorserNotLinked, fmt.Errorf("%w: subject %q issuer %q", ErrEndorserUnknown, v.SubjectDN, v.IssuerDN)}
	default:
		return res, err
	}
	if w := uriWarning(l.URI, opts.URL); w != "" {
		res.Warnings = append(res.Warnings, w)
	}
	res.Subscription, res.Accept, err = w.Store.Subscribe(ctx, req)
	return res, err
}

// UpdateResult reports one subscription's update.
type UpdateResult struct {
	Subscription string
	Action       Action // Accept, NoOp or Refuse
	Accept       store.AcceptResult
	Version      string   // hv:version of the accepted or unchanged list
	Warnings     []string // policy warnings, tolerated list problems
	// Invalidated is set when this run found the latest accepted list
	// expired or its signer revoked and made its images unavailable.
	Invalidated store.ExpiryReason
	NotModified bool // the server answered 304
}

// Update fetches the subscription's list from its URL and applies it:
// verify, decide, store, then fire SubscriptionImageNew for every image
// the subscription did not know (created or refused). Whatever the outcome,
// the latest accepted list is re-checked at the reference time: if it has
// expired or its signer was revoked, its images become unavailable (R9;
// vmcatcher never did this).
//
// The error wraps the reason with a vmcatcher exit code (ExitCode). An
// accepted list whose new images were refused returns the result and an
// error wrapping ErrNewImageRefused (32), like vmcatcher.
func (w *Workflow) Update(ctx context.Context, key string) (UpdateResult, error) {
	res := UpdateResult{Subscription: key, Action: Refuse}
	sub, err := w.Store.GetSubscription(ctx, key)
	if err != nil {
		return res, err
	}
	res.Subscription = sub.UUID
	log := w.log().With("subscription", sub.UUID)
	var validators store.Validators
	if sub.LatestList != nil && !w.Reprocess {
		validators = sub.Validators
	}
	resp, err := w.fetch(ctx, sub.URL, sub.CredentialRef, validators)
	if err != nil {
		w.recheck(ctx, sub, &res)
		return res, fmt.Errorf("update %s: %w", sub.UUID, err)
	}
	if resp.NotModified {
		res.NotModified = true
		res.Action = NoOp
		w.recheck(ctx, sub, &res)
		if sub.LatestList != nil {
			res.Version = sub.LatestList.Version
		}
		if err := invalidatedError(sub, res.Invalidated); err != nil {
			res.Action = Refuse
			return res, fmt.Errorf("update %s: list not modified: %w", sub.UUID, err)
		}
		log.Debug("list not modified")
		if w.Reprocess {
			return w.reapply(ctx, sub, res)
		}
		return res, nil
	}
	v, err := w.verify(resp.Body)
	if err != nil {
		w.recheck(ctx, sub, &res)
		return res, fmt.Errorf("update %s: %w", sub.UUID, err)
	}
	res.Warnings = append(res.Warnings, problemLines(v)...)
	principals, err := w.Store.LinkedPrincipals(ctx, sub.UUID)
	if err != nil {
		w.recheck(ctx, sub, &res)
		return res, err
	}
	st := State{Identifier: sub.UUID, FloorVersion: sub.Floor.Version, FloorCreated: sub.Floor.Created, URL: sub.URL}
	for _, p := range principals {
		st.Principals = append(st.Principals, Principal{SubjectDN: p.SubjectDN, IssuerDN: p.IssuerDN})
	}
	if sub.LatestList != nil {
		st.LatestSHA512 = sub.LatestList.SHA512
	}
	raw := sha512Hex(resp.Body)
	d := Decide(st, Candidate{List: v.List, RawSHA512: raw, SignerDN: v.SubjectDN, IssuerDN: v.IssuerDN}, w.now())
	res.Warnings = append(res.Warnings, d.Warnings...)
	res.Action = d.Action
	res.Version = v.List.Version
	switch d.Action {
	case Refuse:
		w.recheck(ctx, sub, &res)
		return res, fmt.Errorf("update %s: %w", sub.UUID, d.Err)
	case NoOp:
		// Warned about when this list was accepted; cron mails every
		// line, so an unchanged list stays quiet.
		res.Warnings = nil
		if w.Reprocess {
			return w.reapply(ctx, sub, res)
		}
		if resp.ETag != sub.Validators.ETag || resp.LastModified != sub.Validators.LastModified {
			if err := w.Store.SetValidators(ctx, sub.UUID, store.Validators{ETag: resp.ETag, LastModified: resp.LastModified}); err != nil {
				return res, err
			}
		}
		return res, nil
	}
	ar, err := w.Store.AcceptList(ctx, sub.UUID, listInstance(v, resp.Body, w.now()), imageInstances(v.List), store.AcceptOptions{
		NewImages:      sub.UpdateMode,
		CompareVersion: imagelist.Compare,
		Validators:     &store.Validators{ETag: resp.ETag, LastModified: resp.LastModified},
	})
	if err != nil {
		res.Action = Refuse
		w.recheck(ctx, sub, &res)
		return res, fmt.Errorf("update %s: %w", sub.UUID, err)
	}
	log.Info("accepted list", "version", v.List.Version, "new", len(ar.New), "updated", len(ar.Updated), "dropped", len(ar.Dropped), "refused", len(ar.Refused))
	return w.accepted(ctx, sub, v, ar, res)
}

// accepted finishes an update whose list the store took: events after the
// commit (the hook sees the database as it now is), for every image the
// subscription did not know, then vmcatcher's 32 if some were refused.
func (w *Workflow) accepted(ctx context.Context, sub store.Subscription, v *Verified, ar store.AcceptResult, res UpdateResult) (UpdateResult, error) {
	res.Action, res.Accept = Accept, ar
	w.fireNew(ctx, v.List, append(append([]string(nil), ar.New...), ar.Refused...))
	if len(ar.Refused) > 0 {
		return res, &codedError{32, fmt.Errorf("update %s: %w: %s", sub.UUID, ErrNewImageRefused, strings.Join(ar.Refused, ", "))}
	}
	return res, nil
}

// invalidatedError is the error for a subscription whose latest list is
// (now, or since an earlier run) expired or revoked: an unchanged server
// must not turn that into success.
func invalidatedError(sub store.Subscription, now store.ExpiryReason) error {
	reason := now
	if l := sub.LatestList; reason == 0 && l != nil {
		switch {
		case l.Revoked:
			reason = store.SignerRevoked
		case l.Expired:
			reason = store.ListExpired
		}
	}
	switch reason {
	case store.ListExpired:
		return fmt.Errorf("%w: the latest accepted list has expired; its images are unavailable", ErrListExpired)
	case store.SignerRevoked:
		return fmt.Errorf("%w: the signer of the latest accepted list; its images are unavailable", trust.ErrRevoked)
	}
	return nil
}

// reapply runs the latest accepted list through the store again, so that
// a changed update mode (--imagelist-newimage-accept after exit 32)
// creates the images the list carries but the subscription refused, as
// vmcatcher's re-process did. The list is verified again at the
// reference time first; it is recorded as a re-import.
func (w *Workflow) reapply(ctx context.Context, sub store.Subscription, res UpdateResult) (UpdateResult, error) {
	l, err := w.Store.LatestList(ctx, sub.UUID)
	if err != nil {
		return res, err
	}
	v, err := w.verify(l.Raw)
	if err != nil {
		w.recheck(ctx, sub, &res)
		return res, fmt.Errorf("update %s: re-process latest list: %w", sub.UUID, err)
	}
	ar, err := w.Store.AcceptList(ctx, sub.UUID, listInstance(v, l.Raw, w.now()), imageInstances(v.List), store.AcceptOptions{
		NewImages:      sub.UpdateMode,
		CompareVersion: imagelist.Compare,
		Validators:     &sub.Validators,
	})
	if err != nil {
		return res, fmt.Errorf("update %s: re-process latest list: %w", sub.UUID, err)
	}
	return w.accepted(ctx, sub, v, ar, res)
}

// recheck re-verifies the latest accepted list at the reference time and
// marks it expired or revoked when it has become so. Other failures (a
// stale CRL, a missing CA) leave it alone: they say nothing about the
// list, and the images keep being served while the operator fixes them.
func (w *Workflow) recheck(ctx context.Context, sub store.Subscription, res *UpdateResult) {
	if sub.LatestList == nil || sub.LatestList.Expired || sub.LatestList.Revoked {
		return
	}
	var reason store.ExpiryReason
	if w.now().After(sub.LatestList.Expires) {
		reason = store.ListExpired
	} else if w.Trust != nil {
		l, err := w.Store.LatestList(ctx, sub.UUID)
		if err != nil {
			w.log().Warn("recheck latest list", "subscription", sub.UUID, "err", err)
			return
		}
		if _, err := w.verify(l.Raw); errors.Is(err, trust.ErrRevoked) {
			reason = store.SignerRevoked
		} else if errors.Is(err, ErrListExpired) {
			reason = store.ListExpired
		}
	}
	if reason == 0 {
		return
	}
	dropped, err := w.Store.MarkListExpired(ctx, sub.UUID, reason, w.now())
	if err != nil {
		w.log().Error("mark list unavailable", "subscription", sub.UUID, "err", err)
		return
	}
	res.Invalidated = reason
	w.log().Warn("latest accepted list is "+reason.String()+": its images are no longer available",
		"subscription", sub.UUID, "version", sub.LatestList.Version, "images", len(dropped))
}

func (w *Workflow) fireNew(ctx context.Context, l *imagelist.List, ids []string) {
	if w.Hook == nil || len(ids) == 0 {
		return
	}
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	vo := ""
	if raw, ok := l.Extra["ad:vo"]; ok {
		_ = json.Unmarshal(raw, &vo)
	}
	for i := range l.Images {
		im := &l.Images[i]
		if !want[im.Identifier] {
			continue
		}
		ev := events.Event{
			Type: events.SubscriptionImageNew, Session: w.Session,
			ListIdentifier: l.Identifier, VO: vo, Image: eventImage(im),
		}
		if err := w.Hook(ctx, ev); err != nil {
			w.log().Warn("event hook failed", "event", ev.Type, "image", im.Identifier, "err", err)
		}
	}
}

func eventImage(im *imagelist.Image) *events.Image {
	out := &events.Image{
		Identifier: im.Identifier, Title: im.Title, Description: im.Description, URI: im.URI,
		Size: im.Size, Version: im.Version, Hypervisor: im.Hypervisor, Format: im.Format,
		Arch: im.Arch, OS: im.OS, OSVersion: im.OSVersion, Comments: im.Comments, SHA512: im.SHA512,
	}
	if raw, ok := im.Extra["ad:mpuri"]; ok {
		_ = json.Unmarshal(raw, &out.MPURI)
	}
	return out
}

func (w *Workflow) warnProblems(v *Verified) {
	for _, p := range problemLines(v) {
		w.log().Warn(p)
	}
}

func problemLines(v *Verified) []string {
	var out []string
	for _, p := range v.Problems {
		out = append(out, p.Message)
	}
	return out
}

func listInstance(v *Verified, raw []byte, now time.Time) store.ListInstance {
	return store.ListInstance{
		Raw: raw, SHA512: sha512Hex(raw), Version: v.List.Version,
		Created: v.List.Created, Expires: v.List.Expires, Imported: now,
		SignerDN: v.SubjectDN, IssuerDN: v.IssuerDN,
	}
}

func imageInstances(l *imagelist.List) []store.ImageInstance {
	out := make([]store.ImageInstance, len(l.Images))
	for i := range l.Images {
		im := &l.Images[i]
		out[i] = store.ImageInstance{
			Identifier: im.Identifier, Title: im.Title, Description: im.Description, URI: im.URI,
			Size: im.Size, Version: im.Version, SHA512: im.SHA512, Hypervisor: im.Hypervisor,
			Arch: im.Arch, OS: im.OS, OSVersion: im.OSVersion, Comments: im.Comments,
			Format: im.Format, Created: im.Created, Expires: im.Expires,
		}
		if len(im.Files) > 0 {
			// clr:files as the list writes it (docs/imagelist.md).
			fs := make([]map[string]any, len(im.Files))
			for j, f := range im.Files {
				fs[j] = map[string]any{"path": f.Path, "size": f.Size, "sl:checksum:sha512": f.SHA512}
			}
			out[i].Files, _ = json.Marshal(fs)
		}
		if len(im.Extra) > 0 {
			out[i].Extra, _ = json.Marshal(im.Extra)
		}
	}
	return out
}

// NewUUID returns a random (version 4) UUID: the identifier of an
// auto-created endorser, and of a run in its events.
func NewUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random endorser id: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
