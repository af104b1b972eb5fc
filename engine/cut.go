package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"tracr/graph"
	"tracr/tensor"
)

// SampleInputs returns seeded random values for the model's real inputs
// (see tensor.Random). An input named in fixed takes that tensor instead;
// dynamic dimensions of the others take dyn.
func SampleInputs(m *graph.Model, seed uint64, fixed map[string]tensor.Tensor, dyn int64) ([]tensor.Tensor, error) {
	shapes := map[string]tensor.Shape{}
	for _, name := range m.Inputs() {
		if ti, ok := m.Tensor(name); ok {
			shape := ti.Shape.Clone()
			for j := range shape {
				if shape[j] < 0 {
					shape[j] = dyn
				}
			}
			shapes[name] = shape
		}
	}
	return sampleShaped(m, seed, fixed, shapes)
}

// sampleShaped returns seeded random values for the model's real inputs at
// the given shapes; an input named in fixed takes that tensor instead.
func sampleShaped(m *graph.Model, seed uint64, fixed map[string]tensor.Tensor, shapes map[string]tensor.Shape) ([]tensor.Tensor, error) {
	var out []tensor.Tensor
	for i, name := range m.Inputs() {
		if t, ok := fixed[name]; ok {
			t.Name = name
			out = append(out, t)
			continue
		}
		ti, ok := m.Tensor(name)
		if !ok {
			return nil, fmt.Errorf("sample inputs: input %q has no declared tensor type", name)
		}
		t, err := tensor.Random(name, ti.DType, shapes[name], seed+uint64(i))
		if err != nil {
			return nil, fmt.Errorf("sample inputs: %w", err)
		}
		out = append(out, t)
	}
	return out, nil
}

// InferTypes measures the tensors between compute nodes with a probe run:
// the model, with those tensors exposed as extra outputs, runs once on
// inputs, and each tensor's element type and shape are recorded in m
// (graph.Model.SetTensorType). When alt is not nil it is a second set of
// inputs whose dynamic dimensions differ from the first (Prepare takes
// half of each, or 2 for a 1); the model runs on it too, and a dimension
// is recorded as fixed only where the two runs agree on it. A dimension
// after the first that is 1 in both runs is recorded as dynamic when any
// input dimension other than a leading batch one changed: strided layers bring a dynamic
// dimension down to 1 at both sizes, and a half declared dynamic there
// runs at every size, where one declared 1 runs at none but the probe's.
// A model whose inputs are static and which types every such tensor with
// a static shape costs no run.
func InferTypes(ctx context.Context, m *graph.Model, inputs, alt []tensor.Tensor) error {
	// Once a run is needed, measure every tensor a cut can send: declared
	// value_info is sometimes wrong, and the run costs the same. A model
	// with dynamic inputs is always measured: exporters write value_info
	// for the size they traced at.
	var names []string
	needed := alt != nil
	for _, n := range m.Nodes() {
		for _, o := range n.Outputs {
			if len(m.Consumers(o)) == 0 && !slices.Contains(m.Outputs(), o) {
				continue // an unused output, such as Dropout's mask
			}
			names = append(names, o)
			if ti, ok := m.Tensor(o); !ok || !ti.Shape.Static() {
				needed = true
			}
		}
	}
	if !needed {
		return nil
	}
	probe, err := m.ProbeModel(names)
	if err != nil {
		return err
	}
	s, err := NewSession(probe, Options{Threads: 1})
	if err != nil {
		return fmt.Errorf("probe run: %w", err)
	}
	defer s.Close()
	first, err := s.Run(ctx, inputs)
	if err != nil {
		return fmt.Errorf("probe run: %w", runError{err})
	}
	var second []tensor.Tensor
	var secondErr error
	if alt != nil {
		if second, secondErr = s.Run(ctx, alt); secondErr != nil && ctx.Err() != nil {
			return fmt.Errorf("probe run (second input size): %w", secondErr)
		}
	}
	varied := variesBeyondBatch(inputs, alt)
	for i, t := range first {
		name, ok := strings.CutPrefix(t.Name, graph.ProbePrefix)
		if !ok || len(t.Shape) == 0 {
			continue
		}
		sample := t.Shape[1:].Clone() // drop the probe's leading 1
		shape := sample.Clone()
		switch {
		case secondErr != nil:
			// The model runs at the first size only: nothing is known to
			// be fixed, so nothing is written as fixed.
			for j := range shape {
				shape[j] = -1
			}
		case second != nil:
			for j := range shape {
				if j+1 >= len(second[i].Shape) || second[i].Shape[j+1] != shape[j] || (varied && j > 0 && shape[j] <= 1) {
					shape[j] = -1
				}
			}
		}
		m.SetTensorType(name, t.DType, shape, sample)
	}
	return nil
}

