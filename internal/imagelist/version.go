package imagelist

import (
	"cmp"
	"strings"
)

// Compare orders two list versions (hv:version) the way vmcatcher's
// split_numeric_sort does, and returns -1 if a is older than b, 0 if they
// rank the same and +1 if a is newer. A subscriber refuses an update whose
// version compares lower than the stored one (vmcatcher error 17).
//
// The rules, applied token by token from the left:
//
//  1. Split on the delimiters - , . / keeping each delimiter as a token of
//     its own: "3.3.0-1" is 3 . 3 . 0 - 1.
//  2. Equal tokens are skipped.
//  3. Two all-digit tokens compare as integers of any length (2 < 10,
//     20150618211400 < 20150619000000); leading zeros do not count.
//  4. An all-digit token beats any other token: 1.a < 1.1.
//  5. Other tokens are split into digit and non-digit runs and compared run
//     by run with rules 2-4, non-digit runs bytewise (1.0a < 1.0b,
//     v2 < v10); when all shared runs tie, more runs is newer.
//  6. When all shared tokens tie, more tokens is newer: 1.0 < 1.0.1.
//
// Quirks inherited from vmcatcher, kept for compatibility:
//
//   - 1.0 is newer than 1.0a (rule 4: "0" is all digits, "0a" is not), so
//     moving from 1.0 to 1.0a is a downgrade; likewise 1.0 beats 1.0rc1,
//     and even 1.2rc1 counts as older than 1.0.
//   - 1.0-rc1 is newer than 1.0 (rule 6: more tokens).
//   - 1.0 is newer than 1-0, because delimiters compare bytewise and
//     '.' (0x2E) > '-' (0x2D); ',' < '-' < '.' < '/'.
//   - A delimiter is not a digit, so 1..2 < 1.2.2 is decided by '.' < "2".
//
// One deliberate difference: vmcatcher stops at the first pair of numeric
// tokens with equal values but different spelling ("01" and "1") and calls
// the versions equal; Compare skips such a pair and goes on, so
// 1.01.5 > 1.1.2. Versions that differ only in leading zeros ("01" and
// "1", "v01" and "v1") still compare equal.
//
// Compare is antisymmetric: Compare(a, b) == -Compare(b, a).
func Compare(a, b string) int {
	if a == b {
		return 0
	}
	return compareTokens(splitDelims(a), splitDelims(b), compareRuns)
}

// compareTokens applies rules 2-4 and 6 to two token lists; other compares
// tokens that are not both all digits and not one all digits.
func compareTokens(x, y []string, other func(a, b string) int) int {
	for i := range min(len(x), len(y)) {
		a, b := x[i], y[i]
		if a == b {
			continue
		}
		ad, bd := isDigits(a), isDigits(b)
		var c int
		switch {
		case ad && bd:
			c = compareNumeric(a, b)
		case ad:
			c = 1
		case bd:
			c = -1
		default:
			c = other(a, b)
		}
		if c != 0 {
			return c
		}
	}
	return cmp.Compare(len(x), len(y))
}

// compareRuns is vmcatcher's string_sort: digit and non-digit runs.
func compareRuns(a, b string) int {
	return compareTokens(splitRuns(a), splitRuns(b), strings.Compare)
}

// splitDelims splits s on - , . / and keeps the delimiters as tokens.
func splitDelims(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '-', ',', '.', '/':
			if start < i {
				out = append(out, s[start:i])
			}
			out = append(out, s[i:i+1])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// splitRuns splits s into maximal runs of ASCII digits and of other bytes.
func splitRuns(s string) []string {
	var out []string
	start := 0
	for i := 1; i <= len(s); i++ {
		if i == len(s) || isDigit(s[i]) != isDigit(s[i-1]) {
			out = append(out, s[start:i])
			start = i
		}
	}
	return out
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// compareNumeric compares two all-digit strings as integers of any length.
func compareNumeric(a, b string) int {
	a = strings.TrimLeft(a, "0")
	b = strings.TrimLeft(b, "0")
	if c := cmp.Compare(len(a), len(b)); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}
