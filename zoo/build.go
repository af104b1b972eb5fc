package zoo

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"

	"google.golang.org/protobuf/proto"

	"tracr/graph/onnxpb"
	"tracr/tensor"
)

// builder assembles one ONNX graph node by node. Every tensor it creates has
// a name chosen by the caller (the node name for single-output nodes) and a
// static shape the builder computes, which goes into value_info.
//
// Weights are synthetic, and folding batch normalisation is what keeps them
// sane: as in a trained network, each layer's output is normalised with
// statistics measured on data. The data is a probe, one photo-like
// synthetic image run through the network in Go as it is built (probeAct,
// below), so every layer's pre-activations have a set spread on it and the
// activations stay finite and varied at any depth, on the probe and on
// images like it. The probe has a fixed size per model, so the weights do
// not depend on the requested input size.
//
// A dry builder computes shapes and counts only: no weights, no probe.
//
// Errors are sticky: the first inconsistency (an unknown tensor, a shape
// that does not fit) is kept in err and every later call is a no-op, so the
// model builders read as straight-line code and still never panic.
type builder struct {
	model string // canonical model name; part of every weight's seed
	dry   bool   // record shapes and counts, but generate no weight bytes

	nodes     []*onnxpb.NodeProto
	inits     []*onnxpb.TensorProto
	shapes    map[string]tensor.Shape
	probe     map[string]*probeAct // the probe image's activations, by tensor
	probeSize int                  // side of the probe image
	values    []string             // node outputs, in creation order
	params    int64                // elements of all initialisers
	macs      int64                // multiply-accumulates of Conv and Gemm nodes
	err       error
}

func newBuilder(model string, dry bool, probeSize int) *builder {
	return &builder{
		probeSize: probeSize,
		model:     model,
		dry:       dry,
		shapes:    make(map[string]tensor.Shape),
		probe:     make(map[string]*probeAct),
	}
}

// failf records the first error; later ones are consequences of it.
func (b *builder) failf(format string, args ...any) {
	if b.err == nil {
		b.err = fmt.Errorf("build %s: "+format, append([]any{b.model}, args...)...)
	}
}

// shape returns the shape of a known tensor.
func (b *builder) shape(name string) tensor.Shape {
	s, ok := b.shapes[name]
	if !ok {
		b.failf("unknown tensor %q", name)
	}
	return s
}

// define records a new activation produced by a node, and its probe value
// (nil where the probe is not followed: after the last weights).
func (b *builder) define(name string, s tensor.Shape, p *probeAct) {
	if _, dup := b.shapes[name]; dup {
		b.failf("tensor %q defined twice", name)
		return
	}
	b.shapes[name] = s
	b.values = append(b.values, name)
	if p != nil {
		b.probe[name] = p
	}
}

// node appends one node; the caller defines its outputs.
func (b *builder) node(op, name string, in, out []string, attrs ...*onnxpb.AttributeProto) {
	b.nodes = append(b.nodes, &onnxpb.NodeProto{
		Name:      proto.String(name),
		OpType:    proto.String(op),
		Input:     in,
		Output:    out,
		Attribute: attrs,
	})
}

// input declares the float32 image input [1, 3, size, size] and, unless
// dry, starts the probe with a probeSize image: pixels in [0, 1], or
// ImageNet-normalised when normalised is set.
func (b *builder) input(name string, size int, normalised bool) string {
	b.shapes[name] = tensor.Shape{1, 3, int64(size), int64(size)}
	if !b.dry {
		b.probe[name] = probeImage(b.probeSize, normalised)
	}
	return name
}

// probeOf returns the probe activation of x, which a layer with random
// weights needs to normalise its output.
func (b *builder) probeOf(x string) *probeAct {
	p := b.probe[x]
	if p == nil && !b.dry {
		b.failf("no probe activation for %q", x)
	}
	return p
}

// rename gives the tensor old, which no node reads, the name to: the graph
// outputs have fixed names.
func (b *builder) rename(old, to string) string {
	if b.err != nil {
		return to
	}
	for _, n := range b.nodes {
		for _, in := range n.Input {
			if in == old {
				b.failf("rename %q: it is an input of node %q", old, n.GetName())
				return to
			}
		}
	}
	for i := len(b.nodes) - 1; i >= 0; i-- {
		for j, out := range b.nodes[i].Output {
			if out == old {
				b.nodes[i].Output[j] = to
				b.shapes[to] = b.shapes[old]
				delete(b.shapes, old)
				for k, v := range b.values {
					if v == old {
						b.values[k] = to
					}
				}
				return to
			}
		}
	}
	b.failf("rename %q: no node makes it", old)
	return to
}

