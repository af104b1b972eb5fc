// Package experiments runs experiment grids: a TOML spec (models x cuts x
// links x codecs x strategies x repeats, and link traces for the adaptive
// runtime) is run against a server (local on loopback, or remote) whose
// link is emulated, with the edge optionally under a kernel CPU limit, one
// measurement per CSV row; the rows are then condensed into summary.md and
// plots. tracr sweep is its command line.
package experiments

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"tracr/cpulimit"
	"tracr/planner"
	"tracr/runtime"
	"tracr/transport"
)

// Spec is a sweep configuration file (TOML). Every key but links and
// [[models]] is optional; see config/sweep.toml.
type Spec struct {
	// Name names the sweep (default: the file's base name).
	Name string `toml:"name"`
	// Out is the output folder, relative to the file's folder (default
	// ../results/<name>, beside config/).
	Out string `toml:"out"`
	// Repeats is the number of measurements (CSV rows) per plan and cell.
	Repeats int `toml:"repeats"`
	// MaxRequestSeconds is the budget of one request: a plan predicted to
	// take longer is recorded as skipped instead of run (default 30).
	MaxRequestSeconds float64 `toml:"max_request_seconds"`
	// Objective is the planner's objective: latency (default) or
	// throughput.
	Objective string `toml:"objective"`
	// AllowLossy lets the "auto" codec choose fp16 and int8.
	AllowLossy bool `toml:"allow_lossy"`
	// EdgeThreads sets ONNX Runtime's threads on the edge (0 = default).
	EdgeThreads int `toml:"edge_threads"`
	// ProfileRepeats is the timed runs per profile measurement (0 =
	// the profiler's default).
	ProfileRepeats int `toml:"profile_repeats"`
	// Server is the server the sweep runs against: "local" (default: one
	// started by tracr on this machine), a devices.toml name (Devices, or
	// devices.toml beside the spec), or host:port with the key folder Keys.
	Server  string `toml:"server"`
	Devices string `toml:"devices"`
	Keys    string `toml:"keys"`
	// EdgeCPU limits the edge (this process) to that many cores with the
	// kernel's CPU-bandwidth control (0: no limit); the local server then
	// runs as its own process, unlimited.
	EdgeCPU float64 `toml:"edge_cpu"`
	// FreshProfiles profiles both sides again instead of using cached
	// profiles.
	FreshProfiles bool `toml:"fresh_profiles"`
	// Strategies lists what is measured in each cell besides the cuts
	// (default: edge-only, server-raw, server-jpeg, planned, oracle, and
	// adaptive when there are traces).
	Strategies []Strategy    `toml:"strategies"`
	Links      []LinkSpec    `toml:"links"`
	Codecs     []CodecChoice `toml:"codecs"`
	Models     []ModelSpec   `toml:"models"`
	Traces     []TraceSpec   `toml:"traces"`
	Path       string        `toml:"-"` // the file it was read from
	Text       string        `toml:"-"` // the file's text
	objective  planner.Objective
}

// ModelSpec is one [[models]] entry.
type ModelSpec struct {
	// Name is a zoo name or an ONNX file (relative to the spec's folder).
	Name string `toml:"name"`
	// ImgSize is the zoo input size (0 = the model's default).
	ImgSize int `toml:"img_size"`
	// Cuts chooses the cut candidates measured (default "planned").
	Cuts CutSet `toml:"cuts"`
	line int
	path string // Name, or the file resolved against the spec's folder
}

// TraceSpec is one [[traces]] entry: a time-varying link on which the
// adaptive runtime is run once per model and codec.
type TraceSpec struct {
	Name string `toml:"name"`
	// File is a link trace CSV (transport.ParseTrace), relative to the
	// spec's folder; Steps gives the same inline, as "SECONDS LINK"
	// strings where LINK is a preset or a link spec. One of the two.
	File  string      `toml:"file"`
	Steps []TraceStep `toml:"steps"`
	// Requests is the number of requests run (default 30), InFlight how
	// many may be in flight at once (default 1: one at a time, as the grid
	// measures).
	Requests int `toml:"requests"`
	InFlight int `toml:"in_flight"`
	// Interval is the least time in seconds between the starts of two
	// requests (default: 1.25 x the trace's last step time / requests, so
	// the requests span the whole trace; 0 with a one-step trace).
	Interval float64 `toml:"interval"`
	// Trace is the trace read from File or Steps.
	Trace transport.Trace `toml:"-"`
	line  int
}

