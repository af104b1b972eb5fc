package transport

// Tensor codecs. A codec turns a tensor into bytes in two stages: the
// element encoding (raw, fp16, int8, jpeg) and an optional compression
// (zstd, lz4) of those bytes. Encoded element layouts, all little-endian:
//
//	raw   the tensor bytes as they are
//	fp16  2 bytes per element, IEEE 754 binary16
//	int8  8-byte header (float32 scale, uint8 zero point, 3 zero bytes),
//	      then 1 byte per element q, decoded as (q - zero point) * scale
//	jpeg  a baseline JPEG file (see jpeg.go)
//
// zstd wraps the element bytes in one zstd frame, lz4 compresses them as one
// LZ4 block. Because every element encoding except jpeg has a size fixed by
// the shape, decompression is bounded by that size: a payload that would
// expand beyond it is rejected without producing the excess.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"tracr/tensor"
)

// TensorCodec encodes tensors for the wire and decodes them back.
type TensorCodec interface {
	// Encode appends the encoded bytes of t to dst and returns the result.
	Encode(dst []byte, t tensor.Tensor) ([]byte, error)
	// Decode returns the tensor that w encodes. It checks w against
	// DefaultLimits; DecodeTensor takes explicit limits.
	Decode(w WireTensor) (tensor.Tensor, error)
}

// int8Header is the size of the int8 codec's header.
const int8Header = 8

// specCodec implements TensorCodec for one CodecSpec.
type specCodec struct{ spec CodecSpec }

// CodecFor returns the codec for spec. The fp16, int8 and jpeg codecs
// accept only float32 tensors; EncodeTensor falls back to raw for others.
func CodecFor(spec CodecSpec) (TensorCodec, error) {
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("codec for %s: %w", spec, err)
	}
	return specCodec{spec}, nil
}

// Encode implements TensorCodec.
func (c specCodec) Encode(dst []byte, t tensor.Tensor) ([]byte, error) {
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("encode %s: %w", c.spec, err)
	}
	if c.spec.Compress == CompressNone {
		b, err := encodeElements(dst, t, c.spec.Kind)
		if err != nil {
			return nil, fmt.Errorf("encode %q as %s: %w", t.Name, c.spec, err)
		}
		return b, nil
	}
	plain, err := encodeElements(nil, t, c.spec.Kind)
	if err != nil {
		return nil, fmt.Errorf("encode %q as %s: %w", t.Name, c.spec, err)
	}
	b, err := compress(dst, plain, c.spec.Compress)
	if err != nil {
		return nil, fmt.Errorf("encode %q as %s: %w", t.Name, c.spec, err)
	}
	return b, nil
}

// Decode implements TensorCodec.
func (c specCodec) Decode(w WireTensor) (tensor.Tensor, error) {
	if w.Spec != c.spec {
		return tensor.Tensor{}, fmt.Errorf("decode %q: tensor is %s, codec is %s", w.Name, w.Spec, c.spec)
	}
	return DecodeTensor(w, DefaultLimits())
}

// EncodeTensor encodes t as spec says. Two fallbacks keep it total: a
// non-float32 tensor asked for fp16, int8 or jpeg is sent raw (with the
// requested compression), and a compression that does not make the data
// smaller is dropped. The returned tensor's Spec says what was done.
func EncodeTensor(t tensor.Tensor, spec CodecSpec) (WireTensor, error) {
	if err := spec.Validate(); err != nil {
		return WireTensor{}, fmt.Errorf("encode %q: %w", t.Name, err)
	}
	if err := t.Validate(); err != nil {
		return WireTensor{}, fmt.Errorf("encode as %s: %w", spec, err)
	}
	if spec.Kind != CodecRaw && t.DType != tensor.Float32 {
		spec.Kind = CodecRaw
	}
	w := WireTensor{Name: t.Name, DType: t.DType, Shape: t.Shape.Clone(), Spec: spec}
	plain, err := encodeElements(nil, t, spec.Kind)
	if err != nil {
		return WireTensor{}, fmt.Errorf("encode %q as %s: %w", t.Name, spec, err)
	}
	w.Data = plain
	if spec.Compress != CompressNone {
		packed, err := compress(nil, plain, spec.Compress)
		if err != nil {
			return WireTensor{}, fmt.Errorf("encode %q as %s: %w", t.Name, spec, err)
		}
		if len(packed) < len(plain) {
			w.Data = packed
		} else {
			w.Spec.Compress = CompressNone
		}
	}
	return w, nil
}

