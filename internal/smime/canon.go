package smime

import "bytes"

// Canonicalize converts b to the canonical form S/MIME signs, exactly as
// OpenSSL's SMIME_crlf_copy does in text (non-binary) mode: every line
// ending (LF, CRLF, CR...CRLF) becomes CRLF, carriage returns at the end of
// the last, unterminated line are dropped, and nothing else changes (no
// whitespace stripping; a CR inside a line, not followed by LF, is kept).
//
// The function is idempotent.
func Canonicalize(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/32+2)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			out = append(out, bytes.TrimRight(b, "\r")...)
			break
		}
		out = append(out, bytes.TrimRight(b[:i], "\r")...)
		out = append(out, '\r', '\n')
		b = b[i+1:]
	}
	return out
}

// isTextMode reports whether content begins with a MIME header block: one or
// more header lines (a token, a colon, anything; or a folded continuation)
// followed by an empty line. `openssl smime -sign -text` prepends
// "Content-Type: text/plain\r\n\r\n" to the signed bytes; a JSON image list
// starts with "{" or whitespace and never matches.
func isTextMode(content []byte) bool {
	headers := 0
	for len(content) > 0 {
		i := bytes.IndexByte(content, '\n')
		if i < 0 {
			return false // no empty line ends the block
		}
		line := bytes.TrimRight(content[:i], "\r")
		content = content[i+1:]
		if len(line) == 0 {
			return headers > 0
		}
		if line[0] == ' ' || line[0] == '\t' {
			if headers == 0 {
				return false
			}
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return false
		}
		for _, c := range line[:colon] {
			if !isTokenChar(c) {
				return false
			}
		}
		headers++
	}
	return false
}

// isTokenChar reports whether c may appear in a header field name (RFC 5322
// ftext minus the characters no real header uses).
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	case c == '-' || c == '_' || c == '.':
		return true
	}
	return false
}
