//go:build unix

package serve

import (
	"os"
	"syscall"
)

// openNoBlock opens name read-only without following a final symlink and
// without blocking on a FIFO or a device.
func openNoBlock(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
}
