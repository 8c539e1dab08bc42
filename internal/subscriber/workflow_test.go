package subscriber

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clr-suite/clr/events"
	"github.com/clr-suite/clr/internal/imagelist"
	"github.com/clr-suite/clr/internal/smime"
	"github.com/clr-suite/clr/internal/store"
	"github.com/clr-suite/clr/internal/testpki"
	"github.com/clr-suite/clr/internal/transport"
	"github.com/clr-suite/clr/internal/trust"
)

// server is a fake list server: it answers with body, or 304 when the
// request's ETag matches etag, or fails with err; it records requests.
type server struct {
	body     []byte
	etag     string
	err      error
	requests []transport.ListRequest
}

func (s *server) fetch(_ context.Context, req transport.ListRequest) (*transport.ListResponse, error) {
	s.requests = append(s.requests, req)
	if s.err != nil {
		return nil, s.err
	}
	if s.etag != "" && req.ETag == s.etag {
		return &transport.ListResponse{NotModified: true, ETag: s.etag, URL: req.URL}, nil
	}
	return &transport.ListResponse{Body: s.body, ETag: s.etag, URL: req.URL}, nil
}

type wfFixture struct {
	t        *testing.T
	now      time.Time
	pki      *testpki.Fixture
	trust    *trust.Store
	store    *store.Store
	srv      *server
	events   []events.Event
	signerDN string
	caDN     string
}

func newWF(t *testing.T) *wfFixture {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	f, err := testpki.NewFixture(now)
	if err != nil {
		t.Fatal(err)
	}
	ts := loadTrust(t, f)
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "clr.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	w := &wfFixture{t: t, now: now, pki: f, trust: ts, store: st, srv: &server{}}
	w.signerDN, _ = trust.Oneline(f.Signer.Cert.RawSubject)
	w.caDN, _ = trust.Oneline(f.Signer.Cert.RawIssuer)
	return w
}

// workflow at now+offset.
func (w *wfFixture) workflow(offset time.Duration) *Workflow {
	return &Workflow{
		Store: w.store, Trust: w.trust, Policy: trust.Policy{Time: w.now.Add(offset)}, Fetch: w.srv.fetch,
		Hook: func(_ context.Context, ev events.Event) error {
			w.events = append(w.events, ev)
			return errors.New("hooks fail, updates go on")
		},
	}
}

