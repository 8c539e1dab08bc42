package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Reasons passed to Loop.Run.
const (
	ReasonStart    = "start"    // the immediate run of RunAtStart
	ReasonSchedule = "schedule" // a scheduled tick (after the splay)
	ReasonTrigger  = "trigger"  // a Trigger request
)

// Errors returned (wrapped) by Loop.Start.
var (
	ErrNoRun      = errors.New("no Run function")
	ErrNoSchedule = errors.New("no schedule")
	ErrStarted    = errors.New("loop already started")
)

// maxWait bounds a single timer wait: a long wait is cut into slices and the
// clock is read again after each, so that a step of the wall clock (NTP,
// suspend and resume) delays a run by at most this much.
const maxWait = 10 * time.Minute

// Loop runs Run on Schedule, one run at a time. Set the fields, then call
// Start; a Loop must not be copied after first use.
//
// Ticks are computed from the start of the previous run: ticks that pass
// while a run is in progress coalesce into a single run right after it (a
// run is never concurrent with another and missed runs never queue up).
type Loop struct {
	// Schedule gives the ticks (required).
	Schedule Schedule
	// Splay is the maximum random delay before each scheduled run
	// (see Splay); <= 0 means none. Runs at start and on Trigger are not
	// delayed.
	Splay time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// After is the timer; nil means time.After.
	After func(d time.Duration) <-chan time.Time
	// Rand returns a random value in [0, n) for the splay; nil means
	// math/rand/v2's Int64N.
	Rand func(n int64) int64
	// Logger receives progress and Run errors; nil discards.
	Logger *slog.Logger
	// Run is the job (required). reason is ReasonStart, ReasonSchedule or
	// ReasonTrigger. ctx is Start's context: when it is cancelled Run
	// should return soon; Start waits for it.
	Run func(ctx context.Context, reason string) error
	// RunAtStart runs the job as soon as Start is called, before the first
	// tick.
	RunAtStart bool

	once    sync.Once
	trigger chan struct{}
	running atomic.Bool
}

func (l *Loop) init() {
	l.once.Do(func() { l.trigger = make(chan struct{}, 1) })
}

// Trigger asks for an extra run as soon as possible (without splay). It
// never blocks. Requests coalesce: any number of calls before a run starts
// are satisfied by that run, whatever its reason; a call during a run gives
// one more run after it. A request made before Start is served when Start
// runs.
func (l *Loop) Trigger() {
	l.init()
	select {
	case l.trigger <- struct{}{}:
	default:
	}
}

// Start runs the loop until ctx is cancelled: if RunAtStart, one run at
// once; then, repeatedly, wait for the next tick, wait a random splay, run.
// A Run error is logged and the loop goes on. When ctx is cancelled Start
// stops waiting at once; a run in progress (whose ctx is then cancelled) is
// waited for. Start returns nil after cancellation, or an error if the
// Loop is misconfigured, already started, or the schedule has no next tick.
func (l *Loop) Start(ctx context.Context) error {
	if l.Run == nil {
		return fmt.Errorf("schedule: loop: %w", ErrNoRun)
	}
	if l.Schedule.IsZero() {
		return fmt.Errorf("schedule: loop: %w", ErrNoSchedule)
	}
	if !l.running.CompareAndSwap(false, true) {
		return fmt.Errorf("schedule: loop: %w", ErrStarted)
	}
	defer l.running.Store(false)
	l.init()
	log := l.logger()
	log.Info("schedule started", "schedule", l.Schedule.String(), "zone", l.Schedule.Location().String(), "splay_max", l.Splay.String(), "run_at_start", l.RunAtStart)

	base := l.now()
	if l.RunAtStart {
		if ctx.Err() != nil {
			return nil
		}
		base = l.run(ctx, log, ReasonStart)
	}
	for {
		if ctx.Err() != nil {
			return nil
		}
		next := l.Schedule.Next(base)
		if next.IsZero() {
			return fmt.Errorf("schedule: %q: no tick after %s: %w", l.Schedule.String(), base.Format(time.RFC3339), ErrNever)
		}
		reason := ReasonSchedule
		if now := l.now(); next.After(now) {
			attrs := []any{"at", next.Format(time.RFC3339), "utc", next.UTC().Format(time.RFC3339), "in", next.Sub(now).Round(time.Second).String()}
			if l.Splay > 0 {
				attrs = append(attrs, "splay_max", l.Splay.String())
			}
			log.Info("next run", attrs...)
			switch l.waitUntil(ctx, next) {
			case woken:
			case cancelled:
				return nil
			case triggered:
				reason = ReasonTrigger
			}
		} else {
			log.Warn("a run overran the scheduled time, running once now", "scheduled", next.Format(time.RFC3339), "utc", next.UTC().Format(time.RFC3339))
		}
		if reason == ReasonSchedule && l.Splay > 0 {
			d := Splay(l.Splay, l.rnd())
			log.Info("random delay before run", "delay", d.Round(time.Second).String(), "until", l.now().Add(d).UTC().Format(time.RFC3339))
			switch l.waitUntil(ctx, l.now().Add(d)) {
			case woken:
			case cancelled:
				return nil
			case triggered:
				reason = ReasonTrigger
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		base = l.run(ctx, log, reason)
	}
}

// run calls Run once, logs the outcome and returns the start time.
func (l *Loop) run(ctx context.Context, log *slog.Logger, reason string) time.Time {
	select { // this run serves any pending Trigger
	case <-l.trigger:
	default:
	}
	start := l.now()
	log.Info("run started", "reason", reason)
	err := l.Run(ctx, reason)
	took := l.now().Sub(start).Round(time.Millisecond).String()
	switch {
	case err != nil && ctx.Err() != nil:
		log.Info("run interrupted", "reason", reason, "took", took, "err", err)
	case err != nil:
		log.Error("run failed", "reason", reason, "took", took, "err", err)
	default:
		log.Info("run finished", "reason", reason, "took", took)
	}
	return start
}

type wake int

const (
	woken wake = iota
	cancelled
	triggered
)

// waitUntil waits until the clock reaches deadline, ctx is cancelled or
// Trigger is called, in slices of at most maxWait.
func (l *Loop) waitUntil(ctx context.Context, deadline time.Time) wake {
	for {
		if ctx.Err() != nil {
			return cancelled
		}
		d := deadline.Sub(l.now())
		if d <= 0 {
			return woken
		}
		d = min(d, maxWait)
		select {
		case <-ctx.Done():
			return cancelled
		case <-l.trigger:
			return triggered
		case <-l.after(d):
		}
	}
}

func (l *Loop) now() time.Time {
	if l.Now == nil {
		return time.Now()
	}
	return l.Now()
}

func (l *Loop) after(d time.Duration) <-chan time.Time {
	if l.After == nil {
		return time.After(d)
	}
	return l.After(d)
}

func (l *Loop) rnd() func(int64) int64 {
	if l.Rand == nil {
		return rand.Int64N
	}
	return l.Rand
}

func (l *Loop) logger() *slog.Logger {
	if l.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.Logger
}
