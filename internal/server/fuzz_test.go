package server

import (
	"slices"
	"strings"
	"testing"
	"unicode"
)

// FuzzParseCommand: ParseCommand never panics, and whatever it accepts
// passes checkAccepted, an independent re-validation of the argv.
func FuzzParseCommand(f *testing.F) {
	for _, l := range readCorpus(f, "client_commands.txt", false) {
		f.Add(l.cmd, uint8(0))
	}
	for _, l := range readCorpus(f, "hostile_client_commands.txt", true) {
		f.Add(l.cmd, uint8(1))
	}
	for _, tc := range hostileCommands {
		if len(tc.cmd) < 1<<10 {
			f.Add(tc.cmd, uint8(2))
		}
	}
	f.Fuzz(func(t *testing.T, cmdline string, mode uint8) {
		opts := ValidateOptions{}
		if mode&1 == 0 {
			opts.ConfineRoot = testRoot
		}
		if mode&2 != 0 {
			opts.MaxPaths = int(mode >> 2)
		}
		cmd, err := ParseCommand(cmdline, opts)
		if err != nil {
			if cmd != nil {
				t.Fatalf("error %v with a command", err)
			}
			return
		}
		checkAccepted(t, cmd, opts)
	})
}

// forbiddenLong are option prefixes no accepted argv may contain, written
// independently of the allowlist in command.go.
var forbiddenLong = []string{
	"--files-from", "--from0", "--remove", "--delete", "--max-delete", "--daemon",
	"--config", "--log-file", "--write-batch", "--only-write-batch", "--read-batch",
	"--copy-links", "--copy-unsafe-links", "--copy-dirlinks", "--keep-dirlinks",
	"--debug", "--iconv", "--max-alloc", "--rsh", "--rsync-path", "--server",
	"--sender", "--secluded-args", "--protect-args", "--insecure-links",
	"--munge-links", "--copy-devices", "--write-devices", "--backup", "--suffix",
	"--temp-dir", "--partial-dir", "--link-dest", "--copy-dest", "--compare-dest",
	"--chmod", "--chown", "--usermap", "--groupmap", "--filter", "--exclude",
	"--include", "--password-file", "--early-input", "--port", "--address",
	"--sockopts", "--stop-at", "--stop-after", "--dparam", "--relative",
}

// checkAccepted re-validates an accepted command: shape, options, paths, the
// appended restrictions, and that rebuilding the client command line from
// Args parses to the same Command again.
func checkAccepted(t *testing.T, cmd *Command, opts ValidateOptions) {
	t.Helper()
	a := cmd.Args
	if len(a) < 5 || a[0] != "--server" || a[1] != "--sender" {
		t.Fatalf("Args do not start with --server --sender: %q", a)
	}
	sep := slices.Index(a, "--")
	if sep < 0 || sep+1 >= len(a) || a[sep+1] != "." {
		t.Fatalf("Args lack \"-- .\": %q", a)
	}
	if slices.Index(a[sep+1:], "--") >= 0 {
		t.Fatalf("second \"--\": %q", a)
	}
	options, paths := a[2:sep], a[sep+2:]
	maxPaths := opts.MaxPaths
	if maxPaths <= 0 {
		maxPaths = 64
	}
	if len(paths) == 0 || len(paths) > maxPaths || len(paths) != len(cmd.Paths) {
		t.Fatalf("%d path args, %d Paths, max %d", len(paths), len(cmd.Paths), maxPaths)
	}
	if opts.ConfineRoot != "" {
		if len(options) == 0 || options[len(options)-1] != "--confine-root="+opts.ConfineRoot {
			t.Fatalf("--confine-root not appended last: %q", options)
		}
		options = options[:len(options)-1]
	}
	relative := false
	for _, o := range options {
		if o == "" || o[0] != '-' || o == "-" || o == "--" {
			t.Fatalf("non-option %q before \"--\"", o)
		}
		if strings.ContainsAny(o, " \\;|&$`()<>*?[]{}~'\"!#") {
			t.Fatalf("option %q contains a metacharacter", o)
		}
		if strings.HasPrefix(o, "--") {
			for _, f := range forbiddenLong {
				if strings.HasPrefix(o, f) {
					t.Fatalf("forbidden option %q accepted", o)
				}
			}
			if v, ok := strings.CutPrefix(o, "--compress-threads="); ok && !(len(v) == 1 && v[0] <= '4') {
				t.Fatalf("%q accepted", o)
			}
			continue
		}
		if strings.HasPrefix(o, "-B") {
			continue
		}
		letters, capab, hasCap := strings.Cut(o[1:], "e")
		if strings.ContainsAny(letters, "sLkKbCAXNEmOJyfMTe0@hP") {
			t.Fatalf("forbidden short option in %q", o)
		}
		if hasCap && (capab == "" || !strings.Contains(capab, ".") || strings.ContainsFunc(capab, func(r rune) bool {
			return !(r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		})) {
			t.Fatalf("-e is not a capability string in %q", o)
		}
		relative = relative || strings.Contains(letters, "R")
	}
	for i, p := range paths {
		clean := cmd.Paths[i]
		if p == "" || strings.HasPrefix(p, "-") || strings.HasPrefix(p, "/") || strings.HasPrefix(clean, "-") {
			t.Fatalf("bad path arg %q (%q)", p, clean)
		}
		if strings.ContainsFunc(p, func(r rune) bool { return unicode.IsControl(r) || strings.ContainsRune("*?[]\\", r) }) {
			t.Fatalf("path arg %q has a wildcard, backslash or control character", p)
		}
		for _, c := range strings.Split(p, "/") {
			if c == ".." {
				t.Fatalf("path arg %q has a .. component", p)
			}
		}
		if cleanRel(p) != clean || (clean != "." && strings.Split(clean, "/")[0] == ".") {
			t.Fatalf("path arg %q does not clean to %q", p, clean)
		}
		if !relative && strings.Contains(p, "/./") {
			t.Fatalf("path arg %q keeps a marker without -R", p)
		}
	}

	// Round trip: the options and path args, escaped the way an rsync
	// client escapes them, must parse to the same command.
	rebuilt := "rsync " + strings.Join(a[:2+len(options)], " ") + " ."
	for _, p := range paths {
		rebuilt += " " + escapeLikeClient(p)
	}
	again, err := ParseCommand(rebuilt, opts)
	if err != nil {
		t.Fatalf("rebuilt %q refused: %v", rebuilt, err)
	}
	if !slices.Equal(again.Args, cmd.Args) || !slices.Equal(again.Paths, cmd.Paths) {
		t.Fatalf("round trip changed the command:\n%q\n%q", cmd.Args, again.Args)
	}
}

// escapeLikeClient backslash-escapes s like rsync's safe_arg for a file name
// argument (plus "~", which only a leading position would need).
func escapeLikeClient(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte("!#$&;|<>(){}\"'` \\~", s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
