package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"tracr/bitrate"
	"tracr/netprobe"
	"tracr/planner"
	"tracr/quantile"
	"tracr/tensor"
	"tracr/transport"
	"tracr/zoo"
)

// ExecOptions configures Execute.
type ExecOptions struct {
	// Planned is the model with its priced candidates (see Plan).
	Planned *Planned
	// Plan is the plan to run. When Adaptive, the re-planner starts on its
	// own best plan instead and Plan is ignored.
	Plan     planner.Plan
	Adaptive bool
	// Replan tunes the re-planner (zero: planner.DefaultReplanConfig).
	Replan planner.ReplanConfig

	// Dataset supplies the inputs, Limit caps how many are used (0: all).
	Dataset zoo.Dataset
	Limit   int
	// InFlight bounds the requests between the start of their edge
	// compute and the collection of their result (default 3): edge
	// compute, link and server overlap up to that depth. Within it, each
	// plan gets the depth that keeps its slowest predicted stage busy (see
	// depth). When the link changes, the requests already in flight run
	// on the old plan, so it also bounds how many requests an adaptive run
	// takes to switch.
	InFlight int
	// EdgeSlowdown emulates an edge device this many times slower than
	// this machine (0 or 1 = off; normally Planned.EdgeSlowdown, so that
	// the run is the device the plan priced): after each edge compute of
	// duration d the edge sleeps (EdgeSlowdown-1)*d, and the records and
	// the re-planner see the emulated time.
	EdgeSlowdown float64

	// Client is the connection to the server; Execute owns it from now
	// on and closes it. Dial makes a new connection after the server is
	// lost. With neither, every request runs on the edge.
	Client *transport.Client
	Dial   func(ctx context.Context) (*transport.Client, error)
	// ReconnectMin and ReconnectMax bound the backoff between attempts to
	// reconnect (defaults 100 ms and 5 s).
	ReconnectMin, ReconnectMax time.Duration
	// RequestTimeout bounds one request's round trip (default 2 min, room
	// for megabytes queued on a slow link); a request past it runs on the
	// edge and the connection counts as lost.
	RequestTimeout time.Duration
	// Grace is how long requests in flight may still finish once ctx ends
	// (default 10 s); past it they are recorded as interrupted.
	Grace time.Duration
	// NoRescue turns off an adaptive run's rescue of stalled requests: a
	// request whose answer is later than its predicted round trip plus
	// the time edge-only takes is run on the edge as well, the first
	// result wins (marked Rescued when it is the edge's), and the stall
	// tells the re-planner the uplink is at most the request's bytes over
	// the time waited. Static runs never rescue: their plan is fixed.
	NoRescue bool

	// Link returns the link in force, for the records (the emulated link
	// when there is one); nil means Planned.Link, the probed one.
	Link func() planner.Link
	// Records receives one record per request, in request order; nil
	// keeps them only in the Outcome.
	Records *RecordWriter
	// Overlays, when set, is a folder that receives each input drawn with
	// its result.
	Overlays string
	// OnStart, when set, is called with the time the first request
	// starts, once everything is prepared (a link trace starts playing
	// then).
	OnStart func(time.Time)
	// Progress, when set, is called with each record as it is collected.
	Progress func(Record)
	// Log receives a line per event but probes (switch, lost server,
	// reconnection, skipped input); OnEvent, when set, receives every
	// event itself.
	Log     io.Writer
	OnEvent func(Event)
}

// Event is something that happened during a run.
type Event struct {
	// At is the time since the run started.
	At time.Duration
	// Kind is "switch", "probe", "lost", "reconnect", "reconnected",
	// "rescue", "skip" or "error"; Request the request it concerns, or -1.
	Kind    string
	Request int
	Message string
}

// Outcome is what Execute did.
type Outcome struct {
	// Records and Results hold one entry per request, in request order
	// (a failed request has a zero Result).
	Records []Record
	Results []zoo.Result
	// Start is when the first request started; Wall runs from there to
	// the last result.
	Start time.Time
	Wall  time.Duration
	// Prepared names the plans whose sessions were opened ahead.
	Prepared []string
	// Events lists the run's events in order.
	Events []Event
	// Interrupted is set when ctx ended the run before its inputs did.
	Interrupted bool
}

