package zoo

import (
	"strings"
	"testing"

	"tracr/tensor"
)

func TestPostProcess(t *testing.T) {
	logits := tensor.FromFloat32("logits", tensor.Shape{1, 4}, []float32{0, 3, 1, 0})
	r, err := PostProcess(PostSpec{Task: TaskClassify, TopK: 2}, []tensor.Tensor{logits})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Classes) != 2 || r.Classes[0].Index != 1 || r.Classes[1].Index != 2 {
		t.Errorf("classes = %+v", r.Classes)
	}
	if got := r.Summary(); !strings.HasPrefix(got, "class 1 0.") {
		t.Errorf("summary %q", got)
	}
	// A detector: one anchor of [1, 4+2, 1] well over the threshold.
	det := tensor.FromFloat32("output0", tensor.Shape{1, 6, 1}, []float32{32, 32, 16, 16, 0.9, 0.1})
	lb := Letterbox{Scale: 1, SrcW: 64, SrcH: 64, Size: 64}
	r, err = PostProcess(PostSpec{Task: TaskDetect, Letterbox: &lb}, []tensor.Tensor{det})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Boxes) != 1 || r.Boxes[0].X1 != 24 || r.Boxes[0].X2 != 40 || r.Summary() != "1 boxes: class 0 0.90" {
		t.Errorf("boxes = %+v, summary %q", r.Boxes, r.Summary())
	}
	if (Result{}).Summary() != "0 boxes" {
		t.Errorf("empty summary %q", (Result{}).Summary())
	}
	for _, bad := range []PostSpec{{Task: TaskDetect}, {Task: "segment"}} {
		if _, err := PostProcess(bad, []tensor.Tensor{det}); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestPostSpecWire(t *testing.T) {
	b, err := MarshalPost(DefaultPost(TaskDetect))
	if err != nil {
		t.Fatal(err)
	}
	s, err := UnmarshalPost(b)
	if err != nil || s.Labels != "coco" || s.Conf != 0.25 {
		t.Errorf("round trip: %+v, %v", s, err)
	}
	if _, err := UnmarshalPost([]byte(`{"task":"classify","evil":1}`)); err == nil {
		t.Error("unknown field accepted")
	}
}
