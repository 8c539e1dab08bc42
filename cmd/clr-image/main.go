// Command clr-image lists the images of the subscriptions and selects them
// for the cache (vmcatcher_image).
package main

import (
	"os"

	"github.com/clr-suite/clr/internal/cli"
	"github.com/clr-suite/clr/internal/cli/imagecmd"
)

func main() { os.Exit(imagecmd.Main(cli.OSEnv())) }
