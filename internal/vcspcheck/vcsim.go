package vcspcheck

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// vcsim defaults (a default vcsim model: one datacenter, a standalone host
// DC0_H0 whose pool is unambiguous, one datastore).
const (
	vcsimLibrary   = "vcsp-check"
	vcsimPool      = "/DC0/host/DC0_H0/Resources"
	vcsimStartWait = 60 * time.Second
	vcsimStopWait  = 10 * time.Second
	govcTimeout    = 3 * time.Minute
	// vmdkStreamHeader is what govmomi >= v0.47's vcsim keeps out of a
	// streamOptimized VMDK (header and descriptor sector): it records the
	// file 1 KiB smaller than served.
	vmdkStreamHeader = 1024
)

var govcURLRE = regexp.MustCompile(`GOVC_URL=(\S+)`)

// govcTypes maps item types to govc library.import -t values.
var govcTypes = map[string]string{TypeOVF: "ovf", TypeISO: "iso", TypeOther: "file"}

// FindTool returns the path of a tool: explicit if set, else name looked up
// on PATH.
func FindTool(explicit, name string) (string, error) {
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", fmt.Errorf("%w: %s: %v", ErrUsage, name, err)
		}
		return explicit, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: %s not found on PATH (install with go install github.com/vmware/govmomi/%s@v0.46.0)", ErrUsage, name, name)
	}
	return p, nil
}

func runVcsim(ctx context.Context, opts Options, lib *library, rep *Report) error {
	govcBin, err := FindTool(opts.Govc, "govc")
	if err != nil {
		return err
	}
	vcsimBin, err := FindTool(opts.VcsimBin, "vcsim")
	if err != nil {
		return err
	}
	home, err := os.MkdirTemp("", "vcspcheck-govc-")
	if err != nil {
		return fmt.Errorf("govc home: %w", err)
	}
	defer os.RemoveAll(home)

	sim, err := startVcsim(ctx, vcsimBin)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrImport, err)
	}
	defer sim.stop()
	simURL := *sim.url
	simURL.User = nil
	rep.Vcsim = &VcsimRun{URL: simURL.String(), PID: sim.cmd.Process.Pid, Library: vcsimLibrary}
	logf(opts.Stdout, "== vcsim pid %d on %s\n", sim.cmd.Process.Pid, sim.url.Host)

	g := &govc{bin: govcBin, log: opts.Stdout, env: govcEnv(sim.url.String(), home)}
	v := &vcsimCheck{ctx: ctx, opts: opts, g: g, rep: rep}
	if _, err := g.run(ctx, "library.create", vcsimLibrary); err != nil {
		v.problemf("%v", err)
		return nil
	}
	logf(opts.Stdout, "== import every item over HTTP into local library %s\n", vcsimLibrary)
	for _, it := range lib.items {
		if v.importItem(it) && it.typ == TypeOVF {
			v.deploy(it)
		}
	}
	logf(opts.Stdout, "== items as vcsim sees them (library %s)\n", vcsimLibrary)
	v.compareView(lib)
	return ctx.Err()
}

type vcsimCheck struct {
	ctx  context.Context
	opts Options
	g    *govc
	rep  *Report
}

func (v *vcsimCheck) problemf(format string, args ...any) {
	v.rep.VcsimProblems = append(v.rep.VcsimProblems, fmt.Sprintf(format, args...))
}

// pullURL is the file's URL as vcsim should fetch it, with credentials.
func (v *vcsimCheck) pullURL(fl *file) string {
	u := *fl.url
	if v.opts.Password != "" {
		u.User = url.UserPassword(v.opts.User, v.opts.Password)
	}
	return u.String()
}

func (v *vcsimCheck) sumArgs(fl *file) []string {
	if !v.opts.VerifySums || fl.digest == "" {
		return nil
	}
	return []string{"-c", fl.digest, "-a", fl.alg}
}

// importOrder puts the file that creates the item first: the .ovf for OVF
// items, the first .iso for ISO items.
func importOrder(it *item) []*file {
	want := map[string]string{TypeOVF: ".ovf", TypeISO: ".iso"}[it.typ]
	files := slices.Clone(it.files)
	if want != "" {
		sort.SliceStable(files, func(i, j int) bool {
			return strings.EqualFold(path.Ext(files[i].name), want) && !strings.EqualFold(path.Ext(files[j].name), want)
		})
	}
	return files
}

