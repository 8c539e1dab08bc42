// End-to-end tests: every clr binary run as a real process from the
// scripts in testdata/script (one script per behaviour and per bug), with
// real openssl on a throwaway PKI made fresh for each script.
package clr_test

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/crypto/ssh"

	"github.com/clr-suite/clr/internal/cli"
	"github.com/clr-suite/clr/internal/cli/cachecmd"
	"github.com/clr-suite/clr/internal/cli/endorsercmd"
	"github.com/clr-suite/clr/internal/cli/imagecmd"
	"github.com/clr-suite/clr/internal/cli/publishcmd"
	"github.com/clr-suite/clr/internal/cli/servercmd"
	"github.com/clr-suite/clr/internal/cli/subscribecmd"
	"github.com/clr-suite/clr/internal/cli/trustcmd"
	"github.com/clr-suite/clr/internal/ovfgen"
	"github.com/clr-suite/clr/internal/server"
	"github.com/clr-suite/clr/internal/sscheck"
	"github.com/clr-suite/clr/internal/testpki"
	"github.com/clr-suite/clr/internal/testsshd"
	"github.com/clr-suite/clr/internal/vcspcheck"
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
	server.SandboxMain() // clr-server re-executes this binary around rsync
	testscript.Main(m, map[string]func(){
		"clr-publish":   func() { os.Exit(publishcmd.Main(testEnv())) },
		"clr-server":    func() { os.Exit(servercmd.Main(testEnv())) },
		"clr-endorser":  func() { os.Exit(endorsercmd.Main(testEnv())) },
		"clr-subscribe": func() { os.Exit(subscribecmd.Main(testEnv())) },
		"clr-image":     func() { os.Exit(imagecmd.Main(testEnv())) },
		"clr-cache":     func() { os.Exit(cachecmd.Main(testEnv())) },
		"clr-trust":     func() { os.Exit(trustcmd.Main(testEnv())) },
		// test tools: a template generator and a VCSP subscriber walk (+ vcsim)
		"mktemplate": func() { os.Exit(ovfgen.Main(os.Args[1:], os.Stdout, os.Stderr)) },
		"vcspcheck":  func() { os.Exit(vcspcheck.Main(os.Args[1:], os.Stdout, os.Stderr)) },
		"sscheck":    func() { os.Exit(sscheck.Main(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

func TestScript(t *testing.T) {
	testpki.RequireTools(t, "openssl", "rsync", "ssh", "script")
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		UpdateScripts:       os.Getenv("UPDATE_GOLDEN") == "1",
		Setup:               setup,
		Condition:           condition,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":      cmdExits,
			"timeat":     cmdTimeAt,
			"backdate":   cmdBackdate,
			"mkfile":     cmdMkfile,
			"sshkey":     cmdSSHKey,
			"freeport":   cmdFreePort,
			"waitport":   cmdWaitPort,
			"knownhosts": cmdKnownHosts,
			"signal":     cmdSignal,
			"sleep":      cmdSleep,
			"retry":      cmdRetry,
			"httpsserve": cmdHTTPSServe,
			"setvar":     cmdSetVar,
			"between":    cmdBetween,
			"patchfile":  cmdPatchFile,
			"insertfile": cmdInsertFile,
			"httpget":    cmdHTTPGet,
			"mkcrl":      cmdMkCRL,
			"slowwrite":  cmdSlowWrite,
			"opensshd":   cmdOpenSSHD,
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
	n := parseSize(ts, args[1])
	seed := uint64(1)
	if len(args) > 2 {
		var err error
		seed, err = strconv.ParseUint(args[2], 10, 64)
		ts.Check(err)
	}
	buf := pseudoRandom(nil, n, seed)
	p := ts.MkAbs(args[0])
	ts.Check(os.MkdirAll(filepath.Dir(p), 0o755))
	ts.Check(os.WriteFile(p, buf, 0o644))
}

// sshkey NAME COMMENT writes an ed25519 key pair NAME and NAME.pub (an
// authorized_keys line with COMMENT), as ssh-keygen would.
func cmdSSHKey(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: sshkey NAME COMMENT")
	}
	pub, err := testsshd.WriteKey(ts.MkAbs(args[0]), args[1])
	ts.Check(err)
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + " " + args[1] + "\n"
	ts.Check(os.WriteFile(ts.MkAbs(args[0]+".pub"), []byte(line), 0o644))
}

// opensshd DIR KEY runs a real OpenSSH sshd on 127.0.0.1 for the rest of
// the script whose only login is the key KEY (made with sshkey), forced
// into rrsync DIR (read-write, like a mirror's authorized_keys line).
// It sets $SSHD_PORT and $SSHD_USER and writes $WORK/sshd_known_hosts.
func cmdOpenSSHD(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: opensshd DIR KEY")
	}
	for _, tool := range []string{"sshd", "rrsync"} {
		if ok, err := condition("have:" + tool); err != nil || !ok {
			ts.Fatalf("opensshd: %s not available (%v); apt-get install openssh-server rsync python3", tool, err)
		}
	}
	rrsync, err := exec.LookPath("rrsync")
	ts.Check(err)
	dir := ts.MkAbs(args[0])
	ts.Check(os.MkdirAll(dir, 0o755))
	pub := strings.TrimSpace(ts.ReadFile(args[1] + ".pub"))
	work := ts.MkAbs(".sshd")
	ts.Check(os.MkdirAll(work, 0o700))
	srv, stop, err := testsshd.StartProcess(work, testsshd.Options{AuthorizedKeys: []string{
		fmt.Sprintf(`command="%s %s",restrict %s`, rrsync, dir, pub),
	}})
	ts.Check(err)
	ts.Defer(func() { _ = stop() })
	kh, err := os.ReadFile(srv.KnownHosts)
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs("sshd_known_hosts"), kh, 0o644))
	ts.Setenv("SSHD_PORT", strconv.Itoa(srv.Port))
	ts.Setenv("SSHD_USER", srv.User)
}

// freeport VAR sets VAR to a TCP port free on 127.0.0.1.
func cmdFreePort(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: freeport VAR")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ts.Setenv(args[0], strconv.Itoa(port))
}

// waitport ADDR waits (at most 20 s) until ADDR accepts connections.
func cmdWaitPort(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitport ADDR")
	}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", args[0], time.Second); err == nil {
			c.Close()
			return
		}
	}
	ts.Fatalf("%s not listening after 20 s", args[0])
}

