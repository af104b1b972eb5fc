package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"tracr/engine"
	"tracr/graph/onnxpb"
	"tracr/tensor"
	"tracr/zoo"
)

// unknownOpModel is a valid ONNX model whose one node is an operator no
// runtime has: X[1,4] -> NoSuchOp -> Y.
func unknownOpModel(t *testing.T) []byte {
	t.Helper()
	m := &onnxpb.ModelProto{IrVersion: proto.Int64(8), OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}},
		Graph: &onnxpb.GraphProto{Name: proto.String("bad"), Input: []*onnxpb.ValueInfoProto{floatInfo("X", 1, 4)}, Output: []*onnxpb.ValueInfoProto{floatInfo("Y", 1, 4)},
			Node: []*onnxpb.NodeProto{{Name: proto.String("n0"), OpType: proto.String("NoSuchOp"), Input: []string{"X"}, Output: []string{"Y"}}}}}
	data, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestBadInputs runs the CLI on hostile or broken inputs: each must fail
// with one clear line naming the problem and exit 1, and write nothing.
func TestBadInputs(t *testing.T) {
	if _, err := engine.LibraryPath(); err != nil {
		if os.Getenv("TRACR_REQUIRE_ORT") != "" {
			t.Fatalf("TRACR_REQUIRE_ORT is set: %v", err)
		}
		t.Skip(err.Error())
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	alexnet, _, _, err := zoo.Resolve(context.Background(), "alexnet")
	if err != nil {
		t.Fatal(err)
	}
	truncated := write("truncated.onnx", alexnet[:len(alexnet)/3])
	garbage := write("garbage.onnx", bytes.Repeat([]byte{0xff, 0x13, 0x00}, 1000))
	unknown := write("unknown-op.onnx", unknownOpModel(t))
	wrongType := write("wrong-type.toml", []byte("model = \"alexnet\"\n\n[edge]\nthreads = \"four\"\n"))
	wrongKey := write("wrong-key.toml", []byte("model = \"alexnet\"\n[edge]\nthreds = 2\n"))
	badLimit := write("bad-limit.toml", []byte("model = \"alexnet\"\n[edge]\ncpu_limit = -0.5\n"))
	badShape := write("bad-shape.toml", []byte("model = \"alexnet\"\ninput_shape = [\"input\"]\n[dataset]\nsynthetic = 2\n"))
	notCgroup := t.TempDir()
	splitOut := filepath.Join(dir, "split-out")
	tests := []struct {
		name string
		args []string
		// want are substrings of the one-line error.
		want []string
		// env is set for the case.
		env map[string]string
	}{
		{"truncated onnx, cuts", []string{"cuts", "--model", truncated}, []string{"truncated.onnx"}, nil},
		{"truncated onnx, split", []string{"split", "--model", truncated, "--cut", "3", "-o", splitOut}, []string{"truncated.onnx"}, nil},
		{"not onnx at all", []string{"cuts", "--model", garbage}, []string{"garbage.onnx"}, nil},
		// cuts and split without --verify only read the graph and accept
		// an operator they do not know; ONNX Runtime rejects it when the
		// model is run.
		{"unknown op, split --verify", []string{"split", "--model", unknown, "--cut", "0", "--verify", "-o", splitOut}, []string{"NoSuchOp"}, nil},
		{"toml wrong type", []string{"run", "--config", wrongType}, []string{"wrong-type.toml:4", "threads"}, nil},
		{"toml unknown key", []string{"run", "--config", wrongKey}, []string{"wrong-key.toml:3", "threds"}, nil},
		{"missing config", []string{"run", "--config", filepath.Join(dir, "nope.toml")}, []string{"nope.toml"}, nil},
		{"edge cpu negative", []string{"plan", "--model", "alexnet", "--edge-cpu", "-1"}, []string{"CPU limit -1", "must be above 0"}, nil},
		{"edge cpu above the cores", []string{"plan", "--model", "alexnet", "--edge-cpu", "999"}, []string{"CPU limit 999", "cores"}, nil},
		{"edge cpu zero", []string{"run", "--edge-cpu", "0"}, []string{"--edge-cpu 0"}, nil},
		{"bench edge cpu zero", []string{"bench", "--quick", "--edge-cpu", "0", "--out", filepath.Join(dir, "bench0")}, []string{"--edge-cpu 0"}, nil},
		{"bench edge cpu above the cores", []string{"bench", "--quick", "--edge-cpu", "99", "--out", filepath.Join(dir, "bench99")}, []string{"CPU limit 99", "cores"}, nil},
		{"sweep edge cpu zero", []string{"sweep", "--config", filepath.Join("..", "..", "config", "sweep-smoke.toml"), "--edge-cpu", "0"}, []string{"--edge-cpu", "CPU limit 0"}, nil},
		{"sweep no cgroup", []string{"sweep", "--config", filepath.Join("..", "..", "config", "sweep-smoke.toml"), "--edge-cpu", "0.5", "--out", filepath.Join(dir, "sweep-nocg")},
			[]string{"edge CPU limit", "TRACR_CGROUP"}, map[string]string{"TRACR_CGROUP": notCgroup}},
		{"edge cpu with slowdown", []string{"plan", "--model", "alexnet", "--edge-cpu", "0.5", "--edge-slowdown", "10"}, []string{"exclude each other"}, nil},
		{"edge cpu in the config", []string{"run", "--config", badLimit}, []string{"bad-limit.toml", "cpu_limit"}, nil},
		{"no cgroup", []string{"probe", "--edge-cpu", "0.5"}, []string{"edge CPU limit", "run as root", "TRACR_CGROUP"}, map[string]string{"TRACR_CGROUP": notCgroup}},
		{"input shape malformed", []string{"cuts", "--model", "alexnet", "--input-shape", "1x3x224x224"}, []string{"--input-shape", "want NAME=1x3x640x640"}, nil},
		{"input shape bad dimension", []string{"run", "--input-shape", "input=1x3x0x224"}, []string{"--input-shape", `dimension "0"`}, nil},
		{"input shape no such input", []string{"split", "--model", "alexnet", "--cut", "3", "-o", splitOut, "--input-shape", "image=1x3x224x224"},
			[]string{`no input "image"`, "its inputs: input [1,3,224,224]"}, nil},
		{"input shape against a fixed size", []string{"profile", "--model", "alexnet", "--input-shape", "input=1x3x300x300"},
			[]string{"input=1x3x300x300", `input "input" is [1,3,224,224]`}, nil},
		{"input shape in the config", []string{"run", "--config", badShape}, []string{"bad-shape.toml", "input_shape", "want NAME="}, nil},
	}
	if vad := filepath.Join("..", "..", "..", "shared", "models", "silero_vad_v5.onnx"); fileExists(vad) {
		// A size the model rejects: reflection padding needs more samples.
		tests = append(tests, struct {
			name string
			args []string
			want []string
			env  map[string]string
		}{"input size the model rejects", []string{"split", "--model", vad, "--cut", "2", "-o", splitOut, "--input-shape", "input=1x1"},
			[]string{"Pad reflect", "probed at input [1,1] (declared [?,?])", "--input-shape input=NxN"}, nil})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			status := run(append([]string{"tracr"}, tt.args...), &stdout, &stderr)
			msg := stderr.String()
			if status != 1 || !strings.HasPrefix(msg, "tracr: ") || strings.Count(msg, "\n") != 1 {
				t.Fatalf("status %d, stderr %q: want 1 and one line \"tracr: ...\"", status, msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			if _, err := os.Stat(splitOut); !os.IsNotExist(err) {
				t.Errorf("%s was written (stat: %v)", splitOut, err)
			}
		})
	}
}

// TestRunUnwritableOutput runs with an output folder that cannot be made
// (below a regular file, which stands in for a read-only folder since root
// could write one): one clear line naming it, exit 1, nothing written.
func TestRunUnwritableOutput(t *testing.T) {
	if _, err := engine.LibraryPath(); err != nil {
		if os.Getenv("TRACR_REQUIRE_ORT") != "" {
			t.Fatalf("TRACR_REQUIRE_ORT is set: %v", err)
		}
		t.Skip(err.Error())
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(file, "results")
	cfg := writeConfig(t, dir, "model = \"alexnet\"\nserver = \"local\"\n[dataset]\nsynthetic = 2\n[output]\ndir = \""+out+"\"\n")
	var stdout, stderr bytes.Buffer
	status := run([]string{"tracr", "run", "--config", cfg, "--repeats", "1", "--quiet"}, &stdout, &stderr)
	if status != 1 || !strings.Contains(stderr.String(), file) || strings.Count(stderr.String(), "\n") != 1 {
		t.Fatalf("status %d, stderr %q: want 1 and one line naming %s", status, stderr.String(), file)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 { // file and run.toml
		t.Errorf("%d entries in %s after the failure, want 2", len(entries), dir)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// floatInfo declares a float32 tensor; a negative dimension is a symbolic
// one.
func floatInfo(name string, dims ...int64) *onnxpb.ValueInfoProto {
	sp := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		dim := &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}}
		if d < 0 {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "N"}
		}
		sp.Dim = append(sp.Dim, dim)
	}
	return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(tensor.Float32)), Shape: sp}}}}
}
