package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"tracr/planner"
	"tracr/runtime"
)

func TestWriteTies(t *testing.T) {
	ms := time.Millisecond
	tied := planner.Tied(planner.Rank(planner.Problem{Link: planner.Link{Up: 8e6, Down: 8e6}, Candidates: []planner.Candidate{
		{Kind: planner.KindCut, Cut: 14, Edge: 10 * ms, Server: 5 * ms, EdgeSpread: ms, ServerSpread: ms, Encodings: []planner.Encoding{{Codec: "raw", Bytes: 1000}}},
		{Kind: planner.KindCut, Cut: 9, Edge: 11 * ms, Server: 5 * ms, EdgeSpread: ms, ServerSpread: ms, Encodings: []planner.Encoding{{Codec: "raw", Bytes: 1000}}},
		{Kind: planner.KindEdgeOnly, Cut: 30, Edge: 40 * ms, EdgeSpread: ms},
	}}))
	if len(tied) != 2 {
		t.Fatalf("%d tied, want cut 14 and cut 9", len(tied))
	}
	var b bytes.Buffer
	writeTies(&b, tied)
	for _, want := range []string{"tied: 2 plans", "cut 14 16.000 ± 2.000 ms", "cut 9 17.000 ± 2.000 ms", "cannot tell which is fastest"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("tie report %q lacks %q", b.String(), want)
		}
	}
	if strings.Contains(b.String(), "edge-only") {
		t.Errorf("edge-only is not tied: %q", b.String())
	}
}

func TestRegret(t *testing.T) {
	m := func(total time.Duration) runtime.Measurement {
		return runtime.Measurement{Plan: planner.Plan{Candidate: planner.Candidate{Kind: planner.KindCut}}, Total: total}
	}
	for _, tt := range []struct {
		checks []runtime.Measurement
		want   float64
	}{
		{nil, 0},
		{[]runtime.Measurement{m(100), m(120)}, 1},
		{[]runtime.Measurement{m(140), m(100), m(120)}, 1.4},
	} {
		if got := regret(tt.checks); got != tt.want {
			t.Errorf("regret = %g, want %g", got, tt.want)
		}
	}
	if regret([]runtime.Measurement{m(106), m(100)}) <= maxRegret {
		t.Error("6% slower than the best is under the warning threshold")
	}
}
