package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestCatalogRoundTripAndGuards(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	if _, err := s.LoadCatalog(ctx, "vcsp"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("load before save: %v, want ErrNotFound", err)
	}
	t0 := time.Date(2026, 11, 26, 1, 2, 0, 0, time.UTC)
	c := Catalog{Kind: "vcsp", ID: "urn:uuid:1", Created: t0, Version: 1, Name: "Library"}
	a := CatalogItem{Image: "img-a", ID: "urn:uuid:a", Created: t0, Version: 1, Name: "A", Type: "vcsp.iso", Folder: "img-a",
		Files: []CatalogFile{{Name: "a.iso", Size: 10, SHA512: "x", Etag: 1, Href: "d/a.iso"}}, Present: true}
	if err := s.SaveCatalog(ctx, c, []CatalogItem{a}); err != nil {
		t.Fatal(err)
	}
	got, err := s.LoadCatalog(ctx, "vcsp")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != c.ID || !got.Created.Equal(t0) || got.Version != 1 || got.WrittenVersion != 0 || len(got.Items) != 1 {
		t.Fatalf("loaded %+v", got)
	}
	if g := got.Items[0]; g.ID != a.ID || g.Files[0] != a.Files[0] || !g.Present || !g.Created.Equal(t0) {
		t.Fatalf("item %+v", g)
	}

	tests := []struct {
		name string
		c    Catalog
		it   []CatalogItem
		want error
	}{
		{"library id changed", Catalog{Kind: "vcsp", ID: "urn:uuid:2", Created: t0, Version: 2}, nil, ErrConflict},
		{"library created changed", Catalog{Kind: "vcsp", ID: "urn:uuid:1", Created: t0.Add(time.Minute), Version: 2}, nil, ErrConflict},
		{"library version down", Catalog{Kind: "vcsp", ID: "urn:uuid:1", Created: t0, Version: 0}, nil, ErrRollback},
		{"item id changed", c, []CatalogItem{{Image: "img-a", ID: "urn:uuid:other", Created: t0, Version: 2}}, ErrConflict},
		{"item version down", c, []CatalogItem{func() CatalogItem { x := a; x.Version = 0; return x }()}, ErrInvalid},
		{"empty kind", Catalog{ID: "urn:uuid:1", Created: t0}, nil, ErrInvalid},
	}
	for _, tc := range tests {
		if err := s.SaveCatalog(ctx, tc.c, tc.it); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// A refused save changed nothing.
	again, _ := s.LoadCatalog(ctx, "vcsp")
	if again.Version != 1 || again.Items[0].ID != a.ID {
		t.Fatalf("after refused saves: %+v", again)
	}
	// Item version down among valid items: the whole transaction is refused.
	a2 := a
	a2.Version = 3
	if err := s.SaveCatalog(ctx, Catalog{Kind: "vcsp", ID: "urn:uuid:1", Created: t0, Version: 3}, []CatalogItem{a2}); err != nil {
		t.Fatal(err)
	}
	a3 := a
	a3.Version = 2
	b := CatalogItem{Image: "img-b", ID: "urn:uuid:b", Created: t0, Version: 1, Present: true}
	if err := s.SaveCatalog(ctx, Catalog{Kind: "vcsp", ID: "urn:uuid:1", Created: t0, Version: 4}, []CatalogItem{b, a3}); !errors.Is(err, ErrRollback) {
		t.Fatalf("item rollback: %v", err)
	}
	again, _ = s.LoadCatalog(ctx, "vcsp")
	if again.Version != 3 || len(again.Items) != 1 {
		t.Fatalf("a refused save left %+v", again)
	}
	// The written mark only grows and never passes the version.
	for _, v := range []int64{2, 5, 1} {
		if err := s.MarkCatalogWritten(ctx, "vcsp", v); err != nil {
			t.Fatal(err)
		}
	}
	again, _ = s.LoadCatalog(ctx, "vcsp")
	if again.WrittenVersion != 2 {
		t.Fatalf("written version %d, want 2", again.WrittenVersion)
	}
}

func TestCountersAndAttempts(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	for i := 0; i < 3; i++ {
		if err := s.AddCounters(ctx, map[string]int64{CounterBytesIn: 100}, map[string]int64{GaugeCacheLastResult: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got[CounterBytesIn] != 300 || got[GaugeCacheLastResult] != 2 {
		t.Fatalf("counters %v", got)
	}
	if err := s.RecordAttempt(ctx, "nope", Attempt{At: time.Now()}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("attempt on a missing subscription: %v", err)
	}
	if _, err := s.CreateSubscription(ctx, Subscription{UUID: "sub-1", URL: "https://example.org/list", Authorised: true}); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	if err := s.RecordAttempt(ctx, "sub-1", Attempt{At: at, ExitCode: 10, Error: "download failed"}); err != nil {
		t.Fatal(err)
	}
	as, err := s.Attempts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a := as["sub-1"]; !a.At.Equal(at) || a.ExitCode != 10 || a.Error != "download failed" {
		t.Fatalf("attempt %+v", a)
	}
}
