// Package trustcmd implements clr-trust: CRL refresh for the CA directory
// (replacing the separate fetch-crl job), a health report for monitoring,
// and an explanation of why a signed list does or does not verify.
package trustcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/clr-suite/clr/internal/cli"
	"github.com/clr-suite/clr/internal/cli/subscribecmd"
	"github.com/clr-suite/clr/internal/crl"
	"github.com/clr-suite/clr/internal/subscriber"
	"github.com/clr-suite/clr/internal/transport"
	"github.com/clr-suite/clr/internal/trust"
)

// DefaultCertDir is vmcatcher's (and fetch-crl's) CA directory.
const DefaultCertDir = subscribecmd.DefaultCertDir

// Exit codes of clr-trust beyond the suite's (docs/exit-codes.md).
const (
	ExitRefreshFailed = 10 // refresh: at least one CA's CRL could not be refreshed (the old file stays)
	ExitWarning       = 44 // health: something needs attention soon
	ExitCritical      = 45 // health: verification fails now for some CA (stale or missing CRL, expired CA)
)

// Main runs clr-trust and returns its exit code.
func Main(env cli.Env) int { return cli.Run(env, newApp(env), nil) }

func certDirFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "cert-dir", Aliases: []string{"c"}, Value: DefaultCertDir, EnvVars: []string{"CLR_DIR_CERT", "VMCATCHER_DIR_CERT", "X509_CERT_DIR"}, Usage: "CA `DIR` (<hash>.0 certificates, <hash>.r0 CRLs, <hash>.crl_url)"}
}

func newApp(env cli.Env) *ucli.App {
	common := func(extra ...ucli.Flag) []ucli.Flag {
		return append([]ucli.Flag{
			certDirFlag(),
			&ucli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
			&ucli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Count: new(int), Usage: "more logging"},
			&ucli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Count: new(int), Usage: "less output (cron: print only failures)"},
		}, extra...)
	}
	return &ucli.App{
		Name:  "clr-trust",
		Usage: "keep the CA directory's CRLs current, report its health, explain verification failures",
		Description: `clr-trust refresh   download every CA's CRL (from <hash>.crl_url, then the CA's
                    distribution points), check it and replace <hash>.r0 atomically
                    (fetch-crl's job; a bad or older download never replaces a good file)
clr-trust health    per CA: subject, expiry, CRL dates, namespace policy, warnings
                    ahead of time; exit 0 ok, 44 warning, 45 critical (--nagios: 0/1/2/3)
clr-trust explain   verify a signed list (file or URL) and say what to fix

Cron (site): 50 */6 * * * root (clr-trust refresh -q; clr-subscribe -U; clr-cache -q)`,
		Commands: []*ucli.Command{
			{
				Name:  "refresh",
				Usage: "download and install fresh CRLs",
				Flags: common(
					&ucli.DurationFlag{Name: "timeout", Value: 2 * time.Minute, Usage: "per download `DURATION`"},
				),
				Action: func(c *ucli.Context) error { return refresh(env, c) },
			},
			{
				Name:  "health",
				Usage: "report the CA directory's health (monitoring)",
				Flags: common(
					&ucli.StringFlag{Name: "ca-warn", Value: "30d", Usage: "warn when a CA expires within `DURATION`"},
					&ucli.StringFlag{Name: "crl-warn", Value: "2d", Usage: "warn when a CRL's next update is within `DURATION`"},
					&ucli.BoolFlag{Name: "nagios", Usage: "exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN with one status line"},
				),
				Action: func(c *ucli.Context) error { return health(env, c) },
			},
			{
				Name:      "explain",
				Usage:     "verify a signed list and explain the result in operator terms",
				ArgsUsage: "FILE|URL",
				Flags: common(
					&ucli.StringFlag{Name: "crl", Value: "require", Usage: "CRL `POLICY`: require, if-present or ignore"},
					&ucli.StringFlag{Name: "purpose", Value: "smime", Usage: "signer `PURPOSE`: smime or any"},
				),
				Action: func(c *ucli.Context) error { return explain(env, c) },
			},
		},
	}
}

func fetcher(dir string) crl.FetchFunc {
	st, _ := trust.Load(dir) // an unreadable directory: system roots only (Refresh reports it)
	roots := cli.HTTPSRoots(st)
	return func(ctx context.Context, url string, max int64) ([]byte, error) {
		resp, err := transport.FetchList(ctx, transport.ListRequest{URL: url, MaxSize: max, RootCAs: roots, UserAgent: "clr-trust"})
		if err != nil {
			return nil, err
		}
		return resp.Body, nil
	}
}

type refreshJSON struct {
	CA         string     `json:"ca"`
	Hash       string     `json:"hash"`
	File       string     `json:"file"`
	Status     string     `json:"status"`
	Source     string     `json:"source,omitempty"`
	Error      string     `json:"error,omitempty"`
	Tried      []string   `json:"tried"`
	ThisUpdate *time.Time `json:"this_update,omitempty"`
	NextUpdate *time.Time `json:"next_update,omitempty"`
}

