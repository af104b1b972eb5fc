package graph

import (
	"fmt"
	"sort"
)

// Cut is a prefix cut of the canonical order: the first ID compute nodes run
// on the edge, the rest on the server. Cut 0 sends the raw inputs
// (server-only); cut len(Nodes()) runs the whole model on the edge and sends
// its outputs (edge-only).
type Cut struct {
	ID int
	// Crossing lists the tensors the server needs from the edge: live
	// tensors only, never constants, in canonical order (graph inputs first,
	// then by producing node).
	Crossing []TensorInfo
	// Bytes is the sum of the crossing tensors' sizes, -1 if any is unknown.
	Bytes int64
}

// Names returns the crossing tensors' names.
func (c Cut) Names() []string {
	out := make([]string, len(c.Crossing))
	for i, t := range c.Crossing {
		out[i] = t.Name
	}
	return out
}

// Cuts numbers every prefix cut of the model's canonical order, from 0
// (server-only) to len(Nodes()) (edge-only). Prefixes that send the same
// tensors are listed once, under the smallest ID. (With dead nodes dropped
// at load, every prefix differs; the rule keeps IDs stable if that changes.)
func Cuts(m *Model) []Cut {
	n := len(m.nodes)
	// A tensor produced at p (-1 for graph inputs) crosses cut k for
	// p < k <= last, where last is its last consumer, or n for a graph output.
	type span struct {
		name      string
		p, last   int
		outputPos int
	}
	var spans []span
	add := func(name string, p, pos int) {
		last := -1
		if cs := m.cons[name]; len(cs) > 0 {
			last = cs[len(cs)-1]
		}
		for _, o := range m.outs {
			if o == name {
				last = n
			}
		}
		if last > p {
			spans = append(spans, span{name, p, last, pos})
		}
	}
	for i, in := range m.inputs {
		add(in, -1, i)
	}
	for _, node := range m.nodes {
		for j, o := range node.Outputs {
			add(o, node.ID, j)
		}
	}
	sort.SliceStable(spans, func(i, j int) bool {
		if spans[i].p != spans[j].p {
			return spans[i].p < spans[j].p
		}
		return spans[i].outputPos < spans[j].outputPos
	})
	var cuts []Cut
	prev := ""
	for k := 0; k <= n; k++ {
		c := Cut{ID: k}
		key := ""
		for _, s := range spans {
			if s.p < k && k <= s.last {
				ti, _ := m.Tensor(s.name)
				ti.Name = s.name
				c.Crossing = append(c.Crossing, ti)
				key += s.name + "\x00"
			}
		}
		if k > 0 && key == prev {
			continue
		}
		prev = key
		c.Bytes = sumBytes(c.Crossing)
		cuts = append(cuts, c)
	}
	return cuts
}

func sumBytes(ts []TensorInfo) int64 {
	var sum int64
	for _, t := range ts {
		if t.Bytes < 0 {
			return -1
		}
		sum += t.Bytes
	}
	return sum
}

// FindCut returns the cut with the given ID, or an error that says which IDs
// exist.
func FindCut(cuts []Cut, id int) (Cut, error) {
	for _, c := range cuts {
		if c.ID == id {
			return c, nil
		}
	}
	if len(cuts) == 0 {
		return Cut{}, fmt.Errorf("cut %d does not exist: the model has no cuts", id)
	}
	return Cut{}, fmt.Errorf("cut %d does not exist: valid cuts are %d..%d (see tracr cuts)", id, cuts[0].ID, cuts[len(cuts)-1].ID)
}

// Prefix returns the node set of prefix cut k: IDs 0..k-1.
func Prefix(k int) []int {
	ids := make([]int, k)
	for i := range ids {
		ids[i] = i
	}
	return ids
}
