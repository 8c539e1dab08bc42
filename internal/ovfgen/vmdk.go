package ovfgen

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"io"
)

// VMDK layout constants (VMware Virtual Disk Format 5.0, "Stream-Optimized
// Compressed Sparse Extents").
const (
	SectorSize = 512
	// GrainSectors is the grain size in sectors (64 KiB grains).
	GrainSectors = 128
	// GrainSize is the grain size in bytes.
	GrainSize = GrainSectors * SectorSize
	// GTEsPerGT is the number of grain table entries per grain table.
	GTEsPerGT = 512

	// VMDKMagic is SPARSE_MAGICNUMBER ("KDMV" on disk).
	VMDKMagic = 0x564d444b
	// VMDKVersion is the header version written (3: streamOptimized).
	VMDKVersion = 3

	// Header flags.
	FlagValidNewlineTest = 1 << 0
	FlagCompressed       = 1 << 16
	FlagMarkers          = 1 << 17

	// GDAtEnd in the header's gdOffset says the grain directory location is
	// in the footer.
	GDAtEnd = ^uint64(0)

	// CompressDeflate is compressAlgorithm 1: RFC 1950 zlib streams.
	CompressDeflate = 1

	// DescriptorOffset and DescriptorSectors place the embedded descriptor
	// (sectors 1..20, as VMware and qemu-img write it).
	DescriptorOffset  = 1
	DescriptorSectors = 20
	// OverheadSectors is where the first grain starts (grain aligned).
	OverheadSectors = 128

	// Marker types.
	MarkerEOS    = 0
	MarkerGT     = 1
	MarkerGD     = 2
	MarkerFooter = 3
)

// VMDKHeader is the decoded SparseExtentHeader of a VMDK file.
type VMDKHeader struct {
	Magic             uint32
	Version           uint32
	Flags             uint32
	Capacity          uint64 // sectors
	GrainSize         uint64 // sectors
	DescriptorOffset  uint64 // sectors
	DescriptorSize    uint64 // sectors
	NumGTEsPerGT      uint32
	RGDOffset         uint64
	GDOffset          uint64
	OverHead          uint64
	UncleanShutdown   uint8
	SingleEndLineChar byte
	NonEndLineChar    byte
	DoubleEndLineChar [2]byte
	CompressAlgorithm uint16
}

// StreamOptimized reports whether h is a compressed sparse header with
// markers, the only VMDK kind vcsim and vCenter import.
func (h VMDKHeader) StreamOptimized() bool {
	return h.Magic == VMDKMagic && h.Flags&FlagCompressed != 0 && h.Flags&FlagMarkers != 0
}

func (h VMDKHeader) marshal() []byte {
	b := make([]byte, SectorSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], h.Magic)
	le.PutUint32(b[4:], h.Version)
	le.PutUint32(b[8:], h.Flags)
	le.PutUint64(b[12:], h.Capacity)
	le.PutUint64(b[20:], h.GrainSize)
	le.PutUint64(b[28:], h.DescriptorOffset)
	le.PutUint64(b[36:], h.DescriptorSize)
	le.PutUint32(b[44:], h.NumGTEsPerGT)
	le.PutUint64(b[48:], h.RGDOffset)
	le.PutUint64(b[56:], h.GDOffset)
	le.PutUint64(b[64:], h.OverHead)
	b[72] = h.UncleanShutdown
	b[73] = h.SingleEndLineChar
	b[74] = h.NonEndLineChar
	b[75] = h.DoubleEndLineChar[0]
	b[76] = h.DoubleEndLineChar[1]
	le.PutUint16(b[77:], h.CompressAlgorithm)
	return b
}

