package trust

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/clr-suite/clr/internal/testpki"
)

// Attribute types of the hand-built names.
var (
	shOIDCN    = asn1.ObjectIdentifier{2, 5, 4, 3}
	shOIDOU    = asn1.ObjectIdentifier{2, 5, 4, 11}
	shOIDO     = asn1.ObjectIdentifier{2, 5, 4, 10}
	shOIDC     = asn1.ObjectIdentifier{2, 5, 4, 6}
	shOIDDC    = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
	shOIDUID   = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}
	shOIDEmail = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
	shOIDUniq  = asn1.ObjectIdentifier{2, 5, 4, 45} // x500UniqueIdentifier, a BIT STRING
	shOIDOther = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 7}
)

// shTLV DER-encodes one universal element (encoding/asn1, independently of
// the code under test).
func shTLV(tag int, compound bool, content []byte) []byte {
	b, err := asn1.Marshal(asn1.RawValue{Tag: tag, IsCompound: compound, Bytes: content})
	if err != nil {
		panic(err)
	}
	return b
}

func shStr(tag int, s string) []byte { return shTLV(tag, false, []byte(s)) }

func shOID(oid asn1.ObjectIdentifier) []byte {
	b, err := asn1.Marshal(oid)
	if err != nil {
		panic(err)
	}
	return b
}

// shAVA is an AttributeTypeAndValue; value is a whole TLV.
func shAVA(oid asn1.ObjectIdentifier, value []byte) []byte {
	return shTLV(asn1.TagSequence, true, append(shOID(oid), value...))
}

// shRDN is a SET of the attributes in the given order (not sorted).
func shRDN(avas ...[]byte) []byte { return shTLV(asn1.TagSet, true, bytes.Join(avas, nil)) }

func shName(rdns ...[]byte) []byte { return shTLV(asn1.TagSequence, true, bytes.Join(rdns, nil)) }

// shCN is a name of one CN of the given string type.
func shCN(tag int, s string) []byte { return shName(shRDN(shAVA(shOIDCN, shStr(tag, s)))) }

func shBMP(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u>>8), byte(u))
	}
	return b
}

func shUniv(s string) []byte {
	var b []byte
	for _, r := range s {
		b = append(b, byte(r>>24), byte(r>>16), byte(r>>8), byte(r))
	}
	return b
}

