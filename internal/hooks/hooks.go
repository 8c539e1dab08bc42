// Package hooks runs an operator's event hook command for one events.Event
// (DESIGN section 7).
//
// The command line is the operator's, verbatim: it runs under /bin/sh -c in
// its own process group. The event reaches the hook only as environment
// variables (events.Event.Environ: CLR_EVENT_* and VMCATCHER_EVENT_*) and as
// a JSON document on standard input (events.Event.JSON). No event value is
// ever put into the command line, so list content cannot inject shell code
// (vmcatcher's bug). A timeout is enforced: when it expires the whole process
// group gets SIGTERM and, after a short grace, SIGKILL.
//
// Run reports failures as a *HookError; the caller logs it and carries on.
package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/clr-suite/clr/events"
)

// DefaultTimeout is the hook timeout used when Runner.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// DefaultMaxOutput is the number of bytes of combined standard output and
// standard error kept when Runner.MaxOutput is zero.
const DefaultMaxOutput = 64 << 10

// killGrace is the time between SIGTERM and SIGKILL when a hook is stopped,
// and how long Run keeps reading output held open by background processes
// after the shell itself has exited.
const killGrace = 2 * time.Second

// maxLine bounds the output line quoted in a HookError message.
const maxLine = 200

// maxEnvEntry bounds one NAME=value event variable. The kernel refuses a
// single environment string over 128 KiB and the whole environment over
// ARG_MAX (often 2 MiB); with this bound all event variables together stay
// well under that, so an outsized image description cannot stop the hook
// from starting.
const maxEnvEntry = 32 << 10

// ErrTimeout is wrapped by the *HookError of a hook that was killed because
// it ran longer than its timeout: errors.Is(err, ErrTimeout).
var ErrTimeout = errors.New("hook timed out")

// Runner runs one configured hook command. The zero value is not useful:
// Command must be set. A Runner is safe for concurrent use.
type Runner struct {
	// Command is the shell command line as the operator wrote it
	// (vmcatcher's -x "CMD"). It is run with /bin/sh -c, unchanged.
	Command string

	// Timeout bounds the whole run. Zero (or negative) means
	// DefaultTimeout. When it expires the hook's process group gets
	// SIGTERM, then SIGKILL 2 s later.
	Timeout time.Duration

	// Environ is the base environment, usually os.Environ(). Any
	// CLR_EVENT_* and VMCATCHER_EVENT_* entries in it are dropped, then the
	// event's variables are appended, so the hook sees exactly the current
	// event. Nil means an empty base: the hook gets the event variables only.
	Environ []string

	// Dir is the hook's working directory; "" inherits the caller's.
	Dir string

	// MaxOutput is the number of bytes of combined standard output and
	// standard error kept for the report; zero (or negative) means
	// DefaultMaxOutput. Output beyond it is read and discarded, so a chatty
	// hook neither blocks nor grows memory.
	MaxOutput int
}

// Result describes one finished hook run.
type Result struct {
	// ExitCode is the shell's exit status, or -1 when the hook did not
	// start or was ended by a signal (as after a timeout).
	ExitCode int
	// Output is the combined standard output and standard error, made
	// valid UTF-8, trimmed of surrounding white space and capped at
	// MaxOutput bytes (a final "[... N more bytes of output dropped]" line
	// marks a cut).
	Output string
	// Duration is the time from start until the hook was over.
	Duration time.Duration
	// TimedOut is set when the hook was killed because of its timeout.
	TimedOut bool
}

// HookError is the error of a hook that could not start, exited non-zero,
// was ended by a signal, or was killed by its timeout or by the context.
// Its message is one lower-case line, for example
//
//	hook SubscriptionImageNew exited 3: first line of output
//	hook SubscriptionImageNew killed after 10s timeout
type HookError struct {
	Kind     events.Kind // the event the hook ran for
	ExitCode int         // as Result.ExitCode
	TimedOut bool        // killed by the timeout; Err is then ErrTimeout
	Output   string      // as Result.Output
	// Err is the cause: ErrTimeout, the context's error, the start error,
	// or the *exec.ExitError of a failed run.
	Err error

	timeout time.Duration // the timeout that expired
	reason  string        // what happened, when ExitCode does not say it
}

