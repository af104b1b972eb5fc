package bench

import (
	"context"
	"fmt"
	"math"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"tracr/planner"
	"tracr/quantile"
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
// best split cut on Wi-Fi.
func (b *bencher) pipeline(ctx context.Context) error {
	tb, err := b.newTestbed(ctx, regime{})
	if err != nil {
		return err
	}
	defer tb.close()
	m := b.pipelineModel()
	p, err := b.plan(ctx, tb, m, false)
	if err != nil {
		return fmt.Errorf("plan %s: %w", m, err)
	}
	return b.overhead(ctx, tb, p, m)
}

// adaptationLimited measures adaptation with the edge limited.
func (b *bencher) adaptationLimited(ctx context.Context) error {
	tb, err := b.newTestbed(ctx, b.limited())
	if err != nil {
		return err
	}
	defer tb.close()
	return b.adaptation(ctx, tb, adaptModel)
}

// execute runs plan over n synthetic inputs on its own connection.
func execute(ctx context.Context, tb *testbed, p *tr.Planned, opts tr.ExecOptions, n int) (*tr.Outcome, error) {
	c, err := tb.srv.Dial(ctx)
	if err != nil {
		return nil, err
	}
	opts.Planned, opts.Client, opts.Dial = p, c, tb.srv.Dial
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
		How:    fmt.Sprintf("Execute, 1 in flight, %d requests: median of total - (edge + encode + decode + server + post + bytes/link rate + rtt + queue)", n)})
	b.add(Figure{Section: "overhead", Scope: scope, Metric: "median codec compute", Value: msf(s.Codec), Unit: "ms",
		Detail: fmt.Sprintf("overhead counting it too: %.1f ms, %.1f%%", msf(s.OverheadWithCodec), 100*s.OverheadWithCodecShare),
		How:    "same run: median of encode + decode (the edge's encoding, the server's decoding and its answer's encoding)"})
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

// onTrace runs opts over the trace, which starts with the first request.
func onTrace(ctx context.Context, tb *testbed, p *tr.Planned, t transport.Trace, opts tr.ExecOptions, n int) (*tr.Outcome, error) {
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tb.state.Set(t.At(0))
	opts.OnStart = func(start time.Time) { go t.Play(tctx, tb.state, start) }
	return execute(ctx, tb, p, opts, n)
}

// adaptInFlight is the requests in flight of every adaptation run: one.
// The planner minimises one request's latency; with requests queued
// behind each other a request's latency is mostly its queue's, which that
// objective does not price (the throughput objective does).
const adaptInFlight = 1

// adaptModel is the adaptation section's model, in both modes. On the
// edge at 0.1 cores, AlexNet's early cut (cut 3, about 120 kB with lz4) is
// predicted at about 70 ms on 50 Mbit/s against edge-only's 125 ms, and
// edge-only is best at 2 Mbit/s: a step with something to adapt to.
// YOLOv8n@320's best split there sends 350 kB and measured no faster than
// edge-only (126 against 112 ms a request, both measured here).
var adaptModel = model{"alexnet", 224}

// adaptRuns returns the requests per run and the rounds of the
// adaptation section. A switch costs the requests caught on the link by
// the step (rescued, they still take a few times a request's time), so a
// run must be long enough before the step to earn it back, as a
// deployment would be; the step comes after adaptBefore of them. After
// the step a static split pays about 0.5 s a request, so statics far
// behind the best run in the first round only (see adaptation). Quick
// mode runs one round of 50: about a minute.
func (b *bencher) adaptRuns() (requests, rounds int) {
	if b.opts.Quick {
		return 50, 1
	}
	return 80, 5
}

// adaptBefore is the share of an adaptation run's requests that start
// before the step.
const adaptBefore = 0.6

// beforeStep is how many of n requests start before the step.
func beforeStep(n int) int { return max(int(adaptBefore*float64(n)), 2) }

