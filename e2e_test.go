// End-to-end tests: every clr binary run as a real process from the
// scripts in testdata/script (one script per behaviour and per bug), with
// real openssl on a throwaway PKI made fresh for each script.
package clr_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/clr-suite/clr/internal/cli"
	"github.com/clr-suite/clr/internal/cli/publishcmd"
	"github.com/clr-suite/clr/internal/testpki"
)

// testEnv is the process environment with one test-only addition: the
// clock can be set with CLR_TEST_NOW (RFC 3339), so scripts time-travel
// instead of sleeping. Production binaries have no such override.
func testEnv() cli.Env {
	env := cli.OSEnv()
	if s := os.Getenv("CLR_TEST_NOW"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bad CLR_TEST_NOW %q: %v\n", s, err)
			os.Exit(99)
		}
		env.Now = func() time.Time { return t.UTC() }
	}
	return env
}

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"clr-publish": func() { os.Exit(publishcmd.Main(testEnv())) },
	})
}

func TestScript(t *testing.T) {
	testpki.RequireTools(t, "openssl")
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		UpdateScripts:       os.Getenv("UPDATE_GOLDEN") == "1",
		Setup:               setup,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":    cmdExits,
			"timeat":   cmdTimeAt,
			"backdate": cmdBackdate,
			"mkfile":   cmdMkfile,
		},
	})
}

// setup makes a fresh PKI for each script: $PKI holds testpki's fixture
// (signer.pem/key, revoked, expired, hostonly, roguesigner, ...), $CA_DIR
// the trusted CA and its CRL under OpenSSL hashed names, $ROGUE_DIR the
// untrusted same-DN CA, and $VECTORS the interop vectors.
func setup(env *testscript.Env) error {
	f, err := testpki.NewFixture(time.Now())
	if err != nil {
		return err
	}
	pki := filepath.Join(env.WorkDir, "pki")
	if err := f.Write(pki); err != nil {
		return err
	}
	for _, dir := range []string{"ca", "rogue"} {
		if out, err := exec.Command("openssl", "rehash", filepath.Join(pki, dir)).CombinedOutput(); err != nil {
			return fmt.Errorf("openssl rehash: %v: %s", err, out)
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	env.Setenv("XDG_CACHE_HOME", filepath.Join(env.WorkDir, ".cache"))
	env.Setenv("PKI", pki)
	env.Setenv("CA_DIR", filepath.Join(pki, "ca"))
	env.Setenv("ROGUE_DIR", filepath.Join(pki, "rogue"))
	env.Setenv("VECTORS", filepath.Join(wd, "testdata", "vectors"))
	env.Setenv("SIGNER_DN", testpki.SignerDN)
	env.Setenv("CA_DN", testpki.CADN)
	return nil
}

// exits CODE PROG ARGS... runs PROG and checks its exit code (0 included);
// its output is kept for stdout/stderr checks.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: bad code %q", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		got = ee.ExitCode()
	case err != nil:
		ts.Fatalf("exits: %v", err)
	}
	if got != want {
		ts.Fatalf("%s exited %d, want %d\nstderr: %s", args[1], got, want, ts.ReadFile("stderr"))
	}
}

// timeat VAR OFFSET sets VAR to now+OFFSET in RFC 3339 (OFFSET like 8d,
// -2h, 0).
func cmdTimeAt(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: timeat VAR OFFSET")
	}
	off := args[1]
	sign := time.Duration(1)
	if strings.HasPrefix(off, "-") {
		sign, off = -1, off[1:]
	}
	d := time.Duration(0)
	if off != "0" {
		var err error
		if d, err = cli.ParseDuration(off); err != nil {
			ts.Fatalf("timeat: %v", err)
		}
	}
	ts.Setenv(args[0], time.Now().Add(sign*d).UTC().Format(time.RFC3339))
}

// backdate DIR moves the mtime of every file below DIR an hour back, as
// for a library that has been at rest (the hash cache trusts only files
// that were quiet when they were hashed).
func cmdBackdate(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: backdate DIR")
	}
	old := time.Now().Add(-time.Hour)
	err := filepath.Walk(ts.MkAbs(args[0]), func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, old, old)
	})
	ts.Check(err)
}

// mkfile FILE SIZE [SEED] writes SIZE pseudo-random bytes (k/m suffixes).
func cmdMkfile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: mkfile FILE SIZE [SEED]")
	}
	mult := int64(1)
	s := args[1]
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1<<10, strings.TrimSuffix(s, "k")
	case strings.HasSuffix(s, "m"):
		mult, s = 1<<20, strings.TrimSuffix(s, "m")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	ts.Check(err)
	seed := uint64(1)
	if len(args) > 2 {
		seed, err = strconv.ParseUint(args[2], 10, 64)
		ts.Check(err)
	}
	buf := make([]byte, n*mult)
	x := seed*0x9E3779B97F4A7C15 + 1
	for i := range buf {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		buf[i] = byte(x)
	}
	p := ts.MkAbs(args[0])
	ts.Check(os.MkdirAll(filepath.Dir(p), 0o755))
	ts.Check(os.WriteFile(p, buf, 0o644))
}