// runError marks the model failing to run on the probe's inputs, as
// opposed to failing to load: only then can a size be the cause.
type runError struct{ err error }

func (e runError) Error() string { return e.err.Error() }
func (e runError) Unwrap() error { return e.err }

// variesBeyondBatch reports whether alt changes a dimension of inputs other
// than a leading batch dimension (of an input of rank 2 or more).
func variesBeyondBatch(inputs, alt []tensor.Tensor) bool {
	if alt == nil {
		return false
	}
	for i, t := range inputs {
		if i >= len(alt) || len(alt[i].Shape) != len(t.Shape) {
			return true
		}
		for j := range t.Shape {
			if t.Shape[j] != alt[i].Shape[j] && (j > 0 || len(t.Shape) == 1) {
				return true
			}
		}
	}
	return false
}

// Halves holds the two sessions of a split model.
type Halves struct {
	Head, Tail *Session
}

// OpenSplit creates the head and tail sessions of a split.
func OpenSplit(s *graph.Split, opts Options) (*Halves, error) {
	head, err := NewSession(s.Head, opts)
	if err != nil {
		return nil, fmt.Errorf("head: %w", err)
	}
	tail, err := NewSession(s.Tail, opts)
	if err != nil {
		head.Close()
		return nil, fmt.Errorf("tail: %w", err)
	}
	return &Halves{Head: head, Tail: tail}, nil
}

// Run runs the head on inputs and the tail on the head's outputs, and
// returns the tail's outputs: what the full model would return.
func (h *Halves) Run(ctx context.Context, inputs []tensor.Tensor) ([]tensor.Tensor, error) {
	mid, err := h.Head.Run(ctx, pick(inputs, h.Head.Inputs()))
	if err != nil {
		return nil, fmt.Errorf("head: %w", err)
	}
	out, err := h.Tail.Run(ctx, mid)
	if err != nil {
		return nil, fmt.Errorf("tail: %w", err)
	}
	return out, nil
}

// Close closes both sessions.
func (h *Halves) Close() error {
	err := h.Head.Close()
	if terr := h.Tail.Close(); err == nil {
		err = terr
	}
	return err
}

// pick returns the tensors a session takes, by name; a head reads only the
// graph inputs its nodes use.
func pick(ts []tensor.Tensor, want []IOInfo) []tensor.Tensor {
	byName := map[string]tensor.Tensor{}
	for _, t := range ts {
		byName[t.Name] = t
	}
	out := make([]tensor.Tensor, 0, len(want))
	for _, w := range want {
		if t, ok := byName[w.Name]; ok {
			out = append(out, t)
		}
	}
	return out
}

// Difference compares two output sets by name: whether every output is
// bit-identical, and the largest absolute difference over all of them.
func Difference(want, got []tensor.Tensor) (identical bool, maxAbs float64, err error) {
	if len(want) != len(got) {
		return false, 0, fmt.Errorf("compare: %d outputs vs %d", len(want), len(got))
	}
	byName := map[string]tensor.Tensor{}
	for _, t := range got {
		byName[t.Name] = t
	}
	identical = true
	for _, w := range want {
		g, ok := byName[w.Name]
		if !ok {
			return false, 0, fmt.Errorf("compare: output %q missing", w.Name)
		}
		d, err := tensor.MaxAbsDiff(w, g)
		if err != nil {
			return false, 0, err
		}
		maxAbs = max(maxAbs, d)
		if string(w.Data) != string(g.Data) {
			identical = false
		}
	}
	return identical, maxAbs, nil
}

// Prepare readies a model for cutting: when it leaves tensors between
// compute nodes untyped (or sized only symbolically), or has inputs with
// dynamic dimensions, a probe run on seeded random inputs measures them.
// The inputs take the given shapes (checked against the model first), and
// otherwise DefaultDim in each dynamic dimension (1 in a leading batch
// one). With dynamic inputs a second run at other sizes (probeShapes)
// tells which dimensions of the measured tensors are dynamic. It returns
// the first run's inputs, so a caller can reuse them; cut tables size
// tensors at that run's shapes.
func Prepare(ctx context.Context, m *graph.Model, seed uint64, shapes InputShapes) ([]tensor.Tensor, error) {
	if err := shapes.Check(m); err != nil {
		return nil, err
	}
	first, second, err := probeShapes(m, shapes)
	if err != nil {
		return nil, err
	}
	inputs, err := sampleShaped(m, seed, nil, first)
	if err != nil {
		return nil, err
	}
	var alt []tensor.Tensor
	if second != nil {
		if alt, err = sampleShaped(m, seed, nil, second); err != nil {
			return nil, err
		}
	}
	if err := InferTypes(ctx, m, inputs, alt); err != nil {
		var re runError
		if second == nil || ctx.Err() != nil || !errors.As(err, &re) {
			return nil, err
		}
		return nil, fmt.Errorf("%w; probed at %s: give the size the model is used at with --input-shape %s (repeatable; input_shape in a TOML)",
			err, sizedInputs(m, first), exampleShape(m))
	}
	return inputs, nil
}

