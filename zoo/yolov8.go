package zoo

import (
	"fmt"
	"math"

	"tracr/tensor"
)

// yoloScale is one row of Ultralytics' yolov8.yaml scales table.
type yoloScale struct {
	depth, width float64
	maxChannels  int
}

var (
	yolov8nScale = yoloScale{depth: 0.33, width: 0.25, maxChannels: 1024}
	yolov8sScale = yoloScale{depth: 0.33, width: 0.50, maxChannels: 1024}
)

// channels is Ultralytics' make_divisible(min(c, max_channels) * width, 8).
func (s yoloScale) channels(c int) int {
	v := float64(min(c, s.maxChannels)) * s.width
	return int(math.Ceil(v/8)) * 8
}

// repeats is Ultralytics' max(round(n * depth), 1).
func (s yoloScale) repeats(n int) int {
	return max(int(math.Round(float64(n)*s.depth)), 1)
}

// YOLO detection constants: COCO classes, DFL bins, and the strides of the
// P3, P4 and P5 outputs.
const (
	yoloClasses = 80
	yoloRegMax  = 16
)

var yoloStrides = [...]int{8, 16, 32}

// buildYOLOv8 builds the Ultralytics YOLOv8 detection model (yolov8.yaml at
// the given scale) the way Ultralytics exports it to ONNX: Conv = conv with
// BN folded + SiLU (as x*Sigmoid(x)), C2f, SPPF, a top-down and bottom-up
// neck, and a Detect head whose DFL decoding, anchors and strides are in the
// graph, so output0 is [1, 84, N]: cx, cy, w, h in input pixels, then 80
// class scores after Sigmoid. Node names follow Ultralytics' module paths
// ("model.2.m.0.cv1.conv").
func buildYOLOv8(s yoloScale) func(b *builder, size int) (string, string) {
	return func(b *builder, size int) (string, string) {
		c, n := s.channels, s.repeats
		x := b.input("images", size, false)
		x0 := yconv(b, "model.0", x, c(64), 3, 2)
		x1 := yconv(b, "model.1", x0, c(128), 3, 2)
		x2 := c2f(b, "model.2", x1, c(128), n(3), true)
		x3 := yconv(b, "model.3", x2, c(256), 3, 2)
		x4 := c2f(b, "model.4", x3, c(256), n(6), true)
		x5 := yconv(b, "model.5", x4, c(512), 3, 2)
		x6 := c2f(b, "model.6", x5, c(512), n(6), true)
		x7 := yconv(b, "model.7", x6, c(1024), 3, 2)
		x8 := c2f(b, "model.8", x7, c(1024), n(3), true)
		x9 := sppf(b, "model.9", x8, c(1024), 5)

		x10 := b.upsample2x("model.10", x9)
		x11 := b.concat("model.11", 1, x10, x6)
		x12 := c2f(b, "model.12", x11, c(512), n(3), false)
		x13 := b.upsample2x("model.13", x12)
		x14 := b.concat("model.14", 1, x13, x4)
		x15 := c2f(b, "model.15", x14, c(256), n(3), false)
		x16 := yconv(b, "model.16", x15, c(256), 3, 2)
		x17 := b.concat("model.17", 1, x16, x12)
		x18 := c2f(b, "model.18", x17, c(512), n(3), false)
		x19 := yconv(b, "model.19", x18, c(512), 3, 2)
		x20 := b.concat("model.20", 1, x19, x9)
		x21 := c2f(b, "model.21", x20, c(1024), n(3), false)
		out := detect(b, "model.22", size, x15, x18, x21)
		return "images", out
	}
}

// yconv is Ultralytics' Conv: Conv2d(k, stride, pad k/2, no bias) + BN
// (folded into a bias) + SiLU. Nodes name.conv, name.act.
func yconv(b *builder, name, x string, out, k, stride int) string {
	return yconvGain(b, name, x, out, k, stride, siluGain)
}

// yconvGain is yconv with the conv's output spread on the probe set to gain.
func yconvGain(b *builder, name, x string, out, k, stride int, gain float64) string {
	x = b.conv(name+".conv", x, out, convCfg{k: k, stride: stride, pad: k / 2, gain: gain})
	return b.silu(name+".act", x)
}

// c2f is Ultralytics' C2f: cv1 to 2c channels, split in halves, n
// Bottlenecks chained on the last piece (each output kept), concat of all
// 2+n pieces, cv2 to out channels.
func c2f(b *builder, name, x string, out, n int, shortcut bool) string {
	hidden := out / 2
	y := yconv(b, name+".cv1", x, 2*hidden, 1, 1)
	parts := b.split(name+".split", y, 1, int64(hidden), int64(hidden))
	for i := range n {
		parts = append(parts, bottleneck(b, fmt.Sprintf("%s.m.%d", name, i), parts[len(parts)-1], hidden, shortcut))
	}
	y = b.concat(name+".concat", 1, parts...)
	return yconv(b, name+".cv2", y, out, 1, 1)
}

// bottleneck is Ultralytics' Bottleneck with k=(3, 3), e=1.0: two 3x3 Convs
// and, with shortcut, a residual Add.
func bottleneck(b *builder, name, x string, c int, shortcut bool) string {
	gain := siluGain
	if shortcut {
		gain = residualGain * siluGain
	}
	y := yconv(b, name+".cv1", x, c, 3, 1)
	y = yconvGain(b, name+".cv2", y, c, 3, 1, gain)
	if !shortcut {
		return y
	}
	return b.add(name+".add", x, y)
}

