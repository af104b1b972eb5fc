package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"image"
	"maps"
	"math"
	"strings"
	"time"

	"tracr/cpulimit"
	"tracr/engine"
	"tracr/graph"
	"tracr/netprobe"
	"tracr/planner"
	"tracr/profiler"
	"tracr/quantile"
	"tracr/tensor"
	"tracr/transport"
	"tracr/zoo"
)

// PlanOptions says what to plan.
type PlanOptions struct {
	// Model is a zoo name or an ONNX file; ImgSize the zoo input size (0 =
	// the model's default).
	Model   string
	ImgSize int
	// InputShapes sizes the model's dynamic inputs (--input-shape; see
	// engine.Prepare). For a model with an image task, its image input
	// defaults to [1,3,ImgSize,ImgSize] and a shape given for it must be
	// that.
	InputShapes engine.InputShapes
	// Task says how to pre- and post-process a model from an ONNX file
	// (zoo models know it; for them it must be empty or agree).
	Task ModelTask
	// EdgeThreads and EdgeProvider configure ONNX Runtime on the edge.
	// Under EdgeCPU, 0 threads means as many as the limit's cores rounded
	// up (the CPUs the limited edge is given), not one per core of this
	// machine, whose spinning workers would spend the quota waiting.
	EdgeThreads  int
	EdgeProvider string
	// EdgeSlowdown emulates an edge device this many times slower than
	// this machine (0 or 1 = off): the edge profile stays the real
	// measurement, and every candidate's edge time is priced at
	// EdgeSlowdown times it (see EdgeConfig.Slowdown).
	EdgeSlowdown float64
	// EdgeCPU is the kernel CPU limit, in cores, this process runs under
	// (ServerSpec.EdgeCPU; 0: none). Planning does not apply it; the edge
	// profile is cached and labelled as the limited device's.
	EdgeCPU float64
	// Repeats is the number of timed runs per profile measurement (0 =
	// the profiler's default).
	Repeats   int
	Objective planner.Objective
	// AllowLossy admits fp16, int8 and JPEG encodings.
	AllowLossy bool
	// Codecs lists the encodings measured; nil means DefaultCodecs.
	Codecs []transport.CodecSpec
	// ProfileDir caches profiles ("" = the profiler's default).
	ProfileDir string
	// FreshProfiles measures both profiles again even when they are
	// cached (the new ones replace them).
	FreshProfiles bool
	// Probe configures the link measurement.
	Probe netprobe.Options
	// Link, when set, is used instead of probing (for tests and for
	// planning against a link that is not there).
	Link *planner.Link
	// Preload, when set, hands the model to an in-process server directly
	// (Server.Preload), as a deployed server would already
	// hold it; otherwise the model is uploaded over the link once.
	Preload func(model []byte) error
}

// DefaultCodecs returns the encodings planning measures, from the codec
// registry in wire-id order: every codec that carries tensors of any shape
// (jpeg, for the server-only input, is priced on its own), the lossless
// ones with every compression, and with lossy allowed the lossy ones
// plain and with zstd only, which keeps the measurements planning makes
// few.
func DefaultCodecs(lossy bool) []transport.CodecSpec {
	var out []transport.CodecSpec
	for _, k := range transport.Codecs() {
		if !k.AnyShape() || k.Lossy() && !lossy {
			continue
		}
		for _, c := range transport.Compressions() {
			spec := transport.CodecSpec{Kind: k, Compress: c}
			if k.Lossy() && c != transport.CompressNone && c != transport.CompressZstd || spec.Validate() != nil {
				continue
			}
			out = append(out, spec)
		}
	}
	return out
}

