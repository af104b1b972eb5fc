package zoo

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"

	"tracr/tensor"
)

// Class is one entry of a classifier's ranking: class index, its name and
// its softmax probability.
type Class struct {
	Index int
	Label string
	Prob  float32
}

// TopK returns the k most probable classes of a classifier's logits, most
// probable first (ties by lower index). Probabilities are a softmax over all
// logits, computed in float64 after subtracting the largest logit so that
// large logits cannot overflow. A NaN logit counts as probability 0. Labels
// come from labels, or read "class N" past its end. k is capped at
// len(logits); k <= 0 gives nil.
func TopK(logits []float32, k int, labels []string) []Class {
	k = min(k, len(logits))
	if k <= 0 {
		return nil
	}
	maxv := math.Inf(-1)
	for _, v := range logits {
		if f := float64(v); f > maxv {
			maxv = f
		}
	}
	if math.IsInf(maxv, 0) {
		// All -Inf or NaN, or a +Inf logit: no finite shift exists. Rank +Inf
		// logits equally, and everything equally when there is none.
		return topKDegenerate(logits, k, labels, maxv)
	}
	var sum float64
	for _, v := range logits {
		if f := float64(v); !math.IsNaN(f) {
			sum += math.Exp(f - maxv)
		}
	}
	// Keep the k best in a small sorted slice: k is tiny next to 1000
	// classes, so insertion beats sorting everything.
	top := make([]Class, 0, k)
	for i, v := range logits {
		f := float64(v)
		if math.IsNaN(f) {
			f = math.Inf(-1)
		}
		p := float32(math.Exp(f-maxv) / sum)
		if len(top) == k && p <= top[k-1].Prob {
			continue
		}
		j := sort.Search(len(top), func(j int) bool { return top[j].Prob < p })
		if len(top) < k {
			top = append(top, Class{})
		}
		copy(top[j+1:], top[j:len(top)-1])
		top[j] = Class{Index: i, Label: labelOf(labels, i), Prob: p}
	}
	return top
}

// topKDegenerate ranks logits whose maximum is infinite: the +Inf ones
// share the probability, or all share it when none is finite.
func topKDegenerate(logits []float32, k int, labels []string, maxv float64) []Class {
	winners := 0
	for _, v := range logits {
		if float64(v) == maxv && maxv > 0 {
			winners++
		}
	}
	out := make([]Class, 0, k)
	for i, v := range logits {
		var p float32
		switch {
		case winners > 0 && float64(v) == maxv:
			p = 1 / float32(winners)
		case winners == 0:
			p = 1 / float32(len(logits))
		}
		out = append(out, Class{Index: i, Label: labelOf(labels, i), Prob: p})
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].Prob > out[b].Prob })
	return out[:k]
}

// Box is one detection in source-image pixels: corners (X1,Y1) top-left and
// (X2,Y2) bottom-right, the class and its name, and the class score.
type Box struct {
	X1, Y1, X2, Y2 float64
	Class          int
	Label          string
	Score          float32
}

// MaxDetections is the most boxes DecodeYOLO returns, as in Ultralytics.
const MaxDetections = 300

// IoU returns the intersection over union of the areas of a and b: 0 for
// disjoint or degenerate boxes, 1 for identical ones.
func IoU(a, b Box) float64 {
	iw := math.Min(a.X2, b.X2) - math.Max(a.X1, b.X1)
	ih := math.Min(a.Y2, b.Y2) - math.Max(a.Y1, b.Y1)
	if !(iw > 0 && ih > 0) {
		return 0
	}
	inter := iw * ih
	union := (a.X2-a.X1)*(a.Y2-a.Y1) + (b.X2-b.X1)*(b.Y2-b.Y1) - inter
	if !(union > 0) {
		return 0
	}
	return inter / union
}

