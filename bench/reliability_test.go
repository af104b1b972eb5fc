package bench

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tracr/tensor"
	"tracr/transport"
)

// TestNonFiniteTensors sends tensors holding NaN or Inf through each codec:
// lossless codecs carry them bit for bit; int8 cannot represent them and
// must refuse with an error naming the tensor, never quantise garbage.
func TestNonFiniteTensors(t *testing.T) {
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		in := tensor.FromFloat32("act", tensor.Shape{1, 4}, []float32{1, bad, -2, 0.5})
		for _, tt := range []struct {
			codec  string
			refuse bool
		}{{"raw", false}, {"raw+zstd", false}, {"raw+lz4", false}, {"int8", true}, {"int8+zstd", true}} {
			spec, err := transport.ParseCodecSpec(tt.codec)
			if err != nil {
				t.Fatal(err)
			}
			w, err := transport.EncodeTensor(in, spec)
			if tt.refuse {
				if err == nil || !strings.Contains(err.Error(), "act") {
					t.Errorf("%s of %v: error %v, want a refusal naming the tensor", tt.codec, bad, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s of %v: %v", tt.codec, bad, err)
			}
			out, err := transport.DecodeTensor(w, transport.DefaultLimits())
			if err != nil {
				t.Fatalf("%s of %v: decode: %v", tt.codec, bad, err)
			}
			if string(out.Data) != string(in.Data) {
				t.Errorf("%s of %v: bytes changed", tt.codec, bad)
			}
		}
	}
}

// TestCheckWritable checks that an unwritable results folder is reported
// before a bench run, naming it. A folder below a regular file stands in
// for a read-only one, which root (as CI runs) could still write.
func TestCheckWritable(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		dir     string
		wantErr bool
	}{
		{filepath.Join(dir, "new", "bench"), false},
		{dir, false},
		{filepath.Join(file, "bench"), true},
	}
	for _, tt := range tests {
		err := CheckWritable(tt.dir)
		if (err != nil) != tt.wantErr || (err != nil && !strings.Contains(err.Error(), tt.dir)) {
			t.Errorf("CheckWritable(%s) = %v, want error %v", tt.dir, err, tt.wantErr)
		}
		if err == nil {
			entries, _ := os.ReadDir(tt.dir)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".bench-check") {
					t.Errorf("left %s behind", e.Name())
				}
			}
		}
	}
}

// TestReportWrite writes a report with a NaN figure: the JSON holds null,
// the CSV an empty value, and a failed write leaves nothing behind.
func TestReportWrite(t *testing.T) {
	r := &Report{Figures: []Figure{{Section: "regret", Scope: "m l", Metric: "a / b", Value: 1.25, Unit: "x"},
		{Section: "adaptation", Scope: "m", Metric: "switch", Value: math.NaN(), Unit: "req", Detail: "no step"}}}
	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	j, err := os.ReadFile(filepath.Join(dir, "bench.json"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := os.ReadFile(filepath.Join(dir, "bench.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(j), `"value": null`) || !strings.Contains(string(j), `"value": 1.25`) || !strings.Contains(string(c), "adaptation,m,switch,,req") {
		t.Errorf("json %s\ncsv %s", j, c)
	}
	file := filepath.Join(dir, "bench.csv")
	if err := r.Write(filepath.Join(file, "sub")); err == nil {
		t.Error("writing below a regular file succeeded")
	}
}
