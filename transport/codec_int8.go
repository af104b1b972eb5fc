package transport

// The int8 codec: affine quantisation with one scale and zero point per
// tensor. Layout, little-endian: an 8-byte header (float32 scale, uint8
// zero point, 3 zero bytes), then 1 byte per element q, decoded as
// (q - zero point) * scale.

import (
	"encoding/binary"
	"fmt"
	"math"

	"tracr/tensor"
)

// CodecInt8 sends float32 elements quantised to 8 bits with one affine
// scale and zero point per tensor.
const CodecInt8 Codec = 2

// int8Header is the size of the int8 codec's header.
const int8Header = 8

func init() {
	registerCodec(elementCodec{
		name:   "int8",
		id:     CodecInt8,
		lossy:  true,
		dtypes: []tensor.DType{tensor.Float32},
		size:   func(_ tensor.DType, n int64) int64 { return int8Header + n },
		encode: func(dst []byte, t tensor.Tensor) ([]byte, error) { return appendInt8(dst, t.Data) },
		decode: func(b []byte, _ tensor.DType, _ tensor.Shape) ([]byte, error) { return decodeInt8(b) },
	})
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
	b, err := elements(w)
	if err != nil {
		return 0, 0, fmt.Errorf("int8 params of %q: %w", w.Name, err)
	}
	return parseInt8Header(b)
}

// parseInt8Header reads and checks the int8 header at the start of b.
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

// decodeInt8 returns the float32 little-endian elements of int8 data b.
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