// knownhosts HOSTKEY PORT OUT writes a known_hosts file pinning the public
// half of the private host key file for [127.0.0.1]:PORT.
func cmdKnownHosts(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: knownhosts HOSTKEY PORT OUT")
	}
	signer, err := ssh.ParsePrivateKey([]byte(ts.ReadFile(args[0])))
	ts.Check(err)
	line := "[127.0.0.1]:" + args[1] + " " + string(ssh.MarshalAuthorizedKey(signer.PublicKey()))
	ts.Check(os.WriteFile(ts.MkAbs(args[2]), []byte(line), 0o600))
}

// signal SIG PIDFILE sends HUP, TERM or INT to the process in PIDFILE
// (waiting up to 10 s for the file to appear).
func cmdSignal(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: signal HUP|TERM|INT PIDFILE")
	}
	sig := map[string]syscall.Signal{"HUP": syscall.SIGHUP, "TERM": syscall.SIGTERM, "INT": syscall.SIGINT}[args[0]]
	if sig == 0 {
		ts.Fatalf("unknown signal %s", args[0])
	}
	// A server may accept connections (waitport) a moment before it has
	// written its pid file: wait for the file, at most 10 s.
	var data []byte
	var err error
	for i := 0; i < 100; i++ {
		if data, err = os.ReadFile(ts.MkAbs(args[1])); err == nil && len(strings.TrimSpace(string(data))) > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	ts.Check(err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	ts.Check(err)
	ts.Check(syscall.Kill(pid, sig))
}

// sleep DURATION pauses the script (for a signal to be handled).
func cmdSleep(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: sleep DURATION")
	}
	d, err := time.ParseDuration(args[0])
	ts.Check(err)
	time.Sleep(d)
}

