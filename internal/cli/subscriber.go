package cli

import (
	"context"
	"fmt"
	"os"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/clr-suite/clr/internal/store"
)

// Output formats of the subscriber commands (vmcatcher's -f/--format).
const (
	FormatLines   = "lines"   // tab-separated lines, vmcatcher's columns
	FormatJSON    = "json"    // one JSON document
	FormatMessage = "message" // the signed content of the list, re-verified
	FormatSMIME   = "SMIME"   // the raw signed message as stored
)

// SubscriberFlags are the flags clr-endorser, clr-subscribe and clr-image
// share with vmcatcher's commands.
func SubscriberFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "database", Aliases: []string{"d"}, Usage: "database `PATH` or sqlite:///PATH URL (env CLR_RDBMS, VMCATCHER_RDBMS; default /var/lib/clr/clr.db as root, else ~/.local/share/clr/clr.db)"},
		&ucli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: FormatLines, EnvVars: []string{"CLR_OUTPUT_FORMAT", "VMCATCHER_OUTPUT_FORMAT"}, Usage: "output `FORMAT`: lines, json, message or SMIME"},
		&ucli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "more log output (repeatable)", Count: new(int)},
		&ucli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "less log output (repeatable)", Count: new(int)},
	}
}

// OutputFormat returns the checked -f/--format value.
func OutputFormat(c *ucli.Context) (string, error) {
	f := strings.TrimSpace(c.String("format"))
	if f == "" {
		return FormatLines, nil
	}
	for _, ok := range []string{FormatLines, FormatJSON, FormatMessage, FormatSMIME} {
		if strings.EqualFold(f, ok) {
			return ok, nil
		}
	}
	return "", Usagef("--format %q: want lines, json, message or SMIME", f)
}

// OpenStore opens the database -d/--database, CLR_RDBMS or
// VMCATCHER_RDBMS names, or the default one.
func OpenStore(ctx context.Context, env Env, c *ucli.Context) (*store.Store, error) {
	dsn := store.ResolveDSN(c.String("database"), env.Getenv, os.Geteuid())
	if dsn == "" {
		return nil, Usagef("no database: pass -d PATH or set CLR_RDBMS")
	}
	return store.Open(ctx, dsn)
}

// Action is one of a command's mutually exclusive action flags.
type Action struct {
	Flag string // long name
	Help string // the short form shown in errors, e.g. "-l/--list"
}

// OneAction returns the single action flag set on the command line:
// vmcatcher's "exactly one action per call".
func OneAction(c *ucli.Context, actions ...Action) (string, error) {
	var set []string
	var names []string
	for _, a := range actions {
		names = append(names, a.Help)
		if c.IsSet(a.Flag) && c.Bool(a.Flag) {
			set = append(set, a.Flag)
		}
	}
	switch len(set) {
	case 1:
		return set[0], nil
	case 0:
		return "", Usagef("no action selected: choose one of %s", strings.Join(names, ", "))
	}
	return "", Usagef("more than one action selected (--%s): choose one", strings.Join(set, ", --"))
}

// Lines writes tab-separated rows, one per line.
func Lines(env Env, rows [][]string) error {
	var b strings.Builder
	for _, r := range rows {
		b.WriteString(strings.Join(r, "\t"))
		b.WriteByte('\n')
	}
	if _, err := fmt.Fprint(env.Stdout, b.String()); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
