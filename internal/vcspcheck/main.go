package vcspcheck

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Exit codes of Main.
const (
	ExitOK       = 0
	ExitUsage    = 1
	ExitManifest = 2
	ExitImport   = 5
	ExitState    = 7
)

// ExitCode maps an error returned by Check to Main's exit code.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrManifest):
		return ExitManifest
	case errors.Is(err, ErrState):
		return ExitState
	case errors.Is(err, ErrImport):
		return ExitImport
	}
	return ExitUsage
}

// Main is the vcspcheck command. Progress goes to stdout, the final error
// to stderr; the exit code is 0 ok, 1 usage or tools, 2 manifest invalid,
// 5 vcsim import/deploy failed, 7 state rule broken.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vcspcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	libURL := fs.String("url", "", "URL of the library's lib.json (or give it as the argument)")
	user := fs.String("user", DefaultUser, "basic auth user sent with -password")
	password := fs.String("password", os.Getenv("VCSP_PASSWORD"), "basic auth password (default $VCSP_PASSWORD)")
	state := fs.String("state", "", "snapshot file of the previous run: enforce the re-sync rules and update it")
	verifySums := fs.Bool("verify-sums", false, "download every file listed in a .mf and check its digest")
	vcsim := fs.Bool("vcsim", false, "import every item into vcsim with govc and deploy the OVF items")
	govc := fs.String("govc", os.Getenv("GOVC"), "govc binary (default $GOVC, else govc on PATH)")
	vcsimBin := fs.String("vcsim-bin", os.Getenv("VCSIM"), "vcsim binary (default $VCSIM, else vcsim on PATH)")
	insecure := fs.Bool("insecure", false, "do not verify the library's TLS certificate")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: vcspcheck [flags] URL-of-lib.json")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	switch {
	case fs.NArg() == 1 && *libURL == "":
		*libURL = fs.Arg(0)
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "vcspcheck: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return ExitUsage
	}
	if *libURL == "" {
		fs.Usage()
		return ExitUsage
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	rep, err := Check(ctx, Options{
		URL:        *libURL,
		HTTPClient: DefaultHTTPClient(*insecure),
		User:       *user,
		Password:   *password,
		StatePath:  *state,
		VerifySums: *verifySums,
		Vcsim:      *vcsim,
		Govc:       *govc,
		VcsimBin:   *vcsimBin,
		Stdout:     stdout,
	})
	WriteSummary(stdout, rep)
	if err != nil {
		fmt.Fprintf(stderr, "vcspcheck: %v\n", err)
	}
	return ExitCode(err)
}

// WriteSummary prints one line per item, then the counts.
func WriteSummary(w io.Writer, rep Report) {
	logf(w, "== summary\n")
	for _, it := range rep.Items {
		line := fmt.Sprintf("%-24s %-10s version=%s files=%d", it.Name, it.Type, it.Version, len(it.Files))
		if it.State != "" {
			line += " state=" + strings.ReplaceAll(it.State, " ", "_")
		}
		if rep.Vcsim != nil {
			line += fmt.Sprintf(" imported=%t", it.Imported)
			if it.Type == TypeOVF {
				line += fmt.Sprintf(" deployed=%t", it.Deployed)
			}
		}
		logf(w, "%s\n", line)
	}
	for _, name := range rep.Removed {
		logf(w, "%-24s removed\n", name)
	}
	logf(w, "items=%d warnings=%d errors=%d state-errors=%d vcsim-errors=%d state-saved=%t\n",
		len(rep.Items), len(rep.Warnings), len(rep.Problems), len(rep.StateProblems), len(rep.VcsimProblems), rep.StateSaved)
}