// interval is the pacing of the requests.
func (t TraceSpec) interval() time.Duration {
	if t.Interval > 0 {
		return time.Duration(t.Interval * float64(time.Second))
	}
	return time.Duration(1.25 * float64(t.Trace.Duration()) / float64(max(t.Requests, 1)))
}

// Label is how a trace appears in the link column: "trace:<name>".
func (t TraceSpec) Label() string { return "trace:" + t.Name }

// Strategy is one entry of strategies.
type Strategy string

// The strategies. Cuts are measured whatever the strategies; oracle is
// computed from every plan measured in a cell and has no rows of its own.
const (
	EdgeOnly   Strategy = "edge-only"
	ServerRaw  Strategy = "server-raw"
	ServerJPEG Strategy = "server-jpeg"
	Planned    Strategy = "planned"
	Oracle     Strategy = "oracle"
	Adaptive   Strategy = "adaptive"
	// CutStrategy labels the rows of the cut candidates; it is not
	// written in a spec.
	CutStrategy Strategy = "cut"
)

func allStrategies() []Strategy {
	return []Strategy{EdgeOnly, ServerRaw, ServerJPEG, Planned, Oracle, Adaptive}
}

// UnmarshalTOML implements toml.Unmarshaler.
func (s *Strategy) UnmarshalTOML(v any) error {
	str, ok := v.(string)
	if !ok {
		return fmt.Errorf("strategy %v: want a string", v)
	}
	if !slices.Contains(allStrategies(), Strategy(str)) {
		return fmt.Errorf("unknown strategy %q (want %s)", str, strategyNames())
	}
	*s = Strategy(str)
	return nil
}

func strategyNames() string {
	var names []string
	for _, s := range allStrategies() {
		names = append(names, string(s))
	}
	return strings.Join(names, ", ")
}

func presetNames() string {
	var names []string
	for _, p := range transport.Presets() {
		names = append(names, p.Name)
	}
	return strings.Join(names, ", ")
}

// LinkSpec is one entry of links: a preset name or a link spec
// ("up=10mbit,down=50mbit,rtt=20ms").
type LinkSpec struct {
	// Name is the preset's name, or the spec in ParseLink's canonical
	// form.
	Name string
	Link transport.Link
}

// ParseLinkSpec reads a preset name or a link spec.
func ParseLinkSpec(s string) (LinkSpec, error) {
	s = strings.TrimSpace(s)
	if p, ok := transport.LookupPreset(s); ok {
		return LinkSpec{Name: p.Name, Link: p.Link}, nil
	}
	if !strings.Contains(s, "=") {
		return LinkSpec{}, fmt.Errorf("unknown link %q (presets: %s; or a spec like up=10mbit,down=50mbit,rtt=20ms)", s, presetNames())
	}
	l, err := transport.ParseLink(s)
	if err != nil {
		return LinkSpec{}, err
	}
	if l.Up == 0 || l.Down == 0 {
		return LinkSpec{}, fmt.Errorf("link %q: give both up and down (0 would mean unlimited)", s)
	}
	return LinkSpec{Name: l.String(), Link: l}, nil
}

// UnmarshalTOML implements toml.Unmarshaler.
func (l *LinkSpec) UnmarshalTOML(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("link %v: want a string (a preset or a spec like up=10mbit,down=50mbit,rtt=20ms)", v)
	}
	ls, err := ParseLinkSpec(s)
	if err != nil {
		return err
	}
	*l = ls
	return nil
}

// Planner returns the link as the planner sees it.
func (l LinkSpec) Planner() planner.Link { return planner.Link(l.Link) }

// CodecChoice is one entry of codecs: "auto" (the planner picks the best
// measured encoding for each plan: the lossless ones, or every one with
// allow_lossy) or one codec ("raw", "raw+zstd", "int8+zstd", ...) that every
// plan must use.
type CodecChoice struct {
	Name string
	// Spec is the codec; nil for auto.
	Spec *transport.CodecSpec
}

// AutoCodec is the codec choice that lets the planner choose.
const AutoCodec = "auto"

// UnmarshalTOML implements toml.Unmarshaler.
func (c *CodecChoice) UnmarshalTOML(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("codec %v: want a string", v)
	}
	if s == AutoCodec {
		*c = CodecChoice{Name: AutoCodec}
		return nil
	}
	spec, err := transport.ParseCodecSpec(s)
	if err != nil {
		return err
	}
	if spec.Kind == transport.CodecJPEG {
		return fmt.Errorf("codec %q: JPEG applies to the input image only; the server-jpeg strategy measures it", s)
	}
	*c = CodecChoice{Name: spec.String(), Spec: &spec}
	return nil
}

