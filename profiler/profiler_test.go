package profiler

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"tracr/internal/orttest"

	"google.golang.org/protobuf/proto"

	"tracr/graph"
	"tracr/graph/onnxpb"
	"tracr/tensor"
	"tracr/zoo"
)

// requireORT skips or fails the test without ONNX Runtime (orttest.Require).
func requireORT(t testing.TB) { orttest.Require(t) }

// noGPU is an NVML library path that cannot load, so tests see the same
// stats on machines with and without NVIDIA GPUs.
const noGPU = "/nonexistent/libnvidia-ml.so.1"

// chainModel builds x -> (Conv 3x3 -> Relu) x layers -> y on a
// [1, ch, size, size] input. With unnamed, the Relu nodes have no name, as
// some exporters leave them, so their rows must be matched by position.
func chainModel(t testing.TB, layers, ch, size int64, unnamed bool) []byte {
	t.Helper()
	vi := func(name string) *onnxpb.ValueInfoProto {
		var dims []*onnxpb.TensorShapeProto_Dimension
		for _, d := range []int64{1, ch, size, size} {
			dims = append(dims, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
		}
		return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(tensor.Float32)), Shape: &onnxpb.TensorShapeProto{Dim: dims}}}}}
	}
	g := &onnxpb.GraphProto{Name: proto.String("chain"), Input: []*onnxpb.ValueInfoProto{vi("x")}, Output: []*onnxpb.ValueInfoProto{vi("y")}}
	prev := "x"
	for i := range layers {
		w := fmt.Sprintf("w%d", i)
		vals := make([]float32, ch*ch*9)
		for j := range vals {
			vals[j] = float32((j*7+int(i)*3)%11-5) / float32(ch*9)
		}
		g.Initializer = append(g.Initializer, &onnxpb.TensorProto{Name: proto.String(w), Dims: []int64{ch, ch, 3, 3},
			DataType: proto.Int32(int32(tensor.Float32)), RawData: tensor.FromFloat32(w, tensor.Shape{ch, ch, 3, 3}, vals).Data})
		conv, relu := fmt.Sprintf("c%d", i), fmt.Sprintf("r%d", i)
		if i == layers-1 {
			relu = "y"
		}
		g.Node = append(g.Node, &onnxpb.NodeProto{Name: proto.String("conv" + conv), OpType: proto.String("Conv"), Input: []string{prev, w}, Output: []string{conv},
			Attribute: []*onnxpb.AttributeProto{{Name: proto.String("pads"), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: []int64{1, 1, 1, 1}}}})
		rn := &onnxpb.NodeProto{OpType: proto.String("Relu"), Input: []string{conv}, Output: []string{relu}}
		if !unnamed {
			rn.Name = proto.String("relu" + relu)
		}
		g.Node = append(g.Node, rn)
		prev = relu
	}
	b, err := proto.Marshal(&onnxpb.ModelProto{IrVersion: proto.Int64(8), Graph: g,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// zooModel builds a zoo model once per test binary.
var zooModels sync.Map

func zooModel(t testing.TB, name string, size int) []byte {
	t.Helper()
	f, _ := zooModels.LoadOrStore(fmt.Sprint(name, size), sync.OnceValues(func() ([]byte, error) {
		b, _, err := zoo.Build(name, size)
		return b, err
	}))
	b, err := f.(func() ([]byte, error))()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNodeTableCoversEveryNode(t *testing.T) {
	requireORT(t)
	tests := []struct {
		name     string
		model    func(t *testing.T) []byte
		unmapped int // ONNX Runtime operators that are not tracr nodes
	}{
		{"chain with unnamed nodes", func(t *testing.T) []byte { return chainModel(t, 3, 4, 8, true) }, 0},
		// mnist reshapes a weight with a node fed only by constants: tracr
		// does not number it (each half recomputes it).
		{"mnist", func(t *testing.T) []byte {
			b, err := os.ReadFile("../../shared/models/mnist-8.onnx")
			if err != nil {
				t.Skipf("shared model absent (%v); the ../shared folder beside the repo holds it", err)
			}
			return b
		}, 1},
		{"yolov8n@32", func(t *testing.T) []byte { return zooModel(t, "yolov8n", 32) }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const repeats = 3
			model := tt.model(t)
			p, err := Run(context.Background(), model, tt.name, Options{Repeats: repeats, Threads: 1, Cuts: []int{}, Checks: -1, NVMLLibrary: noGPU})
			if err != nil {
				t.Fatal(err)
			}
			m, err := graph.Parse(model)
			if err != nil {
				t.Fatal(err)
			}
			nodes := m.Nodes()
			if got := len(p.Nodes); got != len(nodes)+tt.unmapped {
				t.Fatalf("%d rows, want %d nodes + %d unmapped", got, len(nodes), tt.unmapped)
			}
			for i, n := range nodes {
				row := p.Nodes[i]
				if row.ID != n.ID || row.Name != n.Name || row.OpType != n.OpType {
					t.Errorf("row %d = %d %s (%s), want node %d %s (%s)", i, row.ID, row.Name, row.OpType, n.ID, n.Name, n.OpType)
				}
				if row.Time.Runs != repeats || row.Time.Median <= 0 || row.Time.P90 < row.Time.Median {
					t.Errorf("node %d %s: timing %+v, want %d runs, 0 < median <= p90", n.ID, n.Name, row.Time, repeats)
				}
				if len(row.Outputs) == 0 || row.OutputBytes <= 0 || row.Provider != "CPUExecutionProvider" {
					t.Errorf("node %d %s: outputs %v, %d bytes, provider %q", n.ID, n.Name, row.Outputs, row.OutputBytes, row.Provider)
				}
			}
			for _, row := range p.Nodes[len(nodes):] {
				if row.ID != -1 {
					t.Errorf("extra row %+v has ID %d, want -1", row, row.ID)
				}
			}
		})
	}
}

// BenchmarkSegmentSums reports how far the summed segment medians of
// TestSegmentSumsMatchWhole's model are from the whole model timed
// directly, in percent of the whole (0-10% high on an idle machine here).
func BenchmarkSegmentSums(b *testing.B) {
	requireORT(b)
	model := chainModel(b, 6, 64, 40, false)
	var pct float64
	for b.Loop() {
		p, err := Run(context.Background(), model, "chain", Options{Repeats: 9, Threads: 1, NVMLLibrary: noGPU})
		if err != nil {
			b.Fatal(err)
		}
		var sum time.Duration
		for _, s := range p.Segments {
			sum += s.Time.Median
		}
		pct += 100 * float64(sum-p.Whole.Median) / float64(p.Whole.Median)
	}
	b.ReportMetric(pct/float64(b.N), "sum-vs-whole-%")
}

// TestSegmentSumsMatchWhole checks the cost model's premise on a fixed
// model: summed segments approximate the whole model. The structure is
// checked exactly (every segment once, edge + server = the sum at every
// cut); the timing loosely, as a ratio of two figures the profiler takes
// side by side (its passes interleave the whole model and the segments):
// the median segment sum over every cut within a factor of 3 of the whole
// model timed directly. On an idle machine the sum is 0-10% high (Conv+Relu
// fuse in the whole model and not across a cut, and every segment adds a
// Run's overhead); with two busy loops on 2 cores it was 15-53% low, as the
// 4-7 ms whole-model run is preempted where the 0.3 ms segments are not. So
// the figure is BenchmarkSegmentSums's, and the test catches what misses by
// more than load can: a segment timed with the ones before it (+700%), or
// segments timed on another scale than the whole model.
func TestSegmentSumsMatchWhole(t *testing.T) {
	requireORT(t)
	model := chainModel(t, 6, 64, 40, false)
	p, err := Run(context.Background(), model, "chain", Options{Repeats: 9, Threads: 1, NVMLLibrary: noGPU})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Cuts) != 13 || len(p.Segments) != 12 {
		t.Fatalf("%d cuts and %d segments, want every cut of 12 nodes: 13 and 12", len(p.Cuts), len(p.Segments))
	}
	var sum time.Duration
	for i, s := range p.Segments {
		if s.From != i || s.To != i+1 || s.Time.Runs != 9 || s.Time.Median <= 0 {
			t.Errorf("segment %d = %+v", i, s)
		}
		sum += s.Time.Median
	}
	last := p.Cuts[len(p.Cuts)-1]
	if last.Edge.Median != sum || p.Cuts[0].Server.Median != sum {
		t.Errorf("edge(N) = %v, server(0) = %v, want the segment sum %v", last.Edge.Median, p.Cuts[0].Server.Median, sum)
	}
	for _, c := range p.Cuts {
		if d := c.Edge.Median + c.Server.Median; d != sum {
			t.Errorf("cut %d: edge + server = %v, want %v", c.ID, d, sum)
		}
	}
	// The machine is shared (other test packages run beside this one), so
	// a measurement that a burst of load spoilt is retried, up to three
	// attempts in all; a systematic error fails every attempt.
	within := false
	for attempt := 1; attempt <= 3 && !within; attempt++ {
		if attempt > 1 {
			if p, err = Run(context.Background(), model, "chain", Options{Repeats: 9, Threads: 1, NVMLLibrary: noGPU}); err != nil {
				t.Fatal(err)
			}
		}
		var asum time.Duration
		for _, s := range p.Segments {
			asum += s.Time.Median
		}
		whole := p.Whole.Median
		within = asum >= whole/3 && asum <= 3*whole
		t.Logf("attempt %d: whole %v, segment sum %v (%+.1f%%), fusion error %.1f%%",
			attempt, whole, asum, 100*float64(asum-whole)/float64(whole), 100*p.FusionError)
	}
	if !within {
		t.Errorf("segment sums stayed outside a third to three times the whole model in three attempts")
	}
	sum = 0
	for _, s := range p.Segments {
		sum += s.Time.Median
	}
	if w := p.Checks[0]; w.Part != "whole" || w.Direct != p.Whole || w.Summed.Median != sum {
		t.Errorf("first check %+v, want the whole model against the segment sum", w)
	}
	if len(p.Checks) != 1+2*DefaultChecks {
		t.Errorf("%d checks, want the whole model and %d heads and tails", len(p.Checks), DefaultChecks)
	}
	for _, c := range p.Checks[1:] {
		ct, _ := p.Cut(c.Cut)
		direct := ct.EdgeDirect
		if c.Part == "tail" {
			direct = ct.ServerDirect
		}
		if direct == nil || *direct != c.Direct {
			t.Errorf("cut %d %s: direct timing %v not recorded on the cut", c.Cut, c.Part, c.Direct)
		}
	}
}

// TestSegmentModels checks that segments keep tracr's node numbering: the
// head at cut b, parsed again, numbers its nodes as the model does, and the
// segment a..b holds exactly nodes a..b-1 in order.
func TestSegmentModels(t *testing.T) {
	m, err := graph.Parse(zooModel(t, "yolov8n", 32))
	if err != nil {
		t.Fatal(err)
	}
	nodes := m.Nodes()
	for _, span := range [][2]int{{0, 7}, {7, 60}, {60, 150}, {150, len(nodes)}, {100, 101}} {
		a, b := span[0], span[1]
		head, err := graph.Partition(m, graph.Prefix(b))
		if err != nil {
			t.Fatal(err)
		}
		hm, err := graph.Parse(head.Head)
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range hm.Nodes() {
			if i >= b || n.Name != nodes[i].Name {
				t.Fatalf("head %d: node %d is %s, want %s", b, i, n.Name, nodes[min(i, b-1)].Name)
			}
		}
		seg, err := segmentModel(m, a, b)
		if err != nil {
			t.Fatal(err)
		}
		sm, err := graph.Parse(seg)
		if err != nil {
			t.Fatal(err)
		}
		if len(sm.Nodes()) != b-a {
			t.Fatalf("segment %d..%d has %d nodes, want %d", a, b, len(sm.Nodes()), b-a)
		}
		for j, n := range sm.Nodes() {
			if n.Name != nodes[a+j].Name {
				t.Errorf("segment %d..%d: node %d is %s, want %s", a, b, j, n.Name, nodes[a+j].Name)
			}
		}
	}
}

func TestDefaultCuts(t *testing.T) {
	small, err := graph.Parse(chainModel(t, 3, 2, 4, false))
	if err != nil {
		t.Fatal(err)
	}
	if got := DefaultCuts(small); !reflect.DeepEqual(got, []int{0, 1, 2, 3, 4, 5, 6}) {
		t.Errorf("small model: %v, want every cut", got)
	}
	m, err := graph.Parse(zooModel(t, "yolov8n", 32))
	if err != nil {
		t.Fatal(err)
	}
	n := len(m.Nodes())
	got := DefaultCuts(m)
	if len(got) < 10 || len(got) > DefaultSpans+2 || got[0] != 0 || got[len(got)-1] != n {
		t.Fatalf("yolov8n (%d nodes): %d cuts %v, want 0, N and at most one per span", n, len(got), got)
	}
	bytes := map[int]int64{}
	for _, c := range graph.Cuts(m) {
		bytes[c.ID] = c.Bytes
	}
	for _, id := range got[1 : len(got)-1] {
		var lo, hi int
		for j := range DefaultSpans {
			if lo, hi = 1+j*(n-1)/DefaultSpans, 1+(j+1)*(n-1)/DefaultSpans; lo <= id && id < hi {
				break
			}
		}
		for c := lo; c < hi; c++ {
			if bytes[c] < bytes[id] {
				t.Errorf("cut %d (%d bytes) chosen in span %d..%d, but cut %d sends %d", id, bytes[id], lo, hi, c, bytes[c])
			}
		}
	}
	// Explicit cuts are validated, and 0 and N are always added.
	if got, err := candidateCuts(m, []int{50, 10}); err != nil || !reflect.DeepEqual(got, []int{0, 10, 50, n}) {
		t.Errorf("candidateCuts(10, 50) = %v, %v", got, err)
	}
	if _, err := candidateCuts(m, []int{n + 1}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("candidateCuts(N+1) error %v, want one saying the cut does not exist", err)
	}
}

func TestProfileJSONRoundTrip(t *testing.T) {
	requireORT(t)
	p, err := Run(context.Background(), chainModel(t, 2, 4, 8, true), "chain", Options{Repeats: 2, Threads: 1, NVMLLibrary: noGPU})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "p.json")
	if err := p.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, p) {
		a, _ := p.JSON()
		b, _ := got.JSON()
		t.Fatalf("round trip changed the profile:\n%s\nvs\n%s", a, b)
	}
	var raw map[string]any
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"version", "machine", "ort_version", "provider", "threads", "model", "cuts", "segments", "nodes", "fusion_error", "stats"} {
		if _, ok := raw[key]; !ok {
			t.Errorf("profile JSON has no %q", key)
		}
	}
	whole := raw["whole"].(map[string]any)
	if ms := whole["median_ms"].(float64); math.Abs(ms-millis(p.Whole.Median)) > 1e-9 || ms <= 0 {
		t.Errorf("whole median_ms = %v, want %v (float milliseconds)", ms, millis(p.Whole.Median))
	}

	bad := []struct{ name, data, want string }{
		{"not json", "nope", "not a profile"},
		{"no version", `{"provider":"cpu"}`, "no version"},
		{"newer version", `{"version":2}`, "format version 2"},
	}
	for _, tt := range bad {
		path := filepath.Join(t.TempDir(), "bad.json")
		if err := os.WriteFile(path, []byte(tt.data), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: Load error %v, want one naming %s and saying %q", tt.name, err, path, tt.want)
		}
	}
}

