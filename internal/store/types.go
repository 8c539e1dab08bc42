package store

import (
	"encoding/json"
	"errors"
	"time"
)

// Sentinel errors. Every error a method returns wraps at most one of them;
// test with errors.Is.
var (
	// ErrNotFound: no endorser, principal, link, subscription, list or
	// image matches.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the row would violate a unique rule (endorser
	// identifier, subject/issuer pair, subscription identifier or URL,
	// endorser-subscription link).
	ErrConflict = errors.New("already exists")
	// ErrAmbiguous: an image selector matches images of several
	// subscriptions; name the subscription.
	ErrAmbiguous = errors.New("ambiguous image selector")
	// ErrRollback: accepting the list would lower the subscription's trust
	// floor (rules R5, R6). Nothing was written.
	ErrRollback = errors.New("would lower the trust floor")
	// ErrInvalid: an argument is malformed (empty identifier, bad update
	// mode, credential reference or database URL, duplicate image in a
	// list, ...).
	ErrInvalid = errors.New("invalid argument")
	// ErrSchemaTooNew: the database was migrated by a newer clr.
	ErrSchemaTooNew = errors.New("database schema is newer than this program")
	// ErrForeignSchema: the database file holds tables of another program
	// (for example vmcatcher's) and no clr schema version.
	ErrForeignSchema = errors.New("database belongs to another program")
	// ErrBusy: another process held the database longer than the busy
	// timeout.
	ErrBusy = errors.New("database busy")
)

// Principal is one certificate identity of an endorser, both DNs in
// OpenSSL one-line form (/DC=org/CN=x).
type Principal struct {
	SubjectDN string
	IssuerDN  string
}

// Endorser is a named set of principals trusted to sign lists of the
// subscriptions it is linked to (vmcatcher's endorser).
type Endorser struct {
	UUID       string // the operator's handle (vmcatcher --endorser_uuid); unique
	Principals []Principal
}

// Link ties an endorser to a subscription (vmcatcher's subscriptionAuth).
type Link struct {
	Endorser     string // endorser UUID
	Subscription string // subscription UUID
	Authorised   bool
}

// LinkedPrincipal is a principal of an endorser linked to a subscription:
// the signers rule R2 accepts.
type LinkedPrincipal struct {
	Endorser string
	Principal
}

// UpdateMode says what an update does with images that a list adds
// (vmcatcher's updateMode). It is a bit set.
type UpdateMode int

// Update mode bits and the three values the command line sets
// (--imagelist-newimage-refuse, -accept, -subscribe).
const (
	ModeAcceptNew UpdateMode = 1 // bit 1: create new images
	ModeSelectNew UpdateMode = 2 // bit 2: select new images for the cache (needs bit 1)

	NewImagesRefuse    UpdateMode = 0
	NewImagesAccept    UpdateMode = ModeAcceptNew
	NewImagesSubscribe UpdateMode = ModeAcceptNew | ModeSelectNew
)

// Valid reports whether m is one of 0, 1 or 3.
func (m UpdateMode) Valid() bool {
	return m == NewImagesRefuse || m == NewImagesAccept || m == NewImagesSubscribe
}

// AcceptsNew reports whether new images are created.
func (m UpdateMode) AcceptsNew() bool { return m&ModeAcceptNew != 0 }

// SelectsNew reports whether new images are created selected.
func (m UpdateMode) SelectsNew() bool { return m&ModeSelectNew != 0 && m.AcceptsNew() }

// String returns refuse, accept or subscribe.
func (m UpdateMode) String() string {
	switch m {
	case NewImagesRefuse:
		return "refuse"
	case NewImagesAccept:
		return "accept"
	case NewImagesSubscribe:
		return "subscribe"
	}
	return "invalid"
}

// Floor is a subscription's trust floor: the highest hv:version and
// dc:date:created accepted so far. A list below it is a rollback (R5); it
// only rises (R6) until an explicit ResetFloor (R7). The zero Floor accepts
// anything.
type Floor struct {
	Version string
	Created time.Time
}

// IsZero reports whether the floor is unset.
func (f Floor) IsZero() bool { return f.Version == "" && f.Created.IsZero() }

// Subscription is one subscribed image list.
type Subscription struct {
	UUID        string // the list's dc:identifier (R1); unique
	URL         string // as the operator gave it (-s URL); unique; never holds credentials
	Description string
	Authorised  bool
	UpdateMode  UpdateMode
	// CredentialRef names where the HTTP credentials are, never the
	// secret itself: "" (none), "file:/abs/path" or "env:NAME". See
	// CheckCredentialRef.
	CredentialRef string
	Floor         Floor
	Updated       time.Time // last accepted list (or creation); zero = never
	// Validators are the HTTP validators of the response that carried
	// the latest accepted list, for a conditional GET next time.
	Validators Validators
	// LatestList is the last accepted list without its Raw bytes, nil
	// before the first one.
	LatestList *ListInstance
}

