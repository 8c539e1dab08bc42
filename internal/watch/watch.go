// Package watch waits for a library folder to settle: it watches the whole
// tree (fsnotify, recursively, new folders included), and calls the job
// only once no change has been seen for the settle time. A job that ran
// while changes arrived is not trusted: it is asked to discard its result
// (the gate returns false) and runs again after the next quiet period, so
// a large file still being copied is never hashed and signed half written.
//
// Decisions:
//
//   - Every event counts (create, write, remove, rename, chmod), hidden
//     files included: an upload tool's temporary file is a change in
//     progress.
//   - The library folder itself being removed or replaced (mv lib
//     lib.old; mv lib.new lib) is survived: the watcher polls for the path
//     once a second, re-adds the watches and treats it as a change.
//   - Bursts are debounced by the settle time; a periodic tick (for list
//     renewal) runs the job even without a change.
//   - Writes that do not go through write(2) (mmap, some network file
//     systems) are not seen: on such storage use a longer settle or the
//     cron-driven `clr-publish publish`.
package watch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// ErrRetry is returned by a job whose result must be discarded (changes
// arrived while it ran); the watcher runs it again after the next quiet
// period.
var ErrRetry = errors.New("changes arrived during the run")

// Job runs one rebuild. reason is "change", "tick" or "start". stable
// reports, when called after the expensive part (hashing) and before the
// result is published, whether no change arrived since the job started;
// a job must not publish when it returns false.
type Job func(ctx context.Context, reason string, stable func() bool) error

// Watcher configures Run.
type Watcher struct {
	Root   string
	Settle time.Duration // quiet time before a run (default 30 s)
	Tick   time.Duration // run at least this often even without changes (0: never)
	Logger *slog.Logger
	// Poll is how often a missing root is looked for (default 1 s).
	Poll time.Duration
	// Ignore, if set, drops events for paths the job itself writes (the
	// simplestreams catalog inside the library).
	Ignore func(path string) bool

	gen atomic.Uint64 // changes seen
}

func (w *Watcher) log() *slog.Logger {
	if w.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Logger
}

// Run watches until ctx is done. The job runs once at start, then after
// each settled burst of changes, then on every tick. Job errors other than
// ErrRetry are logged and do not stop the watcher.
func (w *Watcher) Run(ctx context.Context, job Job) error {
	settle := w.Settle
	if settle <= 0 {
		settle = 30 * time.Second
	}
	poll := w.Poll
	if poll <= 0 {
		poll = time.Second
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	defer fw.Close()
	if err := w.addTree(fw, w.Root); err != nil {
		return fmt.Errorf("watch %s: %w", w.Root, err)
	}
	log := w.log()

	changed := make(chan struct{}, 1)
	notify := func() {
		w.gen.Add(1)
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	rootLost := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-fw.Events:
				if !ok {
					return
				}
				if w.Ignore != nil && w.Ignore(ev.Name) {
					continue
				}
				log.Debug("change", "path", ev.Name, "op", ev.Op.String())
				if ev.Op.Has(fsnotify.Create) {
					if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
						_ = w.addTree(fw, ev.Name) // a new folder: watch it and what is in it
					}
				}
				if filepath.Clean(ev.Name) == filepath.Clean(w.Root) && (ev.Op.Has(fsnotify.Remove) || ev.Op.Has(fsnotify.Rename)) {
					select {
					case rootLost <- struct{}{}:
					default:
					}
				}
				notify()
			case err, ok := <-fw.Errors:
				if !ok {
					return
				}
				log.Warn("watch error (a rebuild follows)", "err", err)
				notify() // an overflow means changes were lost: rebuild
			}
		}
	}()

	run := func(reason string) {
		for {
			start := w.gen.Load()
			err := job(ctx, reason, func() bool { return w.gen.Load() == start })
			if errors.Is(err, ErrRetry) {
				log.Info("changes arrived during the rebuild; waiting for the library to settle again")
				if !w.quiet(ctx, changed, settle) {
					return
				}
				continue
			}
			if err != nil && ctx.Err() == nil {
				log.Error("rebuild failed; the previous list stays published", "err", err)
			}
			return
		}
	}

	run("start")
	var tick <-chan time.Time
	if w.Tick > 0 {
		t := time.NewTicker(w.Tick)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-rootLost:
			log.Warn("library folder removed or replaced; waiting for it", "path", w.Root)
			if !w.waitRoot(ctx, fw, poll) {
				return nil
			}
			notify()
		case <-changed:
			if !w.quiet(ctx, changed, settle) {
				return nil
			}
			run("change")
		case <-tick:
			run("tick")
		}
	}
}

// quiet waits until no change arrived for settle; false when ctx ended.
func (w *Watcher) quiet(ctx context.Context, changed <-chan struct{}, settle time.Duration) bool {
	t := time.NewTimer(settle)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-changed:
			if !t.Stop() {
				<-t.C
			}
			t.Reset(settle)
		case <-t.C:
			return true
		}
	}
}

// waitRoot polls until the root exists again and re-adds the watches.
func (w *Watcher) waitRoot(ctx context.Context, fw *fsnotify.Watcher, poll time.Duration) bool {
	for {
		if fi, err := os.Stat(w.Root); err == nil && fi.IsDir() {
			if err := w.addTree(fw, w.Root); err == nil {
				w.log().Info("library folder back; watching it again", "path", w.Root)
				return true
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(poll):
		}
	}
}

// addTree watches dir and every folder below it (symbolic links are not
// followed, as the library scan does not follow them).
func (w *Watcher) addTree(fw *fsnotify.Watcher, dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return err
			}
			return nil // vanished meanwhile: its removal was an event
		}
		if d.IsDir() {
			if err := fw.Add(p); err != nil && p == dir {
				return err
			}
		}
		return nil
	})
}

// Generation is the number of changes seen so far (tests, logs).
func (w *Watcher) Generation() uint64 { return w.gen.Load() }
