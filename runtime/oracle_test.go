package runtime

import (
	"strings"
	"testing"
	"time"

	"tracr/planner"
	"tracr/profiler"
)

// TestOracle: the oracle set holds the planner's top three, every n-th
// split cut, and the baselines, feasible ones only, each once, the chosen
// plan first; every <= 1 means every cut.
func TestOracle(t *testing.T) {
	ms := time.Millisecond
	cands := []planner.Candidate{
		{Kind: planner.KindEdgeOnly, Cut: 30, Edge: 300 * ms},
		{Kind: planner.KindServerRaw, Server: 10 * ms, Encodings: []planner.Encoding{{Codec: "raw", Bytes: 1 << 20}}},
		{Kind: planner.KindServerJPEG, Server: 10 * ms, Encodings: []planner.Encoding{{Codec: "jpeg", Bytes: 30000, Lossy: true}}},
	}
	for i := 1; i <= 25; i++ {
		cands = append(cands, planner.Candidate{Kind: planner.KindCut, Cut: i, Edge: time.Duration(10*i) * ms, Server: time.Duration(26-i) * ms,
			Encodings: []planner.Encoding{{Codec: "raw", Bytes: int64(4000 * (26 - i))}}})
	}
	// Cut 11 sends more than the budget admits: infeasible.
	cands[3+10].Encodings[0].Bytes = 1 << 30
	p := &Planned{Problem: planner.Problem{Candidates: cands, AllowLossy: true, MaxBytes: 1 << 28}}
	p.Reprice(planner.Link{Up: 8e6, Down: 8e6, RTT: ms})
	names := func(pls []planner.Plan) string {
		var out []string
		for _, pl := range pls {
			out = append(out, pl.Candidate.Name())
		}
		return strings.Join(out, ", ")
	}
	got := p.Oracle(10)
	top := names(p.Ranked[:3])
	if !strings.HasPrefix(names(got), top) {
		t.Errorf("oracle(10) = %s, want the top three (%s) first", names(got), top)
	}
	seen := map[string]bool{}
	for _, pl := range got {
		if !pl.Feasible || seen[pl.Candidate.Name()] {
			t.Errorf("oracle holds %s (feasible %v, twice %v)", pl.Candidate.Name(), pl.Feasible, seen[pl.Candidate.Name()])
		}
		seen[pl.Candidate.Name()] = true
	}
	for _, want := range []string{"edge-only", "server-only (raw)", "server-only (jpeg)", "cut 1", "cut 21"} {
		if !seen[want] {
			t.Errorf("oracle(10) lacks %s: %s", want, names(got))
		}
	}
	if seen["cut 11"] || seen["cut 5"] {
		t.Errorf("oracle(10) holds an infeasible or unsampled cut: %s", names(got))
	}
	if all := p.Oracle(1); len(all) != len(cands)-1 {
		t.Errorf("oracle(1) has %d plans, want every feasible candidate (%d): %s", len(all), len(cands)-1, names(all))
	}
}

// TestAddSendCost: a limited edge's encodings carry their bytes' sending
// CPU at the edge's rate; an unlimited edge's do not.
func TestAddSendCost(t *testing.T) {
	encs := func() []planner.Encoding {
		return []planner.Encoding{{Codec: "raw", Bytes: 1 << 20}, {Codec: "int8", Bytes: 1 << 18, Encode: time.Millisecond}}
	}
	p := &Planned{EdgeCPU: 0.1, SendCPU: 2e-9} // 2 ns a byte
	got := encs()
	p.addSendCost(got)
	// 1 MiB: 2.1 ms of CPU, 21 ms at a tenth of a core.
	if want := time.Duration(2e-9 * (1 << 20) / 0.1 * 1e9); got[0].Encode != want {
		t.Errorf("raw: encode %v, want %v", got[0].Encode, want)
	}
	if want := time.Millisecond + time.Duration(2e-9*(1<<18)/0.1*1e9); got[1].Encode != want {
		t.Errorf("int8: encode %v, want %v", got[1].Encode, want)
	}
	free := encs()
	(&Planned{SendCPU: 2e-9}).addSendCost(free)
	if free[0].Encode != 0 || free[1].Encode != time.Millisecond {
		t.Errorf("unlimited edge: encodes %v and %v, want unchanged", free[0].Encode, free[1].Encode)
	}
}

// TestDecodeOnServer: where the edge is limited, a decode timed in the
// limited process is priced at the server's speed, the ratio of the two
// whole-model profiles; an unlimited edge's time stands, and so does a
// server no faster than the edge.
func TestDecodeOnServer(t *testing.T) {
	ms := time.Millisecond
	prof := func(whole time.Duration) *profiler.Profile {
		return &profiler.Profile{Whole: profiler.Timing{Median: whole}}
	}
	for _, c := range []struct {
		name         string
		edgeCPU      float64
		edge, server time.Duration
		want         time.Duration
	}{
		{"limited edge, server 10x faster", 0.1, 130 * ms, 13 * ms, 800 * time.Microsecond},
		{"unlimited edge", 0, 130 * ms, 13 * ms, 8 * ms},
		{"limited edge, server slower", 0.1, 10 * ms, 20 * ms, 8 * ms},
	} {
		encs := []planner.Encoding{{Codec: "int8", Decode: 8 * ms}, {Codec: "raw"}}
		p := &Planned{EdgeCPU: c.edgeCPU, EdgeProfile: prof(c.edge), ServerProfile: prof(c.server)}
		p.decodeOnServer(encs)
		if encs[0].Decode != c.want || encs[1].Decode != 0 {
			t.Errorf("%s: decodes %v and %v, want %v and 0", c.name, encs[0].Decode, encs[1].Decode, c.want)
		}
	}
}
