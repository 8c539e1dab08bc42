package smime

import (
	"bytes"
	"testing"
)

func TestCanonicalize(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"lf", "a\nb\n", "a\r\nb\r\n"},
		{"crlf unchanged", "a\r\nb\r\n", "a\r\nb\r\n"},
		{"mixed", "a\nb\r\nc\n", "a\r\nb\r\nc\r\n"},
		{"cr cr lf", "a\r\r\nb", "a\r\nb"},
		{"no trailing newline", "{\n}", "{\r\n}"},
		{"trailing cr on last line dropped", "a\nb\r", "a\r\nb"},
		{"only cr", "\r", ""},
		{"trailing spaces kept", "a  \nb\t\n", "a  \r\nb\t\r\n"},
		{"blank lines at end kept", "a\n\n\n", "a\r\n\r\n\r\n"},
		{"blank crlf lines", "\r\n\r\n", "\r\n\r\n"},
		{"bare cr inside a line kept", "a\rb\n", "a\rb\r\n"},
		{"leading lf", "\nx", "\r\nx"},
		{"utf8", "\u00fc\n", "\u00fc\r\n"},
		{"nul bytes", "a\x00\nb", "a\x00\r\nb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Canonicalize([]byte(tt.in))
			if string(got) != tt.want {
				t.Errorf("Canonicalize(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if again := Canonicalize(got); !bytes.Equal(again, got) {
				t.Errorf("not idempotent: %q -> %q", got, again)
			}
		})
	}
}

func TestIsTextMode(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"Content-Type: text/plain\r\n\r\n{}", true},
		{"Content-Type: text/plain\n\n{}", true},
		{"Content-Type: text/plain;\r\n charset=utf-8\r\n\r\n{}", true},
		{"Content-Type: text/plain\r\nX-Other: 1\r\n\r\n", true},
		{"{\r\n  \"a\": 1\r\n}\r\n", false},
		{"  {\"a\": 1}", false},
		{"", false},
		{"\r\n{}", false},
		{"Content-Type: text/plain", false},          // no empty line
		{"Content-Type: text/plain\r\n{\r\n", false}, // not a header block
		{" folded: x\r\n\r\n", false},
		{"a b: c\r\n\r\n", false},
		{": x\r\n\r\n", false},
	}
	for _, tt := range tests {
		if got := isTextMode([]byte(tt.in)); got != tt.want {
			t.Errorf("isTextMode(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
