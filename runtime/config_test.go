package runtime

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.toml", `model = "yolov8n"
[dataset]
path = "images"
[run]
in_flight = 3
cut = 12
rescue = false
`)
	c, err := LoadConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.Model != "yolov8n" || c.Run.InFlight != 3 || c.Run.Cut == nil || *c.Run.Cut != 12 || c.Run.Rescue == nil || *c.Run.Rescue || c.Resolve(c.Dataset.Path) != filepath.Join(dir, "images") {
		t.Errorf("config = %+v", c)
	}
	tests := []struct {
		name, text, want string
	}{
		{"wrong type", "model = 3\n[dataset]\nsynthetic = 2\n", `bad.toml:1: key "model": incompatible types`},
		{"wrong type in table", "model = \"alexnet\"\n[dataset]\nsynthetic = \"many\"\n", `bad.toml:3: key "dataset.synthetic": incompatible types`},
		{"unknown key", "model = \"alexnet\"\n[dataset]\nsynthetic = 2\n[run]\nin_flite = 2\n", `bad.toml:5: unknown key "run.in_flite"`},
		{"unknown table", "model = \"alexnet\"\n[dataset]\nsynthetic = 2\n[edgy]\nthreads = 2\n", `bad.toml:4: unknown key "edgy"`},
		{"syntax", "model = \"alexnet\n", "bad.toml:1: "},
		{"no dataset", "model = \"alexnet\"\n", `needs "path" (an image folder) or "synthetic"`},
		{"no model", "[dataset]\nsynthetic = 1\n", `"model" is required`},
		{"rescue not a bool", "model = \"m\"\n[dataset]\nsynthetic = 1\n[run]\nrescue = \"no\"\n", `bad.toml:5: key "run.rescue": incompatible types`},
		{"bad provider", "model = \"m\"\n[dataset]\nsynthetic = 1\n[edge]\nprovider = \"tpu\"\n", `"provider" "tpu": want cpu or cuda`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig(writeFile(t, dir, "bad.toml", tt.text))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.toml")); err == nil || !strings.Contains(err.Error(), "missing.toml") {
		t.Errorf("missing file: %v", err)
	}
}

func TestDevices(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "devices.toml", `default = "lab"
[servers.lab]
addresses = ["127.0.0.1:2222", "127.0.0.2:2222"]
identity = "keys/edge"
known_hosts = "keys/known_hosts"
`)
	d, err := LoadDevices(p)
	if err != nil {
		t.Fatal(err)
	}
	s, err := d.Lookup("")
	if err != nil || len(s.Addresses) != 2 || s.Identity != filepath.Join(dir, "keys/edge") {
		t.Errorf("default server = %+v, %v", s, err)
	}
	if _, err := d.Lookup("cloud"); err == nil || !strings.Contains(err.Error(), `unknown server "cloud" (known: lab; or --server local)`) {
		t.Errorf("unknown server: %v", err)
	}
	bad := writeFile(t, dir, "bad.toml", "default = \"x\"\n[servers.lab]\naddresses = [\"127.0.0.1:1\"]\nidentity = \"a\"\nknown_hosts = \"b\"\n")
	if _, err := LoadDevices(bad); err == nil || !strings.Contains(err.Error(), `default server "x"`) {
		t.Errorf("bad default: %v", err)
	}
}

func TestRecordsAndSummary(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.csv")
	rw, err := CreateRecords(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 10; i++ {
		r := Record{ID: i, Input: "img", Plan: "cut", Cut: 4, Codec: "raw", Total: time.Duration(i) * time.Millisecond,
			Predicted: time.Duration(i) * time.Millisecond * 11 / 10, Result: "cat 0.9"}
		if i == 10 {
			r = Record{ID: i, Input: "broken.png", Error: "not an image"}
		}
		if err := rw.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	// The file is valid before Close: a run stopped here keeps its rows.
	f, _ := os.Open(path)
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) != 11 || len(rows[0]) != len(RecordColumns) || rows[3][14] != "3.000" {
		t.Fatalf("csv = %v rows, err %v", len(rows), err)
	}
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}
	// 9 measured totals, 1..9 ms: p90 is the nearest rank, ceil(0.9*9) = 9th.
	s := Summarize(rw.Records(), time.Second)
	if s.Requests != 10 || s.Failed != 1 || s.MedianTotal != 5*time.Millisecond || s.P90Total != 9*time.Millisecond {
		t.Errorf("summary = %+v", s)
	}
	if s.PredictionError < 0.0999 || s.PredictionError > 0.1001 || s.Throughput != 9 {
		t.Errorf("prediction error %g, throughput %g", s.PredictionError, s.Throughput)
	}
}