// Planned is a planning outcome: the model, both profiles, the probed link
// and every candidate priced, ranked and tabled by bandwidth.
type Planned struct {
	ModelBytes []byte
	Hash       [32]byte
	Model      *graph.Model
	Source     string
	Spec       zoo.Spec
	Synthetic  bool
	// Post is the model's post-processing; the runtime fills Letterbox per
	// request.
	Post zoo.PostSpec
	// Sample is the input the bytes were measured on.
	Sample []tensor.Tensor
	// InputShapes are the shapes the model's dynamic inputs were prepared
	// and profiled at (nil: the defaults of engine.Prepare).
	InputShapes engine.InputShapes
	Link        planner.Link
	// Probe is the link measurement (zero when PlanOptions.Link was given).
	Probe                      netprobe.Result
	Problem                    planner.Problem
	Ranked                     []planner.Plan
	Breakpoints                []planner.Interval
	EdgeProfile, ServerProfile *profiler.Profile
	// Crossing names the tensors each cut sends.
	Crossing map[int][]string
	// Edge is the ONNX Runtime configuration of the edge's sessions.
	Edge engine.Options
	// EdgeSlowdown is PlanOptions.EdgeSlowdown: the emulated edge device
	// the candidates are priced for, and Measure runs as.
	EdgeSlowdown float64
	// EdgeCPU is PlanOptions.EdgeCPU.
	EdgeCPU float64
	// EdgeSpeed and EdgeRate are what the limited edge measured itself at
	// (cpulimit.Own): its speed in cores, and the CPU time counted per
	// second there, by which its runs are priced (cpulimit.Sustained); 0
	// without a limit.
	EdgeSpeed, EdgeRate float64
	// SendCPU is the edge's CPU time per byte sent over the connection
	// (SSH encryption and framing), measured when the edge is limited: a
	// limited edge pays it at its own rate, so every encoding's Encode
	// includes its bytes' share (at full speed it overlaps the transfer
	// and is not priced). Seconds per byte.
	SendCPU float64
	// Tied lists the plans the measurements cannot tell from the best
	// (planner.Tied): the best first; one plan means no tie.
	Tied []planner.Plan
	// Took is how long planning took (profiles, probe, byte measurements
	// and ranking), PlanTook the pure planner's share (Rank and
	// Breakpoints).
	Took, PlanTook time.Duration
}

// Best returns the chosen plan.
func (p *Planned) Best() planner.Plan { return p.Ranked[0] }

// Plan profiles the model on the edge (here) and on the server (through c),
// probes the link over c, measures what each cut sends with each codec on
// a sample input, and ranks every candidate.
func Plan(ctx context.Context, c *transport.Client, opts PlanOptions) (*Planned, error) {
	start := time.Now()
	if err := CheckEdgeSlowdown(opts.EdgeSlowdown); err != nil {
		return nil, fmt.Errorf("plan: edge slowdown %w", err)
	}
	p, err := load(ctx, opts.Model, opts.ImgSize, opts.Task, opts.InputShapes)
	if err != nil {
		return nil, err
	}
	if opts.EdgeCPU > 0 && opts.EdgeThreads == 0 {
		opts.EdgeThreads = int(math.Ceil(opts.EdgeCPU))
	}
	p.Edge = engine.Options{Threads: opts.EdgeThreads, Provider: opts.EdgeProvider}
	p.EdgeSlowdown = opts.EdgeSlowdown
	p.EdgeCPU = opts.EdgeCPU
	if opts.EdgeCPU > 0 {
		p.EdgeSpeed, p.EdgeRate = cpulimit.Own()
	}
	if opts.Preload != nil {
		if err := opts.Preload(p.ModelBytes); err != nil {
			return nil, err
		}
	}
	dir := opts.ProfileDir
	if dir == "" {
		if dir, err = profiler.DefaultCacheDir(); err != nil {
			return nil, err
		}
	}
	popts := profiler.Options{Provider: opts.EdgeProvider, Threads: opts.EdgeThreads, Repeats: opts.Repeats, Fresh: opts.FreshProfiles, CPULimit: opts.EdgeCPU, InputShapes: p.InputShapes}
	if p.EdgeProfile, _, err = profiler.Cached(ctx, dir, p.ModelBytes, p.Source, popts); err != nil {
		return nil, fmt.Errorf("edge profile: %w", err)
	}
	if c == nil {
		return nil, fmt.Errorf("plan: no server connection (use --server local for the embedded loopback server)")
	}
	if p.ServerProfile, err = ServerProfile(ctx, c, p.ModelBytes, transport.ProfileRequest{Repeats: opts.Repeats, Cuts: cutIDs(p.EdgeProfile), Fresh: opts.FreshProfiles, InputShapes: p.InputShapes}); err != nil {
		return nil, err
	}
	if opts.Link != nil {
		p.Link = *opts.Link
	} else {
		if p.Probe, err = netprobe.Probe(ctx, c, opts.Probe); err != nil {
			return nil, fmt.Errorf("link probe: %w", err)
		}
		p.Link = planner.Link{Up: p.Probe.Up.BitsPerSec, Down: p.Probe.Down.BitsPerSec, RTT: p.Probe.RTT}
	}
	if opts.EdgeCPU > 0 {
		if p.SendCPU, err = sendCPU(ctx, c); err != nil {
			return nil, err
		}
	}
	codecs := opts.Codecs
	if codecs == nil {
		codecs = DefaultCodecs(opts.AllowLossy)
	}
	cands, err := p.candidates(ctx, codecs, opts.AllowLossy)
	if err != nil {
		return nil, err
	}
	p.Problem = planner.Problem{Candidates: cands, Link: p.Link, Objective: opts.Objective, AllowLossy: opts.AllowLossy}
	planStart := time.Now()
	p.rank()
	p.PlanTook = time.Since(planStart)
	p.Took = time.Since(start)
	return p, nil
}

