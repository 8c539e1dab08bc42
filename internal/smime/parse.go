package smime

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net/textproto"
	"strings"
)

// Parse reads an S/MIME signed message: multipart/signed with a detached
// application/(x-)pkcs7-signature part, or opaque application/(x-)pkcs7-mime
// signed-data. Header lines may end in LF or CRLF. It does not verify
// anything; call Verify. Parse never panics.
//
// Errors wrap ErrMalformed, or ErrTextMode when the signed content starts
// with a MIME header block (signed with `openssl smime -text`).
func Parse(data []byte) (*Message, error) {
	if len(data) > MaxMessageSize {
		return nil, fmt.Errorf("%w: message is %d bytes, over the %d byte limit", ErrMalformed, len(data), MaxMessageSize)
	}
	hdr, body, err := readHeaders(data)
	if err != nil {
		return nil, fmt.Errorf("%w: outer headers: %v", ErrMalformed, err)
	}
	ct := hdr.Get("Content-Type")
	if ct == "" {
		return nil, fmt.Errorf("%w: no Content-Type header", ErrMalformed)
	}
	mediaType, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return nil, fmt.Errorf("%w: Content-Type %q: %v", ErrMalformed, ct, err)
	}
	var m *Message
	switch mediaType {
	case "multipart/signed":
		m, err = parseMultipart(body, params)
	case "application/pkcs7-mime", "application/x-pkcs7-mime":
		m, err = parseOpaque(hdr, body, params)
	default:
		return nil, fmt.Errorf("%w: unsupported Content-Type %q (want multipart/signed or application/pkcs7-mime)", ErrMalformed, mediaType)
	}
	if err != nil {
		return nil, err
	}
	if isTextMode(m.Content) {
		return nil, fmt.Errorf("%w: re-sign the list without -text", ErrTextMode)
	}
	return m, nil
}

// readHeaders reads a MIME header block and returns it with the bytes that
// follow the empty line ending it.
func readHeaders(data []byte) (textproto.MIMEHeader, []byte, error) {
	src := bytes.NewReader(data)
	br := bufio.NewReader(src)
	hdr, err := textproto.NewReader(br).ReadMIMEHeader()
	if err != nil {
		return nil, nil, err
	}
	off := len(data) - src.Len() - br.Buffered()
	return hdr, data[off:], nil
}

func parseMultipart(body []byte, params map[string]string) (*Message, error) {
	boundary := params["boundary"]
	if boundary == "" {
		return nil, fmt.Errorf("%w: multipart/signed without a boundary parameter", ErrMalformed)
	}
	if p := params["protocol"]; !isSignatureType(p) {
		return nil, fmt.Errorf("%w: multipart/signed protocol %q is not application/(x-)pkcs7-signature", ErrMalformed, p)
	}
	part1, part2, err := splitMultipart(body, boundary)
	if err != nil {
		return nil, err
	}
	sig, err := parseSignaturePart(part2)
	if err != nil {
		return nil, err
	}
	p7, err := parsePKCS7(sig)
	if err != nil {
		return nil, err
	}
	if len(p7.Content) > 0 {
		return nil, fmt.Errorf("%w: the detached signature part also embeds content", ErrMalformed)
	}
	if len(p7.Signers) == 0 {
		return nil, fmt.Errorf("%w: pkcs#7 signed-data has no signer", ErrMalformed)
	}
	return &Message{
		Content:   Canonicalize(part1),
		Signature: sig,
		MicAlg:    params["micalg"],
		raw:       part1,
	}, nil
}

