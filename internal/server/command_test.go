package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clr-suite/clr/internal/testpki"
)

const testRoot = "/srv/library"

// corpusLine is one command line of a testdata corpus with its comment.
type corpusLine struct {
	client string // the rsync client invocation that produced it
	want   string // sentinel name, hostile corpus only
	cmd    string
}

// readCorpus reads testdata/<name>: "# rsync ..." comment lines name the
// client invocation of the command line that follows; hostile files carry
// "<sentinel>\t<command>".
func readCorpus(t testing.TB, name string, hostile bool) []corpusLine {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		out    []corpusLine
		client string
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			continue
		case strings.HasPrefix(line, "# rsync "):
			client = strings.TrimPrefix(line, "# ")
			continue
		case strings.HasPrefix(line, "#"):
			continue
		}
		l := corpusLine{client: client, cmd: line}
		if hostile {
			want, cmd, ok := strings.Cut(line, "\t")
			if !ok {
				t.Fatalf("%s: no tab in %q", name, line)
			}
			l.want, l.cmd = want, cmd
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("%s: empty corpus", name)
	}
	return out
}

var sentinels = map[string]error{
	"ErrNotRsync":  ErrNotRsync,
	"ErrNotSender": ErrNotSender,
	"ErrOption":    ErrOption,
	"ErrPath":      ErrPath,
	"ErrSymlink":   ErrSymlink,
	"ErrNotFound":  ErrNotFound,
}

// TestParseCommandClientCorpus: every command line a real rsync client sent
// for a pull (testdata/client_commands.txt) is accepted, the client's
// options are passed through unchanged and the restrictions are appended.
func TestParseCommandClientCorpus(t *testing.T) {
	for _, l := range readCorpus(t, "client_commands.txt", false) {
		t.Run(l.client, func(t *testing.T) {
			cmd, err := ParseCommand(l.cmd, ValidateOptions{ConfineRoot: testRoot})
			if err != nil {
				t.Fatalf("ParseCommand(%q): %v", l.cmd, err)
			}
			ws, err := splitCommand(l.cmd)
			if err != nil {
				t.Fatal(err)
			}
			var words []string
			for _, w := range ws {
				words = append(words, w.raw)
			}
			dot := slices.Index(words, ".")
			wantOpts := append(slices.Clone(words[1:dot]), "--confine-root="+testRoot, "--", ".")
			if got := cmd.Args[:len(wantOpts)]; !slices.Equal(got, wantOpts) {
				t.Errorf("Args prefix = %q, want %q", got, wantOpts)
			}
			if n := len(cmd.Args) - len(wantOpts); n != len(cmd.Paths) || n != len(words)-dot-1 {
				t.Errorf("%d path args, %d Paths, command has %d", n, len(cmd.Paths), len(words)-dot-1)
			}
			checkAccepted(t, cmd, ValidateOptions{ConfineRoot: testRoot})
		})
	}
}

// TestParseCommandHostileClientCorpus: what real clients send for pushes,
// forbidden options and escaping paths is refused with the right sentinel.
func TestParseCommandHostileClientCorpus(t *testing.T) {
	for _, l := range readCorpus(t, "hostile_client_commands.txt", true) {
		t.Run(l.client, func(t *testing.T) {
			want := sentinels[l.want]
			if want == nil {
				t.Fatalf("unknown sentinel %q", l.want)
			}
			cmd, err := ParseCommand(l.cmd, ValidateOptions{ConfineRoot: testRoot})
			if !errors.Is(err, want) {
				t.Fatalf("ParseCommand(%q) = %v, %v; want %v", l.cmd, cmd, err, want)
			}
		})
	}
}

const pull = "rsync --server --sender -logDtpre.iLsfxCIvu "