// rng returns the generator for one weight tensor. Its seed depends only on
// the model and tensor names, so a tensor's values do not depend on build
// order, image size, or on which other tensors exist.
func (b *builder) rng(tensorName string) *rand.Rand {
	h := sha256.Sum256([]byte("tracr/zoo\x00" + b.model + "\x00" + tensorName))
	return rand.New(rand.NewPCG(binary.LittleEndian.Uint64(h[0:8]), binary.LittleEndian.Uint64(h[8:16])))
}

// uniform returns n values drawn uniformly from [-bound, bound) by the
// generator of tensor name. Only exactly rounded operations are used, so
// the values are the same on every platform.
func (b *builder) uniform(name string, n int, bound float64) []float32 {
	r := b.rng(name)
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(float64(2*r.Float64()-1) * bound)
	}
	return v
}

// initialiser adds a constant tensor holding data (which a dry builder
// ignores; pass nil there).
func (b *builder) initialiser(name string, dt tensor.DType, s tensor.Shape, data []byte) string {
	if _, dup := b.shapes[name]; dup {
		b.failf("tensor %q defined twice", name)
		return name
	}
	n := s.NumElements()
	t := &onnxpb.TensorProto{
		Name:     proto.String(name),
		DataType: proto.Int32(int32(dt)),
		Dims:     append([]int64{}, s...),
	}
	if !b.dry {
		if int64(len(data)) != n*int64(dt.Size()) {
			b.failf("initialiser %q: %d bytes for %s %s", name, len(data), dt, s)
			return name
		}
		t.RawData = data
	}
	b.inits = append(b.inits, t)
	b.shapes[name] = s.Clone()
	b.params += n
	return name
}

// constF32 adds a float32 initialiser holding v (little-endian raw_data).
func (b *builder) constF32(name string, s tensor.Shape, v []float32) string {
	if int64(len(v)) != s.NumElements() {
		b.failf("constant %q: %d values for shape %s", name, len(v), s)
		return name
	}
	var raw []byte
	if !b.dry {
		raw = make([]byte, 4*len(v))
		for i, f := range v {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
		}
	}
	return b.initialiser(name, tensor.Float32, s, raw)
}

// constI64 adds a one-dimensional int64 initialiser holding v.
func (b *builder) constI64(name string, v []int64) string {
	raw := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(x))
	}
	return b.initialiser(name, tensor.Int64, tensor.Shape{int64(len(v))}, raw)
}

func attrInt(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func attrInts(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
}

func attrFloat(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(v)}
}

func attrString(name, v string) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte(v)}
}

// convCfg is one convolution's geometry and output statistics.
type convCfg struct {
	k, stride, pad int
	group          int     // 0 means 1
	gain           float64 // standard deviation of the output on the probe; 0 means 1
	biasMean       float64 // mean of the output on the probe
}

// biasBound is the half-width of the random shift (BN beta) of every
// normalised output: small next to its unit spread.
const biasBound = 0.1

// conv adds a 2-D convolution with synthetic weights and a bias, named name
// (weights name.weight, name.bias), as a PyTorch Conv2d followed by a
// BatchNorm2d exports once the BN is folded in; for the layers that have no
// BN the same normalisation stands in for training.
func (b *builder) conv(name, x string, cout int, c convCfg) string {
	in := b.shape(x)
	if b.err != nil {
		return name
	}
	g := max(c.group, 1)
	if len(in) != 4 || in[1]%int64(g) != 0 || cout%g != 0 {
		b.failf("conv %s: input %s does not fit %d output channels in %d groups", name, in, cout, g)
		return name
	}
	cin := int(in[1])
	wShape := tensor.Shape{int64(cout), int64(cin / g), int64(c.k), int64(c.k)}
	bShape := tensor.Shape{int64(cout)}
	if b.dry {
		w := b.initialiser(name+".weight", tensor.Float32, wShape, nil)
		bias := b.initialiser(name+".bias", tensor.Float32, bShape, nil)
		return b.convWith(name, x, w, bias, c, nil)
	}
	p := b.probeOf(x)
	if p == nil {
		return name
	}
	fanIn := cin / g * c.k * c.k
	raw := zeroSum(b.uniform(name+".weight", cout*fanIn, math.Sqrt(3/float64(fanIn))), cout)
	y := p.conv(raw, cout, c.k, c.stride, c.pad, g)
	scale, shift := b.normalise(name, y, c)
	w := b.initialiser(name+".weight", tensor.Float32, wShape, scaled(raw, scale))
	bias := b.initialiser(name+".bias", tensor.Float32, bShape, float32Bytes(shift))
	return b.convWith(name, x, w, bias, c, y)
}

