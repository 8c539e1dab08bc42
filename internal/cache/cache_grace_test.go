package cache

import (
	"context"
	"testing"
	"time"
)

func TestExtendGrace(t *testing.T) {
	dir := t.TempDir()
	c := &Cache{Dir: dir, PartialDir: dir + "/.clr/partial", ExpiredDir: dir + "/.clr/expired"}
	t0 := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	unlock, err := c.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	st := c.loadState()
	st.Retired = []retired{
		{UUID: "a", D32: "old", Since: t0.Add(-time.Hour)}, // an earlier run
		{UUID: "b", D32: "this", Since: t0},                // this run
	}
	if err := c.saveState(st); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(3 * time.Hour)
	if err := c.ExtendGrace(context.Background(), t0, at); err != nil {
		t.Fatal(err)
	}
	got := c.loadState().Retired
	if !got[0].Since.Equal(t0.Add(-time.Hour)) || !got[1].Since.Equal(at) {
		t.Fatalf("retired after ExtendGrace: %+v", got)
	}
}
