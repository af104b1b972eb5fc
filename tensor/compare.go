package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
)

// Random returns a tensor of the given type and static shape filled from a
// generator seeded with seed: floats uniform in [0, 1), integers in [0, 4),
// booleans either way. Small non-negative integers keep index-like inputs
// valid.
func Random(name string, d DType, shape Shape, seed uint64) (Tensor, error) {
	n := ByteSize(d, shape)
	if n < 0 {
		return Tensor{}, fmt.Errorf("random tensor %q: %s %s has no fixed size", name, d, shape)
	}
	rng := rand.New(rand.NewPCG(seed, 0x7472616372))
	t := Tensor{Name: name, DType: d, Shape: shape.Clone(), Data: make([]byte, n)}
	size := d.Size()
	for i := 0; i < int(n); i += size {
		b := t.Data[i : i+size]
		switch d {
		case Float32:
			binary.LittleEndian.PutUint32(b, math.Float32bits(rng.Float32()))
		case Float64:
			binary.LittleEndian.PutUint64(b, math.Float64bits(rng.Float64()))
		case Float16:
			binary.LittleEndian.PutUint16(b, float16Bits(rng.Float32()))
		case BFloat16:
			binary.LittleEndian.PutUint16(b, uint16(math.Float32bits(rng.Float32())>>16))
		default:
			b[0] = byte(rng.IntN(4)) // little-endian: the low byte holds the value
			if d == Bool {
				b[0] &= 1
			}
		}
	}
	return t, nil
}

// float16Bits converts a float in [0, 1) to IEEE half precision, truncating.
func float16Bits(f float32) uint16 {
	bits := math.Float32bits(f)
	exp := int((bits>>23)&0xff) - 127 + 15
	if exp <= 0 {
		return 0
	}
	return uint16(exp)<<10 | uint16((bits>>13)&0x3ff)
}

// MaxAbsDiff returns the largest absolute difference between the elements
// of two tensors of the same type and shape, read as numbers (float16 and
// bfloat16 included). Two NaNs at the same place count as equal; a NaN
// against a number is +Inf.
func MaxAbsDiff(a, b Tensor) (float64, error) {
	if a.DType != b.DType || !a.Shape.Equal(b.Shape) {
		return 0, fmt.Errorf("compare %q: %s %s vs %s %s", a.Name, a.DType, a.Shape, b.DType, b.Shape)
	}
	if err := a.Validate(); err != nil {
		return 0, err
	}
	if err := b.Validate(); err != nil {
		return 0, err
	}
	size := a.DType.Size()
	worst := 0.0
	for i := 0; i < len(a.Data); i += size {
		x, y := element(a.DType, a.Data[i:i+size]), element(b.DType, b.Data[i:i+size])
		var d float64
		switch {
		case math.IsNaN(x) && math.IsNaN(y):
		case math.IsNaN(x) || math.IsNaN(y):
			d = math.Inf(1)
		case x == y:
		default:
			d = math.Abs(x - y)
		}
		worst = max(worst, d)
	}
	return worst, nil
}

// element reads one little-endian element as a float64.
func element(d DType, b []byte) float64 {
	switch d {
	case Float32:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
	case Float64:
		return math.Float64frombits(binary.LittleEndian.Uint64(b))
	case Float16:
		return float64(halfToFloat(binary.LittleEndian.Uint16(b)))
	case BFloat16:
		return float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(b)) << 16))
	case Int8:
		return float64(int8(b[0]))
	case Uint8, Bool:
		return float64(b[0])
	case Int16:
		return float64(int16(binary.LittleEndian.Uint16(b)))
	case Uint16:
		return float64(binary.LittleEndian.Uint16(b))
	case Int32:
		return float64(int32(binary.LittleEndian.Uint32(b)))
	case Uint32:
		return float64(binary.LittleEndian.Uint32(b))
	case Int64:
		return float64(int64(binary.LittleEndian.Uint64(b)))
	case Uint64:
		return float64(binary.LittleEndian.Uint64(b))
	}
	return math.NaN()
}

// halfToFloat converts IEEE half precision bits to float32.
func halfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0 && frac == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal
		f := float32(frac) / 1024 / 16384
		if sign != 0 {
			return -f
		}
		return f
	case exp == 31:
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | frac<<13)
}
