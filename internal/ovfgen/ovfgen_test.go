package ovfgen

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func writeTemplate(t *testing.T, name string, opts OVFOptions) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	paths, err := WriteOVF(dir, name, opts)
	if err != nil {
		t.Fatalf("WriteOVF: %v", err)
	}
	want := []string{filepath.Join(dir, name+".ovf"), filepath.Join(dir, name+"-disk1.vmdk"), filepath.Join(dir, name+".mf")}
	if strings.Join(paths, "|") != strings.Join(want, "|") {
		t.Fatalf("paths = %q, want %q", paths, want)
	}
	return dir, paths
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWriteOVFDeterministic(t *testing.T) {
	tests := []struct {
		name       string
		a, b       OVFOptions
		sameDisk   bool
		sameOVF    bool
		sameVMDKsz bool
	}{
		{"equal seeds", OVFOptions{Seed: 1}, OVFOptions{Seed: 1}, true, true, true},
		{"equal seeds, custom sizes", OVFOptions{Seed: -5, DiskCapacity: 4 << 20, DataSize: 200 << 10}, OVFOptions{Seed: -5, DiskCapacity: 4 << 20, DataSize: 200 << 10}, true, true, true},
		{"different seeds", OVFOptions{Seed: 1}, OVFOptions{Seed: 2}, false, false, true},
		{"different data size", OVFOptions{Seed: 1}, OVFOptions{Seed: 1, DataSize: 128 << 10}, false, false, false},
		{"different capacity", OVFOptions{Seed: 1}, OVFOptions{Seed: 1, DiskCapacity: 16 << 20}, false, false, true},
		{"more grain tables", OVFOptions{Seed: 1}, OVFOptions{Seed: 1, DiskCapacity: 40 << 20}, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, pa := writeTemplate(t, "tpl", tt.a)
			_, pb := writeTemplate(t, "tpl", tt.b)
			ovfA, ovfB := readFile(t, pa[0]), readFile(t, pb[0])
			diskA, diskB := readFile(t, pa[1]), readFile(t, pb[1])
			mfA, mfB := readFile(t, pa[2]), readFile(t, pb[2])
			if got := bytes.Equal(diskA, diskB); got != tt.sameDisk {
				t.Errorf("disks equal = %v, want %v", got, tt.sameDisk)
			}
			if got := bytes.Equal(ovfA, ovfB); got != tt.sameOVF {
				t.Errorf("OVFs equal = %v, want %v", got, tt.sameOVF)
			}
			if got := bytes.Equal(mfA, mfB); got != (tt.sameDisk && tt.sameOVF) {
				t.Errorf("manifests equal = %v, want %v", got, tt.sameDisk && tt.sameOVF)
			}
			if got := len(diskA) == len(diskB); got != tt.sameVMDKsz {
				t.Errorf("disk sizes %d and %d: equal = %v, want %v", len(diskA), len(diskB), got, tt.sameVMDKsz)
			}
		})
	}
}

func TestManifestDigests(t *testing.T) {
	dir, paths := writeTemplate(t, "digest", OVFOptions{Seed: 42})
	mf := string(readFile(t, paths[2]))
	lines := strings.Split(strings.TrimSuffix(mf, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf(".mf has %d lines, want 2:\n%s", len(lines), mf)
	}
	seen := map[string]bool{}
	for _, line := range lines {
		var name, sum string
		rest, ok := strings.CutPrefix(line, "SHA256(")
		if ok {
			name, sum, ok = strings.Cut(rest, ")= ")
		}
		if !ok {
			t.Fatalf("malformed .mf line %q", line)
		}
		got := sha256.Sum256(readFile(t, filepath.Join(dir, name)))
		if hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s: .mf says %s, file hashes to %x", name, sum, got)
		}
		seen[name] = true
	}
	if !seen["digest.ovf"] || !seen["digest-disk1.vmdk"] {
		t.Errorf(".mf covers %v, want digest.ovf and digest-disk1.vmdk", seen)
	}
}

