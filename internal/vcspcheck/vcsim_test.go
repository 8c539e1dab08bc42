//go:build unix

package vcspcheck

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// gone reports whether process pid no longer exists.
func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// TestVcsimImportDeploy is the end-to-end proof: vcsim pulls every file of
// the served library (basic auth, digests checked by vcsim) into a local
// library and deploys the generated OVF template to a VM.
func TestVcsimImportDeploy(t *testing.T) {
	govc := findTestTool(t, "govc", "GOVC")
	vcsim := findTestTool(t, "vcsim", "VCSIM")
	lib := newFixture(t)
	lib.write(t)
	srv := serve(t, lib.root, func(s *server) { s.password = "s3cret" })

	var log bytes.Buffer
	start := time.Now()
	rep, err := check(t, Options{
		URL: srv.libURL(), Password: "s3cret", VerifySums: true,
		StatePath: filepath.Join(t.TempDir(), "state.json"),
		Vcsim:     true, Govc: govc, VcsimBin: vcsim, Stdout: &log,
	})
	t.Logf("vcsim check took %v", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("Check: %v\n%s\n%s", err, dump(rep), log.String())
	}
	if rep.Vcsim == nil || rep.Vcsim.PID == 0 || strings.Contains(rep.Vcsim.URL, "pass") {
		t.Fatalf("vcsim run %+v", rep.Vcsim)
	}
	if !gone(rep.Vcsim.PID) {
		t.Errorf("vcsim pid %d still running after Check returned", rep.Vcsim.PID)
	}
	for _, it := range rep.Items {
		if !it.Imported {
			t.Errorf("item %s not imported", it.Name)
		}
		if len(it.VcsimFiles) != len(it.Files) {
			t.Errorf("item %s: vcsim has %v, manifest %d files", it.Name, it.VcsimFiles, len(it.Files))
		}
		for _, f := range it.Files {
			got, ok := it.VcsimFiles[f.Name]
			if !ok || (got != f.Size && !(strings.HasSuffix(f.Name, ".vmdk") && f.Size-got == vmdkStreamHeader)) {
				t.Errorf("item %s file %s: vcsim size %d (%t), manifest %d", it.Name, f.Name, got, ok, f.Size)
			}
		}
	}
	tpl := rep.Item("tpl")
	if !tpl.Deployed || len(tpl.Disks) != 1 || !strings.Contains(tpl.Disks[0], "8,192 KB") {
		t.Errorf("tpl deployed=%t disks=%q", tpl.Deployed, tpl.Disks)
	}
	if rep.Item("media").Deployed || rep.Item("notes").Deployed {
		t.Error("non-OVF item deployed")
	}
	for _, want := range []string{
		"-- govc library.import -pull -c ", // digests handed to vcsim
		"-t ovf -n tpl vcsp-check http://vcsp:xxxxx@127.0.0.1:",
		"-t iso -n media vcsp-check http://vcsp:xxxxx@",
		"-t file -n notes vcsp-check http://vcsp:xxxxx@",
		"-- govc library.deploy -pool /DC0/host/DC0_H0/Resources vcsp-check/tpl vcsp-check-tpl",
		"== OK",
	} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if strings.Contains(log.String(), "s3cret") {
		t.Error("log shows the password")
	}
	if i, j := strings.Index(log.String(), "/tpl/tpl.ovf"), strings.Index(log.String(), "/tpl/tpl-disk1.vmdk"); i < 0 || j < i {
		t.Errorf("the .ovf was not imported first:\n%s", log.String())
	}
}

// writeScript writes an executable shell script.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeVcsim prints a GOVC_URL line like vcsim and then waits; its pid goes
// to pidFile.
func fakeVcsim(t *testing.T, dir string) (bin, pidFile string) {
	pidFile = filepath.Join(dir, "vcsim.pid")
	bin = writeScript(t, dir, "vcsim", `echo $$ > `+pidFile+`
echo "export GOVC_URL=https://user:pass@127.0.0.1:1/sdk GOVC_SIM_PID=$$"
exec sleep 120
`)
	return bin, pidFile
}