// normalise folds a batch norm into a layer whose raw output on the probe
// is y: it returns the scale for the weights and the per-channel bias, and
// applies both to y.
//
// The statistics are those of the whole layer, not of each channel: the
// output is centred on the layer's mean and divided by its spread about
// that mean, channels pooled. One probe image cannot tell a channel that
// is quiet, or offset, on that image from one that is so on all images;
// normalising channels one by one fits the probe and makes the layer
// explode on other inputs (deep layers see the probe at a few positions
// only). A single scale keeps the random weights' balance between channels,
// as He initialisation does, and zeroSum already removes the offsets every
// image shares.
func (b *builder) normalise(name string, y *probeAct, c convCfg) (scale float64, shift []float64) {
	const eps = 1e-5
	gain := c.gain
	if gain == 0 {
		gain = 1
	}
	mean, vari := y.channelStats()
	var lm float64 // layer mean
	for _, m := range mean {
		lm += m
	}
	lm /= float64(len(mean))
	var v float64 // layer variance
	for i, m := range mean {
		d := m - lm
		v += vari[i] + float64(d*d)
	}
	v /= float64(len(mean))
	scale = gain / math.Sqrt(v+eps)
	beta := b.uniform(name+".bias", len(mean), biasBound)
	shift = make([]float64, len(mean))
	for i := range mean {
		shift[i] = c.biasMean + float64(beta[i]) - float64(lm*scale)
	}
	y.affine(scale, shift)
	return scale, shift
}

// zeroSum subtracts from each of the rows of w (one per output channel)
// its mean, in place, and returns w. A filter that sums to zero does not
// respond to a constant offset of its input, so a shift in the mean of an
// activation (another image's brightness, the positive mean of ReLU and
// SiLU outputs) does not travel down the network and grow.
func zeroSum(w []float32, rows int) []float32 {
	per := len(w) / rows
	if per == 1 {
		return w // a single weight summing to zero would be zero
	}
	for r := range rows {
		row := w[r*per : (r+1)*per]
		var s float64
		for _, v := range row {
			s += float64(v)
		}
		m := s / float64(per)
		for i, v := range row {
			row[i] = float32(float64(v) - m)
		}
	}
	return w
}

// scaled returns the float32 little-endian bytes of w times scale.
func scaled(w []float32, scale float64) []byte {
	raw := make([]byte, 4*len(w))
	for i, f := range w {
		v := float32(float64(f) * scale)
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return raw
}

// float32Bytes returns v rounded to float32, as little-endian bytes.
func float32Bytes(v []float64) []byte {
	raw := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(float32(f)))
	}
	return raw
}

// convWith adds a Conv node using existing weight (and optional bias)
// initialisers; p is its output on the probe, if followed.
func (b *builder) convWith(name, x, w, bias string, c convCfg, p *probeAct) string {
	in, ws := b.shape(x), b.shape(w)
	if b.err != nil {
		return name
	}
	g := max(c.group, 1)
	if len(in) != 4 || len(ws) != 4 || ws[1]*int64(g) != in[1] || ws[2] != int64(c.k) || ws[3] != int64(c.k) {
		b.failf("conv %s: weight %s does not fit input %s", name, ws, in)
		return name
	}
	h := (in[2]+2*int64(c.pad)-int64(c.k))/int64(c.stride) + 1
	wd := (in[3]+2*int64(c.pad)-int64(c.k))/int64(c.stride) + 1
	if h < 1 || wd < 1 {
		b.failf("conv %s: input %s is too small for kernel %d", name, in, c.k)
		return name
	}
	inputs := []string{x, w}
	if bias != "" {
		inputs = append(inputs, bias)
	}
	pad := int64(c.pad)
	b.node("Conv", name, inputs, []string{name},
		attrInts("dilations", 1, 1),
		attrInt("group", int64(g)),
		attrInts("kernel_shape", int64(c.k), int64(c.k)),
		attrInts("pads", pad, pad, pad, pad),
		attrInts("strides", int64(c.stride), int64(c.stride)))
	out := tensor.Shape{in[0], ws[0], h, wd}
	b.macs += out.NumElements() * ws[1] * ws[2] * ws[3]
	b.define(name, out, p)
	return name
}

