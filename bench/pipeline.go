package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"tracr/planner"
	tr "tracr/runtime"
	"tracr/transport"
	"tracr/zoo"
)

// pipelineModel is the model the runtime sections run.
func (b *bencher) pipelineModel() model {
	if b.opts.Quick {
		return model{"yolov8n", 160}
	}
	return model{"yolov8n", 320}
}

// pipeline measures the runtime's overhead and pipelined throughput at the
// best split cut on Wi-Fi, and adaptation on a stepping link trace.
func (b *bencher) pipeline(ctx context.Context) error {
	tb, err := newTestbed(ctx)
	if err != nil {
		return err
	}
	defer tb.close()
	m := b.pipelineModel()
	p, err := b.plan(ctx, tb, m)
	if err != nil {
		return fmt.Errorf("plan %s: %w", m, err)
	}
	if err := b.overhead(ctx, tb, p, m); err != nil {
		return err
	}
	return b.adaptation(ctx, tb, p, m)
}

// execute runs plan over n synthetic inputs on its own connection.
func execute(ctx context.Context, tb *testbed, p *tr.Planned, opts tr.ExecOptions, n int) (*tr.Outcome, error) {
	c, err := tb.lb.Dial(ctx)
	if err != nil {
		return nil, err
	}
	opts.Planned, opts.Client, opts.Dial = p, c, tb.lb.Dial
	opts.Dataset = zoo.Synthetic(n, 640, 480, 3)
	opts.Link = func() planner.Link { return planner.Link(tb.state.Get()) }
	out, err := tr.Execute(ctx, opts)
	if err != nil {
		return nil, err
	}
	for _, r := range out.Records {
		if r.Error != "" || r.Fallback {
			return nil, fmt.Errorf("request %d: error %q, fallback %v", r.ID, r.Error, r.Fallback)
		}
	}
	return out, nil
}

// overhead runs the best split cut on Wi-Fi twice: one request in flight
// (the runtime's own overhead) and three (pipelined throughput).
func (b *bencher) overhead(ctx context.Context, tb *testbed, p *tr.Planned, m model) error {
	wifi := b.links()[len(b.links())-2]
	p.Reprice(planner.Link(wifi.l))
	tb.state.Set(wifi.l)
	var pl planner.Plan
	found := false
	for _, r := range p.Ranked {
		if r.Feasible && r.Candidate.Kind == planner.KindCut {
			pl, found = r, true
			break
		}
	}
	if !found {
		return fmt.Errorf("%s on %s: no feasible split cut", m, wifi.name)
	}
	n := 40
	if b.opts.Quick {
		n = 16
	}
	scope := fmt.Sprintf("%s %s, %s %s", m, wifi.name, pl.Candidate.Name(), pl.Encoding.Codec)
	one, err := execute(ctx, tb, p, tr.ExecOptions{Plan: pl, InFlight: 1}, n)
	if err != nil {
		return fmt.Errorf("overhead run: %w", err)
	}
	s := tr.Summarize(one.Records, one.Wall)
	b.add(Figure{Section: "overhead", Scope: scope, Metric: "median runtime overhead", Value: msf(s.Overhead), Unit: "ms",
		Detail: fmt.Sprintf("%.1f%% of a %.1f ms request", 100*s.OverheadShare, msf(s.MedianTotal)),
		How:    fmt.Sprintf("Execute, 1 in flight, %d requests: median of total - (edge + server + post + bytes/link rate + rtt + queue)", n)})
	piped, err := execute(ctx, tb, p, tr.ExecOptions{Plan: pl, InFlight: 3}, n)
	if err != nil {
		return fmt.Errorf("throughput run: %w", err)
	}
	s3 := tr.Summarize(piped.Records, piped.Wall)
	bd := pl.Breakdown
	slowest := max(bd.Edge+bd.Encode, bd.Up+bd.Down, bd.Server+bd.Decode)
	theory := 1 / slowest.Seconds()
	b.add(Figure{Section: "throughput", Scope: scope, Metric: "measured / (1 / slowest predicted stage)", Value: ratio(s3.Throughput, theory), Unit: "x",
		Detail: fmt.Sprintf("%.2f req/s vs %.2f req/s; vs measured stages (%s slowest) %.2fx; 1 in flight %.2f req/s", s3.Throughput, theory, s3.Bottleneck, s3.Efficiency, s.Throughput),
		How:    fmt.Sprintf("Execute, 3 in flight, %d requests; stages edge+encode, up+down, server+decode", n)})
	return nil
}

// trace is the link trace adaptation runs on: config/trace-50-2.csv when
// present (run from the repository root), else the same steps built in.
func (b *bencher) trace() (transport.Trace, string, error) {
	const path = "config/trace-50-2.csv"
	if _, err := os.Stat(path); err == nil {
		t, err := transport.LoadTrace(path)
		return t, path, err
	}
	return transport.Trace{
		{At: 0, Link: transport.Link{Up: 50e6, Down: 100e6, RTT: 10 * time.Millisecond}},
		{At: time.Second, Link: transport.Link{Up: 2e6, Down: 100e6, RTT: 10 * time.Millisecond}},
	}, "50 -> 2 Mbit/s at 1 s (built in)", nil
}

