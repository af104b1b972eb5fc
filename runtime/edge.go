package runtime

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"tracr/engine"
	"tracr/graph"
	"tracr/planner"
	"tracr/quantile"
	"tracr/tensor"
	"tracr/transport"
	"tracr/zoo"
)

// edgeSessions are the edge's ONNX Runtime sessions, all opened (and run
// once) before the first request so that neither a plan switch nor a
// fallback ever opens one on the hot path: the whole model, for edge-only
// and fallback, and the head of every cut the run may switch to.
type edgeSessions struct {
	full  *engine.Session
	heads map[int]*engine.Session // by cut ID; cut 0 and edge-only have none
	// slowdown emulates a slower edge device (0 or 1: off); see run.
	// ref holds each session's reference compute time for it.
	slowdown float64
	ref      map[*engine.Session]time.Duration
	// busy makes the edge one device: it computes one request at a time
	// (a fallback or rescue waits for the head in progress), which also
	// keeps an emulated slow edge from computing several in parallel.
	busy sync.Mutex
}

// openEdge opens the full model and the heads of cuts, and runs each once
// on the sample input (at full speed: the slowdown applies to requests).
func openEdge(ctx context.Context, p *Planned, cuts []int, slowdown float64) (*edgeSessions, error) {
	e := &edgeSessions{heads: map[int]*engine.Session{}, slowdown: slowdown, ref: map[*engine.Session]time.Duration{}}
	var err error
	if e.full, err = engine.NewSession(p.ModelBytes, p.Edge); err != nil {
		return nil, fmt.Errorf("edge: whole model: %w", err)
	}
	if err := e.warm(ctx, e.full, p.Sample); err != nil {
		e.close()
		return nil, fmt.Errorf("edge: whole model: warm-up: %w", err)
	}
	n := len(p.Model.Nodes())
	for _, k := range cuts {
		if k <= 0 || k >= n || e.heads[k] != nil {
			continue
		}
		split, err := graph.Partition(p.Model, graph.Prefix(k))
		if err != nil {
			e.close()
			return nil, fmt.Errorf("edge: cut %d: %w", k, err)
		}
		s, err := engine.NewSession(split.Head, p.Edge)
		if err != nil {
			e.close()
			return nil, fmt.Errorf("edge: head of cut %d: %w", k, err)
		}
		e.heads[k] = s
		if err := e.warm(ctx, s, pickInputs(p.Sample, s.Inputs())); err != nil {
			e.close()
			return nil, fmt.Errorf("edge: head of cut %d: warm-up: %w", k, err)
		}
	}
	return e, nil
}

// warmRuns is how many timed runs give a session's reference compute
// time under an edge slowdown.
const warmRuns = 5

// warm runs s once, and when the edge is slowed warmRuns more times,
// keeping their median as s's reference compute time.
func (e *edgeSessions) warm(ctx context.Context, s *engine.Session, inputs []tensor.Tensor) error {
	if _, err := s.Run(ctx, inputs); err != nil {
		return err
	}
	if e.slowdown <= 1 {
		return nil
	}
	times := make([]time.Duration, warmRuns)
	for i := range times {
		t0 := time.Now()
		if _, err := s.Run(ctx, inputs); err != nil {
			return err
		}
		times[i] = time.Since(t0)
	}
	e.ref[s] = quantile.MedianDuration(times)
	return nil
}

func (e *edgeSessions) close() {
	if e.full != nil {
		e.full.Close()
	}
	for _, s := range e.heads {
		s.Close()
	}
}

// run runs s on inputs as the emulated edge device: after the real
// compute it sleeps (slowdown-1) times s's reference compute time (the
// median of its warm-up runs), so the CPU is free meanwhile and the
// request takes what the slower device would. Sleeping a multiple of the
// reference rather than of this compute keeps this machine's noise
// (another process's load, a cold cache after the sleep) from being
// multiplied by the factor. Runs take turns (see busy).
func (e *edgeSessions) run(ctx context.Context, s *engine.Session, inputs []tensor.Tensor) ([]tensor.Tensor, error) {
	e.busy.Lock()
	defer e.busy.Unlock()
	t0 := time.Now()
	outs, err := s.Run(ctx, inputs)
	if err != nil {
		return nil, err
	}
	if _, err := slowEdge(ctx, time.Since(t0), e.ref[s], e.slowdown); err != nil {
		return nil, err
	}
	return outs, nil
}

