package subscriber

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/clr-suite/clr/internal/fsutil"
	"github.com/clr-suite/clr/internal/imagelist"
	"github.com/clr-suite/clr/internal/smime"
	"github.com/clr-suite/clr/internal/trust"
)

// This file is the subscription policy (DESIGN section 5): the pure
// decision whether a verified list may replace what a subscription holds,
// in the role of go-tuf's "trusted metadata". Decide does no I/O and reads
// no clock; the workflow maps the store's subscription to a State, the
// Verified list to a Candidate, and passes the run's reference time.

// Errors of the policy (vmcatcher -U codes in brackets). A refusal's
// *PolicyError wraps exactly one of them, or one of Verify's errors for the
// checks Decide repeats defensively.
var (
	// ErrIdentifierMismatch: the list's dc:identifier is not the one the
	// subscription pins (R1) [31].
	ErrIdentifierMismatch = errors.New("list identifier does not match the subscription")
	// ErrEndorserNotLinked: the signer's (subject, issuer) pair is not a
	// principal of an endorser linked to the subscription (R2) [13].
	ErrEndorserNotLinked = errors.New("signer is not an endorser linked to the subscription")
	// ErrRollback: the list's hv:version or dc:date:created is below the
	// subscription's floor (R5) [17].
	ErrRollback = errors.New("rollback to an older list")
	// ErrReplay: new content under the accepted hv:version without a newer
	// dc:date:created (R5) [17]. vmcatcher accepted it.
	ErrReplay = errors.New("replay of a list with the accepted version")
	// ErrInvalidInput: the caller passed an incomplete State or Candidate
	// (no pinned identifier, no list, no hash): a bug in the caller, never
	// a decision about the list [1].
	ErrInvalidInput = errors.New("incomplete policy input")
)

// Exit codes of `clr-subscribe -U`, vmcatcher's (DESIGN section 6,
// docs/exit-codes.md).
const (
	codeFailure            = 1
	codeSignature          = 11
	codeDNMismatch         = 12
	codeEndorserNotLinked  = 13
	codeRollback           = 17
	codeIdentifierMismatch = 31
	codeCreatedInFuture    = 33
	codeExpired            = 34
	codeNotJSON            = 37
	codeNotImageList       = 38
)

// Action is what Decide tells the workflow to do. The zero Action is
// Refuse, so a forgotten Decision fails closed.
type Action int

const (
	// Refuse: do not store the list; Decision.Err says why.
	Refuse Action = iota
	// Accept: store the list and raise the floor to its hv:version and
	// dc:date:created in the same transaction (R6).
	Accept
	// NoOp: the list is byte for byte the latest accepted one (R5): no
	// writes, no events, exit 0.
	NoOp
)