func (w *wfFixture) signed(version string, created time.Time, expires time.Duration, images ...string) []byte {
	w.t.Helper()
	l := &imagelist.List{
		Created: created, Expires: created.Add(expires), Identifier: "4e186b44-2c64-40ea-97d5-e9e5c0bce059",
		Description: "d", Title: "t", Source: "s", Version: version, URI: "https://example.org/list",
		Endorser: imagelist.Endorser{DN: w.signerDN, CA: w.caDN, Email: "e", Creator: "c"},
		Images:   []imagelist.Image{},
	}
	for _, id := range images {
		l.Images = append(l.Images, imagelist.Image{
			Identifier: id, Title: id, Description: id, URI: "https://example.org/" + id, Size: 1, Version: version,
			SHA512: strings.Repeat("ab", 64), Hypervisor: "kvm", Arch: "x86_64", OS: "Linux", OSVersion: "9",
		})
	}
	b, err := l.Marshal()
	if err != nil {
		w.t.Fatal(err)
	}
	s, err := smime.Sign(b, w.pki.Signer.Cert, w.pki.Signer.Key, smime.SignOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	return s
}

func (w *wfFixture) subscribe(mode store.UpdateMode) {
	w.t.Helper()
	_, err := w.workflow(0).Subscribe(context.Background(), SubscribeOptions{URL: "https://site.example/list", AutoEndorse: true, Mode: mode})
	if err != nil {
		w.t.Fatal(err)
	}
}

func (w *wfFixture) states() map[string]int {
	imgs, err := w.store.ListImages(context.Background(), store.ImageFilter{})
	if err != nil {
		w.t.Fatal(err)
	}
	out := map[string]int{}
	for _, im := range imgs {
		out[im.UUID] = im.State()
	}
	return out
}

func TestUpdateConditionalGET(t *testing.T) {
	w := newWF(t)
	ctx := context.Background()
	w.srv.body, w.srv.etag = w.signed("1", w.now.Add(-time.Hour), 24*time.Hour, "a"), `"v1"`
	w.subscribe(store.NewImagesRefuse)
	if got := w.srv.requests[0].ETag; got != "" {
		t.Errorf("first request sent ETag %q", got)
	}
	res, err := w.workflow(time.Minute).Update(ctx, "https://site.example/list")
	if err != nil || !res.NotModified || res.Action != NoOp {
		t.Fatalf("update: %+v %v", res, err)
	}
	if got := w.srv.requests[1].ETag; got != `"v1"` {
		t.Errorf("update sent ETag %q, want the stored one", got)
	}
	// A 304 for a list that has meanwhile expired still expires it, and
	// says so with vmcatcher's code: an unchanged server is no success.
	for run := 0; run < 2; run++ {
		res, err = w.workflow(25*time.Hour).Update(ctx, "https://site.example/list")
		if !errors.Is(err, ErrListExpired) || ExitCode(err) != 34 || !res.NotModified {
			t.Fatalf("run %d after expiry: %+v %v", run, res, err)
		}
		if want := store.ListExpired; run == 0 && res.Invalidated != want {
			t.Errorf("invalidated %v, want %v", res.Invalidated, want)
		}
	}
	if s := w.states(); s["a"] != 0 {
		t.Errorf("image state %d after expiry, want 0", s["a"])
	}
}

func TestUpdateRefusalKeepsValidators(t *testing.T) {
	w := newWF(t)
	ctx := context.Background()
	w.srv.body, w.srv.etag = w.signed("2", w.now.Add(-time.Hour), 24*time.Hour, "a"), `"v2"`
	w.subscribe(store.NewImagesRefuse)
	// a rollback under a new ETag is refused and its ETag not stored, so
	// the next run downloads it again and refuses it again
	w.srv.body, w.srv.etag = w.signed("1", w.now.Add(-30*time.Minute), 24*time.Hour, "a"), `"v1"`
	for i := 0; i < 2; i++ {
		_, err := w.workflow(0).Update(ctx, "4e186b44-2c64-40ea-97d5-e9e5c0bce059")
		if !errors.Is(err, ErrRollback) || ExitCode(err) != 17 {
			t.Fatalf("run %d: err %v (exit %d), want rollback 17", i, err, ExitCode(err))
		}
	}
	sub, _ := w.store.GetSubscription(ctx, "4e186b44-2c64-40ea-97d5-e9e5c0bce059")
	if sub.Validators.ETag != `"v2"` {
		t.Errorf("stored ETag %q, want the accepted list's", sub.Validators.ETag)
	}
}

func TestUpdateNewImagesAndHooks(t *testing.T) {
	tests := []struct {
		mode      store.UpdateMode
		wantCode  int
		wantState map[string]int
	}{
		{store.NewImagesRefuse, 32, map[string]int{"a": 2}},
		{store.NewImagesAccept, 0, map[string]int{"a": 2, "b": 2}},
		{store.NewImagesSubscribe, 0, map[string]int{"a": 3, "b": 3}}, // -s selects the first list's images too
	}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			w := newWF(t)
			w.srv.body = w.signed("1", w.now.Add(-time.Hour), 24*time.Hour, "a")
			w.subscribe(tt.mode)
			w.srv.body = w.signed("2", w.now.Add(-time.Minute), 24*time.Hour, "a", "b")
			res, err := w.workflow(0).Update(context.Background(), "https://site.example/list")
			if ExitCode(err) != tt.wantCode || res.Action != Accept {
				t.Fatalf("err %v (exit %d), action %v", err, ExitCode(err), res.Action)
			}
			if tt.wantCode == 32 && !errors.Is(err, ErrNewImageRefused) {
				t.Errorf("err %v does not wrap ErrNewImageRefused", err)
			}
			if len(w.events) != 1 || w.events[0].Type != events.SubscriptionImageNew || w.events[0].Image.Identifier != "b" ||
				w.events[0].ListIdentifier != "4e186b44-2c64-40ea-97d5-e9e5c0bce059" {
				t.Errorf("events %+v", w.events)
			}
			got := w.states()
			for k, v := range tt.wantState {
				if got[k] != v {
					t.Errorf("states %v, want %v", got, tt.wantState)
					break
				}
			}
			if len(got) != len(tt.wantState) {
				t.Errorf("states %v, want %v", got, tt.wantState)
			}
		})
	}
}

