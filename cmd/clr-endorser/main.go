// Command clr-endorser manages the endorsers trusted to sign image lists
// (vmcatcher_endorser).
package main

import (
	"os"

	"github.com/clr-suite/clr/internal/cli"
	"github.com/clr-suite/clr/internal/cli/endorsercmd"
)

func main() { os.Exit(endorsercmd.Main(cli.OSEnv())) }
