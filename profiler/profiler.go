// Package profiler measures what the planner's cost model needs from one
// machine, with numbers that can be trusted.
//
// The model is cut into consecutive segments at candidate cuts, each segment
// a real ONNX Runtime session with full graph optimisation, timed with a
// monotonic clock around Session.Run only, warm-up runs excluded. Summed,
// the segments give edge(c) (nodes before cut c) and server(c) (the rest)
// for every candidate cut. Per-operator times do not add up to what a
// session costs (ONNX Runtime fuses operators, and a cut breaks fusions), so
// the whole model and the halves at a few cuts are also timed directly as
// single sessions, and how far the segment sums are from them is reported
// as the fusion error.
//
// A per-node table comes from ONNX Runtime's own profiler (its Chrome-trace
// JSON opens in Perfetto), mapped to tracr's node IDs. System stats are
// sampled by a background goroutine that is held off while a timed run is
// in progress (Sampler.Quiet). A Profile is versioned JSON and can be
// cached per model, provider, thread count and machine (Cached).
//
// Run is the one entry point; tracr profile calls it, and so will the
// server when an edge asks it for a profile.
package profiler

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"tracr/cpulimit"
	"tracr/engine"
	"tracr/graph"
	"tracr/quantile"
	"tracr/tensor"
)

// Defaults of Options.
const (
	DefaultRepeats = 10
	DefaultChecks  = 3
	DefaultPasses  = 3
	// AllCutsUpTo is the largest model (in compute nodes) whose every cut
	// is a candidate by default; see DefaultCuts.
	AllCutsUpTo = 60
	// DefaultSpans is the number of spans DefaultCuts picks one cut from in
	// a larger model.
	DefaultSpans = 32
)

// Options configures Run. The zero value profiles on the CPU with ONNX
// Runtime's default threading.
type Options struct {
	// Provider is "cpu" (or "") or "cuda".
	Provider string
	// Threads is the intra-op thread count of every session; 0 leaves ONNX
	// Runtime's default (one per physical core).
	Threads int
	// Repeats is the number of timed runs of each measurement; 0 means
	// DefaultRepeats.
	Repeats int
	// Warmup is the number of untimed runs after a session is created; 0
	// means 1 (one is always made: it also produces each segment's outputs
	// for the next).
	Warmup int
	// Passes splits the Repeats timed runs of every measurement over this
	// many passes through all of them, each with fresh sessions, so that a
	// burst of load from elsewhere cannot move a whole measurement; 0 means
	// DefaultPasses. It is capped at Repeats.
	Passes int
	// Cuts lists the candidate cut IDs; 0 and the last cut are always
	// added. Nil means DefaultCuts.
	Cuts []int
	// Checks is how many interior candidate cuts get their head and tail
	// timed directly, besides the whole model; 0 means DefaultChecks and a
	// negative number none.
	Checks int
	// NodesOptimized measures the per-node table with graph optimisations
	// on, as deployed: fused operators then stand for several nodes and
	// some nodes do not appear. By default they are off, so every ONNX node
	// has its row.
	NodesOptimized bool
	// TraceFile, when set, receives ONNX Runtime's Chrome-trace profile of
	// the per-node runs (it opens in Perfetto).
	TraceFile string
	// Seed seeds the random sample inputs; 0 means 1.
	Seed uint64
	// SampleInterval is the system stats sampling period; 0 means 100ms.
	SampleInterval time.Duration
	// NVMLLibrary and PowercapDir are passed to the Sampler (see
	// SamplerOptions).
	NVMLLibrary string
	PowercapDir string
	// Fresh makes Cached measure again even when a matching profile is
	// cached (the new one replaces it): a cached profile keeps the load
	// the machine had when it was measured.
	Fresh bool
	// CPULimit is the kernel CPU-bandwidth limit, in cores, that this
	// process runs under (package cpulimit); 0 means none. The profiler
	// does not apply it; it records it, and it is part of the cache key:
	// a profile taken under a limit is the limited device's.
	CPULimit float64
	// InputShapes sizes the model's dynamic inputs (engine.Prepare): the
	// profile times the model at those sizes. It is part of the cache key.
	InputShapes engine.InputShapes
	// Rechecks is how many times Cached runs the whole model to check a
	// cached profile before trusting it; 0 means DefaultRechecks and a
	// negative number none.
	Rechecks int
}