func (a Action) String() string {
	switch a {
	case Refuse:
		return "refuse"
	case Accept:
		return "accept"
	case NoOp:
		return "no-op"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Principal is a certificate identity of an endorser linked to the
// subscription, both DNs in OpenSSL one-line form (/DC=org/CN=x).
type Principal struct {
	SubjectDN string
	IssuerDN  string
}

// State is what the subscription knows before this update.
type State struct {
	Identifier   string      // pinned dc:identifier (R1); required
	Principals   []Principal // principals of the endorsers linked to the subscription (R2)
	FloorVersion string      // highest accepted hv:version ("" = none yet)
	FloorCreated time.Time   // dc:date:created of that list (zero = none)
	LatestSHA512 string      // hex SHA-512 of the raw bytes of the latest accepted list ("" = none)
	URL          string      // the URL the operator subscribed with
}

// Candidate is a verified list offered for the subscription.
type Candidate struct {
	List      *imagelist.List // parsed from the verified bytes (R3); required
	RawSHA512 string          // hex SHA-512 of the raw signed bytes, as downloaded; required
	SignerDN  string          // signer's subject, OpenSSL one-line form (Verified.SubjectDN)
	IssuerDN  string          // signer's issuer, same form (Verified.IssuerDN)
}

// Decision is the outcome of Decide.
type Decision struct {
	Action   Action
	Warnings []string // one line each, citing the rule; set for any Action
	Err      error    // a *PolicyError when Action is Refuse, else nil
}

// PolicyError is a refusal by rule Rule. It wraps one sentinel error (Err)
// so errors.Is works, and carries the vmcatcher exit code.
type PolicyError struct {
	Rule string // "R1" ... "R5"
	Code int    // vmcatcher -U exit code
	Msg  string // the particulars, one line
	Err  error  // the sentinel
}

func (e *PolicyError) Error() string {
	s := e.Rule + ": " + e.Err.Error()
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	return s
}

func (e *PolicyError) Unwrap() error { return e.Err }

// Decide reports whether candidate c may replace what the subscription in
// state st holds, at reference time now. The checks run in vmcatcher's
// order, so a list that fails several of them gets vmcatcher's exit code
// (except that Verify, which runs first, already refuses expired and
// future lists: expired plus another identifier is 34 here, 31 in
// vmcatcher):
//
//  1. The candidate is complete (list, hash, version) and st pins an
//     identifier; otherwise Refuse with ErrInvalidInput (exit 1), or
//     imagelist.ErrNotImageList (38) for a list without hv:version.
//  2. hv:dn and hv:ca equal the signer's subject and issuer (DESIGN 4,
//     already checked by Verify; repeated here) [12].
//  3. R1: dc:identifier equals st.Identifier [31].
//  4. R4: dc:date:created is not after now+ClockSkew [33] and
//     dc:date:expires is not before now [34] (already checked by Verify;
//     repeated here so that Decide alone stops a freeze attack).
//  5. R2: (SignerDN, IssuerDN) equals one of st.Principals, both DNs
//     exactly [13]. A principal with the right subject under another
//     issuer does not match: a rogue CA issuing the same DN is the trust
//     store's business, but the issuer pinned here must match as well.
//  6. R5: identical RawSHA512 and LatestSHA512 (hex, any case): NoOp.
//     The identity, signer and date checks come first on purpose: an
//     unchanged list that has expired or whose endorser was unlinked is
//     refused, not silently kept. The workflow expires the images of an
//     expired or revoked list (R9); an unlinked endorser only stops
//     further updates (images verified under the old link stay).
//  7. R5 rollback and replay against the floor, hv:version ordered by
//     imagelist.Compare (vmcatcher's comparator):
//     - lower hv:version than FloorVersion: ErrRollback [17];
//     - equal hv:version: accepted only if dc:date:created is strictly
//     after FloorCreated (with a warning); otherwise ErrReplay [17];
//     - higher hv:version but dc:date:created before FloorCreated:
//     ErrRollback [17]. vmcatcher never compared dates; go-tuf refuses
//     any step back. A signed list cannot become newer than when it was
//     signed, and vmcatcher's comparator ranks some older versions
//     higher (an old timestamp version 20150618211400 beats 2.0), so the
//     creation date is a floor of its own. An equal date with a higher
//     version is accepted with a warning.
//     An empty FloorVersion or zero FloorCreated sets no floor for that
//     field; with neither, the first list is accepted.
//
// Whatever the outcome, a list whose hv:uri differs from st.URL yields a
// warning: the subscription keeps the operator's URL (mirrors and local
// copies work), unlike vmcatcher, which switched to the list's hv:uri.
//
// On Accept the new floor is the candidate's hv:version and
// dc:date:created, which by the rules above are not below the old floor
// (R6; the store enforces it again inside its transaction).
func Decide(st State, c Candidate, now time.Time) Decision {
	var warn []string
	refuse := func(rule string, code int, err error, format string, args ...any) Decision {
		return Decision{Action: Refuse, Warnings: warn, Err: &PolicyError{Rule: rule, Code: code, Msg: fmt.Sprintf(format, args...), Err: err}}
	}
	l := c.List
	switch {
	case l == nil:
		return refuse("R3", codeFailure, ErrInvalidInput, "no parsed list")
	case c.RawSHA512 == "":
		return refuse("R5", codeFailure, ErrInvalidInput, "no SHA-512 of the raw list")
	case st.Identifier == "":
		return refuse("R1", codeFailure, ErrInvalidInput, "the subscription pins no list identifier")
	case l.Version == "":
		return refuse("R5", codeNotImageList, imagelist.ErrNotImageList, "hv:version is empty, so the list cannot be ordered")
	}
	if w := uriWarning(l.URI, st.URL); w != "" {
		warn = append(warn, w)
	}

	if l.Endorser.DN != c.SignerDN {
		return refuse("R2", codeDNMismatch, ErrDNMismatch, "hv:dn is %q, signer is %q", l.Endorser.DN, c.SignerDN)
	}
	if l.Endorser.CA != c.IssuerDN {
		return refuse("R2", codeDNMismatch, ErrDNMismatch, "hv:ca is %q, signer's issuer is %q", l.Endorser.CA, c.IssuerDN)
	}
	if l.Identifier != st.Identifier {
		return refuse("R1", codeIdentifierMismatch, ErrIdentifierMismatch, "dc:identifier is %q, the subscription pins %q", l.Identifier, st.Identifier)
	}
	if l.Created.After(now.Add(ClockSkew)) {
		return refuse("R4", codeCreatedInFuture, ErrCreatedInFuture, "dc:date:created is %s, reference time %s (skew %s)",
			imagelist.FormatTime(l.Created), imagelist.FormatTime(now), ClockSkew)
	}
	if now.After(l.Expires) {
		return refuse("R4", codeExpired, ErrListExpired, "dc:date:expires is %s, reference time %s",
			imagelist.FormatTime(l.Expires), imagelist.FormatTime(now))
	}
	if !linked(st.Principals, c.SignerDN, c.IssuerDN) {
		msg := fmt.Sprintf("subject %q issuer %q", c.SignerDN, c.IssuerDN)
		if iss := issuersOf(st.Principals, c.SignerDN); len(iss) > 0 {
			msg += fmt.Sprintf(" (this subject is linked only under issuer %s)", strings.Join(iss, ", "))
		}
		return refuse("R2", codeEndorserNotLinked, ErrEndorserNotLinked, "%s", msg)
	}

	if st.LatestSHA512 != "" && strings.EqualFold(c.RawSHA512, st.LatestSHA512) {
		return Decision{Action: NoOp, Warnings: warn}
	}
	cmp := 1 // no version floor: anything is higher
	if st.FloorVersion != "" {
		cmp = imagelist.Compare(l.Version, st.FloorVersion)
	}
	created, floor := imagelist.FormatTime(l.Created), imagelist.FormatTime(st.FloorCreated)
	hasFloor := !st.FloorCreated.IsZero()
	switch {
	case cmp < 0:
		return refuse("R5", codeRollback, ErrRollback, "hv:version %q is lower than the accepted %q", l.Version, st.FloorVersion)
	case cmp == 0 && hasFloor && l.Created.Before(st.FloorCreated):
		return refuse("R5", codeRollback, ErrReplay, "hv:version %q with other content and dc:date:created %s, older than the accepted %s",
			l.Version, created, floor)
	case cmp == 0 && hasFloor && l.Created.Equal(st.FloorCreated):
		return refuse("R5", codeRollback, ErrReplay, "hv:version %q and dc:date:created %s as accepted, but other content: the publisher must raise hv:version",
			l.Version, created)
	case cmp == 0:
		warn = append(warn, fmt.Sprintf("R5: hv:version %q equals the accepted version; accepted because dc:date:created %s is newer than %s",
			l.Version, created, floor))
	case hasFloor && l.Created.Before(st.FloorCreated):
		return refuse("R5", codeRollback, ErrRollback, "dc:date:created %s is older than the accepted %s, although hv:version %q ranks above %q",
			created, floor, l.Version, st.FloorVersion)
	case hasFloor && l.Created.Equal(st.FloorCreated):
		warn = append(warn, fmt.Sprintf("R5: dc:date:created %s equals the accepted list's; accepted because hv:version %q ranks above %q",
			created, l.Version, st.FloorVersion))
	}
	return Decision{Action: Accept, Warnings: warn}
}

// linked reports whether (subject, issuer) is one of ps. Empty DNs never
// match.
func linked(ps []Principal, subject, issuer string) bool {
	if subject == "" || issuer == "" {
		return false
	}
	for _, p := range ps {
		if p.SubjectDN == subject && p.IssuerDN == issuer {
			return true
		}
	}
	return false
}

// issuersOf lists, quoted, the issuers under which subject is linked.
func issuersOf(ps []Principal, subject string) []string {
	var out []string
	for _, p := range ps {
		if subject != "" && p.SubjectDN == subject {
			out = append(out, fmt.Sprintf("%q", p.IssuerDN))
		}
	}
	return out
}

// uriWarning returns a warning when the list's hv:uri and the subscription
// URL differ beyond case of scheme and host, a default port and user info.
// User info is never printed.
func uriWarning(listURI, subURL string) string {
	if listURI == "" || subURL == "" {
		return ""
	}
	a, b := normalizeURL(listURI), normalizeURL(subURL)
	if a == b {
		return ""
	}
	return fmt.Sprintf("list hv:uri %q does not match the subscription URL %q; the subscription keeps its URL", a, b)
}

func normalizeURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" {
		return strings.TrimSpace(s)
	}
	u.User = nil
	u.Scheme = strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // IPv6 literal
	}
	port := u.Port()
	if (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		port = ""
	}
	if port != "" {
		host += ":" + port
	}
	u.Host = host
	return u.String()
}

