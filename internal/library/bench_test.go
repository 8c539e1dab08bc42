package library

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/clr-suite/clr/internal/manifest/vcsp"
	"github.com/clr-suite/clr/internal/store"
)

// bigFixture publishes n images of three files each. With fifo, every
// version file is a named pipe: opening one for reading would block, so a
// run that finishes has provably not read any content.
func bigFixture(tb testing.TB, n int, fifo bool) (*store.Store, []Image, Options) {
	tb.Helper()
	root := tb.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(root, "clr.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	ids := 0
	opts := Options{Dir: filepath.Join(root, "lib"), Now: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC),
		NewID: func() (string, error) { ids++; return fmt.Sprintf("00000000-0000-4000-8000-%012d", ids), nil }}
	imgs := make([]Image, n)
	for i := range imgs {
		u := fmt.Sprintf("%08d-0000-4000-8000-000000000000", i)
		d32 := fmt.Sprintf("%032x", i)
		dir := filepath.Join(root, "v", u, d32)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		im := Image{UUID: u, SHA512: fmt.Sprintf("%0128x", i), Digest32: d32, Dir: dir, Title: fmt.Sprintf("template %d", i)}
		for _, name := range []string{"t.ovf", "t-disk1.vmdk", "t.mf"} {
			p := filepath.Join(dir, name)
			if fifo {
				if err := syscall.Mkfifo(p, 0o644); err != nil {
					tb.Fatal(err)
				}
			} else if err := os.WriteFile(p, nil, 0o644); err != nil {
				tb.Fatal(err)
			}
			im.Files = append(im.Files, File{Path: name, Size: int64(1 << 30), SHA512: fmt.Sprintf("%0128x", i)})
		}
		imgs[i] = im
	}
	return st, imgs, opts
}

// TestNoContentRead: a first run, a run without change and a run with one
// changed item over 1,000 items whose files are FIFOs: any read would
// block forever.
func TestNoContentRead(t *testing.T) {
	st, imgs, opts := bigFixture(t, 1000, true)
	done := make(chan error, 1)
	go func() {
		for i := 0; i < 3; i++ {
			if i == 2 {
				imgs[500].Files[1].SHA512 = fmt.Sprintf("%0128x", 999999)
			}
			res, err := Update(context.Background(), st, imgs, opts)
			if err != nil {
				done <- err
				return
			}
			if want := []int{1000, 0, 1}[i]; len(res.Added)+len(res.Updated) != want {
				done <- fmt.Errorf("run %d: %d items changed, want %d", i, len(res.Added)+len(res.Updated), want)
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Update blocked: it opened a template file")
	}
}

// BenchmarkRender1000 is the baseline: rendering the manifests in memory.
func BenchmarkRender1000(b *testing.B) {
	st, imgs, opts := bigFixture(b, 1000, false)
	if _, err := Update(context.Background(), st, imgs, opts); err != nil {
		b.Fatal(err)
	}
	c, err := st.LoadCatalog(context.Background(), Kind)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := render(c); err != nil {
			b.Fatal(err)
		}
	}
	_ = vcsp.LibFile
}

// BenchmarkUpdateNoChange1000: a regeneration after a cache run that
// changed nothing (the common cron case).
func BenchmarkUpdateNoChange1000(b *testing.B) {
	st, imgs, opts := bigFixture(b, 1000, true)
	if _, err := Update(context.Background(), st, imgs, opts); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := Update(context.Background(), st, imgs, opts)
		if err != nil || res.Written {
			b.Fatal(err, res.Written)
		}
	}
}

// BenchmarkUpdateOneChanged1000: one item of 1,000 has a new version.
func BenchmarkUpdateOneChanged1000(b *testing.B) {
	st, imgs, opts := bigFixture(b, 1000, true)
	if _, err := Update(context.Background(), st, imgs, opts); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		imgs[500].Files[1].SHA512 = fmt.Sprintf("%0128x", 1000000+i)
		res, err := Update(context.Background(), st, imgs, opts)
		if err != nil || len(res.Updated) != 1 {
			b.Fatal(err, res.Updated)
		}
	}
}
