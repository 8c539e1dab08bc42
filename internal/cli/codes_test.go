package cli

import (
	"fmt"
	"testing"

	"github.com/clr-suite/clr/internal/publish"
	"github.com/clr-suite/clr/internal/push"
)

// The release tree and mirror errors map to their documented exit codes
// (docs/exit-codes.md), also when wrapped.
func TestClassifyTreeAndMirror(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
	}{
		{publish.ErrTreeLocked, 6},
		{publish.ErrChangedSinceHash, 23},
		{push.ErrMirror, 22},
	} {
		wrapped := fmt.Errorf("place web: lib/web/disk.vmdk: %w", tc.err)
		if code, hint := Classify(wrapped); code != tc.code || hint == "" {
			t.Errorf("Classify(%v) = %d %q, want %d with a hint", wrapped, code, hint, tc.code)
		}
	}
}
