package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"tracr/cpulimit"
	"tracr/graph"
	"tracr/planner"
	"tracr/profiler"
	"tracr/runtime"
)

func planCommand() *cli.Command {
	return &cli.Command{
		Name:      "plan",
		Usage:     "profile both sides, probe the link and rank every way to split the model",
		ArgsUsage: " ",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "zoo name (see tracr models) or ONNX file", Required: true},
			&cli.IntFlag{Name: "img-size", Usage: "input size (0 = the model's default)"},
			inputShapeFlag(),
			&cli.StringFlag{Name: "task", Usage: "for an ONNX file: classify or detect, so bytes are measured on a pre-processed image instead of random values"},
			&cli.StringFlag{Name: "objective", Value: "latency", Usage: "latency or throughput"},
			&cli.IntFlag{Name: "threads", Usage: "edge ONNX Runtime threads (0 = ONNX Runtime's default)"},
			&cli.IntFlag{Name: "repeats", Usage: "timed runs per profile measurement (0 = default)"},
			&cli.BoolFlag{Name: "fresh", Usage: "profile both sides again even when profiles are cached (they keep the load the machine had then)"},
			&cli.Float64Flag{Name: "edge-slowdown", Value: 1, Usage: "emulate an edge device this many times slower than this machine (edge times priced at this factor)"},
			&cli.BoolFlag{Name: "lossy", Usage: "also consider lossy codecs (fp16, int8, JPEG)"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			&cli.BoolFlag{Name: "validate", Usage: "run the top three plans and both baselines for real; print predicted vs measured"},
			&cli.IntFlag{Name: "validate-runs", Value: 10, Usage: "timed requests per validated plan"},
		}, serverFlags()...),
		Action: func(c *cli.Context) error {
			obj, err := planner.ParseObjective(c.String("objective"))
			if err != nil {
				return fmt.Errorf("--objective: %w", err)
			}
			if c.Float64("edge-slowdown") == 0 {
				return fmt.Errorf("--edge-slowdown 0: want a factor from 1 (off) to %d", runtime.MaxEdgeSlowdown)
			}
			if c.Float64("edge-slowdown") > 1 && c.Float64("edge-cpu") > 0 {
				return fmt.Errorf("--edge-cpu and --edge-slowdown exclude each other: the limit makes a slower edge for real, the slowdown emulates one; choose one")
			}
			shapes, err := inputShapes(c)
			if err != nil {
				return err
			}
			sc, err := connect(c.Context, c)
			if err != nil {
				return err
			}
			defer sc.Close()
			p, err := runtime.Plan(c.Context, sc.Client, runtime.PlanOptions{
				Model: c.String("model"), ImgSize: c.Int("img-size"), InputShapes: shapes, Task: runtime.ModelTask{Task: c.String("task")}, EdgeThreads: c.Int("threads"), EdgeSlowdown: c.Float64("edge-slowdown"),
				EdgeCPU: c.Float64("edge-cpu"), Repeats: c.Int("repeats"), FreshProfiles: c.Bool("fresh"), Objective: obj, AllowLossy: c.Bool("lossy"), Preload: sc.srv.Preload,
			})
			if err != nil {
				return err
			}
			var checks []runtime.Measurement
			if c.Bool("validate") {
				if checks, err = validate(c, sc, p); err != nil {
					return err
				}
			}
			if c.Bool("json") {
				if err := writePlanJSON(c.App.Writer, p, checks); err != nil {
					return err
				}
			} else {
				writePlan(c.Context, c.App.Writer, sc.Name(), sc.Link, p)
				if checks != nil {
					writeChecks(c.App.Writer, checks)
				}
			}
			if r := regret(checks); r > maxRegret {
				return fmt.Errorf("warning: the chosen plan measured %.3fx the best measured one (over %.2f): the plan is not to be trusted; "+
					"profile again (--fresh) on a quieter machine, or raise --repeats", r, maxRegret)
			}
			return nil
		},
	}
}

// validate measures the top three plans and both baselines.
func validate(c *cli.Context, sc *serverConn, p *runtime.Planned) ([]runtime.Measurement, error) {
	var out []runtime.Measurement
	for _, pl := range p.Contenders() {
		m, err := p.Measure(c.Context, sc.Client, pl, c.Int("validate-runs"))
		if err != nil {
			return nil, fmt.Errorf("validate: %w", err)
		}
		out = append(out, m)
	}
	return out, nil
}

