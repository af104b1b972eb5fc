package graph_test

import (
	"context"
	"path/filepath"
	"testing"
	"tracr/internal/orttest"

	"tracr/engine"
	"tracr/graph"
	"tracr/tensor"
)

// requireORT skips or fails the test without ONNX Runtime (orttest.Require).
func requireORT(t testing.TB) { orttest.Require(t) }

// inputsFor returns two input sets for a model: the one the check runs on,
// and one whose dynamic dimensions differ (nil for static models), used to
// tell dynamic dimensions of probed tensors apart.
func inputsFor(t testing.TB, m *graph.Model, name string) (in, alt []tensor.Tensor) {
	t.Helper()
	build := func(batch int64) []tensor.Tensor {
		fixed := map[string]tensor.Tensor{}
		if name == "silero_vad_v5.onnx" {
			// Audio chunks of 512 samples at 16 kHz, the model's contract.
			audio, err := tensor.Random("input", tensor.Float32, tensor.Shape{batch, 512}, 1)
			if err != nil {
				t.Fatal(err)
			}
			fixed["input"] = audio
			state, _ := tensor.Random("state", tensor.Float32, tensor.Shape{2, batch, 128}, 2)
			fixed["state"] = state
			fixed["sr"] = tensor.Tensor{DType: tensor.Int64, Shape: tensor.Shape{}, Data: tensor.BytesOf([]int64{16000})}
		}
		ts, err := engine.SampleInputs(m, 42, fixed, batch)
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	in = build(1)
	for _, name := range m.Inputs() {
		if ti, _ := m.Tensor(name); !ti.Shape.Static() {
			return in, build(2)
		}
	}
	return in, nil
}

// exactOptions runs ONNX Runtime on one CPU thread with graph optimisations
// off. With them on, x86 layout transforms (NCHWc) rewrite conv/pool chains
// differently when a cut falls inside the chain, which moves sums by about an
// ulp: a property of the optimiser, not of the cut.
var exactOptions = engine.Options{Threads: 1, NoOptimize: true}

// checkEveryCut splits the model at every cut and asserts that head -> tail
// returns exactly the full model's outputs, bit for bit (ORT CPU, one
// thread, optimisations off): at the size it was prepared at and, for a
// model with dynamic inputs, at the second probe size too. It returns the
// number of cuts checked.
func checkEveryCut(t *testing.T, m *graph.Model, name string) int {
	t.Helper()
	ctx := context.Background()
	var in, alt []tensor.Tensor
	if name == "silero_vad_v5.onnx" {
		// Its sample-rate input must hold 16000: inputs of its own.
		in, alt = inputsFor(t, m, name)
		if err := engine.InferTypes(ctx, m, in, alt); err != nil {
			t.Fatal(err)
		}
	} else {
		var err error
		if in, err = engine.Prepare(ctx, m, 42, nil); err != nil {
			t.Fatal(err)
		}
		if alt, err = engine.AltInputs(m, 42, nil); err != nil {
			t.Fatal(err)
		}
	}
	sets := [][]tensor.Tensor{in}
	if alt != nil {
		sets = append(sets, alt)
	}
	cuts := graph.Cuts(m)
	for _, set := range sets {
		checks, err := engine.VerifyCuts(ctx, m, set, exactOptions)
		if err != nil {
			t.Fatalf("at %s: %v", engine.ShapesOf(set), err)
		}
		for i, c := range checks {
			if !c.Identical {
				t.Errorf("at %s, cut %d (crossing %v): head->tail differs from the full model, max abs diff %g", engine.ShapesOf(set), c.Cut, cuts[i].Names(), c.MaxAbsDiff)
			}
		}
		if alt != nil {
			t.Logf("at %s: %d cuts checked", engine.ShapesOf(set), len(checks))
		}
	}
	return len(cuts)
}

func TestEveryCutExactBuiltGraphs(t *testing.T) {
	requireORT(t)
	for _, tm := range testModels {
		t.Run(tm.name, func(t *testing.T) {
			n := checkEveryCut(t, tm.build(t), tm.name)
			if !t.Failed() {
				t.Logf("%s: %d cuts bit-identical", tm.name, n)
			}
		})
	}
}

func TestEveryCutExactSharedModels(t *testing.T) {
	requireORT(t)
	for _, path := range sharedModels(t) {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			t.Parallel() // each check runs ONNX Runtime on one thread
			m, err := graph.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			n := checkEveryCut(t, m, name)
			if !t.Failed() {
				t.Logf("%s: %d cuts bit-identical", name, n)
			}
		})
	}
}

func TestSplitNonPrefixExact(t *testing.T) {
	requireORT(t)
	m := branchModel(t)
	in, _ := inputsFor(t, m, "branch")
	ctx := context.Background()
	if err := engine.InferTypes(ctx, m, in, nil); err != nil {
		t.Fatal(err)
	}
	full, _ := m.Bytes()
	s, err := engine.NewSession(full, exactOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want, err := s.Run(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	for _, edge := range [][]int{{0, 2}, {1, 3}, {1}, {0, 1, 3}} {
		split, err := graph.Partition(m, edge)
		if err != nil {
			t.Fatal(err)
		}
		h, err := engine.OpenSplit(split, exactOptions)
		if err != nil {
			t.Fatal(err)
		}
		got, err := h.Run(ctx, in)
		h.Close()
		if err != nil {
			t.Fatal(err)
		}
		if same, d, _ := engine.Difference(want, got); !same {
			t.Errorf("edge %v: differs by %g", edge, d)
		}
	}
}
