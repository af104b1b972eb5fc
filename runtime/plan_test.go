package runtime

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"tracr/graph"
	"tracr/planner"
)

// TestPlanEndToEnd plans a small built-in detector against the embedded
// loopback server with a fixed link, then runs the chosen plan and a
// baseline for real.
func TestPlanEndToEnd(t *testing.T) {
	requireORT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lb := startLoopback(t, nil)
	c, err := lb.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	link := planner.Link{Up: 20e6, Down: 50e6, RTT: 10 * time.Millisecond}
	p, err := Plan(ctx, c, PlanOptions{Model: "yolov8n", ImgSize: 64, EdgeThreads: 1, Repeats: 3, Link: &link,
		ProfileDir: t.TempDir(), Preload: lb.Preload})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[planner.Kind]bool{}
	for _, pl := range p.Ranked {
		kinds[pl.Candidate.Kind] = true
		b := pl.Breakdown
		if pl.Feasible && b.Total != b.Edge+b.Encode+b.Up+b.Server+b.Decode+b.Down+b.RTT {
			t.Errorf("%s: breakdown does not add up: %+v", pl.Candidate.Name(), b)
		}
		if pl.Candidate.Kind == planner.KindCut && len(p.Crossing[pl.Candidate.Cut]) == 0 {
			t.Errorf("%s: no crossing tensors recorded", pl.Candidate.Name())
		}
	}
	for _, k := range []planner.Kind{planner.KindCut, planner.KindEdgeOnly, planner.KindServerRaw, planner.KindServerJPEG} {
		if !kinds[k] {
			t.Errorf("no %s candidate", k)
		}
	}
	if len(p.Breakpoints) == 0 || p.Breakpoints[0].From != 0 {
		t.Errorf("breakpoints %+v", p.Breakpoints)
	}
	// Raw bytes of a cut equal the graph's own size of its crossing tensors.
	cuts := graph.Cuts(p.Model)
	for _, pl := range p.Ranked {
		if pl.Candidate.Kind == planner.KindCut && pl.Encoding.Codec == "raw" {
			c, _ := graph.FindCut(cuts, pl.Candidate.Cut)
			if c.Bytes != pl.Encoding.Bytes {
				t.Errorf("cut %d: planned %d raw bytes, graph says %d", c.ID, pl.Encoding.Bytes, c.Bytes)
			}
		}
	}
	for _, pl := range []planner.Plan{p.Best(), p.Ranked[len(p.Ranked)/2]} {
		if !pl.Feasible {
			continue
		}
		m, err := p.Measure(ctx, c, pl, 3)
		if err != nil {
			t.Fatalf("measure %s: %v", pl.Candidate.Name(), err)
		}
		if m.Total <= 0 || (pl.Candidate.Kind != planner.KindEdgeOnly && m.Server <= 0) {
			t.Errorf("measure %s: %+v", pl.Candidate.Name(), m)
		}
	}
	d, err := p.DAG(ctx)
	if err != nil {
		t.Fatal(err)
	}
	edge, _, err := planner.MinCut(d, link.Up)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := graph.Partition(p.Model, edge); err != nil {
		t.Errorf("min-cut node set is not runnable: %v", err)
	}
}

func TestPlanNeedsAServer(t *testing.T) {
	requireORT(t)
	_, err := Plan(context.Background(), nil, PlanOptions{Model: "mobilenetv2", ImgSize: 32, Repeats: 2, ProfileDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "--server local") {
		t.Errorf("err = %v, want a hint at --server local", err)
	}
}

func TestTableJSON(t *testing.T) {
	cut := planner.Plan{Candidate: planner.Candidate{Kind: planner.KindCut, Cut: 22}, Encoding: planner.Encoding{Codec: "raw+zstd", Bytes: 320_000},
		Breakdown: planner.Breakdown{Edge: 30 * time.Millisecond, Up: 51200 * time.Microsecond, Total: 99 * time.Millisecond}, Feasible: true}
	edge := planner.Plan{Candidate: planner.Candidate{Kind: planner.KindEdgeOnly, Cut: 232}, Breakdown: planner.Breakdown{Edge: 168 * time.Millisecond, Total: 168 * time.Millisecond}, Feasible: true}
	p := &Planned{Ranked: []planner.Plan{cut, edge}, Breakpoints: []planner.Interval{{From: 0, To: 12e6, Plan: edge}, {From: 12e6, To: math.Inf(1), Plan: cut}}}
	plans, bps := p.TableJSON()
	if len(plans) != 2 || plans[0].Cut != 22 || plans[0].Codec != "raw+zstd" || plans[0].UpMs != 51.2 || plans[0].TotalMs != 99 || plans[1].Plan != "edge-only" {
		t.Errorf("plans %+v", plans)
	}
	if len(bps) != 2 || bps[0].FromMbit != 0 || bps[0].ToMbit != 12 || bps[0].Plan != "edge-only" || bps[1].ToMbit != -1 || bps[1].Codec != "raw+zstd" {
		t.Errorf("breakpoints %+v", bps)
	}
}
