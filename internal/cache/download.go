package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/clr-suite/clr/events"
	"github.com/clr-suite/clr/internal/fsutil"
)

// run is the context of one Download, Expire or Check call.
type run struct {
	c     *Cache
	ctx   context.Context
	now   time.Time
	grace time.Duration
	log   *slog.Logger
	st    *state
	rep   *Report
}

// begin locks (unless the caller holds the lock), loads the state and, when
// gc is set, deletes versions whose grace period has passed.
func (c *Cache) begin(ctx context.Context, rep *Report, clean, gc bool) (*run, func(), error) {
	unlock, err := c.ensureLocked(ctx, clean)
	if err != nil {
		return nil, nil, err
	}
	r := &run{c: c, ctx: ctx, now: c.now(), grace: c.grace(), log: c.logger(), rep: rep}
	r.st = c.loadState()
	if gc {
		if err := r.gc(); err != nil {
			unlock()
			return nil, nil, fmt.Errorf("cache: %w", err)
		}
	}
	return r, unlock, nil
}

// testHookBeforeSwitch, when set by a test, runs after a verified version
// has been renamed into Dir/.clr/v and before the served link switches; an
// error makes the publish stop there, as a crash would.
var testHookBeforeSwitch func(uuid string) error

// Download makes every item the served version of its image, in order.
// An item whose digest is already served is Unchanged. Otherwise, unless
// its digest has failed MaxAttempts times (Skipped), a verified leftover of
// the same version is adopted, or the version is fetched into a fresh
// staging directory with the served version as basis, verified file by file
// and published with an atomic link switch; the replaced version stays
// readable for the grace period. A failure is reported in Report.Failed and
// Report.Errors and leaves the served tree untouched; the run continues
// with the next item.
//
// Events: ProcessPrefix first and ProcessPostfix last (also when the run is
// cancelled); AvailablePrefix before an item is fetched (Filename: where it
// is staged) and AvailablePostfix once it is served (Filename: Dir/<uuid>).
//
// The error is nil unless the run itself could not proceed (lock,
// directories) or ctx ended; the report is valid either way.
func (c *Cache) Download(ctx context.Context, items []Item) (Report, error) {
	var rep Report
	if c.Fetch == nil {
		return rep, errors.New("cache: no fetch function")
	}
	r, done, err := c.begin(ctx, &rep, true, true)
	if err != nil {
		return rep, err
	}
	defer done()
	r.fire(ctx, events.Event{Type: events.ProcessPrefix})
	seen := map[string]bool{}
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		r.download(it, seen)
	}
	r.fire(context.WithoutCancel(ctx), events.Event{Type: events.ProcessPostfix})
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("cache: download: %w", err)
	}
	return rep, nil
}