type ovfEnvelope struct {
	Files []struct {
		Href string `xml:"href,attr"`
		ID   string `xml:"id,attr"`
		Size int64  `xml:"size,attr"`
	} `xml:"References>File"`
	Disks []struct {
		Capacity int64  `xml:"capacity,attr"`
		FileRef  string `xml:"fileRef,attr"`
		Format   string `xml:"format,attr"`
	} `xml:"DiskSection>Disk"`
	Systems []struct {
		ID    string `xml:"id,attr"`
		Name  string `xml:"Name"`
		Items []struct {
			ResourceType    int    `xml:"ResourceType"`
			VirtualQuantity int64  `xml:"VirtualQuantity"`
			HostResource    string `xml:"HostResource"`
		} `xml:"VirtualHardwareSection>Item"`
	} `xml:"VirtualSystem"`
}

func TestOVFDescriptor(t *testing.T) {
	tests := []struct {
		name string
		opts OVFOptions
		cap  int64
		mem  int64
	}{
		{"defaults", OVFOptions{Seed: 3}, DefaultDiskCapacity, DefaultMemoryMB},
		{"custom", OVFOptions{Seed: 3, DiskCapacity: 2 << 20, DataSize: 1 << 20, MemoryMB: 32}, 2 << 20, 32},
		{"escaped name", OVFOptions{Seed: 3}, DefaultDiskCapacity, DefaultMemoryMB},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "tpl"
			if tt.name == "escaped name" {
				name = `a&b<c>"d`
			}
			dir, paths := writeTemplate(t, name, tt.opts)
			var env ovfEnvelope
			if err := xml.Unmarshal(readFile(t, paths[0]), &env); err != nil {
				t.Fatalf("OVF does not parse: %v", err)
			}
			if len(env.Files) != 1 || env.Files[0].Href != name+"-disk1.vmdk" {
				t.Fatalf("References = %+v", env.Files)
			}
			fi, err := os.Stat(filepath.Join(dir, env.Files[0].Href))
			if err != nil {
				t.Fatal(err)
			}
			if env.Files[0].Size != fi.Size() {
				t.Errorf("ovf:size %d, file has %d bytes", env.Files[0].Size, fi.Size())
			}
			if len(env.Disks) != 1 || env.Disks[0].Capacity != tt.cap || env.Disks[0].FileRef != env.Files[0].ID ||
				!strings.HasSuffix(env.Disks[0].Format, "#streamOptimized") {
				t.Errorf("DiskSection = %+v, want capacity %d fileRef %s", env.Disks, tt.cap, env.Files[0].ID)
			}
			if len(env.Systems) != 1 || env.Systems[0].Name != name {
				t.Fatalf("VirtualSystem = %+v", env.Systems)
			}
			byType := map[int]int64{}
			for _, it := range env.Systems[0].Items {
				byType[it.ResourceType] = it.VirtualQuantity
			}
			if byType[3] != 1 || byType[4] != tt.mem {
				t.Errorf("CPU %d, memory %d MB; want 1 and %d", byType[3], byType[4], tt.mem)
			}
			if _, ok := byType[17]; !ok {
				t.Errorf("no disk item in %+v", env.Systems[0].Items)
			}
		})
	}
}

// vmdkImage is what readVMDK found in a stream-optimized file.
type vmdkImage struct {
	header, footer VMDKHeader
	descriptor     string
	disk           []byte // the virtual disk, capacity bytes
	grains         int
	markers        []uint32 // metadata marker types in file order
}

