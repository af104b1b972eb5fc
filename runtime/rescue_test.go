package runtime

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tracr/engine"
	"tracr/planner"
	"tracr/transport"
	"tracr/zoo"
)

// TestExecuteRescue collapses the uplink of an adaptive server-only run to
// 0.3 Mbit/s, where one request's input takes 8 s to cross, once the run
// has enough answers to know its usual round trip: the requests caught on
// the link are rescued on the edge long before their bytes arrive, with
// the same results as edge-only, the stall moves the plan to the edge,
// and every input still has exactly one row.
func TestExecuteRescue(t *testing.T) {
	requireORT(t)
	if raceDetector {
		t.Skip("the race detector slows compute and transfers unevenly; the plan choice depends on their timing")
	}
	ctx := context.Background()
	edgeOpts, server := engine.Options{Threads: 1, NoOptimize: true}, engine.Options{Threads: 1}
	last := nodeCount(t, "yolov8s", 160)
	p := handPlannedWith(t, "yolov8s", 160, edgeOpts, server, planner.Link{Up: 1e9, Down: 1e9, RTT: 100 * time.Microsecond}, 0, last)
	priceEdgeOnly(p, 4)
	if got := p.Ranked[0].Candidate.Kind; got != planner.KindServerRaw {
		t.Fatalf("planned %s first, want server-only", p.Ranked[0].Candidate.Name())
	}
	state := transport.NewLinkState(transport.Link{})
	lb := startLoopbackWith(t, ServerSpec{Link: state, Local: LocalServer{Threads: server.Threads, Concurrency: 1}})
	const n, stepAt = 20, 12 // the reader is in_flight inputs ahead
	data := zoo.Synthetic(n, 200, 150, 5)
	var stepped atomic.Bool
	ds := hookDataset{data, func(i int) {
		if i == stepAt {
			state.Set(transport.Link{Up: 0.3e6})
			stepped.Store(true)
		}
	}}
	csvPath := filepath.Join(t.TempDir(), "run.csv")
	rw, err := CreateRecords(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	out, err := Execute(ctx, ExecOptions{Planned: p, Adaptive: true, Replan: planner.ReplanConfig{Margin: 0.5}, Dataset: ds, Dial: lb.Dial, Records: rw})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	rw.Close()
	checkRows(t, out, n, csvPath)
	ref, err := Execute(ctx, ExecOptions{Planned: p, Plan: planFor(t, p, last), Dataset: data})
	if err != nil {
		t.Fatal(err)
	}
	rescued := 0
	for i, r := range out.Records {
		if r.Error != "" || r.Fallback {
			t.Errorf("request %d: %+v", i, r)
		}
		// The edge's results are edge-only's (the server's session is
		// optimised, so its answers may differ by an ulp).
		if (r.Rescued || r.Plan == "edge-only") && !sameResult(out.Results[i], ref.Results[i]) {
			t.Errorf("request %d (%s, rescued %v): result %s, edge-only %s", i, r.Plan, r.Rescued, r.Result, ref.Records[i].Result)
		}
		if r.Rescued {
			rescued++
			if r.Plan != "server-only (raw)" {
				t.Errorf("request %d rescued on plan %s; want the plan it was sent on", i, r.Plan)
			}
			if r.Total >= 4*time.Second {
				t.Errorf("rescued request %d took %v", i, r.Total)
			}
		}
	}
	var events []string
	for _, e := range out.Events {
		events = append(events, e.Kind)
	}
	t.Logf("%d rescued; run %v (last result at %v); events %s", rescued, took, out.Wall, strings.Join(events, " "))
	if rescued == 0 {
		t.Errorf("no request rescued; records %+v", out.Records)
	}
	if got := out.Records[n-1].Plan; got != "edge-only" {
		t.Errorf("last request ran %s, want edge-only after the collapse", got)
	}
	// Without rescues, the requests caught on the link would take 8 s
	// each, one after the other.
	if took > 12*time.Second {
		t.Errorf("the run took %v: requests waited for the collapsed link", took)
	}
}
