package hooks

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clr-suite/clr/events"
)

// hostile is list content that would run commands if it were ever
// interpolated into a shell command line.
const hostile = `it's "quoted" $(touch pwned) ` + "`touch pwned2`" + ` ; touch pwned3 \ $HOME`

func testEvent() events.Event {
	return events.Event{
		Type:           events.SubscriptionImageNew,
		Session:        "0b2d6a4e-session",
		ListIdentifier: "list-uuid",
		VO:             "vo.example.org",
		Filename:       "/var/cache/clr/image.ova",
		Image: &events.Image{
			Identifier:  "image-uuid",
			Title:       hostile,
			Description: "line one\nline two",
			URI:         "https://example.org/image.ova?a=1&b=2",
			Size:        1234,
			Version:     "1.2",
			Hypervisor:  "vmware",
			Format:      "ova",
			Arch:        "x86_64",
			OS:          "Linux",
			OSVersion:   "9",
			Comments:    "c",
			SHA512:      strings.Repeat("ab", 64),
			MPURI:       "https://mp.example.org/x",
		},
	}
}

func hookErr(t *testing.T, err error) *HookError {
	t.Helper()
	var he *HookError
	if !errors.As(err, &he) {
		t.Fatalf("error %v (%T) is not a *HookError", err, err)
	}
	return he
}

func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for kv := range strings.SplitSeq(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

func TestEnvironmentPassedLiterally(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ev := testEvent()
	r := Runner{
		// The operator's command line; the event only arrives in the
		// environment. /proc/self/environ of cat is the hook's environment.
		Command: `printf '%s' "$CLR_EVENT_DC_TITLE" > clr_title; ` +
			`printf '%s' "$VMCATCHER_EVENT_DC_TITLE" > vmc_title; ` +
			`cat /proc/self/environ > env`,
		Dir: dir,
		Environ: []string{
			"PATH=" + os.Getenv("PATH"),
			"BASE_VAR=kept",
			"CLR_EVENT_TYPE=Stale",             // overridden by the event
			"VMCATCHER_EVENT_UUID_SESSION=old", // overridden by the event
			"CLR_EVENT_OLD_ONLY=stale",         // not in this event: dropped
		},
	}
	res, err := r.Run(context.Background(), ev)
	if err != nil {
		t.Fatalf("Run: %v (output %q)", err, res.Output)
	}
	if res.ExitCode != 0 || res.TimedOut {
		t.Fatalf("result %+v", res)
	}
	for _, f := range []string{"pwned", "pwned2", "pwned3"} {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Errorf("%s was created: event value was interpreted by the shell", f)
		}
	}
	for _, f := range []string{"clr_title", "vmc_title"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != hostile {
			t.Errorf("%s = %q, want %q", f, b, hostile)
		}
	}

	env := readEnvFile(t, filepath.Join(dir, "env"))
	want := ev.Environ()
	if len(want) < 2*19 {
		t.Fatalf("test event too sparse: %d variables", len(want))
	}
	for _, kv := range want {
		k, v, _ := strings.Cut(kv, "=")
		if got, ok := env[k]; !ok || got != v {
			t.Errorf("%s = %q (present %v), want %q", k, got, ok, v)
		}
	}
	for _, k := range []string{"CLR_EVENT_TYPE", "VMCATCHER_EVENT_TYPE", "CLR_EVENT_HV_SIZE", "VMCATCHER_EVENT_SL_CHECKSUM_SHA512", "VMCATCHER_EVENT_UUID_SESSION"} {
		if _, ok := env[k]; !ok {
			t.Errorf("%s missing", k)
		}
	}
	if env["CLR_EVENT_TYPE"] != "SubscriptionImageNew" || env["VMCATCHER_EVENT_UUID_SESSION"] != ev.Session {
		t.Errorf("base environment not overridden: %q %q", env["CLR_EVENT_TYPE"], env["VMCATCHER_EVENT_UUID_SESSION"])
	}
	if env["BASE_VAR"] != "kept" {
		t.Errorf("base variable lost")
	}
	if _, ok := env["CLR_EVENT_OLD_ONLY"]; ok {
		t.Errorf("stale event variable from the base environment reached the hook")
	}
	for k := range env {
		if strings.HasPrefix(k, "CLR_EVENT_") || strings.HasPrefix(k, "VMCATCHER_EVENT_") {
			if !slices.Contains(want, k+"="+env[k]) {
				t.Errorf("unexpected %s", k)
			}
		}
	}
}

