package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/csv"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"tracr/internal/orttest"

	"tracr/bitrate"
	"tracr/engine"
	"tracr/graph"
	"tracr/planner"
	"tracr/tensor"
	"tracr/transport"
	"tracr/zoo"
)

// requireORT skips or fails the test without ONNX Runtime (orttest.Require).
func requireORT(t testing.TB) { orttest.Require(t) }

// handPlanned builds a Planned without the profiler: the model, a sample
// input, and candidates for the given cuts (0 = server-only, the last cut
// = edge-only) whose edge and server times are measured here with a few
// runs of the real head and tail sessions (edge with edgeOpts, server with
// ONNX Runtime's defaults, as the loopback server runs them) and whose
// bytes are the raw crossing tensors.
func handPlanned(t *testing.T, name string, size int, edgeOpts engine.Options, link planner.Link, cuts ...int) *Planned {
	t.Helper()
	return handPlannedWith(t, name, size, edgeOpts, engine.Options{}, link, cuts...)
}

// handPlannedWith is handPlanned with the server's ONNX Runtime options.
func handPlannedWith(t *testing.T, name string, size int, edgeOpts, serverOpts engine.Options, link planner.Link, cuts ...int) *Planned {
	t.Helper()
	ctx := context.Background()
	data, source, synthetic, err := zoo.ResolveSize(ctx, name, size)
	if err != nil {
		t.Fatal(err)
	}
	m, err := graph.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := engine.Prepare(ctx, m, 1, nil); err != nil {
		t.Fatal(err)
	}
	spec, err := zoo.Describe(name, size)
	if err != nil {
		t.Fatal(err)
	}
	img, err := zoo.Synthetic(1, 200, 150, 7).Sample(0)
	if err != nil {
		t.Fatal(err)
	}
	in, lb := Preprocess(spec, img.Image)
	p := &Planned{ModelBytes: data, Hash: sha256.Sum256(data), Model: m, Source: source, Spec: spec, Synthetic: synthetic,
		Post: zoo.DefaultPost(spec.Task), Sample: []tensor.Tensor{in}, Link: link, Edge: edgeOpts, Crossing: map[int][]string{}}
	p.Post.Letterbox = lb
	n := len(m.Nodes())
	all := graph.Cuts(m)
	// Each half is timed as its own session. The sessions are opened
	// first and then run in turns, keeping the fastest of 8 runs of each:
	// other processes only ever slow a run down, and taking turns spreads
	// a burst of their load over all the sessions alike.
	type timer struct {
		s      *engine.Session
		inputs []tensor.Tensor
		best   *time.Duration
	}
	var timers []timer
	open := func(model []byte, opts engine.Options, inputs []tensor.Tensor, into *time.Duration) []tensor.Tensor {
		s, err := engine.NewSession(model, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		in := pickInputs(inputs, s.Inputs())
		outs, err := s.Run(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		*into = time.Duration(math.MaxInt64)
		timers = append(timers, timer{s, in, into})
		return outs
	}
	cands := make([]planner.Candidate, len(cuts))
	for i, k := range cuts {
		c := &cands[i]
		*c = planner.Candidate{Kind: planner.KindCut, Cut: k, ResultBytes: 300}
		cut, err := graph.FindCut(all, k)
		if err != nil {
			t.Fatal(err)
		}
		switch k {
		case 0:
			c.Kind = planner.KindServerRaw
			open(data, serverOpts, p.Sample, &c.Server)
		case n:
			c.Kind = planner.KindEdgeOnly
			open(data, edgeOpts, p.Sample, &c.Edge)
		default:
			split, err := graph.Partition(m, graph.Prefix(k))
			if err != nil {
				t.Fatal(err)
			}
			mid := open(split.Head, edgeOpts, p.Sample, &c.Edge)
			open(split.Tail, serverOpts, mid, &c.Server)
		}
		if c.Kind != planner.KindEdgeOnly {
			c.Encodings = []planner.Encoding{{Codec: "raw", Bytes: cut.Bytes}}
		}
		p.Crossing[k] = cut.Names()
	}
	for round := 0; round < 8; round++ {
		for _, tm := range timers {
			t0 := time.Now()
			if _, err := tm.s.Run(ctx, tm.inputs); err != nil {
				t.Fatal(err)
			}
			*tm.best = min(*tm.best, time.Since(t0))
		}
	}
	p.Problem.Candidates = cands
	p.Problem.Link = link
	p.Ranked = planner.Rank(p.Problem)
	p.Breakpoints = planner.Breakpoints(p.Problem)
	return p
}

// nodeCount returns the number of compute nodes of a zoo model: its
// edge-only cut.
func nodeCount(t *testing.T, name string, size int) int {
	t.Helper()
	spec, err := zoo.Describe(name, size)
	if err != nil {
		t.Fatal(err)
	}
	return spec.Nodes
}

// planFor returns the ranked plan of the candidate at cut k.
func planFor(t *testing.T, p *Planned, k int) planner.Plan {
	t.Helper()
	pl, err := ForcedPlan(p, k)
	if err != nil {
		t.Fatal(err)
	}
	return pl
}

// hookDataset calls hook before reading each sample: tests use it to act
// at a given point of a run (kill the server, change the link).
type hookDataset struct {
	zoo.Dataset
	hook func(i int)
}

func (d hookDataset) Sample(i int) (zoo.Sample, error) {
	d.hook(i)
	return d.Dataset.Sample(i)
}

// startLoopback starts an embedded server (Connect's) with an emulated
// link, or none, until the test ends.
func startLoopback(t *testing.T, link *transport.LinkState) *Server {
	t.Helper()
	return startLoopbackWith(t, ServerSpec{Link: link})
}

func startLoopbackWith(t *testing.T, spec ServerSpec) *Server {
	t.Helper()
	srv, err := Connect(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// sameResult reports whether two results agree: the same classes or boxes
// in the same order, scores within 1e-5 and box corners within 1e-3
// pixels. Joined head and tail outputs equal the full model's bit for bit
// with graph optimisations off; with them on (as run), ONNX Runtime may
// fuse operators differently when a cut falls inside a fusable chain,
// which moves a value by about an ulp (MobileNetV2 at cut 40: 4e-6 in
// the logits).
func sameResult(a, b zoo.Result) bool {
	if len(a.Classes) != len(b.Classes) || len(a.Boxes) != len(b.Boxes) {
		return false
	}
	near := func(x, y, tol float64) bool { return math.Abs(x-y) <= tol }
	for i, c := range a.Classes {
		d := b.Classes[i]
		if c.Index != d.Index || c.Label != d.Label || !near(float64(c.Prob), float64(d.Prob), 1e-5) {
			return false
		}
	}
	for i, x := range a.Boxes {
		y := b.Boxes[i]
		if x.Class != y.Class || x.Label != y.Label || !near(float64(x.Score), float64(y.Score), 1e-5) ||
			!near(x.X1, y.X1, 1e-3) || !near(x.Y1, y.Y1, 1e-3) || !near(x.X2, y.X2, 1e-3) || !near(x.Y2, y.Y2, 1e-3) {
			return false
		}
	}
	return true
}

// checkRows checks that a run yielded exactly one record per input, in
// order, and that the CSV holds the same rows.
func checkRows(t *testing.T, out *Outcome, n int, csvPath string) {
	t.Helper()
	if len(out.Records) != n || len(out.Results) != n {
		t.Fatalf("%d records and %d results for %d inputs", len(out.Records), len(out.Results), n)
	}
	for i, r := range out.Records {
		if r.ID != i {
			t.Fatalf("record %d has ID %d", i, r.ID)
		}
	}
	if csvPath == "" {
		return
	}
	f, err := os.Open(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != n+1 {
		t.Fatalf("CSV has %d rows, want a header and %d", len(rows), n)
	}
}

func TestExecuteSplitEqualsEdgeOnly(t *testing.T) {
	requireORT(t)
	ctx := context.Background()
	tests := []struct {
		model string
		size  int
		cuts  []int // plans to run besides edge-only (0 = server-only)
	}{
		{"yolov8n", 160, []int{0, 22, 160}},
		{"mobilenetv2", 96, []int{0, 40}},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			spec, err := zoo.Describe(tt.model, tt.size)
			if err != nil {
				t.Fatal(err)
			}
			all := append(slices.Clone(tt.cuts), spec.Nodes)
			p := handPlanned(t, tt.model, tt.size, engine.Options{Threads: 1}, planner.Link{Up: 1e9, Down: 1e9, RTT: time.Millisecond}, all...)
			ds := zoo.Synthetic(6, 240, 180, 3)
			ref, err := Execute(ctx, ExecOptions{Planned: p, Plan: planFor(t, p, spec.Nodes), Dataset: ds})
			if err != nil {
				t.Fatal(err)
			}
			checkRows(t, ref, 6, "")
			lb := startLoopback(t, nil)
			for _, k := range tt.cuts {
				c, err := lb.Dial(ctx)
				if err != nil {
					t.Fatal(err)
				}
				csvPath := filepath.Join(t.TempDir(), "run.csv")
				rw, err := CreateRecords(csvPath)
				if err != nil {
					t.Fatal(err)
				}
				out, err := Execute(ctx, ExecOptions{Planned: p, Plan: planFor(t, p, k), Dataset: ds, Client: c, Records: rw, InFlight: 3})
				if err != nil {
					t.Fatal(err)
				}
				rw.Close()
				checkRows(t, out, 6, csvPath)
				for i, r := range out.Records {
					if r.Error != "" || r.Fallback || r.Cut != k || r.BytesUp == 0 || r.BytesDown == 0 {
						t.Errorf("cut %d: record %+v", k, r)
					}
					if !sameResult(out.Results[i], ref.Results[i]) {
						t.Errorf("cut %d, input %d: split result %+v differs from edge-only %+v", k, i, out.Results[i], ref.Results[i])
					}
				}
			}
		})
	}
}

func TestExecuteUnreadableInputs(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	samples, _ := filepath.Glob("../data/samples/*")
	for _, s := range samples {
		if b, err := os.ReadFile(s); err == nil && !strings.HasSuffix(s, ".md") {
			os.WriteFile(filepath.Join(dir, filepath.Base(s)), b, 0o644)
		}
	}
	os.WriteFile(filepath.Join(dir, "broken.png"), []byte("not a png"), 0o644)
	ds, err := zoo.OpenImageFolder(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	last := nodeCount(t, "yolov8n", 160)
	p := handPlanned(t, "yolov8n", 160, engine.Options{Threads: 1}, planner.Link{Up: 1e9, Down: 1e9}, 22, last)
	lb := startLoopback(t, nil)
	var skipped []Event
	csvPath := filepath.Join(t.TempDir(), "run.csv")
	rw, err := CreateRecords(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	overlays := t.TempDir()
	out, err := Execute(context.Background(), ExecOptions{Planned: p, Plan: planFor(t, p, 22), Dataset: ds, Dial: lb.Dial, Records: rw,
		Overlays: overlays, OnEvent: func(e Event) {
			if e.Kind == "skip" {
				skipped = append(skipped, e)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	rw.Close()
	n := ds.Len()
	checkRows(t, out, n, csvPath)
	s := Summarize(out.Records, out.Wall)
	if s.Failed != 1 || len(skipped) != 1 || !strings.Contains(skipped[0].Message, "broken.png") {
		t.Errorf("failed %d, skip events %+v", s.Failed, skipped)
	}
	for _, r := range out.Records {
		if broken := strings.Contains(r.Error, "broken.png"); broken == (r.Result != "") || r.Error != "" && !broken {
			t.Errorf("record %+v", r)
		}
	}
	pngs, _ := filepath.Glob(filepath.Join(overlays, "*.png"))
	if len(pngs) != n-1 {
		t.Errorf("%d overlays for %d readable inputs", len(pngs), n-1)
	}
}

// TestExecuteServerLost kills the server in the middle of a run: requests
// in flight and later ones run on the edge, marked, none is lost, and once
// a server is back (a new one; the run's dial function finds it)
// splitting resumes.
func TestExecuteServerLost(t *testing.T) {
	requireORT(t)
	ctx := context.Background()
	last := nodeCount(t, "yolov8n", 160)
	p := handPlanned(t, "yolov8n", 160, engine.Options{Threads: 1}, planner.Link{Up: 1e9, Down: 1e9}, 22, last)
	first := startLoopback(t, nil)
	var current atomic.Pointer[Server]
	current.Store(first)
	dial := func(ctx context.Context) (*transport.Client, error) { return current.Load().Dial(ctx) }
	reconnected := make(chan struct{})
	var once sync.Once
	var collected atomic.Int64
	// The reader runs ahead of the requests: it kills the server when it
	// reads input kill, once the first requests are done.
	const n, kill, revive, doneBeforeKill = 30, 10, 18, 5
	ds := hookDataset{zoo.Synthetic(n, 200, 150, 5), func(i int) {
		switch i {
		case kill:
			for deadline := time.Now().Add(20 * time.Second); collected.Load() < doneBeforeKill && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			first.Close()
		case revive:
			current.Store(startLoopback(t, nil))
			select {
			case <-reconnected:
			case <-time.After(20 * time.Second):
				t.Error("no reconnection within 20s")
			}
		}
	}}
	out, err := Execute(ctx, ExecOptions{Planned: p, Plan: planFor(t, p, 22), Dataset: ds, Dial: dial,
		ReconnectMin: 10 * time.Millisecond, ReconnectMax: 100 * time.Millisecond,
		Progress: func(Record) { collected.Add(1) },
		OnEvent: func(e Event) {
			if e.Kind == "reconnected" {
				once.Do(func() { close(reconnected) })
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	checkRows(t, out, n, "")
	ref, err := Execute(ctx, ExecOptions{Planned: p, Plan: planFor(t, p, last), Dataset: zoo.Synthetic(n, 200, 150, 5)})
	if err != nil {
		t.Fatal(err)
	}
	fallbacks := 0
	for i, r := range out.Records {
		if r.Error != "" || r.Result == "" {
			t.Errorf("request %d lost: %+v", i, r)
		}
		if !sameResult(out.Results[i], ref.Results[i]) {
			t.Errorf("request %d: result %+v, edge-only %+v", i, out.Results[i], ref.Results[i])
		}
		if r.Fallback {
			fallbacks++
			if r.Plan != "edge-only" || i >= revive {
				t.Errorf("fallback row %+v", r)
			}
		} else if i >= revive && r.Cut != 22 {
			t.Errorf("request %d after the reconnection ran on %s %d, want cut 22", i, r.Plan, r.Cut)
		}
	}
	if fallbacks == 0 {
		t.Error("no request fell back while the server was down")
	}
	for i := 0; i < doneBeforeKill; i++ {
		if out.Records[i].Fallback {
			t.Errorf("request %d fell back before the server was killed", i)
		}
	}
	t.Logf("%d of %d requests fell back; events: %v", fallbacks, n, out.Events)
}

// priceEdgeOnly prices p's edge-only candidate at f times its profile and
// re-ranks. Edge and server share this machine's cores and their profiles
// of one model are close, so which one a test starts on would otherwise
// depend on the load; the runs still compute on the real edge.
func priceEdgeOnly(p *Planned, f float64) {
	for i, c := range p.Problem.Candidates {
		if c.Kind == planner.KindEdgeOnly {
			p.Problem.Candidates[i].Edge = time.Duration(f * float64(c.Edge))
		}
	}
	p.Reprice(p.Link)
}

// TestExecuteAdaptiveStep runs the adaptive pipeline over an emulated link
// that steps from unlimited to 5 Mbit/s in the middle of the run, with a
// slow edge (no graph optimisation, edge-only priced at twice its profile)
// and a server that runs one request at a time, so that server-only is
// best before the step and edge-only after it. Both run on one thread: a
// multi-threaded session slows down far more than a single-threaded one
// when other processes load the machine (as other packages' tests do in
// make test). The re-planner must move within 3 requests of the step, and
// requests in flight finish on the plan they were made for.
func TestExecuteAdaptiveStep(t *testing.T) {
	requireORT(t)
	if raceDetector {
		t.Skip("the race detector slows compute and transfers unevenly; the plan choice depends on their timing")
	}
	ctx := context.Background()
	server := engine.Options{Threads: 1}
	p := handPlannedWith(t, "yolov8s", 160, engine.Options{Threads: 1, NoOptimize: true}, server,
		planner.Link{Up: 1e9, Down: 1e9, RTT: 100 * time.Microsecond}, 0, nodeCount(t, "yolov8s", 160))
	priceEdgeOnly(p, 2)
	if got := p.Ranked[0].Candidate.Kind; got != planner.KindServerRaw {
		t.Fatalf("planned %s first, want server-only (profile %+v)", p.Ranked[0].Candidate.Name(), p.Problem.Candidates)
	}
	state := transport.NewLinkState(transport.Link{})
	lb := startLoopbackWith(t, ServerSpec{Link: state, Local: LocalServer{Threads: server.Threads, Concurrency: 1}})
	const n, stepAt = 60, 25
	var stepTime atomic.Int64
	ds := hookDataset{zoo.Synthetic(n, 200, 150, 9), func(i int) {
		if i == stepAt {
			state.Set(transport.Link{Up: 5e6})
			stepTime.Store(time.Now().UnixNano())
		}
	}}
	csvPath := filepath.Join(t.TempDir(), "run.csv")
	rw, err := CreateRecords(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	// Server and edge share this machine's cores, so measured compute
	// drifts with the load by far more than the default 10% margin. With
	// 50%, a switch needs two requests in a row predicting a gain of half
	// the latency: noise does not get there before the step, and the step
	// (server-only then takes 0.5 s on the link alone: a gain of over 80%)
	// does within two requests.
	out, err := Execute(ctx, ExecOptions{Planned: p, Adaptive: true, Replan: planner.ReplanConfig{Margin: 0.5}, Dataset: ds, Dial: lb.Dial, Records: rw})
	if err != nil {
		t.Fatal(err)
	}
	rw.Close()
	checkRows(t, out, n, csvPath)
	step := time.Unix(0, stepTime.Load()).Sub(out.Start)
	first, switched := -1, -1
	for i, r := range out.Records {
		if r.Error != "" || r.Fallback {
			t.Errorf("record %+v", r)
		}
		if first < 0 && r.Start >= step {
			first = i
		}
		if switched < 0 && r.Plan != "server-only (raw)" {
			switched = i
		}
		if switched >= 0 && r.Plan != "edge-only" {
			t.Errorf("request %d ran %s after the switch to edge-only", i, r.Plan)
		}
	}
	t.Logf("step at %v before request %d; first edge-only request %d; events %v", step, first, switched, out.Events)
	if os.Getenv("TRACR_DEBUG_ROWS") != "" {
		for _, r := range out.Records {
			t.Logf("%d %s start %v edge %v up %v server %v decode %v queue %v total %v bw %.1f", r.ID, r.Plan, r.Start, r.Edge, r.Up, r.Server, r.Decode, r.Queue, r.Total, r.Bandwidth/1e6)
		}
	}
	if first < 0 || switched < first || switched > first+3 {
		t.Fatalf("switched at request %d, want within 3 requests of the step (first request after it: %d)", switched, first)
	}
}

// TestExecuteInterrupt ends a run's context part way: no new input is
// read, the requests in flight finish and each has its record.
func TestExecuteInterrupt(t *testing.T) {
	requireORT(t)
	last := nodeCount(t, "yolov8n", 160)
	p := handPlanned(t, "yolov8n", 160, engine.Options{Threads: 1}, planner.Link{Up: 1e9, Down: 1e9}, 22, last)
	lb := startLoopback(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n, stop = 40, 12
	ds := hookDataset{zoo.Synthetic(n, 200, 150, 2), func(i int) {
		if i == stop {
			cancel()
		}
	}}
	csvPath := filepath.Join(t.TempDir(), "run.csv")
	rw, err := CreateRecords(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Execute(ctx, ExecOptions{Planned: p, Plan: planFor(t, p, 22), Dataset: ds, Dial: lb.Dial, Records: rw})
	if err != nil {
		t.Fatal(err)
	}
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}
	got := len(out.Records)
	if !out.Interrupted || got == 0 || got > stop+1 {
		t.Fatalf("interrupted %v after %d requests (stopped while reading input %d)", out.Interrupted, got, stop)
	}
	checkRows(t, out, got, csvPath)
	for _, r := range out.Records {
		if r.Error != "" || r.Result == "" {
			t.Errorf("record %+v", r)
		}
	}
}

// TestExecuteLimitedEdgeTakesTurns checks that on a limited edge the next
// input is read and pre-processed only once the edge's own work for the
// request before it is over (its compute, and for a split the writing of
// its request), while an edge at full speed reads ahead. The uplink is
// emulated at 20 Mbit/s, so a split's request (about 100 kB) takes tens
// of milliseconds to write: an input read before half of that has passed
// since the encoding was read before the write was over.
func TestExecuteLimitedEdgeTakesTurns(t *testing.T) {
	requireORT(t)
	last := nodeCount(t, "yolov8n", 160)
	const n = 6
	const up = 20e6
	for _, limited := range []bool{false, true} {
		for _, k := range []int{22, last} {
			p := handPlanned(t, "yolov8n", 160, engine.Options{Threads: 1}, planner.Link{Up: up, Down: 1e9}, 22, last)
			if limited {
				p.EdgeCPU = 0.5 // the field the pipeline reads; no kernel limit is needed to see the order
			}
			var mu sync.Mutex
			read := make([]time.Time, n)
			ds := hookDataset{zoo.Synthetic(n, 200, 150, 3), func(i int) {
				mu.Lock()
				read[i] = time.Now()
				mu.Unlock()
			}}
			link := transport.NewLinkState(transport.Link{}) // the model's upload at full speed
			lb := startLoopback(t, link)
			out, err := Execute(context.Background(), ExecOptions{Planned: p, Plan: planFor(t, p, k), Dataset: ds, Dial: lb.Dial, InFlight: 2,
				OnStart: func(time.Time) { link.Set(transport.Link{Up: up, Down: 1e9}) }})
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Records) != n {
				t.Fatalf("%d records", len(out.Records))
			}
			early := 0
			for i := 1; i < n; i++ {
				r := out.Records[i-1]
				written := r.Start + r.Edge + r.Encode
				if wire, ok := bitrate.Time(r.BytesUp, up); ok {
					written += wire / 2
				}
				if read[i].Before(out.Start.Add(written)) {
					early++
				}
			}
			switch {
			case limited && early > 0:
				t.Errorf("limited edge, plan %d: %d of %d inputs read before the edge finished the request before them", k, early, n-1)
			case !limited && early == 0:
				t.Errorf("edge at full speed, plan %d: no input was read ahead", k)
			}
		}
	}
}
