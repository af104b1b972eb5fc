package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"tracr/cpulimit"
	"tracr/engine"
	"tracr/planner"
	"tracr/profiler"
	"tracr/transport"
	"tracr/zoo"
)

// RunOptions are a run's settings from the command line; set fields
// override the configuration file's.
type RunOptions struct {
	// ConfigPath is the configuration file, for messages that name a key
	// and its line ("" for DefaultConfig).
	ConfigPath string
	Adaptive   bool
	// Cut forces a cut (nil: plan it, or the config's).
	Cut *int
	// InputShapes, when not nil, replaces the config's input_shape
	// (--input-shape NAME=1x3x640x640, repeatable).
	InputShapes []string
	// Server names a server of the devices file, or an address
	// (host:port), or "local".
	Server string
	// Link emulates a fixed link ("up=10mbit,down=50mbit,rtt=20ms") and
	// LinkTrace one that changes over time (a CSV trace); at most one.
	Link, LinkTrace string
	// Repeats is the number of timed runs per profile measurement (0:
	// the profiler's default).
	Repeats int
	// FreshProfiles measures the profiles again even when they are cached.
	FreshProfiles bool
	// EdgeSlowdown, when not 0, overrides the configuration's [edge]
	// slowdown (see EdgeConfig.Slowdown).
	EdgeSlowdown float64
	// EdgeCPU, when not 0, overrides the configuration's [edge]
	// cpu_limit (see EdgeConfig.CPULimit).
	EdgeCPU float64
	// OnStart is told what the run planned, before the first request;
	// OnRecord gets each request's record as it finishes; Log receives
	// the run's events (switches, probes, a lost server). Any may be nil.
	OnStart  func(RunStart)
	OnRecord func(Record)
	Log      io.Writer
}

// RunResult is what Run did and where it wrote it.
type RunResult struct {
	Planned *Planned
	Outcome *Outcome
	Summary Summary
	// Dir holds CSV (one row per request) and Sidecar (the run's metadata).
	Dir, CSV, Sidecar string
}

// settings are a run's resolved settings.
type settings struct {
	cfg       *Config
	opts      RunOptions
	objective planner.Objective
	codecs    []transport.CodecSpec
	link      *transport.Link
	trace     transport.Trace
	server    string
	adaptive  bool
	cut       *int
	slowdown  float64 // the edge slowdown in force (0 or 1: off)
	edgeCPU   float64 // the edge's CPU limit in cores (0: none)
	model     string  // the zoo name, or the ONNX file resolved against the config's folder
	task      ModelTask
	shapes    engine.InputShapes
}

// RunStart is what a run knows once it has planned, before its first
// request: what a command prints first.
type RunStart struct {
	// Server names the server (Server.Name).
	Server string
	// Link is the emulated link ("" for none); EdgeSlowdown the emulated
	// slowdown in force (1: off) and EdgeLimit the edge's CPU limit (nil:
	// none).
	Link         string
	EdgeSlowdown float64
	EdgeLimit    *cpulimit.Limit
	Planned      *Planned
	// Plan is the plan the run starts on; Adaptive says whether it may
	// change.
	Plan     planner.Plan
	Adaptive bool
}