func shDN(t testing.TB, oneline string) []byte {
	t.Helper()
	raw, err := testpki.ParseDN(oneline)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

const (
	shTagVisible  = 26
	shTagVideotex = 21
	shTagGeneral  = 27
	shTagGraphic  = 25
	shTagEnum     = 10
	shTagObjDesc  = 7
)

// Hashes printed by `openssl x509 -hash` (OpenSSL 3.0) for the names below.
const (
	shHashEmpty     = "eea339da" // SHA-1 of zero bytes
	shHashIGTF      = "8a760b68" // /DC=org/DC=example/CN=Example CA
	shHashExampleCA = "119708d0" // CN=example ca
	shHashEcole     = "7b661965" // CN=École
)

type shCase struct {
	name string
	raw  []byte
	// want is what openssl prints; "" means SubjectHash returns an error.
	want string
	// ber marks inputs SubjectHash refuses as not DER although OpenSSL
	// hashes them.
	ber bool
}

func shCases(t testing.TB) []shCase {
	long := strings.Repeat("Grid  Certificate\tAuthority ", 12) // > 255 bytes
	return []shCase{
		{name: "empty name", raw: shName(), want: shHashEmpty},
		{name: "only empty RDNs", raw: shName(shRDN(), shRDN()), want: shHashEmpty},
		{name: "IGTF DN", raw: shDN(t, "/DC=org/DC=example/CN=Example CA"), want: shHashIGTF},
		{name: "IGTF DN folded", raw: shName(
			shRDN(shAVA(shOIDDC, shStr(asn1.TagIA5String, " ORG"))),
			shRDN(shAVA(shOIDDC, shStr(asn1.TagUTF8String, "Example\t"))),
			shRDN(shAVA(shOIDCN, shStr(asn1.TagPrintableString, "  EXAMPLE    Ca  "))),
		), want: shHashIGTF},
		{name: "IGTF DN with an empty RDN", raw: shName(
			shRDN(shAVA(shOIDDC, shStr(asn1.TagIA5String, "org"))),
			shRDN(),
			shRDN(shAVA(shOIDDC, shStr(asn1.TagIA5String, "example"))),
			shRDN(shAVA(shOIDCN, shStr(asn1.TagUTF8String, "Example CA"))),
		), want: shHashIGTF},
		{name: "UTF8String", raw: shCN(asn1.TagUTF8String, "example ca"), want: shHashExampleCA},
		{name: "PrintableString upper case", raw: shCN(asn1.TagPrintableString, "EXAMPLE CA"), want: shHashExampleCA},
		{name: "IA5String", raw: shCN(asn1.TagIA5String, "Example CA"), want: shHashExampleCA},
		{name: "T61String", raw: shCN(asn1.TagT61String, "Example CA"), want: shHashExampleCA},
		{name: "BMPString", raw: shCN(asn1.TagBMPString, string(shBMP("Example CA"))), want: shHashExampleCA},
		{name: "UniversalString", raw: shCN(28, string(shUniv(" Example CA "))), want: shHashExampleCA},
		{name: "all C whitespace", raw: shCN(asn1.TagUTF8String, "\t\n\v\f\r Example \t\n\v\f\r CA\r\n"), want: shHashExampleCA},
		{name: "NBSP is not whitespace", raw: shCN(asn1.TagUTF8String, "Example\u00a0CA"), want: "59462a4c"},
		{name: "non-ASCII kept", raw: shCN(asn1.TagUTF8String, "Émile ÉCOLE Ω 漢字"), want: "153a1898"},
		{name: "non-ASCII lower", raw: shCN(asn1.TagUTF8String, "émile école ω 漢字"), want: "7fa2e0d3"},
		{name: "non-ASCII ASCII-folded", raw: shCN(asn1.TagUTF8String, "  Émile   ÉcOlE Ω\t漢字 "), want: "153a1898"},
		{name: "UTF8 École", raw: shCN(asn1.TagUTF8String, "École"), want: shHashEcole},
		{name: "T61String Latin-1", raw: shCN(asn1.TagT61String, "\xc9COLE"), want: shHashEcole},
		{name: "PrintableString Latin-1 byte", raw: shCN(asn1.TagPrintableString, "\xc9cole"), want: shHashEcole},
		{name: "IA5String Latin-1 byte", raw: shCN(asn1.TagIA5String, " \xc9cole"), want: shHashEcole},
		{name: "BMPString École", raw: shCN(asn1.TagBMPString, string(shBMP("ÉCOLE"))), want: shHashEcole},
		{name: "UniversalString non-BMP", raw: shCN(28, string(shUniv("Clef 𝄞 G"))), want: "ab6a03af"},
		{name: "UTF8 non-BMP", raw: shCN(asn1.TagUTF8String, "clef 𝄞 g"), want: "ab6a03af"},
		{name: "BMPString CJK", raw: shCN(asn1.TagBMPString, string(shBMP("漢字 ABC"))), want: "c6289961"},
		{name: "UTF8 CJK", raw: shCN(asn1.TagUTF8String, "漢字  abc"), want: "c6289961"},
		{name: "NUL byte", raw: shCN(asn1.TagUTF8String, "a\x00B"), want: "5e04e6bb"},
		{name: "empty value", raw: shCN(asn1.TagUTF8String, ""), want: "5da78770"},
		{name: "blank value", raw: shCN(asn1.TagPrintableString, "  \t "), want: "5da78770"},
		{name: "long value", raw: shCN(asn1.TagUTF8String, long), want: "41290a17"},
		{name: "emailAddress", raw: shName(
			shRDN(shAVA(shOIDC, shStr(asn1.TagPrintableString, "NL"))),
			shRDN(shAVA(shOIDO, shStr(asn1.TagPrintableString, "Example Org"))),
			shRDN(shAVA(shOIDCN, shStr(asn1.TagUTF8String, "John Doe"))),
			shRDN(shAVA(shOIDEmail, shStr(asn1.TagIA5String, "John.Doe@Example.ORG"))),
		), want: "e7fc53a6"},
		{name: "emailAddress folded", raw: shName(
			shRDN(shAVA(shOIDC, shStr(asn1.TagUTF8String, "nl"))),
			shRDN(shAVA(shOIDO, shStr(asn1.TagUTF8String, "EXAMPLE ORG"))),
			shRDN(shAVA(shOIDCN, shStr(asn1.TagBMPString, string(shBMP("john  doe"))))),
			shRDN(shAVA(shOIDEmail, shStr(asn1.TagIA5String, "john.doe@example.org "))),
		), want: "e7fc53a6"},
		{name: "multi-valued RDN", raw: shName(
			shRDN(shAVA(shOIDDC, shStr(asn1.TagIA5String, "org"))),
			shRDN(shAVA(shOIDCN, shStr(asn1.TagUTF8String, "B")), shAVA(shOIDCN, shStr(asn1.TagUTF8String, "a")),
				shAVA(shOIDUID, shStr(asn1.TagUTF8String, "jdoe"))),
		), want: "ef87f3e5"},
		{name: "multi-valued RDN other order", raw: shName(
			shRDN(shAVA(shOIDDC, shStr(asn1.TagIA5String, "org"))),
			shRDN(shAVA(shOIDUID, shStr(asn1.TagPrintableString, "JDOE")), shAVA(shOIDCN, shStr(asn1.TagPrintableString, "b")),
				shAVA(shOIDCN, shStr(asn1.TagBMPString, string(shBMP("A"))))),
		), want: "ef87f3e5"},
		{name: "multi-valued RDN split", raw: shName(
			shRDN(shAVA(shOIDDC, shStr(asn1.TagIA5String, "org"))),
			shRDN(shAVA(shOIDCN, shStr(asn1.TagUTF8String, "a"))),
			shRDN(shAVA(shOIDCN, shStr(asn1.TagUTF8String, "b"))),
			shRDN(shAVA(shOIDUID, shStr(asn1.TagUTF8String, "jdoe"))),
		), want: "0a7fc9d9"},
		{name: "multi-valued RDN sorted by length", raw: shName(
			shRDN(shAVA(shOIDCN, shStr(asn1.TagUTF8String, "ab")), shAVA(shOIDCN, shStr(asn1.TagUTF8String, "A"))),
		), want: "cdf4eb34"},
		{name: "multi-valued RDN sorted by length, other order", raw: shName(
			shRDN(shAVA(shOIDCN, shStr(asn1.TagUTF8String, "a")), shAVA(shOIDCN, shStr(asn1.TagUTF8String, "AB"))),
		), want: "cdf4eb34"},
		{name: "NumericString kept", raw: shCN(asn1.TagNumericString, " 12  34 "), want: "9c9cb9ab"},
		{name: "UTF8 of the NumericString", raw: shCN(asn1.TagUTF8String, "12 34"), want: "79aad3a9"},
		{name: "BIT STRING", raw: shName(shRDN(shAVA(shOIDUniq, shTLV(asn1.TagBitString, false, []byte{0, 0xab})))), want: "032ecc2f"},
		{name: "BIT STRING unused bits", raw: shName(shRDN(shAVA(shOIDUniq, shTLV(asn1.TagBitString, false, []byte{4, 0xf0})))), want: "56fc06f7"},
		{name: "empty BIT STRING", raw: shName(shRDN(shAVA(shOIDUniq, shTLV(asn1.TagBitString, false, []byte{0})))), want: "0bdb084c"},
		{name: "SEQUENCE kept", raw: shName(shRDN(shAVA(shOIDCN, shTLV(asn1.TagSequence, true, shStr(asn1.TagUTF8String, " A  B "))))), want: "04ad0243"},
		{name: "ObjectDescriptor kept", raw: shCN(shTagObjDesc, " AbC "), want: "87a3c0fb"},
		{name: "unknown attribute type", raw: shName(shRDN(shAVA(shOIDOther, shStr(asn1.TagUTF8String, "Value")))), want: "7a3a554e"},

		// Errors, that OpenSSL refuses too.
		{name: "VisibleString", raw: shCN(shTagVisible, "Example CA")},
		{name: "VideotexString", raw: shCN(shTagVideotex, "Example CA")},
		{name: "GeneralString", raw: shCN(shTagGeneral, "Example CA")},
		{name: "GraphicString", raw: shCN(shTagGraphic, "Example CA")},
		{name: "OCTET STRING", raw: shCN(asn1.TagOctetString, "Example CA")},
		{name: "INTEGER", raw: shName(shRDN(shAVA(shOIDCN, shTLV(asn1.TagInteger, false, []byte{1}))))},
		{name: "ENUMERATED", raw: shName(shRDN(shAVA(shOIDCN, shTLV(shTagEnum, false, []byte{1}))))},
		{name: "BOOLEAN", raw: shName(shRDN(shAVA(shOIDCN, shTLV(asn1.TagBoolean, false, []byte{0xff}))))},
		{name: "NULL", raw: shName(shRDN(shAVA(shOIDCN, shTLV(asn1.TagNull, false, nil))))},
		{name: "OBJECT IDENTIFIER value", raw: shName(shRDN(shAVA(shOIDCN, shOID(shOIDCN))))},
		{name: "UTCTime", raw: shCN(asn1.TagUTCTime, "260101000000Z")},
		{name: "SET value", raw: shName(shRDN(shAVA(shOIDCN, shTLV(asn1.TagSet, true, shStr(asn1.TagUTF8String, "a")))))},
		{name: "primitive SEQUENCE value", raw: shName(shRDN(shAVA(shOIDCN, shTLV(asn1.TagSequence, false, []byte("a")))))},
		{name: "context-specific value", raw: shName(shRDN(shAVA(shOIDCN, []byte{0x80, 1, 'a'})))},
		{name: "high tag number value", raw: shName(shRDN(shAVA(shOIDCN, []byte{0x1f, 0x21, 1, 'a'})))},
		{name: "invalid UTF-8", raw: shCN(asn1.TagUTF8String, "a\xffb")},
		{name: "overlong UTF-8", raw: shCN(asn1.TagUTF8String, "a\xc0\x80")},
		{name: "UTF-8 surrogate", raw: shCN(asn1.TagUTF8String, "\xed\xa0\x80")},
		{name: "UTF-8 beyond U+10FFFF", raw: shCN(asn1.TagUTF8String, "\xf4\x90\x80\x80")},
		{name: "truncated UTF-8", raw: shCN(asn1.TagUTF8String, "\xe6\xbc")},
		{name: "BMPString odd length", raw: shCN(asn1.TagBMPString, "\x00A\x00")},
		{name: "BMPString surrogate pair", raw: shCN(asn1.TagBMPString, string(shBMP("𝄞")))},
		{name: "UniversalString bad length", raw: shCN(28, "\x00\x00\x00A\x00")},
		{name: "UniversalString beyond U+10FFFF", raw: shCN(28, "\x00\x11\x00\x00")},
		{name: "UniversalString surrogate", raw: shCN(28, "\x00\x00\xd8\x00")},
		{name: "BIT STRING without octets", raw: shName(shRDN(shAVA(shOIDUniq, shTLV(asn1.TagBitString, false, nil))))},
		{name: "BIT STRING 8 unused bits", raw: shName(shRDN(shAVA(shOIDUniq, shTLV(asn1.TagBitString, false, []byte{8, 0}))))},
		{name: "empty OID", raw: shName(shRDN(shTLV(asn1.TagSequence, true, append([]byte{6, 0}, shStr(asn1.TagUTF8String, "a")...))))},
		{name: "truncated OID", raw: shName(shRDN(shTLV(asn1.TagSequence, true, append([]byte{6, 2, 0x55, 0x84}, shStr(asn1.TagUTF8String, "a")...))))},
		{name: "non-minimal OID", raw: shName(shRDN(shTLV(asn1.TagSequence, true, append([]byte{6, 3, 0x55, 0x80, 0x03}, shStr(asn1.TagUTF8String, "a")...))))},
		{name: "attribute without value", raw: shName(shRDN(shTLV(asn1.TagSequence, true, shOID(shOIDCN))))},
		{name: "attribute with two values", raw: shName(shRDN(shTLV(asn1.TagSequence, true,
			bytes.Join([][]byte{shOID(shOIDCN), shStr(asn1.TagUTF8String, "a"), shStr(asn1.TagUTF8String, "b")}, nil))))},
		{name: "attribute type not an OID", raw: shName(shRDN(shTLV(asn1.TagSequence, true,
			append(shStr(asn1.TagUTF8String, "CN"), shStr(asn1.TagUTF8String, "a")...))))},
		{name: "attribute is a SET", raw: shName(shRDN(shTLV(asn1.TagSet, true, append(shOID(shOIDCN), shStr(asn1.TagUTF8String, "a")...))))},
		{name: "RDN is a SEQUENCE", raw: shName(shTLV(asn1.TagSequence, true, shAVA(shOIDCN, shStr(asn1.TagUTF8String, "a"))))},
		{name: "name is a SET", raw: shTLV(asn1.TagSet, true, shRDN(shAVA(shOIDCN, shStr(asn1.TagUTF8String, "a"))))},
		{name: "trailing bytes in the RDN", raw: shName(shTLV(asn1.TagSet, true, append(shAVA(shOIDCN, shStr(asn1.TagUTF8String, "a")), 0x30)))},

		// Not DER: refused, although OpenSSL (a BER parser) hashes them.
		{name: "constructed UTF8String", ber: true, raw: shName(shRDN(shAVA(shOIDCN,
			shTLV(asn1.TagUTF8String, true, append(shTLV(asn1.TagOctetString, false, []byte("Exa")), shTLV(asn1.TagOctetString, false, []byte("mple CA"))...)))))},
		{name: "constructed NumericString", ber: true, raw: shName(shRDN(shAVA(shOIDCN,
			shTLV(asn1.TagNumericString, true, shTLV(asn1.TagOctetString, false, []byte("12"))))))},
		{name: "non-minimal value length", ber: true, raw: shName(shRDN(shAVA(shOIDCN, []byte{asn1.TagUTF8String, 0x81, 1, 'a'})))},
		{name: "indefinite-length RDN", ber: true, raw: shName(append(append([]byte{0x31, 0x80}, shAVA(shOIDCN, shStr(asn1.TagUTF8String, "a"))...), 0, 0))},
		{name: "BIT STRING non-zero unused bits", ber: true, raw: shName(shRDN(shAVA(shOIDUniq, shTLV(asn1.TagBitString, false, []byte{4, 0xff}))))},
		{name: "empty BIT STRING with unused bits", ber: true, raw: shName(shRDN(shAVA(shOIDUniq, shTLV(asn1.TagBitString, false, []byte{3}))))},
	}
}

func TestSubjectHash(t *testing.T) {
	for _, tc := range shCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SubjectHash(tc.raw)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("SubjectHash(%x) = %s, want an error", tc.raw, got)
				}
				t.Log(err)
				if !strings.HasPrefix(err.Error(), "subject hash: ") || strings.ContainsAny(err.Error(), "\r\n") {
					t.Errorf("error %q", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("SubjectHash(%x): %v", tc.raw, err)
			}
			if got != tc.want {
				t.Errorf("SubjectHash(%x) = %s, want %s", tc.raw, got, tc.want)
			}
		})
	}
}

