package trust

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"
)

// subjectHashNameMax is OpenSSL's X509_NAME_MAX: d2i_X509_NAME gives up on
// names longer than 1 MiB.
const subjectHashNameMax = 1 << 20

// SubjectHash returns the OpenSSL subject hash of a DER-encoded X.509 Name
// (a certificate's RawSubject, a CRL's RawIssuer): the 8 lower-case hex
// digits `openssl x509 -hash -noout` and `openssl crl -hash -noout` print,
// which name the <hash>.0 and <hash>.r0 links of an OpenSSL CA directory
// (c_rehash, `openssl rehash`). It is X509_NAME_hash (X509_NAME_hash_ex since
// OpenSSL 3.0), the "new" hash of OpenSSL 1.0 and later, not the MD5-based
// -subject_hash_old.
//
// The hash is the first four bytes of the SHA-1 of the name's canonical
// encoding, read as a little-endian number. The canonical encoding is the one
// OpenSSL's x509_name_canon builds:
//
//   - the RDN SETs, one after the other, without the outer SEQUENCE header;
//     an empty Name (or one whose RDNs are all empty SETs) is zero bytes,
//     whose hash is eea339da;
//   - every value of type UTF8String, PrintableString, T61String, IA5String,
//     BMPString or UniversalString becomes a UTF8String: converted to UTF-8
//     (PrintableString, T61String and IA5String bytes are taken as Latin-1,
//     as OpenSSL does), leading and trailing whitespace removed, inner runs of
//     whitespace replaced by one space (whitespace is ASCII space, \t, \n,
//     \v, \f, \r) and ASCII letters lower-cased (nothing else is folded: "É"
//     stays "É");
//   - values of the other types OpenSSL accepts in names (NumericString, BIT
//     STRING, SEQUENCE, and the rarely seen universal types 7, 8, 9, 11, 13,
//     14, 15, 29) are kept as they are encoded;
//   - the attributes of a multi-valued RDN are sorted by their canonical
//     encoding, as DER sorts a SET OF; empty RDNs are left out.
//
// rawName must be DER. SubjectHash returns an error, and never a guess, for
// bytes that are not a DER Name and for names OpenSSL refuses to parse:
// values of a type OpenSSL does not accept in names (VisibleString,
// VideotexString, GeneralString, OCTET STRING, INTEGER, ENUMERATED, times...),
// invalid UTF-8, BMPString or UniversalString of a bad length or with
// surrogates. It also refuses BER that OpenSSL would hash anyway: indefinite
// or non-minimal lengths, constructed (segmented) strings, BIT STRINGs with
// non-zero unused bits.
func SubjectHash(rawName []byte) (string, error) {
	canon, err := canonicalName(rawName)
	if err != nil {
		return "", err
	}
	sum := sha1.Sum(canon)
	return fmt.Sprintf("%08x", binary.LittleEndian.Uint32(sum[:4])), nil
}

// canonicalName returns OpenSSL's canonical encoding of a DER Name (see
// SubjectHash).
func canonicalName(rawName []byte) ([]byte, error) {
	if len(rawName) > subjectHashNameMax {
		return nil, fmt.Errorf("subject hash: name longer than %d bytes", subjectHashNameMax)
	}
	name, rest, err := readDER(rawName)
	if err != nil {
		return nil, fmt.Errorf("subject hash: %w", err)
	}
	if len(rest) != 0 {
		return nil, errors.New("subject hash: trailing bytes after the name")
	}
	if name.class != 0 || name.tag != 16 || !name.constructed {
		return nil, errors.New("subject hash: name is not a SEQUENCE")
	}
	var out []byte
	rdns := name.content
	for i := 1; len(rdns) > 0; i++ {
		var rdn derElem
		rdn, rdns, err = readDER(rdns)
		if err != nil {
			return nil, fmt.Errorf("subject hash: RDN %d: %w", i, err)
		}
		if rdn.class != 0 || rdn.tag != 17 || !rdn.constructed {
			return nil, fmt.Errorf("subject hash: RDN %d is not a SET", i)
		}
		var avas [][]byte
		for j, rest := 1, rdn.content; len(rest) > 0; j++ {
			var ava derElem
			ava, rest, err = readDER(rest)
			if err != nil {
				return nil, fmt.Errorf("subject hash: RDN %d attribute %d: %w", i, j, err)
			}
			enc, err := canonicalAVA(ava)
			if err != nil {
				return nil, fmt.Errorf("subject hash: RDN %d attribute %d: %w", i, j, err)
			}
			avas = append(avas, enc)
		}
		if len(avas) == 0 {
			// OpenSSL keeps the attributes, not the RDNs: an empty SET
			// leaves no trace.
			continue
		}
		// i2d of a SET OF sorts the DER of its members (memcmp, then the
		// shorter first), which is bytes.Compare.
		slices.SortFunc(avas, bytes.Compare)
		out = canonAppendTLV(out, 0x31, bytes.Join(avas, nil))
	}
	return out, nil
}

