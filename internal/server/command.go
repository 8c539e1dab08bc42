package server

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The command validator turns the exec request of an SSH session into the
// argv of a read-only rsync server-sender, in the spirit of rsync's own
// "rrsync -ro", but stricter: the command is split here (no shell ever sees
// it), only the options that real rsync >= 3.0 clients send for a pull are
// accepted, and every file name argument is confined to the library.
//
// What a client sends, captured from rsync 3.5.0 (testdata/capture.sh):
//
//	rsync --server --sender -logDtpre.iLsfxCIvu --compress-choice=zstd . /lib/tmpl/v2/disk.vmdk
//
// The short-option cluster ends with "e.<flags>": that is the client's
// capability string (protocol extensions), not --rsh; a separate "-e sh",
// "-esh" or "--rsh=sh" is refused. Filters (--exclude, --include, -f, -F) and
// client-side options (--partial, --partial-dir, --copy-dest, --link-dest,
// --delete*, --stats, --progress, --existing, --size-only, ...) never reach
// the server on a pull: the receiving client does them itself.

// Command is a validated rsync server-sender invocation.
type Command struct {
	// Args is the argv to exec after the rsync binary path: the client's
	// options unchanged, then the server-side restrictions ("--confine-root"
	// when configured), then "--", ".", and the confined relative paths.
	Args []string
	// Paths are the requested paths, relative to the library root, cleaned
	// ("." for the root); what ConfinePaths must check.
	Paths []string
}

// ValidateOptions configures ParseCommand.
type ValidateOptions struct {
	// ConfineRoot, if non-empty, is appended as --confine-root=<ConfineRoot>
	// (rsync >= 3.5.0; the caller decides support). It must be absolute. It
	// keeps in-band names (per-directory merge files of filter rules) inside
	// the library; without it a client can make the sender read filter rules
	// from any file the server can open. Always set it on rsync >= 3.5.0.
	ConfineRoot string
	// MaxPaths caps the path arguments; 0 means 64.
	MaxPaths int
}

// Sentinel errors of ParseCommand and ConfinePaths, for errors.Is. The
// wrapped messages name the offending word and are safe to show a client.
var (
	// ErrNotRsync: the command is not `rsync --server ...`.
	ErrNotRsync = errors.New("not an rsync server command")
	// ErrNotSender: --server without --sender, i.e. a push (upload).
	ErrNotSender = errors.New("only pulls (rsync --server --sender) are allowed")
	// ErrOption: a forbidden or unknown option, or a bad option value.
	ErrOption = errors.New("forbidden rsync option")
	// ErrPath: a bad path argument or a malformed command line (.., leading
	// -, wildcards, shell metacharacters, control characters, too many or
	// too long).
	ErrPath = errors.New("bad path")
	// ErrSymlink: a component of a requested path is a symlink.
	ErrSymlink = errors.New("path contains a symlink")
	// ErrNotFound: a requested path does not exist in the library.
	ErrNotFound = errors.New("path not found in library")
)

const (
	defaultMaxPaths = 64
	// maxCommandLen caps the whole exec string; 64 long paths fit easily.
	maxCommandLen = 8 << 10
	// maxQuoted caps how much of a client word goes into an error message.
	maxQuoted = 80
)

// shellMeta are the characters a shell or rsync's own server-side globbing
// would interpret. Unescaped, each one is refused anywhere in the command;
// rsync >= 3.2.4 clients backslash-escape all but the wildcards and "~".
const shellMeta = ";|&$`()<>*?[]{}~'\"!#"

// escapable are the characters a client may escape with a backslash: rsync's
// SHELL_CHARS and WILD_CHARS (options.c safe_arg) and a leading "~". A
// backslash before anything else is refused.
const escapable = "!#$&;|<>(){}\"'` \\*?[]~"

// word is one space-separated argument of the command line.
type word struct {
	raw     string // as received
	text    string // with backslash escapes removed
	escaped bool   // raw contained at least one escape
}

