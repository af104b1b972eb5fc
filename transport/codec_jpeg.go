package transport

// The jpeg codec (a baseline JPEG file) is for the server-only candidate, where the model input
// itself travels. It suits a YOLO letterbox input: a float32 NCHW
// [1,3,H,W] tensor of RGB values in [0,1], which it quantises to 8 bits
// and sends as a JPEG, decoding back to the same layout. A classifier input
// is mean/std normalised, so its values are not pixels; for those the edge
// should send the original image file instead and let the server
// pre-process it (the runtime decides which).

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math"

	"tracr/tensor"
)

// CodecJPEG sends a float32 [1,3,H,W] image tensor in [0,1] as a JPEG.
const CodecJPEG Codec = 3

func init() {
	// No size: a JPEG's length is not fixed by the shape, so it is never
	// compressed again (and needs nothing else to bound its decoding: the
	// shape it is checked against bounds the image).
	registerCodec(elementCodec{
		name:   "jpeg",
		id:     CodecJPEG,
		lossy:  true,
		dtypes: []tensor.DType{tensor.Float32},
		shape:  checkJPEGShape,
		encode: appendJPEGTensor,
		decode: func(b []byte, _ tensor.DType, shape tensor.Shape) ([]byte, error) { return decodeJPEGTensor(b, shape) },
	})
}

// JPEGQuality is the quality the jpeg codec encodes tensors with.
const JPEGQuality = 90

// maxJPEGSide is the largest width or height a JPEG can have.
const maxJPEGSide = 65535

// EncodeJPEGImage encodes img as a baseline JPEG of quality 1..100.
func EncodeJPEGImage(img image.Image, quality int) ([]byte, error) {
	if quality < 1 || quality > 100 {
		return nil, fmt.Errorf("jpeg quality %d: want 1..100", quality)
	}
	b := img.Bounds()
	if b.Empty() || b.Dx() > maxJPEGSide || b.Dy() > maxJPEGSide {
		return nil, fmt.Errorf("jpeg: cannot encode a %dx%d image", b.Dx(), b.Dy())
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: quality}); err != nil {
		return nil, fmt.Errorf("jpeg: %w", err)
	}
	return buf.Bytes(), nil
}

// checkJPEGShape accepts the shapes the jpeg codec handles: [1,3,H,W] with
// sides a JPEG can have.
func checkJPEGShape(name string, s tensor.Shape) error {
	if len(s) != 4 || s[0] != 1 || s[1] != 3 || s[2] < 1 || s[3] < 1 || s[2] > maxJPEGSide || s[3] > maxJPEGSide {
		return fmt.Errorf("tensor %q: jpeg needs shape [1,3,H,W] with 1 <= H,W <= %d, not %s", name, maxJPEGSide, s)
	}
	return nil
}

// appendJPEGTensor appends the JPEG of a float32 [1,3,H,W] tensor in [0,1]
// (values outside are clamped); the shape was checked by checkJPEGShape.
func appendJPEGTensor(dst []byte, t tensor.Tensor) ([]byte, error) {
	h, w := int(t.Shape[2]), int(t.Shape[3])
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	plane := h * w
	for c := range 3 {
		for i := range plane {
			v := math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*(c*plane+i):]))
			img.Pix[4*i+c] = to8(v)
		}
	}
	for i := range plane {
		img.Pix[4*i+3] = 0xff
	}
	b, err := EncodeJPEGImage(img, JPEGQuality)
	if err != nil {
		return nil, err
	}
	return append(dst, b...), nil
}

// to8 maps [0,1] to 0..255, rounding; NaN becomes 0.
func to8(v float32) uint8 {
	if !(v > 0) {
		return 0
	}
	if v >= 1 {
		return 255
	}
	return uint8(v*255 + 0.5)
}

// decodeJPEGTensor decodes a JPEG into a float32 [1,3,H,W] tensor in
// [0,1]. The image size in the JPEG header must match the shape, and is
// checked before the image is decoded.
func decodeJPEGTensor(b []byte, shape tensor.Shape) ([]byte, error) {
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("jpeg header: %w", err)
	}
	h, w := int(shape[2]), int(shape[3])
	if cfg.Width != w || cfg.Height != h {
		return nil, fmt.Errorf("jpeg of %dx%d for a %dx%d tensor", cfg.Width, cfg.Height, w, h)
	}
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("jpeg: %w", err)
	}
	out := make([]byte, 4*3*h*w)
	plane := h * w
	put := func(i int, r, g, bl uint8) {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(float32(r)/255))
		binary.LittleEndian.PutUint32(out[4*(plane+i):], math.Float32bits(float32(g)/255))
		binary.LittleEndian.PutUint32(out[4*(2*plane+i):], math.Float32bits(float32(bl)/255))
	}
	bounds := img.Bounds()
	if yc, ok := img.(*image.YCbCr); ok {
		for y := range h {
			for x := range w {
				yi := yc.YOffset(bounds.Min.X+x, bounds.Min.Y+y)
				ci := yc.COffset(bounds.Min.X+x, bounds.Min.Y+y)
				r, g, bl := color.YCbCrToRGB(yc.Y[yi], yc.Cb[ci], yc.Cr[ci])
				put(y*w+x, r, g, bl)
			}
		}
		return out, nil
	}
	// Grey or CMYK JPEGs are not what the encoder writes, but they are
	// valid images: convert them the slow way.
	for y := range h {
		for x := range w {
			c := color.RGBAModel.Convert(img.At(bounds.Min.X+x, bounds.Min.Y+y)).(color.RGBA)
			put(y*w+x, c.R, c.G, c.B)
		}
	}
	return out, nil
}
