package sscheck

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
	ExitOK      = 0
	ExitUsage   = 1
	ExitInvalid = 2
)

// ExitCode maps an error returned by Check to Main's exit code: ErrInvalid
// is 2; usage errors and an interrupted or timed-out run are 1.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrInvalid):
		return ExitInvalid
	}
	return ExitUsage
}

// Main is the sscheck command: the report goes to stdout, the final error
// to stderr; the exit code is 0 ok, 1 usage (or interrupted), 2 invalid.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sscheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	insecure := fs.Bool("insecure", false, "do not verify the server's TLS certificate")
	caFile := fs.String("ca", "", "also trust the PEM `file`'s certificates")
	arch := fs.String("arch", DefaultArch, "local architecture: short aliases are shown for it")
	noDownload := fs.Bool("no-download", false, "check the index and products files only; download no item")
	timeout := fs.Duration("timeout", 2*time.Hour, "give up after this long (0: never)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sscheck [flags] BASE_URL")
		fmt.Fprintln(stderr, "  BASE_URL as given to `incus remote add --protocol=simplestreams`; the")
		fmt.Fprintln(stderr, "  clients read BASE_URL/"+IndexPath)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	switch {
	case fs.NArg() == 0:
		fs.Usage()
		return ExitUsage
	case fs.NArg() > 1:
		fmt.Fprintf(stderr, "sscheck: unexpected arguments: %s\n", strings.Join(fs.Args()[1:], " "))
		return ExitUsage
	}
	client, err := NewHTTPClient(*insecure, *caFile)
	if err != nil {
		fmt.Fprintf(stderr, "sscheck: %v\n", err)
		return ExitUsage
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	_, err = Check(ctx, Options{
		BaseURL:    fs.Arg(0),
		HTTPClient: client,
		Arch:       *arch,
		Download:   !*noDownload,
		Stdout:     stdout,
	})
	if err != nil {
		fmt.Fprintf(stderr, "sscheck: %v\n", err)
	}
	return ExitCode(err)
}