// hostileCommands must all be refused by ParseCommand with the sentinel.
var hostileCommands = []struct {
	name string
	cmd  string
	want error
}{
	// not rsync / not a pull
	{"empty", "", ErrNotRsync},
	{"true probe", "true", ErrNotRsync},
	{"shell command", "cat /etc/passwd", ErrNotRsync},
	{"sh -c", "sh -c id", ErrNotRsync},
	{"rsync version", "rsync --version", ErrNotRsync},
	{"absolute rsync path", "/usr/bin/rsync --server --sender -e.LsfxCIvu . /lib", ErrNotRsync},
	{"rsync without --server", "rsync --sender -e.LsfxCIvu . /lib", ErrNotRsync},
	{"scp", "scp -f /etc/passwd", ErrNotRsync},
	{"server alone", "rsync --server", ErrNotSender},
	{"push", "rsync --server -logDtpre.iLsfxCIvu . /lib/", ErrNotSender},
	{"push with delete", "rsync --server -logDtpre.iLsfxCIvu --delete . /lib/", ErrNotSender},
	{"sender not third", "rsync --server -v --sender -e.LsfxCIvu . /lib", ErrNotSender},
	{"daemon over rsh", "rsync --server --daemon .", ErrNotSender},
	{"server twice", pull + "--server . /lib", ErrOption},
	{"sender twice", pull + "--sender . /lib", ErrOption},

	// -e / remote shell injection
	{"-e sh separate", pull + "-e sh . /lib", ErrOption},
	{"-e alone", "rsync --server --sender -e . /lib", ErrOption},
	{"-esh", "rsync --server --sender -esh . /lib", ErrOption},
	{"-e in cluster with command", "rsync --server --sender -logDtpresh . /lib", ErrOption},
	{"second capability", pull + "-e.LsfxCIvu . /lib", ErrOption},
	{"capability with punctuation", "rsync --server --sender -le.iL-sf . /lib", ErrOption},
	{"capability with bad version", "rsync --server --sender -le3a.iL . /lib", ErrOption},
	{"--rsh", pull + "--rsh=sh . /lib", ErrOption},
	{"--rsh separate", pull + "--rsh sh . /lib", ErrOption},
	{"--rsync-path", pull + "--rsync-path=/tmp/evil . /lib", ErrOption},

	// shell metacharacters, unescaped
	{"semicolon id", pull + ". /lib;id", ErrPath},
	{"semicolon word", pull + ". /lib ; id", ErrPath},
	{"dollar paren", pull + ". /lib/$(id)", ErrPath},
	{"backticks", pull + ". /lib/`id`", ErrPath},
	{"pipe sh", pull + ". /lib | sh", ErrPath},
	{"and and", pull + ". /lib && id", ErrPath},
	{"redirect", pull + ". /lib >/tmp/x", ErrPath},
	{"dollar var", pull + ". $HOME", ErrPath},
	{"brace expansion", pull + ". /lib/{a,b}", ErrPath},
	{"quote", pull + ". '/lib'", ErrPath},
	{"double quote", pull + ". \"/lib\"", ErrPath},
	{"tilde home", pull + ". ~/x", ErrPath},
	{"tilde user", pull + ". ~root/.ssh", ErrPath},
	{"hash comment", pull + ". /lib #x", ErrPath},
	{"metachar in option", "rsync --server --sender -v;id . /lib", ErrPath},
	{"newline", pull + ". /lib\nid", ErrPath},
	{"carriage return", pull + ". /lib\rid", ErrPath},
	{"escaped newline", pull + ". /lib\\\nid", ErrPath},
	{"tab", pull + ".\t/lib", ErrPath},
	{"NUL", pull + ". /lib\x00/etc", ErrPath},
	{"DEL", pull + ". /lib\x7f", ErrPath},
	{"escape of ordinary char", pull + ". /l\\ib", ErrPath},
	{"trailing backslash", pull + ". /lib\\", ErrPath},
	{"double space", pull + ".  /lib", ErrPath},
	{"trailing space", pull + ". /lib ", ErrPath},

	// globs
	{"glob star", pull + ". /lib/*", ErrPath},
	{"glob question", pull + ". /lib/?", ErrPath},
	{"glob class", pull + ". /lib/[a-z]", ErrPath},
	{"escaped glob", pull + ". /lib/\\*", ErrPath},
	{"escaped backslash", pull + ". /lib/\\\\x", ErrPath},

	// .. and leading -
	{"dotdot escape", pull + ". a/../../etc", ErrPath},
	{"dotdot relative", pull + ". ../x", ErrPath},
	{"dotdot root", pull + ". /..", ErrPath},
	{"dotdot inside", pull + ". /lib/tmpl/../v1", ErrPath},
	{"dotdot trailing", pull + ". lib/..", ErrPath},
	{"dotdot second path", pull + ". /lib ../etc", ErrPath},
	{"leading dash path", pull + ". -L", ErrPath},
	{"dot slash dash", pull + ". ./-rf", ErrPath},
	{"relative marker dash", "rsync --server --sender -lRe.iLsfxCIvu . /./-x", ErrPath},
	{"no dot", pull + "/lib", ErrOption},
	{"no path", pull + ".", ErrPath},
	{"nothing after options", pull[:len(pull)-1], ErrPath},

	// forbidden short options
	{"-s secluded", "rsync --server --sender -slogDtpre.iLsfxCIvu", ErrOption},
	{"-s secluded with dot", "rsync --server --sender -slogDtpre.iLsfxCIvu . /lib", ErrOption},
	{"-L", "rsync --server --sender -lLogDtpre.iLsfxCIvu . /lib", ErrOption},
	{"-L separate", pull + "-L . /lib", ErrOption},
	{"-k", "rsync --server --sender -lkogDtpre.iLsfxCIvu . /lib", ErrOption},
	{"-K", "rsync --server --sender -lKogDtpre.iLsfxCIvu . /lib", ErrOption},
	{"-C", "rsync --server --sender -Ce.iLsfxCIvu . /lib", ErrOption},
	{"-X", "rsync --server --sender -Xe.iLsfxCIvu . /lib", ErrOption},
	{"-vvv", "rsync --server --sender -vvve.iLsfxCIvu . /lib", ErrOption},
	{"-M", pull + "-M--daemon . /lib", ErrOption},
	{"-f filter on argv", pull + "-f+/etc . /lib", ErrOption},
	{"-T temp dir", pull + "-T/tmp . /lib", ErrOption},
	{"-0", pull + "-0 . /lib", ErrOption},
	{"dash alone", pull + "- . /lib", ErrOption},
	{"double dash", pull + "-- . /lib", ErrOption},
	{"non-ascii letter", "rsync --server --sender -lé . /lib", ErrOption},
	{"-B too small", pull + "-B16 . /lib", ErrOption},
	{"-B too large", pull + "-B262144 . /lib", ErrOption},
	{"-B not a number", pull + "-Bx . /lib", ErrOption},

	// forbidden long options
	{"files-from passwd", pull + "--files-from=/etc/passwd . /lib", ErrOption},
	{"files-from stdin", pull + "--files-from=- --from0 . /lib", ErrOption},
	{"files-from separate", pull + "--files-from /etc/passwd . /lib", ErrOption},
	{"copy-links", pull + "--copy-links . /lib", ErrOption},
	{"copy-unsafe-links", pull + "--copy-unsafe-links . /lib", ErrOption},
	{"copy-dirlinks", pull + "--copy-dirlinks . /lib", ErrOption},
	{"remove-source-files", pull + "--remove-source-files . /lib", ErrOption},
	{"remove-sent-files", pull + "--remove-sent-files . /lib", ErrOption},
	{"remove-anything", pull + "--remove-everything . /lib", ErrOption},
	{"log-file", pull + "--log-file=/tmp/x . /lib", ErrOption},
	{"log-file-format", pull + "--log-file-format=%n . /lib", ErrOption},
	{"debug all", pull + "--debug=ALL . /lib", ErrOption},
	{"daemon", pull + "--daemon . /lib", ErrOption},
	{"config", pull + "--config=/etc/x . /lib", ErrOption},
	{"write-batch", pull + "--write-batch=x . /lib", ErrOption},
	{"only-write-batch", pull + "--only-write-batch=x . /lib", ErrOption},
	{"read-batch", pull + "--read-batch=x . /lib", ErrOption},
	{"iconv", pull + "--iconv=x . /lib", ErrOption},
	{"max-alloc zero", pull + "--max-alloc=0 . /lib", ErrOption},
	{"delete", pull + "--delete . /lib", ErrOption},
	{"delete-after", pull + "--delete-after . /lib", ErrOption},
	{"delete-missing-args", pull + "--delete-missing-args . /lib", ErrOption},
	{"max-delete", pull + "--max-delete=5 . /lib", ErrOption},
	{"compress-threads 5", pull + "--compress-threads=5 . /lib", ErrOption},
	{"confine-root from client", pull + "--confine-root=/ . /lib", ErrOption},
	{"insecure-links", pull + "--insecure-links . /lib", ErrOption},
	{"munge-links", pull + "--munge-links . /lib", ErrOption},
	{"copy-devices", pull + "--copy-devices . /lib", ErrOption},
	{"write-devices", pull + "--write-devices . /lib", ErrOption},
	{"partial-dir", pull + "--partial-dir=/tmp . /lib", ErrOption},
	{"temp-dir", pull + "--temp-dir=/tmp . /lib", ErrOption},
	{"backup-dir", pull + "--backup-dir /tmp . /lib", ErrOption},
	{"secluded-args long", pull + "--secluded-args . /lib", ErrOption},
	{"relative long", pull + "--relative . /lib", ErrOption},
	{"unknown option", pull + "--frobnicate . /lib", ErrOption},
	{"unknown short", "rsync --server --sender -Qe.iLsfxCIvu . /lib", ErrOption},
	{"dashdash equals", pull + "--=x . /lib", ErrOption},

	// bad values
	{"compress-choice evil", pull + "--compress-choice=zstd,sh . /lib", ErrOption},
	{"compress-choice empty", pull + "--compress-choice= . /lib", ErrOption},
	{"compress-level ultra", pull + "--compress-level=22 . /lib", ErrOption},
	{"compress-level plus", pull + "--compress-level=+3 . /lib", ErrOption},
	{"checksum-choice three", pull + "--checksum-choice=md5,md5,md5 . /lib", ErrOption},
	{"checksum-choice unknown", pull + "--checksum-choice=crc32 . /lib", ErrOption},
	{"block-size long huge", pull + "--block-size=99999999999 . /lib", ErrOption},
	{"bwlimit suffix", pull + "--bwlimit=1m . /lib", ErrOption},
	{"timeout negative", pull + "--timeout=-1 . /lib", ErrOption},
	{"timeout huge", pull + "--timeout=999999 . /lib", ErrOption},
	{"info help", pull + "--info=help . /lib", ErrOption},
	{"info unknown", pull + "--info=FLIST2,SHELL . /lib", ErrOption},
	{"value on flag", pull + "--inplace=yes . /lib", ErrOption},
	{"missing value", pull + "--timeout . /lib", ErrOption},
	{"duplicate option", pull + "--timeout=1 --timeout=2 . /lib", ErrOption},
	{"block-size twice", pull + "-B8192 --block-size=8192 . /lib", ErrOption},
	{"skip-compress class", pull + "--skip-compress=mp[34] . /lib", ErrPath},
	{"escaped option value", pull + "--info=NAME\\ 2 . /lib", ErrOption},

	// unicode tricks
	{"invalid utf8", pull + ". /lib/\xff", ErrPath},
	{"overlong slash", pull + ". /lib/\xc0\xaf..", ErrPath},
	{"bidi override", pull + ". /lib/\u202egpj.exe", ErrPath},
	{"zero width space", pull + ". /lib/\u200b..", ErrPath},
	{"no-break space", pull + ".\u00a0/lib", ErrPath},
	{"ideographic space", pull + ". /lib\u3000id", ErrPath},
	{"line separator", pull + ". /lib\u2028id", ErrPath},
	{"C1 next line", pull + ". /lib\u0085id", ErrPath},
	{"BOM", "\ufeffrsync --server --sender -e.LsfxCIvu . /lib", ErrPath},

	// sizes
	{"65 paths", pull + "." + strings.Repeat(" a", 65), ErrPath},
	{"100 KB command", pull + ". /" + strings.Repeat("a", 100<<10), ErrPath},
	{"long component", pull + ". /" + strings.Repeat("a", 256), ErrPath},
}

