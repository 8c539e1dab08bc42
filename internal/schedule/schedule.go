// Package schedule runs a job on a cron schedule in a configured time zone:
// the long-running mode of clr-cache (the replacement for
// content-library-rsync's crond + sync.sh).
//
// [Parse] reads a standard 5-field cron expression or a descriptor
// (@hourly, @daily, @every 1h30m, ...) with github.com/robfig/cron/v3 and
// binds it to a time zone. [Schedule.Next] follows the Vixie/cronie rules
// across daylight-saving changes, which robfig/cron alone does not: a job at
// a fixed time of day (neither the minute nor the hour field starts with
// "*") that falls into the hour skipped when clocks go forward runs once at
// the end of the gap instead of being skipped for the day, and one that
// falls into the hour repeated when clocks go back runs once (at the first
// occurrence) instead of twice. Jobs with a wildcard minute or hour field
// ("*/15 * * * *", "30 * * * *", @hourly) and @every intervals follow real
// time.
//
// [Loop] runs a job on a schedule: optionally once at start, then at each
// tick after a random delay ([Splay]), one run at a time, with extra runs on
// request ([Loop.Trigger]). The clock, the timer and the random source are
// inputs so that tests can drive it.
package schedule

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"
	_ "time/tzdata" // LoadLocation must work in a scratch container without /usr/share/zoneinfo

	"github.com/robfig/cron/v3"
)

// Errors returned (wrapped) by Parse and LoadLocation.
var (
	// ErrEmpty: the expression is empty or blank.
	ErrEmpty = errors.New("empty schedule")
	// ErrTimeZonePrefix: the expression starts with CRON_TZ= or TZ=; the
	// time zone is a separate setting.
	ErrTimeZonePrefix = errors.New("CRON_TZ=/TZ= prefix not supported, set the time zone with the time-zone setting instead")
	// ErrFieldCount: not 5 fields (minute hour day-of-month month day-of-week).
	ErrFieldCount = errors.New("want 5 fields: minute hour day-of-month month day-of-week")
	// ErrSyntax: the expression is not valid cron syntax.
	ErrSyntax = errors.New("invalid cron expression")
	// ErrNever: the expression is valid but never matches (e.g. "0 0 30 2 *").
	ErrNever = errors.New("schedule never fires")
	// ErrTimeZone: the time-zone name is not a known IANA zone.
	ErrTimeZone = errors.New("unknown time zone")
)

// standard is robfig/cron's standard parser: 5 fields (no seconds) and
// descriptors.
var standard = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Schedule is a parsed cron expression bound to a time zone. The zero
// Schedule is invalid (IsZero reports true; Next returns the zero time).
type Schedule struct {
	expr string
	loc  *time.Location
	// real is evaluated on instants (wildcard specs, @every).
	real cron.Schedule
	// wall, for fixed-time specs, is evaluated on wall-clock time in loc,
	// represented as UTC times with the same fields; nil otherwise.
	wall *cron.SpecSchedule
}

// Parse parses a standard 5-field cron expression (minute hour day-of-month
// month day-of-week, with names, ranges, lists and steps) or a descriptor
// (@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly,
// @every <duration> with a duration of at least one second), interpreted in
// loc (nil means UTC). It refuses a seconds field, a CRON_TZ=/TZ= prefix
// and expressions that never fire.
func Parse(expr string, loc *time.Location) (Schedule, error) {
	if loc == nil {
		loc = time.UTC
	}
	fail := func(err error) (Schedule, error) {
		return Schedule{}, fmt.Errorf("schedule: parse %q: %w", expr, err)
	}
	spec := strings.TrimSpace(expr)
	if spec == "" {
		return fail(ErrEmpty)
	}
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		return fail(ErrTimeZonePrefix)
	}
	fields := strings.Fields(spec)
	if !strings.HasPrefix(spec, "@") && len(fields) != 5 {
		if len(fields) == 6 || len(fields) == 7 {
			return fail(fmt.Errorf("%w, found %d (a seconds or year field is not supported)", ErrFieldCount, len(fields)))
		}
		return fail(fmt.Errorf("%w, found %d", ErrFieldCount, len(fields)))
	}
	if strings.HasPrefix(spec, "@every") {
		d, err := time.ParseDuration(strings.TrimSpace(strings.TrimPrefix(spec, "@every")))
		if err != nil || d < time.Second {
			return fail(fmt.Errorf("%w: @every needs a duration of at least 1s", ErrSyntax))
		}
		spec = "@every " + d.String()
	}
	parsed, err := standard.Parse(spec)
	if err != nil {
		return fail(fmt.Errorf("%w: %w", ErrSyntax, err))
	}
	s := Schedule{expr: strings.TrimSpace(expr), loc: loc, real: parsed}
	if sp, ok := parsed.(*cron.SpecSchedule); ok {
		r := *sp
		r.Location = loc
		s.real = &r
		if fixedTime(spec) {
			w := *sp
			w.Location = time.UTC
			s.wall = &w
		}
	}
	// The fields do not depend on the year except 29 February, which any
	// five-year window (robfig's search limit) contains.
	if s.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return fail(ErrNever)
	}
	return s, nil
}

