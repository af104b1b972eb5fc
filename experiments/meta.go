package experiments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v3/load"

	"tracr/engine"
	"tracr/profiler"
	"tracr/runtime"
	"tracr/transport"
)

// Meta is meta.json: what a sweep ran on and with, and when.
type Meta struct {
	Name       string `json:"name"`
	Config     string `json:"config"`
	ConfigText string `json:"config_text"`
	Tracr      string `json:"tracr_version"`
	GitCommit  string `json:"git_commit"`
	ORT        string `json:"onnxruntime_version"`
	Go         string `json:"go_version"`
	// Edge is the machine that ran the heads; EdgeCPU the kernel CPU
	// limit in cores it ran under (0: none); Server the one that ran the
	// tails.
	Edge    profiler.Machine `json:"edge_machine"`
	EdgeCPU float64          `json:"edge_cpu"`
	Server  ServerMeta       `json:"server"`
	// Profiles are the profiles each model was planned from.
	Profiles []ProfileMeta `json:"profiles"`
	// Links are the grid's links, Presets every preset with its source.
	Links   []LinkMeta `json:"links"`
	Presets []LinkMeta `json:"presets"`
	Columns []string   `json:"columns"`
	Started time.Time  `json:"started"`
	Ended   *time.Time `json:"ended,omitempty"`
	// Sessions lists each invocation (the first, then each --resume).
	Sessions []Session `json:"sessions"`
	Rows     int       `json:"rows"`
	Measured int       `json:"measured"`
	Skipped  int       `json:"skipped"`
	path     string
}

// ServerMeta describes the server.
type ServerMeta struct {
	// Kind is "in-process" (the edge's own process, on loopback),
	// "process" (a tracr serve process on this machine) or "remote".
	Kind string `json:"kind"`
	// Name is the server as tracr printed it (address, devices name).
	Name string `json:"name"`
	Note string `json:"note"`
	// Machine is the server's machine, as its profile describes it (the
	// edge's until a model is planned).
	Machine profiler.Machine `json:"machine"`
}

// ProfileMeta says which profile a model was planned from on one side.
type ProfileMeta struct {
	Model string `json:"model"`
	// Side is "edge" or "server".
	Side    string    `json:"side"`
	Created time.Time `json:"created"`
	// AgeSeconds is how old the profile was when the model was planned.
	AgeSeconds float64 `json:"age_seconds"`
	Repeats    int     `json:"repeats"`
	Threads    int     `json:"threads"`
	Provider   string  `json:"provider"`
	CPULimit   float64 `json:"cpu_limit,omitempty"`
	// WholeMs is the profile's whole-model median.
	WholeMs float64           `json:"whole_ms"`
	Key     string            `json:"key,omitempty"`
	Recheck *profiler.Recheck `json:"recheck,omitempty"`
}

// LinkMeta is a link in Mbit/s and ms.
type LinkMeta struct {
	Name     string  `json:"name"`
	UpMbit   float64 `json:"up_mbit"`
	DownMbit float64 `json:"down_mbit"`
	RTTms    float64 `json:"rtt_ms"`
	Source   string  `json:"source,omitempty"`
}

// Session is one invocation of a sweep.
type Session struct {
	Start       time.Time  `json:"start"`
	End         *time.Time `json:"end,omitempty"`
	Resumed     bool       `json:"resumed"`
	NewRows     int        `json:"new_rows"`
	Interrupted bool       `json:"interrupted,omitempty"`
	Error       string     `json:"error,omitempty"`
	// LoadStart and LoadEnd are the machine's 1-minute load averages when
	// the session started and ended (-1: unknown): edge and server share
	// the machine, so other work on it shows in the timings.
	LoadStart float64 `json:"load_start"`
	LoadEnd   float64 `json:"load_end"`
}

// loadAvg is the 1-minute load average, -1 when unknown.
func loadAvg() float64 {
	a, err := load.Avg()
	if err != nil {
		return -1
	}
	return a.Load1
}

