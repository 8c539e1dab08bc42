package ovfgen

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// ISO9660 layout written by WriteISO.
const (
	ISOBlockSize = 2048
	isoPVDLBA    = 16 // primary volume descriptor
	isoTermLBA   = 17 // volume descriptor set terminator
	isoRootLBA   = 18 // root directory extent
	isoLPathLBA  = 19 // type L path table
	isoMPathLBA  = 20 // type M path table
	// MinISOSize is the smallest size WriteISO accepts: the system area,
	// the descriptors, the root directory and both path tables.
	MinISOSize = (isoMPathLBA + 1) * ISOBlockSize
)

// WriteISO writes an ISO9660-shaped image of exactly size bytes to path: an
// empty system area, a primary volume descriptor ("CD001") at sector 16, the
// set terminator, an empty root directory and its path tables, then
// pseudo-random data derived from seed up to size.
func WriteISO(path string, size int64, seed int64) error {
	if size < MinISOSize {
		return fmt.Errorf("iso size %d is smaller than the minimum %d", size, MinISOSize)
	}
	if size/ISOBlockSize > math.MaxUint32 {
		return fmt.Errorf("iso size %d is too large for ISO9660", size)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	err = writeISO(bw, size, seed)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func writeISO(w io.Writer, size, seed int64) error {
	blocks := uint32(size / ISOBlockSize)
	head := make([]byte, MinISOSize)

	pvd := head[isoPVDLBA*ISOBlockSize : (isoPVDLBA+1)*ISOBlockSize]
	pvd[0] = 1
	copy(pvd[1:6], "CD001")
	pvd[6] = 1
	padCopy(pvd[8:40], "OVFGEN")
	padCopy(pvd[40:72], isoVolumeID(seed))
	both32(pvd[80:88], blocks)
	both16(pvd[120:124], 1) // volume set size
	both16(pvd[124:128], 1) // volume sequence number
	both16(pvd[128:132], ISOBlockSize)
	both32(pvd[132:140], 10) // path table size: one root record
	binary.LittleEndian.PutUint32(pvd[140:144], isoLPathLBA)
	binary.BigEndian.PutUint32(pvd[148:152], isoMPathLBA)
	dirRecord(pvd[156:190], isoRootLBA, 0)
	padCopy(pvd[190:318], "") // volume set identifier
	padCopy(pvd[318:446], "") // publisher identifier
	padCopy(pvd[446:574], "") // data preparer identifier
	padCopy(pvd[574:702], "OVFGEN")
	padCopy(pvd[702:813], "") // copyright, abstract, bibliographic file identifiers
	for _, off := range []int{813, 830, 847, 864} {
		copy(pvd[off:off+16], "0000000000000000") // dates: not specified
	}
	pvd[881] = 1 // file structure version

	term := head[isoTermLBA*ISOBlockSize:]
	term[0] = 255
	copy(term[1:6], "CD001")
	term[6] = 1

	root := head[isoRootLBA*ISOBlockSize:]
	dirRecord(root[0:34], isoRootLBA, 0)  // "."
	dirRecord(root[34:68], isoRootLBA, 1) // ".."

	lpath := head[isoLPathLBA*ISOBlockSize:]
	lpath[0] = 1
	binary.LittleEndian.PutUint32(lpath[2:6], isoRootLBA)
	binary.LittleEndian.PutUint16(lpath[6:8], 1)
	mpath := head[isoMPathLBA*ISOBlockSize:]
	mpath[0] = 1
	binary.BigEndian.PutUint32(mpath[2:6], isoRootLBA)
	binary.BigEndian.PutUint16(mpath[6:8], 1)

	if _, err := w.Write(head); err != nil {
		return err
	}
	_, err := io.CopyN(w, NewDataReader(seed), size-MinISOSize)
	return err
}

// dirRecord writes a 34-byte directory record for the root directory extent
// with the one-byte file identifier id (0 for ".", 1 for "..").
func dirRecord(b []byte, lba uint32, id byte) {
	b[0] = 34
	both32(b[2:10], lba)
	both32(b[10:18], ISOBlockSize)
	b[18] = 70 // recording date: 1970-01-01 00:00:00 GMT
	b[19] = 1
	b[20] = 1
	b[25] = 2 // directory
	both16(b[28:32], 1)
	b[32] = 1
	b[33] = id
}

func isoVolumeID(seed int64) string {
	return "OVFGEN_" + strings.ToUpper(strconv.FormatUint(uint64(seed), 16))
}

func padCopy(b []byte, s string) {
	for i := range b {
		b[i] = ' '
	}
	copy(b, s)
}

func both16(b []byte, v uint16) {
	binary.LittleEndian.PutUint16(b[0:], v)
	binary.BigEndian.PutUint16(b[2:], v)
}

func both32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b[0:], v)
	binary.BigEndian.PutUint32(b[4:], v)
}
