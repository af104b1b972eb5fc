// Package tensor defines the dense tensor value that moves between tracr's
// packages: an ONNX element type, a shape and the little-endian bytes.
package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unsafe"
)

// DType is an ONNX tensor element type; its values are those of
// onnx.TensorProto.DataType, so it can be stored in a model or sent on the
// wire without translation.
type DType int32

// The ONNX element types.
const (
	Undefined  DType = 0
	Float32    DType = 1
	Uint8      DType = 2
	Int8       DType = 3
	Uint16     DType = 4
	Int16      DType = 5
	Int32      DType = 6
	Int64      DType = 7
	String     DType = 8
	Bool       DType = 9
	Float16    DType = 10
	Float64    DType = 11
	Uint32     DType = 12
	Uint64     DType = 13
	Complex64  DType = 14
	Complex128 DType = 15
	BFloat16   DType = 16
)

var dtypeNames = map[DType]string{
	Undefined: "undefined", Float32: "float32", Uint8: "uint8", Int8: "int8",
	Uint16: "uint16", Int16: "int16", Int32: "int32", Int64: "int64",
	String: "string", Bool: "bool", Float16: "float16", Float64: "float64",
	Uint32: "uint32", Uint64: "uint64", Complex64: "complex64",
	Complex128: "complex128", BFloat16: "bfloat16",
}

var dtypeSizes = map[DType]int{
	Float32: 4, Uint8: 1, Int8: 1, Uint16: 2, Int16: 2, Int32: 4, Int64: 8,
	Bool: 1, Float16: 2, Float64: 8, Uint32: 4, Uint64: 8, Complex64: 8,
	Complex128: 16, BFloat16: 2,
}

// String returns the lower-case name of d ("float32"), or "dtype(N)" for a
// type tracr does not name.
func (d DType) String() string {
	if s, ok := dtypeNames[d]; ok {
		return s
	}
	return "dtype(" + strconv.Itoa(int(d)) + ")"
}

// Size returns the number of bytes of one element of d, or 0 for types
// without a fixed-size dense layout (string, undefined, sub-byte types).
func (d DType) Size() int { return dtypeSizes[d] }

// ParseDType returns the DType named s, as printed by DType.String.
func ParseDType(s string) (DType, error) {
	for d, n := range dtypeNames {
		if n == s {
			return d, nil
		}
	}
	return Undefined, fmt.Errorf("unknown dtype %q", s)
}

// Shape is a tensor shape. A negative dimension is dynamic (unknown until
// run time).
type Shape []int64

// NumElements returns the product of the dimensions, or -1 if any dimension
// is dynamic. A scalar (empty shape) has one element.
func (s Shape) NumElements() int64 {
	n := int64(1)
	for _, d := range s {
		if d < 0 {
			return -1
		}
		n *= d
	}
	return n
}

// Static reports whether every dimension is known.
func (s Shape) Static() bool { return s.NumElements() >= 0 }

// String formats s as [1,3,224,224], with ? for a dynamic dimension.
func (s Shape) String() string {
	parts := make([]string, len(s))
	for i, d := range s {
		if d < 0 {
			parts[i] = "?"
		} else {
			parts[i] = strconv.FormatInt(d, 10)
		}
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// Equal reports whether s and o have the same dimensions.
func (s Shape) Equal(o Shape) bool {
	if len(s) != len(o) {
		return false
	}
	for i := range s {
		if s[i] != o[i] {
			return false
		}
	}
	return true
}

// Accepts reports whether a concrete shape fits s, a declared shape whose
// negative dimensions match any size.
func (s Shape) Accepts(concrete Shape) bool {
	if len(s) != len(concrete) {
		return false
	}
	for i := range s {
		if s[i] >= 0 && s[i] != concrete[i] {
			return false
		}
	}
	return true
}

// Clone returns a copy of s that shares no memory with it.
func (s Shape) Clone() Shape { return append(Shape(nil), s...) }

// Tensor is a named dense tensor: element type, static shape and the
// elements as little-endian bytes in row-major order.
type Tensor struct {
	Name  string
	DType DType
	Shape Shape
	Data  []byte
}

// ByteSize returns the number of bytes the shape and type call for, or -1 if
// the shape is dynamic or the type has no fixed size.
func ByteSize(d DType, s Shape) int64 {
	n := s.NumElements()
	if n < 0 || d.Size() == 0 {
		return -1
	}
	return n * int64(d.Size())
}

// Validate checks that the shape is static and the data length matches it.
func (t Tensor) Validate() error {
	want := ByteSize(t.DType, t.Shape)
	if want < 0 {
		return fmt.Errorf("tensor %q: %s %s has no fixed byte size", t.Name, t.DType, t.Shape)
	}
	if int64(len(t.Data)) != want {
		return fmt.Errorf("tensor %q: %s %s needs %d bytes, has %d", t.Name, t.DType, t.Shape, want, len(t.Data))
	}
	return nil
}

// FromFloat32 returns a float32 tensor holding a copy of v.
func FromFloat32(name string, shape Shape, v []float32) Tensor {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return Tensor{Name: name, DType: Float32, Shape: shape.Clone(), Data: b}
}

// Float32s returns the elements of a float32 tensor as a new slice.
func (t Tensor) Float32s() ([]float32, error) {
	if t.DType != Float32 {
		return nil, fmt.Errorf("tensor %q is %s, not float32", t.Name, t.DType)
	}
	v := make([]float32, len(t.Data)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return v, nil
}

// BytesOf returns the bytes of a slice of fixed-size numbers without copying.
// It exists for handing Go-typed buffers to code that wants raw bytes; the
// result aliases v.
func BytesOf[T ~int8 | ~uint8 | ~int16 | ~uint16 | ~int32 | ~uint32 | ~int64 | ~uint64 | ~float32 | ~float64 | ~bool](v []T) []byte {
	if len(v) == 0 {
		return nil
	}
	var zero T
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*int(unsafe.Sizeof(zero)))
}
