package schedule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a manual clock. Every After call is handed to the test on
// calls, in order, so the test knows the loop is blocked and can fire it.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	calls chan *timer
}

type timer struct {
	d  time.Duration
	at time.Time
	ch chan time.Time
}

func newClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, calls: make(chan *timer, 1<<16)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	tm := &timer{d: d, at: c.now.Add(d), ch: make(chan time.Time, 1)}
	c.mu.Unlock()
	c.calls <- tm
	return tm.ch
}

// Advance moves the clock forward without firing anything (time spent in
// a Run, or a wall-clock step).
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// next returns the loop's next timer (the loop is then blocked on it).
func (c *fakeClock) next(t *testing.T) *timer {
	t.Helper()
	select {
	case tm := <-c.calls:
		return tm
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting for the loop to wait")
		return nil
	}
}

// fire sets the clock to the timer's deadline (if later) and fires it.
func (c *fakeClock) fire(tm *timer) {
	c.mu.Lock()
	if tm.at.After(c.now) {
		c.now = tm.at
	}
	now := c.now
	c.mu.Unlock()
	tm.ch <- now
}

// noTimer checks that the loop has not asked for a timer.
func (c *fakeClock) noTimer(t *testing.T) {
	t.Helper()
	select {
	case tm := <-c.calls:
		t.Fatalf("unexpected timer for %v", tm.d)
	default:
	}
}

type runRec struct {
	at     time.Time
	reason string
}

// recorder is a Run that records its calls and can be given a body.
type recorder struct {
	clock *fakeClock
	mu    sync.Mutex
	runs  []runRec
	body  func(ctx context.Context, c *fakeClock, n int, reason string) error // n counts from 1
}

func (r *recorder) Run(ctx context.Context, reason string) error {
	r.mu.Lock()
	r.runs = append(r.runs, runRec{r.clock.Now(), reason})
	n := len(r.runs)
	body := r.body
	r.mu.Unlock()
	if body != nil {
		return body(ctx, r.clock, n, reason)
	}
	return nil
}

func (r *recorder) get() []runRec {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]runRec(nil), r.runs...)
}

// harness starts l with the fake clock and recorder wired in; stop cancels
// and returns Start's result.
type harness struct {
	clock  *fakeClock
	rec    *recorder
	loop   *Loop
	cancel context.CancelFunc
	done   chan error
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func start(t *testing.T, l *Loop, now time.Time) *harness {
	t.Helper()
	return startWith(t, l, now, nil)
}

// startWith is start with a body for the recording Run.
func startWith(t *testing.T, l *Loop, now time.Time, body func(ctx context.Context, c *fakeClock, n int, reason string) error) *harness {
	t.Helper()
	h := &harness{clock: newClock(now), loop: l, done: make(chan error, 1), logs: &syncBuffer{}}
	h.rec = &recorder{clock: h.clock, body: body}
	l.Now = h.clock.Now
	l.After = h.clock.After
	if l.Run == nil {
		l.Run = h.rec.Run
	}
	l.Logger = slog.New(slog.NewJSONHandler(h.logs, nil))
	ctx, cancel := context.WithCancel(t.Context())
	h.cancel = cancel
	go func() { h.done <- l.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(5 * time.Second):
			t.Error("loop did not stop")
		}
	})
	return h
}

// stop cancels the context and waits for Start to return.
func (h *harness) stop(t *testing.T) error {
	t.Helper()
	h.cancel()
	select {
	case err := <-h.done:
		h.done <- err // for the cleanup
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Start did not return after cancel")
		return nil
	}
}

// fireUntil fires timers until the recorder has n runs, at most limit
// timers; it returns the timer the loop waits on afterwards.
func (h *harness) fireUntil(t *testing.T, n, limit int) *timer {
	t.Helper()
	for range limit {
		tm := h.clock.next(t)
		if len(h.rec.get()) >= n {
			return tm
		}
		h.clock.fire(tm)
	}
	t.Fatalf("only %d runs after %d timers, want %d", len(h.rec.get()), limit, n)
	return nil
}

