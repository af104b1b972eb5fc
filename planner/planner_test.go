package planner

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

const ms = time.Millisecond

// mbit is a bandwidth in bits per second.
func mbit(v float64) float64 { return v * 1e6 }

func lossless(bytes int64) []Encoding { return []Encoding{{Codec: "raw", Bytes: bytes}} }

func TestEvaluateBreakdown(t *testing.T) {
	// 1 MB at 8 Mbit/s is 1 s up; 1000 B at 8 Mbit/s down is 1 ms.
	c := Candidate{Kind: KindCut, Cut: 3, Edge: 10 * ms, Server: 5 * ms, ResultBytes: 1000,
		Encodings: []Encoding{{Codec: "raw", Bytes: 1_000_000, Encode: 2 * ms, Decode: 3 * ms}}}
	l := Link{Up: mbit(8), Down: mbit(8), RTT: 40 * ms}
	got := Evaluate(c, c.Encodings[0], l, Latency)
	want := Breakdown{Edge: 10 * ms, Encode: 2 * ms, Up: time.Second, Server: 5 * ms, Decode: 3 * ms, Down: ms, RTT: 40 * ms,
		Total: 10*ms + 2*ms + time.Second + 5*ms + 3*ms + ms + 40*ms}
	if got.Breakdown != want || got.Score != want.Total || !got.Feasible {
		t.Errorf("breakdown = %+v\nwant        %+v", got.Breakdown, want)
	}
	thr := Evaluate(c, c.Encodings[0], l, Throughput)
	if thr.Score != time.Second+ms {
		t.Errorf("throughput score = %v, want the link stage %v", thr.Score, time.Second+ms)
	}
	edge := Evaluate(Candidate{Kind: KindEdgeOnly, Edge: 30 * ms}, Encoding{}, l, Latency)
	if edge.Breakdown.Total != 30*ms || edge.Breakdown.RTT != 0 {
		t.Errorf("edge-only pays the network: %+v", edge.Breakdown)
	}
}

func candidates() []Candidate {
	return []Candidate{
		{Kind: KindServerRaw, Cut: 0, Server: 10 * ms, ResultBytes: 100, Encodings: lossless(600_000)},
		{Kind: KindServerJPEG, Cut: 0, Edge: 2 * ms, Server: 11 * ms, ResultBytes: 100,
			Encodings: []Encoding{{Codec: "jpeg", Bytes: 40_000, Encode: 2 * ms, Decode: ms, Lossy: true}}},
		{Kind: KindCut, Cut: 5, Edge: 20 * ms, Server: 6 * ms, ResultBytes: 100, Encodings: append(lossless(100_000),
			Encoding{Codec: "int8", Bytes: 25_000, Encode: ms, Decode: ms, Lossy: true}), EdgeMemory: 50},
		{Kind: KindCut, Cut: 9, Edge: 40 * ms, Server: 2 * ms, ResultBytes: 100, Encodings: lossless(10_000), EdgeMemory: 90},
		{Kind: KindEdgeOnly, Cut: 12, Edge: 60 * ms, EdgeMemory: 120},
	}
}

func names(plans []Plan) []string {
	var out []string
	for _, p := range plans {
		out = append(out, p.Candidate.Name()+"/"+p.Encoding.Codec)
	}
	return out
}

