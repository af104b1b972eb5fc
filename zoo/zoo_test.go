package zoo

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"tracr/graph/onnxpb"
	"tracr/tensor"
)

// TestPublishedSizes checks parameter counts against the published ones
// (torchvision; Ultralytics before fusing BN) and GFLOPs against twice the
// published multiply-accumulates, both within 1%. Our counts fold BN and
// include the YOLO anchor and stride constants.
func TestPublishedSizes(t *testing.T) {
	tests := []struct {
		name   string
		params int64
		gflops float64
	}{
		{"alexnet", 61_100_840, 2 * 0.714},
		{"resnet18", 11_689_512, 2 * 1.814},
		{"mobilenetv2", 3_504_872, 2 * 0.300},
		{"yolov8n", 3_157_200, 8.7},
		{"yolov8s", 11_166_560, 28.6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Describe(tt.name, 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d params (published %d, %+.2f%%), %.3f GFLOPs (published %.3f)",
				tt.name, s.Params, tt.params, 100*(float64(s.Params)/float64(tt.params)-1), s.GFLOPs, tt.gflops)
			if d := math.Abs(float64(s.Params)/float64(tt.params) - 1); d > 0.01 {
				t.Errorf("%d params, published %d: off by %.2f%%", s.Params, tt.params, 100*d)
			}
			if d := math.Abs(s.GFLOPs/tt.gflops - 1); d > 0.01 {
				t.Errorf("%.3f GFLOPs, published %.3f: off by %.2f%%", s.GFLOPs, tt.gflops, 100*d)
			}
		})
	}
}

// TestShapes checks the input and output shapes, and the sizes accepted.
func TestShapes(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		in, out tensor.Shape
		wantErr string
	}{
		{name: "alexnet", in: tensor.Shape{1, 3, 224, 224}, out: tensor.Shape{1, 1000}},
		{name: "alexnet", size: 224, in: tensor.Shape{1, 3, 224, 224}, out: tensor.Shape{1, 1000}},
		{name: "alexnet", size: 256, wantErr: "takes only 224x224"},
		{name: "resnet18", size: 32, in: tensor.Shape{1, 3, 32, 32}, out: tensor.Shape{1, 1000}},
		{name: "mobilenetv2", size: 512, in: tensor.Shape{1, 3, 512, 512}, out: tensor.Shape{1, 1000}},
		{name: "yolov8n", in: tensor.Shape{1, 3, 640, 640}, out: tensor.Shape{1, 84, 8400}},
		{name: "yolov8", size: 320, in: tensor.Shape{1, 3, 320, 320}, out: tensor.Shape{1, 84, 2100}},
		{name: "YOLOv8s", size: 32, in: tensor.Shape{1, 3, 32, 32}, out: tensor.Shape{1, 84, 21}},
		{name: "yolov8s", size: 1280, in: tensor.Shape{1, 3, 1280, 1280}, out: tensor.Shape{1, 84, 33600}},
		{name: "yolov8n", size: 100, wantErr: "not a multiple of 32"},
		{name: "yolov8n", size: -32, wantErr: "not a multiple of 32"},
		{name: "resnet18", size: 8192, wantErr: "between 32 and 4096"},
		{name: "vgg16", wantErr: `unknown zoo model "vgg16"`},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s@%d", tt.name, tt.size), func(t *testing.T) {
			s, err := Describe(tt.name, tt.size)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Describe() error = %v; want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !s.Input.Equal(tt.in) || !s.Output.Equal(tt.out) {
				t.Fatalf("Describe() = %s -> %s; want %s -> %s", s.Input, s.Output, tt.in, tt.out)
			}
		})
	}
}

// TestModelStructure builds small models and checks the ONNX they are made
// of: header, names, a topologically ordered graph whose every tensor is
// defined once and used, value_info for every intermediate, initialisers
// in raw_data of the right length, and a Spec equal to Describe's.
func TestModelStructure(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
	}{{"resnet18", 64}, {"mobilenetv2", 64}, {"yolov8n", 64}, {"yolov8s", 64}} {
		t.Run(tc.name, func(t *testing.T) {
			data, spec := cachedBuild(t, tc.name, tc.size)
			want, err := Describe(tc.name, tc.size)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(spec) != fmt.Sprint(want) {
				t.Fatalf("Build spec %+v\nDescribe   %+v", spec, want)
			}
			var m onnxpb.ModelProto
			if err := proto.Unmarshal(data, &m); err != nil {
				t.Fatal(err)
			}
			checkStructure(t, &m, spec)
		})
	}
}

