package store

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestImagesScopedPerSubscription: vmcatcher kept one global image UUID
// namespace, so a list could take over another list's image by reusing its
// dc:identifier. Here two subscriptions hold the same UUID independently.
func TestImagesScopedPerSubscription(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	mustSub(t, s, "honest", NewImagesAccept)
	mustSub(t, s, "hijacker", NewImagesAccept)
	honest := img("shared-uuid", "the real image")
	evil := img("shared-uuid", "something else")
	evil.URI = "https://evil.example.org/x"
	mustAccept(t, s, "honest", list("1", 0), NewImagesAccept, honest)
	res := mustAccept(t, s, "hijacker", list("1", 0), NewImagesAccept, evil)
	if len(res.New) != 1 {
		t.Fatalf("hijacker's list: %+v", res)
	}

	// Unscoped selectors are ambiguous and change nothing.
	for _, ref := range []ImageRef{{UUID: "shared-uuid"}} {
		if _, err := s.SelectImage(ctx, ref); !errors.Is(err, ErrAmbiguous) || !strings.Contains(err.Error(), "hijacker, honest") {
			t.Errorf("SelectImage(%+v): %v, want ErrAmbiguous naming both", ref, err)
		}
		if _, err := s.GetImage(ctx, ref); !errors.Is(err, ErrAmbiguous) {
			t.Errorf("GetImage(%+v): %v", ref, err)
		}
	}

	// Selecting in one subscription does not select in the other.
	got, err := s.SelectImage(ctx, ImageRef{Subscription: "honest", UUID: "shared-uuid"})
	if err != nil || !got.Selected || got.Subscription != "honest" || got.Latest.SHA512 != honest.SHA512 {
		t.Fatalf("SelectImage(honest) = %+v, %v", got, err)
	}
	other, err := s.GetImage(ctx, ImageRef{Subscription: "hijacker", UUID: "shared-uuid"})
	if err != nil || other.Selected || other.Latest.URI != evil.URI {
		t.Errorf("hijacker's image = %+v, %v", other, err)
	}

	// The hijacker's next list neither changes nor drops the honest image.
	mustAccept(t, s, "hijacker", list("2", 1), NewImagesAccept)
	h, _ := s.GetImage(ctx, ImageRef{Subscription: "honest", UUID: "shared-uuid"})
	if h.State() != 3 || h.Latest.URI != honest.URI {
		t.Errorf("honest image after the hijacker's update: %+v", h)
	}
	if hj, _ := s.GetImage(ctx, ImageRef{Subscription: "hijacker", UUID: "shared-uuid"}); hj.State() != 0 {
		t.Errorf("hijacker's image state %d, want 0 (dropped)", hj.State())
	}
	// By SHA-512 the honest image is unique.
	if got, err := s.GetImage(ctx, ImageRef{SHA512: strings.ToUpper(honest.SHA512)}); err != nil || got.Subscription != "honest" {
		t.Errorf("GetImage by SHA-512: %+v, %v", got, err)
	}
}

