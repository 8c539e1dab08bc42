package server

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// MinRsync is the oldest rsync clr-server runs: 3.4.0 fixed the
// CVE-2024-12084..12088 series that a hostile client could use against
// the sender.
var MinRsync = [3]int{3, 4, 0}

// RsyncInfo describes the rsync binary the server executes.
type RsyncInfo struct {
	Path        string
	Version     string
	ConfineRoot bool // --confine-root exists (3.5.0)
}

var versionRE = regexp.MustCompile(`rsync\s+version\s+v?(\d+)\.(\d+)\.(\d+)`)

// ProbeRsync runs `rsync --version` and `rsync --help` and refuses an
// rsync older than MinRsync.
func ProbeRsync(ctx context.Context, path string) (RsyncInfo, error) {
	info := RsyncInfo{Path: path}
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return info, fmt.Errorf("rsync %s: %w", path, err)
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return info, fmt.Errorf("rsync %s: cannot read its version", path)
	}
	var v [3]int
	for i := range v {
		v[i], _ = strconv.Atoi(string(m[i+1]))
	}
	info.Version = fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2])
	if older(v, MinRsync) {
		return info, fmt.Errorf("rsync %s is version %s; clr-server needs %d.%d.%d or newer (security fixes of the sender)",
			path, info.Version, MinRsync[0], MinRsync[1], MinRsync[2])
	}
	help, _ := exec.CommandContext(ctx, path, "--help").Output()
	info.ConfineRoot = strings.Contains(string(help), "--confine-root")
	return info, nil
}

func older(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}