// DecodeTensor decodes w after checking it against lim: a known dtype and
// codec, a shape within the limits whose byte size does not overflow, and
// encoded data of the size the shape calls for. Decompression never
// produces more than the shape's size. The result shares no memory with w.
func DecodeTensor(w WireTensor, lim Limits) (tensor.Tensor, error) {
	if err := checkWire(w, lim); err != nil {
		return tensor.Tensor{}, fmt.Errorf("decode: %w", err)
	}
	plain := w.Data
	if w.Spec.Compress != CompressNone {
		size, _ := elementBytes(w.Spec.Kind, w.DType, w.Shape) // checked by checkWire
		var err error
		plain, err = decompress(w.Data, w.Spec.Compress, size)
		if err != nil {
			return tensor.Tensor{}, fmt.Errorf("decode %q (%s): %w", w.Name, w.Spec, err)
		}
	}
	t := tensor.Tensor{Name: w.Name, DType: w.DType, Shape: w.Shape.Clone()}
	var err error
	t.Data, err = decodeElements(plain, w)
	if err != nil {
		return tensor.Tensor{}, fmt.Errorf("decode %q (%s): %w", w.Name, w.Spec, err)
	}
	return t, nil
}

// tensorBytes returns the byte size of a dtype and shape, or an error if a
// dimension is negative, the dtype has no fixed size or the size exceeds
// max (checked without overflow).
func tensorBytes(dt tensor.DType, shape tensor.Shape, max int64) (int64, error) {
	size := int64(dt.Size())
	if size == 0 {
		return 0, fmt.Errorf("dtype %s cannot travel", dt)
	}
	n := uint64(size)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("dimension %d in shape %s", d, shape)
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > uint64(max) {
			return 0, fmt.Errorf("shape %s of %s is larger than %d bytes", shape, dt, max)
		}
		n = lo
	}
	return int64(n), nil
}

// elementBytes returns the exact size of the element encoding of kind for
// a tensor of dt and shape (whose byte size must already be checked), or
// false when the size is not fixed (jpeg).
func elementBytes(kind Codec, dt tensor.DType, shape tensor.Shape) (int64, bool) {
	n := shape.NumElements()
	switch kind {
	case CodecRaw:
		return n * int64(dt.Size()), true
	case CodecFP16:
		return 2 * n, true
	case CodecInt8:
		return int8Header + n, true
	}
	return 0, false
}

// checkWire validates everything about w that can be checked without
// decoding it.
func checkWire(w WireTensor, lim Limits) error {
	if len(w.Name) > lim.MaxNameLen {
		return fmt.Errorf("tensor name of %d bytes, limit %d", len(w.Name), lim.MaxNameLen)
	}
	if err := w.Spec.Validate(); err != nil {
		return fmt.Errorf("tensor %q: %w", w.Name, err)
	}
	if len(w.Shape) > lim.MaxRank {
		return fmt.Errorf("tensor %q: rank %d, limit %d", w.Name, len(w.Shape), lim.MaxRank)
	}
	if _, err := tensorBytes(w.DType, w.Shape, lim.MaxTensorBytes); err != nil {
		return fmt.Errorf("tensor %q: %w", w.Name, err)
	}
	if w.Spec.Kind != CodecRaw && w.DType != tensor.Float32 {
		return fmt.Errorf("tensor %q: %s tensor cannot be %s", w.Name, w.DType, w.Spec.Kind)
	}
	if w.Spec.Kind == CodecJPEG {
		return checkJPEGShape(w.Name, w.Shape)
	}
	want, _ := elementBytes(w.Spec.Kind, w.DType, w.Shape)
	if w.Spec.Compress == CompressNone && int64(len(w.Data)) != want {
		return fmt.Errorf("tensor %q: %s %s as %s needs %d bytes, has %d", w.Name, w.DType, w.Shape, w.Spec, want, len(w.Data))
	}
	return nil
}

