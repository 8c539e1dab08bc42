// Command clr-server exports a template library read-only to rsync
// clients over SSH.
package main

import (
	"os"

	"github.com/clr-suite/clr/internal/cli"
	"github.com/clr-suite/clr/internal/cli/servercmd"
	"github.com/clr-suite/clr/internal/server"
)

func main() {
	server.SandboxMain() // the re-executed sandbox around rsync never returns
	os.Exit(servercmd.Main(cli.OSEnv()))
}
