package experiments

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"tracr/planner"
	"tracr/profiler"
	"tracr/runtime"
	"tracr/transport"
)

// Options configures Run.
type Options struct {
	// Out is the output folder ("" = the spec's).
	Out string
	// Resume continues the sweep.csv in Out, skipping the rows it holds;
	// without it an existing sweep.csv is an error.
	Resume bool
	// Tracr is tracr's version, for meta.json.
	Tracr string
	// Log receives a line per finished cell; nil discards them.
	Log io.Writer
	// Progress, when set, is called after each row.
	Progress func(Progress)
	// Binary is the tracr executable the local server runs as when the
	// edge is limited (runtime.LocalServer.Binary; "" = this one).
	Binary string
}

// Progress is how far a sweep is.
type Progress struct {
	// Done counts the rows finished (written now or found on resume),
	// Total the rows expected; Total may grow once a model's cuts are
	// known.
	Done, Total int
	// Cell says what is being measured.
	Cell string
}

// Result is what Run did.
type Result struct {
	Dir string
	// Rows is the number of rows in sweep.csv, New those this run added,
	// Skipped those without a measurement.
	Rows, New, Skipped int
	// Files lists the files written, sweep.csv first.
	Files   []string
	Summary Summary
	Took    time.Duration
}

// CSVName, MetaName and SummaryName are the files Run writes in its folder
// besides the plots.
const (
	CSVName     = "sweep.csv"
	MetaName    = "meta.json"
	SummaryName = "summary.md"
)

// ErrInterrupted is returned (wrapped) when the context ends a sweep; the
// CSV holds every row finished before.
var ErrInterrupted = errors.New("sweep interrupted")

// Run runs the spec's grid against its server (by default one started in
// this process on loopback; with an edge limit a tracr serve process; or a
// remote one), emulating each link on the connection, and writes sweep.csv
// (a row per measurement, flushed as it is made), meta.json, summary.md and
// the plots into the output folder. For each model it profiles and plans
// once (profiles are cached on disk), then for each link and codec it
// re-prices the candidates and measures every chosen plan Repeats times,
// one request at a time. When ctx ends, the rows written so far stay valid
// and Run returns an error wrapping ErrInterrupted; Resume continues.
func Run(ctx context.Context, spec *Spec, opts Options) (*Result, error) {
	t0 := time.Now()
	s, meta, err := newSweep(ctx, spec, opts)
	if err != nil {
		return nil, err
	}
	res := &Result{Dir: s.dir}
	runErr := s.run(ctx)
	if err := s.w.Close(); err != nil && runErr == nil {
		runErr = err
	}
	res.New = s.written
	meta.finish(s.written, runErr)
	if runErr != nil && s.created && s.written == 0 {
		// Nothing measured: leave nothing behind, so that running again
		// needs no --resume.
		return res, errors.Join(runErr, os.Remove(filepath.Join(s.dir, CSVName)), os.Remove(meta.path))
	}
	if runErr != nil {
		if werr := meta.write(); werr != nil {
			runErr = errors.Join(runErr, werr)
		}
		return res, runErr
	}
	if err := report(res, meta, spec); err != nil {
		return res, err
	}
	res.Took = time.Since(t0)
	return res, nil
}

// newSweep opens the output folder's CSV (reading its rows on resume) and
// writes meta.json's first version.
func newSweep(ctx context.Context, spec *Spec, opts Options) (*sweep, *Meta, error) {
	dir := opts.Out
	if dir == "" {
		dir = spec.OutDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("sweep: %w", err)
	}
	w, existing, created, err := openCSV(filepath.Join(dir, CSVName), opts.Resume)
	if err != nil {
		return nil, nil, err
	}
	meta, err := newMeta(ctx, spec, opts, filepath.Join(dir, MetaName))
	if err == nil {
		err = meta.write()
	}
	if err != nil {
		w.Close()
		return nil, nil, err
	}
	s := &sweep{spec: spec, opts: opts, dir: dir, w: w, created: created, meta: meta, done: map[key]bool{}, byCell: map[cellKey][]Row{}}
	for _, r := range existing {
		s.done[r.key()] = true
		ck := r.cellKey()
		s.byCell[ck] = append(s.byCell[ck], r)
	}
	s.total = s.estimate()
	return s, meta, nil
}