func checkRuns(t *testing.T, got []runRec, want ...runRec) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d runs %v, want %d %v", len(got), got, len(want), want)
	}
	for i := range want {
		if !got[i].at.Equal(want[i].at) || got[i].reason != want[i].reason {
			t.Errorf("run %d = %s %q, want %s %q", i, got[i].at.Format(time.RFC3339), got[i].reason, want[i].at.Format(time.RFC3339), want[i].reason)
		}
	}
}

var t0 = time.Date(2024, 3, 20, 12, 0, 0, 0, time.UTC) // a Wednesday

func TestLoopRunAtStart(t *testing.T) {
	berlin := mustLoc(t, "Europe/Berlin")
	l := &Loop{Schedule: mustParse(t, "0 21 * * 5", berlin), RunAtStart: true}
	h := start(t, l, t0)
	tm := h.clock.next(t) // first run is done before the loop waits
	checkRuns(t, h.rec.get(), runRec{t0, ReasonStart})
	if want := at(t, berlin, "2024-03-22 21:00").Sub(t0); tm.d > maxWait || tm.d <= 0 || want <= maxWait {
		t.Fatalf("first wait %v, want a slice of at most %v towards %v", tm.d, maxWait, want)
	}
	if err := h.stop(t); err != nil {
		t.Fatalf("Start = %v, want nil", err)
	}
}

func TestLoopNoRunAtStart(t *testing.T) {
	l := &Loop{Schedule: mustParse(t, "*/5 * * * *", nil)}
	h := start(t, l, t0)
	tm := h.clock.next(t)
	if len(h.rec.get()) != 0 || tm.d != 5*time.Minute {
		t.Fatalf("runs %v, wait %v; want no run and a 5m wait", h.rec.get(), tm.d)
	}
	h.clock.fire(tm)
	h.clock.next(t)
	checkRuns(t, h.rec.get(), runRec{t0.Add(5 * time.Minute), ReasonSchedule})
}

// TestLoopFollowsSchedule runs content-library-rsync's default schedule in
// Berlin for three weeks across the spring-forward weekend.
func TestLoopFollowsSchedule(t *testing.T) {
	berlin := mustLoc(t, "Europe/Berlin")
	l := &Loop{Schedule: mustParse(t, "0 21 * * 5", berlin), RunAtStart: true}
	h := start(t, l, t0)
	h.fireUntil(t, 4, 4*7*24*6+10)
	checkRuns(t, h.rec.get(),
		runRec{t0, ReasonStart},
		runRec{at(t, berlin, "2024-03-22 21:00"), ReasonSchedule},
		runRec{at(t, berlin, "2024-03-29 21:00"), ReasonSchedule},
		runRec{at(t, time.UTC, "2024-04-05 19:00"), ReasonSchedule}, // 21:00 CEST
	)
	if !strings.Contains(h.logs.String(), `"msg":"next run"`) {
		t.Error("next run not logged")
	}
}

func TestLoopLogsNextRun(t *testing.T) {
	berlin := mustLoc(t, "Europe/Berlin")
	l := &Loop{Schedule: mustParse(t, "0 21 * * 5", berlin), RunAtStart: true, Splay: time.Hour}
	h := start(t, l, t0)
	h.clock.next(t)
	var found bool
	for line := range strings.SplitSeq(strings.TrimSpace(h.logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec["msg"] != "next run" {
			continue
		}
		found = true
		if rec["at"] != "2024-03-22T21:00:00+01:00" || rec["utc"] != "2024-03-22T20:00:00Z" || rec["splay_max"] != "1h0m0s" {
			t.Errorf("next run record %v", rec)
		}
	}
	if !found {
		t.Fatalf("no next run record in\n%s", h.logs.String())
	}
}

func TestLoopSplay(t *testing.T) {
	for _, tt := range []struct {
		name  string
		max   time.Duration
		rnd   func(int64) int64
		delay time.Duration
	}{
		{"top of a day", 86400 * time.Second, func(n int64) int64 { return n - 1 }, 86400 * time.Second},
		{"beyond busybox", 86400 * time.Second, func(int64) int64 { return int64(40000 * time.Second) }, 40000 * time.Second},
		{"zero draw", 6 * time.Hour, func(int64) int64 { return 0 }, 0},
		{"default max", 21600 * time.Second, func(n int64) int64 { return n / 2 }, 10800 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var rndCalls atomic.Int32
			l := &Loop{
				Schedule: mustParse(t, "0 21 * * 5", nil),
				Splay:    tt.max,
				Rand:     func(n int64) int64 { rndCalls.Add(1); return tt.rnd(n) },
			}
			h := start(t, l, t0)
			h.fireUntil(t, 2, 3*7*24*6+10)
			tick := at(t, time.UTC, "2024-03-22 21:00")
			checkRuns(t, h.rec.get(),
				runRec{tick.Add(tt.delay), ReasonSchedule},
				runRec{tick.Add(7 * 24 * time.Hour).Add(tt.delay), ReasonSchedule},
			)
			if n := rndCalls.Load(); n != 2 {
				t.Errorf("Rand called %d times, want once per scheduled run", n)
			}
		})
	}
}

