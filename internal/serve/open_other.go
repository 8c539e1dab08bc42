//go:build !unix

package serve

import "os"

// openNoBlock opens name read-only. Without O_NONBLOCK the Lstat before the
// open and the os.SameFile check after it are the only guards.
func openNoBlock(name string) (*os.File, error) {
	return os.Open(name)
}