func TestRank(t *testing.T) {
	tests := []struct {
		name string
		p    Problem
		want []string
		bad  int // infeasible plans, at the end
	}{
		{"fast link favours the server", Problem{Link: Link{Up: mbit(1000), Down: mbit(1000), RTT: ms}},
			// raw 600kB@1Gbit = 4.8ms: 10+4.8+1 = 15.8; cut5 20+0.8+6+1 = 27.8; cut9 40+.08+2+1=43.1; edge 60; jpeg lossy -> infeasible
			[]string{"server-only (raw)/raw", "cut 5/raw", "cut 9/raw", "edge-only/", "server-only (jpeg)/"}, 1},
		{"slow link favours the edge", Problem{Link: Link{Up: mbit(1), Down: mbit(1), RTT: 50 * ms}},
			[]string{"edge-only/", "cut 9/raw", "cut 5/raw", "server-only (raw)/raw", "server-only (jpeg)/"}, 1},
		{"lossy allowed picks int8 and jpeg", Problem{Link: Link{Up: mbit(10), Down: mbit(10), RTT: 10 * ms}, AllowLossy: true},
			// jpeg: 2+2+32+11+1+0.08+10 = 58.1; cut5 int8: 20+1+20+6+1+.08+10=58.08; cut9: 40+8+2+.08+10=60.08; edge 60; raw 480+...
			[]string{"cut 5/int8", "server-only (jpeg)/jpeg", "edge-only/", "cut 9/raw", "server-only (raw)/raw"}, 0},
		{"edge memory cap", Problem{Link: Link{Up: mbit(1), Down: mbit(1), RTT: 50 * ms}, MaxEdgeMemory: 100},
			[]string{"cut 9/raw", "cut 5/raw", "server-only (raw)/raw", "server-only (jpeg)/", "edge-only/"}, 2},
		{"byte cap", Problem{Link: Link{Up: mbit(1000), Down: mbit(1000), RTT: ms}, MaxBytes: 200_000},
			[]string{"cut 5/raw", "cut 9/raw", "edge-only/", "server-only (raw)/", "server-only (jpeg)/"}, 2},
		{"zero bandwidth leaves edge-only", Problem{Link: Link{Up: 0, Down: mbit(1), RTT: ms}},
			// infeasible ones in a fixed order: fewer bytes, then lower cut
			[]string{"edge-only/", "server-only (jpeg)/", "cut 9/raw", "cut 5/raw", "server-only (raw)/raw"}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.p.Candidates = candidates()
			got := Rank(tt.p)
			if n := names(got); !slices.Equal(n, tt.want) {
				t.Errorf("order = %v\nwant    %v", n, tt.want)
			}
			bad := 0
			for i, p := range got {
				if !p.Feasible {
					bad++
					if p.Reason == "" {
						t.Errorf("%s infeasible without a reason", p.Candidate.Name())
					}
				} else if bad > 0 {
					t.Errorf("feasible plan %d after an infeasible one", i)
				}
			}
			if bad != tt.bad {
				t.Errorf("%d infeasible plans, want %d", bad, tt.bad)
			}
		})
	}
}

func TestRankTiesAreDeterministic(t *testing.T) {
	same := func(cut int, bytes int64) Candidate {
		return Candidate{Kind: KindCut, Cut: cut, Edge: 5 * ms, Server: 5 * ms, Encodings: lossless(bytes)}
	}
	p := Problem{Link: Link{Up: math.Inf(1), Down: math.Inf(1)}, Candidates: []Candidate{same(7, 10), same(3, 10), same(5, 5)}}
	want := []string{"cut 5/raw", "cut 3/raw", "cut 7/raw"} // equal time: fewer bytes, then lower cut
	for i := 0; i < 5; i++ {
		if got := names(Rank(p)); !slices.Equal(got, want) {
			t.Fatalf("order = %v, want %v", got, want)
		}
		p.Candidates[0], p.Candidates[2] = p.Candidates[2], p.Candidates[0]
	}
}

func TestRankOneCandidate(t *testing.T) {
	got := Rank(Problem{Candidates: []Candidate{{Kind: KindEdgeOnly, Edge: ms}}})
	if len(got) != 1 || !got[0].Feasible || got[0].Breakdown.Total != ms {
		t.Errorf("one-node model: %+v", got)
	}
	if len(Rank(Problem{})) != 0 {
		t.Error("no candidates, but plans")
	}
}

