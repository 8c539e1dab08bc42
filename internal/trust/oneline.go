package trust

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// onelineMax is OpenSSL's NAME_ONELINE_MAX: X509_NAME_oneline gives up on
// names whose rendering would be longer.
const onelineMax = 1024 * 1024

// oidTextMax is the longest dotted OID X509_NAME_oneline prints: it renders
// unknown types into an 80-byte buffer (79 characters and a NUL).
const oidTextMax = 79

// Oneline renders a DER-encoded X.509 Name (a certificate's RawSubject or
// RawIssuer) exactly as OpenSSL 3.0's X509_NAME_oneline does, which is what
// `openssl x509 -noout -subject -nameopt compat` prints after "subject=" and
// what M2Crypto's str(X509_Name) returns:
//
//   - each RDN in encoded order, introduced by "/"; the further attributes of
//     a multi-valued RDN are introduced by "+" instead;
//   - the attribute type as OpenSSL's short name (C, ST, L, O, OU, CN, DC,
//     UID, emailAddress, serialNumber, title, GN, SN, ...), or in dotted form
//     when OpenSSL has no name for it (cut at 79 characters, as OpenSSL does);
//   - the value's content bytes as they are encoded (BMPString and
//     UniversalString are not decoded), with every byte below 0x20 or above
//     0x7E written as \xHH (upper-case hex) and "/" and "+" preceded by a
//     backslash.
//
// Values must be one of the string types OpenSSL accepts in names
// (UTF8String, NumericString, PrintableString, T61String, VideotexString,
// IA5String, UniversalString, BMPString) or a BIT STRING; other types, and
// bytes that are not a DER Name, are an error. An empty Name renders as "".
func Oneline(rawName []byte) (string, error) {
	return oneline(rawName, false)
}

// OnelineLegacy renders a Name as X509_NAME_oneline of OpenSSL before 3.0
// (1.0.x and 1.1.x, as on older vmcatcher hosts) does: identical to Oneline
// except that every attribute, including the parts of a multi-valued RDN, is
// introduced by "/" and "/" and "+" inside values are not escaped. The two
// forms differ only for names with multi-valued RDNs or a "/" or "+" in a
// value.
func OnelineLegacy(rawName []byte) (string, error) {
	return oneline(rawName, true)
}

func oneline(rawName []byte, legacy bool) (string, error) {
	name, rest, err := readDER(rawName)
	if err != nil {
		return "", fmt.Errorf("parse name: %w", err)
	}
	if len(rest) != 0 {
		return "", errors.New("parse name: trailing bytes after the name")
	}
	if name.class != 0 || name.tag != 16 || !name.constructed {
		return "", errors.New("parse name: not a SEQUENCE")
	}
	var b strings.Builder
	rdns := name.content
	for i := 0; len(rdns) > 0; i++ {
		var rdn derElem
		rdn, rdns, err = readDER(rdns)
		if err != nil {
			return "", fmt.Errorf("parse name: RDN %d: %w", i+1, err)
		}
		if rdn.class != 0 || rdn.tag != 17 || !rdn.constructed {
			return "", fmt.Errorf("parse name: RDN %d: not a SET", i+1)
		}
		avas := rdn.content
		for j := 0; len(avas) > 0; j++ {
			var ava derElem
			ava, avas, err = readDER(avas)
			if err != nil {
				return "", fmt.Errorf("parse name: RDN %d attribute %d: %w", i+1, j+1, err)
			}
			typ, value, err := parseAVA(ava)
			if err != nil {
				return "", fmt.Errorf("parse name: RDN %d attribute %d: %w", i+1, j+1, err)
			}
			if j > 0 && !legacy {
				b.WriteByte('+')
			} else {
				b.WriteByte('/')
			}
			b.WriteString(typ)
			b.WriteByte('=')
			writeEscaped(&b, value, legacy)
			if b.Len() > onelineMax {
				return "", fmt.Errorf("name longer than %d bytes", onelineMax)
			}
		}
	}
	return b.String(), nil
}

const hexDigits = "0123456789ABCDEF"

func writeEscaped(b *strings.Builder, value []byte, legacy bool) {
	for _, c := range value {
		switch {
		case c < 0x20 || c > 0x7e:
			b.WriteString(`\x`)
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0x0f])
		case (c == '/' || c == '+') && !legacy:
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
}

