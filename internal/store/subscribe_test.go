package store

import (
	"context"
	"errors"
	"testing"
)

func subscribeReq(uuid, url string) SubscribeRequest {
	return SubscribeRequest{
		Subscription: Subscription{UUID: uuid, URL: url, Authorised: true, UpdateMode: NewImagesRefuse, Updated: t0},
		NewEndorser:  &Endorser{UUID: "e1", Principals: []Principal{{SubjectDN: "/DC=org/CN=Signer", IssuerDN: "/DC=org/CN=CA"}}},
		List:         list("1", 0),
		Images:       []ImageInstance{img("a", "A"), img("b", "B")},
		Options:      AcceptOptions{NewImages: NewImagesAccept, CompareVersion: cmpVersion, Validators: &Validators{ETag: `"v1"`}},
	}
}

func TestSubscribeOneTransaction(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	sub, res, err := s.Subscribe(ctx, subscribeReq("sub", "file:///l"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.New) != 2 || sub.LatestList == nil || sub.Floor.Version != "1" || sub.UpdateMode != NewImagesRefuse {
		t.Fatalf("subscription %+v result %+v", sub, res)
	}
	if sub.Validators.ETag != `"v1"` {
		t.Errorf("validators %+v", sub.Validators)
	}
	ps, err := s.LinkedPrincipals(ctx, "sub")
	if err != nil || len(ps) != 1 || ps[0].Endorser != "e1" {
		t.Fatalf("linked %+v %v", ps, err)
	}

	// A second subscription whose auto-endorser exists already fails as
	// a whole: no subscription, no list, no image.
	req := subscribeReq("sub2", "file:///l2")
	if _, _, err := s.Subscribe(ctx, req); !errors.Is(err, ErrConflict) {
		t.Fatalf("err %v, want ErrConflict", err)
	}
	// Failing late (the link's endorser does not exist) rolls back the
	// subscription row created before it.
	req.NewEndorser, req.Endorser = nil, "nobody"
	if _, _, err := s.Subscribe(ctx, req); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err %v, want ErrNotFound", err)
	}
	for q, want := range map[string]int{
		"SELECT count(*) FROM subscriptions":     1,
		"SELECT count(*) FROM list_instances":    1,
		"SELECT count(*) FROM image_definitions": 2,
		"SELECT count(*) FROM endorsers":         1,
		"SELECT count(*) FROM links":             1,
	} {
		if n := count(t, s, q); n != want {
			t.Errorf("%s = %d, want %d", q, n, want)
		}
	}
	// With an existing endorser it links that one.
	req.Endorser = "e1"
	if _, _, err := s.Subscribe(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := s.SetValidators(ctx, "sub2", Validators{LastModified: "Mon, 02 Jan 2006 15:04:05 GMT"}); err != nil {
		t.Fatal(err)
	}
	got, _ := s.GetSubscription(ctx, "sub2")
	if got.Validators != (Validators{LastModified: "Mon, 02 Jan 2006 15:04:05 GMT"}) {
		t.Errorf("validators %+v", got.Validators)
	}
}