// randomDAG builds a small DAG in topological order with random costs,
// skip connections and an occasional graph output in the middle.
func randomDAG(r *rand.Rand, n int) DAG {
	d := DAG{Nodes: make([]DAGNode, n)}
	for i := range d.Nodes {
		d.Nodes[i] = DAGNode{Edge: time.Duration(r.IntN(20)+1) * ms, Server: time.Duration(r.IntN(8)+1) * ms}
	}
	in := DAGTensor{Name: "input", Producer: -1, Bytes: int64(r.IntN(40_000) + 1000)}
	for j := 0; j < n; j++ {
		if j == 0 || r.IntN(4) == 0 {
			in.Consumers = append(in.Consumers, j)
		}
	}
	d.Tensors = append(d.Tensors, in)
	for i := 0; i < n; i++ {
		t := DAGTensor{Name: "t", Producer: i, Bytes: int64(r.IntN(40_000) + 10)}
		for j := i + 1; j < n; j++ {
			// Not always a chain: parallel branches make closed sets
			// that are not prefixes.
			if (j == i+1 && r.IntN(2) == 0) || r.IntN(4) == 0 {
				t.Consumers = append(t.Consumers, j)
			}
		}
		t.Output = i == n-1 || r.IntN(10) == 0
		d.Tensors = append(d.Tensors, t)
	}
	return d
}

// bruteForce enumerates every closed node set.
func bruteForce(d DAG, up float64) time.Duration {
	n := len(d.Nodes)
	best := time.Duration(math.MaxInt64)
	for mask := 0; mask < 1<<n; mask++ {
		edge := make([]bool, n)
		for i := range edge {
			edge[i] = mask&(1<<i) != 0
		}
		if !d.Closed(edge) {
			continue
		}
		c, err := d.Cost(edge, up)
		if err == nil && c < best {
			best = c
		}
	}
	return best
}

func TestMinCutMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	nonPrefix := 0
	for trial := 0; trial < 300; trial++ {
		n := 1 + r.IntN(11)
		d := randomDAG(r, n)
		up := mbit([]float64{0.5, 5, 50, 500}[r.IntN(4)])
		edge, cost, err := MinCut(d, up)
		if err != nil {
			t.Fatal(err)
		}
		on := make([]bool, n)
		for _, i := range edge {
			on[i] = true
		}
		if !d.Closed(on) {
			t.Fatalf("trial %d: min-cut set %v is not predecessor-closed", trial, edge)
		}
		want := bruteForce(d, up)
		// Costs are sums of float seconds: allow a nanosecond of rounding.
		if diff := cost - want; diff > time.Nanosecond || diff < -time.Nanosecond {
			t.Fatalf("trial %d (n=%d, up=%g): min-cut cost %v, brute force %v", trial, n, up, cost, want)
		}
		if len(edge) > 0 && edge[len(edge)-1] != len(edge)-1 {
			nonPrefix++
		}
	}
	if nonPrefix == 0 {
		t.Error("no trial chose a non-prefix set: the test does not exercise what MinCut adds")
	}
	t.Logf("300 random DAGs: min-cut equals brute force; %d optima were not prefixes", nonPrefix)
}

func TestMinCutDegenerate(t *testing.T) {
	one := DAG{Nodes: []DAGNode{{Edge: 5 * ms, Server: ms}},
		Tensors: []DAGTensor{{Producer: -1, Consumers: []int{0}, Bytes: 1000}, {Producer: 0, Output: true, Bytes: 10}}}
	edge, _, err := MinCut(one, mbit(1000))
	if err != nil || len(edge) != 0 {
		t.Errorf("fast link, one node: edge = %v, %v; want the server", edge, err)
	}
	edge, _, err = MinCut(one, mbit(0.01))
	if err != nil || !slices.Equal(edge, []int{0}) {
		t.Errorf("slow link, one node: edge = %v, %v; want the edge", edge, err)
	}
	if _, _, err := MinCut(one, 0); err == nil {
		t.Error("zero bandwidth accepted")
	}
	bad := DAG{Nodes: []DAGNode{{}, {}}, Tensors: []DAGTensor{{Producer: 1, Consumers: []int{0}}}}
	if _, _, err := MinCut(bad, 1); err == nil {
		t.Error("a DAG out of topological order accepted")
	}
}