// request is one input on its way through the pipeline.
type request struct {
	id    int
	name  string
	img   image.Image // for overlays
	input []tensor.Tensor
	post  *zoo.PostSpec // with this input's letterbox; nil: none
	pre   time.Duration
	err   error // the input could not be read or pre-processed

	plan      planner.Plan
	fallback  bool
	bandwidth float64
	predicted time.Duration
	link      planner.Link
	start     time.Time
	end       time.Time

	edge, encode time.Duration
	bytesUp      int64
	sent, recv   time.Time
	remote       *transport.InferResult // set when the server answered
	localPost    time.Duration
	result       zoo.Result
	failed       error // the request produced no result
	// rescueAfter is how long after the send the answer is late enough
	// to run r on the edge as well (0: never); rescue is set (under x.mu)
	// once it is, and rescued when the edge's result won.
	rescueAfter time.Duration
	rescue      *rescue
	rescued     bool

	slot bool // r holds an in-flight slot until it is collected
	// computed is closed (by edgeDone) once the edge's own work for r is
	// over: its compute (head or whole model, encoding) and the writing
	// of its request.
	computed chan struct{}
	edgeOnce sync.Once
	done     chan struct{}
}

// rescue is the state of a request run both on the server and, after its
// answer was late, on the edge; x.mu guards it.
type rescue struct {
	at      time.Time
	cancel  context.CancelFunc // ends the edge's run when the server wins
	pending int                // attempts (server, edge) not yet returned
	claimed bool               // one attempt finished the request
}

// executor is one Execute call's state.
type executor struct {
	opts     ExecOptions
	p        *Planned
	edge     *edgeSessions
	edgeOnly planner.Plan
	cands    []planner.Candidate // the prepared plans' candidates
	priced   map[planKey]bool
	conn     *serverConn // nil: no server
	start    time.Time
	reqCtx   context.Context
	bgCtx    context.Context
	freed    chan struct{}  // signalled when a request leaves the pipeline
	wg       sync.WaitGroup // probes and the rescue watch
	rescues  sync.WaitGroup // server attempts of rescued requests

	mu          sync.Mutex // guards the fields below
	plan        planner.Plan
	rp          *planner.Replanner
	est         *netprobe.Estimator
	probing     bool
	outstanding int          // requests dispatched and not yet collected
	spans       []serverSpan // the latest requests' times on the server, oldest first
	events      []Event
	waiting     map[int]*request            // sent, unanswered and not rescued; nil: no rescues
	onWire      map[int]*request            // sent and unanswered, rescued or not (when rescuing)
	trips       map[planKey][]time.Duration // the latest round trips per plan, oldest first
}

// maxTrips is how many recent round trips per plan a rescue looks at,
// minTrips how many it needs to trust them.
const (
	maxTrips = 8
	minTrips = 3
)

// serverSpan is when a request's last byte reached the server and when
// the server started on it (after its queue).
type serverSpan struct {
	id             int
	arrival, begun time.Time
}

// maxSpans is how many recent server spans uploadTime looks back on.
const maxSpans = 32

type planKey struct {
	kind planner.Kind
	cut  int
}

func keyOf(c planner.Candidate) planKey { return planKey{c.Kind, c.Cut} }

// Execute runs the planned model over the dataset: a reader stage
// (decode, pre-process), an edge stage (head or whole model, encoding) and
// requests to the server, up to InFlight of them in flight, with results
// collected in order and one Record per request. When Adaptive, the
// planner's Replanner, fed each request's transfer and compute times,
// moves the run between the prepared plans; requests in flight finish on
// the plan they were made for. When the server is lost, every request in
// flight and every later one runs on the edge (marked Fallback) while the
// connection is re-established in the background; splitting resumes once
// it is. When ctx ends, no new input is read, the requests in flight
// finish (within Grace) and each still gets its record.
func Execute(ctx context.Context, opts ExecOptions) (*Outcome, error) {
	x, err := newExecutor(ctx, opts)
	if err != nil {
		if opts.Client != nil {
			opts.Client.Close()
		}
		return nil, err
	}
	defer x.edge.close()
	return x.run(ctx)
}

