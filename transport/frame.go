// Package transport carries tracr's split inference between the edge and
// the server: the framed binary wire protocol, the tensor codecs (raw, fp16,
// int8, each optionally zstd or lz4 compressed, and JPEG for image inputs),
// the SSH client and server that speak the protocol, and an emulated link
// (bandwidth, delay, traces) that wraps a net.Conn. It carries frames to a
// Handler and knows nothing of models, plans or ONNX Runtime: the server's
// tail executor is runtime.TailHandler.
//
// # Frames
//
// Every message is one frame: a fixed 20-byte big-endian header followed by
// the payload.
//
//	offset size field
//	0      2    magic "TR"
//	2      1    protocol version (ProtocolVersion)
//	3      1    message type (MsgType)
//	4      1    flags (per message type; 0 unless documented)
//	5      3    reserved, must be zero
//	8      8    request id (a reply carries the id of its request)
//	16     4    payload length in bytes
//	20     n    payload
//
// The reader checks the magic, the version, the type, the reserved bytes and
// the length against Limits.MaxPayload before it allocates anything, and it
// grows the payload buffer only as bytes arrive, so a peer that lies about a
// length cannot make the reader allocate memory it never sends.
//
// Tensor payloads (MsgInfer, MsgInferResult) are a binary encoding described
// in message.go; no language-specific serializer ever sees network bytes.
package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
)

// ProtocolVersion is the wire protocol version carried in every frame
// header. A peer that sees another version rejects the frame.
const ProtocolVersion = 1

// HeaderSize is the size in bytes of a frame header on the wire.
const HeaderSize = 20

// magic is the first two bytes of every frame.
const magic0, magic1 = 'T', 'R'

// MsgType is the type of a frame.
type MsgType uint8

// The message types. Requests and their replies share the frame ID.
const (
	// MsgHello opens a session (client to server); the payload is the
	// client's name. The server answers MsgHelloOK or MsgError.
	MsgHello MsgType = 1 + iota
	// MsgHelloOK accepts a MsgHello; the payload is the server's name.
	MsgHelloOK
	// MsgError reports a failed request; the payload is a UTF-8 message.
	MsgError
	// MsgPing asks for a MsgPong carrying the same payload.
	MsgPing
	// MsgPong answers a MsgPing with its payload.
	MsgPong
	// MsgModelHave asks whether the server holds a model; the payload is
	// its 32-byte SHA-256. The server answers MsgModelStatus.
	MsgModelHave
	// MsgModelStatus answers MsgModelHave or MsgModelPut; the payload is
	// one byte, 0 for missing and 1 for present.
	MsgModelStatus
	// MsgModelPut uploads a model; the payload is the model bytes. The
	// server hashes them and answers MsgModelStatus.
	MsgModelPut
	// MsgInfer asks the server to run a tail; the payload is
	// EncodeInfer(InferRequest). The server answers MsgInferResult or
	// MsgError.
	MsgInfer
	// MsgInferResult answers MsgInfer; the payload is
	// EncodeInferResult(InferResult).
	MsgInferResult
	// MsgBulkUp is a netprobe upload of arbitrary bytes; the server answers
	// MsgBulkAck with what it measured on receipt.
	MsgBulkUp
	// MsgBulkAck answers MsgBulkUp.
	MsgBulkAck
	// MsgBulkDownReq asks for a netprobe download; the payload is the
	// requested size as a big-endian uint64. The server answers MsgBulkDown.
	MsgBulkDownReq
	// MsgBulkDown answers MsgBulkDownReq with that many bytes.
	MsgBulkDown
	// MsgProfileReq asks the server to profile itself; the payload is
	// JSON options. The server answers MsgProfile.
	MsgProfileReq
	// MsgProfile answers MsgProfileReq; the payload is JSON.
	MsgProfile

	msgTypeEnd // one past the last valid type
)

