package testpki

import (
	"os"
	"os/exec"
	"testing"
)

// RequireTools makes sure the system tools a test drives (openssl, rsync,
// ssh...) are installed. A missing tool fails the test when CI=true, where
// .ci/run installs them, and skips it elsewhere: a skip is never counted as
// a pass in CI.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required in CI (.ci/run installs it): %v", tool, err)
			}
			t.Skipf("%s not installed (make test installs it): %v", tool, err)
		}
	}
}
