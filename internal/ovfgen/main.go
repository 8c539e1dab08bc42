package ovfgen

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
)

// Exit codes of Main.
const (
	ExitOK    = 0
	ExitUsage = 1
	ExitWrite = 2
)

// Main is the mktemplate command: it writes an OVF template (-name) into
// -dir and/or an ISO (-iso), prints the paths written to stdout and returns
// the exit code. Sizes accept the suffixes K, M, G (powers of 1024, with an
// optional "iB" or "B").
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mktemplate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".", "directory to write the OVF template into")
	name := fs.String("name", "", "template name: writes NAME.ovf, NAME-disk1.vmdk and NAME.mf")
	seed := fs.Int64("seed", 1, "seed of the pseudo-random contents")
	capacity := sizeFlag(DefaultDiskCapacity)
	fs.Var(&capacity, "disk-capacity", "virtual disk capacity in bytes (multiple of 512)")
	dataSize := sizeFlag(DefaultDataSize)
	fs.Var(&dataSize, "data-size", "pseudo-random bytes written at the start of the disk")
	iso := fs.String("iso", "", "also write an ISO image to this path")
	isoSize := sizeFlag(64 << 10)
	fs.Var(&isoSize, "iso-size", "size of the ISO image in bytes")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: mktemplate [-dir DIR] -name NAME [-seed N] [-disk-capacity SIZE] [-data-size SIZE] [-iso PATH [-iso-size SIZE]]\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mktemplate: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return ExitUsage
	}
	if *name == "" && *iso == "" {
		fmt.Fprintln(stderr, "mktemplate: nothing to do: give -name and/or -iso")
		return ExitUsage
	}
	if *name != "" {
		data := int64(dataSize)
		if data == 0 {
			data = -1 // explicit 0: an empty disk
		}
		paths, err := WriteOVF(*dir, *name, OVFOptions{Seed: *seed, DiskCapacity: int64(capacity), DataSize: data})
		if err != nil {
			fmt.Fprintf(stderr, "mktemplate: %v\n", err)
			return ExitWrite
		}
		for _, p := range paths {
			fmt.Fprintln(stdout, p)
		}
	}
	if *iso != "" {
		if err := WriteISO(*iso, int64(isoSize), *seed); err != nil {
			fmt.Fprintf(stderr, "mktemplate: %v\n", err)
			return ExitWrite
		}
		fmt.Fprintln(stdout, filepath.Clean(*iso))
	}
	return ExitOK
}

// sizeFlag is a byte count with optional binary suffix.
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }

func (s *sizeFlag) Set(v string) error {
	n, err := ParseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}

// ParseSize parses a non-negative byte count such as "65536", "64K",
// "8MiB" or "1G" (suffixes are powers of 1024).
func ParseSize(v string) (int64, error) {
	s := strings.TrimSpace(v)
	s = strings.TrimSuffix(strings.TrimSuffix(s, "B"), "i")
	mult := int64(1)
	if s != "" {
		switch s[len(s)-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		}
		if mult != 1 {
			s = s[:len(s)-1]
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q", v)
	}
	return n * mult, nil
}