func refresh(env cli.Env, c *ucli.Context) error {
	now := env.Now()
	log := env.Logger(c.Count("verbose"), c.Count("quiet"))
	dir := c.String("cert-dir")
	timeout := c.Duration("timeout")
	base := fetcher(dir)
	fetch := func(ctx context.Context, url string, max int64) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return base(ctx, url, max)
	}
	var rlog *slog.Logger // each outcome is printed below; the log adds detail with -v
	if c.Count("verbose") > 0 {
		rlog = log
	}
	outs, err := crl.Refresh(c.Context, crl.Options{Dir: dir, Now: now, Fetch: fetch, Logger: rlog})
	if err != nil {
		return err
	}
	failed := 0
	var js []refreshJSON
	for _, o := range outs {
		j := refreshJSON{CA: o.Subject, Hash: o.Hash, File: o.File, Status: string(o.Status), Tried: []string{}}
		for _, a := range o.Attempts {
			j.Tried = append(j.Tried, a.URL)
			if a.Err == nil {
				j.Source = a.URL
			}
		}
		if e := o.Err(); e != nil && o.Status == crl.Kept {
			j.Error = e.Error()
			failed++
		}
		if !o.ThisUpdate.IsZero() {
			t := o.ThisUpdate.UTC()
			j.ThisUpdate = &t
		}
		if !o.NextUpdate.IsZero() {
			t := o.NextUpdate.UTC()
			j.NextUpdate = &t
		}
		js = append(js, j)
		if c.Bool("json") {
			continue
		}
		switch {
		case o.Status == crl.Kept:
			fmt.Fprintf(env.Stderr, "clr-trust: %s (%s): CRL not refreshed, %s kept: %v\n", o.Hash, o.Subject, fileState(o), o.Err())
			for _, a := range o.Attempts {
				if a.Err != nil {
					fmt.Fprintf(env.Stderr, "  tried %s: %v\n", a.URL, a.Err)
				}
			}
		case c.Count("quiet") > 0:
		case o.Status == crl.Updated:
			fmt.Fprintf(env.Stdout, "%s updated   %s  next update %s\n", o.Hash, o.Subject, ts(o.NextUpdate))
		case o.Status == crl.Unchanged:
			fmt.Fprintf(env.Stdout, "%s unchanged %s  next update %s\n", o.Hash, o.Subject, ts(o.NextUpdate))
		case o.Status == crl.NoSource:
			fmt.Fprintf(env.Stdout, "%s no-source %s  (no %s.crl_url, no distribution point)\n", o.Hash, o.Subject, o.Hash)
		}
	}
	if c.Bool("json") {
		if js == nil {
			js = []refreshJSON{}
		}
		if err := cli.WriteJSON(env.Stdout, js); err != nil {
			return err
		}
	}
	if failed > 0 {
		return &cli.ExitError{Code: ExitRefreshFailed, Err: fmt.Errorf("%d of %d CRLs not refreshed; the files on disk were kept", failed, len(outs)),
			Hint: "`clr-trust health` shows how long the kept CRLs stay valid"}
	}
	return nil
}

func fileState(o crl.Outcome) string {
	if o.ThisUpdate.IsZero() {
		return "no CRL on disk"
	}
	if o.NextUpdate.IsZero() {
		return o.File
	}
	return fmt.Sprintf("%s (next update %s)", o.File, ts(o.NextUpdate))
}

func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func health(env cli.Env, c *ucli.Context) error {
	now := env.Now()
	nagios := c.Bool("nagios")
	caWarn, err := cli.ParseDuration(c.String("ca-warn"))
	if err != nil {
		return cli.Usagef("--ca-warn: %v", err)
	}
	crlWarn, err := cli.ParseDuration(c.String("crl-warn"))
	if err != nil {
		return cli.Usagef("--crl-warn: %v", err)
	}
	h, err := crl.Check(c.String("cert-dir"), now, crl.Thresholds{CAExpiry: caWarn, CRLExpiry: crlWarn})
	if err != nil {
		if nagios {
			fmt.Fprintf(env.Stdout, "CLR TRUST UNKNOWN - %v\n", err)
			return &cli.ExitError{Code: 3, Err: err}
		}
		return err
	}
	switch {
	case c.Bool("json"):
		if err := cli.WriteJSON(env.Stdout, h); err != nil {
			return err
		}
	case nagios:
		writeNagios(env.Stdout, h)
	default:
		writeHealth(env.Stdout, h, c.Count("quiet") > 0)
	}
	code := 0
	switch h.Level {
	case crl.Warning:
		code = ExitWarning
		if nagios {
			code = 1
		}
	case crl.Critical:
		code = ExitCritical
		if nagios {
			code = 2
		}
	}
	if code != 0 {
		return &cli.ExitError{Code: code, Err: fmt.Errorf("CA directory %s: %s", h.Dir, h.Level)}
	}
	return nil
}

func count(h crl.Health, l crl.Level) int {
	n := 0
	for _, ca := range h.CAs {
		if ca.Level == l {
			n++
		}
	}
	return n
}

