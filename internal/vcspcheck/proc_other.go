//go:build !unix

package vcspcheck

import "os/exec"

func setProcessGroup(*exec.Cmd) {}

// signalGroup kills the process (no process groups here).
func signalGroup(cmd *exec.Cmd, _ bool) {
	_ = cmd.Process.Kill()
}
