// Package push replicates a publisher's release tree to downstream
// mirrors with rsync, in the order that never shows a reader a list that
// names a missing file (research/seeds-systems.md 3.3, rsync-repos'
// three passes):
//
//  1. new version folders, additively (--ignore-existing: nothing the
//     mirror has is overwritten, nothing is deleted);
//  2. the pointers (imagelist.smime, imagelist.json, streams/v1/*.json),
//     renamed at the end of the transfer (--delay-updates), compared by
//     checksum;
//  3. deletion of the version folders the tree no longer has, except
//     those a list pushed to this mirror named less than Grace ago (a
//     reader may have that list and be downloading); nothing during the
//     grace period after a mirror's first push.
//
// What is pushed follows the list and the folders on disk, not the
// tree's records. A failed pass stops the push (a failed pass 1 leaves
// the mirror's list untouched; a failed pass 2 may have renamed some
// pointers). The tree's .clr/mirrors/<name>.json remembers, per mirror,
// which lists it was given and when.
package push

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clr-suite/clr/internal/fsutil"
	"github.com/clr-suite/clr/internal/publish"
	"github.com/clr-suite/clr/internal/transport"
)

// ErrMirror wraps every failed rsync pass.
var ErrMirror = errors.New("mirror not updated")

// Mirror is one downstream copy of the tree.
type Mirror struct {
	// Name identifies the mirror in logs and in its state file.
	Name string
	// URL is ssh://[user@]host[:port]/path (rsync over OpenSSH; with
	// rrsync on the mirror the path is relative to its folder) or a local
	// folder (/path or file:///path), e.g. an NFS mount.
	URL string
	// SSH configures the ssh client for ssh:// mirrors.
	SSH transport.SSHOptions

	dest, port string
}

var (
	nameRE = regexp.MustCompile(`[^A-Za-z0-9._-]+`)
	hostRE = regexp.MustCompile(`^[A-Za-z0-9._:-]+$`) // a DNS name or an IP address
	userRE = regexp.MustCompile(`^[A-Za-z0-9._][A-Za-z0-9._-]*$`)
)

// ParseMirror checks spec (see Mirror.URL) and names the mirror after its
// host, port and path.
func ParseMirror(spec string) (Mirror, error) {
	m := Mirror{URL: spec}
	if strings.IndexFunc(spec, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return m, fmt.Errorf("mirror %q: control characters", spec)
	}
	switch {
	case strings.HasPrefix(spec, "ssh://"):
		u, err := url.Parse(spec)
		if err != nil {
			return m, fmt.Errorf("mirror %q: %w", spec, err)
		}
		if u.Hostname() == "" || u.RawQuery != "" || u.Fragment != "" {
			return m, fmt.Errorf("mirror %q: want ssh://[user@]host[:port]/path", spec)
		}
		if _, has := u.User.Password(); has {
			return m, fmt.Errorf("mirror %q: no password in the URL (use a key)", spec)
		}
		p := u.Path
		if p == "" {
			p = "/"
		}
		if strings.ContainsAny(p, " \t\n'\"\\") {
			return m, fmt.Errorf("mirror %q: the path must not contain spaces or quotes", spec)
		}
		if !hostRE.MatchString(u.Hostname()) || strings.HasPrefix(u.Hostname(), "-") ||
			(strings.Contains(u.Hostname(), ":") && net.ParseIP(u.Hostname()) == nil) ||
			(u.User != nil && !userRE.MatchString(u.User.Username())) {
			return m, fmt.Errorf("mirror %q: bad host or user name", spec)
		}
		host := u.Hostname()
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		if u.User != nil {
			host = u.User.Username() + "@" + host
		}
		m.dest = host + ":" + strings.TrimSuffix(p, "/") + "/"
		m.port = u.Port()
		// user@host:port/path: two rrsync folders on one host (two
		// users) are two mirrors with their own history.
		m.Name = nameRE.ReplaceAllString(host+"_"+m.port+p, "_")
	case strings.HasPrefix(spec, "file://"), strings.HasPrefix(spec, "/"):
		p := strings.TrimPrefix(spec, "file://")
		if !strings.HasPrefix(p, "/") {
			return m, fmt.Errorf("mirror %q: want an absolute path", spec)
		}
		m.dest = filepath.Clean(p) + "/"
		m.Name = nameRE.ReplaceAllString("local"+filepath.Clean(p), "_")
	default:
		return m, fmt.Errorf("mirror %q: want ssh://[user@]host[:port]/path or an absolute path", spec)
	}
	m.Name = strings.Trim(m.Name, "_")
	if m.Name == "" {
		return m, fmt.Errorf("mirror %q: no host or path to name it by", spec)
	}
	return m, nil
}