// onTrace runs opts over the trace, which starts with the first request.
func onTrace(ctx context.Context, tb *testbed, p *tr.Planned, t transport.Trace, opts tr.ExecOptions, n int) (*tr.Outcome, error) {
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tb.state.Set(t.At(0))
	opts.OnStart = func(start time.Time) { go t.Play(tctx, tb.state, start) }
	return execute(ctx, tb, p, opts, n)
}

// adaptation runs the adaptive pipeline on the trace, then each static
// candidate that is best somewhere on it (and edge-only) on the same
// trace.
func (b *bencher) adaptation(ctx context.Context, tb *testbed, p *tr.Planned, m model) error {
	t, src, err := b.trace()
	if err != nil {
		return err
	}
	if len(t) < 2 {
		return fmt.Errorf("trace %s: want a step", src)
	}
	step := t[1].At
	// The statics: each step's best plan, and edge-only.
	var statics []planner.Plan
	seen := map[string]bool{}
	add := func(pl planner.Plan) {
		if key := pl.Candidate.Name() + " " + pl.Encoding.Codec; pl.Feasible && !seen[key] {
			seen[key] = true
			statics = append(statics, pl)
		}
	}
	for _, s := range t {
		p.Reprice(planner.Link(s.Link))
		add(p.Ranked[0])
		for _, pl := range p.Ranked {
			if pl.Candidate.Kind == planner.KindEdgeOnly {
				add(pl)
			}
		}
	}
	// Enough requests to run the step's time and as long again on the
	// slowest static's prediction, within bounds.
	var slowest time.Duration
	for _, pl := range statics {
		slowest = max(slowest, pl.Breakdown.Total)
	}
	n := int(2*step/max(slowest, time.Millisecond)) + 10
	n = min(max(n, 30), 400)
	if b.opts.Quick {
		n = min(n, 150)
	}
	p.Reprice(planner.Link(t[0].Link))
	adaptive, err := onTrace(ctx, tb, p, t, tr.ExecOptions{Adaptive: true}, n)
	if err != nil {
		return fmt.Errorf("adaptive run: %w", err)
	}
	as := tr.Summarize(adaptive.Records, adaptive.Wall)
	bestMean, bestName := time.Duration(math.MaxInt64), ""
	for _, pl := range statics {
		out, err := onTrace(ctx, tb, p, t, tr.ExecOptions{Plan: pl}, n)
		if err != nil {
			return fmt.Errorf("static %s: %w", pl.Candidate.Name(), err)
		}
		s := tr.Summarize(out.Records, out.Wall)
		b.logf("static %s %s on the trace: mean %.1f ms", pl.Candidate.Name(), pl.Encoding.Codec, msf(s.MeanTotal))
		if s.MeanTotal < bestMean {
			bestMean, bestName = s.MeanTotal, strings.TrimSpace(pl.Candidate.Name()+" "+pl.Encoding.Codec)
		}
	}
	tb.state.Set(transport.Link{})
	scope := fmt.Sprintf("%s, %s", m, src)
	switchAfter, detail := switchDelay(adaptive.Records, step)
	b.add(Figure{Section: "adaptation", Scope: scope, Metric: "requests to switch after the step", Value: switchAfter, Unit: "req",
		Detail: detail, How: fmt.Sprintf("Execute --adaptive, %d requests, 3 in flight; requests started after the step until the first on a new plan", n)})
	b.add(Figure{Section: "adaptation", Scope: scope, Metric: "adaptive mean / best static mean", Value: ratio(float64(as.MeanTotal), float64(bestMean)), Unit: "x",
		Detail: fmt.Sprintf("adaptive %.1f ms vs static %s %.1f ms (%d statics)", msf(as.MeanTotal), bestName, msf(bestMean), len(statics)),
		How:    "same trace replayed from the first request for each run; statics: each step's planned best and edge-only"})
	return nil
}

// switchDelay counts the requests started after the step before the first
// one on a plan other than the one in force at the step.
func switchDelay(recs []tr.Record, step time.Duration) (float64, string) {
	first := -1
	for i, r := range recs {
		if r.Start >= step {
			first = i
			break
		}
	}
	if first <= 0 {
		return math.NaN(), "no request on both sides of the step"
	}
	before := strings.TrimSpace(recs[first-1].Plan + " " + recs[first-1].Codec)
	for i := first; i < len(recs); i++ {
		if now := strings.TrimSpace(recs[i].Plan + " " + recs[i].Codec); now != before {
			return float64(i - first), fmt.Sprintf("%s -> %s at request %d (first after the step: %d)", before, now, i, first)
		}
	}
	return math.NaN(), fmt.Sprintf("stayed on %s after the step (%d requests after it)", before, len(recs)-first)
}