// ParseVMDKHeader decodes the first 512 bytes of a sparse VMDK (or the footer
// copy of the header). It fails only when b is too short; check Magic and
// StreamOptimized for the kind.
func ParseVMDKHeader(b []byte) (VMDKHeader, error) {
	if len(b) < 79 {
		return VMDKHeader{}, fmt.Errorf("vmdk header: %d bytes, need at least 79", len(b))
	}
	le := binary.LittleEndian
	return VMDKHeader{
		Magic:             le.Uint32(b[0:]),
		Version:           le.Uint32(b[4:]),
		Flags:             le.Uint32(b[8:]),
		Capacity:          le.Uint64(b[12:]),
		GrainSize:         le.Uint64(b[20:]),
		DescriptorOffset:  le.Uint64(b[28:]),
		DescriptorSize:    le.Uint64(b[36:]),
		NumGTEsPerGT:      le.Uint32(b[44:]),
		RGDOffset:         le.Uint64(b[48:]),
		GDOffset:          le.Uint64(b[56:]),
		OverHead:          le.Uint64(b[64:]),
		UncleanShutdown:   b[72],
		SingleEndLineChar: b[73],
		NonEndLineChar:    b[74],
		DoubleEndLineChar: [2]byte{b[75], b[76]},
		CompressAlgorithm: le.Uint16(b[77:]),
	}, nil
}

// metaMarker is a whole-sector marker announcing numSectors of metadata of
// the given type (size field 0).
func metaMarker(numSectors uint64, typ uint32) []byte {
	b := make([]byte, SectorSize)
	binary.LittleEndian.PutUint64(b[0:], numSectors)
	binary.LittleEndian.PutUint32(b[12:], typ)
	return b
}

// sectorWriter tracks the write position, which is always sector aligned
// between writes of whole structures.
type sectorWriter struct {
	w   *bufio.Writer
	off int64
	err error
}

func (s *sectorWriter) write(b []byte) {
	if s.err != nil {
		return
	}
	n, err := s.w.Write(b)
	s.off += int64(n)
	s.err = err
}

// pad writes zeros up to the next sector boundary.
func (s *sectorWriter) pad() {
	if r := s.off % SectorSize; r != 0 {
		s.write(make([]byte, SectorSize-r))
	}
}

func (s *sectorWriter) sector() uint64 { return uint64(s.off / SectorSize) }

// vmdkDescriptor renders the embedded descriptor.
func vmdkDescriptor(fileName string, capSectors uint64, cid uint32) string {
	cyl := capSectors / (255 * 63)
	if cyl == 0 {
		cyl = 1
	}
	return fmt.Sprintf(`# Disk DescriptorFile
version=1
encoding="UTF-8"
CID=%08x
parentCID=ffffffff
createType="streamOptimized"

# Extent description
RW %d SPARSE "%s"

# The Disk Data Base
#DDB

ddb.adapterType = "lsilogic"
ddb.geometry.cylinders = "%d"
ddb.geometry.heads = "255"
ddb.geometry.sectors = "63"
ddb.virtualHWVersion = "4"
`, cid, capSectors, fileName, cyl)
}

