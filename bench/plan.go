package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"tracr/engine"
	"tracr/planner"
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

// testbed is a loopback server with an emulated link and a connection.
type testbed struct {
	state *transport.LinkState
	srv   *tr.Server
	c     *transport.Client
}

func (b *bencher) newTestbed(ctx context.Context) (*testbed, error) {
	state := transport.NewLinkState(transport.Link{})
	srv, err := tr.Connect(ctx, tr.ServerSpec{Link: state, Local: tr.LocalServer{Threads: oneThread.Threads, ProfileDir: b.profiles}})
	if err != nil {
		return nil, err
	}
	c, err := srv.Dial(ctx)
	if err != nil {
		srv.Close()
		return nil, err
	}
	return &testbed{state: state, srv: srv, c: c}, nil
}

func (tb *testbed) close() {
	tb.c.Close()
	tb.srv.Close()
}

// plan profiles a model on both sides (no probe: the link is emulated).
func (b *bencher) plan(ctx context.Context, tb *testbed, m model) (*tr.Planned, error) {
	tb.state.Set(transport.Link{})
	unlimited := planner.Link{Up: 1e9, Down: 1e9, RTT: time.Millisecond}
	return tr.Plan(ctx, tb.c, tr.PlanOptions{Model: m.name, ImgSize: m.size, EdgeThreads: 1, Repeats: b.repeats,
		Link: &unlimited, Preload: tb.srv.Preload, ProfileDir: b.profiles})
}

// planning measures, per model and link, the planner's choice against the
// other top candidates and the two baselines.
func (b *bencher) planning(ctx context.Context) error {
	tb, err := b.newTestbed(ctx)
	if err != nil {
		return err
	}
	defer tb.close()
	var regrets, errs []float64
	for _, m := range b.models() {
		p, err := b.plan(ctx, tb, m)
		if err != nil {
			return fmt.Errorf("plan %s: %w", m, err)
		}
		m.size = p.Spec.ImgSize
		b.logf("%s planned in %.1f s (%d candidates)", m, p.Took.Seconds(), len(p.Ranked))
		for _, l := range b.links() {
			r, e, err := b.cell(ctx, tb, p, m, l)
			if err != nil {
				return fmt.Errorf("%s on %s: %w", m, l.name, err)
			}
			if !math.IsNaN(r) {
				regrets, errs = append(regrets, r), append(errs, e)
			}
		}
	}
	tb.state.Set(transport.Link{})
	how := "median over the model x link cells above"
	b.add(Figure{Section: "regret", Scope: "all cells", Metric: "median regret", Value: median(regrets), Unit: "x",
		Detail: maxText(regrets), How: how})
	b.add(Figure{Section: "prediction", Scope: "all cells", Metric: "median |pred-meas|/meas", Value: median(errs), Unit: "x",
		Detail: fmt.Sprintf("%d cells", len(errs)), How: how + "; chosen plan, end to end"})
	return nil
}

// cell measures one model on one link: the planner's top three, edge-only
// and server-only, each with Measure (one request at a time, a warm-up,
// then the median of repeats). It returns the regret and the chosen plan's
// prediction error (NaN when nothing could be measured).
func (b *bencher) cell(ctx context.Context, tb *testbed, p *tr.Planned, m model, l link) (float64, float64, error) {
	p.Reprice(planner.Link(l.l))
	tb.state.Set(l.l)
	cands := p.Contenders()
	scope := m.String() + " " + l.name
	var skipped []string
	best, bestName := time.Duration(math.MaxInt64), ""
	var chosen *tr.Measurement
	for i, pl := range cands {
		name := pl.Candidate.Name() + " " + pl.Encoding.Codec
		if pl.Breakdown.Total > b.budget() {
			skipped = append(skipped, fmt.Sprintf("%s (predicted %.1f s)", strings.TrimSpace(name), pl.Breakdown.Total.Seconds()))
			continue
		}
		meas, err := p.Measure(ctx, tb.c, pl, b.repeats)
		if err != nil {
			return 0, 0, err
		}
		if i == 0 {
			chosen = &meas
		}
		if meas.Total < best {
			best, bestName = meas.Total, strings.TrimSpace(name)
		}
	}
	how := fmt.Sprintf("Measure: loopback SSH, emulated link, 1 request at a time, median of %d; top 3 + edge-only + server-only; over %.1f s predicted skipped", b.repeats, b.budget().Seconds())
	if chosen == nil {
		b.add(Figure{Section: "regret", Scope: scope, Metric: "planned / best measured", Value: math.NaN(), Unit: "x",
			Detail: "planned candidate over budget, not measured; skipped " + strings.Join(skipped, ", "), How: how})
		return math.NaN(), math.NaN(), nil
	}
	top := cands[0]
	regret := ratio(float64(chosen.Total), float64(best))
	predErr := math.Abs(float64(top.Breakdown.Total-chosen.Total)) / float64(chosen.Total)
	detail := fmt.Sprintf("planned %s %.1f ms vs best %s %.1f ms", strings.TrimSpace(top.Candidate.Name()+" "+top.Encoding.Codec), msf(chosen.Total), bestName, msf(best))
	if len(skipped) > 0 {
		detail += "; skipped " + strings.Join(skipped, ", ")
	}
	b.add(Figure{Section: "regret", Scope: scope, Metric: "planned / best measured", Value: regret, Unit: "x", Detail: detail, How: how})
	b.add(Figure{Section: "prediction", Scope: scope, Metric: "|pred-meas|/meas", Value: predErr, Unit: "x",
		Detail: fmt.Sprintf("predicted %.1f ms, measured %.1f ms", msf(top.Breakdown.Total), msf(chosen.Total)), How: "chosen plan, end to end, same Measure"})
	b.logf("%s: regret %.3f, prediction error %.3f", scope, regret, predErr)
	return regret, predErr, nil
}

// maxText describes the largest regret.
func maxText(xs []float64) string {
	if len(xs) == 0 {
		return "no cell measured"
	}
	return fmt.Sprintf("max %.3fx over %d cells", slices.Max(xs), len(xs))
}
