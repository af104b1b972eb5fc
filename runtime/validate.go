package runtime

import (
	"context"
	"fmt"
	"slices"
	"time"

	"tracr/engine"
	"tracr/graph"
	"tracr/planner"
	"tracr/quantile"
	"tracr/tensor"
	"tracr/transport"
	"tracr/zoo"
)

// Measurement is a plan run for real on the sample input, one request at a
// time: medians over the timed runs.
type Measurement struct {
	Plan planner.Plan
	// Total is end to end: head, encoding, the round trip with the
	// server's decode, tail and post-processing, decoding the result.
	Total time.Duration
	// Edge is the head (or whole model), Server the tail as the server
	// measured it.
	Edge, Server time.Duration
	Runs         int
}

// Contenders returns the plans worth measuring against each other: the
// planner's top three and both baselines (edge-only, server-only raw),
// feasible ones only, each once.
func (p *Planned) Contenders() []planner.Plan {
	var out []planner.Plan
	seen := map[string]bool{}
	add := func(pl planner.Plan) {
		key := pl.Candidate.Name() + "/" + pl.Encoding.Codec
		if pl.Feasible && !seen[key] {
			seen[key] = true
			out = append(out, pl)
		}
	}
	for i, pl := range p.Ranked {
		if i < 3 {
			add(pl)
		}
	}
	for _, pl := range p.Ranked {
		if pl.Candidate.Kind == planner.KindEdgeOnly || pl.Candidate.Kind == planner.KindServerRaw {
			add(pl)
		}
	}
	return out
}

// Measure runs plan repeats times (after one untimed warm-up, which also
// uploads the model and opens the server's session) and returns medians.
// The edge's compute runs as the emulated device of p.EdgeSlowdown.
func (p *Planned) Measure(ctx context.Context, c *transport.Client, plan planner.Plan, repeats int) (Measurement, error) {
	m := Measurement{Plan: plan, Runs: repeats}
	run, closeFn, err := p.request(ctx, c, plan)
	if err != nil {
		return m, err
	}
	defer closeFn()
	var totals, edges, servers []time.Duration
	for i := 0; i <= repeats; i++ {
		t0 := time.Now()
		edge, server, err := run(ctx)
		if err != nil {
			return m, fmt.Errorf("%s: %w", plan.Candidate.Name(), err)
		}
		if i == 0 {
			continue
		}
		totals, edges, servers = append(totals, time.Since(t0)), append(edges, edge), append(servers, server)
	}
	m.Total, m.Edge, m.Server = quantile.MedianDuration(totals), quantile.MedianDuration(edges), quantile.MedianDuration(servers)
	return m, nil
}

// request prepares one plan's request: sessions are made here, not per run.
func (p *Planned) request(ctx context.Context, c *transport.Client, plan planner.Plan) (func(context.Context) (time.Duration, time.Duration, error), func(), error) {
	cand := plan.Candidate
	if cand.Kind == planner.KindEdgeOnly {
		s, err := engine.NewSession(p.ModelBytes, p.Edge)
		if err != nil {
			return nil, nil, err
		}
		run := func(ctx context.Context) (time.Duration, time.Duration, error) {
			t0 := time.Now()
			outs, err := s.Run(ctx, p.Sample)
			if err != nil {
				return 0, 0, err
			}
			if _, err := slowEdge(ctx, time.Since(t0), 0, p.EdgeSlowdown); err != nil {
				return 0, 0, err
			}
			if p.Spec.Task != "" {
				if _, err := zoo.PostProcess(p.Post, outs); err != nil {
					return 0, 0, err
				}
			}
			return time.Since(t0), 0, nil
		}
		return run, func() { s.Close() }, nil
	}
	spec, err := transport.ParseCodecSpec(plan.Encoding.Codec)
	if err != nil {
		return nil, nil, err
	}
	var head *engine.Session
	if cand.Kind == planner.KindCut {
		split, err := graph.Partition(p.Model, graph.Prefix(cand.Cut))
		if err != nil {
			return nil, nil, err
		}
		if head, err = engine.NewSession(split.Head, p.Edge); err != nil {
			return nil, nil, err
		}
	}
	var post []byte
	if p.Spec.Task != "" {
		if post, err = zoo.MarshalPost(p.Post); err != nil {
			return nil, nil, err
		}
	}
	if _, err := c.EnsureModel(ctx, p.ModelBytes); err != nil {
		return nil, nil, err
	}
	run := func(ctx context.Context) (time.Duration, time.Duration, error) {
		t0 := time.Now()
		mid := p.Sample
		if head != nil {
			var err error
			if mid, err = head.Run(ctx, p.Sample); err != nil {
				return 0, 0, err
			}
			if _, err := slowEdge(ctx, time.Since(t0), 0, p.EdgeSlowdown); err != nil {
				return 0, 0, err
			}
		}
		edge := time.Since(t0)
		wires, err := encodeAll(mid, spec)
		if err != nil {
			return 0, 0, err
		}
		req := transport.InferRequest{ModelHash: p.Hash, Cut: cand.Cut, Tensors: wires, Post: post}
		res, err := c.Infer(ctx, req)
		if err != nil {
			return 0, 0, err
		}
		return edge, time.Duration(res.ServerNanos), nil
	}
	closeFn := func() {
		if head != nil {
			head.Close()
		}
	}
	return run, closeFn, nil
}

func encodeAll(ts []tensor.Tensor, spec transport.CodecSpec) ([]transport.WireTensor, error) {
	out := make([]transport.WireTensor, len(ts))
	for i, t := range ts {
		w, err := transport.EncodeTensor(t, spec)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", t.Name, err)
		}
		out[i] = w
	}
	return out, nil
}

// Oracle returns the plans a regret's "best measured" is taken over, so
// that a better plan the planner missed shows up: the planner's top three,
// every every-th split cut in cut order (every split cut when every <= 1),
// and the baselines edge-only, server-only raw and server-only JPEG, each
// with the encoding the planner prices best for it; feasible ones only,
// each once, the chosen plan first.
func (p *Planned) Oracle(every int) []planner.Plan {
	every = max(every, 1)
	var out []planner.Plan
	seen := map[string]bool{}
	add := func(pl planner.Plan) {
		if name := pl.Candidate.Name(); pl.Feasible && !seen[name] {
			seen[name] = true
			out = append(out, pl)
		}
	}
	for i, pl := range p.Ranked {
		if i < 3 {
			add(pl)
		}
	}
	var cuts []planner.Plan
	for _, pl := range p.Ranked {
		switch pl.Candidate.Kind {
		case planner.KindCut:
			cuts = append(cuts, pl)
		default:
			add(pl) // edge-only and the server-only ones
		}
	}
	slices.SortFunc(cuts, func(a, b planner.Plan) int { return a.Candidate.Cut - b.Candidate.Cut })
	for i, pl := range cuts {
		if i%every == 0 {
			add(pl)
		}
	}
	return out
}
