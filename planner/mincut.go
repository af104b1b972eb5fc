package planner

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"gonum.org/v1/gonum/graph"
	"gonum.org/v1/gonum/graph/simple"

	"tracr/bitrate"
)

// DAG is a model's compute graph with per-node costs, as MinCut needs it.
// Nodes are numbered along the model's canonical order (graph.Node.ID).
type DAG struct {
	Nodes   []DAGNode
	Tensors []DAGTensor
}

// DAGNode is one compute node's time on each side.
type DAGNode struct {
	Edge, Server time.Duration
}

// DAGTensor is a tensor that may cross: produced by a node (or, with
// Producer -1, a graph input, which the edge holds), read by Consumers, and
// sent when its producer is on the edge and a consumer is on the server, or
// when it is a graph output produced on the edge.
type DAGTensor struct {
	Name      string
	Producer  int
	Consumers []int
	Output    bool
	Bytes     int64
}

// Cost is the min-cut objective of an edge node set: Evaluate's latency of
// the set as a cut (edge compute of the set, server compute of the rest,
// and each crossing tensor's bytes over the uplink, paid once however many
// server nodes read it), without the round trip and the result's way back,
// which every set pays alike.
func (d DAG) Cost(edge []bool, up float64) (time.Duration, error) {
	var c Candidate
	for i, n := range d.Nodes {
		if edge[i] {
			c.Edge += n.Edge
		} else {
			c.Server += n.Server
		}
	}
	var e Encoding
	crossed := false
	for _, t := range d.Tensors {
		if d.crosses(t, edge) {
			e.Bytes += t.Bytes
			crossed = true
		}
	}
	if crossed && up <= 0 {
		return 0, errors.New("zero uplink bandwidth: nothing can cross")
	}
	p := Evaluate(c, e, Link{Up: up}, Latency)
	if !p.Feasible {
		return 0, fmt.Errorf("the uplink cannot carry %d bytes", e.Bytes)
	}
	return p.Score, nil
}

func (d DAG) crosses(t DAGTensor, edge []bool) bool {
	if t.Producer >= 0 && !edge[t.Producer] {
		return false
	}
	if t.Output {
		return true
	}
	for _, c := range t.Consumers {
		if !edge[c] {
			return true
		}
	}
	return false
}

// Closed reports whether an edge node set is closed under predecessors.
func (d DAG) Closed(edge []bool) bool {
	for _, t := range d.Tensors {
		if t.Producer < 0 || edge[t.Producer] {
			continue
		}
		for _, c := range t.Consumers {
			if edge[c] {
				return false
			}
		}
	}
	return true
}

func (d DAG) validate() error {
	n := len(d.Nodes)
	for _, t := range d.Tensors {
		if t.Producer < -1 || t.Producer >= n {
			return fmt.Errorf("tensor %q: producer %d out of range", t.Name, t.Producer)
		}
		if t.Bytes < 0 {
			return fmt.Errorf("tensor %q: negative size", t.Name)
		}
		for _, c := range t.Consumers {
			if c < 0 || c >= n {
				return fmt.Errorf("tensor %q: consumer %d out of range", t.Name, c)
			}
			if c <= t.Producer {
				return fmt.Errorf("tensor %q: consumer %d does not come after producer %d; nodes must be in topological order", t.Name, c, t.Producer)
			}
		}
	}
	for i, nd := range d.Nodes {
		if nd.Edge < 0 || nd.Server < 0 {
			return fmt.Errorf("node %d: negative time", i)
		}
	}
	return nil
}

