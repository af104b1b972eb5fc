package experiments

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"tracr/planner"
	"tracr/runtime"
	"tracr/transport"
)

// handPlanned is a planned model without a model: server-only (raw and
// JPEG), three cuts and edge-only with known costs, priced on link.
func handPlanned(link planner.Link, jpeg bool) *runtime.Planned {
	ms := time.Millisecond
	enc := func(codec string, n int64) planner.Encoding { return planner.Encoding{Codec: codec, Bytes: n} }
	cands := []planner.Candidate{
		{Kind: planner.KindServerRaw, Cut: 0, Server: 10 * ms, Encodings: []planner.Encoding{enc("raw", 600000), enc("raw+zstd", 500000)}},
		{Kind: planner.KindCut, Cut: 3, Edge: 2 * ms, Server: 8 * ms, Encodings: []planner.Encoding{enc("raw", 300000), enc("raw+zstd", 200000)}},
		{Kind: planner.KindCut, Cut: 5, Edge: 5 * ms, Server: 5 * ms, Encodings: []planner.Encoding{enc("raw", 40000), enc("raw+zstd", 30000)}},
		{Kind: planner.KindCut, Cut: 7, Edge: 8 * ms, Server: 2 * ms, Encodings: []planner.Encoding{enc("raw", 16000), enc("raw+zstd", 15000)}},
		{Kind: planner.KindEdgeOnly, Cut: 10, Edge: 40 * ms},
	}
	if jpeg {
		cands = append(cands, planner.Candidate{Kind: planner.KindServerJPEG, Cut: 0, Server: 10 * ms,
			Encodings: []planner.Encoding{{Codec: "jpeg", Bytes: 20000, Lossy: true}}})
	}
	p := &runtime.Planned{Problem: planner.Problem{Candidates: cands}}
	p.Reprice(link)
	return p
}

