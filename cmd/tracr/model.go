package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"tracr/engine"
	"tracr/graph"
	"tracr/tensor"
	"tracr/zoo"
)

// inputShapeFlag is --input-shape, on every command that loads a model.
func inputShapeFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "input-shape", Usage: "size a dynamic input: NAME=1x3x640x640 (repeatable; default 224 in each dynamic dimension, 1 in a leading batch one)"}
}

// inputShapes parses --input-shape.
func inputShapes(c *cli.Context) (engine.InputShapes, error) {
	shapes, err := engine.ParseInputShapes(c.StringSlice("input-shape"))
	if err != nil {
		return nil, fmt.Errorf("--input-shape: %w", err)
	}
	return shapes, nil
}

// openModel resolves the model named on the command line (a zoo name or an
// ONNX file) and readies it for cutting (engine.Prepare) at the given input
// shapes, returning the sample inputs it probed with.
func openModel(ctx context.Context, spec string, shapes engine.InputShapes) (*graph.Model, []tensor.Tensor, error) {
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
	inputs, err := engine.Prepare(ctx, m, 1, shapes)
	if err != nil {
		return nil, nil, fmt.Errorf("model %s: %w", spec, err)
	}
	return m, inputs, nil
}