func newExecutor(ctx context.Context, opts ExecOptions) (*executor, error) {
	p := opts.Planned
	if p == nil || p.Model == nil {
		return nil, errors.New("execute: no planned model")
	}
	if p.Spec.Task != zoo.TaskDetect && p.Spec.Task != zoo.TaskClassify {
		return nil, fmt.Errorf("execute %s: tracr run needs to know how to pre- and post-process it: set task = %q or %q in the config (zoo models know theirs: %s)",
			p.Source, zoo.TaskClassify, zoo.TaskDetect, strings.Join(zoo.Names(), ", "))
	}
	if opts.Dataset == nil {
		return nil, errors.New("execute: no dataset")
	}
	if err := CheckEdgeSlowdown(opts.EdgeSlowdown); err != nil {
		return nil, fmt.Errorf("execute: edge slowdown %w", err)
	}
	opts.InFlight = cmpDefault(opts.InFlight, 3)
	opts.ReconnectMin = cmpDefault(opts.ReconnectMin, 100*time.Millisecond)
	opts.ReconnectMax = max(cmpDefault(opts.ReconnectMax, 5*time.Second), opts.ReconnectMin)
	opts.RequestTimeout = cmpDefault(opts.RequestTimeout, 2*time.Minute)
	opts.Grace = cmpDefault(opts.Grace, 10*time.Second)
	if opts.Link == nil {
		opts.Link = func() planner.Link { return p.Link }
	}
	x := &executor{opts: opts, p: p, priced: map[planKey]bool{}, freed: make(chan struct{}, 1)}
	for _, c := range p.Problem.Candidates {
		x.priced[keyOf(c)] = true
		if c.Kind == planner.KindEdgeOnly {
			x.edgeOnly = planner.Evaluate(c, planner.Encoding{}, p.Link, planner.Latency)
		}
	}
	if x.edgeOnly.Candidate.Kind != planner.KindEdgeOnly {
		x.edgeOnly = planner.Plan{Candidate: planner.Candidate{Kind: planner.KindEdgeOnly, Cut: len(p.Model.Nodes())}, Feasible: true}
	}
	serverless := opts.Client == nil && opts.Dial == nil
	start := opts.Plan
	switch {
	case serverless:
		start, opts.Adaptive = x.edgeOnly, false
	case opts.Adaptive:
		if len(p.Ranked) == 0 {
			return nil, errors.New("execute: adaptive needs ranked plans")
		}
		start = p.Ranked[0]
	case start.Candidate.Kind == planner.KindCut && start.Candidate.Cut == 0 && start.Encoding.Codec == "":
		return nil, errors.New("execute: no plan given")
	}
	cands := preparedCandidates(p, start, opts.Adaptive)
	x.cands = cands
	if opts.Adaptive {
		prob := p.Problem
		prob.Candidates = cands
		rp, err := planner.NewReplanner(prob, opts.Replan)
		if err != nil {
			return nil, fmt.Errorf("execute: %w", err)
		}
		x.rp, start = rp, rp.Current()
		if !opts.NoRescue {
			x.waiting, x.onWire, x.trips = map[int]*request{}, map[int]*request{}, map[planKey][]time.Duration{}
		}
	} else {
		x.est = netprobe.NewEstimator(8, 0)
	}
	x.plan = start
	var cuts []int
	for _, c := range cands {
		cuts = append(cuts, c.Cut)
	}
	var err error
	if x.edge, err = openEdge(ctx, p, cuts, opts.EdgeSlowdown); err != nil {
		return nil, err
	}
	if !serverless {
		if err := x.connect(ctx, cands); err != nil {
			x.edge.close()
			return nil, err
		}
	}
	return x, nil
}

func cmpDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// connect sets up the server connection: the model uploaded and the tail
// session of every prepared cut opened, now and after each reconnection.
func (x *executor) connect(ctx context.Context, cands []planner.Candidate) error {
	post, err := zoo.MarshalPost(x.p.Post)
	if err != nil {
		return err
	}
	x.conn = &serverConn{
		dial: x.opts.Dial,
		setup: func(ctx context.Context, c *transport.Client) error {
			return warmServer(ctx, c, x.p, x.edge, cands, post)
		},
		minWait: x.opts.ReconnectMin, maxWait: x.opts.ReconnectMax,
		event: func(kind, msg string) { x.event(kind, -1, msg) },
	}
	c := x.opts.Client
	if c == nil {
		if c, err = x.opts.Dial(ctx); err != nil {
			return err
		}
	}
	if err := x.conn.setup(ctx, c); err != nil {
		c.Close()
		return fmt.Errorf("prepare the server: %w", err)
	}
	x.conn.client = c
	return nil
}