// rank fills Ranked and Breakpoints from Problem.
func (p *Planned) rank() {
	p.Ranked = planner.Rank(p.Problem)
	p.Tied = planner.Tied(p.Ranked)
	p.Breakpoints = planner.Breakpoints(p.Problem)
}

// Reprice sets the link and ranks again: planning for another link reuses
// the profiles and byte measurements.
func (p *Planned) Reprice(l planner.Link) {
	p.Link = l
	p.Problem.Link = l
	p.rank()
}

// load resolves and prepares the model, and makes a sample input: a
// photo-like synthetic image pre-processed as the model expects (a zoo
// model, or a file with a task), or seeded random values at the given
// input shapes.
func load(ctx context.Context, model string, size int, task ModelTask, shapes engine.InputShapes) (*Planned, error) {
	if err := task.Check(); err != nil {
		return nil, fmt.Errorf("model %s: %w", model, err)
	}
	data, source, synthetic, err := zoo.ResolveSize(ctx, model, size)
	if err != nil {
		return nil, err
	}
	m, err := graph.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", source, err)
	}
	p := &Planned{ModelBytes: data, Hash: sha256.Sum256(data), Model: m, Source: source, Synthetic: synthetic, Crossing: map[int][]string{}}
	spec, err := zoo.Describe(model, size)
	switch {
	case err == nil && task.Task != "" && task.Task != spec.Task:
		return nil, fmt.Errorf("model %s is a %s model; task %q does not apply to it", model, spec.Task, task.Task)
	case err == nil:
		p.Spec, p.Post = spec, zoo.DefaultPost(spec.Task)
		if task.Labels != "" {
			p.Post = ModelTask{Task: spec.Task, Labels: task.Labels}.post()
		}
	case task.Task != "":
		if p.Spec, err = customSpec(m, source, task, size); err != nil {
			return nil, err
		}
		p.Post = task.post()
	}
	if p.Spec.Task != "" {
		// The image input is fed at the spec's size: probe and profile it
		// there.
		if given, ok := shapes[p.Spec.InputName]; ok && !given.Equal(p.Spec.Input) {
			return nil, fmt.Errorf("model %s: input shape %s %s: the %s task feeds it %s (set the side with img_size or --img-size)",
				source, p.Spec.InputName, given, p.Spec.Task, p.Spec.Input)
		}
		if ti, ok := m.Tensor(p.Spec.InputName); ok && !ti.Shape.Static() {
			shapes = maps.Clone(shapes)
			if shapes == nil {
				shapes = engine.InputShapes{}
			}
			shapes[p.Spec.InputName] = p.Spec.Input.Clone()
		}
	}
	random, err := engine.Prepare(ctx, m, 1, shapes)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", source, err)
	}
	p.InputShapes = shapes
	p.Sample = random
	if p.Spec.Task != "" {
		img, err := zoo.Synthetic(1, 640, 480, 7).Sample(0)
		if err != nil {
			return nil, err
		}
		in, lb := Preprocess(p.Spec, img.Image)
		p.Sample = []tensor.Tensor{in}
		p.Post.Letterbox = lb
	}
	return p, nil
}