// sppf is Ultralytics' SPPF: cv1 halves the channels, three chained
// MaxPool(k, stride 1, pad k/2) (nodes name.m.0-2), concat of the four, cv2.
func sppf(b *builder, name, x string, out, k int) string {
	in := b.shape(x)
	if b.err != nil {
		return name
	}
	hidden := int(in[1]) / 2
	y := yconv(b, name+".cv1", x, hidden, 1, 1)
	parts := []string{y}
	for i := range 3 {
		parts = append(parts, b.maxPool(fmt.Sprintf("%s.m.%d", name, i), parts[i], k, 1, k/2))
	}
	y = b.concat(name+".concat", 1, parts...)
	return yconv(b, name+".cv2", y, out, 1, 1)
}

// detect is Ultralytics' Detect head for 80 classes with DFL (reg_max 16),
// including the export-time decoding. It returns "output0".
func detect(b *builder, name string, size int, levels ...string) string {
	if len(levels) != len(yoloStrides) {
		b.failf("detect %s: %d levels, want %d", name, len(levels), len(yoloStrides))
		return "output0"
	}
	ch0 := b.shape(levels[0])
	if b.err != nil {
		return "output0"
	}
	c2 := max(16, int(ch0[1])/4, 4*yoloRegMax)
	c3 := max(int(ch0[1]), min(yoloClasses, 100))
	var flat []string
	var total int64
	for i, x := range levels {
		s := b.shape(x)
		if b.err != nil {
			return "output0"
		}
		box := fmt.Sprintf("%s.cv2.%d", name, i)
		bx := yconv(b, box+".0", x, c2, 3, 1)
		bx = yconv(b, box+".1", bx, c2, 3, 1)
		bx = b.conv(box+".2", bx, 4*yoloRegMax, convCfg{k: 1, stride: 1, gain: boxLogitGain})
		cls := fmt.Sprintf("%s.cv3.%d", name, i)
		cx := yconv(b, cls+".0", x, c3, 3, 1)
		cx = yconv(b, cls+".1", cx, c3, 3, 1)
		cx = b.conv(cls+".2", cx, yoloClasses, convCfg{k: 1, stride: 1, biasMean: clsBias})
		y := b.concat(fmt.Sprintf("%s.cat.%d", name, i), 1, bx, cx)
		hw := s[2] * s[3]
		total += hw
		flat = append(flat, b.reshape(fmt.Sprintf("%s.flat.%d", name, i), y, tensor.Shape{1, 4*yoloRegMax + yoloClasses, hw}))
	}
	all := b.concat(name+".cat", 2, flat...)
	parts := b.split(name+".split", all, 1, 4*yoloRegMax, yoloClasses)
	dist := dfl(b, name+".dfl", parts[0], total)

	anchors, strides := anchorGrid(size)
	anc := b.constF32(name+".anchors", tensor.Shape{1, 2, total}, anchors)
	str := b.constF32(name+".strides", tensor.Shape{1, 1, total}, strides)
	ltrb := b.split(name+".dist", dist, 1, 2, 2)
	x1y1 := b.binary("Sub", name+".x1y1", anc, ltrb[0])
	x2y2 := b.binary("Add", name+".x2y2", anc, ltrb[1])
	sum := b.binary("Add", name+".xy_sum", x1y1, x2y2)
	half := b.constF32(name+".half", tensor.Shape{}, []float32{0.5})
	cxy := b.binary("Mul", name+".cxy", sum, half)
	wh := b.binary("Sub", name+".wh", x2y2, x1y1)
	xywh := b.concat(name+".xywh", 1, cxy, wh)
	pix := b.binary("Mul", name+".xywh_px", xywh, str)
	scores := b.unary("Sigmoid", name+".scores", parts[1], nil)
	out := b.concat(name+".output", 1, pix, scores)
	return b.rename(out, "output0")
}

// dfl is Ultralytics' DFL: the 4x16 bin logits per anchor become a softmax
// distribution per side whose expectation (a fixed 1x1 conv with weights
// 0..15) is the side's distance in grid cells. Output [1, 4, n].
func dfl(b *builder, name, box string, n int64) string {
	x := b.reshape(name+".reshape", box, tensor.Shape{1, 4, yoloRegMax, n})
	x = b.transpose(name+".transpose", x, 0, 2, 1, 3)
	x = b.unary("Softmax", name+".softmax", x, nil, attrInt("axis", 1))
	bins := make([]float32, yoloRegMax)
	for i := range bins {
		bins[i] = float32(i)
	}
	w := b.constF32(name+".conv.weight", tensor.Shape{1, yoloRegMax, 1, 1}, bins)
	x = b.convWith(name+".conv", x, w, "", convCfg{k: 1, stride: 1}, nil)
	return b.reshape(name+".out", x, tensor.Shape{1, 4, n})
}

// anchorGrid returns Ultralytics' make_anchors for a size x size input:
// the centre (x+0.5, y+0.5) of every cell of every level in grid units, row
// by row, as a [2, N] array (all x, then all y), and each anchor's stride.
func anchorGrid(size int) (anchors, strides []float32) {
	var xs, ys []float32
	for _, s := range yoloStrides {
		g := size / s
		for y := range g {
			for x := range g {
				xs = append(xs, float32(x)+0.5)
				ys = append(ys, float32(y)+0.5)
				strides = append(strides, float32(s))
			}
		}
	}
	return append(xs, ys...), strides
}
