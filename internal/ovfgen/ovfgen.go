// Package ovfgen writes small, valid, deployable test fixtures for vSphere
// content libraries: an OVF 1.0 template (descriptor, one streamOptimized
// VMDK disk and a SHA256 .mf manifest) and an ISO9660-shaped image. All bytes
// are derived from a seed, so equal seeds give equal files and different
// seeds give different disks.
//
// The VMDK is a real stream-optimized sparse extent (VMware Virtual Disk
// Format 5.0): "KDMV" header version 3 with the compressed-grain and marker
// flags, an embedded descriptor, deflate-compressed grains of 64 KiB each
// preceded by a grain marker, grain tables and the grain directory announced
// by markers, gdOffset GD_AT_END in the header and the real offset in a
// footer, then an end-of-stream marker. vcsim refuses any other VMDK kind
// ("vmdk: invalid format (must be streamOptimized)").
package ovfgen

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
)

// Defaults used for zero OVFOptions fields.
const (
	DefaultDiskCapacity = 8 << 20
	DefaultDataSize     = 64 << 10
	DefaultMemoryMB     = 64
)

// OVFOptions shape the generated template.
type OVFOptions struct {
	// Seed selects the pseudo-random disk contents (and the VMDK CID).
	Seed int64
	// DiskCapacity is the virtual disk size in bytes, a multiple of 512
	// (0: DefaultDiskCapacity).
	DiskCapacity int64
	// DataSize is how many pseudo-random bytes are written at the start of
	// the disk; the rest of it is sparse (0: DefaultDataSize, negative: none).
	DataSize int64
	// MemoryMB is the VM memory (0: DefaultMemoryMB).
	MemoryMB int
}

func (o OVFOptions) withDefaults() OVFOptions {
	if o.DiskCapacity == 0 {
		o.DiskCapacity = DefaultDiskCapacity
	}
	switch {
	case o.DataSize == 0:
		o.DataSize = min(int64(DefaultDataSize), o.DiskCapacity)
	case o.DataSize < 0:
		o.DataSize = 0
	}
	if o.MemoryMB == 0 {
		o.MemoryMB = DefaultMemoryMB
	}
	return o
}

// OVFName is the descriptor file name of template name.
func OVFName(name string) string { return name + ".ovf" }

// DiskName is the disk file name of template name.
func DiskName(name string) string { return name + "-disk1.vmdk" }

// MFName is the manifest file name of template name.
func MFName(name string) string { return name + ".mf" }

// WriteOVF writes <name>.ovf, <name>-disk1.vmdk and <name>.mf into dir
// (created if missing) and returns their paths in that order.
func WriteOVF(dir, name string, opts OVFOptions) ([]string, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if opts.DiskCapacity < 0 || opts.DiskCapacity%SectorSize != 0 {
		return nil, fmt.Errorf("disk capacity %d is not a positive multiple of %d", opts.DiskCapacity, SectorSize)
	}
	if opts.DataSize > opts.DiskCapacity {
		return nil, fmt.Errorf("data size %d is larger than the disk capacity %d", opts.DataSize, opts.DiskCapacity)
	}
	if opts.MemoryMB < 0 {
		return nil, fmt.Errorf("memory %d MB is negative", opts.MemoryMB)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}

	diskPath := filepath.Join(dir, DiskName(name))
	diskSum, diskSize, err := writeHashed(diskPath, func(w io.Writer) error {
		return writeStreamOptimized(w, DiskName(name), opts.DiskCapacity, NewDataReader(opts.Seed), opts.DataSize, diskCID(opts.Seed))
	})
	if err != nil {
		return nil, err
	}

	var ovf strings.Builder
	err = ovfTemplate.Execute(&ovf, ovfData{
		Name:     name,
		DiskFile: DiskName(name),
		DiskSize: diskSize,
		Capacity: opts.DiskCapacity,
		MemoryMB: opts.MemoryMB,
		Seed:     opts.Seed,
	})
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", OVFName(name), err)
	}
	ovfPath := filepath.Join(dir, OVFName(name))
	ovfSum, _, err := writeHashed(ovfPath, func(w io.Writer) error {
		_, err := io.WriteString(w, ovf.String())
		return err
	})
	if err != nil {
		return nil, err
	}

	mf := fmt.Sprintf("SHA256(%s)= %s\nSHA256(%s)= %s\n", OVFName(name), ovfSum, DiskName(name), diskSum)
	mfPath := filepath.Join(dir, MFName(name))
	if err := os.WriteFile(mfPath, []byte(mf), 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", mfPath, err)
	}
	return []string{ovfPath, diskPath, mfPath}, nil
}

func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("template name is empty")
	case name == "." || name == ".." || strings.ContainsAny(name, `/\`+"\x00"):
		return fmt.Errorf("template name %q is not a plain file name", name)
	}
	return nil
}

// writeHashed creates path, lets fill write it and returns the hex SHA256
// and size of what was written.
func writeHashed(path string, fill func(io.Writer) error) (string, int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return "", 0, fmt.Errorf("create %s: %w", path, err)
	}
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	if err := fill(cw); err != nil {
		_ = f.Close()
		return "", 0, fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", 0, fmt.Errorf("close %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// dataReader is an endless pseudo-random byte stream.
type dataReader struct {
	r   *rand.Rand
	buf [8]byte
	n   int // unread bytes at the end of buf
}

// NewDataReader returns the endless pseudo-random stream WriteOVF puts on the
// disk and WriteISO pads with for seed (PCG, stable across Go releases).
func NewDataReader(seed int64) io.Reader {
	return &dataReader{r: rand.New(rand.NewPCG(uint64(seed), 0x6f766667656e3031))}
}

func (d *dataReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if d.n == 0 {
			v := d.r.Uint64()
			for i := range d.buf {
				d.buf[i] = byte(v >> (8 * i))
			}
			d.n = len(d.buf)
		}
		c := copy(p[n:], d.buf[len(d.buf)-d.n:])
		d.n -= c
		n += c
	}
	return n, nil
}

func diskCID(seed int64) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte("ovfgen-cid-" + strconv.FormatInt(seed, 10)))
	return h.Sum32()
}

type ovfData struct {
	Name     string
	DiskFile string
	DiskSize int64
	Capacity int64
	MemoryMB int
	Seed     int64
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

var ovfTemplate = template.Must(template.New("ovf").Funcs(template.FuncMap{"x": xmlEscape}).Parse(
	`<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"
          xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
          xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
          xmlns:vmw="http://www.vmware.com/schema/ovf"
          xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
          xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="{{x .DiskFile}}" ovf:id="file1" ovf:size="{{.DiskSize}}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{{.Capacity}}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="{{x .Name}}">
    <Info>A virtual machine</Info>
    <Name>{{x .Name}}</Name>
    <AnnotationSection>
      <Info>A human-readable annotation</Info>
      <Annotation>Test template generated by ovfgen (seed {{.Seed}})</Annotation>
    </AnnotationSection>
    <OperatingSystemSection ovf:id="1" vmw:osType="otherGuest">
      <Info>The kind of installed guest operating system</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{{x .Name}}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-10</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of Virtual CPUs</rasd:Description>
        <rasd:ElementName>1 virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>1</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>{{.MemoryMB}}MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{{.MemoryMB}}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI Controller</rasd:Description>
        <rasd:ElementName>SCSI Controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard Disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`))