func TestSubjectHashCanonical(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  []byte
		want string // hex
	}{
		{"empty", shName(), ""},
		{"folded", shCN(asn1.TagPrintableString, "  Foo \t\n Bar  "), "3110300e06035504030c07666f6f20626172"},
		{"UTF-8 kept", shCN(asn1.TagUTF8String, "ÉÉ"), "310d300b06035504030c04c389c389"},
		{"T61 as Latin-1", shCN(asn1.TagT61String, "\xc9\xc9"), "310d300b06035504030c04c389c389"},
		{"BMP", shCN(asn1.TagBMPString, string(shBMP("Ω"))), "310b300906035504030c02cea9"},
		{"sorted on the canonical form", shName(shRDN(
			shAVA(shOIDCN, shStr(asn1.TagUTF8String, "abcd")),
			shAVA(shOIDCN, shStr(asn1.TagPrintableString, "ABC ")),
		)), "3119" + "300a06035504030c03616263" + "300b06035504030c0461626364"},
		{"NumericString kept", shCN(asn1.TagNumericString, " 1  2"), "310e300c0603550403120520312020" + "32"},
		{"empty RDN dropped", shName(shRDN(), shCN(asn1.TagUTF8String, "ABCD")[2:]), "310d300b06035504030c0461626364"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := canonicalName(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(got) != tc.want {
				t.Errorf("canonicalName(%x) = %x, want %s", tc.raw, got, tc.want)
			}
		})
	}
}

