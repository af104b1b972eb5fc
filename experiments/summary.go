package experiments

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"tracr/graph"
	"tracr/quantile"
)

// PlanStat is one plan measured in a cell under one strategy: medians over
// its measured rows.
type PlanStat struct {
	Strategy       Strategy
	Plan, Encoding string
	Cut            int
	BytesUp        int64
	// N counts the measured rows, Skipped the others; Reason is the first
	// skipped row's reason.
	N, Skipped int
	Reason     string
	// Measured, Edge and Server are medians of the measured rows;
	// Predicted, UpTerm and DownTerm the planner's (the same in every row
	// of a grid cell).
	Measured, Edge, Server      time.Duration
	Predicted, UpTerm, DownTerm time.Duration
}

// Label names the plan with its encoding: "cut 17 raw+zstd".
func (p PlanStat) Label() string {
	if p.Encoding == "" || p.Plan == "server-only (jpeg)" {
		return p.Plan
	}
	return p.Plan + " " + p.Encoding
}

// CellSummary is one cell of the grid (model, link, codec).
type CellSummary struct {
	Model    string
	ImgSize  int
	Link     string
	Up, Down float64
	RTT      time.Duration
	Codec    string
	// Plans lists every strategy's plans in the order of the rows.
	Plans []PlanStat
	// Planned and the baselines point into Plans (nil when not in the
	// grid); Oracle is the plan with the lowest measured median, nil when
	// nothing was measured.
	Planned, Oracle, EdgeOnly, ServerRaw, ServerJPEG *PlanStat
	// Regret is Planned's measured median over Oracle's (1 = the planner
	// chose the best measured plan); 0 when either is missing.
	Regret float64
	// PredictionError is the median of |predicted - measured| / measured
	// over the cell's measurements.
	PredictionError float64
}

// Scenario names the cell: "alexnet@224 4g" (with the codec unless auto).
func (c CellSummary) Scenario() string {
	s := fmt.Sprintf("%s@%d %s", c.Model, c.ImgSize, c.Link)
	if c.Codec != AutoCodec {
		s += " " + c.Codec
	}
	return s
}

// TraceSummary is one adaptive run on a trace.
type TraceSummary struct {
	Model   string
	ImgSize int
	Trace   string
	Codec   string
	// Rows are the run's requests in order.
	Rows             []Row
	Requests, Failed int
	Median, P90      time.Duration
	PredictionError  float64
	// Switches counts changes of plan between consecutive requests;
	// Plans counts requests per plan, most used first.
	Switches int
	Plans    []PlanCount
}

// PlanCount is how many requests ran a plan.
type PlanCount struct {
	Plan string
	N    int
}

// StrategyError is the prediction error of one strategy's rows.
type StrategyError struct {
	Strategy Strategy
	N        int
	// Abs is the median of |predicted - measured| / measured, Signed the
	// median of (predicted - measured) / measured (negative: the planner
	// is optimistic).
	Abs, Signed float64
}

// Summary condenses a sweep's rows.
type Summary struct {
	Cells                   []CellSummary
	Traces                  []TraceSummary
	Rows, Measured, Skipped int
	Errors                  []StrategyError
	// SkipReasons counts skipped rows by reason, most frequent first.
	SkipReasons []PlanCount
}

