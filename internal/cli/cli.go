// Package cli is the only place where clr's programs touch the outside
// world: arguments, standard streams, environment, the clock and signals.
// Every command is built on [Run], which turns a returned error into one
// line on stderr and a documented exit code (docs/exit-codes.md).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// Env is everything a command may use besides its arguments.
type Env struct {
	Args           []string
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// Now is the only clock. Commands call it once per run and pass the
	// result down as the run's reference time; the few stamps that must
	// be the moment something happened (when a mirror got a list, when a
	// list replaced another) call it again.
	Now func() time.Time
	// StderrTTY reports whether stderr is a terminal (progress output).
	StderrTTY bool
}

// OSEnv is the process environment.
func OSEnv() Env {
	return Env{
		Args:      os.Args,
		Stdin:     os.Stdin,
		Stdout:    os.Stdout,
		Stderr:    os.Stderr,
		Getenv:    os.Getenv,
		Now:       func() time.Time { return time.Now().UTC() },
		StderrTTY: term.IsTerminal(int(os.Stderr.Fd())),
	}
}

// Logger returns a text logger on stderr at the level chosen by the -v/-q
// counts (vmcatcher style: default warnings and errors).
func (e Env) Logger(verbose, quiet int) *slog.Logger {
	level := slog.LevelWarn - slog.Level(4*verbose) + slog.Level(4*quiet)
	return slog.New(slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{} // cron and journald add their own
			}
			return a
		},
	}))
}

// UsageError marks a command-line mistake (exit code 2).
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a *UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// ExitError carries an explicit exit code and an optional hint.
type ExitError struct {
	Code int
	Err  error
	Hint string
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Run executes app under a context cancelled by SIGINT/SIGTERM and maps
// the returned error to an exit code via classify (nil: generic rules).
func Run(env Env, app *ucli.App, classify func(error) (int, string)) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	name := app.Name
	args := Prepare(env, app)
	var err error
	if name := commandName(app, args); name != "" && app.Command(name) == nil && len(app.Commands) > 0 {
		err = Usagef("unknown command %q", name)
	} else {
		err = app.RunContext(ctx, args)
	}
	if err == nil {
		return 0
	}
	code, hint := ExitCode(err, classify)
	msg := strings.TrimSpace(err.Error())
	msg = strings.ReplaceAll(msg, "\n", " ")
	fmt.Fprintf(env.Stderr, "%s: error: %s\n", name, msg)
	if hint != "" {
		fmt.Fprintf(env.Stderr, "%s: hint: %s\n", name, hint)
	}
	return code
}

// Prepare configures app the way Run does (streams, short options, usage
// errors, required flags) and returns env.Args reordered for it. A command
// that parses its command line again (the daemon, on each run) uses it so
// both parses agree.
func Prepare(env Env, app *ucli.App) []string {
	app.Writer = env.Stdout
	app.ErrWriter = env.Stderr
	app.Reader = env.Stdin
	app.ExitErrHandler = func(*ucli.Context, error) {}
	app.UseShortOptionHandling = true
	app.HideHelpCommand = true
	app.OnUsageError = func(_ *ucli.Context, err error, _ bool) error {
		return &UsageError{Msg: err.Error()}
	}
	for _, c := range app.Commands {
		c.OnUsageError = app.OnUsageError
	}
	app.CommandNotFound = func(c *ucli.Context, cmd string) {}
	enforceRequired(app)
	return permute(app, env.Args)
}

// commandName is the first argument after the global flags.
func commandName(app *ucli.App, args []string) string {
	for i := 1; i < len(args); i++ {
		if !isFlag(args[i]) {
			return args[i]
		}
		i += flagArity(app.Flags, args[i])
	}
	return ""
}

// Generic exit codes shared by every command (docs/exit-codes.md).
const (
	ExitOK          = 0
	ExitFailure     = 1
	ExitUsage       = 2
	ExitInterrupted = 130
)

// ExitCode maps err to an exit code and hint: an *ExitError's own code,
// usage errors 2, cancellation 130, then classify, then 1.
func ExitCode(err error, classify func(error) (int, string)) (int, string) {
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code, ee.Hint
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		return ExitUsage, "run with --help for usage"
	}
	if errors.Is(err, context.Canceled) {
		return ExitInterrupted, ""
	}
	if classify != nil {
		if code, hint := classify(err); code != 0 {
			return code, hint
		}
	}
	return ExitFailure, ""
}