// writeStreamOptimized writes a streamOptimized sparse extent of capacity
// bytes whose first len(data) bytes come from data (dataSize bytes) and whose
// rest reads as zeros. Grains that are entirely zero are left unallocated.
// The grain directory location is given in the footer (gdOffset GD_AT_END
// in the header), each grain table follows the last grain it covers.
func writeStreamOptimized(w io.Writer, fileName string, capacity int64, data io.Reader, dataSize int64, cid uint32) error {
	if capacity <= 0 || capacity%SectorSize != 0 {
		return fmt.Errorf("vmdk capacity %d is not a positive multiple of %d", capacity, SectorSize)
	}
	if dataSize < 0 || dataSize > capacity {
		return fmt.Errorf("vmdk data size %d outside 0..%d", dataSize, capacity)
	}
	capSectors := uint64(capacity / SectorSize)
	numGrains := (capSectors + GrainSectors - 1) / GrainSectors
	numGTs := (numGrains + GTEsPerGT - 1) / GTEsPerGT
	gtSectors := uint64(GTEsPerGT * 4 / SectorSize)
	gdSectors := (numGTs*4 + SectorSize - 1) / SectorSize

	hdr := VMDKHeader{
		Magic:             VMDKMagic,
		Version:           VMDKVersion,
		Flags:             FlagValidNewlineTest | FlagCompressed | FlagMarkers,
		Capacity:          capSectors,
		GrainSize:         GrainSectors,
		DescriptorOffset:  DescriptorOffset,
		DescriptorSize:    DescriptorSectors,
		NumGTEsPerGT:      GTEsPerGT,
		GDOffset:          GDAtEnd,
		OverHead:          OverheadSectors,
		SingleEndLineChar: '\n',
		NonEndLineChar:    ' ',
		DoubleEndLineChar: [2]byte{'\r', '\n'},
		CompressAlgorithm: CompressDeflate,
	}
	desc := vmdkDescriptor(fileName, capSectors, cid)
	if len(desc) > DescriptorSectors*SectorSize {
		return fmt.Errorf("vmdk descriptor is %d bytes, more than %d", len(desc), DescriptorSectors*SectorSize)
	}

	sw := &sectorWriter{w: bufio.NewWriterSize(w, 256<<10)}
	sw.write(hdr.marshal())
	descBuf := make([]byte, DescriptorSectors*SectorSize)
	copy(descBuf, desc)
	sw.write(descBuf)
	sw.write(make([]byte, (OverheadSectors-DescriptorOffset-DescriptorSectors)*SectorSize))

	gd := make([]uint32, numGTs)
	gt := make([]uint32, GTEsPerGT)
	grain := make([]byte, GrainSize)
	var comp bytes.Buffer
	zw, err := zlib.NewWriterLevel(&comp, zlib.DefaultCompression)
	if err != nil {
		return fmt.Errorf("vmdk: zlib writer: %w", err)
	}
	remaining := dataSize
	for t := uint64(0); t < numGTs; t++ {
		clear(gt)
		for e := uint64(0); e < GTEsPerGT; e++ {
			g := t*GTEsPerGT + e
			if g >= numGrains || remaining <= 0 {
				break
			}
			lba := g * GrainSectors
			glen := int64(GrainSize)
			if left := int64(capSectors-lba) * SectorSize; left < glen {
				glen = left
			}
			buf := grain[:glen]
			clear(buf)
			n := min(remaining, glen)
			if _, err := io.ReadFull(data, buf[:n]); err != nil {
				return fmt.Errorf("vmdk: read grain data: %w", err)
			}
			remaining -= n
			if allZero(buf) {
				continue
			}
			comp.Reset()
			zw.Reset(&comp)
			if _, err := zw.Write(buf); err != nil {
				return fmt.Errorf("vmdk: compress grain: %w", err)
			}
			if err := zw.Close(); err != nil {
				return fmt.Errorf("vmdk: compress grain: %w", err)
			}
			gt[e] = uint32(sw.sector())
			var m [12]byte
			binary.LittleEndian.PutUint64(m[0:], lba)
			binary.LittleEndian.PutUint32(m[8:], uint32(comp.Len()))
			sw.write(m[:])
			sw.write(comp.Bytes())
			sw.pad()
		}
		sw.write(metaMarker(gtSectors, MarkerGT))
		gd[t] = uint32(sw.sector())
		sw.write(u32s(gt, gtSectors))
	}

	sw.write(metaMarker(gdSectors, MarkerGD))
	gdSector := sw.sector()
	sw.write(u32s(gd, gdSectors))

	footer := hdr
	footer.GDOffset = gdSector
	sw.write(metaMarker(1, MarkerFooter))
	sw.write(footer.marshal())
	sw.write(metaMarker(0, MarkerEOS))
	if sw.err != nil {
		return fmt.Errorf("vmdk: write: %w", sw.err)
	}
	if err := sw.w.Flush(); err != nil {
		return fmt.Errorf("vmdk: write: %w", err)
	}
	return nil
}

// u32s encodes v little-endian into sectors whole sectors.
func u32s(v []uint32, sectors uint64) []byte {
	b := make([]byte, sectors*SectorSize)
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], x)
	}
	return b
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