// exampleShape is a --input-shape example for the first dynamic input:
// NAME= its declared shape with N in each dynamic dimension.
func exampleShape(m *graph.Model) string {
	for _, name := range m.Inputs() {
		ti, _ := m.Tensor(name)
		if ti.Shape.Static() {
			continue
		}
		parts := make([]string, len(ti.Shape))
		for j, d := range ti.Shape {
			parts[j] = "N"
			if d >= 0 {
				parts[j] = fmt.Sprint(d)
			}
		}
		return name + "=" + strings.Join(parts, "x")
	}
	return "NAME=1x3x224x224"
}

// Verification is the outcome of running a split against the full model.
type Verification struct {
	// Exact reports bit-identical outputs with graph optimisations off (one
	// thread), and MaxAbsDiff is the largest difference there: the cut's own
	// error, which must be 0.
	Exact      bool
	MaxAbsDiff float64
	// OptimizedMaxAbsDiff is the largest difference with ONNX Runtime's
	// graph optimisations on, as deployed. Layout rewrites can differ across
	// a cut by an ulp or so.
	OptimizedMaxAbsDiff float64
}

// Verify runs the full model and head -> tail on the same inputs, first with
// graph optimisations off and then on, and compares the outputs.
func Verify(ctx context.Context, m *graph.Model, s *graph.Split, inputs []tensor.Tensor) (Verification, error) {
	full, err := m.Bytes()
	if err != nil {
		return Verification{}, err
	}
	var v Verification
	for _, noOpt := range []bool{true, false} {
		opts := Options{Threads: 1, NoOptimize: noOpt}
		same, diff, err := compareSplit(ctx, full, s, inputs, opts)
		if err != nil {
			return Verification{}, err
		}
		if noOpt {
			v.Exact, v.MaxAbsDiff = same, diff
		} else {
			v.OptimizedMaxAbsDiff = diff
		}
	}
	return v, nil
}

func compareSplit(ctx context.Context, full []byte, s *graph.Split, inputs []tensor.Tensor, opts Options) (bool, float64, error) {
	fs, err := NewSession(full, opts)
	if err != nil {
		return false, 0, fmt.Errorf("full model: %w", err)
	}
	defer fs.Close()
	want, err := fs.Run(ctx, inputs)
	if err != nil {
		return false, 0, fmt.Errorf("full model: %w", err)
	}
	h, err := OpenSplit(s, opts)
	if err != nil {
		return false, 0, err
	}
	defer h.Close()
	got, err := h.Run(ctx, inputs)
	if err != nil {
		return false, 0, err
	}
	return Difference(want, got)
}

// CutCheck is the outcome of one cut in VerifyCuts.
type CutCheck struct {
	Cut        int
	Identical  bool
	MaxAbsDiff float64
}

// VerifyCuts splits the model at every prefix cut and compares head -> tail
// with the full model on the same inputs (which m.Inputs() must all be
// given, typically by Prepare). It stops at the first error, not at the
// first difference: callers decide what a difference means.
func VerifyCuts(ctx context.Context, m *graph.Model, inputs []tensor.Tensor, opts Options) ([]CutCheck, error) {
	full, err := m.Bytes()
	if err != nil {
		return nil, err
	}
	fs, err := NewSession(full, opts)
	if err != nil {
		return nil, fmt.Errorf("full model: %w", err)
	}
	defer fs.Close()
	want, err := fs.Run(ctx, inputs)
	if err != nil {
		return nil, fmt.Errorf("full model: %w", err)
	}
	var checks []CutCheck
	for _, c := range graph.Cuts(m) {
		s, err := graph.Partition(m, graph.Prefix(c.ID))
		if err != nil {
			return checks, fmt.Errorf("cut %d: %w", c.ID, err)
		}
		h, err := OpenSplit(s, opts)
		if err != nil {
			return checks, fmt.Errorf("cut %d: %w", c.ID, err)
		}
		got, err := h.Run(ctx, inputs)
		h.Close()
		if err != nil {
			return checks, fmt.Errorf("cut %d: %w", c.ID, err)
		}
		same, diff, err := Difference(want, got)
		if err != nil {
			return checks, fmt.Errorf("cut %d: %w", c.ID, err)
		}
		checks = append(checks, CutCheck{Cut: c.ID, Identical: same, MaxAbsDiff: diff})
	}
	return checks, nil
}