// fixedTime reports whether spec runs at fixed times of day: in cronie's
// terms, neither the minute nor the hour field starts with "*" (or "?").
// Such jobs are evaluated on wall-clock time so that DST changes neither
// skip nor repeat them.
func fixedTime(spec string) bool {
	if strings.HasPrefix(spec, "@") {
		switch spec {
		case "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight":
			return true
		}
		return false // @hourly, @every
	}
	f := strings.Fields(spec)
	star := func(s string) bool { return strings.HasPrefix(s, "*") || strings.HasPrefix(s, "?") }
	return !star(f[0]) && !star(f[1])
}

// IsZero reports whether s is the zero Schedule (not from Parse).
func (s Schedule) IsZero() bool { return s.real == nil }

// Location returns the time zone s is interpreted in (nil for the zero
// Schedule).
func (s Schedule) Location() *time.Location { return s.loc }

// String returns the expression s was parsed from, trimmed.
func (s Schedule) String() string { return s.expr }

// Next returns the first time the schedule fires strictly after t, in the
// schedule's location, or the zero time if there is none (or s is zero).
func (s Schedule) Next(t time.Time) time.Time {
	if s.IsZero() {
		return time.Time{}
	}
	t = t.In(s.loc)
	if s.wall == nil {
		n := s.real.Next(t)
		if n.IsZero() {
			return n
		}
		return n.In(s.loc)
	}
	// A matching wall-clock time whose first occurrence is not after t
	// (t is in the second pass of a repeated hour) is skipped: it already
	// ran. The repeated span is at most a few hours, so this is bounded.
	w := wallOf(t)
	for range 10000 {
		w = s.wall.Next(w)
		if w.IsZero() {
			return w
		}
		if r := fromWall(w, s.loc); r.After(t) {
			return r
		}
	}
	return time.Time{}
}

// wallOf returns t's wall-clock fields as a UTC time.
func wallOf(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

// fromWall returns the first instant whose wall-clock time in loc is w
// (given as a UTC time with those fields), or, if w falls into a gap where
// the clocks went forward, the instant the gap ends.
func fromWall(w time.Time, loc *time.Location) time.Time {
	naive := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), loc)
	start, end := naive.ZoneBounds()
	var offsets []int
	add := func(t time.Time) {
		_, off := t.Zone()
		offsets = append(offsets, off)
	}
	add(naive)
	if !start.IsZero() {
		add(start.Add(-time.Nanosecond))
	}
	if !end.IsZero() {
		add(end)
	}
	var best time.Time
	for _, off := range offsets {
		i := w.Add(-time.Duration(off) * time.Second).In(loc)
		if wallOf(i).Equal(w) && (best.IsZero() || i.Before(best)) {
			best = i
		}
	}
	if !best.IsZero() {
		return best
	}
	// In a gap: the wall clock jumps over w at a zone boundary next to naive.
	if wallOf(naive).After(w) && !start.IsZero() {
		return start.In(loc)
	}
	if !end.IsZero() {
		return end.In(loc)
	}
	return naive
}

// LoadLocation returns the time zone called name: "" and "UTC" mean UTC,
// otherwise an IANA name such as "Europe/Berlin" (a leading ":", as allowed
// in the TZ environment variable, is ignored). The zone database is
// embedded, so this works without /usr/share/zoneinfo. "Local" is refused:
// the zone must be explicit.
func LoadLocation(name string) (*time.Location, error) {
	n := strings.TrimPrefix(strings.TrimSpace(name), ":")
	switch n {
	case "", "UTC":
		return time.UTC, nil
	case "Local":
		return nil, fmt.Errorf("schedule: time zone %q: %w (name an IANA zone such as Europe/Berlin)", name, ErrTimeZone)
	}
	loc, err := time.LoadLocation(n)
	if err != nil {
		return nil, fmt.Errorf("schedule: time zone %q: %w (want an IANA name such as Europe/Berlin)", name, ErrTimeZone)
	}
	return loc, nil
}

// Splay returns a random delay, uniform in [0, maxDelay] at nanosecond
// resolution, using rnd (which must return a value in [0, n); nil means
// math/rand/v2's Int64N). Any maxDelay is honoured (there is no cap like the
// 32768 s of busybox's $RANDOM); maxDelay <= 0 gives 0 without calling rnd.
func Splay(maxDelay time.Duration, rnd func(n int64) int64) time.Duration {
	if maxDelay <= 0 {
		return 0
	}
	if rnd == nil {
		rnd = rand.Int64N
	}
	n := int64(maxDelay)
	if n < math.MaxInt64 {
		n++ // inclusive of maxDelay
	}
	v := rnd(n) % n
	if v < 0 {
		v += n
	}
	return time.Duration(v)
}
