package zoo

import (
	"encoding/binary"
	"image"
	"image/draw"
	"math"

	"tracr/tensor"
)

// LetterboxPad is the grey level (0-255) of the letterbox border, as in
// Ultralytics' YOLOv8 pre-processing.
const LetterboxPad = 114

// ClassifyInput turns img into the input of an ImageNet classifier: a
// float32 NCHW tensor [1,3,size,size]. It resizes the image so that its
// shorter side is size*256/224 pixels (bilinear, anti-aliased when
// shrinking, as torchvision's Resize on a PIL image), crops the centre
// size x size square, scales values to [0,1] and normalises each channel
// with the ImageNet mean (0.485,0.456,0.406) and std (0.229,0.224,0.225).
// Alpha is ignored. The tensor is unnamed: the caller sets Name to the
// model's input. An empty image gives an all-zero (mean-grey) tensor and a
// non-positive size an empty [1,3,0,0] one.
func ClassifyInput(img image.Image, size int) tensor.Tensor {
	size = max(size, 0)
	t := newCHW(size, size)
	if size == 0 || img == nil || img.Bounds().Empty() {
		return t
	}
	src := rgbView(img)
	short := math.Round(float64(size) * 256 / 224)
	s := short / float64(min(src.w, src.h))
	newW := max(int(math.Round(float64(src.w)*s)), size)
	newH := max(int(math.Round(float64(src.h)*s)), size)
	// Per-axis scales, as a resize to exactly newW x newH has.
	sx, sy := float64(newW)/float64(src.w), float64(newH)/float64(src.h)
	tx := triangleTaps(size, (newW-size)/2, sx, src.w)
	ty := triangleTaps(size, (newH-size)/2, sy, src.h)
	// ImageNet channel statistics (RGB, values in [0,1]) that the
	// torchvision classifiers were trained with.
	imagenetMean := [3]float32{0.485, 0.456, 0.406}
	imagenetStd := [3]float32{0.229, 0.224, 0.225}
	var gain, bias [3]float32
	for c := range gain {
		gain[c] = 1 / (255 * imagenetStd[c])
		bias[c] = -imagenetMean[c] / imagenetStd[c]
	}
	resample(src, tx, ty, t.Data, size, size, 0, 0, gain, bias)
	return t
}

// Letterbox records how LetterboxInput placed a source image in the square
// model input: input = source*Scale + (PadX, PadY), for a source of
// SrcW x SrcH pixels and an input of Size x Size.
type Letterbox struct {
	Scale      float64
	PadX, PadY float64
	SrcW, SrcH int
	Size       int
}

// LetterboxInput turns img into the input of a YOLOv8 detector: a float32
// NCHW tensor [1,3,size,size] holding the image scaled by
// min(size/w, size/h) (aspect ratio kept, bilinear), centred, with a border
// of grey LetterboxPad; RGB values are divided by 255, with no mean or std.
// The Letterbox maps detections back to source pixels. The tensor is
// unnamed. An empty image gives an all-border tensor and a non-positive
// size an empty [1,3,0,0] one.
func LetterboxInput(img image.Image, size int) (tensor.Tensor, Letterbox) {
	size = max(size, 0)
	t := newCHW(size, size)
	fill := math.Float32bits(LetterboxPad / 255.0)
	for i := 0; i < len(t.Data); i += 4 {
		binary.LittleEndian.PutUint32(t.Data[i:], fill)
	}
	if size == 0 || img == nil || img.Bounds().Empty() {
		return t, Letterbox{Size: size}
	}
	src := rgbView(img)
	r := math.Min(float64(size)/float64(src.w), float64(size)/float64(src.h))
	newW := min(max(int(math.Round(float64(src.w)*r)), 1), size)
	newH := min(max(int(math.Round(float64(src.h)*r)), 1), size)
	padX, padY := (size-newW)/2, (size-newH)/2
	// One scale for both axes, the same one ToSource inverts, so that box
	// mapping is exact rather than off by the rounding of newW and newH.
	tx := triangleTaps(newW, 0, r, src.w)
	ty := triangleTaps(newH, 0, r, src.h)
	const k = 1.0 / 255
	resample(src, tx, ty, t.Data, size, size, padX, padY, [3]float32{k, k, k}, [3]float32{})
	return t, Letterbox{Scale: r, PadX: float64(padX), PadY: float64(padY), SrcW: src.w, SrcH: src.h, Size: size}
}

// ToSource maps a point of the model input to source-image pixels, clamped
// to the image ([0,SrcW] x [0,SrcH], the far edges included so that a box
// can reach them). A zero Letterbox maps everything to (0,0).
func (l Letterbox) ToSource(x, y float64) (float64, float64) {
	if !(l.Scale > 0) {
		return 0, 0
	}
	sx := (x - l.PadX) / l.Scale
	sy := (y - l.PadY) / l.Scale
	return clampF(sx, 0, float64(l.SrcW)), clampF(sy, 0, float64(l.SrcH))
}

// FromSource maps a source-image point to model-input pixels; it is the
// inverse of ToSource inside the image.
func (l Letterbox) FromSource(x, y float64) (float64, float64) {
	return x*l.Scale + l.PadX, y*l.Scale + l.PadY
}

