package tensor

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func TestShape(t *testing.T) {
	tests := []struct {
		shape Shape
		n     int64
		text  string
	}{
		{Shape{}, 1, "[]"},
		{Shape{1, 3, 224, 224}, 150528, "[1,3,224,224]"},
		{Shape{-1, 4}, -1, "[?,4]"},
		{Shape{2, 0}, 0, "[2,0]"},
	}
	for _, tt := range tests {
		if got := tt.shape.NumElements(); got != tt.n {
			t.Errorf("%v.NumElements() = %d, want %d", tt.shape, got, tt.n)
		}
		if got := tt.shape.String(); got != tt.text {
			t.Errorf("String() = %q, want %q", got, tt.text)
		}
	}
	if !(Shape{-1, 4}).Accepts(Shape{7, 4}) || (Shape{-1, 4}).Accepts(Shape{7, 5}) || (Shape{4}).Accepts(Shape{1, 4}) {
		t.Error("Accepts disagrees with the declared shape")
	}
}

func TestValidate(t *testing.T) {
	good := FromFloat32("x", Shape{2, 2}, []float32{1, 2, 3, 4})
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := good
	bad.Data = bad.Data[:15]
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "needs 16 bytes, has 15") {
		t.Errorf("err = %v", err)
	}
	dyn := Tensor{Name: "d", DType: Float32, Shape: Shape{-1}}
	if err := dyn.Validate(); err == nil {
		t.Error("a dynamic shape validated")
	}
}

func TestRandomDeterministic(t *testing.T) {
	for _, d := range []DType{Float32, Float16, BFloat16, Float64, Int64, Uint8, Bool} {
		a, err := Random("r", d, Shape{3, 5}, 9)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := Random("r", d, Shape{3, 5}, 9)
		c, _ := Random("r", d, Shape{3, 5}, 10)
		if !bytes.Equal(a.Data, b.Data) || bytes.Equal(a.Data, c.Data) {
			t.Errorf("%s: same seed must repeat, another seed must differ", d)
		}
		if err := a.Validate(); err != nil {
			t.Error(err)
		}
	}
}

func TestMaxAbsDiff(t *testing.T) {
	a := FromFloat32("a", Shape{3}, []float32{1, 2, float32(math.NaN())})
	b := FromFloat32("a", Shape{3}, []float32{1, 2.5, float32(math.NaN())})
	if d, err := MaxAbsDiff(a, b); err != nil || d != 0.5 {
		t.Errorf("diff = %g, %v; want 0.5 (NaN against NaN counts as equal)", d, err)
	}
	c := FromFloat32("a", Shape{3}, []float32{1, 2, 3})
	if d, _ := MaxAbsDiff(a, c); !math.IsInf(d, 1) {
		t.Errorf("NaN against a number = %g, want +Inf", d)
	}
	// float16: 1.0 is 0x3c00, 1.5 is 0x3e00, 2^-24 (smallest subnormal) is 0x0001.
	h := func(v ...uint16) Tensor { return Tensor{DType: Float16, Shape: Shape{int64(len(v))}, Data: BytesOf(v)} }
	if d, _ := MaxAbsDiff(h(0x3c00, 0x0001), h(0x3e00, 0x0000)); d != 0.5 {
		t.Errorf("float16 diff = %g, want 0.5", d)
	}
	if d, _ := MaxAbsDiff(h(0x0001), h(0x0000)); d != math.Pow(2, -24) {
		t.Errorf("float16 subnormal diff = %g", d)
	}
	if _, err := MaxAbsDiff(a, FromFloat32("a", Shape{1, 3}, []float32{1, 2, 3})); err == nil {
		t.Error("shapes differ but no error")
	}
}
