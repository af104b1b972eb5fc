package experiments

import (
	"context"
	"fmt"
	"time"

	"tracr/planner"
	"tracr/runtime"
)

// item is one plan a cell measures, for one strategy.
type item struct {
	strategy Strategy
	plan     planner.Plan
	// skip, when set, says why the plan is recorded without running it.
	skip string
}

// choice is a plan as a CSV row names it.
type choice struct{ plan, encoding string }

// recorded returns, per strategy, the plans rows already hold, in order:
// a resumed cell keeps the choices it started with (the planner's ranking
// of close candidates can change between runs with the codecs' timings).
func recorded(rows []Row) map[Strategy][]choice {
	out := map[Strategy][]choice{}
	for _, r := range rows {
		ch := choice{r.Plan, r.Encoding}
		seen := false
		for _, c := range out[r.Strategy] {
			seen = seen || c == ch
		}
		if !seen {
			out[r.Strategy] = append(out[r.Strategy], ch)
		}
	}
	return out
}

// find prices the candidate named in a row with the row's encoding on q's
// link.
func find(q, orig *runtime.Planned, ch choice) (planner.Plan, bool) {
	for _, c := range orig.Problem.Candidates {
		if c.Name() != ch.plan {
			continue
		}
		if c.Kind == planner.KindEdgeOnly {
			return planner.Evaluate(c, planner.Encoding{}, q.Link, q.Problem.Objective), true
		}
		for _, e := range c.Encodings {
			if e.Codec == ch.encoding {
				return planner.Evaluate(c, e, q.Link, q.Problem.Objective), true
			}
		}
	}
	return planner.Plan{}, false
}

// ranked returns q's ranked plan for the candidate of kind k at cut id
// (any cut when id < 0).
func ranked(q *runtime.Planned, k planner.Kind, id int) (planner.Plan, bool) {
	for _, pl := range q.Ranked {
		if pl.Candidate.Kind == k && (id < 0 || pl.Candidate.Cut == id) {
			return pl, true
		}
	}
	return planner.Plan{}, false
}

// items lists what a cell measures: the strategies' plans, then the cuts.
// q is orig priced for the cell.
func (s *sweep) items(q, orig *runtime.Planned, c cell) []item {
	rec := recorded(s.byCell[c.key()])
	// prior returns the plan a resumed cell chose for st, if any.
	prior := func(st Strategy) (planner.Plan, bool) {
		if chs := rec[st]; len(chs) > 0 {
			return find(q, orig, chs[0])
		}
		return planner.Plan{}, false
	}
	var out []item
	for _, st := range s.measuredStrategies() {
		if pl, ok := prior(st); ok {
			out = append(out, item{strategy: st, plan: pl})
			continue
		}
		switch st {
		case EdgeOnly:
			pl, _ := ranked(q, planner.KindEdgeOnly, -1)
			out = append(out, item{strategy: st, plan: pl})
		case ServerRaw:
			pl, _ := ranked(q, planner.KindServerRaw, -1)
			out = append(out, item{strategy: st, plan: pl})
		case ServerJPEG:
			out = append(out, jpegItem(q, orig))
		case Planned:
			out = append(out, item{strategy: st, plan: q.Ranked[0]})
		}
	}
	for _, pl := range s.cutPlans(q, orig, c.model, rec[CutStrategy]) {
		out = append(out, item{strategy: CutStrategy, plan: pl})
	}
	for i := range out {
		if out[i].skip == "" {
			out[i].skip = s.overBudget(out[i].plan)
		}
	}
	return out
}

// jpegItem is the server-only JPEG baseline, measured whatever the codec
// policy (JPEG is lossy, so the planner itself may not consider it).
func jpegItem(q, orig *runtime.Planned) item {
	for _, c := range orig.Problem.Candidates {
		if c.Kind == planner.KindServerJPEG && len(c.Encodings) > 0 {
			return item{strategy: ServerJPEG, plan: planner.Evaluate(c, c.Encodings[0], q.Link, q.Problem.Objective)}
		}
	}
	pl := planner.Plan{Candidate: planner.Candidate{Kind: planner.KindServerJPEG}, Encoding: planner.Encoding{Codec: "jpeg"}}
	return item{strategy: ServerJPEG, plan: pl, skip: "no server-only JPEG candidate: the planner prices JPEG for detectors (image inputs) only"}
}