// retry PROG ARGS... runs PROG until it succeeds, at most 100 times 100 ms
// apart (a signal's effect, on a loaded machine).
func cmdRetry(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 {
		ts.Fatalf("usage: retry PROG [ARGS...]")
	}
	var err error
	for i := 0; i < 100; i++ {
		if err = ts.Exec(args[0], args[1:]...); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	ts.Fatalf("%s still failing after 100 tries: %v", args[0], err)
}

// httpsserve VAR DIR serves DIR over HTTPS on 127.0.0.1 for the rest of the
// script: VAR is set to its base URL, $WORK/https-ca.pem holds its
// certificate (trusted only when a script points SSL_CERT_FILE at it), and
// $WORK/https.log gets one line per request: method, path, status.
// Requests for /redirect/P answer 302 to /P; /basic/P needs user "site" and
// password "s3cret".
func cmdHTTPSServe(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: httpsserve VAR DIR")
	}
	dir := ts.MkAbs(args[1])
	logPath := ts.MkAbs("https.log")
	var mu sync.Mutex
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: 200}
		switch {
		case strings.HasPrefix(r.URL.Path, "/redirect/"):
			http.Redirect(rec, r, strings.TrimPrefix(r.URL.Path, "/redirect"), http.StatusFound)
		case strings.HasPrefix(r.URL.Path, "/basic/"):
			if u, p, ok := r.BasicAuth(); !ok || u != "site" || p != "s3cret" {
				rec.Header().Set("WWW-Authenticate", `Basic realm="lists"`)
				http.Error(rec, "unauthorised", http.StatusUnauthorized)
				break
			}
			r.URL.Path = strings.TrimPrefix(r.URL.Path, "/basic")
			files.ServeHTTP(rec, r)
		default:
			files.ServeHTTP(rec, r)
		}
		mu.Lock()
		defer mu.Unlock()
		f, err := os.OpenFile(logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintf(f, "%s %s %d\n", r.Method, r.URL.Path, rec.status)
			f.Close()
		}
	}))
	srv.StartTLS()
	ts.Defer(srv.Close)
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	ts.Check(os.WriteFile(ts.MkAbs("https-ca.pem"), cert, 0o644))
	ts.Setenv(args[0], srv.URL)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// setvar VAR REGEXP sets VAR to the first submatch of REGEXP in the last
// command's stdout (an image UUID from clr-image -l, a byte count).
func cmdSetVar(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: setvar VAR REGEXP")
	}
	re, err := regexp.Compile("(?m)" + args[1])
	ts.Check(err)
	m := re.FindStringSubmatch(ts.ReadFile("stdout"))
	if len(m) < 2 {
		ts.Fatalf("setvar: no match for %s in stdout", args[1])
	}
	ts.Setenv(args[0], m[1])
}

// between LOW VALUE HIGH fails unless LOW <= VALUE <= HIGH (integers).
func cmdBetween(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: between LOW VALUE HIGH")
	}
	var n [3]int64
	for i, a := range args {
		v, err := strconv.ParseInt(a, 10, 64)
		ts.Check(err)
		n[i] = v
	}
	if n[1] < n[0] || n[1] > n[2] {
		ts.Fatalf("%d is not between %d and %d", n[1], n[0], n[2])
	}
}

// patchfile FILE BLOCK COUNT SEED overwrites COUNT blocks of BLOCK bytes,
// spread evenly over FILE, with deterministic random bytes: a new version
// of a disk image with a few changed blocks.
func cmdPatchFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 4 {
		ts.Fatalf("usage: patchfile FILE BLOCK COUNT SEED")
	}
	block, err := strconv.Atoi(args[1])
	ts.Check(err)
	count, err := strconv.Atoi(args[2])
	ts.Check(err)
	seed, err := strconv.ParseInt(args[3], 10, 64)
	ts.Check(err)
	f, err := os.OpenFile(ts.MkAbs(args[0]), os.O_RDWR, 0)
	ts.Check(err)
	defer f.Close()
	fi, err := f.Stat()
	ts.Check(err)
	blocks := fi.Size() / int64(block)
	rng := mrand.New(mrand.NewSource(seed))
	buf := make([]byte, block)
	for i := 0; i < count; i++ {
		rng.Read(buf)
		off := (int64(i)*blocks/int64(count) + 1) % blocks * int64(block)
		_, err := f.WriteAt(buf, off)
		ts.Check(err)
	}
}

