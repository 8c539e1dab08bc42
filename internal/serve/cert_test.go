package serve

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestThumbprints(t *testing.T) {
	c := newCert(t, nil, "clr", false, "127.0.0.1").cert
	s1, s256 := Thumbprints(c)

	for _, tt := range []struct {
		name, got string
		bytes     int
		sum       []byte
	}{
		{"sha1", s1, 20, func() []byte { s := sha1.Sum(c.Raw); return s[:] }()},
		{"sha256", s256, 32, func() []byte { s := sha256.Sum256(c.Raw); return s[:] }()},
	} {
		re := regexp.MustCompile(fmt.Sprintf(`^[0-9A-F]{2}(:[0-9A-F]{2}){%d}$`, tt.bytes-1))
		if !re.MatchString(tt.got) {
			t.Errorf("%s %q is not %d upper-case hex pairs joined by ':'", tt.name, tt.got, tt.bytes)
		}
		var want []string
		for _, b := range tt.sum {
			want = append(want, fmt.Sprintf("%02X", b))
		}
		if tt.got != strings.Join(want, ":") {
			t.Errorf("%s %q, want %q", tt.name, tt.got, strings.Join(want, ":"))
		}
	}

	if got := colonHex([]byte{0x0a, 0xff, 0x00}); got != "0A:FF:00" {
		t.Errorf("colonHex = %q", got)
	}
	if a, b := Thumbprints(nil); a != "" || b != "" {
		t.Errorf("Thumbprints(nil) = %q, %q", a, b)
	}
}

func TestLeafOf(t *testing.T) {
	tc := newCert(t, nil, "clr", false, "127.0.0.1")
	kp, err := tls.X509KeyPair(tc.certPEM, tc.keyPEM)
	if err != nil {
		t.Fatal(err)
	}

	kp.Leaf = nil
	leaf, err := LeafOf(&kp)
	if err != nil || !leaf.Equal(tc.cert) {
		t.Fatalf("parsed leaf: %v, %v", leaf, err)
	}
	kp.Leaf = tc.cert
	if leaf, err := LeafOf(&kp); err != nil || leaf != tc.cert {
		t.Fatalf("Leaf set: %v, %v", leaf, err)
	}
	for _, c := range []*tls.Certificate{nil, {}} {
		if _, err := LeafOf(c); !errors.Is(err, ErrNoCertificate) {
			t.Errorf("LeafOf(%v): %v, want ErrNoCertificate", c, err)
		}
	}
	if _, err := LeafOf(&tls.Certificate{Certificate: [][]byte{[]byte("junk")}}); err == nil || errors.Is(err, ErrNoCertificate) {
		t.Errorf("LeafOf(junk): %v, want a parse error", err)
	}
}

func TestNewFileCert(t *testing.T) {
	dir := t.TempDir()
	tc := newCert(t, nil, "clr", false, "127.0.0.1")
	certFile, keyFile := tc.write(t, dir, "ok")

	fc, err := NewFileCert(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fc.GetCertificate(&tls.ClientHelloInfo{ServerName: "anything"})
	if err != nil || got != fc.Certificate() || got.Leaf == nil || !got.Leaf.Equal(tc.cert) {
		t.Fatalf("GetCertificate: %v, %v", got, err)
	}

	if _, err := new(FileCert).GetCertificate(nil); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("empty FileCert: %v, want ErrNoCertificate", err)
	}

	other := newCert(t, nil, "other", false, "127.0.0.1")
	_, otherKey := other.write(t, dir, "other")
	tests := []struct {
		name       string
		cert, key  string
		invalid    bool
		notExist   bool
		loadPrefix bool
	}{
		{"empty names", "", "", true, false, false},
		{"missing cert", filepath.Join(dir, "none.crt"), keyFile, false, true, true},
		{"missing key", certFile, filepath.Join(dir, "none.key"), false, true, true},
		{"wrong key", certFile, otherKey, false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewFileCert(tt.cert, tt.key)
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, ErrInvalidConfig) != tt.invalid || errors.Is(err, fs.ErrNotExist) != tt.notExist {
				t.Errorf("err %v: ErrInvalidConfig %v, fs.ErrNotExist %v", err, tt.invalid, tt.notExist)
			}
			if tt.loadPrefix && !strings.HasPrefix(err.Error(), "serve: load certificate: ") {
				t.Errorf("err %q lacks context", err)
			}
		})
	}
}
