package transport

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestRsyncVersionFloor(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		version string
		ok      bool
	}{
		{"3.2.7", false}, // plain Debian bookworm: no CVE-2024-12086 fix
		{"3.3.99", false},
		{"3.4.0", true},
		{"3.5.0", true},
		{"4.0.0", true},
	} {
		bin := filepath.Join(dir, "rsync-"+tc.version)
		script := "#!/bin/sh\necho 'rsync  version " + tc.version + "  protocol version 31'\n"
		if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		err := checkRsyncVersion(context.Background(), bin)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInvalidRequest)) {
			t.Errorf("rsync %s: err %v", tc.version, err)
		}
	}
}
