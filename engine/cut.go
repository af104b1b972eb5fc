package engine

import (
	"context"
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
		shape := ti.Shape.Clone()
		for j := range shape {
			if shape[j] < 0 {
				shape[j] = dyn
			}
		}
		t, err := tensor.Random(name, ti.DType, shape, seed+uint64(i))
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
// inputs whose dynamic dimensions differ from the first; the model runs on
// it too, and dimensions that change between the two runs are recorded as
// dynamic. A model that types every such tensor with a static shape costs
// no run.
func InferTypes(ctx context.Context, m *graph.Model, inputs, alt []tensor.Tensor) error {
	// Once a run is needed, measure every tensor a cut can send: declared
	// value_info is sometimes wrong, and the run costs the same.
	var names []string
	needed := false
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
		return fmt.Errorf("probe run: %w", err)
	}
	var second []tensor.Tensor
	if alt != nil {
		if second, err = s.Run(ctx, alt); err != nil {
			return fmt.Errorf("probe run (second input size): %w", err)
		}
	}
	for i, t := range first {
		name, ok := strings.CutPrefix(t.Name, graph.ProbePrefix)
		if !ok || len(t.Shape) == 0 {
			continue
		}
		sample := t.Shape[1:].Clone() // drop the probe's leading 1
		shape := sample.Clone()
		if second != nil {
			for j := range shape {
				if j+1 >= len(second[i].Shape) || second[i].Shape[j+1] != shape[j] {
					shape[j] = -1
				}
			}
		}
		m.SetTensorType(name, t.DType, shape, sample)
	}
	return nil
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
// compute nodes untyped (or sized only symbolically), one probe run on
// seeded random inputs measures them (two runs when inputs have dynamic
// dimensions, to tell which dimensions of the measured tensors are dynamic).
// It returns the inputs it used, so a caller can reuse them.
func Prepare(ctx context.Context, m *graph.Model, seed uint64) ([]tensor.Tensor, error) {
	inputs, err := SampleInputs(m, seed, nil, 1)
	if err != nil {
		return nil, err
	}
	var alt []tensor.Tensor
	for _, name := range m.Inputs() {
		if ti, _ := m.Tensor(name); !ti.Shape.Static() {
			if alt, err = SampleInputs(m, seed, nil, 2); err != nil {
				return nil, err
			}
			break
		}
	}
	if err := InferTypes(ctx, m, inputs, alt); err != nil {
		return nil, err
	}
	return inputs, nil
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
