package planner

import (
	"testing"
	"time"
)

// obs is a transfer observation on plan p at bw bits/s.
func obs(p Plan, bw float64) Observation {
	b := p.Encoding.Bytes
	return Observation{Cut: p.Candidate.Cut, Kind: p.Candidate.Kind, UpBytes: b,
		Up: time.Duration(float64(b) * 8 / bw * 1e9), Edge: p.Candidate.Edge, Server: p.Candidate.Server}
}

func newReplanner(t *testing.T, up float64) *Replanner {
	t.Helper()
	r, err := NewReplanner(Problem{Candidates: candidates(), Link: Link{Up: up, Down: mbit(50), RTT: 20 * ms}}, ReplanConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestReplannerSteadyLinkKeepsPlan(t *testing.T) {
	r := newReplanner(t, mbit(50))
	start := r.Current()
	for i := 0; i < 50; i++ {
		// ±20% noise around the planned bandwidth.
		bw := mbit(50) * (0.8 + 0.4*float64(i%5)/4)
		if d := r.Observe(obs(r.Current(), bw)); d.Switch {
			t.Fatalf("request %d: switched to %s on noise (%s)", i, d.Plan.Candidate.Name(), d.Reason)
		}
	}
	if !same(r.Current(), start) {
		t.Errorf("plan drifted from %s to %s", start.Candidate.Name(), r.Current().Candidate.Name())
	}
}

func TestReplannerFollowsStep(t *testing.T) {
	tests := []struct {
		name     string
		from, to float64
		within   int
		wantKind Kind
	}{
		{"500 to 2 Mbit/s moves to the edge", mbit(500), mbit(2), 3, KindEdgeOnly},
		{"2 to 500 Mbit/s moves to the server", mbit(2), mbit(500), 3, KindServerRaw},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReplanner(t, tt.from)
			before := r.Current()
			switched := -1
			for i := 0; i < 20 && switched < 0; i++ {
				o := obs(r.Current(), tt.to)
				if r.Current().Candidate.Kind == KindEdgeOnly {
					o = Observation{Kind: KindEdgeOnly, Cut: r.Current().Candidate.Cut, ProbeBits: tt.to}
				}
				if d := r.Observe(o); d.Switch {
					switched = i + 1
				}
			}
			if switched < 0 || switched > tt.within {
				t.Fatalf("from %s: switched after %d requests, want within %d", before.Candidate.Name(), switched, tt.within)
			}
			if got := r.Current().Candidate.Kind; got != tt.wantKind {
				t.Errorf("now on %s, want %s", r.Current().Candidate.Name(), tt.wantKind)
			}
		})
	}
}

func TestReplannerProbesWhenSendingNothing(t *testing.T) {
	r := newReplanner(t, mbit(0.5))
	if r.Current().Candidate.Kind != KindEdgeOnly {
		t.Fatalf("slow link should start edge-only, got %s", r.Current().Candidate.Name())
	}
	probes := 0
	for i := 0; i < 10; i++ {
		d := r.Observe(Observation{Kind: KindEdgeOnly, Cut: r.Current().Candidate.Cut, Edge: 60 * ms})
		if d.Probe {
			probes++
		}
		if d.Switch {
			t.Fatal("switched without any bandwidth information")
		}
	}
	if probes != 2 {
		t.Errorf("%d probes in 10 edge-only requests, want 2 (every 5)", probes)
	}
}

func TestReplannerFollowsServerLoad(t *testing.T) {
	// At 1 Gbit/s server-only is best; a server 10x slower than profiled
	// makes the edge-heavier plans win.
	r := newReplanner(t, mbit(1000))
	if r.Current().Candidate.Kind != KindServerRaw {
		t.Fatalf("start on %s", r.Current().Candidate.Name())
	}
	for i := 0; i < 10; i++ {
		o := obs(r.Current(), mbit(1000))
		o.Server = 10 * r.Current().Candidate.Server
		r.Observe(o)
	}
	if r.Current().Candidate.Kind == KindServerRaw {
		t.Error("still server-only on a 10x slower server")
	}
}

func TestReplannerIgnoresComputeOfOldPlans(t *testing.T) {
	r := newReplanner(t, mbit(1000))
	stale := Observation{Kind: KindCut, Cut: 9, Edge: time.Hour, Server: time.Hour}
	r.Observe(stale)
	if r.edgeScale != 1 || r.serverScale != 1 {
		t.Errorf("a request made for another plan moved the compute estimates: %g %g", r.edgeScale, r.serverScale)
	}
}

func TestNewReplannerNeedsAPlan(t *testing.T) {
	if _, err := NewReplanner(Problem{}, ReplanConfig{}); err == nil {
		t.Error("no candidates, but a replanner")
	}
}

func TestReplannerLateTransferBoundsBandwidth(t *testing.T) {
	r := newReplanner(t, mbit(500))
	cur := r.Current()
	if cur.Encoding.Bytes == 0 {
		t.Fatalf("starting plan %s sends nothing", cur.Candidate.Name())
	}
	b := cur.Encoding.Bytes
	// Still under way after the time it takes at 100 Mbit/s: the uplink is
	// at most 100 Mbit/s.
	late := Observation{Cut: cur.Candidate.Cut, Kind: cur.Candidate.Kind, UpBytes: b, Late: true,
		Up: time.Duration(float64(b) * 8 / mbit(100) * 1e9)}
	r.Observe(late)
	if got := r.Bandwidth(); got < mbit(99) || got > mbit(101) {
		t.Errorf("bandwidth after a late transfer = %.1f Mbit/s, want the 100 Mbit/s bound", got/1e6)
	}
	// A bound above the estimate says nothing.
	late.Up /= 10
	r.Observe(late)
	if got := r.Bandwidth(); got > mbit(101) {
		t.Errorf("a bound of 1000 Mbit/s raised the estimate to %.1f Mbit/s", got/1e6)
	}
	// A transfer stalled long enough moves the plan to the edge before it
	// ends, with no full observation at all.
	late.Up = time.Duration(float64(b) * 8 / mbit(1) * 1e9)
	switched := false
	for i := 0; i < 3 && !switched; i++ {
		switched = r.Observe(late).Switch
	}
	if !switched || r.Current().Candidate.Kind != KindEdgeOnly {
		t.Errorf("after stalled transfers the plan is %s (switched %v), want edge-only", r.Current().Candidate.Name(), switched)
	}
}