// slowEdge emulates an edge device f times slower than this machine (f
// of 0 or 1: off) after a compute that took d here, whose reference time
// is ref (0: d itself): it sleeps (f-1)*ref, ending early with ctx's
// error, and returns the emulated time d + (f-1)*ref.
func slowEdge(ctx context.Context, d, ref time.Duration, f float64) (time.Duration, error) {
	if f <= 1 {
		return d, nil
	}
	if ref <= 0 {
		ref = d
	}
	extra := slowed(ref, f) - ref
	emulated := d + extra
	t := time.NewTimer(extra)
	defer t.Stop()
	select {
	case <-t.C:
		return emulated, nil
	case <-ctx.Done():
		return emulated, fmt.Errorf("emulated edge slowdown: %w", ctx.Err())
	}
}

// pickInputs returns the tensors a session reads, by name: a head reads
// only the graph inputs its nodes use.
func pickInputs(ts []tensor.Tensor, want []engine.IOInfo) []tensor.Tensor {
	out := make([]tensor.Tensor, 0, len(want))
	for _, w := range want {
		for _, t := range ts {
			if t.Name == w.Name {
				out = append(out, t)
				break
			}
		}
	}
	return out
}

// head runs what the edge computes for plan on inputs and returns the
// tensors to send: the head's outputs for a cut, the inputs themselves
// for server-only.
func (e *edgeSessions) head(ctx context.Context, plan planner.Plan, inputs []tensor.Tensor) ([]tensor.Tensor, error) {
	c := plan.Candidate
	if c.Kind == planner.KindServerRaw || c.Kind == planner.KindServerJPEG || c.Cut == 0 {
		return inputs, nil
	}
	s := e.heads[c.Cut]
	if s == nil {
		// Every plan the run may use is prepared by openEdge.
		return nil, fmt.Errorf("no head session prepared for cut %d", c.Cut)
	}
	out, err := e.run(ctx, s, pickInputs(inputs, s.Inputs()))
	if err != nil {
		return nil, fmt.Errorf("head of cut %d: %w", c.Cut, err)
	}
	return out, nil
}

// local runs the whole model on the edge and post-processes its outputs:
// an edge-only request, or a fallback. It returns the result and the
// compute (as the emulated edge device takes it) and post-processing
// times.
func (e *edgeSessions) local(ctx context.Context, post *zoo.PostSpec, inputs []tensor.Tensor) (zoo.Result, time.Duration, time.Duration, error) {
	t0 := time.Now()
	outs, err := e.run(ctx, e.full, inputs)
	if err != nil {
		return zoo.Result{}, 0, 0, fmt.Errorf("edge: %w", err)
	}
	t1 := time.Now()
	res, err := postProcessLocal(post, outs)
	return res, t1.Sub(t0), time.Since(t1), err
}

// postProcessLocal applies post to outputs computed on the edge; a model
// without post-processing (nil) gets a result that names its outputs.
func postProcessLocal(post *zoo.PostSpec, outs []tensor.Tensor) (zoo.Result, error) {
	if post == nil {
		return zoo.Result{}, nil
	}
	return zoo.PostProcess(*post, outs)
}

// encodeTensors encodes the crossing tensors with a plan's codec and
// returns them with the bytes of tensor data they carry.
func encodeTensors(ts []tensor.Tensor, spec transport.CodecSpec) ([]transport.WireTensor, int64, error) {
	out := make([]transport.WireTensor, len(ts))
	var n int64
	for i, t := range ts {
		if spec == (transport.CodecSpec{}) {
			// Raw is the tensor's own bytes: no copy (the request's
			// encoding copies them into the message anyway).
			if err := t.Validate(); err != nil {
				return nil, 0, err
			}
			out[i] = transport.WireTensor{Name: t.Name, DType: t.DType, Shape: t.Shape, Spec: spec, Data: t.Data}
			n += int64(len(t.Data))
			continue
		}
		w, err := transport.EncodeTensor(t, spec)
		if err != nil {
			return nil, 0, err
		}
		out[i] = w
		n += int64(len(w.Data))
	}
	return out, n, nil
}

// planCodec returns the codec a plan sends its tensors with: its
// encoding's, or raw when it has none.
func planCodec(plan planner.Plan) (transport.CodecSpec, error) {
	if plan.Encoding.Codec == "" {
		if plan.Candidate.Kind == planner.KindServerJPEG {
			return transport.CodecSpec{Kind: transport.CodecJPEG}, nil
		}
		return transport.CodecSpec{}, nil
	}
	spec, err := transport.ParseCodecSpec(plan.Encoding.Codec)
	if err != nil {
		return transport.CodecSpec{}, fmt.Errorf("plan %s: %w", plan.Candidate.Name(), err)
	}
	return spec, nil
}

