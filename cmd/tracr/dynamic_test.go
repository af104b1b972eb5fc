package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"tracr/graph/onnxpb"
	"tracr/tensor"
)

// dynamicClassifier is an ONNX classifier with input [1,3,?,?]: four 3x3
// stride-2 convolutions with Relu, a global average pool and a 8x10 MatMul
// into 10 scores. Probed at sizes 1 and 2 its maps were 1x1 at both and
// were written fixed, so a split of it ran at no real size.
func dynamicClassifier(t *testing.T) []byte {
	t.Helper()
	g := &onnxpb.GraphProto{Name: proto.String("dynamic-classifier"), Input: []*onnxpb.ValueInfoProto{floatInfo("image", 1, 3, -1, -1)},
		Output: []*onnxpb.ValueInfoProto{floatInfo("scores", 1, 10)}}
	weight := func(name string, dims ...int64) string {
		v := make([]float32, tensor.Shape(dims).NumElements())
		for i := range v {
			v[i] = float32((i*7+len(name)*3)%11-5) / 8
		}
		g.Initializer = append(g.Initializer, &onnxpb.TensorProto{Name: proto.String(name), Dims: dims,
			DataType: proto.Int32(int32(tensor.Float32)), RawData: tensor.FromFloat32(name, dims, v).Data})
		return name
	}
	ints := func(name string, v ...int64) *onnxpb.AttributeProto {
		return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
	}
	add := func(op string, ins []string, out string, attrs ...*onnxpb.AttributeProto) {
		g.Node = append(g.Node, &onnxpb.NodeProto{Name: proto.String(out), OpType: proto.String(op), Input: ins, Output: []string{out}, Attribute: attrs})
	}
	in, cin := "image", int64(3)
	for i := range 4 {
		c := fmt.Sprintf("conv%d", i)
		add("Conv", []string{in, weight(c+".w", 8, cin, 3, 3), weight(c+".b", 8)}, c, ints("pads", 1, 1, 1, 1), ints("strides", 2, 2))
		add("Relu", []string{c}, c+".relu")
		in, cin = c+".relu", 8
	}
	add("GlobalAveragePool", []string{in}, "pool")
	add("Flatten", []string{"pool"}, "flat")
	add("MatMul", []string{"flat", weight("fc", 8, 10)}, "scores")
	b, err := proto.Marshal(&onnxpb.ModelProto{IrVersion: proto.Int64(8), Graph: g,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRunDynamicSize runs a classifier whose input size is dynamic at a
// size no probe used (img_size 96, through the embedded server, which cuts
// its tail from the uploaded model): split at a middle cut, every answer
// equals the edge-only run's.
func TestRunDynamicSize(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	model := filepath.Join(dir, "dynamic.onnx")
	if err := os.WriteFile(model, dynamicClassifier(t), 0o644); err != nil {
		t.Fatal(err)
	}
	samples, err := filepath.Abs(filepath.Join("..", "..", "data", "samples"))
	if err != nil {
		t.Fatal(err)
	}
	path := writeConfig(t, dir, fmt.Sprintf("model = %q\ntask = \"classify\"\nlabels = \"none\"\nimg_size = 96\n[dataset]\npath = %q\n[edge]\nthreads = 1\n[output]\ndir = \"out\"\n", model, samples))
	results := map[string][]string{}
	for _, cut := range []string{"4", "11"} {
		rows := runForcedCut(t, path, filepath.Join(dir, "out", "run.csv"), cut, "--repeats", "1")
		col, cutCol := slices.Index(rows[0], "result"), slices.Index(rows[0], "cut")
		for _, r := range rows[1:] {
			if r[cutCol] != cut {
				t.Errorf("--cut %s: a request ran at cut %s", cut, r[cutCol])
			}
			results[cut] = append(results[cut], r[1]+": "+r[col])
		}
	}
	t.Logf("split at 4: %v", results["4"])
	if !slices.Equal(results["4"], results["11"]) {
		t.Errorf("split and edge-only answers differ:\n%v\n%v", results["4"], results["11"])
	}
}
