package bench

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"tracr/engine"
	"tracr/planner"
	"tracr/quantile"
	tr "tracr/runtime"
	"tracr/transport"
)

// link is a named emulated link.
type link struct {
	name string
	l    transport.Link
}

// links are the sweeps' link presets (transport.Presets): Neurosurgeon's
// measured 3G, LTE and Wi-Fi rates and a gigabit LAN, without cat1; quick
// mode drops 3g too, whose megabyte transfers take seconds each.
func (b *bencher) links() []link {
	names := []string{"3g", "4g", "wifi", "gigabit"}
	if b.opts.Quick {
		names = names[1:]
	}
	var all []link
	for _, n := range names {
		p, _ := transport.LookupPreset(n) // TestBenchLinks checks they exist
		all = append(all, link{p.Name, p.Link})
	}
	return all
}

// model is a zoo model at an input size.
type model struct {
	name string
	size int
}

func (m model) String() string { return fmt.Sprintf("%s@%d", m.name, m.size) }

// models are the planning sections' models; every profiled cut of each
// is measured (about 35: the profiler's default cut set).
func (b *bencher) models() []model {
	if b.opts.Quick {
		// Profiles are measured fresh in every run (see bencher.profiles);
		// AlexNet's take 25 s here, which quick cannot afford.
		return []model{{"mobilenetv2", 224}, {"yolov8n", 160}}
	}
	return []model{{"alexnet", 0}, {"yolov8n", 320}}
}

// budget is the longest predicted request measured; slower candidates are
// reported as skipped.
func (b *bencher) budget() time.Duration {
	if b.opts.Quick {
		return 1500 * time.Millisecond
	}
	return 4 * time.Second
}

// oneThread is the ONNX Runtime configuration of both sides: edge and
// server share this machine's cores, and single-threaded sessions keep
// one side's compute from depending on the other's load.
var oneThread = engine.Options{Threads: 1}

// regime is how the edge runs: as it is (edgeCPU 0, the server in this
// process), or limited to edgeCPU cores by the kernel (the server a
// separate tracr serve process, not limited).
type regime struct{ edgeCPU float64 }

func (r regime) String() string {
	if r.edgeCPU > 0 {
		return fmt.Sprintf("edge %g cores", r.edgeCPU)
	}
	return "edge as is"
}

// how says how the regime's edge and server run, for a figure's How.
func (r regime) how() string {
	if r.edgeCPU > 0 {
		return fmt.Sprintf("edge (this process) limited to %g cores by the kernel's CPU bandwidth control, server a separate tracr serve process, not limited", r.edgeCPU)
	}
	return "edge and server unlimited, the server in this process"
}

// limited is the regime of the limited edge.
func (b *bencher) limited() regime { return regime{edgeCPU: b.opts.EdgeCPU} }

// testbed is a loopback server with an emulated link and a connection.
type testbed struct {
	regime regime
	state  *transport.LinkState
	srv    *tr.Server
	c      *transport.Client
}

func (b *bencher) newTestbed(ctx context.Context, r regime) (*testbed, error) {
	state := transport.NewLinkState(transport.Link{})
	srv, err := tr.Connect(ctx, tr.ServerSpec{Link: state, EdgeCPU: r.edgeCPU,
		Local: tr.LocalServer{Threads: oneThread.Threads, ProfileDir: b.profiles, Binary: b.opts.Binary}})
	if err != nil {
		return nil, err
	}
	c, err := srv.Dial(ctx)
	if err != nil {
		srv.Close()
		return nil, err
	}
	return &testbed{regime: r, state: state, srv: srv, c: c}, nil
}

func (tb *testbed) close() {
	tb.c.Close()
	tb.srv.Close()
}

// plan profiles a model on both sides (no probe: the link is emulated);
// lossy admits the lossy codecs (fp16, int8, JPEG) as `tracr plan --lossy`.
func (b *bencher) plan(ctx context.Context, tb *testbed, m model, lossy bool) (*tr.Planned, error) {
	tb.state.Set(transport.Link{})
	unlimited := planner.Link{Up: 1e9, Down: 1e9, RTT: time.Millisecond}
	return tr.Plan(ctx, tb.c, tr.PlanOptions{Model: m.name, ImgSize: m.size, EdgeThreads: 1, Repeats: b.repeats,
		Link: &unlimited, Preload: tb.srv.Preload, ProfileDir: b.profiles, EdgeCPU: tb.regime.edgeCPU, AllowLossy: lossy})
}

// planLossy is whether the planning sections admit lossy codecs: they
// do, in both regimes alike, so that the planner chooses among everything
// `tracr plan --lossy` would (on the slow links the lossless choices are
// all edge-only); the figures are latencies, not accuracy (see the codec
// section for that).
const planLossy = true

// planningAsIs and planningLimited are the planning sections of the two
// regimes.
func (b *bencher) planningAsIs(ctx context.Context) error    { return b.planning(ctx, regime{}) }
func (b *bencher) planningLimited(ctx context.Context) error { return b.planning(ctx, b.limited()) }

