package experiments

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sampleRows() []Row {
	return []Row{
		{Model: "alexnet", ImgSize: 224, Link: "4g", Up: 5.85e6, Down: 13.76e6, RTT: 40 * time.Millisecond, Codec: "auto",
			Strategy: Planned, Plan: "cut 17", Cut: 17, Encoding: "raw", Repeat: 2, BytesUp: 16384,
			Predicted: 77352 * time.Microsecond, UpTerm: 22402 * time.Microsecond, DownTerm: 166 * time.Microsecond,
			Measured: 80125 * time.Microsecond, Edge: 13459 * time.Microsecond, Server: 556 * time.Microsecond},
		{Model: "yolov8n", ImgSize: 640, Link: "up=1mbit,down=2mbit,rtt=80ms", Up: 1e6, Down: 2e6, RTT: 80 * time.Millisecond, Codec: "raw+zstd",
			Strategy: ServerRaw, Plan: "server-only (raw)", Encoding: "raw+zstd", BytesUp: 936841,
			Predicted: 7600 * time.Millisecond, Skipped: "predicted 7.6 s, over the 5 s budget\n(max_request_seconds)"},
		{Model: "yolov8n", ImgSize: 640, Link: "trace:drop", Up: 50e6, Down: 100e6, RTT: 10 * time.Millisecond, Codec: "auto",
			Strategy: Adaptive, Plan: "edge-only", Cut: 232, Repeat: 7, Predicted: 45 * time.Millisecond,
			Measured: 47 * time.Millisecond, Edge: 46 * time.Millisecond, Start: 1234500 * time.Microsecond},
	}
}

// TestCSVRoundTrip writes rows and reads them back.
func TestCSVRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), CSVName)
	w, err := CreateCSV(path)
	if err != nil {
		t.Fatal(err)
	}
	in := sampleRows()
	for _, r := range in {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := CreateCSV(path); err == nil {
		t.Error("CreateCSV overwrote an existing file")
	}
	out, err := ReadRows(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("%d rows back, want %d", len(out), len(in))
	}
	in[1].Skipped = strings.Join(strings.Fields(in[1].Skipped), " ") // one line in the CSV
	for i := range in {
		if out[i] != in[i] {
			t.Errorf("row %d:\n got %+v\nwant %+v", i, out[i], in[i])
		}
	}
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if lines[0] != strings.Join(Columns, ",") || len(lines) != 4 {
		t.Errorf("file:\n%s", data)
	}
	if !strings.Contains(lines[2], ",,,,\"predicted 7.6 s") {
		t.Errorf("skipped row should leave measured, edge, server and start empty: %s", lines[2])
	}
}

// TestAppendCSV drops a last line cut short and appends after the rest.
func TestAppendCSV(t *testing.T) {
	path := filepath.Join(t.TempDir(), CSVName)
	w, err := CreateCSV(path)
	if err != nil {
		t.Fatal(err)
	}
	rows := sampleRows()
	w.Write(rows[0])
	w.Close()
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("yolov8n,640,4g,5.85") // killed mid-row
	f.Close()
	w, got, err := AppendCSV(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Plan != "cut 17" {
		t.Errorf("rows %+v", got)
	}
	if err := w.Write(rows[2]); err != nil {
		t.Fatal(err)
	}
	w.Close()
	all, err := ReadRows(path)
	if err != nil || len(all) != 2 || all[1].Strategy != Adaptive {
		t.Errorf("after append: %d rows, %v", len(all), err)
	}
}

func TestReadRowsErrors(t *testing.T) {
	header := strings.Join(Columns, ",") + "\n"
	good := strings.Join(sampleRows()[0].record(), ",") + "\n"
	tests := []struct {
		name, text, want string
	}{
		{"empty", "", "empty file"},
		{"other header", "a,b,c\n", ":1: header a,b,c"},
		{"short row", header + good + "x,1\n", ":3: 2 fields"},
		{"bad number", header + strings.Replace(good, ",5.85,", ",fast,", 1), `:2: up_mbit "fast"`},
		{"no reason", header + strings.Replace(good, ",80.125,", ",,", 1), ":2: measured_ms is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), CSVName)
			os.WriteFile(path, []byte(tt.text), 0o644)
			_, err := ReadRows(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
