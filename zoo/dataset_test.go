package zoo

import (
	"bytes"
	"image"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeImage writes a w x h PNG or JPEG (by extension) of one colour.
func writeImage(t *testing.T, path string, w, h int) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	var buf bytes.Buffer
	var err error
	if strings.HasSuffix(strings.ToLower(path), ".png") {
		err = png.Encode(&buf, img)
	} else {
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90})
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// sampleFolder makes a folder with three images of different sizes and
// some files OpenImageFolder must ignore.
func sampleFolder(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeImage(t, filepath.Join(dir, "b.png"), 20, 10)
	writeImage(t, filepath.Join(dir, "a.JPG"), 16, 12)
	writeImage(t, filepath.Join(dir, "c.jpeg"), 8, 8)
	writeImage(t, filepath.Join(dir, ".hidden.png"), 4, 4)
	writeFile(t, filepath.Join(dir, "notes.txt"), "not an image")
	if err := os.Mkdir(filepath.Join(dir, "sub.png"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestDatasetImageFolder(t *testing.T) {
	dir := sampleFolder(t)
	ds, err := OpenImageFolder(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name string
		w, h int
	}{{"a.JPG", 16, 12}, {"b.png", 20, 10}, {"c.jpeg", 8, 8}}
	if ds.Len() != len(want) {
		t.Fatalf("Len = %d, want %d", ds.Len(), len(want))
	}
	for i, w := range want {
		s, err := ds.Sample(i)
		if err != nil {
			t.Fatalf("Sample(%d): %v", i, err)
		}
		b := s.Image.Bounds()
		if s.Index != i || s.Name != w.name || b.Dx() != w.w || b.Dy() != w.h || s.Label != -1 {
			t.Errorf("Sample(%d) = {%d %q %dx%d label %d}, want {%d %q %dx%d label -1}",
				i, s.Index, s.Name, b.Dx(), b.Dy(), s.Label, i, w.name, w.w, w.h)
		}
	}
	for _, i := range []int{-1, 3} {
		if _, err := ds.Sample(i); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("Sample(%d) error = %v, want out of range", i, err)
		}
	}
}

func TestDatasetLabels(t *testing.T) {
	dir := sampleFolder(t)
	lf := filepath.Join(t.TempDir(), "labels.csv")
	writeFile(t, lf, "filename,label\n# a comment\n\na.JPG,1\nb.png, great white shark\n\"c.jpeg\",Tiger_Shark\n")
	ds, err := OpenImageFolder(dir, lf)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{1, 2, 3} {
		s, err := ds.Sample(i)
		if err != nil {
			t.Fatal(err)
		}
		if s.Label != want {
			t.Errorf("%s: label %d, want %d", s.Name, s.Label, want)
		}
	}

	// A partial file leaves the other images unlabelled, and names resolve
	// against the classes given.
	writeFile(t, lf, "b.png,cat\n")
	ds, err = OpenImageFolderClasses(dir, lf, []string{"dog", "cat"})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{-1, 1, -1} {
		if s, _ := ds.Sample(i); s.Label != want {
			t.Errorf("%s: label %d, want %d", s.Name, s.Label, want)
		}
	}
}

func TestDatasetOpenErrors(t *testing.T) {
	dir := sampleFolder(t)
	empty := t.TempDir()
	writeFile(t, filepath.Join(empty, "readme.md"), "no images here")
	missing := filepath.Join(t.TempDir(), "nope")
	notDir := filepath.Join(empty, "readme.md")
	lf := filepath.Join(t.TempDir(), "labels.csv")

	tests := []struct {
		name, dir, labels string // labels: content of the labels file, "" for none
		want              string
	}{
		{"missing folder", missing, "", "image folder " + missing + ": no such directory"},
		{"not a folder", notDir, "", "image folder " + notDir + ": not a directory"},
		{"no images", empty, "", "image folder " + empty + ": no JPEG or PNG images"},
		{"unknown file", dir, "a.JPG,1\n\nzz.png,2\n", lf + ":3: no image \"zz.png\" in the folder"},
		{"hidden file is not an image", dir, ".hidden.png,2\n", lf + ":1: no image \".hidden.png\""},
		{"bad class name", dir, "a.JPG,1\nb.png,flying saucer\n", lf + ":2: unknown class name \"flying saucer\""},
		{"index out of range", dir, "a.JPG,1000\n", lf + ":1: class index 1000 out of range [0,1000)"},
		{"negative index", dir, "a.JPG,-1\n", lf + ":1: class index -1 out of range"},
		{"ambiguous name", dir, "a.JPG,crane\n", lf + ":1: class name \"crane\" names 2 classes; give the index"},
		{"empty label", dir, "a.JPG,\n", lf + ":1: empty label"},
		{"three fields", dir, "# c\na.JPG,1,2\n", lf + ":2: want 2 fields"},
		{"one field", dir, "a.JPG\n", lf + ":1: want 2 fields"},
		{"duplicate", dir, "a.JPG,1\nb.png,2\na.JPG,3\n", lf + ":3: \"a.JPG\" is already labelled on line 1"},
		{"bad quoting", dir, "a.JPG,1\n\"b.png,2\n", lf + ":2:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			labels := ""
			if tc.labels != "" {
				writeFile(t, lf, tc.labels)
				labels = lf
			}
			_, err := OpenImageFolder(tc.dir, labels)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error = %v\nwant prefix %q", err, tc.want)
			}
		})
	}

	if _, err := OpenImageFolder(dir, filepath.Join(dir, "missing.csv")); err == nil || !strings.Contains(err.Error(), "missing.csv") {
		t.Errorf("missing labels file: error = %v, want one naming the file", err)
	}
}

