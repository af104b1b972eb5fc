package profiler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"tracr/engine"
	"tracr/graph"
)

// Version is the version of the Profile JSON format that Save writes and
// Load reads.
const Version = 1

// Profile is what one profiling run measured on one machine: per-segment
// timings summed into the edge and server cost of every candidate cut, the
// fusion error of those sums, the per-node table of ONNX Runtime's own
// profiler, and the system stats sampled meanwhile. It is saved as versioned
// JSON, with times in float milliseconds.
type Profile struct {
	Version int       `json:"version"`
	Created time.Time `json:"created"`
	Machine Machine   `json:"machine"`
	// ORTVersion is the version the loaded ONNX Runtime library reports.
	ORTVersion string `json:"ort_version"`
	// Provider is "cpu" or "cuda".
	Provider string `json:"provider"`
	// Threads is the intra-op thread count every session used; 0 is ONNX
	// Runtime's default (one per physical core).
	Threads int `json:"threads"`
	// Warmup runs preceded the Repeats timed runs of every measurement.
	Warmup  int `json:"warmup"`
	Repeats int `json:"repeats"`
	// CPULimit is the kernel CPU limit in cores the profiled process ran
	// under, 0 for none (see Options.CPULimit).
	CPULimit float64   `json:"cpu_limit,omitempty"`
	Model    ModelInfo `json:"model"`
	// Key is the cache key the profile was stored under (see CacheKey).
	Key string `json:"key,omitempty"`
	// Recheck is what Cached found when it checked a cached profile
	// against fresh whole-model runs before using it; when the check
	// failed and the model was profiled again, the new profile carries it
	// with Stale set, saying why. Nil for a profile not from the cache.
	Recheck *Recheck `json:"recheck,omitempty"`

	// Whole is the full model timed as one session.
	Whole Timing `json:"whole"`
	// Cuts holds edge(c) and server(c) for every candidate cut, ascending.
	Cuts []CutTiming `json:"cuts"`
	// Segments holds the timings of the consecutive segments between
	// candidate cuts, in order.
	Segments []Segment `json:"segments"`
	// Checks compares segment sums with whole head and tail sessions timed
	// directly, the whole model first.
	Checks []Check `json:"checks"`
	// FusionError is the median of |Check.Error| over Checks: how far
	// summed segments typically are from what a deployed half costs.
	FusionError float64 `json:"fusion_error"`

	// Nodes is the per-node table: every compute node of the model in cut
	// numbering, then the operators ONNX Runtime ran that map to none (ID
	// -1). NodesOptimized says whether it was measured with graph
	// optimisations on (it is off by default, so every ONNX node appears).
	Nodes          []NodeTiming `json:"nodes"`
	NodesOptimized bool         `json:"nodes_optimized"`

	Stats Stats `json:"stats"`
}

// ModelInfo identifies the profiled model.
type ModelInfo struct {
	// Hash is the hex SHA-256 of the model's bytes.
	Hash string `json:"hash"`
	// Source says where the model came from (a zoo name or a file path).
	Source string `json:"source"`
	// Nodes is the number of compute nodes, which is also the last cut ID.
	Nodes int `json:"nodes"`
	// InputShapes is the shape of every input the profile was timed at
	// (engine.InputShapes.String).
	InputShapes string `json:"input_shapes,omitempty"`
}

// Timing summarises repeated runs of one measurement.
type Timing struct {
	Median, P90 time.Duration
	// Runs is how many timed runs the summary is over.
	Runs int
}

type timingJSON struct {
	Median float64 `json:"median_ms"`
	P90    float64 `json:"p90_ms"`
	Runs   int     `json:"runs"`
}

