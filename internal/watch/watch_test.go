package watch

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

type recorder struct {
	mu   sync.Mutex
	runs []string // reason:size of big.img at the moment the job looked
	dir  string
}

func (r *recorder) job(hold time.Duration) Job {
	return func(ctx context.Context, reason string, stable func() bool) error {
		var size int64 = -1
		if fi, err := os.Stat(filepath.Join(r.dir, "big.img")); err == nil {
			size = fi.Size()
		}
		time.Sleep(hold) // "hashing"
		if !stable() {
			r.add("retry")
			return ErrRetry
		}
		r.add(reason + ":" + itoa(size))
		return nil
	}
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs = append(r.runs, s)
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.runs...)
}

func itoa(n int64) string { return fmtInt(n) }

// fmtInt formats n ("-" for a missing file).
func fmtInt(n int64) string {
	if n < 0 {
		return "-"
	}
	b := []byte{}
	if n == 0 {
		return "0"
	}
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestSlowCopySettles: a file written in chunks with pauses shorter than
// the settle time is seen by the job only once it is complete.
func TestSlowCopySettles(t *testing.T) {
	dir := t.TempDir()
	r := &recorder{dir: dir}
	w := &Watcher{Root: dir, Settle: 700 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, r.job(0)) }()
	waitFor(t, "the start run", func() bool { return len(r.get()) == 1 })

	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "big.img"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for i := 0; i < 20; i++ { // 20 chunks, 100 ms apart: 2 s of copying
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.Close()
	want := "change:" + fmtInt(20*64<<10)
	waitFor(t, "the settled run", func() bool {
		runs := r.get()
		return len(runs) >= 2 && runs[len(runs)-1] == want
	})
	for _, run := range r.get()[1:] {
		if run != want {
			t.Fatalf("a run saw a partial file: %v", r.get())
		}
	}
	// a file in a folder created after the start is watched too
	if err := os.WriteFile(filepath.Join(dir, "sub", "late.img"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	n := len(r.get())
	waitFor(t, "a run for the new folder's file", func() bool { return len(r.get()) > n })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestChangeDuringRunIsRetried: a run during which the library changed is
// discarded and repeated after the next quiet period.
func TestChangeDuringRunIsRetried(t *testing.T) {
	dir := t.TempDir()
	r := &recorder{dir: dir}
	w := &Watcher{Root: dir, Settle: 200 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx, r.job(600*time.Millisecond))
	time.Sleep(100 * time.Millisecond) // inside the start run's "hashing"
	if err := os.WriteFile(filepath.Join(dir, "big.img"), []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the retried run", func() bool {
		runs := r.get()
		return len(runs) >= 2 && runs[len(runs)-1] == "start:3"
	})
	if runs := r.get(); runs[0] != "retry" {
		t.Fatalf("runs %v: the run that saw the change was not discarded", runs)
	}
}

// TestRootReplaced: the library folder swapped for a new one is watched
// again and counts as a change.
func TestRootReplaced(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "lib")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &recorder{dir: dir}
	w := &Watcher{Root: dir, Settle: 200 * time.Millisecond, Poll: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx, r.job(0))
	waitFor(t, "the start run", func() bool { return len(r.get()) == 1 })
	next := filepath.Join(base, "lib.new")
	if err := os.Mkdir(next, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(next, "big.img"), []byte("12345"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir, filepath.Join(base, "lib.old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, dir); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a run on the new folder", func() bool {
		runs := r.get()
		return runs[len(runs)-1] == "change:5"
	})
	// and changes inside the new folder are seen
	if err := os.WriteFile(filepath.Join(dir, "big.img"), []byte("1234567"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a run after a change in the new folder", func() bool {
		runs := r.get()
		return runs[len(runs)-1] == "change:7"
	})
}

// TestTick runs the job without changes (list renewal).
func TestTick(t *testing.T) {
	dir := t.TempDir()
	r := &recorder{dir: dir}
	w := &Watcher{Root: dir, Settle: time.Hour, Tick: 100 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx, r.job(0))
	waitFor(t, "two ticks", func() bool { return len(r.get()) >= 3 })
	if runs := r.get(); runs[1] != "tick:-" {
		t.Fatalf("runs %v", runs)
	}
}