// Preprocess turns an image into a zoo model's input: letterboxed for a
// detector (its Letterbox returned, to map boxes back), resized and
// centre-cropped with ImageNet normalisation for a classifier.
func Preprocess(spec zoo.Spec, img image.Image) (tensor.Tensor, *zoo.Letterbox) {
	if spec.Task == zoo.TaskDetect {
		t, lb := zoo.LetterboxInput(img, spec.ImgSize)
		t.Name = spec.InputName
		return t, &lb
	}
	t := zoo.ClassifyInput(img, spec.ImgSize)
	t.Name = spec.InputName
	return t, nil
}

func cutIDs(p *profiler.Profile) []int {
	ids := make([]int, len(p.Cuts))
	for i, c := range p.Cuts {
		ids[i] = c.ID
	}
	return ids
}

// candidates prices every profiled cut plus the baselines.
func (p *Planned) candidates(ctx context.Context, codecs []transport.CodecSpec, lossy bool) ([]planner.Candidate, error) {
	cuts := graph.Cuts(p.Model)
	n := len(p.Model.Nodes())
	values, err := p.tensorsAtCuts(ctx, cuts)
	if err != nil {
		return nil, err
	}
	resultBytes, err := p.resultBytes(ctx)
	if err != nil {
		return nil, err
	}
	edgeTime := correctedTimes(p.EdgeProfile, true)
	serverTime := correctedTimes(p.ServerProfile, false)
	edgeSpread := spreads(p.EdgeProfile, true, edgeTime)
	serverSpread := spreads(p.ServerProfile, false, serverTime)
	var out []planner.Candidate
	for _, ct := range p.EdgeProfile.Cuts {
		cut, err := graph.FindCut(cuts, ct.ID)
		if err != nil {
			return nil, fmt.Errorf("profile: %w", err)
		}
		st, ok := serverTime[ct.ID]
		if !ok {
			return nil, fmt.Errorf("the server profile lacks cut %d; profiles of different models?", ct.ID)
		}
		p.Crossing[ct.ID] = cut.Names()
		c := planner.Candidate{Kind: planner.KindCut, Cut: ct.ID, Edge: slowed(edgeTime[ct.ID], p.EdgeSlowdown), Server: st, ResultBytes: resultBytes,
			EdgeSpread: slowed(edgeSpread[ct.ID], p.EdgeSlowdown), ServerSpread: serverSpread[ct.ID]}
		switch ct.ID {
		case 0:
			c.Kind, c.Edge = planner.KindServerRaw, 0
		case n:
			c.Kind, c.Server = planner.KindEdgeOnly, 0
		}
		var ts []tensor.Tensor
		for _, name := range cut.Names() {
			ts = append(ts, values[name])
		}
		if c.Kind != planner.KindEdgeOnly {
			if c.Encodings, err = measureEncodings(ts, codecs); err != nil {
				return nil, fmt.Errorf("cut %d: %w", ct.ID, err)
			}
			p.addSendCost(c.Encodings)
			p.decodeOnServer(c.Encodings)
		}
		out = append(out, c)
		if ct.ID == 0 && p.Spec.Task == zoo.TaskDetect {
			// Server-only with the input image JPEG-compressed: the edge
			// encodes, the server decodes and runs the whole model.
			jpeg, _ := transport.ParseCodecSpec("jpeg")
			encs, err := measureEncodings(ts, []transport.CodecSpec{jpeg})
			if err != nil {
				return nil, fmt.Errorf("jpeg: %w", err)
			}
			p.addSendCost(encs)
			p.decodeOnServer(encs)
			out = append(out, planner.Candidate{Kind: planner.KindServerJPEG, Cut: 0, Server: st, ServerSpread: serverSpread[0], ResultBytes: resultBytes, Encodings: encs})
		}
	}
	return out, nil
}

