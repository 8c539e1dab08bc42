package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The multi-process tests re-execute the test binary; TestMain sends a
// process with helperEnv set to runHelper instead of the tests.
const (
	helperEnv   = "CLR_STORE_TEST_HELPER" // role: writer, reader or opener
	helperDB    = "CLR_STORE_TEST_DB"
	helperID    = "CLR_STORE_TEST_ID"
	helperN     = "CLR_STORE_TEST_N"
	helperStop  = "CLR_STORE_TEST_STOP" // readers stop when this file exists
	helperGo    = "CLR_STORE_TEST_GO"   // helpers start working when this file exists
	helperLimit = 3 * time.Minute       // every helper gives up after this
)

// helperReport is what a helper prints on stdout.
type helperReport struct {
	Ops        int      `json:"ops"`
	Errors     int      `json:"errors"`
	Messages   []string `json:"messages,omitempty"` // the first few errors
	Torn       int      `json:"torn"`               // reads that saw half a transaction
	ElapsedSec float64  `json:"elapsed_sec"`
}

func (r *helperReport) fail(err error) {
	r.Errors++
	if len(r.Messages) < 10 {
		r.Messages = append(r.Messages, err.Error())
	}
}

// imagesPerList is the window of images every writer's list holds: list i
// has images i .. i+imagesPerList-1, so each update adds one and drops one.
const imagesPerList = 5

func runHelper(role string) int {
	ctx, cancel := context.WithTimeout(context.Background(), helperLimit)
	defer cancel()
	start := time.Now()
	var rep helperReport
	n, _ := strconv.Atoi(os.Getenv(helperN))
	id := os.Getenv(helperID)
	s, err := Open(ctx, os.Getenv(helperDB))
	// Wait for the others, so that all really run at the same time.
	for g := os.Getenv(helperGo); g != "" && ctx.Err() == nil; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(g); err == nil {
			break
		}
	}
	if err != nil {
		rep.fail(err)
	} else {
		switch role {
		case "writer":
			writer(ctx, s, id, n, &rep)
		case "reader":
			reader(ctx, s, n, os.Getenv(helperStop), &rep)
		case "opener":
			if _, err := s.CreateSubscription(ctx, Subscription{UUID: "opener-" + id, URL: "file:///lists/" + id, Authorised: true}); err != nil {
				rep.fail(err)
			}
			rep.Ops++
		default:
			rep.fail(fmt.Errorf("unknown helper role %q", role))
		}
		if err := s.Close(); err != nil {
			rep.fail(err)
		}
	}
	rep.ElapsedSec = time.Since(start).Seconds()
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		return 2
	}
	return 0
}

// writer accepts n lists on its own subscription and selects one image
// after each: 2n write transactions.
func writer(ctx context.Context, s *Store, id string, n int, rep *helperReport) {
	sub := "sub-" + id
	for i := 1; i <= n && ctx.Err() == nil; i++ {
		ims := make([]ImageInstance, imagesPerList)
		for j := range ims {
			// The same image UUIDs in every subscription, on purpose.
			ims[j] = img(fmt.Sprintf("img-%04d", i+j), fmt.Sprintf("%s content %d", sub, i+j))
		}
		l := list(strconv.Itoa(i), i)
		l.Raw = fmt.Appendf(nil, "%s list %d %s", sub, i, strings.Repeat("x", 2048))
		if _, err := s.AcceptList(ctx, sub, l, ims, AcceptOptions{NewImages: NewImagesAccept, CompareVersion: cmpVersion}); err != nil {
			rep.fail(err)
		}
		rep.Ops++
		if _, err := s.SelectImage(ctx, ImageRef{Subscription: sub, UUID: fmt.Sprintf("img-%04d", i)}); err != nil {
			rep.fail(err)
		}
		rep.Ops++
	}
}

// reader lists all images until the stop file appears (at most n times)
// and checks that every snapshot shows whole transactions: each
// subscription with a list has exactly imagesPerList available images.
func reader(ctx context.Context, s *Store, n int, stop string, rep *helperReport) {
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if _, err := os.Stat(stop); err == nil {
			return
		}
		imgs, err := s.ListImages(ctx, ImageFilter{})
		rep.Ops++
		if err != nil {
			rep.fail(err)
			continue
		}
		avail := map[string]int{}
		for _, im := range imgs {
			if im.Available {
				avail[im.Subscription]++
			}
		}
		for sub, k := range avail {
			if k != imagesPerList {
				rep.Torn++
				rep.fail(fmt.Errorf("%s: %d available images", sub, k))
			}
		}
		if _, err := s.ListSubscriptions(ctx); err != nil {
			rep.fail(err)
		}
	}
}

type helperProc struct {
	role string
	cmd  *exec.Cmd
	out  bytes.Buffer
	err  bytes.Buffer
}

