// Package zoo provides the models tracr runs and the data around them.
//
// The built-in models are AlexNet, ResNet-18, MobileNetV2 (torchvision
// layouts) and YOLOv8n/s (Ultralytics layout), built here in Go as ONNX
// graphs node for node like their PyTorch exports, with BatchNorm folded into
// conv biases and deterministic synthetic weights: the same name, size and
// builder version always give the same bytes. The weights are not trained
// (pretrained weights cannot be fetched where tracr is built); they are
// scaled so activations stay finite and informative, which is all that
// timing, partitioning and transport need: each layer is normalised, as
// batch norm would, on a synthetic photo-like probe image. Names lists the
// models, Build and Describe make them, Resolve turns a zoo name or an .onnx
// path into model bytes, and Cache keeps generated models on disk.
//
// The package also holds what runs around a model: datasets (an image folder
// or synthetic images), pre-processing (resize and normalise, letterbox),
// post-processing (top-k, YOLO decoding and NMS), class labels and overlays.
package zoo

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"tracr/tensor"
)

// builderVersion identifies the graphs and weights the builders make. Bump
// it whenever a layout, a name or a weight changes, so cached models built by
// an older tracr are not used.
const builderVersion = 1

// The tasks a zoo model performs.
const (
	TaskClassify = "classify" // ImageNet classification: "logits" [1, 1000]
	TaskDetect   = "detect"   // COCO detection: "output0" [1, 84, N]
)

// Output spreads of the synthetic weights (see builder): each is the
// standard deviation, on the probe image, of a layer's output before its
// activation; every other layer has 1. The values were chosen by running the
// models on the probe and on other images (TestModelsRun checks the result).
const (
	// siluGain is the spread before every SiLU. Well above 1, SiLU acts
	// like ReLU, whose output scales with its input, so the gap between
	// the probe and another image stays as it is along the network; near
	// 1, SiLU's curvature widens it layer by layer (by up to a sixth), and
	// after YOLO's forty-odd layers the class scores saturate on most
	// images.
	siluGain = 4.0
	// residualGain scales the last conv of a residual branch, like a
	// small BN gamma there, so activations grow slowly along the trunk.
	residualGain = 0.5
	// logitGain is the spread of the classifier logits.
	logitGain = 2.0
	// boxLogitGain is the spread of the DFL bin logits: peaked
	// distributions, so boxes differ in size as a trained model's do.
	boxLogitGain = 3.0
	// clsBias is the mean of the YOLO class logits. With unit spread
	// about it on the probe, a photo-like image at 640x640 has some tens
	// of anchors (of 8400) above the usual confidence threshold of 0.25,
	// as a trained model has, not thousands for NMS to wade through.
	clsBias = -6.0
)

// Spec describes one built zoo model.
type Spec struct {
	Name       string       `json:"name"`        // canonical zoo name, e.g. "yolov8n"
	Task       string       `json:"task"`        // TaskClassify or TaskDetect
	ImgSize    int          `json:"img_size"`    // side of the square input, in pixels
	FixedSize  bool         `json:"fixed_size"`  // the builder accepts only this ImgSize
	InputName  string       `json:"input_name"`  // "input" or "images"
	Input      tensor.Shape `json:"input"`       // float32 NCHW, batch 1
	OutputName string       `json:"output_name"` // "logits" or "output0"
	Output     tensor.Shape `json:"output"`      // [1, 1000] or [1, 84, N]
	Params     int64        `json:"params"`      // elements of all initialisers
	GFLOPs     float64      `json:"gflops"`      // 2 * multiply-accumulates of Conv and Gemm / 1e9
	Nodes      int          `json:"nodes"`       // nodes in the graph
	Synthetic  bool         `json:"synthetic"`   // the weights are generated, not trained
	Version    int          `json:"version"`     // builder version
}

// entry is one model of the zoo.
type entry struct {
	name  string
	task  string
	size  int  // default input side
	fixed bool // only size is accepted
	probe int  // side of the probe image the weights are normalised on
	about string
	build func(b *builder, size int) (input, output string)
}