// event records an event and reports it.
func (x *executor) event(kind string, req int, msg string) {
	e := Event{At: time.Since(x.start), Kind: kind, Request: req, Message: msg}
	if x.start.IsZero() {
		e.At = 0
	}
	x.mu.Lock()
	x.events = append(x.events, e)
	x.mu.Unlock()
	if x.opts.Log != nil && kind != "probe" { // probes are many; the sidecar has them
		who := ""
		if req >= 0 {
			who = fmt.Sprintf("request %d: ", req)
		}
		fmt.Fprintf(x.opts.Log, "[%8.3fs] %s%s\n", e.At.Seconds(), who, msg)
	}
	if x.opts.OnEvent != nil {
		x.opts.OnEvent(e)
	}
}

// run drives the three stages and gathers the outcome.
func (x *executor) run(ctx context.Context) (*Outcome, error) {
	// Requests in flight outlive ctx by Grace, so that Ctrl-C lets them
	// finish and each still gets its record.
	reqCtx, cancelReq := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelReq()
	go func() {
		select {
		case <-ctx.Done():
			grace := time.NewTimer(x.opts.Grace)
			defer grace.Stop()
			select {
			case <-grace.C:
				cancelReq()
			case <-reqCtx.Done(): // the run ended
			}
		case <-reqCtx.Done():
		}
	}()
	bgCtx, cancelBg := context.WithCancel(ctx)
	x.reqCtx, x.bgCtx = reqCtx, bgCtx
	if x.conn != nil {
		x.conn.ctx = bgCtx
	}
	x.start = time.Now()
	if x.opts.OnStart != nil {
		x.opts.OnStart(x.start)
	}
	out := &Outcome{Start: x.start}
	for _, c := range x.cands {
		out.Prepared = append(out.Prepared, c.Name())
	}

	if x.waiting != nil {
		x.wg.Add(1)
		go x.watch()
	}
	inputs := make(chan *request, x.opts.InFlight)
	queue := make(chan *request, x.opts.InFlight)
	go x.read(ctx, inputs)
	go x.dispatchAll(ctx, inputs, queue)
	var werr error
	for r := range queue {
		<-r.done
		rec := x.record(r)
		x.observe(r, rec)
		if r.slot {
			// The slot frees only now, after the re-planner has seen r:
			// the next request is planned knowing how r went.
			x.release()
		}
		out.Records = append(out.Records, rec)
		out.Results = append(out.Results, r.result)
		if x.opts.Records != nil && werr == nil {
			werr = x.opts.Records.Write(rec)
		}
		if x.opts.Progress != nil {
			x.opts.Progress(rec)
		}
		if x.opts.Overlays != "" && r.failed == nil && r.err == nil && werr == nil {
			werr = x.overlay(r)
		}
		r.img, r.input = nil, nil
	}
	if len(out.Records) > 0 {
		out.Wall = time.Since(x.start)
	}
	cancelBg()
	if x.conn != nil {
		// Closed first: a probe or a rescued request's server attempt may
		// be waiting behind bytes still crossing a slow link.
		x.conn.close()
	}
	x.wg.Wait()
	x.rescues.Wait()
	out.Interrupted = ctx.Err() != nil
	x.mu.Lock()
	out.Events = x.events
	x.mu.Unlock()
	return out, werr
}

// read is the first stage: it reads and pre-processes each input in turn
// until the dataset or ctx ends.
func (x *executor) read(ctx context.Context, inputs chan<- *request) {
	defer close(inputs)
	n := x.opts.Dataset.Len()
	if x.opts.Limit > 0 {
		n = min(n, x.opts.Limit)
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		r := &request{id: i, name: fmt.Sprintf("#%d", i), done: make(chan struct{}), computed: make(chan struct{})}
		t0 := time.Now()
		s, err := x.opts.Dataset.Sample(i)
		if err == nil {
			r.name, r.img = s.Name, s.Image
			in, lb := Preprocess(x.p.Spec, s.Image)
			r.input = []tensor.Tensor{in}
			post := x.p.Post
			post.Letterbox = lb
			r.post = &post
		}
		r.pre, r.err = time.Since(t0), err
		select {
		case inputs <- r:
		case <-ctx.Done():
			return
		}
		if x.p.EdgeCPU > 0 {
			// A limited edge's ONNX Runtime threads fill its CPUs: the
			// next input, pre-processed beside r's compute or the
			// encryption of its request, could only slow r down, never
			// add throughput. It waits its turn, and runs while r
			// crosses the link or runs on the server.
			select {
			case <-r.computed:
			case <-ctx.Done():
				return
			}
		}
	}
}