// splitMultipart hand-splits a multipart/signed body (mime/multipart cannot:
// the signed part has no headers). A delimiter line is "--boundary" after
// trimming trailing CR, LF, space and tab; the closer is "--boundary--".
// Exactly two parts are required. The first part loses exactly one trailing
// line break, which belongs to the following delimiter.
func splitMultipart(body []byte, boundary string) (part1, part2 []byte, err error) {
	delim := "--" + boundary
	closer := delim + "--"
	type mark struct{ start, end int } // delimiter line start, and after its line break
	var marks []mark
	closed := false
	var closeAt int
	for off := 0; off < len(body); {
		next := len(body)
		line := body[off:]
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line, next = line[:i], off+i+1
		}
		t := bytes.TrimRight(line, "\r\n \t")
		if string(t) == closer {
			closed, closeAt = true, off
			break
		}
		if string(t) == delim {
			if len(marks) == 2 {
				return nil, nil, fmt.Errorf("%w: multipart/signed has more than two parts", ErrMalformed)
			}
			marks = append(marks, mark{off, next})
		}
		off = next
	}
	switch {
	case len(marks) == 0:
		return nil, nil, fmt.Errorf("%w: no line with the multipart boundary", ErrMalformed)
	case len(marks) == 1:
		return nil, nil, fmt.Errorf("%w: multipart/signed has no signature part", ErrMalformed)
	case !closed:
		return nil, nil, fmt.Errorf("%w: multipart/signed has no closing boundary (truncated?)", ErrMalformed)
	}
	part1 = body[marks[0].end:marks[1].start]
	if bytes.HasSuffix(part1, []byte("\r\n")) {
		part1 = part1[:len(part1)-2]
	} else if bytes.HasSuffix(part1, []byte("\n")) {
		part1 = part1[:len(part1)-1]
	}
	return part1, body[marks[1].end:closeAt], nil
}

// parseSignaturePart reads the headers of the second part and returns the
// decoded PKCS#7 bytes.
func parseSignaturePart(part []byte) ([]byte, error) {
	hdr, body, err := readHeaders(part)
	if err != nil {
		return nil, fmt.Errorf("%w: signature part headers: %v", ErrMalformed, err)
	}
	ct := hdr.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || !isSignatureType(mt) {
		return nil, fmt.Errorf("%w: signature part Content-Type %q is not application/(x-)pkcs7-signature", ErrMalformed, ct)
	}
	sig, err := decodeBody(hdr, body)
	if err != nil {
		return nil, fmt.Errorf("%w: signature part: %v", ErrMalformed, err)
	}
	return sig, nil
}

func parseOpaque(hdr textproto.MIMEHeader, body []byte, params map[string]string) (*Message, error) {
	if st, ok := params["smime-type"]; ok && !strings.EqualFold(st, "signed-data") {
		return nil, fmt.Errorf("%w: smime-type %q is not signed-data", ErrMalformed, st)
	}
	der, err := decodeBody(hdr, body)
	if err != nil {
		return nil, fmt.Errorf("%w: pkcs7-mime body: %v", ErrMalformed, err)
	}
	p7, err := parsePKCS7(der)
	if err != nil {
		return nil, err
	}
	if len(p7.Content) == 0 {
		return nil, fmt.Errorf("%w: opaque signed-data carries no content", ErrMalformed)
	}
	if len(p7.Signers) == 0 {
		return nil, fmt.Errorf("%w: pkcs#7 signed-data has no signer", ErrMalformed)
	}
	return &Message{Content: p7.Content, Signature: der, Opaque: true}, nil
}

func isSignatureType(t string) bool {
	return strings.EqualFold(t, "application/x-pkcs7-signature") || strings.EqualFold(t, "application/pkcs7-signature")
}

// decodeBody base64-decodes a part body, ignoring whitespace and accepting
// missing padding. Only base64 transfer encoding (or none given) is allowed.
func decodeBody(hdr textproto.MIMEHeader, body []byte) ([]byte, error) {
	if cte := strings.TrimSpace(hdr.Get("Content-Transfer-Encoding")); cte != "" && !strings.EqualFold(cte, "base64") {
		return nil, fmt.Errorf("transfer encoding %q is not base64", cte)
	}
	clean := make([]byte, 0, len(body))
	for _, c := range body {
		switch c {
		case ' ', '\t', '\r', '\n', '\f', '\v':
		default:
			clean = append(clean, c)
		}
	}
	clean = bytes.TrimRight(clean, "=")
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
	n, err := base64.RawStdEncoding.Decode(out, clean)
	if err != nil {
		return nil, fmt.Errorf("bad base64: %v", err)
	}
	if n == 0 {
		return nil, errors.New("empty body")
	}
	return out[:n], nil
}