// newMeta describes this run; on resume it keeps the earlier sessions.
func newMeta(ctx context.Context, spec *Spec, opts Options, path string) (*Meta, error) {
	m := &Meta{path: path}
	if opts.Resume {
		switch b, err := os.ReadFile(path); {
		case err == nil:
			if err := json.Unmarshal(b, m); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			m.path = path
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("sweep meta: %w", err)
		}
	}
	now := time.Now()
	if m.Started.IsZero() {
		m.Started = now
	}
	m.Ended = nil
	m.Sessions = append(m.Sessions, Session{Start: now, Resumed: opts.Resume, LoadStart: loadAvg(), LoadEnd: -1})
	m.Name, m.Config, m.ConfigText = spec.Name, spec.Path, spec.Text
	m.Tracr, m.Go = opts.Tracr, goruntime.Version()
	m.GitCommit = gitCommit(ctx, filepath.Dir(spec.Path))
	v, err := engine.Version()
	if err != nil {
		return nil, err
	}
	m.ORT = v
	m.Edge = profiler.DescribeMachine(ctx, "")
	m.Server = ServerMeta{Kind: "in-process", Name: "local", Machine: m.Edge,
		Note: "tracr's server in the same process, on the same machine as the edge, over real SSH on 127.0.0.1 with the link emulated on the connection"}
	m.EdgeCPU = spec.EdgeCPU
	m.Links = nil
	for _, l := range spec.Links {
		m.Links = append(m.Links, linkMeta(l.Name, l.Link.Up, l.Link.Down, l.Link.RTT, ""))
	}
	m.Presets = nil
	for _, p := range transport.Presets() {
		m.Presets = append(m.Presets, linkMeta(p.Name, p.Link.Up, p.Link.Down, p.Link.RTT, p.Source))
	}
	m.Columns = Columns
	return m, nil
}

func linkMeta(name string, up, down float64, rtt time.Duration, src string) LinkMeta {
	return LinkMeta{Name: name, UpMbit: up / 1e6, DownMbit: down / 1e6, RTTms: ms(rtt), Source: src}
}

// connected records the server the sweep reached.
func (m *Meta) connected(srv *runtime.Server, edgeCPU float64) {
	m.Server.Name = srv.Name()
	switch {
	case !srv.Separate():
		return // as newMeta says
	case srv.Local():
		m.Server.Kind = "process"
		m.Server.Note = "tracr serve as its own process on this machine, over real SSH on 127.0.0.1 with the link emulated on the connection"
		if edgeCPU > 0 {
			m.Server.Note += fmt.Sprintf("; the edge (the sweep's process) limited to %g cores by the kernel, the server not", edgeCPU)
		}
	default:
		m.Server.Kind = "remote"
		m.Server.Note = "a tracr server on another machine, over SSH, with the link emulated on the edge's side of the connection on top of the real one"
	}
}

// planned records the profiles a model was planned from, replacing those of
// an earlier session for the same model.
func (m *Meta) planned(model string, p *runtime.Planned, now time.Time) {
	m.Profiles = slices.DeleteFunc(m.Profiles, func(pm ProfileMeta) bool { return pm.Model == model })
	for _, side := range []struct {
		name string
		p    *profiler.Profile
	}{{"edge", p.EdgeProfile}, {"server", p.ServerProfile}} {
		pr := side.p
		m.Profiles = append(m.Profiles, ProfileMeta{Model: model, Side: side.name, Created: pr.Created,
			AgeSeconds: profileAge(pr, now).Seconds(), Repeats: pr.Repeats, Threads: pr.Threads, Provider: pr.Provider,
			CPULimit: pr.CPULimit, WholeMs: ms(pr.Whole.Median), Key: pr.Key, Recheck: pr.Recheck})
	}
	if m.Server.Kind != "in-process" {
		m.Server.Machine = p.ServerProfile.Machine
	}
}

// finish closes the current session.
func (m *Meta) finish(newRows int, err error) {
	now := time.Now()
	s := &m.Sessions[len(m.Sessions)-1]
	s.End, s.NewRows, s.LoadEnd = &now, newRows, loadAvg()
	if err != nil {
		s.Error = oneLine(err.Error())
		s.Interrupted = errors.Is(err, ErrInterrupted)
		return
	}
	m.Ended = &now
}

// count records the CSV's totals.
func (m *Meta) count(rows []Row) {
	m.Rows, m.Measured, m.Skipped = len(rows), 0, 0
	for _, r := range rows {
		if r.IsMeasured() {
			m.Measured++
		} else {
			m.Skipped++
		}
	}
}

func (m *Meta) write() error { return runtime.WriteJSON(m.path, m) }

// gitCommit returns the commit the binary was built from, or else the one
// checked out where the spec lives, with "-dirty" for uncommitted changes;
// "unknown" when neither says.
func gitCommit(ctx context.Context, dir string) string {
	if info, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", ""
		for _, s := range info.Settings {
			switch {
			case s.Key == "vcs.revision":
				rev = s.Value
			case s.Key == "vcs.modified" && s.Value == "true":
				dirty = "-dirty"
			}
		}
		if rev != "" {
			return rev + dirty
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.CommandContext(ctx, "git", "-C", dir, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		rev += "-dirty"
	}
	return rev
}
