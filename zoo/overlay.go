package zoo

import (
	"bufio"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
)

// SyntheticBanner is the warning DrawDetections and DrawClassification
// print on images whose predictions come from untrained weights.
const SyntheticBanner = "synthetic weights — predictions are not meaningful"

// boxStroke is the width in pixels of a detection's outline.
const boxStroke = 2

// goRegular parses the embedded Go Regular font once. The parsed font is
// read-only and safe to share; each drawing call makes its own faces, which
// are not.
var goRegular = sync.OnceValues(func() (*opentype.Font, error) { return opentype.Parse(goregular.TTF) })

// classPalette holds well-separated, saturated colours; class c is drawn in
// classPalette[c mod len].
var classPalette = [...]color.RGBA{
	{230, 25, 75, 255}, {60, 180, 75, 255}, {255, 200, 25, 255}, {0, 130, 200, 255},
	{245, 130, 48, 255}, {145, 30, 180, 255}, {70, 240, 240, 255}, {240, 50, 230, 255},
	{210, 245, 60, 255}, {250, 190, 212, 255}, {0, 128, 128, 255}, {220, 190, 255, 255},
	{170, 110, 40, 255}, {255, 250, 200, 255}, {128, 0, 0, 255}, {170, 255, 195, 255},
	{128, 128, 0, 255}, {255, 215, 180, 255}, {0, 0, 128, 255}, {128, 128, 128, 255},
}

// ClassColour returns the colour DrawDetections uses for class c.
func ClassColour(c int) color.RGBA {
	n := len(classPalette)
	return classPalette[((c%n)+n)%n]
}

// DrawDetections returns a copy of img (with its top-left corner moved to
// (0,0)) with each box outlined in its class colour and labelled
// "label 0.87" on a filled tag above the box, or inside it at the top
// border; tags are kept inside the image. Boxes are drawn lowest score
// first, so the best one ends on top. When synthetic is true a banner says
// that the predictions are not meaningful.
func DrawDetections(img image.Image, boxes []Box, synthetic bool) *image.RGBA {
	dst := copyRGBA(img)
	w, h := dst.Rect.Dx(), dst.Rect.Dy()
	f, fontErr := goRegular()
	var face font.Face
	if fontErr == nil {
		face = newFace(f, clampF(float64(min(w, h))/32, 11, 28))
		defer face.Close()
	}
	for i := len(boxes) - 1; i >= 0; i-- {
		b := boxes[i]
		col := ClassColour(b.Class)
		r := image.Rect(int(math.Floor(b.X1)), int(math.Floor(b.Y1)), int(math.Ceil(b.X2)), int(math.Ceil(b.Y2))).Intersect(dst.Rect)
		if r.Empty() {
			continue
		}
		strokeRect(dst, r, boxStroke, col)
		if face != nil {
			drawTag(dst, face, fmt.Sprintf("%s %.2f", b.Label, b.Score), r, col)
		}
	}
	if synthetic && fontErr == nil {
		drawBanner(dst, f)
	}
	return dst
}

// DrawClassification returns a copy of img (top-left corner moved to
// (0,0)) with the top-1 class and its probability written large in the
// top-left corner and the next four of top below it in smaller type, on a
// dark translucent panel. When synthetic is true a banner says that the
// predictions are not meaningful.
func DrawClassification(img image.Image, top []Class, synthetic bool) *image.RGBA {
	dst := copyRGBA(img)
	f, err := goRegular()
	if err != nil {
		return dst // the embedded font cannot fail to parse; draw nothing if it does
	}
	w, h := dst.Rect.Dx(), dst.Rect.Dy()
	big := clampF(float64(min(w, h))/18, 12, 40)
	lines := make([]string, 0, 5)
	faces := make([]font.Face, 0, 5)
	bigFace, smallFace := newFace(f, big), newFace(f, math.Max(big*0.6, 10))
	defer bigFace.Close()
	defer smallFace.Close()
	for i, c := range top[:min(len(top), 5)] {
		if i == 0 {
			lines = append(lines, fmt.Sprintf("%s  %.1f%%", c.Label, 100*c.Prob))
			faces = append(faces, bigFace)
		} else {
			lines = append(lines, fmt.Sprintf("%d. %s  %.1f%%", i+1, c.Label, 100*c.Prob))
			faces = append(faces, smallFace)
		}
	}
	if len(lines) > 0 {
		pad := int(big / 3)
		panelW, panelH := 0, pad
		for i, s := range lines {
			panelW = max(panelW, font.MeasureString(faces[i], s).Ceil())
			panelH += faces[i].Metrics().Height.Ceil()
		}
		panel := image.Rect(0, 0, panelW+2*pad, panelH+pad).Intersect(dst.Rect)
		draw.Draw(dst, panel, image.NewUniform(color.NRGBA{0, 0, 0, 170}), image.Point{}, draw.Over)
		y := pad
		for i, s := range lines {
			m := faces[i].Metrics()
			drawText(dst, faces[i], s, pad, y+m.Ascent.Ceil(), color.White)
			y += m.Height.Ceil()
		}
	}
	if synthetic {
		drawBanner(dst, f)
	}
	return dst
}