// registry is the zoo, in the order Names lists it.
var registry = []entry{
	{"alexnet", TaskClassify, alexNetSize, true, alexNetSize, "torchvision AlexNet", buildAlexNet},
	{"resnet18", TaskClassify, 224, false, 96, "torchvision ResNet-18", buildResNet18},
	{"mobilenetv2", TaskClassify, 224, false, 96, "torchvision MobileNetV2 (width 1.0)", buildMobileNetV2},
	{"yolov8n", TaskDetect, 640, false, 96, "Ultralytics YOLOv8n", buildYOLOv8(yolov8nScale)},
	{"yolov8s", TaskDetect, 640, false, 96, "Ultralytics YOLOv8s", buildYOLOv8(yolov8sScale)},
}

// aliases maps other accepted names to canonical ones.
var aliases = map[string]string{"yolov8": "yolov8n"}

// Size limits for the models that take several sizes: the side must be a
// multiple of 32 (the largest stride) and at most maxImgSize, which keeps a
// typo from asking for a model no machine can run.
const (
	sizeStep   = 32
	maxImgSize = 4096
)

// Names returns the canonical names of the zoo models.
func Names() []string {
	names := make([]string, len(registry))
	for i, e := range registry {
		names[i] = e.name
	}
	return names
}

// Aliases returns the other accepted names, each with the canonical name it
// stands for.
func Aliases() map[string]string {
	return maps.Clone(aliases)
}

