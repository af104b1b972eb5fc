package zoo

import (
	"math"
	"strings"
	"testing"

	"tracr/tensor"
)

func TestIoU(t *testing.T) {
	sq := Box{X1: 0, Y1: 0, X2: 10, Y2: 10}
	tests := []struct {
		name string
		a, b Box
		want float64
	}{
		{"identical", sq, sq, 1},
		{"half shifted", sq, Box{X1: 5, X2: 15, Y2: 10}, 50.0 / 150},
		{"corner overlap", sq, Box{X1: 5, Y1: 5, X2: 15, Y2: 15}, 25.0 / 175},
		{"contained", sq, Box{X1: 2, Y1: 2, X2: 4, Y2: 4}, 4.0 / 100},
		{"touching edges", sq, Box{X1: 10, X2: 20, Y2: 10}, 0},
		{"disjoint", sq, Box{X1: 20, Y1: 20, X2: 30, Y2: 30}, 0},
		{"degenerate", sq, Box{X1: 3, Y1: 3, X2: 3, Y2: 8}, 0},
	}
	for _, tc := range tests {
		if got := IoU(tc.a, tc.b); !near(got, tc.want, 1e-12) {
			t.Errorf("%s: IoU = %v, want %v", tc.name, got, tc.want)
		}
		if got := IoU(tc.b, tc.a); !near(got, tc.want, 1e-12) {
			t.Errorf("%s: IoU reversed = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestTopK(t *testing.T) {
	labels := []string{"a", "b", "c"}
	// softmax(1,2,3) = e^{-2,-1,0} / (e^-2 + e^-1 + 1)
	//               = 0.090031, 0.244728, 0.665241
	// softmax(5,5,1) = 1/(2+e^-4) = 0.495463 for each 5
	// softmax(0,0,0,9) = e^9/(3+e^9) = 0.999630 for the 9
	tests := []struct {
		name   string
		logits []float32
		k      int
		want   []Class
	}{
		{"order", []float32{1, 2, 3}, 2, []Class{{2, "c", 0.665241}, {1, "b", 0.244728}}},
		{"large logits stay finite", []float32{1001, 1002, 1003}, 3, []Class{{2, "c", 0.665241}, {1, "b", 0.244728}, {0, "a", 0.090031}}},
		{"very negative", []float32{-1003, -1002, -1001}, 1, []Class{{2, "c", 0.665241}}},
		{"ties by lower index", []float32{5, 5, 1}, 2, []Class{{0, "a", 0.495463}, {1, "b", 0.495463}}},
		{"k above len", []float32{0, 0}, 5, []Class{{0, "a", 0.5}, {1, "b", 0.5}}},
		{"label past the list", []float32{0, 0, 0, 9}, 1, []Class{{3, "class 3", 0.999630}}},
		{"NaN is improbable", []float32{float32(math.NaN()), 0, 0}, 3, []Class{{1, "b", 0.5}, {2, "c", 0.5}, {0, "a", 0}}},
		{"+Inf wins", []float32{0, float32(math.Inf(1)), 3}, 2, []Class{{1, "b", 1}, {0, "a", 0}}},
		{"k zero", []float32{1, 2}, 0, nil},
		{"empty", nil, 3, nil},
	}
	for _, tc := range tests {
		got := TopK(tc.logits, tc.k, labels)
		if len(got) != len(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			continue
		}
		for i := range got {
			g, w := got[i], tc.want[i]
			if g.Index != w.Index || g.Label != w.Label || !near(float64(g.Prob), float64(w.Prob), 1e-5) {
				t.Errorf("%s: [%d] = %+v, want %+v", tc.name, i, g, w)
			}
		}
	}
}

func TestLabels(t *testing.T) {
	in, co := ImageNetLabels(), COCOLabels()
	if len(in) != 1000 || len(co) != 80 {
		t.Fatalf("%d ImageNet and %d COCO labels, want 1000 and 80", len(in), len(co))
	}
	for _, c := range []struct {
		list []string
		i    int
		want string
	}{
		{in, 0, "tench"}, {in, 1, "goldfish"}, {in, 2, "great white shark"}, {in, 281, "tabby"},
		{in, 967, "espresso"}, {in, 999, "toilet tissue"},
		{co, 0, "person"}, {co, 1, "bicycle"}, {co, 2, "car"}, {co, 15, "cat"}, {co, 41, "cup"}, {co, 79, "toothbrush"},
	} {
		if c.list[c.i] != c.want {
			t.Errorf("label %d = %q, want %q", c.i, c.list[c.i], c.want)
		}
	}
	for _, l := range append(in, co...) {
		if l == "" || strings.TrimSpace(l) != l || strings.Contains(l, "_") {
			t.Errorf("malformed label %q", l)
		}
	}
	in[0] = "changed"
	if ImageNetLabels()[0] != "tench" {
		t.Error("ImageNetLabels returns shared storage")
	}
}

// anchor is one column of a hand-built YOLO output.
type anchor struct {
	cx, cy, w, h float32
	scores       map[int]float32 // class -> score; others 0
}

// yoloOut builds a float32 [1, 4+nc, len(anchors)] tensor.
func yoloOut(nc int, anchors []anchor) tensor.Tensor {
	n := len(anchors)
	v := make([]float32, (4+nc)*n)
	for a, an := range anchors {
		v[0*n+a], v[1*n+a], v[2*n+a], v[3*n+a] = an.cx, an.cy, an.w, an.h
		for c, s := range an.scores {
			v[(4+c)*n+a] = s
		}
	}
	return tensor.FromFloat32("output0", tensor.Shape{1, int64(4 + nc), int64(n)}, v)
}

// lb640 is 640x480 letterboxed into 320: input = source/2 + (0, 40).
var lb640 = Letterbox{Scale: 0.5, PadX: 0, PadY: 40, SrcW: 640, SrcH: 480, Size: 320}

func TestDecodeNMS(t *testing.T) {
	labels := []string{"zero", "one", "two"}
	// A 40x40 input box centred at (100,100), input (80,80)-(120,120), is
	// source (160,80)-(240,160) after subtracting the pad and doubling; IoU with the same box moved
	// 4 px right is 36*40/(2*1600-36*40) = 0.818.
	a := anchor{100, 100, 40, 40, map[int]float32{0: 0.9}}
	aShifted := anchor{104, 100, 40, 40, map[int]float32{0: 0.8}}
	srcA := Box{X1: 160, Y1: 80, X2: 240, Y2: 160, Class: 0, Label: "zero", Score: 0.9}
	tests := []struct {
		name      string
		anchors   []anchor
		conf, iou float64
		want      []Box
	}{
		{"same class overlap: lower suppressed", []anchor{aShifted, a}, 0.25, 0.5, []Box{srcA}},
		{"different classes: both kept", []anchor{
			a, {104, 100, 40, 40, map[int]float32{1: 0.8, 0: 0.1}},
		}, 0.25, 0.5, []Box{srcA, {X1: 168, Y1: 80, X2: 248, Y2: 160, Class: 1, Label: "one", Score: 0.8}}},
		{"overlap under the threshold: both kept", []anchor{aShifted, a}, 0.25, 0.9, []Box{
			srcA, {X1: 168, Y1: 80, X2: 248, Y2: 160, Class: 0, Label: "zero", Score: 0.8}}},
		{"IoU equal to the threshold does not suppress", []anchor{
			// x 0..30 vs 10..40: IoU 20/40 = 0.5 exactly.
			{15, 100, 30, 10, map[int]float32{2: 0.7}}, {25, 100, 30, 10, map[int]float32{2: 0.6}},
		}, 0.25, 0.5, []Box{
			{X1: 0, Y1: 110, X2: 60, Y2: 130, Class: 2, Label: "two", Score: 0.7},
			{X1: 20, Y1: 110, X2: 80, Y2: 130, Class: 2, Label: "two", Score: 0.6}}},
		{"best class per anchor", []anchor{{100, 100, 40, 40, map[int]float32{0: 0.3, 1: 0.6, 2: 0.5}}}, 0.25, 0.5, []Box{
			{X1: 160, Y1: 80, X2: 240, Y2: 160, Class: 1, Label: "one", Score: 0.6}}},
		{"conf threshold is inclusive", []anchor{
			{50, 100, 10, 10, map[int]float32{0: 0.24}}, {150, 100, 10, 10, map[int]float32{0: 0.25}},
		}, 0.25, 0.5, []Box{{X1: 290, Y1: 110, X2: 310, Y2: 130, Class: 0, Label: "zero", Score: 0.25}}},
		{"clamped at the borders", []anchor{
			// input (-5,35)-(15,55) -> source (-10,-10)-(30,30) -> clamped.
			{5, 45, 20, 20, map[int]float32{0: 0.5}},
			// input (313,273)-(323,283) -> source (626,466)-(646,486).
			{318, 278, 10, 10, map[int]float32{1: 0.4}},
		}, 0.25, 0.5, []Box{
			{X1: 0, Y1: 0, X2: 30, Y2: 30, Class: 0, Label: "zero", Score: 0.5},
			{X1: 626, Y1: 466, X2: 640, Y2: 480, Class: 1, Label: "one", Score: 0.4}}},
		{"wholly in the border: dropped", []anchor{{100, 10, 20, 10, map[int]float32{0: 0.9}}}, 0.25, 0.5, nil},
		{"degenerate boxes: dropped", []anchor{
			{100, 100, 0, 10, map[int]float32{0: 0.9}}, {100, 100, -4, 10, map[int]float32{0: 0.9}},
			{float32(math.NaN()), 100, 4, 10, map[int]float32{0: 0.9}},
		}, 0.25, 0.5, nil},
		{"sorted by score", []anchor{
			{20, 60, 10, 10, map[int]float32{0: 0.3}}, {60, 60, 10, 10, map[int]float32{0: 0.9}}, {100, 60, 10, 10, map[int]float32{2: 0.6}},
		}, 0.25, 0.5, []Box{
			{X1: 110, Y1: 30, X2: 130, Y2: 50, Class: 0, Label: "zero", Score: 0.9},
			{X1: 190, Y1: 30, X2: 210, Y2: 50, Class: 2, Label: "two", Score: 0.6},
			{X1: 30, Y1: 30, X2: 50, Y2: 50, Class: 0, Label: "zero", Score: 0.3}}},
	}
	for _, tc := range tests {
		got, err := DecodeYOLO(yoloOut(3, tc.anchors), lb640, tc.conf, tc.iou, labels)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: %d boxes %+v, want %d %+v", tc.name, len(got), got, len(tc.want), tc.want)
			continue
		}
		for i := range got {
			g, w := got[i], tc.want[i]
			if !near(g.X1, w.X1, 1e-4) || !near(g.Y1, w.Y1, 1e-4) || !near(g.X2, w.X2, 1e-4) || !near(g.Y2, w.Y2, 1e-4) ||
				g.Class != w.Class || g.Label != w.Label || !near(float64(g.Score), float64(w.Score), 1e-6) {
				t.Errorf("%s: box %d = %+v, want %+v", tc.name, i, g, w)
			}
		}
	}
}

func TestDecodeMaxDetections(t *testing.T) {
	// 400 small disjoint boxes on a 20x20 grid of 16 px cells.
	var anchors []anchor
	for i := 0; i < 400; i++ {
		cx, cy := float32(8+16*(i%20)), float32(8+16*(i/20))
		anchors = append(anchors, anchor{cx, cy, 8, 8, map[int]float32{0: 0.3 + float32(i)/1000}})
	}
	lb := Letterbox{Scale: 1, SrcW: 320, SrcH: 320, Size: 320}
	got, err := DecodeYOLO(yoloOut(1, anchors), lb, 0.25, 0.45, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != MaxDetections {
		t.Fatalf("%d boxes, want %d", len(got), MaxDetections)
	}
	// The best 300 survive: scores 0.699 down to 0.400.
	if !near(float64(got[0].Score), 0.699, 1e-6) || !near(float64(got[299].Score), 0.400, 1e-6) || got[0].Label != "class 0" {
		t.Errorf("first %+v, last %+v", got[0], got[299])
	}
}

func TestDecodeErrors(t *testing.T) {
	good := yoloOut(2, []anchor{{10, 10, 4, 4, map[int]float32{0: 0.9}}})
	short := good
	short.Data = short.Data[:len(short.Data)-4]
	i64 := good
	i64.DType = tensor.Int64
	tests := []struct {
		name      string
		out       tensor.Tensor
		lb        Letterbox
		conf, iou float64
		want      string
	}{
		{"dtype", i64, lb640, 0.25, 0.5, "dtype int64, want float32"},
		{"rank", tensor.FromFloat32("o", tensor.Shape{6, 1}, make([]float32, 6)), lb640, 0.25, 0.5, "shape [6,1], want [1,4+classes,anchors]"},
		{"no classes", tensor.FromFloat32("o", tensor.Shape{1, 4, 2}, make([]float32, 8)), lb640, 0.25, 0.5, "shape [1,4,2]"},
		{"batch", tensor.FromFloat32("o", tensor.Shape{2, 6, 1}, make([]float32, 12)), lb640, 0.25, 0.5, "shape [2,6,1]"},
		{"short data", short, lb640, 0.25, 0.5, "needs 24 bytes, has 20"},
		{"conf", good, lb640, 1.5, 0.5, "confidence threshold 1.5 outside [0,1]"},
		{"conf NaN", good, lb640, math.NaN(), 0.5, "confidence threshold NaN"},
		{"iou", good, lb640, 0.25, -0.1, "IoU threshold -0.1 outside [0,1]"},
		{"letterbox", good, Letterbox{}, 0.25, 0.5, "does not describe an image"},
	}
	for _, tc := range tests {
		_, err := DecodeYOLO(tc.out, tc.lb, tc.conf, tc.iou, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error = %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
	// Zero anchors is a valid, empty output.
	if got, err := DecodeYOLO(tensor.FromFloat32("o", tensor.Shape{1, 84, 0}, nil), lb640, 0.25, 0.5, nil); err != nil || len(got) != 0 {
		t.Errorf("no anchors: %v, %v", got, err)
	}
}

func BenchmarkDecodeYOLO(b *testing.B) {
	// A YOLOv8 640 output: 80 classes, 8400 anchors, every tenth one above
	// the threshold, scattered so that NMS has real work to do.
	const n = 8400
	var anchors []anchor
	rng := splitmix{state: 3}
	for i := 0; i < n; i++ {
		s := float32(rng.float() * 0.2)
		if i%10 == 0 {
			s = 0.3 + float32(rng.float()*0.7)
		}
		anchors = append(anchors, anchor{float32(rng.float() * 640), float32(rng.float() * 640),
			float32(10 + rng.float()*100), float32(10 + rng.float()*100), map[int]float32{int(rng.next() % 80): s}})
	}
	out := yoloOut(80, anchors)
	lb := Letterbox{Scale: 1, SrcW: 640, SrcH: 640, Size: 640}
	for b.Loop() {
		if _, err := DecodeYOLO(out, lb, 0.25, 0.45, nil); err != nil {
			b.Fatal(err)
		}
	}
}