// TestLoopOverrunCoalesces: a run that overruns several ticks is followed
// by a single run, then the schedule resumes.
func TestLoopOverrunCoalesces(t *testing.T) {
	l := &Loop{Schedule: mustParse(t, "@hourly", nil), RunAtStart: true}
	h := startWith(t, l, t0, func(_ context.Context, c *fakeClock, n int, _ string) error {
		if n == 1 {
			c.Advance(3*time.Hour + 30*time.Minute) // misses 13:00, 14:00, 15:00
		}
		return nil
	})
	tm := h.clock.next(t) // the start run and the coalesced run happen without a wait
	checkRuns(t, h.rec.get(),
		runRec{t0, ReasonStart},
		runRec{t0.Add(3*time.Hour + 30*time.Minute), ReasonSchedule},
	)
	for len(h.rec.get()) < 4 { // then the schedule resumes: 16:00, 17:00
		h.clock.fire(tm)
		tm = h.clock.next(t)
	}
	checkRuns(t, h.rec.get()[2:],
		runRec{t0.Add(4 * time.Hour), ReasonSchedule},
		runRec{t0.Add(5 * time.Hour), ReasonSchedule},
	)

	if !strings.Contains(h.logs.String(), "overran") {
		t.Error("overrun not logged")
	}
}

// TestLoopOverrunWithSplay: the coalesced run is a scheduled run and waits
// its splay too.
func TestLoopOverrunWithSplay(t *testing.T) {
	l := &Loop{Schedule: mustParse(t, "@hourly", nil), RunAtStart: true, Splay: time.Minute, Rand: func(n int64) int64 { return n - 1 }}
	h := startWith(t, l, t0, func(_ context.Context, c *fakeClock, n int, _ string) error {
		if n == 1 {
			c.Advance(90 * time.Minute)
		}
		return nil
	})
	tm := h.clock.next(t)
	if tm.d != time.Minute || len(h.rec.get()) != 1 {
		t.Fatalf("after the overrun: wait %v with %d runs, want the 1m splay after 1 run", tm.d, len(h.rec.get()))
	}
	h.clock.fire(tm)
	h.clock.next(t)
	checkRuns(t, h.rec.get(),
		runRec{t0, ReasonStart},
		runRec{t0.Add(91 * time.Minute), ReasonSchedule},
	)
}

func TestLoopCancelDuringWait(t *testing.T) {
	l := &Loop{Schedule: mustParse(t, "0 21 * * 5", nil), RunAtStart: true}
	h := start(t, l, t0)
	h.clock.next(t) // waiting; the timer never fires
	began := time.Now()
	if err := h.stop(t); err != nil {
		t.Fatalf("Start = %v, want nil", err)
	}
	if d := time.Since(began); d > time.Second {
		t.Errorf("Start took %v to return after cancel", d)
	}
	if n := len(h.rec.get()); n != 1 {
		t.Errorf("%d runs, want 1", n)
	}
}