// report reads the finished CSV back and writes summary.md, the plots and
// meta.json's final version.
func report(res *Result, meta *Meta, spec *Spec) error {
	csvPath := filepath.Join(res.Dir, CSVName)
	rows, err := ReadRows(csvPath)
	if err != nil {
		return err
	}
	res.Rows = len(rows)
	for _, r := range rows {
		if !r.IsMeasured() {
			res.Skipped++
		}
	}
	meta.count(rows)
	res.Summary = Summarize(rows)
	res.Summary.Order(spec)
	res.Files = []string{csvPath, meta.path}
	summaryPath := filepath.Join(res.Dir, SummaryName)
	if err := WriteSummaryFile(summaryPath, res.Summary, meta); err != nil {
		return err
	}
	res.Files = append(res.Files, summaryPath)
	plots, err := WritePlots(res.Dir, res.Summary)
	res.Files = append(res.Files, plots...)
	if err != nil {
		return err
	}
	return meta.write()
}

// openCSV creates sweep.csv (created), or with resume opens the existing
// one and returns its rows.
func openCSV(path string, resume bool) (w *Writer, rows []Row, created bool, err error) {
	_, err = os.Stat(path)
	switch {
	case err == nil && !resume:
		return nil, nil, false, fmt.Errorf("%s exists: --resume continues that sweep, or choose another --out", path)
	case err == nil:
		w, rows, err = AppendCSV(path)
		return w, rows, false, err
	case errors.Is(err, fs.ErrNotExist):
		w, err = CreateCSV(path)
		return w, nil, err == nil, err
	}
	return nil, nil, false, fmt.Errorf("sweep csv: %w", err)
}

// sweep is one Run's state.
type sweep struct {
	spec *Spec
	opts Options
	dir  string
	w    *Writer
	// created is set when this run created the CSV.
	created bool
	srv     *runtime.Server
	c       *transport.Client
	state   *transport.LinkState
	meta    *Meta
	// stamp is what every row of the current model says about its
	// server, edge limit and profiles.
	stamp Row

	done    map[key]bool      // rows in the CSV
	byCell  map[cellKey][]Row // the CSV's rows by cell
	total   int               // rows expected
	count   int               // rows finished
	written int               // rows this run wrote
	cell    string            // what is being measured, for Progress
}

// cellKey identifies a cell of the grid: one model, link and codec.
type cellKey struct {
	model string
	img   int
	link  string
	codec string
}

func (r Row) cellKey() cellKey { return cellKey{r.Model, r.ImgSize, r.Link, r.Codec} }

// measuredStrategies are the strategies with rows of their own in a cell
// (besides the cuts).
func (s *sweep) measuredStrategies() []Strategy {
	var out []Strategy
	for _, st := range []Strategy{EdgeOnly, ServerRaw, ServerJPEG, Planned} {
		if s.spec.Has(st) {
			out = append(out, st)
		}
	}
	return out
}

// cutEstimate is how many cut rows a cell of m has, as far as is known
// before planning.
func cutEstimate(m ModelSpec) int {
	switch m.Cuts.Mode {
	case "planned", "sampled":
		return plannedCuts // sampled: and more once the model's cuts are known
	case "list":
		return len(m.Cuts.IDs)
	}
	return 0 // none, or all (known once profiled)
}

// plannedCuts is how many of the planner's best cuts cuts = "planned"
// measures.
const plannedCuts = 3

