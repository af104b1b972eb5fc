package transport

// Message payloads. MsgInfer and MsgInferResult carry tensors in a binary
// layout written and read field by field; structural integers are
// big-endian like the frame header, while tensor element data keeps the
// little-endian layout of tensor.Tensor.
//
// InferRequest:
//
//	[32]byte model SHA-256
//	int64    cut id
//	uint8    result codec kind, uint8 result compression
//	uint32   tensor count, then that many tensors
//
// InferResult:
//
//	int64    cut id
//	int64    server compute, decode, encode and queue nanoseconds (4 fields)
//	uint32   tensor count, then that many tensors
//
// Tensor:
//
//	uint32   name length, name bytes
//	int32    dtype (ONNX enum)
//	uint8    codec kind, uint8 compression
//	uint8    rank, then rank int64 dimensions (each >= 0)
//	uint32   data length, data bytes (encoded by the codec)

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"tracr/tensor"
)

// WireTensor is a tensor as it travels: its name, dtype and shape, the
// codec spec it was encoded with and the encoded bytes. EncodeTensor and
// DecodeTensor convert between it and tensor.Tensor.
type WireTensor struct {
	Name  string
	DType tensor.DType
	Shape tensor.Shape
	Spec  CodecSpec
	Data  []byte
}

// InferRequest asks the server to run the tail of model ModelHash after
// cut Cut on the crossing Tensors and to send the outputs encoded with
// ResultSpec. Deadlines are the client's business and do not travel.
type InferRequest struct {
	ModelHash  [32]byte
	Cut        int
	Tensors    []WireTensor
	ResultSpec CodecSpec
	// Post, when set, is a JSON zoo.PostSpec: the server post-processes the
	// outputs and returns the result in InferResult.Post instead of the
	// output tensors.
	Post []byte
}

// InferResult is the server's answer to an InferRequest: the cut it ran,
// the tail outputs and the server's own timings in nanoseconds (tail
// compute, decoding the inputs, encoding the outputs, waiting in the
// queue).
type InferResult struct {
	Cut         int
	Tensors     []WireTensor
	ServerNanos int64
	DecodeNanos int64
	EncodeNanos int64
	QueueNanos  int64
	// PostNanos is the server's post-processing time and Post its JSON
	// zoo.Result, when the request asked for post-processing.
	PostNanos int64
	Post      []byte
}

// MaxPostSpec bounds the post-processing spec a request may carry.
const MaxPostSpec = 64 << 10

// ErrMalformed marks a message payload that does not decode within its
// limits; the wrapped error says which field.
var ErrMalformed = errors.New("malformed message")

// EncodeInfer returns the MsgInfer payload for r.
func EncodeInfer(r InferRequest) ([]byte, error) {
	if err := r.ResultSpec.Validate(); err != nil {
		return nil, fmt.Errorf("encode infer request: result %w", err)
	}
	b := make([]byte, 0, 32+8+2+4+tensorsSize(r.Tensors))
	b = append(b, r.ModelHash[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(int64(r.Cut)))
	b = append(b, byte(r.ResultSpec.Kind), byte(r.ResultSpec.Compress))
	if len(r.Post) > MaxPostSpec {
		return nil, fmt.Errorf("encode infer request: post spec of %d bytes, over %d", len(r.Post), MaxPostSpec)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Post)))
	b = append(b, r.Post...)
	b, err := appendTensors(b, r.Tensors)
	if err != nil {
		return nil, fmt.Errorf("encode infer request: %w", err)
	}
	return b, nil
}

