package planner

import (
	"testing"
	"time"
)

func TestTied(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	cut := func(id int, edge, server, spread float64) Candidate {
		return Candidate{Kind: KindCut, Cut: id, Edge: ms(edge), Server: ms(server), EdgeSpread: ms(spread / 2), ServerSpread: ms(spread / 2),
			Encodings: []Encoding{{Codec: "raw", Bytes: 1000}}}
	}
	link := Link{Up: 8e6, Down: 8e6} // 1 ms per 1000 bytes
	for _, tt := range []struct {
		name string
		cs   []Candidate
		want []int // cut IDs of the tied plans, best first
	}{
		{"one clear best", []Candidate{cut(1, 10, 10, 1), cut(2, 20, 10, 1)}, []int{1}},
		{"within the spreads", []Candidate{cut(1, 10, 10, 2), cut(2, 12, 10, 2), cut(3, 15, 10, 2)}, []int{1, 2}},
		{"exactly at the spreads", []Candidate{cut(1, 10, 10, 2), cut(2, 14, 10, 2)}, []int{1, 2}},
		{"no spreads, equal scores", []Candidate{cut(1, 10, 10, 0), cut(2, 10, 10, 0)}, []int{1, 2}},
		{"no spreads, 1 ns apart", []Candidate{cut(1, 10, 10, 0), {Kind: KindCut, Cut: 2, Edge: ms(10) + 1, Server: ms(10), Encodings: []Encoding{{Codec: "raw", Bytes: 1000}}}}, []int{1}},
	} {
		got := Tied(Rank(Problem{Candidates: tt.cs, Link: link}))
		if len(got) != len(tt.want) {
			t.Errorf("%s: %d tied, want %d", tt.name, len(got), len(tt.want))
			continue
		}
		for i, p := range got {
			if p.Candidate.Cut != tt.want[i] {
				t.Errorf("%s: tied[%d] = %s, want cut %d", tt.name, i, p.Candidate.Name(), tt.want[i])
			}
		}
	}
	// Edge-only counts only the edge's spread, server-only the server's.
	eo := Plan{Candidate: Candidate{Kind: KindEdgeOnly, EdgeSpread: 3, ServerSpread: 5}}
	so := Plan{Candidate: Candidate{Kind: KindServerRaw, EdgeSpread: 3, ServerSpread: 5}}
	if eo.Spread() != 3 || so.Spread() != 5 {
		t.Errorf("spreads %v %v, want 3ns 5ns", eo.Spread(), so.Spread())
	}
	if Tied(nil) != nil || Tied([]Plan{{Feasible: false}}) != nil {
		t.Error("no feasible plan: want no tie list")
	}
}
