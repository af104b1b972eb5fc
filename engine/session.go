package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"tracr/tensor"
)

// Options configures a Session. The zero value runs on the CPU with ONNX
// Runtime's default threading and every graph optimisation enabled.
type Options struct {
	// Threads is the number of intra-op threads; 0 leaves ONNX Runtime's
	// default (one per physical core).
	Threads int
	// Provider is the execution provider: "" or "cpu", or "cuda", which puts
	// CUDA first and the CPU behind it for the operators CUDA lacks.
	Provider string
	// NoOptimize disables ONNX Runtime's graph optimisations.
	NoOptimize bool
	// ProfilePrefix, when set, enables ONNX Runtime's profiler; the trace is
	// written to ProfilePrefix_<local time>.json (see Session.ProfileFile).
	// Sessions created at the same time need different prefixes.
	ProfilePrefix string
}

// IOInfo describes one input or output of a model. A negative dimension in
// Shape is dynamic: its size is known only at run time.
type IOInfo struct {
	Name  string
	DType tensor.DType
	Shape tensor.Shape

	// rankUnknown marks an output whose shape neither the model nor ONNX
	// Runtime's inference knows (ONNX Runtime reports it as rank 0); it is
	// never preallocated.
	rankUnknown bool
}

// Session is one model loaded into ONNX Runtime. Run may be called from many
// goroutines at once; Close waits for the runs in flight.
type Session struct {
	// mu is held shared by Run and exclusively by Close, so Close never frees
	// the session under a running Run.
	mu      sync.RWMutex
	ort     *ort.DynamicAdvancedSession // nil once closed
	inputs  []IOInfo
	outputs []IOInfo
	// fromInput[i] is the index of the input that output i forwards, or -1
	// for an output ONNX Runtime computes.
	fromInput []int
	profile   string // trace path when profiling, else ""
}

// NewSession loads a serialized ONNX model into ONNX Runtime, initialising
// the runtime if needed. Every input and output of the model must be a tensor
// of a fixed-size element type.
func NewSession(model []byte, opts Options) (*Session, error) {
	if err := Init(); err != nil {
		return nil, err
	}
	if len(model) == 0 {
		return nil, errors.New("new session: empty model")
	}
	so, err := sessionOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("new session: %w", err)
	}
	defer so.Destroy()

	s := &Session{}
	if s.inputs, s.outputs, err = modelIO(model); err != nil {
		return nil, fmt.Errorf("new session: %w", err)
	}

	var before map[string]bool
	if opts.ProfilePrefix != "" {
		before = profiles(opts.ProfilePrefix)
	}
	// An output that is also an input (a split half that forwards a tensor)
	// is served from the input: ONNX Runtime does not copy such an output
	// into a preallocated buffer.
	ortOutputs := s.passthrough()
	if len(ortOutputs) == 0 {
		ortOutputs = names(s.outputs) // a session is still needed; Run skips it
	}
	s.ort, err = ort.NewDynamicAdvancedSessionWithONNXData(model, names(s.inputs), ortOutputs, so)
	if err != nil {
		return nil, fmt.Errorf("new session: %s", oneLine(err))
	}
	if opts.ProfilePrefix != "" {
		if s.profile, err = newProfile(opts.ProfilePrefix, before); err != nil {
			s.ort.Destroy()
			return nil, fmt.Errorf("new session: %w", err)
		}
	}
	return s, nil
}

// passthrough fills fromInput and returns the names of the outputs ONNX
// Runtime computes.
func (s *Session) passthrough() []string {
	var computed []string
	s.fromInput = make([]int, len(s.outputs))
	for i, o := range s.outputs {
		s.fromInput[i] = slices.IndexFunc(s.inputs, func(in IOInfo) bool { return in.Name == o.Name })
		if s.fromInput[i] < 0 {
			computed = append(computed, o.Name)
		}
	}
	return computed
}

// sessionOptions translates opts for ONNX Runtime. The caller destroys the
// result.
func sessionOptions(opts Options) (*ort.SessionOptions, error) {
	if opts.Threads < 0 {
		return nil, fmt.Errorf("threads must be >= 0, got %d", opts.Threads)
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	if err := configure(so, opts); err != nil {
		so.Destroy()
		return nil, err
	}
	return so, nil
}

func configure(so *ort.SessionOptions, opts Options) error {
	if opts.Threads > 0 {
		if err := so.SetIntraOpNumThreads(opts.Threads); err != nil {
			return fmt.Errorf("set %d threads: %w", opts.Threads, err)
		}
	}
	level := ort.GraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll)
	if opts.NoOptimize {
		level = ort.GraphOptimizationLevelDisableAll
	}
	if err := so.SetGraphOptimizationLevel(level); err != nil {
		return fmt.Errorf("set optimisation level: %w", err)
	}
	switch strings.ToLower(opts.Provider) {
	case "", "cpu":
	case "cuda":
		cuda, err := ort.NewCUDAProviderOptions()
		if err == nil {
			defer cuda.Destroy()
			err = so.AppendExecutionProviderCUDA(cuda)
		}
		if err != nil {
			return fmt.Errorf("CUDA execution provider unavailable: %s (the ONNX Runtime make setup fetches is CPU-only; point %s at a CUDA build of %s)", oneLine(err), LibraryEnv, ORTVersion)
		}
	default:
		return fmt.Errorf("unknown execution provider %q (want cpu or cuda)", opts.Provider)
	}
	if opts.ProfilePrefix != "" {
		if err := so.EnableProfiling(opts.ProfilePrefix); err != nil {
			return fmt.Errorf("enable profiling to %s: %w", opts.ProfilePrefix, err)
		}
	}
	return nil
}