func encodeElements(dst []byte, t tensor.Tensor, kind Codec) ([]byte, error) {
	if kind != CodecRaw && t.DType != tensor.Float32 {
		return nil, fmt.Errorf("%s tensor cannot be %s", t.DType, kind)
	}
	switch kind {
	case CodecRaw:
		return append(dst, t.Data...), nil
	case CodecFP16:
		return appendFP16(dst, t.Data), nil
	case CodecInt8:
		return appendInt8(dst, t.Data)
	case CodecJPEG:
		return appendJPEGTensor(dst, t)
	}
	return nil, fmt.Errorf("unknown %s", kind)
}

func decodeElements(b []byte, w WireTensor) ([]byte, error) {
	switch w.Spec.Kind {
	case CodecRaw:
		return append([]byte(nil), b...), nil
	case CodecFP16:
		return decodeFP16(b), nil
	case CodecInt8:
		return decodeInt8(b)
	case CodecJPEG:
		return decodeJPEGTensor(b, w.Shape)
	}
	return nil, fmt.Errorf("unknown %s", w.Spec.Kind)
}

// The compressors are built once: a zstd encoder or decoder holds megabytes
// of tables and is safe for concurrent EncodeAll/DecodeAll. They are caches
// without observable state, not configuration. zstd runs at its default
// level: on YOLOv8n activations it sends int8 in 8.2x fewer bytes than raw
// where the fastest level manages 6.3x, for about 20% more encode time;
// lz4 is the fast choice.
var (
	zstdEncoder = sync.OnceValues(func() (*zstd.Encoder, error) {
		return zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithZeroFrames(true))
	})
	zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
		// The cap limit makes DecodeAll stop at the capacity of the
		// destination, which DecodeTensor sizes from the shape.
		return zstd.NewReader(nil, zstd.WithDecodeAllCapLimit(true), zstd.WithDecoderMaxMemory(math.MaxInt32))
	})
)

// lz4Compressors recycles LZ4 hash tables, which are not safe for
// concurrent use.
var lz4Compressors = sync.Pool{New: func() any { return new(lz4.Compressor) }}

// errExpands reports compressed data that decodes to more or fewer bytes
// than the shape calls for.
var errExpands = errors.New("decompressed size does not match the shape")

func compress(dst, src []byte, c Compression) ([]byte, error) {
	switch c {
	case CompressNone:
		return append(dst, src...), nil
	case CompressZstd:
		enc, err := zstdEncoder()
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return enc.EncodeAll(src, dst), nil
	case CompressLZ4:
		start := len(dst)
		bound := lz4.CompressBlockBound(len(src))
		if cap(dst)-start < bound {
			grown := make([]byte, start, start+bound)
			copy(grown, dst)
			dst = grown
		}
		lc := lz4Compressors.Get().(*lz4.Compressor)
		n, err := lc.CompressBlock(src, dst[start:start+bound])
		lz4Compressors.Put(lc)
		if err != nil {
			return nil, fmt.Errorf("lz4: %w", err)
		}
		return dst[:start+n], nil
	}
	return nil, fmt.Errorf("unknown %s", c)
}