// DefaultRechecks is how many whole-model runs check a cached profile.
const DefaultRechecks = 5

// Validate reports the first invalid option, without loading anything, so
// that a caller can refuse bad input before slow work.
func (o Options) Validate() error {
	_, err := o.normalise()
	return err
}

// normalise checks opts and fills in defaults.
func (o Options) normalise() (Options, error) {
	switch p := strings.ToLower(o.Provider); p {
	case "", "cpu":
		o.Provider = "cpu"
	case "cuda":
		o.Provider = p
	default:
		return o, fmt.Errorf("unknown execution provider %q (want cpu or cuda)", o.Provider)
	}
	if o.Threads < 0 {
		return o, fmt.Errorf("threads must be >= 0 (0: ONNX Runtime's default), got %d", o.Threads)
	}
	if o.Repeats < 0 {
		return o, fmt.Errorf("repeats must be >= 1, got %d", o.Repeats)
	}
	if o.Repeats == 0 {
		o.Repeats = DefaultRepeats
	}
	if o.Warmup < 0 {
		return o, fmt.Errorf("warm-up runs must be >= 0, got %d", o.Warmup)
	}
	if o.Warmup == 0 {
		o.Warmup = 1
	}
	if o.Passes < 0 {
		return o, fmt.Errorf("passes must be >= 0, got %d", o.Passes)
	}
	if o.Passes == 0 {
		o.Passes = DefaultPasses
	}
	if o.Checks == 0 {
		o.Checks = DefaultChecks
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.CPULimit < 0 {
		return o, fmt.Errorf("CPU limit must be >= 0 (0: none), got %g", o.CPULimit)
	}
	if o.Rechecks == 0 {
		o.Rechecks = DefaultRechecks
	}
	return o, nil
}

// Run profiles a serialized ONNX model (source says where it came from) on
// this machine. It parses the model, makes seeded sample inputs (probing
// untyped tensors, see engine.Prepare), times the whole model, the segments
// between candidate cuts and the direct checks, measures the per-node table
// with ONNX Runtime's profiler, and samples system stats throughout.
func Run(ctx context.Context, model []byte, source string, opts Options) (*Profile, error) {
	opts, err := opts.normalise()
	if err != nil {
		return nil, err
	}
	ortVersion, err := engine.Version()
	if err != nil {
		return nil, err
	}
	m, err := graph.Parse(model)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", source, err)
	}
	inputs, err := engine.Prepare(ctx, m, opts.Seed, opts.InputShapes)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", source, err)
	}
	cuts, err := candidateCuts(m, opts.Cuts)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", source, err)
	}

	p := &Profile{
		Version:        Version,
		Created:        time.Now().UTC().Truncate(time.Second),
		Machine:        DescribeMachine(ctx, opts.NVMLLibrary),
		ORTVersion:     ortVersion,
		Provider:       opts.Provider,
		Threads:        opts.Threads,
		Warmup:         opts.Warmup,
		Repeats:        opts.Repeats,
		CPULimit:       opts.CPULimit,
		Model:          ModelInfo{Hash: HashModel(model), Source: source, Nodes: len(m.Nodes()), InputShapes: engine.ShapesOf(inputs).String()},
		NodesOptimized: opts.NodesOptimized,
	}
	sampler := StartSampler(ctx, SamplerOptions{Interval: opts.SampleInterval, NVMLLibrary: opts.NVMLLibrary, PowercapDir: opts.PowercapDir})
	err = measure(ctx, p, m, model, inputs, cuts, opts, sampler)
	p.Stats = sampler.Stop(ctx)
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", source, err)
	}
	return p, nil
}