// slowed returns d as an edge device f times slower takes (f of 0 or 1:
// d itself).
func slowed(d time.Duration, f float64) time.Duration {
	if f <= 1 {
		return d
	}
	return time.Duration(float64(d) * f)
}

// tensorsAtCuts runs the model once on the sample with every crossing
// tensor exposed, and returns them by name.
func (p *Planned) tensorsAtCuts(ctx context.Context, cuts []graph.Cut) (map[string]tensor.Tensor, error) {
	want := map[string]bool{}
	var names []string
	for _, c := range cuts {
		for _, n := range c.Names() {
			if !want[n] {
				want[n] = true
				names = append(names, n)
			}
		}
	}
	values := map[string]tensor.Tensor{}
	for _, t := range p.Sample {
		values[t.Name] = t
	}
	probe, err := p.Model.ProbeModel(names)
	if err != nil {
		return nil, err
	}
	s, err := engine.NewSession(probe, engine.Options{})
	if err != nil {
		return nil, fmt.Errorf("measure crossing tensors: %w", err)
	}
	defer s.Close()
	outs, err := s.Run(ctx, p.Sample)
	if err != nil {
		return nil, fmt.Errorf("measure crossing tensors: %w", err)
	}
	for _, t := range outs {
		name, ok := strings.CutPrefix(t.Name, graph.ProbePrefix)
		if !ok || len(t.Shape) == 0 {
			values[t.Name] = t
			continue
		}
		t.Name, t.Shape = name, t.Shape[1:] // the probe's leading 1
		values[name] = t
	}
	for _, n := range names {
		if _, ok := values[n]; !ok {
			return nil, fmt.Errorf("measure crossing tensors: %q was not produced", n)
		}
	}
	return values, nil
}

// resultBytes is what the server sends back: the post-processed result's
// JSON for a zoo model, the raw outputs otherwise.
func (p *Planned) resultBytes(ctx context.Context) (int64, error) {
	s, err := engine.NewSession(p.ModelBytes, engine.Options{})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	outs, err := s.Run(ctx, p.Sample)
	if err != nil {
		return 0, fmt.Errorf("sample run: %w", err)
	}
	if p.Spec.Task == "" {
		var n int64
		for _, t := range outs {
			n += int64(len(t.Data))
		}
		return n, nil
	}
	r, err := zoo.PostProcess(p.Post, outs)
	if err != nil {
		return 0, err
	}
	b, err := json.Marshal(r)
	return int64(len(b)), err
}

// sendProbe is the upload sendCPU times, sendRounds how many times.
const (
	sendProbe  = 256 << 10
	sendRounds = 3
)

// sendCPU measures this process's CPU time per byte uploaded over c: the
// least of sendRounds uploads of sendProbe bytes, after one to warm up.
func sendCPU(ctx context.Context, c *transport.Client) (float64, error) {
	payload := make([]byte, sendProbe)
	for i := range payload {
		payload[i] = byte(i*7 + i>>8)
	}
	if err := c.Upload(ctx, payload[:sendProbe/4]); err != nil {
		return 0, fmt.Errorf("edge send cost: %w", err)
	}
	best := time.Duration(math.MaxInt64)
	for range sendRounds {
		cpu := cpulimit.ProcessCPU()
		if err := c.Upload(ctx, payload); err != nil {
			return 0, fmt.Errorf("edge send cost: %w", err)
		}
		best = min(best, cpulimit.ProcessCPU()-cpu)
	}
	return best.Seconds() / sendProbe, nil
}

// addSendCost adds to each encoding's Encode the CPU its bytes cost the
// limited edge to send, at the edge's rate.
func (p *Planned) addSendCost(encs []planner.Encoding) {
	for i := range encs {
		encs[i].Encode += p.sendCost(encs[i].Bytes)
	}
}

