package cli

import (
	"slices"
	"strings"

	ucli "github.com/urfave/cli/v2"
)

// permute reorders a command line so that flags may follow positional
// arguments, as in `clr-publish sign --cert C --key K IN.json -o OUT`:
// urfave/cli v2 stops at the first positional argument. Global flags stay
// before the subcommand, the subcommand's flags come next, its positional
// arguments last; everything after "--" is left alone.
func permute(app *ucli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	rest := args[1:]
	// global flags up to the subcommand name
	i := 0
	for i < len(rest) && isFlag(rest[i]) {
		n := flagArity(app.Flags, rest[i])
		out = append(out, rest[i:min(i+1+n, len(rest))]...)
		i += 1 + n
	}
	if i >= len(rest) {
		return out
	}
	cmd := app.Command(rest[i])
	if cmd == nil {
		return append(out, rest[i:]...)
	}
	out = append(out, rest[i])
	var flags, pos []string
	tail := rest[i+1:]
	for j := 0; j < len(tail); j++ {
		a := tail[j]
		if a == "--" {
			pos = append(pos, tail[j:]...)
			break
		}
		if !isFlag(a) {
			pos = append(pos, a)
			continue
		}
		n := flagArity(cmd.Flags, a)
		end := min(j+1+n, len(tail))
		flags = append(flags, tail[j:end]...)
		j = end - 1
	}
	out = append(out, flags...)
	if len(pos) > 0 && pos[0] != "--" {
		out = append(out, "--")
	}
	return append(out, pos...)
}

func isFlag(a string) bool { return len(a) > 1 && a[0] == '-' }

// flagArity is 1 when the flag token a takes its value from the next
// argument, 0 otherwise.
func flagArity(flags []ucli.Flag, a string) int {
	name := strings.TrimLeft(a, "-")
	if strings.Contains(name, "=") {
		return 0
	}
	for _, f := range flags {
		if !slices.Contains(f.Names(), name) {
			continue
		}
		if df, ok := f.(ucli.DocGenerationFlag); ok && df.TakesValue() {
			return 1
		}
		return 0
	}
	// bundled short booleans (-vv) or unknown flags: let the parser decide
	return 0
}

// enforceRequired replaces urfave's own required-flag check (whose error
// type is unexported) with one that returns a *UsageError.
func enforceRequired(cmds []*ucli.Command) {
	for _, c := range cmds {
		var required []string
		for _, f := range c.Flags {
			if rf, ok := f.(ucli.RequiredFlag); ok && rf.IsRequired() {
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
				}
			}
		}
		if len(required) > 0 && c.Action != nil {
			action := c.Action
			c.Action = func(ctx *ucli.Context) error {
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
		enforceRequired(c.Subcommands)
	}
}