// clampF clamps v to [lo,hi]; NaN becomes lo.
func clampF(v, lo, hi float64) float64 {
	if !(v >= lo) {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}

// newCHW returns a zeroed float32 tensor [1,3,h,w].
func newCHW(h, w int) tensor.Tensor {
	return tensor.Tensor{
		DType: tensor.Float32,
		Shape: tensor.Shape{1, 3, int64(h), int64(w)},
		Data:  make([]byte, 4*3*h*w),
	}
}

// rgbPixels is a read-only view of 8-bit pixels laid out R,G,B,A: the row
// of pixel (x,y) starts at pix[y*stride], x counted from the image's left.
type rgbPixels struct {
	pix        []uint8
	stride     int
	w, h       int
	firstPixel int // offset of (0,0) in pix
}

// rgbView returns the pixels of img, without copying when img is already
// *image.RGBA or *image.NRGBA (whose alpha is ignored, as PIL's
// convert("RGB") does) and otherwise converting it once with image/draw,
// which has fast paths for the YCbCr (JPEG), Gray and paletted images the
// decoders produce.
func rgbView(img image.Image) rgbPixels {
	b := img.Bounds()
	switch m := img.(type) {
	case *image.RGBA:
		return rgbPixels{pix: m.Pix, stride: m.Stride, w: b.Dx(), h: b.Dy(), firstPixel: m.PixOffset(b.Min.X, b.Min.Y)}
	case *image.NRGBA:
		return rgbPixels{pix: m.Pix, stride: m.Stride, w: b.Dx(), h: b.Dy(), firstPixel: m.PixOffset(b.Min.X, b.Min.Y)}
	}
	dst := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(dst, dst.Rect, img, b.Min, draw.Src)
	return rgbPixels{pix: dst.Pix, stride: dst.Stride, w: b.Dx(), h: b.Dy()}
}

// filterTaps holds a 1-D resampling filter: output sample i is the weighted
// sum of the count[i] source samples from start[i], with weights
// w[i*n : i*n+count[i]].
type filterTaps struct {
	start, count []int
	n            int
	w            []float32
}

// triangleTaps builds the bilinear (triangle) filter taking outN samples,
// numbered from outOff in a resized axis that is scale times the inN-long
// source axis. When shrinking, the triangle is widened by 1/scale so that
// every source pixel contributes (anti-aliasing, as PIL's BILINEAR does);
// when enlarging it is plain linear interpolation between pixel centres.
// Windows are cut at the image edges and renormalised.
func triangleTaps(outN, outOff int, scale float64, inN int) filterTaps {
	support := math.Max(1/scale, 1)
	n := 2*int(math.Ceil(support)) + 1
	t := filterTaps{start: make([]int, outN), count: make([]int, outN), n: n, w: make([]float32, outN*n)}
	for i := 0; i < outN; i++ {
		center := (float64(i+outOff) + 0.5) / scale
		lo := max(int(math.Floor(center-support+0.5)), 0)
		hi := min(int(math.Floor(center+support+0.5)), inN, lo+n)
		ws := t.w[i*n : i*n+n]
		var sum float64
		for j := lo; j < hi; j++ {
			v := 1 - math.Abs((float64(j)+0.5-center)/support)
			if v > 0 {
				ws[j-lo] = float32(v)
				sum += v
			}
		}
		if sum == 0 { // centre beyond the source: take the nearest pixel
			lo = min(max(int(center), 0), inN-1)
			hi = lo + 1
			clear(ws)
			ws[0], sum = 1, 1
		}
		for j := range ws[:hi-lo] {
			ws[j] = float32(float64(ws[j]) / sum)
		}
		t.start[i], t.count[i] = lo, hi-lo
	}
	return t
}

// resample filters src with tx along rows and ty along columns and writes
// the len(tx.start) x len(ty.start) result into dst, three float32 planes
// (R,G,B) of planeW x planeH little-endian values, at (ox,oy); each value v
// in 0..255 is stored as v*gain[c]+bias[c]. The two passes are separable:
// rows first into a float buffer, then columns.
func resample(src rgbPixels, tx, ty filterTaps, dst []byte, planeW, planeH, ox, oy int, gain, bias [3]float32) {
	outW, outH := len(tx.start), len(ty.start)
	if outW == 0 || outH == 0 {
		return
	}
	yLo := ty.start[0]
	yHi := ty.start[outH-1] + ty.count[outH-1]
	for i := range ty.start {
		yLo = min(yLo, ty.start[i])
		yHi = max(yHi, ty.start[i]+ty.count[i])
	}
	rowLen := 3 * outW
	tmp := make([]float32, (yHi-yLo)*rowLen)
	for r := yLo; r < yHi; r++ {
		row := src.pix[src.firstPixel+r*src.stride:]
		out := tmp[(r-yLo)*rowLen : (r-yLo+1)*rowLen]
		for x := 0; x < outW; x++ {
			p := row[4*tx.start[x]:]
			ws := tx.w[x*tx.n : x*tx.n+tx.count[x]]
			var a0, a1, a2 float32
			for k, w := range ws {
				q := p[4*k : 4*k+3 : 4*k+3]
				a0 += w * float32(q[0])
				a1 += w * float32(q[1])
				a2 += w * float32(q[2])
			}
			out[3*x], out[3*x+1], out[3*x+2] = a0, a1, a2
		}
	}
	acc := make([]float32, rowLen)
	plane := planeW * planeH
	for y := 0; y < outH; y++ {
		clear(acc)
		s := ty.start[y] - yLo
		for k, w := range ty.w[y*ty.n : y*ty.n+ty.count[y]] {
			row := tmp[(s+k)*rowLen : (s+k+1)*rowLen]
			for j, v := range row {
				acc[j] += w * v
			}
		}
		base := (oy+y)*planeW + ox
		for c := 0; c < 3; c++ {
			d := dst[4*(c*plane+base) : 4*(c*plane+base+outW)]
			g, b := gain[c], bias[c]
			for x := 0; x < outW; x++ {
				binary.LittleEndian.PutUint32(d[4*x:], math.Float32bits(acc[3*x+c]*g+b))
			}
		}
	}
}