// exitCodes maps the subscriber-side sentinel errors to vmcatcher's -U
// exit codes; the first match wins.
var exitCodes = []struct {
	err  error
	code int
}{
	{ErrIdentifierMismatch, codeIdentifierMismatch},
	{ErrEndorserNotLinked, codeEndorserNotLinked},
	{ErrRollback, codeRollback},
	{ErrReplay, codeRollback},
	{ErrInvalidInput, codeFailure},
	{ErrDNMismatch, codeDNMismatch},
	{ErrListExpired, codeExpired},
	{ErrCreatedInFuture, codeCreatedInFuture},

	{imagelist.ErrTooLarge, codeNotJSON},
	{fsutil.ErrTooLarge, codeNotJSON},
	{imagelist.ErrNotJSON, codeNotJSON},
	{imagelist.ErrNotImageList, codeNotImageList},
	{imagelist.ErrInvalidTime, codeNotImageList},
	{imagelist.ErrInvalidImage, codeNotImageList},

	{smime.ErrMalformed, codeSignature},
	{smime.ErrDigestMismatch, codeSignature},
	{smime.ErrBadSignature, codeSignature},
	{smime.ErrSignerCount, codeSignature},
	{smime.ErrNoSignerCert, codeSignature},
	{smime.ErrUnsupported, codeSignature},
	{smime.ErrTextMode, codeSignature},

	{trust.ErrNoCAs, codeSignature},
	{trust.ErrUnknownAuthority, codeSignature},
	{trust.ErrExpired, codeSignature},
	{trust.ErrNotYetValid, codeSignature},
	{trust.ErrRevoked, codeSignature},
	{trust.ErrNoCRL, codeSignature},
	{trust.ErrCRLExpired, codeSignature},
	{trust.ErrCRLNotYetValid, codeSignature},
	{trust.ErrNamespace, codeSignature},
	{trust.ErrPurpose, codeSignature},
	{trust.ErrInsecureAlgorithm, codeSignature},
}