// MarshalJSON writes the timing in float milliseconds.
func (t Timing) MarshalJSON() ([]byte, error) {
	return json.Marshal(timingJSON{Median: millis(t.Median), P90: millis(t.P90), Runs: t.Runs})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (t *Timing) UnmarshalJSON(b []byte) error {
	var j timingJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*t = Timing{Median: fromMillis(j.Median), P90: fromMillis(j.P90), Runs: j.Runs}
	return nil
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fromMillis(ms float64) time.Duration {
	return time.Duration(math.Round(ms * float64(time.Millisecond)))
}

// CutTiming is the cost model's input for one cut: edge(c), the head's
// nodes 0..c-1, and server(c), the tail's nodes c..N-1, each summed over the
// segments they span. Their P90 is the sum of the segments' p90s, an upper
// estimate: segments are timed separately, so no run pairs them.
type CutTiming struct {
	ID int `json:"id"`
	// Bytes is the size of the tensors crossing the cut, -1 if unknown.
	Bytes  int64  `json:"bytes"`
	Edge   Timing `json:"edge"`
	Server Timing `json:"server"`
	// EdgeDirect and ServerDirect are the head and tail timed as single
	// sessions, for the cuts Run checked (nil elsewhere). Where present they
	// are what a deployed half costs; the sums can be far off (see
	// Profile.FusionError).
	EdgeDirect   *Timing `json:"edge_direct,omitempty"`
	ServerDirect *Timing `json:"server_direct,omitempty"`
}

// Segment is the timing of nodes From..To-1 run as one session.
type Segment struct {
	From int    `json:"from"`
	To   int    `json:"to"`
	Time Timing `json:"time"`
}

// Check compares one half's summed segments with the half timed directly as
// one session (Part "whole" is the full model, summed over every segment).
type Check struct {
	Cut int `json:"cut"`
	// Part is "head", "tail" or "whole".
	Part string `json:"part"`
	// Direct is the half timed as one session; Summed is the segment sum
	// (edge(c) for a head, server(c) for a tail).
	Direct Timing `json:"direct"`
	Summed Timing `json:"summed"`
	// Error is (Summed - Direct) / Direct of the medians.
	Error float64 `json:"error"`
}

// NodeTiming is one row of the per-node table: one operator as ONNX
// Runtime's profiler saw it.
type NodeTiming struct {
	// ID is the node's tracr ID (its position in cut numbering), or -1 for
	// an operator that is not one of the model's compute nodes (a constant
	// producer tracr does not number, or a node ONNX Runtime's optimiser
	// made).
	ID       int    `json:"id"`
	Name     string `json:"name"`
	OpType   string `json:"op_type"`
	Provider string `json:"provider"`
	// Time is over the timed runs; Runs is 0 when the operator never ran
	// (ONNX Runtime removed it).
	Time        Timing        `json:"time"`
	Outputs     []TensorShape `json:"outputs,omitempty"`
	OutputBytes int64         `json:"output_bytes"`
}

// TensorShape is the element type and shape of one operator output.
type TensorShape struct {
	DType string  `json:"dtype"`
	Shape []int64 `json:"shape"`
}

// Save writes the profile to path as indented JSON, atomically.
func (p *Profile) Save(path string) error {
	b, err := p.JSON()
	if err != nil {
		return fmt.Errorf("save profile %s: %w", path, err)
	}
	return graph.WriteFileAtomic(path, b)
}

// JSON returns the profile as indented JSON.
func (p *Profile) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode profile: %w", err)
	}
	return append(b, '\n'), nil
}

// Load reads a profile that Save wrote. It refuses other format versions.
func Load(path string) (*Profile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load profile: %w", err)
	}
	p, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("load profile %s: %w", path, err)
	}
	return p, nil
}

// Parse decodes a profile from JSON. It refuses other format versions.
func Parse(b []byte) (*Profile, error) {
	var v struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("not a profile: %w", err)
	}
	if v.Version == nil {
		return nil, errors.New("not a profile: no version")
	}
	if *v.Version != Version {
		return nil, fmt.Errorf("profile format version %d; this tracr reads version %d (profile again)", *v.Version, Version)
	}
	p := &Profile{}
	if err := json.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("decode profile: %w", err)
	}
	return p, nil
}

