package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestProbeCommand runs tracr probe against the in-process server and
// checks its errors.
func TestProbeCommand(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys")
	if status := run([]string{"tracr", "keys", "init", "--dir", keys, "--host", "127.0.0.1:1"}, &bytes.Buffer{}, &bytes.Buffer{}); status != 0 {
		t.Fatal("keys init failed")
	}
	tests := []struct {
		name       string
		args       []string
		wantStatus int
		wantOut    string // in stdout
		wantErr    string // prefix of stderr
	}{
		{name: "local", args: []string{"probe", "--pings", "3", "--repeats", "1"}, wantOut: "server  local (127.0.0.1:"},
		{name: "bad link", args: []string{"probe", "--link", "up=fast"}, wantStatus: 1, wantErr: `tracr: --link: link "up=fast": up: rate "fast"`},
		{name: "nobody listening", args: []string{"probe", "--server", "127.0.0.1:1", "--keys", keys}, wantStatus: 1, wantErr: "tracr: connect to 127.0.0.1:1: dial tcp 127.0.0.1:1: connect: connection refused (is tracr serve running there? --server local starts one in this process)\n"},
		{name: "no keys", args: []string{"probe", "--server", "127.0.0.1:1", "--keys", filepath.Join(keys, "nope")}, wantStatus: 1,
			wantErr: "tracr: load private key: " + filepath.Join(keys, "nope", "edge_ed25519") + " does not exist; create keys with tracr keys init\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			status := run(append([]string{"tracr"}, tt.args...), &stdout, &stderr)
			if status != tt.wantStatus || !strings.HasPrefix(stderr.String(), tt.wantErr) || !strings.Contains(stdout.String(), tt.wantOut) {
				t.Fatalf("status %d\nstdout %q\nstderr %q\nwant %d, stdout with %q, stderr %q", status, stdout.String(), stderr.String(), tt.wantStatus, tt.wantOut, tt.wantErr)
			}
		})
	}
	var stdout, stderr bytes.Buffer
	if status := run([]string{"tracr", "probe", "--json", "--pings", "5", "--repeats", "1"}, &stdout, &stderr); status != 0 {
		t.Fatalf("probe --json: %s", stderr.String())
	}
	var rep struct {
		Server string  `json:"server"`
		RTT    int64   `json:"rtt_ns"`
		Pings  []int64 `json:"pings_ns"`
		Up     struct {
			BitsPerSec float64 `json:"bits_per_sec"`
			Samples    int     `json:"samples"`
		} `json:"up"`
		Down struct {
			BitsPerSec float64 `json:"bits_per_sec"`
		} `json:"down"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("probe --json printed %q: %v", stdout.String(), err)
	}
	if !strings.HasPrefix(rep.Server, "local") || rep.RTT <= 0 || len(rep.Pings) != 5 || rep.Up.BitsPerSec <= 0 || rep.Up.Samples == 0 || rep.Down.BitsPerSec <= 0 {
		t.Errorf("probe --json: %+v", rep)
	}
}