// measure fills p's timings.
func measure(ctx context.Context, p *Profile, m *graph.Model, model []byte, inputs []tensor.Tensor, cuts []int, opts Options, sampler *Sampler) error {
	t := &timer{sampler: sampler, opts: opts}
	checkCuts := pickChecks(m, cuts, opts.Checks)
	var (
		whole      []run
		segs       = make([][]run, len(cuts)-1)
		heads      = make([][]run, len(checkCuts))
		tails      = make([][]run, len(checkCuts))
		segModels  = make([][]byte, len(cuts)-1)
		checkSplit = make([]*graph.Split, len(checkCuts))
	)
	for pass := range t.passes() {
		n := t.runsIn(pass)
		// The whole model first: with --provider cuda, this is where a
		// missing CUDA provider shows, before any slow work.
		d, _, err := t.time(ctx, model, byName(inputs), n)
		if err != nil {
			return fmt.Errorf("whole model: %w", err)
		}
		whole = append(whole, d...)

		// Each segment reads the real tensors the one before computed from
		// the sample inputs; its outputs are exactly the tensors crossing
		// its end cut, all that any later segment reads.
		avail := byName(inputs)
		crossing := map[int]map[string]tensor.Tensor{}
		for i := range segModels {
			a, b := cuts[i], cuts[i+1]
			if segModels[i] == nil {
				if segModels[i], err = segmentModel(m, a, b); err != nil {
					return fmt.Errorf("segment %d..%d: %w", a, b, err)
				}
			}
			d, out, err := t.time(ctx, segModels[i], avail, n)
			if err != nil {
				return fmt.Errorf("segment %d..%d: %w", a, b, err)
			}
			segs[i] = append(segs[i], d...)
			avail = byName(out)
			if slices.Contains(checkCuts, b) {
				crossing[b] = avail
			}
		}

		for k, c := range checkCuts {
			if checkSplit[k] == nil {
				if checkSplit[k], err = graph.Partition(m, graph.Prefix(c)); err != nil {
					return fmt.Errorf("check cut %d: %w", c, err)
				}
			}
			d, _, err := t.time(ctx, checkSplit[k].Head, byName(inputs), n)
			if err != nil {
				return fmt.Errorf("check cut %d: head: %w", c, err)
			}
			heads[k] = append(heads[k], d...)
			if d, _, err = t.time(ctx, checkSplit[k].Tail, crossing[c], n); err != nil {
				return fmt.Errorf("check cut %d: tail: %w", c, err)
			}
			tails[k] = append(tails[k], d...)
		}
	}

	price := pricer(whole, cpulimit.OwnRate())
	p.Whole = summarise(price(whole))
	for i, d := range segs {
		p.Segments = append(p.Segments, Segment{From: cuts[i], To: cuts[i+1], Time: summarise(price(d))})
	}
	p.Cuts = cumulative(m, cuts, p.Segments, opts.Repeats)
	last, _ := p.Cut(len(m.Nodes()))
	p.Checks = append(p.Checks, newCheck(len(m.Nodes()), "whole", p.Whole, last.Edge))
	for k, c := range checkCuts {
		ct, _ := p.Cut(c)
		p.Checks = append(p.Checks, newCheck(c, "head", summarise(price(heads[k])), ct.Edge), newCheck(c, "tail", summarise(price(tails[k])), ct.Server))
	}
	errs := make([]float64, len(p.Checks))
	for i, c := range p.Checks {
		errs[i] = abs(c.Error)
		p.setDirect(c)
	}
	p.FusionError = quantile.Median(errs)

	var err error
	if p.Nodes, err = nodes(ctx, m, model, inputs, opts, sampler); err != nil {
		return fmt.Errorf("per-node table: %w", err)
	}
	return nil
}

