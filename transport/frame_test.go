package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestFrameRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte{0xab, 0x01, 0x7f}, 400_000) // > smallFrame and > readChunk
	frames := []Frame{
		{Type: MsgHello, ID: 1, Payload: []byte("edge-1")},
		{Type: MsgPing, Flags: 0x5a, ID: 1<<64 - 1},
		{Type: MsgModelStatus, ID: 7, Payload: []byte{1}},
		{Type: MsgInfer, ID: 42, Payload: big},
		{Type: MsgProfile, ID: 3, Payload: []byte(`{"ok":true}`)},
	}
	var buf bytes.Buffer
	for _, f := range frames {
		if err := WriteFrame(&buf, f); err != nil {
			t.Fatalf("write %s: %v", f.Type, err)
		}
	}
	wantLen := 0
	for _, f := range frames {
		wantLen += HeaderSize + len(f.Payload)
	}
	if buf.Len() != wantLen {
		t.Fatalf("wrote %d bytes, want %d", buf.Len(), wantLen)
	}
	for _, want := range frames {
		got, err := ReadFrame(&buf, DefaultLimits())
		if err != nil {
			t.Fatalf("read %s: %v", want.Type, err)
		}
		if got.Type != want.Type || got.Flags != want.Flags || got.ID != want.ID || !bytes.Equal(got.Payload, want.Payload) {
			t.Errorf("read %s/%d/%d (%d bytes), wrote %s/%d/%d (%d bytes)",
				got.Type, got.Flags, got.ID, len(got.Payload), want.Type, want.Flags, want.ID, len(want.Payload))
		}
	}
	if _, err := ReadFrame(&buf, DefaultLimits()); err != io.EOF {
		t.Errorf("read past the last frame: %v, want io.EOF", err)
	}
}

// TestFrameHeaderLayout pins the documented wire header byte for byte.
func TestFrameHeaderLayout(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, Frame{Type: MsgPong, Flags: 3, ID: 0x0102030405060708, Payload: []byte("xyz")}); err != nil {
		t.Fatal(err)
	}
	want := []byte{'T', 'R', 1, byte(MsgPong), 3, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 3, 'x', 'y', 'z'}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("wire bytes\n got %v\nwant %v", buf.Bytes(), want)
	}
	if h := AppendHeader(nil, Frame{Type: MsgPong, Flags: 3, ID: 0x0102030405060708, Payload: []byte("xyz")}); !bytes.Equal(h, want[:HeaderSize]) {
		t.Errorf("AppendHeader = %v", h)
	}
}

func header(magic string, version, typ, flags byte, reserved [3]byte, id uint64, n uint32) []byte {
	h := append([]byte(magic), version, typ, flags)
	h = append(h, reserved[:]...)
	h = binary.BigEndian.AppendUint64(h, id)
	return binary.BigEndian.AppendUint32(h, n)
}

func TestReadFrameMalformed(t *testing.T) {
	lim := DefaultLimits()
	lim.MaxPayload = 1000
	ok := header("TR", 1, byte(MsgPing), 0, [3]byte{}, 9, 4)
	cases := []struct {
		name string
		in   []byte
		want error  // errors.Is target, or nil to check only that it fails
		text string // substring of the message
	}{
		{"bad magic", header("XR", 1, byte(MsgPing), 0, [3]byte{}, 1, 0), ErrBadMagic, "magic"},
		{"http", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), ErrBadMagic, "magic"},
		{"bad version", header("TR", 2, byte(MsgPing), 0, [3]byte{}, 1, 0), ErrBadVersion, "version 2"},
		{"version 0", header("TR", 0, byte(MsgPing), 0, [3]byte{}, 1, 0), ErrBadVersion, ""},
		{"type 0", header("TR", 1, 0, 0, [3]byte{}, 1, 0), ErrUnknownType, "type 0"},
		{"type past end", header("TR", 1, byte(msgTypeEnd), 0, [3]byte{}, 1, 0), ErrUnknownType, ""},
		{"type 255", header("TR", 1, 255, 0, [3]byte{}, 1, 0), ErrUnknownType, ""},
		{"reserved set", header("TR", 1, byte(MsgPing), 0, [3]byte{0, 1, 0}, 1, 0), ErrBadHeader, "reserved"},
		{"too large", header("TR", 1, byte(MsgInfer), 0, [3]byte{}, 1, 1001), ErrFrameTooLarge, "1001 bytes, limit 1000"},
		{"4 GiB", header("TR", 1, byte(MsgInfer), 0, [3]byte{}, 1, 1<<32-1), ErrFrameTooLarge, ""},
		{"truncated header", ok[:11], io.ErrUnexpectedEOF, "header"},
		{"truncated payload", append(ok, 'a', 'b'), io.ErrUnexpectedEOF, "payload"},
		{"no payload", ok, io.ErrUnexpectedEOF, "payload"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := ReadFrame(bytes.NewReader(c.in), lim)
			if err == nil {
				t.Fatalf("ReadFrame accepted it: %+v", f)
			}
			if !errors.Is(err, c.want) {
				t.Errorf("error %q is not %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.text) {
				t.Errorf("error %q does not mention %q", err, c.text)
			}
		})
	}
}