func TestParseCommandHostile(t *testing.T) {
	if len(hostileCommands) < 40 {
		t.Fatalf("only %d hostile commands", len(hostileCommands))
	}
	for _, tc := range hostileCommands {
		t.Run(tc.name, func(t *testing.T) {
			cmd, err := ParseCommand(tc.cmd, ValidateOptions{ConfineRoot: testRoot})
			if !errors.Is(err, tc.want) {
				t.Fatalf("ParseCommand(%.120q) = %v, %v; want %v", tc.cmd, cmd, err, tc.want)
			}
			if cmd != nil {
				t.Fatalf("refused command returned %v", cmd)
			}
			if msg := err.Error(); len(msg) > 300 || strings.ContainsAny(msg, "\n\r\x00") {
				t.Errorf("error message unfit for a client: %q", msg)
			}
		})
	}
}

func TestParseCommandArgs(t *testing.T) {
	tests := []struct {
		name      string
		cmd       string
		opts      ValidateOptions
		wantArgs  []string
		wantPaths []string
	}{
		{
			name:      "file with confine root",
			cmd:       pull + ". /lib/tmpl/v2/disk.vmdk",
			opts:      ValidateOptions{ConfineRoot: "/srv/lib"},
			wantArgs:  []string{"--server", "--sender", "-logDtpre.iLsfxCIvu", "--confine-root=/srv/lib", "--", ".", "lib/tmpl/v2/disk.vmdk"},
			wantPaths: []string{"lib/tmpl/v2/disk.vmdk"},
		},
		{
			name:      "no confine root",
			cmd:       pull + ". lib",
			wantArgs:  []string{"--server", "--sender", "-logDtpre.iLsfxCIvu", "--", ".", "lib"},
			wantPaths: []string{"lib"},
		},
		{
			name:      "confine root with space",
			cmd:       pull + ". lib",
			opts:      ValidateOptions{ConfineRoot: "/srv/my lib"},
			wantArgs:  []string{"--server", "--sender", "-logDtpre.iLsfxCIvu", "--confine-root=/srv/my lib", "--", ".", "lib"},
			wantPaths: []string{"lib"},
		},
		{
			name:      "trailing slash kept",
			cmd:       pull + ". /lib/tmpl/",
			wantArgs:  []string{"--server", "--sender", "-logDtpre.iLsfxCIvu", "--", ".", "lib/tmpl/"},
			wantPaths: []string{"lib/tmpl"},
		},
		{
			name:      "trailing slash dot becomes slash",
			cmd:       pull + ". /lib/tmpl/.",
			wantArgs:  []string{"--server", "--sender", "-logDtpre.iLsfxCIvu", "--", ".", "lib/tmpl/"},
			wantPaths: []string{"lib/tmpl"},
		},
		{
			name:      "root forms",
			cmd:       pull + ". / . ./ // /.",
			wantArgs:  []string{"--server", "--sender", "-logDtpre.iLsfxCIvu", "--", ".", ".", ".", ".", ".", "."},
			wantPaths: []string{".", ".", ".", ".", "."},
		},
		{
			name:      "cleaned",
			cmd:       pull + ". /lib//tmpl/./v2 ./lib",
			wantArgs:  []string{"--server", "--sender", "-logDtpre.iLsfxCIvu", "--", ".", "lib/tmpl/v2", "lib"},
			wantPaths: []string{"lib/tmpl/v2", "lib"},
		},
		{
			name:      "escaped names",
			cmd:       pull + `. /lib/disk\ one.vmdk /lib/x\;id\$\(id\)\` + "`id\\`" + `\&\|\<\>\{a,b\} /lib/it\'s\ \"q\" /lib/a\!\#%^=+,@: \~ /lib/Vorlage\ ä`,
			wantArgs:  []string{"--server", "--sender", "-logDtpre.iLsfxCIvu", "--", ".", "lib/disk one.vmdk", "lib/x;id$(id)`id`&|<>{a,b}", `lib/it's "q"`, "lib/a!#%^=+,@:", "~", "lib/Vorlage ä"},
			wantPaths: []string{"lib/disk one.vmdk", "lib/x;id$(id)`id`&|<>{a,b}", `lib/it's "q"`, "lib/a!#%^=+,@:", "~", "lib/Vorlage ä"},
		},
		{
			name:      "absolute path stays inside",
			cmd:       pull + ". /etc/passwd",
			wantArgs:  []string{"--server", "--sender", "-logDtpre.iLsfxCIvu", "--", ".", "etc/passwd"},
			wantPaths: []string{"etc/passwd"},
		},
		{
			name:      "dots that are names",
			cmd:       pull + ". /lib/... /lib/.hidden /lib/..x",
			wantArgs:  []string{"--server", "--sender", "-logDtpre.iLsfxCIvu", "--", ".", "lib/...", "lib/.hidden", "lib/..x"},
			wantPaths: []string{"lib/...", "lib/.hidden", "lib/..x"},
		},
		{
			name:      "relative marker kept",
			cmd:       "rsync --server --sender -logDtprRe.iLsfxCIvu . /lib/./tmpl/v2/disk.vmdk",
			wantArgs:  []string{"--server", "--sender", "-logDtprRe.iLsfxCIvu", "--", ".", "lib/./tmpl/v2/disk.vmdk"},
			wantPaths: []string{"lib/tmpl/v2/disk.vmdk"},
		},
		{
			name:      "relative marker at root dropped",
			cmd:       "rsync --server --sender -logDtprRe.iLsfxCIvu . /./lib/tmpl /lib/./ /lib//./a/./b/",
			wantArgs:  []string{"--server", "--sender", "-logDtprRe.iLsfxCIvu", "--", ".", "lib/tmpl", "lib/./", "lib/./a/b/"},
			wantPaths: []string{"lib/tmpl", "lib", "lib/a/b"},
		},
		{
			name:      "marker ignored without -R",
			cmd:       pull + ". /lib/./tmpl",
			wantArgs:  []string{"--server", "--sender", "-logDtpre.iLsfxCIvu", "--", ".", "lib/tmpl"},
			wantPaths: []string{"lib/tmpl"},
		},
		{
			name:      "old protocol, no capability",
			cmd:       "rsync --server --sender -logDtprI . /lib/",
			wantArgs:  []string{"--server", "--sender", "-logDtprI", "--", ".", "lib/"},
			wantPaths: []string{"lib"},
		},
		{
			name:      "pre-release capability",
			cmd:       "rsync --server --sender -re32.1iLsfxCIvu . lib",
			wantArgs:  []string{"--server", "--sender", "-re32.1iLsfxCIvu", "--", ".", "lib"},
			wantPaths: []string{"lib"},
		},
		{
			name:      "options only, no cluster",
			cmd:       "rsync --server --sender --list-only . lib",
			wantArgs:  []string{"--server", "--sender", "--list-only", "--", ".", "lib"},
			wantPaths: []string{"lib"},
		},
		{
			name:      "research invocation",
			cmd:       "rsync --server --sender -tIe.LsfxCIvu -B8192 --timeout=300 --bwlimit=10240 --checksum-choice=xxh128 --compress-choice=zstd --info=NAME0,STATS2 . lib/tmpl/v2/disk.vmdk",
			opts:      ValidateOptions{ConfineRoot: "/srv/lib"},
			wantArgs:  []string{"--server", "--sender", "-tIe.LsfxCIvu", "-B8192", "--timeout=300", "--bwlimit=10240", "--checksum-choice=xxh128", "--compress-choice=zstd", "--info=NAME0,STATS2", "--confine-root=/srv/lib", "--", ".", "lib/tmpl/v2/disk.vmdk"},
			wantPaths: []string{"lib/tmpl/v2/disk.vmdk"},
		},
		{
			name:      "allowed extras",
			cmd:       "rsync --server --sender -vvqnldWHHogDtUUprcIRxxSzue.iLsfxCIvu --append --append --compress-threads=4 --compress-level=-131072 --skip-compress=gz/zst --checksum-seed=0 --ignore-errors --safe-links --open-noatime --no-specials --no-implied-dirs --ignore-missing-args --numeric-ids --msgs2stderr --info=all4,none,progress2 . a",
			wantArgs:  []string{"--server", "--sender", "-vvqnldWHHogDtUUprcIRxxSzue.iLsfxCIvu", "--append", "--append", "--compress-threads=4", "--compress-level=-131072", "--skip-compress=gz/zst", "--checksum-seed=0", "--ignore-errors", "--safe-links", "--open-noatime", "--no-specials", "--no-implied-dirs", "--ignore-missing-args", "--numeric-ids", "--msgs2stderr", "--info=all4,none,progress2", "--", ".", "a"},
			wantPaths: []string{"a"},
		},
		{
			name:      "max paths",
			cmd:       pull + ". a b c",
			opts:      ValidateOptions{MaxPaths: 3},
			wantArgs:  []string{"--server", "--sender", "-logDtpre.iLsfxCIvu", "--", ".", "a", "b", "c"},
			wantPaths: []string{"a", "b", "c"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd, err := ParseCommand(tc.cmd, tc.opts)
			if err != nil {
				t.Fatalf("ParseCommand(%q): %v", tc.cmd, err)
			}
			if !slices.Equal(cmd.Args, tc.wantArgs) {
				t.Errorf("Args\n got %q\nwant %q", cmd.Args, tc.wantArgs)
			}
			if !slices.Equal(cmd.Paths, tc.wantPaths) {
				t.Errorf("Paths\n got %q\nwant %q", cmd.Paths, tc.wantPaths)
			}
			checkAccepted(t, cmd, tc.opts)
		})
	}
}

