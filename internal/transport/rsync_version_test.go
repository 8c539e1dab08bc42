package transport

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
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

func TestProgress2Parser(t *testing.T) {
	var got []int64
	var sink strings.Builder
	w := &progressWriter{w: &sink, report: func(n int64) { got = append(got, n) }}
	// as rsync writes it: \r-rewritten progress, then the stats
	in := "\r     32,768   0%    0.00kB/s    0:00:00  \r  1,090,519,040 100%  335.05MB/s    0:00:03 (xfr#1, to-chk=0/1)\n\nNumber of files: 1\nTotal bytes received: 12\n"
	for _, chunk := range []string{in[:20], in[20:70], in[70:]} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 2 || got[0] != 32768 || got[1] != 1090519040 {
		t.Errorf("reported %v", got)
	}
	if sink.String() != in {
		t.Errorf("stdout not passed on unchanged")
	}
}

func TestFileTemplateProgress(t *testing.T) {
	lib := t.TempDir()
	data := strings.Repeat("p", 300<<10)
	if err := os.WriteFile(filepath.Join(lib, "disk.img"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	var last int64
	calls := 0
	_, err := FetchTemplate(t.Context(), TemplateRequest{
		URL: "file://" + lib + "/disk.img", Files: []FileSpec{{"disk.img", int64(len(data))}}, Stage: t.TempDir(),
		Progress: func(n int64) { last, calls = n, calls+1 },
	})
	if err != nil || last != int64(len(data)) || calls == 0 {
		t.Errorf("err %v, last progress %d after %d calls", err, last, calls)
	}
}