// Options of a push.
type Options struct {
	Tree    string           // the release tree (clr-publish --tree)
	Grace   time.Duration    // how long a folder a superseded list named stays on the mirror
	Clock   func() time.Time // when the mirror got a list is stamped with it (nil: time.Now)
	DryRun  bool             // rsync -n: report what each pass would do
	Rsync   string           // rsync binary ("" = rsync from PATH)
	BWLimit string           // rsync --bwlimit value ("" = none)
	Timeout time.Duration    // rsync --timeout (0 = 300 s)
	Logger  *slog.Logger
}

// Report says what a push did (or, with DryRun, would do).
type Report struct {
	Mirror    string
	Sent      []string // files sent by passes 1 and 2
	Deleted   []string // paths deleted by pass 3
	Protected []string // retired folders kept for readers of a superseded list
	Pointers  bool     // pass 2 succeeded: the mirror serves the tree's list
	Deferred  bool     // pass 3 skipped: what the mirror served before is unknown, for the grace period
}

// pushed is one list a mirror was given.
type pushed struct {
	Version string `json:"version"`
	// At is when the mirror got the list (pass 2 succeeded), or when a
	// push that failed in pass 2 tried: it may have renamed some files.
	At        time.Time `json:"at"`
	Confirmed bool      `json:"confirmed"`
	Dirs      []string  `json:"dirs"`
	// Unknown stands for what the mirror served before its first push
	// (or before its state was lost): every folder is protected while it
	// is within the grace period.
	Unknown bool `json:"unknown,omitempty"`
}

type mirrorState struct {
	URL    string   `json:"url"`
	Pushed []pushed `json:"pushed"` // oldest first; the last is the mirror's live list
}

func statePath(tree, name string) string {
	return filepath.Join(tree, publish.StateDir, "mirrors", name+".json")
}

func loadState(tree, name string) (*mirrorState, error) {
	st := &mirrorState{}
	data, err := os.ReadFile(statePath(tree, name))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mirror state: %w", err)
	}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("mirror state %s: %w", statePath(tree, name), err)
	}
	return st, nil
}