func TestParseCommandLimits(t *testing.T) {
	tests := []struct {
		name string
		cmd  string
		opts ValidateOptions
		want error // nil: accepted
	}{
		{"64 paths default", pull + "." + strings.Repeat(" a", 64), ValidateOptions{}, nil},
		{"65 paths default", pull + "." + strings.Repeat(" a", 65), ValidateOptions{}, ErrPath},
		{"negative max means default", pull + "." + strings.Repeat(" a", 64), ValidateOptions{MaxPaths: -1}, nil},
		{"max 1", pull + ". a b", ValidateOptions{MaxPaths: 1}, ErrPath},
		{"max 100", pull + "." + strings.Repeat(" a", 100), ValidateOptions{MaxPaths: 100}, nil},
		{"8 KiB line", commandOfLen(maxCommandLen), ValidateOptions{}, nil},
		{"8 KiB + 1", commandOfLen(maxCommandLen + 1), ValidateOptions{}, ErrPath},
		{"path 4095", pull + ". " + strings.Repeat("a/", 2047) + "a", ValidateOptions{}, nil},
		{"path 4096", pull + ". " + strings.Repeat("a/", 2047) + "ab", ValidateOptions{}, ErrPath},
		{"component 255", pull + ". " + strings.Repeat("a", 255), ValidateOptions{}, nil},
		{"component 256", pull + ". " + strings.Repeat("a", 256), ValidateOptions{}, ErrPath},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCommand(tc.cmd, tc.opts)
			if tc.want == nil && err != nil || !errors.Is(err, tc.want) {
				t.Fatalf("len %d: err = %v, want %v", len(tc.cmd), err, tc.want)
			}
		})
	}
}