// sampleEvery is the step of cuts = "sampled": with the planner's top three
// it measures every sampleEvery-th profiled cut (runtime.Planned.Oracle).
const sampleEvery = 10

// cutPlans returns the cut candidates a cell measures: the planner's best
// three cuts, those and every tenth cut, every profiled cut, or the listed
// ones. Cuts a resumed cell
// already measured come first, with the encodings they were measured with.
func (s *sweep) cutPlans(q, orig *runtime.Planned, m ModelSpec, prev []choice) []planner.Plan {
	var out []planner.Plan
	has := func(pl planner.Plan) bool {
		for _, o := range out {
			if o.Candidate.Name() == pl.Candidate.Name() {
				return true
			}
		}
		return false
	}
	byPrior := func(pl planner.Plan) planner.Plan {
		for _, ch := range prev {
			if ch.plan == pl.Candidate.Name() {
				if p, ok := find(q, orig, ch); ok {
					return p
				}
			}
		}
		return pl
	}
	switch m.Cuts.Mode {
	case "planned", "sampled":
		for _, ch := range prev {
			if pl, ok := find(q, orig, ch); ok && !has(pl) && len(out) < plannedCuts {
				out = append(out, pl)
			}
		}
		for _, pl := range q.Ranked {
			if len(out) >= plannedCuts {
				break
			}
			if pl.Candidate.Kind == planner.KindCut && pl.Feasible && !has(pl) {
				out = append(out, pl)
			}
		}
		if m.Cuts.Mode == "planned" {
			break
		}
		for _, pl := range q.Oracle(sampleEvery) {
			if pl.Candidate.Kind == planner.KindCut && !has(pl) {
				out = append(out, byPrior(pl))
			}
		}
	case "all":
		for _, c := range q.Problem.Candidates {
			if c.Kind == planner.KindCut {
				if pl, ok := ranked(q, c.Kind, c.Cut); ok {
					out = append(out, byPrior(pl))
				}
			}
		}
	case "list":
		for _, id := range m.Cuts.IDs {
			for _, c := range q.Problem.Candidates {
				if c.Cut == id && c.Kind != planner.KindServerJPEG {
					if pl, ok := ranked(q, c.Kind, c.Cut); ok {
						out = append(out, byPrior(pl))
					}
				}
			}
		}
	}
	return out
}

// overBudget says why a plan is not run: it is infeasible, or predicted to
// take longer than the budget of one request.
func (s *sweep) overBudget(pl planner.Plan) string {
	if !pl.Feasible {
		return "not feasible: " + pl.Reason
	}
	if b := s.spec.MaxRequest(); pl.Breakdown.Total > b {
		return fmt.Sprintf("predicted %.1f s, over the %g s budget (max_request_seconds)", pl.Breakdown.Total.Seconds(), b.Seconds())
	}
	return ""
}

// measKey identifies one measurement in a cell; strategies that chose the
// same plan share it.
type measKey struct {
	plan, encoding string
	repeat         int
}