// decompress expands src, which must decode to exactly size bytes; it never
// produces more than size bytes (plus the decoder's one-block overshoot).
func decompress(src []byte, c Compression, size int64) ([]byte, error) {
	switch c {
	case CompressZstd:
		var h zstd.Header
		if err := h.Decode(src); err != nil {
			return nil, fmt.Errorf("zstd header: %w", err)
		}
		if h.HasFCS && h.FrameContentSize != uint64(size) {
			return nil, fmt.Errorf("zstd frame of %d bytes for a %d-byte tensor: %w", h.FrameContentSize, size, errExpands)
		}
		dec, err := zstdDecoder()
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		out, err := dec.DecodeAll(src, make([]byte, 0, size))
		if err != nil {
			if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrFrameSizeExceeded) {
				return nil, fmt.Errorf("zstd: %w (%v)", errExpands, err)
			}
			return nil, fmt.Errorf("zstd: %w", err)
		}
		if int64(len(out)) != size {
			return nil, fmt.Errorf("zstd: %d bytes, want %d: %w", len(out), size, errExpands)
		}
		return out, nil
	case CompressLZ4:
		out := make([]byte, size)
		n, err := lz4.UncompressBlock(src, out)
		if err != nil {
			return nil, fmt.Errorf("%w (a block expanding beyond %d bytes is rejected)", err, size)
		}
		if int64(n) != size {
			return nil, fmt.Errorf("lz4: %d bytes, want %d: %w", n, size, errExpands)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown %s", c)
}

// appendFP16 appends the float32 little-endian elements of src as halves.
func appendFP16(dst, src []byte) []byte {
	n := len(src) / 4
	start := len(dst)
	dst = append(dst, make([]byte, 2*n)...)
	out := dst[start:]
	for i := range n {
		f := binary.LittleEndian.Uint32(src[4*i:])
		binary.LittleEndian.PutUint16(out[2*i:], float32ToHalf(f))
	}
	return dst
}

func decodeFP16(b []byte) []byte {
	n := len(b) / 2
	out := make([]byte, 4*n)
	for i := range n {
		binary.LittleEndian.PutUint32(out[4*i:], halfToFloat32(binary.LittleEndian.Uint16(b[2*i:])))
	}
	return out
}

// float32ToHalf converts float32 bits to binary16 bits, rounding to nearest
// even; overflow gives infinity, NaN stays NaN (quiet), and values below
// the half subnormal range round to signed zero.
func float32ToHalf(f uint32) uint16 {
	sign := uint16(f>>16) & 0x8000
	exp := int(f>>23) & 0xff
	mant := f & 0x7fffff
	if exp == 0xff {
		if mant == 0 {
			return sign | 0x7c00
		}
		return sign | 0x7e00 | uint16(mant>>13)
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e > 0 {
		h := uint32(e)<<10 | mant>>13
		rest := mant & 0x1fff
		if rest > 0x1000 || rest == 0x1000 && h&1 == 1 {
			h++ // may carry into the exponent, up to infinity: correct
		}
		return sign | uint16(h)
	}
	// Subnormal half: value = m * 2^-24 with m < 1024.
	shift := uint(14 - e)
	if shift > 24 {
		return sign
	}
	full := mant | 0x800000
	m := full >> shift
	rest := full & (1<<shift - 1)
	half := uint32(1) << (shift - 1)
	if rest > half || rest == half && m&1 == 1 {
		m++ // 1024 becomes the smallest normal: correct
	}
	return sign | uint16(m)
}

// halfToFloat32 converts binary16 bits to float32 bits exactly.
func halfToFloat32(h uint16) uint32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return sign | 0x7f800000 | mant<<13
	case exp != 0:
		return sign | (exp+127-15)<<23 | mant<<13
	case mant == 0:
		return sign
	}
	// Subnormal half: normalise.
	e := uint32(127 - 15 + 1)
	for mant&0x400 == 0 {
		mant <<= 1
		e--
	}
	return sign | e<<23 | (mant&0x3ff)<<13
}

// int8Params returns the affine parameters covering [lo, hi] (which must
// contain 0): scale >= (hi-lo)/255, rounded up to a float32 so that encoder
// and decoder use the same value, and the zero point.
func int8Params(lo, hi float64) (float32, uint8) {
	lo, hi = math.Min(lo, 0), math.Max(hi, 0)
	if hi == lo {
		return 1, 0
	}
	s := float32((hi - lo) / 255)
	if float64(s) < (hi-lo)/255 {
		s = math.Nextafter32(s, float32(math.Inf(1)))
	}
	zp := math.Round(-lo / float64(s))
	return s, uint8(min(max(zp, 0), 255))
}

