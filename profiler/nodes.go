package profiler

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"tracr/graph"
	"tracr/quantile"
	"tracr/tensor"
)

// traceEvent is one event of ONNX Runtime's Chrome-trace profile. Node
// events ("cat":"Node", name "<node>_kernel_time") time one operator; the
// session event "model_run" spans one Run.
type traceEvent struct {
	Cat  string    `json:"cat"`
	Name string    `json:"name"`
	TS   int64     `json:"ts"`  // µs since the session started
	Dur  int64     `json:"dur"` // µs
	Args traceArgs `json:"args"`
}

type traceArgs struct {
	OpName      string            `json:"op_name"`
	Provider    string            `json:"provider"`
	NodeIndex   string            `json:"node_index"`
	OutputSize  string            `json:"output_size"`
	OutputShape []json.RawMessage `json:"output_type_shape"`
}

const kernelSuffix = "_kernel_time"

// nodeTable turns an ONNX Runtime profile into the per-node table of m: one
// row per compute node in ID order, then the operators that map to none. The
// first warmup runs of the trace are left out. With graph optimisations off
// ONNX Runtime runs every ONNX node under the file's name (or, for an
// unnamed node, under an empty name with node_index its position in the
// file), so every compute node maps. Optimised traces hold fused operators,
// attributed where their name allows (see idIndex.lookup; the other nodes
// of the fusion show no runs), and layout operators the optimiser made,
// which get ID -1.
func nodeTable(trace []byte, m *graph.Model, warmup int) ([]NodeTiming, error) {
	var events []traceEvent
	if err := json.Unmarshal(trace, &events); err != nil {
		return nil, fmt.Errorf("read ONNX Runtime profile: %w", err)
	}
	var runs []traceEvent
	for _, e := range events {
		if e.Cat == "Session" && e.Name == "model_run" {
			runs = append(runs, e)
		}
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].TS < runs[j].TS })
	if len(runs) <= warmup {
		return nil, fmt.Errorf("read ONNX Runtime profile: %d runs recorded, want more than %d warm-up runs", len(runs), warmup)
	}
	// runOf returns the index of the run an event falls in, or -1.
	runOf := func(ts int64) int {
		i := sort.Search(len(runs), func(i int) bool { return runs[i].TS+runs[i].Dur >= ts })
		if i < len(runs) && runs[i].TS <= ts {
			return i
		}
		return -1
	}

	ids := nodeIDs(m)
	type row struct {
		NodeTiming
		perRun map[int]time.Duration
	}
	rows := map[string]*row{} // by ORT operator name
	var order []string
	for _, e := range events {
		name, ok := strings.CutSuffix(e.Name, kernelSuffix)
		if e.Cat != "Node" || !ok {
			continue
		}
		r := runOf(e.TS)
		if r < warmup {
			continue
		}
		key := name
		if name == "" {
			key = "#" + e.Args.NodeIndex
		}
		rw, ok := rows[key]
		if !ok {
			rw = &row{NodeTiming: NodeTiming{ID: -1, Name: name, OpType: e.Args.OpName, Provider: e.Args.Provider}, perRun: map[int]time.Duration{}}
			rw.ID = ids.lookup(name, e.Args.NodeIndex)
			if rw.ID >= 0 && name == "" {
				rw.Name = m.Nodes()[rw.ID].Name
			}
			rw.Outputs = outputShapes(e.Args.OutputShape)
			rw.OutputBytes, _ = strconv.ParseInt(e.Args.OutputSize, 10, 64)
			rows[key] = rw
			order = append(order, key)
		}
		rw.perRun[r] += time.Duration(e.Dur) * time.Microsecond
	}

	byID := make([]*row, len(m.Nodes()))
	var unmapped []*row
	for _, key := range order {
		rw := rows[key]
		ds := make([]time.Duration, 0, len(runs)-warmup)
		for r := warmup; r < len(runs); r++ {
			ds = append(ds, rw.perRun[r]) // 0 when it did not run that time
		}
		rw.Time = summarise(ds)
		switch {
		case rw.ID < 0:
			unmapped = append(unmapped, rw)
		case byID[rw.ID] == nil:
			byID[rw.ID] = rw
		default:
			// Two operators under one node: add them up.
			byID[rw.ID].Time = addTimings(byID[rw.ID].Time, rw.Time)
		}
	}
	out := make([]NodeTiming, 0, len(byID)+len(unmapped))
	for id, rw := range byID {
		if rw == nil {
			n := m.Nodes()[id]
			out = append(out, NodeTiming{ID: id, Name: n.Name, OpType: n.OpType})
			continue
		}
		out = append(out, rw.NodeTiming)
	}
	for _, rw := range unmapped {
		out = append(out, rw.NodeTiming)
	}
	return out, nil
}