func TestVcsimFakeToolsCommandOrder(t *testing.T) {
	dir := t.TempDir()
	vcsim, pidFile := fakeVcsim(t, dir)
	argLog := filepath.Join(dir, "govc.log")
	govc := writeScript(t, dir, "govc", `echo "$GOVC_URL|$GOVC_INSECURE|$*" >> `+argLog+`
case "$1" in
library.info) echo '[]' ;;
device.ls) echo 'disk-202-0  VirtualDisk  8,192 KB' ;;
esac
`)
	lib := newFixture(t)
	lib.write(t)
	srv := serve(t, lib.root, nil)
	t.Setenv("GOVC_USERNAME", "leak") // inherited GOVC_* settings must not reach govc
	rep, err := check(t, Options{URL: srv.libURL(), Vcsim: true, Govc: govc, VcsimBin: vcsim})
	if !errors.Is(err, ErrImport) || ExitCode(err) != ExitImport {
		t.Fatalf("err = %v, want ErrImport\n%s", err, dump(rep))
	}
	if !hasProblem(rep.VcsimProblems, `item "tpl": vcsim has no such item`) {
		t.Errorf("problems:\n%s", dump(rep))
	}
	calls := strings.Split(strings.TrimSpace(string(readFile(t, argLog))), "\n")
	var got []string
	for _, c := range calls {
		parts := strings.SplitN(c, "|", 3)
		if parts[0] != "https://user:pass@127.0.0.1:1/sdk" || parts[1] != "1" {
			t.Errorf("govc env: %q", c)
		}
		got = append(got, strings.ReplaceAll(parts[2], srv.URL, "URL"))
	}
	want := []string{
		"library.create vcsp-check",
		"library.import -pull -t ovf -n tpl vcsp-check URL/tpl/tpl.ovf",
		"library.import -pull vcsp-check/tpl URL/tpl/tpl-disk1.vmdk",
		"library.import -pull vcsp-check/tpl URL/tpl/tpl.mf",
		"library.deploy -pool /DC0/host/DC0_H0/Resources vcsp-check/tpl vcsp-check-tpl",
		"device.ls -vm vcsp-check-tpl",
		"vm.destroy vcsp-check-tpl",
		"library.import -pull -t iso -n media vcsp-check URL/media/disc.iso",
		"library.import -pull -t file -n notes vcsp-check URL/notes/readme.txt",
		"library.info -json vcsp-check/*",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("govc calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if p := strings.TrimSpace(string(readFile(t, pidFile))); rep.Vcsim == nil || !gone(rep.Vcsim.PID) {
		t.Errorf("fake vcsim %s still running", p)
	}
}

func TestVcsimFailures(t *testing.T) {
	lib := newFixture(t)
	lib.write(t)
	srv := serve(t, lib.root, nil)
	dir := t.TempDir()
	vcsim, _ := fakeVcsim(t, dir)
	failing := writeScript(t, dir, "govc-fail", "echo 'boom: no such library' >&2\nexit 1\n")
	early := writeScript(t, dir, "vcsim-early", "echo 'listen: address in use' >&2\nexit 1\n")
	tests := []struct {
		name        string
		govc, vcsim string
		is          error
		want        string
	}{
		{"govc fails", failing, vcsim, ErrImport, "govc library.create: exit status 1: boom: no such library"},
		{"vcsim exits early", failing, early, ErrImport, "start vcsim: exited early: listen: address in use"},
		{"govc missing", filepath.Join(dir, "nope"), vcsim, ErrUsage, "govc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := check(t, Options{URL: srv.libURL(), Vcsim: true, Govc: tt.govc, VcsimBin: tt.vcsim})
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %v containing %q\n%s", err, tt.is, tt.want, dump(rep))
			}
			if rep.Vcsim != nil && !gone(rep.Vcsim.PID) {
				t.Errorf("vcsim %d still running", rep.Vcsim.PID)
			}
		})
	}
}