// timer times sessions one at a time, with sampling held off during each
// timed run.
//
// Each session is timed in one block and closed before the next one is
// created: ONNX Runtime's intra-op worker threads spin for a while after
// each run before they sleep, so a session timed while another one's
// thread pool is alive competes with it for the cores (interleaving open
// sessions doubled AlexNet's Gemm times on a 2-core machine). Closing a
// session joins its threads. Drifting load is met instead by passes: the
// Repeats timed runs of each measurement are split over Passes passes
// through all of them, each with fresh sessions, so that a burst of load
// from elsewhere lands in one pass and the median over all runs shrugs it
// off.
type timer struct {
	sampler *Sampler
	opts    Options
}

func (t *timer) passes() int { return min(t.opts.Passes, t.opts.Repeats) }

// runsIn returns how many timed runs each measurement makes in a pass.
func (t *timer) runsIn(pass int) int {
	n := t.opts.Repeats / t.passes()
	if pass < t.opts.Repeats%t.passes() {
		n++
	}
	return n
}

// run is one timed run: its wall time and this process's CPU time.
type run struct{ wall, cpu time.Duration }

// pricer returns how runs are priced. Without a CPU limit (rate 0) a
// run's time is its wall time. In a CPU-limited process
// (cpulimit.Group.Steady, entered) it is its CPU time at the rate the
// whole model's runs measured, CPU time over wall time summed over them
// (cpulimit.Sustained): the limit holds the process to its share in
// windows of a few milliseconds, so a segment shorter than a few windows
// measures anywhere from its full-speed time to a window more than its
// share, while its CPU time does not depend on where in a window it
// started; and the rate of this model's own work, rather than the
// limit's calibration (rate), because memory-bound work is counted more
// CPU time per second under the limit than the calibration's arithmetic.
// Where the whole model's runs measured nothing, rate is used.
func pricer(whole []run, rate float64) func([]run) []time.Duration {
	if rate > 0 {
		var wall, cpu time.Duration
		for _, r := range whole {
			wall, cpu = wall+r.wall, cpu+r.cpu
		}
		if wall > 0 && cpu > 0 {
			rate = cpu.Seconds() / wall.Seconds()
		}
	}
	return func(rs []run) []time.Duration {
		ds := make([]time.Duration, len(rs))
		for i, r := range rs {
			ds[i] = cpulimit.Sustained(r.wall, r.cpu, rate)
		}
		return ds
	}
}

// time loads a model into a session with full graph optimisation, runs it
// Warmup times untimed and runs times timed, closes it, and returns the
// runs and the outputs of the first run. Only Session.Run is inside
// the clock; with CUDA it returns once the outputs are back in host memory,
// so the GPU work is complete when the clock stops; pricer turns the runs
// into times.
func (t *timer) time(ctx context.Context, model []byte, avail map[string]tensor.Tensor, runs int) ([]run, []tensor.Tensor, error) {
	s, err := engine.NewSession(model, engine.Options{Threads: t.opts.Threads, Provider: t.opts.Provider})
	if err != nil {
		return nil, nil, err
	}
	defer s.Close()
	in, err := pick(avail, s.Inputs())
	if err != nil {
		return nil, nil, err
	}
	var first []tensor.Tensor
	for i := range t.opts.Warmup {
		out, err := s.Run(ctx, in)
		if err != nil {
			return nil, nil, err
		}
		if i == 0 {
			first = out
		}
	}
	// Collect now, so that the timed runs' own garbage is the most a
	// collection could have to deal with.
	runtime.GC()
	ds := make([]run, runs)
	for i := range ds {
		t.sampler.Quiet(func() {
			start, cpu := time.Now(), cpulimit.ProcessCPU()
			_, err = s.Run(ctx, in)
			ds[i] = run{time.Since(start), cpulimit.ProcessCPU() - cpu}
		})
		if err != nil {
			return nil, nil, err
		}
	}
	if err := s.Close(); err != nil {
		return nil, nil, err
	}
	return ds, first, nil
}