func TestSubjectHashMalformed(t *testing.T) {
	for _, raw := range [][]byte{
		nil,
		{},
		{0x30},
		{0x30, 0x01},
		{0x30, 0x80, 0, 0},
		{0x30, 0x81, 0x00},
		{0x30, 0x00, 0x00},
		{0x31, 0x00},
		{0x10, 0x00},
		{0x30, 0x02, 0x31, 0x01},
		{0x30, 0x84, 0xff, 0xff, 0xff, 0xff},
		{0x30, 0x85, 1, 0, 0, 0, 0},
		shName(shRDN(shAVA(shOIDCN, shStr(asn1.TagUTF8String, "a"))))[:10],
		append(shCN(asn1.TagUTF8String, "a"), 0),
		shTLV(asn1.TagSequence, true, bytes.Repeat(shRDN(), subjectHashNameMax/2)),
	} {
		if h, err := SubjectHash(raw); err == nil {
			t.Errorf("SubjectHash(%.40x) = %s, want an error", raw, h)
		}
	}
}

// shKey is the throwaway signing key of the certificates and CRLs made for
// openssl.
func shKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// shCert makes a self-issued certificate whose subject and issuer are raw
// (used verbatim by crypto/x509, even when it is not a valid name).
func shCert(t testing.TB, key *ecdsa.PrivateKey, raw []byte, tmpl *x509.Certificate) []byte {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.Certificate{}
	}
	tmpl.SerialNumber = big.NewInt(1)
	tmpl.RawSubject = raw
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	return der
}