// Error returns the one-line message: what happened and the first line of
// the hook's output.
func (e *HookError) Error() string {
	var b strings.Builder
	b.WriteString("hook")
	if e.Kind != "" {
		b.WriteString(" ")
		b.WriteString(string(e.Kind))
	}
	switch {
	case e.TimedOut && e.timeout > 0:
		fmt.Fprintf(&b, " killed after %s timeout", e.timeout)
	case e.TimedOut:
		b.WriteString(" timed out")
	case e.reason != "":
		b.WriteString(" ")
		b.WriteString(e.reason)
	case e.ExitCode > 0:
		fmt.Fprintf(&b, " exited %d", e.ExitCode)
	case e.Err != nil:
		fmt.Fprintf(&b, " failed: %v", e.Err)
	default:
		b.WriteString(" failed")
	}
	if line := firstLine(e.Output); line != "" {
		b.WriteString(": ")
		b.WriteString(line)
	}
	return b.String()
}

// Unwrap returns Err.
func (e *HookError) Unwrap() error { return e.Err }

// Run runs the hook for ev and waits until it is over: the shell exited and
// its output is closed (background processes still holding the output get at
// most 2 s more), the timeout expired, or ctx is done. In the last two cases
// the hook's process group is killed before Run returns.
//
// The error is nil exactly when the shell exited 0; otherwise it is a
// *HookError. The Result is filled in either way.
func (r Runner) Run(ctx context.Context, ev events.Event) (Result, error) {
	res := Result{ExitCode: -1}
	notRun := func(reason string, err error) (Result, error) {
		return res, &HookError{Kind: ev.Type, ExitCode: -1, Err: err, reason: reason}
	}
	if strings.TrimSpace(r.Command) == "" {
		err := errors.New("empty command")
		return notRun("could not start: empty command", err)
	}
	if err := ctx.Err(); err != nil {
		return notRun("not run: "+err.Error(), err)
	}
	payload, err := ev.JSON()
	if err != nil {
		return notRun("could not start: encode event: "+err.Error(), err)
	}
	payload = append(payload, '\n')

	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	limit := r.MaxOutput
	if limit <= 0 {
		limit = DefaultMaxOutput
	}
	out := &capBuffer{max: limit}

	cmd := exec.Command("/bin/sh", "-c", r.Command)
	cmd.Env = r.environ(ev)
	cmd.Dir = r.Dir
	// A bytes.Reader makes os/exec copy stdin from a goroutine and ignore
	// EPIPE, so a hook that never reads its input cannot block Run.
	cmd.Stdin = bytes.NewReader(payload)
	// The same comparable writer for both: one pipe, one copying goroutine.
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Bounds the wait for output held open after the shell has exited, by
	// background processes of the hook or ones that left its process group.
	cmd.WaitDelay = killGrace

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return notRun("could not start: "+err.Error(), err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var (
		waitErr  error
		timedOut bool
		ctxErr   error
	)
	select {
	case waitErr = <-waited:
	case <-timer.C:
		select {
		case waitErr = <-waited: // finished just in time
		default:
			timedOut = true
			waitErr = stop(cmd.Process, waited)
		}
	case <-ctx.Done():
		select {
		case waitErr = <-waited:
		default:
			ctxErr = ctx.Err()
			waitErr = stop(cmd.Process, waited)
		}
	}
	res.Duration = time.Since(start)
	res.Output = out.finish()
	res.TimedOut = timedOut
	ps := cmd.ProcessState
	if ps != nil {
		res.ExitCode = ps.ExitCode()
	}

	herr := &HookError{Kind: ev.Type, ExitCode: res.ExitCode, Output: res.Output, Err: waitErr}
	switch {
	case timedOut:
		herr.TimedOut, herr.Err, herr.timeout = true, ErrTimeout, timeout
	case ctxErr != nil:
		herr.Err, herr.reason = ctxErr, "killed: "+ctxErr.Error()
	case ps == nil:
		herr.reason = fmt.Sprintf("failed: %v", waitErr)
	case ps.Success():
		// Exit 0. A waitErr here is exec.ErrWaitDelay (background
		// processes kept the output open) or a stdin copy error: the
		// hook itself succeeded.
		return res, nil
	case ps.ExitCode() < 0:
		herr.reason = "killed by " + describeSignal(ps)
	}
	return res, herr
}

// environ is the hook's environment: the base without stale event
// variables, then the event's variables. A value containing a NUL byte
// cannot be an environment variable, and one longer than maxEnvEntry could
// keep the hook from starting: both are left out (they are still in the JSON
// document).
func (r Runner) environ(ev events.Event) []string {
	evEnv := ev.Environ()
	env := make([]string, 0, len(r.Environ)+len(evEnv))
	for _, kv := range r.Environ {
		if strings.HasPrefix(kv, "CLR_EVENT_") || strings.HasPrefix(kv, "VMCATCHER_EVENT_") {
			continue
		}
		env = append(env, kv)
	}
	for _, kv := range evEnv {
		if len(kv) <= maxEnvEntry && strings.IndexByte(kv, 0) < 0 {
			env = append(env, kv)
		}
	}
	return env
}

// stop ends a running hook: SIGTERM to its process group, then SIGKILL to
// the group once the group is gone or killGrace has passed, whichever comes
// first. It returns cmd.Wait's error.
func stop(p *os.Process, waited <-chan error) error {
	pgid := p.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)

	grace := time.NewTimer(killGrace)
	defer grace.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var (
		waitErr error
		reaped  bool
	)
	pending := waited
wait:
	for {
		select {
		case waitErr = <-pending:
			reaped, pending = true, nil
		case <-tick.C:
			// Zombies still count as group members until their new
			// parent reaps them; then the grace simply runs out.
			if reaped && syscall.Kill(-pgid, 0) == syscall.ESRCH {
				break wait
			}
		case <-grace.C:
			break wait
		}
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	if !reaped {
		_ = p.Kill() // in case the shell left its group
		// Bounded: the shell is dead, and WaitDelay then closes any pipe
		// a process outside the group still holds.
		waitErr = <-waited
	}
	return waitErr
}

func describeSignal(ps *os.ProcessState) string {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		sig := ws.Signal()
		return fmt.Sprintf("signal %d (%s)", int(sig), sig)
	}
	return ps.String()
}

