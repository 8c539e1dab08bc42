package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/clr-suite/clr/internal/store"
	"github.com/clr-suite/clr/internal/subscriber"
	"github.com/clr-suite/clr/internal/trust"
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
		// vmcatcher's logging options: accepted (cron lines keep working),
		// ignored; clr logs to stderr, -v/-q set the level.
		&ucli.StringFlag{Name: "log-config", EnvVars: []string{"CLR_LOG_CONF", "VMCATCHER_LOG_CONF"}, Hidden: true},
		&ucli.BoolFlag{Name: "log-sql-info", Hidden: true},
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

// OpenExistingStore opens the database for actions that only read or
// change what exists: a mistyped -d is an error, not a new empty database.
func OpenExistingStore(ctx context.Context, env Env, c *ucli.Context) (*store.Store, error) {
	dsn := store.ResolveDSN(c.String("database"), env.Getenv, os.Geteuid())
	path, err := store.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("database %s does not exist (nothing subscribed yet, or a mistyped -d/CLR_RDBMS): %w", path, store.ErrNotFound)
	}
	return store.Open(ctx, dsn)
}

// SessionID is a random (version 4) UUID naming one run in every event it
// fires (VMCATCHER_EVENT_UUID_SESSION; vmcatcher used a uuid1).
func SessionID() string {
	id, err := subscriber.NewUUID()
	if err != nil {
		return fmt.Sprintf("%032x", os.Getpid())
	}
	return id
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

// Clean makes a value from a list safe for one field of line output:
// control characters (tab, newline, ...) become Go escapes, so a
// description cannot add lines or columns. Everything else is unchanged.
func Clean(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// PyBool is a boolean as vmcatcher printed it (Python's True/False), for
// the line formats scripts parse.
func PyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// Lines writes tab-separated rows, one per line, each field Cleaned.
func Lines(env Env, rows [][]string) error {
	var b strings.Builder
	for _, r := range rows {
		for i, f := range r {
			if i > 0 {
				b.WriteByte('\t')
			}
			b.WriteString(Clean(f))
		}
		b.WriteByte('\n')
	}
	if _, err := fmt.Fprint(env.Stdout, b.String()); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// HTTPSRoots is the pool HTTPS servers are verified against: the system
// roots plus the CAs of the trust store (nil: system roots only).
func HTTPSRoots(ts *trust.Store) *x509.CertPool {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if ts != nil {
		for _, ca := range ts.CAs() {
			roots.AddCert(ca.Cert)
		}
	}
	return roots
}

// TrustPolicy reads the --crl and --purpose flags of a verifying command
// into the policy of a verification at now.
func TrustPolicy(c *ucli.Context, now time.Time) (trust.Policy, error) {
	pol := trust.Policy{Time: now}
	var err error
	if pol.CRL, err = trust.ParseCRLPolicy(c.String("crl")); err != nil {
		return pol, Usagef("--crl: %v", err)
	}
	if pol.Purpose, err = trust.ParsePurpose(c.String("purpose")); err != nil {
		return pol, Usagef("--purpose: %v", err)
	}
	return pol, nil
}
