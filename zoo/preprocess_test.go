package zoo

import (
	"image"
	"image/color"
	"math"
	"testing"

	xdraw "golang.org/x/image/draw"

	"tracr/tensor"
)

// solid returns a w x h image of colour c in the given representation.
func solid(kind string, w, h int, c color.RGBA) image.Image {
	r := image.Rect(0, 0, w, h)
	switch kind {
	case "rgba":
		m := image.NewRGBA(r)
		for i := 0; i < len(m.Pix); i += 4 {
			m.Pix[i], m.Pix[i+1], m.Pix[i+2], m.Pix[i+3] = c.R, c.G, c.B, 255
		}
		return m
	case "nrgba":
		m := image.NewNRGBA(r)
		for i := 0; i < len(m.Pix); i += 4 {
			m.Pix[i], m.Pix[i+1], m.Pix[i+2], m.Pix[i+3] = c.R, c.G, c.B, 255
		}
		return m
	case "paletted":
		m := image.NewPaletted(r, color.Palette{color.Black, c})
		for i := range m.Pix {
			m.Pix[i] = 1
		}
		return m
	case "subimage": // an RGBA whose bounds do not start at (0,0)
		m := solid("rgba", w+10, h+10, color.RGBA{255, 255, 255, 255}).(*image.RGBA)
		inner := image.Rect(5, 5, 5+w, 5+h)
		for y := inner.Min.Y; y < inner.Max.Y; y++ {
			for x := inner.Min.X; x < inner.Max.X; x++ {
				m.SetRGBA(x, y, c)
			}
		}
		return m.SubImage(inner)
	}
	panic("unknown kind " + kind)
}

func floats(t *testing.T, ts tensor.Tensor) []float32 {
	t.Helper()
	if err := ts.Validate(); err != nil {
		t.Fatal(err)
	}
	v, err := ts.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestClassifyInputSolid(t *testing.T) {
	// (v/255 - mean)/std by hand for (200, 100, 50):
	// R (0.784314-0.485)/0.229 = 1.307049
	// G (0.392157-0.456)/0.224 = -0.285014
	// B (0.196078-0.406)/0.225 = -0.932985
	want := [3]float64{1.307049, -0.285014, -0.932985}
	c := color.RGBA{200, 100, 50, 255}
	for _, kind := range []string{"rgba", "nrgba", "paletted", "subimage"} {
		for _, size := range [][2]int{{300, 200}, {200, 300}, {224, 224}, {50, 40}, {1000, 37}} {
			ts := ClassifyInput(solid(kind, size[0], size[1], c), 224)
			if !ts.Shape.Equal(tensor.Shape{1, 3, 224, 224}) || ts.DType != tensor.Float32 {
				t.Fatalf("%s %v: %s %s, want float32 [1,3,224,224]", kind, size, ts.DType, ts.Shape)
			}
			v := floats(t, ts)
			for ch := 0; ch < 3; ch++ {
				for _, i := range []int{0, 224*112 + 112, 224*224 - 1} {
					if got := float64(v[ch*224*224+i]); !near(got, want[ch], 1e-4) {
						t.Fatalf("%s %v: channel %d pixel %d = %v, want %v", kind, size, ch, i, got, want[ch])
					}
				}
			}
		}
	}
}

func TestClassifyInputGrey(t *testing.T) {
	g := image.NewGray(image.Rect(0, 0, 64, 64))
	for i := range g.Pix {
		g.Pix[i] = 128
	}
	v := floats(t, ClassifyInput(g, 32))
	// (128/255 - 0.485)/0.229 = 0.074054
	if got := float64(v[0]); !near(got, 0.074054, 1e-4) {
		t.Errorf("grey R = %v, want 0.074054", got)
	}
}

// TestClassifyInputCentreCrop checks that the crop is centred: a 448x224
// image, black left half, white right half, becomes 512x256 and the crop
// keeps columns 144..367, so the edge (resized column 256) falls between
// crop columns 111 and 112. Column 110 samples source pixels 222-223 (both
// black) and column 113 samples 224-225 (both white); a crop one column off
// either way would mix in the other colour.
func TestClassifyInputCentreCrop(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 448, 224))
	for y := 0; y < 224; y++ {
		for x := 224; x < 448; x++ {
			img.SetRGBA(x, y, color.RGBA{255, 255, 255, 255})
		}
	}
	v := floats(t, ClassifyInput(img, 224))
	black := (0 - 0.485) / 0.229
	white := (1 - 0.485) / 0.229
	for _, y := range []int{0, 100, 223} {
		if got := float64(v[y*224+110]); !near(got, black, 1e-4) {
			t.Errorf("row %d col 110 = %v, want black %v", y, got, black)
		}
		if got := float64(v[y*224+113]); !near(got, white, 1e-4) {
			t.Errorf("row %d col 113 = %v, want white %v", y, got, white)
		}
		if got := float64(v[y*224+111]); near(got, black, 1e-3) || near(got, white, 1e-3) {
			t.Errorf("row %d col 111 = %v: want a blend at the edge", y, got)
		}
	}
}

