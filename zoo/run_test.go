package zoo

import (
	"context"
	"math"
	"sync"
	"testing"
	"tracr/internal/orttest"

	"google.golang.org/protobuf/proto"

	"tracr/engine"
	"tracr/graph/onnxpb"
	"tracr/tensor"
)

// requireORT skips or fails the test without ONNX Runtime (orttest.Require).
func requireORT(t testing.TB) { orttest.Require(t) }

// buildOnce builds each (name, size) once per test binary: AlexNet alone is
// 61M weights.
var buildOnce sync.Map // key: name@size, value: func() ([]byte, Spec, error)

func cachedBuild(t testing.TB, name string, size int) ([]byte, Spec) {
	t.Helper()
	type key struct {
		name string
		size int
	}
	f, _ := buildOnce.LoadOrStore(key{name, size}, sync.OnceValues(func() ([]byte, Spec) {
		m, s, err := Build(name, size)
		if err != nil {
			return nil, Spec{Name: err.Error()}
		}
		return m, s
	}))
	m, s := f.(func() ([]byte, Spec))()
	if m == nil {
		t.Fatalf("Build(%s, %d): %s", name, size, s.Name)
	}
	return m, s
}

// testInput is a deterministic photo-like input for spec (pixels in [0, 1]
// for YOLO, ImageNet-normalised for classifiers): the same kind of image
// as the probe the weights were normalised on, but another one, at the
// model's size.
func testInput(spec Spec, seed uint64) tensor.Tensor {
	img := naturalImage(spec.ImgSize, spec.Task == TaskClassify, seed)
	return tensor.FromFloat32(spec.InputName, spec.Input, img.v)
}

// stats summarises values; ok is false if any is NaN or infinite.
type stats struct {
	min, max, mean, std float64
	ok                  bool
}

func summarise(v []float32) stats {
	s := stats{min: math.Inf(1), max: math.Inf(-1), ok: true}
	var sum, sq float64
	for _, f := range v {
		x := float64(f)
		if math.IsNaN(x) || math.IsInf(x, 0) {
			s.ok = false
			continue
		}
		s.min, s.max = min(s.min, x), max(s.max, x)
		sum += x
		sq += x * x
	}
	s.mean = sum / float64(len(v))
	s.std = math.Sqrt(max(sq/float64(len(v))-s.mean*s.mean, 0))
	return s
}