// cellResult is one model x link cell's outcome.
type cellResult struct {
	regret, predErr float64 // NaN when the chosen plan was not measured
	// chosen is the planned candidate's kind, name the plan's name.
	chosen planner.Kind
	name   string
}

// planning measures, per model and link, the planner's choice against the
// oracle set, with the edge in regime r.
func (b *bencher) planning(ctx context.Context, r regime) error {
	tb, err := b.newTestbed(ctx, r)
	if err != nil {
		return err
	}
	defer tb.close()
	var regrets, errs []float64
	var split, cells int
	var choices []string
	for _, m := range b.models() {
		p, err := b.plan(ctx, tb, m, planLossy)
		if err != nil {
			return fmt.Errorf("plan %s: %w", m, err)
		}
		m.size = p.Spec.ImgSize
		b.logf("%s, %s: planned in %.1f s (%d candidates)", r, m, p.Took.Seconds(), len(p.Ranked))
		for _, l := range b.links() {
			res, err := b.cell(ctx, tb, p, m, l)
			if err != nil {
				return fmt.Errorf("%s on %s: %w", m, l.name, err)
			}
			cells++
			if res.chosen != planner.KindEdgeOnly {
				split++
			}
			choices = append(choices, fmt.Sprintf("%s %s: %s", m, l.name, res.name))
			if !math.IsNaN(res.regret) {
				regrets, errs = append(regrets, res.regret), append(errs, res.predErr)
			}
		}
	}
	tb.state.Set(transport.Link{})
	scope := r.String() + ", all cells"
	how := "over the model x link cells above; " + r.how()
	b.add(Figure{Section: "regret", Scope: scope, Metric: "median regret", Value: median(regrets), Unit: "x",
		Detail: maxText(regrets), How: "median " + how})
	worst := math.NaN()
	if len(regrets) > 0 {
		worst = slices.Max(regrets)
	}
	b.add(Figure{Section: "regret", Scope: scope, Metric: "worst regret", Value: worst, Unit: "x",
		Detail: fmt.Sprintf("%d cells measured", len(regrets)), How: "max " + how})
	b.add(Figure{Section: "prediction", Scope: scope, Metric: "median |pred-meas|/meas", Value: median(errs), Unit: "x",
		Detail: fmt.Sprintf("%d cells", len(errs)), How: "median " + how + "; chosen plan, end to end"})
	b.add(Figure{Section: "regret", Scope: scope, Metric: "cells choosing a split or server-only", Value: float64(split), Unit: "cells",
		Detail: fmt.Sprintf("%d of %d: %s", split, cells, strings.Join(choices, "; ")), How: "the planner's choice per cell; " + r.how()})
	return nil
}

// cell measures one model on one link: every plan of the oracle set (the
// planner's top three, every profiled cut, edge-only and both
// server-only plans), each with Measure (one request at a time, a
// warm-up, then the median of repeats). The sweep's fastest plans and the
// planner's choice are then measured again side by side (confirm): the
// fastest of some thirty medians, each taken once, is biased low by its
// own noise (the winner's curse) and by whatever the machine did while
// it ran. It returns the regret of the planner's choice over the best
// confirmed plan and the choice's prediction error against its confirmed
// latency (NaN when it could not be measured).
func (b *bencher) cell(ctx context.Context, tb *testbed, p *tr.Planned, m model, l link) (cellResult, error) {
	p.Reprice(planner.Link(l.l))
	tb.state.Set(l.l)
	top := p.Ranked[0]
	res := cellResult{regret: math.NaN(), predErr: math.NaN(), chosen: top.Candidate.Kind, name: planName(top)}
	set := p.Oracle(1)
	scope := fmt.Sprintf("%s, %s %s", tb.regime, m, l.name)
	var skipped []string
	var sweep []tr.Measurement
	chosen := -1
	for _, pl := range set {
		name := planName(pl)
		if pl.Breakdown.Total > b.budget() {
			skipped = append(skipped, fmt.Sprintf("%s (predicted %.1f s)", name, pl.Breakdown.Total.Seconds()))
			continue
		}
		meas, err := p.Measure(ctx, tb.c, pl, b.repeats)
		if err != nil {
			return res, fmt.Errorf("measure %s: %w", name, err)
		}
		if pl.Candidate.Name() == top.Candidate.Name() {
			chosen = len(sweep)
		}
		sweep = append(sweep, meas)
	}
	how := fmt.Sprintf("Measure: loopback SSH, emulated link, 1 request at a time, median of %d; lossy codecs admitted; oracle set: planner's top 3, every profiled cut, edge-only, server-only raw and JPEG; over %.1f s predicted skipped; then the chosen plan and the sweep's %d fastest others again, in %d interleaved rounds, median of the rounds; %s",
		b.repeats, b.budget().Seconds(), confirmTop, b.confirmRounds(), tb.regime.how())
	skipText := ""
	if len(skipped) > 0 {
		skipText = fmt.Sprintf("; skipped %d: %s", len(skipped), strings.Join(skipped, ", "))
	}
	if chosen < 0 {
		b.add(Figure{Section: "regret", Scope: scope, Metric: "planned / best measured", Value: math.NaN(), Unit: "x",
			Detail: fmt.Sprintf("chose %s, over budget or infeasible, not measured%s", planName(top), skipText), How: how})
		return res, nil
	}
	sweepBest := slices.MinFunc(sweep, func(a, b tr.Measurement) int { return cmp.Compare(a.Total, b.Total) })
	sweepRegret := ratio(float64(sweep[chosen].Total), float64(sweepBest.Total))
	conf, err := b.confirm(ctx, tb, p, sweep, chosen)
	if err != nil {
		return res, err
	}
	best := slices.MinFunc(conf, func(a, b tr.Measurement) int { return cmp.Compare(a.Total, b.Total) })
	got := conf[0] // confirm puts the chosen plan first
	res.regret = ratio(float64(got.Total), float64(best.Total))
	res.predErr = math.Abs(float64(top.Breakdown.Total-got.Total)) / float64(got.Total)
	detail := fmt.Sprintf("chose %s: %.1f ms; best of %d confirmed: %s %.1f ms (sweep of %d, one median each: chose %.1f ms, best %s %.1f ms, %.3fx)%s",
		planName(top), msf(got.Total), len(conf), planName(best.Plan), msf(best.Total), len(sweep),
		msf(sweep[chosen].Total), planName(sweepBest.Plan), msf(sweepBest.Total), sweepRegret, skipText)
	b.add(Figure{Section: "regret", Scope: scope, Metric: "planned / best measured", Value: res.regret, Unit: "x", Detail: detail, How: how})
	b.add(Figure{Section: "prediction", Scope: scope, Metric: "|pred-meas|/meas", Value: res.predErr, Unit: "x",
		Detail: fmt.Sprintf("chose %s: predicted %.1f ms, measured %.1f ms", planName(top), msf(top.Breakdown.Total), msf(got.Total)),
		How:    fmt.Sprintf("chosen plan, end to end, same Measure, median of the %d confirming rounds; %s", b.confirmRounds(), tb.regime.how())})
	b.logf("%s: chose %s, regret %.3f (sweep %.3f), prediction error %.3f (%d measured)", scope, planName(top), res.regret, sweepRegret, res.predErr, len(sweep))
	return res, nil
}