func TestImageSelectors(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	mustSub(t, s, "s1", NewImagesAccept)
	mustSub(t, s, "s2", NewImagesAccept)
	mustAccept(t, s, "s1", list("1", 0), NewImagesAccept, img("a", "A1"), img("b", "B"))
	mustAccept(t, s, "s1", list("2", 1), NewImagesAccept, img("a", "A2"), img("b", "B"))
	// s2's current image c has the content that s1's a had in version 1.
	mustAccept(t, s, "s2", list("1", 0), NewImagesAccept, img("c", "A1"))

	tests := []struct {
		name string
		ref  ImageRef
		sub  string
		uuid string
		err  error
	}{
		{"uuid", ImageRef{UUID: "a"}, "s1", "a", nil},
		{"uuid scoped by URL", ImageRef{Subscription: "https://example.org/s1/image.list", UUID: "b"}, "s1", "b", nil},
		{"current sha512 wins over history", ImageRef{SHA512: img("", "A1").SHA512}, "s2", "c", nil},
		{"historic sha512 within a subscription", ImageRef{Subscription: "s1", SHA512: img("", "A1").SHA512}, "s1", "a", nil},
		{"current sha512", ImageRef{SHA512: img("", "A2").SHA512}, "s1", "a", nil},
		{"unknown uuid", ImageRef{UUID: "zzz"}, "", "", ErrNotFound},
		{"uuid in the wrong subscription", ImageRef{Subscription: "s2", UUID: "a"}, "", "", ErrNotFound},
		{"unknown subscription", ImageRef{Subscription: "s9", UUID: "a"}, "", "", ErrNotFound},
		{"unknown sha512", ImageRef{SHA512: img("", "nope").SHA512}, "", "", ErrNotFound},
		{"no selector", ImageRef{}, "", "", ErrInvalid},
		{"two selectors", ImageRef{UUID: "a", SHA512: "00"}, "", "", ErrInvalid},
	}
	for _, tt := range tests {
		for _, op := range []struct {
			name string
			fn   func(context.Context, ImageRef) (Image, error)
			sel  bool
		}{{"get", s.GetImage, false}, {"select", s.SelectImage, true}, {"unselect", s.UnselectImage, false}} {
			got, err := op.fn(ctx, tt.ref)
			if !errors.Is(err, tt.err) || (err == nil && (got.Subscription != tt.sub || got.UUID != tt.uuid)) {
				t.Errorf("%s %s: %s/%s, %v; want %s/%s, %v", op.name, tt.name, got.Subscription, got.UUID, err, tt.sub, tt.uuid, tt.err)
			}
			if err == nil && op.name != "get" && got.Selected != op.sel {
				t.Errorf("%s %s: selected = %v", op.name, tt.name, got.Selected)
			}
		}
	}
}

func TestListImagesStateAndFilters(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	mustSub(t, s, "s1", NewImagesAccept)
	mustSub(t, s, "s2", NewImagesAccept)
	mustAccept(t, s, "s1", list("1", 0), NewImagesAccept, img("a", "A"), img("b", "B"), img("c", "C"))
	mustAccept(t, s, "s1", list("2", 1), NewImagesAccept, img("a", "A"), img("b", "B"))
	mustAccept(t, s, "s2", list("1", 0), NewImagesAccept, img("d", "D"))
	for _, ref := range []ImageRef{{UUID: "a"}, {UUID: "c"}} {
		if _, err := s.SelectImage(ctx, ref); err != nil {
			t.Fatal(err)
		}
	}
	// 0 known, 1 selected, 2 available, 3 selected and available.
	line := func(imgs []Image) string {
		var b strings.Builder
		for _, im := range imgs {
			b.WriteString(im.UUID + "\t" + string(rune('0'+im.State())) + "\t" + im.Subscription + "\n")
		}
		return b.String()
	}
	tests := []struct {
		f    ImageFilter
		want string
	}{
		{ImageFilter{}, "a\t3\ts1\nb\t2\ts1\nc\t1\ts1\nd\t2\ts2\n"},
		{ImageFilter{Subscription: "s2"}, "d\t2\ts2\n"},
		{ImageFilter{SelectedOnly: true}, "a\t3\ts1\nc\t1\ts1\n"},
		{ImageFilter{AvailableOnly: true}, "a\t3\ts1\nb\t2\ts1\nd\t2\ts2\n"},
		{ImageFilter{SelectedOnly: true, AvailableOnly: true}, "a\t3\ts1\n"},
	}
	for _, tt := range tests {
		imgs, err := s.ListImages(ctx, tt.f)
		if err != nil {
			t.Fatal(err)
		}
		if got := line(imgs); got != tt.want {
			t.Errorf("ListImages(%+v) =\n%s want\n%s", tt.f, got, tt.want)
		}
	}
	if _, err := s.ListImages(ctx, ImageFilter{Subscription: "s9"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown subscription: %v", err)
	}

	// An unauthorised subscription's images are not available.
	no := false
	if _, err := s.UpdateSubscription(ctx, "s1", SubscriptionUpdate{Authorised: &no}); err != nil {
		t.Fatal(err)
	}
	imgs, _ := s.ListImages(ctx, ImageFilter{Subscription: "s1"})
	if got := line(imgs); got != "a\t1\ts1\nb\t0\ts1\nc\t1\ts1\n" {
		t.Errorf("unauthorised:\n%s", got)
	}
}