// estimate returns the rows the grid is expected to hold.
func (s *sweep) estimate() int {
	sp := s.spec
	n := 0
	for _, m := range sp.Models {
		per := len(s.measuredStrategies()) + cutEstimate(m)
		n += len(sp.Links) * len(sp.Codecs) * per * sp.Repeats
		if sp.Has(Adaptive) {
			for _, t := range sp.Traces {
				n += len(sp.Codecs) * t.Requests
			}
		}
	}
	return n
}

// tick counts a finished row.
func (s *sweep) tick() {
	s.count++
	s.total = max(s.total, s.count)
	if s.opts.Progress != nil {
		s.opts.Progress(Progress{Done: s.count, Total: s.total, Cell: s.cell})
	}
}

func (s *sweep) logf(format string, args ...any) {
	if s.opts.Log != nil {
		fmt.Fprintf(s.opts.Log, format+"\n", args...)
	}
}

// write appends a row to the CSV, stamped with the current model's server,
// edge limit and profiles.
func (s *sweep) write(r Row) error {
	r.ServerName, r.EdgeCPU = s.stamp.ServerName, s.stamp.EdgeCPU
	r.EdgeProfileAge, r.EdgeRepeats = s.stamp.EdgeProfileAge, s.stamp.EdgeRepeats
	r.ServerProfileAge, r.ServerRepeats = s.stamp.ServerProfileAge, s.stamp.ServerRepeats
	if err := s.w.Write(r); err != nil {
		return err
	}
	s.written++
	s.done[r.key()] = true
	ck := r.cellKey()
	s.byCell[ck] = append(s.byCell[ck], r)
	return nil
}

func (s *sweep) run(ctx context.Context) error {
	s.state = transport.NewLinkState(transport.Link{})
	spec := s.spec.server(s.state)
	spec.Local.Binary = s.opts.Binary
	srv, err := runtime.Connect(ctx, spec)
	if err != nil {
		return fmt.Errorf("sweep server: %w", err)
	}
	s.srv = srv
	defer srv.Close()
	s.stamp = Row{ServerName: srv.Name(), EdgeCPU: s.spec.EdgeCPU}
	s.meta.connected(srv, s.spec.EdgeCPU)
	if err := s.meta.write(); err != nil {
		return err
	}
	if s.c, err = srv.Dial(ctx); err != nil {
		return err
	}
	defer func() { s.c.Close() }()
	for _, m := range s.spec.Models {
		if err := s.model(ctx, m); err != nil {
			return interrupted(ctx, err)
		}
	}
	return nil
}

// interrupted wraps err with ErrInterrupted when ctx has ended.
func interrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil && !errors.Is(err, ErrInterrupted) {
		return fmt.Errorf("%w: %w", ErrInterrupted, err)
	}
	return err
}

// planCodecs is what planning measures: the default codecs and every codec
// the grid names.
func planCodecs(sp *Spec) []transport.CodecSpec {
	out := runtime.DefaultCodecs(sp.AllowLossy)
	for _, c := range sp.Codecs {
		if c.Spec == nil {
			continue
		}
		if !slices.ContainsFunc(out, func(o transport.CodecSpec) bool { return o.String() == c.Name }) {
			out = append(out, *c.Spec)
		}
	}
	return out
}