// validNames lists every accepted name for error messages.
func validNames() string {
	names := Names()
	for a, c := range aliases {
		names = append(names, a+" (= "+c+")")
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// lookup finds a zoo model by name, case-insensitively, aliases included.
func lookup(name string) (entry, bool) {
	n := strings.ToLower(strings.TrimSpace(name))
	if c, ok := aliases[n]; ok {
		n = c
	}
	for _, e := range registry {
		if e.name == n {
			return e, true
		}
	}
	return entry{}, false
}

// entryFor returns the model and the input side to build it at (0 means its
// default).
func entryFor(name string, imgSize int) (entry, int, error) {
	e, ok := lookup(name)
	if !ok {
		return entry{}, 0, fmt.Errorf("unknown zoo model %q (valid: %s)", name, validNames())
	}
	if imgSize == 0 {
		return e, e.size, nil
	}
	if e.fixed && imgSize != e.size {
		return entry{}, 0, fmt.Errorf("zoo model %s takes only %dx%d input, not %d", e.name, e.size, e.size, imgSize)
	}
	if imgSize < sizeStep || imgSize > maxImgSize || imgSize%sizeStep != 0 {
		return entry{}, 0, fmt.Errorf("zoo model %s: image size %d is not a multiple of %d between %d and %d", e.name, imgSize, sizeStep, sizeStep, maxImgSize)
	}
	return e, imgSize, nil
}

// Build returns the serialised ONNX model of the named zoo model at input
// side imgSize (0: the model's default, 224 or 640) and its Spec. The bytes
// depend only on the canonical name, the size and the builder version.
func Build(name string, imgSize int) ([]byte, Spec, error) {
	e, size, err := entryFor(name, imgSize)
	if err != nil {
		return nil, Spec{}, err
	}
	b := newBuilder(e.name, false, e.probe)
	spec := construct(b, e, size)
	m, err := b.modelProto(docString(e, size), []string{spec.InputName}, []string{spec.OutputName}, [][2]string{
		{"tracr.zoo.model", e.name},
		{"tracr.zoo.task", e.task},
		{"tracr.zoo.img_size", strconv.Itoa(size)},
		{"tracr.zoo.builder_version", strconv.Itoa(builderVersion)},
		{"tracr.synthetic_weights", "true"},
	})
	if err != nil {
		return nil, Spec{}, err
	}
	data, err := seal(m)
	if err != nil {
		return nil, Spec{}, fmt.Errorf("build %s: %w", e.name, err)
	}
	return data, spec, nil
}

// Describe returns the Spec Build would return, without generating weights;
// it is cheap enough to call for every model when listing the zoo.
func Describe(name string, imgSize int) (Spec, error) {
	e, size, err := entryFor(name, imgSize)
	if err != nil {
		return Spec{}, err
	}
	b := newBuilder(e.name, true, e.probe)
	spec := construct(b, e, size)
	if b.err != nil {
		return Spec{}, b.err
	}
	return spec, nil
}

// construct runs e's builder and summarises the graph it made.
func construct(b *builder, e entry, size int) Spec {
	in, out := e.build(b, size)
	return Spec{
		Name:       e.name,
		Task:       e.task,
		ImgSize:    size,
		FixedSize:  e.fixed,
		InputName:  in,
		Input:      b.shapes[in].Clone(),
		OutputName: out,
		Output:     b.shapes[out].Clone(),
		Params:     b.params,
		GFLOPs:     2 * float64(b.macs) / 1e9,
		Nodes:      len(b.nodes),
		Synthetic:  true,
		Version:    builderVersion,
	}
}

func docString(e entry, size int) string {
	return fmt.Sprintf("tracr zoo %s at %dx%d: %s layout with deterministic synthetic weights "+
		"(not trained: outputs are meaningless; use for timing, partitioning and transport). Builder v%d.",
		e.name, size, size, e.about, builderVersion)
}

// Resolve returns the model named by nameOrPath: a zoo model (by name, any
// case) at its default input size, or an ONNX file. See ResolveSize.
func Resolve(ctx context.Context, nameOrPath string) (model []byte, source string, synthetic bool, err error) {
	return ResolveSize(ctx, nameOrPath, 0)
}

// ResolveSize returns the model named by nameOrPath and where it came from.
//
// A zoo name gives the model at input side imgSize (0: its default), read
// from the DefaultCache or built and stored there; source is
// "zoo:<name>@<size>" and synthetic is true. If the cache cannot be used the
// model is built in memory and source says why it was not cached.
//
// Anything that contains a path separator or ends in ".onnx", or is not a zoo
// name, is read as a file (imgSize does not apply); source is its absolute
// path, and synthetic is true only for a model the zoo wrote (a cached
// file). The file is not parsed here.
func ResolveSize(ctx context.Context, nameOrPath string, imgSize int) (model []byte, source string, synthetic bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, "", false, fmt.Errorf("resolve model %s: %w", nameOrPath, err)
	}
	if LooksLikePath(nameOrPath) {
		return readModelFile(nameOrPath)
	}
	if _, ok := lookup(nameOrPath); ok {
		return resolveZoo(ctx, nameOrPath, imgSize)
	}
	if _, statErr := os.Stat(nameOrPath); statErr == nil {
		return readModelFile(nameOrPath)
	} else if !errors.Is(statErr, fs.ErrNotExist) {
		return nil, "", false, fmt.Errorf("model %s: %w", nameOrPath, statErr)
	}
	return nil, "", false, fmt.Errorf("unknown model %q: not a zoo model (%s) and no such file", nameOrPath, validNames())
}

// LooksLikePath reports whether a model name is a file path rather than a
// zoo name: it has a path separator or ends in .onnx.
func LooksLikePath(s string) bool {
	return strings.ContainsRune(s, '/') || strings.ContainsRune(s, filepath.Separator) ||
		strings.HasSuffix(strings.ToLower(s), ".onnx")
}

// resolveZoo loads a zoo model through the default cache, falling back to an
// in-memory build when there is no usable cache.
func resolveZoo(ctx context.Context, name string, imgSize int) ([]byte, string, bool, error) {
	e, size, err := entryFor(name, imgSize)
	if err != nil {
		return nil, "", false, err
	}
	source := fmt.Sprintf("zoo:%s@%d", e.name, size)
	c, cacheErr := DefaultCache()
	if cacheErr == nil {
		model, err := c.Load(ctx, e.name, size)
		if err == nil {
			return model, source, true, nil
		}
		if ctx.Err() != nil {
			return nil, "", false, err
		}
		cacheErr = err
	}
	model, _, err := Build(e.name, size)
	if err != nil {
		return nil, "", false, err
	}
	return model, source + " (not cached: " + cacheErr.Error() + ")", true, nil
}

// readModelFile reads an ONNX file named by the user.
func readModelFile(path string) ([]byte, string, bool, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, "", false, fmt.Errorf("load model %s: %w", path, err)
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, "", false, fmt.Errorf("load model %s: %w", path, err)
	}
	if len(data) == 0 {
		return nil, "", false, fmt.Errorf("load model %s: file is empty", abs)
	}
	return data, abs, checkSeal(data) == nil, nil
}
