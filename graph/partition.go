package graph

import (
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"

	"tracr/graph/onnxpb"
)

// Split is a model cut in two: the head runs on the edge and produces the
// crossing tensors, the tail runs on the server from them and produces the
// model's outputs.
type Split struct {
	// Edge holds the IDs of the compute nodes in the head, ascending.
	Edge []int
	// Crossing lists the head's outputs, which are the tail's inputs, in
	// canonical order. A graph output computed on the edge is among them and
	// the tail passes it through.
	Crossing []TensorInfo
	// Head and Tail are serialised ONNX models.
	Head, Tail []byte
}

// Partition cuts the model so that the given compute nodes run on the edge.
// The set must be closed under predecessors (every node's producers are in
// it too); it need not be a prefix of the canonical order. Initialisers go
// to each half that reads them, constant producers are duplicated into each
// half that needs them, and only live tensors cross.
func Partition(m *Model, edge []int) (*Split, error) {
	on := make([]bool, len(m.nodes))
	for _, id := range edge {
		if id < 0 || id >= len(m.nodes) {
			return nil, fmt.Errorf("partition: node %d does not exist (the model has %d compute nodes)", id, len(m.nodes))
		}
		on[id] = true
	}
	for _, n := range m.nodes {
		if !on[n.ID] {
			continue
		}
		for _, in := range n.Inputs {
			if p, ok := m.prod[in]; ok && !on[p] {
				return nil, fmt.Errorf("partition: node set is not predecessor-closed: node %d (%s) reads %q from node %d (%s), which is not on the edge",
					n.ID, n.Name, in, p, m.nodes[p].Name)
			}
		}
	}
	crossing, err := m.crossing(on)
	if err != nil {
		return nil, err
	}
	ids := make([]int, 0, len(edge))
	for id, ok := range on {
		if ok {
			ids = append(ids, id)
		}
	}
	s := &Split{Edge: ids, Crossing: crossing}
	if s.Head, err = m.half(on, true, crossing); err != nil {
		return nil, fmt.Errorf("partition: head: %w", err)
	}
	if s.Tail, err = m.half(on, false, crossing); err != nil {
		return nil, fmt.Errorf("partition: tail: %w", err)
	}
	return s, nil
}

// crossing lists the tensors available on the edge (graph inputs and edge
// node outputs) that a server node reads or that are graph outputs.
func (m *Model) crossing(on []bool) ([]TensorInfo, error) {
	isOut := map[string]bool{}
	for _, o := range m.outs {
		isOut[o] = true
	}
	needed := func(name string) bool {
		if isOut[name] {
			return true
		}
		for _, c := range m.cons[name] {
			if !on[c] {
				return true
			}
		}
		return false
	}
	var names []string
	for _, in := range m.inputs {
		if needed(in) {
			names = append(names, in)
		}
	}
	for _, n := range m.nodes {
		if !on[n.ID] {
			continue
		}
		for _, o := range n.Outputs {
			if needed(o) {
				names = append(names, o)
			}
		}
	}
	out := make([]TensorInfo, 0, len(names))
	for _, name := range names {
		ti, ok := m.Tensor(name)
		if !ok {
			return nil, fmt.Errorf("tensor %q crosses the cut but the model declares no type for it; probe the model first (engine.InferTypes)", name)
		}
		out = append(out, ti)
	}
	return out, nil
}