func runModel(t *testing.T, sess *engine.Session, in tensor.Tensor) []tensor.Tensor {
	t.Helper()
	out, err := sess.Run(context.Background(), []tensor.Tensor{in})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestModelsRun loads every zoo model into ONNX Runtime, runs it on two
// inputs and checks the output: the declared name and shape, finite, not
// constant, and different for different inputs. For YOLO it also checks the
// decoded boxes are plausible and only a few score above 0.25.
func TestModelsRun(t *testing.T) {
	requireORT(t)
	tests := []struct {
		name string
		size int
	}{
		{"alexnet", 224},
		{"resnet18", 64},
		{"mobilenetv2", 96},
		{"yolov8n", 640},
		{"yolov8s", 160},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model, spec := cachedBuild(t, tt.name, tt.size)
			sess, err := engine.NewSession(model, engine.Options{Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer sess.Close()
			if got := sess.Outputs(); len(got) != 1 || got[0].Name != spec.OutputName || !got[0].Shape.Equal(spec.Output) {
				t.Fatalf("outputs = %+v; want %s %s", got, spec.OutputName, spec.Output)
			}
			a := runModel(t, sess, testInput(spec, 1))[0]
			b := runModel(t, sess, testInput(spec, 2))[0]
			if !a.Shape.Equal(spec.Output) {
				t.Fatalf("output shape %s; want %s", a.Shape, spec.Output)
			}
			va, _ := a.Float32s()
			vb, _ := b.Float32s()
			s := summarise(va)
			t.Logf("%s@%d output: min %.4g max %.4g mean %.4g std %.4g", spec.Name, spec.ImgSize, s.min, s.max, s.mean, s.std)
			if !s.ok {
				t.Fatal("output has NaN or Inf")
			}
			if s.std < 1e-3*(math.Abs(s.mean)+1) {
				t.Fatalf("output is (nearly) constant: mean %g std %g", s.mean, s.std)
			}
			var diff float64
			for i := range va {
				diff = max(diff, math.Abs(float64(va[i]-vb[i])))
			}
			if diff < 1e-3*s.std {
				t.Fatalf("two different inputs give the same output (max difference %g)", diff)
			}
			if spec.Task == TaskDetect {
				checkDetections(t, spec, va)
			} else {
				checkLogits(t, va)
			}
		})
	}
}

// checkLogits wants class scores spread enough that top-1 is not a tie.
func checkLogits(t *testing.T, v []float32) {
	t.Helper()
	best, second := math.Inf(-1), math.Inf(-1)
	for _, f := range v {
		x := float64(f)
		if x > best {
			best, second = x, best
		} else if x > second {
			second = x
		}
	}
	if best-second < 1e-6 {
		t.Fatalf("top two logits tie at %g", best)
	}
}

// checkDetections looks at output0 [1, 84, N]: each box within the reach
// of its anchor (DFL distances are 0..15 cells), box sizes that vary,
// scores in (0, 1), and some but not most anchors above a 0.25 confidence.
func checkDetections(t *testing.T, spec Spec, v []float32) {
	t.Helper()
	n := int(spec.Output[2])
	anchors, strides := anchorGrid(spec.ImgSize)
	above, bestAll := 0, 0.0
	var minW, maxW float64 = math.Inf(1), 0
	for i := range n {
		cx, cy, w, h := float64(v[i]), float64(v[n+i]), float64(v[2*n+i]), float64(v[3*n+i])
		s := float64(strides[i])
		ax, ay := float64(anchors[i])*s, float64(anchors[n+i])*s
		reach := float64(yoloRegMax-1) * s
		if w < 0 || h < 0 || w > 2*reach || h > 2*reach || math.Abs(cx-ax) > reach/2 || math.Abs(cy-ay) > reach/2 {
			t.Fatalf("anchor %d at (%g, %g) stride %g: box (%g, %g, %g, %g) is out of its reach", i, ax, ay, s, cx, cy, w, h)
		}
		minW, maxW = min(minW, w), max(maxW, w)
		best := 0.0
		for c := range yoloClasses {
			p := float64(v[(4+c)*n+i])
			if p <= 0 || p >= 1 {
				t.Fatalf("anchor %d class %d: score %g outside (0, 1)", i, c, p)
			}
			best = max(best, p)
		}
		if best > 0.25 {
			above++
		}
		bestAll = max(bestAll, best)
	}
	t.Logf("%d of %d anchors score above 0.25; best score %.3f; box widths %.1f-%.1f px", above, n, bestAll, minW, maxW)
	if bestAll < 0.02 || above > n/10 {
		t.Errorf("%d of %d anchors score above 0.25, the best %g; want a few", above, n, bestAll)
	}
	if spec.ImgSize == 640 && above == 0 {
		t.Errorf("no anchor scores above 0.25 at 640x640; want a few")
	}
	if maxW < 4*minW {
		t.Errorf("box widths %g-%g px hardly vary", minW, maxW)
	}
}

// TestIntermediateShapes exposes every intermediate tensor as an output and
// checks, in ONNX Runtime, that each has the shape the builder declared in
// value_info and holds finite values that vary: no layer of the synthetic
// network dies or blows up.
func TestIntermediateShapes(t *testing.T) {
	requireORT(t)
	tests := []struct {
		name string
		size int
	}{
		{"resnet18", 64},
		{"mobilenetv2", 64},
		{"yolov8n", 64},
		{"yolov8s", 96},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model, spec := cachedBuild(t, tt.name, tt.size)
			var m onnxpb.ModelProto
			if err := proto.Unmarshal(model, &m); err != nil {
				t.Fatal(err)
			}
			want := map[string]tensor.Shape{}
			for _, vi := range m.GetGraph().GetValueInfo() {
				want[vi.GetName()] = declaredShape(vi)
			}
			if len(want) != len(m.GetGraph().GetNode())-1+countExtraOutputs(&m) {
				t.Fatalf("%d value_info for %d nodes", len(want), len(m.GetGraph().GetNode()))
			}
			m.Graph.Output = append(m.Graph.Output, m.Graph.ValueInfo...)
			m.Graph.ValueInfo = nil
			m.MetadataProps = nil
			data, err := proto.Marshal(&m)
			if err != nil {
				t.Fatal(err)
			}
			sess, err := engine.NewSession(data, engine.Options{Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer sess.Close()
			outs := runModel(t, sess, testInput(spec, 3))
			worst, worstName := math.Inf(1), ""
			for _, o := range outs {
				if o.Name == spec.OutputName {
					continue
				}
				if w := want[o.Name]; !o.Shape.Equal(w) {
					t.Errorf("%s: runtime shape %s, value_info %s", o.Name, o.Shape, w)
				}
				v, _ := o.Float32s()
				s := summarise(v)
				if !s.ok {
					t.Errorf("%s: NaN or Inf", o.Name)
				}
				if s.max-s.min < worst {
					worst, worstName = s.max-s.min, o.Name
				}
			}
			t.Logf("%d intermediate tensors; narrowest range %g in %s", len(outs)-1, worst, worstName)
			if worst < 1e-3 {
				t.Errorf("%s is (nearly) constant: range %g", worstName, worst)
			}
		})
	}
}

// countExtraOutputs counts node outputs beyond one per node (Split makes
// several), which also get value_info.
func countExtraOutputs(m *onnxpb.ModelProto) int {
	n := 0
	for _, nd := range m.GetGraph().GetNode() {
		n += len(nd.GetOutput()) - 1
	}
	return n
}

func declaredShape(vi *onnxpb.ValueInfoProto) tensor.Shape {
	var s tensor.Shape
	for _, d := range vi.GetType().GetTensorType().GetShape().GetDim() {
		s = append(s, d.GetDimValue())
	}
	return s
}