func shWritePEM(t testing.TB, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "x.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// shOpenSSLHash runs openssl with args and returns its output lines; ok is
// false when openssl failed (could not parse the input).
func shOpenSSLHash(t testing.TB, args ...string) (lines []string, ok bool, out string) {
	t.Helper()
	b, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		if _, isExit := err.(*exec.ExitError); !isExit {
			t.Fatalf("openssl %s: %v", strings.Join(args, " "), err)
		}
		return nil, false, string(b)
	}
	return strings.Fields(string(b)), true, string(b)
}

func TestSubjectHashMatchesOpenSSL(t *testing.T) {
	testpki.RequireTools(t, "openssl")
	key := shKey(t)
	for _, tc := range shCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			file := shWritePEM(t, "CERTIFICATE", shCert(t, key, tc.raw, nil))
			lines, ok, out := shOpenSSLHash(t, "x509", "-hash", "-issuer_hash", "-noout", "-in", file)
			got, err := SubjectHash(tc.raw)
			switch {
			case !ok && err == nil:
				t.Fatalf("openssl refuses the name, SubjectHash = %s:\n%s", got, out)
			case !ok:
				t.Logf("both refuse: %v", err)
			case len(lines) != 2 || lines[0] != lines[1]:
				t.Fatalf("openssl x509 -hash -issuer_hash printed %q", out)
			case err != nil && tc.ber:
				t.Logf("openssl hashes the BER name as %s, SubjectHash refuses it: %v", lines[0], err)
			case err != nil:
				t.Fatalf("openssl hashes the name as %s, SubjectHash: %v", lines[0], err)
			case got != lines[0]:
				t.Fatalf("SubjectHash = %s, openssl %s", got, lines[0])
			}
			if ok && tc.want != "" && lines[0] != tc.want {
				t.Errorf("openssl %s, table %s", lines[0], tc.want)
			}
		})
	}
}

