package experiments

import (
	"context"
	"fmt"
	"sync"
	"time"

	"tracr/bitrate"
	"tracr/planner"
	"tracr/runtime"
	"tracr/zoo"
)

// Trace runs: the adaptive runtime (runtime.Execute with Adaptive) over
// synthetic images while a link trace plays on the emulated link. A run is
// the unit of resumption: its rows are written once it has finished, so a
// run cut short leaves none and runs again on --resume.

// Synthetic images of this size feed trace runs (pre-processing resizes
// them to the model's input).
const traceImageW, traceImageH = 640, 480

// runTrace runs the adaptive runtime of one model and codec on one trace.
func (s *sweep) runTrace(ctx context.Context, p *runtime.Planned, m ModelSpec, img int, t TraceSpec, c CodecChoice) error {
	label := t.Label()
	ck := cellKey{m.Name, img, label, c.Name}
	s.cell = fmt.Sprintf("%s@%d %s %s (adaptive)", m.Name, img, label, c.Name)
	if len(s.byCell[ck]) > 0 {
		for range t.Requests {
			s.tick()
		}
		return nil
	}
	first := t.Trace.At(0)
	q := priced(p, c, s.spec.AllowLossy, planner.Link(first))
	s.state.Set(first)
	client, err := s.srv.Dial(ctx)
	if err != nil {
		return err
	}
	playCtx, stop := context.WithCancel(ctx)
	var play sync.WaitGroup
	// The trace starts when the first input is read: setting up the run
	// (the sessions of every prepared cut) is not on its clock.
	ds := &pacedDataset{Dataset: zoo.Synthetic(t.Requests, traceImageW, traceImageH, 11), interval: t.interval(),
		started: func(at time.Time) { play.Go(func() { t.Trace.Play(playCtx, s.state, at) }) }}
	t0 := time.Now()
	out, err := runtime.Execute(ctx, runtime.ExecOptions{
		Planned: q, Adaptive: true, InFlight: t.InFlight, Dataset: ds,
		Client: client, Dial: s.srv.Dial,
		Link:     func() planner.Link { return planner.Link(s.state.Get()) },
		Progress: func(runtime.Record) { s.tick() },
	})
	stop()
	play.Wait()
	if err != nil {
		return fmt.Errorf("%s: %w", s.cell, err)
	}
	if out.Interrupted || ctx.Err() != nil {
		return fmt.Errorf("%w: %s cut short", ErrInterrupted, s.cell)
	}
	s.total += len(out.Records) - t.Requests
	for _, rec := range out.Records {
		if err := s.write(traceRow(m.Name, img, label, c.Name, rec)); err != nil {
			return err
		}
	}
	s.logf("%s: %d requests in %v, %d switches", s.cell, len(out.Records), time.Since(t0).Round(100*time.Millisecond), switches(out.Events))
	return nil
}

func switches(evs []runtime.Event) int {
	n := 0
	for _, e := range evs {
		if e.Kind == "switch" {
			n++
		}
	}
	return n
}

// traceRow turns a request's record into a row. The up and down terms are
// the request's bytes at the link in force; Predicted is what the runtime
// predicted when it chose the plan.
func traceRow(model string, img int, label, codec string, rec runtime.Record) Row {
	plan := rec.Plan
	if plan == planner.KindCut.String() {
		plan = fmt.Sprintf("cut %d", rec.Cut)
	}
	// An unknown rate (0) gives no term.
	upTerm, _ := bitrate.Time(rec.BytesUp, rec.LinkUp)
	downTerm, _ := bitrate.Time(rec.BytesDown, rec.LinkDown)
	r := Row{Model: model, ImgSize: img, Link: label, Up: rec.LinkUp, Down: rec.LinkDown, RTT: rec.RTT, Codec: codec,
		Strategy: Adaptive, Plan: plan, Cut: rec.Cut, Encoding: rec.Codec, Repeat: rec.ID, BytesUp: rec.BytesUp,
		Predicted: rec.Predicted, UpTerm: upTerm, DownTerm: downTerm,
		Measured: rec.Total, Edge: rec.Edge, Server: rec.Server, Start: rec.Start}
	switch {
	case rec.Error != "":
		r.Skipped = "error: " + rec.Error
		r.Measured, r.Edge, r.Server = 0, 0, 0
	case rec.Fallback:
		// Measured, but not as planned: say so without dropping the time.
		r.Plan = "edge-only (fallback)"
	}
	return r
}

// pacedDataset hands out its samples no faster than one per interval from
// the first, so that a trace run spans its trace; started is called with
// the time of the first.
type pacedDataset struct {
	zoo.Dataset
	interval time.Duration
	started  func(time.Time)

	mu    sync.Mutex
	first time.Time
}

// Sample implements zoo.Dataset; it waits for sample i's turn. The wait is
// bounded by i intervals, and the runtime reads samples in order.
func (d *pacedDataset) Sample(i int) (zoo.Sample, error) {
	d.mu.Lock()
	if d.first.IsZero() {
		d.first = time.Now()
		d.started(d.first)
	}
	due := d.first.Add(time.Duration(i) * d.interval)
	d.mu.Unlock()
	if wait := time.Until(due); wait > 0 {
		time.Sleep(wait)
	}
	return d.Dataset.Sample(i)
}