// dispatchAll is the edge stage: for each input it takes an in-flight
// slot, picks the plan, runs the head and sends the request, and queues it
// for the collector in order.
func (x *executor) dispatchAll(ctx context.Context, inputs <-chan *request, queue chan<- *request) {
	defer close(queue)
	for {
		var r *request
		var ok bool
		select {
		case r, ok = <-inputs:
		case <-ctx.Done():
		}
		if !ok || ctx.Err() != nil {
			return
		}
		if r.err != nil {
			x.event("skip", r.id, fmt.Sprintf("skipped %s: %s", r.name, oneLine(r.err)))
			r.edgeDone()
			close(r.done)
			queue <- r
			continue
		}
		if !x.acquire(ctx) {
			return
		}
		r.slot = true
		if !x.dispatch(r) {
			r.edgeDone()
		}
		queue <- r
	}
}

// acquire waits until the pipeline has room for one more request: fewer
// than depth(plan in force) in flight. It returns false when ctx ends
// first.
func (x *executor) acquire(ctx context.Context) bool {
	for {
		x.mu.Lock()
		limit := x.depth(x.plan)
		if c, _ := x.connCurrent(); c == nil {
			limit = x.depth(x.edgeOnly)
		}
		if x.outstanding < limit {
			x.outstanding++
			x.mu.Unlock()
			return true
		}
		x.mu.Unlock()
		select {
		case <-x.freed:
		case <-ctx.Done():
			return false
		}
	}
}

// release frees the slot of a collected request.
func (x *executor) release() {
	x.mu.Lock()
	x.outstanding--
	x.mu.Unlock()
	select {
	case x.freed <- struct{}{}:
	default:
	}
}

// connCurrent returns the server connection, nil when there is none.
func (x *executor) connCurrent() (*transport.Client, int) {
	if x.conn == nil {
		return nil, 0
	}
	return x.conn.current()
}

// depth is how many requests of plan may be in flight: enough to keep
// its slowest stage busy and no more, since a request dispatched sooner
// only waits in that stage's queue, which adds to its latency and nothing
// to the throughput. With stage times e (edge compute and encoding), l
// (transfers), s (server) and the round trip r, the slowest stage b is
// busy when ceil((e+l+s+r)/b) requests are in flight. Edge-only requests
// never queue (the edge runs them one by one), so two of them overlap
// one's post-processing with the next one's compute. InFlight caps it.
// x.mu is held.
func (x *executor) depth(plan planner.Plan) int {
	if plan.Candidate.Kind == planner.KindEdgeOnly {
		return min(2, x.opts.InFlight)
	}
	b := plan.Breakdown
	e, l, s := b.Edge+b.Encode, b.Up+b.Down, b.Server+b.Decode
	slowest := max(e, l, s)
	if slowest <= 0 {
		return x.opts.InFlight // an unpriced plan
	}
	n := int(math.Ceil(float64(e+l+s+b.RTT) / float64(slowest)))
	return min(max(n, 1), x.opts.InFlight)
}

// choose fixes the plan of r: the plan in force, or edge-only while the
// server is lost. It returns the connection to send on.
func (x *executor) choose(r *request) (*transport.Client, int) {
	x.mu.Lock()
	r.plan = x.plan
	r.bandwidth = x.bandwidth()
	x.mu.Unlock()
	r.link = x.opts.Link()
	var c *transport.Client
	gen := 0
	if r.plan.Candidate.Kind != planner.KindEdgeOnly {
		if c, gen = x.connCurrent(); c == nil {
			r.plan, r.fallback = x.edgeOnly, true
		}
	}
	r.predicted = x.predict(r.plan, r.bandwidth)
	if c != nil && r.predicted > 0 && x.waiting != nil {
		// Late: past twice the round trip expected by what edge-only
		// takes. The round trip expected is the predicted one, or as
		// the plan's recent requests took (queues included) when
		// longer. Until minTrips requests of the plan have answered,
		// nothing says what is usual for it (the first requests of a
		// run or after a switch also run colder), so none is rescued.
		b := r.plan.Breakdown
		trip := r.predicted - b.Edge - b.Encode
		x.mu.Lock()
		if recent := x.trips[keyOf(r.plan.Candidate)]; len(recent) >= minTrips {
			trip = max(trip, quantile.MedianDuration(recent))
			r.rescueAfter = 2*trip + x.edgeOnly.Breakdown.Total
		}
		x.mu.Unlock()
	}
	return c, gen
}

