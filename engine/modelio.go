package engine

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"tracr/graph/onnxpb"
	"tracr/tensor"
)

// Field numbers read by declaredIO, from onnx.proto.
const (
	modelGraph             = 7  // ModelProto.graph
	graphInitializer       = 5  // GraphProto.initializer
	graphInput             = 11 // GraphProto.input
	graphOutput            = 12 // GraphProto.output
	graphSparseInitializer = 15 // GraphProto.sparse_initializer
	sparseValues           = 1  // SparseTensorProto.values
	tensorName             = 8  // TensorProto.name
)

// declaredIO returns the inputs and outputs a serialized ONNX model declares,
// in the order ONNX Runtime reports them: the graph's inputs that are not
// initialisers, and its outputs. It decodes only those and the initialisers'
// names, never the weights, so it costs little next to creating a session
// (asking ONNX Runtime instead means creating the session twice). complete is
// false when the model leaves some element type or shape to ONNX Runtime's
// inference, or declares a non-tensor value.
func declaredIO(model []byte) (inputs, outputs []IOInfo, complete bool, err error) {
	var graph []byte
	err = eachBytesField(model, func(num protowire.Number, v []byte) error {
		if num == modelGraph {
			// Repeated occurrences of a message field merge, which is what
			// parsing their concatenation does.
			graph = append(graph, v...)
		}
		return nil
	})
	if err != nil {
		return nil, nil, false, fmt.Errorf("read model: %w", err)
	}
	if graph == nil {
		return nil, nil, false, errors.New("read model: no graph")
	}

	var ins, outs []*onnxpb.ValueInfoProto
	initializers := map[string]bool{}
	err = eachBytesField(graph, func(num protowire.Number, v []byte) error {
		switch num {
		case graphInput, graphOutput:
			vi := &onnxpb.ValueInfoProto{}
			if err := proto.Unmarshal(v, vi); err != nil {
				return err
			}
			if num == graphInput {
				ins = append(ins, vi)
			} else {
				outs = append(outs, vi)
			}
		case graphInitializer:
			name, err := stringField(v, tensorName)
			initializers[name] = true
			return err
		case graphSparseInitializer:
			values, err := bytesField(v, sparseValues)
			if err != nil {
				return err
			}
			name, err := stringField(values, tensorName)
			initializers[name] = true
			return err
		}
		return nil
	})
	if err != nil {
		return nil, nil, false, fmt.Errorf("read model graph: %w", err)
	}

	complete = true
	for _, vi := range ins {
		if initializers[vi.GetName()] {
			continue
		}
		info, ok := declared(vi)
		inputs, complete = append(inputs, info), complete && ok
	}
	for _, vi := range outs {
		info, ok := declared(vi)
		outputs, complete = append(outputs, info), complete && ok
	}
	return inputs, outputs, complete, nil
}

// declared converts a value's declaration; ok is false when it is not a
// tensor with an element type and a shape (symbolic dimensions are fine).
func declared(vi *onnxpb.ValueInfoProto) (info IOInfo, ok bool) {
	info.Name = vi.GetName()
	tt := vi.GetType().GetTensorType()
	if tt == nil || tt.ElemType == nil || tt.Shape == nil {
		return info, false
	}
	info.DType = tensor.DType(tt.GetElemType())
	info.Shape = make(tensor.Shape, len(tt.GetShape().GetDim()))
	for i, d := range tt.GetShape().GetDim() {
		if v, isValue := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); isValue && v.DimValue >= 0 {
			info.Shape[i] = v.DimValue
		} else {
			info.Shape[i] = -1
		}
	}
	return info, true
}

// eachBytesField calls fn with the number and contents of every
// length-delimited field of the protobuf message msg, in order.
func eachBytesField(msg []byte, fn func(num protowire.Number, v []byte) error) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return protowire.ParseError(n)
		}
		msg = msg[n:]
		m := protowire.ConsumeFieldValue(num, typ, msg)
		if m < 0 {
			return protowire.ParseError(m)
		}
		if typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(msg[:m])
			if err := fn(num, v); err != nil {
				return err
			}
		}
		msg = msg[m:]
	}
	return nil
}

// bytesField returns the last occurrence of length-delimited field num of msg.
func bytesField(msg []byte, num protowire.Number) ([]byte, error) {
	var out []byte
	err := eachBytesField(msg, func(n protowire.Number, v []byte) error {
		if n == num {
			out = v
		}
		return nil
	})
	return out, err
}

func stringField(msg []byte, num protowire.Number) (string, error) {
	b, err := bytesField(msg, num)
	return string(b), err
}