// ParseCommand validates the command line of an SSH exec request as a pull
// by a real rsync client and returns the argv to run. It is pure: it does
// not look at the file system; run ConfinePaths on Command.Paths before
// executing.
func ParseCommand(cmdline string, opts ValidateOptions) (*Command, error) {
	maxPaths := opts.MaxPaths
	if maxPaths <= 0 {
		maxPaths = defaultMaxPaths
	}
	if opts.ConfineRoot != "" && (!filepath.IsAbs(opts.ConfineRoot) || strings.ContainsRune(opts.ConfineRoot, 0)) {
		return nil, fmt.Errorf("confine root %q is not an absolute path", opts.ConfineRoot)
	}
	if cmdline == "" {
		return nil, ErrNotRsync
	}
	if len(cmdline) > maxCommandLen {
		return nil, fmt.Errorf("%w: command line longer than %d bytes", ErrPath, maxCommandLen)
	}
	if err := checkCharacters(cmdline); err != nil {
		return nil, err
	}
	words, err := splitCommand(cmdline)
	if err != nil {
		return nil, err
	}
	if len(words) < 2 || words[0].raw != "rsync" || words[1].raw != "--server" {
		return nil, fmt.Errorf("%w: %s", ErrNotRsync, quote(cmdline))
	}
	if len(words) < 3 || words[2].raw != "--sender" {
		return nil, ErrNotSender
	}

	var st optionState
	i := 3
	for ; i < len(words) && words[i].raw != "."; i++ {
		if err := st.check(words[i]); err != nil {
			return nil, err
		}
	}
	if i == len(words) {
		return nil, fmt.Errorf("%w: missing \".\" and path arguments", ErrPath)
	}
	pathWords := words[i+1:]
	switch {
	case len(pathWords) == 0:
		return nil, fmt.Errorf("%w: no path argument", ErrPath)
	case len(pathWords) > maxPaths:
		return nil, fmt.Errorf("%w: %d path arguments, at most %d", ErrPath, len(pathWords), maxPaths)
	}

	args := make([]string, 0, len(words)+3)
	for _, w := range words[1:i] {
		args = append(args, w.raw)
	}
	if opts.ConfineRoot != "" {
		args = append(args, "--confine-root="+opts.ConfineRoot)
	}
	// rsync 3.5.0 (and rrsync) take "--" before the ".": no path can be
	// read as an option, whatever it looks like.
	args = append(args, "--", ".")
	cmd := &Command{Paths: make([]string, 0, len(pathWords))}
	for _, w := range pathWords {
		arg, clean, err := confineArg(w.text, st.relative)
		if err != nil {
			return nil, err
		}
		args = append(args, arg)
		cmd.Paths = append(cmd.Paths, clean)
	}
	cmd.Args = args
	return cmd, nil
}

// checkCharacters refuses what has no business in an rsync command line:
// invalid UTF-8, control characters (NUL, newline, tab, DEL, C1), Unicode
// format characters (bidi overrides, zero-width), line/paragraph separators,
// spaces other than U+0020, private-use and surrogate code points.
func checkCharacters(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: invalid UTF-8", ErrPath)
	}
	for i, r := range s {
		bad := unicode.IsControl(r) ||
			unicode.In(r, unicode.Cf, unicode.Co, unicode.Cs, unicode.Zl, unicode.Zp) ||
			(unicode.Is(unicode.Zs, r) && r != ' ') ||
			r == utf8.RuneError
		if bad {
			return fmt.Errorf("%w: character %U at byte %d", ErrPath, r, i)
		}
	}
	return nil
}

