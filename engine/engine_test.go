package engine

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"tracr/graph/onnxpb"
	"tracr/tensor"
)

// requireORT skips the test when the ONNX Runtime library is missing, unless
// TRACR_REQUIRE_ORT is set (as CI does), where a skip would hide a broken
// set-up.
func requireORT(t testing.TB) {
	t.Helper()
	if _, err := LibraryPath(); err != nil {
		if os.Getenv("TRACR_REQUIRE_ORT") != "" {
			t.Fatalf("TRACR_REQUIRE_ORT is set: %v", err)
		}
		t.Skip(err.Error())
	}
	if err := Init(); err != nil {
		t.Fatal(err)
	}
}

// vi declares a tensor value; a negative dimension becomes a symbolic one.
func vi(name string, dt tensor.DType, dims ...int64) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		dim := &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}}
		if d < 0 {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "N"}
		}
		shape.Dim = append(shape.Dim, dim)
	}
	return &onnxpb.ValueInfoProto{
		Name: proto.String(name),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: proto.Int32(int32(dt)),
			Shape:    shape,
		}}},
	}
}

func node(op string, in, out []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	return &onnxpb.NodeProto{OpType: proto.String(op), Input: in, Output: out, Attribute: attrs}
}

func intAttr(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), I: proto.Int64(v), Type: onnxpb.AttributeProto_INT.Enum()}
}

// testModel is a one-graph model under construction.
type testModel struct {
	nodes        []*onnxpb.NodeProto
	inputs, outs []*onnxpb.ValueInfoProto
	initializers []*onnxpb.TensorProto
}

