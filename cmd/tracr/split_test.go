package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tracr/graph"
	"tracr/internal/orttest"
)

// requireORT skips or fails the test without ONNX Runtime (orttest.Require).
func requireORT(t *testing.T) { orttest.Require(t) }

const mnist = "../../../shared/models/mnist-8.onnx"

func sharedModel(t *testing.T, path string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Skipf("shared model absent (%v); the ../shared folder beside the repo holds it", err)
	}
	return path
}

func tracr(args ...string) (status int, stdout, stderr string) {
	var out, errb bytes.Buffer
	status = run(append([]string{"tracr"}, args...), &out, &errb)
	return status, out.String(), errb.String()
}

func TestCutsCommand(t *testing.T) {
	requireORT(t)
	model := sharedModel(t, mnist)
	status, out, errs := tracr("cuts", "--model", model)
	if status != 0 {
		t.Fatalf("status %d: %s", status, errs)
	}
	for _, want := range []string{"11 compute nodes, 12 cuts", "Input3", "[1,1,28,28]", "3136", "Plus214 (Add) edge-only"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	status, out, errs = tracr("cuts", "--model", model, "--json")
	if status != 0 {
		t.Fatalf("status %d: %s", status, errs)
	}
	var doc struct {
		Nodes int `json:"nodes"`
		Cuts  []struct {
			ID       int   `json:"id"`
			Bytes    int64 `json:"bytes"`
			Crossing []struct {
				Name  string  `json:"name"`
				Shape []int64 `json:"shape"`
			} `json:"crossing"`
		} `json:"cuts"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Nodes != 11 || len(doc.Cuts) != 12 || doc.Cuts[4].Bytes != 8*14*14*4 {
		t.Errorf("json = %+v", doc)
	}
}

func TestSplitCommand(t *testing.T) {
	requireORT(t)
	model := sharedModel(t, mnist)
	dir := filepath.Join(t.TempDir(), "out")
	status, out, errs := tracr("split", "--model", model, "--cut", "4", "-o", dir, "--verify")
	if status != 0 {
		t.Fatalf("status %d: %s", status, errs)
	}
	if !strings.Contains(out, "max abs diff 0 (graph optimisations off") {
		t.Errorf("verify output:\n%s", out)
	}
	for _, f := range []string{"head.onnx", "tail.onnx"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}

// TestSplitVerifyTwoSizes: a model with a dynamic input is verified at the
// size given and at a second one, and the halves written run at a third.
func TestSplitVerifyTwoSizes(t *testing.T) {
	requireORT(t)
	model := sharedModel(t, "../../../shared/models/mobilenetv2-12-int8.onnx")
	dir := filepath.Join(t.TempDir(), "out")
	status, out, errs := tracr("split", "--model", model, "--cut", "30", "-o", dir, "--verify", "--input-shape", "input=3x3x224x224")
	if status != 0 {
		t.Fatalf("status %d: %s", status, errs)
	}
	for _, want := range []string{"verify at input=3x3x224x224: head->tail vs full model, max abs diff 0 (graph optimisations off",
		"verify at input=1x3x224x224: head->tail vs full model, max abs diff 0 (graph optimisations off"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
	tail, err := graph.Load(filepath.Join(dir, "tail.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range tail.Inputs() {
		if ti, _ := tail.Tensor(in); len(ti.Shape) > 0 && ti.Shape[0] >= 0 {
			t.Errorf("tail input %s is %s: the batch dimension was written fixed", in, ti.Shape)
		}
	}
}

func TestSplitBadInput(t *testing.T) {
	requireORT(t)
	model := sharedModel(t, mnist)
	tmp := t.TempDir()
	data, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(tmp, "truncated.onnx")
	notONNX := filepath.Join(tmp, "notes.onnx")
	os.WriteFile(truncated, data[:len(data)/2], 0o644)
	os.WriteFile(notONNX, []byte("these are my notes, not a model\n"), 0o644)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"truncated", []string{"--model", truncated, "--cut", "1"}, "tracr: load model " + truncated + ": not an ONNX model"},
		{"not onnx", []string{"--model", notONNX, "--cut", "1"}, "tracr: load model " + notONNX + ": not an ONNX model"},
		{"missing", []string{"--model", filepath.Join(tmp, "nope.onnx"), "--cut", "1"}, "no such file"},
		{"no such cut", []string{"--model", model, "--cut", "12"}, "tracr: model " + model + ": cut 12 does not exist: valid cuts are 0..11 (see tracr cuts)"},
		{"negative cut", []string{"--model", model, "--cut", "-1"}, "cut -1 does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(tmp, tt.name)
			status, _, errs := tracr(append([]string{"split", "-o", dir}, tt.args...)...)
			if status == 0 || !strings.Contains(errs, tt.want) || strings.Count(errs, "\n") != 1 {
				t.Errorf("status %d, stderr %q; want one line containing %q", status, errs, tt.want)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("output folder %s was created", dir)
			}
		})
	}
}