// commandOfLen is a valid pull of exactly n bytes (n >= 100).
func commandOfLen(n int) string {
	s := pull + "."
	for len(s) < n {
		k := min(n-len(s)-1, 4000)
		s += " " + strings.Repeat("a", k%2) + strings.Repeat("/a", k/2)
	}
	return s
}

func TestParseCommandBadConfineRoot(t *testing.T) {
	for _, root := range []string{"relative/lib", ".", "/srv/\x00lib"} {
		_, err := ParseCommand(pull+". lib", ValidateOptions{ConfineRoot: root})
		if err == nil {
			t.Errorf("ConfineRoot %q accepted", root)
		}
		for name, s := range sentinels {
			if errors.Is(err, s) {
				t.Errorf("ConfineRoot %q: operator error reported as %s: %v", root, name, err)
			}
		}
	}
}

// TestParseCommandMessages: the client sees which option or path was refused.
func TestParseCommandMessages(t *testing.T) {
	tests := []struct {
		name string
		cmd  string
		want string
	}{
		{"short letter", "rsync --server --sender -lLogDtpre.iLsfxCIvu . lib", `-L in "-lLogDtpre.iLsfxCIvu"`},
		{"long option", pull + "--files-from=/etc/passwd . lib", "--files-from"},
		{"unknown option", pull + "--frobnicate=1 . lib", `"--frobnicate"`},
		{"rsh", pull + "--rsh=sh . lib", "--rsh"},
		{"capability", pull + "-esh . lib", `"-esh"`},
		{"value", pull + "--compress-choice=gzip . lib", `"gzip"`},
		{"dotdot", pull + ". lib/../etc", `"lib/../etc"`},
		{"metachar", pull + ". lib;id", `unescaped ';'`},
		{"control", pull + ". lib\nid", "U+000A"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCommand(tc.cmd, ValidateOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v does not contain %q", err, tc.want)
			}
		})
	}
}

