package graph_test

import (
	"context"
	"path/filepath"
	"testing"

	"tracr/engine"
	"tracr/graph"
)

// BenchmarkCutsPartition measures listing every cut and partitioning the
// model at its middle cut, on the shared models with the most nodes
// (DenseNet-121) and the most bytes (MobileNetV2 int8). Types are probed
// once, outside the timed loop.
func BenchmarkCutsPartition(b *testing.B) {
	requireORT(b)
	dir := filepath.Join("..", "..", "shared", "models")
	for _, name := range []string{"onnx_light/light_densenet121.onnx", "mobilenetv2-12-int8.onnx"} {
		b.Run(filepath.Base(name), func(b *testing.B) {
			m, err := graph.Load(filepath.Join(dir, name))
			if err != nil {
				b.Skip(err)
			}
			if _, err := engine.Prepare(context.Background(), m, 1, nil); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				cuts := graph.Cuts(m)
				if _, err := graph.Partition(m, graph.Prefix(cuts[len(cuts)/2].ID)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