func writeNagios(w io.Writer, h crl.Health) {
	status := map[crl.Level]string{crl.OK: "OK", crl.Notice: "OK", crl.Warning: "WARNING", crl.Critical: "CRITICAL"}[h.Level]
	var worst []string
	for _, ca := range h.CAs {
		for _, f := range ca.Findings {
			if f.Level == h.Level && f.Level >= crl.Warning {
				worst = append(worst, fmt.Sprintf("%s: %s", ca.Subject, f.Code))
			}
		}
	}
	fmt.Fprintf(w, "CLR TRUST %s - %d CAs, %d critical, %d warning", status, len(h.CAs), count(h, crl.Critical), count(h, crl.Warning))
	if len(worst) > 0 {
		fmt.Fprintf(w, "; %s", strings.Join(worst, "; "))
	}
	fmt.Fprintf(w, " | critical=%d warning=%d cas=%d\n", count(h, crl.Critical), count(h, crl.Warning), len(h.CAs))
}

func writeHealth(w io.Writer, h crl.Health, quiet bool) {
	for _, ca := range h.CAs {
		if quiet && ca.Level < crl.Warning {
			continue
		}
		crlState := "no CRL"
		if ca.CRLThisUpdate != nil {
			next := "-"
			if ca.CRLNextUpdate != nil {
				next = ts(*ca.CRLNextUpdate)
			}
			crlState = fmt.Sprintf("CRL %s .. %s", ts(*ca.CRLThisUpdate), next)
		}
		policy := "policy"
		if !ca.Policy {
			policy = "no policy"
		}
		fmt.Fprintf(w, "%-8s %s %s\n  %s, expires %s, %s, %s\n", strings.ToUpper(ca.Level.String()), ca.Hash, ca.Subject,
			ca.File, ts(ca.NotAfter), crlState, policy)
		for _, f := range ca.Findings {
			if quiet && f.Level < crl.Warning {
				continue
			}
			fmt.Fprintf(w, "  %s: %s\n", f.Level, f.Message)
		}
	}
	for _, p := range h.Problems {
		if !quiet {
			fmt.Fprintf(w, "NOTICE   %s\n", p)
		}
	}
	if !quiet {
		fmt.Fprintf(w, "%d CAs: %d critical, %d warning; overall %s\n", len(h.CAs), count(h, crl.Critical), count(h, crl.Warning), h.Level)
	}
}

func explain(env cli.Env, c *ucli.Context) error {
	if c.NArg() != 1 {
		return cli.Usagef("explain takes one FILE or URL")
	}
	src := c.Args().First()
	now := env.Now()
	pol, err := cli.TrustPolicy(c, now)
	if err != nil {
		return err
	}
	dir := c.String("cert-dir")
	ts_, err := trust.Load(dir)
	if err != nil {
		return err
	}
	var raw []byte
	if strings.Contains(src, "://") {
		resp, err := transport.FetchList(c.Context, transport.ListRequest{URL: src, MaxSize: 64 << 20, UserAgent: "clr-trust"})
		if err != nil {
			return err
		}
		raw = resp.Body
	} else if raw, err = os.ReadFile(src); err != nil {
		return err
	}
	w := env.Stdout
	// The signature alone first: who signed, whatever the chain says.
	if v, err := subscriber.Verify(raw, subscriber.VerifyOptions{SignatureOnly: true}); err == nil {
		fmt.Fprintf(w, "signed by  %s\nissued by  %s\n", v.SubjectDN, v.IssuerDN)
	}
	v, verr := subscriber.Verify(raw, subscriber.VerifyOptions{Trust: ts_, Policy: pol})
	if verr == nil {
		fmt.Fprintf(w, "chain      trusted at %s, anchor %s\n", ts(now), v.Chain.CAFile)
		for i, cert := range v.Chain.Chain {
			sub, _ := trust.Oneline(cert.RawSubject)
			fmt.Fprintf(w, "  [%d] %s (valid until %s)\n", i, sub, ts(cert.NotAfter))
		}
		for _, ca := range ts_.CAs() {
			if ca.Subject == v.IssuerDN && ca.CRL != nil {
				fmt.Fprintf(w, "CRL        %s, this update %s, next update %s\n", ca.CRLFile, ts(ca.CRL.ThisUpdate), ts(ca.CRL.NextUpdate))
			}
		}
		fmt.Fprintln(w, "verdict    OK: the list verifies")
		return nil
	}
	fmt.Fprintf(w, "verdict    FAILED: %v\n", verr)
	var ve *trust.VerifyError
	if errors.As(verr, &ve) {
		if ve.Subject != "" {
			fmt.Fprintf(w, "certificate %s\n", ve.Subject)
		}
		if ve.CAFile != "" {
			fmt.Fprintf(w, "CA file    %s\n", ve.CAFile)
		}
		if ve.CRLFile != "" {
			fmt.Fprintf(w, "CRL file   %s\n", ve.CRLFile)
		}
	}
	if a := trust.Advice(verr); a != "" {
		fmt.Fprintf(w, "what to do %s\n", a)
	}
	code, _ := cli.ExitCode(verr, cli.Classify)
	return &cli.ExitError{Code: code, Err: verr}
}
