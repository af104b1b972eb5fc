package engine

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"

	"tracr/tensor"
)

// Run runs the model on inputs, matched to the model's inputs by name, and
// returns every output in Outputs() order with its run-time shape and a
// Go-owned copy of its data. Run reads inputs' Data while it runs and does not
// keep it.
//
// If ctx is done before or while the model runs, Run asks ONNX Runtime to stop
// and returns ctx.Err().
//
// onnxruntime_go limits what can cross: float16, bfloat16 and the other
// element types without a Go type cannot be scalars, have zero elements, or be
// outputs whose shape is dynamic in the model (NewSession accepts such models;
// Run reports the offending tensor).
func (s *Session) Run(ctx context.Context, inputs []tensor.Tensor) ([]tensor.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ordered, err := s.match(inputs)
	if err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}

	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.ort == nil {
		return nil, errors.New("run: session is closed")
	}

	ins := make([]ort.Value, len(ordered))
	defer destroyAll(ins)
	for i, t := range ordered {
		if ins[i], err = newValue(t.DType, t.Shape, aligned(t.Data, t.DType.Size())); err != nil {
			return nil, fmt.Errorf("run: input %q: %w", t.Name, err)
		}
	}
	// A nil output is allocated by ONNX Runtime; ORT-allocated values are
	// stored back into outs by the run, so this destroys them too.
	var outs []ort.Value
	defer func() { destroyAll(outs) }()
	var computed []int
	for i, o := range s.outputs {
		if s.fromInput[i] >= 0 {
			continue
		}
		v, err := preallocate(o)
		if err != nil {
			return nil, fmt.Errorf("run: output %q: %w", o.Name, err)
		}
		outs = append(outs, v)
		computed = append(computed, i)
	}

	if len(outs) > 0 {
		if err := s.run(ctx, ins, outs); err != nil {
			return nil, err
		}
	}
	results := make([]tensor.Tensor, len(s.outputs))
	for i, j := range s.fromInput {
		if j >= 0 {
			in := ordered[j]
			results[i] = tensor.Tensor{Name: in.Name, DType: in.DType, Shape: in.Shape.Clone(), Data: slices.Clone(in.Data)}
		}
	}
	for k, v := range outs {
		i := computed[k]
		data, err := valueBytes(v)
		if err != nil {
			return nil, fmt.Errorf("run: output %q: %w", s.outputs[i].Name, err)
		}
		results[i] = tensor.Tensor{
			Name:  s.outputs[i].Name,
			DType: s.outputs[i].DType,
			Shape: append(tensor.Shape{}, v.GetShape()...),
			Data:  data,
		}
	}
	return results, nil
}

// run runs the session once, terminating it if ctx is done meanwhile.
func (s *Session) run(ctx context.Context, ins, outs []ort.Value) error {
	ro, err := ort.NewRunOptions()
	if err != nil {
		return fmt.Errorf("run: run options: %w", err)
	}
	defer ro.Destroy()
	terminated := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(terminated)
		ro.Terminate() // an error here only means the run cannot be cut short
	})
	err = s.ort.RunWithOptions(ins, outs, ro)
	if !stop() {
		<-terminated // ro must outlive Terminate
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("run: %s", oneLine(err))
	}
	return nil
}

// match checks inputs against the model's and returns them in the model's
// input order.
func (s *Session) match(inputs []tensor.Tensor) ([]tensor.Tensor, error) {
	ordered := make([]tensor.Tensor, len(s.inputs))
	seen := make([]bool, len(s.inputs))
	for _, t := range inputs {
		i := slices.IndexFunc(s.inputs, func(in IOInfo) bool { return in.Name == t.Name })
		if i < 0 {
			return nil, fmt.Errorf("unknown input %q; the model's inputs are %s", t.Name, strings.Join(names(s.inputs), ", "))
		}
		if seen[i] {
			return nil, fmt.Errorf("input %q given twice", t.Name)
		}
		seen[i] = true
		want := s.inputs[i]
		if t.DType != want.DType {
			return nil, fmt.Errorf("input %q is %s, the model wants %s", t.Name, t.DType, want.DType)
		}
		if !want.Shape.Accepts(t.Shape) {
			return nil, fmt.Errorf("input %q has shape %s, the model wants %s", t.Name, t.Shape, want.Shape)
		}
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("input %q: %w", t.Name, err)
		}
		ordered[i] = t
	}
	var missing []string
	for i, ok := range seen {
		if !ok {
			missing = append(missing, fmt.Sprintf("%q", s.inputs[i].Name))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing input %s", strings.Join(missing, ", "))
	}
	return ordered, nil
}