func mbitText(bps float64) string {
	if math.IsInf(bps, 1) {
		return "inf"
	}
	return fmt.Sprintf("%.3g", bps/1e6)
}

// crossingText names a cut's crossing tensors, shortened.
func crossingText(p *runtime.Planned, pl planner.Plan) string {
	switch pl.Candidate.Kind {
	case planner.KindEdgeOnly:
		return "(nothing)"
	case planner.KindServerJPEG:
		return "input (JPEG)"
	}
	names := p.Crossing[pl.Candidate.Cut]
	if len(names) == 0 {
		return ""
	}
	s := names[0]
	if len(s) > 28 {
		s = "…" + s[len(s)-27:]
	}
	if len(names) > 1 {
		s += fmt.Sprintf(" +%d", len(names)-1)
	}
	return s
}

func baseline(p *runtime.Planned, k planner.Kind) (planner.Plan, bool) {
	for _, pl := range p.Ranked {
		if pl.Candidate.Kind == k && pl.Feasible {
			return pl, true
		}
	}
	return planner.Plan{}, false
}

func speedup(base planner.Plan, ok bool, pl planner.Plan) string {
	if !ok || !pl.Feasible || pl.Score <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", float64(base.Score)/float64(pl.Score))
}

func writePlan(ctx context.Context, w io.Writer, server, link string, p *runtime.Planned) {
	weights := "trained weights"
	if p.Synthetic {
		weights = "synthetic weights"
	}
	fmt.Fprintf(w, "model %s (%s): %d compute nodes, %s\n", p.Source, weights, len(p.Model.Nodes()), p.Problem.Objective)
	fmt.Fprintf(w, "edge:   %s, %d threads, whole model %s ms (fusion error %.1f%%), %s\n", p.EdgeProfile.Machine.CPUModel,
		p.EdgeProfile.Threads, msText(p.EdgeProfile.Whole.Median), 100*p.EdgeProfile.FusionError, profiledAgo(p.EdgeProfile))
	if p.EdgeCPU > 0 {
		fmt.Fprintf(w, "        limited to %g cores by the kernel (its share of every %v, a cgroup CPU quota as the cap): measured at %.3f cores; profiled and priced as that device\n",
			p.EdgeCPU, cpulimit.Window, p.EdgeSpeed)
	}
	if p.EdgeSlowdown > 1 {
		fmt.Fprintf(w, "        emulating an edge device %gx slower: edge times below are priced at %gx the measured ones\n", p.EdgeSlowdown, p.EdgeSlowdown)
	}
	fmt.Fprintf(w, "server: %s, whole model %s ms, %s\n", server, msText(p.ServerProfile.Whole.Median), profiledAgo(p.ServerProfile))
	emu := ""
	if link != "" {
		emu = " (emulated " + link + ")"
	}
	fmt.Fprintf(w, "link:   up %s Mbit/s, down %s Mbit/s, rtt %s ms, probed over the SSH channel%s\n\n",
		mbitText(p.Link.Up), mbitText(p.Link.Down), msText(p.Link.RTT), emu)

	edgeOnly, eok := baseline(p, planner.KindEdgeOnly)
	serverOnly, sok := baseline(p, planner.KindServerRaw)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rank\tplan\tcrossing\tcodec\tbytes\tedge\tenc\tup\tserver\tdec\tdown\trtt\ttotal ms\tvs edge-only\tvs server-only\t")
	var excluded []planner.Plan
	for i, pl := range p.Ranked {
		b := pl.Breakdown
		if !pl.Feasible {
			excluded = append(excluded, pl)
			continue
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", i+1, pl.Candidate.Name(), crossingText(p, pl),
			pl.Encoding.Codec, pl.Encoding.Bytes, msText(b.Edge), msText(b.Encode), msText(b.Up), msText(b.Server), msText(b.Decode),
			msText(b.Down), msText(b.RTT), msText(b.Total), speedup(edgeOnly, eok, pl), speedup(serverOnly, sok, pl))
	}
	tw.Flush()
	for _, pl := range excluded {
		fmt.Fprintf(w, "not feasible: %s: %s\n", pl.Candidate.Name(), pl.Reason)
	}
	best := p.Best()
	if len(p.Tied) > 1 {
		writeTies(w, p.Tied)
		fmt.Fprintf(w, "\nchosen (first of the %d tied): %s", len(p.Tied), best.Candidate.Name())
	} else {
		fmt.Fprintf(w, "\nchosen: %s", best.Candidate.Name())
	}
	if best.Encoding.Codec != "" {
		fmt.Fprintf(w, " with %s (%d bytes up)", best.Encoding.Codec, best.Encoding.Bytes)
	}
	fmt.Fprintf(w, ": predicted %s ms", msText(best.Breakdown.Total))
	if eok {
		fmt.Fprintf(w, ", %s vs edge-only", speedup(edgeOnly, true, best))
	}
	if sok {
		fmt.Fprintf(w, ", %s vs server-only", speedup(serverOnly, true, best))
	}
	fmt.Fprintf(w, " (planning took %v: profiles, link probe, byte measurements; ranking %v)\n", p.Took.Round(time.Millisecond), p.PlanTook.Round(time.Microsecond))

	fmt.Fprintf(w, "\nbest plan by uplink bandwidth (down %s Mbit/s and rtt %s ms fixed):\n", mbitText(p.Link.Down), msText(p.Link.RTT))
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  from Mbit/s\tto Mbit/s\tplan\tcodec")
	for _, iv := range p.Breakpoints {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", mbitText(iv.From), mbitText(iv.To), iv.Plan.Candidate.Name(), iv.Plan.Encoding.Codec)
	}
	tw.Flush()
	writeMinCut(ctx, w, p)
}

