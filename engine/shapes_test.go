package engine

import (
	"strings"
	"testing"

	"tracr/graph"
	"tracr/graph/onnxpb"
	"tracr/tensor"
)

func TestParseInputShapes(t *testing.T) {
	got, err := ParseInputShapes([]string{"x=1x3x640x480", "sr="})
	if err != nil {
		t.Fatal(err)
	}
	if !got["x"].Equal(tensor.Shape{1, 3, 640, 480}) || got["sr"] == nil || len(got["sr"]) != 0 {
		t.Errorf("ParseInputShapes = %v", got)
	}
	if s := got.String(); s != "sr=,x=1x3x640x480" {
		t.Errorf("String() = %q", s)
	}
	for _, tt := range []struct {
		specs []string
		want  string
	}{
		{[]string{"1x3x640x640"}, "want NAME=1x3x640x640"},
		{[]string{"=1x3"}, "want NAME="},
		{[]string{"x=1x0x3"}, `dimension "0" is not a positive integer`},
		{[]string{"x=1x-3"}, `dimension "-3"`},
		{[]string{"x=1xfoo"}, `dimension "foo"`},
		{[]string{"x=1,3"}, `dimension "1,3"`},
		{[]string{"x=1x3", "x=1x4"}, `input "x" is given twice`},
	} {
		if _, err := ParseInputShapes(tt.specs); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseInputShapes(%q) = %v; want an error with %q", tt.specs, err, tt.want)
		}
	}
}

// dynamicModel is x [1,3,?,?] -> Relu -> y, with a second input s [?].
func dynamicModel(t *testing.T) *graph.Model {
	g := testModel{
		nodes:  []*onnxpb.NodeProto{node("Relu", []string{"x"}, []string{"y"}), node("Neg", []string{"s"}, []string{"z"})},
		inputs: []*onnxpb.ValueInfoProto{vi("x", tensor.Float32, 1, 3, -1, -1), vi("s", tensor.Float32, -1)},
		outs:   []*onnxpb.ValueInfoProto{vi("y", tensor.Float32, 1, 3, -1, -1), vi("z", tensor.Float32, -1)},
	}
	m, err := graph.Parse(g.bytes(t))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestInputShapesCheck(t *testing.T) {
	m := dynamicModel(t)
	if err := (InputShapes{"x": {1, 3, 64, 96}}).Check(m); err != nil {
		t.Errorf("a fitting shape: %v", err)
	}
	for _, tt := range []struct {
		shapes InputShapes
		want   string
	}{
		{InputShapes{"img": {1, 3, 64, 64}}, `the model has no input "img"; its inputs: x [1,3,?,?], s [?]`},
		{InputShapes{"x": {1, 3, 64}}, `input "x" is [1,3,?,?]`},
		{InputShapes{"x": {1, 4, 64, 64}}, "x=1x4x64x64: input \"x\" is [1,3,?,?]; give every dimension, the fixed ones as they are"},
	} {
		if err := tt.shapes.Check(m); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Check(%v) = %v; want an error with %q", tt.shapes, err, tt.want)
		}
	}
}

func TestProbeShapes(t *testing.T) {
	m := dynamicModel(t)
	first, second, err := probeShapes(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !first["x"].Equal(tensor.Shape{1, 3, DefaultDim, DefaultDim}) || !first["s"].Equal(tensor.Shape{DefaultDim}) {
		t.Errorf("first = %v", first)
	}
	if !second["x"].Equal(tensor.Shape{1, 3, DefaultDim / 2, DefaultDim / 2}) || !second["s"].Equal(tensor.Shape{DefaultDim / 2}) {
		t.Errorf("second = %v", second)
	}
	first, second, err = probeShapes(m, InputShapes{"x": {1, 3, 1, 641}})
	if err != nil {
		t.Fatal(err)
	}
	if !first["x"].Equal(tensor.Shape{1, 3, 1, 641}) || !second["x"].Equal(tensor.Shape{1, 3, 2, 320}) {
		t.Errorf("given: first %v, second %v", first["x"], second["x"])
	}
}

func TestVariesBeyondBatch(t *testing.T) {
	at := func(shapes ...tensor.Shape) []tensor.Tensor {
		var ts []tensor.Tensor
		for _, s := range shapes {
			ts = append(ts, tensor.Tensor{Shape: s})
		}
		return ts
	}
	for _, tt := range []struct {
		in, alt []tensor.Tensor
		want    bool
	}{
		{at(tensor.Shape{1, 3, 224, 224}), nil, false},
		{at(tensor.Shape{1, 3, 224, 224}), at(tensor.Shape{2, 3, 224, 224}), false},
		{at(tensor.Shape{1, 3, 224, 224}), at(tensor.Shape{1, 3, 112, 224}), true},
		{at(tensor.Shape{224}), at(tensor.Shape{112}), true},
	} {
		if got := variesBeyondBatch(tt.in, tt.alt); got != tt.want {
			t.Errorf("variesBeyondBatch(%v, %v) = %v, want %v", tt.in, tt.alt, got, tt.want)
		}
	}
}