// half builds the head (edge=true) or the tail as a standalone model.
func (m *Model) half(on []bool, edge bool, crossing []TensorInfo) ([]byte, error) {
	g := m.proto.GetGraph()
	mine := func(n *onnxpb.NodeProto) bool {
		id, ok := m.idOf[n]
		return ok && on[id] == edge
	}
	// Which constant producers this half needs, transitively.
	need := map[string]bool{}
	for _, n := range m.order {
		if mine(n) {
			for _, in := range m.needs[n] {
				need[in] = true
			}
		}
	}
	if !edge {
		// The tail produces every graph output, constant ones included; its
		// inputs come over the wire, never from a constant.
		for _, o := range m.outs {
			need[o] = true
		}
		for _, t := range crossing {
			delete(need, t.Name)
		}
	}
	constUsed := map[*onnxpb.NodeProto]bool{}
	for i := len(m.consts) - 1; i >= 0; i-- {
		c := m.consts[i]
		for _, o := range c.GetOutput() {
			if need[o] {
				constUsed[c] = true
				for _, in := range m.needs[c] {
					need[in] = true
				}
				break
			}
		}
	}

	out := shallowGraph(g)
	produced := map[string]bool{}
	for _, n := range m.order {
		if constUsed[n] || mine(n) {
			out.Node = append(out.Node, n)
			for _, o := range n.GetOutput() {
				produced[o] = true
			}
		}
	}
	for _, t := range g.GetInitializer() {
		if need[t.GetName()] {
			out.Initializer = append(out.Initializer, t)
		}
	}
	for _, t := range g.GetSparseInitializer() {
		if need[t.GetValues().GetName()] {
			out.SparseInitializer = append(out.SparseInitializer, t)
		}
	}

	// Inputs: the head reads the real graph inputs it uses or forwards; the
	// tail reads the crossing tensors. IR < 4 lists initialisers as inputs
	// too, so each half keeps the entries of the initialisers it holds.
	isCrossing := map[string]bool{}
	for _, t := range crossing {
		isCrossing[t.Name] = true
	}
	for _, vi := range g.GetInput() {
		name := vi.GetName()
		switch {
		case m.inits[name]:
			if need[name] {
				out.Input = append(out.Input, vi)
			}
		case edge && (need[name] || isCrossing[name]):
			out.Input = append(out.Input, vi)
		}
	}
	if edge {
		for _, t := range crossing {
			out.Output = append(out.Output, m.typed(t))
		}
	} else {
		for _, t := range crossing {
			out.Input = append(out.Input, m.typed(t))
		}
		out.Output = g.GetOutput()
	}
	inside := func(name string) bool { return produced[name] && !isCrossing[name] }
	for _, vi := range g.GetValueInfo() {
		if inside(vi.GetName()) {
			out.ValueInfo = append(out.ValueInfo, vi)
		}
	}
	for _, qa := range g.GetQuantizationAnnotation() {
		name := qa.GetTensorName()
		if produced[name] || need[name] || isCrossing[name] {
			out.QuantizationAnnotation = append(out.QuantizationAnnotation, qa)
		}
	}
	b, err := proto.Marshal(shallowModel(m.proto, out))
	if err != nil {
		return nil, fmt.Errorf("serialise: %w", err)
	}
	return b, nil
}

// typed returns the declared value_info of a crossing tensor (keeping
// symbolic dimensions), or one built from what a probe measured.
func (m *Model) typed(t TensorInfo) *onnxpb.ValueInfoProto {
	if vi, ok := m.info[t.Name]; ok {
		if _, known := infoFromProto(vi); known {
			return vi
		}
	}
	return valueInfo(t.Name, t.DType, t.Shape, t.DimParams)
}

// EdgeNodes returns, sorted, the IDs of the compute nodes that must run on the
// edge for the given nodes to run there: the set closed under predecessors.
func (m *Model) EdgeNodes(ids []int) ([]int, error) {
	on := map[int]bool{}
	var visit func(id int) error
	visit = func(id int) error {
		if id < 0 || id >= len(m.nodes) {
			return fmt.Errorf("node %d does not exist (the model has %d compute nodes)", id, len(m.nodes))
		}
		if on[id] {
			return nil
		}
		on[id] = true
		for _, in := range m.nodes[id].Inputs {
			if p, ok := m.prod[in]; ok {
				if err := visit(p); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, id := range ids {
		if err := visit(id); err != nil {
			return nil, err
		}
	}
	out := make([]int, 0, len(on))
	for id := range on {
		out = append(out, id)
	}
	sort.Ints(out)
	return out, nil
}
