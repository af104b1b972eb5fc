package graph_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"tracr/graph"
)

// sharedModels lists the real ONNX files in ../shared/models, skipping the
// test with a clear message when the folder is absent.
func sharedModels(t testing.TB) []string {
	t.Helper()
	dir := filepath.Join("..", "..", "shared", "models")
	var paths []string
	for _, pattern := range []string{"*.onnx", "onnx_light/*.onnx"} {
		m, _ := filepath.Glob(filepath.Join(dir, pattern))
		paths = append(paths, m...)
	}
	if len(paths) == 0 {
		t.Skipf("no shared models in %s (the ../shared folder beside the repo is absent)", dir)
	}
	return paths
}

func nodeNames(m *graph.Model) []string {
	var out []string
	for _, n := range m.Nodes() {
		out = append(out, n.Outputs[0])
	}
	return out
}

func TestCanonicalOrder(t *testing.T) {
	tests := []struct {
		name  string
		model func(testing.TB) *graph.Model
		want  []string // first output of each compute node, in order
		dead  int
	}{
		{"chain", chainModel, []string{"mm", "r", "a", "y"}, 0},
		{"branch out of file order", branchModel, []string{"ca", "cb", "ra", "rb", "cat", "y"}, 0},
		{"constants and dead nodes left out", multiOutputModel, []string{"y1", "m", "n", "y2"}, 1},
		{"if", ifModel, []string{"r", "s", "cond1", "cond", "iff", "y"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.model(t)
			if got := nodeNames(m); !slices.Equal(got, tt.want) {
				t.Errorf("order = %v, want %v", got, tt.want)
			}
			if m.DeadNodes() != tt.dead {
				t.Errorf("dead nodes = %d, want %d", m.DeadNodes(), tt.dead)
			}
			for i, n := range m.Nodes() {
				if n.ID != i {
					t.Errorf("node %d has ID %d", i, n.ID)
				}
			}
		})
	}
}

func TestSubgraphCaptures(t *testing.T) {
	m := ifModel(t)
	n := m.Nodes()[m.Producer("iff")]
	if want := []string{"cond", "r", "offset"}; !slices.Equal(n.Inputs, want) {
		t.Errorf("If inputs = %v, want %v (explicit, then captured)", n.Inputs, want)
	}
	if got := m.Consumers("r"); !slices.Equal(got, []int{n.ID}) {
		t.Errorf("consumers of captured r = %v, want [%d]", got, n.ID)
	}
}

func TestInitializerInputsToldApart(t *testing.T) {
	m := ir3Model(t)
	if got := m.Inputs(); !slices.Equal(got, []string{"x"}) {
		t.Errorf("real inputs = %v, want [x]", got)
	}
	if !m.IsInitializer("w") {
		t.Error("w should be an initialiser")
	}
}

