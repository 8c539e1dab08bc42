// Package publishcmd implements clr-publish: build an image list from a
// library folder, sign it, verify signed lists.
package publishcmd

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/clr-suite/clr/internal/cli"
	"github.com/clr-suite/clr/internal/fsutil"
	"github.com/clr-suite/clr/internal/imagelist"
	"github.com/clr-suite/clr/internal/publish"
	"github.com/clr-suite/clr/internal/smime"
	"github.com/clr-suite/clr/internal/subscriber"
	"github.com/clr-suite/clr/internal/trust"
	"github.com/clr-suite/clr/internal/watch"
)

// Main runs clr-publish and returns its exit code.
func Main(env cli.Env) int {
	return cli.Run(env, newApp(env), cli.Classify)
}

// Names of the files `publish` writes into --out-dir.
const (
	ListJSON   = publish.ListJSON
	ListSigned = publish.ListSigned
	hashCache  = ".clr-publish-hashes.json"
)

func newApp(env cli.Env) *ucli.App {
	return &ucli.App{
		Name:  "clr-publish",
		Usage: "build, sign and verify HEPiX image lists of a template library",
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "more log output (repeatable)", Count: new(int)},
			&ucli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "less log output (repeatable)", Count: new(int)},
		},
		Commands: []*ucli.Command{
			buildCommand(env),
			signCommand(env),
			verifyCommand(env),
			publishCommand(env),
			watchCommand(env),
			pruneCommand(env),
			pushCommand(env),
		},
	}
}

func logger(env cli.Env, c *ucli.Context) *slog.Logger {
	return env.Logger(max(c.Count("verbose"), 0), max(c.Count("quiet"), 0))
}

// buildFlags are shared by build and publish.
func buildFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "library", Aliases: []string{"L"}, Usage: "library `DIR` (OVF folders and .ova/.iso/.qcow2/.img/.vmdk files)", Required: true},
		&ucli.StringFlag{Name: "base-uri", Usage: "`URI` prefix of every image hv:uri, e.g. ssh://host:2222/ or https://host/library/", Required: true},
		&ucli.StringFlag{Name: "identifier", Usage: "list dc:identifier `UUID` (default: kept from the previous list, else random)"},
		&ucli.StringFlag{Name: "title", Usage: "list dc:title"},
		&ucli.StringFlag{Name: "description", Usage: "list dc:description"},
		&ucli.StringFlag{Name: "source", Usage: "list dc:source (default: base URI)"},
		&ucli.StringFlag{Name: "uri", Usage: "the list's own URL, hv:uri (default: BASE-URI/imagelist.smime)"},
		&ucli.StringFlag{Name: "expires-in", Value: "28d", Usage: "validity of the list (`DURATION`: 28d, 36h)"},
		&ucli.StringFlag{Name: "hash-cache", Usage: "`FILE` remembering file digests by size, mtime and inode (default: next to the output)"},
		&ucli.BoolFlag{Name: "rehash", Usage: "hash every file even if the cache says it is unchanged"},
		&ucli.IntFlag{Name: "workers", Usage: "parallel hashers (default: number of CPUs)"},
		&ucli.BoolFlag{Name: "json", Usage: "print the summary as JSON"},
		&ucli.BoolFlag{Name: "simplestreams", Usage: "also write LIBRARY/streams/v1/{images,index}.json for the LXD/Incus images under LIBRARY/images/ (serve LIBRARY over https for `incus remote add --protocol=simplestreams`)"},
	}
}

type buildResult struct {
	ExpiresIn time.Duration // --expires-in, parsed once
	List      *imagelist.List
	Changes   publish.Changes
	Stats     publish.Stats
	BaseURI   string
	Entries   []publish.Entry // the scan, in the list's image order
}

