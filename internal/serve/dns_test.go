package serve

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// startDNS runs a minimal DNS server over TCP on 127.0.0.1 (Pebble's
// -dnsserver client uses TCP) that answers every A question with 127.0.0.1
// and every other question with an empty NOERROR answer. It returns its
// address.
func startDNS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go serveDNSConn(conn)
		}
	}()
	return ln.Addr().String()
}

func serveDNSConn(conn net.Conn) {
	defer conn.Close()
	for {
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		var n uint16
		if err := binary.Read(conn, binary.BigEndian, &n); err != nil {
			return
		}
		q := make([]byte, n)
		if _, err := io.ReadFull(conn, q); err != nil {
			return
		}
		resp, err := dnsAnswer(q)
		if err != nil {
			return
		}
		out := binary.BigEndian.AppendUint16(nil, uint16(len(resp)))
		if _, err := conn.Write(append(out, resp...)); err != nil {
			return
		}
	}
}

// dnsAnswer builds the response to the one-question query q (RFC 1035
// section 4.1).
func dnsAnswer(q []byte) ([]byte, error) {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil, errors.New("dns: want exactly one question")
	}
	i := 12
	for {
		if i >= len(q) {
			return nil, errors.New("dns: short name")
		}
		l := int(q[i])
		if l == 0 {
			i++
			break
		}
		if l&0xC0 != 0 {
			return nil, errors.New("dns: compressed question name")
		}
		i += 1 + l
	}
	if i+4 > len(q) {
		return nil, errors.New("dns: short question")
	}
	qtype := binary.BigEndian.Uint16(q[i : i+2])
	question := q[12 : i+4]

	ancount := uint16(0)
	if qtype == 1 { // A
		ancount = 1
	}
	resp := []byte{
		q[0], q[1], // id
		0x80 | q[2]&0x79 | 0x04, // QR, opcode and RD from the query, AA
		0x80,                    // RA, NOERROR
		0, 1,                    // QDCOUNT
		0, byte(ancount), // ANCOUNT
		0, 0, 0, 0, // NSCOUNT, ARCOUNT
	}
	resp = append(resp, question...)
	if ancount == 1 {
		resp = append(resp,
			0xC0, 12, // pointer to the question name
			0, 1, // A
			0, 1, // IN
			0, 0, 0, 60, // TTL
			0, 4, // RDLENGTH
			127, 0, 0, 1,
		)
	}
	return resp, nil
}

func TestDNSAnswer(t *testing.T) {
	// A query for "a.test" type A, class IN, RD set.
	q := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'a', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1}
	resp, err := dnsAnswer(q)
	if err != nil {
		t.Fatal(err)
	}
	if resp[0] != 0x12 || resp[1] != 0x34 || resp[2]&0x80 == 0 || resp[2]&0x01 == 0 || resp[7] != 1 {
		t.Fatalf("header % x", resp[:12])
	}
	if got := resp[len(resp)-4:]; !net.IP(got).Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("address % x", got)
	}
	q[len(q)-3] = 28 // AAAA
	resp, err = dnsAnswer(q)
	if err != nil || resp[7] != 0 || len(resp) != len(q) {
		t.Fatalf("AAAA: % x, %v", resp, err)
	}
	if _, err := dnsAnswer(q[:15]); err == nil {
		t.Fatal("short query accepted")
	}
}
