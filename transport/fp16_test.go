package transport

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// fp16Input is n float32 little-endian values shaped like activations,
// with every class the converter must handle mixed in: half subnormals,
// values that underflow to zero, overflow to infinity, infinities, NaNs
// and float32 subnormals.
func fp16Input(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, 4*n)
	for i := range n {
		var f float32
		switch p := r.IntN(100); {
		case p < 88:
			f = float32(r.NormFloat64() * 2)
		case p < 93:
			f = float32(r.NormFloat64() * 3e-5) // half subnormals
		case p < 95:
			f = float32(r.NormFloat64() * 1e-9) // underflow
		case p < 96:
			f = math.Float32frombits(r.Uint32() & 0x807fffff) // float32 subnormal
		case p < 97:
			f = float32(r.NormFloat64() * 1e6) // overflow
		case p < 98:
			f = float32(math.Inf(1 - 2*r.IntN(2)))
		default:
			f = math.Float32frombits(0x7f800000 | r.Uint32()&0x807fffff | 1) // NaN, any payload
		}
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

// The hand-written converter that x448/float16 replaced, kept as the
// baseline the benchmark and the bit-for-bit comparison measure against.

// appendFP16Ours is appendFP16 with the hand-written converter.
func appendFP16Ours(dst, src []byte) []byte {
	n := len(src) / 4
	start := len(dst)
	dst = append(dst, make([]byte, 2*n)...)
	out := dst[start:]
	for i := range n {
		f := binary.LittleEndian.Uint32(src[4*i:])
		binary.LittleEndian.PutUint16(out[2*i:], float32ToHalfOurs(f))
	}
	return dst
}

// decodeFP16Ours is decodeFP16 with the hand-written converter.
func decodeFP16Ours(b []byte) []byte {
	n := len(b) / 2
	out := make([]byte, 4*n)
	for i := range n {
		binary.LittleEndian.PutUint32(out[4*i:], halfToFloat32Ours(binary.LittleEndian.Uint16(b[2*i:])))
	}
	return out
}

// float32ToHalfOurs converts float32 bits to binary16 bits, rounding to nearest
// even; overflow gives infinity, NaN stays NaN (quiet), and values below
// the half subnormal range round to signed zero.
func float32ToHalfOurs(f uint32) uint16 {
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

// halfToFloat32Ours converts binary16 bits to float32 bits exactly.
func halfToFloat32Ours(h uint16) uint32 {
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

// BenchmarkFP16 converts the same 1M float32 values to halves and back
// with the hand-written converter ("ours") and with x448/float16, which
// the fp16 codec uses, side by side. MB/s counts float32 bytes.
func BenchmarkFP16(b *testing.B) {
	const n = 1 << 20
	src := fp16Input(n, 1)
	halves := appendFP16Ours(nil, src)
	dst := make([]byte, 0, 2*n)
	b.Run("encode/ours", func(b *testing.B) {
		b.SetBytes(4 * n)
		for range b.N {
			dst = appendFP16Ours(dst[:0], src)
		}
	})
	b.Run("encode/x448", func(b *testing.B) {
		b.SetBytes(4 * n)
		for range b.N {
			dst = appendFP16(dst[:0], src)
		}
	})
	b.Run("decode/ours", func(b *testing.B) {
		b.SetBytes(4 * n)
		for range b.N {
			_ = decodeFP16Ours(halves)
		}
	})
	b.Run("decode/x448", func(b *testing.B) {
		b.SetBytes(4 * n)
		for range b.N {
			_ = decodeFP16(halves)
		}
	})
}

// TestFP16SameAsX448 compares the two converters bit for bit: every half
// to float32, and float32 to half on every sign, exponent and top-10
// mantissa bits with the rounding-relevant low bits (below, at and above
// the halfway point, odd and even), plus random values. The one known
// difference: a signalling NaN half (which neither encoder writes) comes
// back quiet from x448/float16, payload kept, where ours kept it
// signalling.
func TestFP16SameAsX448(t *testing.T) {
	var quieted int
	for h := range 1 << 16 {
		ours, got := halfToFloat32Ours(uint16(h)), halfToFloat32(uint16(h))
		if isHalfNaN(uint16(h)) && h&0x200 == 0 && got == ours|0x400000 {
			quieted++
			continue
		}
		if ours != got {
			t.Fatalf("half %#04x: ours %#08x, x448 %#08x", h, ours, got)
		}
	}
	if quieted != 2*511 {
		t.Errorf("%d signalling NaN halves quieted, want %d", quieted, 2*511)
	}
	check := func(f uint32) {
		if ours, got := float32ToHalfOurs(f), float32ToHalf(f); ours != got {
			t.Fatalf("float32 %#08x (%v): ours %#04x, x448 %#04x", f, math.Float32frombits(f), ours, got)
		}
	}
	low := []uint32{0, 1, 0x0fff, 0x1000, 0x1001, 0x1fff, 0x0800, 0x17ff}
	for se := range uint32(1 << 9) {
		for m := range uint32(1 << 10) {
			for _, l := range low {
				check(se<<23 | m<<13 | l)
			}
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	for range 1 << 20 {
		check(r.Uint32())
	}
	// The benchmark's input, through both slice loops.
	src := fp16Input(1<<16, 2)
	if a, b := appendFP16Ours(nil, src), appendFP16(nil, src); !bytes.Equal(a, b) {
		t.Error("appendFP16 differs from the hand-written loop")
	}
}
