package bench

import (
	"context"
	"fmt"
	"slices"

	"tracr/engine"
	"tracr/graph"
	tr "tracr/runtime"
	"tracr/tensor"
	"tracr/transport"
	"tracr/zoo"
)

// comparedCodecs are the encodings compared with raw: those planning
// measures with lossy allowed (runtime.DefaultCodecs, from the codec
// registry), less raw itself.
func comparedCodecs() []transport.CodecSpec {
	var out []transport.CodecSpec
	for _, s := range tr.DefaultCodecs(true) {
		if s != (transport.CodecSpec{Kind: transport.CodecRaw}) {
			out = append(out, s)
		}
	}
	return out
}

// lossyCodecs are the encodings whose top-1 agreement is measured: the
// registry's lossy codecs for tensors of any shape, uncompressed (the
// compressed variants decode to the same values).
func lossyCodecs() []transport.CodecSpec {
	var out []transport.CodecSpec
	for _, k := range transport.Codecs() {
		if k.Lossy() && k.AnyShape() {
			out = append(out, transport.CodecSpec{Kind: k})
		}
	}
	return out
}

// halves is a model split at its middle cut, as two sessions.
type halves struct {
	spec       zoo.Spec
	cut        graph.Cut
	head, tail *engine.Session
}

func (h *halves) close() {
	h.head.Close()
	h.tail.Close()
}

// middle opens a zoo model split at the middle of its cut list (the first
// cut from there on that sends something and is not edge-only).
func middle(ctx context.Context, name string, size int) (*halves, error) {
	data, _, _, err := zoo.ResolveSize(ctx, name, size)
	if err != nil {
		return nil, err
	}
	spec, err := zoo.Describe(name, size)
	if err != nil {
		return nil, err
	}
	m, err := graph.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if _, err := engine.Prepare(ctx, m, 1, nil); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	cuts := graph.Cuts(m)
	n := len(m.Nodes())
	for _, c := range cuts[len(cuts)/2:] {
		if c.ID <= 0 || c.ID >= n || c.Bytes == 0 {
			continue
		}
		split, err := graph.Partition(m, graph.Prefix(c.ID))
		if err != nil {
			return nil, fmt.Errorf("%s cut %d: %w", name, c.ID, err)
		}
		head, err := engine.NewSession(split.Head, oneThread)
		if err != nil {
			return nil, err
		}
		tail, err := engine.NewSession(split.Tail, oneThread)
		if err != nil {
			head.Close()
			return nil, err
		}
		return &halves{spec: spec, cut: c, head: head, tail: tail}, nil
	}
	return nil, fmt.Errorf("%s: no middle cut", name)
}