// decodeOnServer prices each encoding's Decode, timed in this process,
// at the server's speed where the edge is limited: the server decodes
// what the edge encodes, and a decode timed under the edge's limit took
// the limited edge's time. The factor is the server's whole-model time
// over the limited edge's (both profiles' medians), how much faster the
// server ran the same model; with a server running more threads than the
// edge it makes decoding somewhat cheaper than it is. Without a limit
// the edge's time stands (this process is the edge; a server of other
// hardware, a GPU's, decodes on its CPU).
func (p *Planned) decodeOnServer(encs []planner.Encoding) {
	f := p.serverSpeedup()
	for i := range encs {
		encs[i].Decode = time.Duration(float64(encs[i].Decode) * f)
	}
}

// serverSpeedup is decodeOnServer's factor: 1 without an edge limit.
func (p *Planned) serverSpeedup() float64 {
	if p.EdgeCPU <= 0 || p.EdgeProfile == nil || p.ServerProfile == nil {
		return 1
	}
	edge, server := p.EdgeProfile.Whole.Median, p.ServerProfile.Whole.Median
	if edge <= 0 || server <= 0 || server >= edge {
		return 1
	}
	return float64(server) / float64(edge)
}

// sendCost is what sending n bytes costs the limited edge, at its rate:
// 0 without a limit (SendCPU).
func (p *Planned) sendCost(n int64) time.Duration {
	if p.EdgeCPU <= 0 || p.SendCPU <= 0 {
		return 0
	}
	rate := p.EdgeRate
	if rate <= 0 {
		rate = p.EdgeCPU
	}
	return time.Duration(p.SendCPU * float64(n) / rate * float64(time.Second))
}

// measureEncodings encodes the tensors with each codec and decodes them
// back, timing both (median of three), and records the bytes sent; the
// encoding is timed as sustained under this process's CPU limit, if any
// (cpulimit.Sustained); the decoding is timed here too, at this
// process's speed (Planned.decodeOnServer prices it at the server's).
func measureEncodings(ts []tensor.Tensor, codecs []transport.CodecSpec) ([]planner.Encoding, error) {
	var out []planner.Encoding
	lim := transport.DefaultLimits()
	for _, spec := range codecs {
		var enc, dec []time.Duration
		var bytes int64
		for rep := 0; rep < 3; rep++ {
			var e, d time.Duration
			bytes = 0
			for _, t := range ts {
				t0, cpu := time.Now(), cpulimit.ProcessCPU()
				w, err := transport.EncodeTensor(t, spec)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", spec, err)
				}
				t1 := time.Now()
				// The edge encodes: under its CPU limit at the sustained
				// rate, as inside a request after the head.
				e += cpulimit.Sustained(t1.Sub(t0), cpulimit.ProcessCPU()-cpu, cpulimit.OwnRate())
				if _, err := transport.DecodeTensor(w, lim); err != nil {
					return nil, fmt.Errorf("%s: %w", spec, err)
				}
				d += time.Since(t1)
				bytes += int64(len(w.Data))
			}
			enc, dec = append(enc, e), append(dec, d)
		}
		if spec.Kind == transport.CodecRaw && spec.Compress == transport.CompressNone {
			// Raw costs nothing to encode: the bytes are the tensor.
			enc, dec = []time.Duration{0}, []time.Duration{0}
		}
		out = append(out, planner.Encoding{Codec: spec.String(), Bytes: bytes, Encode: quantile.MedianDuration(enc), Decode: quantile.MedianDuration(dec), Lossy: spec.Lossy()})
	}
	return out, nil
}

