package subscriber

import (
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/clr-suite/clr/internal/fsutil"
	"github.com/clr-suite/clr/internal/imagelist"
	"github.com/clr-suite/clr/internal/smime"
	"github.com/clr-suite/clr/internal/trust"
)

// The attack tests for the pure policy (DESIGN section 5), named after the
// attacks as go-tuf names its tests. Verify's own checks are in
// verify_test.go; the workflow's end-to-end attack scripts are elsewhere.

var (
	polNow      = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	polListID   = "4e186b44-2c64-40ea-97d5-e9e5c0bce059"
	polSubject  = "/DC=org/DC=example/CN=Image List Endorser"
	polIssuer   = "/DC=org/DC=example/CN=Example CA"
	polURL      = "https://lists.example.org/image.list"
	polFloorSHA = strings.Repeat("a1", 64)
	polNewSHA   = strings.Repeat("b2", 64)
)

// polState is a subscription that accepted version 3, created two days ago.
func polState() State {
	return State{
		Identifier:   polListID,
		Principals:   []Principal{{SubjectDN: "/DC=org/CN=someone else", IssuerDN: polIssuer}, {SubjectDN: polSubject, IssuerDN: polIssuer}},
		FloorVersion: "3",
		FloorCreated: polNow.Add(-48 * time.Hour),
		LatestSHA512: polFloorSHA,
		URL:          polURL,
	}
}

// polCandidate is version 4, created an hour ago, signed by the linked
// principal.
func polCandidate() Candidate {
	return Candidate{
		List: &imagelist.List{
			Created: polNow.Add(-time.Hour), Expires: polNow.Add(7 * 24 * time.Hour),
			Identifier: polListID, Title: "t", Description: "d", Source: "s",
			Version: "4", URI: polURL,
			Endorser: imagelist.Endorser{DN: polSubject, CA: polIssuer, Email: "e@example.org", Creator: "c"},
			Images:   []imagelist.Image{},
		},
		RawSHA512: polNewSHA,
		SignerDN:  polSubject,
		IssuerDN:  polIssuer,
	}
}

// polUnchanged is the candidate that is byte for byte the accepted list.
func polUnchanged(c *Candidate) {
	c.RawSHA512 = polFloorSHA
	c.List.Version = "3"
	c.List.Created = polNow.Add(-48 * time.Hour)
}