// segmentModel returns nodes a..b-1 of m as a standalone model: the head at
// cut b, cut again at a. A prefix's head keeps the canonical order, so the
// head's node IDs are m's.
func segmentModel(m *graph.Model, a, b int) ([]byte, error) {
	head, err := graph.Partition(m, graph.Prefix(b))
	if err != nil {
		return nil, err
	}
	if a == 0 {
		return head.Head, nil
	}
	hm, err := graph.Parse(head.Head)
	if err != nil {
		return nil, fmt.Errorf("parse head %d: %w", b, err)
	}
	if got := len(hm.Nodes()); got != b {
		return nil, fmt.Errorf("head at cut %d has %d compute nodes, want %d", b, got, b)
	}
	s, err := graph.Partition(hm, graph.Prefix(a))
	if err != nil {
		return nil, err
	}
	return s.Tail, nil
}

// setDirect records a check's direct timing on its cut (the whole model is
// both the head at the last cut and the tail at cut 0).
func (p *Profile) setDirect(c Check) {
	d := c.Direct
	for i := range p.Cuts {
		ct := &p.Cuts[i]
		switch {
		case c.Part == "whole" && ct.ID == p.Model.Nodes, c.Part == "head" && ct.ID == c.Cut:
			ct.EdgeDirect = &d
		case c.Part == "whole" && ct.ID == 0, c.Part == "tail" && ct.ID == c.Cut:
			ct.ServerDirect = &d
		}
	}
}

func newCheck(cut int, part string, direct, summed Timing) Check {
	c := Check{Cut: cut, Part: part, Direct: direct, Summed: summed}
	if direct.Median > 0 {
		c.Error = float64(summed.Median-direct.Median) / float64(direct.Median)
	}
	return c
}

// nodes runs the model under ONNX Runtime's profiler and reads the per-node
// table from the trace, which ONNX Runtime completes when the session is
// closed.
func nodes(ctx context.Context, m *graph.Model, model []byte, inputs []tensor.Tensor, opts Options, sampler *Sampler) ([]NodeTiming, error) {
	dir, err := os.MkdirTemp("", "tracr-profile-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	s, err := engine.NewSession(model, engine.Options{
		Threads: opts.Threads, Provider: opts.Provider,
		NoOptimize: !opts.NodesOptimized, ProfilePrefix: filepath.Join(dir, "ort"),
	})
	if err != nil {
		return nil, err
	}
	in, err := pick(byName(inputs), s.Inputs())
	if err != nil {
		s.Close()
		return nil, err
	}
	for range opts.Warmup + opts.Repeats {
		sampler.Quiet(func() { _, err = s.Run(ctx, in) })
		if err != nil {
			s.Close()
			return nil, err
		}
	}
	if err := s.Close(); err != nil {
		return nil, err
	}
	path, err := s.ProfileFile()
	if err != nil {
		return nil, err
	}
	trace, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read ONNX Runtime profile: %w", err)
	}
	rows, err := nodeTable(trace, m, opts.Warmup)
	if err != nil {
		return nil, err
	}
	if opts.TraceFile != "" {
		if err := graph.WriteFileAtomic(opts.TraceFile, trace); err != nil {
			return nil, fmt.Errorf("trace: %w", err)
		}
	}
	return rows, nil
}

// cumulative sums the segments into edge(c) and server(c) at every
// candidate cut.
func cumulative(m *graph.Model, cuts []int, segs []Segment, repeats int) []CutTiming {
	bytes := map[int]int64{}
	for _, c := range graph.Cuts(m) {
		bytes[c.ID] = c.Bytes
	}
	out := make([]CutTiming, len(cuts))
	zero := Timing{Runs: repeats}
	for i, c := range cuts {
		out[i] = CutTiming{ID: c, Bytes: bytes[c], Edge: zero, Server: zero}
		for j, s := range segs {
			if j < i {
				out[i].Edge = addTimings(out[i].Edge, s.Time)
			} else {
				out[i].Server = addTimings(out[i].Server, s.Time)
			}
		}
	}
	return out
}

