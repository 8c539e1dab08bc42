//go:build unix

package vcspcheck

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

func TestMainExitCodes(t *testing.T) {
	lib := newFixture(t)
	lib.write(t)
	srv := serve(t, lib.root, func(s *server) { s.password = "pw" })

	broken := newFixture(t)
	broken.item("media").Files[0].Etag = "deadbeef"
	broken.write(t)
	brokenSrv := serve(t, broken.root, nil)

	statePath := filepath.Join(t.TempDir(), "state.json")
	stateLib := newFixture(t)
	stateLib.write(t)
	stateSrv := serve(t, stateLib.root, nil)

	dir := t.TempDir()
	vcsim, _ := fakeVcsim(t, dir)
	govc := writeScript(t, dir, "govc", "echo 'import failed' >&2; exit 1\n")

	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		before func(t *testing.T)
		code   int
		stdout string
		stderr string
	}{
		{name: "ok", args: []string{"-password", "pw", "-verify-sums", srv.libURL()}, code: ExitOK, stdout: "items=3 warnings=0 errors=0"},
		{name: "ok with -url and $VCSP_PASSWORD", env: map[string]string{"VCSP_PASSWORD": "pw"}, args: []string{"-url", srv.libURL()}, code: ExitOK, stdout: "== OK"},
		{name: "wrong password", args: []string{"-password", "nope", srv.libURL()}, code: ExitManifest, stderr: "HTTP 401"},
		{name: "no url", args: nil, code: ExitUsage, stderr: "usage: vcspcheck"},
		{name: "two urls", args: []string{"a", "b"}, code: ExitUsage, stderr: "unexpected arguments"},
		{name: "bad flag", args: []string{"-bogus"}, code: ExitUsage, stderr: "flag provided but not defined"},
		{name: "bad url", args: []string{"ftp://x/lib.json"}, code: ExitUsage, stderr: "not an http(s) URL"},
		{name: "help", args: []string{"-h"}, code: ExitOK, stderr: "usage: vcspcheck"},
		{name: "manifest invalid", args: []string{brokenSrv.libURL()}, code: ExitManifest, stderr: "manifest invalid: item \"media\" file \"disc.iso\": etag \"deadbeef\""},
		{name: "state first run", args: []string{"-state", statePath, stateSrv.libURL()}, code: ExitOK, stdout: "state=new"},
		{name: "state broken", before: func(t *testing.T) {
			rewriteISO(t, stateLib, 9)
			stateLib.rescan(t, stateLib.item("media"), "2")
			stateLib.write(t)
		}, args: []string{"-state", statePath, stateSrv.libURL()}, code: ExitState, stderr: "files changed but version not bumped"},
		{name: "import failed", args: []string{"-password", "pw", "-vcsim", "-govc", govc, "-vcsim-bin", vcsim, srv.libURL()}, code: ExitImport, stderr: "import failed"},
		{name: "tools from env", env: map[string]string{"GOVC": govc, "VCSIM": vcsim}, args: []string{"-password", "pw", "-vcsim", srv.libURL()}, code: ExitImport, stderr: "import failed"},
		{name: "govc missing", args: []string{"-password", "pw", "-vcsim", "-govc", filepath.Join(dir, "none"), srv.libURL()}, code: ExitUsage, stderr: "usage: govc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("VCSP_PASSWORD", "")
			t.Setenv("GOVC", "")
			t.Setenv("VCSIM", "")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			if tt.before != nil {
				tt.before(t)
			}
			var stdout, stderr bytes.Buffer
			code := Main(tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.stdout, stdout.String())
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.stderr, stderr.String())
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		code int
	}{
		{nil, ExitOK},
		{fmt.Errorf("%w: x", ErrManifest), ExitManifest},
		{fmt.Errorf("%w: x", ErrState), ExitState},
		{fmt.Errorf("%w: x", ErrImport), ExitImport},
		{fmt.Errorf("%w: x", ErrUsage), ExitUsage},
		{errors.New("read state: boom"), ExitUsage},
	}
	for _, tt := range tests {
		if got := ExitCode(tt.err); got != tt.code {
			t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.code)
		}
	}
}