func TestDecideAttacks(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state func(*State)
		cand  func(*Candidate)
		now   time.Time // zero: polNow
		want  Action
		err   error  // sentinel for Refuse
		rule  string // for Refuse
		code  int    // ExitCode for Refuse
		warn  string // substring of a warning; "" = no warnings
	}{
		// Legitimate updates.
		{name: "first list accepted", state: func(s *State) { s.FloorVersion, s.FloorCreated, s.LatestSHA512 = "", time.Time{}, "" }, want: Accept},
		{name: "higher version newer created accepted", want: Accept},
		{name: "unchanged list is a no-op", cand: polUnchanged, want: NoOp},
		{name: "unchanged list is a no-op whatever the hex case", cand: func(c *Candidate) { polUnchanged(c); c.RawSHA512 = strings.ToUpper(polFloorSHA) }, want: NoOp},
		{name: "equal version newer created accepted with warning", cand: func(c *Candidate) { c.List.Version = "3" }, want: Accept, warn: "equals the accepted version"},
		{name: "higher version equal created accepted with warning", cand: func(c *Candidate) { c.List.Created = polNow.Add(-48 * time.Hour) }, want: Accept, warn: "dc:date:created"},
		{name: "version floor only (no created floor) accepts an older created", state: func(s *State) { s.FloorCreated = time.Time{} },
			cand: func(c *Candidate) { c.List.Created = polNow.Add(-1000 * time.Hour) }, want: Accept},

		// Rollback and replay (R5).
		{name: "rollback by version", cand: func(c *Candidate) { c.List.Version = "2" }, want: Refuse, err: ErrRollback, rule: "R5", code: 17},
		{name: "rollback by version even with a newer created", cand: func(c *Candidate) { c.List.Version = "2"; c.List.Created = polNow }, want: Refuse, err: ErrRollback, rule: "R5", code: 17},
		{name: "replay of an older list with the same version", cand: func(c *Candidate) { c.List.Version = "3"; c.List.Created = polNow.Add(-72 * time.Hour) },
			want: Refuse, err: ErrReplay, rule: "R5", code: 17},
		{name: "equal version same created different content refused", cand: func(c *Candidate) { c.List.Version = "3"; c.List.Created = polNow.Add(-48 * time.Hour) },
			want: Refuse, err: ErrReplay, rule: "R5", code: 17},
		// Decision: a higher version does not excuse an older
		// dc:date:created. Under vmcatcher's comparator an old
		// timestamp-style version outranks a later "2.0", so a replay of
		// the old list would pass a version-only check (as in vmcatcher).
		{name: "replay of an older list with a higher version but older created",
			state: func(s *State) { s.FloorVersion = "2.0" },
			cand:  func(c *Candidate) { c.List.Version = "20150618211400"; c.List.Created = polNow.Add(-96 * time.Hour) },
			want:  Refuse, err: ErrRollback, rule: "R5", code: 17},
		{name: "older created with a plainly higher version refused", cand: func(c *Candidate) { c.List.Created = polNow.Add(-49 * time.Hour) },
			want: Refuse, err: ErrRollback, rule: "R5", code: 17},
		// An expired floor still floors (go-tuf TestExpiredTimestampVersionRollback):
		// the state carries no expiry, and its age changes nothing.
		{name: "expired floor still floors", state: func(s *State) { s.FloorCreated = polNow.AddDate(-1, 0, 0) },
			cand: func(c *Candidate) { c.List.Version = "2" }, want: Refuse, err: ErrRollback, rule: "R5", code: 17},

		// Freeze and dates (R4): Verify refuses these first; Decide too.
		{name: "freeze: expired list", cand: func(c *Candidate) { c.List.Expires = polNow.Add(-time.Second) }, want: Refuse, err: ErrListExpired, rule: "R4", code: 34},
		{name: "freeze: the unchanged list once expired is refused, not a no-op",
			cand: func(c *Candidate) { polUnchanged(c); c.List.Expires = polNow.Add(-time.Second) },
			want: Refuse, err: ErrListExpired, rule: "R4", code: 34},
		{name: "expires exactly now still valid", cand: func(c *Candidate) { c.List.Expires = polNow }, want: Accept},
		{name: "created in the future", cand: func(c *Candidate) { c.List.Created = polNow.Add(ClockSkew + time.Second) }, want: Refuse, err: ErrCreatedInFuture, rule: "R4", code: 33},
		{name: "created within the clock skew", cand: func(c *Candidate) { c.List.Created = polNow.Add(ClockSkew) }, want: Accept},

		// Identity (R1) and signer (R2).
		{name: "other list identifier", cand: func(c *Candidate) { c.List.Identifier = "a9b2ea37-0000-4000-8000-000000000000" },
			want: Refuse, err: ErrIdentifierMismatch, rule: "R1", code: 31},
		{name: "other list identifier with the same bytes hash is still refused", cand: func(c *Candidate) { polUnchanged(c); c.List.Identifier = "other" },
			want: Refuse, err: ErrIdentifierMismatch, rule: "R1", code: 31},
		{name: "list without identifier", cand: func(c *Candidate) { c.List.Identifier = "" }, want: Refuse, err: ErrIdentifierMismatch, rule: "R1", code: 31},
		{name: "signer not linked: wrong subject", cand: func(c *Candidate) {
			c.SignerDN, c.List.Endorser.DN = "/DC=org/DC=example/CN=Mallory", "/DC=org/DC=example/CN=Mallory"
		}, want: Refuse, err: ErrEndorserNotLinked, rule: "R2", code: 13},
		// A rogue CA issuing the endorser's DN is stopped by the trust
		// store; the pinned issuer must match as well.
		{name: "signer not linked: right subject, wrong issuer", cand: func(c *Candidate) {
			c.IssuerDN, c.List.Endorser.CA = "/DC=org/DC=rogue/CN=Rogue CA", "/DC=org/DC=rogue/CN=Rogue CA"
		}, want: Refuse, err: ErrEndorserNotLinked, rule: "R2", code: 13, warn: ""},
		{name: "no endorser linked", state: func(s *State) { s.Principals = nil }, want: Refuse, err: ErrEndorserNotLinked, rule: "R2", code: 13},
		{name: "unlinked endorser: the unchanged list is refused, not a no-op", state: func(s *State) { s.Principals = s.Principals[:1] }, cand: polUnchanged,
			want: Refuse, err: ErrEndorserNotLinked, rule: "R2", code: 13},
		{name: "empty DNs never match", state: func(s *State) { s.Principals = []Principal{{}} }, cand: func(c *Candidate) {
			c.SignerDN, c.IssuerDN, c.List.Endorser.DN, c.List.Endorser.CA = "", "", "", ""
		}, want: Refuse, err: ErrEndorserNotLinked, rule: "R2", code: 13},
		{name: "DN mismatch: hv:dn is not the signer", cand: func(c *Candidate) { c.List.Endorser.DN = "/CN=someone" }, want: Refuse, err: ErrDNMismatch, rule: "R2", code: 12},
		{name: "DN mismatch: hv:ca is not the signer's issuer", cand: func(c *Candidate) { c.List.Endorser.CA = "/CN=other CA" }, want: Refuse, err: ErrDNMismatch, rule: "R2", code: 12},

		// vmcatcher's order decides the code when several checks fail.
		{name: "expired list from an unlinked signer exits 34 as in vmcatcher", state: func(s *State) { s.Principals = nil },
			cand: func(c *Candidate) { c.List.Expires = polNow.Add(-time.Hour) }, want: Refuse, err: ErrListExpired, rule: "R4", code: 34},
		{name: "other identifier and expired exits 31 as in vmcatcher",
			cand: func(c *Candidate) { c.List.Identifier = "other"; c.List.Expires = polNow.Add(-time.Hour) }, want: Refuse, err: ErrIdentifierMismatch, rule: "R1", code: 31},

		// hv:uri (warning only; the subscription keeps its URL).
		{name: "hv:uri differs: warning only", cand: func(c *Candidate) { c.List.URI = "https://mirror.example.net/image.list" }, want: Accept, warn: "does not match the subscription URL"},
		{name: "hv:uri differs on a no-op: warning only", cand: func(c *Candidate) { polUnchanged(c); c.List.URI = "file:///srv/image.list" }, want: NoOp, warn: "hv:uri"},
		{name: "hv:uri differs on a refusal: warning kept", cand: func(c *Candidate) { c.List.URI = "https://mirror.example.net/l"; c.List.Version = "1" },
			want: Refuse, err: ErrRollback, rule: "R5", code: 17, warn: "hv:uri"},
		{name: "hv:uri equal but for host case, default port and user info", cand: func(c *Candidate) {
			c.List.URI = "HTTPS://tok:x-oauth-basic@Lists.Example.ORG:443/image.list"
		}, want: Accept},

		// AppDB versions are timestamps: integers of any length.
		{name: "AppDB timestamp versions: newer accepted", state: func(s *State) { s.FloorVersion = "20150618211400" },
			cand: func(c *Candidate) { c.List.Version = "20150619000000" }, want: Accept},
		{name: "AppDB timestamp versions: older refused", state: func(s *State) { s.FloorVersion = "20150619000000" },
			cand: func(c *Candidate) { c.List.Version = "20150618211400" }, want: Refuse, err: ErrRollback, rule: "R5", code: 17},

		// Incomplete input fails closed.
		{name: "no parsed list", cand: func(c *Candidate) { c.List = nil }, want: Refuse, err: ErrInvalidInput, rule: "R3", code: 1},
		{name: "no hash of the raw list", cand: func(c *Candidate) { c.RawSHA512 = "" }, want: Refuse, err: ErrInvalidInput, rule: "R5", code: 1},
		{name: "no hash on either side is not a no-op", state: func(s *State) { s.LatestSHA512 = "" }, cand: func(c *Candidate) { polUnchanged(c); c.RawSHA512 = "" },
			want: Refuse, err: ErrInvalidInput, rule: "R5", code: 1},
		{name: "subscription without pinned identifier", state: func(s *State) { s.Identifier = "" }, cand: func(c *Candidate) { c.List.Identifier = "" },
			want: Refuse, err: ErrInvalidInput, rule: "R1", code: 1},
		{name: "list without hv:version", cand: func(c *Candidate) { c.List.Version = "" }, want: Refuse, err: imagelist.ErrNotImageList, rule: "R5", code: 38},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, c, now := polState(), polCandidate(), polNow
			if tc.state != nil {
				tc.state(&st)
			}
			if tc.cand != nil {
				tc.cand(&c)
			}
			if !tc.now.IsZero() {
				now = tc.now
			}
			d := Decide(st, c, now)
			checkDecision(t, d)
			if d.Action != tc.want {
				t.Fatalf("action %v (err %v), want %v", d.Action, d.Err, tc.want)
			}
			if tc.want == Refuse {
				var pe *PolicyError
				if !errors.As(d.Err, &pe) {
					t.Fatalf("error %T %v, want *PolicyError", d.Err, d.Err)
				}
				if !errors.Is(d.Err, tc.err) || pe.Rule != tc.rule || pe.Code != tc.code || ExitCode(d.Err) != tc.code {
					t.Fatalf("error %v (rule %s, code %d, ExitCode %d), want %v rule %s code %d",
						d.Err, pe.Rule, pe.Code, ExitCode(d.Err), tc.err, tc.rule, tc.code)
				}
				if msg := d.Err.Error(); !strings.HasPrefix(msg, tc.rule+": ") || strings.ContainsAny(msg, "\r\n") {
					t.Fatalf("message %q does not start with the rule on one line", msg)
				}
			}
			switch {
			case tc.warn == "" && len(d.Warnings) > 0:
				t.Fatalf("unexpected warnings %q", d.Warnings)
			case tc.warn != "" && !strings.Contains(strings.Join(d.Warnings, "\n"), tc.warn):
				t.Fatalf("warnings %q, want one containing %q", d.Warnings, tc.warn)
			}
			for _, w := range d.Warnings {
				if strings.ContainsAny(w, "\r\n") || strings.Contains(w, "x-oauth-basic") {
					t.Fatalf("warning %q is not one clean line", w)
				}
			}
		})
	}
}

