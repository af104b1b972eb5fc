package zoo

import (
	"context"
	"testing"

	"tracr/engine"
	"tracr/graph"
)

// TestEveryCutExact splits every built-in model at every cut and requires
// head -> tail to equal the full model bit for bit (ONNX Runtime CPU, one
// thread, graph optimisations off; see graph's exactness tests). Inputs are
// as small as each architecture allows, to keep the suite fast.
func TestEveryCutExact(t *testing.T) {
	requireORT(t)
	sizes := map[string]int{"alexnet": 224, "resnet18": 32, "mobilenetv2": 32, "yolov8n": 64, "yolov8s": 64}
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data, _ := cachedBuild(t, name, sizes[name])
			m, err := graph.Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			in, err := engine.Prepare(ctx, m, 7, nil)
			if err != nil {
				t.Fatal(err)
			}
			checks, err := engine.VerifyCuts(ctx, m, in, engine.Options{Threads: 1, NoOptimize: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range checks {
				if !c.Identical {
					t.Errorf("cut %d: head->tail differs from the full model by %g", c.Cut, c.MaxAbsDiff)
				}
			}
			if len(checks) != len(m.Nodes())+1 {
				t.Errorf("checked %d cuts, the model has %d", len(checks), len(m.Nodes())+1)
			}
			if !t.Failed() {
				t.Logf("%s: %d cuts bit-identical", name, len(checks))
			}
		})
	}
}