// DecodeInfer parses a MsgInfer payload, checking every count, length and
// shape against lim before allocating for it. The tensors' Data alias b.
func DecodeInfer(b []byte, lim Limits) (InferRequest, error) {
	d := msgDecoder{b: b, lim: lim}
	var r InferRequest
	copy(r.ModelHash[:], d.bytes(32, "model hash"))
	r.Cut = d.cut()
	r.ResultSpec = CodecSpec{Kind: Codec(d.u8("result codec")), Compress: Compression(d.u8("result compression"))}
	if d.err == nil {
		if err := r.ResultSpec.Validate(); err != nil {
			d.fail("result codec: %v", err)
		}
	}
	r.Post = d.blob(MaxPostSpec, "post spec")
	r.Tensors = d.tensors()
	if err := d.finish(); err != nil {
		return InferRequest{}, fmt.Errorf("decode infer request: %w", err)
	}
	return r, nil
}

// EncodeInferResult returns the MsgInferResult payload for r.
func EncodeInferResult(r InferResult) ([]byte, error) {
	b := make([]byte, 0, 5*8+4+tensorsSize(r.Tensors))
	b = binary.BigEndian.AppendUint64(b, uint64(int64(r.Cut)))
	for _, v := range []int64{r.ServerNanos, r.DecodeNanos, r.EncodeNanos, r.QueueNanos, r.PostNanos} {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Post)))
	b = append(b, r.Post...)
	b, err := appendTensors(b, r.Tensors)
	if err != nil {
		return nil, fmt.Errorf("encode infer result: %w", err)
	}
	return b, nil
}

// DecodeInferResult parses a MsgInferResult payload, checking every count,
// length and shape against lim before allocating for it. The tensors' Data
// alias b.
func DecodeInferResult(b []byte, lim Limits) (InferResult, error) {
	d := msgDecoder{b: b, lim: lim}
	var r InferResult
	r.Cut = d.cut()
	r.ServerNanos = d.i64("server nanos")
	r.DecodeNanos = d.i64("decode nanos")
	r.EncodeNanos = d.i64("encode nanos")
	r.QueueNanos = d.i64("queue nanos")
	r.PostNanos = d.i64("post nanos")
	r.Post = d.blob(int(min(lim.MaxPayload, 1<<30)), "post result")
	r.Tensors = d.tensors()
	if err := d.finish(); err != nil {
		return InferResult{}, fmt.Errorf("decode infer result: %w", err)
	}
	return r, nil
}

func tensorsSize(ts []WireTensor) int {
	n := 4
	for _, t := range ts {
		n += 4 + len(t.Name) + 4 + 2 + 1 + 8*len(t.Shape) + 4 + len(t.Data)
	}
	return n
}

func appendTensors(b []byte, ts []WireTensor) ([]byte, error) {
	if int64(len(ts)) > math.MaxUint32 {
		return nil, fmt.Errorf("%d tensors", len(ts))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(ts)))
	for i, t := range ts {
		for _, u := range ts[:i] {
			if u.Name == t.Name {
				return nil, fmt.Errorf("tensor %q given twice", t.Name)
			}
		}
		if err := t.Spec.Validate(); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		if len(t.Shape) > math.MaxUint8 {
			return nil, fmt.Errorf("tensor %q: rank %d", t.Name, len(t.Shape))
		}
		if int64(len(t.Name)) > math.MaxUint32 || int64(len(t.Data)) > math.MaxUint32 {
			return nil, fmt.Errorf("tensor %q: %d name bytes, %d data bytes", t.Name, len(t.Name), len(t.Data))
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(t.Name)))
		b = append(b, t.Name...)
		b = binary.BigEndian.AppendUint32(b, uint32(int32(t.DType)))
		b = append(b, byte(t.Spec.Kind), byte(t.Spec.Compress), byte(len(t.Shape)))
		for _, d := range t.Shape {
			if d < 0 {
				return nil, fmt.Errorf("tensor %q: dynamic shape %s", t.Name, t.Shape)
			}
			b = binary.BigEndian.AppendUint64(b, uint64(d))
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(t.Data)))
		b = append(b, t.Data...)
	}
	return b, nil
}

// msgDecoder reads a payload field by field. The first failure sticks:
// later reads return zero values, and finish reports it.
type msgDecoder struct {
	b   []byte
	off int
	lim Limits
	err error
}

