package main

import (
	"context"
	"fmt"

	"tracr/engine"
	"tracr/graph"
	"tracr/tensor"
	"tracr/zoo"
)

// openModel resolves the model named on the command line (a zoo name or an
// ONNX file) and readies it for cutting (engine.Prepare), returning the
// sample inputs it probed with.
func openModel(ctx context.Context, spec string) (*graph.Model, []tensor.Tensor, error) {
	if spec == "" {
		return nil, nil, fmt.Errorf("no model given: use --model NAME|FILE (see tracr models)")
	}
	data, source, _, err := zoo.Resolve(ctx, spec)
	if err != nil {
		return nil, nil, err
	}
	m, err := graph.Parse(data)
	if err != nil {
		return nil, nil, fmt.Errorf("load model %s: %w", source, err)
	}
	inputs, err := engine.Prepare(ctx, m, 1)
	if err != nil {
		return nil, nil, fmt.Errorf("model %s: %w", spec, err)
	}
	return m, inputs, nil
}