// readVMDK decodes a stream-optimized VMDK twice: sequentially, marker by
// marker, as a streaming consumer does, and through the footer's grain
// directory and grain tables, as a random-access reader does. Both views
// must give the same disk.
func readVMDK(t *testing.T, b []byte) vmdkImage {
	t.Helper()
	var img vmdkImage
	var err error
	if len(b)%SectorSize != 0 || len(b) < 4*SectorSize {
		t.Fatalf("vmdk size %d is not a sector multiple", len(b))
	}
	if img.header, err = ParseVMDKHeader(b); err != nil {
		t.Fatal(err)
	}
	h := img.header
	img.descriptor = string(bytes.TrimRight(b[h.DescriptorOffset*SectorSize:(h.DescriptorOffset+h.DescriptorSize)*SectorSize], "\x00"))
	capBytes := int64(h.Capacity) * SectorSize
	inflate := func(off int64) (uint64, []byte) {
		lba := binary.LittleEndian.Uint64(b[off:])
		size := binary.LittleEndian.Uint32(b[off+8:])
		zr, err := zlib.NewReader(bytes.NewReader(b[off+12 : off+12+int64(size)]))
		if err != nil {
			t.Fatalf("grain at byte %d: %v", off, err)
		}
		data, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("grain at byte %d: %v", off, err)
		}
		return lba, data
	}

	// Sequential walk.
	seq := make([]byte, capBytes)
	off := int64(h.OverHead) * SectorSize
	lastLBA := int64(-1)
	for {
		if off+SectorSize > int64(len(b)) {
			t.Fatalf("stream ends at byte %d without an end-of-stream marker", off)
		}
		val := binary.LittleEndian.Uint64(b[off:])
		size := binary.LittleEndian.Uint32(b[off+8:])
		if size != 0 {
			lba, data := inflate(off)
			if int64(lba) <= lastLBA || lba%h.GrainSize != 0 {
				t.Fatalf("grain lba %d after %d", lba, lastLBA)
			}
			lastLBA = int64(lba)
			copy(seq[lba*SectorSize:], data)
			img.grains++
			off += (12 + int64(size) + SectorSize - 1) / SectorSize * SectorSize
			continue
		}
		typ := binary.LittleEndian.Uint32(b[off+12:])
		img.markers = append(img.markers, typ)
		if typ == MarkerEOS {
			if off+SectorSize != int64(len(b)) {
				t.Fatalf("end-of-stream marker at byte %d, file has %d", off, len(b))
			}
			break
		}
		if typ == MarkerFooter {
			if img.footer, err = ParseVMDKHeader(b[off+SectorSize:]); err != nil {
				t.Fatal(err)
			}
		}
		off += SectorSize + int64(val)*SectorSize
	}

	// Random access through the footer's grain directory.
	f := img.footer
	if f.Magic != VMDKMagic || f.GDOffset == GDAtEnd {
		t.Fatalf("footer %+v", f)
	}
	if int64(len(b)) < 3*SectorSize || binary.LittleEndian.Uint32(b[len(b)-3*SectorSize+12:]) != MarkerFooter {
		t.Fatal("footer marker is not 1536 bytes before the end")
	}
	ra := make([]byte, capBytes)
	numGrains := (f.Capacity + f.GrainSize - 1) / f.GrainSize
	numGTs := (numGrains + uint64(f.NumGTEsPerGT) - 1) / uint64(f.NumGTEsPerGT)
	for g := uint64(0); g < numGrains; g++ {
		gtIdx, e := g/uint64(f.NumGTEsPerGT), g%uint64(f.NumGTEsPerGT)
		if gtIdx >= numGTs {
			t.Fatal("grain beyond the grain directory")
		}
		gtSector := binary.LittleEndian.Uint32(b[f.GDOffset*SectorSize+gtIdx*4:])
		if gtSector == 0 {
			continue
		}
		grainSector := binary.LittleEndian.Uint32(b[uint64(gtSector)*SectorSize+e*4:])
		if grainSector == 0 {
			continue
		}
		lba, data := inflate(int64(grainSector) * SectorSize)
		if lba != g*f.GrainSize {
			t.Fatalf("grain table entry %d points at grain lba %d", g, lba)
		}
		copy(ra[lba*SectorSize:], data)
	}
	if !bytes.Equal(seq, ra) {
		t.Fatal("sequential and grain-directory views of the disk differ")
	}
	img.disk = seq
	return img
}

func expectedDisk(seed, capacity, dataSize int64) []byte {
	want := make([]byte, capacity)
	_, _ = io.ReadFull(NewDataReader(seed), want[:dataSize])
	return want
}

