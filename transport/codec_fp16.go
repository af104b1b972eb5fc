package transport

// The fp16 codec: 2 bytes per float32 element, IEEE 754 binary16,
// little-endian, rounded to nearest even. The conversion is
// github.com/x448/float16's: the same halves, bit for bit, as the
// hand-written converter it replaced, and the same float32s back except
// that a signalling NaN half (which neither encoder writes) comes back
// quiet; their speed is within measurement noise (fp16_test.go checks and
// measures both side by side).

import (
	"encoding/binary"
	"math"

	"github.com/x448/float16"

	"tracr/tensor"
)

// CodecFP16 sends float32 elements as IEEE 754 half floats.
const CodecFP16 Codec = 1

func init() {
	registerCodec(elementCodec{
		name:   "fp16",
		id:     CodecFP16,
		lossy:  true,
		dtypes: []tensor.DType{tensor.Float32},
		size:   func(_ tensor.DType, n int64) int64 { return 2 * n },
		encode: func(dst []byte, t tensor.Tensor) ([]byte, error) { return appendFP16(dst, t.Data), nil },
		decode: func(b []byte, _ tensor.DType, _ tensor.Shape) ([]byte, error) { return decodeFP16(b), nil },
	})
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

// decodeFP16 returns the float32 little-endian elements of halves b.
func decodeFP16(b []byte) []byte {
	n := len(b) / 2
	out := make([]byte, 4*n)
	for i := range n {
		binary.LittleEndian.PutUint32(out[4*i:], halfToFloat32(binary.LittleEndian.Uint16(b[2*i:])))
	}
	return out
}

// float32ToHalf converts float32 bits to binary16 bits, rounding to nearest
// even; overflow gives infinity, NaN stays NaN (quiet, the top payload
// bits kept), and values below the half subnormal range round to signed
// zero.
func float32ToHalf(f uint32) uint16 {
	return float16.Fromfloat32(math.Float32frombits(f)).Bits()
}

// halfToFloat32 converts binary16 bits to float32 bits exactly; a NaN
// keeps its payload and comes back quiet, as IEEE 754 conversions do.
func halfToFloat32(h uint16) uint32 {
	return math.Float32bits(float16.Frombits(h).Float32())
}
