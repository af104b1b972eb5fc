package experiments

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tracr/transport"
)

func writeSpec(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sweep.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const okSpec = `name = "t"
links = ["4g", "up=10mbit,down=50mbit,rtt=20ms"]

[[models]]
name = "mobilenetv2"
img_size = 32
`

func TestLoadDefaults(t *testing.T) {
	s, err := Load(writeSpec(t, okSpec))
	if err != nil {
		t.Fatal(err)
	}
	if s.Repeats != 5 || s.MaxRequestSeconds != 30 || len(s.Codecs) != 1 || s.Codecs[0].Name != AutoCodec {
		t.Errorf("defaults: repeats %d, budget %g, codecs %+v", s.Repeats, s.MaxRequestSeconds, s.Codecs)
	}
	if want := []Strategy{EdgeOnly, ServerRaw, ServerJPEG, Planned, Oracle}; !equalStrategies(s.Strategies, want) {
		t.Errorf("strategies %v, want %v", s.Strategies, want)
	}
	if s.Models[0].Cuts.Mode != "planned" {
		t.Errorf("cuts %+v, want planned", s.Models[0].Cuts)
	}
	if s.Links[1].Name != "up=10mbit,down=50mbit,rtt=20ms" || s.Links[1].Link.Up != 10e6 {
		t.Errorf("explicit link %+v", s.Links[1])
	}
	if got := filepath.Base(s.OutDir()); got != "t" {
		t.Errorf("out dir %s, want .../results/t", s.OutDir())
	}
}

func equalStrategies(a, b []Strategy) bool {
	return strings.Join(strategyStrings(a), ",") == strings.Join(strategyStrings(b), ",")
}

func strategyStrings(ss []Strategy) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return out
}

