package cache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clr-suite/clr/events"
)

func TestFirstPublish(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fx     func(t *testing.T) fixture
		target func(fx fixture) string
	}{
		{"single file", func(t *testing.T) fixture {
			return singleFixture(t, "img-1", "disk.qcow2", strings.Repeat("qcow", 5000))
		}, func(fx fixture) string { return ".clr/v/img-1/" + fx.item.SHA512[:32] + "/disk.qcow2" }},
		{"folder", func(t *testing.T) fixture {
			return folderFixture(t, "tpl-1", map[string]string{"vm.ovf": "<ovf/>", "disks/vm-disk1.vmdk": strings.Repeat("\x00", 70000) + "data"})
		}, func(fx fixture) string { return ".clr/v/tpl-1/" + fx.item.SHA512[:32] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := tc.fx(t)
			f := newFake(fx)
			c, _ := newCache(t, f)
			rep := download(t, c, fx.item)
			if !slices.Equal(rep.Published, []string{fx.item.UUID}) || len(rep.Failed) != 0 {
				t.Fatalf("report %+v", rep)
			}
			if rep.WireBytesIn != fx.item.Size {
				t.Errorf("wire bytes %d, want %d", rep.WireBytesIn, fx.item.Size)
			}
			if got := servedDigest(t, c.Dir, fx.item.UUID); got != fx.item.SHA512 {
				t.Fatalf("served %s, want %s", got, fx.item.SHA512)
			}
			target, err := os.Readlink(filepath.Join(c.Dir, fx.item.UUID))
			if err != nil || target != tc.target(fx) {
				t.Errorf("link target %q (%v), want %q", target, err, tc.target(fx))
			}
			if req := f.last(); req.Basis != "" || !strings.HasPrefix(req.Stage, c.PartialDir) ||
				req.PartialDir != filepath.Join(c.PartialDir, fx.item.UUID+"-"+fx.item.SHA512[:32]+".partial") {
				t.Errorf("first install request %+v", req)
			}
			vdir := filepath.Join(c.Dir, ".clr/v", fx.item.UUID, fx.item.SHA512[:32])
			filepath.WalkDir(vdir, func(p string, d os.DirEntry, err error) error {
				fi, _ := d.Info()
				if want := os.FileMode(0o444); d.Type().IsRegular() && fi.Mode().Perm() != want {
					t.Errorf("%s mode %v, want %v", p, fi.Mode().Perm(), want)
				}
				return nil
			})
			pub, err := c.Published()
			if err != nil || len(pub) != 1 || pub[fx.item.UUID] != fx.item.SHA512 {
				t.Errorf("Published() = %v, %v", pub, err)
			}
			if l := leftovers(t, c); len(l) != 0 {
				t.Errorf("leftovers %v", l)
			}
			if entries, _ := os.ReadDir(c.PartialDir); len(entries) != 1 || entries[0].Name() != ".lock" {
				t.Errorf("partial dir not clean: %v", entries)
			}
			// Again: nothing to do.
			rep = download(t, c, fx.item)
			if !slices.Equal(rep.Unchanged, []string{fx.item.UUID}) || f.calls() != 1 {
				t.Fatalf("second run %+v, %d fetches", rep, f.calls())
			}
		})
	}
}

func TestUpdateUsesBasisAndKeepsOld(t *testing.T) {
	v1 := folderFixture(t, "tpl", map[string]string{"a.vmdk": strings.Repeat("a", 40000), "vm.ovf": "v1"})
	v2 := folderFixture(t, "tpl", map[string]string{"a.vmdk": strings.Repeat("a", 40000), "vm.ovf": "v2", "b.vmdk": "new"})
	f := newFake(v1, v2)
	c, _ := newCache(t, f)
	download(t, c, v1.item)
	rep := download(t, c, v2.item)
	if !slices.Equal(rep.Published, []string{"tpl"}) {
		t.Fatalf("report %+v", rep)
	}
	old := filepath.Join(c.Dir, ".clr/v/tpl", v1.item.SHA512[:32])
	if req := f.last(); req.Basis != old {
		t.Errorf("basis %q, want %q", req.Basis, old)
	}
	if got := servedDigest(t, c.Dir, "tpl"); got != v2.item.SHA512 {
		t.Fatalf("served %s", got)
	}
	if _, err := os.Stat(filepath.Join(old, "vm.ovf")); err != nil {
		t.Errorf("old version gone before its grace period: %v", err)
	}
}