func (r *run) download(it Item, seen map[string]bool) {
	c := r.c
	s, err := c.specOf(it)
	if err == nil && seen[it.UUID] {
		err = fmt.Errorf("%w: %s: listed twice", ErrInvalidItem, it.UUID)
	}
	if err != nil {
		r.fail(it.UUID, err)
		return
	}
	seen[it.UUID] = true
	uuid, log := it.UUID, r.log.With("uuid", it.UUID, "sha512", it.SHA512)

	cur, managed, kind := c.current(uuid)
	if kind == "directory" {
		r.fail(uuid, fmt.Errorf("cache: %s is a directory the cache did not make; move it away", c.link(uuid)))
		return
	}
	// A plain file or foreign link named by a UUID is what vmcatcher's
	// cache held: it is replaced by the verified version. Any other name
	// may be an operator's file (index.html, ...): never overwrite it.
	if !managed && kind != "" && !uuidShaped(uuid) {
		r.fail(uuid, fmt.Errorf("cache: %s is a %s the cache did not make, and %q is not a UUID; move it away", c.link(uuid), kind, uuid))
		return
	}
	if managed && cur.m != nil && !cur.dangling && cur.m.SHA512 == it.SHA512 {
		r.rep.Unchanged = append(r.rep.Unchanged, uuid)
		return
	}
	if a, ok := r.st.Attempts[uuid]; ok && a.SHA512 == it.SHA512 && a.Count >= c.maxAttempts() {
		log.Warn("image has failed to download too often, skipping it until its digest changes", "attempts", a.Count, "last_error", a.Error)
		r.rep.Skipped = append(r.rep.Skipped, uuid)
		return
	}

	// A version directory of this digest already exists: a crash between
	// the rename and the link switch, a replaced version being served
	// again, or the served version with a lost record. Verify and adopt it.
	vdir := c.versionDir(uuid, s.d32)
	if exists(vdir) {
		err := verifyTree(r.ctx, uuid, vdir, s.files, false)
		if err == nil {
			log.Info("adopting an existing verified version")
			r.fire(r.ctx, itemEvent(events.AvailablePrefix, it, c.link(uuid)))
			if err := r.publish(s, cur, managed, ""); err != nil {
				r.fail(uuid, err)
			}
			return
		}
		if r.ctx.Err() != nil {
			r.fail(uuid, r.ctx.Err())
			return
		}
		log.Warn("existing version directory failed verification", "err", err)
		if managed && cur.d32 == s.d32 {
			// What is served is corrupt: take it out of service.
			if err := r.expire(cur, "failed verification"); err != nil {
				r.fail(uuid, err)
				return
			}
		} else if err := c.removeVersion(uuid, s.d32); err != nil {
			r.fail(uuid, fmt.Errorf("cache: remove unusable version %s: %w", vdir, err))
			return
		}
		r.dropRetired(uuid, s.d32)
		cur, managed, _ = c.current(uuid)
	}

	if err := c.checkSpace(uuid, it.Size); err != nil {
		r.fail(uuid, err)
		return
	}
	stage, err := os.MkdirTemp(c.PartialDir, uuid+"-"+s.d32+stageMark)
	if err != nil {
		r.fail(uuid, noSpace(fmt.Errorf("cache: staging directory: %w", err)))
		return
	}
	staged := true
	defer func() {
		if staged {
			if err := forceRemoveAll(stage); err != nil {
				log.Warn("cannot remove staging directory", "path", stage, "err", err)
			}
		}
	}()
	partial := c.partialPath(uuid, s.d32)
	c.removeOtherPartials(uuid, s.d32)
	if err := os.MkdirAll(partial, 0o755); err != nil {
		r.fail(uuid, noSpace(fmt.Errorf("cache: partial directory: %w", err)))
		return
	}
	basis := ""
	if managed && !cur.dangling {
		basis = cur.dir(c) // only read; whatever it holds, the result is verified
	}
	stageName := stage
	if s.single != "" {
		stageName = filepath.Join(stage, s.single)
	}
	r.fire(r.ctx, itemEvent(events.AvailablePrefix, it, stageName))

	start := time.Now()
	stats, err := c.Fetch(r.ctx, FetchRequest{Item: it, Files: append([]File(nil), s.files...), Basis: basis, Stage: stage, PartialDir: partial})
	r.rep.WireBytesIn += stats.WireBytesIn
	r.rep.WireBytesOut += stats.WireBytesOut
	r.rep.LiteralBytes += stats.LiteralBytes
	r.rep.MatchedBytes += stats.MatchedBytes
	if stats.Resumed {
		r.rep.Resumed++
	}
	if err != nil {
		err = noSpace(fmt.Errorf("cache: fetch %s: %w", uuid, err))
		r.failAttempt(s, err)
		return
	}
	if err := verifyTree(r.ctx, uuid, stage, s.files, true); err != nil {
		r.failAttempt(s, noSpace(err))
		return
	}
	log.Info("fetched and verified", "bytes_in", stats.WireBytesIn, "elapsed", time.Since(start).Round(time.Millisecond))
	if err := r.publish(s, cur, managed, stage); err != nil {
		if !exists(stage) {
			staged = false // renamed into place: the version directory stays (adopted or retired later)
		}
		r.fail(uuid, err)
		return
	}
	staged = false
}

