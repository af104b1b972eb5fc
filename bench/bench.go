// Package bench measures tracr's headline figures in one run: how this
// machine runs work after an idle gap (context for the rest), the planner's
// regret and prediction error against measured candidates, the runtime's
// overhead and pipelined throughput, adaptation on a link trace, the SSH
// channel against plain TCP, and the codecs' byte ratios and top-1
// agreement. Every figure is measured in the run that reports it, as a
// ratio of two measurements taken side by side, with medians over repeats.
package bench

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"tracr/cpulimit"
	"tracr/engine"
	"tracr/graph"
	"tracr/quantile"
)

// Options configures Run.
type Options struct {
	// Quick uses smaller inputs, fewer links and repeats: the same table
	// in under two minutes.
	Quick bool
	// Log receives a line per step (nil: none).
	Log io.Writer
	// EdgeCPU is the limited edge's share of this machine's cores for the
	// sections measured in that regime (0: DefaultEdgeCPU).
	EdgeCPU float64
	// Binary is the tracr executable the server process of the limited
	// regime runs as ("" = this one).
	Binary string
	// Sections, when not empty, runs only the sections whose names (as
	// SectionNames gives them) contain one of these words.
	Sections []string
}

// DefaultEdgeCPU is the limited edge of the bench: at a tenth of a core
// (YOLOv8n@320 and AlexNet about 140 ms a frame on this machine's EPYC)
// the best plan moves from server-only or a split to edge-only as the
// link slows; at a fifth, edge-only already wins on Wi-Fi.
const DefaultEdgeCPU = 0.1

// Figure is one headline number with the two measurements it compares.
type Figure struct {
	// Section is "machine", "regret", "prediction", "overhead",
	// "throughput", "adaptation", "channel" or "codec"; Scope what it is about (a model
	// and link, a codec).
	Section string `json:"section"`
	Scope   string `json:"scope"`
	Metric  string `json:"metric"`
	// Value is the figure, in Unit ("x" for a ratio); NaN when it could not
	// be measured (Detail says why).
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// Detail gives the measurements side by side; How says how they were
	// taken.
	Detail string `json:"detail"`
	How    string `json:"how"`
}

// Report is a bench run.
type Report struct {
	Quick   bool      `json:"quick"`
	Started time.Time `json:"started"`
	Took    float64   `json:"took_seconds"`
	CPUs    int       `json:"cpus"`
	ORT     string    `json:"onnxruntime"`
	Figures []Figure  `json:"figures"`
	// Failed lists the sections that could not run, with why.
	Failed []string `json:"failed,omitempty"`
}

// bencher holds one run's settings and its figures so far.
type bencher struct {
	opts    Options
	report  *Report
	repeats int
	// profiles is where this run caches the profiles it measures ("" =
	// the profiler's default cache): a fresh folder for Run, so every
	// prediction is made from compute timed in the same run as the
	// measurement it is checked against, not from a profile cached hours
	// earlier under another load.
	profiles string
}

func (b *bencher) logf(format string, args ...any) {
	if b.opts.Log != nil {
		fmt.Fprintf(b.opts.Log, "bench: "+format+"\n", args...)
	}
}

func (b *bencher) add(f Figure) { b.report.Figures = append(b.report.Figures, f) }

// Run measures every section and returns the report. A section that fails
// is listed in Report.Failed and the others still run; the error is for
// what stops the whole run (ONNX Runtime missing, ctx ended).
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.EdgeCPU == 0 {
		opts.EdgeCPU = DefaultEdgeCPU
	}
	if err := (cpulimit.Limit{Cores: opts.EdgeCPU}).Validate(); err != nil {
		return nil, fmt.Errorf("bench: edge %w", err)
	}
	if err := CheckSections(opts.Sections, SectionNames(opts.EdgeCPU)); err != nil {
		return nil, err
	}
	if err := engine.Init(); err != nil {
		return nil, err
	}
	ort, err := engine.Version()
	if err != nil {
		return nil, err
	}
	rep := &Report{Quick: opts.Quick, Started: time.Now(), CPUs: runtime.NumCPU(), ORT: ort}
	profiles, err := os.MkdirTemp("", "tracr-bench-profiles-")
	if err != nil {
		return nil, fmt.Errorf("bench: profile folder: %w", err)
	}
	defer os.RemoveAll(profiles)
	b := &bencher{opts: opts, report: rep, repeats: 5, profiles: profiles}
	for _, s := range b.sections() {
		if !chosen(opts.Sections, s.name) {
			continue
		}
		t0 := time.Now()
		b.logf("%s ...", s.name)
		if err := s.run(ctx); err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("bench %s: %w", s.name, ctx.Err())
			}
			rep.Failed = append(rep.Failed, fmt.Sprintf("%s: %v", s.name, err))
			b.logf("%s failed: %v", s.name, err)
		}
		b.logf("%s took %.1f s", s.name, time.Since(t0).Seconds())
	}
	rep.Took = time.Since(rep.Started).Seconds()
	return rep, nil
}

// section is one part of the bench.
type section struct {
	name string
	run  func(context.Context) error
}

// sections are the bench's sections, in the order they run.
func (b *bencher) sections() []section {
	return []section{
		{"machine: work after an idle gap", b.machine},
		{"regret and prediction error, edge as is", b.planningAsIs},
		{fmt.Sprintf("regret and prediction error, edge limited to %g cores", b.opts.EdgeCPU), b.planningLimited},
		{"runtime overhead and throughput", b.pipeline},
		{fmt.Sprintf("adaptation, edge limited to %g cores", b.opts.EdgeCPU), b.adaptationLimited},
		{"SSH channel vs TCP", b.channel},
		{"codecs", b.codecs},
	}
}

