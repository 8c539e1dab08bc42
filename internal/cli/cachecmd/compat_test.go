package cachecmd

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/clr-suite/clr/internal/cli"
)

// ctxFor parses args with the daemon's flags and returns the context.
func ctxFor(t *testing.T, env cli.Env, args ...string) *ucli.Context {
	t.Helper()
	var got *ucli.Context
	app := &ucli.App{Name: "t", Commands: []*ucli.Command{{
		Name: "daemon", Flags: append(append(cacheFlags(), serveFlags()...), daemonFlags()...),
		Action: func(c *ucli.Context) error { got = c; return nil },
	}}}
	if err := app.Run(append([]string{"t", "daemon"}, args...)); err != nil {
		t.Fatal(err)
	}
	return got
}

func envOf(m map[string]string) cli.Env {
	return cli.Env{Getenv: func(k string) string { return m[k] }}
}

func TestSplayFromContentLibraryRsync(t *testing.T) {
	tests := []struct {
		env  map[string]string
		args []string
		want time.Duration
		err  bool
	}{
		{nil, nil, 0, false},
		{map[string]string{"SYNC_DELAY": "false", "SYNC_DELAY_MAX_SECONDS": "60"}, nil, 0, false},
		{map[string]string{"SYNC_DELAY": "true"}, nil, 21600 * time.Second, false},
		{map[string]string{"SYNC_DELAY": "true", "SYNC_DELAY_MAX_SECONDS": "86400"}, nil, 86400 * time.Second, false},
		{map[string]string{"SYNC_DELAY": "TRUE", "SYNC_DELAY_MAX_SECONDS": "soon"}, nil, 0, true},
		{map[string]string{"SYNC_DELAY": "true", "SYNC_DELAY_MAX_SECONDS": "86400"}, []string{"--splay", "30m"}, 30 * time.Minute, false},
		{nil, []string{"--splay", "2d"}, 48 * time.Hour, false},
	}
	for _, tc := range tests {
		env := envOf(tc.env)
		got, err := splayOf(env, ctxFor(t, env, tc.args...))
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("env %v args %v: %v, %v; want %v (error %v)", tc.env, tc.args, got, err, tc.want, tc.err)
		}
	}
}

func TestPeerRewrite(t *testing.T) {
	tests := []struct {
		env  map[string]string
		args []string
		uri  string
		want string
	}{
		{map[string]string{"SYNC_PEER": "regional.example"}, nil, "ssh://clr@publisher:2222/tmpl/", "ssh://clr@regional.example:2222/tmpl/"},
		{map[string]string{"SYNC_PEER": "regional.example", "SYNC_PORT": "22"}, nil, "ssh://publisher/a%20b.iso", "ssh://regional.example:22/a%20b.iso"},
		{map[string]string{"SYNC_PEER": "regional.example"}, []string{"--peer", "[::1]:2200"}, "ssh://p:1/x", "ssh://[::1]:2200/x"},
		{map[string]string{"SYNC_PEER": "regional.example"}, nil, "https://publisher/x.iso", "https://publisher/x.iso"},
		{nil, nil, "ssh://publisher:2222/x", "ssh://publisher:2222/x"},
	}
	for _, tc := range tests {
		env := envOf(tc.env)
		var ms []mirror
		if p := peerOf(env, ctxFor(t, env, tc.args...)); p != "" {
			ms = append(ms, mirror{from: peerAny, to: p})
		}
		got, _ := rewrite(tc.uri, ms)
		if got != tc.want {
			t.Errorf("%v %v: %s -> %s, want %s", tc.env, tc.args, tc.uri, got, tc.want)
		}
	}
	// an explicit mirror rule listed first wins over the peer
	got, _ := rewrite("ssh://p:1/x", []mirror{{"ssh://p:1/", "ssh://m:2/"}, {peerAny, "q:3"}})
	if got != "ssh://m:2/x" {
		t.Errorf("mirror before peer: %s", got)
	}
}