func TestCutsCrossing(t *testing.T) {
	tests := []struct {
		name  string
		model func(testing.TB) *graph.Model
		want  [][]string // crossing names per cut ID
	}{
		{"chain", chainModel, [][]string{{"x"}, {"mm"}, {"r"}, {"a"}, {"y"}}},
		{"residual skip crosses", residualModel, [][]string{{"x"}, {"x", "c1"}, {"x", "r1"}, {"x", "c2"}, {"sum"}, {"y"}}},
		{"branch", branchModel, [][]string{{"x"}, {"x", "ca"}, {"ca", "cb"}, {"cb", "ra"}, {"ra", "rb"}, {"cat"}, {"y"}}},
		{"edge output forwarded", multiOutputModel, [][]string{{"x"}, {"x", "y1"}, {"x", "y1", "m"}, {"y1", "m", "n"}, {"y1", "y2"}}},
		{"captured tensor crosses", ifModel, [][]string{{"x"}, {"x", "r"}, {"r", "s"}, {"r", "cond1"}, {"r", "cond"}, {"iff"}, {"y"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cuts := graph.Cuts(tt.model(t))
			if len(cuts) != len(tt.want) {
				t.Fatalf("%d cuts, want %d", len(cuts), len(tt.want))
			}
			for i, c := range cuts {
				if c.ID != i {
					t.Errorf("cut %d has ID %d", i, c.ID)
				}
				if got := c.Names(); !slices.Equal(got, tt.want[i]) {
					t.Errorf("cut %d crossing = %v, want %v", i, got, tt.want[i])
				}
			}
		})
	}
}

func TestCutBytes(t *testing.T) {
	cuts := graph.Cuts(residualModel(t))
	if got, want := cuts[0].Bytes, int64(2*8*8*4); got != want {
		t.Errorf("cut 0 bytes = %d, want %d", got, want)
	}
	if cuts[1].Bytes != -1 {
		t.Errorf("cut 1 sends an undeclared tensor; bytes = %d, want -1 until probed", cuts[1].Bytes)
	}
}

func TestPartitionRejects(t *testing.T) {
	m := residualModel(t)
	tests := []struct {
		name string
		edge []int
		want string
	}{
		{"not predecessor-closed", []int{0, 2}, "not predecessor-closed: node 2 (c2_node) reads \"r1\" from node 1 (r1_node)"},
		{"no such node", []int{0, 9}, "node 9 does not exist"},
		{"untyped crossing", []int{0}, "declares no type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := graph.Partition(m, tt.edge)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestPartitionNonPrefix(t *testing.T) {
	m := branchModel(t)
	for _, name := range []string{"ca", "cb", "ra", "rb", "cat"} {
		m.SetTensorType(name, 1, nil, nil)
	}
	// ca and ra on the edge, cb on the server: not a prefix of the order.
	s, err := graph.Partition(m, []int{0, 2})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range s.Crossing {
		names = append(names, c.Name)
	}
	if want := []string{"x", "ra"}; !slices.Equal(names, want) {
		t.Errorf("crossing = %v, want %v", names, want)
	}
	head, err := graph.Parse(s.Head)
	if err != nil {
		t.Fatal(err)
	}
	tail, err := graph.Parse(s.Tail)
	if err != nil {
		t.Fatal(err)
	}
	if got := nodeNames(head); !slices.Equal(got, []string{"ca", "ra"}) {
		t.Errorf("head nodes = %v", got)
	}
	if got := nodeNames(tail); !slices.Equal(got, []string{"cb", "rb", "cat", "y"}) {
		t.Errorf("tail nodes = %v", got)
	}
	// Each half carries only the weights it reads.
	if head.IsInitializer("cb.w") || !head.IsInitializer("ca.w") || tail.IsInitializer("ca.w") {
		t.Error("initialisers not assigned to the side that reads them")
	}
}

func TestEdgeNodesClosure(t *testing.T) {
	m := residualModel(t)
	got, err := m.EdgeNodes([]int{2})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{0, 1, 2}; !slices.Equal(got, want) {
		t.Errorf("closure = %v, want %v", got, want)
	}
}

func TestParseRejects(t *testing.T) {
	good, err := chainModel(t).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "empty file"},
		{"text", []byte("hello, this is not a model\n"), "not an ONNX model"},
		{"truncated", good[:len(good)/2], "not an ONNX model"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := graph.Parse(tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
	path := filepath.Join(t.TempDir(), "bad.onnx")
	if err := os.WriteFile(path, good[:len(good)/3], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := graph.Load(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Load error %v does not name the file", err)
	}
}

func TestRoundTripSharedModels(t *testing.T) {
	for _, path := range sharedModels(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			m, err := graph.Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			out, err := m.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, data) {
				t.Errorf("round trip changed the bytes: %d in, %d out", len(data), len(out))
			}
		})
	}
}

func TestUnknownFieldsSurvive(t *testing.T) {
	data, err := chainModel(t).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	// Field 25 of ModelProto (local functions) and a made-up field 99.
	data = protowire.AppendTag(data, 25, protowire.BytesType)
	data = protowire.AppendBytes(data, []byte("\x0a\x03fn1"))
	data = protowire.AppendTag(data, 99, protowire.VarintType)
	data = protowire.AppendVarint(data, 7)
	m, err := graph.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, data) {
		t.Fatal("unknown fields did not survive a round trip")
	}
	for _, name := range []string{"mm", "r", "a"} {
		m.SetTensorType(name, 1, nil, nil)
	}
	s, err := graph.Partition(m, []int{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, half := range [][]byte{s.Head, s.Tail} {
		if !bytes.Contains(half, []byte("\x0a\x03fn1")) {
			t.Error("a half lost the model's local functions")
		}
	}
}

func TestSaveAtomic(t *testing.T) {
	m := chainModel(t)
	path := filepath.Join(t.TempDir(), "m.onnx")
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	back, err := graph.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Nodes()) != 4 {
		t.Errorf("reloaded model has %d nodes", len(back.Nodes()))
	}
	if err := m.Save(filepath.Join(t.TempDir(), "missing", "m.onnx")); err == nil {
		t.Error("save into a missing folder succeeded")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}
