// Command clr-trust keeps the CA directory's CRLs current, reports its
// health and explains failed verifications (the subscriber's trust upkeep).
package main

import (
	"os"

	"github.com/clr-suite/clr/internal/cli"
	"github.com/clr-suite/clr/internal/cli/trustcmd"
)

func main() { os.Exit(trustcmd.Main(cli.OSEnv())) }