// bandwidth is the uplink estimate; x.mu is held.
func (x *executor) bandwidth() float64 {
	if x.rp != nil {
		return x.rp.Bandwidth()
	}
	if bw, ok := x.est.Estimate(); ok {
		return bw
	}
	return x.p.Link.Up
}

// predict prices plan at the estimated uplink; 0 for a plan the planner
// did not price.
func (x *executor) predict(plan planner.Plan, up float64) time.Duration {
	if !x.priced[keyOf(plan.Candidate)] {
		return 0
	}
	l := x.p.Link
	if up > 0 {
		l.Up = up
	}
	return planner.Evaluate(plan.Candidate, plan.Encoding, l, planner.Latency).Breakdown.Total
}

// dispatch runs r's edge part and sends it, or runs it wholly on the edge.
// It holds an in-flight slot, released when r is done. It returns whether
// it handed r to send (which calls r.edgeDone once the request is
// written).
func (x *executor) dispatch(r *request) bool {
	c, gen := x.choose(r)
	r.start = time.Now()
	if r.plan.Candidate.Kind == planner.KindEdgeOnly {
		outs, err := x.edge.run(x.reqCtx, x.edge.full, r.input)
		r.edge = time.Since(r.start)
		if err != nil {
			x.finish(r, fmt.Errorf("edge: %w", err))
			return false
		}
		go func() {
			t0 := time.Now()
			res, err := postProcessLocal(r.post, outs)
			r.localPost, r.result = time.Since(t0), res
			x.finish(r, err)
		}()
		return false
	}
	mid, err := x.edge.head(x.reqCtx, r.plan, r.input)
	r.edge = time.Since(r.start)
	if err != nil {
		x.finish(r, err)
		return false
	}
	t0 := time.Now()
	spec, err := planCodec(r.plan)
	var wires []transport.WireTensor
	if err == nil {
		wires, r.bytesUp, err = encodeTensors(mid, spec)
	}
	r.encode = time.Since(t0)
	if err != nil {
		x.finish(r, err)
		return false
	}
	post, err := zoo.MarshalPost(*r.post)
	if err != nil {
		x.finish(r, err)
		return false
	}
	r.bytesUp += int64(len(post))
	req := transport.InferRequest{ModelHash: x.p.Hash, Cut: r.plan.Candidate.Cut, Tensors: wires, Post: post}
	go x.send(c, gen, r, req)
	return true
}

// send makes r's request to the server and finishes r with its result,
// or, when the connection fails, with the same input run on the edge.
func (x *executor) send(c *transport.Client, gen int, r *request, req transport.InferRequest) {
	ctx, cancel := context.WithTimeout(x.reqCtx, x.opts.RequestTimeout)
	x.mu.Lock()
	r.sent = time.Now()
	if x.waiting != nil {
		x.onWire[r.id] = r
		if r.rescueAfter > 0 {
			x.waiting[r.id] = r
		}
	}
	x.mu.Unlock()
	res, err := c.InferWritten(ctx, req, r.edgeDone)
	recv := time.Now()
	cancel()
	x.mu.Lock()
	delete(x.waiting, r.id)
	delete(x.onWire, r.id)
	rs := r.rescue
	x.mu.Unlock()
	if rs != nil {
		x.serverAfterRescue(r, rs, gen, res, recv, err)
		return
	}
	r.recv = recv
	if err == nil && x.waiting != nil {
		x.mu.Lock()
		k := keyOf(r.plan.Candidate)
		x.trips[k] = append(x.trips[k], recv.Sub(r.sent))
		if len(x.trips[k]) > maxTrips {
			x.trips[k] = x.trips[k][1:]
		}
		x.mu.Unlock()
	}
	if err == nil {
		var out zoo.Result
		if err = json.Unmarshal(res.Post, &out); err == nil {
			r.remote, r.result = &res, out
			x.addSpan(r.id, r.recv, &res)
			x.finish(r, nil)
			return
		}
		err = fmt.Errorf("server result: %w", err)
	}
	if x.reqCtx.Err() != nil {
		x.finish(r, fmt.Errorf("interrupted: %w", err))
		return
	}
	if connectionLost(err) {
		x.conn.fail(gen, err)
	} else {
		x.event("error", r.id, fmt.Sprintf("server refused the request (%s); running it on the edge", oneLine(err)))
	}
	x.fallBack(r)
}

// fallBack runs r wholly on the edge after its request failed.
func (x *executor) fallBack(r *request) {
	res, edge, post, err := x.edge.local(x.reqCtx, r.post, r.input)
	r.fallback, r.result, r.localPost = true, res, post
	r.edge += edge
	x.finish(r, err)
}