// MinCut finds the predecessor-closed node set whose Cost is least: the
// best partition over all closed sets, not only prefixes of one order. It
// solves the project-selection min-cut as a max-flow on a gonum graph:
// source side = edge. It returns the edge nodes (ascending) and their cost.
//
// The network: source->v with capacity server(v) and v->sink with edge(v),
// so exactly one of the two is cut; v->u unbounded for each dependency u->v,
// so a node on the edge drags its producers along; and for each tensor an
// auxiliary node a with producer->a of capacity bytes/up and a->consumer
// unbounded (a->sink for a graph output), so the tensor is paid once when
// any reader is on the server.
func MinCut(d DAG, up float64) ([]int, time.Duration, error) {
	if err := d.validate(); err != nil {
		return nil, 0, fmt.Errorf("min-cut: %w", err)
	}
	if up <= 0 {
		return nil, 0, errors.New("min-cut: zero uplink bandwidth: nothing can cross, only edge-only or server-only apply")
	}
	n := len(d.Nodes)
	source, sink := int64(0), int64(1)
	node := func(i int) int64 { return int64(2 + i) }
	aux := func(j int) int64 { return int64(2 + n + j) }

	// Unbounded capacity: more than every finite capacity together.
	inf := 1.0
	for _, nd := range d.Nodes {
		inf += nd.Edge.Seconds() + nd.Server.Seconds()
	}
	for _, t := range d.Tensors {
		inf += bitrate.Seconds(t.Bytes, up)
	}
	inf *= 2

	g := simple.NewWeightedDirectedGraph(0, 0)
	add := func(from, to int64, c float64) {
		if c <= 0 || from == to {
			return
		}
		if e := g.WeightedEdge(from, to); e != nil {
			c += e.Weight()
		}
		g.SetWeightedEdge(g.NewWeightedEdge(simple.Node(from), simple.Node(to), c))
	}
	for _, id := range []int64{source, sink} {
		g.AddNode(simple.Node(id))
	}
	for i, nd := range d.Nodes {
		g.AddNode(simple.Node(node(i)))
		add(source, node(i), nd.Server.Seconds())
		add(node(i), sink, nd.Edge.Seconds())
	}
	for j, t := range d.Tensors {
		g.AddNode(simple.Node(aux(j)))
		from := source // a graph input sits on the edge
		if t.Producer >= 0 {
			from = node(t.Producer)
		}
		add(from, aux(j), bitrate.Seconds(t.Bytes, up))
		for _, c := range t.Consumers {
			add(aux(j), node(c), inf)
			if t.Producer >= 0 {
				add(node(c), node(t.Producer), inf)
			}
		}
		if t.Output {
			add(aux(j), sink, inf)
		}
	}
	reach := maxFlow(g, source, sink)
	var edge []int
	for i := range d.Nodes {
		if reach[node(i)] {
			edge = append(edge, i)
		}
	}
	sort.Ints(edge)
	on := make([]bool, n)
	for _, i := range edge {
		on[i] = true
	}
	cost, err := d.Cost(on, up)
	return edge, cost, err
}

// maxFlow runs Edmonds-Karp (shortest augmenting paths) on g, whose edge
// weights are capacities, and returns the nodes still reachable from the
// source in the residual graph: the source side of a minimum cut.
func maxFlow(g *simple.WeightedDirectedGraph, source, sink int64) map[int64]bool {
	flow := map[[2]int64]float64{}
	residual := func(u, v int64) float64 {
		c := 0.0
		if e := g.WeightedEdge(u, v); e != nil {
			c = e.Weight()
		}
		return c - flow[[2]int64{u, v}]
	}
	// A path carrying less than this is numerical noise.
	const eps = 1e-15
	for {
		prev := map[int64]int64{source: source}
		queue := []int64{source}
		for len(queue) > 0 && !has(prev, sink) {
			u := queue[0]
			queue = queue[1:]
			for _, v := range neighbours(g, u) {
				if _, seen := prev[v]; !seen && residual(u, v) > eps {
					prev[v] = u
					queue = append(queue, v)
				}
			}
		}
		if !has(prev, sink) {
			reach := map[int64]bool{}
			for v := range prev {
				reach[v] = true
			}
			return reach
		}
		push := math.Inf(1)
		for v := sink; v != source; v = prev[v] {
			push = math.Min(push, residual(prev[v], v))
		}
		for v := sink; v != source; v = prev[v] {
			u := prev[v]
			flow[[2]int64{u, v}] += push
			flow[[2]int64{v, u}] -= push
		}
	}
}

func has(m map[int64]int64, k int64) bool {
	_, ok := m[k]
	return ok
}

// neighbours lists u's neighbours in the residual graph: successors, and
// predecessors (whose edges can carry flow back), in ID order so that runs
// are deterministic.
func neighbours(g *simple.WeightedDirectedGraph, u int64) []int64 {
	var out []int64
	for _, it := range []graph.Nodes{g.From(u), g.To(u)} {
		for it.Next() {
			out = append(out, it.Node().ID())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
