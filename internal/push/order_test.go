package push

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
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
		{spec: "ssh://mirror@eu.example.org:2222/srv/clr", dest: "mirror@eu.example.org:/srv/clr/", port: "2222", name: "eu.example.org_2222_srv_clr"},
		{spec: "ssh://eu.example.org/", dest: "eu.example.org:/", name: "eu.example.org_"},
		{spec: "ssh://m@[::1]:22/x/", dest: "m@[::1]:/x/", port: "22", name: "_1_22_x"},
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
	if _, err := Push(context.Background(), m, Options{Tree: tree, Rsync: fake, Grace: time.Hour, Now: t0}); err != nil {
		t.Fatal(err)
	}
	// a new version; the first list is superseded on the mirror now
	writeFile(t, lib, "boot.iso", payload("iso2", 1000))
	pub.publish(time.Now())
	st, _ = publish.LoadTreeState(tree)
	second := st.Live[0]
	rep, err := Push(context.Background(), m, Options{Tree: tree, Rsync: fake, Grace: time.Hour, Now: t0.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	read := func(n int, ext string) string {
		b, err := os.ReadFile(filepath.Join(logDir, "call"+string(rune('0'+n))+ext))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for i, want := range []struct {
		has, hasNot []string
		rules       []string
	}{
		{has: []string{"--ignore-existing"}, hasNot: []string{"--delete", "--existing"}, rules: []string{"+ /" + first + "/***", "- *"}},
		{has: []string{"--delay-updates"}, hasNot: []string{"--delete", "--ignore-existing"}, rules: []string{"+ /imagelist.smime", "+ /streams/v1/images.json", "- *"}},
		{has: []string{"--delete", "--existing", "--ignore-existing"}, hasNot: []string{"--delete-excluded"}, rules: []string{"- /.*"}},
	} {
		for push := 0; push < 2; push++ {
			n := push*3 + i
			args, rules := read(n, ".args"), read(n, ".rules")
			for _, a := range want.has {
				if !strings.Contains(args, a+"\n") {
					t.Errorf("call %d lacks %s:\n%s", n, a, args)
				}
			}
			for _, a := range want.hasNot {
				if strings.Contains(args, a+"\n") {
					t.Errorf("call %d has %s:\n%s", n, a, args)
				}
			}
			for _, r := range want.rules {
				if push == 1 {
					r = strings.Replace(r, first, second, 1)
				}
				if !strings.Contains(rules, r+"\n") {
					t.Errorf("call %d rules lack %q:\n%s", n, r, rules)
				}
			}
		}
	}
	// second push, pass 3: the first version is protected for the grace
	if r := read(5, ".rules"); !strings.Contains(r, "P /"+first+"/\n") {
		t.Errorf("the superseded version is not protected:\n%s", r)
	}
	if len(rep.Protected) != 1 || rep.Protected[0] != first || len(rep.Deleted) != 1 {
		t.Errorf("report %+v", rep)
	}
	// after the grace, no protection
	rep, err = Push(context.Background(), m, Options{Tree: tree, Rsync: fake, Grace: time.Hour, Now: t0.Add(2 * time.Hour)})
	if err != nil || len(rep.Protected) != 0 || strings.Contains(read(8, ".rules"), "P /") {
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
	rep, err := Push(context.Background(), m, Options{Tree: tree, Rsync: fake, Now: time.Now()})
	if !errors.Is(err, ErrMirror) || rep.Pointers || !strings.Contains(err.Error(), "connection unexpectedly closed") {
		t.Fatalf("Push = %+v, %v", rep, err)
	}
	calls, _ := os.ReadFile(filepath.Join(logDir, "calls"))
	if strings.Count(string(calls), "call") != 1 {
		t.Errorf("rsync ran %d times after a failed first pass", strings.Count(string(calls), "call"))
	}
	if _, err := os.Stat(filepath.Join(tree, publish.StateDir, "mirrors", m.Name+".json")); err == nil {
		t.Errorf("mirror state recorded a list the mirror never got")
	}
}