func TestUnpassableValuesLeftOut(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ev := events.Event{Type: events.AvailablePrefix, VO: "a\x00b", ListIdentifier: "L",
		Image: &events.Image{Identifier: "I", Description: strings.Repeat("d", 1<<20)}}
	res, err := Runner{Command: `cat /proc/self/environ > env`, Dir: dir}.Run(context.Background(), ev)
	if err != nil {
		t.Fatalf("Run: %v (%q)", err, res.Output)
	}
	env := readEnvFile(t, filepath.Join(dir, "env"))
	if _, ok := env["CLR_EVENT_VO"]; ok {
		t.Error("NUL-containing value passed")
	}
	if _, ok := env["VMCATCHER_EVENT_DC_DESCRIPTION"]; ok {
		t.Error("1 MiB value passed")
	}
	if env["CLR_EVENT_IL_DC_IDENTIFIER"] != "L" || env["VMCATCHER_EVENT_DC_IDENTIFIER"] != "I" {
		t.Error("other variables lost")
	}
}

func TestJSONOnStdin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ev := testEvent()
	res, err := Runner{Command: `cat > in.json`, Dir: dir}.Run(context.Background(), ev)
	if err != nil {
		t.Fatalf("Run: %v (%q)", err, res.Output)
	}
	b, err := os.ReadFile(filepath.Join(dir, "in.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(b), "}\n") || strings.Count(string(b), "\n") != 1 {
		t.Errorf("want one JSON line ending in a newline, got %q", b)
	}
	var got events.Event
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := ev
	want.Schema = events.SchemaVersion
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v %+v\nwant %+v %+v", got, got.Image, want, want.Image)
	}
}

func TestNonZeroExit(t *testing.T) {
	t.Parallel()
	res, err := Runner{Command: `echo "boom happened"; echo "more detail" >&2; exit 3`}.Run(context.Background(), testEvent())
	if err == nil {
		t.Fatal("no error for exit 3")
	}
	he := hookErr(t, err)
	if he.ExitCode != 3 || res.ExitCode != 3 || he.TimedOut || res.TimedOut {
		t.Errorf("HookError %+v, Result %+v", he, res)
	}
	if he.Kind != events.SubscriptionImageNew {
		t.Errorf("Kind %q", he.Kind)
	}
	if res.Output != "boom happened\nmore detail" || he.Output != res.Output {
		t.Errorf("output %q / %q", res.Output, he.Output)
	}
	if got, want := err.Error(), "hook SubscriptionImageNew exited 3: boom happened"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Errorf("Err is %T, want *exec.ExitError", he.Err)
	}
	if errors.Is(err, ErrTimeout) {
		t.Error("exit 3 is not a timeout")
	}
}

func TestExitZeroNoError(t *testing.T) {
	t.Parallel()
	res, err := Runner{Command: `echo "  hello  "; echo warn >&2`}.Run(context.Background(), testEvent())
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 || res.Output != "hello  \nwarn" || res.Duration <= 0 {
		t.Errorf("result %+v", res)
	}
}

func TestCommandNotFound(t *testing.T) {
	t.Parallel()
	res, err := Runner{Command: `clr-no-such-hook-command --flag`}.Run(context.Background(), testEvent())
	he := hookErr(t, err)
	if he.ExitCode != 127 || res.ExitCode != 127 {
		t.Fatalf("exit %d, want 127 (%v)", he.ExitCode, err)
	}
	if !strings.Contains(res.Output, "clr-no-such-hook-command") {
		t.Errorf("output %q does not name the command", res.Output)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "hook SubscriptionImageNew exited 127: ") || !strings.Contains(msg, "not found") {
		t.Errorf("message %q", msg)
	}
}

func TestCouldNotStart(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "missing")
	res, err := Runner{Command: "true", Dir: dir}.Run(context.Background(), testEvent())
	he := hookErr(t, err)
	if res.ExitCode != -1 || he.ExitCode != -1 || he.Err == nil {
		t.Errorf("res %+v err %+v", res, he)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "hook SubscriptionImageNew could not start: ") {
		t.Errorf("message %q", msg)
	}
	if _, err := (Runner{Command: "  "}).Run(context.Background(), testEvent()); err == nil || !strings.Contains(err.Error(), "empty command") {
		t.Errorf("empty command: %v", err)
	}
}