func TestWriteFrameRejects(t *testing.T) {
	var buf bytes.Buffer
	for _, typ := range []MsgType{0, msgTypeEnd, 200} {
		if err := WriteFrame(&buf, Frame{Type: typ}); !errors.Is(err, ErrUnknownType) {
			t.Errorf("WriteFrame(type %d) = %v, want ErrUnknownType", typ, err)
		}
	}
	if buf.Len() != 0 {
		t.Errorf("rejected frames wrote %d bytes", buf.Len())
	}
}

// TestReadFrameLyingLength sends headers that claim far more payload than
// follows and checks the reader allocates in proportion to what arrived,
// not to what was claimed.
func TestReadFrameLyingLength(t *testing.T) {
	lim := DefaultLimits()
	lim.MaxPayload = 1<<32 - 1 // the header field's maximum: 4 GiB
	claim := header("TR", 1, byte(MsgBulkUp), 0, [3]byte{}, 1, 1<<32-1)
	in := append(claim, make([]byte, 100)...)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 10 {
		if _, err := ReadFrame(bytes.NewReader(in), lim); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("ReadFrame = %v, want unexpected EOF", err)
		}
	}
	runtime.ReadMemStats(&after)
	if perRead := (after.TotalAlloc - before.TotalAlloc) / 10; perRead > 1<<20+4096 {
		t.Errorf("reading a header claiming 4 GiB allocated %d bytes per read, want <= 1 MiB", perRead)
	}

	// A liar that does send 3 MiB makes the reader hold at most twice that
	// (4 MiB), having allocated 1+2+4 MiB on the way.
	in = append(claim, make([]byte, 3<<20)...)
	runtime.ReadMemStats(&before)
	if _, err := ReadFrame(bytes.NewReader(in), lim); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("ReadFrame = %v, want unexpected EOF", err)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 8<<20 {
		t.Errorf("3 MiB of a claimed 4 GiB payload allocated %d bytes", n)
	}

	// Over the limit: rejected before any payload buffer exists.
	lim.MaxPayload = 1 << 20
	allocs := testing.AllocsPerRun(20, func() {
		_, _ = ReadFrame(bytes.NewReader(claim), lim)
	})
	// The allocations left are the reader and the error message.
	if allocs > 12 {
		t.Errorf("rejecting an oversized frame made %v allocations", allocs)
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 20 {
		_, _ = ReadFrame(bytes.NewReader(claim), lim)
	}
	runtime.ReadMemStats(&m)
	if n := (m.TotalAlloc - before.TotalAlloc) / 20; n > 4096 {
		t.Errorf("rejecting an oversized frame allocated %d bytes", n)
	}
}

// TestFrameOverConn sends frames both ways over a real loopback TCP
// connection, with concurrent writers on each side serialised by the
// caller as WriteFrame asks.
func TestFrameOverConn(t *testing.T) {
	client, server := tcpPair(t)
	const n = 50
	payload := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, i*1371) }
	errc := make(chan error, 1)
	go func() {
		for range n {
			f, err := ReadFrame(server, DefaultLimits())
			if err != nil {
				errc <- err
				return
			}
			f.Type = MsgPong
			if err := WriteFrame(server, f); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	go func() {
		for i := range n {
			if err := WriteFrame(client, Frame{Type: MsgPing, ID: uint64(i), Payload: payload(i)}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := range n {
		f, err := ReadFrame(client, DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		if f.Type != MsgPong || f.ID != uint64(i) || !bytes.Equal(f.Payload, payload(i)) {
			t.Fatalf("frame %d: got %s id %d with %d bytes", i, f.Type, f.ID, len(f.Payload))
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	acc := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		acc <- res{c, err}
	}()
	client, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r := <-acc
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() {
		client.Close()
		r.c.Close()
	})
	return client, r.c
}

func TestMsgTypeNames(t *testing.T) {
	seen := map[string]bool{}
	for typ := MsgHello; typ < msgTypeEnd; typ++ {
		s := typ.String()
		if s == "" || strings.HasPrefix(s, "msg(") || seen[s] {
			t.Errorf("type %d has name %q", typ, s)
		}
		seen[s] = true
	}
	if s := MsgType(99).String(); s != "msg(99)" {
		t.Errorf("MsgType(99) = %q", s)
	}
}

func BenchmarkFrame(b *testing.B) {
	for _, size := range []int{64, 64 << 10, 4 << 20} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			client, server := tcpPair(b)
			payload := make([]byte, size)
			done := make(chan error, 1)
			go func() {
				for {
					if _, err := ReadFrame(server, DefaultLimits()); err != nil {
						done <- err
						return
					}
				}
			}()
			b.SetBytes(int64(size + HeaderSize))
			b.ResetTimer()
			for i := range b.N {
				if err := WriteFrame(client, Frame{Type: MsgBulkUp, ID: uint64(i), Payload: payload}); err != nil {
					b.Fatal(err)
				}
			}
			// The reader sees EOF only after it has read every frame.
			client.Close()
			<-done
		})
	}
}