// Summarize groups rows into cells and trace runs, in the order they first
// appear.
func Summarize(rows []Row) Summary {
	var s Summary
	var cellOrder []cellKey
	cells := map[cellKey][]Row{}
	errs := map[Strategy][][2]float64{}
	skips := map[string]int{}
	for _, r := range rows {
		s.Rows++
		if r.IsMeasured() {
			s.Measured++
			if r.Measured > 0 && r.Predicted > 0 {
				e := (ms(r.Predicted) - ms(r.Measured)) / ms(r.Measured)
				errs[r.Strategy] = append(errs[r.Strategy], [2]float64{math.Abs(e), e})
			}
		} else {
			s.Skipped++
			skips[skipClass(r.Skipped)]++
		}
		k := r.cellKey()
		if _, ok := cells[k]; !ok {
			cellOrder = append(cellOrder, k)
		}
		cells[k] = append(cells[k], r)
	}
	for _, k := range cellOrder {
		if rs := cells[k]; rs[0].Strategy == Adaptive {
			s.Traces = append(s.Traces, summarizeTrace(rs))
		} else {
			s.Cells = append(s.Cells, summarizeCell(rs))
		}
	}
	for _, st := range []Strategy{EdgeOnly, ServerRaw, ServerJPEG, Planned, CutStrategy, Adaptive} {
		es := errs[st]
		if len(es) == 0 {
			continue
		}
		abs, signed := make([]float64, len(es)), make([]float64, len(es))
		for i, e := range es {
			abs[i], signed[i] = e[0], e[1]
		}
		s.Errors = append(s.Errors, StrategyError{Strategy: st, N: len(es), Abs: quantile.Median(abs), Signed: quantile.Median(signed)})
	}
	s.SkipReasons = counted(skips)
	return s
}

// Order sorts the cells and trace runs as the spec lists models, links,
// traces and codecs (a resumed sweep's CSV holds them in the order they
// were measured); anything the spec does not list keeps its place after.
func (s *Summary) Order(spec *Spec) {
	index := func(n int, match func(int) bool) int {
		for i := range n {
			if match(i) {
				return i
			}
		}
		return n
	}
	model := func(name string, img int) int {
		return index(len(spec.Models), func(i int) bool {
			m := spec.Models[i]
			return m.Name == name && (m.ImgSize == img || m.ImgSize == 0)
		})
	}
	codec := func(name string) int {
		return index(len(spec.Codecs), func(i int) bool { return spec.Codecs[i].Name == name })
	}
	cellRank := func(c CellSummary) [3]int {
		return [3]int{model(c.Model, c.ImgSize), index(len(spec.Links), func(i int) bool { return spec.Links[i].Name == c.Link }), codec(c.Codec)}
	}
	traceRank := func(t TraceSummary) [3]int {
		return [3]int{model(t.Model, t.ImgSize), index(len(spec.Traces), func(i int) bool { return spec.Traces[i].Name == t.Trace }), codec(t.Codec)}
	}
	slices.SortStableFunc(s.Cells, func(a, b CellSummary) int { return compareRank(cellRank(a), cellRank(b)) })
	slices.SortStableFunc(s.Traces, func(a, b TraceSummary) int { return compareRank(traceRank(a), traceRank(b)) })
}

func compareRank(a, b [3]int) int {
	for i := range a {
		if a[i] != b[i] {
			return a[i] - b[i]
		}
	}
	return 0
}

// skipClass shortens a skip reason to its kind, for counting.
func skipClass(reason string) string {
	switch {
	case strings.HasPrefix(reason, "predicted "):
		return "predicted over the budget (max_request_seconds)"
	case strings.HasPrefix(reason, "timed out"):
		return "timed out"
	}
	return reason
}

func counted(m map[string]int) []PlanCount {
	var out []PlanCount
	for k, n := range m {
		out = append(out, PlanCount{k, n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].N != out[j].N {
			return out[i].N > out[j].N
		}
		return out[i].Plan < out[j].Plan
	})
	return out
}

