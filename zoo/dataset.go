package zoo

import (
	"encoding/csv"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // registers the JPEG decoder for image.Decode
	_ "image/png"  // registers the PNG decoder for image.Decode
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Sample is one input of a dataset: its position, a name for logs and CSV
// rows, the decoded image and its ground-truth class (-1 when unknown).
type Sample struct {
	Index int
	Name  string
	Image image.Image
	Label int // class index; -1 = none
}

// Dataset is an indexed collection of samples. Sample may be called in any
// order and from several goroutines at once; an error from Sample concerns
// that one sample (a corrupt file, say) and the caller may skip it.
type Dataset interface {
	Len() int
	Sample(i int) (Sample, error)
}

// OpenImageFolder opens the JPEG and PNG files directly inside dir (not in
// sub-folders; files are recognised by extension, .jpg .jpeg .png in any
// case, and hidden files are skipped) as a dataset, in byte-wise name order.
//
// labelsFile is optional (""). It is a CSV file with one "filename,label"
// record per line: filename is the name of a file in dir, label is either an
// ImageNet class index (0-999) or an ImageNet class name as in
// ImageNetLabels (case and '_' versus ' ' do not matter; names listed twice
// in ImageNet, "crane" and "maillot", must be given by index). Blank lines
// and lines starting with '#' are ignored, fields may be quoted as in any CSV
// (a name containing a comma), and a first line "filename,label" is taken as
// a header. Images the file does not mention have Label -1.
//
// Open reads the folder listing and the labels, not the images: a corrupt
// image is reported by Sample, naming the file.
func OpenImageFolder(dir string, labelsFile string) (Dataset, error) {
	return OpenImageFolderClasses(dir, labelsFile, ImageNetLabels())
}

// OpenImageFolderClasses is OpenImageFolder with class names resolved
// against classes instead of the ImageNet list; indices in the labels file
// must be below len(classes).
func OpenImageFolderClasses(dir, labelsFile string, classes []string) (Dataset, error) {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("image folder %s: no such directory", dir)
	case err != nil:
		return nil, fmt.Errorf("image folder %s: %w", dir, err)
	case !st.IsDir():
		return nil, fmt.Errorf("image folder %s: not a directory", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("image folder %s: %w", dir, err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") || !isImageName(n) {
			continue
		}
		if !e.Type().IsRegular() && e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		names = append(names, n)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("image folder %s: no JPEG or PNG images (.jpg, .jpeg, .png)", dir)
	}
	sort.Strings(names)
	labels := make([]int, len(names))
	for i := range labels {
		labels[i] = -1
	}
	if labelsFile != "" {
		if err := readLabels(labelsFile, names, classes, labels); err != nil {
			return nil, err
		}
	}
	return &imageFolder{dir: dir, names: names, labels: labels}, nil
}

// isImageName reports whether a file name has a JPEG or PNG extension, in
// any case.
func isImageName(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".jpg", ".jpeg", ".png":
		return true
	}
	return false
}

// readLabels fills labels (parallel to the sorted names) from a labels CSV.
func readLabels(path string, names, classes []string, labels []int) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("labels file: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comment = '#'
	r.FieldsPerRecord = -1 // checked below, with a clearer message
	r.TrimLeadingSpace = true
	seen := make(map[string]int) // file name -> line it was labelled on
	first := true
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return fmt.Errorf("%s:%d: %v", path, pe.StartLine, pe.Err)
			}
			return fmt.Errorf("read labels %s: %w", path, err)
		}
		line, _ := r.FieldPos(0) // valid only after a successful Read
		isHeader := first && len(rec) == 2 && strings.EqualFold(strings.TrimSpace(rec[0]), "filename") &&
			strings.EqualFold(strings.TrimSpace(rec[1]), "label")
		first = false
		if isHeader {
			continue
		}
		if len(rec) != 2 {
			return fmt.Errorf("%s:%d: want 2 fields \"filename,label\", have %d", path, line, len(rec))
		}
		name, lab := strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1])
		i := sort.SearchStrings(names, name)
		if i == len(names) || names[i] != name {
			return fmt.Errorf("%s:%d: no image %q in the folder", path, line, name)
		}
		if prev, dup := seen[name]; dup {
			return fmt.Errorf("%s:%d: %q is already labelled on line %d", path, line, name, prev)
		}
		seen[name] = line
		c, err := parseClass(lab, classes)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
		labels[i] = c
	}
}