func TestLoopCancelDuringSplay(t *testing.T) {
	l := &Loop{Schedule: mustParse(t, "*/5 * * * *", nil), Splay: 5 * time.Minute, Rand: func(n int64) int64 { return n - 1 }}
	h := start(t, l, t0)
	h.clock.fire(h.clock.next(t)) // the tick
	if tm := h.clock.next(t); tm.d != 5*time.Minute {
		t.Fatalf("splay wait %v, want 5m", tm.d)
	}
	if err := h.stop(t); err != nil {
		t.Fatalf("Start = %v, want nil", err)
	}
	if n := len(h.rec.get()); n != 0 {
		t.Errorf("%d runs after cancel during splay, want 0", n)
	}
}

func TestLoopCancelDuringRun(t *testing.T) {
	running := make(chan struct{})
	var finished atomic.Bool
	l := &Loop{Schedule: mustParse(t, "@hourly", nil), RunAtStart: true}
	l.Run = func(ctx context.Context, reason string) error {
		close(running)
		<-ctx.Done()
		time.Sleep(5 * time.Millisecond) // cleanup after cancellation
		finished.Store(true)
		return ctx.Err()
	}
	h := start(t, l, t0)
	<-running
	if err := h.stop(t); err != nil {
		t.Fatalf("Start = %v, want nil", err)
	}
	if !finished.Load() {
		t.Fatal("Start returned before the run finished")
	}
	h.clock.noTimer(t)
	if !strings.Contains(h.logs.String(), "run interrupted") {
		t.Errorf("interrupted run not logged as such:\n%s", h.logs.String())
	}
}

func TestLoopCancelledBeforeStart(t *testing.T) {
	var runs atomic.Int32
	l := &Loop{
		Schedule:   mustParse(t, "@hourly", nil),
		RunAtStart: true,
		Run:        func(context.Context, string) error { runs.Add(1); return nil },
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := l.Start(ctx); err != nil || runs.Load() != 0 {
		t.Fatalf("Start = %v with %d runs, want nil and 0", err, runs.Load())
	}
}

func TestLoopTrigger(t *testing.T) {
	friday := at(t, time.UTC, "2024-03-22 21:00")
	l := &Loop{Schedule: mustParse(t, "0 21 * * 5", nil), Splay: 5 * time.Minute, Rand: func(n int64) int64 { return n - 1 }}
	h := start(t, l, t0)
	h.clock.next(t) // waiting for Friday; this timer is abandoned
	h.clock.Advance(time.Hour)
	l.Trigger()
	tm := h.clock.next(t) // the triggered run (no splay) is done, the loop waits again
	checkRuns(t, h.rec.get(), runRec{t0.Add(time.Hour), ReasonTrigger})
	// Still waiting for Friday: fire until the splay wait starts.
	for n := 0; !(h.clock.Now().Equal(friday) && tm.d == 5*time.Minute); n++ {
		if n > 1000 || len(h.rec.get()) != 1 {
			t.Fatalf("no splay wait at %s (%d runs)", friday, len(h.rec.get()))
		}
		h.clock.fire(tm)
		tm = h.clock.next(t)
	}
	// A trigger during the splay runs at once and serves the tick.
	l.Trigger()
	tm = h.clock.next(t)
	checkRuns(t, h.rec.get(),
		runRec{t0.Add(time.Hour), ReasonTrigger},
		runRec{friday, ReasonTrigger},
	)
	for len(h.rec.get()) < 3 {
		h.clock.fire(tm)
		tm = h.clock.next(t)
	}
	checkRuns(t, h.rec.get()[2:], runRec{friday.Add(7*24*time.Hour + 5*time.Minute), ReasonSchedule})
}

// TestLoopTriggerCoalesces: triggers during a run give one more run;
// triggers before a run are served by it.
func TestLoopTriggerCoalesces(t *testing.T) {
	l := &Loop{Schedule: mustParse(t, "0 21 * * 5", nil), RunAtStart: true}
	l.Trigger() // before Start: served by the start run
	l.Trigger()
	h := startWith(t, l, t0, func(_ context.Context, _ *fakeClock, n int, _ string) error {
		if n == 1 {
			for range 5 {
				l.Trigger()
			}
		}
		return nil
	})
	h.clock.next(t)
	checkRuns(t, h.rec.get(), runRec{t0, ReasonStart}, runRec{t0, ReasonTrigger})
}

func TestLoopRunErrorContinues(t *testing.T) {
	l := &Loop{Schedule: mustParse(t, "@hourly", nil), RunAtStart: true}
	h := startWith(t, l, t0, func(context.Context, *fakeClock, int, string) error { return errors.New("rsync exited 23") })
	h.fireUntil(t, 3, 100)
	if err := h.stop(t); err != nil {
		t.Fatalf("Start = %v, want nil", err)
	}
	if n := strings.Count(h.logs.String(), `"msg":"run failed"`); n != 3 {
		t.Errorf("%d failures logged, want 3", n)
	}
	if !strings.Contains(h.logs.String(), "rsync exited 23") {
		t.Error("error text not logged")
	}
}

// TestLoopNoOverlap hammers Trigger from several goroutines while the clock
// runs: Runs never overlap.
func TestLoopNoOverlap(t *testing.T) {
	var active, maxActive, total atomic.Int32
	l := &Loop{Schedule: mustParse(t, "*/5 * * * *", nil), RunAtStart: true}
	l.Run = func(ctx context.Context, reason string) error {
		n := active.Add(1)
		for {
			m := maxActive.Load()
			if n <= m || maxActive.CompareAndSwap(m, n) {
				break
			}
		}
		total.Add(1)
		time.Sleep(time.Millisecond)
		active.Add(-1)
		return nil
	}
	h := start(t, l, t0)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					l.Trigger()
					time.Sleep(100 * time.Microsecond)
				}
			}
		})
	}
	for range 30 {
		h.clock.fire(h.clock.next(t))
	}
	close(stop)
	wg.Wait()
	if err := h.stop(t); err != nil {
		t.Fatal(err)
	}
	if m := maxActive.Load(); m != 1 {
		t.Fatalf("%d runs at once", m)
	}
	if total.Load() < 2 {
		t.Fatalf("only %d runs", total.Load())
	}
}