func TestCached(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	model := chainModel(t, 2, 4, 8, false)
	// No recheck here: TestCachedRecheck checks it.
	opts := Options{Repeats: 1, Threads: 1, Checks: -1, NVMLLibrary: noGPU, Rechecks: -1}
	first, hit, err := Cached(context.Background(), dir, model, "chain", opts)
	if err != nil || hit {
		t.Fatalf("first Cached: hit %v, err %v; want a fresh profile", hit, err)
	}
	again, hit, err := Cached(context.Background(), dir, model, "elsewhere", opts)
	if again != nil {
		again.Recheck = nil
	}
	if err != nil || !hit || !reflect.DeepEqual(again, first) {
		t.Fatalf("second Cached: hit %v, err %v, same profile %v; want the cached one", hit, err, reflect.DeepEqual(again, first))
	}
	opts.Threads = 2
	other, hit, err := Cached(context.Background(), dir, model, "chain", opts)
	if err != nil || hit || other.Threads != 2 {
		t.Fatalf("other thread count: hit %v, err %v; want a fresh profile", hit, err)
	}
	// Everything that changes the figures is in the key: another repeat
	// count, another CPU limit, another seed are measured anew.
	for _, change := range []func(*Options){
		func(o *Options) { o.Repeats = 2 },
		func(o *Options) { o.CPULimit = 0.5 },
		func(o *Options) { o.Seed = 7 },
	} {
		o := opts
		change(&o)
		p, hit, err := Cached(context.Background(), dir, model, "chain", o)
		if err != nil || hit {
			t.Fatalf("options %+v: hit %v, err %v; want a fresh profile", o, hit, err)
		}
		if p.Repeats != max(o.Repeats, 1) || p.CPULimit != o.CPULimit {
			t.Errorf("profile records repeats %d, CPU limit %g; want %d, %g", p.Repeats, p.CPULimit, o.Repeats, o.CPULimit)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 5 {
		t.Errorf("cache holds %d files, want 5 (one per set of options)", len(entries))
	}
	opts.Fresh = true
	fresh, hit, err := Cached(context.Background(), dir, model, "chain", opts)
	if err != nil || hit {
		t.Fatalf("Fresh: hit %v, err %v; want a new profile", hit, err)
	}
	opts.Fresh = false
	again, hit, err = Cached(context.Background(), dir, model, "chain", opts)
	if again != nil {
		again.Recheck = nil
	}
	if err != nil || !hit || !reflect.DeepEqual(again, fresh) {
		t.Fatalf("after Fresh: hit %v, err %v; want the fresh profile, which replaced the old one", hit, err)
	}
}

// TestCachedRecheck: a cached profile that disagrees with the model timed
// now (here doctored to an absurd whole-model time) is measured again, and
// the new profile says why; it replaces the cached one.
func TestCachedRecheck(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	model := chainModel(t, 2, 4, 8, false)
	opts := Options{Repeats: 3, Threads: 1, Checks: -1, NVMLLibrary: noGPU, Rechecks: 3}
	first, _, err := Cached(context.Background(), dir, model, "chain", opts)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, first.Key+".json")
	doctored := *first
	doctored.Whole = Timing{Median: time.Hour, P90: time.Hour, Runs: 3}
	if err := doctored.Save(path); err != nil {
		t.Fatal(err)
	}
	p, hit, err := Cached(context.Background(), dir, model, "chain", opts)
	if err != nil {
		t.Fatal(err)
	}
	if hit || p.Recheck == nil || !p.Recheck.Stale || !strings.Contains(p.Recheck.Reason, "measured again") || p.Recheck.Profiled.Median != time.Hour {
		t.Fatalf("stale profile: hit %v, recheck %+v; want it measured again with the reason", hit, p.Recheck)
	}
	if p.Whole.Median >= time.Minute {
		t.Errorf("new profile's whole model %v: the doctored one was kept", p.Whole.Median)
	}
	stored, err := Load(path)
	if err != nil || stored.Whole.Median >= time.Minute {
		t.Errorf("cache still holds the stale profile (%v)", err)
	}
}

func TestRecheckJudge(t *testing.T) {
	ms := func(med, p90 float64) Timing {
		return Timing{Median: time.Duration(med * 1e6), P90: time.Duration(p90 * 1e6), Runs: 5}
	}
	for _, tt := range []struct {
		name               string
		profiled, measured Timing
		stale              bool
	}{
		{"same", ms(10, 10), ms(10, 10), false},
		{"within the slack", ms(10, 10), ms(11.4, 11.4), false},
		{"beyond the slack", ms(10, 10), ms(11.6, 11.6), true},
		{"faster beyond the slack", ms(10, 10), ms(8.4, 8.4), true},
		{"a wide profile allows more", ms(10, 12), ms(15, 15), false}, // 0.15 + 0.4
		{"45 ms cached, 66 ms now", ms(45, 47), ms(66, 68), true},
	} {
		rc := judge(Recheck{Profiled: tt.profiled, Measured: tt.measured})
		if rc.Stale != tt.stale || (rc.Reason != "") != tt.stale {
			t.Errorf("%s: stale %v (off %.3f, allowed %.3f, reason %q), want %v", tt.name, rc.Stale, rc.Off, rc.Allowed, rc.Reason, tt.stale)
		}
	}
}

func TestOptions(t *testing.T) {
	tests := []struct {
		opts Options
		want string // "" for valid
	}{
		{Options{}, ""},
		{Options{Provider: "CUDA", Threads: 4, Repeats: 3}, ""},
		{Options{Provider: "tpu"}, `unknown execution provider "tpu"`},
		{Options{Threads: -1}, "threads must be >= 0"},
		{Options{Repeats: -2}, "repeats must be >= 1"},
		{Options{Warmup: -1}, "warm-up runs must be >= 0"},
		{Options{Passes: -1}, "passes must be >= 0"},
	}
	for _, tt := range tests {
		err := tt.opts.Validate()
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%+v: error %v, want %q", tt.opts, err, tt.want)
		}
	}
	// Bad options fail before the model is even read.
	if _, err := Run(context.Background(), nil, "none", Options{Threads: -1}); err == nil || !strings.Contains(err.Error(), "threads") {
		t.Errorf("Run with threads -1: %v", err)
	}
}

