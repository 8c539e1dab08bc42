// Command clr-server exports a template library read-only to rsync
// clients over SSH.
package main

import (
	"os"

	"github.com/clr-suite/clr/internal/cli"
	"github.com/clr-suite/clr/internal/cli/servercmd"
)

func main() { os.Exit(servercmd.Main(cli.OSEnv())) }
