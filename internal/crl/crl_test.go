package crl

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clr-suite/clr/internal/testpki"
	"github.com/clr-suite/clr/internal/transport"
	"github.com/clr-suite/clr/internal/trust"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// env is a CA directory with one CA whose CRL source is a local HTTP
// server serving whatever the test puts in body/status.
type env struct {
	t      *testing.T
	dir    string
	ca     *testpki.Identity
	other  *testpki.Identity // another CA (same kind, other key and name)
	hash   string
	mu     sync.Mutex
	body   []byte
	status int
	srv    *httptest.Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), status: 200}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		defer e.mu.Unlock()
		w.WriteHeader(e.status)
		w.Write(e.body)
	}))
	t.Cleanup(e.srv.Close)
	var err error
	e.ca, err = testpki.NewCA(testpki.Spec{Subject: "/DC=org/DC=clr-test/CN=CRL Test CA", NotBefore: t0.AddDate(-1, 0, 0), NotAfter: t0.AddDate(5, 0, 0), IsCA: true, ECDSA: true})
	if err != nil {
		t.Fatal(err)
	}
	e.other, err = testpki.NewCA(testpki.Spec{Subject: "/DC=org/DC=clr-test/CN=CRL Test CA", NotBefore: t0.AddDate(-1, 0, 0), NotAfter: t0.AddDate(5, 0, 0), IsCA: true, ECDSA: true})
	if err != nil {
		t.Fatal(err)
	}
	e.hash, err = trust.SubjectHash(e.ca.Cert.RawSubject)
	if err != nil {
		t.Fatal(err)
	}
	e.write(e.hash+".0", e.ca.CertPEM())
	e.write(e.hash+".crl_url", []byte("# IGTF style\n"+e.srv.URL+"/ca.crl\n"))
	return e
}

func (e *env) write(name string, data []byte) {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(e.dir, name), data, 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) crl(signer *testpki.Identity, number int64, this time.Time) []byte {
	e.t.Helper()
	der, err := signer.CRL(number, this, this.Add(7*24*time.Hour))
	if err != nil {
		e.t.Fatal(err)
	}
	return der
}

func (e *env) serve(status int, body []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.status, e.body = status, body
}

func (e *env) refresh() Outcome {
	e.t.Helper()
	outs, err := Refresh(context.Background(), Options{Dir: e.dir, Now: t0, Fetch: func(ctx context.Context, u string, max int64) ([]byte, error) {
		r, err := transport.FetchList(ctx, transport.ListRequest{URL: u, MaxSize: max, Timeout: 10 * time.Second})
		if err != nil {
			return nil, err
		}
		return r.Body, nil
	}})
	if err != nil {
		e.t.Fatal(err)
	}
	if len(outs) != 1 {
		e.t.Fatalf("%d outcomes", len(outs))
	}
	return outs[0]
}

