package subscriber

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/clr-suite/clr/internal/imagelist"
	"github.com/clr-suite/clr/internal/smime"
	"github.com/clr-suite/clr/internal/testpki"
	"github.com/clr-suite/clr/internal/trust"
)

func TestVerify(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	f, err := testpki.NewFixture(now)
	if err != nil {
		t.Fatal(err)
	}
	store := loadTrust(t, f)
	signerDN, _ := trust.Oneline(f.Signer.Cert.RawSubject)
	caDN, _ := trust.Oneline(f.Signer.Cert.RawIssuer)
	list := func(mod func(*imagelist.List)) *imagelist.List {
		l := &imagelist.List{
			Created: now.Add(-time.Hour), Expires: now.Add(24 * time.Hour),
			Identifier: "4e186b44-2c64-40ea-97d5-e9e5c0bce059", Description: "d", Title: "t",
			Source: "s", Version: "1", URI: "https://example.org/list",
			Endorser: imagelist.Endorser{DN: signerDN, CA: caDN, Email: "e", Creator: "c"},
			Images:   []imagelist.Image{},
		}
		if mod != nil {
			mod(l)
		}
		return l
	}
	sign := func(l *imagelist.List, id *testpki.Identity) []byte {
		b, err := l.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		s, err := smime.Sign(b, id.Cert, id.Key, smime.SignOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	opts := VerifyOptions{Trust: store, Policy: trust.Policy{Time: now}}
	for _, tc := range []struct {
		name string
		raw  []byte
		opts func(*VerifyOptions)
		want error
	}{
		{name: "good", raw: sign(list(nil), f.Signer)},
		{name: "dn mismatch", raw: sign(list(func(l *imagelist.List) { l.Endorser.DN = "/CN=someone else" }), f.Signer), want: ErrDNMismatch},
		{name: "ca mismatch", raw: sign(list(func(l *imagelist.List) { l.Endorser.CA = "/CN=other CA" }), f.Signer), want: ErrDNMismatch},
		{name: "expired list", raw: sign(list(func(l *imagelist.List) { l.Expires = now.Add(-time.Second) }), f.Signer), want: ErrListExpired},
		{name: "created in future", raw: sign(list(func(l *imagelist.List) { l.Created = now.Add(ClockSkew + time.Second) }), f.Signer), want: ErrCreatedInFuture},
		{name: "clock skew tolerated", raw: sign(list(func(l *imagelist.List) { l.Created = now.Add(ClockSkew) }), f.Signer)},
		{name: "revoked signer", raw: sign(list(nil), f.Revoked), want: trust.ErrRevoked},
		{name: "not an image list", raw: mustSign(t, []byte(`{"a": 1}`), f.Signer), want: imagelist.ErrNotImageList},
		{name: "not json", raw: mustSign(t, []byte("hello"), f.Signer), want: imagelist.ErrNotJSON},
		{name: "garbage", raw: []byte("not smime"), want: smime.ErrMalformed},
		{name: "too large", raw: sign(list(nil), f.Signer), opts: func(o *VerifyOptions) { o.MaxSize = 100 }, want: imagelist.ErrTooLarge},
		{name: "content over the cap in a message under the raw limit", raw: sign(list(func(l *imagelist.List) { l.Description = strings.Repeat("x", 200<<10) }), f.Signer),
			opts: func(o *VerifyOptions) { o.MaxSize = 150 << 10 }, want: imagelist.ErrTooLarge},
		{name: "no trust store", raw: sign(list(nil), f.Signer), opts: func(o *VerifyOptions) { o.Trust = nil }, want: errAny},
		{name: "signature only skips chain and dates", raw: sign(list(func(l *imagelist.List) {
			l.Expires = now.Add(-time.Hour)
			l.Endorser.DN, _ = trust.Oneline(f.Expired.Cert.RawSubject)
		}), f.Expired), opts: func(o *VerifyOptions) { o.SignatureOnly = true; o.Trust = nil }},
		{name: "signature only still checks the endorser", raw: sign(list(nil), f.EC), opts: func(o *VerifyOptions) { o.SignatureOnly = true }, want: ErrDNMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := opts
			if tc.opts != nil {
				tc.opts(&o)
			}
			v, err := Verify(tc.raw, o)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want == errAny && err != nil:
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("error %v, want %v", err, tc.want)
			case tc.want == nil:
				if v.List == nil || v.SubjectDN == "" || !strings.Contains(string(v.Content), "hv:imagelist") {
					t.Fatalf("incomplete result %+v", v)
				}
				if o.SignatureOnly != (v.Chain == nil) {
					t.Fatalf("chain %v with signature-only %v", v.Chain, o.SignatureOnly)
				}
			}
		})
	}
}

var errAny = errors.New("any error")

func mustSign(t *testing.T, content []byte, id *testpki.Identity) []byte {
	t.Helper()
	s, err := smime.Sign(content, id.Cert, id.Key, smime.SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// loadTrust writes the fixture's CA and current CRL into a trust directory
// and loads it.
func loadTrust(t *testing.T, f *testpki.Fixture) *trust.Store {
	t.Helper()
	dir := t.TempDir()
	if err := testpki.WriteFile(dir, "ca.pem", f.CA.CertPEM()); err != nil {
		t.Fatal(err)
	}
	// the store reads CRLs from hashed names only; any 8 hex digits do
	if err := testpki.WriteFile(dir, "00000000.r0", testpki.CRLPEM(f.CRL)); err != nil {
		t.Fatal(err)
	}
	ts, err := trust.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}