// gemm adds a fully connected layer y = x W^T + c on a [1, in] input, with
// W stored [out, in] as in PyTorch, normalised on the probe like a conv.
func (b *builder) gemm(name, x string, out int, gain float64) string {
	in := b.shape(x)
	if b.err != nil {
		return name
	}
	if len(in) != 2 {
		b.failf("gemm %s: input %q is %s, not [N, features]", name, x, in)
		return name
	}
	wShape, cShape := tensor.Shape{int64(out), in[1]}, tensor.Shape{int64(out)}
	var w, c string
	var y *probeAct
	if b.dry {
		w = b.initialiser(name+".weight", tensor.Float32, wShape, nil)
		c = b.initialiser(name+".bias", tensor.Float32, cShape, nil)
	} else {
		p := b.probeOf(x)
		if p == nil {
			return name
		}
		if int64(len(p.v)) != in[1] {
			b.failf("gemm %s: probe has %d features, the layer %d", name, len(p.v), in[1])
			return name
		}
		raw := zeroSum(b.uniform(name+".weight", out*int(in[1]), math.Sqrt(3/float64(in[1]))), out)
		y = p.conv(raw, out, 1, 1, 0, 1)
		scale, shift := b.normalise(name, y, convCfg{gain: gain})
		w = b.initialiser(name+".weight", tensor.Float32, wShape, scaled(raw, scale))
		c = b.initialiser(name+".bias", tensor.Float32, cShape, float32Bytes(shift))
	}
	b.node("Gemm", name, []string{x, w, c}, []string{name},
		attrFloat("alpha", 1), attrFloat("beta", 1), attrInt("transB", 1))
	b.macs += in[0] * in[1] * int64(out)
	b.define(name, tensor.Shape{in[0], int64(out)}, y)
	return name
}

// unary adds a one-input, shape-preserving node; f, if given, follows it
// on the probe.
func (b *builder) unary(op, name, x string, f func(float32) float32, attrs ...*onnxpb.AttributeProto) string {
	s := b.shape(x)
	if b.err != nil {
		return name
	}
	b.node(op, name, []string{x}, []string{name}, attrs...)
	var p *probeAct
	if q := b.probe[x]; q != nil && f != nil {
		p = q.apply(f)
	}
	b.define(name, s.Clone(), p)
	return name
}

func (b *builder) relu(name, x string) string {
	return b.unary("Relu", name, x, func(v float32) float32 { return max(v, 0) })
}

// relu6 is torchvision's ReLU6, exported as Clip(x, 0, 6). The bounds are
// shared initialisers.
func (b *builder) relu6(name, x string) string {
	s := b.shape(x)
	if b.err != nil {
		return name
	}
	lo, hi := "relu6.min", "relu6.max"
	if _, ok := b.shapes[lo]; !ok {
		b.constF32(lo, tensor.Shape{}, []float32{0})
		b.constF32(hi, tensor.Shape{}, []float32{6})
	}
	b.node("Clip", name, []string{x, lo, hi}, []string{name})
	var p *probeAct
	if q := b.probe[x]; q != nil {
		p = q.apply(func(v float32) float32 { return min(max(v, 0), 6) })
	}
	b.define(name, s.Clone(), p)
	return name
}

// silu adds SiLU as x*Sigmoid(x), the way PyTorch exports it; name is the
// Mul, name+".sigmoid" the Sigmoid.
func (b *builder) silu(name, x string) string {
	sig := b.unary("Sigmoid", name+".sigmoid", x, probeSigmoid)
	s := b.shape(x)
	if b.err != nil {
		return name
	}
	b.node("Mul", name, []string{x, sig}, []string{name})
	var p *probeAct
	if q := b.probe[x]; q != nil {
		p = q.apply(func(v float32) float32 { return v * probeSigmoid(v) })
	}
	b.define(name, s.Clone(), p)
	return name
}

// broadcastShapes returns the NumPy-style broadcast of two shapes.
func broadcastShapes(a, c tensor.Shape) (tensor.Shape, bool) {
	n := max(len(a), len(c))
	out := make(tensor.Shape, n)
	for i := range n {
		da, dc := int64(1), int64(1)
		if j := len(a) - n + i; j >= 0 {
			da = a[j]
		}
		if j := len(c) - n + i; j >= 0 {
			dc = c[j]
		}
		switch {
		case da == dc || dc == 1:
			out[i] = da
		case da == 1:
			out[i] = dc
		default:
			return nil, false
		}
	}
	return out, true
}

// binary adds an element-wise two-input node (Add, Sub, Mul, Div). Only a
// residual Add of equal shapes is followed on the probe.
func (b *builder) binary(op, name, x, y string) string {
	sx, sy := b.shape(x), b.shape(y)
	if b.err != nil {
		return name
	}
	s, ok := broadcastShapes(sx, sy)
	if !ok {
		b.failf("%s %s: shapes %s and %s do not broadcast", op, name, sx, sy)
		return name
	}
	b.node(op, name, []string{x, y}, []string{name})
	var p *probeAct
	if px, py := b.probe[x], b.probe[y]; op == "Add" && px != nil && py != nil && sx.Equal(sy) {
		p = px.add(py)
	}
	b.define(name, s, p)
	return name
}

// add is a residual Add of two tensors of one shape.
func (b *builder) add(name, x, y string) string {
	return b.binary("Add", name, x, y)
}