// build scans the library and makes the list, using prevFile (may not
// exist) as the previous list.
func build(ctx context.Context, env cli.Env, c *ucli.Context, log *slog.Logger, prevFile, cacheFile string, now time.Time) (*buildResult, error) {
	expires, err := cli.ParseDuration(c.String("expires-in"))
	if err != nil {
		return nil, err
	}
	if c.IsSet("workers") && c.Int("workers") < 1 {
		return nil, cli.Usagef("--workers must be at least 1")
	}
	meta := publish.ListMeta{
		Identifier:  c.String("identifier"),
		Title:       c.String("title"),
		Description: c.String("description"),
		Source:      c.String("source"),
		URI:         c.String("uri"),
		BaseURI:     c.String("base-uri"),
		ExpiresIn:   expires,
		Versioned:   c.String("tree") != "",
	}
	if t := c.String("tree"); t != "" {
		st, err := publish.LoadTreeState(t)
		if err != nil {
			return nil, err
		}
		meta.PathIDs = st.Paths
	}
	if !strings.HasSuffix(meta.BaseURI, "/") {
		meta.BaseURI += "/"
	}
	var prev *imagelist.List
	if prevFile != "" {
		data, err := fsutil.ReadFileCapped(prevFile, imagelist.DefaultMaxSize)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("previous list: %w", err)
		default:
			var problems []imagelist.Problem
			prev, problems, err = imagelist.Parse(data, imagelist.ParseOptions{})
			if err != nil {
				return nil, fmt.Errorf("previous list %s: %w", prevFile, err)
			}
			for _, p := range problems {
				log.Warn("previous list", "file", prevFile, "problem", p.Message)
			}
		}
	}
	cache, err := publish.LoadHashCache(cacheFile)
	if err != nil {
		log.Warn("ignoring hash cache", "err", err)
	}
	opts := publish.ScanOptions{Workers: c.Int("workers"), Cache: cache, Rehash: c.Bool("rehash"), Now: now}
	if env.StderrTTY {
		opts.Progress = func(p publish.Progress) {
			fmt.Fprintf(env.Stderr, "\rhashing: %d/%d files, %s/%s ", p.DoneFiles, p.TotalFiles, cli.HumanBytes(p.DoneBytes), cli.HumanBytes(p.TotalBytes))
			if p.DoneFiles == p.TotalFiles {
				fmt.Fprintln(env.Stderr)
			}
		}
	}
	entries, stats, err := publish.Scan(ctx, c.String("library"), opts)
	if err == nil {
		cache.Prune(entries)
	}
	// Saved even after a failure: the digests of the files that did
	// hash are good, so a file still being uploaded costs only itself
	// on the next run, not the whole library.
	if err := cache.Save(); err != nil {
		log.Warn("hash cache not saved", "err", err)
	}
	if err != nil {
		return nil, err
	}
	if entries, err = publish.HashSimpleStreams(ctx, c.String("library"), entries, prev, &stats); err != nil {
		return nil, err
	}
	for _, s := range stats.Skipped {
		log.Warn("skipped", "path", s.Path, "reason", s.Reason)
	}
	l, changes, err := publish.Build(prev, entries, meta, now)
	if err != nil {
		return nil, err
	}
	for _, p := range changes.Added {
		log.Info("added", "image", p)
	}
	for _, p := range changes.Updated {
		log.Info("updated", "image", p)
	}
	for _, p := range changes.Removed {
		log.Info("removed", "uri", p)
	}
	return &buildResult{ExpiresIn: expires, List: l, Changes: changes, Stats: stats, BaseURI: meta.BaseURI, Entries: entries}, nil
}

// streams writes the simplestreams catalog when --simplestreams is set,
// after the list it describes was written.
func streams(c *ucli.Context, r *buildResult, log *slog.Logger) error {
	tree := c.String("tree")
	root := c.String("library")
	if tree != "" {
		root = tree // the catalog names the tree's version folders
	}
	written := false
	if c.Bool("simplestreams") {
		var err error
		if written, err = writeStreams(root, r.List, r.BaseURI, log); err != nil {
			return fmt.Errorf("simplestreams: %w", err)
		}
	}
	if tree != "" && !written {
		// A catalog the list no longer backs would keep its versions
		// live (prune and push follow it) and serve stale images.
		dir := filepath.Join(tree, "streams")
		if _, err := os.Stat(dir); err == nil {
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("simplestreams: remove the stale catalog: %w", err)
			}
			log.Warn("stale simplestreams catalog removed from the release tree", "dir", dir)
		}
	}
	return nil
}