// DecodeYOLO turns the raw output of a YOLOv8 detector into boxes in source
// pixels. out is float32 [1, 4+nc, N]: for each of the N anchors, rows 0-3
// hold the box centre and size (cx, cy, w, h) in letterboxed input pixels
// and rows 4.. the nc class scores, already passed through a sigmoid. Each
// anchor keeps its best class if that score is at least conf; the survivors
// go through class-wise greedy non-maximum suppression (a box is dropped
// when its IoU with a better-scored kept box of the same class exceeds iou;
// boxes of different classes never suppress each other). Kept boxes are
// mapped through lb to the source image and clamped to its borders (a box
// left with no area, one wholly in the letterbox border, is dropped). The
// result is sorted by score, best first, and holds at most MaxDetections
// boxes. Labels come from labels, or read "class N" past its end.
func DecodeYOLO(out tensor.Tensor, lb Letterbox, conf, iou float64, labels []string) ([]Box, error) {
	nc, n, err := yoloShape(out)
	if err != nil {
		return nil, err
	}
	if !(conf >= 0 && conf <= 1) {
		return nil, fmt.Errorf("yolo decode: confidence threshold %v outside [0,1]", conf)
	}
	if !(iou >= 0 && iou <= 1) {
		return nil, fmt.Errorf("yolo decode: IoU threshold %v outside [0,1]", iou)
	}
	if !(lb.Scale > 0) || lb.SrcW <= 0 || lb.SrcH <= 0 {
		return nil, fmt.Errorf("yolo decode: letterbox %+v does not describe an image", lb)
	}
	at := func(row, col int) float32 {
		return math.Float32frombits(binary.LittleEndian.Uint32(out.Data[4*(row*n+col):]))
	}
	// Best class per anchor. Rows are contiguous over anchors, so walk a
	// class row at a time rather than an anchor at a time.
	best := make([]float32, n)
	bestClass := make([]int, n)
	for a := range best {
		best[a] = float32(math.Inf(-1))
	}
	for c := 0; c < nc; c++ {
		for a := 0; a < n; a++ {
			if s := at(4+c, a); s > best[a] {
				best[a], bestClass[a] = s, c
			}
		}
	}
	var cands []Box
	for a := 0; a < n; a++ {
		s := best[a]
		if !(float64(s) >= conf) {
			continue
		}
		cx, cy, w, h := float64(at(0, a)), float64(at(1, a)), float64(at(2, a)), float64(at(3, a))
		if !(w > 0 && h > 0) || math.IsInf(cx+cy+w+h, 0) || math.IsNaN(cx+cy) {
			continue
		}
		cands = append(cands, Box{X1: cx - w/2, Y1: cy - h/2, X2: cx + w/2, Y2: cy + h/2, Class: bestClass[a], Score: s})
	}
	// Stable, so equal scores keep anchor order and results are repeatable.
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].Score > cands[j].Score })
	kept := nmsByClass(cands, iou, MaxDetections)
	boxes := kept[:0]
	for _, b := range kept {
		b.X1, b.Y1 = lb.ToSource(b.X1, b.Y1)
		b.X2, b.Y2 = lb.ToSource(b.X2, b.Y2)
		if b.X2 <= b.X1 || b.Y2 <= b.Y1 {
			continue // wholly in the letterbox border: nothing of the image
		}
		b.Label = labelOf(labels, b.Class)
		boxes = append(boxes, b)
	}
	return boxes, nil
}

// yoloShape checks that t is a float32 [1, 4+nc, N] tensor with its data
// and returns nc and N.
func yoloShape(t tensor.Tensor) (nc, n int, err error) {
	if t.DType != tensor.Float32 {
		return 0, 0, fmt.Errorf("yolo output %q: dtype %s, want float32", t.Name, t.DType)
	}
	s := t.Shape
	if len(s) != 3 || s[0] != 1 || s[1] < 5 || s[2] < 0 {
		return 0, 0, fmt.Errorf("yolo output %q: shape %s, want [1,4+classes,anchors] with at least one class", t.Name, s)
	}
	if err := t.Validate(); err != nil {
		return 0, 0, fmt.Errorf("yolo output: %w", err)
	}
	return int(s[1]) - 4, int(s[2]), nil
}

// nmsByClass greedily keeps boxes in the given (score-descending) order,
// dropping any whose IoU with an already kept box of its class exceeds
// thresh, and stops after limit boxes.
func nmsByClass(sorted []Box, thresh float64, limit int) []Box {
	var kept []Box
	byClass := make(map[int][]int) // class -> indices into kept
	for _, b := range sorted {
		if len(kept) == limit {
			break
		}
		suppressed := false
		for _, k := range byClass[b.Class] {
			if IoU(b, kept[k]) > thresh {
				suppressed = true
				break
			}
		}
		if !suppressed {
			byClass[b.Class] = append(byClass[b.Class], len(kept))
			kept = append(kept, b)
		}
	}
	return kept
}
