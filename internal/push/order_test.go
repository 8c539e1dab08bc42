package push

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clr-suite/clr/internal/publish"
)

func lookPath(name string) (string, error) { return exec.LookPath(name) }

func isMirrorErr(err error) bool { return errors.Is(err, ErrMirror) }

func TestParseMirror(t *testing.T) {
	for _, tc := range []struct {
		spec, dest, port, name string
		bad                    bool
	}{
		{spec: "ssh://mirror@eu.example.org:2222/srv/clr", dest: "mirror@eu.example.org:/srv/clr/", port: "2222", name: "mirror_eu.example.org_2222_srv_clr"},
		{spec: "ssh://eu.example.org/", dest: "eu.example.org:/", name: "eu.example.org__"},
		{spec: "ssh://m@[::1]:22/x/", dest: "m@[::1]:/x/", port: "22", name: "m_1__22_x"},
		{spec: "/srv/mirror/", dest: "/srv/mirror/", name: "local_srv_mirror"},
		{spec: "file:///srv/mirror", dest: "/srv/mirror/", name: "local_srv_mirror"},
		{spec: "ssh://u:pw@host/x", bad: true},
		{spec: "ssh:///x", bad: true},
		{spec: "ssh://host/a b", bad: true},
		{spec: "rsync://host/x", bad: true},
		{spec: "relative/dir", bad: true},
		{spec: "ssh://host/x?key=y", bad: true},
	} {
		m, err := ParseMirror(tc.spec)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseMirror(%q) accepted", tc.spec)
			}
			continue
		}
		if err != nil || m.dest != tc.dest || m.port != tc.port || m.Name != strings.Trim(tc.name, "_") {
			t.Errorf("ParseMirror(%q) = dest %q port %q name %q %v; want %q %q %q", tc.spec, m.dest, m.port, m.Name, err, tc.dest, tc.port, tc.name)
		}
	}
}

