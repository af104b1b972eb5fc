package zoo

import (
	"encoding/json"
	"fmt"
	"strings"

	"tracr/tensor"
)

// PostSpec says how to turn a model's outputs into a result: top-k classes
// for a classifier, decoded boxes after NMS for a detector. It travels with
// each request so the server can post-process (the raw detection tensor
// never goes back over the link).
type PostSpec struct {
	Task string `json:"task"` // TaskClassify or TaskDetect
	// TopK is the number of classes kept (default 5).
	TopK int `json:"top_k,omitempty"`
	// Conf and IoU are the detector's thresholds (defaults 0.25 and 0.45).
	Conf float64 `json:"conf,omitempty"`
	IoU  float64 `json:"iou,omitempty"`
	// Labels names the class list: "imagenet", "coco" or "" (indices only).
	Labels string `json:"labels,omitempty"`
	// Letterbox maps detections back to source pixels.
	Letterbox *Letterbox `json:"letterbox,omitempty"`
}

// Result is a post-processed answer.
type Result struct {
	Classes []Class `json:"classes,omitempty"`
	Boxes   []Box   `json:"boxes,omitempty"`
}

// DefaultPost returns the post-processing for a zoo task with its default
// thresholds and class names.
func DefaultPost(task string) PostSpec {
	if task == TaskDetect {
		return PostSpec{Task: TaskDetect, Conf: 0.25, IoU: 0.45, Labels: "coco"}
	}
	return PostSpec{Task: TaskClassify, TopK: 5, Labels: "imagenet"}
}

func (s PostSpec) labels() []string {
	switch s.Labels {
	case "imagenet":
		return ImageNetLabels()
	case "coco":
		return COCOLabels()
	}
	return nil
}

// PostProcess applies spec to the model's outputs (the first output is the
// logits or the detection tensor).
func PostProcess(spec PostSpec, outs []tensor.Tensor) (Result, error) {
	if len(outs) == 0 {
		return Result{}, fmt.Errorf("post-process: no outputs")
	}
	switch spec.Task {
	case TaskClassify:
		logits, err := outs[0].Float32s()
		if err != nil {
			return Result{}, fmt.Errorf("post-process: %w", err)
		}
		k := spec.TopK
		if k <= 0 {
			k = 5
		}
		return Result{Classes: TopK(logits, k, spec.labels())}, nil
	case TaskDetect:
		if spec.Letterbox == nil {
			return Result{}, fmt.Errorf("post-process: a detector needs the request's letterbox")
		}
		conf, iou := spec.Conf, spec.IoU
		if conf <= 0 {
			conf = 0.25
		}
		if iou <= 0 {
			iou = 0.45
		}
		boxes, err := DecodeYOLO(outs[0], *spec.Letterbox, conf, iou, spec.labels())
		if err != nil {
			return Result{}, fmt.Errorf("post-process: %w", err)
		}
		return Result{Boxes: boxes}, nil
	}
	return Result{}, fmt.Errorf("post-process: unknown task %q", spec.Task)
}

// MarshalPost and UnmarshalPost carry a PostSpec on the wire.
func MarshalPost(s PostSpec) ([]byte, error) { return json.Marshal(s) }

// UnmarshalPost decodes a PostSpec, rejecting unknown fields.
func UnmarshalPost(b []byte) (PostSpec, error) {
	var s PostSpec
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return PostSpec{}, fmt.Errorf("post spec: %w", err)
	}
	return s, nil
}

// Summary is a one-line description for records: "tench 0.91" or
// "3 boxes: person 0.87, dog 0.66, ...".
func (r Result) Summary() string {
	if len(r.Classes) > 0 {
		c := r.Classes[0]
		return fmt.Sprintf("%s %.2f", name(c.Label, c.Index), c.Prob)
	}
	if len(r.Boxes) == 0 {
		return "0 boxes"
	}
	parts := make([]string, 0, 4)
	for i, b := range r.Boxes {
		if i == 3 {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.2f", name(b.Label, b.Class), b.Score))
	}
	return fmt.Sprintf("%d boxes: %s", len(r.Boxes), strings.Join(parts, ", "))
}

func name(label string, index int) string {
	if label != "" {
		return label
	}
	return fmt.Sprintf("class %d", index)
}