// Validators are an HTTP response's ETag and Last-Modified, kept so the
// next update can send a conditional GET. They are stored only with a list
// that was accepted or found unchanged, so a 304 always means "the latest
// accepted list".
type Validators struct {
	ETag         string
	LastModified string
}

// SubscriptionUpdate changes the fields that are set (non-nil).
type SubscriptionUpdate struct {
	Description   *string
	Authorised    *bool
	UpdateMode    *UpdateMode
	CredentialRef *string
}

// ListInstance is one accepted signed list. Every accepted list is kept.
type ListInstance struct {
	ID               int64
	SubscriptionUUID string
	Raw              []byte // the exact signed bytes; nil in summaries (Subscription.LatestList, Lists)
	SHA512           string // hex of Raw; AcceptList computes it
	Version          string // hv:version
	Created          time.Time
	Expires          time.Time
	Imported         time.Time // the run's clock when accepted
	SignerDN         string
	IssuerDN         string
	// Expired and Revoked are set by MarkListExpired; InvalidatedAt is
	// the time passed to it.
	Expired       bool
	Revoked       bool
	InvalidatedAt time.Time
}

// ImageInstance is an image as one list version described it.
type ImageInstance struct {
	// ListID is the list that first described the image this way (set by
	// the store): a later list that describes it identically keeps this
	// instance.
	ListID      int64
	Identifier  string
	Title       string
	Description string
	URI         string
	Size        int64
	Version     string
	SHA512      string
	Hypervisor  string
	Arch        string
	OS          string
	OSVersion   string
	Comments    string
	Format      string
	Created     time.Time       // per-image dc:date:created, zero = absent
	Expires     time.Time       // per-image dc:date:expires, zero = absent
	Files       json.RawMessage // clr:files as JSON, nil = single-file image
	Extra       json.RawMessage // other keys (ad:*, sl:osname, ...) as a JSON object, nil = none
}

// Image is an image definition of one subscription: the same dc:identifier
// in two subscriptions is two independent images.
type Image struct {
	Subscription string // subscription UUID
	UUID         string // the image's dc:identifier
	Selected     bool   // selected for the cache (vmcatcher -a / -r)
	// Available: the image is in the subscription's latest list, that
	// list is not expired or revoked, and the subscription is authorised.
	Available bool
	Latest    ImageInstance
}

// State is vmcatcher's image state bitmap: 1 selected, 2 available.
func (i Image) State() int {
	s := 0
	if i.Selected {
		s |= 1
	}
	if i.Available {
		s |= 2
	}
	return s
}

// ImageRef selects one image: by UUID (dc:identifier) or by SHA-512 (of its
// latest instance; if none matches, of any earlier instance), in all
// subscriptions or only in Subscription (UUID or URL). Exactly one of UUID
// and SHA512 is set.
type ImageRef struct {
	Subscription string
	UUID         string
	SHA512       string
}

// ImageFilter restricts ListImages; the zero value lists every image.
type ImageFilter struct {
	Subscription  string // UUID or URL; "" = all
	SelectedOnly  bool
	AvailableOnly bool
}

// AcceptOptions configures AcceptList.
type AcceptOptions struct {
	// NewImages says what to do with images the subscription does not
	// have yet; normally the subscription's UpdateMode.
	NewImages UpdateMode
	// CompareVersion orders hv:version values (imagelist.Compare);
	// required.
	CompareVersion func(a, b string) int
	// Validators are stored with the list (nil: cleared).
	Validators *Validators
}

// AcceptResult reports what AcceptList changed. Image UUIDs are in list
// order, Dropped is sorted.
type AcceptResult struct {
	ListID    int64
	Floor     Floor    // the new floor
	New       []string // created (accept or subscribe mode)
	Selected  []string // the New images created selected (subscribe mode)
	Updated   []string // known images whose SHA-512 or size changed
	Unchanged []string // known images with the same SHA-512 and size
	Dropped   []string // images that were available and are not in the list: now unavailable
	Refused   []string // new images not created (refuse mode; vmcatcher exit 32)
}

// ExpiryReason says why MarkListExpired invalidates a list.
type ExpiryReason int

// Reasons for MarkListExpired.
const (
	ListExpired   ExpiryReason = iota + 1 // dc:date:expires has passed
	SignerRevoked                         // the signer's certificate was revoked
)

func (r ExpiryReason) String() string {
	switch r {
	case ListExpired:
		return "expired"
	case SignerRevoked:
		return "revoked"
	}
	return "invalid"
}