// The three passes run in the safe order with the safe options: objects
// additively, then the pointers together, then deletion with the folders
// of lists superseded within the grace period protected. A fake rsync
// records each call.
func TestPassOrder(t *testing.T) {
	lib, tree := t.TempDir(), t.TempDir()
	writeFile(t, lib, "boot.iso", payload("iso1", 1000))
	pub := &publisher{t: t, lib: lib, tree: tree, policy: publish.PrunePolicy{Keep: 1}}
	pub.publish(time.Now())
	st, _ := publish.LoadTreeState(tree)
	first := st.Live[0]

	logDir := t.TempDir()
	fake := filepath.Join(logDir, "rsync")
	script := "#!/bin/sh\nn=$(ls " + logDir + " | grep -c args)\nprintf '%s\\n' \"$@\" > " + logDir + "/call$n.args\ncat > " + logDir + "/call$n.rules\n" +
		"case \"$*\" in *--delete*) echo '*deleting   old/'; esac\nexit 0\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	mirrorDir := t.TempDir()
	m, err := ParseMirror(mirrorDir)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) func() time.Time { return func() time.Time { return t0.Add(d) } }
	// first push: what the mirror served before is unknown, so no pass 3
	rep, err := Push(context.Background(), m, Options{Tree: tree, Rsync: fake, Grace: time.Hour, Clock: at(0)})
	if err != nil || !rep.Deferred || !rep.Pointers {
		t.Fatalf("first push: %+v %v, want pointers and removal deferred", rep, err)
	}
	// a new version two hours later: the first list is superseded now
	writeFile(t, lib, "boot.iso", payload("iso2", 1000))
	pub.publish(time.Now())
	st, _ = publish.LoadTreeState(tree)
	second := st.Live[0]
	rep, err = Push(context.Background(), m, Options{Tree: tree, Rsync: fake, Grace: time.Hour, Clock: at(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	read := func(n int, ext string) string {
		b, err := os.ReadFile(filepath.Join(logDir, "call"+strconv.Itoa(n)+ext))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, want := range []struct {
		call        int
		has, hasNot []string
		rules       []string
	}{
		{call: 0, has: []string{"--ignore-existing"}, hasNot: []string{"--delete", "--existing"}, rules: []string{"+ /" + first + "/***", "- *"}},
		{call: 1, has: []string{"--delay-updates", "--checksum"}, hasNot: []string{"--delete", "--ignore-existing"}, rules: []string{"+ /imagelist.smime", "+ /streams/v1/images.json", "- *"}},
		{call: 2, has: []string{"--ignore-existing"}, hasNot: []string{"--delete", "--existing"}, rules: []string{"+ /" + second + "/***", "- *"}},
		{call: 3, has: []string{"--delay-updates", "--checksum"}, hasNot: []string{"--delete", "--ignore-existing"}, rules: []string{"+ /imagelist.json", "- *"}},
		// the first version is protected for the grace; only the tree's
		// layout is looked at
		{call: 4, has: []string{"--delete", "--existing", "--ignore-existing"}, hasNot: []string{"--delete-excluded"},
			rules: []string{"P /" + first + "/", "- /.*", "+ /streams/***", "+ /" + uuidGlob + "/*/***", "- *"}},
	} {
		args, rules := read(want.call, ".args"), read(want.call, ".rules")
		for _, a := range want.has {
			if !strings.Contains(args, a+"\n") {
				t.Errorf("call %d lacks %s:\n%s", want.call, a, args)
			}
		}
		for _, a := range want.hasNot {
			if strings.Contains(args, a+"\n") {
				t.Errorf("call %d has %s:\n%s", want.call, a, args)
			}
		}
		for _, r := range want.rules {
			if !strings.Contains(rules, r+"\n") {
				t.Errorf("call %d rules lack %q:\n%s", want.call, r, rules)
			}
		}
	}
	if len(rep.Protected) != 1 || rep.Protected[0] != first || len(rep.Deleted) != 1 || rep.Deferred {
		t.Errorf("report %+v", rep)
	}
	// after the grace, no protection
	rep, err = Push(context.Background(), m, Options{Tree: tree, Rsync: fake, Grace: time.Hour, Clock: at(4 * time.Hour)})
	if err != nil || len(rep.Protected) != 0 || strings.Contains(read(7, ".rules"), "P /") {
		t.Errorf("after the grace: %+v %v", rep, err)
	}
}

// A failing pass stops the push before the next one.
func TestFailedPassStops(t *testing.T) {
	lib, tree := t.TempDir(), t.TempDir()
	writeFile(t, lib, "boot.iso", payload("iso1", 1000))
	(&publisher{t: t, lib: lib, tree: tree, policy: publish.PrunePolicy{Keep: 1}}).publish(time.Now())
	logDir := t.TempDir()
	fake := filepath.Join(logDir, "rsync")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho call >> "+logDir+"/calls\necho 'rsync: connection unexpectedly closed' >&2\nexit 12\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	m, _ := ParseMirror(t.TempDir())
	rep, err := Push(context.Background(), m, Options{Tree: tree, Rsync: fake})
	if !errors.Is(err, ErrMirror) || rep.Pointers || !strings.Contains(err.Error(), "connection unexpectedly closed") {
		t.Fatalf("Push = %+v, %v", rep, err)
	}
	calls, _ := os.ReadFile(filepath.Join(logDir, "calls"))
	if strings.Count(string(calls), "call") != 1 {
		t.Errorf("rsync ran %d times after a failed first pass", strings.Count(string(calls), "call"))
	}
	if _, err := os.Stat(filepath.Join(tree, publish.StateDir, "mirrors", m.Name+".json")); err == nil {
		t.Errorf("mirror state written although pass 1 failed")
	}
}

// ParseMirror never yields an rsync destination that could be read as an
// option, nor a state file name outside the mirrors folder.
func FuzzParseMirror(f *testing.F) {
	for _, s := range []string{"ssh://u@h:22/p", "ssh://-oProxyCommand=x/p", "/srv/m", "file:///srv/m", "ssh://h/a b", "ssh://[::1]/x",
		"ssh://!", "/0\x7f0", "ssh://.", "ssh://::"} { // the last four were found by fuzzing
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		m, err := ParseMirror(spec)
		if err != nil {
			return
		}
		if strings.HasPrefix(m.dest, "-") || m.Name == "" || filepath.Dir(statePath("/t", m.Name)) != "/t/.clr/mirrors" {
			t.Fatalf("ParseMirror(%q) = dest %q name %q", spec, m.dest, m.Name)
		}
		if strings.IndexFunc(m.dest, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
			t.Fatalf("ParseMirror(%q): control character in %q", spec, m.dest)
		}
	})
}
