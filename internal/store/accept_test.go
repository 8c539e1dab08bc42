package store

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestAcceptListModes(t *testing.T) {
	tests := []struct {
		mode         UpdateMode
		wantNew      []string
		wantSelected []string
		wantRefused  []string
		wantImages   map[string]int // uuid -> state
	}{
		{NewImagesRefuse, nil, nil, []string{"a", "b"}, map[string]int{}},
		{NewImagesAccept, []string{"a", "b"}, nil, nil, map[string]int{"a": 2, "b": 2}},
		{NewImagesSubscribe, []string{"a", "b"}, []string{"a", "b"}, nil, map[string]int{"a": 3, "b": 3}},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			ctx := context.Background()
			s, _ := openTemp(t)
			mustSub(t, s, "sub", tt.mode)
			res := mustAccept(t, s, "sub", list("1", 0), tt.mode, img("a", "A"), img("b", "B"))
			if !reflect.DeepEqual(res.New, tt.wantNew) || !reflect.DeepEqual(res.Selected, tt.wantSelected) || !reflect.DeepEqual(res.Refused, tt.wantRefused) {
				t.Errorf("result %+v", res)
			}
			imgs, err := s.ListImages(ctx, ImageFilter{})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			for _, im := range imgs {
				got[im.UUID] = im.State()
			}
			if !reflect.DeepEqual(got, tt.wantImages) {
				t.Errorf("states %v, want %v", got, tt.wantImages)
			}
			// The list is kept whatever happened to its images.
			if n := count(t, s, "SELECT count(*) FROM list_instances"); n != 1 {
				t.Errorf("%d lists stored", n)
			}
		})
	}
}

