package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tracr/profiler"
)

func TestProfileBadInput(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		needsORT bool
		want     string // in the one line on stderr
	}{
		{"unknown provider", []string{"--provider", "tpu"}, false, `unknown execution provider "tpu" (want cpu or cuda)`},
		{"negative threads", []string{"--threads", "-1"}, false, "threads must be >= 0"},
		{"no repeats", []string{"--repeats", "0"}, false, "--repeats must be >= 1, got 0"},
		{"negative checks", []string{"--checks", "-2"}, false, "--checks must be >= 0"},
		{"unknown format", []string{"--format", "xml"}, false, `unknown --format "xml" (want table, csv or json)`},
		{"output into a missing folder", []string{"-o", filepath.Join(dir, "missing", "p.json")}, false, "folder " + filepath.Join(dir, "missing") + " does not exist"},
		{"trace into a missing folder", []string{"--trace", filepath.Join(dir, "missing", "t.json")}, false, "--trace"},
		{"output is a folder", []string{"-o", dir}, false, "is a folder"},
		{"trace with cached", []string{"--cached", "--trace", filepath.Join(dir, "t.json")}, false, "--trace needs a fresh measurement"},
		{"bad cut list", []string{"--cuts", "1,x"}, false, `"x" is not a cut ID`},
		{"cut that does not exist", []string{"--cuts", "99"}, true, "cut 99 does not exist: valid cuts are 0..11"},
		{"cuda without CUDA", []string{"--provider", "cuda", "--repeats", "1"}, true, "CUDA execution provider unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needsORT {
				requireORT(t)
			}
			model := sharedModel(t, mnist)
			status, out, errs := tracr(append([]string{"profile", "--model", model}, tt.args...)...)
			if tt.name == "cuda without CUDA" && status == 0 {
				t.Skip("this ONNX Runtime has a working CUDA provider")
			}
			if status != 1 || out != "" || !strings.HasPrefix(errs, "tracr: ") || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, tt.want) {
				t.Errorf("status %d, stdout %q, stderr %q; want 1, nothing, one line with %q", status, out, errs, tt.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("files left behind: %v", entries)
			}
		})
	}
}

func TestProfileCommand(t *testing.T) {
	requireORT(t)
	model := sharedModel(t, mnist)
	dir := t.TempDir()

	status, out, errs := tracr("profile", "--model", model, "--repeats", "2", "--threads", "1")
	if status != 0 {
		t.Fatalf("table: status %d: %s", status, errs)
	}
	for _, want := range []string{"11 compute nodes", "fusion error: ", "whole model: median", "cuts: edge = nodes before the cut",
		"graph optimisations off, so every ONNX node appears", "Convolution28", "Times212_reshape1", "GPU"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	js, trace := filepath.Join(dir, "p.json"), filepath.Join(dir, "trace.json")
	if status, _, errs := tracr("profile", "--model", model, "--repeats", "2", "--format", "json", "-o", js, "--trace", trace); status != 0 {
		t.Fatalf("json: status %d: %s", status, errs)
	}
	p, err := profiler.Load(js)
	if err != nil {
		t.Fatal(err)
	}
	if p.Model.Nodes != 11 || len(p.Cuts) != 12 || p.Repeats != 2 || p.Provider != "cpu" {
		t.Errorf("profile: %d nodes, %d cuts, %d repeats, provider %s", p.Model.Nodes, len(p.Cuts), p.Repeats, p.Provider)
	}
	var events []struct {
		Cat  string `json:"cat"`
		Name string `json:"name"`
	}
	b, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &events); err != nil {
		t.Fatalf("trace is not a Chrome-trace event array: %v", err)
	}
	kernels := 0
	for _, e := range events {
		if e.Cat == "Node" && strings.HasSuffix(e.Name, "_kernel_time") {
			kernels++
		}
	}
	if kernels < 12*3 { // 12 operators, 1 warm-up + 2 runs
		t.Errorf("trace holds %d kernel events, want at least 36", kernels)
	}

	csvPath := filepath.Join(dir, "mnist.csv")
	status, out, errs = tracr("profile", "--model", model, "--repeats", "1", "--cuts", "4,8", "--checks", "0", "--format", "csv", "-o", csvPath)
	if status != 0 {
		t.Fatalf("csv: status %d: %s", status, errs)
	}
	for _, f := range []string{"mnist.csv", "mnist.nodes.csv", "mnist.stats.csv", "mnist.json"} {
		if !strings.Contains(out, filepath.Join(dir, f)) {
			t.Errorf("stdout %q does not report %s", out, f)
		}
	}
	cuts, err := os.ReadFile(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(cuts)), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "host,model_hash,provider,threads,cut,bytes,edge_ms") {
		t.Errorf("cuts CSV has %d lines (want header + cuts 0, 4, 8, 11):\n%s", len(lines), cuts)
	}
	nodes, err := os.ReadFile(filepath.Join(dir, "mnist.nodes.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(nodes), "\n"); n != 13 {
		t.Errorf("nodes CSV has %d lines, want header + 12 operators", n)
	}
}