// TestParseCommandNoAliasing: the returned Args do not share memory that a
// later call could change.
func TestParseCommandNoAliasing(t *testing.T) {
	a, err := ParseCommand(pull+". a", ValidateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(a.Args)
	if _, err := ParseCommand(pull+". b", ValidateOptions{}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Args, want) {
		t.Fatalf("Args changed: %q", a.Args)
	}
}

// The end-to-end test runs the real rsync client with this test binary as
// its remote shell (-e): the helper parses the command line like the SSH
// server will, runs ConfinePaths and executes the real rsync with
// Command.Args in the library, proving the emitted argv works for a pull
// ("--confine-root" and "--" placement included).
const (
	helperLibEnv = "CLR_SERVER_TEST_GATE_LIBRARY"
	helperLogEnv = "CLR_SERVER_TEST_GATE_LOG"
)

// TestMain doubles as the gate process: TestRsyncPullEndToEnd runs the
// test binary as rsync's remote shell with the helper variables set.
func TestMain(m *testing.M) {
	SandboxMain() // the harness runs rsync through this binary
	if lib := os.Getenv(helperLibEnv); lib != "" {
		os.Exit(runGate(lib, os.Getenv(helperLogEnv), os.Args))
	}
	os.Exit(m.Run())
}

// runGate emulates the SSH server: argv is "... -- [-l user] host words...".
func runGate(lib, logPath string, argv []string) int {
	i := slices.Index(argv, "--")
	if i < 0 {
		return 97
	}
	rest := argv[i+1:]
	if len(rest) > 1 && rest[0] == "-l" {
		rest = rest[2:]
	}
	if len(rest) < 2 {
		return 98
	}
	cmdline := strings.Join(rest[1:], " ") // what sshd hands the server
	logf := func(format string, a ...any) {
		if f, err := os.OpenFile(logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
			fmt.Fprintf(f, format+"\n", a...)
			f.Close()
		}
	}
	opts := ValidateOptions{}
	if rsyncHasConfineRoot() {
		opts.ConfineRoot = lib
	}
	cmd, err := ParseCommand(cmdline, opts)
	if err == nil {
		var root *os.Root
		if root, err = os.OpenRoot(lib); err == nil {
			err = ConfinePaths(root, cmd.Paths)
			root.Close()
		}
	}
	if err != nil {
		logf("refused %q: %v", cmdline, err)
		fmt.Fprintf(os.Stderr, "gate: %v\n", err)
		return 86
	}
	logf("exec %q", cmd.Args)
	rsync, err := exec.LookPath("rsync")
	if err != nil {
		return 99
	}
	c := exec.Command(rsync, cmd.Args...)
	c.Dir = lib
	c.Env = []string{"PATH=/usr/bin:/bin", "LANG=C"}
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := c.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		return 99
	}
	return 0
}