// TestLoopWallClockStep: long waits are sliced, so a forward step of the
// wall clock is noticed within maxWait.
func TestLoopWallClockStep(t *testing.T) {
	l := &Loop{Schedule: mustParse(t, "0 21 * * 5", nil)}
	h := start(t, l, t0)
	tm := h.clock.next(t)
	if tm.d != maxWait {
		t.Fatalf("wait %v, want a %v slice", tm.d, maxWait)
	}
	h.clock.Advance(3 * 24 * time.Hour) // the clock jumps past Friday 21:00
	h.clock.fire(tm)
	h.clock.next(t)
	if n := len(h.rec.get()); n != 1 {
		t.Fatalf("%d runs after the clock step, want 1", n)
	}
}

func TestLoopRealClock(t *testing.T) {
	var runs atomic.Int32
	l := &Loop{
		Schedule:   mustParse(t, "@hourly", nil),
		RunAtStart: true,
		Run:        func(context.Context, string) error { runs.Add(1); return nil },
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- l.Start(ctx) }()
	for runs.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(2 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Second):
		t.Fatal("Start did not return promptly")
	}
	if runs.Load() != 1 {
		t.Fatalf("%d runs", runs.Load())
	}
}

func TestLoopConfigErrors(t *testing.T) {
	ctx := t.Context()
	run := func(context.Context, string) error { return nil }
	if err := (&Loop{Schedule: mustParse(t, "@hourly", nil)}).Start(ctx); !errors.Is(err, ErrNoRun) {
		t.Errorf("no Run: %v", err)
	}
	if err := (&Loop{Run: run}).Start(ctx); !errors.Is(err, ErrNoSchedule) {
		t.Errorf("no Schedule: %v", err)
	}

	l := &Loop{Schedule: mustParse(t, "@hourly", nil)}
	h := start(t, l, t0)
	h.clock.next(t)
	if err := l.Start(ctx); !errors.Is(err, ErrStarted) {
		t.Errorf("second Start: %v", err)
	}
	if err := h.stop(t); err != nil {
		t.Fatal(err)
	}
	// Once stopped it can be started again.
	ctx2, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.Start(ctx2); err != nil {
		t.Errorf("restart: %v", err)
	}
}