func summarizeCell(rows []Row) CellSummary {
	r0 := rows[0]
	c := CellSummary{Model: r0.Model, ImgSize: r0.ImgSize, Link: r0.Link, Up: r0.Up, Down: r0.Down, RTT: r0.RTT, Codec: r0.Codec}
	type pk struct {
		st         Strategy
		plan, code string
	}
	idx := map[pk]int{}
	measured := map[pk][]Row{}
	for _, r := range rows {
		k := pk{r.Strategy, r.Plan, r.Encoding}
		i, ok := idx[k]
		if !ok {
			i = len(c.Plans)
			idx[k] = i
			c.Plans = append(c.Plans, PlanStat{Strategy: r.Strategy, Plan: r.Plan, Encoding: r.Encoding, Cut: r.Cut, BytesUp: r.BytesUp,
				Predicted: r.Predicted, UpTerm: r.UpTerm, DownTerm: r.DownTerm})
		}
		p := &c.Plans[i]
		if r.IsMeasured() {
			p.N++
			measured[k] = append(measured[k], r)
		} else {
			p.Skipped++
			if p.Reason == "" {
				p.Reason = r.Skipped
			}
		}
	}
	// Each measurement once, however many strategies share it.
	var errs []float64
	seen := map[measKey]bool{}
	for k, rs := range measured {
		p := &c.Plans[idx[k]]
		var tot, edge, server []time.Duration
		for _, r := range rs {
			tot, edge, server = append(tot, r.Measured), append(edge, r.Edge), append(server, r.Server)
			if mk := (measKey{r.Plan, r.Encoding, r.Repeat}); !seen[mk] && r.Measured > 0 {
				seen[mk] = true
				errs = append(errs, math.Abs(ms(r.Predicted)-ms(r.Measured))/ms(r.Measured))
			}
		}
		p.Measured, p.Edge, p.Server = quantile.MedianDuration(tot), quantile.MedianDuration(edge), quantile.MedianDuration(server)
	}
	c.PredictionError = quantile.Median(errs)
	for i := range c.Plans {
		p := &c.Plans[i]
		switch p.Strategy {
		case Planned:
			c.Planned = p
		case EdgeOnly:
			c.EdgeOnly = p
		case ServerRaw:
			c.ServerRaw = p
		case ServerJPEG:
			c.ServerJPEG = p
		}
		if p.N > 0 && (c.Oracle == nil || p.Measured < c.Oracle.Measured) {
			c.Oracle = p
		}
	}
	if c.Planned != nil && c.Planned.N > 0 && c.Oracle != nil && c.Oracle.Measured > 0 {
		c.Regret = float64(c.Planned.Measured) / float64(c.Oracle.Measured)
	}
	return c
}

func summarizeTrace(rows []Row) TraceSummary {
	r0 := rows[0]
	t := TraceSummary{Model: r0.Model, ImgSize: r0.ImgSize, Trace: strings.TrimPrefix(r0.Link, "trace:"), Codec: r0.Codec, Rows: rows}
	var tot []time.Duration
	var errs []float64
	plans := map[string]int{}
	prev := ""
	for _, r := range rows {
		t.Requests++
		if !r.IsMeasured() {
			t.Failed++
			continue
		}
		tot = append(tot, r.Measured)
		if r.Predicted > 0 && r.Measured > 0 {
			errs = append(errs, math.Abs(ms(r.Predicted)-ms(r.Measured))/ms(r.Measured))
		}
		plans[r.Plan]++
		if prev != "" && r.Plan != prev {
			t.Switches++
		}
		prev = r.Plan
	}
	t.Median, t.P90 = quantile.MedianDuration(tot), quantile.Duration(tot, 0.9)
	t.PredictionError = quantile.Median(errs)
	t.Plans = counted(plans)
	return t
}

