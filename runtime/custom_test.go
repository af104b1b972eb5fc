package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tracr/graph"
	"tracr/zoo"
)

// TestCustomSpec describes real ONNX files nobody on the team wrote for
// tracr run, and refuses the ones it cannot feed images to, saying why.
func TestCustomSpec(t *testing.T) {
	dir := filepath.Join("..", "..", "shared", "models")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("shared models absent (%v); the ../shared folder beside the repo holds them", err)
	}
	classify, detect := ModelTask{Task: zoo.TaskClassify}, ModelTask{Task: zoo.TaskDetect}
	tests := []struct {
		file string
		task ModelTask
		size int
		want string // an error's text; "" = described
	}{
		{"mobilenetv2-12-int8.onnx", classify, 0, ""},
		{"mobilenetv2-12-int8.onnx", classify, 160, "fixed at 224x224; img_size 160 does not fit it"},
		{"mobilenetv2-12-int8.onnx", detect, 0, "the detector post-processing decodes YOLOv8's"},
		{"silero_vad_v5.onnx", classify, 0, "want one image input, the model has"},
		{"face_detection_front_128x128_barracuda.onnx", classify, 0, "want [1, 3, H, W] (batch 1, 3 channels first: NCHW)"},
		{"ultraface_version-RFB-320.onnx", detect, 0, "is 240x320; tracr run feeds square images"},
	}
	for _, tt := range tests {
		t.Run(tt.file+" "+tt.task.Task, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			m, err := graph.Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			spec, err := customSpec(m, tt.file, tt.task, tt.size)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.file) {
					t.Fatalf("err = %v, want one naming the file and saying %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if spec.ImgSize != 224 || spec.InputName != "input" || spec.Task != zoo.TaskClassify || spec.Input.String() != "[1,3,224,224]" {
				t.Errorf("spec = %+v", spec)
			}
		})
	}
}

// TestModelTaskPost: the labels a task's post-processing names.
func TestModelTaskPost(t *testing.T) {
	for _, tt := range []struct {
		task ModelTask
		want string
	}{
		{ModelTask{Task: zoo.TaskClassify}, "imagenet"},
		{ModelTask{Task: zoo.TaskDetect}, "coco"},
		{ModelTask{Task: zoo.TaskClassify, Labels: "none"}, ""},
		{ModelTask{Task: zoo.TaskDetect, Labels: "imagenet"}, "imagenet"},
	} {
		if got := tt.task.post(); got.Labels != tt.want || got.Task != tt.task.Task {
			t.Errorf("%+v: post %+v, want labels %q", tt.task, got, tt.want)
		}
	}
}