func TestVMDKHeaderAndContents(t *testing.T) {
	tests := []struct {
		name      string
		opts      OVFOptions
		capSect   uint64
		dataBytes int64
		grains    int
		gts       int
	}{
		{"defaults", OVFOptions{Seed: 9}, 16384, 64 << 10, 1, 1},
		{"partial last grain", OVFOptions{Seed: 9, DiskCapacity: 100 << 10, DataSize: 100 << 10}, 200, 100 << 10, 2, 1},
		{"data not grain aligned", OVFOptions{Seed: 10, DataSize: 70000}, 16384, 70000, 2, 1},
		{"empty disk", OVFOptions{Seed: 9, DataSize: -1}, 16384, 0, 0, 1},
		{"two grain tables", OVFOptions{Seed: 11, DiskCapacity: 40 << 20, DataSize: 128 << 10}, 81920, 128 << 10, 2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, paths := writeTemplate(t, "hdr", tt.opts)
			b := readFile(t, paths[1])
			img := readVMDK(t, b)
			h := img.header
			if string(b[:4]) != "KDMV" || h.Version != 3 || h.Flags != 0x30001 || !h.StreamOptimized() {
				t.Errorf("magic %q version %d flags %#x", b[:4], h.Version, h.Flags)
			}
			if h.Capacity != tt.capSect || h.GrainSize != 128 || h.NumGTEsPerGT != 512 || h.CompressAlgorithm != 1 {
				t.Errorf("capacity %d grain %d GTEs %d compress %d", h.Capacity, h.GrainSize, h.NumGTEsPerGT, h.CompressAlgorithm)
			}
			if h.DescriptorOffset != 1 || h.DescriptorSize != 20 || h.OverHead != 128 || h.GDOffset != GDAtEnd || h.RGDOffset != 0 {
				t.Errorf("descriptor %d+%d overhead %d gd %#x rgd %d", h.DescriptorOffset, h.DescriptorSize, h.OverHead, h.GDOffset, h.RGDOffset)
			}
			if h.SingleEndLineChar != '\n' || h.NonEndLineChar != ' ' || h.DoubleEndLineChar != [2]byte{'\r', '\n'} {
				t.Errorf("newline detector %q %q %q", h.SingleEndLineChar, h.NonEndLineChar, h.DoubleEndLineChar)
			}
			f := img.footer
			f.GDOffset = GDAtEnd
			if f != h {
				t.Errorf("footer %+v differs from header %+v beyond gdOffset", img.footer, h)
			}
			// govmomi >= v0.47 (vmdk.Seek) parses only the 512 bytes after the header.
			firstSector := img.descriptor[:min(len(img.descriptor), SectorSize)]
			for _, want := range []string{`createType="streamOptimized"`, `RW ` + strconv.FormatUint(tt.capSect, 10) + ` SPARSE "hdr-disk1.vmdk"`, "CID="} {
				if !strings.Contains(firstSector, want) {
					t.Errorf("descriptor's first sector lacks %q:\n%s", want, firstSector)
				}
			}
			if img.grains != tt.grains {
				t.Errorf("%d grains, want %d", img.grains, tt.grains)
			}
			wantMarkers := []uint32{}
			for range tt.gts {
				wantMarkers = append(wantMarkers, MarkerGT)
			}
			wantMarkers = append(wantMarkers, MarkerGD, MarkerFooter, MarkerEOS)
			if !slices.Equal(img.markers, wantMarkers) {
				t.Errorf("markers %v, want %v", img.markers, wantMarkers)
			}
			if !bytes.Equal(img.disk, expectedDisk(tt.opts.Seed, int64(tt.capSect)*SectorSize, tt.dataBytes)) {
				t.Error("disk contents differ from the seed's data stream")
			}
		})
	}
}