// summary is the record build and publish print.
type summary struct {
	Output      string   `json:"output"`
	Signed      string   `json:"signed,omitempty"`
	Identifier  string   `json:"identifier"`
	Version     string   `json:"version"`
	Expires     string   `json:"expires"`
	Changed     bool     `json:"changed"`
	Written     bool     `json:"written"`
	Images      int      `json:"images"`
	Files       int      `json:"files"`
	Bytes       int64    `json:"bytes"`
	HashedFiles int      `json:"hashed_files"`
	HashedBytes int64    `json:"hashed_bytes"`
	Added       []string `json:"added"`
	Updated     []string `json:"updated"`
	Removed     []string `json:"removed"`
}

func newSummary(r *buildResult, out string) summary {
	nz := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return summary{
		Output: out, Identifier: r.List.Identifier, Version: r.List.Version,
		Expires: imagelist.FormatTime(r.List.Expires), Changed: r.Changes.Changed(),
		Images: r.Stats.Images, Files: r.Stats.Files, Bytes: r.Stats.Bytes,
		HashedFiles: r.Stats.HashedFiles, HashedBytes: r.Stats.HashedBytes,
		Added: nz(r.Changes.Added), Updated: nz(r.Changes.Updated), Removed: nz(r.Changes.Removed),
	}
}

func printSummary(env cli.Env, c *ucli.Context, s summary) error {
	if c.Bool("json") {
		return cli.WriteJSON(env.Stdout, s)
	}
	state := "unchanged"
	if s.Written {
		state = "written"
	}
	fmt.Fprintf(env.Stdout, "%s: %s, list %s version %s, %d images (%d added, %d updated, %d removed), %d files, %s, hashed %d files (%s), expires %s\n",
		s.Output, state, s.Identifier, s.Version, s.Images, len(s.Added), len(s.Updated), len(s.Removed),
		s.Files, cli.HumanBytes(s.Bytes), s.HashedFiles, cli.HumanBytes(s.HashedBytes), s.Expires)
	if s.Signed != "" && s.Written {
		fmt.Fprintf(env.Stdout, "%s: signed\n", s.Signed)
	}
	return nil
}

func buildCommand(env cli.Env) *ucli.Command {
	return &ucli.Command{
		Name:      "build",
		Usage:     "build or update the unsigned image list of a library",
		ArgsUsage: " ",
		Flags: append(buildFlags(),
			&ucli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "list `FILE` to write; an existing one is the previous list", Required: true},
			&ucli.StringFlag{Name: "previous", Usage: "previous list `FILE` (default: the output file)"},
		),
		Action: func(c *ucli.Context) error {
			if c.NArg() > 0 {
				return cli.Usagef("build takes no arguments")
			}
			now := env.Now()
			out := c.String("output")
			prev := c.String("previous")
			if prev == "" {
				prev = out
			}
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				return err
			}
			r, err := build(c.Context, env, c, logger(env, c), prev, cacheFor(c, filepath.Dir(out)), now)
			if err != nil {
				return err
			}
			data, err := r.List.Marshal()
			if err != nil {
				return err
			}
			s := newSummary(r, out)
			old, _ := os.ReadFile(out)
			if string(old) != string(data) {
				if err := writeFile(out, data); err != nil {
					return err
				}
				s.Written = true
			}
			if err := streams(c, r, logger(env, c)); err != nil {
				return err
			}
			return printSummary(env, c, s)
		},
	}
}

// signedMatches reports whether the signed list in file has exactly the
// content l marshals to.
func signedMatches(file string, l *imagelist.List) bool {
	raw, err := fsutil.ReadFileCapped(file, smime.MaxMessageSize)
	if err != nil {
		return false
	}
	msg, err := smime.Parse(raw)
	if err != nil {
		return false
	}
	content, err := l.Marshal()
	return err == nil && bytes.Equal(msg.Content, smime.Canonicalize(content))
}

// writeFile atomically replaces name, creating its directory.
func writeFile(name string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	return fsutil.WriteAtomic(name, data, 0o644)
}

// cacheFor is the hash cache file: --hash-cache, else one per library in
// the user's cache directory (never inside the published tree, which
// subscribers can read), else next to the output.
func cacheFor(c *ucli.Context, dir string) string {
	if f := c.String("hash-cache"); f != "" {
		return f
	}
	if base, err := os.UserCacheDir(); err == nil {
		if lib, err := filepath.Abs(c.String("library")); err == nil {
			sum := sha256.Sum256([]byte(lib))
			return filepath.Join(base, "clr", "publish-hashes-"+hex.EncodeToString(sum[:8])+".json")
		}
	}
	return filepath.Join(dir, hashCache)
}

func signerFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "cert", Usage: "signer certificate `PEM` (further certificates in it are embedded as chain)", Required: true},
		&ucli.StringFlag{Name: "key", Usage: "signer private key `PEM` (unencrypted)", Required: true},
		&ucli.StringFlag{Name: "chain", Usage: "extra chain certificates `PEM` to embed"},
		&ucli.StringFlag{Name: "digest", Value: "sha512", Usage: "digest: sha512, sha384, sha256 or sha1"},
	}
}

func digestFlag(c *ucli.Context) (crypto.Hash, error) {
	switch strings.ToLower(c.String("digest")) {
	case "sha512", "sha-512":
		return crypto.SHA512, nil
	case "sha384", "sha-384":
		return crypto.SHA384, nil
	case "sha256", "sha-256":
		return crypto.SHA256, nil
	case "sha1", "sha-1":
		return crypto.SHA1, nil
	}
	return 0, cli.Usagef("unknown --digest %q: want sha512, sha384, sha256 or sha1", c.String("digest"))
}

func signCommand(env cli.Env) *ucli.Command {
	return &ucli.Command{
		Name:      "sign",
		Usage:     "sign an image list (S/MIME multipart/signed, detached PKCS#7)",
		ArgsUsage: "IN.json",
		Flags: append(signerFlags(),
			&ucli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "signed list `FILE`", Required: true},
			&ucli.StringFlag{Name: "expires-in", Value: "28d", Usage: "validity from now (`DURATION`)"},
			&ucli.BoolFlag{Name: "keep-dates", Usage: "keep dc:date:created and dc:date:expires from the input"},
			&ucli.BoolFlag{Name: "keep-endorser", Usage: "keep hv:endorser from the input instead of filling it from the certificate"},
		),
		Action: func(c *ucli.Context) error {
			if c.NArg() != 1 {
				return cli.Usagef("sign takes exactly one input list")
			}
			now := env.Now()
			expires, err := cli.ParseDuration(c.String("expires-in"))
			if err != nil {
				return err
			}
			digest, err := digestFlag(c)
			if err != nil {
				return err
			}
			in := c.Args().First()
			data, err := fsutil.ReadFileCapped(in, imagelist.DefaultMaxSize)
			if err != nil {
				return err
			}
			l, problems, err := imagelist.Parse(data, imagelist.ParseOptions{})
			if err != nil {
				return fmt.Errorf("%s: %w", in, err)
			}
			if len(problems) > 0 {
				// Signing would silently publish a list without them.
				return fmt.Errorf("%s: %w: %s", in, imagelist.ErrNotImageList, problems[0].Message)
			}
			s, err := publish.LoadSigner(c.String("cert"), c.String("key"), c.String("chain"))
			if err != nil {
				return err
			}
			signed, _, err := publish.Sign(l, s, publish.SignOptions{
				Now: now, ExpiresIn: expires, KeepDates: c.Bool("keep-dates"),
				KeepEndorser: c.Bool("keep-endorser"), Digest: digest,
			})
			if err != nil {
				return err
			}
			return writeFile(c.String("output"), signed)
		},
	}
}

