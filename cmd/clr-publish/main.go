// Command clr-publish builds, signs and verifies HEPiX image lists of a
// template library.
package main

import (
	"os"

	"github.com/clr-suite/clr/internal/cli"
	"github.com/clr-suite/clr/internal/cli/publishcmd"
)

func main() { os.Exit(publishcmd.Main(cli.OSEnv())) }
