package crl

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/clr-suite/clr/internal/trust"
)

// Level ranks a finding; the worst level of a report decides a monitoring
// check's result.
type Level int

const (
	OK Level = iota
	Notice
	Warning
	Critical
)

func (l Level) String() string {
	return [...]string{"ok", "notice", "warning", "critical"}[l]
}

// MarshalText renders the level as its name in JSON.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// Finding is one thing an operator should know about a CA.
type Finding struct {
	Level   Level  `json:"level"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// CAHealth is the state of one CA of the directory.
type CAHealth struct {
	Subject        string     `json:"subject"`
	Hash           string     `json:"hash"`
	File           string     `json:"file"`
	NotAfter       time.Time  `json:"not_after"`
	SelfSigned     bool       `json:"self_signed"`
	SignatureAlg   string     `json:"signature_algorithm"`
	Policy         bool       `json:"namespace_policy"`
	CRLSource      bool       `json:"crl_source"`
	CRLFile        string     `json:"crl_file,omitempty"`
	CRLThisUpdate  *time.Time `json:"crl_this_update,omitempty"`
	CRLNextUpdate  *time.Time `json:"crl_next_update,omitempty"`
	RevokedEntries int        `json:"crl_entries"`
	Level          Level      `json:"level"`
	Findings       []Finding  `json:"findings"`
}

// Health is the report of a CA directory.
type Health struct {
	Dir      string     `json:"dir"`
	Time     time.Time  `json:"time"`
	Level    Level      `json:"level"` // the worst of all CAs (and of the directory's problems)
	CAs      []CAHealth `json:"cas"`
	Problems []string   `json:"problems"` // files the trust store skipped
}

// Thresholds say how far ahead to warn.
type Thresholds struct {
	CAExpiry  time.Duration // warn when a CA expires within this (default 30 days)
	CRLExpiry time.Duration // warn when a CRL's nextUpdate is within this (default 2 days)
}

func (t Thresholds) orDefault() Thresholds {
	if t.CAExpiry <= 0 {
		t.CAExpiry = 30 * 24 * time.Hour
	}
	if t.CRLExpiry <= 0 {
		t.CRLExpiry = 48 * time.Hour
	}
	return t
}

// Check reports the health of the CA directory at now.
func Check(dir string, now time.Time, th Thresholds) (Health, error) {
	th = th.orDefault()
	h := Health{Dir: dir, Time: now.UTC(), CAs: []CAHealth{}}
	st, err := trust.Load(dir)
	if err != nil {
		return h, fmt.Errorf("crl: %w", err)
	}
	h.Problems = append([]string{}, st.Problems()...)
	if len(h.Problems) > 0 {
		h.Level = Notice
	}
	gs, err := groups(st)
	if err != nil {
		return h, fmt.Errorf("crl: %w", err)
	}
	byRaw := map[string]trust.CA{}
	for _, ca := range st.CAs() {
		byRaw[string(ca.Cert.Raw)] = ca
	}
	for _, g := range gs {
		crlFile := filepath.Join(dir, g.file)
		hasSource := len(sources(dir, g)) > 0
		for _, cert := range g.certs {
			ca := byRaw[string(cert.Raw)]
			c := CAHealth{
				Subject: ca.Subject, Hash: g.hash, File: ca.File, NotAfter: cert.NotAfter.UTC(),
				SelfSigned:   string(cert.RawSubject) == string(cert.RawIssuer),
				SignatureAlg: cert.SignatureAlgorithm.String(), Policy: ca.HasPolicy, CRLSource: hasSource,
				Findings: []Finding{},
			}
			// the CRL this certificate's chains are checked against: signed
			// by this very certificate (a renewed CA has one per key)
			cur := currentCRL(crlFile, []*x509.Certificate{cert})
			add := func(l Level, code, format string, a ...any) {
				c.Findings = append(c.Findings, Finding{Level: l, Code: code, Message: fmt.Sprintf(format, a...)})
				if l > c.Level {
					c.Level = l
				}
			}
			switch left := cert.NotAfter.Sub(now); {
			case left <= 0:
				add(Critical, "ca-expired", "CA certificate expired %s: remove it or install the renewed CA", ts(cert.NotAfter))
			case left <= th.CAExpiry:
				add(Warning, "ca-expiring", "CA certificate expires %s (in %s): install the renewed CA before then", ts(cert.NotAfter), days(left))
			}
			if cert.NotBefore.After(now) {
				add(Warning, "ca-not-yet-valid", "CA certificate valid only from %s: check the clock", ts(cert.NotBefore))
			}
			if weak(cert.SignatureAlgorithm) && string(cert.RawSubject) != string(cert.RawIssuer) {
				add(Critical, "ca-insecure-signature", "CA certificate is signed with %s, which Go refuses: chains through it fail; the parent CA must reissue it", cert.SignatureAlgorithm)
			} else if weak(cert.SignatureAlgorithm) {
				add(Notice, "root-sha1", "self-signed with %s (harmless for a trust anchor: its own signature is not checked)", cert.SignatureAlgorithm)
			}
			if !c.Policy {
				add(Notice, "no-policy", "no .signing_policy or .namespaces file: this CA may sign any name")
			}
			if cur == nil {
				if _, err := os.Stat(crlFile); err == nil {
					add(Critical, "crl-invalid", "%s is not a CRL signed by this CA: run `clr-trust refresh`", crlFile)
				} else {
					add(Critical, "crl-missing", "no CRL (%s): lists signed under this CA fail verification; run `clr-trust refresh`", crlFile)
				}
			} else {
				c.CRLFile = crlFile
				tu, nu := cur.ThisUpdate.UTC(), cur.NextUpdate.UTC()
				c.CRLThisUpdate = &tu
				c.RevokedEntries = len(cur.RevokedCertificateEntries)
				switch {
				case cur.NextUpdate.IsZero():
					add(Notice, "crl-no-next-update", "the CRL has no nextUpdate")
				case !cur.NextUpdate.After(now):
					add(Critical, "crl-stale", "CRL stale since %s: lists signed under this CA fail verification; run `clr-trust refresh`", ts(cur.NextUpdate))
				case cur.NextUpdate.Sub(now) <= th.CRLExpiry:
					add(Warning, "crl-expiring", "CRL next update %s (in %s): refresh it before then (`clr-trust refresh`)", ts(cur.NextUpdate), days(cur.NextUpdate.Sub(now)))
				}
				if !cur.NextUpdate.IsZero() {
					c.CRLNextUpdate = &nu
				}
				if cur.ThisUpdate.After(now) {
					add(Warning, "crl-future", "CRL thisUpdate %s is in the future: check the clock", ts(cur.ThisUpdate))
				}
			}
			if !hasSource {
				add(Notice, "crl-no-source", "no %s.crl_url and no CRL distribution point: the CRL cannot be refreshed automatically", g.hash)
			}
			if c.Level > h.Level {
				h.Level = c.Level
			}
			h.CAs = append(h.CAs, c)
		}
	}
	sort.SliceStable(h.CAs, func(i, j int) bool { return h.CAs[i].Hash < h.CAs[j].Hash })
	return h, nil
}

func weak(a x509.SignatureAlgorithm) bool {
	switch a {
	case x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1, x509.MD5WithRSA, x509.MD2WithRSA:
		return true
	}
	return false
}

func days(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	}
	return d.Round(time.Minute).String()
}
