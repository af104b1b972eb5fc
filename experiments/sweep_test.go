package experiments

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tracr/internal/orttest"
)

// expectedRows is the grid size times the repeats, plus each trace run's
// requests, for a spec whose models all use cuts = "planned".
func expectedRows(t *testing.T, s *Spec) int {
	n, per := 0, 0
	for _, st := range []Strategy{EdgeOnly, ServerRaw, ServerJPEG, Planned} {
		if s.Has(st) {
			per++
		}
	}
	for _, m := range s.Models {
		if m.Cuts.Mode != "planned" {
			t.Fatalf("model %s: cuts %s; the count assumes planned", m.Name, m.Cuts.Mode)
		}
		n += len(s.Links) * len(s.Codecs) * (per + plannedCuts) * s.Repeats
		for _, tr := range s.Traces {
			n += len(s.Codecs) * tr.Requests
		}
	}
	return n
}

// TestSmokeSweep runs config/sweep-smoke.toml end to end: interrupted
// part way (the CSV stays valid, even with a last line cut short), resumed
// to the end, resumed again (nothing to do), and checks every file.
func TestSmokeSweep(t *testing.T) {
	orttest.Require(t)
	spec, err := Load(filepath.Join("..", "config", "sweep-smoke.toml"))
	if err != nil {
		t.Fatal(err)
	}
	want := expectedRows(t, spec)
	dir := t.TempDir()
	csvPath := filepath.Join(dir, CSVName)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// 1. Interrupted after 20 rows, as Ctrl-C would.
	stopCtx, stop := context.WithCancel(ctx)
	var last Progress
	res, err := Run(stopCtx, spec, Options{Out: dir, Tracr: "test", Progress: func(p Progress) {
		last = p
		if p.Done == 20 {
			stop()
		}
	}})
	stop()
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted run: err = %v, want ErrInterrupted", err)
	}
	if last.Total != want {
		t.Errorf("progress total %d, want %d", last.Total, want)
	}
	rows, err := ReadRows(csvPath)
	if err != nil || len(rows) < 20 || len(rows) >= want || res.New != len(rows) {
		t.Fatalf("after the interruption: %d rows (%d new), %v", len(rows), res.New, err)
	}
	// The process killed while writing a row leaves half a line.
	f, _ := os.OpenFile(csvPath, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("mobilenetv2,32,wifi,18.8")
	f.Close()

	// 2. Without --resume an existing sweep is not overwritten.
	if _, err := Run(ctx, spec, Options{Out: dir}); err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Errorf("second run without resume: err = %v", err)
	}

	// 3. Resumed to the end.
	res, err = Run(ctx, spec, Options{Out: dir, Resume: true, Tracr: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != want || res.New != want-len(rows) {
		t.Errorf("resumed: %d rows (%d new), want %d (%d new)", res.Rows, res.New, want, want-len(rows))
	}
	checkCSV(t, csvPath, want)
	plots := []string{BreakdownPlot, BandwidthPlot, BestCutPlot, RegretPlot}
	for _, m := range spec.Models {
		for _, tr := range spec.Traces {
			plots = append(plots, TimelinePlot+"-"+m.Name+"-"+tr.Name) // the smoke spec's codec is auto
		}
	}
	checkFiles(t, dir, res, plots)

	// 4. Resumed again: nothing left to measure.
	res, err = Run(ctx, spec, Options{Out: dir, Resume: true, Tracr: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if res.New != 0 || res.Rows != want {
		t.Errorf("second resume: %d rows, %d new", res.Rows, res.New)
	}
	var meta Meta
	b, _ := os.ReadFile(filepath.Join(dir, MetaName))
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	if len(meta.Sessions) != 3 || !meta.Sessions[0].Interrupted || meta.Ended == nil || meta.Rows != want ||
		meta.GitCommit == "" || meta.ORT == "" || meta.ConfigText == "" || meta.Edge.LogicalCores == 0 {
		t.Errorf("meta.json: %d sessions (first interrupted: %v), ended %v, rows %d, commit %q, ORT %q, cores %d",
			len(meta.Sessions), len(meta.Sessions) > 0 && meta.Sessions[0].Interrupted, meta.Ended, meta.Rows, meta.GitCommit, meta.ORT, meta.Edge.LogicalCores)
	}
}

// checkCSV checks the header, the row count and that no row is there twice.
func checkCSV(t *testing.T, path string, want int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan()
	if got := sc.Text(); got != strings.Join(Columns, ",") {
		t.Errorf("header %q", got)
	}
	rows, err := ReadRows(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != want {
		t.Errorf("%d rows, want %d", len(rows), want)
	}
	seen := map[key]bool{}
	strategies := map[Strategy]int{}
	for _, r := range rows {
		if seen[r.key()] {
			t.Errorf("row twice: %+v", r.key())
		}
		seen[r.key()] = true
		strategies[r.Strategy]++
		if r.IsMeasured() && (r.Measured <= 0 || r.Predicted <= 0) {
			t.Errorf("measured row without times: %+v", r)
		}
	}
	for _, st := range []Strategy{EdgeOnly, ServerRaw, ServerJPEG, Planned, CutStrategy, Adaptive} {
		if strategies[st] == 0 {
			t.Errorf("no %s rows", st)
		}
	}
}

// checkFiles checks that every file of a sweep is there and readable: each
// PNG decodes, each SVG is SVG.
func checkFiles(t *testing.T, dir string, res *Result, plots []string) {
	t.Helper()
	for _, name := range []string{CSVName, MetaName, SummaryName} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
	md, _ := os.ReadFile(filepath.Join(dir, SummaryName))
	for _, want := range []string{"## Best plan per model and link", "## Adaptive runs on traces", "regret"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("summary.md lacks %q", want)
		}
	}
	var pngs, svgs int
	for _, base := range plots {
		for _, ext := range []string{".png", ".svg"} {
			path := filepath.Join(dir, base+ext)
			if !contains(res.Files, path) {
				t.Errorf("%s not among the files written", path)
			}
		}
	}
	for _, path := range res.Files {
		switch filepath.Ext(path) {
		case ".png":
			f, err := os.Open(path)
			if err != nil {
				t.Error(err)
				continue
			}
			img, err := png.Decode(f)
			f.Close()
			if err != nil {
				t.Errorf("%s: %v", path, err)
			} else if b := img.Bounds(); b.Dx() < 300 || b.Dy() < 200 {
				t.Errorf("%s: %v is too small", path, b)
			}
			pngs++
		case ".svg":
			b, err := os.ReadFile(path)
			if err != nil || !(strings.HasPrefix(string(b), "<?xml") || strings.HasPrefix(string(b), "<svg")) {
				t.Errorf("%s: not SVG (%v)", path, err)
			}
			svgs++
		}
	}
	if pngs != len(plots) || svgs != len(plots) {
		t.Errorf("%d PNG and %d SVG files, want %d each", pngs, svgs, len(plots))
	}
}

// TestSweepBadCut: a cut the model does not have is reported at its line
// once the model is profiled, and leaves no files behind.
func TestSweepBadCut(t *testing.T) {
	orttest.Require(t)
	path := writeSpec(t, "links = [\"gigabit\"]\nrepeats = 1\n\n[[models]]\nname = \"mobilenetv2\"\nimg_size = 32\ncuts = [21, 9999]\n")
	spec, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, err = Run(context.Background(), spec, Options{Out: dir})
	if err == nil || !strings.HasPrefix(err.Error(), path+":7: model mobilenetv2: cut 9999 is not a profiled cut") {
		t.Fatalf("err = %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Errorf("files left behind: %v", left)
	}
}

// TestSweepEdgeCPU: a sweep with an edge limit runs against a separate
// server process, and every row and meta.json say which server, which
// limit and which profiles (age, repeats); a second sweep reuses the
// limited profiles from the cache and says how old they are, and fresh
// profiles are measured again.
func TestSweepEdgeCPU(t *testing.T) {
	orttest.Require(t)
	bin := orttest.BuildTracr(t)
	const text = "links = [\"gigabit\"]\nrepeats = 1\nedge_cpu = 0.5\nprofile_repeats = 2\nedge_threads = 1\n" +
		"strategies = [\"edge-only\", \"planned\"]\n%s\n[[models]]\nname = \"mobilenetv2\"\nimg_size = 32\ncuts = \"none\"\n"
	sweep := func(extra string) ([]Row, Meta) {
		t.Helper()
		spec, err := Load(writeSpec(t, fmt.Sprintf(text, extra)))
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if _, err := Run(context.Background(), spec, Options{Out: dir, Binary: bin}); err != nil {
			if os.Getenv("TRACR_REQUIRE_CGROUP") == "" && strings.Contains(err.Error(), "cgroup") {
				t.Skip(err)
			}
			t.Fatal(err)
		}
		rows, err := ReadRows(filepath.Join(dir, CSVName))
		if err != nil {
			t.Fatal(err)
		}
		var meta Meta
		b, _ := os.ReadFile(filepath.Join(dir, MetaName))
		if err := json.Unmarshal(b, &meta); err != nil {
			t.Fatal(err)
		}
		if len(rows) != 2 {
			t.Fatalf("%d rows, want edge-only and planned", len(rows))
		}
		for _, r := range rows {
			if !strings.Contains(r.ServerName, "tracr serve process") || r.EdgeCPU != 0.5 || r.EdgeRepeats != 2 || r.ServerRepeats != 2 {
				t.Errorf("row %s: server %q, edge limit %g, repeats %d and %d; want the separate server, 0.5 and 2", r.Strategy,
					r.ServerName, r.EdgeCPU, r.EdgeRepeats, r.ServerRepeats)
			}
		}
		if meta.Server.Kind != "process" || meta.EdgeCPU != 0.5 || len(meta.Profiles) != 2 {
			t.Fatalf("meta.json: server %+v, edge limit %g, %d profiles", meta.Server, meta.EdgeCPU, len(meta.Profiles))
		}
		if e, s := meta.Profiles[0], meta.Profiles[1]; e.Side != "edge" || e.CPULimit != 0.5 || s.Side != "server" || s.CPULimit != 0 || e.Repeats != 2 {
			t.Errorf("meta.json profiles: %+v", meta.Profiles)
		}
		return rows, meta
	}
	_, first := sweep("fresh_profiles = true")
	time.Sleep(1100 * time.Millisecond) // so that a reused profile is at least a second old
	rows, cached := sweep("")
	if rc := cached.Profiles[0].Recheck; rc == nil {
		t.Errorf("second sweep: the cached edge profile was not rechecked")
	} else if rc.Stale {
		// The recheck found the machine's speed moved (other load): then
		// profiling again, saying why, is right.
		t.Logf("cached edge profile judged stale and measured again: %s", rc.Reason)
	} else if !cached.Profiles[0].Created.Equal(first.Profiles[0].Created) || rows[0].EdgeProfileAge < time.Second {
		t.Errorf("second sweep: edge profile from %v (first %v), %v old; want the cached one",
			cached.Profiles[0].Created, first.Profiles[0].Created, rows[0].EdgeProfileAge)
	}
	_, fresh := sweep("fresh_profiles = true")
	if !fresh.Profiles[0].Created.After(first.Profiles[0].Created) {
		t.Errorf("fresh_profiles reused the profile from %v", first.Profiles[0].Created)
	}
}