// pidGone reports whether pid has exited. A zombie waiting for its new
// parent (init) to reap it has exited too.
// pidGone reports whether pid has died, allowing the kernel up to a
// second to finish a SIGKILL that was sent just before Run returned (the
// signal is asynchronous; on a loaded machine teardown takes a moment). A
// process that ignored the kill would still be there after 100 s of sleep.
func pidGone(pid int) bool {
	deadline := time.Now().Add(time.Second)
	for {
		if pidGoneNow(pid) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pidGoneNow(pid int) bool {
	if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return os.IsNotExist(err)
	}
	// pid (comm) S ...; comm may contain spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func killLeftover(t *testing.T, pidFile string) {
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	killLeftover(t, pidFile)
	r := Runner{
		Command: `echo starting; sleep 100 & echo $! > pid; wait`,
		Dir:     dir,
		Timeout: 300 * time.Millisecond,
	}
	start := time.Now()
	res, err := r.Run(context.Background(), testEvent())
	elapsed := time.Since(start)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err %v, want ErrTimeout", err)
	}
	he := hookErr(t, err)
	if !he.TimedOut || !res.TimedOut || res.ExitCode != -1 {
		t.Errorf("HookError %+v Result %+v", he, res)
	}
	if got, want := err.Error(), "hook SubscriptionImageNew killed after 300ms timeout: starting"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
	if elapsed < 300*time.Millisecond || elapsed > 300*time.Millisecond+killGrace+time.Second {
		t.Errorf("Run took %v", elapsed)
	}
	if pid := readPid(t, pidFile); !pidGone(pid) {
		t.Errorf("background child %d still running after Run returned", pid)
	}
}

func TestTimeoutEscalatesToSIGKILL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	killLeftover(t, pidFile)
	// Ignored signals stay ignored across exec, so neither the shell nor
	// its sleep dies of SIGTERM.
	r := Runner{
		Command: `trap '' TERM; sleep 100 & echo $! > pid; wait; wait; wait`,
		Dir:     dir,
		Timeout: 300 * time.Millisecond,
	}
	start := time.Now()
	res, err := r.Run(context.Background(), testEvent())
	elapsed := time.Since(start)
	if !errors.Is(err, ErrTimeout) || !res.TimedOut {
		t.Fatalf("err %v res %+v", err, res)
	}
	if elapsed < killGrace || elapsed > 300*time.Millisecond+killGrace+time.Second {
		t.Errorf("Run took %v, want about timeout + grace", elapsed)
	}
	if pid := readPid(t, pidFile); !pidGone(pid) {
		t.Errorf("background child %d survived SIGKILL", pid)
	}
}

func TestClosedOutputStillBoundedByTimeout(t *testing.T) {
	t.Parallel()
	r := Runner{
		Command: `echo bye; exec >/dev/null 2>&1 </dev/null; sleep 100`,
		Timeout: 300 * time.Millisecond,
	}
	start := time.Now()
	res, err := r.Run(context.Background(), testEvent())
	if !errors.Is(err, ErrTimeout) || !res.TimedOut {
		t.Fatalf("err %v res %+v", err, res)
	}
	if d := time.Since(start); d > 300*time.Millisecond+killGrace+time.Second {
		t.Errorf("Run took %v", d)
	}
	if res.Output != "bye" {
		t.Errorf("output %q", res.Output)
	}
}

func TestBackgroundHoldingOutputAfterExit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	killLeftover(t, pidFile)
	// The shell exits 0 at once, but its background child keeps the
	// output pipe open: Run waits killGrace for it, then returns success.
	r := Runner{Command: `sleep 100 & echo $! > pid; echo done`, Dir: dir}
	start := time.Now()
	res, err := r.Run(context.Background(), testEvent())
	if err != nil {
		t.Fatalf("err %v", err)
	}
	if d := time.Since(start); d > killGrace+time.Second {
		t.Errorf("Run took %v", d)
	}
	if res.ExitCode != 0 || res.TimedOut || res.Output != "done" {
		t.Errorf("result %+v", res)
	}
}

func TestContextCancel(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	killLeftover(t, pidFile)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for {
			if _, err := os.Stat(pidFile); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	start := time.Now()
	res, err := Runner{Command: `sleep 100 & echo $! > pid; wait`, Dir: dir}.Run(ctx, testEvent())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if errors.Is(err, ErrTimeout) || res.TimedOut {
		t.Error("a cancel is not a timeout")
	}
	if got, want := err.Error(), "hook SubscriptionImageNew killed: context canceled"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
	if d := time.Since(start); d > killGrace+2*time.Second {
		t.Errorf("Run took %v", d)
	}
	if pid := readPid(t, pidFile); !pidGone(pid) {
		t.Errorf("background child %d still running", pid)
	}

	// Already cancelled: the hook is not started at all.
	dir2 := t.TempDir()
	_, err = Runner{Command: `touch ran`, Dir: dir2}.Run(ctx, testEvent())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir2, "ran")); err == nil {
		t.Error("hook ran with a cancelled context")
	}
}