// SectionNames names the bench's sections, for Options.Sections.
func SectionNames(edgeCPU float64) []string {
	if edgeCPU == 0 {
		edgeCPU = DefaultEdgeCPU
	}
	var names []string
	for _, s := range (&bencher{opts: Options{EdgeCPU: edgeCPU}}).sections() {
		names = append(names, s.name)
	}
	return names
}

// chosen reports whether the section name is one of words' (all when
// there are none).
func chosen(words []string, name string) bool {
	if len(words) == 0 {
		return true
	}
	for _, w := range words {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// CheckSections refuses a word of Options.Sections that names none of
// the sections names.
func CheckSections(words, names []string) error {
	for _, w := range words {
		if !slices.ContainsFunc(names, func(n string) bool { return strings.Contains(n, w) }) {
			return fmt.Errorf("bench: section %q: no such section; the sections are %q", w, names)
		}
	}
	return nil
}

// value formats a figure's value.
func (f Figure) value() string {
	if math.IsNaN(f.Value) {
		return "n/a"
	}
	s := strconv.FormatFloat(f.Value, 'f', 3, 64)
	if f.Unit != "x" && f.Value == math.Trunc(f.Value) && math.Abs(f.Value) < 1e6 {
		s = strconv.FormatFloat(f.Value, 'f', 0, 64) // a count: "4 cells", not "4.000 cells"
	}
	if f.Unit == "x" {
		return s + "x"
	}
	return s + " " + f.Unit
}

// Print writes the report as an aligned table.
func (r *Report) Print(w io.Writer) {
	mode := "full"
	if r.Quick {
		mode = "quick"
	}
	fmt.Fprintf(w, "tracr bench (%s): %d CPUs, ONNX Runtime %s, took %.0f s\n", mode, r.CPUs, r.ORT, r.Took)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "section\tscope\tmetric\tvalue\tside by side\thow")
	for _, f := range r.Figures {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.Section, f.Scope, f.Metric, f.value(), f.Detail, f.How)
	}
	tw.Flush()
	for _, f := range r.Failed {
		fmt.Fprintf(w, "FAILED: %s\n", f)
	}
}

// markdown renders the report as a Markdown table.
func (r *Report) markdown() []byte {
	var sb strings.Builder
	mode := "full"
	if r.Quick {
		mode = "quick"
	}
	fmt.Fprintf(&sb, "# tracr bench (%s)\n\n%s, %d CPUs, ONNX Runtime %s, took %.0f s.\n\n", mode, r.Started.Format(time.RFC3339), r.CPUs, r.ORT, r.Took)
	sb.WriteString("| section | scope | metric | value | side by side | how |\n|---|---|---|---|---|---|\n")
	esc := func(s string) string { return strings.ReplaceAll(s, "|", "\\|") }
	for _, f := range r.Figures {
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %s |\n", f.Section, esc(f.Scope), esc(f.Metric), f.value(), esc(f.Detail), esc(f.How))
	}
	for _, f := range r.Failed {
		fmt.Fprintf(&sb, "\nFAILED: %s\n", esc(f))
	}
	return []byte(sb.String())
}

// csvBytes renders the figures as tidy CSV, one row per figure.
func (r *Report) csvBytes() ([]byte, error) {
	var sb strings.Builder
	w := csv.NewWriter(&sb)
	w.Write([]string{"section", "scope", "metric", "value", "unit", "detail", "how"})
	for _, f := range r.Figures {
		v := ""
		if !math.IsNaN(f.Value) {
			v = strconv.FormatFloat(f.Value, 'g', 6, 64)
		}
		w.Write([]string{f.Section, f.Scope, f.Metric, v, f.Unit, f.Detail, f.How})
	}
	w.Flush()
	return []byte(sb.String()), w.Error()
}

// jsonFigure is a Figure with its value null when NaN (JSON has no NaN).
type jsonFigure struct {
	Figure
	Value *float64 `json:"value"`
}

// Write writes bench.csv, bench.json and bench.md into dir, each
// atomically (a temporary file renamed into place), after checking that
// dir is writable, so a failed write leaves no half-written file.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write bench results: %w", err)
	}
	c, err := r.csvBytes()
	if err != nil {
		return fmt.Errorf("write bench results: %w", err)
	}
	figs := make([]jsonFigure, len(r.Figures))
	for i, f := range r.Figures {
		figs[i] = jsonFigure{Figure: f}
		if !math.IsNaN(f.Value) {
			v := f.Value
			figs[i].Value = &v
		}
	}
	type alias Report
	j, err := json.MarshalIndent(struct {
		*alias
		Figures []jsonFigure `json:"figures"`
	}{(*alias)(r), figs}, "", "  ")
	if err != nil {
		return fmt.Errorf("write bench results: %w", err)
	}
	for name, data := range map[string][]byte{"bench.csv": c, "bench.json": append(j, '\n'), "bench.md": r.markdown()} {
		if err := graph.WriteFileAtomic(filepath.Join(dir, name), data); err != nil {
			return fmt.Errorf("write bench results: %w", err)
		}
	}
	return nil
}

// ratio is a/b, NaN when b is zero.
func ratio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

// msf is d in milliseconds.
func msf(d time.Duration) float64 { return d.Seconds() * 1e3 }

// median is quantile.Median, but NaN for none: a figure without samples
// was not measured, which 0 would hide.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	return quantile.Median(xs)
}

// CheckWritable makes dir if needed and checks that a file can be created
// in it, so that a run can fail before it measures rather than after.
func CheckWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench results folder %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".bench-check-*")
	if err != nil {
		return fmt.Errorf("bench results folder %s is not writable: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