func (d *msgDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: at byte %d: %s", ErrMalformed, d.off, fmt.Sprintf(format, args...))
	}
}

func (d *msgDecoder) bytes(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b)-d.off {
		d.fail("%s: need %d bytes, %d left", what, n, len(d.b)-d.off)
		return nil
	}
	s := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return s
}

func (d *msgDecoder) u8(what string) uint8 {
	if s := d.bytes(1, what); s != nil {
		return s[0]
	}
	return 0
}

func (d *msgDecoder) u32(what string) uint32 {
	if s := d.bytes(4, what); s != nil {
		return binary.BigEndian.Uint32(s)
	}
	return 0
}

func (d *msgDecoder) i64(what string) int64 {
	if s := d.bytes(8, what); s != nil {
		return int64(binary.BigEndian.Uint64(s))
	}
	return 0
}

// blob reads a u32 length and that many bytes (nil when empty), at most max.
func (d *msgDecoder) blob(max int, what string) []byte {
	n := d.u32(what + " length")
	if d.err != nil {
		return nil
	}
	if int64(n) > int64(max) {
		d.fail("%s of %d bytes, over %d", what, n, max)
		return nil
	}
	if n == 0 {
		return nil
	}
	return d.bytes(int(n), what)
}

func (d *msgDecoder) cut() int {
	c := d.i64("cut")
	if int64(int(c)) != c {
		d.fail("cut %d does not fit an int", c)
		return 0
	}
	return int(c)
}

func (d *msgDecoder) tensors() []WireTensor {
	n := d.u32("tensor count")
	if d.err != nil {
		return nil
	}
	if int64(n) > int64(d.lim.MaxTensors) {
		d.fail("%d tensors, limit %d", n, d.lim.MaxTensors)
		return nil
	}
	// Every tensor takes at least 15 bytes; a count the payload cannot hold
	// is rejected before the slice is made.
	if int64(n)*15 > int64(len(d.b)-d.off) {
		d.fail("%d tensors cannot fit in %d bytes", n, len(d.b)-d.off)
		return nil
	}
	ts := make([]WireTensor, 0, n)
	seen := make(map[string]bool, n)
	for i := range int(n) {
		t := d.tensor(i)
		if d.err != nil {
			return nil
		}
		if seen[t.Name] {
			d.fail("tensor %d: duplicate name %q", i, t.Name)
			return nil
		}
		seen[t.Name] = true
		ts = append(ts, t)
	}
	return ts
}

func (d *msgDecoder) tensor(i int) WireTensor {
	var t WireTensor
	nameLen := d.u32("name length")
	if d.err == nil && int64(nameLen) > int64(d.lim.MaxNameLen) {
		d.fail("tensor %d: name of %d bytes, limit %d", i, nameLen, d.lim.MaxNameLen)
	}
	t.Name = string(d.bytes(int(nameLen), "name"))
	t.DType = tensor.DType(int32(d.u32("dtype")))
	t.Spec = CodecSpec{Kind: Codec(d.u8("codec")), Compress: Compression(d.u8("compression"))}
	rank := d.u8("rank")
	if d.err == nil && int(rank) > d.lim.MaxRank {
		d.fail("tensor %q: rank %d, limit %d", t.Name, rank, d.lim.MaxRank)
	}
	if d.err == nil {
		t.Shape = make(tensor.Shape, rank)
		for j := range t.Shape {
			t.Shape[j] = d.i64("dimension")
		}
	}
	dataLen := d.u32("data length")
	t.Data = d.bytes(int(dataLen), "tensor data")
	if d.err != nil {
		return WireTensor{}
	}
	if err := checkWire(t, d.lim); err != nil {
		d.fail("%v", err)
		return WireTensor{}
	}
	return t
}

func (d *msgDecoder) finish() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("%d trailing bytes", len(d.b)-d.off)
	}
	return d.err
}