// edgeDone marks the edge's own work for r over (see request.computed).
func (r *request) edgeDone() { r.edgeOnce.Do(func() { close(r.computed) }) }

// finish marks r done (failed when err is set).
func (x *executor) finish(r *request, err error) {
	r.end, r.failed = time.Now(), err
	close(r.done)
}

// record builds r's CSV row.
func (x *executor) record(r *request) Record {
	rec := Record{ID: r.id, Input: r.name, Pre: r.pre}
	if r.err != nil {
		rec.Error = oneLine(r.err)
		return rec
	}
	c := r.plan.Candidate
	rec.Plan, rec.Cut, rec.Codec = c.Kind.String(), c.Cut, r.plan.Encoding.Codec
	if r.fallback {
		rec.Plan, rec.Cut, rec.Codec = x.edgeOnly.Candidate.Kind.String(), x.edgeOnly.Candidate.Cut, ""
	}
	rec.Start = r.start.Sub(x.start)
	rec.Edge, rec.Encode, rec.BytesUp = r.edge, r.encode, r.bytesUp
	rec.Total, rec.Predicted, rec.Bandwidth, rec.Fallback = r.end.Sub(r.start), r.predicted, r.bandwidth, r.fallback
	rec.LinkUp, rec.LinkDown, rec.RTT = r.link.Up, r.link.Down, r.link.RTT
	rec.Post = r.localPost
	if res := r.remote; res != nil {
		rec.Server, rec.Post = time.Duration(res.ServerNanos), time.Duration(res.PostNanos)
		rec.Decode = time.Duration(res.DecodeNanos + res.EncodeNanos)
		var work time.Duration
		work, rec.Queue, rec.Down, rec.BytesDown = x.serverTimes(r.remote)
		// Up keeps the server's queue: to the edge, it is time waiting
		// for the answer like the transfer.
		rec.Up = max(r.recv.Sub(r.sent)-work-rec.Down, 0)
	} else if r.rescued {
		rec.Up = r.rescue.at.Sub(r.sent) // the time waited before the rescue
	} else if r.bytesUp > 0 {
		rec.Up = r.recv.Sub(r.sent) // the time lost on a request that failed
	}
	rec.Rescued = r.rescued
	if r.failed != nil {
		rec.Error = oneLine(r.failed)
		return rec
	}
	rec.Result = r.result.Summary()
	return rec
}

// downTime estimates the result's way back: half the round trip plus its
// bytes at the probed downlink rate. The client sees only the whole round
// trip; results are small, so the estimate's error stays small too.
func downTime(n int64, l planner.Link) time.Duration {
	d, _ := bitrate.Time(n, l.Down) // 0 for an unlimited or unknown rate
	return l.RTT/2 + d
}

// observe feeds r's measurements to the re-planner (or the passive
// bandwidth estimator) and acts on its decision. It runs in request
// order, so it knows when the previous upload reached the server.
func (x *executor) observe(r *request, rec Record) {
	if r.err != nil || r.failed != nil || r.fallback || r.rescued {
		return // a rescue told the re-planner when it began
	}
	o := planner.Observation{Cut: r.plan.Candidate.Cut, Kind: r.plan.Candidate.Kind, Edge: r.edge}
	x.mu.Lock()
	if res := r.remote; res != nil {
		o.Server = time.Duration(res.ServerNanos)
		o.UpBytes, o.Up = rec.BytesUp, x.uploadTime(r.id, r.sent)
		if c := x.p.sendCost(o.UpBytes); c < o.Up {
			// A limited edge's own sending (priced in the plan's Encode)
			// is in the upload's time: the link's share is the rest.
			o.Up -= c
		}
	}
	if x.rp == nil {
		if o.UpBytes > 0 && o.Up > 0 {
			x.est.Observe(o.UpBytes, o.Up)
		}
		x.mu.Unlock()
		return
	}
	d := x.rp.Observe(o)
	x.mu.Unlock()
	x.decide(d, r.id)
}

// serverTimes returns what the server reported in res: its work (decode,
// tail, post-processing, encoding) and its queue, and the estimated time
// the result spent coming back.
func (x *executor) serverTimes(res *transport.InferResult) (work, queue, down time.Duration, bytesDown int64) {
	bytesDown = int64(len(res.Post))
	for _, t := range res.Tensors {
		bytesDown += int64(len(t.Data))
	}
	work = time.Duration(res.DecodeNanos + res.ServerNanos + res.PostNanos + res.EncodeNanos)
	return work, time.Duration(res.QueueNanos), downTime(bytesDown, x.p.Link), bytesDown
}

