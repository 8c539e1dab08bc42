package imagelist

import "testing"

func TestCompare(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		want int
	}{
		{"single digits", "1", "2", -1},
		{"numeric not lexical", "2", "10", -1},
		{"more tokens newer", "1.0", "1.0.1", -1},
		{"letters bytewise", "1.0a", "1.0b", -1},
		{"release suffix", "3.3.0-1", "3.3.0-2", -1},
		{"prefix with number", "v2", "v10", -1},
		{"digit beats letter", "1.a", "1.1", -1},
		{"equal", "3.3.0-1", "3.3.0-1", 0},
		{"empty equal", "", "", 0},
		{"empty older", "", "0", -1},
		{"appdb timestamps", "20150618211400", "20150619000000", -1},
		{"beyond uint64", "99999999999999999999999", "100000000000000000000000", -1},
		{"beyond uint64 equal value", "0099999999999999999999999", "99999999999999999999999", 0},
		{"appdb image versions", "20141029", "3.3.0-1", 1},
		// Quirks kept from vmcatcher.
		{"quirk 1.0 newer than 1.0a", "1.0", "1.0a", 1},
		{"quirk 1.0 newer than 1.0rc1", "1.0", "1.0rc1", 1},
		{"quirk 1.2rc1 older than 1.0", "1.2rc1", "1.0", -1},
		{"quirk 1.0-rc1 newer than 1.0", "1.0-rc1", "1.0", 1},
		{"quirk dot newer than dash", "1.0", "1-0", 1},
		{"quirk dash newer than comma", "1-0", "1,0", 1},
		{"quirk slash newest delimiter", "1/0", "1.0", 1},
		{"quirk delimiter not digit", "1..2", "1.2.2", -1},
		// Leading zeros: numerically equal tokens are skipped, not final.
		{"leading zeros equal", "01", "1", 0},
		{"leading zeros in run", "v01", "v1", 0},
		{"leading zeros then later token decides", "1.01.5", "1.1.2", 1},
		{"mixed runs", "1.0a2", "1.0a10", -1},
		{"more runs newer", "1.0a", "1.0a1", -1},
		{"letters vs letters", "alpha", "beta", -1},
		{"upper before lower", "B", "a", -1},
		{"non-ascii bytewise", "1.é", "1.z", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Compare(tc.a, tc.b); got != tc.want {
				t.Errorf("Compare(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
			}
			if got := Compare(tc.b, tc.a); got != -tc.want {
				t.Errorf("Compare(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
			}
		})
	}
}

func TestCompareTransitiveOnSamples(t *testing.T) {
	// An ascending sequence of real-looking versions: every earlier one is
	// older than every later one.
	seq := []string{"", "0", "1", "1.0a", "1.0b", "1.0", "1.0.1", "1.1", "1.2", "1.10", "2", "3.3.0-1", "3.3.0-2", "10", "20141029", "20150618211400", "20150619000000"}
	for i := range seq {
		for j := range seq {
			want := 0
			switch {
			case i < j:
				want = -1
			case i > j:
				want = 1
			}
			if got := Compare(seq[i], seq[j]); got != want {
				t.Errorf("Compare(%q, %q) = %d, want %d", seq[i], seq[j], got, want)
			}
		}
	}
}

func TestSplitDelims(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"release", "3.3.0-1", []string{"3", ".", "3", ".", "0", "-", "1"}},
		{"leading and doubled", ".1..a/", []string{".", "1", ".", ".", "a", "/"}},
		{"no delimiter", "v10", []string{"v10"}},
		{"empty", "", nil},
		{"comma", "1,2", []string{"1", ",", "2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := splitDelims(tc.in)
			if len(got) != len(tc.want) {
				t.Fatalf("splitDelims(%q) = %q, want %q", tc.in, got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("splitDelims(%q) = %q, want %q", tc.in, got, tc.want)
				}
			}
		})
	}
}