// insertfile FILE OFFSET SIZE SEED inserts SIZE pseudo-random bytes (k/m
// suffixes; the generator of mkfile) at byte OFFSET of FILE, or appends
// them when OFFSET is "end": a new version of a disk image whose second
// part shifts (an insertion) or that grows (an append). FILE is replaced
// by a new file, as a publisher's tools would write it.
func cmdInsertFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 4 {
		ts.Fatalf("usage: insertfile FILE OFFSET|end SIZE SEED")
	}
	p := ts.MkAbs(args[0])
	old, err := os.ReadFile(p)
	ts.Check(err)
	off := int64(len(old))
	if args[1] != "end" {
		off, err = strconv.ParseInt(args[1], 10, 64)
		ts.Check(err)
		if off < 0 || off > int64(len(old)) {
			ts.Fatalf("insertfile: offset %d outside %s (%d bytes)", off, args[0], len(old))
		}
	}
	n := parseSize(ts, args[2])
	seed, err := strconv.ParseUint(args[3], 10, 64)
	ts.Check(err)
	buf := make([]byte, 0, int64(len(old))+n)
	buf = append(buf, old[:off]...)
	buf = pseudoRandom(buf, n, seed)
	buf = append(buf, old[off:]...)
	tmp := p + ".insertfile"
	ts.Check(os.WriteFile(tmp, buf, 0o644))
	ts.Check(os.Rename(tmp, p))
}

// parseSize reads a byte count with an optional k or m suffix (KiB, MiB).
func parseSize(ts *testscript.TestScript, s string) int64 {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1<<10, strings.TrimSuffix(s, "k")
	case strings.HasSuffix(s, "m"):
		mult, s = 1<<20, strings.TrimSuffix(s, "m")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	ts.Check(err)
	return n * mult
}

// pseudoRandom appends n deterministic bytes for seed to buf (xorshift64:
// incompressible for rsync and zstd, the same bytes on every machine).
func pseudoRandom(buf []byte, n int64, seed uint64) []byte {
	x := seed*0x9E3779B97F4A7C15 + 1
	for range n {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		buf = append(buf, byte(x))
	}
	return buf
}

