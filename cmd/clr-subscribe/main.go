// Command clr-subscribe subscribes to signed image lists and keeps them current
// (vmcatcher_subscribe).
package main

import (
	"os"

	"github.com/clr-suite/clr/internal/cli"
	"github.com/clr-suite/clr/internal/cli/subscribecmd"
)

func main() { os.Exit(subscribecmd.Main(cli.OSEnv())) }