// parseClass reads a label that is either a class index or a class name.
func parseClass(s string, classes []string) (int, error) {
	if s == "" {
		return 0, errors.New("empty label")
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 || n >= len(classes) {
			return 0, fmt.Errorf("class index %d out of range [0,%d)", n, len(classes))
		}
		return n, nil
	}
	i, matches := classIndex(classes, s)
	switch {
	case matches == 0:
		return 0, fmt.Errorf("unknown class name %q", s)
	case matches > 1:
		return 0, fmt.Errorf("class name %q names %d classes; give the index", s, matches)
	}
	return i, nil
}

// imageFolder is the Dataset of OpenImageFolder. It is immutable after
// Open, so Sample is safe for concurrent use.
type imageFolder struct {
	dir    string
	names  []string
	labels []int
}

func (d *imageFolder) Len() int { return len(d.names) }

func (d *imageFolder) Sample(i int) (Sample, error) {
	if i < 0 || i >= len(d.names) {
		return Sample{}, fmt.Errorf("image folder %s: sample %d out of range [0,%d)", d.dir, i, len(d.names))
	}
	path := filepath.Join(d.dir, d.names[i])
	img, err := decodeFile(path)
	if err != nil {
		return Sample{}, err
	}
	return Sample{Index: i, Name: d.names[i], Image: img, Label: d.labels[i]}, nil
}

// maxImagePixels bounds the size of an image Sample will decode, so that a
// hostile or broken file cannot make it allocate gigabytes.
const maxImagePixels = 1 << 27

