package graph_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"tracr/engine"
	"tracr/graph"
	"tracr/graph/onnxpb"
	"tracr/tensor"
)

func strAttr(name, v string) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte(v)}
}

// int64Const adds an int64 initialiser.
func (b *builder) int64Const(name string, v ...int64) string {
	b.g.Initializer = append(b.g.Initializer, &onnxpb.TensorProto{
		Name: proto.String(name), Dims: []int64{int64(len(v))}, DataType: proto.Int32(int32(tensor.Int64)), Int64Data: v,
	})
	return name
}

// stridedModel takes x [1,3,H,W] with H and W dynamic through eight 3x3
// stride-2 convolutions (each with a Relu), down to 1x1 at the default
// probe sizes 224 and 112, and returns both that map (y [1,4,?,?]) and a
// classifier on a global average pool after the fourth (p [1,5]). Probed
// at sizes 1 and 2, every tensor after the first convolution is 1 at both
// and was written fixed, so the halves ran at no other size (the text
// detector and face detector failures: "Got: 160 Expected: 1").
func stridedModel(t testing.TB) *graph.Model {
	b := newBuilder("strided").input("x", 1, 3, -1, -1).output("y", 1, 4, -1, -1).output("p", 1, 5)
	in, cin := "x", int64(3)
	for i := range 8 {
		name := "c" + string(rune('0'+i))
		w := b.weight(name+".w", 4, cin, 3, 3)
		b.node("Conv", []string{in, w, b.weight(name+".b", 4)}, []string{name}, ints("pads", 1, 1, 1, 1), ints("strides", 2, 2))
		b.node("Relu", []string{name}, []string{name + ".r"})
		in, cin = name+".r", 4
		if i == 3 {
			b.node("GlobalAveragePool", []string{in}, []string{"gap"})
			b.node("Flatten", []string{"gap"}, []string{"flat"})
			b.node("MatMul", []string{"flat", b.weight("fc.w", 4, 5)}, []string{"p"})
		}
	}
	b.node("Identity", []string{in}, []string{"y"})
	return b.model(t)
}

// longInputModel takes x [1,L] with L dynamic, pads it by reflection by
// 300 on each side (which needs L > 300: it fails at sizes 1 and 2 and at
// the default 224, like the voice-activity model's "Pad reflect requires
// axis length >= 2"), and convolves it with stride 2: y [1,2,?].
func longInputModel(t testing.TB) *graph.Model {
	b := newBuilder("long").input("x", 1, -1).output("y", 1, 2, -1)
	b.node("Unsqueeze", []string{"x", b.int64Const("axes", 1)}, []string{"u"})
	b.node("Pad", []string{"u", b.int64Const("pads", 0, 0, 300, 0, 0, 300)}, []string{"padded"}, strAttr("mode", "reflect"))
	b.node("Conv", []string{"padded", b.weight("w", 2, 1, 5), b.weight("b", 2)}, []string{"conv"}, ints("strides", 2))
	b.node("Relu", []string{"conv"}, []string{"y"})
	return b.model(t)
}

// checkCutsAt splits m, prepared already, at every cut and runs the full
// model and head -> tail at each of the input shapes: bit-identical with
// optimisations off.
func checkCutsAt(t *testing.T, m *graph.Model, shapes ...engine.InputShapes) {
	t.Helper()
	ctx := context.Background()
	for _, s := range shapes {
		in, err := engine.Prepare(ctx, cloneModel(t, m), 3, s) // only for inputs at s
		if err != nil {
			t.Fatalf("inputs at %s: %v", s, err)
		}
		checks, err := engine.VerifyCuts(ctx, m, in, exactOptions)
		if err != nil {
			t.Fatalf("at %s: %v", s, err)
		}
		for _, c := range checks {
			if !c.Identical {
				t.Errorf("at %s, cut %d: head->tail differs from the full model by %g", s, c.Cut, c.MaxAbsDiff)
			}
		}
		t.Logf("at %s: %d cuts bit-identical", s, len(checks))
	}
}

// cloneModel parses m's bytes again: a model to prepare without touching m.
func cloneModel(t *testing.T, m *graph.Model) *graph.Model {
	t.Helper()
	b, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	c, err := graph.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDynamicSizesStrided(t *testing.T) {
	requireORT(t)
	m := stridedModel(t)
	if _, err := engine.Prepare(context.Background(), m, 1, nil); err != nil {
		t.Fatal(err)
	}
	// The last map is 1x1 at both probe sizes, and so is the pooled one:
	// both stay dynamic; the classifier's width is fixed.
	for name, want := range map[string]tensor.Shape{"c7.r": {1, 4, -1, -1}, "gap": {1, 4, -1, -1}, "flat": {1, 4}, "c0.r": {1, 4, -1, -1}} {
		if ti, _ := m.Tensor(name); !ti.Shape.Equal(want) {
			t.Errorf("%s recorded as %s, want %s", name, ti.Shape, want)
		}
	}
	cuts := graph.Cuts(m)
	s, err := graph.Partition(m, graph.Prefix(cuts[len(cuts)-2].ID))
	if err != nil {
		t.Fatal(err)
	}
	tail, err := graph.Parse(s.Tail)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range tail.Inputs() {
		if ti, _ := tail.Tensor(in); ti.Shape.Static() && in != "flat" && in != "p" {
			t.Errorf("the written tail declares input %s as %s: a size the model fixes only at the probe", in, ti.Shape)
		}
	}
	checkCutsAt(t, m,
		engine.InputShapes{"x": {1, 3, 64, 64}},
		engine.InputShapes{"x": {1, 3, 320, 192}},
		engine.InputShapes{"x": {1, 3, 512, 512}})
}

func TestDynamicSizesLongInput(t *testing.T) {
	requireORT(t)
	ctx := context.Background()
	m := longInputModel(t)
	_, err := engine.Prepare(ctx, m, 1, nil)
	if err == nil {
		t.Fatal("Prepare at the default size: no error, want the probe failure")
	}
	for _, w := range []string{"Pad", "probed at x [1,224] (declared [1,?])", "--input-shape x=1xN"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q spans lines", err)
	}
	if _, err := engine.Prepare(ctx, m, 1, engine.InputShapes{"x": {1, 1024}}); err != nil {
		t.Fatal(err)
	}
	if ti, _ := m.Tensor("conv"); !ti.Shape.Equal(tensor.Shape{1, 2, -1}) {
		t.Errorf("conv recorded as %s, want [1,2,?]", ti.Shape)
	}
	checkCutsAt(t, m, engine.InputShapes{"x": {1, 1024}}, engine.InputShapes{"x": {1, 701}}, engine.InputShapes{"x": {1, 4000}})
}

// TestDynamicSecondProbeFails: a model that runs at the given size but not
// at half of it is measured with nothing written fixed, and still splits
// exactly.
func TestDynamicSecondProbeFails(t *testing.T) {
	requireORT(t)
	m := longInputModel(t)
	if _, err := engine.Prepare(context.Background(), m, 1, engine.InputShapes{"x": {1, 400}}); err != nil {
		t.Fatal(err)
	}
	if ti, _ := m.Tensor("conv"); !ti.Shape.Equal(tensor.Shape{-1, -1, -1}) {
		t.Errorf("conv recorded as %s, want [?,?,?]", ti.Shape)
	}
	checkCutsAt(t, m, engine.InputShapes{"x": {1, 400}}, engine.InputShapes{"x": {1, 999}})
}