// TestCUDAUnavailable checks that asking for CUDA where ONNX Runtime has no
// CUDA provider (the CPU-only build make setup fetches) fails with one line
// that says so.
func TestCUDAUnavailable(t *testing.T) {
	requireORT(t)
	_, err := Run(context.Background(), chainModel(t, 1, 2, 4, false), "chain", Options{Provider: "cuda", Repeats: 1, NVMLLibrary: noGPU})
	if err == nil {
		t.Skip("this ONNX Runtime has a working CUDA provider")
	}
	if msg := err.Error(); !strings.Contains(msg, "CUDA execution provider unavailable") || strings.Contains(msg, "\n") {
		t.Errorf("error %q, want one line saying the CUDA provider is unavailable", msg)
	}
}

func TestStatsWithoutNVML(t *testing.T) {
	ctx := context.Background()
	s := StartSampler(ctx, SamplerOptions{Interval: 5 * time.Millisecond, NVMLLibrary: noGPU, PowercapDir: t.TempDir()})
	deadline := time.Now().Add(150 * time.Millisecond)
	for time.Now().Before(deadline) {
		s.Quiet(func() {
			before := s.stats.Samples
			for x, end := 0.0, time.Now().Add(20*time.Millisecond); time.Now().Before(end); x++ {
				_ = math.Sqrt(x) // a timed window's worth of CPU work
			}
			if s.stats.Samples != before {
				t.Errorf("%d samples taken inside Quiet", s.stats.Samples-before)
			}
		})
		time.Sleep(10 * time.Millisecond)
	}
	st := s.Stop(ctx)
	if st.Samples < 3 || st.CPUPercent.N < 2 || st.MemTotalBytes <= 0 || st.MemUsedBytes.Max <= 0 || !st.End.After(st.Start) {
		t.Errorf("stats %+v, want CPU and memory samples", st)
	}
	if st.CPUPercent.Max <= 0 || st.CPUPercent.Max > 100 {
		t.Errorf("CPU utilisation max %v%%, want (0, 100] while a core was busy", st.CPUPercent.Max)
	}
	if len(st.GPUs) != 0 || st.CPUEnergyJoules != nil {
		t.Errorf("GPUs %v, CPU energy %v: want none without NVML or RAPL", st.GPUs, st.CPUEnergyJoules)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("gpu")) || bytes.Contains(b, []byte("energy")) {
		t.Errorf("stats JSON %s has GPU or energy fields", b)
	}
	p := &Profile{Stats: st}
	var csv bytes.Buffer
	if err := p.WriteStatsCSV(&csv); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(csv.String()), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[1], ",,,,,,,,,,,") {
		t.Errorf("stats CSV %q, want one row ending in 11 empty GPU columns (and empty CPU energy)", csv.String())
	}

	m := DescribeMachine(ctx, noGPU)
	if m.LogicalCores <= 0 || m.MemoryBytes <= 0 || len(m.GPUs) != 0 || m.ID() == "" {
		t.Errorf("machine %+v, want cores and memory and no GPU", m)
	}
}