func rsyncHasConfineRoot() bool {
	out, err := exec.Command("rsync", "--help").Output()
	return err == nil && strings.Contains(string(out), "--confine-root")
}

func TestRsyncPullEndToEnd(t *testing.T) {
	testpki.RequireTools(t, "rsync")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	confine := rsyncHasConfineRoot()
	if !confine {
		t.Log("rsync has no --confine-root: testing without it")
	}

	base := t.TempDir()
	lib := filepath.Join(base, "lib")
	writeTree(t, lib, map[string]string{
		"tmpl/v2/disk.vmdk":             "disk v2\n",
		"tmpl/v2/disk.vmdk.sha512":      "sum\n",
		"tmpl/v1/disk.vmdk":             "disk v1\n",
		"tmpl/name with space;$(x)`y`&": "odd\n",
		"tmpl/v2/.rsync-filter":         "- disk.vmdk.sha512\n",
		"tmpl/v3/disk.vmdk":             "disk v3\n",
	})
	mustSymlink(t, "../../../outside/rules", filepath.Join(lib, "tmpl/v3/rules"))
	mustSymlink(t, "/etc", filepath.Join(lib, "evil"))
	mustSymlink(t, "v2", filepath.Join(lib, "tmpl/current"))
	// a filter merge file outside the library: --confine-root must stop
	// the sender from reading it
	writeTree(t, base, map[string]string{"outside/rules": "- disk.vmdk\n"})
	logPath := filepath.Join(base, "gate.log")
	before := treeSnapshot(t, lib)

	rshell := self + " --"
	run := func(t *testing.T, args ...string) (string, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		c := exec.CommandContext(ctx, "rsync", append([]string{"-e", rshell}, args...)...)
		c.Dir = base
		c.Env = append(os.Environ(), helperLibEnv+"="+lib, helperLogEnv+"="+logPath)
		out, err := c.CombinedOutput()
		return string(out), err
	}

	tests := []struct {
		name   string
		args   []string          // client arguments; dst is appended unless noDst
		noDst  bool              // --list-only
		files  map[string]string // expected regular files in dst
		links  map[string]string // expected symlinks in dst
		absent []string          // must not exist in dst
		out    string            // expected in the output
		fail   bool              // the gate or rsync must refuse
		conf   bool              // needs --confine-root
	}{
		{name: "archive dir contents", args: []string{"-a", "h:/tmpl/v2/"},
			files: map[string]string{"disk.vmdk": "disk v2\n", "disk.vmdk.sha512": "sum\n"}},
		{name: "dir itself", args: []string{"-a", "h:/tmpl/v2"},
			files: map[string]string{"v2/disk.vmdk": "disk v2\n"}},
		{name: "recommended pull", args: []string{"--times", "--ignore-times", "--no-whole-file",
			"--compress-choice=zstd", "--checksum-choice=xxh128", "--block-size=8192", "--timeout=60",
			"--bwlimit=10m", "--info=progress2,name0,stats2", "--no-inc-recursive", "--outbuf=L",
			"h:/tmpl/v2/disk.vmdk"},
			files: map[string]string{"disk.vmdk": "disk v2\n"}},
		{name: "copy-dest basis, checksum, sparse, inplace", args: []string{"-aHc", "--sparse", "--inplace",
			"--copy-dest=../basis", "--numeric-ids", "-z", "h:/tmpl/v1/"},
			files: map[string]string{"disk.vmdk": "disk v1\n"}},
		{name: "relative with marker", args: []string{"-aR", "h:/tmpl/./v2/disk.vmdk"},
			files: map[string]string{"v2/disk.vmdk": "disk v2\n"}},
		{name: "several paths and odd names", args: []string{"-a", "h:/tmpl/v1/disk.vmdk", ":/tmpl/name with space;$(x)`y`&"},
			files: map[string]string{"disk.vmdk": "disk v1\n", "name with space;$(x)`y`&": "odd\n"}},
		{name: "whole library, symlinks sent as links", args: []string{"-a", "h:"},
			files: map[string]string{"tmpl/v2/disk.vmdk": "disk v2\n"},
			links: map[string]string{"evil": "/etc", "tmpl/current": "v2"}},
		{name: "list only", args: []string{"--list-only", "h:/tmpl/v2/"}, noDst: true, out: "disk.vmdk.sha512"},
		{name: "partial and delete stay client side", args: []string{"-av", "--partial-dir=.p", "--delete", "--exclude=*.sha512", "h:/tmpl/v2/"},
			files: map[string]string{"disk.vmdk": "disk v2\n"}, absent: []string{"disk.vmdk.sha512"}},
		{name: "per-dir filter inside the library", args: []string{"-a", "-F", "h:/tmpl/v2/"},
			files: map[string]string{"disk.vmdk": "disk v2\n"}, absent: []string{"disk.vmdk.sha512"}},
		// tmpl/v3/rules -> ../../../outside/rules says "- disk.vmdk":
		// without --confine-root the sender would read it and leave
		// disk.vmdk out; confined, the merge file is not read.
		{name: "merge file outside the library is not read", args: []string{"-a", "--filter=dir-merge rules", "h:/tmpl/v3/"},
			files: map[string]string{"disk.vmdk": "disk v3\n"}, conf: true},
		{name: "symlink to /etc", args: []string{"-a", "h:/evil/passwd"}, fail: true, out: "symlink"},
		{name: "symlink inside", args: []string{"-a", "h:/tmpl/current/"}, fail: true, out: "symlink"},
		{name: "absolute path mapped into library", args: []string{"-a", "h:/etc/passwd"}, fail: true, out: "not found"},
		{name: "dotdot", args: []string{"-a", "h:/tmpl/../../outside/rules"}, fail: true, out: `".."`},
		{name: "copy links", args: []string{"-aL", "h:/"}, fail: true, out: "-L"},
		{name: "files-from", args: []string{"-a", "--files-from=:/etc/passwd", "h:/"}, fail: true, out: "--files-from"},
		{name: "remote option injection", args: []string{"-a", "-M--log-file=/tmp/x", "h:/"}, fail: true, out: "--log-file"},
		{name: "glob", args: []string{"-a", "h:/tmpl/*"}, fail: true, out: "unescaped '*'"},
		{name: "push", args: []string{"-a", "lib/tmpl/v1/disk.vmdk", "h:/tmpl/new"}, noDst: true, fail: true, out: "only pulls"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.conf && !confine {
				t.Fatal("rsync lacks --confine-root (3.5.0): the server would be exposed to filter files outside the library")
			}
			dst := filepath.Join(base, fmt.Sprintf("dst%02d", i))
			basis := filepath.Join(dst, "..", "basis")
			writeTree(t, basis, map[string]string{"disk.vmdk": "disk v0\n"})
			args := tc.args
			if !tc.noDst {
				args = append(slices.Clone(args), dst+"/")
			}
			out, err := run(t, args...)
			if tc.fail != (err != nil) {
				t.Fatalf("rsync %q: err = %v (want failure %v)\n%s\n%s", args, err, tc.fail, out, readFile(t, logPath))
			}
			if tc.out != "" && !strings.Contains(out, tc.out) {
				t.Errorf("output does not contain %q:\n%s", tc.out, out)
			}
			for name, want := range tc.files {
				if got := readFile(t, filepath.Join(dst, name)); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			for name, want := range tc.links {
				if got, err := os.Readlink(filepath.Join(dst, name)); err != nil || got != want {
					t.Errorf("%s: link %q, %v; want %q", name, got, err, want)
				}
			}
			for _, name := range tc.absent {
				if _, err := os.Lstat(filepath.Join(dst, name)); err == nil {
					t.Errorf("%s exists in the destination", name)
				}
			}
		})
	}
	if after := treeSnapshot(t, lib); !slices.Equal(before, after) {
		t.Errorf("library changed:\nbefore %q\nafter  %q", before, after)
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("gate log:\n%s", readFile(t, logPath))
	}
}

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Sprintf("<%v>", err)
	}
	return string(b)
}

// treeSnapshot lists every entry of dir with its type, size, mtime and, for
// files and links, content.
func treeSnapshot(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		s := fmt.Sprintf("%s %v %d %d", rel, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			s += " -> " + target
		case fi.Mode().IsRegular():
			s += " " + readFile(t, p)
		}
		out = append(out, s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