func TestTLSNameMapping(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		env      map[string]string
		args     []string
		wantACME []string
		wantErr  string
	}{
		{map[string]string{"TLS_NAME": "lib.example.org"}, nil, []string{"lib.example.org"}, ""},
		// custom certificate: content-library-rsync's paths (absent here)
		{map[string]string{"TLS_NAME": "lib.example.org", "TLS_CUSTOM_CERT": "true"}, nil, nil, "/etc/caddycerts/cert.pem"},
		// explicit flags win over TLS_NAME
		{map[string]string{"TLS_NAME": "lib.example.org"}, []string{"--acme-domain", "other.example.org"}, []string{"other.example.org"}, ""},
		{nil, []string{"--tls-cert", "x.pem"}, nil, "go together"},
		{nil, nil, nil, ""},
	}
	for _, tc := range tests {
		env := envOf(tc.env)
		s := &server{}
		err := s.tlsConfig(env, ctxFor(t, env, tc.args...), dir)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v %v: error %v, want %q", tc.env, tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v %v: %v", tc.env, tc.args, err)
			continue
		}
		var got []string
		if s.cfg.ACME != nil {
			got = s.cfg.ACME.Domains
			if s.cfg.ACME.CacheDir != filepath.Join(dir, ".clr", "acme") || !s.cfg.Redirect || s.cfg.HTTPSAddr != ":8443" {
				t.Errorf("%v: ACME config %+v redirect %v https %q", tc.env, s.cfg.ACME, s.cfg.Redirect, s.cfg.HTTPSAddr)
			}
		} else if s.cfg.HTTPSAddr != "" {
			t.Errorf("%v: HTTPS without a certificate source", tc.env)
		}
		if strings.Join(got, ",") != strings.Join(tc.wantACME, ",") {
			t.Errorf("%v %v: ACME domains %v, want %v", tc.env, tc.args, got, tc.wantACME)
		}
	}
}

func TestParseEnvFile(t *testing.T) {
	got, err := parseEnvFile(strings.NewReader("# site\n\nexport A=1\nB = two words \nC=\"quoted # not a comment\"\nD='x'\nE=\nF=a=b\n"), "f")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"A": "1", "B": "two words", "C": "quoted # not a comment", "D": "x", "E": "", "F": "a=b"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s=%q, want %q", k, got[k], v)
		}
	}
	for _, bad := range []string{"NOEQUALS\n", "=value\n", "TWO WORDS=x\n", "A=b\x00c\n"} {
		if _, err := parseEnvFile(strings.NewReader(bad), "f"); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestEnvFileReload: keys the file no longer sets get their previous value
// back (or are unset).
func TestEnvFileReload(t *testing.T) {
	t.Setenv("CLR_TEST_KEEP", "orig")
	os.Unsetenv("CLR_TEST_NEW")
	p := filepath.Join(t.TempDir(), "env")
	ef := &envFile{path: p}
	write := func(s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := ef.load(); err != nil {
			t.Fatal(err)
		}
	}
	write("CLR_TEST_KEEP=file\nCLR_TEST_NEW=1\n")
	if os.Getenv("CLR_TEST_KEEP") != "file" || os.Getenv("CLR_TEST_NEW") != "1" {
		t.Fatal("file values not applied")
	}
	write("# nothing\n")
	if os.Getenv("CLR_TEST_KEEP") != "orig" {
		t.Errorf("CLR_TEST_KEEP=%q, want the original back", os.Getenv("CLR_TEST_KEEP"))
	}
	if _, ok := os.LookupEnv("CLR_TEST_NEW"); ok {
		t.Error("CLR_TEST_NEW still set")
	}
	if err := os.WriteFile(p, []byte("BROKEN\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ef.load(); err == nil {
		t.Error("a broken file was accepted")
	}
}

func FuzzParseEnvFile(f *testing.F) {
	for _, s := range []string{"A=1\n", "export B='x'\n#c\n", "=\n", "A=\"\n", "\x00=\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseEnvFile(strings.NewReader(s), "fuzz")
		if err != nil {
			return
		}
		for k, v := range m {
			if k == "" || strings.ContainsAny(k, " \t\x00\n=") || strings.ContainsAny(v, "\x00\n") {
				t.Fatalf("accepted key %q value %q", k, v)
			}
		}
	})
}

func TestLibraryDirOverlap(t *testing.T) {
	cache := "/var/lib/clr/cache"
	tests := []struct {
		dir  string
		want string // "" = error
	}{
		{"", "/var/lib/clr/cache/.clr/library"},
		{"/var/lib/clr/cache/.clr/library", "/var/lib/clr/cache/.clr/library"},
		{"/srv/www/library", "/srv/www/library"},
		{"/var/lib/clr/library", "/var/lib/clr/library"},
		{"/var/lib/clr/cache", ""},          // content-library-rsync's one folder
		{"/var/lib/clr/cache/www", ""},      // among the served names
		{"/var/lib/clr/cache/.clr/v/x", ""}, // inside the version store
		{"/var/lib/clr", ""},                // holds the cache
		{"/var/lib/clr/cache/../cache", ""}, // lexically the same
	}
	for _, tc := range tests {
		var args []string
		if tc.dir != "" {
			args = []string{"--library-dir", tc.dir}
		}
		got, err := libraryDir(ctxFor(t, envOf(nil), args...), cache)
		if tc.want == "" {
			var ue *cli.UsageError
			if !errors.As(err, &ue) {
				t.Errorf("%s: %q, %v; want a usage error", tc.dir, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.dir, got, err, tc.want)
		}
	}
}
