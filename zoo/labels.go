package zoo

import (
	_ "embed"
	"strconv"
	"strings"
)

// The class-name lists are data files so that they can be read and diffed
// as text. imagenet.txt is the Keras/pytorch-hub ImageNet-1k class index
// (index order, underscores written as spaces; "crane" and "maillot" occur
// twice, as in the original). coco.txt is the 80-class COCO detection list
// in the order YOLOv8 predicts it.
var (
	//go:embed labels/imagenet.txt
	imagenetText string
	//go:embed labels/coco.txt
	cocoText string
)

// ImageNetLabels returns the 1000 ImageNet-1k class names in class-index
// order ("tench", "goldfish", "great white shark", ...). The slice is new on
// every call; the caller may modify it.
func ImageNetLabels() []string { return splitLines(imagenetText) }

// COCOLabels returns the 80 COCO class names in the index order of YOLOv8's
// class scores ("person", "bicycle", "car", ...). The slice is new on every
// call; the caller may modify it.
func COCOLabels() []string { return splitLines(cocoText) }

// splitLines returns the non-empty lines of s, without surrounding space.
func splitLines(s string) []string {
	lines := strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// classIndex returns the index of name in labels, comparing without case
// and treating '_' as ' ', and how many labels match: a name that matches
// twice (ImageNet's two "crane" and two "maillot" classes) is ambiguous and
// the caller should ask for the index instead.
func classIndex(labels []string, name string) (index, matches int) {
	key := normLabel(name)
	index = -1
	for i, l := range labels {
		if normLabel(l) == key {
			if matches == 0 {
				index = i
			}
			matches++
		}
	}
	return index, matches
}

func normLabel(s string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), "_", " "))
}

// labelOf returns labels[i], or "class i" when labels has no entry for i.
func labelOf(labels []string, i int) string {
	if i >= 0 && i < len(labels) {
		return labels[i]
	}
	return "class " + strconv.Itoa(i)
}