// CutSet says which cuts a cell measures.
type CutSet struct {
	// Mode is "planned" (the planner's top three cuts), "sampled" (those
	// and every tenth profiled cut: an oracle for models with hundreds of
	// cuts), "all" (every profiled cut), "none", or "list" (IDs).
	Mode string
	IDs  []int
}

// UnmarshalTOML implements toml.Unmarshaler.
func (c *CutSet) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case string:
		switch x {
		case "planned", "sampled", "all", "none":
			*c = CutSet{Mode: x}
			return nil
		}
		return fmt.Errorf("cuts %q: want \"planned\", \"sampled\", \"all\", \"none\" or a list of cut IDs", x)
	case []any:
		out := CutSet{Mode: "list"}
		for _, e := range x {
			n, ok := e.(int64)
			if !ok || n < 0 || n > math.MaxInt32 {
				return fmt.Errorf("cuts: %v is not a cut ID (want non-negative integers)", e)
			}
			if slices.Contains(out.IDs, int(n)) {
				return fmt.Errorf("cuts: %d listed twice", n)
			}
			out.IDs = append(out.IDs, int(n))
		}
		if len(out.IDs) == 0 {
			return fmt.Errorf("cuts: empty list (use \"none\" for no cuts)")
		}
		*c = out
		return nil
	}
	return fmt.Errorf("cuts %v: want \"planned\", \"sampled\", \"all\", \"none\" or a list of cut IDs", v)
}

// TraceStep is one inline trace step, "SECONDS LINK".
type TraceStep struct {
	At   time.Duration
	Link LinkSpec
}

// UnmarshalTOML implements toml.Unmarshaler.
func (t *TraceStep) UnmarshalTOML(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("trace step %v: want a string \"SECONDS LINK\", e.g. \"5 3g\"", v)
	}
	secs, link, ok := strings.Cut(strings.TrimSpace(s), " ")
	f, err := strconv.ParseFloat(strings.TrimSuffix(secs, "s"), 64)
	if !ok || err != nil || !(f >= 0) || f > 1e6 {
		return fmt.Errorf("trace step %q: want \"SECONDS LINK\", e.g. \"5 3g\"", s)
	}
	l, err := ParseLinkSpec(link)
	if err != nil {
		return fmt.Errorf("trace step %q: %w", s, err)
	}
	*t = TraceStep{At: time.Duration(f * float64(time.Second)), Link: l}
	return nil
}

// Load reads and checks a sweep spec. Every error names the file and, where
// it can, the line.
func Load(path string) (*Spec, error) {
	var s Spec
	if err := runtime.LoadTOML(path, &s); err != nil {
		return nil, err
	}
	text, err := readText(path)
	if err != nil {
		return nil, err
	}
	s.Path, s.Text = path, text
	if err := s.check(); err != nil {
		return nil, err
	}
	return &s, nil
}

// errAt is an error at a line of the spec (0: the file).
func (s *Spec) errAt(line int, format string, args ...any) error {
	if line > 0 {
		return fmt.Errorf("%s:%d: %s", s.Path, line, fmt.Sprintf(format, args...))
	}
	return fmt.Errorf("%s: %s", s.Path, fmt.Sprintf(format, args...))
}

// check fills defaults and validates what the types alone do not.
func (s *Spec) check() error {
	top := func(key string) int { return findLine(s.Text, "", 0, key) }
	if s.Name == "" {
		s.Name = strings.TrimSuffix(filepath.Base(s.Path), filepath.Ext(s.Path))
	}
	if !safeName.MatchString(s.Name) {
		return s.errAt(top("name"), "name %q: use letters, digits, '.', '_' and '-'", s.Name)
	}
	if s.Out == "" {
		s.Out = filepath.Join("..", "results", s.Name)
	}
	switch {
	case s.Repeats == 0:
		s.Repeats = 5
	case s.Repeats < 0:
		return s.errAt(top("repeats"), "repeats must be >= 1")
	}
	switch {
	case s.MaxRequestSeconds == 0:
		s.MaxRequestSeconds = 30
	case !(s.MaxRequestSeconds > 0) || s.MaxRequestSeconds > 86400:
		return s.errAt(top("max_request_seconds"), "max_request_seconds must be between 0 and 86400")
	}
	obj, err := planner.ParseObjective(s.Objective)
	if err != nil {
		return s.errAt(top("objective"), "%v", err)
	}
	s.objective = obj
	if s.EdgeThreads < 0 {
		return s.errAt(top("edge_threads"), "edge_threads must be >= 0")
	}
	if s.ProfileRepeats < 0 {
		return s.errAt(top("profile_repeats"), "profile_repeats must be >= 0")
	}
	if s.EdgeCPU != 0 {
		if err := (cpulimit.Limit{Cores: s.EdgeCPU}).Validate(); err != nil {
			return s.errAt(top("edge_cpu"), "edge_cpu: %v", err)
		}
	}
	if len(s.Links) == 0 {
		return s.errAt(top("links"), "links is required: presets (%s) or specs like up=10mbit,down=50mbit,rtt=20ms", presetNames())
	}
	for i, l := range s.Links {
		for _, m := range s.Links[:i] {
			if m.Name == l.Name {
				return s.errAt(top("links"), "link %q listed twice", l.Name)
			}
		}
	}
	if len(s.Codecs) == 0 {
		s.Codecs = []CodecChoice{{Name: AutoCodec}}
	}
	for i, c := range s.Codecs {
		for _, d := range s.Codecs[:i] {
			if d.Name == c.Name {
				return s.errAt(top("codecs"), "codec %q listed twice", c.Name)
			}
		}
	}
	if err := s.checkModels(); err != nil {
		return err
	}
	if err := s.checkTraces(); err != nil {
		return err
	}
	return s.checkStrategies()
}