func TestDatasetCorruptImage(t *testing.T) {
	dir := t.TempDir()
	writeImage(t, filepath.Join(dir, "good.png"), 5, 5)
	writeFile(t, filepath.Join(dir, "bad.jpg"), "this is not a JPEG")
	// A PNG cut short: the header decodes, the pixels do not.
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 64, 64))); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "cut.png"), string(buf.Bytes()[:buf.Len()/2]))

	ds, err := OpenImageFolder(dir, "")
	if err != nil {
		t.Fatalf("Open must not decode images: %v", err)
	}
	// Sorted: bad.jpg, cut.png, good.png.
	for i, name := range []string{"bad.jpg", "cut.png"} {
		_, err := ds.Sample(i)
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, name)) {
			t.Errorf("Sample(%d) error = %v, want one naming %s", i, err, name)
		}
	}
	if s, err := ds.Sample(2); err != nil || s.Name != "good.png" {
		t.Errorf("Sample(2) = %q, %v; want good.png", s.Name, err)
	}
}

func TestDatasetSynthetic(t *testing.T) {
	a := Synthetic(5, 64, 48, 42)
	b := Synthetic(5, 64, 48, 42)
	c := Synthetic(5, 64, 48, 43)
	if a.Len() != 5 {
		t.Fatalf("Len = %d, want 5", a.Len())
	}
	pix := func(d Dataset, i int) []uint8 {
		t.Helper()
		s, err := d.Sample(i)
		if err != nil {
			t.Fatal(err)
		}
		if r := s.Image.Bounds(); r.Dx() != 64 || r.Dy() != 48 {
			t.Fatalf("size %v, want 64x48", r)
		}
		if s.Label != -1 || s.Index != i {
			t.Errorf("sample %d: index %d label %d", i, s.Index, s.Label)
		}
		return s.Image.(*image.RGBA).Pix
	}
	// Sample 3 fetched alone equals sample 3 fetched after the others.
	for i := 0; i < 5; i++ {
		pix(b, i)
	}
	if !bytes.Equal(pix(a, 3), pix(b, 3)) {
		t.Error("same seed, same index: images differ")
	}
	if bytes.Equal(pix(a, 3), pix(c, 3)) {
		t.Error("different seeds: images are equal")
	}
	if bytes.Equal(pix(a, 3), pix(a, 4)) {
		t.Error("different indices: images are equal")
	}
	if _, err := a.Sample(5); err == nil {
		t.Error("Sample(5) of 5: no error")
	}
	if _, err := Synthetic(1, 0, 10, 1).Sample(0); err == nil || !strings.Contains(err.Error(), "invalid image size 0x10") {
		t.Errorf("zero width: error = %v", err)
	}
	if n := Synthetic(-3, 8, 8, 1).Len(); n != 0 {
		t.Errorf("negative count: Len = %d, want 0", n)
	}
}

// TestDatasetSyntheticCompresses checks that synthetic pictures compress
// like photographs: much better than noise, much worse than flat colour.
func TestDatasetSyntheticCompresses(t *testing.T) {
	const w, h = 224, 224
	size := func(img image.Image) int {
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
			t.Fatal(err)
		}
		return buf.Len()
	}
	flat := image.NewRGBA(image.Rect(0, 0, w, h))
	noise := image.NewRGBA(image.Rect(0, 0, w, h))
	rng := splitmix{state: 7}
	for i := range noise.Pix {
		flat.Pix[i] = 128
		noise.Pix[i] = uint8(rng.next())
	}
	for i := range noise.Pix {
		if i%4 == 3 {
			noise.Pix[i] = 255
		}
	}
	s, err := Synthetic(1, w, h, 1).Sample(0)
	if err != nil {
		t.Fatal(err)
	}
	syn, lo, hi := size(s.Image), size(flat), size(noise)
	t.Logf("JPEG q90 224x224: flat %d B, synthetic %d B, noise %d B", lo, syn, hi)
	if syn < 3*lo || syn > hi/2 {
		t.Errorf("synthetic JPEG is %d bytes; want between 3x flat (%d) and noise/2 (%d)", syn, 3*lo, hi/2)
	}
}