// maxPool adds a MaxPool node.
func (b *builder) maxPool(name, x string, k, stride, pad int) string {
	in := b.shape(x)
	if b.err != nil {
		return name
	}
	h := (in[2]+2*int64(pad)-int64(k))/int64(stride) + 1
	w := (in[3]+2*int64(pad)-int64(k))/int64(stride) + 1
	if h < 1 || w < 1 {
		b.failf("MaxPool %s: input %s is too small for kernel %d", name, in, k)
		return name
	}
	p := int64(pad)
	b.node("MaxPool", name, []string{x}, []string{name},
		attrInts("kernel_shape", int64(k), int64(k)),
		attrInts("pads", p, p, p, p),
		attrInts("strides", int64(stride), int64(stride)))
	var out *probeAct
	if q := b.probe[x]; q != nil {
		out = q.maxPool(k, stride, pad)
	}
	b.define(name, tensor.Shape{in[0], in[1], h, w}, out)
	return name
}

// globalAvgPool averages each channel to [N, C, 1, 1].
func (b *builder) globalAvgPool(name, x string) string {
	in := b.shape(x)
	if b.err != nil {
		return name
	}
	b.node("GlobalAveragePool", name, []string{x}, []string{name})
	var p *probeAct
	if q := b.probe[x]; q != nil {
		p = q.globalAvg()
	}
	b.define(name, tensor.Shape{in[0], in[1], 1, 1}, p)
	return name
}

// flatten reshapes [N, ...] to [N, prod(...)]. For one image in
// channel-major order that is the same sequence of values.
func (b *builder) flatten(name, x string) string {
	in := b.shape(x)
	if b.err != nil {
		return name
	}
	b.node("Flatten", name, []string{x}, []string{name}, attrInt("axis", 1))
	var p *probeAct
	if q := b.probe[x]; q != nil {
		p = &probeAct{c: len(q.v), h: 1, w: 1, v: q.v}
	}
	b.define(name, tensor.Shape{in[0], tensor.Shape(in[1:]).NumElements()}, p)
	return name
}

// concat joins tensors along axis; channel concatenation is followed on
// the probe.
func (b *builder) concat(name string, axis int, xs ...string) string {
	if len(xs) == 0 {
		b.failf("concat %s: no inputs", name)
	}
	if b.err != nil {
		return name
	}
	out := b.shape(xs[0]).Clone()
	if axis < 0 || axis >= len(out) {
		b.failf("concat %s: axis %d of %s", name, axis, out)
		return name
	}
	out[axis] = 0
	probes := make([]*probeAct, 0, len(xs))
	for _, x := range xs {
		s := b.shape(x)
		if b.err != nil {
			return name
		}
		for i := range s {
			if i != axis && (len(s) != len(out) || s[i] != out[i]) {
				b.failf("concat %s: %q is %s, does not fit %s on axis %d", name, x, s, out, axis)
				return name
			}
		}
		out[axis] += s[axis]
		if p := b.probe[x]; p != nil && axis == 1 {
			probes = append(probes, p)
		}
	}
	b.node("Concat", name, xs, []string{name}, attrInt("axis", int64(axis)))
	var p *probeAct
	if len(probes) == len(xs) {
		p = concatProbes(probes)
	}
	b.define(name, out, p)
	return name
}

// split cuts x along axis into pieces of the given sizes, named name.0,
// name.1, ...; the sizes are an initialiser name+".sizes".
func (b *builder) split(name, x string, axis int, sizes ...int64) []string {
	in := b.shape(x)
	outs := make([]string, len(sizes))
	for i := range sizes {
		outs[i] = fmt.Sprintf("%s.%d", name, i)
	}
	if b.err != nil {
		return outs
	}
	if axis < 0 || axis >= len(in) {
		b.failf("split %s: axis %d of %s", name, axis, in)
		return outs
	}
	var total int64
	for _, s := range sizes {
		total += s
	}
	if total != in[axis] {
		b.failf("split %s: sizes %v do not add up to %d", name, sizes, in[axis])
		return outs
	}
	sz := b.constI64(name+".sizes", sizes)
	b.node("Split", name, []string{x, sz}, outs, attrInt("axis", int64(axis)))
	q := b.probe[x]
	first := 0
	for i, o := range outs {
		s := in.Clone()
		s[axis] = sizes[i]
		var p *probeAct
		if q != nil && axis == 1 {
			p = q.channels(first, first+int(sizes[i]))
		}
		first += int(sizes[i])
		b.define(o, s, p)
	}
	return outs
}