var msgTypeNames = [...]string{
	MsgHello: "hello", MsgHelloOK: "hello-ok", MsgError: "error",
	MsgPing: "ping", MsgPong: "pong", MsgModelHave: "model-have",
	MsgModelStatus: "model-status", MsgModelPut: "model-put",
	MsgInfer: "infer", MsgInferResult: "infer-result",
	MsgBulkUp: "bulk-up", MsgBulkAck: "bulk-ack",
	MsgBulkDownReq: "bulk-down-req", MsgBulkDown: "bulk-down",
	MsgProfileReq: "profile-req", MsgProfile: "profile",
}

// Valid reports whether t is a message type of this protocol version.
func (t MsgType) Valid() bool { return t >= MsgHello && t < msgTypeEnd }

// String returns the lower-case name of t ("infer-result"), or "msg(N)" for
// an unknown type.
func (t MsgType) String() string {
	if t.Valid() {
		return msgTypeNames[t]
	}
	return "msg(" + strconv.Itoa(int(t)) + ")"
}

// Frame is one protocol message: its type, flags, request id and payload.
type Frame struct {
	Type    MsgType
	Flags   uint8
	ID      uint64
	Payload []byte
}

// Limits bound what a reader accepts from the network. Every length, count
// and shape read from a peer is checked against them before memory is
// allocated for it.
type Limits struct {
	// MaxPayload is the largest frame payload in bytes.
	MaxPayload int64
	// MaxTensors is the most tensors in one request or result.
	MaxTensors int
	// MaxRank is the most dimensions of one tensor.
	MaxRank int
	// MaxTensorBytes is the largest decoded tensor in bytes.
	MaxTensorBytes int64
	// MaxNameLen is the longest tensor name in bytes.
	MaxNameLen int
}

// DefaultLimits returns limits that fit the built-in models with room to
// spare: 256 MiB payloads and tensors, 64 tensors, rank 8, 256-byte names.
func DefaultLimits() Limits {
	return Limits{
		MaxPayload:     256 << 20,
		MaxTensors:     64,
		MaxRank:        8,
		MaxTensorBytes: 256 << 20,
		MaxNameLen:     256,
	}
}

// Errors a frame reader returns, wrapped with context; test with errors.Is.
var (
	// ErrFrameTooLarge means a payload length exceeds the limit.
	ErrFrameTooLarge = errors.New("frame too large")
	// ErrBadMagic means the stream is not tracr frames (or lost sync).
	ErrBadMagic = errors.New("bad frame magic")
	// ErrBadVersion means the peer speaks another protocol version.
	ErrBadVersion = errors.New("unsupported protocol version")
	// ErrUnknownType means a frame carries a message type this version
	// does not define.
	ErrUnknownType = errors.New("unknown message type")
	// ErrBadHeader means a header field that must be zero is not.
	ErrBadHeader = errors.New("malformed frame header")
)

// smallFrame is the largest payload WriteFrame copies behind the header to
// issue a single Write; larger payloads go out as net.Buffers, which is one
// writev on a TCP connection.
const smallFrame = 64 << 10

// readChunk is the most ReadFrame allocates before any payload byte has
// arrived.
const readChunk = 1 << 20

// AppendHeader appends the wire header of f to dst and returns the result.
func AppendHeader(dst []byte, f Frame) []byte {
	var h [HeaderSize]byte
	putHeader(h[:], f.Type, f.Flags, f.ID, uint32(len(f.Payload)))
	return append(dst, h[:]...)
}

func putHeader(h []byte, t MsgType, flags uint8, id uint64, n uint32) {
	h[0], h[1] = magic0, magic1
	h[2] = ProtocolVersion
	h[3] = byte(t)
	h[4] = flags
	h[5], h[6], h[7] = 0, 0, 0
	binary.BigEndian.PutUint64(h[8:16], id)
	binary.BigEndian.PutUint32(h[16:20], n)
}