// TestSubjectHashGoNamesMatchOpenSSL hashes names as crypto/x509 encodes
// them (PrintableString or UTF8String) from a pkix.Name.
func TestSubjectHashGoNamesMatchOpenSSL(t *testing.T) {
	testpki.RequireTools(t, "openssl")
	key := shKey(t)
	for _, tc := range []struct {
		name    string
		subject pkix.Name
	}{
		{"IGTF-like", pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
			{Type: shOIDDC, Value: "org"}, {Type: shOIDDC, Value: "example"}, {Type: shOIDCN, Value: "Example CA"}}}},
		{"mixed case and spaces", pkix.Name{Country: []string{"nl"}, Organization: []string{"  Example   ORG "},
			OrganizationalUnit: []string{"Grid\tUnit", "second  OU"}, CommonName: " Jane\t\tDOE "}},
		{"non-ASCII", pkix.Name{Country: []string{"FR"}, Locality: []string{"Orléans"}, Organization: []string{"ÉCOLE Ω"},
			CommonName: "Zoë ÅSTRÖM 漢字 테스트"}},
		{"emailAddress and serialNumber", pkix.Name{CommonName: "Robot: Agent", SerialNumber: "0042 AB",
			ExtraNames: []pkix.AttributeTypeAndValue{{Type: shOIDEmail, Value: "Agent@EXAMPLE.org"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der := shCert(t, key, nil, &x509.Certificate{Subject: tc.subject})
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			lines, ok, out := shOpenSSLHash(t, "x509", "-hash", "-noout", "-in", shWritePEM(t, "CERTIFICATE", der))
			if !ok || len(lines) != 1 {
				t.Fatalf("openssl x509 -hash: %s", out)
			}
			got, err := SubjectHash(cert.RawSubject)
			if err != nil {
				t.Fatal(err)
			}
			if got != lines[0] {
				t.Errorf("SubjectHash(%s) = %s, openssl %s", cert.Subject, got, lines[0])
			}
		})
	}
}

