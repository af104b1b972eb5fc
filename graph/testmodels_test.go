package graph_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"tracr/graph"
	"tracr/graph/onnxpb"
	"tracr/tensor"
)

// builder assembles small ONNX graphs for tests.
type builder struct {
	g *onnxpb.GraphProto
}

func newBuilder(name string) *builder {
	return &builder{g: &onnxpb.GraphProto{Name: proto.String(name)}}
}

func vi(name string, d tensor.DType, dims ...int64) *onnxpb.ValueInfoProto {
	sp := &onnxpb.TensorShapeProto{}
	for _, v := range dims {
		dim := &onnxpb.TensorShapeProto_Dimension{}
		if v >= 0 {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: v}
		} else {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "N"}
		}
		sp.Dim = append(sp.Dim, dim)
	}
	return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(d)), Shape: sp}}}}
}

func (b *builder) input(name string, dims ...int64) *builder {
	b.g.Input = append(b.g.Input, vi(name, tensor.Float32, dims...))
	return b
}

func (b *builder) output(name string, dims ...int64) *builder {
	b.g.Output = append(b.g.Output, vi(name, tensor.Float32, dims...))
	return b
}

// weight adds a float32 initialiser with deterministic values.
func (b *builder) weight(name string, dims ...int64) string {
	n := tensor.Shape(dims).NumElements()
	v := make([]float32, n)
	for i := range v {
		v[i] = float32((i*7+len(name)*3)%11-5) / 8
	}
	b.g.Initializer = append(b.g.Initializer, &onnxpb.TensorProto{
		Name: proto.String(name), Dims: dims, DataType: proto.Int32(int32(tensor.Float32)),
		RawData: tensor.FromFloat32(name, dims, v).Data,
	})
	return name
}

func (b *builder) node(op string, ins, outs []string, attrs ...*onnxpb.AttributeProto) *builder {
	b.g.Node = append(b.g.Node, &onnxpb.NodeProto{
		Name: proto.String(outs[0] + "_node"), OpType: proto.String(op),
		Input: ins, Output: outs, Attribute: attrs,
	})
	return b
}

func ints(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
}

func intAttr(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func graphAttr(name string, g *onnxpb.GraphProto) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: g}
}

func tensorAttr(name string, t tensor.Tensor) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_TENSOR.Enum(), T: &onnxpb.TensorProto{
		Dims: t.Shape, DataType: proto.Int32(int32(t.DType)), RawData: t.Data}}
}

func (b *builder) model(t testing.TB) *graph.Model {
	t.Helper()
	mp := &onnxpb.ModelProto{
		IrVersion:    proto.Int64(8),
		ProducerName: proto.String("tracr-test"),
		OpsetImport:  []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}},
		Graph:        b.g,
	}
	data, err := proto.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	m, err := graph.Parse(data)
	if err != nil {
		t.Fatalf("parse %s: %v", b.g.GetName(), err)
	}
	return m
}

func conv(b *builder, name, in string, cin, cout int64) string {
	w := b.weight(name+".w", cout, cin, 3, 3)
	bias := b.weight(name+".b", cout)
	b.node("Conv", []string{in, w, bias}, []string{name}, ints("pads", 1, 1, 1, 1))
	return name
}

// chain: MatMul -> Relu -> Add -> Sigmoid.
func chainModel(t testing.TB) *graph.Model {
	b := newBuilder("chain").input("x", 1, 4).output("y", 1, 3)
	b.node("MatMul", []string{"x", b.weight("w", 4, 3)}, []string{"mm"})
	b.node("Relu", []string{"mm"}, []string{"r"})
	b.node("Add", []string{"r", b.weight("bias", 3)}, []string{"a"})
	b.node("Sigmoid", []string{"a"}, []string{"y"})
	return b.model(t)
}

// residual: Conv -> Relu -> Conv -> Add(skip from x) -> Relu.
func residualModel(t testing.TB) *graph.Model {
	b := newBuilder("residual").input("x", 1, 2, 8, 8).output("y", 1, 2, 8, 8)
	c1 := conv(b, "c1", "x", 2, 2)
	b.node("Relu", []string{c1}, []string{"r1"})
	c2 := conv(b, "c2", "r1", 2, 2)
	b.node("Add", []string{c2, "x"}, []string{"sum"})
	b.node("Relu", []string{"sum"}, []string{"y"})
	return b.model(t)
}

