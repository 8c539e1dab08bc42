package smime

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/smallstep/pkcs7"
)

// Limits on the PKCS#7 structure, checked before the library sees it. The
// library's BER-to-DER converter recurses once per nesting level and builds
// one object per element; without these bounds a small hostile input could
// exhaust the stack (a fatal error, not a recoverable panic) or memory.
// Real signatures nest about 12 deep; OpenSSL's streamed (BER) output
// splits the content into 4 KiB chunks, so a 16 MiB list is ~4k elements.
const (
	maxBERDepth    = 40
	maxBERElements = 1 << 20
)

// DER of the ContentInfo.contentType OID id-signedData (1.2.840.113549.1.7.2).
var oidSignedDataDER = []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02}

// parsePKCS7 decodes a SignedData ContentInfo. It never panics and every
// error wraps ErrMalformed.
func parsePKCS7(der []byte) (p7 *pkcs7.PKCS7, err error) {
	if len(der) == 0 {
		return nil, fmt.Errorf("%w: empty pkcs#7 signature", ErrMalformed)
	}
	if err := checkBER(der); err != nil {
		return nil, fmt.Errorf("%w: pkcs#7 signature: %v", ErrMalformed, err)
	}
	if !isSignedData(der) {
		return nil, fmt.Errorf("%w: pkcs#7 structure is not signed-data", ErrMalformed)
	}
	defer func() {
		if r := recover(); r != nil {
			p7, err = nil, fmt.Errorf("%w: pkcs#7 decoder failed: %v", ErrMalformed, r)
		}
	}()
	p7, err = pkcs7.Parse(der)
	if err != nil {
		return nil, fmt.Errorf("%w: decoding pkcs#7 signed-data: %v", ErrMalformed, err)
	}
	return p7, nil
}

// isSignedData reports whether b starts with a SEQUENCE (definite or
// indefinite length) whose first element is the id-signedData OID.
func isSignedData(b []byte) bool {
	if len(b) < 2 || b[0] != 0x30 {
		return false
	}
	i := 2
	if l := b[1]; l > 0x80 {
		i += int(l & 0x7f)
	}
	return len(b) >= i+len(oidSignedDataDER) && bytes.Equal(b[i:i+len(oidSignedDataDER)], oidSignedDataDER)
}

// checkBER walks the first BER/DER element of b iteratively and rejects
// truncated or overrunning elements, nesting deeper than maxBERDepth and
// more than maxBERElements elements. Trailing bytes are not examined.
func checkBER(b []byte) error {
	type frame struct {
		end        int
		indefinite bool
	}
	var stack []frame
	pos, elements := 0, 0
	for {
		// Close the constructed elements that end here.
		for len(stack) > 0 {
			top := stack[len(stack)-1]
			if top.indefinite {
				if pos+1 < len(b) && b[pos] == 0 && b[pos+1] == 0 {
					pos += 2
					stack = stack[:len(stack)-1]
					continue
				}
				break
			}
			if pos == top.end {
				stack = stack[:len(stack)-1]
				continue
			}
			if pos > top.end {
				return errors.New("asn.1 element overruns its parent")
			}
			break
		}
		if len(stack) == 0 && elements > 0 {
			return nil
		}
		elements++
		if elements > maxBERElements {
			return fmt.Errorf("more than %d asn.1 elements", maxBERElements)
		}
		if pos >= len(b) {
			return errors.New("truncated asn.1 data")
		}
		tag := b[pos]
		pos++
		if tag&0x1f == 0x1f { // high tag number form
			for n := 0; ; n++ {
				if pos >= len(b) || n > 4 {
					return errors.New("bad asn.1 tag")
				}
				c := b[pos]
				pos++
				if c < 0x80 {
					break
				}
			}
		}
		if pos >= len(b) {
			return errors.New("truncated asn.1 data")
		}
		constructed := tag&0x20 != 0
		l := b[pos]
		pos++
		if l == 0x80 {
			if !constructed {
				return errors.New("indefinite length on a primitive asn.1 element")
			}
			stack = append(stack, frame{indefinite: true})
		} else {
			length := int(l)
			if l > 0x80 {
				k := int(l & 0x7f)
				if k > 4 || pos+k > len(b) {
					return errors.New("bad asn.1 length")
				}
				length = 0
				for _, c := range b[pos : pos+k] {
					length = length<<8 | int(c)
				}
				pos += k
			}
			if length > len(b)-pos {
				return errors.New("truncated asn.1 data")
			}
			if constructed {
				stack = append(stack, frame{end: pos + length})
			} else {
				pos += length
			}
		}
		if len(stack) > maxBERDepth {
			return fmt.Errorf("asn.1 nesting deeper than %d", maxBERDepth)
		}
	}
}
