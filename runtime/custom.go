package runtime

import (
	"fmt"
	"slices"

	"tracr/graph"
	"tracr/tensor"
	"tracr/zoo"
)

// ModelTask says how `tracr run` pre- and post-processes a model from an
// ONNX file, which, unlike a zoo model, does not say so itself.
type ModelTask struct {
	// Task is zoo.TaskClassify (resize and centre-crop, ImageNet
	// normalisation; top-k of the first output) or zoo.TaskDetect (YOLO
	// letterbox, RGB in 0..1; the first output decoded as YOLOv8's
	// [1, 4+classes, boxes] and NMS). Empty: the model is not run on
	// images (tracr plan still works, on random inputs).
	Task string
	// Labels names the classes: "imagenet", "coco" or "none"; empty is
	// imagenet for a classifier and coco for a detector.
	Labels string
}

// Check returns an error naming the field that is not one of its values.
func (t ModelTask) Check() error {
	if t.Task != "" && t.Task != zoo.TaskClassify && t.Task != zoo.TaskDetect {
		return fmt.Errorf("task %q: want %s or %s", t.Task, zoo.TaskClassify, zoo.TaskDetect)
	}
	if !slices.Contains([]string{"", "imagenet", "coco", "none"}, t.Labels) {
		return fmt.Errorf("labels %q: want imagenet, coco or none", t.Labels)
	}
	return nil
}

// labelSet returns the class names in force: Labels, or the task's
// default; "" for none.
func (t ModelTask) labelSet() string {
	switch t.Labels {
	case "none":
		return ""
	case "":
		return zoo.DefaultPost(t.Task).Labels
	}
	return t.Labels
}

// post returns the post-processing of the task with its default
// thresholds and the chosen class names.
func (t ModelTask) post() zoo.PostSpec {
	p := zoo.DefaultPost(t.Task)
	p.Labels = t.labelSet()
	return p
}

// defaultCustomSize is the input side of an ONNX file whose image size is
// not fixed and was not given: the usual one for each task.
func defaultCustomSize(task string) int {
	if task == zoo.TaskDetect {
		return 640
	}
	return 224
}

// customSpec describes the model m from source for task: one float32
// image input [1 or dynamic, 3, H, W] with H = W (fixed, or size, or the
// task's default) and, for a detector, a first output shaped like
// YOLOv8's. Each refusal says what the model has instead.
func customSpec(m *graph.Model, source string, task ModelTask, size int) (zoo.Spec, error) {
	fail := func(format string, args ...any) (zoo.Spec, error) {
		return zoo.Spec{}, fmt.Errorf("model %s (task %s): %s", source, task.Task, fmt.Sprintf(format, args...))
	}
	ins, outs := m.Inputs(), m.Outputs()
	if len(ins) != 1 {
		return fail("want one image input, the model has %d (%v)", len(ins), ins)
	}
	if len(outs) == 0 {
		return fail("the model has no outputs")
	}
	in, ok := m.Tensor(ins[0])
	if !ok || in.DType != tensor.Float32 || len(in.Shape) != 4 {
		return fail("input %q is %s %v; want float32 [1, 3, H, W] (NCHW)", ins[0], in.DType, in.Shape)
	}
	s := in.Shape
	if (s[0] != 1 && s[0] != -1) || (s[1] != 3 && s[1] != -1) {
		return fail("input %q is %v; want [1, 3, H, W] (batch 1, 3 channels first: NCHW)", ins[0], s)
	}
	h, w := s[2], s[3]
	switch {
	case h > 0 && w > 0 && h != w:
		return fail("input %q is %dx%d; tracr run feeds square images", ins[0], h, w)
	case h > 0 && size > 0 && int64(size) != h:
		return fail("input %q is fixed at %dx%d; img_size %d does not fit it", ins[0], h, h, size)
	case h > 0:
		size = int(h)
	case w > 0:
		size = int(w)
	case size <= 0:
		size = defaultCustomSize(task.Task)
	}
	out, _ := m.Tensor(outs[0])
	// YOLOv8's [1, 4+classes, boxes]: more than 4 rows, fewer than boxes
	// (a dynamic dimension, -1, fits).
	yolo := false
	if len(out.Shape) == 3 {
		rows, boxes := out.Shape[1], out.Shape[2]
		yolo = rows <= 0 || (rows > 4 && (boxes <= 0 || rows < boxes))
	}
	if task.Task == zoo.TaskDetect && !yolo {
		return fail("output %q is %v; the detector post-processing decodes YOLOv8's [1, 4+classes, boxes]", outs[0], out.Shape)
	}
	return zoo.Spec{Name: source, Task: task.Task, ImgSize: size, FixedSize: h > 0, InputName: ins[0],
		Input: tensor.Shape{1, 3, int64(size), int64(size)}, OutputName: outs[0], Output: out.Shape.Clone(), Nodes: len(m.Nodes())}, nil
}