// canonicalAVA returns the canonical encoding of one AttributeTypeAndValue.
func canonicalAVA(ava derElem) ([]byte, error) {
	if ava.class != 0 || ava.tag != 16 || !ava.constructed {
		return nil, errors.New("not a SEQUENCE")
	}
	oid, rest, err := readDER(ava.content)
	if err != nil {
		return nil, err
	}
	if oid.class != 0 || oid.tag != 6 || oid.constructed {
		return nil, errors.New("attribute type is not an OBJECT IDENTIFIER")
	}
	if err := canonCheckOID(oid.content); err != nil {
		return nil, err
	}
	val, rest, err := readDER(rest)
	if err != nil {
		return nil, fmt.Errorf("attribute value: %w", err)
	}
	if len(rest) != 0 {
		return nil, errors.New("trailing bytes after the attribute value")
	}
	value, err := canonicalValue(val)
	if err != nil {
		return nil, err
	}
	body := canonAppendTLV(nil, 0x06, oid.content)
	body = append(body, value...)
	return canonAppendTLV(nil, 0x30, body), nil
}

// canonCheckOID applies the checks of OpenSSL's c2i_ASN1_OBJECT: not empty,
// not truncated, every subidentifier minimally encoded.
func canonCheckOID(b []byte) error {
	if len(b) == 0 || b[len(b)-1]&0x80 != 0 {
		return errors.New("invalid OBJECT IDENTIFIER encoding")
	}
	for i, c := range b {
		if c == 0x80 && (i == 0 || b[i-1]&0x80 == 0) {
			return errors.New("OBJECT IDENTIFIER arc not minimally encoded")
		}
	}
	return nil
}

// Universal tags of the attribute values OpenSSL parses (ASN1_PRINTABLE).
const (
	canonTagBitString       = 3
	canonTagUTF8String      = 12
	canonTagSequence        = 16
	canonTagNumericString   = 18
	canonTagPrintableString = 19
	canonTagT61String       = 20
	canonTagIA5String       = 22
	canonTagUniversalString = 28
	canonTagBMPString       = 30
)

// canonicalValue returns the canonical TLV of an attribute value.
func canonicalValue(v derElem) ([]byte, error) {
	if v.class != 0 {
		return nil, fmt.Errorf("attribute value of class %d: OpenSSL accepts universal types only", v.class)
	}
	switch v.tag {
	case canonTagUTF8String, canonTagPrintableString, canonTagT61String, canonTagIA5String,
		canonTagUniversalString, canonTagBMPString:
		if v.constructed {
			return nil, fmt.Errorf("constructed string (tag %d) is not DER", v.tag)
		}
		s, err := canonToUTF8(v.tag, v.content)
		if err != nil {
			return nil, err
		}
		return canonAppendTLV(nil, canonTagUTF8String, canonFold(s)), nil
	case canonTagNumericString, 7, 8, 9, 11, 13, 14, 15, 29:
		// Kept as is. The odd universal types are B_ASN1_UNKNOWN, which
		// ASN1_PRINTABLE accepts.
		if v.constructed {
			return nil, fmt.Errorf("constructed string (tag %d) is not DER", v.tag)
		}
		return canonAppendTLV(nil, byte(v.tag), v.content), nil
	case canonTagBitString:
		if v.constructed {
			return nil, errors.New("constructed BIT STRING is not DER")
		}
		if err := canonCheckBitString(v.content); err != nil {
			return nil, err
		}
		return canonAppendTLV(nil, canonTagBitString, v.content), nil
	case canonTagSequence:
		if !v.constructed {
			return nil, errors.New("primitive SEQUENCE")
		}
		return canonAppendTLV(nil, 0x20|canonTagSequence, v.content), nil
	}
	return nil, fmt.Errorf("attribute value of type %d: OpenSSL does not accept it in names", v.tag)
}

