package schedule

import (
	"errors"
	"go/parser"
	"go/token"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func mustParse(t *testing.T, expr string, loc *time.Location) Schedule {
	t.Helper()
	s, err := Parse(expr, loc)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// at parses "2006-01-02 15:04" (optionally with a zone offset, which must
// then be given as in "2006-01-02 15:04 -0700") in loc.
func at(t *testing.T, loc *time.Location, s string) time.Time {
	t.Helper()
	if len(s) > len("2006-01-02 15:04") {
		tm, err := time.Parse("2006-01-02 15:04 -0700", s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.In(loc)
	}
	tm, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func TestParseNext(t *testing.T) {
	berlin := mustLoc(t, "Europe/Berlin")
	tests := []struct {
		expr string
		loc  *time.Location
		from string
		want []string // consecutive ticks, "2006-01-02 15:04 -0700"
	}{
		// content-library-rsync's default: Fridays 21:00 in TZ, across the
		// spring-forward weekend.
		{"0 21 * * 5", berlin, "2024-03-20 12:00", []string{"2024-03-22 21:00 +0100", "2024-03-29 21:00 +0100", "2024-04-05 21:00 +0200"}},
		{"  0 21 * * fri  ", berlin, "2024-03-29 21:00", []string{"2024-04-05 21:00 +0200"}},
		{"*/15 * * * *", time.UTC, "2024-01-01 10:07", []string{"2024-01-01 10:15 +0000", "2024-01-01 10:30 +0000"}},
		{"0 9-17/4 * * mon-fri", time.UTC, "2024-01-05 16:00", []string{"2024-01-05 17:00 +0000", "2024-01-08 09:00 +0000", "2024-01-08 13:00 +0000", "2024-01-08 17:00 +0000"}},
		{"0 0 1,15 jan,jul *", time.UTC, "2024-01-02 00:00", []string{"2024-01-15 00:00 +0000", "2024-07-01 00:00 +0000"}},
		{"0 0 29 2 *", time.UTC, "2024-03-01 00:00", []string{"2028-02-29 00:00 +0000"}},
		{"@hourly", berlin, "2024-01-01 10:07", []string{"2024-01-01 11:00 +0100", "2024-01-01 12:00 +0100"}},
		{"@daily", berlin, "2024-01-01 10:07", []string{"2024-01-02 00:00 +0100"}},
		{"@midnight", time.UTC, "2024-01-01 10:07", []string{"2024-01-02 00:00 +0000"}},
		{"@weekly", time.UTC, "2024-01-01 10:07", []string{"2024-01-07 00:00 +0000"}},
		{"@monthly", time.UTC, "2024-01-01 10:07", []string{"2024-02-01 00:00 +0000"}},
		{"@yearly", time.UTC, "2024-01-01 10:07", []string{"2025-01-01 00:00 +0000"}},
		{"@annually", time.UTC, "2024-01-01 10:07", []string{"2025-01-01 00:00 +0000"}},
		{"@every 1h30m", berlin, "2024-01-01 10:07", []string{"2024-01-01 11:37 +0100", "2024-01-01 13:07 +0100"}},
		// nil location is UTC
		{"0 21 * * 5", nil, "2024-03-20 12:00", []string{"2024-03-22 21:00 +0000"}},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			s := mustParse(t, tt.expr, tt.loc)
			loc := tt.loc
			if loc == nil {
				loc = time.UTC
			}
			if s.Location() != loc {
				t.Errorf("Location() = %v, want %v", s.Location(), loc)
			}
			if s.String() != strings.TrimSpace(tt.expr) {
				t.Errorf("String() = %q", s.String())
			}
			cur := at(t, loc, tt.from)
			for i, w := range tt.want {
				next := s.Next(cur)
				if want := at(t, loc, w); !next.Equal(want) || next.Location() != loc {
					t.Fatalf("tick %d after %s = %s, want %s in %v", i, cur, next, want, loc)
				}
				cur = next
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		expr string
		want error
	}{
		{"", ErrEmpty},
		{" \t ", ErrEmpty},
		{"0 0 21 * * 5", ErrFieldCount}, // seconds field
		{"0 0 21 * * 5 2024", ErrFieldCount},
		{"0 21 * *", ErrFieldCount},
		{"daily", ErrFieldCount},
		{"CRON_TZ=Europe/Berlin 0 21 * * 5", ErrTimeZonePrefix},
		{"TZ=UTC 0 21 * * 5", ErrTimeZonePrefix},
		{"60 * * * *", ErrSyntax},
		{"0 24 * * *", ErrSyntax},
		{"0 0 0 * *", ErrSyntax},
		{"0 0 * 13 *", ErrSyntax},
		{"0 0 * * 8", ErrSyntax},
		{"0 0 * * funday", ErrSyntax},
		{"*/0 * * * *", ErrSyntax},
		{"5-1 * * * *", ErrSyntax},
		{"@fortnightly", ErrSyntax},
		{"@every", ErrSyntax},
		{"@every soon", ErrSyntax},
		{"@every 0s", ErrSyntax},
		{"@every -1h", ErrSyntax},
		{"@every 500ms", ErrSyntax},
		{"0 0 30 2 *", ErrNever},
		{"0 0 31 4,6 *", ErrNever},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			s, err := Parse(tt.expr, time.UTC)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse(%q) error = %v, want %v", tt.expr, err, tt.want)
			}
			if !s.IsZero() {
				t.Errorf("Parse(%q) returned a non-zero Schedule with an error", tt.expr)
			}
			prefix := "schedule: parse " + strconv.Quote(tt.expr) + ": "
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
		})
	}
	_, err := Parse("CRON_TZ=Europe/Berlin 0 21 * * 5", nil)
	if !strings.Contains(err.Error(), "time-zone setting") {
		t.Errorf("prefix error %q does not point to the time-zone setting", err)
	}
	_, err = Parse("0 0 21 * * 5", nil)
	if !strings.Contains(err.Error(), "seconds") {
		t.Errorf("6-field error %q does not mention seconds", err)
	}
}

func TestZeroSchedule(t *testing.T) {
	var s Schedule
	if !s.IsZero() || !s.Next(time.Now()).IsZero() || s.Location() != nil || s.String() != "" {
		t.Fatal("zero Schedule not inert")
	}
}

// TestNextDST pins the behaviour around daylight-saving changes: a job at a
// fixed time in the skipped hour runs once when the gap ends, one in the
// repeated hour runs once (the first time); wildcard jobs follow real time.
func TestNextDST(t *testing.T) {
	tests := []struct {
		name, zone, expr, from string
		want                   []string
	}{
		// Berlin: 2024-03-31 02:00 CET -> 03:00 CEST; 2024-10-27 03:00 CEST -> 02:00 CET.
		{"berlin spring daily 02:30", "Europe/Berlin", "30 2 * * *", "2024-03-30 12:00",
			[]string{"2024-03-31 03:00 +0200", "2024-04-01 02:30 +0200"}},
		{"berlin fall daily 02:30 once", "Europe/Berlin", "30 2 * * *", "2024-10-26 12:00",
			[]string{"2024-10-27 02:30 +0200", "2024-10-28 02:30 +0100"}},
		{"berlin fall daily 01:30", "Europe/Berlin", "30 1 * * *", "2024-10-26 12:00",
			[]string{"2024-10-27 01:30 +0200", "2024-10-28 01:30 +0100"}},
		{"berlin fall from second pass", "Europe/Berlin", "30 2 * * *", "2024-10-27 02:10 +0100",
			[]string{"2024-10-28 02:30 +0100"}},
		{"berlin spring list in gap coalesces", "Europe/Berlin", "15,45 2 * * *", "2024-03-31 00:00",
			[]string{"2024-03-31 03:00 +0200", "2024-04-01 02:15 +0200", "2024-04-01 02:45 +0200"}},
		{"berlin spring hourly", "Europe/Berlin", "@hourly", "2024-03-31 00:30",
			[]string{"2024-03-31 01:00 +0100", "2024-03-31 03:00 +0200", "2024-03-31 04:00 +0200"}},
		{"berlin fall hourly", "Europe/Berlin", "30 * * * *", "2024-10-27 01:00",
			[]string{"2024-10-27 01:30 +0200", "2024-10-27 02:30 +0200", "2024-10-27 02:30 +0100", "2024-10-27 03:30 +0100"}},
		// Chicago: 2024-03-10 02:00 CST -> 03:00 CDT; 2024-11-03 02:00 CDT -> 01:00 CST.
		{"chicago spring daily 02:30", "America/Chicago", "30 2 * * *", "2024-03-09 12:00",
			[]string{"2024-03-10 03:00 -0500", "2024-03-11 02:30 -0500"}},
		{"chicago fall daily 01:30 once", "America/Chicago", "30 1 * * *", "2024-11-02 12:00",
			[]string{"2024-11-03 01:30 -0500", "2024-11-04 01:30 -0600"}},
		{"chicago fall every 20 min", "America/Chicago", "*/20 * * * *", "2024-11-03 01:30 -0500",
			[]string{"2024-11-03 01:40 -0500", "2024-11-03 01:00 -0600", "2024-11-03 01:20 -0600"}},
		{"chicago spring every 20 min", "America/Chicago", "*/20 * * * *", "2024-03-10 01:30",
			[]string{"2024-03-10 01:40 -0600", "2024-03-10 03:00 -0500"}},
		{"chicago weekly sunday 02:30 spring", "America/Chicago", "30 2 * * 0", "2024-03-08 12:00",
			[]string{"2024-03-10 03:00 -0500", "2024-03-17 02:30 -0500"}},
		// Havana changes at midnight: 2024-03-10 00:00 -> 01:00, 2024-11-03 01:00 -> 00:00.
		{"havana daily spring", "America/Havana", "@daily", "2024-03-09 12:00",
			[]string{"2024-03-10 01:00 -0400", "2024-03-11 00:00 -0400"}},
		{"havana daily fall once", "America/Havana", "@daily", "2024-11-02 12:00",
			[]string{"2024-11-03 00:00 -0400", "2024-11-04 00:00 -0500"}},
		// Lord Howe shifts by 30 minutes: 2024-10-06 02:00 -> 02:30, 2024-04-07 02:00 -> 01:30.
		{"lord howe spring", "Australia/Lord_Howe", "15 2 * * *", "2024-10-05 12:00",
			[]string{"2024-10-06 02:30 +1100", "2024-10-07 02:15 +1100"}},
		{"lord howe fall once", "Australia/Lord_Howe", "45 1 * * *", "2024-04-06 12:00",
			[]string{"2024-04-07 01:45 +1100", "2024-04-08 01:45 +1030"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc := mustLoc(t, tt.zone)
			s := mustParse(t, tt.expr, loc)
			cur := at(t, loc, tt.from)
			for i, w := range tt.want {
				next := s.Next(cur)
				if want := at(t, loc, w); !next.Equal(want) {
					t.Fatalf("tick %d after %s = %s, want %s", i, cur.Format(time.RFC3339), next.Format(time.RFC3339), want.Format(time.RFC3339))
				}
				cur = next
			}
		})
	}
}

// TestNextDSTRunsOncePerDay walks a fixed-time daily job through a whole
// year in several zones: exactly one tick per local day, never skipped,
// never doubled, always in strictly increasing order.
func TestNextDSTRunsOncePerDay(t *testing.T) {
	for _, zone := range []string{"Europe/Berlin", "America/Chicago", "America/Havana", "Australia/Lord_Howe", "UTC"} {
		for _, expr := range []string{"30 2 * * *", "30 1 * * *", "0 0 * * *", "59 23 * * *"} {
			loc := mustLoc(t, zone)
			s := mustParse(t, expr, loc)
			days := map[string]int{}
			begin := time.Date(2024, 1, 1, 0, 0, 0, 0, loc)
			cur := begin.Add(-time.Second)
			end := time.Date(2025, 1, 1, 0, 0, 0, 0, loc)
			for n := 0; n < 400; n++ {
				next := s.Next(cur)
				if !next.After(cur) {
					t.Fatalf("%s %q: Next(%s) = %s, not after", zone, expr, cur, next)
				}
				if !next.Before(end) {
					break
				}
				days[next.Format("2006-01-02")]++
				cur = next
			}
			if len(days) != 366 {
				t.Errorf("%s %q: ticks on %d days in 2024, want 366", zone, expr, len(days))
			}
			for d, n := range days {
				if n != 1 {
					t.Errorf("%s %q: %d ticks on %s", zone, expr, n, d)
				}
			}
		}
	}
}

func TestFromWall(t *testing.T) {
	chicago := mustLoc(t, "America/Chicago")
	tests := []struct {
		wall string
		want string
	}{
		{"2024-06-01 12:00", "2024-06-01 12:00 -0500"},
		{"2024-03-10 01:59", "2024-03-10 01:59 -0600"},
		{"2024-03-10 02:00", "2024-03-10 03:00 -0500"}, // gap
		{"2024-03-10 02:59", "2024-03-10 03:00 -0500"}, // gap
		{"2024-03-10 03:00", "2024-03-10 03:00 -0500"},
		{"2024-11-03 01:00", "2024-11-03 01:00 -0500"}, // ambiguous: first
		{"2024-11-03 01:59", "2024-11-03 01:59 -0500"},
		{"2024-11-03 02:00", "2024-11-03 02:00 -0600"},
	}
	for _, tt := range tests {
		w := at(t, time.UTC, tt.wall)
		got := fromWall(w, chicago)
		if want := at(t, chicago, tt.want); !got.Equal(want) {
			t.Errorf("fromWall(%s) = %s, want %s", tt.wall, got.Format(time.RFC3339), want.Format(time.RFC3339))
		}
	}
	if got := fromWall(at(t, time.UTC, "2024-03-10 02:30"), time.UTC); !got.Equal(at(t, time.UTC, "2024-03-10 02:30")) {
		t.Errorf("fromWall in UTC = %s", got)
	}
}

func TestLoadLocation(t *testing.T) {
	for _, name := range []string{"", "UTC", " UTC "} {
		loc, err := LoadLocation(name)
		if err != nil || loc != time.UTC {
			t.Errorf("LoadLocation(%q) = %v, %v; want UTC", name, loc, err)
		}
	}
	for _, name := range []string{"Europe/Berlin", ":Europe/Berlin", "America/Chicago", "Asia/Kolkata", "Etc/GMT+5"} {
		loc, err := LoadLocation(name)
		if err != nil {
			t.Errorf("LoadLocation(%q): %v", name, err)
			continue
		}
		if want := strings.TrimPrefix(name, ":"); loc.String() != want {
			t.Errorf("LoadLocation(%q) = %v", name, loc)
		}
	}
	for _, name := range []string{"Local", "Mars/Olympus_Mons", "../../etc/passwd", "/usr/share/zoneinfo/Europe/Berlin", "CET-1CEST,M3.5.0,M10.5.0/3"} {
		loc, err := LoadLocation(name)
		if !errors.Is(err, ErrTimeZone) || loc != nil {
			t.Errorf("LoadLocation(%q) = %v, %v; want ErrTimeZone", name, loc, err)
			continue
		}
		if want := "schedule: time zone " + strconv.Quote(name) + ": "; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("error %q does not start with %q", err, want)
		}
	}
}

// TestEmbedsTZData guards the import that makes LoadLocation work in a
// scratch container (this machine has /usr/share/zoneinfo, so loading a
// zone here proves nothing).
func TestEmbedsTZData(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "schedule.go", nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range f.Imports {
		if imp.Path.Value == `"time/tzdata"` {
			return
		}
	}
	t.Fatal(`schedule.go does not import _ "time/tzdata"`)
}

func TestSplay(t *testing.T) {
	never := func(int64) int64 { t.Fatal("rnd called"); return 0 }
	if d := Splay(0, never); d != 0 {
		t.Errorf("Splay(0) = %v", d)
	}
	if d := Splay(-time.Hour, never); d != 0 {
		t.Errorf("Splay(-1h) = %v", d)
	}
	top := func(n int64) int64 { return n - 1 }
	bottom := func(int64) int64 { return 0 }
	half := func(n int64) int64 { return n / 2 }

	const day = 86400 * time.Second
	var gotN int64
	d := Splay(day, func(n int64) int64 { gotN = n; return n - 1 })
	if gotN != int64(day)+1 {
		t.Errorf("rnd called with n = %d, want %d (inclusive range)", gotN, int64(day)+1)
	}
	if d != day {
		t.Errorf("Splay(86400s, top) = %v, want %v", d, day)
	}
	if d := Splay(day, half); d != day/2 || d <= 32768*time.Second {
		t.Errorf("Splay(86400s, half) = %v, want %v (> busybox's 32768 s cap)", d, day/2)
	}
	if d := Splay(day, bottom); d != 0 {
		t.Errorf("Splay(86400s, bottom) = %v", d)
	}
	week := 7 * 24 * time.Hour
	if d := Splay(week, top); d != week {
		t.Errorf("Splay(1 week, top) = %v", d)
	}
	// The whole int64 range: no overflow.
	if d := Splay(math.MaxInt64, top); d < 0 {
		t.Errorf("Splay(MaxInt64, top) = %v", d)
	}
	// A misbehaving rnd is folded into range.
	for _, v := range []int64{-1, -int64(day) - 5, int64(day) + 1, math.MaxInt64, math.MinInt64} {
		if d := Splay(day, func(int64) int64 { return v }); d < 0 || d > day {
			t.Errorf("Splay with rnd = %d gave %v, out of [0, %v]", v, d, day)
		}
	}
	// Default source: in range, and not stuck under 32768 s.
	var above bool
	for range 1000 {
		d := Splay(day, nil)
		if d < 0 || d > day {
			t.Fatalf("Splay(86400s, nil) = %v out of range", d)
		}
		above = above || d > 32768*time.Second
	}
	if !above {
		t.Error("1000 default splays of up to 86400 s all at most 32768 s")
	}
}

// FuzzParse: Parse never panics, and an accepted schedule's Next is
// strictly after its input (or zero) in every zone.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"0 21 * * 5", "@every 1h30m", "*/20 2 * * *", "30 2 * * *", "0 0 30 2 *", "@daily", "1-5/2 * * JAN-MAR MON", "TZ=UTC 0 * * * *"} {
		f.Add(s, int64(1798000000))
	}
	zones := []string{"UTC", "Europe/Berlin", "America/Chicago", "Australia/Lord_Howe"}
	f.Fuzz(func(t *testing.T, expr string, unix int64) {
		if unix < 0 || unix > 4102444800 {
			return
		}
		for _, z := range zones {
			loc, err := LoadLocation(z)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Parse(expr, loc)
			if err != nil {
				continue
			}
			now := time.Unix(unix, 0)
			if n := s.Next(now); !n.IsZero() && !n.After(now) {
				t.Fatalf("%q in %s: Next(%v) = %v, not after", expr, z, now, n)
			}
		}
	})
}
