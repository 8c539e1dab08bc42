// Command clr-cache fetches the selected images, verifies every byte
// against the signed list, publishes them atomically and expires the rest
// (vmcatcher_cache).
package main

import (
	"os"

	"github.com/clr-suite/clr/internal/cli"
	"github.com/clr-suite/clr/internal/cli/cachecmd"
)

func main() { os.Exit(cachecmd.Main(cli.OSEnv())) }