// checkDecision asserts the invariants every Decision keeps.
func checkDecision(t *testing.T, d Decision) {
	t.Helper()
	if (d.Action == Refuse) != (d.Err != nil) {
		t.Fatalf("action %v with error %v", d.Action, d.Err)
	}
	if d.Err != nil {
		var pe *PolicyError
		if !errors.As(d.Err, &pe) || pe.Rule == "" || pe.Code == 0 || pe.Err == nil {
			t.Fatalf("refusal %#v is not a complete *PolicyError", d.Err)
		}
	}
}

func TestDecideMessages(t *testing.T) {
	st, c := polState(), polCandidate()
	c.IssuerDN, c.List.Endorser.CA = "/DC=org/DC=rogue/CN=Rogue CA", "/DC=org/DC=rogue/CN=Rogue CA"
	msg := Decide(st, c, polNow).Err.Error()
	for _, want := range []string{"R2: ", polSubject, "/DC=org/DC=rogue/CN=Rogue CA", "linked only under issuer", polIssuer} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}

	c = polCandidate()
	c.List.Version = "2"
	if msg := Decide(st, c, polNow).Err.Error(); msg != `R5: rollback to an older list: hv:version "2" is lower than the accepted "3"` {
		t.Errorf("rollback message %q", msg)
	}

	c = polCandidate()
	c.List.URI = "https://token:x-oauth-basic@mirror.example.net/l"
	d := Decide(st, c, polNow)
	if len(d.Warnings) != 1 || strings.Contains(d.Warnings[0], "token") || !strings.Contains(d.Warnings[0], "https://mirror.example.net/l") {
		t.Errorf("hv:uri warning %q leaks user info or lacks the URI", d.Warnings)
	}
}