// WriteSummaryFile writes summary.md atomically.
func WriteSummaryFile(path string, s Summary, m *Meta) error {
	var b bytes.Buffer
	s.WriteMarkdown(&b, m)
	if err := graph.WriteFileAtomic(path, b.Bytes()); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

// WriteMarkdown writes the summary as Markdown: the best plan per model and
// link with the planner's regret, speedups and prediction error, the
// prediction error per strategy, trace runs and skipped rows. m may be nil.
func (s Summary) WriteMarkdown(w io.Writer, m *Meta) {
	name := "sweep"
	if m != nil {
		name = m.Name
	}
	fmt.Fprintf(w, "# Sweep %s\n\n", name)
	if m != nil {
		fmt.Fprintf(w, "%s; edge: %s, %d logical cores", m.Started.Format("2006-01-02 15:04 MST"), m.Edge.CPUModel, m.Edge.LogicalCores)
		if m.EdgeCPU > 0 {
			fmt.Fprintf(w, ", limited to %g cores by the kernel", m.EdgeCPU)
		}
		fmt.Fprintf(w, "; server %s (%s): %s. tracr %s, ONNX Runtime %s, commit `%s`.", m.Server.Name, m.Server.Kind, m.Server.Note,
			m.Tracr, m.ORT, m.GitCommit)

		if n := len(m.Sessions); n > 0 && m.Sessions[n-1].LoadStart >= 0 && m.Sessions[n-1].LoadEnd >= 0 {
			fmt.Fprintf(w, " Load average (1 min) at the start and end of the last session: %.2f and %.2f; other work on the machine shows in the timings.",
				m.Sessions[n-1].LoadStart, m.Sessions[n-1].LoadEnd)
		}
		fmt.Fprintf(w, "\n\n")
		for _, pm := range m.Profiles {
			fmt.Fprintf(w, "- %s %s profile: %d repeats, %.0f s old when planned, whole model %.3f ms", pm.Model, pm.Side, pm.Repeats, pm.AgeSeconds, pm.WholeMs)
			if pm.CPULimit > 0 {
				fmt.Fprintf(w, " under %g cores", pm.CPULimit)
			}
			fmt.Fprintln(w)
		}
		if len(m.Profiles) > 0 {
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintf(w, "%d rows: %d measured, %d skipped. Latencies are medians of the measured repeats in ms, each one request at a time, end to end "+
		"(edge compute, encoding, transfer, server compute and post-processing, result back).\n\n", s.Rows, s.Measured, s.Skipped)
	if len(s.Cells) > 0 {
		s.writeBest(w)
	}
	if len(s.Errors) > 0 {
		fmt.Fprintf(w, "## Prediction error\n\n| strategy | measured rows | median abs. error | median signed error |\n|---|--:|--:|--:|\n")
		for _, e := range s.Errors {
			fmt.Fprintf(w, "| %s | %d | %.1f%% | %+.1f%% |\n", e.Strategy, e.N, 100*e.Abs, 100*e.Signed)
		}
		fmt.Fprintf(w, "\nError is (predicted − measured) / measured; negative means the cost model is optimistic.\n\n")
	}
	if len(s.Traces) > 0 {
		fmt.Fprintf(w, "## Adaptive runs on traces\n\n| model | trace | codec | requests | failed | median ms | p90 ms | switches | plans (requests) | prediction error |\n|---|---|---|--:|--:|--:|--:|--:|---|--:|\n")
		for _, t := range s.Traces {
			var ps []string
			for _, p := range t.Plans {
				ps = append(ps, fmt.Sprintf("%s (%d)", p.Plan, p.N))
			}
			fmt.Fprintf(w, "| %s@%d | %s | %s | %d | %d | %s | %s | %d | %s | %.1f%% |\n", t.Model, t.ImgSize, t.Trace, t.Codec, t.Requests, t.Failed,
				msCell(t.Median), msCell(t.P90), t.Switches, strings.Join(ps, ", "), 100*t.PredictionError)
		}
		fmt.Fprintln(w)
	}
	if len(s.Cells) > 0 {
		s.writePlans(w)
	}
	if len(s.SkipReasons) > 0 {
		fmt.Fprintf(w, "## Skipped rows\n\n| reason | rows |\n|---|--:|\n")
		for _, r := range s.SkipReasons {
			fmt.Fprintf(w, "| %s | %d |\n", r.Plan, r.N)
		}
		fmt.Fprintln(w)
	}
}

func (s Summary) writeBest(w io.Writer) {
	fmt.Fprintf(w, "## Best plan per model and link\n\n")
	fmt.Fprintf(w, "| model | link | codec | planned | predicted ms | measured ms | error | best measured (oracle) | oracle ms | regret | edge-only ms | server raw ms | server JPEG ms | speedup vs edge-only | vs server raw | vs server JPEG |\n")
	fmt.Fprintf(w, "|---|---|---|---|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, c := range s.Cells {
		planned, pred, meas, perr := "–", "–", "–", "–"
		if p := c.Planned; p != nil {
			planned, pred = p.Label(), msCell(p.Predicted)
			if p.N > 0 {
				meas = msCell(p.Measured)
				perr = fmt.Sprintf("%+.0f%%", 100*(ms(p.Predicted)-ms(p.Measured))/ms(p.Measured))
			} else {
				meas = "skipped"
			}
		}
		oracle, oms := "–", "–"
		if c.Oracle != nil {
			oracle, oms = c.Oracle.Label(), msCell(c.Oracle.Measured)
		}
		regret := "–"
		if c.Regret > 0 {
			regret = fmt.Sprintf("%.2f", c.Regret)
		}
		fmt.Fprintf(w, "| %s@%d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			c.Model, c.ImgSize, c.Link, c.Codec, planned, pred, meas, perr, oracle, oms, regret,
			baselineCell(c.EdgeOnly), baselineCell(c.ServerRaw), baselineCell(c.ServerJPEG),
			speedupCell(c.EdgeOnly, c.Planned), speedupCell(c.ServerRaw, c.Planned), speedupCell(c.ServerJPEG, c.Planned))
	}
	fmt.Fprintf(w, "\nThe oracle is the plan with the lowest measured median among every plan measured in the cell (the strategies' and the cuts'); "+
		"regret = planned / oracle (1.00: the planner chose the best measured plan). Speedup = baseline / planned, both measured; "+
		"~ marks a baseline skipped as over the budget, priced by its prediction instead.\n\n")
}

// baselineCell is a baseline's measured median, or why it has none.
func baselineCell(b *PlanStat) string {
	switch {
	case b == nil:
		return "–"
	case b.N > 0:
		return msCell(b.Measured)
	case strings.HasPrefix(b.Reason, "predicted"):
		return "~" + msCell(b.Predicted) + " (pred.)"
	case strings.HasPrefix(b.Reason, "no server-only JPEG"):
		return "n/a"
	}
	return "skipped"
}

func speedupCell(b, planned *PlanStat) string {
	if b == nil || planned == nil || planned.N == 0 || planned.Measured <= 0 {
		return "–"
	}
	switch {
	case b.N > 0:
		return fmt.Sprintf("%.2fx", float64(b.Measured)/float64(planned.Measured))
	case strings.HasPrefix(b.Reason, "predicted"):
		return fmt.Sprintf("~%.0fx", float64(b.Predicted)/float64(planned.Measured))
	}
	return "–"
}

func (s Summary) writePlans(w io.Writer) {
	fmt.Fprintf(w, "## Every plan measured\n\n| model | link | codec | strategy | plan | encoding | bytes up | predicted ms | measured ms | edge ms | server ms | rows | skipped |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|--:|--:|--:|--:|--:|--:|---|\n")
	for _, c := range s.Cells {
		for _, p := range c.Plans {
			pred, meas, edge, server := msCell(p.Predicted), "–", "–", "–"
			if p.N > 0 {
				meas, edge, server = msCell(p.Measured), msCell(p.Edge), msCell(p.Server)
			} else if p.Predicted == 0 {
				pred = "–" // not priced (no such candidate)
			}
			fmt.Fprintf(w, "| %s@%d | %s | %s | %s | %s | %s | %d | %s | %s | %s | %s | %d | %s |\n", c.Model, c.ImgSize, c.Link, c.Codec,
				p.Strategy, p.Plan, p.Encoding, p.BytesUp, pred, meas, edge, server, p.N+p.Skipped, mdEscape(p.Reason))
		}
	}
	fmt.Fprintln(w)
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// msCell formats a duration in ms with three significant digits or more.
func msCell(d time.Duration) string {
	v := ms(d)
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