func TestAcceptListSequence(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	mustSub(t, s, "sub", NewImagesAccept)
	l1 := list("1", 0)
	r1 := mustAccept(t, s, "sub", l1, NewImagesAccept, img("a", "A"), img("b", "B"), img("c", "C"))
	if !reflect.DeepEqual(r1.New, []string{"a", "b", "c"}) || r1.Floor != (Floor{"1", l1.Created}) {
		t.Errorf("first list: %+v", r1)
	}
	sum := sha512.Sum512(l1.Raw)
	got, err := s.LatestList(ctx, "sub")
	if err != nil || !bytes.Equal(got.Raw, l1.Raw) || got.SHA512 != hex.EncodeToString(sum[:]) || got.ID != r1.ListID ||
		!got.Created.Equal(l1.Created) || !got.Imported.Equal(l1.Imported) || got.SignerDN != l1.SignerDN {
		t.Errorf("LatestList = %+v, %v", got, err)
	}

	// v2: a updated, b unchanged (metadata only), c dropped, d new.
	b2 := img("b", "B")
	b2.Title = "renamed"
	withFiles := img("d", "D")
	withFiles.Files = json.RawMessage(`[{"Path":"x.vmdk","Size":1,"SHA512":"00"}]`)
	withFiles.Extra = json.RawMessage(`{"ad:mpuri":"https://appdb.example.org/x"}`)
	withFiles.Created = t0
	withFiles.Expires = t0.Add(time.Hour)
	l2 := list("2", 1)
	r2 := mustAccept(t, s, "sub", l2, NewImagesAccept, img("a", "A2"), b2, withFiles)
	want := AcceptResult{ListID: r2.ListID, Floor: Floor{"2", l2.Created}, New: []string{"d"}, Updated: []string{"a"}, Unchanged: []string{"b"}, Dropped: []string{"c"}}
	if !reflect.DeepEqual(r2, want) {
		t.Errorf("second list:\n got %+v\nwant %+v", r2, want)
	}
	imgs, _ := s.ListImages(ctx, ImageFilter{})
	states := map[string]int{}
	for _, im := range imgs {
		states[im.UUID] = im.State()
	}
	if !reflect.DeepEqual(states, map[string]int{"a": 2, "b": 2, "c": 0, "d": 2}) {
		t.Errorf("states %v", states)
	}
	d, err := s.GetImage(ctx, ImageRef{UUID: "d"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Latest.ListID != r2.ListID || string(d.Latest.Files) != string(withFiles.Files) || string(d.Latest.Extra) != string(withFiles.Extra) ||
		!d.Latest.Created.Equal(t0) || !d.Latest.Expires.Equal(t0.Add(time.Hour)) || d.Latest.OSVersion != "9" || d.Latest.SHA512 != withFiles.SHA512 {
		t.Errorf("image d = %+v", d.Latest)
	}
	if b, _ := s.GetImage(ctx, ImageRef{UUID: "b"}); b.Latest.Title != "renamed" {
		t.Errorf("b's latest instance is not the new one: %+v", b.Latest)
	}

	// c comes back in v3: available again, reported unchanged, and as it
	// is described exactly as in v1 it keeps v1's instance.
	r3 := mustAccept(t, s, "sub", list("3", 2), NewImagesAccept, img("c", "C"))
	if !reflect.DeepEqual(r3.Unchanged, []string{"c"}) || !reflect.DeepEqual(r3.Dropped, []string{"a", "b", "d"}) {
		t.Errorf("third list: %+v", r3)
	}
	if c, _ := s.GetImage(ctx, ImageRef{UUID: "c"}); c.Latest.ListID != r1.ListID || c.State() != 2 {
		t.Errorf("c after v3: state %d, instance of list %d, want list %d", c.State(), c.Latest.ListID, r1.ListID)
	}
	// Instances: v1 a b c, v2 a (content) b (title) d, v3 nothing new.
	if n := count(t, s, "SELECT count(*) FROM image_instances"); n != 6 {
		t.Errorf("%d image instances, want 6", n)
	}

	sub, _ := s.GetSubscription(ctx, "sub")
	if sub.LatestList == nil || sub.LatestList.ID != r3.ListID || sub.LatestList.Raw != nil || sub.Floor.Version != "3" || !sub.Updated.Equal(list("3", 2).Imported) {
		t.Errorf("subscription after three lists: %+v", sub)
	}
	lists, err := s.Lists(ctx, "sub")
	if err != nil || len(lists) != 3 || lists[0].Version != "1" || lists[2].Version != "3" || lists[0].Raw != nil {
		t.Errorf("Lists = %+v, %v", lists, err)
	}
	full, err := s.GetList(ctx, lists[0].ID)
	if err != nil || !bytes.Equal(full.Raw, l1.Raw) || full.SubscriptionUUID != "sub" {
		t.Errorf("GetList = %+v, %v", full, err)
	}
}

// TestAcceptListFailureChangesNothing: every refused or failed AcceptList
// leaves every row as it was.
func TestAcceptListFailureChangesNothing(t *testing.T) {
	injected := errors.New("injected failure")
	tests := []struct {
		name   string
		list   ListInstance
		images []ImageInstance
		opts   AcceptOptions
		hook   func() error
		want   error
	}{
		{"lower version", list("4", 10), []ImageInstance{img("a", "new")}, opts(NewImagesSubscribe), nil, ErrRollback},
		{"older created", list("6", 2), []ImageInstance{img("a", "new")}, opts(NewImagesSubscribe), nil, ErrRollback},
		{"error after images", list("6", 10), []ImageInstance{img("a", "new"), img("z", "Z")}, opts(NewImagesSubscribe), func() error { return injected }, injected},
		{"cancelled mid-way", list("6", 10), []ImageInstance{img("a", "new")}, opts(NewImagesSubscribe), func() error { return context.Canceled }, context.Canceled},
		{"duplicate image", list("6", 10), []ImageInstance{img("a", "1"), img("a", "2")}, opts(NewImagesSubscribe), nil, ErrInvalid},
		{"bad files JSON", list("6", 10), []ImageInstance{func() ImageInstance { i := img("q", "Q"); i.Files = json.RawMessage("[1,"); return i }()}, opts(NewImagesSubscribe), nil, ErrInvalid},
		{"wrong SHA-512", func() ListInstance { l := list("6", 10); l.SHA512 = "00"; return l }(), nil, opts(NewImagesSubscribe), nil, ErrInvalid},
		{"no comparator", list("6", 10), nil, AcceptOptions{NewImages: NewImagesAccept}, nil, ErrInvalid},
		{"unknown subscription", list("6", 10), nil, opts(NewImagesAccept), nil, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := openTemp(t)
			mustSub(t, s, "sub", NewImagesAccept)
			mustAccept(t, s, "sub", list("5", 5), NewImagesAccept, img("a", "A"), img("b", "B"))
			if _, err := s.SelectImage(ctx, ImageRef{UUID: "a"}); err != nil {
				t.Fatal(err)
			}
			before := dump(t, s)
			s.acceptHook = tt.hook
			sub := "sub"
			if tt.want == ErrNotFound {
				sub = "other"
			}
			_, err := s.AcceptList(ctx, sub, tt.list, tt.images, tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("AcceptList: %v, want %v", err, tt.want)
			}
			if after := dump(t, s); after != before {
				t.Errorf("database changed:\nbefore\n%s\nafter\n%s", before, after)
			}
		})
	}
}

func TestFloor(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	mustSub(t, s, "sub", NewImagesAccept)
	mustAccept(t, s, "sub", list("10", 10), NewImagesAccept, img("a", "A"))

	steps := []struct {
		name  string
		list  ListInstance
		want  error
		floor Floor
	}{
		{"same version and date (the policy decides R5; the store only keeps the floor)", list("10", 10), nil, Floor{"10", list("10", 10).Created}},
		{"higher version, same date", list("11", 10), nil, Floor{"11", list("11", 10).Created}},
		{"lower version, newer date", list("9", 20), ErrRollback, Floor{"11", list("11", 10).Created}},
		{"higher version, older date", list("12", 9), ErrRollback, Floor{"11", list("11", 10).Created}},
		{"both higher", list("12", 11), nil, Floor{"12", list("12", 11).Created}},
	}
	for _, st := range steps {
		_, err := s.AcceptList(ctx, "sub", st.list, []ImageInstance{img("a", "A")}, opts(NewImagesAccept))
		if !errors.Is(err, st.want) {
			t.Errorf("%s: %v, want %v", st.name, err, st.want)
		}
		sub, _ := s.GetSubscription(ctx, "sub")
		if sub.Floor.Version != st.floor.Version || !sub.Floor.Created.Equal(st.floor.Created) {
			t.Errorf("%s: floor %+v, want %+v", st.name, sub.Floor, st.floor)
		}
	}

	// The floor survives expiry (R6) ...
	if _, err := s.MarkListExpired(ctx, "sub", ListExpired, t0.Add(100*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AcceptList(ctx, "sub", list("1", 0), nil, opts(NewImagesAccept)); !errors.Is(err, ErrRollback) {
		t.Errorf("rollback after expiry: %v", err)
	}
	// ... and only an explicit reset lowers it (R7).
	old, err := s.ResetFloor(ctx, "sub")
	if err != nil || old.Version != "12" {
		t.Fatalf("ResetFloor = %+v, %v", old, err)
	}
	if sub, _ := s.GetSubscription(ctx, "sub"); !sub.Floor.IsZero() {
		t.Errorf("floor after reset: %+v", sub.Floor)
	}
	res, err := s.AcceptList(ctx, "sub", list("1", 0), []ImageInstance{img("a", "A")}, opts(NewImagesAccept))
	if err != nil || res.Floor.Version != "1" {
		t.Errorf("after reset: %+v, %v", res, err)
	}
	if _, err := s.ResetFloor(ctx, "nothing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ResetFloor(nothing): %v", err)
	}
}

func TestMarkListExpired(t *testing.T) {
	for _, reason := range []ExpiryReason{ListExpired, SignerRevoked} {
		t.Run(reason.String(), func(t *testing.T) {
			ctx := context.Background()
			s, _ := openTemp(t)
			mustSub(t, s, "sub", NewImagesSubscribe)
			mustSub(t, s, "other", NewImagesSubscribe)
			mustAccept(t, s, "sub", list("1", 0), NewImagesSubscribe, img("a", "A"), img("b", "B"))
			mustAccept(t, s, "other", list("1", 0), NewImagesSubscribe, img("a", "A"))
			when := t0.Add(48 * time.Hour)

			gone, err := s.MarkListExpired(ctx, "sub", reason, when)
			if err != nil || !reflect.DeepEqual(gone, []string{"a", "b"}) {
				t.Fatalf("MarkListExpired = %v, %v", gone, err)
			}
			l, _ := s.LatestList(ctx, "sub")
			if l.Expired != (reason == ListExpired) || l.Revoked != (reason == SignerRevoked) || !l.InvalidatedAt.Equal(when) {
				t.Errorf("list after marking: %+v", l)
			}
			imgs, _ := s.ListImages(ctx, ImageFilter{})
			for _, im := range imgs {
				wantState := 1 // selected, no longer available
				if im.Subscription == "other" {
					wantState = 3
				}
				if im.State() != wantState {
					t.Errorf("%s/%s state %d, want %d", im.Subscription, im.UUID, im.State(), wantState)
				}
			}
			// Idempotent: nothing more to drop, the first time is kept.
			gone, err = s.MarkListExpired(ctx, "sub", reason, when.Add(time.Hour))
			if err != nil || len(gone) != 0 {
				t.Errorf("second MarkListExpired = %v, %v", gone, err)
			}
			if l, _ := s.LatestList(ctx, "sub"); !l.InvalidatedAt.Equal(when) {
				t.Errorf("invalidated moved to %v", l.InvalidatedAt)
			}
			// A new valid list brings them back.
			mustAccept(t, s, "sub", list("2", 1), NewImagesSubscribe, img("a", "A"), img("b", "B"))
			if imgs, _ := s.ListImages(ctx, ImageFilter{Subscription: "sub", AvailableOnly: true}); len(imgs) != 2 {
				t.Errorf("after a new list: %d available", len(imgs))
			}
			if _, err := s.MarkListExpired(ctx, "sub", ExpiryReason(9), when); !errors.Is(err, ErrInvalid) {
				t.Errorf("bad reason: %v", err)
			}
		})
	}
}