// publish makes a verified version the served one. stage is the verified
// staging directory to rename into place, or "" when the version directory
// already exists (adoption).
func (r *run) publish(s spec, cur version, managed bool, stage string) error {
	c, uuid := r.c, s.it.UUID
	vdir := c.versionDir(uuid, s.d32)
	if err := os.MkdirAll(c.uuidDir(uuid), 0o755); err != nil {
		return noSpace(fmt.Errorf("cache: %w", err))
	}
	// The record first: a version directory never exists without it.
	if err := c.writeManifest(s, r.now); err != nil {
		return fmt.Errorf("cache: version record: %w", err)
	}
	if stage != "" {
		if err := os.Rename(stage, vdir); err != nil {
			return fmt.Errorf("cache: publish %s: %w", uuid, err)
		}
		for _, d := range []string{c.uuidDir(uuid), filepath.Dir(c.uuidDir(uuid)), c.PartialDir} {
			if err := fsutil.SyncDir(d); err != nil {
				return noSpace(fmt.Errorf("cache: publish %s: %w", uuid, err))
			}
		}
	}
	if testHookBeforeSwitch != nil {
		if err := testHookBeforeSwitch(uuid); err != nil {
			return err
		}
	}
	if err := c.switchLink(uuid, linkTarget(uuid, s.d32, s.single)); err != nil {
		return err
	}
	r.dropRetired(uuid, s.d32)
	if managed && cur.d32 != s.d32 && exists(cur.dir(c)) {
		r.st.Retired = append(r.st.Retired, retired{UUID: uuid, D32: cur.d32, Since: r.now})
	}
	delete(r.st.Attempts, uuid)
	delete(r.st.Outdated, uuid)
	if err := c.saveState(r.st); err != nil {
		r.log.Warn("cannot save cache state", "err", err) // served already; gc finds the old version again
	}
	if err := forceRemoveAll(c.partialPath(uuid, s.d32)); err != nil {
		r.log.Warn("cannot remove partial directory", "path", c.partialPath(uuid, s.d32), "err", err)
	}
	r.log.Info("published", "uuid", uuid, "sha512", s.it.SHA512, "path", c.link(uuid))
	r.rep.Published = append(r.rep.Published, uuid)
	r.fire(r.ctx, itemEvent(events.AvailablePostfix, s.it, c.link(uuid)))
	return nil
}

// switchLink points Dir/<uuid> at target in one step: a new symlink under a
// temporary name renamed over the old one.
func (c *Cache) switchLink(uuid, target string) error {
	tmp := filepath.Join(c.Dir, "."+uuid+tmpMark+randomSuffix())
	if err := os.Symlink(target, tmp); err != nil {
		return noSpace(fmt.Errorf("cache: link %s: %w", uuid, err))
	}
	if err := os.Rename(tmp, c.link(uuid)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cache: link %s: %w", uuid, err)
	}
	return noSpace(fsutil.SyncDir(c.Dir))
}

func (r *run) dropRetired(uuid, d string) {
	out := r.st.Retired[:0]
	for _, rv := range r.st.Retired {
		if rv.UUID != uuid || rv.D32 != d {
			out = append(out, rv)
		}
	}
	r.st.Retired = out
}

// checkSpace refuses an image that does not fit on the partial directory's
// file system with FreeMargin to spare.
func (c *Cache) checkSpace(uuid string, size int64) error {
	free, err := freeBytes(c.PartialDir)
	if err != nil {
		return fmt.Errorf("cache: free space: %w", err)
	}
	margin := c.freeMargin()
	if need := size + margin; need < 0 || free < need {
		return fmt.Errorf("%w: %s has %d bytes free, image %s needs %d (%d bytes plus a margin of %d)",
			ErrNoSpace, c.PartialDir, free, uuid, size+margin, size, margin)
	}
	return nil
}