// modelIO returns the model's inputs and outputs, refusing those Run cannot
// carry. It reads them from the model itself, and asks ONNX Runtime (which
// costs a throw-away session) only when the model leaves a type or shape to
// ONNX Runtime's inference.
func modelIO(model []byte) (inputs, outputs []IOInfo, err error) {
	inputs, outputs, complete, err := declaredIO(model)
	if err != nil {
		return nil, nil, err
	}
	if !complete {
		ins, outs, err := ort.GetInputOutputInfoWithONNXData(model)
		if err != nil {
			return nil, nil, fmt.Errorf("load model: %s", oneLine(err))
		}
		if inputs, err = ortIO("input", ins); err != nil {
			return nil, nil, err
		}
		if outputs, err = ortIO("output", outs); err != nil {
			return nil, nil, err
		}
	}
	for _, io := range [][]IOInfo{inputs, outputs} {
		for _, info := range io {
			if info.DType.Size() == 0 {
				return nil, nil, fmt.Errorf("model value %q has element type %s; engine runs fixed-size element types only", info.Name, info.DType)
			}
		}
	}
	return inputs, outputs, nil
}

// ortIO converts what ONNX Runtime reports about a model's inputs or outputs.
func ortIO(kind string, infos []ort.InputOutputInfo) ([]IOInfo, error) {
	out := make([]IOInfo, len(infos))
	for i, in := range infos {
		if in.OrtValueType != ort.ONNXTypeTensor {
			return nil, fmt.Errorf("model %s %q is a %s; engine runs dense tensors only", kind, in.Name, in.OrtValueType)
		}
		// Both enumerations are ONNX's TensorProto.DataType.
		out[i] = IOInfo{Name: in.Name, DType: tensor.DType(in.DataType), Shape: tensor.Shape(in.Dimensions).Clone(),
			rankUnknown: kind == "output" && len(in.Dimensions) == 0}
	}
	return out, nil
}

func names(infos []IOInfo) []string {
	n := make([]string, len(infos))
	for i, in := range infos {
		n[i] = in.Name
	}
	return n
}

// profiles returns the paths of the profiles ONNX Runtime has written with
// prefix: prefix_<local time>.json.
func profiles(prefix string) map[string]bool {
	dir, base := filepath.Split(prefix)
	if dir == "" {
		dir = "."
	}
	entries, _ := os.ReadDir(dir) // a missing folder holds no profiles
	found := map[string]bool{}
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, base+"_") && strings.HasSuffix(n, ".json") {
			found[filepath.Join(dir, n)] = true
		}
	}
	return found
}

// newProfile returns the profile that appeared with prefix since before was
// listed. ONNX Runtime creates it with the session and names it from the
// clock, so the name cannot be known in advance.
func newProfile(prefix string, before map[string]bool) (string, error) {
	var fresh []string
	for p := range profiles(prefix) {
		if !before[p] {
			fresh = append(fresh, p)
		}
	}
	switch len(fresh) {
	case 1:
		return fresh[0], nil
	case 0:
		return "", fmt.Errorf("ONNX Runtime created no profile %s_<time>.json", prefix)
	}
	return "", fmt.Errorf("several sessions profile to %s_<time>.json at once; give each its own prefix", prefix)
}

// oneLine flattens a multi-line ONNX Runtime message into one line.
func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

// Inputs returns the model's inputs in the model's order. The caller must not
// modify the result.
func (s *Session) Inputs() []IOInfo { return s.inputs }

// Outputs returns the model's outputs in the order Run returns them. The
// caller must not modify the result.
func (s *Session) Outputs() []IOInfo { return s.outputs }

// Close releases the session, after waiting for the runs in flight. When
// profiling was enabled, this is when ONNX Runtime completes the trace.
// Closing a closed session does nothing.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ort == nil {
		return nil
	}
	err := s.ort.Destroy()
	s.ort = nil
	if err != nil {
		return fmt.Errorf("close session: %w", err)
	}
	return nil
}

// ProfileFile returns the path of the session's ONNX Runtime profile, a
// Chrome-trace JSON file. onnxruntime_go does not expose ending a profile
// early, and ONNX Runtime completes the file only when the session is
// released, so ProfileFile fails until Close has been called. It also fails
// when the session was created without Options.ProfilePrefix.
func (s *Session) ProfileFile() (string, error) {
	if s.profile == "" {
		return "", errors.New("profile file: profiling was not enabled (set Options.ProfilePrefix)")
	}
	s.mu.RLock()
	open := s.ort != nil
	s.mu.RUnlock()
	if open {
		return "", fmt.Errorf("profile file: %s is complete only after the session is closed; call Close first", s.profile)
	}
	return s.profile, nil
}