// TestRAPL reads a powercap tree laid out as Linux does, package zones
// only, across a counter wrap.
func TestRAPL(t *testing.T) {
	dir := t.TempDir()
	zone := func(name, label string, uj, top int) string {
		z := filepath.Join(dir, name)
		if err := os.MkdirAll(z, 0o755); err != nil {
			t.Fatal(err)
		}
		for f, v := range map[string]string{"name": label, "energy_uj": fmt.Sprint(uj), "max_energy_range_uj": fmt.Sprint(top)} {
			if err := os.WriteFile(filepath.Join(z, f), []byte(v+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return filepath.Join(z, "energy_uj")
	}
	pkg := zone("intel-rapl:0", "package-0", 1000, 10000)
	core := zone("intel-rapl:0:0", "core", 500, 10000)
	psys := zone("intel-rapl:1", "psys", 7, 10000)
	r := openRAPL(dir)
	for _, step := range []struct {
		files []string
		uj    string
	}{{[]string{pkg, core, psys}, "9000"}, {[]string{pkg, core, psys}, "500"}} {
		for _, f := range step.files {
			if err := os.WriteFile(f, []byte(step.uj), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		r.read()
	}
	// package-0: 1000 -> 9000 -> wrap at 10000 -> 500: 8000 + 1500 µJ.
	if j, ok := r.joules(); !ok || math.Abs(j-0.0095) > 1e-12 {
		t.Errorf("joules = %v, %v; want 0.0095 from the package zone alone", j, ok)
	}
	if r := openRAPL(filepath.Join(dir, "missing")); r != nil {
		t.Errorf("no powercap folder: got %+v, want nil", r)
	}
	if _, ok := (*rapl)(nil).joules(); ok {
		t.Error("nil rapl reports energy")
	}
}

func TestSummarise(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		in       []time.Duration
		med, p90 time.Duration
		runs     int
	}{
		{in: ms(5), med: 5 * time.Millisecond, p90: 5 * time.Millisecond, runs: 1},
		{in: ms(4, 1, 3, 2), med: 2500 * time.Microsecond, p90: 4 * time.Millisecond, runs: 4},
		{in: ms(10, 1, 2, 3, 4, 5, 6, 7, 8, 9), med: 5500 * time.Microsecond, p90: 9 * time.Millisecond, runs: 10},
		{in: ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100), med: 6 * time.Millisecond, p90: 10 * time.Millisecond, runs: 11},
		{in: nil},
	}
	for _, tt := range tests {
		got := summarise(tt.in)
		if got != (Timing{Median: tt.med, P90: tt.p90, Runs: tt.runs}) {
			t.Errorf("summarise(%v) = %+v, want median %v p90 %v runs %d", tt.in, got, tt.med, tt.p90, tt.runs)
		}
	}
}

func TestPasses(t *testing.T) {
	tests := []struct {
		repeats, passes int
		want            []int // timed runs per pass
	}{
		{10, 0, []int{4, 3, 3}},
		{5, 3, []int{2, 2, 1}},
		{2, 3, []int{1, 1}},
		{1, 0, []int{1}},
		{7, 1, []int{7}},
	}
	for _, tt := range tests {
		opts, err := Options{Repeats: tt.repeats, Passes: tt.passes}.normalise()
		if err != nil {
			t.Fatal(err)
		}
		tm := &timer{opts: opts}
		var got []int
		for pass := range tm.passes() {
			got = append(got, tm.runsIn(pass))
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("repeats %d, passes %d: runs per pass %v, want %v", tt.repeats, tt.passes, got, tt.want)
		}
	}
}

// TestNodeTableOptimized checks the per-node table as deployed: each
// Conv+Relu runs as one fused Conv, attributed to one of the pair's rows
// (ONNX Runtime 1.30's NCHWc pass on AVX2+ CPUs names it after the Relu's
// output), the other row shows no runs, and the layout operators ONNX
// Runtime adds are listed with ID -1.
func TestNodeTableOptimized(t *testing.T) {
	requireORT(t)
	model := chainModel(t, 3, 8, 16, true)
	p, err := Run(context.Background(), model, "chain", Options{Repeats: 2, Threads: 1, NodesOptimized: true, Cuts: []int{}, Checks: -1, NVMLLibrary: noGPU})
	if err != nil {
		t.Fatal(err)
	}
	if !p.NodesOptimized || len(p.Nodes) < 6 {
		t.Fatalf("optimized %v, %d rows", p.NodesOptimized, len(p.Nodes))
	}
	for i, row := range p.Nodes[:6] {
		if row.ID != i {
			t.Fatalf("row %d has ID %d", i, row.ID)
		}
	}
	for k := 0; k < 6; k += 2 {
		conv, relu := p.Nodes[k], p.Nodes[k+1]
		if (conv.Time.Runs > 0) == (relu.Time.Runs > 0) {
			t.Errorf("nodes %d and %d: %d and %d runs; want the fused operator on exactly one row", k, k+1, conv.Time.Runs, relu.Time.Runs)
		}
	}
	for _, row := range p.Nodes[6:] {
		if row.ID != -1 || row.Time.Runs != 2 {
			t.Errorf("extra row %+v, want ID -1 with 2 runs", row)
		}
	}
}

// TestPricer: without a limit a run is its wall time; under one, its CPU
// time at the rate the whole model's runs measured (CPU over wall, summed),
// whatever the limit's own calibration said; with no whole runs to go by,
// at that calibration's rate.
func TestPricer(t *testing.T) {
	ms := time.Millisecond
	whole := []run{{100 * ms, 12 * ms}, {110 * ms, 13 * ms}, {90 * ms, 11 * ms}} // 36 ms CPU in 300 ms: 0.12
	seg := []run{{2 * ms, 1200 * time.Microsecond}, {10 * ms, 1200 * time.Microsecond}}
	for _, tt := range []struct {
		name  string
		whole []run
		rate  float64
		want  []time.Duration
	}{
		{"no limit", whole, 0, []time.Duration{2 * ms, 10 * ms}},
		{"the whole model's rate", whole, 0.1, []time.Duration{10 * ms, 10 * ms}},
		{"no whole runs: the calibration's", nil, 0.1, []time.Duration{12 * ms, 12 * ms}},
	} {
		if got := pricer(tt.whole, tt.rate)(seg); !slices.Equal(got, tt.want) {
			t.Errorf("%s: priced %v, want %v", tt.name, got, tt.want)
		}
	}
}