// splitCommand splits on single spaces, honouring the client's backslash
// escapes, and refuses unescaped shell or glob metacharacters, escapes of
// ordinary characters, a trailing backslash and empty words.
func splitCommand(s string) ([]word, error) {
	var (
		words []word
		raw   strings.Builder
		text  strings.Builder
		esc   bool
	)
	flush := func() error {
		if raw.Len() == 0 {
			return fmt.Errorf("%w: empty argument (leading, trailing or double space)", ErrPath)
		}
		words = append(words, word{raw: raw.String(), text: text.String(), escaped: esc})
		raw.Reset()
		text.Reset()
		esc = false
		return nil
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 == len(s) || strings.IndexByte(escapable, s[i+1]) < 0 {
				return nil, fmt.Errorf("%w: bad backslash escape in %s", ErrPath, quote(s[max(0, i-20):min(len(s), i+2)]))
			}
			raw.WriteByte(c)
			raw.WriteByte(s[i+1])
			text.WriteByte(s[i+1])
			esc = true
			i++
		case c == ' ':
			if err := flush(); err != nil {
				return nil, err
			}
		case strings.IndexByte(shellMeta, c) >= 0:
			return nil, fmt.Errorf("%w: unescaped %q", ErrPath, c)
		default:
			raw.WriteByte(c)
			text.WriteByte(c)
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return words, nil
}

// Short options a pull client sends in its option cluster, and whether the
// gate accepts them. Every letter may appear at most twice (-vv, -HH, -xx,
// -UU are legitimate; each further -v turns on more server-side --debug
// flags, and --debug itself is refused).
//
// Accepted: v q n l d W H o g D t U p r c I R x S z u.
//
// -R (--relative) is accepted: on the sender it only changes how much of
// each argument becomes the transmitted name; ConfinePaths refuses a symlink
// in any component, so the implied directories it sends are real
// directories inside the library, and a "/./" marker is preserved.
//
// Refused: s (--secluded-args: names would arrive in-band, unchecked),
// L and k (follow symlinks out of the library), K, E, m, O, J, y (only sent
// by a pushing client), b (backups, receiver side), C (--cvs-exclude: the
// sender would read $HOME/.cvsignore outside the library), A and X (ACLs and
// xattrs: not needed for templates, a large historical bug surface, and
// trusted.*/security.* attributes of a root-run server), N (crtimes, not
// supported on Linux), anything else.
const shortAllowed = "vqnldWHogDtUprcIRxSzu"

// Long options a pull client sends, with value checks; anything else is
// refused. Options that are client-side only (never sent on a pull) are not
// listed, so a hand-crafted request cannot use them either.
var longAllowed = map[string]longOption{
	// no value
	"inplace":             {},
	"append":              {max: 2}, // --append-verify is sent as --append --append
	"list-only":           {},
	"numeric-ids":         {},
	"no-implied-dirs":     {},
	"ignore-missing-args": {},
	"ignore-errors":       {},
	"safe-links":          {},
	"open-noatime":        {},
	"msgs2stderr":         {},
	"no-msgs2stderr":      {},
	"specials":            {},
	"no-specials":         {},
	"new-compress":        {}, // --compress-choice=zlibx
	"old-compress":        {}, // --compress-choice=zlib
	// with a value
	"compress-choice":  {value: oneOf("zstd", "lz4", "zlibx", "zlib", "none")},
	"compress-level":   {value: intRange(-131072, 19)}, // zstd ultra levels 20-22 cost hundreds of MB per session
	"compress-threads": {value: intRange(0, 4)},        // CVE-2026-70455; only ever sent through -M
	"checksum-choice":  {value: checksumChoice},
	"checksum-seed":    {value: intRange(0, 1<<31-1)},
	"block-size":       {value: intRange(minBlockSize, maxBlockSize)},
	"bwlimit":          {value: intRange(0, 1<<31-1)}, // the client sends KiB/s as an integer
	"timeout":          {value: intRange(0, 86400)},
	"info":             {value: infoFlags},
	"skip-compress":    {value: suffixList},
}

// Refusal reasons for options a client may plausibly send; any other
// unknown option is refused as "unknown".
var longRefused = map[string]string{
	"files-from":          "in-band file lists cannot be checked",
	"from0":               "only used with --files-from",
	"secluded-args":       "in-band arguments cannot be checked",
	"protect-args":        "in-band arguments cannot be checked",
	"remove-source-files": "the library is read-only",
	"remove-sent-files":   "the library is read-only",
	"delete":              "the library is read-only",
	"max-delete":          "the library is read-only",
	"copy-links":          "symlinks are never followed",
	"copy-unsafe-links":   "symlinks are never followed",
	"copy-dirlinks":       "symlinks are never followed",
	"keep-dirlinks":       "symlinks are never followed",
	"insecure-links":      "symlinks are never followed",
	"munge-links":         "not sent by clients",
	"copy-devices":        "devices are never read",
	"write-devices":       "the library is read-only",
	"daemon":              "no daemon mode",
	"config":              "no daemon mode",
	"dparam":              "no daemon mode",
	"log-file":            "no server-side files",
	"log-file-format":     "no server-side files",
	"write-batch":         "no server-side files",
	"only-write-batch":    "no server-side files",
	"read-batch":          "no server-side files",
	"backup-dir":          "no server-side files",
	"temp-dir":            "no server-side files",
	"partial-dir":         "no server-side files",
	"debug":               "server debug output can disclose filter rules",
	"iconv":               "charset conversion is not supported",
	"max-alloc":           "the server's allocation cap is fixed",
	"rsh":                 "no remote shell",
	"rsync-path":          "no remote shell",
	"server":              "given twice",
	"sender":              "given twice",
	"confine-root":        "set by the server",
	"relative":            "not sent by clients (-R is)",
}

const (
	// rsync's own maximum (MAX_BLOCK_SIZE, 128 KiB) and a floor that keeps
	// the receiver's checksum table, which the sender hashes, small.
	minBlockSize = 512
	maxBlockSize = 128 << 10
)

type longOption struct {
	value func(string) error // nil: the option takes no value
	max   int                // occurrences allowed; 0 means 1
}

// optionState accumulates what the options seen so far have set.
type optionState struct {
	relative  bool
	sawCap    bool
	letters   [128]int
	longCount map[string]int
}

// check validates one option word.
func (st *optionState) check(w word) error {
	if w.escaped {
		return fmt.Errorf("%w: %s: escapes are not expected in options", ErrOption, quote(w.raw))
	}
	s := w.raw
	switch {
	case strings.HasPrefix(s, "--"):
		return st.checkLong(s)
	case strings.HasPrefix(s, "-B"):
		// -B<N> is how clients send --block-size.
		if err := intRange(minBlockSize, maxBlockSize)(s[2:]); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrOption, quote(s), err)
		}
		return st.count("block-size", s)
	case strings.HasPrefix(s, "-") && len(s) > 1:
		return st.checkCluster(s)
	default:
		return fmt.Errorf("%w: unexpected argument %s before \".\"", ErrOption, quote(s))
	}
}

