// Package runtime executes a plan: the edge pipeline (read, pre-process,
// head, encode, send) with requests in flight, the server's tail and
// post-processing, cut switching driven by the planner's re-planner,
// fallback to edge-only when the server is lost, and one record per
// request. The server side is TailHandler, the transport.Handler that tracr
// serve runs; Connect is the one way every command reaches its server.
package runtime

import (
	"fmt"
	"path/filepath"
	"strings"

	"tracr/cpulimit"
)

// Config is a `tracr run` configuration file (TOML). Paths inside it are
// relative to the file's folder.
type Config struct {
	// Model is a zoo name or an ONNX file.
	Model string `toml:"model"`
	// ImgSize is the input size (0 = the model's default; an ONNX file
	// with a fixed input size has only that one).
	ImgSize int `toml:"img_size"`
	// InputShape sizes dynamic inputs other than the image one (which
	// img_size sizes): entries "NAME=1x3x640x640" (engine.InputShapes).
	InputShape []string `toml:"input_shape"`
	// Task ("classify" or "detect") and Labels ("imagenet", "coco" or
	// "none") say how to pre- and post-process an ONNX file; see
	// ModelTask. Zoo models know their own.
	Task   string `toml:"task"`
	Labels string `toml:"labels"`
	// Server names a server in the devices file, or "local" (or empty)
	// for the embedded loopback server.
	Server string `toml:"server"`
	// Devices is the devices file (default config/devices.toml beside the
	// config file's folder, when it exists).
	Devices string        `toml:"devices"`
	Dataset DatasetConfig `toml:"dataset"`
	Edge    EdgeConfig    `toml:"edge"`
	Codec   CodecConfig   `toml:"codec"`
	Output  OutputConfig  `toml:"output"`
	Run     RunConfig     `toml:"run"`
	Post    PostConfig    `toml:"post"`
	dir     string        // the config file's folder
}

// DatasetConfig chooses the inputs: an image folder, or synthetic images.
type DatasetConfig struct {
	Path      string `toml:"path"`
	Labels    string `toml:"labels"`
	Synthetic int    `toml:"synthetic"` // number of synthetic images when Path is empty
	Width     int    `toml:"width"`
	Height    int    `toml:"height"`
	Seed      uint64 `toml:"seed"`
	Limit     int    `toml:"limit"` // at most this many inputs (0 = all)
}

// EdgeConfig sets ONNX Runtime on the edge, and optionally emulates a
// slower edge device.
type EdgeConfig struct {
	Threads  int    `toml:"threads"`
	Provider string `toml:"provider"`
	// Slowdown emulates an edge device this many times slower than the
	// machine tracr runs on (0 or 1 = off): after each edge compute of
	// duration d the edge sleeps (Slowdown-1)*d, and planning prices edge
	// times at Slowdown times the measured ones. See MaxEdgeSlowdown.
	Slowdown float64 `toml:"slowdown"`
	// CPULimit limits the edge, this whole process, to that many cores
	// (e.g. 0.1) with the kernel's CPU-bandwidth control (0 = off): a
	// slower CPU for everything the edge does, pre-processing, codecs and
	// SSH included. The local server then runs as its own tracr serve
	// process, unlimited. Needs a writable cgroup (root, or $TRACR_CGROUP).
	CPULimit float64 `toml:"cpu_limit"`
}

// MaxEdgeSlowdown is the largest edge slowdown a run accepts.
const MaxEdgeSlowdown = 1000

// CheckEdgeSlowdown returns an error when f is not an edge slowdown: a
// number from 1 to MaxEdgeSlowdown, or 0 for off.
func CheckEdgeSlowdown(f float64) error {
	if f != 0 && !(f >= 1 && f <= MaxEdgeSlowdown) {
		return fmt.Errorf("%g: want a factor from 1 (off) to %d", f, MaxEdgeSlowdown)
	}
	return nil
}

// CodecConfig is the codec policy: which encodings may carry crossing
// tensors. Lossy ones (fp16, int8, jpeg) only when AllowLossy.
type CodecConfig struct {
	AllowLossy bool     `toml:"allow_lossy"`
	Codecs     []string `toml:"codecs"`
}

// OutputConfig says where records go.
type OutputConfig struct {
	Dir      string `toml:"dir"`
	Overlays bool   `toml:"overlays"`
}

// RunConfig tunes the run.
type RunConfig struct {
	// InFlight bounds the requests in flight, from edge compute to result (default 3).
	InFlight int `toml:"in_flight"`
	// Cut forces a cut ID (-1 or unset = plan it).
	Cut      *int `toml:"cut"`
	Adaptive bool `toml:"adaptive"`
	// Rescue, when false, turns off an adaptive run's rescue of requests
	// whose answer is late (default on; see ExecOptions.NoRescue).
	Rescue    *bool  `toml:"rescue"`
	Link      string `toml:"link"`
	LinkTrace string `toml:"link_trace"`
	Objective string `toml:"objective"`
}

// PostConfig tunes post-processing on the server.
type PostConfig struct {
	TopK int     `toml:"top_k"`
	Conf float64 `toml:"conf"`
	IoU  float64 `toml:"iou"`
}

// LoadConfig reads and checks a run configuration.
func LoadConfig(path string) (*Config, error) {
	var c Config
	if err := LoadTOML(path, &c); err != nil {
		return nil, err
	}
	c.dir = filepath.Dir(path)
	if err := c.check(path); err != nil {
		return nil, err
	}
	return &c, nil
}

// DefaultConfig is the embedded default: the built-in YOLOv8n on the
// sample images through the loopback server.
func DefaultConfig() *Config {
	return &Config{Model: "yolov8n", Server: "local", Dataset: DatasetConfig{Path: "data/samples"},
		Output: OutputConfig{Dir: "results/run"}, dir: "."}
}

func (c *Config) check(path string) error {
	var errs []string
	if c.Model == "" {
		errs = append(errs, `"model" is required (a zoo name such as yolov8n, or an .onnx file)`)
	}
	if c.Dataset.Path != "" && c.Dataset.Synthetic > 0 {
		errs = append(errs, `[dataset] sets both "path" and "synthetic"; choose one`)
	}
	if c.Dataset.Path == "" && c.Dataset.Synthetic <= 0 {
		errs = append(errs, `[dataset] needs "path" (an image folder) or "synthetic" (a count > 0)`)
	}
	if c.Edge.Threads < 0 {
		errs = append(errs, `[edge] "threads" must be >= 0`)
	}
	if p := c.Edge.Provider; p != "" && p != "cpu" && p != "cuda" {
		errs = append(errs, fmt.Sprintf(`[edge] "provider" %q: want cpu or cuda`, p))
	}
	if err := CheckEdgeSlowdown(c.Edge.Slowdown); err != nil {
		errs = append(errs, fmt.Sprintf(`[edge] "slowdown" %v`, err))
	}
	if c.Edge.CPULimit != 0 {
		if err := (cpulimit.Limit{Cores: c.Edge.CPULimit}).Validate(); err != nil {
			errs = append(errs, fmt.Sprintf(`[edge] "cpu_limit" %v`, err))
		}
	}
	if c.Run.InFlight < 0 {
		errs = append(errs, `[run] "in_flight" must be >= 0`)
	}
	if c.Run.Link != "" && c.Run.LinkTrace != "" {
		errs = append(errs, `[run] sets both "link" and "link_trace"; choose one`)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s: %s", path, strings.Join(errs, "; "))
	}
	return nil
}

// Resolve returns a path from the config made absolute against the config
// file's folder.
func (c *Config) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}
