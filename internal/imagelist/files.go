package imagelist

import (
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"math"
	"path"
	"strings"
	"unicode/utf8"
)

// FilesDigest checks a clr:files list and derives the hv:size and
// sl:checksum:sha512 of the multi-file image it describes.
//
// Rules: at least one file; paths sorted bytewise and unique; every path
// relative, clean (path.Clean leaves it unchanged), forward slashes only, no
// ".." element, no leading "/", valid UTF-8 without control characters or
// backslashes, and no path is also the directory of another path; sizes not
// negative; SHA-512s 128 lower-case hex digits.
//
// size is the sum of the file sizes. sha512hex is the SHA-512 of the text
// made of one line per file, in list order, "<sha512hex>  <path>\n" (two
// spaces): exactly what `sha512sum` prints for the files when run inside the
// folder, so that
//
//	cd folder && sha512sum <paths in bytewise order> | sha512sum
//
// prints the same digest. Errors match ErrInvalidFiles.
func FilesDigest(files []File) (size int64, sha512hex string, err error) {
	if len(files) == 0 {
		return 0, "", fmt.Errorf("%w: no files", ErrInvalidFiles)
	}
	h := sha512.New()
	paths := make(map[string]bool, len(files))
	for i, f := range files {
		if err := checkFilePath(f.Path); err != nil {
			return 0, "", fmt.Errorf("%w: file %d: path %s: %s", ErrInvalidFiles, i, quote(f.Path), err)
		}
		if i > 0 && f.Path <= files[i-1].Path {
			if f.Path == files[i-1].Path {
				return 0, "", fmt.Errorf("%w: file %d: duplicate path %s", ErrInvalidFiles, i, quote(f.Path))
			}
			return 0, "", fmt.Errorf("%w: file %d: path %s sorts before the previous path %s (want bytewise order)",
				ErrInvalidFiles, i, quote(f.Path), quote(files[i-1].Path))
		}
		if f.Size < 0 {
			return 0, "", fmt.Errorf("%w: file %d (%s): negative size", ErrInvalidFiles, i, quote(f.Path))
		}
		if size > math.MaxInt64-f.Size {
			return 0, "", fmt.Errorf("%w: file %d (%s): total size overflows", ErrInvalidFiles, i, quote(f.Path))
		}
		if !isLowerHex(f.SHA512, 128) {
			return 0, "", fmt.Errorf("%w: file %d (%s): sl:checksum:sha512 is not 128 lower-case hex digits", ErrInvalidFiles, i, quote(f.Path))
		}
		size += f.Size
		paths[f.Path] = true
		fmt.Fprintf(h, "%s  %s\n", f.SHA512, f.Path)
	}
	for i, f := range files {
		for dir := path.Dir(f.Path); dir != "."; dir = path.Dir(dir) {
			if paths[dir] {
				return 0, "", fmt.Errorf("%w: file %d: path %s is inside %s, which is listed as a file",
					ErrInvalidFiles, i, quote(f.Path), quote(dir))
			}
		}
	}
	return size, hex.EncodeToString(h.Sum(nil)), nil
}

// checkFilePath applies the clr:files path rules to one path.
func checkFilePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty")
	case !utf8.ValidString(p):
		return fmt.Errorf("not valid UTF-8")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("absolute")
	case strings.ContainsRune(p, '\\'):
		return fmt.Errorf("contains a backslash")
	case strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("contains a control character")
	case p == "." || p == ".." || strings.HasPrefix(p, "../"):
		return fmt.Errorf("outside the folder")
	case path.Clean(p) != p:
		return fmt.Errorf("not clean (want %s)", quote(path.Clean(p)))
	}
	return nil
}