// upsample2x is nn.Upsample(scale_factor=2, mode="nearest") as PyTorch
// exports it: Resize with scales [1, 1, 2, 2], no roi.
func (b *builder) upsample2x(name, x string) string {
	in := b.shape(x)
	if b.err != nil {
		return name
	}
	sc := b.constF32(name+".scales", tensor.Shape{4}, []float32{1, 1, 2, 2})
	b.node("Resize", name, []string{x, "", sc}, []string{name},
		attrString("coordinate_transformation_mode", "asymmetric"),
		attrString("mode", "nearest"),
		attrString("nearest_mode", "floor"))
	var p *probeAct
	if q := b.probe[x]; q != nil {
		p = q.upsample2x()
	}
	b.define(name, tensor.Shape{in[0], in[1], 2 * in[2], 2 * in[3]}, p)
	return name
}

// reshape reshapes x to the static shape to, given as an initialiser.
func (b *builder) reshape(name, x string, to tensor.Shape) string {
	in := b.shape(x)
	if b.err != nil {
		return name
	}
	if in.NumElements() != to.NumElements() {
		b.failf("reshape %s: %s does not reshape to %s", name, in, to)
		return name
	}
	s := b.constI64(name+".shape", to)
	b.node("Reshape", name, []string{x, s}, []string{name})
	b.define(name, to.Clone(), nil)
	return name
}

// transpose permutes the axes of x.
func (b *builder) transpose(name, x string, perm ...int64) string {
	in := b.shape(x)
	if b.err != nil {
		return name
	}
	if len(perm) != len(in) {
		b.failf("transpose %s: perm %v for shape %s", name, perm, in)
		return name
	}
	out := make(tensor.Shape, len(in))
	for i, p := range perm {
		out[i] = in[p]
	}
	b.node("Transpose", name, []string{x}, []string{name}, attrInts("perm", perm...))
	b.define(name, out, nil)
	return name
}

// modelProto wraps the graph in a ModelProto (IR 8, opset 17). Every node
// output that is not a graph output gets a value_info with its computed
// shape.
func (b *builder) modelProto(doc string, inputs, outputs []string, meta [][2]string) (*onnxpb.ModelProto, error) {
	for _, o := range outputs {
		b.shape(o)
	}
	for _, in := range inputs {
		b.shape(in)
	}
	if b.err != nil {
		return nil, b.err
	}
	isOut := make(map[string]bool, len(outputs))
	g := &onnxpb.GraphProto{
		Name:        proto.String(b.model),
		Node:        b.nodes,
		Initializer: b.inits,
	}
	for _, in := range inputs {
		g.Input = append(g.Input, valueInfo(in, b.shapes[in]))
	}
	for _, o := range outputs {
		isOut[o] = true
		g.Output = append(g.Output, valueInfo(o, b.shapes[o]))
	}
	for _, v := range b.values {
		if !isOut[v] {
			g.ValueInfo = append(g.ValueInfo, valueInfo(v, b.shapes[v]))
		}
	}
	m := &onnxpb.ModelProto{
		IrVersion:       proto.Int64(8),
		ProducerName:    proto.String("tracr"),
		ProducerVersion: proto.String(fmt.Sprintf("zoo-v%d", builderVersion)),
		ModelVersion:    proto.Int64(builderVersion),
		DocString:       proto.String(doc),
		Graph:           g,
		OpsetImport:     []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}},
	}
	for _, kv := range meta {
		m.MetadataProps = append(m.MetadataProps, &onnxpb.StringStringEntryProto{Key: proto.String(kv[0]), Value: proto.String(kv[1])})
	}
	return m, nil
}

// valueInfo describes a float32 tensor of static shape s.
func valueInfo(name string, s tensor.Shape) *onnxpb.ValueInfoProto {
	dims := make([]*onnxpb.TensorShapeProto_Dimension, len(s))
	for i, d := range s {
		dims[i] = &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}}
	}
	return &onnxpb.ValueInfoProto{
		Name: proto.String(name),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: proto.Int32(int32(tensor.Float32)),
			Shape:    &onnxpb.TensorShapeProto{Dim: dims},
		}}},
	}
}

// probeAct is one image's activation on the probe, channel-major [c][h][w].
//
// The probe must give the same numbers on every platform, or the weights
// (and the cached files) would differ between the edge and the server.
// So it uses only exactly rounded IEEE operations: float32 products
// accumulated in float64 (exact products, so a fused multiply-add changes
// nothing), explicit conversions wherever Go could otherwise fuse a multiply
// and an add, a fixed summation order, and its own exp (math.Exp has
// per-architecture assembly).
type probeAct struct {
	c, h, w int
	v       []float32
}

func newProbeAct(c, h, w int) *probeAct {
	return &probeAct{c: c, h: h, w: w, v: make([]float32, c*h*w)}
}

// plane returns channel i.
func (a *probeAct) plane(i int) []float32 { return a.v[i*a.h*a.w : (i+1)*a.h*a.w] }