var safeName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

func (s *Spec) checkModels() error {
	if len(s.Models) == 0 {
		return s.errAt(0, "no [[models]]: give at least one, e.g. [[models]] name = \"alexnet\"")
	}
	for i := range s.Models {
		m := &s.Models[i]
		m.line = findLine(s.Text, "models", i, "")
		if m.Name == "" {
			return s.errAt(m.line, "[[models]] #%d has no name (a zoo name or an .onnx file)", i+1)
		}
		m.path = m.Name
		if strings.HasSuffix(m.Name, ".onnx") && !filepath.IsAbs(m.Name) {
			m.path = filepath.Join(filepath.Dir(s.Path), m.Name)
		}
		if m.ImgSize < 0 {
			return s.errAt(findLine(s.Text, "models", i, "img_size"), "img_size must be >= 0")
		}
		if m.Cuts.Mode == "" {
			m.Cuts.Mode = "planned"
		}
		for _, o := range s.Models[:i] {
			if o.Name == m.Name && o.ImgSize == m.ImgSize {
				return s.errAt(m.line, "model %s at img_size %d listed twice", m.Name, m.ImgSize)
			}
		}
	}
	return nil
}

func (s *Spec) checkTraces() error {
	for i := range s.Traces {
		t := &s.Traces[i]
		t.line = findLine(s.Text, "traces", i, "")
		if !safeName.MatchString(t.Name) {
			return s.errAt(t.line, "[[traces]] #%d: name %q: use letters, digits, '.', '_' and '-'", i+1, t.Name)
		}
		for _, o := range s.Traces[:i] {
			if o.Name == t.Name {
				return s.errAt(t.line, "trace %q listed twice", t.Name)
			}
		}
		switch {
		case t.Requests == 0:
			t.Requests = 30
		case t.Requests < 0:
			return s.errAt(findLine(s.Text, "traces", i, "requests"), "requests must be >= 1")
		}
		if !(t.Interval >= 0) || t.Interval > 3600 {
			return s.errAt(findLine(s.Text, "traces", i, "interval"), "interval must be between 0 and 3600 seconds")
		}
		switch {
		case t.InFlight == 0:
			t.InFlight = 1
		case t.InFlight < 0:
			return s.errAt(findLine(s.Text, "traces", i, "in_flight"), "in_flight must be >= 1")
		}
		switch {
		case (t.File == "") == (len(t.Steps) == 0):
			return s.errAt(t.line, "trace %q: give either file or steps", t.Name)
		case t.File != "":
			path := t.File
			if !filepath.IsAbs(path) {
				path = filepath.Join(filepath.Dir(s.Path), path)
			}
			tr, err := transport.LoadTrace(path)
			if err != nil {
				return s.errAt(findLine(s.Text, "traces", i, "file"), "trace %q: %v", t.Name, err)
			}
			t.Trace = tr
		default:
			for j, st := range t.Steps {
				if j == 0 && st.At != 0 {
					return s.errAt(findLine(s.Text, "traces", i, "steps"), "trace %q: the first step must start at 0", t.Name)
				}
				if j > 0 && st.At <= t.Steps[j-1].At {
					return s.errAt(findLine(s.Text, "traces", i, "steps"), "trace %q: step %d does not start after step %d", t.Name, j+1, j)
				}
				t.Trace = append(t.Trace, transport.TraceStep{At: st.At, Link: st.Link.Link})
			}
		}
		for _, st := range t.Trace {
			if st.Link.Up == 0 || st.Link.Down == 0 {
				return s.errAt(t.line, "trace %q: a step at %v has an unlimited (0) rate; give both up and down", t.Name, st.At)
			}
		}
	}
	return nil
}

