package store

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

var (
	alice   = Principal{SubjectDN: "/DC=org/DC=example/CN=Alice", IssuerDN: "/DC=org/CN=Example CA"}
	aliceV2 = Principal{SubjectDN: "/DC=org/DC=example/CN=Alice", IssuerDN: "/DC=org/CN=Example CA 2"}
	bob     = Principal{SubjectDN: "/DC=org/DC=example/CN=Bob", IssuerDN: "/DC=org/CN=Example CA"}
)

func TestEndorsers(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	if err := s.CreateEndorser(ctx, Endorser{UUID: "e-alice", Principals: []Principal{alice}}); err != nil {
		t.Fatal(err)
	}
	// Same subject, other issuer: a second principal of the same endorser.
	if err := s.AddPrincipal(ctx, "e-alice", aliceV2); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateEndorser(ctx, Endorser{UUID: "e-bob", Principals: []Principal{{SubjectDN: " " + bob.SubjectDN + "\n", IssuerDN: bob.IssuerDN}}}); err != nil {
		t.Fatal(err)
	}

	errs := []struct {
		name string
		err  error
		want error
	}{
		{"duplicate identifier", s.CreateEndorser(ctx, Endorser{UUID: "e-alice", Principals: []Principal{{SubjectDN: "/CN=x", IssuerDN: "/CN=y"}}}), ErrConflict},
		{"pair taken by another endorser", s.CreateEndorser(ctx, Endorser{UUID: "e-mallory", Principals: []Principal{alice}}), ErrConflict},
		{"pair added twice", s.AddPrincipal(ctx, "e-bob", alice), ErrConflict},
		{"empty identifier", s.CreateEndorser(ctx, Endorser{UUID: " ", Principals: []Principal{{SubjectDN: "/CN=x", IssuerDN: "/CN=y"}}}), ErrInvalid},
		{"no principal", s.CreateEndorser(ctx, Endorser{UUID: "e-none"}), ErrInvalid},
		{"empty issuer", s.CreateEndorser(ctx, Endorser{UUID: "e-half", Principals: []Principal{{SubjectDN: "/CN=x"}}}), ErrInvalid},
		{"add to unknown", s.AddPrincipal(ctx, "nobody", Principal{SubjectDN: "/CN=x", IssuerDN: "/CN=y"}), ErrNotFound},
		{"remove unknown principal", s.RemovePrincipal(ctx, "e-bob", alice), ErrNotFound},
		{"delete unknown", s.DeleteEndorser(ctx, "nobody"), ErrNotFound},
	}
	for _, e := range errs {
		if !errors.Is(e.err, e.want) {
			t.Errorf("%s: %v, want %v", e.name, e.err, e.want)
		}
	}
	// A failed create left nothing behind.
	if _, err := s.GetEndorser(ctx, "e-mallory"); !errors.Is(err, ErrNotFound) {
		t.Errorf("e-mallory after failed create: %v", err)
	}

	all, err := s.ListEndorsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []Endorser{{UUID: "e-alice", Principals: []Principal{alice, aliceV2}}, {UUID: "e-bob", Principals: []Principal{bob}}}
	if !reflect.DeepEqual(all, want) {
		t.Errorf("ListEndorsers = %+v, want %+v", all, want)
	}
	for _, tt := range []struct {
		p    Principal
		want string
	}{{alice, "e-alice"}, {aliceV2, "e-alice"}, {bob, "e-bob"}} {
		e, err := s.FindEndorserByPrincipal(ctx, tt.p.SubjectDN, tt.p.IssuerDN)
		if err != nil || e.UUID != tt.want {
			t.Errorf("FindEndorserByPrincipal(%v) = %v, %v; want %s", tt.p, e.UUID, err, tt.want)
		}
	}
	// Subject alone is not enough: the issuer must match too.
	if _, err := s.FindEndorserByPrincipal(ctx, bob.SubjectDN, aliceV2.IssuerDN); !errors.Is(err, ErrNotFound) {
		t.Errorf("other issuer: %v", err)
	}

	if err := s.RemovePrincipal(ctx, "e-alice", aliceV2); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.GetEndorser(ctx, "e-alice"); !reflect.DeepEqual(e.Principals, []Principal{alice}) {
		t.Errorf("after remove: %+v", e)
	}
}

func TestLinks(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	for _, e := range []Endorser{{UUID: "e-alice", Principals: []Principal{alice, aliceV2}}, {UUID: "e-bob", Principals: []Principal{bob}}} {
		if err := s.CreateEndorser(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	sub1 := mustSub(t, s, "sub-1", NewImagesAccept)
	mustSub(t, s, "sub-2", NewImagesAccept)

	if err := s.Link(ctx, "e-alice", "sub-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Link(ctx, "e-bob", sub1.URL); err != nil { // by URL
		t.Fatal(err)
	}
	if err := s.Link(ctx, "e-alice", "sub-2"); err != nil {
		t.Fatal(err)
	}
	for _, e := range []struct {
		name string
		err  error
		want error
	}{
		{"link twice", s.Link(ctx, "e-alice", "sub-1"), ErrConflict},
		{"unknown endorser", s.Link(ctx, "nobody", "sub-1"), ErrNotFound},
		{"unknown subscription", s.Link(ctx, "e-alice", "nothing"), ErrNotFound},
		{"unlink missing", s.Unlink(ctx, "e-bob", "sub-2"), ErrNotFound},
	} {
		if !errors.Is(e.err, e.want) {
			t.Errorf("%s: %v, want %v", e.name, e.err, e.want)
		}
	}

	links, err := s.Links(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	want := []Link{{"e-alice", "sub-1", true}, {"e-alice", "sub-2", true}, {"e-bob", "sub-1", true}}
	if !reflect.DeepEqual(links, want) {
		t.Errorf("Links = %v, want %v", links, want)
	}
	if l, _ := s.Links(ctx, "e-bob", ""); len(l) != 1 {
		t.Errorf("Links(e-bob) = %v", l)
	}
	if l, _ := s.Links(ctx, "", "sub-2"); len(l) != 1 || l[0].Endorser != "e-alice" {
		t.Errorf("Links(sub-2) = %v", l)
	}

	lp, err := s.LinkedPrincipals(ctx, "sub-1")
	if err != nil {
		t.Fatal(err)
	}
	wantLP := []LinkedPrincipal{{"e-alice", alice}, {"e-alice", aliceV2}, {"e-bob", bob}}
	if !reflect.DeepEqual(lp, wantLP) {
		t.Errorf("LinkedPrincipals(sub-1) = %v, want %v", lp, wantLP)
	}
	if lp, _ := s.LinkedPrincipals(ctx, "sub-2"); len(lp) != 2 {
		t.Errorf("LinkedPrincipals(sub-2) = %v", lp)
	}

	if err := s.Unlink(ctx, "e-bob", "sub-1"); err != nil {
		t.Fatal(err)
	}
	// Deleting an endorser removes its links and principals.
	if err := s.DeleteEndorser(ctx, "e-alice"); err != nil {
		t.Fatal(err)
	}
	if lp, _ := s.LinkedPrincipals(ctx, "sub-1"); len(lp) != 0 {
		t.Errorf("after delete: %v", lp)
	}
	if n := count(t, s, "SELECT count(*) FROM principals") + count(t, s, "SELECT count(*) FROM links"); n != 1 {
		t.Errorf("%d principal/link rows left, want bob's principal only", n)
	}
}