func verifyCommand(env cli.Env) *ucli.Command {
	return &ucli.Command{
		Name:      "verify",
		Usage:     "verify a signed image list and print the signed JSON",
		ArgsUsage: "FILE",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "ca-dir", Aliases: []string{"c"}, Usage: "trusted CA `DIR` (<hash>.0/.pem, <hash>.r0 CRLs)", EnvVars: []string{"CLR_DIR_CERT", "VMCATCHER_DIR_CERT"}},
			&ucli.StringFlag{Name: "crl", Value: "require", Usage: "CRL policy: require, if-present or ignore"},
			&ucli.StringFlag{Name: "purpose", Value: "smime", Usage: "signer key usage: smime or any (any accepts host certificates)"},
			&ucli.BoolFlag{Name: "signature-only", Usage: "check only the signature and endorser DNs, not the chain, CRLs or dates (inspection only)"},
			&ucli.BoolFlag{Name: "json", Usage: "print a verification record as JSON instead of the list"},
		},
		Action: func(c *ucli.Context) error {
			if c.NArg() != 1 {
				return cli.Usagef("verify takes exactly one signed list")
			}
			now := env.Now()
			pol, err := cli.TrustPolicy(c, now)
			if err != nil {
				return err
			}
			opts := subscriber.VerifyOptions{Policy: pol, SignatureOnly: c.Bool("signature-only")}
			if !opts.SignatureOnly {
				if c.String("ca-dir") == "" {
					return cli.Usagef("--ca-dir is required (or CLR_DIR_CERT)")
				}
				store, err := trust.Load(c.String("ca-dir"))
				if err != nil {
					return err
				}
				for _, p := range store.Problems() {
					logger(env, c).Warn("CA directory", "problem", p)
				}
				opts.Trust = store
			}
			file := c.Args().First()
			raw, err := fsutil.ReadFileCapped(file, smime.MaxMessageSize)
			if err != nil {
				return err
			}
			v, err := subscriber.Verify(raw, opts)
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			log := logger(env, c)
			for _, p := range v.Problems {
				log.Warn("image list", "file", file, "problem", p.Message)
			}
			if opts.SignatureOnly {
				log.Warn("signature only: certificate chain, CRLs and list dates were not checked", "file", file)
			}
			if c.Bool("json") {
				return cli.WriteJSON(env.Stdout, verifyRecord(file, v))
			}
			_, err = env.Stdout.Write(v.Content)
			return err
		},
	}
}

type verifyRec struct {
	File          string   `json:"file"`
	Verified      bool     `json:"verified"`
	SignatureOnly bool     `json:"signature_only"`
	Signer        string   `json:"signer"`
	Issuer        string   `json:"issuer"`
	Digest        string   `json:"digest"`
	CAFile        string   `json:"ca_file,omitempty"`
	Identifier    string   `json:"identifier"`
	Version       string   `json:"version"`
	Created       string   `json:"created"`
	Expires       string   `json:"expires"`
	Images        int      `json:"images"`
	Problems      []string `json:"problems"`
}

func verifyRecord(file string, v *subscriber.Verified) verifyRec {
	r := verifyRec{
		File: file, Verified: true, SignatureOnly: v.Chain == nil,
		Signer: v.SubjectDN, Issuer: v.IssuerDN, Digest: v.Digest.String(),
		Identifier: v.List.Identifier, Version: v.List.Version,
		Created: imagelist.FormatTime(v.List.Created), Expires: imagelist.FormatTime(v.List.Expires),
		Images: len(v.List.Images), Problems: []string{},
	}
	if v.Chain != nil {
		r.CAFile = v.Chain.CAFile
	}
	for _, p := range v.Problems {
		r.Problems = append(r.Problems, p.Message)
	}
	return r
}

func publishCommand(env cli.Env) *ucli.Command {
	return &ucli.Command{
		Name:      "publish",
		Usage:     "build and sign in one step: OUT-DIR/imagelist.json and OUT-DIR/imagelist.smime",
		ArgsUsage: " ",
		Flags: append(append(append(buildFlags(), signerFlags()...),
			&ucli.StringFlag{Name: "out-dir", Aliases: []string{"o"}, Usage: "`DIR` for imagelist.json and imagelist.smime (with --tree: the tree)"},
			&ucli.StringFlag{Name: "renew-before", Value: "7d", Usage: "re-sign an unchanged list when it expires within `DURATION`"},
		), publishTreeFlags()...),
		Action: func(c *ucli.Context) error {
			if c.NArg() > 0 {
				return cli.Usagef("publish takes no arguments")
			}
			return publishOnce(env, c, nil)
		},
	}
}

