// Package store is the subscriber's database: endorsers and their
// principals, subscriptions with their trust floor, every accepted signed
// list, and the images of each subscription (docs/store.md).
//
// It uses gorm on SQLite (mattn/go-sqlite3, cgo) and is the only package
// that does; gorm types never leave it. Every connection runs in WAL mode
// with a 10 s busy timeout, foreign keys on and BEGIN IMMEDIATE
// transactions, so a cron update and an operator's command can use one
// database file at the same moment. The schema is versioned (schema_version
// table) and migrated forward by Open.
//
// The store never reads the clock: every time it records is an argument.
package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// BusyTimeoutMillis is how long a connection waits for another process's
// write transaction before failing with ErrBusy.
const BusyTimeoutMillis = 10000

// Store is an open database. It is safe for concurrent use.
type Store struct {
	db   *gorm.DB
	path string

	// acceptHook, when set (tests only), runs inside AcceptList's
	// transaction after the images are written; an error aborts it.
	acceptHook func() error
}

// Open opens (creating it and its parent directory, mode 0700, if needed)
// the database dsn names and migrates its schema forward. dsn is a file
// path, a SQLAlchemy URL as vmcatcher's VMCATCHER_RDBMS uses
// (sqlite:///relative.db, sqlite:////abs/path.db) or a file: URI
// (file:/abs/path.db, file:///abs/path.db, file:relative.db).
func Open(ctx context.Context, dsn string) (*Store, error) {
	path, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("open database %s: %w", path, err)
		}
	}
	s, err := open(ctx, path)
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, s.db, migrations); err != nil {
		s.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	return s, nil
}

// open connects without migrating.
func open(ctx context.Context, path string) (*Store, error) {
	db, err := gorm.Open(sqlite.Open(driverDSN(path)), &gorm.Config{
		Logger:                 logger.Discard,
		TranslateError:         true,
		SkipDefaultTransaction: true, // every write goes through Store.write
	})
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, mapErr(err))
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	if err := sqlDB.PingContext(ctx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("open database %s: %w", path, mapErr(err))
	}
	return &Store{db: db, path: path}, nil
}

// Close closes the database.
func (s *Store) Close() error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	if err := sqlDB.Close(); err != nil {
		return fmt.Errorf("close database %s: %w", s.path, err)
	}
	return nil
}

// Path returns the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// driverDSN is the mattn/go-sqlite3 DSN for an absolute path: an SQLite URI
// whose query carries the per-connection settings, applied by the driver
// to every pooled connection (a PRAGMA run through the pool would reach
// only one of them).
//
//   - _journal_mode=WAL: readers never block the writer and the writer
//     never blocks readers (persistent in the file).
//   - _busy_timeout: wait, rather than fail, while another process writes.
//   - _txlock=immediate: every transaction takes the write lock at BEGIN.
//     A deferred transaction that reads and then writes cannot be saved by
//     the busy timeout: its lock upgrade fails at once with SQLITE_BUSY
//     when another writer committed since its read.
//   - _foreign_keys=1: cascades and references are enforced.
//   - _synchronous=FULL: a committed floor survives a power cut (the
//     driver's default with WAL is NORMAL).
func driverDSN(path string) string {
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_busy_timeout", fmt.Sprint(BusyTimeoutMillis))
	q.Set("_txlock", "immediate")
	q.Set("_foreign_keys", "1")
	q.Set("_synchronous", "FULL")
	return "file:" + uriEscapePath(path) + "?" + q.Encode()
}

// uriEscapePath escapes the bytes that end or change the path part of an
// SQLite URI filename.
func uriEscapePath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '%', '?', '#':
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// redactDSN drops the user information of a URL-style DSN
// (mysql://user:password@host/db) so errors never print a password.
func redactDSN(dsn string) string {
	scheme, rest, ok := strings.Cut(dsn, "://")
	if !ok {
		return dsn
	}
	host, path, _ := strings.Cut(rest, "/")
	if i := strings.LastIndexByte(host, '@'); i >= 0 {
		host = "REDACTED@" + host[i+1:]
	}
	if path != "" || strings.Contains(rest, "/") {
		return scheme + "://" + host + "/" + path
	}
	return scheme + "://" + host
}