// TestSubjectHashOpenSSLReq hashes names as openssl req encodes them, with
// the default string_mask (UTF8String) and with "default" (PrintableString,
// T61String and BMPString).
func TestSubjectHashOpenSSLReq(t *testing.T) {
	testpki.RequireTools(t, "openssl")
	for _, mask := range []string{"utf8only", "default"} {
		for _, subj := range []string{
			"/DC=org/DC=example/CN=Example CA",
			"/DC=ORG/DC=Example/O=Grid  Org/OU=Unit\tOne/CN=Zoë Ω 漢字+UID=JDoe/emailAddress=J.Doe@Example.ORG",
			"/C=DE/O=Société Générale/CN=Ärger ÖL",
		} {
			t.Run(mask+subj, func(t *testing.T) {
				dir := t.TempDir()
				cfg := filepath.Join(dir, "req.cnf")
				conf := "[req]\ndistinguished_name = dn\nstring_mask = " + mask + "\n[dn]\n"
				if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
					t.Fatal(err)
				}
				certFile := filepath.Join(dir, "cert.pem")
				if _, ok, out := shOpenSSLHash(t, "req", "-x509", "-new", "-config", cfg, "-utf8", "-subj", subj,
					"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
					"-keyout", filepath.Join(dir, "key.pem"), "-out", certFile, "-days", "1"); !ok {
					t.Fatalf("openssl req: %s", out)
				}
				lines, ok, out := shOpenSSLHash(t, "x509", "-hash", "-noout", "-in", certFile)
				if !ok || len(lines) != 1 {
					t.Fatalf("openssl x509 -hash: %s", out)
				}
				data, err := os.ReadFile(certFile)
				if err != nil {
					t.Fatal(err)
				}
				block, _ := pem.Decode(data)
				if block == nil {
					t.Fatal("no PEM block")
				}
				cert, err := x509.ParseCertificate(block.Bytes)
				if err != nil {
					t.Fatal(err)
				}
				got, err := SubjectHash(cert.RawSubject)
				if err != nil {
					t.Fatal(err)
				}
				if got != lines[0] {
					t.Errorf("SubjectHash(%x) = %s, openssl %s", cert.RawSubject, got, lines[0])
				}
			})
		}
	}
}