// TestVersionQuirks documents what vmcatcher's comparator (kept for
// compatibility, see imagelist.Compare) means for updates. A publisher hit
// by a quirk is wedged until it raises hv:version past the floor or the
// operator resets the floor (R7).
func TestVersionQuirks(t *testing.T) {
	for _, tc := range []struct {
		floor, cand string
		want        Action
		why         string
	}{
		{"2", "10", Accept, "numeric, not lexical"},
		{"v2", "v10", Accept, "digit runs compare as numbers"},
		{"1.0", "1.0.1", Accept, "more tokens is newer"},
		{"3.3.0-1", "3.3.0-2", Accept, "release suffix"},
		{"1.0a", "1.0b", Accept, "letters bytewise"},
		{"1.a", "1.1", Accept, "a digit token beats a non-digit token"},
		{"1.0", "1.0-rc1", Accept, "quirk: more tokens is newer, so an rc after the release is an upgrade"},
		{"1.0", "1.0a", Refuse, "quirk: \"0\" (all digits) beats \"0a\""},
		{"1.0", "1.2rc1", Refuse, "quirk: \"0\" beats \"2rc1\""},
		{"1.0", "1-0", Refuse, "quirk: '.' > '-'"},
		{"1.1.2", "1.01.5", Accept, "clr difference: vmcatcher stopped at 01 == 1 and called them equal (then accepted as same version)"},
		{"1", "01", Refuse, "leading zeros compare equal: same version, same created, other content is a replay"},
	} {
		t.Run(tc.floor+"->"+tc.cand, func(t *testing.T) {
			st, c := polState(), polCandidate()
			st.FloorVersion, c.List.Version = tc.floor, tc.cand
			c.List.Created = st.FloorCreated // only the version decides
			d := Decide(st, c, polNow)
			checkDecision(t, d)
			if d.Action != tc.want {
				t.Fatalf("%s -> %s: %v (%v), want %v: %s", tc.floor, tc.cand, d.Action, d.Err, tc.want, tc.why)
			}
			if d.Action == Refuse && ExitCode(d.Err) != 17 {
				t.Fatalf("exit code %d, want 17", ExitCode(d.Err))
			}
		})
	}
}