// Run runs a configuration end to end: it connects to the server (the
// embedded loopback server when none is named), emulates the link and
// limits the edge's CPU when asked, plans, executes the plan over the
// dataset (re-planning when adaptive) and writes run.csv, run.json and,
// when asked, overlays to the output folder. It prints nothing: OnStart,
// OnRecord and Log (events) tell the caller as it goes, and the result
// holds the summary. The records are complete whenever it returns a
// result, including when ctx ends the run early (Outcome.Interrupted),
// and a result may come with the error of writing them.
func Run(ctx context.Context, cfg *Config, opts RunOptions) (*RunResult, error) {
	st, err := resolve(cfg, opts)
	if err != nil {
		return nil, err
	}
	ds, err := openDataset(cfg)
	if err != nil {
		return nil, err
	}
	state := st.linkState()
	// An embedded server outlives ctx (Ctrl-C) until closed, so that the
	// requests in flight when the run is interrupted still finish on it.
	srv, err := Connect(context.WithoutCancel(ctx), st.serverSpec(state))
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	client, err := srv.Dial(ctx)
	if err != nil {
		return nil, err
	}
	start, err := st.plan(ctx, client, srv)
	if err != nil {
		client.Close()
		return nil, err
	}
	if opts.OnStart != nil {
		opts.OnStart(start)
	}
	res := &RunResult{Planned: start.Planned}
	rw, overlays, err := st.outputs(res)
	if err != nil {
		client.Close()
		return nil, err
	}
	started := time.Now()
	exec := ExecOptions{Planned: start.Planned, Plan: start.Plan, Adaptive: st.adaptive, Dataset: ds, Limit: cfg.Dataset.Limit, InFlight: cfg.Run.InFlight,
		EdgeSlowdown: st.slowdown, NoRescue: cfg.Run.Rescue != nil && !*cfg.Run.Rescue, Client: client, Dial: srv.Dial, Records: rw, Overlays: overlays,
		Log: opts.Log, Progress: opts.OnRecord, Link: st.recordLink(state, start.Planned.Link)}
	if exec.Log == nil {
		exec.Log = io.Discard
	}
	if st.trace != nil {
		// The trace's clock starts with the first request, not with the
		// planning before it.
		playCtx, stopPlay := context.WithCancel(ctx)
		defer stopPlay()
		exec.OnStart = func(t time.Time) { go st.trace.Play(playCtx, state, t) }
	}
	res.Outcome, err = Execute(ctx, exec)
	if cerr := rw.Close(); err == nil {
		err = cerr
	}
	if res.Outcome == nil {
		os.Remove(res.CSV) // nothing ran: leave no empty records behind
		return nil, err
	}
	res.Summary = Summarize(res.Outcome.Records, res.Outcome.Wall)
	if serr := WriteJSON(res.Sidecar, newSidecar(ctx, st, srv.Name(), res, started)); err == nil {
		err = serr
	}
	return res, err
}

// linkState is the emulated link's state, nil for none.
func (st *settings) linkState() *transport.LinkState {
	switch {
	case st.link != nil:
		return transport.NewLinkState(*st.link)
	case st.trace != nil:
		return transport.NewLinkState(st.trace.At(0))
	}
	return nil
}

// plan profiles, probes and ranks, and picks the plan the run starts on.
func (st *settings) plan(ctx context.Context, client *transport.Client, srv *Server) (RunStart, error) {
	cfg := st.cfg
	p, err := Plan(ctx, client, PlanOptions{Model: st.model, ImgSize: cfg.ImgSize, InputShapes: st.shapes, Task: st.task, EdgeThreads: cfg.Edge.Threads,
		EdgeProvider: cfg.Edge.Provider, EdgeSlowdown: st.slowdown, EdgeCPU: st.edgeCPU, Repeats: st.opts.Repeats, FreshProfiles: st.opts.FreshProfiles,
		Objective: st.objective, AllowLossy: cfg.Codec.AllowLossy, Codecs: st.codecs})
	if err != nil {
		return RunStart{}, err
	}
	applyPost(p, cfg.Post)
	start := RunStart{Server: srv.Name(), EdgeSlowdown: max(st.slowdown, 1), Planned: p, Plan: p.Best(), Adaptive: st.adaptive}
	if st.link != nil || st.trace != nil {
		start.Link = st.linkText()
	}
	if g := srv.EdgeLimit(); g != nil {
		l := g.Limit()
		start.EdgeLimit = &l
	}
	if st.cut != nil {
		if start.Plan, err = ForcedPlan(p, *st.cut); err != nil {
			return RunStart{}, st.keyErr(err, "run", "cut")
		}
	}
	return start, nil
}

// outputs makes the output folders and the records file.
func (st *settings) outputs(res *RunResult) (*RecordWriter, string, error) {
	res.Dir = st.cfg.Resolve(st.cfg.Output.Dir)
	if res.Dir == "" {
		res.Dir = st.cfg.Resolve("results/run")
	}
	overlays := ""
	if st.cfg.Output.Overlays {
		overlays = filepath.Join(res.Dir, "overlays")
	}
	for _, d := range []string{res.Dir, overlays} {
		if d != "" {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return nil, "", fmt.Errorf("output: %w", err)
			}
		}
	}
	res.CSV, res.Sidecar = filepath.Join(res.Dir, "run.csv"), filepath.Join(res.Dir, "run.json")
	rw, err := CreateRecords(res.CSV)
	if err != nil {
		return nil, "", err
	}
	return rw, overlays, nil
}