// confirmTop is how many of the sweep's fastest plans, besides the
// planner's choice, confirm measures again.
const confirmTop = 3

// confirmRounds is how many interleaved rounds confirm runs.
func (b *bencher) confirmRounds() int {
	if b.opts.Quick {
		return 2
	}
	return 3
}

// confirm measures the planner's choice (sweep[chosen]) and the sweep's
// confirmTop fastest other plans again, side by side: in each round every one
// of them once (Measure, median of repeats), the order rotated from round
// to round so no plan always runs first or after the same one. It
// returns each plan's median over the rounds, the chosen plan first.
func (b *bencher) confirm(ctx context.Context, tb *testbed, p *tr.Planned, sweep []tr.Measurement, chosen int) ([]tr.Measurement, error) {
	totals := make([]time.Duration, len(sweep))
	for i, m := range sweep {
		totals[i] = m.Total
	}
	picked := confirmSet(totals, chosen, confirmTop)
	rounds := make([][]tr.Measurement, len(picked))
	for r := range b.confirmRounds() {
		for k := range picked {
			j := (k + r) % len(picked)
			meas, err := p.Measure(ctx, tb.c, sweep[picked[j]].Plan, b.repeats)
			if err != nil {
				return nil, fmt.Errorf("confirm %s: %w", planName(sweep[picked[j]].Plan), err)
			}
			rounds[j] = append(rounds[j], meas)
		}
	}
	out := make([]tr.Measurement, len(picked))
	for j, ms := range rounds {
		out[j] = medianMeasurement(ms)
	}
	return out, nil
}

// confirmSet is the indexes confirm measures: chosen, then the n
// fastest others by their totals, fastest first (ties in index order).
func confirmSet(totals []time.Duration, chosen, n int) []int {
	order := make([]int, len(totals))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(x, y int) int { return cmp.Compare(totals[x], totals[y]) })
	picked := []int{chosen}
	for _, i := range order {
		if i != chosen && len(picked) <= n {
			picked = append(picked, i)
		}
	}
	return picked
}

// medianMeasurement is one plan's measurements over rounds, each figure
// the median of the rounds'.
func medianMeasurement(ms []tr.Measurement) tr.Measurement {
	pick := func(f func(tr.Measurement) time.Duration) time.Duration {
		var ds []time.Duration
		for _, m := range ms {
			ds = append(ds, f(m))
		}
		return quantile.MedianDuration(ds)
	}
	out := ms[0]
	out.Total = pick(func(m tr.Measurement) time.Duration { return m.Total })
	out.Edge = pick(func(m tr.Measurement) time.Duration { return m.Edge })
	out.Server = pick(func(m tr.Measurement) time.Duration { return m.Server })
	out.Runs = 0
	for _, m := range ms {
		out.Runs += m.Runs
	}
	return out
}

// maxText describes the largest regret.
func maxText(xs []float64) string {
	if len(xs) == 0 {
		return "no cell measured"
	}
	return fmt.Sprintf("max %.3fx over %d cells", slices.Max(xs), len(xs))
}
