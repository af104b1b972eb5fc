package main

import (
	"context"
	"fmt"

	"tracr/engine"
	"tracr/graph"
	"tracr/tensor"
)

// openModel loads the model named on the command line and readies it for
// cutting (engine.Prepare), returning the sample inputs it probed with.
func openModel(ctx context.Context, spec string) (*graph.Model, []tensor.Tensor, error) {
	if spec == "" {
		return nil, nil, fmt.Errorf("no model given: use --model FILE")
	}
	m, err := graph.Load(spec)
	if err != nil {
		return nil, nil, err
	}
	inputs, err := engine.Prepare(ctx, m, 1)
	if err != nil {
		return nil, nil, fmt.Errorf("model %s: %w", spec, err)
	}
	return m, inputs, nil
}