// preallocate returns an output value backed by Go memory for an output whose
// shape the model fixes, so ONNX Runtime writes the result straight into it;
// or nil for ONNX Runtime to allocate one when the shape is dynamic.
func preallocate(o IOInfo) (ort.Value, error) {
	if o.Shape.Static() && !o.rankUnknown {
		return newValue(o.DType, o.Shape, alignedBytes(int(tensor.ByteSize(o.DType, o.Shape))))
	}
	if _, ok := goTypedFor(o.DType); !ok {
		// onnxruntime_go v1.27.0 copies one byte per element when it converts
		// an ORT-allocated tensor of a type without a Go type, so the data
		// would be truncated.
		return nil, fmt.Errorf("%s output with dynamic shape %s: onnxruntime_go cannot return it; give the output a static shape", o.DType, o.Shape)
	}
	return nil, nil
}

// newValue wraps data, which must outlive the value, as an ONNX Runtime tensor
// of type dt and the given static shape.
func newValue(dt tensor.DType, shape tensor.Shape, data []byte) (ort.Value, error) {
	if len(shape) > 0 && shape.NumElements() > 0 {
		// Any element type goes through the untyped tensor, without a copy.
		return ort.NewCustomDataTensor(ort.Shape(shape.Clone()), data, ort.TensorElementDataType(dt))
	}
	// onnxruntime_go builds scalars and empty tensors only through its
	// Go-typed values.
	typed, ok := goTypedFor(dt)
	if !ok {
		return nil, fmt.Errorf("%s tensor of shape %s: onnxruntime_go cannot pass %s scalars or empty tensors", dt, shape, dt)
	}
	return typed.value(shape, data)
}

// valueBytes returns the data of an output value as bytes the caller owns.
func valueBytes(v ort.Value) ([]byte, error) {
	if c, ok := v.(*ort.CustomDataTensor); ok {
		return c.GetData(), nil // the Go buffer preallocate made
	}
	typed, ok := goTypedFor(tensor.DType(v.DataType()))
	if ok {
		if b, ok := typed.bytes(v); ok {
			return b, nil
		}
	}
	return nil, fmt.Errorf("unexpected ONNX Runtime value %T", v)
}

// destroyAll releases values. onnxruntime_go can leave a typed nil pointer
// in an output slot when converting an ORT-allocated value fails; those are
// skipped.
func destroyAll(vs []ort.Value) {
	for _, v := range vs {
		if v != nil && !reflect.ValueOf(v).IsNil() {
			v.Destroy()
		}
	}
}

// goTyped builds and reads onnxruntime_go's Go-typed values for one element
// type.
type goTyped struct {
	// value returns a scalar (empty shape) holding data, or an empty tensor
	// of shape (one with a zero dimension).
	value func(shape tensor.Shape, data []byte) (ort.Value, error)
	// bytes returns the data of a Tensor or Scalar of this type; the bytes
	// alias a Go slice that onnxruntime_go allocated for that value alone.
	bytes func(v ort.Value) ([]byte, bool)
}

// goTypedFor returns the Go-typed helpers for dt, if dt has a Go type.
func goTypedFor(dt tensor.DType) (goTyped, bool) {
	switch dt {
	case tensor.Float32:
		return goTypedOf[float32](), true
	case tensor.Float64:
		return goTypedOf[float64](), true
	case tensor.Int8:
		return goTypedOf[int8](), true
	case tensor.Int16:
		return goTypedOf[int16](), true
	case tensor.Int32:
		return goTypedOf[int32](), true
	case tensor.Int64:
		return goTypedOf[int64](), true
	case tensor.Uint8:
		return goTypedOf[uint8](), true
	case tensor.Uint16:
		return goTypedOf[uint16](), true
	case tensor.Uint32:
		return goTypedOf[uint32](), true
	case tensor.Uint64:
		return goTypedOf[uint64](), true
	case tensor.Bool:
		return goTypedOf[bool](), true
	}
	return goTyped{}, false
}

func goTypedOf[T ort.TensorData]() goTyped {
	return goTyped{
		value: func(shape tensor.Shape, data []byte) (ort.Value, error) {
			if len(shape) == 0 {
				var x T
				copy(unsafe.Slice((*byte)(unsafe.Pointer(&x)), unsafe.Sizeof(x)), data)
				return ort.NewScalar(x)
			}
			return ort.NewTensor(ort.Shape(shape.Clone()), []T{})
		},
		bytes: func(v ort.Value) ([]byte, bool) {
			switch v := v.(type) {
			case *ort.Tensor[T]:
				return tensor.BytesOf(v.GetData()), true
			case *ort.Scalar[T]:
				return tensor.BytesOf([]T{v.GetData()}), true
			}
			return nil, false
		},
	}
}

// alignedBytes returns n zero bytes aligned for any element type.
func alignedBytes(n int) []byte {
	if n == 0 {
		return nil
	}
	words := make([]uint64, (n+7)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), n)
}

// aligned returns data, or a copy of it if it is not aligned for elements of
// size bytes, as ONNX Runtime's kernels expect.
func aligned(data []byte, size int) []byte {
	if len(data) == 0 || size <= 1 || uintptr(unsafe.Pointer(&data[0]))%uintptr(size) == 0 {
		return data
	}
	b := alignedBytes(len(data))
	copy(b, data)
	return b
}