func (g testModel) bytes(t testing.TB) []byte {
	t.Helper()
	m := &onnxpb.ModelProto{
		IrVersion:   proto.Int64(8),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}},
		Graph: &onnxpb.GraphProto{
			Name: proto.String("test"), Node: g.nodes, Input: g.inputs, Output: g.outs, Initializer: g.initializers,
		},
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func open(t testing.TB, model []byte, opts Options) *Session {
	t.Helper()
	requireORT(t)
	s, err := NewSession(model, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func run(t testing.TB, s *Session, inputs ...tensor.Tensor) []tensor.Tensor {
	t.Helper()
	out, err := s.Run(context.Background(), inputs)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// raw builds a tensor from little-endian values.
func raw(name string, dt tensor.DType, shape tensor.Shape, values any) tensor.Tensor {
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, values); err != nil {
		panic(err) // the tests pass only fixed-size slices
	}
	return tensor.Tensor{Name: name, DType: dt, Shape: shape, Data: b.Bytes()}
}

func checkTensor(t *testing.T, got, want tensor.Tensor) {
	t.Helper()
	if got.Name != want.Name || got.DType != want.DType || !got.Shape.Equal(want.Shape) || !bytes.Equal(got.Data, want.Data) {
		t.Errorf("got %s %s %s % x, want %s %s %s % x", got.Name, got.DType, got.Shape, got.Data, want.Name, want.DType, want.Shape, want.Data)
	}
}

func addModel(t testing.TB, dt tensor.DType, dims ...int64) []byte {
	return testModel{
		nodes:  []*onnxpb.NodeProto{node("Add", []string{"a", "b"}, []string{"y"})},
		inputs: []*onnxpb.ValueInfoProto{vi("a", dt, dims...), vi("b", dt, dims...)},
		outs:   []*onnxpb.ValueInfoProto{vi("y", dt, dims...)},
	}.bytes(t)
}

func castModel(t testing.TB, to tensor.DType, dims ...int64) []byte {
	return testModel{
		nodes:  []*onnxpb.NodeProto{node("Cast", []string{"x"}, []string{"y"}, intAttr("to", int64(to)))},
		inputs: []*onnxpb.ValueInfoProto{vi("x", tensor.Float32, dims...)},
		outs:   []*onnxpb.ValueInfoProto{vi("y", to, dims...)},
	}.bytes(t)
}

func identityModel(t testing.TB, dt tensor.DType, dims ...int64) []byte {
	return testModel{
		nodes:  []*onnxpb.NodeProto{node("Identity", []string{"x"}, []string{"y"})},
		inputs: []*onnxpb.ValueInfoProto{vi("x", dt, dims...)},
		outs:   []*onnxpb.ValueInfoProto{vi("y", dt, dims...)},
	}.bytes(t)
}

func TestDefaultLibraryPath(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/cache")
	got, err := DefaultLibraryPath()
	if want := "/cache/tracr/onnxruntime-1.30.0-" + runtime.GOARCH + "/libonnxruntime.so.1"; got != want || err != nil {
		t.Errorf("DefaultLibraryPath() = %q, %v; want %q", got, err, want)
	}
}

func TestLibraryPath(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, "libonnxruntime.so.1")
	if err := os.WriteFile(lib, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	exeDir := filepath.Dir(exe)
	tests := []struct {
		name, env, cache, want, wantErr string
	}{
		{name: "env", env: lib, want: lib},
		{name: "env relative", env: "nowhere/lib.so",
			wantErr: "ONNX Runtime library not found at " + filepath.Join(wd, "nowhere/lib.so") + " (from TRACR_ORT_LIB); fix TRACR_ORT_LIB, or unset it and run make setup"},
		{name: "env is a directory", env: dir,
			wantErr: "ONNX Runtime library not found at " + dir + " (from TRACR_ORT_LIB); fix TRACR_ORT_LIB, or unset it and run make setup"},
		{name: "default missing", cache: dir,
			wantErr: "ONNX Runtime library not found: looked at " + exeDir + "/libonnxruntime.so.1, " + exeDir + "/lib/libonnxruntime.so.1, " +
				dir + "/tracr/onnxruntime-1.30.0-" + runtime.GOARCH + "/libonnxruntime.so.1; run make setup, or set TRACR_ORT_LIB to the linux/" + runtime.GOARCH + " library"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("TRACR_ORT_LIB", tt.env)
			t.Setenv("XDG_CACHE_HOME", tt.cache)
			got, err := LibraryPath()
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("LibraryPath() = %q, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("LibraryPath() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	requireORT(t)
	v, err := Version()
	if err != nil || !strings.HasPrefix(v, "1.30") {
		t.Fatalf("Version() = %q, %v; want 1.30.x", v, err)
	}
}

func TestInitConcurrent(t *testing.T) {
	requireORT(t)
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Go(func() { errs[i] = Init() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Init() #%d: %v", i, err)
		}
	}
}

func TestRun(t *testing.T) {
	tests := []struct {
		name   string
		model  func(testing.TB) []byte
		inputs []tensor.Tensor
		want   []tensor.Tensor
	}{
		{
			name:   "float32 add",
			model:  func(t testing.TB) []byte { return addModel(t, tensor.Float32, 2, 3) },
			inputs: []tensor.Tensor{tensor.FromFloat32("b", tensor.Shape{2, 3}, []float32{10, 20, 30, 40, 50, 60}), tensor.FromFloat32("a", tensor.Shape{2, 3}, []float32{1, 2, 3, 4, 5, 6.5})},
			want:   []tensor.Tensor{tensor.FromFloat32("y", tensor.Shape{2, 3}, []float32{11, 22, 33, 44, 55, 66.5})},
		},
		{
			name:   "int64 add, dynamic batch",
			model:  func(t testing.TB) []byte { return addModel(t, tensor.Int64, -1, 2) },
			inputs: []tensor.Tensor{raw("a", tensor.Int64, tensor.Shape{3, 2}, []int64{1, -2, 3, 1 << 40, 5, 6}), raw("b", tensor.Int64, tensor.Shape{3, 2}, []int64{1, 1, 1, 1, 1, -7})},
			want:   []tensor.Tensor{raw("y", tensor.Int64, tensor.Shape{3, 2}, []int64{2, -1, 4, 1<<40 + 1, 6, -1})},
		},
		{
			name:   "float32 add, dynamic batch",
			model:  func(t testing.TB) []byte { return addModel(t, tensor.Float32, -1, 2) },
			inputs: []tensor.Tensor{tensor.FromFloat32("a", tensor.Shape{1, 2}, []float32{1, 2}), tensor.FromFloat32("b", tensor.Shape{1, 2}, []float32{0.5, -2})},
			want:   []tensor.Tensor{tensor.FromFloat32("y", tensor.Shape{1, 2}, []float32{1.5, 0})},
		},
		{
			name:   "cast to float16",
			model:  func(t testing.TB) []byte { return castModel(t, tensor.Float16, 5) },
			inputs: []tensor.Tensor{tensor.FromFloat32("x", tensor.Shape{5}, []float32{1, 0.5, -2, 65504, 0})},
			want:   []tensor.Tensor{raw("y", tensor.Float16, tensor.Shape{5}, []uint16{0x3c00, 0x3800, 0xc000, 0x7bff, 0})},
		},
		{
			name:   "cast to bfloat16",
			model:  func(t testing.TB) []byte { return castModel(t, tensor.BFloat16, 2, 2) },
			inputs: []tensor.Tensor{tensor.FromFloat32("x", tensor.Shape{2, 2}, []float32{1, 0.5, -2, 3})},
			want:   []tensor.Tensor{raw("y", tensor.BFloat16, tensor.Shape{2, 2}, []uint16{0x3f80, 0x3f00, 0xc000, 0x4040})},
		},
		{
			name:   "int64 scalar",
			model:  func(t testing.TB) []byte { return identityModel(t, tensor.Int64) },
			inputs: []tensor.Tensor{raw("x", tensor.Int64, tensor.Shape{}, []int64{-42})},
			want:   []tensor.Tensor{raw("y", tensor.Int64, tensor.Shape{}, []int64{-42})},
		},
		{
			name:   "zero elements",
			model:  func(t testing.TB) []byte { return identityModel(t, tensor.Float32, -1, 3) },
			inputs: []tensor.Tensor{{Name: "x", DType: tensor.Float32, Shape: tensor.Shape{0, 3}}},
			want:   []tensor.Tensor{{Name: "y", DType: tensor.Float32, Shape: tensor.Shape{0, 3}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t, tt.model(t), Options{})
			got := run(t, s, tt.inputs...)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d outputs, want %d", len(got), len(tt.want))
			}
			for i := range got {
				checkTensor(t, got[i], tt.want[i])
			}
		})
	}
}

// TestRunDTypes passes every fixed-size element type through an Identity, in
// each way a tensor can cross onnxruntime_go: with a static shape, a dynamic
// one (ONNX Runtime allocates the output) and as a scalar.
func TestRunDTypes(t *testing.T) {
	dtypes := []tensor.DType{tensor.Float32, tensor.Float16, tensor.BFloat16, tensor.Float64, tensor.Int8, tensor.Int16,
		tensor.Int32, tensor.Int64, tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Uint64, tensor.Bool}
	shapes := []struct {
		name  string
		model tensor.Shape // as declared
		run   tensor.Shape
	}{
		{"static", tensor.Shape{2, 3}, tensor.Shape{2, 3}},
		{"dynamic", tensor.Shape{-1, 3}, tensor.Shape{4, 3}},
		{"scalar", tensor.Shape{}, tensor.Shape{}},
	}
	for _, dt := range dtypes {
		for _, sh := range shapes {
			t.Run(dt.String()+"/"+sh.name, func(t *testing.T) {
				s := open(t, identityModel(t, dt, sh.model...), Options{})
				in := tensor.Tensor{Name: "x", DType: dt, Shape: sh.run, Data: make([]byte, tensor.ByteSize(dt, sh.run))}
				for i := range in.Data {
					in.Data[i] = byte(i*37 + 1)
					if dt == tensor.Bool {
						in.Data[i] &= 1
					}
				}
				got, err := s.Run(context.Background(), []tensor.Tensor{in})
				_, typed := goTypedFor(dt)
				if !typed && sh.name != "static" {
					// onnxruntime_go cannot carry these; the error must say which.
					if err == nil || !strings.Contains(err.Error(), dt.String()) {
						t.Fatalf("Run() error = %v; want one naming %s", err, dt)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				checkTensor(t, got[0], tensor.Tensor{Name: "y", DType: dt, Shape: sh.run, Data: in.Data})
			})
		}
	}
}

func TestRunErrors(t *testing.T) {
	s := open(t, addModel(t, tensor.Float32, -1, 2), Options{})
	a := tensor.FromFloat32("a", tensor.Shape{1, 2}, []float32{1, 2})
	b := tensor.FromFloat32("b", tensor.Shape{1, 2}, []float32{3, 4})
	short := b
	short.Data = short.Data[:5]
	tests := []struct {
		name    string
		inputs  []tensor.Tensor
		wantErr string
	}{
		{"missing", []tensor.Tensor{a}, `run: missing input "b"`},
		{"unknown", []tensor.Tensor{a, b, {Name: "c"}}, `run: unknown input "c"; the model's inputs are a, b`},
		{"twice", []tensor.Tensor{a, a}, `run: input "a" given twice`},
		{"dtype", []tensor.Tensor{a, {Name: "b", DType: tensor.Int64, Shape: tensor.Shape{1, 2}, Data: make([]byte, 16)}}, `run: input "b" is int64, the model wants float32`},
		{"rank", []tensor.Tensor{a, tensor.FromFloat32("b", tensor.Shape{2}, []float32{3, 4})}, `run: input "b" has shape [2], the model wants [?,2]`},
		{"byte length", []tensor.Tensor{a, short}, `run: input "b": tensor "b": float32 [1,2] needs 8 bytes, has 5`},
		{"shapes disagree", []tensor.Tensor{tensor.FromFloat32("a", tensor.Shape{2, 2}, []float32{1, 2, 3, 4}), tensor.FromFloat32("b", tensor.Shape{3, 2}, []float32{1, 2, 3, 4, 5, 6})}, `run: `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Run(context.Background(), tt.inputs)
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Run() error = %v; want one line starting %q", err, tt.wantErr)
			}
		})
	}
}

func TestUnsupported(t *testing.T) {
	tests := []struct {
		name    string
		model   func(testing.TB) []byte
		input   tensor.Tensor
		wantErr string
	}{
		{"float16 output of dynamic shape", func(t testing.TB) []byte { return castModel(t, tensor.Float16, -1) },
			tensor.FromFloat32("x", tensor.Shape{2}, []float32{1, 2}),
			`run: output "y": float16 output with dynamic shape [?]: onnxruntime_go cannot return it; give the output a static shape`},
		{"empty float16 input", func(t testing.TB) []byte { return identityModel(t, tensor.Float16, -1) },
			tensor.Tensor{Name: "x", DType: tensor.Float16, Shape: tensor.Shape{0}},
			`run: input "x": float16 tensor of shape [0]: onnxruntime_go cannot pass float16 scalars or empty tensors`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t, tt.model(t), Options{})
			_, err := s.Run(context.Background(), []tensor.Tensor{tt.input})
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("Run() error = %v; want %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewSessionErrors(t *testing.T) {
	requireORT(t)
	stringOut := testModel{
		nodes:  []*onnxpb.NodeProto{node("Cast", []string{"x"}, []string{"y"}, intAttr("to", int64(tensor.String)))},
		inputs: []*onnxpb.ValueInfoProto{vi("x", tensor.Float32, 2)},
		outs:   []*onnxpb.ValueInfoProto{vi("y", tensor.String, 2)},
	}.bytes(t)
	badOp := testModel{
		nodes:  []*onnxpb.NodeProto{node("NoSuchOp", []string{"x"}, []string{"y"})},
		inputs: []*onnxpb.ValueInfoProto{vi("x", tensor.Float32, 2)},
		outs:   []*onnxpb.ValueInfoProto{vi("y", tensor.Float32, 2)},
	}.bytes(t)
	tests := []struct {
		name    string
		model   []byte
		opts    Options
		wantErr string
	}{
		{"empty", nil, Options{}, "new session: empty model"},
		{"not protobuf", []byte("\xff\xff\xff"), Options{}, "new session: read model: "},
		{"string output", stringOut, Options{}, `new session: model value "y" has element type string; engine runs fixed-size element types only`},
		{"unknown op", badOp, Options{}, "new session: "},
		{"threads", addModel(t, tensor.Float32, 1), Options{Threads: -1}, "new session: threads must be >= 0, got -1"},
		{"provider", addModel(t, tensor.Float32, 1), Options{Provider: "tpu"}, `new session: unknown execution provider "tpu" (want cpu or cuda)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSession(tt.model, tt.opts)
			if err == nil {
				s.Close()
				t.Fatalf("NewSession() succeeded; want error %q", tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("NewSession() error = %v; want one line starting %q", err, tt.wantErr)
			}
		})
	}
}

// TestCUDA checks that asking for CUDA either works or says in one line why
// not (the library make setup fetches has no CUDA provider).
func TestCUDA(t *testing.T) {
	requireORT(t)
	s, err := NewSession(addModel(t, tensor.Float32, 2), Options{Provider: "cuda"})
	if err != nil {
		const want = "new session: CUDA execution provider unavailable: "
		if !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("NewSession(cuda) error = %q; want one line starting %q", err, want)
		}
		return
	}
	defer s.Close()
	got := run(t, s, tensor.FromFloat32("a", tensor.Shape{2}, []float32{1, 2}), tensor.FromFloat32("b", tensor.Shape{2}, []float32{3, 4}))
	checkTensor(t, got[0], tensor.FromFloat32("y", tensor.Shape{2}, []float32{4, 6}))
}

func TestRunConcurrent(t *testing.T) {
	s := open(t, addModel(t, tensor.Float32, -1, 4), Options{Threads: 1})
	const goroutines, runs = 8, 50
	errs := make(chan error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for r := range runs {
				batch := int64(g + 1)
				a, b, want := make([]float32, 4*batch), make([]float32, 4*batch), make([]float32, 4*batch)
				for i := range a {
					a[i], b[i] = float32(g*1000+r), float32(i)
					want[i] = a[i] + b[i]
				}
				out, err := s.Run(context.Background(), []tensor.Tensor{
					tensor.FromFloat32("a", tensor.Shape{batch, 4}, a), tensor.FromFloat32("b", tensor.Shape{batch, 4}, b)})
				if err == nil && !bytes.Equal(out[0].Data, tensor.FromFloat32("", nil, want).Data) {
					err = fmt.Errorf("goroutine %d run %d: got %v", g, r, out[0])
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// chainModel is n MatMuls of a size x size matrix by a constant one: slow
// enough (about 2*size^3*n flops) to be cancelled while it runs.
func chainModel(t testing.TB, n int, size int64) []byte {
	w := &onnxpb.TensorProto{Name: proto.String("w"), Dims: []int64{size, size}, DataType: proto.Int32(int32(tensor.Float32)),
		RawData: make([]byte, 4*size*size)}
	g := testModel{
		inputs:       []*onnxpb.ValueInfoProto{vi("x", tensor.Float32, size, size)},
		outs:         []*onnxpb.ValueInfoProto{vi(fmt.Sprint("h", n), tensor.Float32, size, size)},
		initializers: []*onnxpb.TensorProto{w},
	}
	prev := "x"
	for i := 1; i <= n; i++ {
		out := fmt.Sprint("h", i)
		g.nodes = append(g.nodes, node("MatMul", []string{prev, "w"}, []string{out}))
		prev = out
	}
	return g.bytes(t)
}

func TestRunCancel(t *testing.T) {
	// About 200 GFLOP on one thread: seconds on any CPU, if not cancelled.
	const size = 1024
	s := open(t, chainModel(t, 100, size), Options{Threads: 1})
	x := tensor.Tensor{Name: "x", DType: tensor.Float32, Shape: tensor.Shape{size, size}, Data: make([]byte, 4*size*size)}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Run(ctx, []tensor.Tensor{x}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run(cancelled) error = %v; want %v", err, context.Canceled)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Run(ctx, []tensor.Tensor{x})
	cancelled := time.Since(start)
	if err != context.DeadlineExceeded {
		t.Fatalf("Run(50ms deadline) = %v after %v; want %v", err, cancelled, context.DeadlineExceeded)
	}
	// The session still runs after a cancelled run.
	start = time.Now()
	if _, err := s.Run(context.Background(), []tensor.Tensor{x}); err != nil {
		t.Fatalf("Run() after cancellation: %v", err)
	}
	// The run stopped: ONNX Runtime checks for termination between nodes,
	// each a hundredth of the whole, so the cancelled run takes a fraction
	// of the full one timed beside it (under the same load), not all of it.
	if full := time.Since(start); cancelled > full/2 {
		t.Errorf("Run(50ms deadline) returned after %v, the full run takes %v: it did not stop", cancelled, full)
	}
}

func TestMNIST(t *testing.T) {
	const path = "../../shared/models/mnist-8.onnx"
	model, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("%s not found: the shared model folder is absent", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	fast := open(t, model, Options{})
	plain := open(t, model, Options{NoOptimize: true, Threads: 1})
	wantIn := []IOInfo{{Name: "Input3", DType: tensor.Float32, Shape: tensor.Shape{1, 1, 28, 28}}}
	wantOut := []IOInfo{{Name: "Plus214_Output_0", DType: tensor.Float32, Shape: tensor.Shape{1, 10}}}
	if fmt.Sprint(fast.Inputs()) != fmt.Sprint(wantIn) || fmt.Sprint(fast.Outputs()) != fmt.Sprint(wantOut) {
		t.Fatalf("Inputs(), Outputs() = %v, %v; want %v, %v", fast.Inputs(), fast.Outputs(), wantIn, wantOut)
	}

	// A vertical stroke, roughly a "1".
	img := make([]float32, 28*28)
	for y := 4; y < 24; y++ {
		img[y*28+13], img[y*28+14] = 255, 255
	}
	in := tensor.FromFloat32("Input3", tensor.Shape{1, 1, 28, 28}, img)
	a := run(t, fast, in)[0]
	b := run(t, plain, in)[0]
	if !a.Shape.Equal(tensor.Shape{1, 10}) {
		t.Fatalf("output shape %s, want [1,10]", a.Shape)
	}
	av, _ := a.Float32s()
	bv, _ := b.Float32s()
	best := 0
	for i := range av {
		if math.IsNaN(float64(av[i])) || math.Abs(float64(av[i]-bv[i])) > 1e-3*(1+math.Abs(float64(av[i]))) {
			t.Fatalf("optimised and unoptimised scores differ: %v vs %v", av, bv)
		}
		if av[i] > av[best] {
			best = i
		}
	}
	if best != 1 {
		t.Errorf("a vertical stroke scored %v: best digit %d, want 1", av, best)
	}
}

func TestProfile(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "trace")
	requireORT(t)
	s, err := NewSession(addModel(t, tensor.Float32, 2), Options{ProfilePrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s, tensor.FromFloat32("a", tensor.Shape{2}, []float32{1, 2}), tensor.FromFloat32("b", tensor.Shape{2}, []float32{3, 4}))
	if _, err := s.ProfileFile(); err == nil {
		t.Error("ProfileFile() before Close succeeded; want an error")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path, err := s.ProfileFile()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(path, prefix+"_") {
		t.Errorf("ProfileFile() = %s; want a name starting %s_", path, prefix)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var events []struct {
		Name string `json:"name"`
		Cat  string `json:"cat"`
	}
	if err := json.Unmarshal(b, &events); err != nil {
		t.Fatalf("profile %s is not a JSON trace: %v", path, err)
	}
	var ran bool
	for _, e := range events {
		ran = ran || e.Name == "model_run"
	}
	if !ran {
		t.Errorf("profile %s has no model_run event among %d", path, len(events))
	}

	plain := open(t, addModel(t, tensor.Float32, 2), Options{})
	if _, err := plain.ProfileFile(); err == nil {
		t.Error("ProfileFile() without profiling succeeded; want an error")
	}
}

func TestClose(t *testing.T) {
	s := open(t, addModel(t, tensor.Float32, 1), Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close() = %v; want nil", err)
	}
	in := []tensor.Tensor{tensor.FromFloat32("a", tensor.Shape{1}, []float32{1}), tensor.FromFloat32("b", tensor.Shape{1}, []float32{1})}
	if _, err := s.Run(context.Background(), in); err == nil || err.Error() != "run: session is closed" {
		t.Errorf("Run() after Close = %v; want run: session is closed", err)
	}
}

// TestRunNoLeak runs a model with a 4 MiB input and outputs many times and
// checks the process does not grow by what leaking them would cost.
func TestRunNoLeak(t *testing.T) {
	const n, runs = 1 << 20, 300
	g := testModel{
		nodes:  []*onnxpb.NodeProto{node("Neg", []string{"x"}, []string{"s"}), node("Neg", []string{"x"}, []string{"d"})},
		inputs: []*onnxpb.ValueInfoProto{vi("x", tensor.Float32, -1)},
		outs:   []*onnxpb.ValueInfoProto{vi("s", tensor.Float32, -1), vi("d", tensor.Float32, -1)},
	}
	dynamic := open(t, g.bytes(t), Options{Threads: 1})
	g.inputs, g.outs = []*onnxpb.ValueInfoProto{vi("x", tensor.Float32, n)}, []*onnxpb.ValueInfoProto{vi("s", tensor.Float32, n), vi("d", tensor.Float32, n)}
	static := open(t, g.bytes(t), Options{Threads: 1})
	x := tensor.Tensor{Name: "x", DType: tensor.Float32, Shape: tensor.Shape{n}, Data: make([]byte, 4*n)}
	runAll := func(k int) {
		for range k {
			run(t, dynamic, x)
			run(t, static, x)
		}
	}
	runAll(20) // let ONNX Runtime's arenas reach their size
	before := rss(t)
	runAll(runs)
	// Each round moves 4 values of 4 MiB; leaking any of them would grow the
	// process by at least runs*4 MiB.
	if grown := rss(t) - before; grown > runs*4<<20/4 {
		t.Errorf("resident memory grew %d MiB over %d runs; values are leaking", grown>>20, runs)
	}
}

// rss returns the resident set size of the process in bytes, after returning
// Go's free memory to the system.
func rss(t *testing.T) int64 {
	if runtime.GOOS != "linux" {
		t.Skip("resident memory is read from /proc")
	}
	debug.FreeOSMemory()
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Fatal(err)
	}
	var size, resident int64
	if _, err := fmt.Sscan(string(b), &size, &resident); err != nil {
		t.Fatal(err)
	}
	return resident * int64(os.Getpagesize())
}

// BenchmarkOutputs compares the two ways an output comes back: written by ONNX
// Runtime straight into a Go buffer (the model fixes the shape) or allocated
// by ONNX Runtime and copied by onnxruntime_go (dynamic shape).
func BenchmarkOutputs(b *testing.B) {
	const n = 1 << 18
	for _, dims := range []int64{n, -1} {
		name := "static"
		if dims < 0 {
			name = "dynamic"
		}
		b.Run(name, func(b *testing.B) {
			s := open(b, identityModel(b, tensor.Float32, dims), Options{Threads: 1})
			x := []tensor.Tensor{{Name: "x", DType: tensor.Float32, Shape: tensor.Shape{n}, Data: make([]byte, 4*n)}}
			b.SetBytes(4 * n)
			for b.Loop() {
				if _, err := s.Run(context.Background(), x); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// elfHeader is a 64-bit little-endian ELF header of a shared object for
// machine m, with no sections: enough for checkLibrary.
func elfHeader(m elf.Machine) []byte {
	b := make([]byte, 64)
	copy(b, elf.ELFMAG)
	b[elf.EI_CLASS], b[elf.EI_DATA], b[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	binary.LittleEndian.PutUint16(b[16:], uint16(elf.ET_DYN))
	binary.LittleEndian.PutUint16(b[18:], uint16(m))
	binary.LittleEndian.PutUint32(b[20:], uint32(elf.EV_CURRENT))
	binary.LittleEndian.PutUint16(b[52:], 64) // header size
	return b
}

// TestCheckLibrary: a library of this binary's architecture passes; one
// of the other architecture, or no ELF file at all, is refused in one
// line naming the file and what to use instead.
func TestCheckLibrary(t *testing.T) {
	dir := t.TempDir()
	other, otherName := elf.EM_AARCH64, "arm64 (aarch64)"
	own, ownName := elf.EM_X86_64, "x86-64 (amd64)"
	if runtime.GOARCH == "arm64" {
		other, otherName, own, ownName = own, ownName, other, otherName
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := checkLibrary(write("own.so", elfHeader(own))); err != nil {
		t.Errorf("own architecture: %v", err)
	}
	foreign := write("other.so", elfHeader(other))
	want := "ONNX Runtime library " + foreign + " is built for " + otherName + ", but this tracr is " + ownName + ": use the " + ownName + " library (make setup on this machine, or TRACR_ORT_LIB)"
	if err := checkLibrary(foreign); err == nil || err.Error() != want {
		t.Errorf("other architecture: %v, want %q", err, want)
	}
	text := write("text.so", []byte("not a library"))
	if err := checkLibrary(text); err == nil || !strings.HasPrefix(err.Error(), "ONNX Runtime library "+text+": not a shared library") {
		t.Errorf("not ELF: %v", err)
	}
}
