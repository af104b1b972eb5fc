package transport

// Tensor codecs. A codec turns a tensor into bytes in two stages: the
// element encoding, one entry of the codec registry (registry.go; raw,
// fp16, int8 and jpeg each in its own codec_*.go file), and an optional
// compression (zstd, lz4; compress.go) of those bytes. This file is the
// pipeline both stages go through and the checks a wire tensor passes
// before either stage sees it. Because every element encoding with a size
// fixed by the shape says so, decompression is bounded by that size: a
// payload that would expand beyond it is rejected without producing the
// excess.

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"

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

// specCodec implements TensorCodec for one CodecSpec.
type specCodec struct{ spec CodecSpec }

// CodecFor returns the codec for spec. A codec that accepts only some
// dtypes (fp16, int8 and jpeg take float32) fails to encode the others;
// EncodeTensor falls back to raw for them.
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
// tensor whose dtype the codec does not accept (a non-float32 tensor asked
// for fp16, int8 or jpeg) is sent raw (with the requested compression),
// and a compression that does not make the data smaller is dropped. The
// returned tensor's Spec says what was done.
func EncodeTensor(t tensor.Tensor, spec CodecSpec) (WireTensor, error) {
	if err := spec.Validate(); err != nil {
		return WireTensor{}, fmt.Errorf("encode %q: %w", t.Name, err)
	}
	if err := t.Validate(); err != nil {
		return WireTensor{}, fmt.Errorf("encode as %s: %w", spec, err)
	}
	if e, _ := codecFor(spec.Kind); !e.accepts(t.DType) { // known: validated
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
	plain, err := elements(w)
	if err != nil {
		return tensor.Tensor{}, fmt.Errorf("decode %q (%s): %w", w.Name, w.Spec, err)
	}
	t := tensor.Tensor{Name: w.Name, DType: w.DType, Shape: w.Shape.Clone()}
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

// elements returns the element bytes of w, which checkWire accepted:
// its data, decompressed to the size its shape calls for.
func elements(w WireTensor) ([]byte, error) {
	if w.Spec.Compress == CompressNone {
		return w.Data, nil
	}
	size, _ := elementBytes(w.Spec.Kind, w.DType, w.Shape) // fixed: Validate allows no compression otherwise
	return decompress(w.Data, w.Spec.Compress, size)
}

// elementBytes returns the exact size of the element encoding of kind for
// a tensor of dt and shape (whose byte size must already be checked), or
// false when the size is not fixed (jpeg) or kind is unknown.
func elementBytes(kind Codec, dt tensor.DType, shape tensor.Shape) (int64, bool) {
	e, ok := codecFor(kind)
	if !ok || e.size == nil {
		return 0, false
	}
	return e.size(dt, shape.NumElements()), true
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
	e, _ := codecFor(w.Spec.Kind) // known: validated
	if !e.accepts(w.DType) {
		return fmt.Errorf("tensor %q: %s tensor cannot be %s", w.Name, w.DType, w.Spec.Kind)
	}
	if e.shape != nil {
		if err := e.shape(w.Name, w.Shape); err != nil {
			return err
		}
	}
	want, fixed := elementBytes(w.Spec.Kind, w.DType, w.Shape)
	if fixed && w.Spec.Compress == CompressNone && int64(len(w.Data)) != want {
		return fmt.Errorf("tensor %q: %s %s as %s needs %d bytes, has %d", w.Name, w.DType, w.Shape, w.Spec, want, len(w.Data))
	}
	return nil
}

// encodeElements appends the element encoding of t with kind to dst: the
// first stage of a codec.
func encodeElements(dst []byte, t tensor.Tensor, kind Codec) ([]byte, error) {
	e, ok := codecFor(kind)
	if !ok {
		return nil, fmt.Errorf("unknown %s", kind)
	}
	if !e.accepts(t.DType) {
		return nil, fmt.Errorf("%s tensor cannot be %s", t.DType, kind)
	}
	if e.shape != nil {
		if err := e.shape(t.Name, t.Shape); err != nil {
			return nil, err
		}
	}
	return e.encode(dst, t)
}

// decodeElements returns the tensor bytes that the element bytes b of w
// encode.
func decodeElements(b []byte, w WireTensor) ([]byte, error) {
	e, ok := codecFor(w.Spec.Kind)
	if !ok {
		return nil, fmt.Errorf("unknown %s", w.Spec.Kind)
	}
	return e.decode(b, w.DType, w.Shape)
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
