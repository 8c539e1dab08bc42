// Command mktemplate writes a small deployable OVF template and/or an ISO
// image for content library tests (see internal/ovfgen).
package main

import (
	"os"

	"github.com/clr-suite/clr/internal/ovfgen"
)

func main() {
	os.Exit(ovfgen.Main(os.Args[1:], os.Stdout, os.Stderr))
}