func (st *mirrorState) save(tree, name string) error {
	if err := os.MkdirAll(filepath.Dir(statePath(tree, name)), 0o755); err != nil {
		return fmt.Errorf("mirror state: %w", err)
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if _, err = fsutil.WriteAtomicIfChanged(statePath(tree, name), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("mirror state: %w", err)
	}
	return nil
}

// protected returns the folders of lists superseded on the mirror less
// than grace ago (all is true when that includes the mirror's unknown
// first list), and drops the records of older ones.
func (st *mirrorState) protected(now time.Time, grace time.Duration) (dirs []string, all bool) {
	set := map[string]bool{}
	keep := st.Pushed[:0:0]
	for i, p := range st.Pushed {
		if i == len(st.Pushed)-1 {
			keep = append(keep, p)
			break
		}
		if superseded := st.Pushed[i+1].At; now.Sub(superseded) < grace {
			keep = append(keep, p)
			all = all || p.Unknown
			for _, d := range p.Dirs {
				set[d] = true
			}
		}
	}
	st.Pushed = keep
	return slices.Sorted(maps.Keys(set)), all
}

// uuidGlob matches an image folder name (a UUID) in rsync filter rules.
var uuidGlob = func() string {
	h := "[0-9a-f]"
	return strings.Repeat(h, 8) + "-" + strings.Repeat(h, 4) + "-" + strings.Repeat(h, 4) + "-" +
		strings.Repeat(h, 4) + "-" + strings.Repeat(h, 12)
}()

// Push brings one mirror up to the list on disk in the tree. The caller
// holds the tree's lock (publish.LockTree).
func Push(ctx context.Context, m Mirror, o Options) (Report, error) {
	rep := Report{Mirror: m.Name}
	if m.dest == "" {
		return rep, fmt.Errorf("mirror %q: not made by ParseMirror", m.URL)
	}
	clock := o.Clock
	if clock == nil {
		clock = time.Now
	}
	tree, err := publish.LoadTreeState(o.Tree)
	if err != nil {
		return rep, err
	}
	if tree.Base == "" {
		return rep, fmt.Errorf("%s is not a release tree with a published list (clr-publish publish --tree)", o.Tree)
	}
	for _, f := range []string{publish.ListSigned, publish.ListJSON} {
		if _, err := os.Stat(filepath.Join(o.Tree, f)); err != nil {
			return rep, fmt.Errorf("release tree: %w", err)
		}
	}
	// What the pointers on disk name, not the records (they may lag).
	liveSet, err := publish.DiskLive(o.Tree, tree.Base)
	if err != nil {
		return rep, fmt.Errorf("release tree: %w", err)
	}
	live := slices.Sorted(maps.Keys(liveSet))
	for _, d := range live {
		if fi, err := os.Stat(filepath.Join(o.Tree, filepath.FromSlash(d))); err != nil || !fi.IsDir() {
			return rep, fmt.Errorf("release tree: the list names %s, which is missing", d)
		}
	}
	folders, err := publish.VersionFolders(o.Tree)
	if err != nil {
		return rep, err
	}
	st, err := loadState(o.Tree, m.Name)
	if err != nil {
		return rep, err
	}
	st.URL = m.URL
	if len(st.Pushed) == 0 {
		// What this mirror served before is unknown: nothing is
		// deleted until the grace period after its first list.
		st.Pushed = append(st.Pushed, pushed{Version: "unknown", At: clock().UTC(), Confirmed: true, Unknown: true})
	}
	src := filepath.Clean(o.Tree) + "/"

	// Pass 1: every version folder of the tree the mirror lacks.
	var rules strings.Builder
	seen := map[string]bool{}
	for _, d := range slices.Sorted(maps.Keys(folders)) {
		img := strings.SplitN(d, "/", 2)[0]
		if !seen[img] {
			seen[img] = true
			fmt.Fprintf(&rules, "+ /%s/\n", img)
		}
		fmt.Fprintf(&rules, "+ /%s/***\n", d)
	}
	rules.WriteString("- *\n")
	sent, _, err := m.rsync(ctx, o, "objects", rules.String(), []string{"--ignore-existing"}, src)
	rep.Sent = append(rep.Sent, sent...)
	if err != nil {
		return rep, err
	}

	// Pass 2: the pointers, renamed at the end of the transfer. The list
	// is recorded first: a pass that fails half way may have renamed
	// some of them.
	if last := st.Pushed[len(st.Pushed)-1]; last.Unknown || !slices.Equal(last.Dirs, live) {
		st.Pushed = append(st.Pushed, pushed{Version: tree.List, At: clock().UTC(), Dirs: live})
	}
	if !o.DryRun {
		if err := st.save(o.Tree, m.Name); err != nil {
			return rep, err
		}
	}
	pointers := "+ /imagelist.smime\n+ /imagelist.json\n+ /streams/\n+ /streams/v1/\n+ /streams/v1/images.json\n+ /streams/v1/index.json\n- *\n"
	// --checksum: a re-signed list of the same size written within the
	// same second would pass rsync's size+mtime check.
	sent, _, err = m.rsync(ctx, o, "pointers", pointers, []string{"--delay-updates", "--checksum"}, src)
	rep.Sent = append(rep.Sent, sent...)
	if err != nil {
		return rep, err
	}
	// Every list recorded by a push whose pass 2 failed counts as served
	// from now: the mirror served its predecessor until this pass.
	got := clock().UTC()
	for i := len(st.Pushed) - 1; i >= 0 && !st.Pushed[i].Confirmed; i-- {
		st.Pushed[i].At, st.Pushed[i].Confirmed = got, true
	}
	rep.Pointers = !o.DryRun
	if !o.DryRun {
		if err := st.save(o.Tree, m.Name); err != nil {
			return rep, err
		}
	}

	// Pass 3: what the tree no longer has, except what a list this
	// mirror served within the grace period names. Only the tree's own
	// layout is looked at: other files under the mirror folder stay.
	protected, all := st.protected(clock(), o.Grace)
	if all {
		rep.Deferred = true
		if o.Logger != nil {
			o.Logger.Info("removal deferred: what the mirror served before its first push is unknown", "mirror", m.Name, "grace", o.Grace)
		}
		return rep, nil
	}
	rules.Reset()
	for _, d := range protected {
		if !liveSet[d] { // live folders are in the tree anyway
			rep.Protected = append(rep.Protected, d)
			fmt.Fprintf(&rules, "P /%s/\n", d)
		}
	}
	fmt.Fprintf(&rules, "- /.*\n+ /imagelist.smime\n+ /imagelist.json\n+ /streams/***\n+ /%s/\n+ /%s/*/***\n- *\n", uuidGlob, uuidGlob)
	_, deleted, err := m.rsync(ctx, o, "delete", rules.String(), []string{"--delete", "--existing", "--ignore-existing"}, src)
	rep.Deleted = deleted
	if err != nil {
		return rep, err
	}
	if !o.DryRun {
		if err := st.save(o.Tree, m.Name); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// cause picks the most telling line of rsync's stderr (not its generic
// "rsync error: ... (code N)" summary), as ": LINE", or "".
func cause(stderr string) string {
	var last string
	for _, line := range strings.Split(stderr, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasPrefix(line, "rsync error:"):
			if last == "" {
				last = line
			}
		default:
			return ": " + line
		}
	}
	if last != "" {
		return ": " + last
	}
	return ""
}

// rsync runs one pass with the filter rules given (read from stdin) and
// returns the files it sent and the paths it deleted.
func (m Mirror) rsync(ctx context.Context, o Options, pass, rules string, extra []string, src string) (sent, deleted []string, err error) {
	bin := o.Rsync
	if bin == "" {
		bin = "rsync"
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 300 * time.Second
	}
	args := []string{"--recursive", "--times", "--itemize-changes", "--out-format=%i %n",
		"--timeout=" + strconv.FormatInt(int64((timeout+time.Second-1)/time.Second), 10),
		"--filter=merge -"}
	args = append(args, extra...)
	if o.DryRun {
		args = append(args, "--dry-run")
	}
	if o.BWLimit != "" {
		args = append(args, "--bwlimit="+o.BWLimit)
	}
	if strings.Contains(m.dest, ":") && !strings.HasPrefix(m.dest, "/") {
		args = append(args, "-e", transport.SSHCommand(m.SSH, m.port))
	}
	args = append(args, "--", src, m.dest)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(rules)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	runErr := cmd.Run()
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		line := sc.Text()
		code, name, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		switch {
		case strings.HasPrefix(code, "*deleting"):
			deleted = append(deleted, name)
		case len(code) == 11 && (code[0] == '<' || code[0] == '>') && code[1] == 'f':
			sent = append(sent, name)
		}
	}
	if o.Logger != nil {
		o.Logger.Debug("rsync pass", "mirror", m.Name, "pass", pass, "sent", len(sent), "deleted", len(deleted),
			"duration", time.Since(start).Round(time.Millisecond), "dry_run", o.DryRun)
	}
	if runErr != nil {
		if ctx.Err() != nil {
			return sent, deleted, ctx.Err()
		}
		return sent, deleted, fmt.Errorf("%s: pass %s: rsync: %v%s: %w", m.Name, pass, runErr, cause(stderr.String()), ErrMirror)
	}
	return sent, deleted, nil
}
