package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"tracr/planner"
	"tracr/tensor"
	"tracr/transport"
	"tracr/zoo"
)

// rescueTick is how often an adaptive run looks for late answers.
const rescueTick = 10 * time.Millisecond

// maxAbandoned bounds the rescued requests still on the link, in
// multiples of ExecOptions.InFlight.
const maxAbandoned = 4

// watch looks for late answers until the run ends (see
// ExecOptions.NoRescue).
func (x *executor) watch() {
	defer x.wg.Done()
	t := time.NewTicker(rescueTick)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			x.rescueLate(now)
		case <-x.bgCtx.Done():
			return
		}
	}
}

// rescueLate starts the rescue of every request whose answer is late at
// now. A request sent on a link that has just collapsed would otherwise
// wait for all its bytes to cross it; its stall is also the first sign of
// the collapse, so the re-planner hears of it at once, and stops sending.
// As a safeguard, at most maxAbandoned times InFlight rescued requests
// may still have bytes on the link: past that, the link is left to drain.
func (x *executor) rescueLate(now time.Time) {
	type late struct {
		r *request
		d planner.Decision
	}
	var due []late
	x.mu.Lock()
	ids := make([]int, 0, len(x.waiting))
	for id, r := range x.waiting {
		if now.Sub(r.sent) >= r.rescueAfter {
			ids = append(ids, id)
		}
	}
	sort.Ints(ids)
	abandoned := 0 // rescued requests whose server attempt is still out
	for _, o := range x.onWire {
		if o.rescue != nil {
			abandoned++
		}
	}
	for _, id := range ids {
		if abandoned >= maxAbandoned*x.opts.InFlight {
			break
		}
		r := x.waiting[id]
		delete(x.waiting, id)
		abandoned++
		x.rescues.Add(1)
		ctx, cancel := context.WithCancel(x.reqCtx)
		r.rescue = &rescue{at: now, cancel: cancel, pending: 2}
		bytes, waited := x.stalled(r, now)
		d := x.rp.Observe(planner.Observation{Cut: r.plan.Candidate.Cut, Kind: r.plan.Candidate.Kind,
			UpBytes: bytes, Up: waited, Late: true})
		due = append(due, late{r, d})
		// r is not done while it waits, so its input is still there.
		go x.rescueOnEdge(ctx, r, r.post, r.input)
	}
	x.mu.Unlock()
	for _, l := range due {
		x.event("rescue", l.r.id, fmt.Sprintf("no answer %.0f ms after sending (predicted %.0f ms); running it on the edge as well",
			msf(now.Sub(l.r.sent)), msf(l.r.predicted-l.r.plan.Breakdown.Edge-l.r.plan.Breakdown.Encode)))
		x.decide(l.d, l.r.id)
	}
}

// stalled returns what a late request r says of the uplink at now: bytes
// that had not all crossed it after waited. They are r's and those of
// every request sent before it and still unanswered (the link and the
// server take them first); they started no earlier than the first of
// those was sent, and the server's work on all of them and the way back
// take at least their predicted times (counted as if none overlapped a
// transfer, so the bound errs high, never low). x.mu is held.
func (x *executor) stalled(r *request, now time.Time) (bytes int64, waited time.Duration) {
	first := r.sent
	var work time.Duration
	for _, o := range x.onWire {
		if o.id > r.id {
			continue
		}
		bytes += o.bytesUp
		if o.sent.Before(first) {
			first = o.sent
		}
		work += o.plan.Breakdown.Server + o.plan.Breakdown.Decode
	}
	b := r.plan.Breakdown
	return bytes, now.Sub(first) - b.RTT - b.Down - work
}

// rescueOnEdge runs a rescued request on the edge; the first of the edge
// and the server to answer finishes it.
func (x *executor) rescueOnEdge(ctx context.Context, r *request, spec *zoo.PostSpec, input []tensor.Tensor) {
	res, edge, post, err := x.edge.local(ctx, spec, input)
	x.mu.Lock()
	rs := r.rescue
	defer rs.cancel()
	rs.pending--
	won := err == nil && !rs.claimed
	rs.claimed = rs.claimed || won
	last := rs.pending == 0 && !rs.claimed
	x.mu.Unlock()
	switch {
	case won:
		r.rescued, r.result, r.localPost = true, res, post
		r.edge += edge
		x.finish(r, nil)
	case last:
		x.finish(r, fmt.Errorf("rescue on the edge: %w", err))
	}
}

// serverAfterRescue handles the server's answer to a rescued request:
// it finishes the request when it comes first, and otherwise still tells
// the re-planner how long the bytes took.
func (x *executor) serverAfterRescue(r *request, rs *rescue, gen int, res transport.InferResult, recv time.Time, err error) {
	defer x.rescues.Done()
	var out zoo.Result
	if err == nil {
		if err = json.Unmarshal(res.Post, &out); err != nil {
			err = fmt.Errorf("server result: %w", err)
		}
	}
	x.mu.Lock()
	rs.pending--
	won := err == nil && !rs.claimed
	rs.claimed = rs.claimed || won
	last := rs.pending == 0 && !rs.claimed
	x.mu.Unlock()
	if err == nil {
		x.addSpan(r.id, recv, &res)
	}
	switch {
	case won:
		rs.cancel()
		r.recv, r.remote, r.result = recv, &res, out
		x.finish(r, nil)
		return
	case last:
		x.finish(r, err)
	}
	if err != nil {
		if connectionLost(err) && x.reqCtx.Err() == nil {
			x.conn.fail(gen, err)
		}
		return
	}
	// The edge answered first; the server's answer still measures the
	// link.
	x.mu.Lock()
	o := planner.Observation{Cut: r.plan.Candidate.Cut, Kind: r.plan.Candidate.Kind, UpBytes: r.bytesUp, Up: x.uploadTime(r.id, r.sent)}
	d := x.rp.Observe(o)
	x.mu.Unlock()
	x.decide(d, r.id)
}