// WritePNG encodes img as PNG at path. It writes a temporary file in the
// same folder and renames it into place, so path never holds a partial
// image, even if encoding fails or the process dies.
func WritePNG(path string, img image.Image) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<16)
	if err := png.Encode(bw, img); err != nil {
		return fmt.Errorf("write %s: encode png: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok = true
	return nil
}

// copyRGBA returns img as a new RGBA image whose bounds start at (0,0).
func copyRGBA(img image.Image) *image.RGBA {
	if img == nil {
		return image.NewRGBA(image.Rectangle{})
	}
	b := img.Bounds()
	dst := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(dst, dst.Rect, img, b.Min, draw.Src)
	return dst
}

// newFace returns a face of the font at px pixels per em.
func newFace(f *opentype.Font, px float64) font.Face {
	face, err := opentype.NewFace(f, &opentype.FaceOptions{Size: px, DPI: 72, Hinting: font.HintingFull})
	if err != nil {
		// NewFace fails only on invalid options, and ours are valid; fall
		// back to the built-in bitmap face rather than panic.
		return basicfont.Face7x13
	}
	return face
}

// strokeRect draws the outline of r, width px thick, inside r.
func strokeRect(dst *image.RGBA, r image.Rectangle, width int, col color.RGBA) {
	u := image.NewUniform(col)
	width = min(width, r.Dx(), r.Dy())
	for _, side := range []image.Rectangle{
		{r.Min, image.Pt(r.Max.X, r.Min.Y+width)},
		{image.Pt(r.Min.X, r.Max.Y-width), r.Max},
		{r.Min, image.Pt(r.Min.X+width, r.Max.Y)},
		{image.Pt(r.Max.X-width, r.Min.Y), r.Max},
	} {
		draw.Draw(dst, side, u, image.Point{}, draw.Src)
	}
}

// drawTag writes text on a filled tag of colour col attached to the top-left
// corner of box r: above it when there is room, else just inside its top
// border; always inside the image.
func drawTag(dst *image.RGBA, face font.Face, text string, r image.Rectangle, col color.RGBA) {
	m := face.Metrics()
	padX := max(m.Height.Ceil()/5, 2)
	tw := font.MeasureString(face, text).Ceil() + 2*padX
	th := m.Height.Ceil() + 2
	x0 := r.Min.X
	y0 := r.Min.Y - th
	if y0 < 0 {
		y0 = r.Min.Y
	}
	b := dst.Rect
	x0 = max(min(x0, b.Max.X-tw), b.Min.X)
	y0 = max(min(y0, b.Max.Y-th), b.Min.Y)
	tag := image.Rect(x0, y0, x0+tw, y0+th).Intersect(b)
	draw.Draw(dst, tag, image.NewUniform(col), image.Point{}, draw.Src)
	drawText(dst, face, text, x0+padX, y0+1+m.Ascent.Ceil(), textColourOn(col))
}

// drawBanner writes SyntheticBanner in white on a red band across the
// bottom of dst, shrinking the type until the sentence fits the width.
func drawBanner(dst *image.RGBA, f *opentype.Font) {
	w, h := dst.Rect.Dx(), dst.Rect.Dy()
	px := clampF(float64(min(w, h))/24, 10, 28)
	face := newFace(f, px)
	for px > 7 && font.MeasureString(face, SyntheticBanner).Ceil() > w-8 {
		face.Close()
		px--
		face = newFace(f, px)
	}
	defer face.Close()
	m := face.Metrics()
	bh := m.Height.Ceil() + int(px/2)
	band := image.Rect(0, h-bh, w, h).Intersect(dst.Rect)
	draw.Draw(dst, band, image.NewUniform(color.NRGBA{170, 20, 20, 220}), image.Point{}, draw.Over)
	tw := font.MeasureString(face, SyntheticBanner).Ceil()
	x := max((w-tw)/2, 4)
	y := h - bh + (bh-m.Height.Ceil())/2 + m.Ascent.Ceil()
	drawText(dst, face, SyntheticBanner, x, y, color.White)
}

// drawText draws s with its baseline at y, starting at x; glyphs are
// clipped to dst.
func drawText(dst *image.RGBA, face font.Face, s string, x, y int, col color.Color) {
	d := font.Drawer{Dst: dst, Src: image.NewUniform(col), Face: face, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

// textColourOn returns black or white, whichever reads better on bg.
func textColourOn(bg color.RGBA) color.Color {
	if 0.299*float64(bg.R)+0.587*float64(bg.G)+0.114*float64(bg.B) > 150 {
		return color.Black
	}
	return color.White
}