func TestMinCutSharedTensorPaidOnce(t *testing.T) {
	// Node 0 makes a big tensor read by nodes 1, 2 and 3, each of which is
	// much cheaper on the server: the best plan sends it once.
	d := DAG{Nodes: []DAGNode{{Edge: ms, Server: 50 * ms}, {Edge: 30 * ms, Server: ms}, {Edge: 30 * ms, Server: ms}, {Edge: 30 * ms, Server: ms}},
		Tensors: []DAGTensor{
			{Producer: -1, Consumers: []int{0}, Bytes: 1_000_000},
			{Producer: 0, Consumers: []int{1, 2, 3}, Bytes: 10_000},
			{Producer: 1, Output: true, Bytes: 10}, {Producer: 2, Output: true, Bytes: 10}, {Producer: 3, Output: true, Bytes: 10},
		}}
	edge, cost, err := MinCut(d, mbit(8))
	if err != nil || !slices.Equal(edge, []int{0}) {
		t.Fatalf("edge = %v, %v", edge, err)
	}
	// 1 ms edge + 3 ms server + 10 kB at 8 Mbit/s (10 ms), once.
	if want := 14 * ms; cost != want {
		t.Errorf("cost = %v, want %v", cost, want)
	}
}

func TestBreakpointsMatchDirectEvaluation(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 50; trial++ {
		var cs []Candidate
		cs = append(cs, Candidate{Kind: KindEdgeOnly, Cut: 20, Edge: time.Duration(r.IntN(100)+1) * ms})
		for k := 0; k < 1+r.IntN(12); k++ {
			cs = append(cs, Candidate{Kind: KindCut, Cut: k, Edge: time.Duration(r.IntN(80)) * ms, Server: time.Duration(r.IntN(20)) * ms,
				ResultBytes: 100, Encodings: lossless(int64(r.IntN(2_000_000) + 1))})
		}
		p := Problem{Candidates: cs, Link: Link{Down: mbit(20), RTT: 20 * ms}}
		ivs := Breakpoints(p)
		if len(ivs) == 0 || ivs[0].From != 0 || !math.IsInf(ivs[len(ivs)-1].To, 1) {
			t.Fatalf("trial %d: intervals do not cover (0, inf): %+v", trial, ivs)
		}
		for i := 1; i < len(ivs); i++ {
			if ivs[i].From != ivs[i-1].To {
				t.Fatalf("trial %d: gap or overlap between intervals %d and %d", trial, i-1, i)
			}
		}
		for _, up := range []float64{1e4, 1e5, 3e5, 1e6, 3e6, 1e7, 5e7, 1e8, 1e9, 1e10} {
			iv, ok := BestAt(ivs, up)
			if !ok {
				t.Fatalf("trial %d: no interval holds %g", trial, up)
			}
			p.Link.Up = up
			direct := Rank(p)[0]
			got := Evaluate(iv.Plan.Candidate, iv.Plan.Encoding, p.Link, Latency)
			if got.Score-direct.Score > time.Microsecond {
				t.Fatalf("trial %d at %g bit/s: envelope picks %s (%v), direct ranking %s (%v)",
					trial, up, iv.Plan.Candidate.Name(), got.Score, direct.Candidate.Name(), direct.Score)
			}
		}
	}
}

func TestBreakpointsEdgeOnlyAtLowBandwidth(t *testing.T) {
	p := Problem{Candidates: candidates(), Link: Link{Down: mbit(10), RTT: 10 * ms}}
	ivs := Breakpoints(p)
	if ivs[0].Plan.Candidate.Kind != KindEdgeOnly {
		t.Errorf("lowest bandwidths: %s, want edge-only", ivs[0].Plan.Candidate.Name())
	}
	if last := ivs[len(ivs)-1].Plan.Candidate; last.Kind != KindServerRaw {
		t.Errorf("highest bandwidths: %s, want server-only (raw)", last.Name())
	}
}