// writeMinCut reports the DAG min-cut over all closed node sets next to the
// best prefix cut, both priced with per-node times.
func writeMinCut(ctx context.Context, w io.Writer, p *runtime.Planned) {
	d, err := p.DAG(ctx)
	if err != nil {
		fmt.Fprintf(w, "\nmin-cut: %v\n", err)
		return
	}
	t0 := time.Now()
	edge, cost, err := planner.MinCut(d, p.Link.Up)
	took := time.Since(t0)
	if err != nil {
		fmt.Fprintf(w, "\nmin-cut: %v\n", err)
		return
	}
	bestPrefix, bestCost := 0, time.Duration(math.MaxInt64)
	on := make([]bool, len(d.Nodes))
	for k := 0; k <= len(d.Nodes); k++ {
		if k > 0 {
			on[k-1] = true
		}
		if c, err := d.Cost(on, p.Link.Up); err == nil && c < bestCost {
			bestPrefix, bestCost = k, c
		}
	}
	prefix := len(edge) == 0 || edge[len(edge)-1] == len(edge)-1
	shape := fmt.Sprintf("the prefix cut %d", len(edge))
	if !prefix {
		shape = fmt.Sprintf("%d edge nodes, not a prefix of the canonical order", len(edge))
		if _, err := graph.Partition(p.Model, edge); err != nil {
			shape += fmt.Sprintf(" (Partition refused it: %v)", err)
		} else {
			shape += " (Partition accepts it)"
		}
	}
	fmt.Fprintf(w, "\nDAG min-cut over all closed node sets (per-node times, optimisations off; uplink bytes raw): %s ms with %s;\n",
		msText(cost), shape)
	fmt.Fprintf(w, "best prefix cut under the same costs: cut %d at %s ms (min-cut solved in %v)\n", bestPrefix, msText(bestCost), took.Round(time.Microsecond))
}

// writeTies says which plans the measurements cannot tell apart.
func writeTies(w io.Writer, tied []planner.Plan) {
	fmt.Fprintf(w, "\ntied: %d plans lie within the measurement noise of the best (each total ± its compute spread, p90 - median):\n ", len(tied))
	for i, pl := range tied {
		sep := ","
		if i == len(tied)-1 {
			sep = ""
		}
		fmt.Fprintf(w, " %s %s ± %s ms%s", pl.Candidate.Name(), msText(pl.Breakdown.Total), msText(pl.Spread()), sep)
	}
	fmt.Fprintf(w, "\n  the profiles cannot tell which is fastest; --validate runs them, and any of them is as good an answer\n")
}

// maxRegret is the chosen/best measured ratio over which plan --validate
// fails: the plan then lost more than measurement noise explains.
const maxRegret = 1.05

// regret is the chosen plan's measured time over the best measured one
// (checks[0] is the chosen plan); 0 without checks.
func regret(checks []runtime.Measurement) float64 {
	if len(checks) == 0 || checks[0].Total <= 0 {
		return 0
	}
	best := checks[0].Total
	for _, m := range checks {
		best = min(best, m.Total)
	}
	return float64(checks[0].Total) / float64(best)
}