func (e *env) onDisk() []byte {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, e.hash+".r0"))
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// TestRefresh: a fresh CRL replaces an old one; a CRL signed by another CA,
// a truncated download, an older CRL, an HTML error page, a delta-free
// CRL of another issuer and an HTTP error each leave the good file in
// place with a clear message.
func TestRefresh(t *testing.T) {
	e := newEnv(t)
	old := e.crl(e.ca, 1, t0.Add(-48*time.Hour))
	e.write(e.hash+".r0", testpki.CRLPEM(old))

	fresh := e.crl(e.ca, 2, t0.Add(-time.Hour))
	e.serve(200, fresh)
	o := e.refresh()
	if o.Status != Updated || !o.ThisUpdate.Equal(t0.Add(-time.Hour)) {
		t.Fatalf("fresh CRL: %+v", o)
	}
	good := e.onDisk()
	if string(good) != string(testpki.CRLPEM(fresh)) {
		t.Fatal("the fresh CRL was not written as PEM")
	}
	// the same CRL again: nothing written
	if o := e.refresh(); o.Status != Unchanged {
		t.Fatalf("same CRL: %+v", o)
	}

	otherIssuer, err := testpki.NewCA(testpki.Spec{Subject: "/DC=org/CN=Someone Else", NotBefore: t0.AddDate(-1, 0, 0), NotAfter: t0.AddDate(1, 0, 0), IsCA: true, ECDSA: true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		status int
		body   []byte
		want   error
		msg    string
	}{
		{"signed by another CA of the same name", 200, e.crl(e.other, 3, t0), ErrSignature, "is not signed by the CA"},
		{"another issuer", 200, e.crl(otherIssuer, 3, t0), ErrWrongIssuer, "is issued by"},
		{"truncated download", 200, fresh[:len(fresh)/2], ErrParse, "not a CRL"},
		{"HTML error page with 200", 200, []byte("<html>maintenance</html>"), ErrParse, "not a CRL"},
		{"older CRL", 200, e.crl(e.ca, 1, t0.Add(-72*time.Hour)), ErrOlder, "older than the one on disk"},
		{"from the future", 200, e.crl(e.ca, 9, t0.Add(time.Hour)), ErrFuture, "in the future"},
		{"2 minutes ahead (within the skew, but not valid yet)", 200, e.crl(e.ca, 9, t0.Add(2*time.Minute)), ErrFuture, "the current CRL stays"},
		{"HTTP error", 503, []byte("busy"), ErrFetch, "503"},
		{"not found", 404, nil, ErrFetch, "404"},
	}
	for _, tc := range tests {
		e.serve(tc.status, tc.body)
		o := e.refresh()
		err := o.Err()
		if o.Status != Kept || !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: status %s, error %v; want kept with %v (%q)", tc.name, o.Status, err, tc.want, tc.msg)
		}
		if string(e.onDisk()) != string(good) {
			t.Fatalf("%s: the good CRL was replaced", tc.name)
		}
		if !o.ThisUpdate.Equal(t0.Add(-time.Hour)) {
			t.Errorf("%s: outcome reports thisUpdate %v of the file on disk", tc.name, o.ThisUpdate)
		}
	}
	// the store still verifies with the kept CRL
	st, err := trust.Load(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	if ca := st.CAs()[0]; ca.CRL == nil || ca.CRL.Number.Int64() != 2 {
		t.Fatalf("trust store CRL %+v", ca.CRL)
	}
}

// TestRefreshFallsBackToDistributionPoint: a dead crl_url, then the CA's
// distribution point.
func TestRefreshSources(t *testing.T) {
	e := newEnv(t)
	e.write(e.hash+".crl_url", []byte("http://127.0.0.1:1/dead.crl\n"))
	ca, err := testpki.NewCA(testpki.Spec{Subject: "/DC=org/DC=clr-test/CN=CRL Test CA", NotBefore: t0.AddDate(-1, 0, 0), NotAfter: t0.AddDate(5, 0, 0), IsCA: true, ECDSA: true, CRLURL: e.srv.URL + "/dp.crl"})
	if err != nil {
		t.Fatal(err)
	}
	e.ca = ca
	e.write(e.hash+".0", ca.CertPEM())
	e.serve(200, e.crl(ca, 1, t0))
	o := e.refresh()
	if o.Status != Updated || len(o.Attempts) != 2 || o.Attempts[0].Err == nil || o.Attempts[1].URL != e.srv.URL+"/dp.crl" {
		t.Fatalf("outcome %+v", o)
	}
	// no source at all
	os.Remove(filepath.Join(e.dir, e.hash+".crl_url"))
	noDP, _ := testpki.NewCA(testpki.Spec{Subject: "/DC=org/DC=clr-test/CN=CRL Test CA", NotBefore: t0.AddDate(-1, 0, 0), NotAfter: t0.AddDate(5, 0, 0), IsCA: true, ECDSA: true})
	e.write(e.hash+".0", noDP.CertPEM())
	if o := e.refresh(); o.Status != NoSource || !errors.Is(o.Err(), ErrNoSource) {
		t.Fatalf("no source: %+v", o)
	}
}

// TestHealth: a stale CRL is reported before it breaks verification
// (warning while nextUpdate is near, critical once past), with CA expiry,
// missing CRL and policy findings.
func TestHealth(t *testing.T) {
	e := newEnv(t)
	// no CRL yet
	h, err := Check(e.dir, t0, Thresholds{})
	if err != nil {
		t.Fatal(err)
	}
	if h.Level != Critical || !has(h.CAs[0], "crl-missing") || !has(h.CAs[0], "no-policy") {
		t.Fatalf("no CRL: %+v", h)
	}
	der, err := e.ca.CRL(1, t0.Add(-6*24*time.Hour), t0.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	e.write(e.hash+".r0", testpki.CRLPEM(der))

	tests := []struct {
		at    time.Time
		level Level
		code  string
	}{
		{t0.Add(-48 * time.Hour), Notice, "no-policy"},  // 3 days ahead of nextUpdate: only the missing policy
		{t0, Warning, "crl-expiring"},                   // 24 h left: warned ahead of time
		{t0.Add(25 * time.Hour), Critical, "crl-stale"}, // past nextUpdate
		{t0.AddDate(4, 11, 20), Critical, "crl-stale"},  // and the CA expiring too
	}
	for _, tc := range tests {
		h, err := Check(e.dir, tc.at, Thresholds{})
		if err != nil {
			t.Fatal(err)
		}
		c := h.CAs[0]
		if c.Level != tc.level || (tc.code != "" && !has(c, tc.code)) {
			t.Errorf("at %v: level %s findings %+v; want %s %s", tc.at, c.Level, c.Findings, tc.level, tc.code)
		}
		if c.CRLNextUpdate == nil || !c.CRLNextUpdate.Equal(t0.Add(24*time.Hour)) || c.Hash != e.hash {
			t.Errorf("at %v: %+v", tc.at, c)
		}
	}
	if h, _ := Check(e.dir, t0.AddDate(4, 11, 20), Thresholds{}); !has(h.CAs[0], "ca-expiring") {
		t.Errorf("CA expiring in 11 days not reported: %+v", h.CAs[0].Findings)
	}
	// the stale CRL breaks verification only after the warning was given
	st, _ := trust.Load(e.dir)
	leaf, err := e.ca.Issue(testpki.Spec{Subject: "/DC=org/DC=clr-test/CN=Signer", NotBefore: t0.AddDate(0, -1, 0), NotAfter: t0.AddDate(1, 0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Verify(leaf.Cert, nil, trust.Policy{Time: t0, Purpose: trust.PurposeAny}); err != nil {
		t.Fatalf("verification at the warning: %v", err)
	}
	if _, err := st.Verify(leaf.Cert, nil, trust.Policy{Time: t0.Add(25 * time.Hour), Purpose: trust.PurposeAny}); !errors.Is(err, trust.ErrCRLExpired) {
		t.Fatalf("verification after nextUpdate: %v", err)
	}
	// a CRL of the wrong signer on disk is reported as invalid
	e.write(e.hash+".r0", testpki.CRLPEM(e.crl(e.other, 1, t0)))
	if h, _ := Check(e.dir, t0, Thresholds{}); !has(h.CAs[0], "crl-invalid") || h.Level != Critical {
		t.Errorf("foreign CRL: %+v", h.CAs[0].Findings)
	}
}

func has(c CAHealth, code string) bool {
	for _, f := range c.Findings {
		if f.Code == code {
			return true
		}
	}
	return false
}

func TestLevelJSON(t *testing.T) {
	b, err := Critical.MarshalText()
	if err != nil || string(b) != "critical" || Notice.String() != "notice" {
		t.Fatalf("%s %v", b, err)
	}
}
