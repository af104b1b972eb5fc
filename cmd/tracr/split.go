package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"tracr/engine"
	"tracr/graph"
	"tracr/tensor"
)

func splitCommand() *cli.Command {
	return &cli.Command{
		Name:      "split",
		Usage:     "write head.onnx and tail.onnx for one cut",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "zoo name (see tracr models) or ONNX file", Required: true},
			&cli.IntFlag{Name: "cut", Aliases: []string{"k"}, Usage: "cut ID (see tracr cuts)", Required: true},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "output folder (created if missing)", Required: true},
			&cli.BoolFlag{Name: "verify", Usage: "run the full model and head->tail on a seeded random input and compare (a model with dynamic inputs at two sizes)"},
			inputShapeFlag(),
		},
		Action: func(c *cli.Context) error {
			shapes, err := inputShapes(c)
			if err != nil {
				return err
			}
			m, inputs, err := openModel(c.Context, c.String("model"), shapes)
			if err != nil {
				return err
			}
			cut, err := graph.FindCut(graph.Cuts(m), c.Int("cut"))
			if err != nil {
				return fmt.Errorf("model %s: %w", c.String("model"), err)
			}
			s, err := graph.Partition(m, graph.Prefix(cut.ID))
			if err != nil {
				return err
			}
			w := c.App.Writer
			fmt.Fprintf(w, "cut %d: %d of %d nodes on the edge; crossing %d tensors, %s bytes\n",
				cut.ID, len(s.Edge), len(m.Nodes()), len(s.Crossing), bytesText(cut.Bytes))
			if c.Bool("verify") {
				sets := [][]tensor.Tensor{inputs}
				alt, err := engine.AltInputs(m, 1, shapes)
				if err != nil {
					return fmt.Errorf("verify cut %d: %w", cut.ID, err)
				}
				if alt != nil {
					sets = append(sets, alt)
				}
				for _, in := range sets {
					v, err := engine.Verify(c.Context, m, s, in)
					if err != nil {
						return fmt.Errorf("verify cut %d at %s: %w", cut.ID, engine.ShapesOf(in), err)
					}
					fmt.Fprintf(w, "verify at %s: head->tail vs full model, max abs diff %g (graph optimisations off, 1 thread)\n", engine.ShapesOf(in), v.MaxAbsDiff)
					fmt.Fprintf(w, "verify at %s: with ONNX Runtime graph optimisations on, max abs diff %g\n", engine.ShapesOf(in), v.OptimizedMaxAbsDiff)
					if !v.Exact {
						return fmt.Errorf("verify cut %d at %s: head->tail is not bit-identical to the full model (max abs diff %g); nothing written", cut.ID, engine.ShapesOf(in), v.MaxAbsDiff)
					}
				}
			}
			if err := writeHalves(c.String("out"), s); err != nil {
				return err
			}
			fmt.Fprintf(w, "wrote %s and %s\n", filepath.Join(c.String("out"), "head.onnx"), filepath.Join(c.String("out"), "tail.onnx"))
			return nil
		},
	}
}

// writeHalves writes head.onnx and tail.onnx so that either both appear or
// neither does.
func writeHalves(dir string, s *graph.Split) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("output folder: %w", err)
	}
	head, tail := filepath.Join(dir, "head.onnx"), filepath.Join(dir, "tail.onnx")
	if err := graph.WriteFileAtomic(head, s.Head); err != nil {
		return err
	}
	if err := graph.WriteFileAtomic(tail, s.Tail); err != nil {
		return errors.Join(err, os.Remove(head))
	}
	return nil
}