func mustCodec(t *testing.T, s string) *transport.CodecSpec {
	t.Helper()
	c, err := transport.ParseCodecSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

func TestRestrict(t *testing.T) {
	p := handPlanned(planner.Link{Up: 10e6, Down: 10e6}, true)
	raw := restrict(p.Problem, CodecChoice{Name: "raw", Spec: mustCodec(t, "raw")}, true)
	if raw.AllowLossy || len(raw.Candidates) != 5 {
		t.Errorf("raw: lossy %v, %d candidates (want the JPEG one gone)", raw.AllowLossy, len(raw.Candidates))
	}
	for _, c := range raw.Candidates {
		if c.Kind == planner.KindServerJPEG || c.Kind != planner.KindEdgeOnly && (len(c.Encodings) != 1 || c.Encodings[0].Codec != "raw") {
			t.Errorf("raw: candidate %s keeps %+v", c.Name(), c.Encodings)
		}
	}
	if fp16 := restrict(p.Problem, CodecChoice{Name: "fp16", Spec: mustCodec(t, "fp16")}, false); !fp16.AllowLossy {
		t.Error("a lossy codec the grid names must be allowed")
	}
	if auto := restrict(p.Problem, CodecChoice{Name: AutoCodec}, false); auto.AllowLossy || len(auto.Candidates) != 6 {
		t.Errorf("auto: lossy %v, %d candidates", auto.AllowLossy, len(auto.Candidates))
	}
	if n := len(p.Problem.Candidates[1].Encodings); n != 2 {
		t.Errorf("restrict changed the original problem: %d encodings", n)
	}
}

func itemText(items []item) string {
	var parts []string
	for _, it := range items {
		s := fmt.Sprintf("%s:%s:%s", it.strategy, it.plan.Candidate.Name(), it.plan.Encoding.Codec)
		if it.skip != "" {
			s += ":skip"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// TestItems checks what a cell measures on 4g with a 0.2 s budget, and that
// a resumed cell keeps the plans its rows name.
func TestItems(t *testing.T) {
	l4g, err := ParseLinkSpec("4g")
	if err != nil {
		t.Fatal(err)
	}
	sp := &Spec{Strategies: []Strategy{EdgeOnly, ServerRaw, ServerJPEG, Planned, Oracle}, Repeats: 2, MaxRequestSeconds: 0.2}
	c := cell{model: ModelSpec{Name: "m", Cuts: CutSet{Mode: "planned"}}, img: 32, link: l4g, codec: CodecChoice{Name: AutoCodec}}
	// At 5.85 Mbit/s and 40 ms: edge-only 40 ms, cut 7 70.5, cut 5 91,
	// cut 3 323 (over the budget), server-only raw 734 (over), JPEG 77.
	tests := []struct {
		name string
		jpeg bool
		rows []Row
		want string
	}{
		{"fresh", true, nil, "edge-only:edge-only: server-raw:server-only (raw):raw+zstd:skip server-jpeg:server-only (jpeg):jpeg " +
			"planned:edge-only: cut:cut 7:raw+zstd cut:cut 5:raw+zstd cut:cut 3:raw+zstd:skip"},
		{"no jpeg", false, nil, "edge-only:edge-only: server-raw:server-only (raw):raw+zstd:skip server-jpeg:server-only (jpeg):jpeg:skip " +
			"planned:edge-only: cut:cut 7:raw+zstd cut:cut 5:raw+zstd cut:cut 3:raw+zstd:skip"},
		{"resumed", true, []Row{
			{Strategy: Planned, Plan: "cut 5", Encoding: "raw"},
			{Strategy: CutStrategy, Plan: "cut 3", Encoding: "raw"},
		}, "edge-only:edge-only: server-raw:server-only (raw):raw+zstd:skip server-jpeg:server-only (jpeg):jpeg " +
			"planned:cut 5:raw cut:cut 3:raw:skip cut:cut 7:raw+zstd cut:cut 5:raw+zstd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := handPlanned(l4g.Planner(), tt.jpeg)
			s := &sweep{spec: sp, byCell: map[cellKey][]Row{c.key(): tt.rows}}
			got := itemText(s.items(priced(orig, c.codec, false, l4g.Planner()), orig, c))
			if got != tt.want {
				t.Errorf("items\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// manyCuts is a planned model with 25 split cuts, the cheapest on any link
// being the late ones (little to send), and edge-only last.
func manyCuts(link planner.Link) *runtime.Planned {
	ms := time.Millisecond
	cands := []planner.Candidate{{Kind: planner.KindEdgeOnly, Cut: 26, Edge: 900 * ms},
		{Kind: planner.KindServerRaw, Server: 10 * ms, Encodings: []planner.Encoding{{Codec: "raw", Bytes: 1 << 20}}}}
	for i := 1; i <= 25; i++ {
		cands = append(cands, planner.Candidate{Kind: planner.KindCut, Cut: i, Edge: time.Duration(i) * ms, Server: time.Duration(26-i) * ms,
			Encodings: []planner.Encoding{{Codec: "raw", Bytes: int64(1000 * (26 - i))}}})
	}
	p := &runtime.Planned{Problem: planner.Problem{Candidates: cands}}
	p.Reprice(link)
	return p
}

// TestSampledCuts: cuts = "sampled" measures the planner's top three cuts
// and every tenth cut, each once.
func TestSampledCuts(t *testing.T) {
	link := planner.Link{Up: 1e6, Down: 1e6, RTT: time.Millisecond}
	p := manyCuts(link)
	sp := &Spec{Strategies: []Strategy{Planned}, Repeats: 1, MaxRequestSeconds: 10}
	s := &sweep{spec: sp, byCell: map[cellKey][]Row{}}
	var names []string
	for _, pl := range s.cutPlans(p, p, ModelSpec{Name: "m", Cuts: CutSet{Mode: "sampled"}}, nil) {
		names = append(names, pl.Candidate.Name())
	}
	top := []string{p.Ranked[0].Candidate.Name(), p.Ranked[1].Candidate.Name(), p.Ranked[2].Candidate.Name()}
	want := append(top, "cut 1", "cut 11", "cut 21")
	if strings.Join(names, ", ") != strings.Join(want, ", ") {
		t.Errorf("sampled cuts %s, want %s", strings.Join(names, ", "), strings.Join(want, ", "))
	}
}