// stepTrace is the adaptation trace: an uplink of 50 Mbit/s that steps
// to 2 Mbit/s at step, downlink 100 Mbit/s and rtt 10 ms throughout.
func stepTrace(step time.Duration) transport.Trace {
	return transport.Trace{
		{At: 0, Link: transport.Link{Up: 50e6, Down: 100e6, RTT: 10 * time.Millisecond}},
		{At: step, Link: transport.Link{Up: 2e6, Down: 100e6, RTT: 10 * time.Millisecond}},
	}
}

// pace is the predicted time between requests of pl run with up to
// inFlight in flight, as the runtime pipelines it: edge-only requests
// follow each other on the edge; a split plan runs as many in flight as
// keep its slowest stage (edge+encode, up+down, server+decode) busy, so
// one finishes every slowest stage's time, or every whole request's time
// over inFlight when that caps the depth.
func pace(pl planner.Plan, inFlight int) time.Duration {
	bd := pl.Breakdown
	if pl.Candidate.Kind == planner.KindEdgeOnly {
		return bd.Edge
	}
	e, l, s := bd.Edge+bd.Encode, bd.Up+bd.Down, bd.Server+bd.Decode
	slowest := max(e, l, s)
	if slowest <= 0 || inFlight < 1 {
		return 0
	}
	whole := e + l + s + bd.RTT
	depth := min(max(int(math.Ceil(float64(whole)/float64(slowest))), 1), inFlight)
	return max(slowest, whole/time.Duration(depth))
}

// planName names a plan with its codec.
func planName(pl planner.Plan) string {
	return strings.TrimSpace(pl.Candidate.Name() + " " + pl.Encoding.Codec)
}