// ParseDSN returns the absolute database file path that dsn names (see
// Open). Other schemes (postgresql://, mysql://), in-memory databases and
// query parameters are refused with ErrInvalid: the store sets the
// connection parameters itself.
func ParseDSN(dsn string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("database %q: %s: %w", redactDSN(dsn), why, ErrInvalid)
	}
	var p string
	switch {
	case dsn == "":
		return bad("no database location (set -d, CLR_RDBMS or HOME)")
	case strings.HasPrefix(dsn, "sqlite://"):
		// SQLAlchemy: sqlite:///rel.db, sqlite:////abs.db; sqlite:// is memory.
		rest, ok := strings.CutPrefix(dsn, "sqlite:///")
		if !ok {
			return bad("want sqlite:///relative/path or sqlite:////absolute/path")
		}
		if strings.ContainsAny(rest, "?#") {
			return bad("query parameters are not supported")
		}
		p = rest
	case strings.HasPrefix(dsn, "file:"):
		u, err := url.Parse(dsn)
		if err != nil {
			return bad(err.Error())
		}
		if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
			return bad("query parameters are not supported")
		}
		if u.Host != "" && u.Host != "localhost" {
			return bad("a file URI must name a local file")
		}
		p = u.Opaque
		if p == "" {
			p = u.Path
		} else if p, err = url.PathUnescape(p); err != nil {
			return bad(err.Error())
		}
	default:
		if i := strings.Index(dsn, "://"); i > 0 && !strings.ContainsAny(dsn[:i], "/.") {
			return bad("unsupported database scheme " + dsn[:i] + " (only sqlite)")
		}
		p = dsn
	}
	if p == "" || p == ":memory:" || strings.HasPrefix(p, "file::memory:") {
		return bad("an in-memory database cannot be shared between commands")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return bad(err.Error())
	}
	return abs, nil
}

// DefaultPath is the database location when nothing else names one:
// /var/lib/clr/clr.db for root, otherwise $XDG_DATA_HOME/clr/clr.db (an
// absolute XDG_DATA_HOME only, as the XDG spec says) or
// $HOME/.local/share/clr/clr.db. It returns "" when none applies.
func DefaultPath(getenv func(string) string, euid int) string {
	if euid == 0 {
		return "/var/lib/clr/clr.db"
	}
	if x := getenv("XDG_DATA_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "clr", "clr.db")
	}
	if h := getenv("HOME"); filepath.IsAbs(h) {
		return filepath.Join(h, ".local", "share", "clr", "clr.db")
	}
	return ""
}

// ResolveDSN picks the database: the -d/--database flag if set, else
// CLR_RDBMS, else VMCATCHER_RDBMS, else DefaultPath(getenv, euid).
func ResolveDSN(flag string, getenv func(string) string, euid int) string {
	for _, v := range []string{flag, getenv("CLR_RDBMS"), getenv("VMCATCHER_RDBMS")} {
		if v != "" {
			return v
		}
	}
	return DefaultPath(getenv, euid)
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// CheckCredentialRef accepts a reference to HTTP credentials, never the
// credentials: "" (none), "file:/absolute/path" (a file holding
// user:password) or "env:NAME" (an environment variable holding
// user:password). Anything else is ErrInvalid.
func CheckCredentialRef(ref string) error {
	switch {
	case ref == "":
		return nil
	case strings.HasPrefix(ref, "file:"):
		p := strings.TrimPrefix(ref, "file:")
		if filepath.IsAbs(p) && filepath.Clean(p) == p {
			return nil
		}
	case strings.HasPrefix(ref, "env:"):
		if envName.MatchString(strings.TrimPrefix(ref, "env:")) {
			return nil
		}
	}
	// The value may be a pasted secret: do not echo it.
	return fmt.Errorf("credential reference: want file:/absolute/path or env:NAME: %w", ErrInvalid)
}

// write runs fn in one BEGIN IMMEDIATE transaction: it holds the write lock
// from the start, so what fn reads stays true until it commits.
func (s *Store) write(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return s.db.WithContext(ctx).Transaction(fn)
}

// read returns a handle for queries outside a transaction (they must not
// take the write lock).
func (s *Store) read(ctx context.Context) *gorm.DB {
	return s.db.WithContext(ctx)
}

// mapErr turns gorm and driver errors into the package's sentinels where
// one applies, keeping the original text otherwise.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gorm.ErrRecordNotFound):
		return ErrNotFound
	case errors.Is(err, gorm.ErrDuplicatedKey):
		return ErrConflict
	case errors.Is(err, gorm.ErrForeignKeyViolated):
		return fmt.Errorf("referenced row missing: %w", ErrNotFound)
	}
	msg := err.Error()
	if strings.Contains(msg, "database is locked") || strings.Contains(msg, "database table is locked") || strings.Contains(msg, "SQLITE_BUSY") {
		return fmt.Errorf("%w: %v", ErrBusy, err)
	}
	return err
}

// wrap prefixes op and maps err; nil stays nil. An error that already
// wraps a sentinel of this package is only prefixed.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	for _, e := range []error{ErrNotFound, ErrConflict, ErrAmbiguous, ErrRollback, ErrInvalid, ErrBusy} {
		if errors.Is(err, e) {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return fmt.Errorf("%s: %w", op, mapErr(err))
}

func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, ErrInvalid)...)
}
