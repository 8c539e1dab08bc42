package cli

import (
	"slices"
	"testing"

	ucli "github.com/urfave/cli/v2"
)

func TestPermute(t *testing.T) {
	app := &ucli.App{
		Flags: []ucli.Flag{&ucli.BoolFlag{Name: "verbose", Aliases: []string{"v"}}, &ucli.StringFlag{Name: "database", Aliases: []string{"d"}}},
		// -q is not global here: an unknown flag stays with the command
		Commands: []*ucli.Command{{
			Name: "sign",
			Flags: []ucli.Flag{
				&ucli.StringFlag{Name: "cert"}, &ucli.StringFlag{Name: "output", Aliases: []string{"o"}},
				&ucli.BoolFlag{Name: "keep-dates"},
			},
		}},
	}
	for _, tc := range []struct{ in, want []string }{
		{[]string{"p"}, []string{"p"}},
		{[]string{"p", "sign", "--cert", "c", "in.json", "-o", "out"}, []string{"p", "sign", "--cert", "c", "-o", "out", "--", "in.json"}},
		{[]string{"p", "-v", "-d", "db", "sign", "in", "--keep-dates", "--cert=c"}, []string{"p", "-v", "-d", "db", "sign", "--keep-dates", "--cert=c", "--", "in"}},
		{[]string{"p", "sign", "--", "-odd", "-o"}, []string{"p", "sign", "--", "-odd", "-o"}},
		{[]string{"p", "sign", "-q", "in", "-vv", "-v", "--verbose", "-d", "db", "-o", "out"}, []string{"p", "-vv", "-v", "--verbose", "-d", "db", "sign", "-q", "-o", "out", "--", "in"}},
		{[]string{"p", "nosuch", "x", "-o"}, []string{"p", "nosuch", "x", "-o"}},
		{[]string{"p", "sign", "-o"}, []string{"p", "sign", "-o"}},
	} {
		if got := permute(app, tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("permute(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