// idIndex maps ONNX Runtime's operator names (and, for unnamed nodes, file
// positions) to tracr node IDs.
type idIndex struct {
	m       *graph.Model
	byName  map[string]int
	byIndex map[string]int // file index of an unnamed node -> ID
}

func nodeIDs(m *graph.Model) idIndex {
	x := idIndex{m: m, byName: map[string]int{}, byIndex: map[string]int{}}
	for _, n := range m.Nodes() {
		x.byName[n.Name] = n.ID
	}
	// graph names an unnamed node "<op>_<file index>"; ONNX Runtime leaves
	// it unnamed and reports its index in the file's node list.
	for i, pn := range m.Proto().GetGraph().GetNode() {
		if pn.GetName() != "" {
			continue
		}
		if id, ok := x.byName[fmt.Sprintf("%s_%d", pn.GetOpType(), i)]; ok {
			x.byIndex[strconv.Itoa(i)] = id
		}
	}
	return x
}

func (x idIndex) lookup(name, nodeIndex string) int {
	if name == "" {
		if id, ok := x.byIndex[nodeIndex]; ok {
			return id
		}
		return -1
	}
	if id, ok := x.byName[name]; ok {
		return id
	}
	// Operators the optimiser made from several nodes: the NCHWc layout
	// pass names a fused Conv after the tensor it produces ("<tensor>_nchwc"),
	// and fusions such as MatMul+Add after the first node
	// ("<node>/MatMulAddFusion"). They are attributed to the node that
	// produces that tensor, or to that node.
	if t, ok := strings.CutSuffix(name, "_nchwc"); ok {
		if id := x.m.Producer(t); id >= 0 {
			return id
		}
	}
	if n, _, ok := strings.Cut(name, "/"); ok {
		if id, ok := x.byName[n]; ok {
			return id
		}
	}
	return -1
}

// outputShapes decodes ONNX Runtime's output_type_shape: a list of
// one-entry objects {"<element type>": [dims]}.
func outputShapes(raw []json.RawMessage) []TensorShape {
	var out []TensorShape
	for _, r := range raw {
		var m map[string][]int64
		if json.Unmarshal(r, &m) != nil {
			continue
		}
		for dt, shape := range m {
			out = append(out, TensorShape{DType: ortTypeName(dt), Shape: shape})
		}
	}
	return out
}

// ortTypeName maps ONNX Runtime's element type names ("float", "int64") to
// tensor.DType names where they differ.
func ortTypeName(s string) string {
	switch s {
	case "float":
		return tensor.Float32.String()
	case "double":
		return tensor.Float64.String()
	case "MLFloat16":
		return tensor.Float16.String()
	case "BFloat16":
		return tensor.BFloat16.String()
	}
	return s
}

// summarise returns the median and 90th percentile (nearest rank) of ds.
func summarise(ds []time.Duration) Timing {
	if len(ds) == 0 {
		return Timing{}
	}
	return Timing{Median: quantile.MedianDuration(ds), P90: quantile.Duration(ds, 0.9), Runs: len(ds)}
}

// addTimings sums two timings of consecutive parts (the p90 of the sum is
// estimated by the sum of the p90s).
func addTimings(a, b Timing) Timing {
	runs := a.Runs
	if runs == 0 || (b.Runs > 0 && b.Runs < runs) {
		runs = b.Runs
	}
	return Timing{Median: a.Median + b.Median, P90: a.P90 + b.P90, Runs: runs}
}