// appendInt8 appends the int8 encoding of float32 little-endian src. Every
// element decodes within scale/2 of its value (plus float32 rounding).
func appendInt8(dst, src []byte) ([]byte, error) {
	n := len(src) / 4
	var lo, hi float32
	for i := range n {
		bits := binary.LittleEndian.Uint32(src[4*i:])
		if bits&0x7f800000 == 0x7f800000 {
			return nil, fmt.Errorf("element %d is %v: int8 needs finite values", i, math.Float32frombits(bits))
		}
		v := math.Float32frombits(bits)
		lo, hi = min(lo, v), max(hi, v)
	}
	scale, zp := int8Params(float64(lo), float64(hi))
	var h [int8Header]byte
	binary.LittleEndian.PutUint32(h[0:], math.Float32bits(scale))
	h[4] = zp
	dst = append(dst, h[:]...)
	start := len(dst)
	dst = append(dst, make([]byte, n)...)
	out := dst[start:]
	inv := 1 / float64(scale)
	z := float64(zp) + 0.5 // + 0.5 and truncation: round half up
	for i := range n {
		v := float64(math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:])))
		q := v*inv + z
		switch {
		case q < 1:
			out[i] = 0
		case q >= 255:
			out[i] = 255
		default:
			out[i] = uint8(q)
		}
	}
	return dst, nil
}

// Int8Params returns the scale and zero point of an int8-coded tensor: its
// elements decode as (q - zeroPoint) * scale, each within scale/2 of the
// value that was encoded.
func Int8Params(w WireTensor, lim Limits) (scale float32, zeroPoint uint8, err error) {
	if w.Spec.Kind != CodecInt8 {
		return 0, 0, fmt.Errorf("int8 params of %q: tensor is %s", w.Name, w.Spec)
	}
	if err := checkWire(w, lim); err != nil {
		return 0, 0, fmt.Errorf("int8 params: %w", err)
	}
	b := w.Data
	if w.Spec.Compress != CompressNone {
		size, _ := elementBytes(w.Spec.Kind, w.DType, w.Shape)
		if b, err = decompress(w.Data, w.Spec.Compress, size); err != nil {
			return 0, 0, fmt.Errorf("int8 params of %q: %w", w.Name, err)
		}
	}
	return parseInt8Header(b)
}

func parseInt8Header(b []byte) (float32, uint8, error) {
	if len(b) < int8Header {
		return 0, 0, fmt.Errorf("int8 data of %d bytes has no header", len(b))
	}
	scale := math.Float32frombits(binary.LittleEndian.Uint32(b))
	if !(scale > 0) || math.IsInf(float64(scale), 0) {
		return 0, 0, fmt.Errorf("int8 scale %v is not a positive finite number", scale)
	}
	if b[5]|b[6]|b[7] != 0 {
		return 0, 0, fmt.Errorf("int8 header reserved bytes %x are not zero", b[5:8])
	}
	return scale, b[4], nil
}

func decodeInt8(b []byte) ([]byte, error) {
	scale, zp, err := parseInt8Header(b)
	if err != nil {
		return nil, err
	}
	q := b[int8Header:]
	out := make([]byte, 4*len(q))
	s := float64(scale)
	for i, v := range q {
		f := float32(float64(int(v)-int(zp)) * s)
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(f))
	}
	return out, nil
}

// CodecError compares a decoded tensor with the original: the largest
// absolute difference and the root mean square error over all elements.
// Both must be float32 tensors of the same shape.
func CodecError(orig, decoded tensor.Tensor) (maxAbs, rmse float64, err error) {
	if orig.DType != tensor.Float32 || decoded.DType != tensor.Float32 {
		return 0, 0, fmt.Errorf("codec error of %q: %s and %s, want float32", orig.Name, orig.DType, decoded.DType)
	}
	if !orig.Shape.Equal(decoded.Shape) || len(orig.Data) != len(decoded.Data) {
		return 0, 0, fmt.Errorf("codec error of %q: shapes %s and %s differ", orig.Name, orig.Shape, decoded.Shape)
	}
	n := len(orig.Data) / 4
	var sum float64
	for i := range n {
		a := float64(math.Float32frombits(binary.LittleEndian.Uint32(orig.Data[4*i:])))
		b := float64(math.Float32frombits(binary.LittleEndian.Uint32(decoded.Data[4*i:])))
		if a == b || math.IsNaN(a) && math.IsNaN(b) {
			continue
		}
		d := math.Abs(a - b)
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		maxAbs = max(maxAbs, d)
		sum += d * d
	}
	if n > 0 {
		rmse = math.Sqrt(sum / float64(n))
	}
	return maxAbs, rmse, nil
}
