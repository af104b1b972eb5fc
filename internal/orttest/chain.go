package orttest

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"tracr/graph/onnxpb"
	"tracr/tensor"
)

// ChainModel builds a small float32 chain, x[1,16] -> MatMul -> Relu
// -> MatMul -> Tanh -> Add -> y[1,16], whose every prefix is a cut.
func ChainModel(t testing.TB) []byte {
	t.Helper()
	vi := func(name string) *onnxpb.ValueInfoProto {
		sp := &onnxpb.TensorShapeProto{}
		for _, d := range []int64{1, 16} {
			sp.Dim = append(sp.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
		}
		return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(tensor.Float32)), Shape: sp}}}}
	}
	weight := func(name string, dims ...int64) *onnxpb.TensorProto {
		n := tensor.Shape(dims).NumElements()
		v := make([]float32, n)
		for i := range v {
			v[i] = float32((i*7+len(name)*3)%13-6) / 9
		}
		return &onnxpb.TensorProto{Name: proto.String(name), Dims: dims, DataType: proto.Int32(int32(tensor.Float32)),
			RawData: tensor.FromFloat32(name, dims, v).Data}
	}
	node := func(op string, in []string, out string) *onnxpb.NodeProto {
		return &onnxpb.NodeProto{Name: proto.String(out + "_node"), OpType: proto.String(op), Input: in, Output: []string{out}}
	}
	g := &onnxpb.GraphProto{
		Name:        proto.String("chain"),
		Input:       []*onnxpb.ValueInfoProto{vi("x")},
		Output:      []*onnxpb.ValueInfoProto{vi("y")},
		Initializer: []*onnxpb.TensorProto{weight("w1", 16, 16), weight("w2", 16, 16), weight("b", 1, 16)},
		Node: []*onnxpb.NodeProto{
			node("MatMul", []string{"x", "w1"}, "h1"),
			node("Relu", []string{"h1"}, "h2"),
			node("MatMul", []string{"h2", "w2"}, "h3"),
			node("Tanh", []string{"h3"}, "h4"),
			node("Add", []string{"h4", "b"}, "y"),
		},
	}
	m := &onnxpb.ModelProto{
		IrVersion:   proto.Int64(8),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}},
		Graph:       g,
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