// images returns the sample photographs and n synthetic images.
func images(n int) ([]zoo.Sample, error) {
	var out []zoo.Sample
	if ds, err := zoo.OpenImageFolder("data/samples", ""); err == nil {
		for i := range ds.Len() {
			s, err := ds.Sample(i)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
	}
	syn := zoo.Synthetic(n, 320, 240, 11)
	for i := range n {
		s, err := syn.Sample(i)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// input pre-processes an image for a zoo model.
func input(spec zoo.Spec, img zoo.Sample) tensor.Tensor {
	var t tensor.Tensor
	if spec.Task == zoo.TaskDetect {
		t, _ = zoo.LetterboxInput(img.Image, spec.ImgSize)
	} else {
		t = zoo.ClassifyInput(img.Image, spec.ImgSize)
	}
	t.Name = spec.InputName
	return t
}

// byName orders ts as the session's inputs want them.
func byName(ts []tensor.Tensor, want []engine.IOInfo) ([]tensor.Tensor, error) {
	out := make([]tensor.Tensor, 0, len(want))
	for _, w := range want {
		i := slices.IndexFunc(ts, func(t tensor.Tensor) bool { return t.Name == w.Name })
		if i < 0 {
			return nil, fmt.Errorf("tail input %q is not a head output", w.Name)
		}
		out = append(out, ts[i])
	}
	return out, nil
}

// roundTrip encodes and decodes each tensor with a codec.
func roundTrip(ts []tensor.Tensor, spec transport.CodecSpec) ([]tensor.Tensor, int64, error) {
	out := make([]tensor.Tensor, len(ts))
	var n int64
	for i, t := range ts {
		w, err := transport.EncodeTensor(t, spec)
		if err != nil {
			return nil, 0, fmt.Errorf("encode %s as %s: %w", t.Name, spec, err)
		}
		n += int64(len(w.Data))
		if out[i], err = transport.DecodeTensor(w, transport.DefaultLimits()); err != nil {
			return nil, 0, fmt.Errorf("decode %s as %s: %w", t.Name, spec, err)
		}
	}
	return out, n, nil
}

// codecs measures byte ratios on YOLOv8n's activations at a middle cut
// and top-1 agreement of lossy codecs with lossless on MobileNetV2.
func (b *bencher) codecs(ctx context.Context) error {
	nSyn := 60
	if b.opts.Quick {
		nSyn = 12
	}
	imgs, err := images(nSyn)
	if err != nil {
		return err
	}
	det, err := middle(ctx, "yolov8n", b.pipelineModel().size)
	if err != nil {
		return err
	}
	defer det.close()
	ratios := map[string][]float64{}
	for _, img := range imgs {
		acts, err := det.head.Run(ctx, []tensor.Tensor{input(det.spec, img)})
		if err != nil {
			return err
		}
		var raw int64
		for _, a := range acts {
			raw += int64(len(a.Data))
		}
		for _, spec := range comparedCodecs() {
			_, n, err := roundTrip(acts, spec)
			if err != nil {
				return err
			}
			ratios[spec.String()] = append(ratios[spec.String()], ratio(float64(raw), float64(n)))
		}
	}
	scope := fmt.Sprintf("%s cut %d", det.spec.Name+fmt.Sprint("@", det.spec.ImgSize), det.cut.ID)
	for _, spec := range comparedCodecs() {
		name := spec.String()
		r := median(ratios[name])
		b.add(Figure{Section: "codec", Scope: scope, Metric: "raw bytes / " + name + " bytes", Value: r, Unit: "x",
			Detail: fmt.Sprintf("%d -> %.0f bytes", det.cut.Bytes, float64(det.cut.Bytes)/r),
			How:    fmt.Sprintf("real activations of %d images (%d photos in data/samples + synthetic), median", len(imgs), len(imgs)-nSyn)})
	}
	return b.agreement(ctx, imgs)
}

// agreement runs MobileNetV2 split at a middle cut over the images, once
// with the crossing tensors as they are and once through each lossy
// codec, and counts equal top-1 classes.
func (b *bencher) agreement(ctx context.Context, imgs []zoo.Sample) error {
	cls, err := middle(ctx, "mobilenetv2", 0)
	if err != nil {
		return err
	}
	defer cls.close()
	agree := map[string]int{}
	top1 := func(ts []tensor.Tensor) (int, error) {
		outs, err := byName(ts, cls.tail.Inputs())
		if err != nil {
			return 0, err
		}
		res, err := cls.tail.Run(ctx, outs)
		if err != nil {
			return 0, err
		}
		logits, err := res[0].Float32s()
		if err != nil {
			return 0, err
		}
		return zoo.TopK(logits, 1, nil)[0].Index, nil
	}
	for _, img := range imgs {
		acts, err := cls.head.Run(ctx, []tensor.Tensor{input(cls.spec, img)})
		if err != nil {
			return err
		}
		want, err := top1(acts)
		if err != nil {
			return err
		}
		for _, spec := range lossyCodecs() {
			dec, _, err := roundTrip(acts, spec)
			if err != nil {
				return err
			}
			got, err := top1(dec)
			if err != nil {
				return err
			}
			if got == want {
				agree[spec.String()]++
			}
		}
	}
	for _, spec := range lossyCodecs() {
		name := spec.String()
		b.add(Figure{Section: "codec", Scope: fmt.Sprintf("mobilenetv2@%d cut %d", cls.spec.ImgSize, cls.cut.ID), Metric: name + " top-1 = lossless top-1",
			Value: float64(agree[name]) / float64(len(imgs)), Unit: "frac", Detail: fmt.Sprintf("%d of %d images", agree[name], len(imgs)),
			How: "tail(decode(encode(head))) vs tail(head); zoo weights are synthetic (deterministic), not trained"})
	}
	return nil
}