// TestLoadErrors checks that each mistake is reported with the file, the
// line and what is wrong.
func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, text string
		line       int
		want       string
	}{
		{"unknown key", okSpec + "colour = 3\n", 7, `unknown key "models.colour"`},
		{"unknown preset", "links = [\"4g\", \"5g\"]\n[[models]]\nname = \"alexnet\"\n", 1, `unknown link "5g"`},
		{"half a link", "links = [\"up=1mbit\"]\n[[models]]\nname = \"alexnet\"\n", 1, "give both up and down"},
		{"no links", "[[models]]\nname = \"alexnet\"\n", 0, "links is required"},
		{"no models", "links = [\"4g\"]\n", 0, "no [[models]]"},
		{"bad strategy", "strategies = [\"fastest\"]\n" + okSpec, 1, `unknown strategy "fastest"`},
		{"bad codec", "codecs = [\"jpeg\"]\n" + okSpec, 1, "JPEG applies to the input image only"},
		{"unknown codec", "\ncodecs = [\"gzip\"]\n" + okSpec, 2, "gzip"},
		{"bad repeats", "repeats = -1\n" + okSpec, 1, "repeats must be >= 1"},
		{"bad objective", "objective = \"speed\"\n" + okSpec, 1, "speed"},
		{"bad cuts", okSpec + "cuts = \"some\"\n", 7, `cuts "some"`},
		{"second model bad cuts", okSpec + "\n[[models]]\nname = \"yolov8n\"\ncuts = \"some\"\n", 10, `cuts "some"`},
		{"repeated cut", okSpec + "cuts = [3, 3]\n", 7, "3 listed twice"},
		{"second model unnamed", okSpec + "\n[[models]]\nimg_size = 64\n", 8, "[[models]] #2 has no name"},
		{"second model bad size", okSpec + "\n[[models]]\nname = \"yolov8n\"\nimg_size = -1\n", 10, "img_size must be >= 0"},
		{"model twice", okSpec + "\n[[models]]\nname = \"mobilenetv2\"\nimg_size = 32\n", 8, "listed twice"},
		{"adaptive without traces", "strategies = [\"planned\", \"adaptive\"]\n" + okSpec, 1, "needs at least one [[traces]]"},
		{"traces without adaptive", "strategies = [\"planned\"]\n" + okSpec + "\n[[traces]]\nname = \"x\"\nsteps = [\"0 4g\"]\n", 9, "strategies lacks adaptive"},
		{"trace file and steps", okSpec + "\n[[traces]]\nname = \"x\"\nfile = \"a.csv\"\nsteps = [\"0 4g\"]\n", 8, "either file or steps"},
		{"trace missing file", okSpec + "\n[[traces]]\nname = \"x\"\nfile = \"missing.csv\"\n", 10, "missing.csv"},
		{"trace late start", okSpec + "\n[[traces]]\nname = \"x\"\nsteps = [\"1 4g\"]\n", 10, "first step must start at 0"},
		{"trace step order", okSpec + "\n[[traces]]\nname = \"x\"\nsteps = [\"0 4g\", \"0 3g\"]\n", 10, "step 2 does not start after step 1"},
		{"trace bad step", okSpec + "\n[[traces]]\nname = \"x\"\nsteps = [\"soon 4g\"]\n", 10, `trace step "soon 4g"`},
		{"trace bad name", okSpec + "\n[[traces]]\nname = \"a b\"\nsteps = [\"0 4g\"]\n", 8, `name "a b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeSpec(t, tt.text)
			_, err := Load(path)
			if err == nil {
				t.Fatal("no error")
			}
			prefix := path + ":"
			if tt.line > 0 {
				prefix = fmt.Sprintf("%s:%d:", path, tt.line)
			}
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to start with %q and mention %q", err, prefix, tt.want)
			}
		})
	}
}

func TestTraceSpecs(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "t.csv"), []byte("seconds,up,down,rtt\n0,50,100,10\n4,2,100,10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	text := okSpec + `
[[traces]]
name = "file"
file = "t.csv"
requests = 8

[[traces]]
name = "inline"
steps = ["0 wifi", "2.5 up=1mbit,down=2mbit,rtt=80ms"]
interval = 0.2
`
	path := filepath.Join(dir, "sweep.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Has(Adaptive) {
		t.Error("traces given but adaptive is not among the default strategies")
	}
	f, in := s.Traces[0], s.Traces[1]
	if len(f.Trace) != 2 || f.Trace[1].At != 4*time.Second || f.Trace[1].Link.Up != 2e6 || f.InFlight != 1 {
		t.Errorf("file trace %+v", f)
	}
	if got, want := f.interval(), 625*time.Millisecond; got != want { // 1.25 x 4 s / 8
		t.Errorf("file trace interval %v, want %v", got, want)
	}
	wifi, _ := ParseLinkSpec("wifi")
	if len(in.Trace) != 2 || in.Trace[0].Link != wifi.Link || in.Trace[1].At != 2500*time.Millisecond || in.Trace[1].Link.RTT != 80*time.Millisecond {
		t.Errorf("inline trace %+v", in.Trace)
	}
	if in.interval() != 200*time.Millisecond || in.Requests != 30 || in.Label() != "trace:inline" {
		t.Errorf("inline trace: interval %v, requests %d, label %s", in.interval(), in.Requests, in.Label())
	}
}

// TestPresets pins the presets to the literature's rates (Mbit/s up/down).
func TestPresets(t *testing.T) {
	want := map[string][2]float64{"cat1": {0.13, 1}, "3g": {1.1, 2.03}, "4g": {5.85, 13.76}, "wifi": {18.88, 54.97}, "gigabit": {1000, 1000}}
	ps := transport.Presets()
	if len(ps) != len(want) {
		t.Fatalf("%d presets, want %d", len(ps), len(want))
	}
	for i, p := range ps {
		w, ok := want[p.Name]
		if !ok {
			t.Errorf("unexpected preset %s", p.Name)
			continue
		}
		if math.Abs(p.Link.Up-w[0]*1e6) > 1e-3 || math.Abs(p.Link.Down-w[1]*1e6) > 1e-3 || p.Link.RTT <= 0 || p.Source == "" {
			t.Errorf("%s: %+v", p.Name, p)
		}
		if i > 0 && p.Link.RTT > ps[i-1].Link.RTT {
			t.Errorf("%s: RTT %v above the slower %s's %v", p.Name, p.Link.RTT, ps[i-1].Name, ps[i-1].Link.RTT)
		}
		l, err := ParseLinkSpec(strings.ToUpper(p.Name))
		if err != nil || l.Name != p.Name || l.Link != p.Link {
			t.Errorf("ParseLinkSpec(%s) = %+v, %v", p.Name, l, err)
		}
	}
	l, err := ParseLinkSpec("up=5.85mbit,down=13.76mbit,rtt=40ms")
	if err != nil || l.Link != (transport.Link{Up: 5.85e6, Down: 13.76e6, RTT: 40 * time.Millisecond}) {
		t.Errorf("explicit 4g = %+v, %v", l, err)
	}
}

// TestSpecServer: the server's devices file and key folder are found
// beside the spec, relative paths are the spec folder's, and Override
// replaces the spec's settings after checking them.
func TestSpecServer(t *testing.T) {
	path := writeSpec(t, "edge_cpu = 0.5\n"+okSpec)
	dir := filepath.Dir(path)
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	link := transport.NewLinkState(transport.Link{})
	got := s.server(link)
	if got.Devices != "" || got.KeyDir != filepath.Join(dir, "keys") || got.EdgeCPU != 0.5 || got.Link != link || got.Name != "" {
		t.Errorf("without a devices file: %+v", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "devices.toml"), []byte("[servers.gpu]\naddresses = [\"10.0.0.2:2222\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.Server, s.Keys = "gpu", "mykeys"
	if got := s.server(link); got.Devices != filepath.Join(dir, "devices.toml") || got.KeyDir != filepath.Join(dir, "mykeys") || got.Name != "gpu" {
		t.Errorf("with devices.toml beside the spec: %+v", got)
	}
	if err := s.Override(Overrides{EdgeCPU: 0, EdgeCPUSet: true}); err == nil {
		t.Error("Override accepted an edge limit of 0")
	}
	if err := s.Override(Overrides{EdgeCPU: 0.25, EdgeCPUSet: true, Server: "10.0.0.3:2222", Fresh: true}); err != nil {
		t.Fatal(err)
	}
	if s.EdgeCPU != 0.25 || s.Server != "10.0.0.3:2222" || !s.FreshProfiles {
		t.Errorf("after Override: edge %g, server %q, fresh %v", s.EdgeCPU, s.Server, s.FreshProfiles)
	}
}

// TestShippedSpecs: every sweep spec in config/ loads.
func TestShippedSpecs(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join("..", "config", "sweep*.toml"))
	if len(paths) < 3 {
		t.Fatalf("sweep specs in config/: %v", paths)
	}
	for _, p := range paths {
		if _, err := Load(p); err != nil {
			t.Error(err)
		}
	}
}