// canonCheckBitString accepts the DER BIT STRINGs, which OpenSSL re-encodes
// unchanged.
func canonCheckBitString(b []byte) error {
	if len(b) == 0 {
		return errors.New("empty BIT STRING")
	}
	unused := b[0]
	if unused > 7 || (len(b) == 1 && unused != 0) {
		return fmt.Errorf("BIT STRING with %d unused bits", unused)
	}
	if len(b) > 1 && b[len(b)-1]&(1<<unused-1) != 0 {
		return errors.New("BIT STRING with non-zero unused bits is not DER")
	}
	return nil
}

// canonToUTF8 converts a string value to UTF-8 as ASN1_STRING_to_UTF8 does.
func canonToUTF8(tag int, b []byte) ([]byte, error) {
	switch tag {
	case canonTagUTF8String:
		if !utf8.Valid(b) {
			return nil, errors.New("invalid UTF8String")
		}
		return b, nil
	case canonTagBMPString:
		if len(b)%2 != 0 {
			return nil, fmt.Errorf("BMPString of odd length %d", len(b))
		}
		out := make([]byte, 0, len(b)*3/2)
		for i := 0; i < len(b); i += 2 {
			r := rune(b[i])<<8 | rune(b[i+1])
			if r >= 0xd800 && r <= 0xdfff {
				// OpenSSL reads UCS-2: a surrogate is an illegal character.
				return nil, fmt.Errorf("BMPString with surrogate U+%04X", r)
			}
			out = utf8.AppendRune(out, r)
		}
		return out, nil
	case canonTagUniversalString:
		if len(b)%4 != 0 {
			return nil, fmt.Errorf("UniversalString of length %d, not a multiple of 4", len(b))
		}
		out := make([]byte, 0, len(b))
		for i := 0; i < len(b); i += 4 {
			r := binary.BigEndian.Uint32(b[i:])
			if r > utf8.MaxRune || (r >= 0xd800 && r <= 0xdfff) {
				return nil, fmt.Errorf("UniversalString with invalid character %#x", r)
			}
			out = utf8.AppendRune(out, rune(r))
		}
		return out, nil
	}
	// PrintableString, T61String, IA5String: one byte a character, Latin-1.
	out := make([]byte, 0, len(b))
	for _, c := range b {
		out = utf8.AppendRune(out, rune(c))
	}
	return out, nil
}

// canonIsSpace is isspace in the C locale (ossl_isspace).
func canonIsSpace(c byte) bool { return c == ' ' || (c >= '\t' && c <= '\r') }

// canonFold applies asn1_string_canon to UTF-8 text: trim whitespace,
// collapse inner runs of whitespace to one space, lower-case ASCII letters.
// Bytes of multi-byte characters are copied unchanged.
func canonFold(s []byte) []byte {
	start, end := 0, len(s)
	for start < end && canonIsSpace(s[start]) {
		start++
	}
	for end > start && canonIsSpace(s[end-1]) {
		end--
	}
	out := make([]byte, 0, end-start)
	for i := start; i < end; {
		c := s[i]
		switch {
		case c >= 0x80:
			out = append(out, c)
			i++
		case canonIsSpace(c):
			out = append(out, ' ')
			for i < end && canonIsSpace(s[i]) {
				i++
			}
		default:
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			out = append(out, c)
			i++
		}
	}
	return out
}

// canonAppendTLV appends a DER element with a one-byte tag and a minimal
// definite length.
func canonAppendTLV(dst []byte, tag byte, content []byte) []byte {
	dst = append(dst, tag)
	n := len(content)
	switch {
	case n < 0x80:
		dst = append(dst, byte(n))
	case n < 1<<8:
		dst = append(dst, 0x81, byte(n))
	case n < 1<<16:
		dst = append(dst, 0x82, byte(n>>8), byte(n))
	case n < 1<<24:
		dst = append(dst, 0x83, byte(n>>16), byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, content...)
}
