// Command sscheck walks a simplestreams catalog the way the LXD and Incus
// clients do (see internal/sscheck).
package main

import (
	"os"

	"github.com/clr-suite/clr/internal/sscheck"
)

func main() { os.Exit(sscheck.Main(os.Args[1:], os.Stdout, os.Stderr)) }
