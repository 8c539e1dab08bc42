package trust

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestAdvice(t *testing.T) {
	ve := func(err error) error {
		return fmt.Errorf("verify signer: %w", &VerifyError{Subject: "/CN=S", CAFile: "/ca/12345678.0", CRLFile: "/ca/12345678.r0", Err: err})
	}
	tests := []struct {
		err  error
		want []string
	}{
		{ve(ErrCRLExpired), []string{"/ca/12345678.r0", "/ca/12345678.0", "clr-trust refresh"}},
		{ve(ErrNoCRL), []string{"/ca/12345678.0", "clr-trust refresh"}},
		{ve(ErrRevoked), []string{"/ca/12345678.r0", "new certificate"}},
		{ve(ErrUnknownAuthority), []string{"not in the CA directory"}},
		{ve(ErrExpired), []string{"expired", "clr-trust health"}},
		{ve(ErrNotYetValid), []string{"clock"}},
		{ve(ErrCRLNotYetValid), []string{"clock"}},
		{ve(ErrNamespace), []string{"/ca/12345678.0", "signing_policy"}},
		{ve(ErrPurpose), []string{"--purpose any"}},
		{ve(ErrInsecureAlgorithm), []string{"SHA-1"}},
		{fmt.Errorf("load: %w", ErrNoCAs), []string{"CLR_DIR_CERT"}},
	}
	for _, tc := range tests {
		a := Advice(tc.err)
		for _, w := range tc.want {
			if !strings.Contains(a, w) {
				t.Errorf("%v: advice %q lacks %q", tc.err, a, w)
			}
		}
	}
	if a := Advice(errors.New("disk full")); a != "" {
		t.Errorf("advice for a non-trust error: %q", a)
	}
}