// candidateCuts validates the requested cuts (nil: DefaultCuts) and returns
// them sorted, with 0 and the last cut added.
func candidateCuts(m *graph.Model, want []int) ([]int, error) {
	if want == nil {
		return DefaultCuts(m), nil
	}
	all := graph.Cuts(m)
	out := []int{0, len(m.Nodes())}
	for _, id := range want {
		if _, err := graph.FindCut(all, id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// DefaultCuts returns the candidate cuts Run uses when Options.Cuts is nil.
// A model with up to AllCutsUpTo compute nodes gets every cut. A larger one
// gets cut 0 and the last cut, and, from each of DefaultSpans equal spans of
// cut IDs in between, the cut that sends the fewest bytes (the first on a
// tie): local minima of the crossing bytes, spread evenly along the model,
// which are where a planner's choice falls. (Timing every cut of a 200-node
// model costs 200 session loads, and the per-run overhead of each small
// segment would add up in the sums.)
func DefaultCuts(m *graph.Model) []int {
	all := graph.Cuts(m)
	n := len(m.Nodes())
	if n <= AllCutsUpTo {
		ids := make([]int, len(all))
		for i, c := range all {
			ids[i] = c.ID
		}
		return ids
	}
	out := []int{0, n}
	for j := range DefaultSpans {
		lo, hi := 1+j*(n-1)/DefaultSpans, 1+(j+1)*(n-1)/DefaultSpans
		best := -1
		var bestBytes int64
		for _, c := range all {
			if c.ID < lo || c.ID >= hi {
				continue
			}
			b := c.Bytes
			if b < 0 {
				b = 1 << 62 // unknown size: last resort
			}
			if best < 0 || b < bestBytes {
				best, bestBytes = c.ID, b
			}
		}
		if best >= 0 {
			out = append(out, best)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// pickChecks chooses the interior candidate cuts whose halves are timed
// directly: the candidates split into k runs of consecutive cuts, and from
// each the one that sends the fewest bytes — spread along the model, and
// among the cuts a planner is likely to pick.
func pickChecks(m *graph.Model, cuts []int, k int) []int {
	bytes := map[int]int64{}
	for _, c := range graph.Cuts(m) {
		bytes[c.ID] = c.Bytes
		if c.Bytes < 0 {
			bytes[c.ID] = 1 << 62
		}
	}
	var inner []int
	for _, c := range cuts {
		if c > 0 && c < len(m.Nodes()) {
			inner = append(inner, c)
		}
	}
	if k <= 0 || len(inner) == 0 {
		return nil
	}
	k = min(k, len(inner))
	var out []int
	for j := range k {
		group := inner[j*len(inner)/k : (j+1)*len(inner)/k]
		best := group[0]
		for _, c := range group[1:] {
			if bytes[c] < bytes[best] {
				best = c
			}
		}
		out = append(out, best)
	}
	return out
}

// pick returns the tensors a session reads, by name.
func pick(avail map[string]tensor.Tensor, want []engine.IOInfo) ([]tensor.Tensor, error) {
	out := make([]tensor.Tensor, 0, len(want))
	var missing []string
	for _, w := range want {
		t, ok := avail[w.Name]
		if !ok {
			missing = append(missing, w.Name)
			continue
		}
		out = append(out, t)
	}
	if len(missing) > 0 {
		return nil, errors.New("no value for input " + strings.Join(missing, ", "))
	}
	return out, nil
}

func byName(ts []tensor.Tensor) map[string]tensor.Tensor {
	m := make(map[string]tensor.Tensor, len(ts))
	for _, t := range ts {
		m[t.Name] = t
	}
	return m
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
