package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a clr-cache run (TestMain).
const helperEnv = "CLR_CACHE_TEST_HELPER"

type helperArgs struct {
	Cache, Partial, Expired string
	Items                   []Item
	Srcs                    map[string]string // digest -> source dir
	ChunkDelay              time.Duration
}

// runHelper is the child: one locked Download with a slow fake fetch and a
// one-millisecond grace period, so that old versions are deleted (and
// that deletion gets killed too).
func runHelper() int {
	var a helperArgs
	if err := json.Unmarshal([]byte(os.Getenv(helperEnv)), &a); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	f := &fakeFetch{srcs: a.Srcs, chunkDelay: a.ChunkDelay}
	c := &Cache{Dir: a.Cache, PartialDir: a.Partial, ExpiredDir: a.Expired, Fetch: f.Fetch,
		Now: time.Now(), Grace: time.Millisecond, FreeMargin: -1}
	ctx := context.Background()
	unlock, err := c.Lock(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	defer unlock()
	rep, err := c.Download(ctx, a.Items)
	if err != nil || len(rep.Failed) > 0 {
		fmt.Fprintln(os.Stderr, err, rep.Errors)
		return 1
	}
	return 0
}

// TestKillLoop SIGKILLs a Download at random points and checks after every
// kill that each served name resolves to a complete version that is one of
// the signed ones (or is absent before its first install).
func TestKillLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("kill loop skipped in -short mode")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const versions = 3
	var tpls, imgs []fixture
	for i := range versions {
		big := bytes.Repeat([]byte{byte('a' + i)}, 96<<10)
		big[1000*i] = 'X'
		tpls = append(tpls, folderFixture(t, "tpl", map[string]string{
			"vm.ovf": fmt.Sprintf("<ovf version=%d/>", i), "disk1.vmdk": string(big), "sub/disk2.vmdk": strings.Repeat("z", 48<<10+i),
		}))
		imgs = append(imgs, singleFixture(t, "img", "disk.qcow2", strings.Repeat(string(rune('0'+i)), 64<<10)))
	}
	srcs := map[string]string{}
	valid := map[string]map[string]bool{"tpl": {}, "img": {}}
	for i := range versions {
		srcs[tpls[i].item.SHA512] = tpls[i].src
		srcs[imgs[i].item.SHA512] = imgs[i].src
		valid["tpl"][tpls[i].item.SHA512] = true
		valid["img"][imgs[i].item.SHA512] = true
	}
	root := t.TempDir()
	args := helperArgs{Cache: filepath.Join(root, "cache"), Partial: filepath.Join(root, "partial"),
		Expired: filepath.Join(root, "expired"), Srcs: srcs, ChunkDelay: time.Millisecond}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 42))
	t.Logf("seed %d", seed)

	start := func(items []Item) (*exec.Cmd, *bytes.Buffer) {
		args.Items = items
		env, _ := json.Marshal(args)
		cmd := exec.Command(exe, "-test.run=^$")
		// GORACE: a race-enabled child would otherwise sleep 1 s at exit.
		cmd.Env = append(os.Environ(), helperEnv+"="+string(env), "GORACE=atexit_sleep_ms=0")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &out
	}
	everServed := map[string]bool{}
	last := map[string]string{}
	switches := 0
	check := func(iter int) {
		for uuid, ok := range valid {
			link := filepath.Join(args.Cache, uuid)
			d, err := resolveDigest(link)
			switch {
			case err != nil:
				t.Fatalf("iteration %d: %s: %v", iter, uuid, err)
			case d == "" && everServed[uuid]:
				t.Fatalf("iteration %d: %s vanished after it had been served", iter, uuid)
			case d != "" && !ok[d]:
				t.Fatalf("iteration %d: %s serves a mixed or unverified version (digest %s)", iter, uuid, d[:16])
			case d != "":
				everServed[uuid] = true
				if last[uuid] != d {
					switches++
					last[uuid] = d
				}
				if target, _ := os.Readlink(link); !strings.HasPrefix(target, ".clr/v/"+uuid+"/") {
					t.Fatalf("iteration %d: %s -> %s", iter, uuid, target)
				}
			}
		}
	}
	// Calibrate: time an uninterrupted first install in a scratch cache,
	// then kill at uniformly random points of a run that long (plus a
	// fifth, so that some runs finish).
	scratch := args
	args.Cache, args.Partial, args.Expired = filepath.Join(root, "x/cache"), filepath.Join(root, "x/partial"), filepath.Join(root, "x/expired")
	began := time.Now()
	if cmd, out := start([]Item{tpls[0].item, imgs[0].item}); cmd.Wait() != nil {
		t.Fatalf("calibration run failed:\n%s", out)
	}
	span := time.Since(began) * 6 / 5
	args = scratch
	t.Logf("a full run takes about %v", span*5/6)

	completed := 0
	for i := range 50 {
		items := []Item{tpls[rng.IntN(versions)].item, imgs[rng.IntN(versions)].item}
		cmd, out := start(items)
		time.Sleep(time.Duration(rng.Int64N(int64(span))))
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if err == nil {
			completed++
		} else if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("iteration %d: child failed on its own: %v\n%s", i, err, out)
		}
		check(i)
	}
	t.Logf("50 kills: %d runs finished before their kill, %d link switches survived", completed, switches)

	// A normal run completes and cleans up.
	final := []Item{tpls[1].item, imgs[2].item}
	cmd, out := start(final)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("final run: %v\n%s", err, out)
	}
	check(-1)
	for _, it := range final {
		if d, _ := resolveDigest(filepath.Join(args.Cache, it.UUID)); d != it.SHA512 {
			t.Errorf("final: %s serves %s", it.UUID, d)
		}
	}
	c := &Cache{Dir: args.Cache, PartialDir: args.Partial, ExpiredDir: args.Expired}
	if l := leftovers(t, c); len(l) != 0 {
		t.Errorf("leftovers after a normal run: %v", l)
	}
	entries, _ := os.ReadDir(args.Partial)
	for _, e := range entries {
		if e.Name() != lockName && !strings.HasSuffix(e.Name(), partialExt) {
			t.Errorf("unexpected entry in the partial dir: %s", e.Name())
		}
	}
}