type codedErr struct{ code int }

func (e codedErr) Error() string { return fmt.Sprintf("coded %d", e.code) }
func (e codedErr) ExitCode() int { return e.code }

func TestExitCode(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("update subscription %s: %w", polListID, err) }
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("disk full"), 1},
		{fs.ErrNotExist, 1},
		{wrap(ErrInvalidInput), 1},
		{wrap(codedErr{10}), 10}, // a download error of the workflow
		{wrap(codedErr{32}), 32}, // new image refused
		{wrap(&PolicyError{Rule: "R5", Code: 17, Err: ErrReplay}), 17},
		{wrap(ErrIdentifierMismatch), 31},
		{wrap(ErrEndorserNotLinked), 13},
		{wrap(ErrRollback), 17},
		{wrap(ErrReplay), 17},
		{wrap(ErrDNMismatch), 12},
		{wrap(ErrListExpired), 34},
		{wrap(ErrCreatedInFuture), 33},
		{wrap(imagelist.ErrTooLarge), 37},
		{wrap(fsutil.ErrTooLarge), 37},
		{wrap(imagelist.ErrNotJSON), 37},
		{wrap(imagelist.ErrNotImageList), 38},
		{wrap(&imagelist.ListError{Missing: []string{"dc:title"}}), 38},
		{wrap(imagelist.ErrInvalidTime), 38},
		{wrap(imagelist.ErrInvalidImage), 38},
		{wrap(smime.ErrMalformed), 11},
		{wrap(smime.ErrDigestMismatch), 11},
		{wrap(smime.ErrBadSignature), 11},
		{wrap(smime.ErrSignerCount), 11},
		{wrap(smime.ErrNoSignerCert), 11},
		{wrap(smime.ErrUnsupported), 11},
		{wrap(smime.ErrTextMode), 11},
		{wrap(trust.ErrNoCAs), 11},
		{wrap(trust.ErrUnknownAuthority), 11},
		{wrap(trust.ErrExpired), 11},
		{wrap(trust.ErrNotYetValid), 11},
		{wrap(trust.ErrRevoked), 11},
		{wrap(trust.ErrNoCRL), 11},
		{wrap(trust.ErrCRLExpired), 11},
		{wrap(trust.ErrCRLNotYetValid), 11},
		{wrap(trust.ErrNamespace), 11},
		{wrap(trust.ErrPurpose), 11},
		{wrap(trust.ErrInsecureAlgorithm), 11},
	} {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// polHash stands for the SHA-512 of a signed list: equal for equal
// (version, created, variant), so two byte-identical lists always carry
// the same version and date.
func polHash(version string, created time.Time, variant int) string {
	s := sha512.Sum512([]byte(fmt.Sprintf("%s|%d|%d", version, created.Unix(), variant)))
	return hex.EncodeToString(s[:])
}

// checkPolicyProperties asserts, for one floor and one candidate that pass
// every check but R5:
//   - an accepted candidate is neither below the floor's version nor older
//     than its created date, and an equal version comes with a strictly
//     newer created date;
//   - a candidate at or above the floor in both, and not an equal version
//     with an equal or older date, is accepted (the policy does not
//     refuse honest updates);
//   - accepting and deciding again on the same candidate is a no-op;
//   - once accepted, the previous list (if it differed) is refused.
func checkPolicyProperties(t *testing.T, floorV string, floorC time.Time, floorVariant int, candV string, candC time.Time, candVariant int) {
	t.Helper()
	st, c := polState(), polCandidate()
	st.FloorVersion, st.FloorCreated, st.LatestSHA512 = floorV, floorC, polHash(floorV, floorC, floorVariant)
	c.List.Version, c.List.Created, c.RawSHA512 = candV, candC, polHash(candV, candC, candVariant)
	d := Decide(st, c, polNow)
	checkDecision(t, d)
	if candV == "" {
		if d.Action != Refuse {
			t.Fatalf("list without version: %v", d.Action)
		}
		return
	}
	cmp := 1
	if floorV != "" {
		cmp = imagelist.Compare(candV, floorV)
	}
	same := c.RawSHA512 == st.LatestSHA512
	older := !floorC.IsZero() && candC.Before(floorC)
	notNewer := !floorC.IsZero() && !candC.After(floorC)
	switch {
	case same:
		if d.Action != NoOp {
			t.Fatalf("identical list: %v (%v)", d.Action, d.Err)
		}
	case d.Action == Accept && (cmp < 0 || older || (cmp == 0 && notNewer)):
		t.Fatalf("accepted %q created %s over floor %q created %s", candV, candC, floorV, floorC)
	case d.Action != Accept && cmp >= 0 && !older && !(cmp == 0 && notNewer):
		t.Fatalf("refused honest update %q created %s over floor %q created %s: %v", candV, candC, floorV, floorC, d.Err)
	case d.Action == Refuse && ExitCode(d.Err) != 17:
		t.Fatalf("refusal by R5 exits %d: %v", ExitCode(d.Err), d.Err)
	}
	if d.Action != Accept {
		return
	}
	// R6: the floor rises to the candidate; deciding again is a no-op.
	next := st
	next.FloorVersion, next.FloorCreated, next.LatestSHA512 = candV, candC, c.RawSHA512
	if d2 := Decide(next, c, polNow); d2.Action != NoOp {
		t.Fatalf("accepted %q, then deciding again: %v (%v)", candV, d2.Action, d2.Err)
	}
	// The list it replaced can never come back.
	if floorV != "" && !floorC.IsZero() {
		prev := polCandidate()
		prev.List.Version, prev.List.Created, prev.RawSHA512 = floorV, floorC, st.LatestSHA512
		if d3 := Decide(next, prev, polNow); d3.Action != Refuse || ExitCode(d3.Err) != 17 {
			t.Fatalf("replaced %q created %s by %q created %s, then the old list: %v (%v)", floorV, floorC, candV, candC, d3.Action, d3.Err)
		}
	}
}

// polVersion returns a random version from parts that exercise every rule
// of imagelist.Compare, including the quirks.
func polVersion(r *rand.Rand) string {
	parts := []string{"0", "1", "01", "2", "10", "a", "rc1", "0a", "2rc1", "20150618211400", "20150619000000"}
	delims := []string{".", "-", "/", ","}
	var b strings.Builder
	for i := range 1 + r.IntN(4) {
		if i > 0 {
			b.WriteString(delims[r.IntN(len(delims))])
		}
		b.WriteString(parts[r.IntN(len(parts))])
	}
	return b.String()
}

func TestDecideProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	created := func() time.Time {
		if r.IntN(10) == 0 {
			return time.Time{} // no created floor (candidates get a date below)
		}
		return polNow.Add(-time.Duration(r.IntN(6)) * time.Hour)
	}
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for range n {
		floorV, candV := polVersion(r), polVersion(r)
		if r.IntN(10) == 0 {
			floorV = "" // first list
		}
		if r.IntN(4) == 0 {
			candV = floorV
		}
		floorC, candC := created(), created()
		if candC.IsZero() {
			candC = polNow.Add(-time.Hour)
		}
		checkPolicyProperties(t, floorV, floorC, r.IntN(2), candV, candC, r.IntN(2))
	}

	// A random walk: whatever is offered, the floor never drops.
	st := polState()
	st.FloorVersion, st.FloorCreated, st.LatestSHA512 = "", time.Time{}, ""
	for i := range 5000 {
		c := polCandidate()
		c.List.Version, c.List.Created = polVersion(r), polNow.Add(-time.Duration(r.IntN(500))*time.Minute)
		c.RawSHA512 = polHash(c.List.Version, c.List.Created, r.IntN(2))
		d := Decide(st, c, polNow)
		checkDecision(t, d)
		if d.Action != Accept {
			continue
		}
		if st.FloorVersion != "" && (imagelist.Compare(c.List.Version, st.FloorVersion) < 0 || c.List.Created.Before(st.FloorCreated)) {
			t.Fatalf("step %d: floor %q/%s dropped to %q/%s", i, st.FloorVersion, st.FloorCreated, c.List.Version, c.List.Created)
		}
		st.FloorVersion, st.FloorCreated, st.LatestSHA512 = c.List.Version, c.List.Created, c.RawSHA512
	}
}

