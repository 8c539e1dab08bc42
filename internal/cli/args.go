package cli

import (
	"slices"
	"strings"

	ucli "github.com/urfave/cli/v2"
)

// permute reorders a command line so that flags may follow positional
// arguments, as in `clr-publish sign --cert C --key K IN.json -o OUT`, and
// global flags may follow the subcommand, as in `clr-publish publish -q
// ...`: urfave/cli v2 stops at the first positional argument and knows
// global flags only before the subcommand. The result is: program, global
// flags, subcommand, its flags, "--", its positional arguments. Everything
// after a "--" given by the user stays a positional argument.
func permute(app *ucli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	globals := []string{args[0]}
	rest := args[1:]
	i := 0
	for i < len(rest) && isFlag(rest[i]) {
		n := flagArity(app.Flags, rest[i])
		globals = append(globals, rest[i:min(i+1+n, len(rest))]...)
		i += 1 + n
	}
	if i >= len(rest) {
		return globals
	}
	cmd := app.Command(rest[i])
	if cmd == nil {
		return append(globals, rest[i:]...)
	}
	var flags, pos []string
	tail := rest[i+1:]
	for j := 0; j < len(tail); j++ {
		a := tail[j]
		if a == "--" {
			pos = append(pos, tail[j+1:]...)
			break
		}
		if !isFlag(a) {
			pos = append(pos, a)
			continue
		}
		set, list := cmd.Flags, &flags
		if !hasFlag(cmd.Flags, a) && hasFlag(app.Flags, a) {
			set, list = app.Flags, &globals
		}
		n := flagArity(set, a)
		end := min(j+1+n, len(tail))
		*list = append(*list, tail[j:end]...)
		j = end - 1
	}
	out := append(append(globals, rest[i]), flags...)
	if len(pos) > 0 {
		out = append(out, "--")
	}
	return append(out, pos...)
}

func isFlag(a string) bool { return len(a) > 1 && a[0] == '-' }

// hasFlag reports whether flag token a names one of flags, including a
// bundle of single-letter flags (-vv).
func hasFlag(flags []ucli.Flag, a string) bool {
	name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
	if lookup(flags, name) != nil {
		return true
	}
	if strings.HasPrefix(a, "--") || len(name) < 2 {
		return false
	}
	for _, r := range name {
		if lookup(flags, string(r)) == nil {
			return false
		}
	}
	return true
}

func lookup(flags []ucli.Flag, name string) ucli.Flag {
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

// flagArity is 1 when the flag token a takes its value from the next
// argument, 0 otherwise.
func flagArity(flags []ucli.Flag, a string) int {
	name := strings.TrimLeft(a, "-")
	if strings.Contains(name, "=") {
		return 0
	}
	if df, ok := lookup(flags, name).(ucli.DocGenerationFlag); ok && df.TakesValue() {
		return 1
	}
	// booleans, bundled short booleans (-vv) and unknown flags: let the
	// parser decide
	return 0
}

// enforceRequired replaces urfave's own required-flag check (whose error
// type is unexported) with one that returns a *UsageError, for the app's
// own action and every command's.
func enforceRequired(app *ucli.App) {
	app.Action = requireFlags(app.Flags, app.Action)
	var walk func([]*ucli.Command)
	walk = func(cmds []*ucli.Command) {
		for _, c := range cmds {
			c.Action = requireFlags(c.Flags, c.Action)
			walk(c.Subcommands)
		}
	}
	walk(app.Commands)
}

func requireFlags(flags []ucli.Flag, action ucli.ActionFunc) ucli.ActionFunc {
	var required []string
	for _, f := range flags {
		rf, ok := f.(ucli.RequiredFlag)
		if !ok || !rf.IsRequired() {
			continue
		}
		required = append(required, f.Names()[0])
		switch t := f.(type) {
		case *ucli.StringFlag:
			t.Required = false
		case *ucli.IntFlag:
			t.Required = false
		case *ucli.BoolFlag:
			t.Required = false
		case *ucli.StringSliceFlag:
			t.Required = false
		case *ucli.DurationFlag:
			t.Required = false
		}
	}
	if len(required) == 0 || action == nil {
		return action
	}
	return func(ctx *ucli.Context) error {
		var missing []string
		for _, name := range required {
			if !ctx.IsSet(name) {
				missing = append(missing, "--"+name)
			}
		}
		if len(missing) > 0 {
			return Usagef("missing required flag %s", strings.Join(missing, ", "))
		}
		return action(ctx)
	}
}