// probeImage is the probe input, made to have the statistics of a photo:
// the sum of random blocks at every octave from 64 down to 2 pixels, with
// equal amplitude per octave (the 1/f spectrum of natural images), plus
// pixel noise, per colour channel partly shared (colours are correlated),
// with mean about 0.45 and standard deviation about 0.25 in [0, 1], or
// ImageNet-normalised.
func probeImage(size int, normalised bool) *probeAct {
	return naturalImage(size, normalised, 0x70726f6265) // "probe"
}

// naturalImage is probeImage with another seed.
func naturalImage(size int, normalised bool, seed uint64) *probeAct {
	r := rand.New(rand.NewPCG(0x7472616372, seed)) // "tracr", seed
	a := newProbeAct(3, size, size)
	grey := make([]float64, size*size)
	for cell := 64; cell >= 1; cell /= 2 {
		addBlocks(grey, size, cell, r)
	}
	for c := range 3 {
		tint := make([]float64, size*size)
		for cell := 64; cell >= 1; cell /= 2 {
			addBlocks(tint, size, cell, r)
		}
		p := a.plane(c)
		for i := range p {
			// Octaves of unit-variance noise: 7 of them, so /sqrt(7)
			// makes unit variance again; 0.8 grey and 0.6 tint keep
			// it there.
			v := float64(0.8*grey[i]) + float64(0.6*tint[i])
			v = 0.45 + float64(0.25*v)/math.Sqrt(7)
			v = min(max(v, 0), 1)
			if normalised {
				v = (v - 0.45) / 0.225
			}
			p[i] = float32(v)
		}
	}
	return a
}

// addBlocks adds to img (size x size) random blocks of cell x cell pixels,
// each uniform with unit variance.
func addBlocks(img []float64, size, cell int, r *rand.Rand) {
	n := (size + cell - 1) / cell
	vals := make([]float64, n*n)
	for i := range vals {
		vals[i] = float64(2*r.Float64()-1) * math.Sqrt(3)
	}
	for y := range size {
		for x := range size {
			img[y*size+x] += vals[(y/cell)*n+x/cell]
		}
	}
}

// conv convolves a with weights w [cout][c/group][k][k] (no bias) and
// returns the raw output. Output channels are computed in parallel; each
// is summed in a fixed order, so the result does not depend on scheduling.
//
// The probe pads by wrapping around, as if the image were periodic, where
// the model pads with zeros. The probe is small, and in its deep layers
// most positions would touch a zero border; their activations come out
// weaker than anywhere inside a full-size image, and weights normalised on
// them are too large. Wrapping makes every position an inner one.
func (a *probeAct) conv(w []float32, cout, k, stride, pad, group int) *probeAct {
	if a.h == 1 && a.w == 1 && k == 1 && group == 1 {
		return a.dense(w, cout)
	}
	oh := (a.h+2*pad-k)/stride + 1
	ow := (a.w+2*pad-k)/stride + 1
	rows, cols := wrapTaps(oh, a.h, k, stride, pad), wrapTaps(ow, a.w, k, stride, pad)
	out := newProbeAct(cout, oh, ow)
	cin := a.c / group
	perGroup := cout / group
	probeParallel(cout, func(o int) {
		acc := make([]float64, oh*ow)
		g := o / perGroup
		for i := range cin {
			in := a.plane(g*cin + i)
			for ky := range k {
				for kx := range k {
					wv := float64(w[((o*cin+i)*k+ky)*k+kx])
					for oy, iy := range rows[ky] {
						row := in[iy*a.w : (iy+1)*a.w]
						dst := acc[oy*ow : (oy+1)*ow]
						for ox, ix := range cols[kx] {
							dst[ox] += wv * float64(row[ix])
						}
					}
				}
			}
		}
		p := out.plane(o)
		for j, v := range acc {
			p[j] = float32(v)
		}
	})
	return out
}

// wrapTaps returns, for each kernel offset, the input index every output
// index reads along one axis of n, wrapping around the edges.
func wrapTaps(outN, n, k, stride, pad int) [][]int {
	taps := make([][]int, k)
	for j := range k {
		taps[j] = make([]int, outN)
		for o := range outN {
			taps[j][o] = ((o*stride+j-pad)%n + n) % n
		}
	}
	return taps
}

// dense is conv for a 1x1 input: a matrix-vector product, w [cout][a.c].
func (a *probeAct) dense(w []float32, cout int) *probeAct {
	out := newProbeAct(cout, 1, 1)
	probeParallel(cout, func(o int) {
		row := w[o*a.c : (o+1)*a.c]
		var s float64
		for i, x := range a.v {
			s += float64(row[i]) * float64(x)
		}
		out.v[o] = float32(s)
	})
	return out
}