func FuzzDecide(f *testing.F) {
	for _, s := range []struct {
		fv, cv     string
		fh, ch     int64
		fvar, cvar int
	}{
		{"3", "4", 48, 1, 0, 0},
		{"3", "3", 48, 48, 0, 1},
		{"3", "3", 48, 72, 0, 1},
		{"2.0", "20150618211400", 48, 96, 0, 0},
		{"20150618211400", "20150619000000", 48, 24, 0, 0},
		{"1.0", "1.0a", 2, 1, 0, 0},
		{"1.0", "1-0", 2, 1, 0, 0},
		{"1", "01", 2, 2, 0, 1},
		{"", "1", -1, 1, 0, 0},
	} {
		f.Add(s.fv, s.cv, s.fh, s.ch, s.fvar, s.cvar)
	}
	f.Fuzz(func(t *testing.T, floorV, candV string, floorHours, candHours int64, floorVariant, candVariant int) {
		// Dates between now and ~11 years ago, whole hours; a negative
		// floor offset means no created floor. Candidate dates stay valid
		// for R4, so only R5 decides.
		floorC := time.Time{}
		if floorHours >= 0 {
			floorC = polNow.Add(-time.Duration(floorHours%100000) * time.Hour)
		}
		h := candHours % 100000
		if h < 0 {
			h = -h
		}
		candC := polNow.Add(-time.Duration(h) * time.Hour)
		checkPolicyProperties(t, floorV, floorC, floorVariant&1, candV, candC, candVariant&1)
	})
}