func watchCommand(env cli.Env) *ucli.Command {
	return &ucli.Command{
		Name:  "watch",
		Usage: "publish whenever the library changes and has settled, and renew the list before it expires",
		Description: `Runs publish at start, then whenever the library has been quiet for --settle
after a change (files written, added, removed, renamed, folders too; the library
folder may even be replaced), and every --check-every for renewal (--renew-before).
A rebuild during which a file changed is not signed: it waits for the next quiet
period, so a large file still being copied is never hashed and signed half
written. Stops on SIGTERM/SIGINT.`,
		ArgsUsage: " ",
		Flags: append(append(append(buildFlags(), signerFlags()...),
			&ucli.StringFlag{Name: "out-dir", Aliases: []string{"o"}, Usage: "`DIR` for imagelist.json and imagelist.smime (with --tree: the tree)"},
			&ucli.StringFlag{Name: "renew-before", Value: "7d", Usage: "re-sign an unchanged list when it expires within `DURATION`"},
			&ucli.StringFlag{Name: "settle", Value: "30s", Usage: "publish only after the library was quiet this `DURATION` (longer than any pause of an upload)"},
			&ucli.StringFlag{Name: "check-every", Value: "1h", Usage: "look for a due renewal this often (`DURATION`)"},
		), publishTreeFlags()...),
		Action: func(c *ucli.Context) error {
			if c.NArg() > 0 {
				return cli.Usagef("watch takes no arguments")
			}
			settle, err := cli.ParseDuration(c.String("settle"))
			if err != nil || settle <= 0 {
				return cli.Usagef("--settle: want a positive duration")
			}
			every, err := cli.ParseDuration(c.String("check-every"))
			if err != nil || every <= 0 {
				return cli.Usagef("--check-every: want a positive duration")
			}
			log := logger(env, c)
			lib, err := filepath.Abs(c.String("library"))
			if err != nil {
				return err
			}
			streamsDir := filepath.Join(lib, "streams")
			w := &watch.Watcher{Root: lib, Settle: settle, Tick: every, Logger: log,
				Ignore: func(p string) bool {
					return p == streamsDir || strings.HasPrefix(p, streamsDir+string(filepath.Separator))
				}}
			log.Info("watching the library", "dir", lib, "settle", settle, "check_every", every)
			return w.Run(c.Context, func(ctx context.Context, reason string, stable func() bool) error {
				log.Info("rebuilding", "reason", reason)
				return publishOnce(env, c, stable)
			})
		},
	}
}

