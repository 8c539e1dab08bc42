package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"
)

// ssh:// templates: the system rsync over the OpenSSH client, pulling into
// the staging directory with the published version as --copy-dest basis
// (research/delta.md 1.1 and 4). The command line is built here and run
// without a shell; only the -e value is a string that rsync splits on
// spaces, so nothing in it may contain whitespace or quotes.

// rsyncKillGrace is how long rsync may take to save its partial file and
// exit after SIGTERM before its process group is killed.
const rsyncKillGrace = 3 * time.Second

// SSH keepalives: a dead link is noticed after about a minute.
const (
	sshAliveInterval = 15
	sshAliveCount    = 4
)

// RsyncError is a failed rsync run: rsync exited with a code other than 0.
// It matches [ErrDownload] with errors.Is, and its ExitCode is vmcatcher's
// download failure code.
//
// Retryable follows rsync's exit codes (research/delta.md 1.1): retry with
// backoff on 10 (socket i/o), 12 (protocol data stream, also what a dropped
// ssh connection looks like), 20 (signal, not from the caller), 30 (i/o
// timeout), 35 and 255 (ssh failed), unless ssh reported a refused host
// key or client key (then 12 and 255 are not retryable); retry 23 and 24 (partial transfer) once; never
// 1, 2, 3, 4 and the rest (usage, version or local problems).
type RsyncError struct {
	URL       string // the template URL, without user information
	Code      int    // rsync's exit code; 128+N when killed by signal N
	Stderr    string // the last lines rsync and ssh wrote to stderr, trimmed
	Retryable bool   // trying again later may succeed
}

// rsyncCodes are rsync's exit codes (rsync 3.5.0 man page), lower case.
var rsyncCodes = map[int]string{
	1:   "syntax or usage error",
	2:   "protocol incompatibility",
	3:   "errors selecting input/output files, dirs",
	4:   "requested action not supported",
	5:   "error starting client-server protocol",
	6:   "daemon unable to append to log-file",
	10:  "error in socket i/o",
	11:  "error in file i/o",
	12:  "error in rsync protocol data stream",
	13:  "errors with program diagnostics",
	14:  "error in ipc code",
	15:  "sibling process crashed",
	16:  "sibling process terminated abnormally",
	19:  "status returned when sent sigusr1",
	20:  "received sigint, sigterm, or sighup",
	21:  "some error returned by waitpid()",
	22:  "error allocating core memory buffers",
	23:  "partial transfer due to error",
	24:  "partial transfer due to vanished source files",
	25:  "the --max-delete limit stopped deletions",
	30:  "timeout in data send/receive",
	35:  "timeout waiting for daemon connection",
	255: "ssh failed",
}

// RsyncCodeText is rsync's meaning of an exit code, in lower case.
func RsyncCodeText(code int) string {
	if s, ok := rsyncCodes[code]; ok {
		return s
	}
	if code > 128 && code < 128+65 {
		return "killed by signal " + strconv.Itoa(code-128)
	}
	return "unknown exit code"
}

// sshRefusals are what ssh prints when the host key or the client key is
// refused: configuration, not the network, whatever rsync's exit code
// (255 from ssh, or 12 when rsync notices the closed pipe first).
var sshRefusals = []string{
	"Host key verification failed",
	"REMOTE HOST IDENTIFICATION HAS CHANGED",
	"Permission denied (",
}

// newRsyncError classifies a failed run.
func newRsyncError(url string, code int, stderr string) *RsyncError {
	e := &RsyncError{URL: url, Code: code, Stderr: stderr}
	switch code {
	case 10, 12, 20, 23, 24, 30, 35, 255:
		e.Retryable = true
	}
	if code == 12 || code == 255 {
		for _, s := range sshRefusals {
			if strings.Contains(stderr, s) {
				e.Retryable = false
			}
		}
	}
	return e
}

// Error returns one line, for example
//
//	download failed: ssh://mirror.example.org/lib/tmpl/: rsync exit 255 (ssh failed): Host key verification failed.
func (e *RsyncError) Error() string {
	msg := fmt.Sprintf("download failed: %s: rsync exit %d (%s)", e.URL, e.Code, RsyncCodeText(e.Code))
	if line := e.reason(); line != "" {
		msg += ": " + line
	}
	return msg
}