func (v *vcsimCheck) importItem(it *item) bool {
	ir := v.rep.Item(it.name)
	files := importOrder(it)
	if len(files) == 0 {
		v.problemf("item %q: no files to import", it.name)
		return false
	}
	for i, fl := range files {
		if fl.url == nil {
			v.problemf("item %q file %q: no usable href", it.name, fl.name)
			return false
		}
		args := []string{"library.import", "-pull"}
		args = append(args, v.sumArgs(fl)...)
		if i == 0 {
			args = append(args, "-t", govcTypes[it.typ], "-n", it.name, vcsimLibrary)
		} else {
			args = append(args, vcsimLibrary+"/"+it.name)
		}
		if _, err := v.g.run(v.ctx, append(args, v.pullURL(fl))...); err != nil {
			v.problemf("item %q: import %s: %v", it.name, fl.name, err)
			return false
		}
	}
	if ir != nil {
		ir.Imported = true
	}
	return true
}

func vmName(item string) string {
	var b strings.Builder
	for _, r := range item {
		if r < 128 && (r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return vcsimLibrary + "-" + b.String()
}

func (v *vcsimCheck) deploy(it *item) {
	ir := v.rep.Item(it.name)
	vm := vmName(it.name)
	if _, err := v.g.run(v.ctx, "library.deploy", "-pool", vcsimPool, vcsimLibrary+"/"+it.name, vm); err != nil {
		v.problemf("item %q: deploy: %v", it.name, err)
		return
	}
	out, err := v.g.run(v.ctx, "device.ls", "-vm", vm)
	if err != nil {
		v.problemf("item %q: deployed VM %s: %v", it.name, vm, err)
		return
	}
	var disks []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[1] == "VirtualDisk" {
			disks = append(disks, strings.Join(f, " "))
		}
	}
	logf(v.opts.Stdout, "   deployed %s: %d disk(s): %s\n", vm, len(disks), strings.Join(disks, "; "))
	if ir != nil {
		ir.Deployed = true
		ir.Disks = disks
	}
	if len(disks) != it.ovfDisks {
		v.problemf("item %q: deployed VM has %d disk(s), the OVF declares %d", it.name, len(disks), it.ovfDisks)
	}
	if _, err := v.g.run(v.ctx, "vm.destroy", vm); err != nil {
		v.rep.Warnings = append(v.rep.Warnings, fmt.Sprintf("item %q: destroy VM %s: %v", it.name, vm, err))
	}
}

// compareView lists the local library's items and files with govc and
// compares them with the manifest.
func (v *vcsimCheck) compareView(lib *library) {
	out, err := v.g.run(v.ctx, "library.info", "-json", vcsimLibrary+"/*")
	if err != nil {
		v.problemf("list vcsim items: %v", err)
		return
	}
	var items []struct {
		Name string `json:"name"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal([]byte(out), &items); err != nil {
		v.problemf("list vcsim items: %v", err)
		return
	}
	types := map[string]string{}
	for _, it := range items {
		types[it.Name] = it.Type
	}
	for _, it := range lib.items {
		ir := v.rep.Item(it.name)
		typ, ok := types[it.name]
		if !ok {
			if ir == nil || ir.Imported {
				v.problemf("item %q: vcsim has no such item", it.name)
			}
			continue
		}
		logf(v.opts.Stdout, "%-24s %-5s manifest-type=%s manifest-version=%s\n", it.name, typ, it.typ, it.version)
		if want := govcTypes[it.typ]; typ != want {
			v.problemf("item %q: vcsim type %q, want %q for %s", it.name, typ, want, it.typ)
		}
		out, err := v.g.run(v.ctx, "library.info", "-json", vcsimLibrary+"/"+it.name+"/*")
		if err != nil {
			v.problemf("item %q: list vcsim files: %v", it.name, err)
			continue
		}
		var files []struct {
			Name string `json:"name"`
			Size *int64 `json:"size"`
		}
		if err := json.Unmarshal([]byte(out), &files); err != nil {
			v.problemf("item %q: list vcsim files: %v", it.name, err)
			continue
		}
		sizes := map[string]int64{}
		for _, f := range files {
			if f.Size != nil {
				sizes[f.Name] = *f.Size
			} else {
				sizes[f.Name] = -1
			}
		}
		if ir != nil {
			ir.VcsimFiles = sizes
		}
		for _, fl := range it.files {
			got, ok := sizes[fl.name]
			if !ok && fl.url != nil {
				got, ok = sizes[filepath.Base(fl.url.String())] // govc names pulled files after the raw URL
			}
			note := ""
			switch {
			case !ok:
				v.problemf("item %q: vcsim has no file %q", it.name, fl.name)
				note = "  MISSING"
			case got == fl.size:
			case strings.EqualFold(path.Ext(fl.name), ".vmdk") && fl.size-got == vmdkStreamHeader:
				note = "  (vcsim keeps the stream without its 1 KiB header)"
			default:
				v.problemf("item %q file %q: manifest size %d, vcsim has %d", it.name, fl.name, fl.size, got)
				note = "  SIZE MISMATCH"
			}
			logf(v.opts.Stdout, "    %-28s manifest=%-10d vcsim=%d%s\n", fl.name, fl.size, got, note)
		}
	}
}

// govc runs govc commands against one vcsim.
type govc struct {
	bin string
	env []string
	log io.Writer
}

// govcEnv is the environment without inherited GOVC_*/GOVMOMI_* settings.
func govcEnv(govcURL, home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GOVC_") || strings.HasPrefix(kv, "GOVMOMI_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "GOVC_URL="+govcURL, "GOVC_INSECURE=1", "GOVMOMI_HOME="+home)
}

func redactArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if u, err := url.Parse(a); err == nil && u.User != nil && u.Host != "" {
			out[i] = u.Redacted()
		}
	}
	return strings.Join(out, " ")
}

func (g *govc) run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, govcTimeout)
	defer cancel()
	logf(g.log, "-- govc %s\n", redactArgs(args))
	cmd := exec.CommandContext(ctx, g.bin, args...)
	cmd.Env = g.env
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		if len(msg) > 2000 {
			msg = msg[:2000] + "..."
		}
		return stdout.String(), fmt.Errorf("govc %s: %w: %s", args[0], err, msg)
	}
	return stdout.String(), nil
}

// vcsimProc is a running vcsim in its own process group.
type vcsimProc struct {
	cmd    *exec.Cmd
	url    *url.URL
	done   chan struct{}
	out    *os.File // read end of vcsim's stdout
	stderr *capBuffer
	once   sync.Once
}

// startVcsim starts vcsim on a free 127.0.0.1 port and reads its URL from
// the "export GOVC_URL=..." line it prints (-E would need a fifo).
func startVcsim(ctx context.Context, bin string) (*vcsimProc, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start vcsim: %w", err)
	}
	p := &vcsimProc{out: pr, stderr: &capBuffer{max: 64 << 10}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "-l", "127.0.0.1:0")
	p.cmd.Stdout = pw
	p.cmd.Stderr = p.stderr
	setProcessGroup(p.cmd)
	if err := p.cmd.Start(); err != nil {
		_ = pr.Close()
		_ = pw.Close()
		return nil, fmt.Errorf("start vcsim: %w", err)
	}
	_ = pw.Close()
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := govcURLRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case urls <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	timer := time.NewTimer(vcsimStartWait)
	defer timer.Stop()
	select {
	case s := <-urls:
		u, err := url.Parse(s)
		if err != nil {
			p.stop()
			return nil, fmt.Errorf("start vcsim: bad GOVC_URL %q: %w", s, err)
		}
		p.url = u
		return p, nil
	case <-p.done:
		p.stop()
		return nil, fmt.Errorf("start vcsim: exited early: %s", strings.TrimSpace(p.stderr.String()))
	case <-timer.C:
		p.stop()
		return nil, errors.New("start vcsim: no GOVC_URL printed within " + vcsimStartWait.String())
	case <-ctx.Done():
		p.stop()
		return nil, fmt.Errorf("start vcsim: %w", ctx.Err())
	}
}

// stop ends vcsim's process group: SIGTERM (vcsim removes its temporary
// datastore directories), then SIGKILL if it lingers.
func (p *vcsimProc) stop() {
	p.once.Do(func() {
		select {
		case <-p.done:
		default:
			signalGroup(p.cmd, false)
			select {
			case <-p.done:
			case <-time.After(vcsimStopWait):
				signalGroup(p.cmd, true)
				<-p.done
			}
		}
		_ = p.out.Close()
	})
}

// capBuffer keeps the first max bytes written to it.
type capBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (c *capBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *capBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}
