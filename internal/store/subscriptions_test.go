package store

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestSubscriptions(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	created, err := s.CreateSubscription(ctx, Subscription{
		UUID: "sub-1", URL: "https://lists.example.org/a/image.list", Description: "A", Authorised: true,
		UpdateMode: NewImagesSubscribe, CredentialRef: "env:LIST_A_CRED", Updated: t0,
	})
	if err != nil {
		t.Fatal(err)
	}
	if created.LatestList != nil || !created.Floor.IsZero() || !created.Updated.Equal(t0) {
		t.Errorf("created = %+v", created)
	}
	mustSub(t, s, "sub-2", NewImagesRefuse)

	bad := []struct {
		name string
		sub  Subscription
		want error
	}{
		{"same UUID", Subscription{UUID: "sub-1", URL: "https://other.example.org/x"}, ErrConflict},
		{"same URL", Subscription{UUID: "sub-3", URL: "https://lists.example.org/a/image.list"}, ErrConflict},
		{"empty UUID", Subscription{URL: "https://x.example.org/"}, ErrInvalid},
		{"empty URL", Subscription{UUID: "sub-4"}, ErrInvalid},
		{"mode 2", Subscription{UUID: "sub-5", URL: "https://x.example.org/5", UpdateMode: 2}, ErrInvalid},
		{"secret in URL", Subscription{UUID: "sub-6", URL: "https://token:x-oauth-basic@x.example.org/6"}, ErrInvalid},
		{"user in URL", Subscription{UUID: "sub-7", URL: "https://token@x.example.org/7"}, ErrInvalid},
		{"secret as reference", Subscription{UUID: "sub-8", URL: "https://x.example.org/8", CredentialRef: "user:hunter2"}, ErrInvalid},
	}
	for _, tt := range bad {
		_, err := s.CreateSubscription(ctx, tt.sub)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
		if err != nil && (strings.Contains(err.Error(), "x-oauth-basic") || strings.Contains(err.Error(), "token") || strings.Contains(err.Error(), "hunter2")) {
			t.Errorf("%s: error %q repeats a credential", tt.name, err)
		}
	}

	for _, key := range []string{"sub-1", "https://lists.example.org/a/image.list"} {
		got, err := s.GetSubscription(ctx, key)
		if err != nil || got.UUID != "sub-1" || got.CredentialRef != "env:LIST_A_CRED" || got.UpdateMode != NewImagesSubscribe || !got.Authorised {
			t.Errorf("GetSubscription(%q) = %+v, %v", key, got, err)
		}
	}
	if _, err := s.GetSubscription(ctx, "nothing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetSubscription(nothing): %v", err)
	}

	desc, mode, no, ref := "B", NewImagesAccept, false, ""
	got, err := s.UpdateSubscription(ctx, "sub-2", SubscriptionUpdate{Description: &desc, UpdateMode: &mode, Authorised: &no, CredentialRef: &ref})
	if err != nil || got.Description != "B" || got.UpdateMode != NewImagesAccept || got.Authorised {
		t.Errorf("UpdateSubscription = %+v, %v", got, err)
	}
	badMode := UpdateMode(7)
	if _, err := s.UpdateSubscription(ctx, "sub-2", SubscriptionUpdate{UpdateMode: &badMode}); !errors.Is(err, ErrInvalid) {
		t.Errorf("mode 7: %v", err)
	}

	all, err := s.ListSubscriptions(ctx)
	if err != nil || len(all) != 2 || all[0].UUID != "sub-1" || all[1].UUID != "sub-2" {
		t.Errorf("ListSubscriptions = %+v, %v", all, err)
	}
}

func TestDeleteSubscriptionCascades(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	if err := s.CreateEndorser(ctx, Endorser{UUID: "e", Principals: []Principal{alice}}); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"sub-1", "sub-2"} {
		mustSub(t, s, sub, NewImagesAccept)
		if err := s.Link(ctx, "e", sub); err != nil {
			t.Fatal(err)
		}
		mustAccept(t, s, sub, list("1", 0), NewImagesAccept, img("i1", "a"), img("i2", "b"))
		mustAccept(t, s, sub, list("2", 1), NewImagesAccept, img("i1", "a2"), img("i3", "c"))
	}
	if _, err := s.SelectImage(ctx, ImageRef{Subscription: "sub-1", UUID: "i1"}); err != nil {
		t.Fatal(err)
	}
	before := count(t, s, "SELECT count(*) FROM image_instances")

	gone, err := s.DeleteSubscription(ctx, "sub-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(gone) != 3 || gone[0].UUID != "i1" || !gone[0].Selected || gone[0].Subscription != "sub-1" {
		t.Errorf("DeleteSubscription returned %+v", gone)
	}
	for _, q := range []string{
		"SELECT count(*) FROM subscriptions WHERE identifier = 'sub-1'",
		"SELECT count(*) FROM links WHERE subscription_id NOT IN (SELECT id FROM subscriptions)",
		"SELECT count(*) FROM list_instances WHERE subscription_id NOT IN (SELECT id FROM subscriptions)",
		"SELECT count(*) FROM image_definitions WHERE subscription_id NOT IN (SELECT id FROM subscriptions)",
		"SELECT count(*) FROM image_instances WHERE definition_id NOT IN (SELECT id FROM image_definitions)",
	} {
		if n := count(t, s, q); n != 0 {
			t.Errorf("%s = %d", q, n)
		}
	}
	if n := count(t, s, "SELECT count(*) FROM image_instances"); n != before/2 {
		t.Errorf("%d image instances left, want %d (sub-2's)", n, before/2)
	}
	// sub-2 is intact.
	imgs, err := s.ListImages(ctx, ImageFilter{Subscription: "sub-2"})
	if err != nil || len(imgs) != 3 {
		t.Errorf("sub-2 images: %v, %v", imgs, err)
	}
	if lp, _ := s.LinkedPrincipals(ctx, "sub-2"); len(lp) != 1 {
		t.Errorf("sub-2 links: %v", lp)
	}
	if _, err := s.DeleteSubscription(ctx, "sub-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	var fkErrors int
	s.db.Raw("SELECT count(*) FROM pragma_foreign_key_check").Scan(&fkErrors)
	if fkErrors != 0 {
		t.Errorf("foreign_key_check: %d violations", fkErrors)
	}
}