func startHelper(t *testing.T, ctx context.Context, role, db, id string, n int, stop, start string) *helperProc {
	t.Helper()
	h := &helperProc{role: role + " " + id}
	h.cmd = exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	h.cmd.Env = append(os.Environ(),
		helperEnv+"="+role, helperDB+"="+db, helperID+"="+id, helperN+"="+strconv.Itoa(n), helperStop+"="+stop, helperGo+"="+start)
	h.cmd.Stdout, h.cmd.Stderr = &h.out, &h.err
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *helperProc) wait(t *testing.T) helperReport {
	t.Helper()
	err := h.cmd.Wait()
	var rep helperReport
	if jerr := json.Unmarshal(h.out.Bytes(), &rep); err != nil || jerr != nil {
		t.Fatalf("%s: %v %v\nstdout: %s\nstderr: %s", h.role, err, jerr, h.out.String(), h.err.String())
	}
	return rep
}

// TestConcurrentProcesses: 4 writer processes (200 AcceptList + 200
// SelectImage transactions each) and 2 reader processes on one database
// file. With WAL, the busy timeout and BEGIN IMMEDIATE none of them may see
// "database is locked", and no reader may see half a transaction.
func TestConcurrentProcesses(t *testing.T) {
	const writers, readers, perWriter = 4, 2, 200
	if testing.Short() {
		t.Log("-short: fewer transactions")
	}
	n := perWriter
	if testing.Short() {
		n = 25
	}
	ctx, cancel := context.WithTimeout(context.Background(), helperLimit+time.Minute)
	defer cancel()
	dir := t.TempDir()
	db := "sqlite:///" + filepath.Join(dir, "clr.db")
	stop := filepath.Join(dir, "stop")
	start := filepath.Join(dir, "go")
	s, err := Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for w := range writers {
		mustSub(t, s, fmt.Sprintf("sub-%d", w), NewImagesAccept)
	}
	s.Close()

	var rs, ws []*helperProc
	for r := range readers {
		rs = append(rs, startHelper(t, ctx, "reader", db, strconv.Itoa(r), 100000, stop, start))
	}
	for w := range writers {
		ws = append(ws, startHelper(t, ctx, "writer", db, strconv.Itoa(w), n, stop, start))
	}
	time.Sleep(200 * time.Millisecond) // let them open the database
	if err := os.WriteFile(start, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	reports := map[string]helperReport{}
	collect := func(hs []*helperProc) {
		for _, h := range hs {
			rep := h.wait(t)
			mu.Lock()
			reports[h.role] = rep
			mu.Unlock()
		}
	}
	collect(ws)
	if err := os.WriteFile(stop, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	collect(rs)

	for role, rep := range reports {
		t.Logf("%-9s %5d ops in %5.1fs, %d errors", role, rep.Ops, rep.ElapsedSec, rep.Errors)
		if rep.Errors > 0 {
			t.Errorf("%s: %d errors, %d torn reads: %s", role, rep.Errors, rep.Torn, strings.Join(rep.Messages, "; "))
		}
		if strings.HasPrefix(role, "writer") && rep.Ops != 2*n {
			t.Errorf("%s: %d transactions, want %d", role, rep.Ops, 2*n)
		}
		if strings.HasPrefix(role, "reader") && rep.Ops == 0 {
			t.Errorf("%s read nothing", role)
		}
	}

	s, err = Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for w := range writers {
		sub := fmt.Sprintf("sub-%d", w)
		got, err := s.GetSubscription(ctx, sub)
		if err != nil || got.Floor.Version != strconv.Itoa(n) {
			t.Errorf("%s: floor %+v, %v", sub, got.Floor, err)
		}
		imgs, _ := s.ListImages(ctx, ImageFilter{Subscription: sub})
		sel, avail := 0, 0
		for _, im := range imgs {
			if im.Selected {
				sel++
			}
			if im.Available {
				avail++
			}
		}
		if len(imgs) != n+imagesPerList-1 || sel != n || avail != imagesPerList {
			t.Errorf("%s: %d images, %d selected, %d available", sub, len(imgs), sel, avail)
		}
		if lists, _ := s.Lists(ctx, sub); len(lists) != n {
			t.Errorf("%s: %d lists", sub, len(lists))
		}
	}
}

// TestConcurrentFirstOpen: processes that open a new file at the same
// moment migrate it once, and all succeed.
func TestConcurrentFirstOpen(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), helperLimit+time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "sub", "dir", "clr.db")
	var hs []*helperProc
	for i := range 4 {
		hs = append(hs, startHelper(t, ctx, "opener", path, strconv.Itoa(i), 1, "", ""))
	}
	for _, h := range hs {
		if rep := h.wait(t); rep.Errors > 0 {
			t.Errorf("%s: %s", h.role, strings.Join(rep.Messages, "; "))
		}
	}
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := count(t, s, "SELECT count(*) FROM schema_version"); n != SchemaVersion() {
		t.Errorf("%d schema_version rows, want %d", n, SchemaVersion())
	}
	if subs, _ := s.ListSubscriptions(ctx); len(subs) != 4 {
		t.Errorf("%d subscriptions, want 4", len(subs))
	}
}