// probeParallel calls f(0..n-1), spread over the available CPUs.
func probeParallel(n int, f func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				f(i)
			}
		})
	}
	wg.Wait()
}

// channelStats returns the mean and variance of each channel.
func (a *probeAct) channelStats() (mean, vari []float64) {
	mean = make([]float64, a.c)
	vari = make([]float64, a.c)
	n := float64(a.h * a.w)
	for i := range a.c {
		var s float64
		p := a.plane(i)
		for _, v := range p {
			s += float64(v)
		}
		m := s / n
		var q float64
		for _, v := range p {
			d := float64(v) - m
			q += float64(d * d)
		}
		mean[i], vari[i] = m, q/n
	}
	return mean, vari
}

// affine sets each channel i to v*scale + shift[i], in place.
func (a *probeAct) affine(scale float64, shift []float64) {
	for i := range a.c {
		p := a.plane(i)
		for j, v := range p {
			p[j] = float32(float64(float64(v)*scale) + shift[i])
		}
	}
}

// apply returns f of every element.
func (a *probeAct) apply(f func(float32) float32) *probeAct {
	out := newProbeAct(a.c, a.h, a.w)
	for i, v := range a.v {
		out.v[i] = f(v)
	}
	return out
}

// add returns a + o, of the same shape.
func (a *probeAct) add(o *probeAct) *probeAct {
	out := newProbeAct(a.c, a.h, a.w)
	for i := range a.v {
		out.v[i] = a.v[i] + o.v[i]
	}
	return out
}

// maxPool is a k x k max pool, wrapping around the edges as conv does.
func (a *probeAct) maxPool(k, stride, pad int) *probeAct {
	oh := (a.h+2*pad-k)/stride + 1
	ow := (a.w+2*pad-k)/stride + 1
	rows, cols := wrapTaps(oh, a.h, k, stride, pad), wrapTaps(ow, a.w, k, stride, pad)
	out := newProbeAct(a.c, oh, ow)
	for i := range a.c {
		in, dst := a.plane(i), out.plane(i)
		for oy := range oh {
			for ox := range ow {
				m := float32(math.Inf(-1))
				for ky := range k {
					for kx := range k {
						m = max(m, in[rows[ky][oy]*a.w+cols[kx][ox]])
					}
				}
				dst[oy*ow+ox] = m
			}
		}
	}
	return out
}

// globalAvg averages each channel.
func (a *probeAct) globalAvg() *probeAct {
	out := newProbeAct(a.c, 1, 1)
	mean, _ := a.channelStats()
	for i, m := range mean {
		out.v[i] = float32(m)
	}
	return out
}

// concatProbes stacks activations of one spatial size along channels.
func concatProbes(ps []*probeAct) *probeAct {
	c := 0
	for _, p := range ps {
		c += p.c
	}
	out := &probeAct{c: c, h: ps[0].h, w: ps[0].w, v: make([]float32, 0, c*ps[0].h*ps[0].w)}
	for _, p := range ps {
		out.v = append(out.v, p.v...)
	}
	return out
}

// channels returns channels lo..hi-1 (sharing memory with a).
func (a *probeAct) channels(lo, hi int) *probeAct {
	return &probeAct{c: hi - lo, h: a.h, w: a.w, v: a.v[lo*a.h*a.w : hi*a.h*a.w]}
}

// upsample2x repeats every pixel in a 2x2 block.
func (a *probeAct) upsample2x() *probeAct {
	out := newProbeAct(a.c, 2*a.h, 2*a.w)
	for i := range a.c {
		in, dst := a.plane(i), out.plane(i)
		for y := range 2 * a.h {
			for x := range 2 * a.w {
				dst[y*2*a.w+x] = in[(y/2)*a.w+x/2]
			}
		}
	}
	return out
}

func probeSigmoid(v float32) float32 {
	return float32(1 / (1 + probeExp(-float64(v))))
}

// probeExp is e^x from exactly rounded operations only: x = k ln2 + r with
// |r| <= ln2/2, a degree-13 Taylor polynomial for e^r (error below 1e-15),
// scaled by 2^k.
func probeExp(x float64) float64 {
	const (
		ln2Hi = 6.93147180369123816490e-01 // ln 2, high bits (k*ln2Hi is exact)
		ln2Lo = 1.90821492927058770002e-10 // ln 2 - ln2Hi
		log2e = 1.44269504088896338700e+00
	)
	switch {
	case x > 709:
		return math.Inf(1)
	case x < -745:
		return 0
	}
	k := math.Floor(float64(x*log2e) + 0.5)
	r := float64(x-float64(k*ln2Hi)) - float64(k*ln2Lo)
	p := 1.0
	for n := 13; n >= 1; n-- {
		p = float64(p*r)/float64(n) + 1
	}
	return math.Ldexp(p, int(k))
}