// removeOtherPartials drops partial transfers of other versions of uuid.
func (c *Cache) removeOtherPartials(uuid, d string) {
	entries, _ := os.ReadDir(c.PartialDir)
	for _, e := range entries {
		if u, pd, ok := parsePartial(e.Name()); ok && u == uuid && pd != d {
			forceRemoveAll(filepath.Join(c.PartialDir, e.Name()))
		}
	}
}

// parsePartial splits "<uuid>-<digest32>.partial".
func parsePartial(name string) (uuid, d string, ok bool) {
	base, found := strings.CutSuffix(name, partialExt)
	if !found || len(base) < digestPart+2 || base[len(base)-digestPart-1] != '-' {
		return "", "", false
	}
	d = base[len(base)-digestPart:]
	uuid = base[:len(base)-digestPart-1]
	return uuid, d, isLowerHex(d, digestPart) && checkName(uuid) == nil
}

func (r *run) fail(uuid string, err error) {
	r.log.Error("image not published", "uuid", uuid, "err", err)
	r.rep.Failed = append(r.rep.Failed, uuid)
	r.rep.Errors = append(r.rep.Errors, fmt.Errorf("image %s: %w", uuid, err))
}

// failAttempt records a failed fetch or verification against the image's
// digest. Cancellation does not count.
func (r *run) failAttempt(s spec, err error) {
	uuid := s.it.UUID
	if r.ctx.Err() == nil && !errors.Is(err, ErrNoSpace) {
		a := r.st.Attempts[uuid]
		if a.SHA512 != s.it.SHA512 {
			a = attempt{SHA512: s.it.SHA512}
		}
		a.Count++
		a.Last = r.now
		a.Error = err.Error()
		r.st.Attempts[uuid] = a
		if a.Count >= r.c.maxAttempts() {
			r.log.Warn("image has failed to download too often, giving up until its digest changes", "uuid", uuid, "attempts", a.Count)
		}
		if serr := r.c.saveState(r.st); serr != nil {
			r.log.Warn("cannot save cache state", "err", serr)
		}
	}
	r.fail(uuid, err)
}

// fire sends one event to the hook; its failure is logged only.
func (r *run) fire(ctx context.Context, ev events.Event) {
	ev.Session = r.c.Session
	if r.c.Hook == nil {
		return
	}
	if err := r.c.Hook(ctx, ev); err != nil {
		id := ""
		if ev.Image != nil {
			id = ev.Image.Identifier
		}
		r.log.Warn("event hook failed", "event", string(ev.Type), "uuid", id, "err", err)
	}
}

func eventImage(it Item) events.Image {
	img := it.Event
	if img.Identifier == "" {
		img.Identifier = it.UUID
	}
	if img.SHA512 == "" {
		img.SHA512 = it.SHA512
	}
	if img.Size == 0 {
		img.Size = it.Size
	}
	if img.URI == "" {
		img.URI = it.URI
	}
	return img
}

func itemEvent(kind events.Kind, it Item, filename string) events.Event {
	img := eventImage(it)
	return events.Event{Type: kind, ListIdentifier: it.ListIdentifier, VO: it.VO, Filename: filename, Image: &img}
}

func manifestEvent(kind events.Kind, v version, filename string) events.Event {
	ev := events.Event{Type: kind, Filename: filename}
	if v.m != nil {
		img := v.m.Image
		ev.ListIdentifier, ev.VO, ev.Image = v.m.ListIdentifier, v.m.VO, &img
	} else {
		ev.Image = &events.Image{Identifier: v.uuid}
	}
	return ev
}

// uuidShaped reports whether s looks like a UUID (8-4-4-4-12 hex digits),
// the form of every real image identifier.
func uuidShaped(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
				return false
			}
		}
	}
	return true
}