// resolve merges the command line into the configuration and checks what
// the configuration file's own check does not: values the run parses.
func resolve(cfg *Config, opts RunOptions) (*settings, error) {
	st := &settings{cfg: cfg, opts: opts, server: cfg.Server, adaptive: cfg.Run.Adaptive || opts.Adaptive, cut: cfg.Run.Cut,
		slowdown: cfg.Edge.Slowdown}
	if opts.EdgeSlowdown != 0 {
		if err := CheckEdgeSlowdown(opts.EdgeSlowdown); err != nil {
			return nil, fmt.Errorf("--edge-slowdown %w", err)
		}
		st.slowdown = opts.EdgeSlowdown
	}
	st.edgeCPU = cfg.Edge.CPULimit
	if opts.EdgeCPU != 0 {
		if err := (cpulimit.Limit{Cores: opts.EdgeCPU}).Validate(); err != nil {
			return nil, fmt.Errorf("--edge-cpu: %w", err)
		}
		st.edgeCPU = opts.EdgeCPU
	}
	if st.edgeCPU > 0 && st.slowdown > 1 {
		return nil, errors.New("an edge CPU limit and an edge slowdown exclude each other: the limit makes a slower edge for real, the slowdown emulates one; choose one")
	}
	if opts.Server != "" {
		st.server = opts.Server
	}
	if opts.Cut != nil {
		st.cut = opts.Cut
	}
	if st.cut != nil && *st.cut < 0 {
		st.cut = nil // -1: plan it
	}
	if st.cut != nil && st.adaptive {
		return nil, st.keyErr(errors.New("a forced cut and adaptive re-planning exclude each other; drop one"), "run", "cut")
	}
	st.model, st.task = cfg.Model, ModelTask{Task: cfg.Task, Labels: cfg.Labels}
	if zoo.LooksLikePath(cfg.Model) {
		st.model = cfg.Resolve(cfg.Model)
	}
	if err := (ModelTask{Task: st.task.Task}).Check(); err != nil {
		return nil, st.keyErr(err, "task")
	}
	if st.model != cfg.Model && st.task.Task == "" {
		return nil, st.keyErr(fmt.Errorf("%s is an ONNX file: set task = %q or %q to say how to pre- and post-process it", cfg.Model, zoo.TaskClassify, zoo.TaskDetect), "model")
	}
	if err := (ModelTask{Labels: st.task.Labels}).Check(); err != nil {
		return nil, st.keyErr(err, "labels")
	}
	var err error
	if opts.InputShapes != nil {
		if st.shapes, err = engine.ParseInputShapes(opts.InputShapes); err != nil {
			return nil, fmt.Errorf("--input-shape: %w", err)
		}
	} else if st.shapes, err = engine.ParseInputShapes(cfg.InputShape); err != nil {
		return nil, st.keyErr(err, "input_shape")
	}
	if st.objective, err = planner.ParseObjective(cfg.Run.Objective); err != nil {
		return nil, st.keyErr(err, "run", "objective")
	}
	for _, c := range cfg.Codec.Codecs {
		spec, err := transport.ParseCodecSpec(c)
		if err != nil {
			return nil, st.keyErr(err, "codec", "codecs")
		}
		if spec.Lossy() && !cfg.Codec.AllowLossy {
			return nil, st.keyErr(fmt.Errorf("codec %q is lossy; set allow_lossy = true to use it", c), "codec", "codecs")
		}
		st.codecs = append(st.codecs, spec)
	}
	link, trace := cfg.Run.Link, cfg.Resolve(cfg.Run.LinkTrace)
	linkKey := "link"
	if opts.Link != "" || opts.LinkTrace != "" {
		if opts.Link != "" && opts.LinkTrace != "" {
			return nil, errors.New("--link and --link-trace exclude each other")
		}
		link, trace, linkKey = opts.Link, opts.LinkTrace, ""
	}
	if link != "" {
		l, err := transport.ParseLink(link)
		if err != nil {
			if linkKey == "" {
				return nil, fmt.Errorf("--link: %w", err)
			}
			return nil, st.keyErr(err, "run", linkKey)
		}
		st.link = &l
	}
	if trace != "" {
		if st.trace, err = transport.LoadTrace(trace); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// keyErr names the configuration key (and its line, when the file is
// known) that err is about.
func (st *settings) keyErr(err error, key ...string) error {
	k := strings.Join(key, ".")
	if st.opts.ConfigPath == "" {
		return fmt.Errorf("%s: %w", k, err)
	}
	text, rerr := os.ReadFile(st.opts.ConfigPath)
	line := 0
	if rerr == nil {
		line = keyLine(string(text), toml.Key(key))
	}
	if line == 0 {
		return fmt.Errorf("%s: key %q: %w", st.opts.ConfigPath, k, err)
	}
	return fmt.Errorf("%s:%d: key %q: %w", st.opts.ConfigPath, line, k, err)
}

func (st *settings) linkText() string {
	if st.link != nil {
		return st.link.String()
	}
	var steps []string
	for _, s := range st.trace {
		steps = append(steps, fmt.Sprintf("%gs %s", s.At.Seconds(), s.Link))
	}
	return "trace " + strings.Join(steps, " -> ")
}

// recordLink returns what the records give as the link in force: the
// emulated link, with the probed values where it sets no limit.
func (st *settings) recordLink(state *transport.LinkState, probed planner.Link) func() planner.Link {
	return func() planner.Link {
		if state == nil {
			return probed
		}
		l := state.Get()
		out := planner.Link{Up: l.Up, Down: l.Down, RTT: l.RTT}
		if out.Up == 0 {
			out.Up = probed.Up
		}
		if out.Down == 0 {
			out.Down = probed.Down
		}
		if out.RTT == 0 {
			out.RTT = probed.RTT
		}
		return out
	}
}

// openDataset opens the configuration's inputs.
func openDataset(cfg *Config) (zoo.Dataset, error) {
	d := cfg.Dataset
	if d.Path == "" {
		w, h := d.Width, d.Height
		if w <= 0 {
			w = 640
		}
		if h <= 0 {
			h = 480
		}
		return zoo.Synthetic(d.Synthetic, w, h, d.Seed), nil
	}
	task := ModelTask{Task: cfg.Task, Labels: cfg.Labels}
	if spec, err := zoo.Describe(cfg.Model, cfg.ImgSize); err == nil {
		task.Task = spec.Task
	}
	classes := zoo.ImageNetLabels()
	if task.labelSet() == "coco" {
		classes = zoo.COCOLabels()
	}
	ds, err := zoo.OpenImageFolderClasses(cfg.Resolve(d.Path), cfg.Resolve(d.Labels), classes)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	return ds, nil
}

// applyPost sets the configuration's post-processing thresholds.
func applyPost(p *Planned, c PostConfig) {
	if c.TopK > 0 {
		p.Post.TopK = c.TopK
	}
	if c.Conf > 0 {
		p.Post.Conf = c.Conf
	}
	if c.IoU > 0 {
		p.Post.IoU = c.IoU
	}
}

// serverSpec says how the run reaches its server: the configuration's
// server, found in its devices file (the devices key, or devices.toml
// beside the configuration). An embedded server runs one request at a
// time: it shares this machine's cores with the edge, and ONNX Runtime
// already spreads one tail over them; requests in flight wait in its queue
// instead.
func (st *settings) serverSpec(link *transport.LinkState) ServerSpec {
	devPath := st.cfg.Resolve(st.cfg.Devices)
	if st.cfg.Devices == "" {
		devPath = st.cfg.Resolve("devices.toml")
	}
	return ServerSpec{Name: st.server, Devices: devPath, Link: link, Local: LocalServer{Concurrency: 1}, EdgeCPU: st.edgeCPU}
}

// sidecar is run.json: what ran, where, with what, and how it went.
type sidecar struct {
	Tracr       string            `json:"tracr"`
	GitCommit   string            `json:"git_commit"`
	GitModified bool              `json:"git_modified"`
	GoVersion   string            `json:"go_version"`
	ORT         string            `json:"onnxruntime"`
	Machine     profiler.Machine  `json:"machine"`
	Server      string            `json:"server"`
	ServerInfo  *profiler.Machine `json:"server_machine,omitempty"`
	Config      *Config           `json:"config"`
	Options     sidecarOptions    `json:"options"`
	Model       string            `json:"model"`
	Synthetic   bool              `json:"synthetic_weights"`
	Link        LinkJSON          `json:"probed_link"`
	Plans       []PlanJSON        `json:"plans"`
	Breakpoints []BreakpointJSON  `json:"breakpoints"`
	Prepared    []string          `json:"prepared"`
	Events      []eventJSON       `json:"events"`
	Summary     summaryJSON       `json:"summary"`
	Start       time.Time         `json:"start"`
	End         time.Time         `json:"end"`
	Interrupted bool              `json:"interrupted"`
	Records     string            `json:"records"`
}

type sidecarOptions struct {
	Adaptive  bool   `json:"adaptive"`
	Cut       *int   `json:"cut,omitempty"`
	Link      string `json:"link,omitempty"`
	LinkTrace string `json:"link_trace,omitempty"`
	InFlight  int    `json:"in_flight"`
	// EdgeSlowdown is the edge slowdown in force (1: off), the config's
	// or --edge-slowdown's.
	EdgeSlowdown float64 `json:"edge_slowdown"`
}

type eventJSON struct {
	AtMs    float64 `json:"at_ms"`
	Kind    string  `json:"kind"`
	Request int     `json:"request"`
	Message string  `json:"message"`
}

type summaryJSON struct {
	Requests          int                `json:"requests"`
	Failed            int                `json:"failed_inputs"`
	Fallback          int                `json:"fallback"`
	Rescued           int                `json:"rescued"`
	MedianMs          float64            `json:"median_ms"`
	P90Ms             float64            `json:"p90_ms"`
	MeanMs            float64            `json:"mean_ms"`
	MedianPredictedMs float64            `json:"median_predicted_ms"`
	PredictionError   float64            `json:"median_prediction_error"`
	Throughput        float64            `json:"throughput_per_s"`
	WallMs            float64            `json:"wall_ms"`
	Plans             map[string]int     `json:"plans"`
	OverheadMs        float64            `json:"overhead_median_ms"`
	OverheadShare     float64            `json:"overhead_median_share"`
	CodecMs           float64            `json:"codec_median_ms"`
	Stages            map[string]float64 `json:"stage_mean_ms"`
	Bottleneck        string             `json:"bottleneck"`
	Efficiency        float64            `json:"pipeline_efficiency"`
}

func msf(d time.Duration) float64 { return d.Seconds() * 1e3 }

// gitCommit returns the commit checked out in the working folder and
// whether the tree has changes; "" when there is no git or no checkout.
func gitCommit(ctx context.Context) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rev, err := exec.CommandContext(ctx, "git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "", false
	}
	status, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output()
	return strings.TrimSpace(string(rev)), err == nil && len(bytes.TrimSpace(status)) > 0
}

func newSidecar(ctx context.Context, st *settings, server string, res *RunResult, start time.Time) sidecar {
	p, o, s := res.Planned, res.Outcome, res.Summary
	sc := sidecar{Tracr: "dev", GoVersion: "", Machine: profiler.DescribeMachine(ctx, ""), Server: server, Config: st.cfg,
		Options: sidecarOptions{Adaptive: st.adaptive, Cut: st.cut, InFlight: cmpDefault(st.cfg.Run.InFlight, 3),
			EdgeSlowdown: max(st.slowdown, 1)},
		Model: p.Source, Synthetic: p.Synthetic, Link: NewLinkJSON(p.Link),
		Prepared: o.Prepared, Start: start, End: time.Now(), Interrupted: o.Interrupted, Records: filepath.Base(res.CSV)}
	if st.link != nil {
		sc.Options.Link = st.link.String()
	}
	if st.trace != nil {
		sc.Options.LinkTrace = st.linkText()
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		sc.GoVersion = info.GoVersion
		for _, kv := range info.Settings {
			switch kv.Key {
			case "vcs.revision":
				sc.GitCommit = kv.Value
			case "vcs.modified":
				sc.GitModified = kv.Value == "true"
			}
		}
	}
	if sc.GitCommit == "" {
		// Built without VCS stamping (-buildvcs=false): ask git about the
		// working folder, which is the checkout when run from it.
		sc.GitCommit, sc.GitModified = gitCommit(ctx)
	}
	if sc.GitCommit != "" {
		sc.Tracr = sc.GitCommit[:min(12, len(sc.GitCommit))]
		if sc.GitModified {
			sc.Tracr += "-dirty"
		}
	}
	if v, err := engine.Version(); err == nil {
		sc.ORT = v
	}
	if p.ServerProfile != nil {
		m := p.ServerProfile.Machine
		sc.ServerInfo = &m
	}
	sc.Plans, sc.Breakpoints = p.TableJSON()
	for _, e := range o.Events {
		sc.Events = append(sc.Events, eventJSON{AtMs: msf(e.At), Kind: e.Kind, Request: e.Request, Message: e.Message})
	}
	sc.Summary = summaryJSON{Requests: s.Requests, Failed: s.Failed, Fallback: s.Fallback, Rescued: s.Rescued, MedianMs: msf(s.MedianTotal), P90Ms: msf(s.P90Total),
		MeanMs: msf(s.MeanTotal), MedianPredictedMs: msf(s.MedianPredicted), PredictionError: s.PredictionError, Throughput: s.Throughput,
		WallMs: msf(s.Wall), Plans: s.Cuts, OverheadMs: msf(s.Overhead), OverheadShare: s.OverheadShare, CodecMs: msf(s.Codec), Stages: map[string]float64{},
		Bottleneck: s.Bottleneck, Efficiency: s.Efficiency}
	for _, stg := range s.Stages {
		sc.Summary.Stages[stg.Name] = msf(stg.Mean)
	}
	return sc
}