func TestClassifyInputDegenerate(t *testing.T) {
	if ts := ClassifyInput(image.NewRGBA(image.Rect(0, 0, 10, 10)), 0); len(ts.Data) != 0 || !ts.Shape.Equal(tensor.Shape{1, 3, 0, 0}) {
		t.Errorf("size 0: %s with %d bytes", ts.Shape, len(ts.Data))
	}
	ts := ClassifyInput(image.NewRGBA(image.Rectangle{}), 8)
	if err := ts.Validate(); err != nil || !ts.Shape.Equal(tensor.Shape{1, 3, 8, 8}) {
		t.Errorf("empty image: %s, %v", ts.Shape, err)
	}
}

func TestLetterboxGeometry(t *testing.T) {
	tests := []struct {
		w, h, size int
		want       Letterbox
	}{
		{640, 480, 320, Letterbox{Scale: 0.5, PadX: 0, PadY: 40, SrcW: 640, SrcH: 480, Size: 320}},
		{480, 640, 320, Letterbox{Scale: 0.5, PadX: 40, PadY: 0, SrcW: 480, SrcH: 640, Size: 320}},
		{320, 320, 640, Letterbox{Scale: 2, SrcW: 320, SrcH: 320, Size: 640}},
		// 100x50 -> 64: scale 0.64, 64x32 placed at y 16.
		{100, 50, 64, Letterbox{Scale: 0.64, PadX: 0, PadY: 16, SrcW: 100, SrcH: 50, Size: 64}},
		// 300x100 -> 64: scale 64/300, height round(21.33)=21, pad (64-21)/2 = 21.
		{300, 100, 64, Letterbox{Scale: 64.0 / 300, PadX: 0, PadY: 21, SrcW: 300, SrcH: 100, Size: 64}},
	}
	for _, tc := range tests {
		ts, lb := LetterboxInput(solid("rgba", tc.w, tc.h, color.RGBA{10, 20, 30, 255}), tc.size)
		if !near(lb.Scale, tc.want.Scale, 1e-12) || lb.PadX != tc.want.PadX || lb.PadY != tc.want.PadY ||
			lb.SrcW != tc.want.SrcW || lb.SrcH != tc.want.SrcH || lb.Size != tc.want.Size {
			t.Errorf("%dx%d -> %d: %+v, want %+v", tc.w, tc.h, tc.size, lb, tc.want)
		}
		n := int64(tc.size)
		if !ts.Shape.Equal(tensor.Shape{1, 3, n, n}) {
			t.Errorf("%dx%d -> %d: shape %s", tc.w, tc.h, tc.size, ts.Shape)
		}
	}
}

// TestLetterboxPixels checks the pad value and the image values of a
// 640x480 solid image letterboxed to 320: rows 0-39 and 280-319 are
// border, rows 40-279 image.
func TestLetterboxPixels(t *testing.T) {
	for _, kind := range []string{"rgba", "nrgba", "paletted", "subimage"} {
		ts, _ := LetterboxInput(solid(kind, 640, 480, color.RGBA{10, 20, 30, 255}), 320)
		v := floats(t, ts)
		pad := float32(114.0 / 255)
		want := [3]float32{10.0 / 255, 20.0 / 255, 30.0 / 255}
		for c := 0; c < 3; c++ {
			for y := 0; y < 320; y++ {
				for _, x := range []int{0, 160, 319} {
					got := v[c*320*320+y*320+x]
					exp := pad
					if y >= 40 && y < 280 {
						exp = want[c]
					}
					if !near(float64(got), float64(exp), 1e-6) {
						t.Fatalf("%s: channel %d (%d,%d) = %v, want %v", kind, c, x, y, got, exp)
					}
				}
			}
		}
	}
}

