package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"tracr/graph"
	"tracr/profiler"
	"tracr/zoo"
)

func profileCommand() *cli.Command {
	return &cli.Command{
		Name:      "profile",
		Usage:     "time a model on this machine: per-node table, segment timings per cut, fusion error, system stats",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "zoo name (see tracr models) or ONNX file", Required: true},
			&cli.StringFlag{Name: "provider", Value: "cpu", Usage: "execution provider: cpu or cuda"},
			&cli.IntFlag{Name: "threads", Usage: "intra-op threads per session (0: ONNX Runtime's default, one per physical core)"},
			&cli.IntFlag{Name: "repeats", Value: profiler.DefaultRepeats, Usage: "timed runs per measurement (after one warm-up run)"},
			&cli.StringFlag{Name: "cuts", Usage: "candidate cut IDs, comma-separated, or \"all\" (default: every cut up to 60 nodes, else the fewest-bytes cut of each of 32 spans)"},
			&cli.IntFlag{Name: "checks", Value: profiler.DefaultChecks, Usage: "interior cuts whose head and tail are also timed as single sessions"},
			&cli.StringFlag{Name: "format", Value: "table", Usage: "output: table, csv or json"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "write the output to `FILE` instead of stdout; with csv also FILE's .nodes.csv, .stats.csv and .json beside it"},
			&cli.StringFlag{Name: "trace", Usage: "write ONNX Runtime's Chrome-trace profile of the per-node runs to `FILE` (opens in Perfetto)"},
			&cli.BoolFlag{Name: "cached", Usage: "reuse the profile cached for this model, provider, threads and machine, if any (a new one is cached)"},
			inputShapeFlag(),
		},
		Action: runProfile,
	}
}

func runProfile(c *cli.Context) error {
	opts := profiler.Options{Provider: c.String("provider"), Threads: c.Int("threads"), Repeats: c.Int("repeats"), TraceFile: c.String("trace")}
	shapes, err := inputShapes(c)
	if err != nil {
		return err
	}
	opts.InputShapes = shapes
	if opts.Repeats < 1 {
		return fmt.Errorf("--repeats must be >= 1, got %d", opts.Repeats)
	}
	if opts.Checks = c.Int("checks"); opts.Checks < 0 {
		return fmt.Errorf("--checks must be >= 0, got %d", opts.Checks)
	} else if opts.Checks == 0 {
		opts.Checks = -1 // profiler's "none"
	}
	if err := opts.Validate(); err != nil {
		return err
	}
	format := c.String("format")
	if format != "table" && format != "csv" && format != "json" {
		return fmt.Errorf("unknown --format %q (want table, csv or json)", format)
	}
	out := c.String("out")
	for _, f := range []struct{ flag, path string }{{"--out", out}, {"--trace", opts.TraceFile}} {
		if err := checkOutputPath(f.flag, f.path); err != nil {
			return err
		}
	}
	if c.Bool("cached") && opts.TraceFile != "" {
		return errors.New("--trace needs a fresh measurement; drop --cached")
	}

	spec := c.String("model")
	model, source, _, err := zoo.Resolve(c.Context, spec)
	if err != nil {
		return err
	}
	if opts.Cuts, err = parseCuts(c.String("cuts"), model, source); err != nil {
		return err
	}
	var p *profiler.Profile
	hit := false
	if c.Bool("cached") {
		p, hit, err = profiler.Cached(c.Context, "", model, source, opts)
	} else {
		p, err = profiler.Run(c.Context, model, source, opts)
	}
	if err != nil {
		return err
	}
	return writeProfile(c.App.Writer, p, format, out, hit)
}

// checkOutputPath refuses, before any measuring, an output file whose folder
// does not exist or that is a folder.
func checkOutputPath(flag, path string) error {
	if path == "" {
		return nil
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
		return fmt.Errorf("%s %s: folder %s does not exist", flag, path, filepath.Dir(path))
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s %s: is a folder", flag, path)
	}
	return nil
}

