package engine

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"tracr/graph"
	"tracr/tensor"
)

// InputShapes gives concrete shapes to a model's inputs, by input name: the
// size a model with dynamic dimensions is used at (--input-shape
// NAME=1x3x640x640). An input it leaves out takes DefaultDim in its dynamic
// dimensions (1 in a leading batch dimension).
type InputShapes map[string]tensor.Shape

// DefaultDim is the size a dynamic dimension takes when no shape is given,
// except a leading batch dimension, which takes 1: an image side most
// vision models run at.
const DefaultDim = 224

// ParseInputShape parses NAME=D1xD2x...xDn (a scalar: NAME=) into the
// input's name and shape. Every dimension must be a positive integer.
func ParseInputShape(s string) (string, tensor.Shape, error) {
	name, dims, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return "", nil, fmt.Errorf("input shape %q: want NAME=1x3x640x640", s)
	}
	shape := tensor.Shape{}
	if dims == "" {
		return name, shape, nil
	}
	for _, d := range strings.Split(dims, "x") {
		v, err := strconv.ParseInt(d, 10, 64)
		if err != nil || v <= 0 {
			return "", nil, fmt.Errorf("input shape %q: dimension %q is not a positive integer; want NAME=1x3x640x640", s, d)
		}
		shape = append(shape, v)
	}
	return name, shape, nil
}

// ParseInputShapes parses each of specs with ParseInputShape; an input
// named twice is refused.
func ParseInputShapes(specs []string) (InputShapes, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	out := InputShapes{}
	for _, s := range specs {
		name, shape, err := ParseInputShape(s)
		if err != nil {
			return nil, err
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("input shape %q: input %q is given twice", s, name)
		}
		out[name] = shape
	}
	return out, nil
}

// String formats the shapes as NAME=1x3x640x640 entries in name order,
// comma-separated: what a cache key or a report holds.
func (s InputShapes) String() string {
	names := slices.Sorted(maps.Keys(s))
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + dimsString(s[n])
	}
	return strings.Join(parts, ",")
}

func dimsString(s tensor.Shape) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = strconv.FormatInt(d, 10)
	}
	return strings.Join(parts, "x")
}

// Check reports the first given shape that does not fit m: a name that is
// no input (the inputs are listed), another rank, or a size where the
// model fixes a dimension.
func (s InputShapes) Check(m *graph.Model) error {
	for _, name := range slices.Sorted(maps.Keys(s)) {
		given := s[name]
		if !slices.Contains(m.Inputs(), name) {
			return fmt.Errorf("input shape %s=%s: the model has no input %q; its inputs: %s", name, dimsString(given), name, describeInputs(m))
		}
		ti, ok := m.Tensor(name)
		if !ok {
			return fmt.Errorf("input shape %s=%s: input %q has no declared type", name, dimsString(given), name)
		}
		if len(ti.Shape) != len(given) || !ti.Shape.Accepts(given) {
			return fmt.Errorf("input shape %s=%s: input %q is %s; give every dimension, the fixed ones as they are", name, dimsString(given), name, ti.Shape)
		}
	}
	return nil
}

// describeInputs lists m's inputs with their declared shapes.
func describeInputs(m *graph.Model) string {
	var parts []string
	for _, name := range m.Inputs() {
		if ti, ok := m.Tensor(name); ok {
			parts = append(parts, fmt.Sprintf("%s %s", name, ti.Shape))
		} else {
			parts = append(parts, name)
		}
	}
	return strings.Join(parts, ", ")
}

// probeShapes returns the shape each input is probed at first (the given
// one, or DefaultDim in each dynamic dimension and 1 in a leading batch
// one), and the second probe's, which differs in every dynamic dimension:
// a dimension of 1 becomes 2, any other is halved (rounded down). A second
// size at most half the first keeps apart every dimension that strided
// layers derive from it (floor or ceiling of a division by any stride)
// until both reach 1; InferTypes treats a dimension that is 1 at both
// sizes as dynamic. second is nil when no input has a dynamic dimension.
func probeShapes(m *graph.Model, given InputShapes) (first, second map[string]tensor.Shape, err error) {
	first, second = map[string]tensor.Shape{}, map[string]tensor.Shape{}
	dynamic := false
	for _, name := range m.Inputs() {
		ti, ok := m.Tensor(name)
		if !ok {
			return nil, nil, fmt.Errorf("input %q has no declared tensor type", name)
		}
		a := given[name]
		if a == nil {
			a = ti.Shape.Clone()
			for j := range a {
				if a[j] < 0 {
					a[j] = DefaultDim
					if j == 0 && len(a) > 1 {
						a[j] = 1
					}
				}
			}
		}
		b := a.Clone()
		for j := range b {
			if ti.Shape[j] >= 0 {
				continue
			}
			dynamic = true
			if b[j] == 1 {
				b[j] = 2
			} else {
				b[j] /= 2
			}
		}
		first[name], second[name] = a, b
	}
	if !dynamic {
		second = nil
	}
	return first, second, nil
}

// sizedInputs describes the dynamic inputs and the sizes probed, for an
// error: `x [1,224] (declared [?,?])`.
func sizedInputs(m *graph.Model, shapes map[string]tensor.Shape) string {
	var parts []string
	for _, name := range m.Inputs() {
		ti, _ := m.Tensor(name)
		if !ti.Shape.Static() {
			parts = append(parts, fmt.Sprintf("%s %s (declared %s)", name, shapes[name], ti.Shape))
		}
	}
	return strings.Join(parts, ", ")
}

// ShapesOf returns the shapes of ts by name: the sizes a run used.
func ShapesOf(ts []tensor.Tensor) InputShapes {
	out := InputShapes{}
	for _, t := range ts {
		out[t.Name] = t.Shape.Clone()
	}
	return out
}

// AltInputs returns seeded random inputs at the second probe size of
// Prepare (every dynamic dimension halved, a 1 made 2), for checking a
// split at a size other than the one it was prepared at; nil when the
// model's inputs are static.
func AltInputs(m *graph.Model, seed uint64, shapes InputShapes) ([]tensor.Tensor, error) {
	if err := shapes.Check(m); err != nil {
		return nil, err
	}
	_, second, err := probeShapes(m, shapes)
	if err != nil || second == nil {
		return nil, err
	}
	return sampleShaped(m, seed, nil, second)
}