func (s *Spec) checkStrategies() error {
	line := findLine(s.Text, "", 0, "strategies")
	if len(s.Strategies) == 0 {
		s.Strategies = []Strategy{EdgeOnly, ServerRaw, ServerJPEG, Planned, Oracle}
		if len(s.Traces) > 0 {
			s.Strategies = append(s.Strategies, Adaptive)
		}
	}
	for i, st := range s.Strategies {
		if slices.Contains(s.Strategies[:i], st) {
			return s.errAt(line, "strategy %q listed twice", st)
		}
	}
	switch adaptive := s.Has(Adaptive); {
	case adaptive && len(s.Traces) == 0:
		return s.errAt(line, "strategy adaptive needs at least one [[traces]]")
	case !adaptive && len(s.Traces) > 0:
		return s.errAt(findLine(s.Text, "traces", 0, ""), "[[traces]] given but strategies lacks adaptive")
	}
	return nil
}

// Has reports whether the spec asks for strategy st.
func (s *Spec) Has(st Strategy) bool { return slices.Contains(s.Strategies, st) }

// OutDir returns the output folder resolved against the spec's folder.
func (s *Spec) OutDir() string {
	if filepath.IsAbs(s.Out) {
		return s.Out
	}
	return filepath.Join(filepath.Dir(s.Path), s.Out)
}

// MaxRequest returns the per-request budget.
func (s *Spec) MaxRequest() time.Duration {
	return time.Duration(s.MaxRequestSeconds * float64(time.Second))
}

var (
	headerRe = regexp.MustCompile(`^\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?`)
	keyRe    = regexp.MustCompile(`^\s*"?([A-Za-z0-9_-]+)"?\s*=`)
)

// findLine returns the line of key in a table of the TOML text: table ""
// is the top level, and for an array of tables, index picks the entry;
// key "" asks for the table's header line. 0 means not found. The decoder
// keeps key positions private, so semantic errors find their line here.
func findLine(text, table string, index int, key string) int {
	cur, seen := "", map[string]int{}
	for i, line := range strings.Split(text, "\n") {
		if m := headerRe.FindStringSubmatch(line); m != nil {
			cur = m[2]
			if m[1] == "[[" {
				seen[cur]++
			}
			if key == "" && cur == table && seen[cur] == index+1 {
				return i + 1
			}
			continue
		}
		if key == "" || cur != table || (table != "" && seen[table] != index+1 && seen[table] > 0) {
			continue
		}
		if m := keyRe.FindStringSubmatch(line); m != nil && m[1] == key {
			return i + 1
		}
	}
	return 0
}

func readText(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("sweep config: %w", err)
	}
	return string(b), nil
}

// server returns how to reach the spec's server, with the edge's link
// emulated on every connection: "" is "local"; the devices file is Devices,
// or devices.toml beside the spec when that exists; the key folder is Keys,
// or keys beside the spec. Relative paths are the spec folder's.
func (s *Spec) server(link *transport.LinkState) runtime.ServerSpec {
	dir := filepath.Dir(s.Path)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	devices := rel(s.Devices)
	if devices == "" {
		if p := filepath.Join(dir, "devices.toml"); fileExists(p) {
			devices = p
		}
	}
	keys := rel(s.Keys)
	if keys == "" {
		keys = filepath.Join(dir, "keys")
	}
	return runtime.ServerSpec{Name: s.Server, Devices: devices, KeyDir: keys, Link: link, EdgeCPU: s.EdgeCPU}
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

// Overrides are command-line settings that replace the spec's.
type Overrides struct {
	// EdgeCPU replaces edge_cpu when EdgeCPUSet (0 is refused: a limit
	// must be above 0).
	EdgeCPU    float64
	EdgeCPUSet bool
	// Server, when not empty, replaces server.
	Server string
	// Fresh sets fresh_profiles.
	Fresh bool
}

// Override applies o to the spec, checking each value as Load does.
func (s *Spec) Override(o Overrides) error {
	if o.EdgeCPUSet {
		if err := (cpulimit.Limit{Cores: o.EdgeCPU}).Validate(); err != nil {
			return fmt.Errorf("--edge-cpu: %w", err)
		}
		s.EdgeCPU = o.EdgeCPU
	}
	if o.Server != "" {
		s.Server = o.Server
	}
	s.FreshProfiles = s.FreshProfiles || o.Fresh
	return nil
}