// checkCluster validates a short-option cluster such as -logDtpre.iLsfxCIvu.
func (st *optionState) checkCluster(s string) error {
	for i := 1; i < len(s); i++ {
		c := s[i]
		if c == 'e' {
			// popt hands the rest of the cluster to -e; in server mode that
			// is the capability string: "." or "<proto>.<sub>" and flags.
			if st.sawCap || !validCapability(s[i+1:]) {
				return fmt.Errorf("%w: %s: -e is only accepted as the capability string e.<flags>", ErrOption, quote(s))
			}
			st.sawCap = true
			return nil
		}
		if c >= 128 || strings.IndexByte(shortAllowed, c) < 0 {
			return fmt.Errorf("%w: -%s in %s", ErrOption, shortName(s, i), quote(s))
		}
		st.letters[c]++
		if st.letters[c] > 2 {
			return fmt.Errorf("%w: -%c given more than twice", ErrOption, c)
		}
		if c == 'R' {
			st.relative = true
		}
	}
	return nil
}

// shortName is the option letter (or rune) at byte i of s, for messages.
func shortName(s string, i int) string {
	r, _ := utf8.DecodeRuneInString(s[i:])
	return string(r)
}

// validCapability reports whether s is what rsync's maybe_add_e_option
// writes after "e": "." or "<digits>.<digits>" then ASCII letters. The
// letters are flags the server only looks up; unknown ones are harmless, so
// newer clients keep working.
func validCapability(s string) bool {
	dot := strings.IndexByte(s, '.')
	if dot < 0 {
		return false
	}
	if dot > 0 {
		ver := s[:dot]
		rest := s[dot+1:]
		if len(ver) > 3 || !allDigits(ver) {
			return false
		}
		n := 0
		for n < len(rest) && n < 4 && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 0 {
			return false
		}
		s = rest[n:]
	} else {
		s = s[1:]
	}
	if len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// checkLong validates --name or --name=value.
func (st *optionState) checkLong(s string) error {
	name, value, hasValue := strings.Cut(s[2:], "=")
	if name == "" {
		return fmt.Errorf("%w: %s", ErrOption, quote(s))
	}
	if why, ok := longRefused[name]; ok {
		return fmt.Errorf("%w: --%s (%s)", ErrOption, name, why)
	}
	if strings.HasPrefix(name, "delete") || strings.HasPrefix(name, "remove") {
		return fmt.Errorf("%w: --%s (the library is read-only)", ErrOption, name)
	}
	opt, ok := longAllowed[name]
	if !ok {
		return fmt.Errorf("%w: unknown %s", ErrOption, quote("--"+name))
	}
	switch {
	case opt.value == nil && hasValue:
		return fmt.Errorf("%w: --%s takes no value", ErrOption, name)
	case opt.value != nil && !hasValue:
		return fmt.Errorf("%w: --%s needs =value", ErrOption, name)
	case opt.value != nil:
		if err := opt.value(value); err != nil {
			return fmt.Errorf("%w: --%s: %v", ErrOption, name, err)
		}
	}
	return st.count(name, s)
}

// count refuses an option given more often than allowed.
func (st *optionState) count(name, s string) error {
	if st.longCount == nil {
		st.longCount = make(map[string]int)
	}
	st.longCount[name]++
	limit := max(longAllowed[name].max, 1)
	if st.longCount[name] > limit {
		return fmt.Errorf("%w: %s given more than once", ErrOption, quote(s))
	}
	return nil
}

func oneOf(values ...string) func(string) error {
	return func(s string) error {
		for _, v := range values {
			if s == v {
				return nil
			}
		}
		return fmt.Errorf("%s is not one of %s", quote(s), strings.Join(values, ", "))
	}
}

// intRange accepts a plain decimal integer (optional leading "-", no "+",
// at most 10 digits) in [lo, hi].
func intRange(lo, hi int64) func(string) error {
	return func(s string) error {
		digits := strings.TrimPrefix(s, "-")
		if digits == "" || len(digits) > 10 || !allDigits(digits) {
			return fmt.Errorf("%s is not an integer", quote(s))
		}
		var n int64
		for i := 0; i < len(digits); i++ {
			n = n*10 + int64(digits[i]-'0')
		}
		if digits != s {
			n = -n
		}
		if n < lo || n > hi {
			return fmt.Errorf("%s is out of range [%d, %d]", s, lo, hi)
		}
		return nil
	}
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

var checksumNames = []string{"auto", "xxh128", "xxh3", "xxh64", "xxhash", "md5", "md4", "sha1", "none"}

// checksumChoice accepts "ALGO" or "XFER,FILE" from rsync's checksum list.
func checksumChoice(s string) error {
	parts := strings.Split(s, ",")
	if len(parts) > 2 {
		return fmt.Errorf("%s: at most two algorithms", quote(s))
	}
	for _, p := range parts {
		if err := oneOf(checksumNames...)(p); err != nil {
			return err
		}
	}
	return nil
}

// infoWords are rsync's --info flag names (options.c info_words) plus ALL
// and NONE; HELP is refused.
var infoWords = map[string]bool{
	"ALL": true, "NONE": true, "BACKUP": true, "COPY": true, "DEL": true,
	"FLIST": true, "MISC": true, "MOUNT": true, "NAME": true, "NONREG": true,
	"PROGRESS": true, "REMOVE": true, "SKIP": true, "STATS": true, "SYMSAFE": true,
}

// infoFlags accepts a comma-separated list of WORD[level] (level one digit).
func infoFlags(s string) error {
	items := strings.Split(s, ",")
	if len(items) > len(infoWords) {
		return fmt.Errorf("%s: too many flags", quote(s))
	}
	for _, it := range items {
		name := strings.TrimRight(it, "0123456789")
		if len(it)-len(name) > 1 || !infoWords[strings.ToUpper(name)] {
			return fmt.Errorf("%s is not an --info flag", quote(it))
		}
	}
	return nil
}

// suffixList accepts --skip-compress's slash-separated suffixes, plain
// characters only (rsync's [..] classes are refused).
func suffixList(s string) error {
	if s == "" || len(s) > 512 {
		return fmt.Errorf("bad suffix list %s", quote(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '/' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("bad suffix list %s", quote(s))
		}
	}
	return nil
}

// quote renders client text for an error message: Go-quoted (so nothing
// in it can forge a log line) and cut to maxQuoted bytes.
func quote(s string) string {
	if len(s) > maxQuoted {
		cut := maxQuoted
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return fmt.Sprintf("%q...", s[:cut])
	}
	return fmt.Sprintf("%q", s)
}
