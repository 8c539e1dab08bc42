package server

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The path checks of [ConfinePaths] and rsync's own opens are two steps: a
// library writer that swaps a checked directory for a symbolic link in
// between could make rsync read outside the library (rsync 3.5.0's
// --confine-root does not cover the path arguments). So, where the kernel
// has Landlock, rsync runs in a Landlock domain that can read only the
// library and what rsync itself needs to start (its binary and shared
// libraries, a few files of /etc), and can write, create or remove nothing.
//
// Go cannot run code between fork and exec, so the server re-executes its
// own binary with [SandboxArg] as first argument; [SandboxMain], called
// first thing in main, applies the domain and execs rsync.

// SandboxArg marks the re-executed server binary that sandboxes rsync.
const SandboxArg = "__clr-rsync-sandbox"

// LandlockABI returns the kernel's Landlock ABI version, 0 if none.
func LandlockABI() int {
	abi, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0
	}
	return int(abi)
}

// SandboxMain runs the sandbox when the process was started as one
// (os.Args[1] == SandboxArg: LIBRARY RSYNC ARGS...) and never returns then.
// Otherwise it returns at once.
func SandboxMain() {
	if len(os.Args) < 4 || os.Args[1] != SandboxArg {
		return
	}
	lib, rsync, args := os.Args[2], os.Args[3], os.Args[4:]
	err := sandbox(lib, rsync, args)
	fmt.Fprintf(os.Stderr, "clr-server: sandbox: %v\n", err)
	os.Exit(126)
}

// read-only system paths rsync needs to start: directories get read and
// execute beneath them, files read.
var (
	systemDirs  = []string{"/usr", "/lib", "/lib64", "/bin", "/sbin"}
	systemFiles = []string{"/etc/ld.so.cache", "/etc/ld.so.preload", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/localtime"}
)

func sandbox(lib, rsync string, args []string) error {
	abi := LandlockABI()
	if abi == 0 {
		return errors.New("the kernel has no Landlock")
	}
	handled := uint64(0x1FFF) // ABI 1: execute .. make_sym
	if abi >= 2 {
		handled |= unix.LANDLOCK_ACCESS_FS_REFER
	}
	if abi >= 3 {
		handled |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	if abi >= 5 {
		handled |= unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	}
	// The domain belongs to this thread, which must also be the one that
	// calls execve.
	runtime.LockOSThread()
	attr := unix.LandlockRulesetAttr{Handled_access_fs: handled}
	fd, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if errno != 0 {
		return fmt.Errorf("landlock_create_ruleset: %w", errno)
	}
	ruleset := int(fd)
	const (
		read = unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR
		exe  = unix.LANDLOCK_ACCESS_FS_EXECUTE
	)
	allow := func(path string, access uint64, required bool) error {
		f, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			if required {
				return fmt.Errorf("open %s: %w", path, err)
			}
			return nil
		}
		defer unix.Close(f)
		var st unix.Stat_t
		if err := unix.Fstat(f, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			access &= unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | exe | unix.LANDLOCK_ACCESS_FS_TRUNCATE
		}
		rule := unix.LandlockPathBeneathAttr{Allowed_access: access & handled, Parent_fd: int32(f)}
		if _, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(ruleset), unix.LANDLOCK_RULE_PATH_BENEATH, uintptr(unsafe.Pointer(&rule)), 0, 0, 0); errno != 0 {
			return fmt.Errorf("landlock_add_rule %s: %w", path, errno)
		}
		return nil
	}
	if err := allow(lib, read, true); err != nil {
		return err
	}
	for _, d := range systemDirs {
		if err := allow(d, read|exe, false); err != nil {
			return err
		}
	}
	for _, f := range systemFiles {
		if err := allow(f, unix.LANDLOCK_ACCESS_FS_READ_FILE, false); err != nil {
			return err
		}
	}
	if err := allow("/dev/null", unix.LANDLOCK_ACCESS_FS_READ_FILE|unix.LANDLOCK_ACCESS_FS_WRITE_FILE, false); err != nil {
		return err
	}
	if err := allow(rsync, unix.LANDLOCK_ACCESS_FS_READ_FILE|exe, true); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(ruleset), 0, 0); errno != 0 {
		return fmt.Errorf("landlock_restrict_self: %w", errno)
	}
	unix.Close(ruleset)
	return unix.Exec(rsync, append([]string{rsync}, args...), os.Environ())
}