func writeChecks(w io.Writer, checks []runtime.Measurement) {
	fmt.Fprintf(w, "\nvalidation: each plan run for real, one request at a time (median of %d):\n", checks[0].Runs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "plan\tcodec\tpredicted ms\tmeasured ms\terror\tedge ms\tserver ms\t")
	best := checks[0].Total
	for _, m := range checks {
		best = min(best, m.Total)
	}
	for _, m := range checks {
		pred := m.Plan.Breakdown.Total
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%+.1f%%\t%s\t%s\t\n", m.Plan.Candidate.Name(), m.Plan.Encoding.Codec, msText(pred), msText(m.Total),
			100*(float64(pred)-float64(m.Total))/float64(m.Total), msText(m.Edge), msText(m.Server))
	}
	tw.Flush()
	fmt.Fprintf(w, "chosen plan measured / best measured: %.3f\n", float64(checks[0].Total)/float64(best))
}

// tiedJSON is one plan of a tie.
type tiedJSON struct {
	Plan     string  `json:"plan"`
	Codec    string  `json:"codec,omitempty"`
	TotalMs  float64 `json:"total_ms"`
	SpreadMs float64 `json:"spread_ms"`
}

type planJSON struct {
	Model       string                   `json:"model"`
	Synthetic   bool                     `json:"synthetic"`
	Link        runtime.LinkJSON         `json:"link"`
	Objective   string                   `json:"objective"`
	Plans       []runtime.PlanJSON       `json:"plans"`
	Breakpoints []runtime.BreakpointJSON `json:"breakpoints"`
	Validation  []measurementJSON        `json:"validation,omitempty"`
	// Tied lists the plans tied with the best, the best first (one: no
	// tie); Regret is the chosen plan's measured time over the best
	// measured one (0 without --validate).
	Tied     []tiedJSON          `json:"tied"`
	Regret   float64             `json:"regret,omitempty"`
	Crossing map[string][]string `json:"crossing"`
}

type measurementJSON struct {
	Plan        string  `json:"plan"`
	PredictedMs float64 `json:"predicted_ms"`
	MeasuredMs  float64 `json:"measured_ms"`
}

func msf(d time.Duration) float64 { return d.Seconds() * 1e3 }

func writePlanJSON(w io.Writer, p *runtime.Planned, checks []runtime.Measurement) error {
	out := planJSON{Model: p.Source, Synthetic: p.Synthetic, Objective: p.Problem.Objective.String(),
		Link:     runtime.NewLinkJSON(p.Link),
		Crossing: map[string][]string{}}
	for id, names := range p.Crossing {
		out.Crossing[fmt.Sprint(id)] = names
	}
	out.Plans, out.Breakpoints = p.TableJSON()
	for _, pl := range p.Tied {
		out.Tied = append(out.Tied, tiedJSON{Plan: pl.Candidate.Name(), Codec: pl.Encoding.Codec, TotalMs: msf(pl.Breakdown.Total), SpreadMs: msf(pl.Spread())})
	}
	out.Regret = regret(checks)
	for _, m := range checks {
		out.Validation = append(out.Validation, measurementJSON{Plan: m.Plan.Candidate.Name(), PredictedMs: msf(m.Plan.Breakdown.Total), MeasuredMs: msf(m.Total)})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// profiledAgo says when a profile was measured and, for a cached one,
// what its recheck found: a cached profile keeps the load the machine had
// then, so it is checked against the whole model timed now.
func profiledAgo(p *profiler.Profile) string {
	rc := p.Recheck
	if rc != nil && rc.Stale {
		return "profiled just now: " + rc.Reason
	}
	age := time.Since(p.Created)
	if age < time.Minute {
		return "profiled just now"
	}
	s := fmt.Sprintf("profiled %s ago (cached", strings.TrimSuffix(age.Round(time.Minute).String(), "0s"))
	if rc != nil && rc.Measured.Runs > 0 {
		s += fmt.Sprintf("; rechecked: whole model %s ms now, %+.0f%%, within the %.0f%% its spread allows", msText(rc.Measured.Median), 100*rc.Off, 100*rc.Allowed)
	}
	return s + "; --fresh measures again)"
}
