package planner

import (
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkMinCut1000 solves the min-cut of a random 1000-node DAG with
// skip connections (the goal is well under a second).
func BenchmarkMinCut1000(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	d := DAG{Nodes: make([]DAGNode, 1000)}
	for i := range d.Nodes {
		d.Nodes[i] = DAGNode{Edge: time.Duration(r.IntN(2000)+10) * time.Microsecond, Server: time.Duration(r.IntN(400)+5) * time.Microsecond}
	}
	d.Tensors = append(d.Tensors, DAGTensor{Producer: -1, Consumers: []int{0}, Bytes: 602112})
	for i := range d.Nodes {
		t := DAGTensor{Producer: i, Bytes: int64(r.IntN(1 << 20))}
		if i+1 < len(d.Nodes) {
			t.Consumers = append(t.Consumers, i+1)
		}
		if i+5 < len(d.Nodes) && r.IntN(4) == 0 {
			t.Consumers = append(t.Consumers, i+1+r.IntN(4)+1)
		}
		t.Output = i == len(d.Nodes)-1
		d.Tensors = append(d.Tensors, t)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := MinCut(d, 20e6); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRank ranks 300 candidates, a large model's worth of cuts.
func BenchmarkRank(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 8))
	var cs []Candidate
	for k := 0; k < 300; k++ {
		cs = append(cs, Candidate{Kind: KindCut, Cut: k, Edge: time.Duration(r.IntN(80)) * time.Millisecond,
			Server: time.Duration(r.IntN(20)) * time.Millisecond, Encodings: []Encoding{{Codec: "raw", Bytes: int64(r.IntN(1 << 22))},
				{Codec: "raw+zstd", Bytes: int64(r.IntN(1 << 21)), Encode: time.Millisecond}}})
	}
	p := Problem{Candidates: cs, Link: Link{Up: 5.85e6, Down: 13.76e6, RTT: 40 * time.Millisecond}}
	for b.Loop() {
		Rank(p)
		Breakpoints(p)
	}
}