// firstLine returns the first non-blank line of s with control characters
// replaced and its length capped, for a one-line error message.
func firstLine(s string) string {
	for line := range strings.Lines(s) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		line = strings.Map(func(r rune) rune {
			if unicode.IsControl(r) {
				return ' '
			}
			return r
		}, line)
		if len(line) > maxLine {
			cut := maxLine
			for cut > 0 && !utf8.RuneStart(line[cut]) {
				cut--
			}
			line = line[:cut] + "..."
		}
		return line
	}
	return ""
}

// capBuffer keeps the first max bytes written to it and counts the rest.
// Write never fails, so the copying goroutine keeps draining the pipe and
// the hook never blocks on a full pipe.
type capBuffer struct {
	mu      sync.Mutex
	max     int
	buf     []byte
	dropped int64
	done    bool
}

func (c *capBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return len(p), nil
	}
	n := min(c.max-len(c.buf), len(p))
	if n > 0 {
		if len(c.buf)+n > cap(c.buf) {
			// Grow by doubling, but never beyond max.
			grown := make([]byte, len(c.buf), min(c.max, max(2*cap(c.buf), len(c.buf)+n, 512)))
			copy(grown, c.buf)
			c.buf = grown
		}
		c.buf = append(c.buf, p[:n]...)
	}
	c.dropped += int64(len(p) - max(n, 0))
	return len(p), nil
}

// finish returns the report text and ignores later writes (a copying
// goroutine may outlive Wait after WaitDelay closed its pipe).
func (c *capBuffer) finish() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = true
	s := strings.TrimSpace(strings.ToValidUTF8(string(c.buf), "\uFFFD"))
	if c.dropped > 0 {
		s += fmt.Sprintf("\n[... %d more bytes of output dropped]", c.dropped)
	}
	return s
}