// TestVMDKSparseGrains feeds a stream that is zero except for its end, so
// zero grains stay unallocated and data lands in the second grain table.
func TestVMDKSparseGrains(t *testing.T) {
	const capacity = 40 << 20
	dataSize := int64(32<<20 + 3*GrainSize)
	tail := make([]byte, 2*GrainSize)
	_, _ = io.ReadFull(NewDataReader(5), tail)
	data := io.MultiReader(io.LimitReader(zeroReader{}, dataSize-int64(len(tail))), bytes.NewReader(tail))
	var buf bytes.Buffer
	if err := writeStreamOptimized(&buf, "sparse.vmdk", capacity, data, dataSize, 1); err != nil {
		t.Fatal(err)
	}
	img := readVMDK(t, buf.Bytes())
	if img.grains != 2 {
		t.Errorf("%d grains allocated, want 2", img.grains)
	}
	want := make([]byte, capacity)
	copy(want[dataSize-int64(len(tail)):], tail)
	if !bytes.Equal(img.disk, want) {
		t.Error("disk contents differ")
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestVMDKQemuImg cross-checks the disk with qemu-img when it is installed
// (Debian qemu-utils); the pure-Go reader above covers the format otherwise.
func TestVMDKQemuImg(t *testing.T) {
	qemu, err := exec.LookPath("qemu-img")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("qemu-img not installed (CI installs qemu-utils: make tools-test)")
		}
		t.Skip("qemu-img not installed")
	}
	for _, opts := range []OVFOptions{{Seed: 1}, {Seed: 2, DiskCapacity: 100 << 10, DataSize: 100 << 10}, {Seed: 3, DiskCapacity: 40 << 20, DataSize: 200 << 10}} {
		dir, paths := writeTemplate(t, "q", opts)
		if out, err := exec.Command(qemu, "check", "-f", "vmdk", paths[1]).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img check: %v\n%s", err, out)
		}
		out, err := exec.Command(qemu, "info", "-f", "vmdk", paths[1]).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "create type: streamOptimized") {
			t.Fatalf("qemu-img info: %v\n%s", err, out)
		}
		raw := filepath.Join(dir, "raw")
		if out, err := exec.Command(qemu, "convert", "-f", "vmdk", "-O", "raw", paths[1], raw).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img convert: %v\n%s", err, out)
		}
		o := opts.withDefaults()
		if !bytes.Equal(readFile(t, raw), expectedDisk(o.Seed, o.DiskCapacity, o.DataSize)) {
			t.Errorf("seed %d: qemu-img reads different disk contents", opts.Seed)
		}
	}
}