func TestSubjectHashCRLMatchesOpenSSL(t *testing.T) {
	testpki.RequireTools(t, "openssl")
	key := shKey(t)
	issuerName := shName(
		shRDN(shAVA(shOIDDC, shStr(asn1.TagIA5String, "ORG"))),
		shRDN(shAVA(shOIDDC, shStr(asn1.TagIA5String, "Example"))),
		shRDN(shAVA(shOIDOU, shStr(asn1.TagBMPString, string(shBMP("Certification  Authorities")))),
			shAVA(shOIDO, shStr(asn1.TagPrintableString, "Example"))),
		shRDN(shAVA(shOIDCN, shStr(asn1.TagUTF8String, " Example\tCA Ω "))),
	)
	der := shCert(t, key, issuerName, &x509.Certificate{
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	})
	issuer, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	crlDER, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: time.Now().Add(time.Hour),
	}, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(crlDER)
	if err != nil {
		t.Fatal(err)
	}
	lines, ok, out := shOpenSSLHash(t, "crl", "-hash", "-noout", "-in", shWritePEM(t, "X509 CRL", crlDER))
	if !ok || len(lines) != 1 {
		t.Fatalf("openssl crl -hash: %s", out)
	}
	got, err := SubjectHash(crl.RawIssuer)
	if err != nil {
		t.Fatal(err)
	}
	if got != lines[0] {
		t.Errorf("SubjectHash(crl.RawIssuer) = %s, openssl crl -hash %s", got, lines[0])
	}
	if subj, _ := SubjectHash(issuer.RawSubject); subj != got {
		t.Errorf("issuer certificate hash %s, CRL hash %s", subj, got)
	}
}

// shCheckDERName reports whether b is a DER TLV down to the attribute values
// (whose content SubjectHash does not parse further when it keeps it as is).
func shCheckDERName(b []byte, depth int) bool {
	var v asn1.RawValue
	rest, err := asn1.Unmarshal(b, &v)
	if err != nil || len(rest) != 0 {
		return false
	}
	if depth == 3 || !v.IsCompound {
		return true
	}
	for content := v.Bytes; len(content) > 0; {
		var e asn1.RawValue
		next, err := asn1.Unmarshal(content, &e)
		if err != nil || !shCheckDERName(e.FullBytes, depth+1) {
			return false
		}
		content = next
	}
	return true
}

func FuzzSubjectHash(f *testing.F) {
	for _, tc := range shCases(f) {
		f.Add(tc.raw)
	}
	f.Add([]byte{0x30, 0x80, 0x00, 0x00})
	f.Add([]byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x30, 0x03, 0x31, 0x01, 0x30})
	f.Fuzz(func(t *testing.T, raw []byte) {
		h, err := SubjectHash(raw)
		if err != nil {
			if h != "" {
				t.Fatalf("hash %q with error %v", h, err)
			}
			return
		}
		if len(h) != 8 || strings.Trim(h, "0123456789abcdef") != "" {
			t.Fatalf("hash %q", h)
		}
		if !shCheckDERName(raw, 0) {
			t.Fatalf("SubjectHash(%x) = %s for bytes that are not DER", raw, h)
		}
		// The canonical form is a fixed point: as a name, it hashes alike.
		canon, err := canonicalName(raw)
		if err != nil {
			t.Fatal(err)
		}
		if len(canon) < subjectHashNameMax-8 {
			again, err := SubjectHash(shTLV(asn1.TagSequence, true, canon))
			if err != nil || again != h {
				t.Fatalf("canonical form of %x hashes to %s (%v), the name to %s", raw, again, err, h)
			}
		}
	})
}