// model plans one model and runs its cells and trace runs.
func (s *sweep) model(ctx context.Context, m ModelSpec) error {
	sp := s.spec
	s.cell = fmt.Sprintf("%s: profiling and planning", m.Name)
	s.state.Set(transport.Link{}) // planning's own traffic is not part of any cell
	first := sp.Links[0].Planner()
	p, err := runtime.Plan(ctx, s.c, runtime.PlanOptions{Model: m.path, ImgSize: m.ImgSize, EdgeThreads: sp.EdgeThreads,
		Repeats: sp.ProfileRepeats, Objective: sp.objective, AllowLossy: sp.AllowLossy, Codecs: planCodecs(sp),
		Link: &first, Preload: s.srv.Preload, EdgeCPU: sp.EdgeCPU, FreshProfiles: sp.FreshProfiles})
	if err != nil {
		return fmt.Errorf("model %s: %w", m.Name, err)
	}
	now := time.Now()
	s.stamp.EdgeProfileAge, s.stamp.EdgeRepeats = profileAge(p.EdgeProfile, now), p.EdgeProfile.Repeats
	s.stamp.ServerProfileAge, s.stamp.ServerRepeats = profileAge(p.ServerProfile, now), p.ServerProfile.Repeats
	s.meta.planned(m.Name, p, now)
	if err := s.meta.write(); err != nil {
		return err
	}
	img := m.ImgSize
	if p.Spec.ImgSize > 0 {
		img = p.Spec.ImgSize
	}
	if err := s.checkCuts(m, p); err != nil {
		return err
	}
	for _, l := range sp.Links {
		for _, c := range sp.Codecs {
			if err := s.runCell(ctx, p, cell{model: m, img: img, link: l, codec: c}); err != nil {
				return err
			}
		}
	}
	if !sp.Has(Adaptive) {
		return nil
	}
	for _, t := range sp.Traces {
		for _, c := range sp.Codecs {
			if err := s.runTrace(ctx, p, m, img, t, c); err != nil {
				return err
			}
		}
	}
	return nil
}

// profileAge is how old p was at now, whole seconds (0 for one measured
// in the last second).
func profileAge(p *profiler.Profile, now time.Time) time.Duration {
	return max(now.Sub(p.Created).Truncate(time.Second), 0)
}

// checkCuts checks a model's cut list against its profiled cuts.
func (s *sweep) checkCuts(m ModelSpec, p *runtime.Planned) error {
	if m.Cuts.Mode != "list" {
		return nil
	}
	var ids []int
	for _, c := range p.Problem.Candidates {
		if c.Kind != planner.KindServerJPEG {
			ids = append(ids, c.Cut)
		}
	}
	for _, id := range m.Cuts.IDs {
		if !slices.Contains(ids, id) {
			line := findLine(s.spec.Text, "models", slices.IndexFunc(s.spec.Models, func(o ModelSpec) bool { return o.line == m.line }), "cuts")
			return s.spec.errAt(line, "model %s: cut %d is not a profiled cut (profiled: %s)", m.Name, id, intList(ids))
		}
	}
	return nil
}

func intList(ids []int) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprint(id)
	}
	return strings.Join(parts, ", ")
}

// cell is one cell of the grid.
type cell struct {
	model ModelSpec
	img   int
	link  LinkSpec
	codec CodecChoice
}

func (c cell) key() cellKey { return cellKey{c.model.Name, c.img, c.link.Name, c.codec.Name} }

func (c cell) String() string {
	return fmt.Sprintf("%s@%d %s %s", c.model.Name, c.img, c.link.Name, c.codec.Name)
}

// restrict returns the problem with every candidate limited to the codec
// choice: for auto the lossless encodings (or all with lossy allowed), for
// one codec that codec only, and no server-only JPEG candidate (the
// server-jpeg strategy measures that one on its own).
func restrict(prob planner.Problem, c CodecChoice, lossy bool) planner.Problem {
	out := prob
	if c.Spec == nil {
		out.AllowLossy = lossy
		return out
	}
	out.AllowLossy = c.Spec.Lossy()
	out.Candidates = nil
	for _, cand := range prob.Candidates {
		switch cand.Kind {
		case planner.KindServerJPEG:
			continue
		case planner.KindEdgeOnly:
		default:
			var encs []planner.Encoding
			for _, e := range cand.Encodings {
				if e.Codec == c.Name {
					encs = append(encs, e)
				}
			}
			cand.Encodings = encs
		}
		out.Candidates = append(out.Candidates, cand)
	}
	return out
}

// priced returns a copy of p planned for the cell's link and codec.
func priced(p *runtime.Planned, c CodecChoice, lossy bool, l planner.Link) *runtime.Planned {
	q := *p
	q.Problem = restrict(p.Problem, c, lossy)
	q.Reprice(l)
	return &q
}
