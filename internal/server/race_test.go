package server

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSymlinkSwapRace: a library writer swaps a checked directory with a
// symbolic link to outside the library while sites pull from it (the race
// between the server's path check and rsync's open). Under the Landlock
// sandbox no pull may ever deliver the outside file; the review measured 15
// leaks in 60 pulls without it.
func TestSymlinkSwapRace(t *testing.T) {
	if LandlockABI() == 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the CI kernel has no Landlock: clr-server's sandbox cannot be tested")
		}
		t.Skip("no Landlock on this kernel")
	}
	lib := mkLibrary(t, 1)
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "file.img"), []byte("OUTSIDE SECRET\n"), 0o644)
	os.MkdirAll(filepath.Join(lib, "swap"), 0o755)
	os.WriteFile(filepath.Join(lib, "swap", "file.img"), []byte("inside\n"), 0o644)
	if err := os.Symlink(outside, filepath.Join(lib, "swaplink")); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, lib, nil)
	if h.srv.cfg.Sandbox == "" {
		t.Fatal("harness did not enable the sandbox")
	}

	var stop atomic.Bool
	done := make(chan int)
	go func() {
		swaps := 0
		for i := 0; i < 5_000_000 && !stop.Load(); i++ { // bounded
			if err := unix.Renameat2(unix.AT_FDCWD, filepath.Join(lib, "swap"), unix.AT_FDCWD, filepath.Join(lib, "swaplink"), unix.RENAME_EXCHANGE); err == nil {
				swaps++
			}
		}
		done <- swaps
	}()
	leaks, ok := 0, 0
	for i := 0; i < 40; i++ {
		dst := filepath.Join(t.TempDir(), "file.img")
		out, err := run(t, "rsync", "-a", "-e", h.rsyncE(), "syncer@127.0.0.1:/swap/file.img", dst)
		data, _ := os.ReadFile(dst)
		switch {
		case strings.Contains(string(data), "OUTSIDE"):
			leaks++
		case err == nil:
			ok++
		}
		_ = out
	}
	stop.Store(true)
	swaps := <-done
	// put the directory back where it was for the cleanup's tree walk
	if fi, err := os.Lstat(filepath.Join(lib, "swap")); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		unix.Renameat2(unix.AT_FDCWD, filepath.Join(lib, "swap"), unix.AT_FDCWD, filepath.Join(lib, "swaplink"), unix.RENAME_EXCHANGE)
	}
	t.Logf("%d swaps, %d pulls delivered the inside file, %d leaked", swaps, ok, leaks)
	if leaks > 0 {
		t.Fatalf("%d of 40 pulls delivered a file from outside the library", leaks)
	}
	if swaps == 0 {
		t.Fatal("the swap loop never ran")
	}
	if data, _ := os.ReadFile(filepath.Join(outside, "file.img")); string(data) != "OUTSIDE SECRET\n" {
		t.Fatal("outside file changed")
	}
}