// Cut returns the timing of candidate cut id.
func (p *Profile) Cut(id int) (CutTiming, bool) {
	for _, c := range p.Cuts {
		if c.ID == id {
			return c, true
		}
	}
	return CutTiming{}, false
}

// HashModel returns the hex SHA-256 of a model's bytes, as in
// ModelInfo.Hash.
func HashModel(model []byte) string {
	sum := sha256.Sum256(model)
	return hex.EncodeToString(sum[:])
}

// CacheKey names a cached profile: a hash of everything that changes its
// figures: the model's hash, the provider, threads, repeats, warm-up runs,
// passes, candidate cuts, checks, seed, the input shapes given, whether
// the per-node table was optimised, the CPU limit, the ONNX Runtime version and the machine's ID.
// opts must be normalised.
func CacheKey(modelHash string, opts Options, ortVersion, machineID string) string {
	h := sha256.New()
	// v5: a limited edge is held to its share every window (cpulimit.Group.Steady)
	// and its runs are priced by CPU time at the whole model's measured rate
	// (pricer). v6: dynamic inputs are probed and timed at realistic sizes
	// (engine.Prepare), or at the ones given.
	fields := []string{
		"v6", modelHash, opts.Provider, strconv.Itoa(opts.Threads), strconv.Itoa(opts.Repeats),
		strconv.Itoa(opts.Warmup), strconv.Itoa(opts.Passes), fmt.Sprint(opts.Cuts), strconv.Itoa(opts.Checks),
		strconv.FormatUint(opts.Seed, 10), opts.InputShapes.String(), strconv.FormatBool(opts.NodesOptimized),
		strconv.FormatFloat(opts.CPULimit, 'g', -1, 64), ortVersion, machineID,
	}
	for _, s := range fields {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// DefaultCacheDir returns where Cached keeps profiles:
// <user cache dir>/tracr/profiles.
func DefaultCacheDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("profile cache: %w", err)
	}
	return filepath.Join(dir, "tracr", "profiles"), nil
}

// Cached returns the profile cached in dir ("" for DefaultCacheDir) under
// CacheKey for this model, these options and this machine, with hit true;
// or, when there is none (or it cannot be read, or opts.Fresh), profiles
// the model with Run, stores the result there and returns it with hit
// false. A cached profile is trusted only after Recheck: when the whole
// model, timed again now, disagrees with it by more than its own spread
// allows, the model is profiled again and the new profile's Recheck says
// why.
func Cached(ctx context.Context, dir string, model []byte, source string, opts Options) (p *Profile, hit bool, err error) {
	if dir == "" {
		if dir, err = DefaultCacheDir(); err != nil {
			return nil, false, err
		}
	}
	if opts, err = opts.normalise(); err != nil {
		return nil, false, err
	}
	ortVersion, err := engine.Version()
	if err != nil {
		return nil, false, err
	}
	machine := DescribeMachine(ctx, opts.NVMLLibrary)
	key := CacheKey(HashModel(model), opts, ortVersion, machine.ID())
	path := filepath.Join(dir, key+".json")
	// A missing, damaged or outdated entry is measured again and replaced.
	var stale *Recheck
	if p, err := Load(path); err == nil && !opts.Fresh && p.Key == key && p.Model.Hash == HashModel(model) {
		rc, err := RecheckProfile(ctx, p, model, opts)
		if err != nil {
			return nil, false, err
		}
		if !rc.Stale {
			p.Recheck = &rc
			return p, true, nil
		}
		stale = &rc
	}
	if p, err = Run(ctx, model, source, opts); err != nil {
		return nil, false, err
	}
	p.Key = key
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, false, fmt.Errorf("profile cache: %w", err)
	}
	if err := p.Save(path); err != nil {
		return nil, false, fmt.Errorf("profile cache: %w", err)
	}
	p.Recheck = stale
	return p, false, nil
}