// httpget [-u USER:PASS] [-range SPEC] [-ca FILE] [-noredirect] [-head]
// [-until REGEXP] URL OUT makes one request (GET, or HEAD with -head) and
// writes the body to OUT and "status N" plus the interesting response
// headers (lower-case) to OUT.head, for grep and cmp. It never follows a
// redirect with -noredirect. With -until it repeats the request (at most
// 100 times, 100 ms apart) until the body matches REGEXP, and fails if it
// never does. Only loopback URLs.
func cmdHTTPGet(ts *testscript.TestScript, neg bool, args []string) {
	fs := flag.NewFlagSet("httpget", flag.ContinueOnError)
	user := fs.String("u", "", "user:password")
	rng := fs.String("range", "", "Range header value")
	ca := fs.String("ca", "", "trusted CA PEM file")
	noRedirect := fs.Bool("noredirect", false, "do not follow redirects")
	head := fs.Bool("head", false, "HEAD instead of GET")
	until := fs.String("until", "", "repeat until the body matches this regexp")
	if err := fs.Parse(args); err != nil || fs.NArg() != 2 || neg {
		ts.Fatalf("usage: httpget [-u USER:PASS] [-range SPEC] [-ca FILE] [-noredirect] [-head] [-until REGEXP] URL OUT")
	}
	var want *regexp.Regexp
	if *until != "" {
		var err error
		want, err = regexp.Compile(*until)
		ts.Check(err)
	}
	u, err := url.Parse(fs.Arg(0))
	ts.Check(err)
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		ts.Fatalf("httpget: %s is not a loopback address", u.Host)
	}
	tr := &http.Transport{}
	if *ca != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(ts.ReadFile(*ca))) {
			ts.Fatalf("httpget: no certificate in %s", *ca)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	if *noRedirect {
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	method := http.MethodGet
	if *head {
		method = http.MethodHead
	}
	req, err := http.NewRequest(method, u.String(), nil)
	ts.Check(err)
	if *user != "" {
		n, p, _ := strings.Cut(*user, ":")
		req.SetBasicAuth(n, p)
	}
	if *rng != "" {
		req.Header.Set("Range", *rng)
	}
	var resp *http.Response
	var body []byte
	for try := 1; ; try++ {
		resp, err = client.Do(req)
		ts.Check(err)
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		ts.Check(err)
		if want == nil || want.Match(body) {
			break
		}
		if try == 100 {
			ts.Fatalf("httpget: %s never matched %q; last body:\n%s", u, *until, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var h strings.Builder
	fmt.Fprintf(&h, "status %d\n", resp.StatusCode)
	for _, k := range []string{"Content-Type", "Content-Length", "Content-Range", "Location", "Www-Authenticate", "Accept-Ranges"} {
		if v := resp.Header.Get(k); v != "" {
			fmt.Fprintf(&h, "%s: %s\n", strings.ToLower(k), v)
		}
	}
	out := ts.MkAbs(fs.Arg(1))
	ts.Check(os.WriteFile(out, body, 0o644))
	ts.Check(os.WriteFile(out+".head", []byte(h.String()), 0o644))
}

// condition [have:TOOL] is true when TOOL is on PATH; a missing tool is an
// error in CI (CI=true), so `[!have:govc] skip` only skips outside CI
// (`make test` installs the tools).
func condition(cond string) (bool, error) {
	tool, ok := strings.CutPrefix(cond, "have:")
	if !ok {
		return false, fmt.Errorf("unknown condition %q", cond)
	}
	if _, err := exec.LookPath(tool); err != nil {
		if os.Getenv("CI") == "true" {
			return false, fmt.Errorf("%s is required in CI (make tools-test installs it): %v", tool, err)
		}
		return false, nil
	}
	return true, nil
}

// mkcrl CAKEY CACERT OUT NUMBER THIS NEXT writes a PEM CRL signed by the CA
// with CRL number NUMBER, thisUpdate now+THIS and nextUpdate now+NEXT
// (offsets like -1h, 7d).
func cmdMkCRL(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 6 {
		ts.Fatalf("usage: mkcrl CAKEY CACERT OUT NUMBER THIS NEXT")
	}
	kb, _ := pem.Decode([]byte(ts.ReadFile(args[0])))
	cb, _ := pem.Decode([]byte(ts.ReadFile(args[1])))
	if kb == nil || cb == nil {
		ts.Fatalf("mkcrl: no PEM key or certificate")
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		if k, err2 := x509.ParsePKCS1PrivateKey(kb.Bytes); err2 == nil {
			key, err = k, nil
		} else if k, err3 := x509.ParseECPrivateKey(kb.Bytes); err3 == nil {
			key, err = k, nil
		}
	}
	ts.Check(err)
	cert, err := x509.ParseCertificate(cb.Bytes)
	ts.Check(err)
	off := func(s string) time.Time {
		sign := time.Duration(1)
		if strings.HasPrefix(s, "-") {
			sign, s = -1, s[1:]
		}
		d, err := cli.ParseDuration(s)
		ts.Check(err)
		return time.Now().Add(sign * d).Truncate(time.Second)
	}
	n, err := strconv.ParseInt(args[3], 10, 64)
	ts.Check(err)
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(n), ThisUpdate: off(args[4]), NextUpdate: off(args[5]),
	}, cert, key.(crypto.Signer))
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[2]), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644))
}

// slowwrite FILE SIZE CHUNK PAUSE SEED writes SIZE pseudo-random bytes (a
// function of SEED) to FILE in CHUNK pieces with PAUSE between them, like
// a slow upload into a watched library.
func cmdSlowWrite(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 5 {
		ts.Fatalf("usage: slowwrite FILE SIZE CHUNK PAUSE SEED")
	}
	size := parseSize(ts, args[1])
	chunk := parseSize(ts, args[2])
	pause, err := time.ParseDuration(args[3])
	ts.Check(err)
	seed, err := strconv.ParseInt(args[4], 10, 64)
	ts.Check(err)
	// the data is made before the file exists: under -race, generating
	// 64 MiB takes seconds, which would look like a pause in the upload
	r := mrand.New(mrand.NewSource(seed))
	buf := make([]byte, chunk)
	r.Read(buf)
	f, err := os.Create(ts.MkAbs(args[0]))
	ts.Check(err)
	defer f.Close()
	for i, done := int64(0), int64(0); done < size; i++ {
		n := min(chunk, size-done)
		binary.LittleEndian.PutUint64(buf, uint64(i)^uint64(seed)) // each chunk differs
		_, err := f.Write(buf[:n])
		ts.Check(err)
		done += n
		if done < size {
			time.Sleep(pause)
		}
	}
}