// decodeFile decodes the JPEG or PNG image at path; errors name the file.
func decodeFile(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	defer f.Close()
	cfg, _, err := image.DecodeConfig(f)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > maxImagePixels {
		return nil, fmt.Errorf("image %s: unsupported size %dx%d", path, cfg.Width, cfg.Height)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	img, _, err := image.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	return img, nil
}

// Synthetic returns a dataset of n deterministic RGB images of width x
// height pixels: smooth two-colour gradients with a few filled (some
// striped) circles and rectangles and a little grain, so that they compress like photographs
// rather than like noise or flat colour. Sample i depends only on seed and
// i, so any sample can be regenerated on its own. Samples have no label.
// A non-positive width or height makes every Sample fail.
func Synthetic(n, width, height int, seed uint64) Dataset {
	return synthetic{n: max(n, 0), w: width, h: height, seed: seed}
}

type synthetic struct {
	n, w, h int
	seed    uint64
}

func (s synthetic) Len() int { return s.n }

func (s synthetic) Sample(i int) (Sample, error) {
	if i < 0 || i >= s.n {
		return Sample{}, fmt.Errorf("synthetic dataset: sample %d out of range [0,%d)", i, s.n)
	}
	if s.w <= 0 || s.h <= 0 || int64(s.w)*int64(s.h) > 1<<28 {
		return Sample{}, fmt.Errorf("synthetic dataset: invalid image size %dx%d", s.w, s.h)
	}
	rng := splitmix{state: s.seed ^ (uint64(i)+1)*0x9e3779b97f4a7c15}
	return Sample{
		Index: i,
		Name:  fmt.Sprintf("synthetic-%06d", i),
		Image: synthImage(&rng, s.w, s.h),
		Label: -1,
	}, nil
}

// splitmix is the SplitMix64 generator: tiny, fast and good enough for
// test pictures; each sample owns one, so nothing is shared.
type splitmix struct{ state uint64 }

func (r *splitmix) next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	z := r.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// float returns a number in [0, 1).
func (r *splitmix) float() float64 { return float64(r.next()>>11) / (1 << 53) }

func (r *splitmix) colour() color.RGBA {
	v := r.next()
	return color.RGBA{uint8(v), uint8(v >> 8), uint8(v >> 16), 255}
}

// synthImage paints one synthetic picture.
func synthImage(rng *splitmix, w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	c0, c1 := rng.colour(), rng.colour()
	angle := rng.float() * 2 * math.Pi
	dx, dy := math.Cos(angle), math.Sin(angle)
	// Project every pixel on the gradient direction, normalised to [0,1].
	span := math.Abs(dx)*float64(w) + math.Abs(dy)*float64(h)
	off := math.Min(0, dx*float64(w)) + math.Min(0, dy*float64(h))
	for y := 0; y < h; y++ {
		row := img.Pix[y*img.Stride : y*img.Stride+4*w]
		for x := 0; x < w; x++ {
			t := (dx*float64(x) + dy*float64(y) - off) / span
			p := row[4*x : 4*x+4 : 4*x+4]
			p[0] = lerp8(c0.R, c1.R, t)
			p[1] = lerp8(c0.G, c1.G, t)
			p[2] = lerp8(c0.B, c1.B, t)
			p[3] = 255
		}
	}
	shapes := 4 + int(rng.next()%8)
	for k := 0; k < shapes; k++ {
		c, c2 := rng.colour(), rng.colour()
		cx, cy := rng.float()*float64(w), rng.float()*float64(h)
		r := (0.04 + 0.2*rng.float()) * float64(min(w, h))
		// Some shapes are striped, for edges at several scales.
		period := 0
		if rng.next()%3 == 0 {
			period = 2 + int(rng.next()%10)
		}
		if rng.next()%2 == 0 {
			fillCircle(img, cx, cy, r, c, c2, period)
		} else {
			fillRect(img, int(cx-r), int(cy-r*0.7), int(cx+r), int(cy+r*0.7), c, c2, period)
		}
	}
	// A little grain: photographs are never perfectly smooth, and without it
	// JPEG sizes would be unrealistically small.
	for y := 0; y < h; y++ {
		row := img.Pix[y*img.Stride : y*img.Stride+4*w]
		for x := 0; x < w; x++ {
			v := rng.next()
			for c := 0; c < 3; c++ {
				n := int(v>>(8*c))%11 - 5
				row[4*x+c] = clamp8(int(row[4*x+c]) + n)
			}
		}
	}
	return img
}

func lerp8(a, b uint8, t float64) uint8 {
	return uint8(float64(a) + (float64(b)-float64(a))*t + 0.5)
}

func clamp8(v int) uint8 {
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// stripe returns a, or b on every other diagonal band of width period
// (never b when period is 0).
func stripe(x, y, period int, a, b color.RGBA) color.RGBA {
	if period > 0 && ((x+y)/period)%2 == 1 {
		return b
	}
	return a
}

func fillCircle(img *image.RGBA, cx, cy, r float64, c, c2 color.RGBA, period int) {
	b := img.Bounds().Intersect(image.Rect(int(cx-r), int(cy-r), int(cx+r)+1, int(cy+r)+1))
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			ddx, ddy := float64(x)+0.5-cx, float64(y)+0.5-cy
			if ddx*ddx+ddy*ddy <= r*r {
				img.SetRGBA(x, y, stripe(x, y, period, c, c2))
			}
		}
	}
}

func fillRect(img *image.RGBA, x0, y0, x1, y1 int, c, c2 color.RGBA, period int) {
	b := img.Bounds().Intersect(image.Rect(x0, y0, x1, y1))
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			img.SetRGBA(x, y, stripe(x, y, period, c, c2))
		}
	}
}