// parseAVA returns the printed attribute type and the value bytes of one
// AttributeTypeAndValue.
func parseAVA(ava derElem) (string, []byte, error) {
	if ava.class != 0 || ava.tag != 16 || !ava.constructed {
		return "", nil, errors.New("not a SEQUENCE")
	}
	oid, rest, err := readDER(ava.content)
	if err != nil {
		return "", nil, err
	}
	if oid.class != 0 || oid.tag != 6 || oid.constructed {
		return "", nil, errors.New("attribute type is not an OBJECT IDENTIFIER")
	}
	dotted, err := oidString(oid.content)
	if err != nil {
		return "", nil, err
	}
	val, rest, err := readDER(rest)
	if err != nil {
		return "", nil, fmt.Errorf("attribute value: %w", err)
	}
	if len(rest) != 0 {
		return "", nil, errors.New("trailing bytes after the attribute value")
	}
	typ, ok := opensslShortNames[dotted]
	if !ok {
		typ = dotted
		if len(typ) > oidTextMax {
			typ = typ[:oidTextMax]
		}
	}
	if val.class != 0 || val.constructed {
		return "", nil, fmt.Errorf("attribute %s: unsupported value type (class %d, tag %d)", dotted, val.class, val.tag)
	}
	switch val.tag {
	case 12, 18, 19, 20, 21, 22, 28, 30:
		// UTF8String, NumericString, PrintableString, T61String,
		// VideotexString, IA5String, UniversalString, BMPString.
		return typ, val.content, nil
	case 3: // BIT STRING: OpenSSL keeps the bits without the unused-bits octet.
		if len(val.content) == 0 {
			return "", nil, fmt.Errorf("attribute %s: empty BIT STRING", dotted)
		}
		return typ, val.content[1:], nil
	}
	return "", nil, fmt.Errorf("attribute %s: unsupported value type (tag %d)", dotted, val.tag)
}

// oidString renders the content octets of an OBJECT IDENTIFIER in dotted
// form, with arbitrarily large arcs as OpenSSL does.
func oidString(b []byte) (string, error) {
	if len(b) == 0 {
		return "", errors.New("empty OBJECT IDENTIFIER")
	}
	var out strings.Builder
	first := true
	for len(b) > 0 {
		var (
			small  uint64
			bigArc *big.Int
			n      int
			closed bool
		)
		if b[0] == 0x80 {
			return "", errors.New("OBJECT IDENTIFIER arc not minimally encoded")
		}
		for n < len(b) {
			c := b[n]
			n++
			if bigArc == nil && small > (1<<56) {
				bigArc = new(big.Int).SetUint64(small)
			}
			if bigArc != nil {
				bigArc.Lsh(bigArc, 7)
				bigArc.Or(bigArc, big.NewInt(int64(c&0x7f)))
			} else {
				small = small<<7 | uint64(c&0x7f)
			}
			if c&0x80 == 0 {
				closed = true
				break
			}
		}
		if !closed {
			return "", errors.New("truncated OBJECT IDENTIFIER")
		}
		b = b[n:]
		if first {
			first = false
			switch {
			case bigArc != nil:
				out.WriteString("2.")
				out.WriteString(new(big.Int).Sub(bigArc, big.NewInt(80)).String())
			case small < 80:
				out.WriteString(strconv.FormatUint(small/40, 10))
				out.WriteByte('.')
				out.WriteString(strconv.FormatUint(small%40, 10))
			default:
				out.WriteString("2.")
				out.WriteString(strconv.FormatUint(small-80, 10))
			}
			continue
		}
		out.WriteByte('.')
		if bigArc != nil {
			out.WriteString(bigArc.String())
		} else {
			out.WriteString(strconv.FormatUint(small, 10))
		}
	}
	return out.String(), nil
}

// derElem is one DER TLV.
type derElem struct {
	class       int
	tag         int
	constructed bool
	content     []byte
}

// readDER reads one DER element from b (definite, minimal lengths only).
func readDER(b []byte) (derElem, []byte, error) {
	var e derElem
	if len(b) < 2 {
		return e, nil, errors.New("truncated DER element")
	}
	e.class = int(b[0] >> 6)
	e.constructed = b[0]&0x20 != 0
	e.tag = int(b[0] & 0x1f)
	i := 1
	if e.tag == 0x1f { // high tag number form
		e.tag = 0
		for {
			if i >= len(b) {
				return e, nil, errors.New("truncated DER tag")
			}
			c := b[i]
			i++
			if e.tag == 0 && c == 0x80 {
				return e, nil, errors.New("DER tag not minimally encoded")
			}
			if e.tag > 1<<20 {
				return e, nil, errors.New("DER tag too large")
			}
			e.tag = e.tag<<7 | int(c&0x7f)
			if c&0x80 == 0 {
				break
			}
		}
		if e.tag < 0x1f {
			return e, nil, errors.New("DER tag not minimally encoded")
		}
	}
	if i >= len(b) {
		return e, nil, errors.New("truncated DER length")
	}
	l := int(b[i])
	i++
	if l&0x80 != 0 {
		n := l & 0x7f
		if n == 0 {
			return e, nil, errors.New("indefinite length is not DER")
		}
		if n > 4 {
			return e, nil, errors.New("DER length too large")
		}
		if i+n > len(b) {
			return e, nil, errors.New("truncated DER length")
		}
		if b[i] == 0 {
			return e, nil, errors.New("DER length not minimally encoded")
		}
		l = 0
		for _, c := range b[i : i+n] {
			l = l<<8 | int(c)
		}
		i += n
		if l < 0x80 {
			return e, nil, errors.New("DER length not minimally encoded")
		}
	}
	if l > len(b)-i {
		return e, nil, errors.New("truncated DER content")
	}
	e.content = b[i : i+l]
	return e, b[i+l:], nil
}