// branch: two parallel convs concatenated, then pooled; the file lists the
// nodes out of order to exercise the topological sort.
func branchModel(t testing.TB) *graph.Model {
	b := newBuilder("branch").input("x", 1, 3, 6, 6).output("y", 1, 8, 1, 1)
	b.node("GlobalAveragePool", []string{"cat"}, []string{"y"})
	b.node("Concat", []string{"ra", "rb"}, []string{"cat"}, intAttr("axis", 1))
	conv(b, "ca", "x", 3, 4)
	conv(b, "cb", "x", 3, 4)
	b.node("Relu", []string{"ca"}, []string{"ra"})
	b.node("Tanh", []string{"cb"}, []string{"rb"})
	return b.model(t)
}

// multiOutput: an early graph output also feeds later nodes; a Constant
// and a ConstantOfShape-of-constant feed the tail; the batch is dynamic.
func multiOutputModel(t testing.TB) *graph.Model {
	b := newBuilder("multi").input("x", -1, 4).output("y1", -1, 4).output("y2", -1, 4)
	b.node("Relu", []string{"x"}, []string{"y1"})
	b.node("Constant", nil, []string{"shape"}, tensorAttr("value", tensor.Tensor{DType: tensor.Int64, Shape: tensor.Shape{1}, Data: tensor.BytesOf([]int64{4})}))
	b.node("ConstantOfShape", []string{"shape"}, []string{"fill"}, tensorAttr("value", tensor.FromFloat32("", tensor.Shape{1}, []float32{0.5})))
	b.node("Mul", []string{"y1", "fill"}, []string{"m"})
	b.node("Neg", []string{"x"}, []string{"n"})
	b.node("Add", []string{"m", "n"}, []string{"y2"})
	b.node("Exp", []string{"n"}, []string{"unused"}) // dead: reaches no output
	return b.model(t)
}

// ifModel: an If whose branches capture a tensor computed by an outer node
// and an outer initialiser.
func ifModel(t testing.TB) *graph.Model {
	b := newBuilder("if").input("x", 1, 4).output("y", 1, 4)
	b.node("Relu", []string{"x"}, []string{"r"})
	b.node("ReduceSum", []string{"x"}, []string{"s"}, intAttr("keepdims", 0))
	b.node("Greater", []string{"s", b.weight("zero", 1)}, []string{"cond1"})
	b.node("Squeeze", []string{"cond1"}, []string{"cond"})
	off := b.weight("offset", 4)
	then := &onnxpb.GraphProto{Name: proto.String("then"),
		Node:   []*onnxpb.NodeProto{{OpType: proto.String("Add"), Input: []string{"r", off}, Output: []string{"t_out"}}},
		Output: []*onnxpb.ValueInfoProto{vi("t_out", tensor.Float32, 1, 4)}}
	els := &onnxpb.GraphProto{Name: proto.String("else"),
		Node:   []*onnxpb.NodeProto{{OpType: proto.String("Sub"), Input: []string{"r", off}, Output: []string{"e_out"}}},
		Output: []*onnxpb.ValueInfoProto{vi("e_out", tensor.Float32, 1, 4)}}
	b.node("If", []string{"cond"}, []string{"iff"}, graphAttr("then_branch", then), graphAttr("else_branch", els))
	b.node("Sigmoid", []string{"iff"}, []string{"y"})
	return b.model(t)
}

// ir3Model: IR version 3, with every initialiser also listed as an input.
func ir3Model(t testing.TB) *graph.Model {
	b := newBuilder("ir3").input("x", 1, 4).output("y", 1, 3)
	w := b.weight("w", 4, 3)
	b.g.Input = append(b.g.Input, vi(w, tensor.Float32, 4, 3))
	b.node("MatMul", []string{"x", w}, []string{"mm"})
	b.node("Relu", []string{"mm"}, []string{"y"})
	m := b.model(t)
	m.Proto().IrVersion = proto.Int64(3)
	m.Proto().OpsetImport[0].Version = proto.Int64(8)
	data, err := proto.Marshal(m.Proto())
	if err != nil {
		t.Fatal(err)
	}
	m, err = graph.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type testModel struct {
	name  string
	build func(testing.TB) *graph.Model
}

var testModels = []testModel{
	{"chain", chainModel},
	{"residual", residualModel},
	{"branch", branchModel},
	{"multi-output", multiOutputModel},
	{"if-capture", ifModel},
	{"ir3", ir3Model},
}