// TestConcurrentReader: a reader that resolves Dir/<uuid> once and hashes
// what it finds must always see one complete version while Download
// switches between versions.
func TestConcurrentReader(t *testing.T) {
	var fxs []fixture
	digests := map[string]bool{}
	for i := range 4 {
		fx := folderFixture(t, "tpl", map[string]string{
			"vm.ovf":     "version " + strconv.Itoa(i),
			"disk1.vmdk": strings.Repeat(strconv.Itoa(i), 20000+i),
			"disk2.vmdk": strings.Repeat("z", 10000*(i+1)),
		})
		fxs = append(fxs, fx)
		digests[fx.item.SHA512] = true
	}
	f := newFake(fxs...)
	c, _ := newCache(t, f)
	c.Hook = nil
	download(t, c, fxs[0].item)

	var stop atomic.Bool
	var reads atomic.Int64
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			d, err := resolveDigest(filepath.Join(c.Dir, "tpl"))
			if err == nil && !digests[d] {
				err = errors.New("reader saw a digest that is no published version: " + d)
			}
			if err != nil {
				errc <- err
				return
			}
			reads.Add(1)
		}
	}()
	for i := 1; i <= 200; i++ {
		fx := fxs[i%len(fxs)]
		rep, err := c.Download(context.Background(), []Item{fx.item})
		if err != nil || len(rep.Published) != 1 {
			t.Fatalf("switch %d: %+v %v", i, rep, err)
		}
	}
	stop.Store(true)
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
	if reads.Load() == 0 {
		t.Fatal("the reader never ran")
	}
	t.Logf("%d consistent reads during 200 switches (%d fetches, the rest adopted retired versions)", reads.Load(), f.calls())
}