func TestReprocessCreatesRefusedImages(t *testing.T) {
	w := newWF(t)
	ctx := context.Background()
	w.srv.body, w.srv.etag = w.signed("1", w.now.Add(-time.Hour), 24*time.Hour, "a"), `"v1"`
	w.subscribe(store.NewImagesRefuse)
	w.srv.body, w.srv.etag = w.signed("2", w.now.Add(-time.Minute), 24*time.Hour, "a", "b"), `"v2"`
	if _, err := w.workflow(0).Update(ctx, "https://site.example/list"); ExitCode(err) != 32 {
		t.Fatalf("err %v, want 32", err)
	}
	// the operator follows the hint: accept mode, unchanged list
	mode := store.NewImagesAccept
	if _, err := w.store.UpdateSubscription(ctx, "https://site.example/list", store.SubscriptionUpdate{UpdateMode: &mode}); err != nil {
		t.Fatal(err)
	}
	wf := w.workflow(0)
	wf.Reprocess = true
	res, err := wf.Update(ctx, "https://site.example/list")
	if err != nil || res.Action != Accept || len(res.Accept.New) != 1 || res.Accept.New[0] != "b" {
		t.Fatalf("reprocess: %+v %v", res, err)
	}
	if got := w.srv.requests[len(w.srv.requests)-1].ETag; got != "" {
		t.Errorf("reprocess sent a conditional GET (ETag %q)", got)
	}
	if s := w.states(); s["b"] != 2 {
		t.Errorf("states %v", s)
	}
}

func TestUpdateDownloadFailureRechecks(t *testing.T) {
	w := newWF(t)
	w.srv.body = w.signed("1", w.now.Add(-time.Hour), 2*time.Hour, "a")
	w.subscribe(store.NewImagesRefuse)
	w.srv.err = &transport.FetchError{URL: "https://site.example/list", Err: errors.New("connection refused")}
	// still valid: the images stay
	res, err := w.workflow(0).Update(context.Background(), "https://site.example/list")
	if ExitCode(err) != 10 || res.Invalidated != 0 || w.states()["a"] != 2 {
		t.Fatalf("err %v, result %+v, states %v", err, res, w.states())
	}
	// the publisher is unreachable past the list's expiry: images go
	res, err = w.workflow(3*time.Hour).Update(context.Background(), "https://site.example/list")
	if ExitCode(err) != 10 || res.Invalidated != store.ListExpired || w.states()["a"] != 0 {
		t.Fatalf("err %v, result %+v, states %v", err, res, w.states())
	}
}

func TestCredentials(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte("site:pa:ss\n"), 0o600)
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("no colon"), 0o600)
	w := &Workflow{Getenv: func(k string) string {
		return map[string]string{"CREDS": "u:p", "EMPTY": ""}[k]
	}}
	tests := []struct {
		ref        string
		user, pass string
		wantErr    bool
	}{
		{"", "", "", false},
		{"file:" + good, "site", "pa:ss", false},
		{"file:" + bad, "", "", true},
		{"file:" + filepath.Join(dir, "missing"), "", "", true},
		{"env:CREDS", "u", "p", false},
		{"env:EMPTY", "", "", true},
		{"vault:x", "", "", true},
	}
	for _, tt := range tests {
		c, err := w.credentials(tt.ref)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: err %v", tt.ref, err)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrCredentials) || strings.Contains(err.Error(), "no colon") {
				t.Errorf("%s: err %v", tt.ref, err)
			}
			continue
		}
		if (c == nil) != (tt.user == "") || (c != nil && (c.User != tt.user || c.Password != tt.pass)) {
			t.Errorf("%s: got %+v", tt.ref, c)
		}
	}
}
