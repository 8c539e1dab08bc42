// Command vcspcheck walks a served VCSP library as a vSphere subscriber does
// and optionally imports and deploys it with vcsim (see internal/vcspcheck).
package main

import (
	"os"

	"github.com/clr-suite/clr/internal/vcspcheck"
)

func main() {
	os.Exit(vcspcheck.Main(os.Args[1:], os.Stdout, os.Stderr))
}
