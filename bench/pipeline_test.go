package bench

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"tracr/planner"
	tr "tracr/runtime"
)

func TestPace(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	// yolov8n@160 cut 22 at 50 Mbit/s with the edge 10x slower: the
	// uplink is the slowest stage, three in flight keep it busy.
	linkBound := planner.Plan{Candidate: planner.Candidate{Kind: planner.KindCut, Cut: 22},
		Breakdown: planner.Breakdown{Edge: ms(8), Encode: ms(0.4), Up: ms(16), Server: ms(4.6), RTT: ms(10)}}
	tests := []struct {
		name     string
		pl       planner.Plan
		inFlight int
		want     time.Duration
	}{
		{"edge-only follows on the edge", planner.Plan{Candidate: planner.Candidate{Kind: planner.KindEdgeOnly},
			Breakdown: planner.Breakdown{Edge: ms(62)}}, 3, ms(62)},
		{"slowest stage when deep enough", linkBound, 3, ms(16)},
		{"whole request over a capped depth", linkBound, 2, ms(39) / 2},
		{"one in flight: the whole request", linkBound, 1, ms(39)},
		{"unpriced", planner.Plan{Candidate: planner.Candidate{Kind: planner.KindCut, Cut: 3}}, 3, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pace(tt.pl, tt.inFlight); got != tt.want {
				t.Errorf("pace = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMedianSwitch(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		xs   []float64
		want float64 // NaN: n/a
	}{
		{[]float64{3}, 3},
		{[]float64{1, 2}, 1.5},
		{[]float64{2, nan, 4}, 4},
		{[]float64{3, nan}, nan},
		{[]float64{nan, 1, nan}, nan},
		{nil, nan},
	}
	for _, tt := range tests {
		got := medianSwitch(tt.xs)
		if math.IsNaN(tt.want) != math.IsNaN(got) || !math.IsNaN(got) && got != tt.want {
			t.Errorf("medianSwitch(%v) = %v, want %v", tt.xs, got, tt.want)
		}
	}
}

func TestSwitchDelay(t *testing.T) {
	rec := func(startMs int, plan string, cut int, codec string) tr.Record {
		return tr.Record{Start: time.Duration(startMs) * time.Millisecond, Plan: plan, Cut: cut, Codec: codec}
	}
	cut := func(startMs, k int, codec string) tr.Record { return rec(startMs, "cut", k, codec) }
	edge := func(startMs int) tr.Record { return rec(startMs, "edge-only", 232, "") }
	step := 100 * time.Millisecond
	tests := []struct {
		name   string
		recs   []tr.Record
		want   float64 // NaN: none
		detail string
	}{
		{"two requests after the step", []tr.Record{cut(0, 22, "raw"), cut(90, 22, "raw"), cut(110, 22, "raw"), cut(120, 22, "raw"), edge(900)},
			2, "cut 22 raw -> edge-only at request 4"},
		{"another cut, same codec", []tr.Record{cut(0, 22, "raw"), cut(110, 44, "raw")}, 0, "cut 22 raw -> cut 44 raw"},
		{"a switch before the step does not count", []tr.Record{cut(0, 22, "raw"), edge(50), edge(150), cut(200, 22, "raw")},
			1, "edge-only -> cut 22 raw at request 3"},
		{"never switched", []tr.Record{cut(0, 22, "raw"), cut(110, 22, "raw")}, math.NaN(), "stayed on cut 22 raw"},
		{"none before the step", []tr.Record{cut(110, 22, "raw"), edge(120)}, math.NaN(), "no request on both sides"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, detail := switchDelay(tt.recs, step)
			if math.IsNaN(tt.want) != math.IsNaN(got) || !math.IsNaN(got) && got != tt.want {
				t.Errorf("switchDelay = %v, want %v (%s)", got, tt.want, detail)
			}
			if !strings.Contains(detail, tt.detail) {
				t.Errorf("detail %q does not say %q", detail, tt.detail)
			}
		})
	}
}

func TestAdaptStatics(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	// Candidates shaped as yolov8n@160's: server-only sends the input,
	// cut 22 a third of it after a little edge compute.
	serverOnly := func(bytes int64) planner.Candidate {
		return planner.Candidate{Kind: planner.KindServerRaw, Server: ms(5.8), ResultBytes: 2000,
			Encodings: []planner.Encoding{{Codec: "raw", Bytes: bytes}}}
	}
	cut22 := func(edge float64) planner.Candidate {
		return planner.Candidate{Kind: planner.KindCut, Cut: 22, Edge: ms(edge), Server: ms(4.6), ResultBytes: 2000,
			Encodings: []planner.Encoding{{Codec: "raw", Bytes: 102400}, {Codec: "raw+lz4", Bytes: 99722, Encode: ms(0.35), Decode: ms(0.03)}}}
	}
	edgeOnly := func(edge float64) planner.Candidate {
		return planner.Candidate{Kind: planner.KindEdgeOnly, Cut: 232, Edge: ms(edge)}
	}
	tests := []struct {
		name  string
		cands []planner.Candidate
		want  []string // statics; nil: an error that says err
		err   string
	}{
		{"edge limited", []planner.Candidate{serverOnly(307200), cut22(8), edgeOnly(62)}, []string{"cut 22 raw+lz4", "edge-only"}, ""},
		{"edge at full speed", []planner.Candidate{serverOnly(307200), cut22(0.8), edgeOnly(6.2)}, nil, "not a split cut"},
		{"server-only best at 50 Mbit/s", []planner.Candidate{serverOnly(30000), cut22(8), edgeOnly(62)}, nil, "server-only (raw) raw is best"},
		{"split still best at 2 Mbit/s", []planner.Candidate{serverOnly(307200), cut22(8), edgeOnly(2000)}, nil, "cut 22 raw+lz4 is best at up=50mbit,down=100mbit,rtt=10ms and at up=2mbit"},
		{"a later cut best at 2 Mbit/s", []planner.Candidate{serverOnly(307200), cut22(8), edgeOnly(120), {Kind: planner.KindCut, Cut: 30, Edge: ms(55), Server: ms(1), ResultBytes: 2000,
			Encodings: []planner.Encoding{{Codec: "raw", Bytes: 9500}}}}, []string{"cut 22 raw+lz4", "edge-only", "cut 30 raw"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &tr.Planned{EdgeCPU: 0.2, Problem: planner.Problem{Candidates: tt.cands}}
			trace := stepTrace(time.Second)
			statics, err := adaptStatics(p, trace)
			if tt.want == nil {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one that says %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := names(statics); !slices.Equal(got, tt.want) {
				t.Errorf("statics %v, want %v", got, tt.want)
			}
			if p.Link != planner.Link(trace[0].Link) {
				t.Errorf("left priced at %v, want the first link %v", p.Link, trace[0].Link)
			}
		})
	}
}

func TestFarBehind(t *testing.T) {
	ms := time.Millisecond
	static := [][]time.Duration{{240 * ms, 250 * ms}, {1190 * ms}, {470 * ms}, {490 * ms}, {}}
	for i, want := range []bool{false, true, false, true, false} {
		if got := farBehind(static, i); got != want {
			t.Errorf("farBehind(static %d, first run %v) = %v, want %v", i, static[i], got, want)
		}
	}
}

func TestBeforeStep(t *testing.T) {
	for _, tt := range []struct{ n, want int }{{80, 48}, {30, 18}, {2, 2}, {1, 2}} {
		if got := beforeStep(tt.n); got != tt.want {
			t.Errorf("beforeStep(%d) = %d, want %d", tt.n, got, tt.want)
		}
	}
}
