package publishcmd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/clr-suite/clr/internal/cli"
	"github.com/clr-suite/clr/internal/imagelist"
	"github.com/clr-suite/clr/internal/publish"
	"github.com/clr-suite/clr/internal/push"
	"github.com/clr-suite/clr/internal/transport"
)

// Defaults of the prune policy and the mirrors' grace period.
const (
	defaultKeep   = 2
	defaultMaxAge = "7d"
	defaultGrace  = "24h"
)

func policyFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.IntFlag{Name: "keep", Value: defaultKeep, Usage: "prune: keep the `N` newest versions of each image the live list names (the live one included)"},
		&ucli.StringFlag{Name: "max-age", Value: defaultMaxAge, Usage: "prune: keep versions published less than `DURATION` ago"},
		graceFlag(),
	}
}

func graceFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "grace", Value: defaultGrace, Usage: "keep versions a superseded list named for `DURATION` (in the tree and on each mirror): longer than the longest download plus the clients' list cache"}
}

func mirrorFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringSliceFlag{Name: "mirror", Usage: "push the tree to this mirror after publishing (`URL`: ssh://[user@]host[:port]/path or /local/path; repeatable)"},
		&ucli.StringFlag{Name: "mirrors", Usage: "`FILE` of mirrors, one per line: URL [key=FILE] [known-hosts=FILE] (# comments)"},
		&ucli.StringFlag{Name: "ssh-key", Usage: "ssh identity `FILE` for mirrors without their own key="},
		&ucli.StringFlag{Name: "known-hosts", Usage: "known_hosts `FILE` pinning the mirrors' host keys (required for ssh:// mirrors)"},
		&ucli.StringFlag{Name: "bwlimit", Usage: "cap each push at `RATE` (rsync --bwlimit: 1.5m, 500k)"},
	}
}

// publishTreeFlags are the release tree flags of publish and watch.
func publishTreeFlags() []ucli.Flag {
	return append(append([]ucli.Flag{
		&ucli.StringFlag{Name: "tree", Usage: "publish a release tree in `DIR`: each image version in its own never-changing folder <image-uuid>/<digest32>/ (hv:uri under --base-uri), the lists next to them"},
		&ucli.BoolFlag{Name: "prune", Usage: "after publishing, remove retired versions the policy (--keep, --max-age, --grace) does not keep"},
	}, policyFlags()...), mirrorFlags()...)
}

// treeConfig is the parsed tree, prune and mirror flags.
type treeConfig struct {
	dir     string
	policy  publish.PrunePolicy
	mirrors []push.Mirror
	bwlimit string
}

func treeFlags(c *ucli.Context) (treeConfig, error) {
	var tc treeConfig
	t := c.String("tree")
	if t == "" {
		if c.String("out-dir") == "" {
			return tc, cli.Usagef("--out-dir (or --tree) is required")
		}
		if c.Bool("prune") || len(c.StringSlice("mirror")) > 0 || c.String("mirrors") != "" {
			return tc, cli.Usagef("--prune and --mirror need --tree (a list naming files in the library cannot be replicated without overwriting)")
		}
		return tc, nil
	}
	var err error
	if tc.policy, err = policyOf(c); err != nil {
		return tc, err
	}
	if tc.mirrors, err = mirrorsOf(c); err != nil {
		return tc, err
	}
	tc.bwlimit = c.String("bwlimit")
	abs, err := filepath.Abs(t)
	if err != nil {
		return tc, err
	}
	if o := c.String("out-dir"); o != "" {
		if oa, err := filepath.Abs(o); err != nil || oa != abs {
			return tc, cli.Usagef("--out-dir must be the tree (or left out) with --tree")
		}
	}
	if lib := c.String("library"); lib != "" {
		la, err := filepath.Abs(lib)
		if err != nil {
			return tc, err
		}
		if within(la, abs) || within(abs, la) {
			return tc, cli.Usagef("--tree %s and --library %s overlap", t, lib)
		}
	}
	tc.dir = abs
	return tc, nil
}