// TestLetterboxSampling checks where the image lands: a 64x32 image whose
// left half is black and right half white, enlarged 2x into 128, spans rows
// 32-95 with the edge between columns 63 and 64.
func TestLetterboxSampling(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 64, 32))
	for y := 0; y < 32; y++ {
		for x := 0; x < 64; x++ {
			v := uint8(0)
			if x >= 32 {
				v = 255
			}
			img.SetRGBA(x, y, color.RGBA{v, v, v, 255})
		}
	}
	ts, lb := LetterboxInput(img, 128)
	if lb.Scale != 2 || lb.PadY != 32 || lb.PadX != 0 {
		t.Fatalf("letterbox %+v", lb)
	}
	v := floats(t, ts)
	at := func(x, y int) float64 { return float64(v[y*128+x]) }
	// Output column 62 has its centre at source 31.25: 3/4 of pixel 31
	// (black) and 1/4 of pixel 30 (black). Column 63 -> 31.75: 3/4 black,
	// 1/4 white. Column 64 -> 32.25: 3/4 white.
	for _, c := range []struct {
		x    int
		want float64
	}{{62, 0}, {63, 0.25}, {64, 0.75}, {65, 1}} {
		if got := at(c.x, 60); !near(got, c.want, 1e-6) {
			t.Errorf("column %d = %v, want %v", c.x, got, c.want)
		}
	}
	if got := at(10, 31); !near(got, 114.0/255, 1e-6) {
		t.Errorf("row 31 (border) = %v", got)
	}
	if got := at(10, 32); !near(got, 0, 1e-6) {
		t.Errorf("row 32 (image) = %v", got)
	}
}

func TestLetterboxToSource(t *testing.T) {
	lb := Letterbox{Scale: 0.5, PadX: 0, PadY: 40, SrcW: 640, SrcH: 480, Size: 320}
	tests := []struct{ x, y, sx, sy float64 }{
		{0, 40, 0, 0},        // top-left corner of the image
		{320, 280, 640, 480}, // bottom-right corner
		{160, 160, 320, 240}, // centre
		{100, 70, 200, 60},
		{-5, 10, 0, 0},          // in the border: clamped
		{400, 300, 640, 480},    // past the far corner: clamped
		{math.NaN(), 50, 0, 20}, // NaN clamps to the near edge
	}
	for _, tc := range tests {
		sx, sy := lb.ToSource(tc.x, tc.y)
		if !near(sx, tc.sx, 1e-9) || !near(sy, tc.sy, 1e-9) {
			t.Errorf("ToSource(%v,%v) = (%v,%v), want (%v,%v)", tc.x, tc.y, sx, sy, tc.sx, tc.sy)
		}
	}
	// ToSource inverts FromSource everywhere inside the image.
	for _, l := range []Letterbox{lb, {Scale: 64.0 / 300, PadY: 21, SrcW: 300, SrcH: 100, Size: 64}} {
		for _, p := range [][2]float64{{0, 0}, {1, 2}, {123.25, 45.5}, {float64(l.SrcW), float64(l.SrcH)}} {
			ix, iy := l.FromSource(p[0], p[1])
			sx, sy := l.ToSource(ix, iy)
			if !near(sx, p[0], 1e-9) || !near(sy, p[1], 1e-9) {
				t.Errorf("%+v: ToSource(FromSource(%v)) = (%v,%v)", l, p, sx, sy)
			}
		}
	}
	if x, y := (Letterbox{}).ToSource(10, 10); x != 0 || y != 0 {
		t.Errorf("zero letterbox: (%v,%v)", x, y)
	}
}

// BenchmarkPreprocess compares LetterboxInput with the obvious baseline on
// the same 1280x720 frame: golang.org/x/image/draw's BiLinear scaler into
// an RGBA image, then a conversion loop to float32 CHW.
func BenchmarkPreprocess(b *testing.B) {
	s, err := Synthetic(1, 1280, 720, 1).Sample(0)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("ClassifyInput224", func(b *testing.B) {
		for b.Loop() {
			ClassifyInput(s.Image, 224)
		}
	})
	b.Run("LetterboxInput640", func(b *testing.B) {
		for b.Loop() {
			LetterboxInput(s.Image, 640)
		}
	})
	b.Run("baseline-xdraw-BiLinear640", func(b *testing.B) {
		for b.Loop() {
			dst := image.NewRGBA(image.Rect(0, 0, 640, 640))
			xdraw.Draw(dst, dst.Rect, image.NewUniform(color.RGBA{114, 114, 114, 255}), image.Point{}, xdraw.Src)
			xdraw.BiLinear.Scale(dst, image.Rect(0, 140, 640, 500), s.Image, s.Image.Bounds(), xdraw.Src, nil)
			v := make([]float32, 3*640*640)
			for i := 0; i < 640*640; i++ {
				v[i] = float32(dst.Pix[4*i]) / 255
				v[640*640+i] = float32(dst.Pix[4*i+1]) / 255
				v[2*640*640+i] = float32(dst.Pix[4*i+2]) / 255
			}
			tensor.FromFloat32("", tensor.Shape{1, 3, 640, 640}, v)
		}
	})
}