func checkStructure(t *testing.T, m *onnxpb.ModelProto, spec Spec) {
	t.Helper()
	if m.GetIrVersion() != 8 || m.GetProducerName() != "tracr" || len(m.GetOpsetImport()) != 1 ||
		m.GetOpsetImport()[0].GetDomain() != "" || m.GetOpsetImport()[0].GetVersion() != 17 {
		t.Fatalf("header: ir %d producer %q opsets %v", m.GetIrVersion(), m.GetProducerName(), m.GetOpsetImport())
	}
	g := m.GetGraph()
	if len(g.GetInput()) != 1 || g.GetInput()[0].GetName() != spec.InputName || !declaredShape(g.GetInput()[0]).Equal(spec.Input) {
		t.Fatalf("inputs %v; want %s %s", g.GetInput(), spec.InputName, spec.Input)
	}
	if len(g.GetOutput()) != 1 || g.GetOutput()[0].GetName() != spec.OutputName || !declaredShape(g.GetOutput()[0]).Equal(spec.Output) {
		t.Fatalf("outputs %v; want %s %s", g.GetOutput(), spec.OutputName, spec.Output)
	}
	defined := map[string]bool{spec.InputName: true}
	used := map[string]bool{}
	var params int64
	for _, in := range g.GetInitializer() {
		s := tensor.Shape(in.GetDims())
		dt := tensor.DType(in.GetDataType())
		if int64(len(in.GetRawData())) != tensor.ByteSize(dt, s) {
			t.Errorf("initialiser %s: %d bytes for %s %s", in.GetName(), len(in.GetRawData()), dt, s)
		}
		if defined[in.GetName()] {
			t.Errorf("tensor %s defined twice", in.GetName())
		}
		defined[in.GetName()] = true
		params += s.NumElements()
	}
	if params != spec.Params {
		t.Errorf("initialisers hold %d elements; Spec.Params = %d", params, spec.Params)
	}
	nodeNames := map[string]bool{}
	for _, n := range g.GetNode() {
		if n.GetName() == "" || nodeNames[n.GetName()] {
			t.Errorf("node %q (%s): empty or duplicate name", n.GetName(), n.GetOpType())
		}
		nodeNames[n.GetName()] = true
		for _, in := range n.GetInput() {
			if in != "" && !defined[in] {
				t.Errorf("node %s reads %q before it is defined", n.GetName(), in)
			}
			used[in] = true
		}
		for _, out := range n.GetOutput() {
			if defined[out] {
				t.Errorf("tensor %s defined twice", out)
			}
			defined[out] = true
		}
	}
	for name := range defined {
		if !used[name] && name != spec.OutputName {
			t.Errorf("tensor %s is never used", name)
		}
	}
	if got, want := len(g.GetValueInfo()), len(defined)-len(g.GetInitializer())-2; got != want {
		t.Errorf("%d value_info; want one per intermediate tensor, %d", got, want)
	}
}

// TestDeterministic builds models twice and wants the same bytes, and wants
// a model's weights not to depend on the input size it is built for.
func TestDeterministic(t *testing.T) {
	for _, name := range []string{"resnet18", "yolov8n"} {
		a, _ := cachedBuild(t, name, 64)
		b, _, err := Build(name, 64)
		if err != nil {
			t.Fatal(err)
		}
		if string(a) != string(b) {
			t.Fatalf("%s: two builds differ", name)
		}
	}
	small, _ := cachedBuild(t, "yolov8n", 64)
	large, _ := cachedBuild(t, "yolov8n", 128)
	ws, wl := weights(t, small), weights(t, large)
	same := 0
	for name, w := range ws {
		if strings.HasSuffix(name, ".weight") || strings.HasSuffix(name, ".bias") {
			if wl[name] != w {
				t.Errorf("yolov8n %s differs between 64 and 128 input", name)
			}
			same++
		}
	}
	if same < 100 {
		t.Fatalf("compared only %d weights", same)
	}
}

// weights returns a model's initialisers' bytes by name.
func weights(t *testing.T, data []byte) map[string]string {
	t.Helper()
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, in := range m.GetGraph().GetInitializer() {
		out[in.GetName()] = string(in.GetRawData())
	}
	return out
}

// golden are the SHA-256 of models built by this builderVersion. A change
// to any graph or weight must bump builderVersion (cached files of the old
// version must not be reused) and update these. They also catch a platform
// whose arithmetic differs: CI on another architecture must get the same.
var golden = map[string]string{
	"alexnet@224":    "414008fe6257d402efc272d294d83f712e13516936ca97319cbc80c8366ac45c",
	"resnet18@64":    "42623da6d70f05504f81c34b29328fcf6c277d2be2db2714c3b5bcd83031d5a9",
	"mobilenetv2@64": "081bd0c98e958bd5ea7ca6a316522074c6f105764fd473f276c0d7917d718d78",
	"yolov8n@64":     "20e3edb84ec9f2f5f5e3f4e3c495ed2b359b8d35efa54d5b127ac8a006c39003",
	"yolov8s@64":     "66a3b31f7c629fcbe5fd0512ab49197539093cc073602af4a5778cd9fbd468bd",
}

func TestGolden(t *testing.T) {
	for key, want := range golden {
		var name string
		var size int
		if _, err := fmt.Sscanf(strings.Replace(key, "@", " ", 1), "%s %d", &name, &size); err != nil {
			t.Fatal(err)
		}
		data, _ := cachedBuild(t, name, size)
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("%s (builder v%d): sha256 %s, want %s; if the change is meant, bump builderVersion and update golden", key, builderVersion, got, want)
		}
	}
}

// TestNames checks the listing and lookup of names.
func TestNames(t *testing.T) {
	if got := strings.Join(Names(), ","); got != "alexnet,resnet18,mobilenetv2,yolov8n,yolov8s" {
		t.Fatalf("Names() = %s", got)
	}
	for in, want := range map[string]string{"yolov8": "yolov8n", "YOLOv8S": "yolov8s", " ResNet18 ": "resnet18"} {
		s, err := Describe(in, 0)
		if err != nil || s.Name != want {
			t.Errorf("Describe(%q) = %q, %v; want %q", in, s.Name, err, want)
		}
	}
	_, err := Describe("resnet50", 0)
	for _, n := range append(Names(), "yolov8 (= yolov8n)") {
		if err == nil || !strings.Contains(err.Error(), n) {
			t.Errorf("Describe(resnet50) error = %v; want it to list %s", err, n)
		}
	}
}

func ExampleDescribe() {
	s, err := Describe("yolov8n", 640)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s (%s): %s %s -> %s %s, %.2fM parameters, %.1f GFLOPs\n",
		s.Name, s.Task, s.InputName, s.Input, s.OutputName, s.Output, float64(s.Params)/1e6, s.GFLOPs)
	// Output: yolov8n (detect): images [1,3,640,640] -> output0 [1,84,8400], 3.18M parameters, 8.7 GFLOPs
}