func TestRefusedKeepsServed(t *testing.T) {
	v1 := folderFixture(t, "tpl", map[string]string{"vm.ovf": "one", "disk.vmdk": strings.Repeat("1", 5000)})
	v2 := folderFixture(t, "tpl", map[string]string{"vm.ovf": "two", "disk.vmdk": strings.Repeat("2", 5000)})
	for _, tc := range []struct {
		name     string
		knob     func(f *fakeFetch)
		wantErr  error
		inErr    []string
		attempt  bool // counts as a failed attempt
		deadline bool
	}{
		{"tampered byte", func(f *fakeFetch) { f.corrupt = true }, ErrVerify, []string{"disk.vmdk", "sha512: expected " + sum([]byte(strings.Repeat("2", 5000))), "got "}, true, false},
		{"too large", func(f *fakeFetch) { f.tooLarge = true }, ErrVerify, []string{"disk.vmdk", "expected 5000 bytes, got 5001"}, true, false},
		{"missing file", func(f *fakeFetch) { f.omit = true }, ErrVerify, []string{"missing file vm.ovf"}, true, false},
		{"extra file", func(f *fakeFetch) { f.extra = true }, ErrVerify, []string{"unexpected file unexpected.txt"}, true, false},
		{"cut mid-way", func(f *fakeFetch) { f.failMidway = true }, nil, []string{"connection reset"}, true, false},
		{"hangs until cancelled", func(f *fakeFetch) { f.hang = true }, context.DeadlineExceeded, nil, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(v1, v2)
			c, rec := newCache(t, f)
			download(t, c, v1.item)
			before := snapshot(t, c.Dir, ".clr/state.json")
			tc.knob(f)
			ctx := context.Background()
			if tc.deadline {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
				defer cancel()
			}
			rec.evs = nil
			rep, err := c.Download(ctx, []Item{v2.item})
			if tc.deadline {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("err = %v", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rep.Failed, []string{"tpl"}) || len(rep.Errors) != 1 || len(rep.Published) != 0 {
				t.Fatalf("report %+v", rep)
			}
			if tc.wantErr != nil && !errors.Is(rep.Errors[0], tc.wantErr) {
				t.Errorf("error %v does not match %v", rep.Errors[0], tc.wantErr)
			}
			for _, s := range tc.inErr {
				if !strings.Contains(rep.Errors[0].Error(), s) {
					t.Errorf("error %q lacks %q", rep.Errors[0], s)
				}
			}
			if got := servedDigest(t, c.Dir, "tpl"); got != v1.item.SHA512 {
				t.Fatalf("served %s, want the old version", got)
			}
			if after := snapshot(t, c.Dir, ".clr/state.json"); !mapsEqual(before, after) {
				t.Errorf("served tree changed:\nbefore %v\nafter  %v", before, after)
			}
			if l := leftovers(t, c); len(l) != 0 {
				t.Errorf("leftovers %v", l)
			}
			st := c.loadState()
			if got := st.Attempts["tpl"].Count; (got == 1) != tc.attempt {
				t.Errorf("attempts %d, counted = %v", got, tc.attempt)
			}
			if kinds := rec.kinds(); slices.Contains(kinds, "AvailablePostfix:tpl") {
				t.Errorf("AvailablePostfix fired for a failure: %v", kinds)
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestNoSpace(t *testing.T) {
	fx := singleFixture(t, "img", "disk.raw", "small")
	fx.item.Size = 1 << 60 // an exabyte does not fit
	f := newFake(fx)
	c, _ := newCache(t, f)
	rep := download(t, c, fx.item)
	if !slices.Equal(rep.Failed, []string{"img"}) || !errors.Is(rep.Errors[0], ErrNoSpace) {
		t.Fatalf("report %+v", rep)
	}
	if msg := rep.Errors[0].Error(); !strings.Contains(msg, "bytes free") || !strings.Contains(msg, strconv.FormatInt(1<<60, 10)) {
		t.Errorf("message lacks the numbers: %s", msg)
	}
	if f.calls() != 0 {
		t.Error("fetched despite too little space")
	}
	if c.loadState().Attempts["img"].Count != 0 {
		t.Error("lack of space counted as a failed attempt")
	}
}

func TestGracePeriod(t *testing.T) {
	v1 := singleFixture(t, "img", "disk.raw", "version one")
	v2 := singleFixture(t, "img", "disk.raw", "version two")
	f := newFake(v1, v2)
	c, _ := newCache(t, f)
	download(t, c, v1.item)
	download(t, c, v2.item)
	old := filepath.Join(c.Dir, ".clr/v/img", v1.item.SHA512[:32])
	for _, tc := range []struct {
		after   time.Duration
		present bool
	}{{0, true}, {30 * time.Minute, true}, {59 * time.Minute, true}, {61 * time.Minute, false}} {
		c.Now = t0.Add(tc.after)
		rep := download(t, c, v2.item)
		if got := exists(old); got != tc.present {
			t.Fatalf("after %v: old version present = %v, want %v (report %+v)", tc.after, got, tc.present, rep)
		}
		if !tc.present && !slices.Equal(rep.Removed, []string{"img/" + v1.item.SHA512[:32]}) {
			t.Errorf("Removed = %v", rep.Removed)
		}
	}
	if exists(c.manifestPath("img", v1.item.SHA512[:32])) {
		t.Error("record of the removed version left behind")
	}
	if got := servedDigest(t, c.Dir, "img"); got != v2.item.SHA512 {
		t.Fatal("served version changed")
	}
	if l := leftovers(t, c); len(l) != 0 {
		t.Errorf("leftovers %v", l)
	}
}

func TestExpire(t *testing.T) {
	a := singleFixture(t, "img-a", "a.raw", "image a")
	b := folderFixture(t, "tpl-b", map[string]string{"vm.ovf": "b", "d/disk.vmdk": "bbbb"})
	f := newFake(a, b)
	c, rec := newCache(t, f)
	download(t, c, a.item, b.item)
	rec.evs = nil

	c.Now = t0.Add(time.Minute)
	rep, err := c.Expire(context.Background(), []Item{b.item}, false)
	if err != nil || !slices.Equal(rep.Expired, []string{"img-a"}) || len(rep.Errors) != 0 {
		t.Fatalf("expire: %+v %v", rep, err)
	}
	if exists(filepath.Join(c.Dir, "img-a")) || exists(filepath.Join(c.Dir, ".clr/v/img-a")) {
		t.Error("expired image still in the cache")
	}
	moved := filepath.Join(c.ExpiredDir, "img-a-20261101T120100Z")
	if got, err := os.ReadFile(moved); err != nil || string(got) != "image a" {
		t.Fatalf("expired file %q, %v", got, err)
	}
	wantEvs := []events.Event{
		{Type: events.ExpirePrefix, Session: "session-1", ListIdentifier: "list-1", VO: "vo.example.org", Filename: filepath.Join(c.Dir, "img-a")},
		{Type: events.ExpirePostfix, Session: "session-1", ListIdentifier: "list-1", VO: "vo.example.org", Filename: moved},
	}
	checkEvents(t, rec.evs, wantEvs, "img-a")
	if got := servedDigest(t, c.Dir, "tpl-b"); got != b.item.SHA512 {
		t.Error("kept image touched")
	}

	// A new digest for tpl-b: served until the grace period has passed
	// since Expire first saw it, then expired.
	b2 := b.item
	b2.SHA512 = strings.Repeat("ab", 64)
	for _, tc := range []struct {
		at      time.Duration
		expired bool
	}{{time.Minute, false}, {30 * time.Minute, false}, {62 * time.Minute, true}} {
		c.Now = t0.Add(tc.at)
		rep, err := c.Expire(context.Background(), []Item{b2}, false)
		if err != nil || (len(rep.Expired) == 1) != tc.expired {
			t.Fatalf("at %v: %+v %v", tc.at, rep, err)
		}
	}
	folder := filepath.Join(c.ExpiredDir, "tpl-b-20261101T130200Z")
	if got, err := os.ReadFile(filepath.Join(folder, "d/disk.vmdk")); err != nil || string(got) != "bbbb" {
		t.Fatalf("expired folder: %q %v", got, err)
	}
	if pub, _ := c.Published(); len(pub) != 0 {
		t.Errorf("still published: %v", pub)
	}
}

func checkEvents(t *testing.T, got, want []events.Event, uuid string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("events %v, want %d", got, len(want))
	}
	for i := range want {
		g := got[i]
		if g.Image == nil || g.Image.Identifier != uuid {
			t.Errorf("event %d: image %+v", i, g.Image)
		}
		g.Image = nil
		if g != want[i] {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, g, want[i])
		}
	}
}

func TestRetention(t *testing.T) {
	names := []string{
		"img-1-20261101T110000Z",    // 1 h old
		"img-1-20261031T120000Z",    // 1 day
		"img-1-20261031T120000Z.1",  // same second, later
		"img-1-20261020T120000Z",    // 12 days
		"img-2-20261001T000000Z",    // a month
		"img-2-20261101T115900Z",    // 1 min
		"cache.index",               // vmcatcher's, not ours
		"img-3.2025-01-01_00-00-00", // vmcatcher's naming
	}
	for _, tc := range []struct {
		name   string
		ret    Retention
		pruned []string
	}{
		{"none", Retention{}, nil},
		{"keep 2", Retention{Keep: 2}, []string{"img-1-20261031T120000Z", "img-1-20261020T120000Z"}},
		{"max age 2 days", Retention{MaxAge: 48 * time.Hour}, []string{"img-1-20261020T120000Z", "img-2-20261001T000000Z"}},
		{"both", Retention{Keep: 1, MaxAge: 48 * time.Hour}, []string{"img-1-20261031T120000Z.1", "img-1-20261031T120000Z", "img-1-20261020T120000Z", "img-2-20261001T000000Z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, dry := range []bool{true, false} {
				c, _ := newCache(t, newFake())
				for _, n := range names {
					writeFile(t, filepath.Join(c.ExpiredDir, n), []byte(n))
				}
				c.Retention = tc.ret
				rep, err := c.Expire(context.Background(), nil, dry)
				if err != nil {
					t.Fatal(err)
				}
				got, want := slices.Sorted(slices.Values(rep.Pruned)), slices.Sorted(slices.Values(tc.pruned))
				if !slices.Equal(got, want) {
					t.Errorf("dry=%v: pruned %v, want %v", dry, got, want)
				}
				for _, n := range names {
					gone := !exists(filepath.Join(c.ExpiredDir, n))
					if wantGone := !dry && slices.Contains(tc.pruned, n); gone != wantGone {
						t.Errorf("dry=%v: %s gone = %v", dry, n, gone)
					}
				}
			}
		})
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	a := singleFixture(t, "img-a", "a.raw", "image a")
	b := folderFixture(t, "tpl-b", map[string]string{"vm.ovf": "b"})
	c, rec := newCache(t, newFake(a, b))
	download(t, c, a.item, b.item)
	writeFile(t, filepath.Join(c.ExpiredDir, "img-a-20200101T000000Z"), []byte("old"))
	c.Retention = Retention{MaxAge: time.Hour}
	unlock, err := c.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	root := filepath.Dir(c.Dir)
	before := snapshot(t, root)
	rec.evs = nil
	c.Now = t0.Add(24 * time.Hour)
	b2 := b.item
	b2.SHA512 = strings.Repeat("cd", 64)
	rep, err := c.Expire(context.Background(), []Item{b2}, true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Expired, []string{"img-a"}) || !slices.Equal(rep.Pruned, []string{"img-a-20200101T000000Z"}) {
		t.Errorf("dry run report %+v", rep)
	}
	if after := snapshot(t, root); !mapsEqual(before, after) {
		t.Errorf("dry run changed the tree:\nbefore %v\nafter  %v", before, after)
	}
	if len(rec.evs) != 0 {
		t.Errorf("dry run fired events: %v", rec.kinds())
	}
}

func TestLock(t *testing.T) {
	fx := singleFixture(t, "img", "x.raw", "x")
	c1, _ := newCache(t, newFake(fx))
	unlock, err := c1.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c2 := *c1
	c2.lock = nil
	for name, call := range map[string]func() error{
		"Lock":     func() error { u, err := c2.Lock(context.Background()); maybe(u); return err },
		"Download": func() error { _, err := c2.Download(context.Background(), []Item{fx.item}); return err },
		"Expire":   func() error { _, err := c2.Expire(context.Background(), nil, false); return err },
		"Check":    func() error { _, err := c2.Check(context.Background()); return err },
	} {
		err := call()
		if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
			t.Errorf("%s while locked: %v", name, err)
		}
	}
	// The holder itself may run (Download does not lock again).
	if rep, err := c1.Download(context.Background(), []Item{fx.item}); err != nil || len(rep.Published) != 1 {
		t.Fatalf("holder download: %+v %v", rep, err)
	}
	unlock()
	unlock() // idempotent
	u2, err := c2.Lock(context.Background())
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	u2()
}

func maybe(f func()) {
	if f != nil {
		f()
	}
}

func TestDifferentFileSystems(t *testing.T) {
	other := "/dev/shm"
	tmp := t.TempDir()
	d1, err1 := device(tmp)
	d2, err2 := device(other)
	if err1 != nil || err2 != nil || d1 == d2 {
		t.Skip("no second file system to test with")
	}
	p, err := os.MkdirTemp(other, "clr-cache-test-")
	if err != nil {
		t.Skip(err)
	}
	defer os.RemoveAll(p)
	c := &Cache{Dir: filepath.Join(tmp, "cache"), PartialDir: p, ExpiredDir: filepath.Join(tmp, "expired")}
	_, err = c.Lock(context.Background())
	if err == nil || !strings.Contains(err.Error(), "different file systems") {
		t.Fatalf("err = %v", err)
	}
}

func TestCrashLeftovers(t *testing.T) {
	v1 := folderFixture(t, "tpl", map[string]string{"vm.ovf": "one", "disk.vmdk": "1111"})
	v2 := folderFixture(t, "tpl", map[string]string{"vm.ovf": "two", "disk.vmdk": "2222"})
	v3 := folderFixture(t, "tpl", map[string]string{"vm.ovf": "three", "disk.vmdk": "3333"})
	f := newFake(v1, v2, v3)
	c, rec := newCache(t, f)
	download(t, c, v1.item)

	// A crash after the rename into .clr/v and before the link switch.
	testHookBeforeSwitch = func(string) error { return errors.New("simulated crash") }
	rep := download(t, c, v2.item)
	testHookBeforeSwitch = nil
	if len(rep.Failed) != 1 || !exists(c.versionDir("tpl", v2.item.SHA512[:32])) {
		t.Fatalf("setup: %+v", rep)
	}
	if got := servedDigest(t, c.Dir, "tpl"); got != v1.item.SHA512 {
		t.Fatal("served version changed before the switch")
	}
	// Other debris of a killed run.
	stage := filepath.Join(c.PartialDir, "tpl-"+v2.item.SHA512[:32]+".stage-123456")
	writeFile(t, filepath.Join(stage, "vm.ovf"), []byte("tw"))
	os.Chmod(stage, 0o555) // a fetch can leave read-only directories
	os.Symlink(".clr/v/tpl/nothing", filepath.Join(c.Dir, ".tpl.tmp-abcdef"))
	writeFile(t, filepath.Join(c.Dir, ".clr/.state.json.tmp-42"), []byte("{"))
	writeFile(t, filepath.Join(c.Dir, ".clr/v/tpl/."+v2.item.SHA512[:32]+".json.tmp-9"), []byte("{"))
	writeFile(t, filepath.Join(c.Dir, ".clr/trash/tpl-x-1/vm.ovf"), []byte("half deleted"))
	writeFile(t, filepath.Join(c.ExpiredDir, ".tpl-20260101T000000Z.tmp-1/vm.ovf"), []byte("half copied"))
	partial := filepath.Join(c.PartialDir, "tpl-"+v2.item.SHA512[:32]+".partial")
	writeFile(t, filepath.Join(partial, "disk.vmdk"), []byte("22")) // resumable: kept

	unlock, err := c.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if l := leftovers(t, c); len(l) != 0 {
		t.Errorf("Lock left %v", l)
	}
	if !exists(partial) {
		t.Error("Lock removed a resumable partial transfer")
	}
	// The renamed-but-not-switched version is verified and adopted, not
	// fetched again.
	calls := f.calls()
	rec.evs = nil
	rep = download(t, c, v2.item)
	if !slices.Equal(rep.Published, []string{"tpl"}) || f.calls() != calls {
		t.Fatalf("adopt: %+v, %d new fetches", rep, f.calls()-calls)
	}
	if got := servedDigest(t, c.Dir, "tpl"); got != v2.item.SHA512 {
		t.Fatal("not switched to the adopted version")
	}
	if got := rec.kinds(); !slices.Equal(got, []string{"ProcessPrefix", "AvailablePrefix:tpl", "AvailablePostfix:tpl", "ProcessPostfix"}) {
		t.Errorf("events %v", got)
	}
	unlock()

	// A leftover that does not verify is thrown away and fetched afresh.
	v3dir := c.versionDir("tpl", v3.item.SHA512[:32])
	writeFile(t, filepath.Join(v3dir, "vm.ovf"), []byte("three"))
	writeFile(t, filepath.Join(v3dir, "disk.vmdk"), []byte("333X"))
	rep = download(t, c, v3.item)
	if !slices.Equal(rep.Published, []string{"tpl"}) || f.calls() != calls+1 {
		t.Fatalf("corrupt leftover: %+v", rep)
	}
	if got := servedDigest(t, c.Dir, "tpl"); got != v3.item.SHA512 {
		t.Fatal("not the fresh version")
	}

	// Unreferenced versions (no state entry) are found, kept for the grace
	// period, then removed.
	os.Remove(filepath.Join(c.Dir, stateRel))
	c.Now = t0.Add(time.Minute)
	download(t, c, v3.item)
	if !exists(c.versionDir("tpl", v2.item.SHA512[:32])) {
		t.Fatal("unreferenced version removed at once")
	}
	c.Now = t0.Add(2 * time.Hour)
	rep = download(t, c, v3.item)
	if len(rep.Removed) != 2 || exists(c.versionDir("tpl", v2.item.SHA512[:32])) || exists(c.versionDir("tpl", v1.item.SHA512[:32])) {
		t.Fatalf("unreferenced versions not removed: %+v", rep)
	}
}

func TestAttemptLimit(t *testing.T) {
	v1 := singleFixture(t, "img", "d.raw", "one")
	v2 := singleFixture(t, "img", "d.raw", "two")
	f := newFake(v1, v2)
	f.corrupt = true
	c, _ := newCache(t, f)
	c.MaxAttempts = 2
	for i, want := range []string{"failed", "failed", "skipped", "skipped"} {
		rep := download(t, c, v1.item)
		got := "?"
		switch {
		case len(rep.Failed) == 1:
			got = "failed"
		case len(rep.Skipped) == 1:
			got = "skipped"
		}
		if got != want {
			t.Fatalf("run %d: %s, want %s (%+v)", i+1, got, want, rep)
		}
	}
	if f.calls() != 2 {
		t.Errorf("%d fetches, want 2", f.calls())
	}
	// A new digest gets fresh attempts.
	f.corrupt = false
	if rep := download(t, c, v2.item); !slices.Equal(rep.Published, []string{"img"}) {
		t.Fatalf("new digest: %+v", rep)
	}
	if _, ok := c.loadState().Attempts["img"]; ok {
		t.Error("attempts kept after a successful publish")
	}
}

func TestEvents(t *testing.T) {
	a := singleFixture(t, "img-a", "a.raw", "image a")
	b := folderFixture(t, "tpl-b", map[string]string{"vm.ovf": "b"})
	bad := singleFixture(t, "img-c", "c.raw", "image c")
	f := newFake(a, b) // no source for img-c: its fetch fails
	c, rec := newCache(t, f)
	rec.err = errors.New("hook exploded") // never fatal
	rep := download(t, c, a.item, bad.item, b.item)
	if !slices.Equal(rep.Published, []string{"img-a", "tpl-b"}) || !slices.Equal(rep.Failed, []string{"img-c"}) {
		t.Fatalf("report %+v", rep)
	}
	want := []string{"ProcessPrefix", "AvailablePrefix:img-a", "AvailablePostfix:img-a", "AvailablePrefix:img-c",
		"AvailablePrefix:tpl-b", "AvailablePostfix:tpl-b", "ProcessPostfix"}
	if got := rec.kinds(); !slices.Equal(got, want) {
		t.Fatalf("events\n got %v\nwant %v", got, want)
	}
	for _, ev := range rec.evs {
		if ev.Session != "session-1" {
			t.Errorf("%s: session %q", ev.Type, ev.Session)
		}
		if ev.Image == nil {
			if ev.ListIdentifier != "" || ev.Filename != "" {
				t.Errorf("%s carries image fields: %+v", ev.Type, ev)
			}
			continue
		}
		if ev.ListIdentifier != "list-1" || ev.VO != "vo.example.org" || ev.Image.SHA512 == "" || ev.Image.Title == "" || ev.Image.URI == "" {
			t.Errorf("%s: fields %+v %+v", ev.Type, ev, *ev.Image)
		}
		switch ev.Type {
		case events.AvailablePrefix:
			if !strings.HasPrefix(ev.Filename, c.PartialDir+string(filepath.Separator)) {
				t.Errorf("AvailablePrefix filename %q not in the partial dir", ev.Filename)
			}
		case events.AvailablePostfix:
			if ev.Filename != filepath.Join(c.Dir, ev.Image.Identifier) {
				t.Errorf("AvailablePostfix filename %q", ev.Filename)
			}
		}
	}
	if ev := rec.evs[1]; ev.Image.Size != a.item.Size || !strings.HasSuffix(ev.Filename, "/a.raw") {
		t.Errorf("single-file AvailablePrefix %+v", ev)
	}
}

func TestCheck(t *testing.T) {
	a := singleFixture(t, "img-a", "a.raw", "image a")
	b := folderFixture(t, "tpl-b", map[string]string{"vm.ovf": "b", "disk.vmdk": "bbbbbbbb"})
	f := newFake(a, b)
	c, rec := newCache(t, f)
	download(t, c, a.item, b.item)
	rep, err := c.Check(context.Background())
	if err != nil || !slices.Equal(rep.Verified, []string{"img-a", "tpl-b"}) {
		t.Fatalf("clean check: %+v %v", rep, err)
	}
	// Tamper with a served file (same size).
	p := filepath.Join(c.versionDir("tpl-b", b.item.SHA512[:32]), "disk.vmdk")
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, []byte("bbbbXbbb"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec.evs = nil
	c.Now = t0.Add(time.Hour)
	rep, err = c.Check(context.Background())
	if err != nil || !slices.Equal(rep.Verified, []string{"img-a"}) || !slices.Equal(rep.Expired, []string{"tpl-b"}) ||
		len(rep.Errors) != 1 || !errors.Is(rep.Errors[0], ErrVerify) || !strings.Contains(rep.Errors[0].Error(), "disk.vmdk") {
		t.Fatalf("check: %+v %v", rep, err)
	}
	if exists(filepath.Join(c.Dir, "tpl-b")) {
		t.Error("corrupt version still served")
	}
	if !exists(filepath.Join(c.ExpiredDir, "tpl-b-20261101T130000Z", "disk.vmdk")) {
		t.Error("corrupt version not moved to the expired dir")
	}
	if got := rec.kinds(); !slices.Equal(got, []string{"ExpirePrefix:tpl-b", "ExpirePostfix:tpl-b"}) {
		t.Errorf("events %v", got)
	}
	// The next download fetches it again.
	if rep := download(t, c, a.item, b.item); !slices.Equal(rep.Published, []string{"tpl-b"}) {
		t.Fatalf("refetch: %+v", rep)
	}
}

func TestInvalidItems(t *testing.T) {
	good := folderFixture(t, "tpl", map[string]string{"vm.ovf": "x", "disk.vmdk": "y"})
	for _, tc := range []struct {
		name string
		edit func(it *Item)
	}{
		{"empty uuid", func(it *Item) { it.UUID = "" }},
		{"uuid with slash", func(it *Item) { it.UUID = "../etc" }},
		{"hidden uuid", func(it *Item) { it.UUID = ".clr" }},
		{"short digest", func(it *Item) { it.SHA512 = "abc" }},
		{"upper-case digest", func(it *Item) { it.SHA512 = strings.ToUpper(it.SHA512) }},
		{"files do not match digest", func(it *Item) { it.Files = it.Files[:1] }},
		{"unsorted files", func(it *Item) { it.Files = []File{it.Files[1], it.Files[0]} }},
		{"path escapes", func(it *Item) { it.Files = []File{{Path: "../x", Size: 1, SHA512: strings.Repeat("a", 128)}} }},
		{"empty file list", func(it *Item) { it.Files = []File{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(good)
			c, _ := newCache(t, f)
			it := good.item
			it.Files = slices.Clone(it.Files)
			tc.edit(&it)
			rep := download(t, c, it)
			if len(rep.Failed) != 1 || !errors.Is(rep.Errors[0], ErrInvalidItem) || f.calls() != 0 {
				t.Fatalf("report %+v", rep)
			}
		})
	}
	t.Run("duplicate uuid", func(t *testing.T) {
		c, _ := newCache(t, newFake(good))
		rep := download(t, c, good.item, good.item)
		if !slices.Equal(rep.Published, []string{"tpl"}) || len(rep.Failed) != 1 || !errors.Is(rep.Errors[0], ErrInvalidItem) {
			t.Fatalf("report %+v", rep)
		}
	})
}

func TestSingleName(t *testing.T) {
	for uri, want := range map[string]string{
		"https://h.example.org/images/disk.qcow2":          "disk.qcow2",
		"https://h.example.org/images/disk.qcow2?x=1#frag": "disk.qcow2",
		"https://h.example.org/images/my%20disk.img":       "my disk.img",
		"https://h.example.org/":                           "image",
		"https://h.example.org/images/..":                  "image",
		"https://h.example.org/a/%2e%2e":                   "image",
		"https://h.example.org/a/.hidden":                  "image",
		"file:///srv/x.raw":                                "x.raw",
		"host:disk.raw":                                    "disk.raw",
		"":                                                 "image",
	} {
		if got := singleName(uri); got != want {
			t.Errorf("singleName(%q) = %q, want %q", uri, got, want)
		}
	}
}

func TestExpireAcrossFileSystems(t *testing.T) {
	tmp := t.TempDir()
	d1, err1 := device(tmp)
	d2, err2 := device("/dev/shm")
	if err1 != nil || err2 != nil || d1 == d2 {
		t.Skip("no second file system to test with")
	}
	exp, err := os.MkdirTemp("/dev/shm", "clr-cache-test-")
	if err != nil {
		t.Skip(err)
	}
	defer os.RemoveAll(exp)
	a := singleFixture(t, "img-a", "a.raw", "image a")
	b := folderFixture(t, "tpl-b", map[string]string{"vm.ovf": "b", "d/disk.vmdk": "bbbb"})
	c, _ := newCache(t, newFake(a, b))
	c.ExpiredDir = exp
	download(t, c, a.item, b.item)
	rep, err := c.Expire(context.Background(), nil, false)
	if err != nil || len(rep.Expired) != 2 || len(rep.Errors) != 0 {
		t.Fatalf("%+v %v", rep, err)
	}
	if got, err := os.ReadFile(filepath.Join(exp, "img-a-20261101T120000Z")); err != nil || string(got) != "image a" {
		t.Errorf("single file: %q %v", got, err)
	}
	if got, err := os.ReadFile(filepath.Join(exp, "tpl-b-20261101T120000Z", "d/disk.vmdk")); err != nil || string(got) != "bbbb" {
		t.Errorf("folder: %q %v", got, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(c.Dir, ".clr/v")); len(entries) != 0 {
		t.Errorf("versions left: %v", entries)
	}
}

// An operator's file in the cache directory is never overwritten by an
// image whose identifier is not a UUID (review finding: an endorsed list
// with dc:identifier "index.html"); a UUID-named plain file is what
// vmcatcher's cache held, and is replaced by the verified version.
func TestForeignFilesInCacheDir(t *testing.T) {
	fx := singleFixture(t, "index.html", "disk.qcow2", strings.Repeat("x", 1000))
	c, _ := newCache(t, newFake(fx))
	mine := filepath.Join(c.Dir, "index.html")
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mine, []byte("operator's page"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep := download(t, c, fx.item)
	if len(rep.Failed) != 1 || len(rep.Published) != 0 {
		t.Fatalf("report %+v", rep)
	}
	if b, err := os.ReadFile(mine); err != nil || string(b) != "operator's page" {
		t.Fatalf("operator's file changed: %q %v", b, err)
	}

	const id = "0b0ab7e5-0b47-4a53-9c1c-27d57a1bbcf1"
	fx = singleFixture(t, id, "disk.qcow2", strings.Repeat("y", 1000))
	c2, _ := newCache(t, newFake(fx))
	os.MkdirAll(c2.Dir, 0o755)
	if err := os.WriteFile(filepath.Join(c2.Dir, id), []byte("vmcatcher's copy"), 0o644); err != nil {
		t.Fatal(err)
	}
	if rep := download(t, c2, fx.item); len(rep.Published) != 1 {
		t.Fatalf("vmcatcher file not replaced: %+v", rep)
	}
	if got := servedDigest(t, c2.Dir, id); got != fx.item.SHA512 {
		t.Errorf("served %s", got)
	}
}

// A disk that fills up in the middle of a transfer (the transport's write
// fails with ENOSPC) is reported as ErrNoSpace, publishes nothing, leaves
// the served version alone, and the next run (space freed) publishes.
func TestNoSpaceMidTransfer(t *testing.T) {
	v1 := singleFixture(t, "0b0ab7e5-0b47-4a53-9c1c-27d57a1bbcf1", "disk.img", strings.Repeat("1", 4000))
	f := newFake(v1)
	c, _ := newCache(t, f)
	if rep := download(t, c, v1.item); len(rep.Published) != 1 {
		t.Fatalf("v1: %+v", rep)
	}
	v2 := singleFixture(t, v1.item.UUID, "disk.img", strings.Repeat("2", 4000))
	full := func(ctx context.Context, req FetchRequest) (FetchStats, error) {
		// half a file written, then the file system is full
		os.WriteFile(filepath.Join(req.Stage, "disk.img"), []byte(strings.Repeat("2", 2000)), 0o644)
		return FetchStats{WireBytesIn: 2000}, &os.PathError{Op: "write", Path: filepath.Join(req.Stage, "disk.img"), Err: syscall.ENOSPC}
	}
	c.Fetch = full
	rep := download(t, c, v2.item)
	if len(rep.Failed) != 1 || len(rep.Errors) != 1 || !errors.Is(rep.Errors[0], ErrNoSpace) {
		t.Fatalf("report %+v", rep)
	}
	if got := servedDigest(t, c.Dir, v1.item.UUID); got != v1.item.SHA512 {
		t.Errorf("served %s after ENOSPC, want v1", got)
	}
	if l := leftovers(t, c); len(l) != 0 {
		t.Errorf("leftovers %v", l)
	}
	// space freed: the next run publishes v2
	c.Fetch = newFake(v2).Fetch
	if rep := download(t, c, v2.item); len(rep.Published) != 1 {
		t.Fatalf("after freeing space: %+v", rep)
	}
}