// parseCuts reads --cuts: "" (the profiler's default), "all", or a
// comma-separated list of cut IDs.
func parseCuts(s string, model []byte, source string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if s == "all" {
		m, err := graph.Parse(model)
		if err != nil {
			return nil, fmt.Errorf("load model %s: %w", source, err)
		}
		var ids []int
		for _, c := range graph.Cuts(m) {
			ids = append(ids, c.ID)
		}
		return ids, nil
	}
	var ids []int
	for _, f := range strings.Split(s, ",") {
		id, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("--cuts %q: %q is not a cut ID", s, f)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// writeProfile writes p in format to out (stdout when ""). With csv and a
// file, the per-node and stats tables and the profile JSON go beside it; if
// any of them cannot be written, none is left behind.
func writeProfile(stdout io.Writer, p *profiler.Profile, format, out string, cached bool) error {
	var main bytes.Buffer
	var err error
	switch format {
	case "json":
		var b []byte
		if b, err = p.JSON(); err == nil {
			main.Write(b)
		}
	case "csv":
		err = p.WriteCutsCSV(&main)
	default:
		err = writeProfileTable(&main, p, cached)
	}
	if err != nil {
		return err
	}
	if out == "" {
		_, err := stdout.Write(main.Bytes())
		return err
	}
	type outFile struct {
		path string
		data []byte
	}
	files := []outFile{{out, main.Bytes()}}
	if format == "csv" {
		stem := strings.TrimSuffix(out, filepath.Ext(out))
		var nodes, stats bytes.Buffer
		if err := p.WriteNodesCSV(&nodes); err != nil {
			return err
		}
		if err := p.WriteStatsCSV(&stats); err != nil {
			return err
		}
		js, err := p.JSON()
		if err != nil {
			return err
		}
		files = append(files, outFile{stem + ".nodes.csv", nodes.Bytes()},
			outFile{stem + ".stats.csv", stats.Bytes()}, outFile{stem + ".json", js})
	}
	for i, f := range files {
		if err := graph.WriteFileAtomic(f.path, f.data); err != nil {
			for _, done := range files[:i] {
				err = errors.Join(err, os.Remove(done.path))
			}
			return err
		}
	}
	for _, f := range files {
		fmt.Fprintf(stdout, "wrote %s\n", f.path)
	}
	return nil
}

// writeProfileTable writes the human-readable report.
func writeProfileTable(w io.Writer, p *profiler.Profile, cached bool) error {
	m := p.Machine
	fmt.Fprintf(w, "model %s: %d compute nodes, sha256 %s\n", p.Model.Source, p.Model.Nodes, p.Model.Hash[:16])
	gpus := "none (no NVML)"
	if len(m.GPUs) > 0 {
		var names []string
		for _, g := range m.GPUs {
			names = append(names, g.Name)
		}
		gpus = strings.Join(names, ", ")
	}
	fmt.Fprintf(w, "machine %s: %s, %d logical / %d physical cores, %.0f MHz, %s memory; GPU %s\n",
		m.Hostname, m.CPUModel, m.LogicalCores, m.PhysicalCores, m.CPUMHz, gib(float64(m.MemoryBytes)), gpus)
	threads := strconv.Itoa(p.Threads)
	if p.Threads == 0 {
		threads = "ONNX Runtime default"
	}
	fmt.Fprintf(w, "ONNX Runtime %s, provider %s, threads %s; %d warm-up + %d timed runs per measurement\n",
		p.ORTVersion, p.Provider, threads, p.Warmup, p.Repeats)
	if cached {
		fmt.Fprintf(w, "(cached profile measured %s)\n", p.Created.Local().Format(time.DateTime))
	}
	fmt.Fprintf(w, "\nwhole model: median %s ms, p90 %s ms\n", msText(p.Whole.Median), msText(p.Whole.P90))
	fmt.Fprintf(w, "fusion error: %.1f%% (median |segment sum - direct| / direct over %d checks)\n", 100*p.FusionError, len(p.Checks))

	fmt.Fprintf(w, "\ncuts: edge = nodes before the cut, server = the rest, each summed over %d segments; direct = the half as one session\n", len(p.Segments))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "cut\tbytes\tedge ms\tedge p90\tserver ms\tserver p90\tedge direct\tserver direct\t")
	for _, c := range p.Cuts {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", c.ID, bytesText(c.Bytes),
			msText(c.Edge.Median), msText(c.Edge.P90), msText(c.Server.Median), msText(c.Server.P90),
			directText(c.EdgeDirect), directText(c.ServerDirect))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nfusion checks: segment sums vs the same nodes timed as one session")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "cut\tpart\tdirect ms\tsummed ms\terror\t")
	for _, c := range p.Checks {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%+.1f%%\t\n", c.Cut, c.Part, msText(c.Direct.Median), msText(c.Summed.Median), 100*c.Error)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	opt := "graph optimisations off, so every ONNX node appears"
	if p.NodesOptimized {
		opt = "graph optimisations on: fused operators stand for several nodes"
	}
	unmapped := 0
	for _, n := range p.Nodes {
		if n.ID < 0 {
			unmapped++
		}
	}
	fmt.Fprintf(w, "\nnodes: ONNX Runtime's profiler, %s; %d operator(s) with id -1: not tracr compute nodes (constants, optimiser-made)\n", opt, unmapped)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "id\tname\top\tprovider\tmedian ms\tp90 ms\toutput bytes\toutputs")
	for _, n := range p.Nodes {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", n.ID, n.Name, n.OpType, strings.TrimSuffix(n.Provider, "ExecutionProvider"),
			msText(n.Time.Median), msText(n.Time.P90), n.OutputBytes, profiler.ShapesText(n.Outputs))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	writeStats(w, p.Stats)
	return nil
}

func writeStats(w io.Writer, s profiler.Stats) {
	fmt.Fprintf(w, "\nsystem (%d samples over %.1f s, none inside a timed run): CPU %.0f%% mean, %.0f%% max, %.0f MHz; memory used up to %s of %s\n",
		s.Samples, s.End.Sub(s.Start).Seconds(), s.CPUPercent.Mean, s.CPUPercent.Max, s.CPUMHz.Mean,
		gib(s.MemUsedBytes.Max), gib(float64(s.MemTotalBytes)))
	if s.CPUEnergyJoules != nil {
		fmt.Fprintf(w, "CPU energy (RAPL): %.1f J\n", *s.CPUEnergyJoules)
	} else {
		fmt.Fprintln(w, "CPU energy: not measured (RAPL counters not readable)")
	}
	if len(s.GPUs) == 0 {
		fmt.Fprintln(w, "GPU: none (NVML not available)")
	}
	for _, g := range s.GPUs {
		energy := "n/a"
		if g.EnergyJoules != nil {
			energy = fmt.Sprintf("%.1f J", *g.EnergyJoules)
		}
		fmt.Fprintf(w, "GPU %d %s: util %.0f%% mean, %.0f%% max; memory up to %s of %s; power %.1f W mean, %.1f W max; SM %.0f MHz, memory %.0f MHz; energy %s\n",
			g.Index, g.Name, g.UtilPercent.Mean, g.UtilPercent.Max, gib(g.MemUsedBytes.Max), gib(float64(g.MemTotal)),
			g.PowerWatts.Mean, g.PowerWatts.Max, g.SMClockMHz.Mean, g.MemClockMHz.Mean, energy)
	}
}

func msText(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64)
}

func directText(t *profiler.Timing) string {
	if t == nil {
		return "-"
	}
	return msText(t.Median)
}

func gib(b float64) string { return fmt.Sprintf("%.1f GiB", b/(1<<30)) }