// ExitCode maps an error of the update workflow to vmcatcher's -U exit
// code: 0 for nil; a *PolicyError's Code; the code of the first sentinel
// in the chain (ErrIdentifierMismatch 31, ErrEndorserNotLinked 13,
// ErrRollback and ErrReplay 17, ErrDNMismatch 12, ErrListExpired 34,
// ErrCreatedInFuture 33, imagelist.ErrTooLarge, fsutil.ErrTooLarge and
// imagelist.ErrNotJSON 37, imagelist.ErrNotImageList, ErrInvalidTime and
// ErrInvalidImage 38, the smime verification and trust errors 11); else
// the code of an error in the chain with an ExitCode() int method (for
// steps outside this file, such as download 10 and new image refused 32);
// else 1.
//
// vmcatcher returned 12 when no CA was loaded; trust.ErrNoCAs maps to 11
// like every other trust failure, as in internal/cli.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var pe *PolicyError
	if errors.As(err, &pe) && pe.Code != 0 {
		return pe.Code
	}
	for _, m := range exitCodes {
		if errors.Is(err, m.err) {
			return m.code
		}
	}
	var coder interface{ ExitCode() int }
	if errors.As(err, &coder) {
		if c := coder.ExitCode(); c != 0 {
			return c
		}
	}
	return codeFailure
}