func TestBigOutputCapped(t *testing.T) {
	t.Parallel()
	// 10 MiB of output; the hook must be drained (it finishes) and only
	// MaxOutput bytes kept.
	r := Runner{Command: `head -c 10485760 /dev/zero | tr '\0' x; echo; echo tail >&2; exit 5`, MaxOutput: 1000}
	res, err := r.Run(context.Background(), testEvent())
	he := hookErr(t, err)
	if he.ExitCode != 5 || he.TimedOut {
		t.Fatalf("err %v", err)
	}
	head, marker, ok := strings.Cut(res.Output, "\n")
	if !ok || head != strings.Repeat("x", 1000) {
		t.Fatalf("kept %d bytes: %.80q", len(head), res.Output)
	}
	if want := "[... 10484766 more bytes of output dropped]"; marker != want {
		t.Errorf("marker %q, want %q", marker, want)
	}
	if len(err.Error()) > 300 {
		t.Errorf("message not capped: %d bytes", len(err.Error()))
	}

	// Default cap.
	res, err = Runner{Command: `head -c 200000 /dev/zero | tr '\0' y`}.Run(context.Background(), testEvent())
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(res.Output))
	sc.Buffer(nil, 1<<20)
	sc.Scan()
	if len(sc.Text()) != DefaultMaxOutput {
		t.Errorf("kept %d bytes, want %d", len(sc.Text()), DefaultMaxOutput)
	}
}

func TestCapBufferMemory(t *testing.T) {
	t.Parallel()
	c := &capBuffer{max: 4096}
	chunk := make([]byte, 32<<10)
	for range 320 { // 10 MiB
		if n, err := c.Write(chunk); n != len(chunk) || err != nil {
			t.Fatal(n, err)
		}
	}
	if len(c.buf) != 4096 || cap(c.buf) > 4096 {
		t.Errorf("len %d cap %d", len(c.buf), cap(c.buf))
	}
	if c.dropped != 320*32<<10-4096 {
		t.Errorf("dropped %d", c.dropped)
	}
}

func TestHookIgnoringStdinDoesNotBlock(t *testing.T) {
	t.Parallel()
	ev := testEvent()
	ev.Image.Description = strings.Repeat("d", 1<<20) // far more than a pipe buffer
	for _, cmd := range []string{
		`exit 0`,
		`exec 0<&-; sleep 0.2; echo ok`,
		`sleep 0.3; echo ok`, // never reads, stays alive a while
	} {
		start := time.Now()
		res, err := Runner{Command: cmd, Timeout: 5 * time.Second}.Run(context.Background(), ev)
		if err != nil {
			t.Errorf("%s: %v", cmd, err)
		}
		if res.TimedOut || time.Since(start) > 3*time.Second {
			t.Errorf("%s: took %v (%+v)", cmd, time.Since(start), res)
		}
	}
}

func TestHookErrorMessage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		e    *HookError
		want string
	}{
		{&HookError{Kind: events.ExpirePrefix, ExitCode: 2, Output: "\n\n  first\x1b[31m line \nsecond"}, "hook ExpirePrefix exited 2: first [31m line"},
		{&HookError{Kind: events.ExpirePrefix, TimedOut: true, Err: ErrTimeout, timeout: 10 * time.Second}, "hook ExpirePrefix killed after 10s timeout"},
		{&HookError{TimedOut: true}, "hook timed out"},
		{&HookError{Kind: events.ProcessPrefix, ExitCode: -1, reason: "killed by signal 9 (killed)"}, "hook ProcessPrefix killed by signal 9 (killed)"},
		{&HookError{Kind: events.ProcessPrefix, ExitCode: 1, Output: strings.Repeat("é", 300)}, "hook ProcessPrefix exited 1: " + strings.Repeat("é", 100) + "..."},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}

func TestKilledBySignal(t *testing.T) {
	t.Parallel()
	res, err := Runner{Command: `echo dying; kill -KILL $$`}.Run(context.Background(), testEvent())
	he := hookErr(t, err)
	if res.ExitCode != -1 || he.TimedOut {
		t.Errorf("res %+v", res)
	}
	if got, want := err.Error(), "hook SubscriptionImageNew killed by signal 9 (killed): dying"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
}
