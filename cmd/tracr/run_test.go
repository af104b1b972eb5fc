package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"tracr/engine"
)

func writeConfig(t *testing.T, dir, text string) string {
	t.Helper()
	p := filepath.Join(dir, "run.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRunConfigErrors checks that a bad configuration or command line is
// one line naming the file, the line and the key, before anything runs.
func TestRunConfigErrors(t *testing.T) {
	dir := t.TempDir()
	base := "model = \"mobilenetv2\"\nserver = \"local\"\n[dataset]\nsynthetic = 2\n"
	tests := []struct {
		name, config string
		args         []string
		want         string
	}{
		{"unknown key", base + "[run]\nin_flite = 2\n", nil, `run.toml:6: unknown key "run.in_flite"`},
		{"bad codec", base + "[codec]\ncodecs = [\"raw\", \"zip\"]\n", nil, `run.toml:6: key "codec.codecs": codec "zip": unknown codec "zip"`},
		{"lossy codec", base + "[codec]\ncodecs = [\"int8\"]\n", nil, `run.toml:6: key "codec.codecs": codec "int8" is lossy; set allow_lossy = true`},
		{"bad objective", base + "[run]\nobjective = \"speed\"\n", nil, `run.toml:6: key "run.objective": unknown objective "speed"`},
		{"bad link", base + "[run]\nlink = \"up=fast\"\n", nil, `run.toml:6: key "run.link": link "up=fast"`},
		{"cut and adaptive", base + "[run]\ncut = 3\n", []string{"--adaptive"}, `run.toml:6: key "run.cut": a forced cut and adaptive re-planning exclude each other`},
		{"link and trace", base, []string{"--link", "up=1mbit", "--link-trace", "t.csv"}, "--link and --link-trace exclude each other"},
		{"missing trace", base, []string{"--link-trace", filepath.Join(dir, "none.csv")}, "load link trace: open " + filepath.Join(dir, "none.csv")},
		{"unknown server", strings.Replace(base, "local", "lab", 1), nil, `server "lab": no devices file ` + filepath.Join(dir, "devices.toml")},
		{"bad task", "task = \"segment\"\n" + base, nil, `run.toml:1: key "task": task "segment": want classify or detect`},
		{"bad labels", "labels = \"voc\"\n" + base, nil, `run.toml:1: key "labels": labels "voc": want imagenet, coco or none`},
		{"file without task", strings.Replace(base, "mobilenetv2", "net.onnx", 1), nil, `run.toml:1: key "model": net.onnx is an ONNX file: set task = "classify" or "detect"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, dir, tt.config)
			var stdout, stderr bytes.Buffer
			status := run(append([]string{"tracr", "run", "--config", path}, tt.args...), &stdout, &stderr)
			if status != 1 || !strings.Contains(stderr.String(), tt.want) || strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("status %d, stderr %q, want one line with %q", status, stderr.String(), tt.want)
			}
		})
	}
}

// TestRunEndToEnd runs a small model over an image folder with an
// unreadable file through the embedded server: one row per input, the bad
// one reported and counted, a sidecar, a summary.
func TestRunEndToEnd(t *testing.T) {
	if _, err := engine.LibraryPath(); err != nil {
		if os.Getenv("TRACR_REQUIRE_ORT") != "" {
			t.Fatalf("TRACR_REQUIRE_ORT is set: %v", err)
		}
		t.Skip(err.Error())
	}
	dir := t.TempDir()
	images := filepath.Join(dir, "images")
	os.Mkdir(images, 0o755)
	for _, name := range []string{"chelsea.png", "rocket.jpg"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "data", "samples", name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(images, name), b, 0o644)
	}
	os.WriteFile(filepath.Join(images, "broken.jpg"), []byte("not a jpeg"), 0o644)
	path := writeConfig(t, dir, `model = "mobilenetv2"
img_size = 96
[dataset]
path = "images"
[edge]
threads = 1
[output]
dir = "out"
overlays = true
`)
	var stdout, stderr bytes.Buffer
	if status := run([]string{"tracr", "run", "--config", path, "--cut", "40"}, &stdout, &stderr); status != 0 {
		t.Fatalf("status %d, stderr %q, stdout %s", status, stderr.String(), stdout.String())
	}
	out := stdout.String()
	for _, want := range []string{"server local (", "plan   cut 40 raw", "skipped #0: image ", "broken.jpg", "3 requests (1 failed inputs, 0 fell back",
		"overhead (", "pipeline: stage means", "records: " + filepath.Join(dir, "out", "run.csv")} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	f, err := os.Open(filepath.Join(dir, "out", "run.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil || len(rows) != 4 {
		t.Fatalf("%d CSV rows (%v), want a header and 3", len(rows), err)
	}
	var side struct {
		ORT     string `json:"onnxruntime"`
		Model   string `json:"model"`
		Machine struct {
			Cores int `json:"logical_cores"`
		} `json:"machine"`
		Summary struct {
			Requests int `json:"requests"`
			Failed   int `json:"failed_inputs"`
		} `json:"summary"`
		Config struct{ Model string } `json:"config"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "out", "run.json"))
	if err == nil {
		err = json.Unmarshal(b, &side)
	}
	if err != nil || side.ORT != engine.ORTVersion || side.Model != "zoo:mobilenetv2@96" || side.Machine.Cores == 0 ||
		side.Summary.Requests != 3 || side.Summary.Failed != 1 || side.Config.Model != "mobilenetv2" {
		t.Errorf("sidecar %+v (%v)", side, err)
	}
	pngs, _ := filepath.Glob(filepath.Join(dir, "out", "overlays", "*.png"))
	if len(pngs) != 2 {
		t.Errorf("%d overlays, want 2", len(pngs))
	}
}

// TestRunCustomModel runs a real, trained ONNX file nobody on the team
// wrote (MobileNetV2, int8) as a classifier over the sample photos, split
// mid-way and edge-only: the same answers both ways (raw codec), and the
// coffee photo is an espresso.
func TestRunCustomModel(t *testing.T) {
	requireORT(t)
	model, err := filepath.Abs(sharedModel(t, "../../../shared/models/mobilenetv2-12-int8.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	samples, err := filepath.Abs(filepath.Join("..", "..", "data", "samples"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := writeConfig(t, dir, fmt.Sprintf(`model = %q
task = "classify"
[dataset]
path = %q
[edge]
threads = 1
[output]
dir = "out"
`, model, samples))
	results := map[string][]string{}
	for _, cut := range []string{"25", "73"} {
		rows := runForcedCut(t, path, filepath.Join(dir, "out", "run.csv"), cut)
		if len(rows) != 5 {
			t.Fatalf("--cut %s: %d CSV rows, want a header and 4", cut, len(rows))
		}
		col := slices.Index(rows[0], "result")
		for _, r := range rows[1:] {
			results[cut] = append(results[cut], r[1]+": "+r[col])
		}
	}
	t.Logf("split at 25: %v", results["25"])
	if !slices.Equal(results["25"], results["73"]) {
		t.Errorf("split and edge-only answers differ:\n%v\n%v", results["25"], results["73"])
	}
	if !slices.ContainsFunc(results["25"], func(s string) bool { return strings.HasPrefix(s, "coffee.png: espresso") }) {
		t.Errorf("coffee.png is not an espresso: %v", results["25"])
	}
}

// runForcedCut runs the configuration at path with the cut forced, quietly,
// and returns the rows of the records it wrote to csvPath, header first.
func runForcedCut(t *testing.T, path, csvPath, cut string, args ...string) [][]string {
	t.Helper()
	status, out, errs := tracr(append([]string{"run", "--config", path, "--cut", cut, "-q"}, args...)...)
	if status != 0 {
		t.Fatalf("--cut %s: status %d, stderr %q, stdout %s", cut, status, errs, out)
	}
	f, err := os.Open(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil || len(rows) < 2 {
		t.Fatalf("--cut %s: %d CSV rows (%v)", cut, len(rows), err)
	}
	return rows
}
