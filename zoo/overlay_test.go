package zoo

import (
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

var grey = color.RGBA{90, 90, 90, 255}

func rgbaAt(img *image.RGBA, x, y int) color.RGBA { return img.RGBAAt(x, y) }

// changed reports how many pixels of r differ from grey.
func changed(img *image.RGBA, r image.Rectangle) int {
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if img.RGBAAt(x, y) != grey {
				n++
			}
		}
	}
	return n
}

func TestOverlayDetections(t *testing.T) {
	src := solid("rgba", 200, 150, grey)
	boxes := []Box{{X1: 20, Y1: 60, X2: 120, Y2: 130, Class: 3, Label: "cat", Score: 0.87}}
	out := DrawDetections(src, boxes, false)
	if out.Rect != image.Rect(0, 0, 200, 150) {
		t.Fatalf("bounds %v", out.Rect)
	}
	col := ClassColour(3)
	// The outline: 2 px on each side, inside the box.
	for _, p := range []image.Point{{20, 80}, {21, 80}, {119, 80}, {118, 80}, {70, 60}, {70, 61}, {70, 129}, {70, 128}} {
		if got := rgbaAt(out, p.X, p.Y); got != col {
			t.Errorf("outline pixel %v = %v, want %v", p, got, col)
		}
	}
	for _, p := range []image.Point{{22, 80}, {70, 100}, {19, 80}, {121, 80}, {70, 131}, {190, 10}} {
		if got := rgbaAt(out, p.X, p.Y); got != grey {
			t.Errorf("pixel %v = %v, want untouched %v", p, got, grey)
		}
	}
	// The tag sits above the box and holds text (pixels in two colours).
	tag := image.Rect(20, 48, 60, 60)
	if n := changed(out, tag); n < tag.Dx()*tag.Dy()*9/10 {
		t.Errorf("tag above the box: %d of %d pixels drawn", n, tag.Dx()*tag.Dy())
	}
	if n := countColour(out, tag, col); n == 0 || n == tag.Dx()*tag.Dy() {
		t.Errorf("tag: %d pixels of the tag colour; want a background with text on it", n)
	}
	// The source is not modified.
	if changed(src.(*image.RGBA), src.Bounds()) != 0 {
		t.Error("DrawDetections modified its input")
	}
	// No banner without synthetic; a red band with one.
	if n := changed(out, image.Rect(0, 140, 200, 150)); n != 0 {
		t.Errorf("bottom rows changed without synthetic: %d pixels", n)
	}
	syn := DrawDetections(src, boxes, true)
	if p := syn.RGBAAt(2, 148); !(p.R > 120 && p.G < 60 && p.B < 60) {
		t.Errorf("banner pixel = %v, want red", p)
	}
}

func countColour(img *image.RGBA, r image.Rectangle, c color.RGBA) int {
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if img.RGBAAt(x, y) == c {
				n++
			}
		}
	}
	return n
}

// TestOverlayBorders checks that tags of boxes at the image edges stay
// inside the image: at the top the tag goes inside the box, at the right
// edge it is shifted left.
func TestOverlayBorders(t *testing.T) {
	src := solid("rgba", 200, 150, grey)
	top := Box{X1: 0, Y1: 4, X2: 60, Y2: 50, Class: 0, Label: "person", Score: 0.5}
	right := Box{X1: 185, Y1: 100, X2: 200, Y2: 150, Class: 1, Label: "long label here", Score: 0.9}
	out := DrawDetections(src, []Box{top, right}, false)
	// Top: no room above, so the tag fills the box's top-left corner and
	// the 4 rows above the box stay untouched.
	if n := changed(out, image.Rect(3, 7, 30, 16)); n < 27*9*9/10 {
		t.Errorf("top tag inside the box: %d pixels drawn", n)
	}
	if n := changed(out, image.Rect(0, 0, 60, 4)); n != 0 {
		t.Errorf("top tag: %d pixels drawn above the box", n)
	}
	// Right: the label is wider than the box, so the tag starts left of it
	// and ends at the image edge.
	if n := changed(out, image.Rect(150, 88, 184, 98)); n < 34*10*9/10 {
		t.Errorf("right tag shifted into the image: %d pixels drawn", n)
	}
	// Boxes outside the image, or degenerate, are skipped without harm.
	DrawDetections(src, []Box{{X1: 300, Y1: 300, X2: 400, Y2: 400}, {X1: 5, Y1: 5, X2: 5, Y2: 5}}, true)
	DrawDetections(image.NewRGBA(image.Rect(0, 0, 1, 1)), []Box{top}, true)
}

func TestOverlayClassification(t *testing.T) {
	src := solid("rgba", 320, 240, grey)
	top := TopK([]float32{1, 5, 2, 0.5, 3, 4}, 5, []string{"a", "tabby", "c", "d", "e", "tiger cat"})
	out := DrawClassification(src, top, false)
	if out.Rect != src.Bounds() {
		t.Fatalf("bounds %v", out.Rect)
	}
	// The panel darkens the top-left corner; the rest is untouched.
	if p := out.RGBAAt(2, 2); !(p.R < grey.R && p.R == p.G && p.G == p.B) {
		t.Errorf("panel pixel = %v, want darker grey", p)
	}
	if n := changed(out, image.Rect(0, 200, 320, 240)); n != 0 {
		t.Errorf("%d pixels changed below the panel", n)
	}
	if n := changed(out, image.Rect(250, 0, 320, 30)); n != 0 {
		t.Errorf("%d pixels changed right of the panel", n)
	}
	syn := DrawClassification(src, top, true)
	if p := syn.RGBAAt(2, 238); !(p.R > 120 && p.G < 60 && p.B < 60) {
		t.Errorf("banner pixel = %v, want red", p)
	}
	if n := changed(DrawClassification(src, nil, false), src.Bounds()); n != 0 {
		t.Errorf("no classes: %d pixels changed", n)
	}
}

func TestOverlayWritePNG(t *testing.T) {
	dir := t.TempDir()
	img := DrawDetections(solid("rgba", 64, 48, grey), []Box{{X1: 4, Y1: 20, X2: 40, Y2: 40, Label: "x", Score: 1}}, true)
	path := filepath.Join(dir, "out.png")
	if err := WritePNG(path, img); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if dec.Bounds() != image.Rect(0, 0, 64, 48) {
		t.Errorf("decoded bounds %v", dec.Bounds())
	}
	if r, g, b, _ := dec.At(4, 30).RGBA(); color.RGBA64Model.Convert(ClassColour(0)) != (color.RGBA64{uint16(r), uint16(g), uint16(b), 0xffff}) {
		t.Errorf("decoded outline pixel (%d,%d,%d), want class colour", r>>8, g>>8, b>>8)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("folder holds %d entries, want only out.png", len(entries))
	}

	bad := filepath.Join(dir, "missing", "out.png")
	if err := WritePNG(bad, img); err == nil {
		t.Error("writing into a missing folder: no error")
	}
	if _, err := os.Stat(bad); err == nil {
		t.Error("a file was written despite the error")
	}
	// An image PNG cannot encode leaves nothing behind.
	if err := WritePNG(filepath.Join(dir, "empty.png"), image.NewRGBA(image.Rectangle{})); err == nil {
		t.Error("empty image: no error")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("after failed writes the folder holds %d entries, want 1", len(entries))
	}
}