// runCell measures one cell: every item Repeats times, one row each.
func (s *sweep) runCell(ctx context.Context, p *runtime.Planned, c cell) error {
	q := priced(p, c.codec, s.spec.AllowLossy, c.link.Planner())
	s.state.Set(c.link.Link)
	s.cell = c.String()
	items := s.items(q, p, c)
	s.total += (len(items) - len(s.measuredStrategies()) - cutEstimate(c.model)) * s.spec.Repeats
	cache := map[measKey]Row{}
	for _, r := range s.byCell[c.key()] {
		if r.IsMeasured() {
			cache[measKey{r.Plan, r.Encoding, r.Repeat}] = r
		}
	}
	t0, before := time.Now(), s.written
	for i := range items {
		it := &items[i]
		for rep := 0; rep < s.spec.Repeats; rep++ {
			row := c.row(it.strategy, it.plan, rep)
			if s.done[row.key()] {
				s.tick()
				continue
			}
			mk := measKey{row.Plan, row.Encoding, rep}
			if m, ok := cache[mk]; ok {
				row.Measured, row.Edge, row.Server = m.Measured, m.Edge, m.Server
			} else if it.skip != "" {
				row.Skipped = it.skip
			} else {
				m, why, err := s.measure(ctx, q, it.plan)
				if err != nil {
					return err
				}
				if why != "" {
					it.skip, row.Skipped = why, why // the later repeats would fare the same
				} else {
					row.Measured, row.Edge, row.Server = m.Total, m.Edge, m.Server
					cache[mk] = row
				}
			}
			if err := s.write(row); err != nil {
				return err
			}
			s.tick()
		}
	}
	s.logCell(c, s.written-before, time.Since(t0))
	return nil
}

// row returns the row of a plan in the cell, without a measurement.
func (c cell) row(st Strategy, pl planner.Plan, repeat int) Row {
	b := pl.Breakdown
	return Row{Model: c.model.Name, ImgSize: c.img, Link: c.link.Name, Up: c.link.Link.Up, Down: c.link.Link.Down, RTT: c.link.Link.RTT,
		Codec: c.codec.Name, Strategy: st, Plan: pl.Candidate.Name(), Cut: pl.Candidate.Cut, Encoding: pl.Encoding.Codec,
		Repeat: repeat, BytesUp: pl.Encoding.Bytes, Predicted: b.Total, UpTerm: b.Up, DownTerm: b.Down}
}

// measure runs a plan once for real (after a warm-up request). A request
// that fails or overruns its time is reported in the second result, to be
// recorded as skipped, and the connection is replaced (it may hold half a
// request); the error is for what ends the sweep.
func (s *sweep) measure(ctx context.Context, q *runtime.Planned, pl planner.Plan) (runtime.Measurement, string, error) {
	limit := 2*pl.Breakdown.Total + s.spec.MaxRequest() + 30*time.Second
	mctx, cancel := context.WithTimeout(ctx, limit)
	m, err := q.Measure(mctx, s.c, pl, 1)
	cancel()
	if err == nil {
		return m, "", nil
	}
	if ctx.Err() != nil {
		return m, "", fmt.Errorf("%w: %w", ErrInterrupted, ctx.Err())
	}
	why := "error: " + err.Error()
	if mctx.Err() != nil {
		why = fmt.Sprintf("timed out after %v", limit.Round(time.Second))
	}
	s.logf("%s: %s: %s", s.cell, pl.Candidate.Name(), why)
	s.c.Close()
	if s.c, err = s.srv.Dial(ctx); err != nil {
		return m, "", fmt.Errorf("reconnect after %s: %w", pl.Candidate.Name(), err)
	}
	return m, oneLine(why), nil
}

// logCell reports a finished cell: its planned and best measured plans.
func (s *sweep) logCell(c cell, written int, took time.Duration) {
	if s.opts.Log == nil || written == 0 {
		return
	}
	sum := Summarize(s.byCell[c.key()])
	msg := fmt.Sprintf("%s: %d new rows in %v", c, written, took.Round(100*time.Millisecond))
	if len(sum.Cells) == 1 {
		cs := sum.Cells[0]
		if cs.Planned != nil && cs.Planned.N > 0 {
			msg += fmt.Sprintf("; planned %s %.1f ms", cs.Planned.Label(), ms(cs.Planned.Measured))
		}
		if cs.Oracle != nil {
			msg += fmt.Sprintf("; best measured %s %.1f ms", cs.Oracle.Label(), ms(cs.Oracle.Measured))
		}
	}
	s.logf("%s", msg)
}

func ms(d time.Duration) float64 { return d.Seconds() * 1e3 }