// adaptStatics checks that the trace has something to adapt to (a split
// cut best on its first link, another plan, edge-only or a cut sending
// less, on its last) and returns the
// static plans to compare with: each step's best and edge-only. It
// leaves p priced at the first link.
func adaptStatics(p *tr.Planned, t transport.Trace) ([]planner.Plan, error) {
	var statics []planner.Plan
	seen := map[string]bool{}
	add := func(pl planner.Plan) {
		if name := planName(pl); pl.Feasible && !seen[name] {
			seen[name] = true
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
	first, last := t[0].Link, t[len(t)-1].Link
	p.Reprice(planner.Link(last))
	after := p.Ranked[0]
	p.Reprice(planner.Link(first))
	before := p.Ranked[0]
	if before.Candidate.Kind != planner.KindCut || !before.Feasible {
		return nil, fmt.Errorf("with the edge at %g cores, %s is best at %s, not a split cut: nothing to adapt from", p.EdgeCPU, planName(before), first)
	}
	if planName(after) == planName(before) {
		return nil, fmt.Errorf("with the edge at %g cores, %s is best at %s and at %s: nothing to adapt to", p.EdgeCPU, planName(before), first, last)
	}
	return statics, nil
}

// adaptSetup is what the adaptation runs share: the model planned for the
// slower edge and priced at the trace's first link, the statics, and the
// step's time with how it was found.
type adaptSetup struct {
	p         *tr.Planned
	statics   []planner.Plan
	step      time.Duration
	predicted time.Duration // the 50 Mbit/s plan's predicted interval
	measured  time.Duration // and its measured one
}

// adaptation plans the model for tb's edge (limited by the kernel), and
// runs it adaptively on a link that steps from 50 to 2 Mbit/s with about
// adaptBefore of the requests before the step, then each static plan that
// is best somewhere on the trace (and edge-only) on the same trace, in
// interleaved rounds; a static more than twice as slow as the best in the
// first round is not run again.
func (b *bencher) adaptation(ctx context.Context, tb *testbed, m model) error {
	t0 := time.Now()
	n, rounds := b.adaptRuns()
	st, err := b.adaptSetup(ctx, tb, m, n)
	if err != nil {
		return fmt.Errorf("adaptation %s: %w", m, err)
	}
	t := stepTrace(st.step)
	scope := fmt.Sprintf("%s, %s, 50 -> 2 Mbit/s at %.2f s", tb.regime, m, st.step.Seconds())
	b.logf("adaptation %s: statics %s", scope, strings.Join(names(st.statics), ", "))
	var adaptive []*tr.Outcome
	static := make([][]time.Duration, len(st.statics))
	for round := 0; round < rounds; round++ {
		exec := tr.ExecOptions{Adaptive: true, InFlight: adaptInFlight}
		out, err := onTrace(ctx, tb, st.p, t, exec, n)
		if err != nil {
			return fmt.Errorf("adaptive run %d: %w", round+1, err)
		}
		adaptive = append(adaptive, out)
		for i, pl := range st.statics {
			if round > 0 && farBehind(static, i) {
				continue
			}
			exec := tr.ExecOptions{Plan: pl, InFlight: adaptInFlight}
			out, err := onTrace(ctx, tb, st.p, t, exec, n)
			if err != nil {
				return fmt.Errorf("static %s run %d: %w", planName(pl), round+1, err)
			}
			static[i] = append(static[i], tr.Summarize(out.Records, out.Wall).MeanTotal)
		}
	}
	tb.state.Set(transport.Link{})
	b.adaptFigures(scope, tb.regime, st, n, adaptive, static)
	b.logf("adaptation took %.1f s (%d round(s) of up to %d runs of %d requests)", time.Since(t0).Seconds(), rounds, 1+len(st.statics), n)
	return nil
}

// farBehind reports whether static i's first-round mean was over twice
// the best first-round static mean: later rounds cannot make it the best
// static, so they skip it.
func farBehind(static [][]time.Duration, i int) bool {
	best := time.Duration(math.MaxInt64)
	for _, runs := range static {
		if len(runs) > 0 {
			best = min(best, runs[0])
		}
	}
	return len(static[i]) > 0 && static[i][0] > 2*best
}

// adaptSetup plans m for tb's edge, checks that the trace has
// something to adapt to, and times the step: the 50 Mbit/s plan runs
// beforeStep(n) requests on the 50 Mbit/s link, and the step comes when, at their
// measured pace (the median interval between their starts), the next
// would start. Measured rather than predicted:
// the runtime adds its own overhead to the planner's stages.
func (b *bencher) adaptSetup(ctx context.Context, tb *testbed, m model, n int) (*adaptSetup, error) {
	p, err := b.plan(ctx, tb, m, false)
	if err != nil {
		return nil, fmt.Errorf("plan with the %s: %w", tb.regime, err)
	}
	t := stepTrace(time.Second) // when the step comes does not change the plans
	statics, err := adaptStatics(p, t)
	if err != nil {
		return nil, err
	}
	first, k := p.Ranked[0], beforeStep(n)
	// Planning leaves a large heap (AlexNet's weights, once per profiled
	// segment) whose collection, on a limited edge, would slow the timing
	// run below.
	goruntime.GC()
	out, err := onTrace(ctx, tb, p, t[:1], tr.ExecOptions{Plan: first, InFlight: adaptInFlight}, k)
	tb.state.Set(transport.Link{})
	if err != nil {
		return nil, fmt.Errorf("time %s at %s: %w", planName(first), t[0].Link, err)
	}
	if len(out.Records) < k {
		return nil, fmt.Errorf("time %s at %s: %d of %d requests ran", planName(first), t[0].Link, len(out.Records), k)
	}
	gaps := make([]time.Duration, k-1)
	for i := range gaps {
		gaps[i] = out.Records[i+1].Start - out.Records[i].Start
	}
	measured := quantile.MedianDuration(gaps)
	st := &adaptSetup{p: p, statics: statics, predicted: pace(first, adaptInFlight), measured: measured,
		step: (time.Duration(k) * measured).Round(10 * time.Millisecond)}
	b.logf("adaptation %s: %s every %.1f ms measured, %.1f ms predicted", m, planName(first), msf(st.measured), msf(st.predicted))
	return st, nil
}

// adaptFigures reports the adaptation runs: the median requests to switch
// after the step, and the median adaptive mean over the best static's
// median mean. static[i] holds statics[i]'s mean per round.
func (b *bencher) adaptFigures(scope string, r regime, st *adaptSetup, n int, adaptive []*tr.Outcome, static [][]time.Duration) {
	step, statics := st.step, st.statics
	var switches, means []float64
	var moves, before []string
	for _, out := range adaptive {
		k, detail := switchDelay(out.Records, step)
		switches = append(switches, k)
		moves = append(moves, detail)
		means = append(means, msf(tr.Summarize(out.Records, out.Wall).MeanTotal))
		started := 0
		for _, r := range out.Records {
			if r.Start < step {
				started++
			}
		}
		before = append(before, strconv.Itoa(started))
	}
	how := fmt.Sprintf("Execute, %s (planned and run), %d requests, %d in flight; %d round(s) of adaptive then each static, interleaved (a static over twice the best static in round 1 runs once); step after %d requests at the 50 Mbit/s plan's measured interval (%.1f ms; predicted %.1f ms from the plan's stages, pre-processing not priced)",
		r.how(), n, adaptInFlight, len(adaptive), beforeStep(n), msf(st.measured), msf(st.predicted))
	b.add(Figure{Section: "adaptation", Scope: scope, Metric: "requests to switch after the step", Value: medianSwitch(switches), Unit: "req",
		Detail: fmt.Sprintf("runs: %s; requests started before the step: %s of %d", strings.Join(moves, "; "), strings.Join(before, ", "), n),
		How:    how + "; median over adaptive runs of the requests started after the step until the first on another plan"})
	if len(statics) == 0 {
		return
	}
	meds := make([]float64, len(statics))
	best := 0
	for i := range statics {
		if meds[i] = median(msList(static[i])); meds[i] < meds[best] {
			best = i
		}
	}
	var others []string
	for i, pl := range statics {
		if i != best {
			others = append(others, fmt.Sprintf("%s %.1f ms (runs %s)", planName(pl), meds[i], msText(msList(static[i]))))
		}
	}
	detail := fmt.Sprintf("adaptive %.1f ms (runs %s) vs static %s %.1f ms (runs %s)", median(means), msText(means), planName(statics[best]), meds[best], msText(msList(static[best])))
	if len(others) > 0 {
		detail += "; other statics " + strings.Join(others, ", ")
	}
	b.add(Figure{Section: "adaptation", Scope: scope, Metric: "adaptive mean / best static mean", Value: ratio(median(means), meds[best]), Unit: "x",
		Detail: detail, How: how + "; median adaptive mean over the best static's median mean; statics: each step's planned best and edge-only"})
}

// medianSwitch is the median of requests to switch, counting a run that
// never switched (NaN) as never: NaN when half of them or more did not.
func medianSwitch(xs []float64) float64 {
	inf := make([]float64, len(xs))
	for i, x := range xs {
		inf[i] = x
		if math.IsNaN(x) {
			inf[i] = math.Inf(1)
		}
	}
	if m := median(inf); !math.IsInf(m, 1) && !math.IsNaN(m) {
		return m
	}
	return math.NaN()
}

// msList converts durations to milliseconds.
func msList(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = msf(d)
	}
	return out
}

// msText lists milliseconds to one decimal.
func msText(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatFloat(x, 'f', 1, 64)
	}
	return strings.Join(s, ", ")
}

// names names each plan with its codec.
func names(pls []planner.Plan) []string {
	out := make([]string, len(pls))
	for i, pl := range pls {
		out[i] = planName(pl)
	}
	return out
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
	before := recordPlan(recs[first-1])
	for i := first; i < len(recs); i++ {
		if now := recordPlan(recs[i]); now != before {
			return float64(i - first), fmt.Sprintf("%s -> %s at request %d (first after the step: %d)", before, now, i, first)
		}
	}
	return math.NaN(), fmt.Sprintf("stayed on %s after the step (%d requests after it)", before, len(recs)-first)
}

// recordPlan names the plan a record was made for, with its codec.
func recordPlan(r tr.Record) string {
	name := r.Plan
	if r.Plan == planner.KindCut.String() {
		name = fmt.Sprintf("cut %d", r.Cut)
	}
	return strings.TrimSpace(name + " " + r.Codec)
}