// reason picks the most telling stderr line: the last one that is not
// rsync's generic summary of the exit code or an ssh banner of "@".
func (e *RsyncError) reason() string {
	lines := strings.Split(e.Stderr, "\n")
	fallback := ""
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.Trim(l, "@") == "" {
			continue
		}
		if fallback == "" {
			fallback = l
		}
		if strings.HasPrefix(l, "rsync error:") || strings.HasPrefix(l, "rsync: connection unexpectedly closed") {
			continue
		}
		return clip(l, 300)
	}
	return clip(fallback, 300)
}

// Is reports whether target is ErrDownload.
func (e *RsyncError) Is(target error) bool { return target == ErrDownload }

// ExitCode returns [ExitDownload] (10), vmcatcher's code for a failed
// download.
func (e *RsyncError) ExitCode() int { return ExitDownload }

// checkSSHOptions validates what goes into rsync's -e command.
func checkSSHOptions(o SSHOptions) error {
	for _, f := range []struct{ name, value string }{{"ssh key file", o.KeyFile}, {"known_hosts file", o.KnownHosts}, {"ssh command", o.Command}} {
		if err := checkEWord(f.value); err != nil {
			return invalid("%s %q: %v", f.name, f.value, err)
		}
	}
	if strings.HasPrefix(o.Command, "-") {
		return invalid("ssh command %q starts with \"-\"", o.Command)
	}
	if o.KnownHosts == "" && !o.AcceptNew {
		return invalid("ssh needs a known_hosts file with the server's pinned host key (or explicit first-use acceptance)")
	}
	if o.KnownHosts != "" && !o.AcceptNew {
		if _, err := os.Stat(o.KnownHosts); err != nil {
			return invalid("known_hosts file: %v", pathErr(err))
		}
	}
	if o.KeyFile != "" {
		if _, err := os.Stat(o.KeyFile); err != nil {
			return invalid("ssh key file: %v", pathErr(err))
		}
	}
	if o.ConnectTimeout < 0 {
		return invalid("negative ssh connect timeout %s", o.ConnectTimeout)
	}
	return nil
}

// checkEWord accepts a word for rsync's -e command: rsync splits it on
// spaces and honours quotes, ssh's -o parsing honours backslashes.
func checkEWord(s string) error {
	for _, c := range s {
		if unicode.IsSpace(c) || c == '\'' || c == '"' || c == '\\' || c < 0x20 || c == 0x7f {
			return errors.New("whitespace, quotes, backslashes and control characters cannot be passed to ssh through rsync")
		}
	}
	return nil
}

// sshPath makes p absolute and escapes ssh's % tokens.
func sshPath(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	return strings.ReplaceAll(p, "%", "%%")
}

// seconds rounds d up to whole seconds, at least 1.
func seconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// sshCommand is rsync's -e value.
// SSHCommand is the ssh command line (rsync -e) for o and port ("" for
// ssh's default): no user or system ssh_config, batch mode, keep-alives,
// strict host key checking against o.KnownHosts. Other rsync callers
// (clr-publish push) use it so every ssh connection is made the same way.
func SSHCommand(o SSHOptions, port string) string { return sshCommand(o, port) }

func sshCommand(o SSHOptions, port string) string {
	cmd := o.Command
	if cmd == "" {
		cmd = "ssh"
	}
	w := []string{cmd}
	if port != "" {
		w = append(w, "-p", port)
	}
	if o.KeyFile != "" {
		w = append(w, "-i", sshPath(o.KeyFile), "-o", "IdentitiesOnly=yes")
	}
	ct := o.ConnectTimeout
	if ct == 0 {
		ct = DefaultConnectTimeout
	}
	// -F /dev/null: neither ~/.ssh/config nor /etc/ssh/ssh_config can
	// change what is checked (a ProxyCommand, another known_hosts...).
	w = append(w, "-F", "/dev/null", "-o", "BatchMode=yes",
		"-o", fmt.Sprintf("ConnectTimeout=%d", seconds(ct)),
		"-o", fmt.Sprintf("ServerAliveInterval=%d", sshAliveInterval),
		"-o", fmt.Sprintf("ServerAliveCountMax=%d", sshAliveCount))
	if o.AcceptNew {
		w = append(w, "-o", "StrictHostKeyChecking=accept-new")
	} else {
		w = append(w, "-o", "StrictHostKeyChecking=yes")
	}
	if o.KnownHosts != "" {
		// Pinned: only this file counts.
		w = append(w, "-o", "UserKnownHostsFile="+sshPath(o.KnownHosts), "-o", "GlobalKnownHostsFile=/dev/null")
	}
	return strings.Join(w, " ")
}