func within(parent, p string) bool {
	rel, err := filepath.Rel(parent, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

func graceOf(c *ucli.Context) (time.Duration, error) {
	g, err := cli.ParseDuration(c.String("grace"))
	if err != nil || g < 0 {
		return 0, cli.Usagef("--grace: want a duration like 24h")
	}
	return g, nil
}

func policyOf(c *ucli.Context) (publish.PrunePolicy, error) {
	var p publish.PrunePolicy
	var err error
	if p.Grace, err = graceOf(c); err != nil {
		return p, err
	}
	if p.Keep = c.Int("keep"); p.Keep < 1 {
		return p, cli.Usagef("--keep must be at least 1")
	}
	if p.MaxAge, err = cli.ParseDuration(c.String("max-age")); err != nil || p.MaxAge < 0 {
		return p, cli.Usagef("--max-age: want a duration like 7d")
	}
	return p, nil
}

// mirrorsOf reads --mirror and --mirrors.
func mirrorsOf(c *ucli.Context) ([]push.Mirror, error) {
	def := transport.SSHOptions{KeyFile: c.String("ssh-key"), KnownHosts: c.String("known-hosts")}
	var out []push.Mirror
	add := func(spec string, o transport.SSHOptions, where string) error {
		m, err := push.ParseMirror(spec)
		if err != nil {
			return cli.Usagef("%s%v", where, err)
		}
		if strings.HasPrefix(spec, "ssh://") && o.KnownHosts == "" {
			return cli.Usagef("%smirror %s: --known-hosts (or known-hosts=) is required to check its host key", where, spec)
		}
		for _, p := range []string{o.KeyFile, o.KnownHosts} {
			if strings.ContainsAny(p, " \t'\"\\") {
				return cli.Usagef("%smirror %s: %q: paths with spaces or quotes cannot be passed to ssh", where, spec, p)
			}
			if _, err := os.Stat(p); p != "" && err != nil {
				return cli.Usagef("%smirror %s: %v", where, spec, err)
			}
		}
		for _, x := range out {
			if x.Name == m.Name {
				return cli.Usagef("%smirror %s given twice", where, spec)
			}
		}
		m.SSH = o
		out = append(out, m)
		return nil
	}
	for _, spec := range c.StringSlice("mirror") {
		if err := add(spec, def, ""); err != nil {
			return nil, err
		}
	}
	if f := c.String("mirrors"); f != "" {
		file, err := os.Open(f)
		if err != nil {
			return nil, fmt.Errorf("mirrors file: %w", err)
		}
		defer file.Close()
		sc := bufio.NewScanner(file)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			fields := strings.Fields(line)
			o := def
			where := fmt.Sprintf("%s:%d: ", f, n)
			for _, kv := range fields[1:] {
				k, v, ok := strings.Cut(kv, "=")
				switch {
				case ok && k == "key":
					o.KeyFile = v
				case ok && k == "known-hosts":
					o.KnownHosts = v
				default:
					return nil, cli.Usagef("%sunknown setting %q (want key=FILE or known-hosts=FILE)", where, kv)
				}
			}
			if err := add(fields[0], o, where); err != nil {
				return nil, err
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("mirrors file: %w", err)
		}
	}
	return out, nil
}

// afterPublish records the tree for the list just published, prunes it
// (--prune) and pushes it to every mirror. A failed mirror does not stop
// the others; the first failure is returned.
func afterPublish(env cli.Env, c *ucli.Context, log *slog.Logger, tc treeConfig, r *buildResult) error {
	// The time the list was replaced, not the run's start (hashing and
	// copying can take long): retirement and grace count from it.
	now := env.Now()
	paths := make(map[string]string, len(r.Entries))
	for i, e := range r.Entries {
		paths[e.Path] = r.List.Images[i].Identifier
	}
	if _, err := publish.RecordTree(tc.dir, r.List, r.BaseURI, paths, now); err != nil {
		return err
	}
	var pruneErr error
	if c.Bool("prune") {
		// A failed prune leaves versions behind; the mirrors still
		// get the new list.
		if pruneErr = prune(env, log, tc, now, false); pruneErr != nil {
			log.Error("prune incomplete", "err", pruneErr)
		}
	}
	if err := pushAll(c.Context, env, log, tc, false); err != nil {
		return err
	}
	return pruneErr
}

func prune(env cli.Env, log *slog.Logger, tc treeConfig, now time.Time, dryRun bool) error {
	pruned, err := publish.PruneTree(tc.dir, tc.policy, now, dryRun)
	for _, p := range pruned {
		verb := "pruned"
		if dryRun {
			verb = "would prune"
		}
		log.Info(verb, "dir", p.Dir, "created", imagelist.FormatTime(p.Created), "retired", imagelist.FormatTime(p.Retired))
		if dryRun {
			fmt.Fprintf(env.Stdout, "would prune %s (published %s, retired %s)\n", p.Dir, imagelist.FormatTime(p.Created), imagelist.FormatTime(p.Retired))
		}
	}
	return err
}

func pushAll(ctx context.Context, env cli.Env, log *slog.Logger, tc treeConfig, dryRun bool) error {
	var first error
	for _, m := range tc.mirrors {
		// Stamped with the time each mirror got its list, not the
		// run's start: the grace counts from when readers saw it change.
		rep, err := push.Push(ctx, m, push.Options{Tree: tc.dir, Grace: tc.policy.Grace, Clock: env.Now, DryRun: dryRun,
			BWLimit: tc.bwlimit, Logger: log})
		if dryRun {
			for _, f := range rep.Sent {
				fmt.Fprintf(env.Stdout, "%s: would send %s\n", rep.Mirror, f)
			}
			for _, f := range rep.Deleted {
				fmt.Fprintf(env.Stdout, "%s: would delete %s\n", rep.Mirror, f)
			}
		}
		if err != nil {
			msg := "mirror not updated; it keeps its previous list (unless the failed pass renamed part of it)"
			if rep.Pointers {
				msg = "mirror has the new list, but removing retired versions failed"
			}
			log.Error(msg, "mirror", m.URL, "err", err)
			if first == nil {
				first = err
			}
			if errors.Is(err, context.Canceled) {
				return err
			}
			continue
		}
		log.Info("mirror updated", "mirror", m.URL, "sent", len(rep.Sent), "deleted", len(rep.Deleted),
			"kept_for_grace", len(rep.Protected), "removal_deferred", rep.Deferred, "dry_run", dryRun)
	}
	return first
}

func pruneCommand(env cli.Env) *ucli.Command {
	return &ucli.Command{
		Name:  "prune",
		Usage: "remove retired image versions from a release tree",
		Description: `Keeps every version the list on disk names, the --keep newest versions of
each image that list still names, versions published less than --max-age ago
and versions retired less than --grace ago; removes the others (each folder
disappears in one rename). --dry-run prints what would go.`,
		ArgsUsage: " ",
		Flags: append([]ucli.Flag{
			&ucli.StringFlag{Name: "tree", Usage: "the release tree `DIR`", Required: true},
			&ucli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "print what would be removed, remove nothing"},
		}, policyFlags()...),
		Action: func(c *ucli.Context) error {
			if c.NArg() > 0 {
				return cli.Usagef("prune takes no arguments")
			}
			var tc treeConfig
			var err error
			if tc.policy, err = policyOf(c); err != nil {
				return err
			}
			if err := existingTree(c, &tc); err != nil {
				return err
			}
			unlock, err := publish.LockTree(tc.dir)
			if err != nil {
				return err
			}
			defer unlock()
			return prune(env, logger(env, c), tc, env.Now(), c.Bool("dry-run"))
		},
	}
}

func pushCommand(env cli.Env) *ucli.Command {
	return &ucli.Command{
		Name:  "push",
		Usage: "replicate a release tree to its mirrors in the safe order",
		Description: `Three rsync passes per mirror: new version folders (never overwriting), then
the signed list and catalogs, then removal of the folders the tree no longer
has, except those a list this mirror served within --grace names (nothing
within --grace of a mirror's first push). A failed pass stops that mirror's
push: after pass 1 it keeps its previous list, after pass 2 it may serve part
of the new pointers.`,
		ArgsUsage: " ",
		Flags: append([]ucli.Flag{
			&ucli.StringFlag{Name: "tree", Usage: "the release tree `DIR`", Required: true},
			&ucli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "print what each mirror would get and lose, change nothing"},
			graceFlag(),
		}, mirrorFlags()...),
		Action: func(c *ucli.Context) error {
			if c.NArg() > 0 {
				return cli.Usagef("push takes no arguments")
			}
			tc := treeConfig{bwlimit: c.String("bwlimit")}
			var err error
			if tc.policy.Grace, err = graceOf(c); err != nil {
				return err
			}
			if tc.mirrors, err = mirrorsOf(c); err != nil {
				return err
			}
			if err := existingTree(c, &tc); err != nil {
				return err
			}
			if len(tc.mirrors) == 0 {
				return cli.Usagef("no mirror: give --mirror URL or --mirrors FILE")
			}
			unlock, err := publish.LockTree(tc.dir)
			if err != nil {
				return err
			}
			defer unlock()
			return pushAll(c.Context, env, logger(env, c), tc, c.Bool("dry-run"))
		},
	}
}

// existingTree sets tc.dir to --tree, which must hold a published tree
// (prune and push).
func existingTree(c *ucli.Context, tc *treeConfig) error {
	dir, err := filepath.Abs(c.String("tree"))
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, publish.StateDir, "tree.json")); err != nil {
		return fmt.Errorf("%s is not a release tree (no list published with --tree yet): %w", c.String("tree"), err)
	}
	tc.dir = dir
	return nil
}