// addSpan notes when request id reached the server and when the server
// started on it, as soon as its answer res is in (received at recv,
// possibly before earlier requests').
func (x *executor) addSpan(id int, recv time.Time, res *transport.InferResult) {
	work, queue, down, _ := x.serverTimes(res)
	arrival := recv.Add(-down - work - queue)
	x.mu.Lock()
	defer x.mu.Unlock()
	x.spans = append(x.spans, serverSpan{id: id, arrival: arrival, begun: arrival.Add(queue)})
	if len(x.spans) > maxSpans {
		x.spans = x.spans[1:]
	}
}

// uploadTime estimates how long the bytes of request id, sent at sent,
// were moving on the uplink. They
// reached the server at arrival (the answer's time less the server's own
// times and the way back); they started to move no earlier than the send
// plus the one-way latency, and no earlier than the server took on the
// request that arrived before r: uploads queue behind each other on the
// link, and a server busy with a request (its read loop held while all its
// workers are busy) leaves the next one waiting in the connection's
// buffers, which says nothing about the link. x.mu is held.
func (x *executor) uploadTime(id int, sent time.Time) time.Duration {
	var self serverSpan
	for _, s := range x.spans {
		if s.id == id {
			self = s
		}
	}
	if self.arrival.IsZero() {
		return 0
	}
	begin := sent.Add(x.p.Link.RTT / 2)
	for _, s := range x.spans {
		if s.id != id && s.arrival.Before(self.arrival) && s.begun.After(begin) {
			begin = s.begun
		}
	}
	return self.arrival.Sub(begin)
}

// decide acts on a re-planner decision made after request id.
func (x *executor) decide(d planner.Decision, id int) {
	if d.Switch {
		x.mu.Lock()
		from := x.plan
		x.plan = d.Plan
		x.mu.Unlock()
		x.event("switch", id, fmt.Sprintf("%s -> %s %s (%s)", planLabel(from), planLabel(d.Plan), d.Plan.Encoding.Codec, d.Reason))
	}
	if d.Probe {
		x.probe()
	}
}

func planLabel(p planner.Plan) string { return p.Candidate.Name() }

// probe measures the uplink actively, in the background: the plan in
// force sends nothing, so the requests cannot tell when the link gets
// better. It pings, uploads about 20 ms worth at the current estimate
// (16 KiB to 1 MiB), and hands the rate to the re-planner.
func (x *executor) probe() {
	c, _ := x.conn.current()
	x.mu.Lock()
	if x.probing || c == nil {
		x.mu.Unlock()
		return
	}
	x.probing = true
	n := int64(x.rp.Bandwidth() * 0.020 / 8)
	x.mu.Unlock()
	n = min(max(n, 16<<10), 1<<20)
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		defer func() {
			x.mu.Lock()
			x.probing = false
			x.mu.Unlock()
		}()
		rtt, err := c.Ping(x.bgCtx)
		if err != nil {
			return
		}
		t0 := time.Now()
		if err := c.Upload(x.bgCtx, make([]byte, n)); err != nil {
			return
		}
		d := time.Since(t0) - rtt
		if d <= 0 {
			return
		}
		bits := float64(n) * 8 / d.Seconds()
		x.mu.Lock()
		cur := x.rp.Current().Candidate
		dec := x.rp.Observe(planner.Observation{Cut: cur.Cut, Kind: cur.Kind, ProbeBits: bits})
		x.mu.Unlock()
		x.event("probe", -1, fmt.Sprintf("probed the uplink: %.2f Mbit/s", bits/1e6))
		dec.Probe = false
		x.decide(dec, -1)
	}()
}

// overlay draws r's result on its input and saves it as a PNG.
func (x *executor) overlay(r *request) error {
	var img image.Image
	if x.p.Spec.Task == zoo.TaskDetect {
		img = zoo.DrawDetections(r.img, r.result.Boxes, x.p.Synthetic)
	} else {
		img = zoo.DrawClassification(r.img, r.result.Classes, x.p.Synthetic)
	}
	base := strings.TrimSuffix(filepath.Base(r.name), filepath.Ext(r.name))
	return zoo.WritePNG(filepath.Join(x.opts.Overlays, fmt.Sprintf("%06d-%s.png", r.id, base)), img)
}