// rsyncSource is the remote operand: [user@]host:/dir/ of the folder to
// pull from (the URL's folder, or the folder of a single file).
func rsyncSource(u *url.URL, folder bool) string {
	host := u.Hostname()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if u.User != nil {
		host = u.User.Username() + "@" + host
	}
	dir := u.Path
	if !folder {
		dir = path.Dir(dir)
	}
	if !strings.HasSuffix(dir, "/") {
		dir += "/"
	}
	return host + ":" + dir
}

// escapeFilter escapes a name for an rsync filter pattern: rsync treats
// backslashes as escapes only when the pattern has a wildcard.
func escapeFilter(s string) string {
	if !strings.ContainsAny(s, "*?[") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`)
	return r.Replace(s)
}

// rsyncRules are the include patterns (NUL-terminated, for --from0
// --include-from=-) that select exactly files and their directories; an
// --exclude=* after them drops everything else. Filter rules travel inside
// the rsync protocol, so clr-server and rrsync, which refuse --files-from,
// accept them.
func rsyncRules(files []FileSpec) []byte {
	var b bytes.Buffer
	dirs := map[string]bool{}
	for _, f := range files {
		els := strings.Split(f.Path, "/")
		for i := 1; i < len(els); i++ {
			d := strings.Join(els[:i], "/")
			if !dirs[d] {
				dirs[d] = true
				b.WriteString("/" + escapeFilter(d) + "/\x00")
			}
		}
		b.WriteString("/" + escapeFilter(f.Path) + "\x00")
	}
	return b.Bytes()
}

// rsyncArgs is the command line (after the binary) and stdin of the pull.
func rsyncArgs(p *templatePlan) ([]string, []byte) {
	args := []string{"--recursive", "--times", "--ignore-times", "--no-whole-file"}
	if p.basis != "" {
		args = append(args, "--copy-dest="+p.basis+"/")
	}
	args = append(args,
		"--compress-choice=zstd", "--checksum-choice=xxh128",
		"--block-size="+strconv.Itoa(p.blockSize),
		"--timeout="+strconv.FormatInt(seconds(p.ioTimeout), 10))
	if p.bwlimit > 0 {
		args = append(args, "--bwlimit="+strconv.FormatInt(max((p.bwlimit+512)/1024, 1), 10))
	}
	args = append(args, "--stats", "--no-human-readable", "--info=skip1", "--no-inc-recursive")
	if p.req.Progress != nil {
		args = append(args, "--info=progress2", "--outbuf=L")
	}
	if p.partial != "" {
		args = append(args, "--partial-dir="+p.partial)
	}
	var largest int64
	for _, f := range p.files {
		largest = max(largest, f.Size)
	}
	// rsync skips (and with --info=skip1 names) files larger than this;
	// a file over its own signed size but within the largest is caught
	// after the transfer.
	args = append(args, "--max-size="+strconv.FormatInt(largest, 10))
	args = append(args, "--from0", "--include-from=-", "--exclude=*")
	args = append(args, "-e", sshCommand(p.req.SSH, p.u.Port()), "--",
		rsyncSource(p.u, p.folder), p.stage+"/")
	return args, rsyncRules(p.files)
}

// rsyncEnv is the environment of rsync: ours without RSYNC_* variables,
// which could change its arguments (RSYNC_PROTECT_ARGS, RSYNC_OLD_ARGS),
// its partial directory or its remote shell.
func rsyncEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RSYNC_") {
			env = append(env, kv)
		}
	}
	return env
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// lastLines returns the last n non-empty lines of s, trimmed, with control
// characters replaced, at most 4 KiB.
func lastLines(s string, n int) string {
	var out []string
	lines := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	for i := len(lines) - 1; i >= 0 && len(out) < n; i-- {
		l := strings.TrimSpace(strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return ' '
			}
			return r
		}, lines[i]))
		if l != "" {
			out = append([]string{l}, out...)
		}
	}
	res := strings.Join(out, "\n")
	if cut := len(res) - 4096; cut > 0 {
		for cut < len(res) && !utf8.RuneStart(res[cut]) {
			cut++
		}
		res = res[cut:]
	}
	return res
}

// clip cuts s to about n bytes, on a character boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

var statRE = regexp.MustCompile(`(?m)^(Literal data|Matched data|Total bytes sent|Total bytes received): ([0-9,.]+)`)

// parseRsyncStats reads --stats output.
func parseRsyncStats(out string) TemplateStats {
	var st TemplateStats
	for _, m := range statRE.FindAllStringSubmatch(out, -1) {
		n, err := strconv.ParseInt(strings.NewReplacer(",", "", ".", "").Replace(m[2]), 10, 64)
		if err != nil {
			continue
		}
		switch m[1] {
		case "Literal data":
			st.LiteralBytes = n
		case "Matched data":
			st.MatchedBytes = n
		case "Total bytes sent":
			st.WireBytesOut = n
		case "Total bytes received":
			st.WireBytesIn = n
		}
	}
	return st
}

// overMaxSize returns the files rsync skipped as over --max-size; unknown
// names (rsync escapes unusual bytes) come back as FileSpec{Path: name,
// Size: -1}.
func overMaxSize(out string, files []FileSpec) []FileSpec {
	var over []FileSpec
	for _, l := range strings.Split(out, "\n") {
		name, ok := strings.CutSuffix(strings.TrimRight(l, "\r"), " is over max-size")
		if !ok {
			continue
		}
		found := FileSpec{Path: name, Size: -1}
		for _, f := range files {
			if f.Path == name {
				found = f
			}
		}
		over = append(over, found)
	}
	return over
}

// partialPresent reports whether PartialDir holds a partial file rsync
// will continue (it keeps them by base name).
func partialPresent(p *templatePlan) bool {
	if p.partial == "" {
		return false
	}
	for _, f := range p.files {
		if fi, err := os.Lstat(filepath.Join(p.partial, path.Base(f.Path))); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
			return true
		}
	}
	return false
}

// fetchRsync runs the pull.
func fetchRsync(ctx context.Context, p *templatePlan) (TemplateStats, error) {
	bin := p.req.Rsync
	if bin == "" {
		bin = "rsync"
	}
	if _, err := exec.LookPath(bin); err != nil {
		return TemplateStats{}, fmt.Errorf("fetch %s: rsync: %w", p.name, err)
	}
	if err := checkRsyncVersion(ctx, bin); err != nil {
		return TemplateStats{}, permanent(fmt.Errorf("fetch %s: %w", p.name, err))
	}
	sshBin := p.req.SSH.Command
	if sshBin == "" {
		sshBin = "ssh"
	}
	if _, err := exec.LookPath(sshBin); err != nil {
		return TemplateStats{}, fmt.Errorf("fetch %s: ssh: %w", p.name, err)
	}
	if p.partial != "" {
		if err := os.MkdirAll(p.partial, 0o700); err != nil {
			return TemplateStats{}, fmt.Errorf("fetch %s: partial dir: %w", p.name, pathErr(err))
		}
	}
	args, rules := rsyncArgs(p)
	resumed := partialPresent(p)

	stdout := &tailBuffer{max: 1 << 20}
	stderr := &tailBuffer{max: 64 << 10}
	cmd := exec.Command(bin, args...)
	cmd.Stdin = bytes.NewReader(rules)
	cmd.Stdout = stdout
	if p.req.Progress != nil {
		cmd.Stdout = &progressWriter{w: stdout, report: p.req.Progress}
	}
	cmd.Stderr = stderr
	cmd.Env = rsyncEnv()
	// Own process group: rsync, its forked receiver and ssh go together.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A straggler holding the output pipes cannot block Wait for long.
	cmd.WaitDelay = rsyncKillGrace + 2*time.Second
	if err := cmd.Start(); err != nil {
		return TemplateStats{}, fmt.Errorf("fetch %s: start rsync: %w", p.name, err)
	}
	pgid := cmd.Process.Pid
	done := make(chan struct{})
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		// SIGTERM first: rsync's receiver then moves the file it was
		// writing into --partial-dir, for the next run to resume.
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(rsyncKillGrace):
			syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}()
	werr := cmd.Wait()
	close(done)
	<-killed

	out := stdout.String()
	stats := parseRsyncStats(out)
	code := 0
	if werr != nil {
		var ee *exec.ExitError
		if !errors.As(werr, &ee) {
			return stats, fmt.Errorf("fetch %s: rsync: %w", p.name, werr)
		}
		code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	}
	if ctx.Err() != nil {
		detail := errors.New("rsync stopped")
		if code != 0 {
			detail = fmt.Errorf("rsync stopped, exit %d: %s", code, RsyncCodeText(code))
		}
		return stats, stopped(ctx, p.name, detail)
	}
	if code != 0 {
		return stats, newRsyncError(p.name, code, lastLines(stderr.String(), 20))
	}
	if over := overMaxSize(out, p.files); len(over) > 0 {
		return stats, tooLarge(p.name, over[0], -1)
	}
	stats.Resumed = resumed
	return stats, nil
}

// MinClientRsync is the oldest rsync the fetching side runs against an
// untrusted server: 3.4.0 fixed a server reading client files through
// --copy-dest basis paths (CVE-2024-12086), and 3.2.5 made the client
// check the server's file list against its filters.
var MinClientRsync = [3]int{3, 4, 0}

var (
	rsyncVersionRE   = regexp.MustCompile(`rsync\s+version\s+v?(\d+)\.(\d+)\.(\d+)`)
	rsyncVersionMu   sync.Mutex
	rsyncVersionSeen = map[string]error{}
)

// checkRsyncVersion runs `rsync --version` once per binary and process.
func checkRsyncVersion(ctx context.Context, bin string) error {
	rsyncVersionMu.Lock()
	defer rsyncVersionMu.Unlock()
	if err, ok := rsyncVersionSeen[bin]; ok {
		return err
	}
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return fmt.Errorf("rsync %s --version: %w", bin, err)
	}
	m := rsyncVersionRE.FindSubmatch(out)
	if m == nil {
		err = fmt.Errorf("rsync %s: cannot read its version", bin)
	} else {
		var v [3]int
		for i := range v {
			v[i], _ = strconv.Atoi(string(m[i+1]))
		}
		for i := range v {
			if v[i] != MinClientRsync[i] {
				if v[i] < MinClientRsync[i] {
					err = fmt.Errorf("%w: rsync %s is version %d.%d.%d; fetching from an untrusted server needs %d.%d.%d or newer (CVE-2024-12086)",
						ErrInvalidRequest, bin, v[0], v[1], v[2], MinClientRsync[0], MinClientRsync[1], MinClientRsync[2])
				}
				break
			}
		}
	}
	rsyncVersionSeen[bin] = err
	return err
}

// progressWriter passes rsync's stdout on and reports the byte count of
// its --info=progress2 lines ("  1,090,519,040 100%  335.05MB/s ..."),
// which rsync rewrites with \r.
type progressWriter struct {
	w      io.Writer
	report func(int64)
	line   []byte
}

var progress2RE = regexp.MustCompile(`^\s*([\d,]+)\s+\d+%`)

func (p *progressWriter) Write(b []byte) (int, error) {
	for _, c := range b {
		if c == '\r' || c == '\n' {
			if m := progress2RE.FindSubmatch(p.line); m != nil {
				if n, err := strconv.ParseInt(strings.ReplaceAll(string(m[1]), ",", ""), 10, 64); err == nil {
					p.report(n)
				}
			}
			p.line = p.line[:0]
			continue
		}
		if len(p.line) < 256 {
			p.line = append(p.line, c)
		}
	}
	return p.w.Write(b)
}