// WriteFrame writes f to w: header and payload in one Write for small
// payloads, as net.Buffers (a single writev on TCP) for large ones. It is
// not safe to call concurrently on one w; callers that share a writer
// serialise their frames.
func WriteFrame(w io.Writer, f Frame) error {
	if !f.Type.Valid() {
		return fmt.Errorf("write frame: %w %d", ErrUnknownType, f.Type)
	}
	if int64(len(f.Payload)) > math.MaxUint32 {
		return fmt.Errorf("write %s frame: %w: %d bytes", f.Type, ErrFrameTooLarge, len(f.Payload))
	}
	if len(f.Payload) <= smallFrame {
		buf := make([]byte, HeaderSize, HeaderSize+len(f.Payload))
		putHeader(buf, f.Type, f.Flags, f.ID, uint32(len(f.Payload)))
		buf = append(buf, f.Payload...)
		if _, err := w.Write(buf); err != nil {
			return fmt.Errorf("write %s frame: %w", f.Type, err)
		}
		return nil
	}
	var h [HeaderSize]byte
	putHeader(h[:], f.Type, f.Flags, f.ID, uint32(len(f.Payload)))
	bufs := net.Buffers{h[:], f.Payload}
	if _, err := bufs.WriteTo(w); err != nil {
		return fmt.Errorf("write %s frame: %w", f.Type, err)
	}
	return nil
}

// ReadFrame reads one frame from r. It returns io.EOF unwrapped when r ends
// cleanly before a frame starts, and an error wrapping io.ErrUnexpectedEOF
// when it ends inside one. Header errors wrap ErrBadMagic, ErrBadVersion,
// ErrUnknownType, ErrBadHeader or ErrFrameTooLarge; they are detected
// before any payload memory is allocated.
func ReadFrame(r io.Reader, lim Limits) (Frame, error) {
	var h [HeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if err == io.EOF {
			return Frame{}, io.EOF
		}
		return Frame{}, fmt.Errorf("read frame header: %w", err)
	}
	f, n, err := parseHeader(h[:], lim)
	if err != nil {
		return Frame{}, err
	}
	f.Payload, err = readPayload(r, n)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, fmt.Errorf("read %s frame %d payload (%d bytes): %w", f.Type, f.ID, n, err)
	}
	return f, nil
}

// parseHeader validates a wire header and returns the frame (without
// payload) and the payload length.
func parseHeader(h []byte, lim Limits) (Frame, int64, error) {
	if h[0] != magic0 || h[1] != magic1 {
		return Frame{}, 0, fmt.Errorf("read frame: %w %q", ErrBadMagic, h[:2])
	}
	if h[2] != ProtocolVersion {
		return Frame{}, 0, fmt.Errorf("read frame: %w %d (this is version %d)", ErrBadVersion, h[2], ProtocolVersion)
	}
	t := MsgType(h[3])
	if !t.Valid() {
		return Frame{}, 0, fmt.Errorf("read frame: %w %d", ErrUnknownType, h[3])
	}
	if h[5]|h[6]|h[7] != 0 {
		return Frame{}, 0, fmt.Errorf("read %s frame: %w: reserved bytes %x", t, ErrBadHeader, h[5:8])
	}
	f := Frame{Type: t, Flags: h[4], ID: binary.BigEndian.Uint64(h[8:16])}
	n := int64(binary.BigEndian.Uint32(h[16:20]))
	if n > lim.MaxPayload {
		return Frame{}, 0, fmt.Errorf("read %s frame %d: %w: %d bytes, limit %d", t, f.ID, ErrFrameTooLarge, n, lim.MaxPayload)
	}
	return f, n, nil
}

// readPayload reads exactly n bytes. It starts with a buffer of at most
// readChunk bytes and doubles it as it fills, so it never holds more than
// max(readChunk, twice what has arrived).
func readPayload(r io.Reader, n int64) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	buf := make([]byte, 0, min(n, readChunk))
	for int64(len(buf)) < n {
		if len(buf) == cap(buf) {
			// Double, never past n: the buffer is at most twice what has
			// arrived, so a lying length costs the liar as much as us.
			grown := make([]byte, len(buf), int64(cap(buf))+min(int64(cap(buf)), n-int64(len(buf))))
			copy(grown, buf)
			buf = grown
		}
		want := min(int64(cap(buf)), n)
		m, err := io.ReadFull(r, buf[len(buf):want])
		buf = buf[:len(buf)+m]
		if err != nil {
			return nil, err
		}
	}
	return buf, nil
}