func TestWriteOVFErrors(t *testing.T) {
	tests := []struct {
		name, tpl string
		opts      OVFOptions
		want      string
	}{
		{"empty name", "", OVFOptions{}, "name is empty"},
		{"slash", "a/b", OVFOptions{}, "not a plain file name"},
		{"dotdot", "..", OVFOptions{}, "not a plain file name"},
		{"odd capacity", "x", OVFOptions{DiskCapacity: 1000}, "multiple of 512"},
		{"negative capacity", "x", OVFOptions{DiskCapacity: -512}, "multiple of 512"},
		{"data too big", "x", OVFOptions{DiskCapacity: 1 << 20, DataSize: 2 << 20}, "larger than the disk capacity"},
		{"negative memory", "x", OVFOptions{MemoryMB: -1}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := WriteOVF(t.TempDir(), tt.tpl, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestWriteISO(t *testing.T) {
	tests := []struct {
		name string
		size int64
		seed int64
	}{
		{"minimum", MinISOSize, 1},
		{"64KiB", 64 << 10, 1},
		{"odd size", 100001, 2},
		{"negative seed", 1 << 20, -3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "a.iso")
			if err := WriteISO(p, tt.size, tt.seed); err != nil {
				t.Fatal(err)
			}
			b := readFile(t, p)
			if int64(len(b)) != tt.size {
				t.Fatalf("size %d, want %d", len(b), tt.size)
			}
			pvd := b[16*ISOBlockSize:]
			if pvd[0] != 1 || string(pvd[1:6]) != "CD001" || pvd[6] != 1 {
				t.Errorf("primary volume descriptor header %q", pvd[:7])
			}
			if got := binary.LittleEndian.Uint32(pvd[80:]); int64(got) != tt.size/ISOBlockSize {
				t.Errorf("volume space size %d, want %d", got, tt.size/ISOBlockSize)
			}
			if got := binary.BigEndian.Uint32(pvd[84:]); int64(got) != tt.size/ISOBlockSize {
				t.Errorf("volume space size (BE) %d", got)
			}
			if binary.LittleEndian.Uint16(pvd[128:]) != ISOBlockSize || pvd[156] != 34 || pvd[156+25] != 2 {
				t.Errorf("block size or root record wrong")
			}
			if term := b[17*ISOBlockSize:]; term[0] != 255 || string(term[1:6]) != "CD001" {
				t.Errorf("no set terminator at sector 17")
			}
			if !bytes.Equal(b[:16*ISOBlockSize], make([]byte, 16*ISOBlockSize)) {
				t.Error("system area is not empty")
			}

			q := filepath.Join(dir, "b.iso")
			if err := WriteISO(q, tt.size, tt.seed); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, readFile(t, q)) {
				t.Error("same seed gave different bytes")
			}
			r := filepath.Join(dir, "c.iso")
			if err := WriteISO(r, tt.size, tt.seed+1); err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(b, readFile(t, r)) {
				t.Error("different seeds gave equal bytes")
			}
		})
	}
	if err := WriteISO(filepath.Join(t.TempDir(), "x.iso"), MinISOSize-1, 1); err == nil || !strings.Contains(err.Error(), "smaller than the minimum") {
		t.Errorf("too small: err = %v", err)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		bad  bool
	}{
		{"65536", 65536, false},
		{"64K", 64 << 10, false},
		{"64KiB", 64 << 10, false},
		{"8M", 8 << 20, false},
		{"8MiB", 8 << 20, false},
		{"1G", 1 << 30, false},
		{"100B", 100, false},
		{"", 0, true},
		{"-1", 0, true},
		{"x", 0, true},
		{"1T", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v", tt.in, got, err)
		}
	}
}

func TestMainCommand(t *testing.T) {
	dir := t.TempDir()
	iso := filepath.Join(dir, "m.iso")
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr string
	}{
		{"template and iso", []string{"-dir", dir, "-name", "m", "-seed", "4", "-disk-capacity", "1M", "-data-size", "64K", "-iso", iso, "-iso-size", "48K"},
			ExitOK, []string{filepath.Join(dir, "m.ovf"), filepath.Join(dir, "m-disk1.vmdk"), filepath.Join(dir, "m.mf"), iso}, ""},
		{"nothing to do", nil, ExitUsage, nil, "nothing to do"},
		{"bad flag", []string{"-nope"}, ExitUsage, nil, "flag provided but not defined"},
		{"bad size", []string{"-name", "x", "-data-size", "lots"}, ExitUsage, nil, "invalid size"},
		{"extra args", []string{"-name", "x", "y"}, ExitUsage, nil, "unexpected arguments"},
		{"write error", []string{"-dir", dir, "-name", "x", "-disk-capacity", "1000"}, ExitWrite, nil, "multiple of 512"},
		{"help", []string{"-h"}, ExitOK, nil, "usage: mktemplate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(tt.args, &out, &errb)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.code, errb.String())
			}
			var lines []string
			sc := bufio.NewScanner(&out)
			for sc.Scan() {
				lines = append(lines, sc.Text())
			}
			if strings.Join(lines, "\n") != strings.Join(tt.stdout, "\n") {
				t.Errorf("stdout %q, want %q", lines, tt.stdout)
			}
			if !strings.Contains(errb.String(), tt.stderr) {
				t.Errorf("stderr %q lacks %q", errb.String(), tt.stderr)
			}
		})
	}
	if fi, err := os.Stat(iso); err != nil || fi.Size() != 48<<10 {
		t.Errorf("iso: %v %v", fi, err)
	}
}