// publishOnce builds and, when something changed or renewal is due, signs
// and writes the list. stable (watch mode) is asked after hashing: when it
// says changes arrived meanwhile, nothing is signed (watch.ErrRetry).
// With --tree, new image versions are copied into the release tree before
// the list that names them is written, then the tree is recorded, pruned
// (--prune) and pushed to the mirrors, in that order.
func publishOnce(env cli.Env, c *ucli.Context, stable func() bool) error {
	now := env.Now()
	log := logger(env, c)
	renew, err := cli.ParseDuration(c.String("renew-before"))
	if err != nil {
		return err
	}
	digest, err := digestFlag(c)
	if err != nil {
		return err
	}
	tc, err := treeFlags(c)
	if err != nil {
		return err
	}
	dir := c.String("out-dir")
	if tc.dir != "" {
		dir = tc.dir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if tc.dir != "" {
		unlock, err := publish.LockTree(tc.dir)
		if err != nil {
			return err
		}
		defer unlock()
	}
	signer, err := publish.LoadSigner(c.String("cert"), c.String("key"), c.String("chain"))
	if err != nil {
		return err
	}
	jsonFile, signedFile := filepath.Join(dir, ListJSON), filepath.Join(dir, ListSigned)
	r, err := build(c.Context, env, c, log, jsonFile, cacheFor(c, dir), now)
	if err != nil {
		return err
	}
	if stable != nil && !stable() {
		return watch.ErrRetry // a file changed while it was hashed
	}
	if tc.dir != "" {
		// Objects before the pointer: the list is written only once
		// every version it names is complete in the tree.
		made, err := publish.PlaceTree(c.Context, c.String("library"), tc.dir, r.Entries, r.List, r.BaseURI)
		if errors.Is(err, publish.ErrChangedSinceHash) && stable != nil {
			log.Warn("a file changed after it was hashed; waiting for the library to settle", "err", err)
			return watch.ErrRetry
		}
		if err != nil {
			return err
		}
		for _, d := range made {
			log.Info("version placed in the release tree", "dir", d)
		}
	}
	s, err := signIfDue(env, c, log, r, signer, digest, renew, jsonFile, signedFile, now)
	if err != nil {
		return err
	}
	if tc.dir != "" {
		if err := afterPublish(env, c, log, tc, r); err != nil {
			_ = printSummary(env, c, s)
			return err
		}
	}
	return printSummary(env, c, s)
}

// signIfDue signs and writes the list when it changed or renewal is due,
// then the simplestreams catalog; it returns the summary to print.
func signIfDue(env cli.Env, c *ucli.Context, log *slog.Logger, r *buildResult, signer publish.Signer, digest crypto.Hash,
	renew time.Duration, jsonFile, signedFile string, now time.Time) (summary, error) {
	s := newSummary(r, jsonFile)
	s.Signed = signedFile
	expires := r.ExpiresIn
	if left := signer.Cert.NotAfter.Sub(now); left < renew {
		log.Warn("signer certificate expires soon: renew it, lists cannot be signed beyond it",
			"cert", c.String("cert"), "not_after", imagelist.FormatTime(signer.Cert.NotAfter))
	}
	if !r.Changes.NewRelease {
		// Nothing changed in the library. What counts is what was
		// signed: a hand edit of imagelist.json or a `build` into
		// it is a new release too.
		same := signedMatches(signedFile, r.List)
		due := r.List.Expires.Sub(now) < renew
		if same && !due {
			return s, streams(c, r, log)
		}
		extended := now.Add(expires)
		if signer.Cert.NotAfter.Before(extended) {
			extended = signer.Cert.NotAfter
		}
		if same && !extended.After(r.List.Expires) {
			// Re-signing would not extend the list (the signer
			// certificate ends first): don't churn versions.
			log.Warn("list due for renewal but the signer certificate cannot extend it",
				"expires", imagelist.FormatTime(r.List.Expires), "not_after", imagelist.FormatTime(signer.Cert.NotAfter))
			return s, nil
		}
		// Re-signing is still a new release: subscribers refuse
		// new content under an old version (rule R5).
		r.List.Version = publish.BumpVersion(r.List.Version)
	}
	signed, content, err := publish.Sign(r.List, signer, publish.SignOptions{Now: now, ExpiresIn: expires, Digest: digest})
	if err != nil {
		return s, err
	}
	// The signed list goes out first: imagelist.json is only the
	// publisher's record of what was signed.
	if err := writeFile(signedFile, signed); err != nil {
		return s, err
	}
	if err := writeFile(jsonFile, content); err != nil {
		return s, err
	}
	s.Written = true
	s.Version, s.Expires = r.List.Version, imagelist.FormatTime(r.List.Expires)
	return s, streams(c, r, log)
}

// writeStreams writes the simplestreams catalog of the list's LXD/Incus
// images into the library (or tree), with paths relative to its root (the
// images' hv:uri under the base URI). It reports whether a catalog exists
// for the list (written now or unchanged).
func writeStreams(lib string, l *imagelist.List, base string, log *slog.Logger) (bool, error) {
	var imgs []publish.SSImage
	var updated time.Time
	for _, img := range l.Images {
		info, ok := publish.SSInfoOf(img)
		if !ok || !strings.HasPrefix(img.URI, base) {
			continue
		}
		prefix, err := url.PathUnescape(strings.TrimSuffix(strings.TrimPrefix(img.URI, base), "/"))
		if err != nil {
			return false, err
		}
		imgs = append(imgs, publish.SSImage{Info: info, Files: img.Files, Prefix: prefix})
		if img.Created.After(updated) {
			updated = img.Created
		}
	}
	if len(imgs) == 0 {
		log.Warn("no LXD/Incus images under " + publish.LXDRoot + "/: streams/v1 not written")
		return false, nil
	}
	cat, bad := publish.SimpleStreamsCatalogSafe(imgs, updated)
	for _, err := range bad {
		log.Error("LXD/Incus image left out of streams/v1", "err", err)
	}
	if len(cat.Products) == 0 {
		return false, nil
	}
	wrote, err := publish.WriteSimpleStreams(lib, cat)
	if err != nil {
		return false, err
	}
	if wrote {
		log.Info("simplestreams catalog written", "dir", filepath.Join(lib, "streams", "v1"), "images", len(imgs))
	}
	return true, nil
}