// spreads gives each cut's compute spread on one side: the time
// correctedTimes chose, times the relative spread (p90 - median) / median
// of the timing it came from (the half timed directly where there is one,
// else the segment sum, whose p90 sums the segments' p90s).
func spreads(p *profiler.Profile, edge bool, times map[int]time.Duration) map[int]time.Duration {
	out := map[int]time.Duration{}
	for _, c := range p.Cuts {
		t := c.Server
		if c.ServerDirect != nil {
			t = *c.ServerDirect
		}
		if edge {
			t = c.Edge
			if c.EdgeDirect != nil {
				t = *c.EdgeDirect
			}
		}
		if t.Median > 0 && t.P90 > t.Median {
			out[c.ID] = time.Duration(float64(times[c.ID]) * float64(t.P90-t.Median) / float64(t.Median))
		}
	}
	return out
}

// correctedTimes returns each profiled cut's edge (head) or server (tail)
// time. Where the profiler timed the whole half directly that time is used;
// elsewhere the segment sum is scaled by the median ratio of direct to
// summed times over the checked cuts, which removes the segments'
// systematic per-session overhead (the fusion error).
func correctedTimes(p *profiler.Profile, edge bool) map[int]time.Duration {
	var ratios []float64
	for _, c := range p.Cuts {
		sum, direct := c.Server, c.ServerDirect
		if edge {
			sum, direct = c.Edge, c.EdgeDirect
		}
		if direct != nil && sum.Median > 0 {
			ratios = append(ratios, float64(direct.Median)/float64(sum.Median))
		}
	}
	if p.Whole.Median > 0 && len(p.Cuts) > 0 {
		last := p.Cuts[len(p.Cuts)-1].Edge
		if !edge {
			last = p.Cuts[0].Server
		}
		if last.Median > 0 {
			ratios = append(ratios, float64(p.Whole.Median)/float64(last.Median))
		}
	}
	scale := 1.0
	if len(ratios) > 0 {
		scale = quantile.Median(ratios)
	}
	out := map[int]time.Duration{}
	last := 0
	if len(p.Cuts) > 0 {
		last = p.Cuts[len(p.Cuts)-1].ID
	}
	for _, c := range p.Cuts {
		sum, direct := c.Server, c.ServerDirect
		if edge {
			sum, direct = c.Edge, c.EdgeDirect
		}
		t := time.Duration(math.Round(float64(sum.Median) * scale))
		switch {
		case direct != nil:
			t = direct.Median
		case edge && c.ID == last, !edge && c.ID == 0:
			t = p.Whole.Median
		case edge && c.ID == 0, !edge && c.ID == last:
			t = 0
		}
		out[c.ID] = t
	}
	return out
}

// DAG returns the model as the min-cut sees it: per-node times from the two
// profiles' per-node tables (ONNX Runtime's profiler, optimisations off, so
// every node has a time) and each tensor's bytes on the sample input, raw.
func (p *Planned) DAG(ctx context.Context) (planner.DAG, error) {
	nodes := p.Model.Nodes()
	d := planner.DAG{Nodes: make([]planner.DAGNode, len(nodes))}
	for _, side := range []struct {
		prof *profiler.Profile
		edge bool
	}{{p.EdgeProfile, true}, {p.ServerProfile, false}} {
		for _, nt := range side.prof.Nodes {
			if nt.ID < 0 || nt.ID >= len(nodes) {
				continue
			}
			if side.edge {
				d.Nodes[nt.ID].Edge += nt.Time.Median
			} else {
				d.Nodes[nt.ID].Server += nt.Time.Median
			}
		}
	}
	values, err := p.tensorsAtCuts(ctx, graph.Cuts(p.Model))
	if err != nil {
		return planner.DAG{}, err
	}
	outs := map[string]bool{}
	for _, o := range p.Model.Outputs() {
		outs[o] = true
	}
	add := func(name string, producer int) {
		cons := p.Model.Consumers(name)
		if len(cons) == 0 && !outs[name] {
			return
		}
		d.Tensors = append(d.Tensors, planner.DAGTensor{Name: name, Producer: producer, Consumers: cons,
			Output: outs[name], Bytes: int64(len(values[name].Data))})
	}
	for _, in := range p.Model.Inputs() {
		add(in, -1)
	}
	for _, n := range nodes {
		for _, o := range n.Outputs {
			add(o, n.ID)
		}
	}
	return d, nil
}