// preparedCandidates returns the candidates a run may use: the starting
// plan's, edge-only (the fallback), and when adaptive every candidate of
// the bandwidth breakpoint table and the three best ranked, so that the
// re-planner only ever switches to a plan whose sessions are open. They
// come in cut order.
func preparedCandidates(p *Planned, start planner.Plan, adaptive bool) []planner.Candidate {
	type key struct {
		kind planner.Kind
		cut  int
	}
	want := map[key]bool{{start.Candidate.Kind, start.Candidate.Cut}: true}
	if adaptive {
		for _, iv := range p.Breakpoints {
			want[key{iv.Plan.Candidate.Kind, iv.Plan.Candidate.Cut}] = true
		}
		for i, pl := range p.Ranked {
			if i < 3 && pl.Feasible {
				want[key{pl.Candidate.Kind, pl.Candidate.Cut}] = true
			}
		}
	}
	var out []planner.Candidate
	haveEdge := false
	for _, c := range p.Problem.Candidates {
		if c.Kind == planner.KindEdgeOnly {
			want[key{c.Kind, c.Cut}] = true
		}
		if want[key{c.Kind, c.Cut}] {
			out = append(out, c)
			delete(want, key{c.Kind, c.Cut})
			haveEdge = haveEdge || c.Kind == planner.KindEdgeOnly
		}
	}
	if !haveEdge {
		out = append(out, planner.Candidate{Kind: planner.KindEdgeOnly, Cut: len(p.Model.Nodes())})
	}
	if _, ok := want[key{start.Candidate.Kind, start.Candidate.Cut}]; ok {
		out = append(out, start.Candidate) // a forced cut that was not profiled
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Cut != out[j].Cut {
			return out[i].Cut < out[j].Cut
		}
		return out[i].Kind < out[j].Kind
	})
	return out
}

// ForcedPlan returns the plan for cut k: the priced candidate when the
// planner profiled it (with its best admissible encoding), else an
// unpriced one sending raw tensors (its records carry no prediction).
// Cut 0 is server-only and the last cut edge-only.
func ForcedPlan(p *Planned, k int) (planner.Plan, error) {
	n := len(p.Model.Nodes())
	if k < 0 || k > n {
		return planner.Plan{}, fmt.Errorf("cut %d does not exist: valid cuts are 0..%d (see tracr cuts --model %s)", k, n, p.Spec.Name)
	}
	for _, pl := range p.Ranked {
		c := pl.Candidate
		if c.Cut == k && c.Kind != planner.KindServerJPEG && pl.Feasible {
			return pl, nil
		}
	}
	kind := planner.KindCut
	switch k {
	case 0:
		kind = planner.KindServerRaw
	case n:
		kind = planner.KindEdgeOnly
	}
	cut, err := graph.FindCut(graph.Cuts(p.Model), k)
	if err != nil {
		return planner.Plan{}, err
	}
	pl := planner.Plan{Candidate: planner.Candidate{Kind: kind, Cut: k}, Feasible: true}
	if kind != planner.KindEdgeOnly {
		pl.Encoding = planner.Encoding{Codec: "raw", Bytes: cut.Bytes}
	}
	return pl, nil
}

// warmServer makes the server hold the model and open the tail session of
// every prepared cut, by sending each one request built from the sample
// input, so that no plan switch waits for a session to be created.
func warmServer(ctx context.Context, c *transport.Client, p *Planned, edge *edgeSessions, cands []planner.Candidate, post []byte) error {
	if _, err := c.EnsureModel(ctx, p.ModelBytes); err != nil {
		return err
	}
	done := map[int]bool{}
	for _, cand := range cands {
		if cand.Kind == planner.KindEdgeOnly || done[cand.Cut] {
			continue
		}
		done[cand.Cut] = true
		pl := planner.Plan{Candidate: cand}
		mid, err := edge.head(ctx, pl, p.Sample)
		if err != nil {
			return err
		}
		wires, _, err := encodeTensors(mid, transport.CodecSpec{})
		if err != nil {
			return err
		}
		if _, err := c.Infer(ctx, transport.InferRequest{ModelHash: p.Hash, Cut: cand.Cut, Tensors: wires, Post: post}); err != nil {
			return fmt.Errorf("warm up %s: %w", cand.Name(), err)
		}
	}
	return nil
}

// connectionLost reports whether err from a request means the connection
// is gone (rather than the server refusing this one request or the
// request's own context ending).
func connectionLost(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var re *transport.RemoteError
	if errors.As(err, &re) {
		return re.Request == 0 // the server ended the whole session
	}
	return true
}

// oneLine flattens an error message for a CSV cell or a log line.
func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
