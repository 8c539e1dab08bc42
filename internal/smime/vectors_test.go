package smime

import (
	"bytes"
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/smallstep/pkcs7"
)

// vectorsDir holds signed lists from the wild (read in place, never edited).
const vectorsDir = "../../testdata/vectors"

func readVector(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorsDir, name))
	if err != nil {
		t.Fatalf("vector: %v", err)
	}
	return b
}

func TestVectors(t *testing.T) {
	tests := []struct {
		file    string
		wantErr error // nil: Parse and Verify succeed
		digest  crypto.Hash
		signer  string // expected signer subject CN or O
	}{
		{"cloudkeeper/imagelist01.signed", nil, crypto.SHA256, "Internet Widgits Pty Ltd"},
		{"cloudkeeper/imagelist02.signed", nil, crypto.SHA256, "Internet Widgits Pty Ltd"},
		{"cloudkeeper/imagelist03.signed", nil, crypto.SHA256, "Internet Widgits Pty Ltd"},
		{"cloudkeeper/imagelist04.signed", nil, crypto.SHA256, "Internet Widgits Pty Ltd"},
		// Content edited after signing; its signer is also unknown and expired,
		// but at the signature level it is the digest that fails.
		{"cloudkeeper/imagelist_invalid.signed", ErrDigestMismatch, 0, ""},
		// 2011, SHA-1, signer certificate expired in 2011: the signature over
		// the content is valid, which is all Verify checks.
		{"hepixvmitrust/readme_example_signed.smime", nil, crypto.SHA1, "Owen Synge"},
		{"hepix-book/book_example_as_published.smime", ErrDigestMismatch, 0, ""},
		{"hepix-book/book_example_reconstructed_deprecated_format.smime", nil, crypto.SHA1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			m, err := Parse(readVector(t, tt.file))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if m.Opaque {
				t.Errorf("Opaque = true, want multipart")
			}
			s, err := m.Verify()
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Verify error = %v, want %v", err, tt.wantErr)
				}
				t.Logf("Verify: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if s.Digest != tt.digest {
				t.Errorf("Digest = %v, want %v", s.Digest, tt.digest)
			}
			if tt.signer != "" && s.Signer.Subject.CommonName != tt.signer && !slices.Contains(s.Signer.Subject.Organization, tt.signer) {
				t.Errorf("signer = %q, want CN or O %q", s.Signer.Subject, tt.signer)
			}
			if len(s.Certificates) == 0 || !bytes.HasPrefix(bytes.TrimSpace(s.Content), []byte("{")) {
				t.Errorf("certificates %d, content starts %q", len(s.Certificates), s.Content[:min(20, len(s.Content))])
			}
			if bytes.Contains(bytes.ReplaceAll(s.Content, []byte("\r\n"), nil), []byte("\n")) {
				t.Errorf("content has a bare LF")
			}
			t.Logf("signer %s, signingTime %s, valid %s..%s", s.Signer.Subject, s.SigningTime, s.Signer.NotBefore, s.Signer.NotAfter)
		})
	}
}

// The unsigned cloudkeeper list is the content of imagelist01.
func TestVectorCloudkeeperContent(t *testing.T) {
	m, err := Parse(readVector(t, "cloudkeeper/imagelist01.signed"))
	if err != nil {
		t.Fatal(err)
	}
	want := Canonicalize(readVector(t, "cloudkeeper/imagelist01.unsigned"))
	if !bytes.Equal(bytes.TrimRight(m.Content, "\r\n"), bytes.TrimRight(want, "\r\n")) {
		t.Errorf("content differs from imagelist01.unsigned")
	}
}

// The 2011 example's signingTime (2011-06-02) lies after its signer's
// NotAfter (2011-02-04). The library's own Verify refuses that; Verify must
// not (time decisions belong to internal/trust, at the reference time).
func TestVectorSigningTimeOutsideValidity(t *testing.T) {
	m, err := Parse(readVector(t, "hepixvmitrust/readme_example_signed.smime"))
	if err != nil {
		t.Fatal(err)
	}
	p7, err := parsePKCS7(m.Signature)
	if err != nil {
		t.Fatal(err)
	}
	p7.Content = m.Content
	var ste *pkcs7.SigningTimeNotValidError
	if err := p7.Verify(); !errors.As(err, &ste) {
		t.Fatalf("library Verify = %v, want SigningTimeNotValidError (has the library changed?)", err)
	}
	s, err := m.Verify()
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !s.SigningTime.After(s.Signer.NotAfter) {
		t.Errorf("signingTime %s not after NotAfter %s", s.SigningTime, s.Signer.NotAfter)
	}
}
