package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	_ "image/png"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"tracr/internal/orttest"

	"github.com/klauspost/compress/zstd"

	"tracr/engine"
	"tracr/graph"
	"tracr/tensor"
	"tracr/zoo"
)

// requireORT skips or fails the test without ONNX Runtime (orttest.Require).
func requireORT(t testing.TB) { orttest.Require(t) }

// sampleImage is a real photograph from the repository's samples.
func sampleImage(t testing.TB) image.Image {
	t.Helper()
	f, err := os.Open("../data/samples/astronaut.png")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

type activationKey struct {
	size int
}

var activations sync.Map // activationKey -> func() ([]tensor.Tensor, error)

// activation returns the crossing tensors of the built-in YOLOv8n at input
// side size, cut in the middle of its canonical order and run on a real
// photograph: the tensors the edge really sends. Computed once per size.
func activation(t testing.TB, size int) []tensor.Tensor {
	t.Helper()
	requireORT(t)
	f, _ := activations.LoadOrStore(activationKey{size}, sync.OnceValues(func() ([]tensor.Tensor, error) {
		return computeActivation(size, sampleImage(t))
	}))
	ts, err := f.(func() ([]tensor.Tensor, error))()
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func computeActivation(size int, img image.Image) ([]tensor.Tensor, error) {
	data, _, err := zoo.Build("yolov8n", size)
	if err != nil {
		return nil, err
	}
	m, err := graph.Parse(data)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	if _, err := engine.Prepare(ctx, m, 1, nil); err != nil {
		return nil, err
	}
	split, err := graph.Partition(m, graph.Prefix(len(m.Nodes())/2))
	if err != nil {
		return nil, err
	}
	head, err := engine.NewSession(split.Head, engine.Options{Threads: 1})
	if err != nil {
		return nil, err
	}
	defer head.Close()
	in, _ := zoo.LetterboxInput(img, size)
	in.Name = head.Inputs()[0].Name
	return head.Run(ctx, []tensor.Tensor{in})
}

// randomActivation is float32 data shaped like a post-SiLU activation: many
// values near zero, a long positive tail, a few negatives down to -0.28.
func randomActivation(name string, shape tensor.Shape, seed uint64) tensor.Tensor {
	r := rand.New(rand.NewPCG(seed, 1))
	v := make([]float32, shape.NumElements())
	for i := range v {
		x := r.NormFloat64() * 2
		v[i] = float32(x / (1 + math.Exp(-x)))
	}
	return tensor.FromFloat32(name, shape, v)
}

func mustRandom(t testing.TB, name string, d tensor.DType, shape tensor.Shape, seed uint64) tensor.Tensor {
	t.Helper()
	x, err := tensor.Random(name, d, shape, seed)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func mustSpec(t testing.TB, s string) CodecSpec {
	t.Helper()
	spec, err := ParseCodecSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

var allSpecs = []string{"raw", "raw+zstd", "raw+lz4", "fp16", "fp16+zstd", "fp16+lz4", "int8", "int8+zstd", "int8+lz4"}

func TestParseCodecSpec(t *testing.T) {
	cases := []struct {
		in   string
		want CodecSpec
		err  string
	}{
		{"raw", CodecSpec{CodecRaw, CompressNone}, ""},
		{"fp16+zstd", CodecSpec{CodecFP16, CompressZstd}, ""},
		{"INT8+LZ4", CodecSpec{CodecInt8, CompressLZ4}, ""},
		{" jpeg ", CodecSpec{CodecJPEG, CompressNone}, ""},
		{"zstd", CodecSpec{CodecRaw, CompressZstd}, ""},
		{"lz4", CodecSpec{CodecRaw, CompressLZ4}, ""},
		{"raw+none", CodecSpec{CodecRaw, CompressNone}, ""},
		{"jpeg+zstd", CodecSpec{}, "not compressed again"},
		{"fp32", CodecSpec{}, `unknown codec "fp32"`},
		{"fp16+gzip", CodecSpec{}, `unknown compression "gzip"`},
		{"fp16+", CodecSpec{}, "unknown compression"},
		{"zstd+lz4", CodecSpec{}, "unknown codec"},
		{"", CodecSpec{}, "unknown codec"},
	}
	for _, c := range cases {
		got, err := ParseCodecSpec(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseCodecSpec(%q) = %v, %v; want error with %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseCodecSpec(%q) = %v, %v; want %v", c.in, got, err, c.want)
			continue
		}
		if back, err := ParseCodecSpec(got.String()); err != nil || back != got {
			t.Errorf("%v does not round-trip through %q", got, got.String())
		}
	}
	if s := (CodecSpec{CodecInt8, CompressLZ4}).String(); s != "int8+lz4" {
		t.Errorf("String = %q", s)
	}
}

// TestHalfAllValues converts every binary16 value to float32 and back.
func TestHalfAllValues(t *testing.T) {
	for h := range 1 << 16 {
		f := halfToFloat32(uint16(h))
		back := float32ToHalf(f)
		if isHalfNaN(uint16(h)) {
			if !isHalfNaN(back) || !math.IsNaN(float64(math.Float32frombits(f))) {
				t.Fatalf("NaN %#04x -> %#08x -> %#04x", h, f, back)
			}
			continue
		}
		if back != uint16(h) {
			t.Fatalf("%#04x -> %v -> %#04x", h, math.Float32frombits(f), back)
		}
	}
}

func isHalfNaN(h uint16) bool { return h&0x7c00 == 0x7c00 && h&0x3ff != 0 }

// TestHalfRounding checks float32ToHalf picks the nearest half, ties to
// even, on random float32s across the whole range and on exact ties.
func TestHalfRounding(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	check := func(f float32) {
		h := float32ToHalf(math.Float32bits(f))
		x := float64(f)
		got := float64(math.Float32frombits(halfToFloat32(h)))
		if math.IsInf(got, 0) {
			// Overflow: only when x is at least halfway past the largest half.
			if math.Abs(x) < 65520 {
				t.Fatalf("%v -> inf", f)
			}
			return
		}
		errGot := math.Abs(got - x)
		for _, nb := range []uint16{h + 1, h - 1} {
			if isHalfNaN(nb) || nb&0x7fff == 0x7c00 || (h&0x7fff == 0 && nb&0x7fff == 0x7fff) {
				continue
			}
			alt := float64(math.Float32frombits(halfToFloat32(nb)))
			if d := math.Abs(alt - x); d < errGot || d == errGot && nb&1 == 0 && h&1 == 1 {
				t.Fatalf("%v -> %v (%#04x), but %v (%#04x) is nearer or the even tie", f, got, h, alt, nb)
			}
		}
	}
	for range 200_000 {
		check(math.Float32frombits(r.Uint32() & 0xc7ffffff)) // exponents up to ~2^17, and below
	}
	for _, f := range []float32{0, 1, -2, 65504, 65519.99, 6.1035156e-05, 5.9604645e-08, 2.9802322e-08, 2.98023259e-08, 1e-10, 1.00048828125, 1.00146484375} {
		check(f)
	}
	if h := float32ToHalf(math.Float32bits(float32(math.Inf(-1)))); h != 0xfc00 {
		t.Errorf("-inf -> %#04x", h)
	}
	if h := float32ToHalf(math.Float32bits(1e6)); h != 0x7c00 {
		t.Errorf("1e6 -> %#04x, want +inf", h)
	}
}

// TestCodecsRoundTrip encodes synthetic tensors with every codec:
// lossless ones must give back the same bytes, lossy ones must stay within
// their error bounds.
func TestCodecsRoundTrip(t *testing.T) {
	roundTripAll(t, []tensor.Tensor{
		randomActivation("synthetic", tensor.Shape{1, 16, 20, 20}, 1),
		mustRandom(t, "int64s", tensor.Int64, tensor.Shape{3, 7}, 2),
		{Name: "empty", DType: tensor.Float32, Shape: tensor.Shape{1, 0, 5}, Data: nil},
		tensor.FromFloat32("constant", tensor.Shape{4}, []float32{2.5, 2.5, 2.5, 2.5}),
		tensor.FromFloat32("zeros", tensor.Shape{1000}, make([]float32, 1000)),
	})
}

// TestCodecsRealActivation does the same on the tensors a YOLOv8n head
// really sends for a photograph.
func TestCodecsRealActivation(t *testing.T) {
	roundTripAll(t, activation(t, 64))
}

func roundTripAll(t *testing.T, inputs []tensor.Tensor) {
	for _, in := range inputs {
		for _, name := range allSpecs {
			t.Run(in.Name+"/"+name, func(t *testing.T) {
				spec := mustSpec(t, name)
				w, err := EncodeTensor(in, spec)
				if err != nil {
					t.Fatal(err)
				}
				if w.Spec.Kind != spec.Kind && in.DType == tensor.Float32 {
					t.Errorf("encoded as %s, asked %s", w.Spec, spec)
				}
				got, err := DecodeTensor(w, DefaultLimits())
				if err != nil {
					t.Fatal(err)
				}
				if got.Name != in.Name || got.DType != in.DType || !got.Shape.Equal(in.Shape) {
					t.Fatalf("decoded %q %s %s, want %q %s %s", got.Name, got.DType, got.Shape, in.Name, in.DType, in.Shape)
				}
				if !w.Spec.Lossy() {
					if !bytes.Equal(got.Data, in.Data) {
						t.Fatalf("lossless %s changed the data", w.Spec)
					}
					return
				}
				maxAbs, rmse, err := CodecError(in, got)
				if err != nil {
					t.Fatal(err)
				}
				checkLossy(t, in, got, w, maxAbs)
				t.Logf("%s %s: %d -> %d bytes, max abs %.3g, rmse %.3g", in.Name, w.Spec, len(in.Data), len(w.Data), maxAbs, rmse)
			})
		}
	}
}

func checkLossy(t *testing.T, in, got tensor.Tensor, w WireTensor, maxAbs float64) {
	t.Helper()
	a, _ := in.Float32s()
	b, _ := got.Float32s()
	switch w.Spec.Kind {
	case CodecFP16:
		for i := range a {
			x, y := float64(a[i]), float64(b[i])
			if math.Abs(x) >= 6.104e-5 && math.Abs(y-x)/math.Abs(x) > 1e-3 {
				t.Fatalf("fp16: element %d: %v -> %v, relative error %.3g > 1e-3", i, x, y, math.Abs(y-x)/math.Abs(x))
			}
			if math.Abs(x) < 6.104e-5 && math.Abs(y-x) > 3e-8 {
				t.Fatalf("fp16: subnormal element %d: %v -> %v", i, x, y)
			}
		}
	case CodecInt8:
		scale, _, err := Int8Params(w, DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		var peak float64
		for _, v := range a {
			peak = max(peak, math.Abs(float64(v)))
		}
		if bound := float64(scale)/2 + 1e-6*peak; maxAbs > bound {
			t.Errorf("int8: max abs error %.4g > scale/2 + eps = %.4g", maxAbs, bound)
		}
	}
}

// TestInt8ZeroExact: zero (ReLU output, padding) survives int8 exactly.
func TestInt8ZeroExact(t *testing.T) {
	in := tensor.FromFloat32("x", tensor.Shape{5}, []float32{-1.3, 0, 0.7, 0, 4.1})
	w, err := EncodeTensor(in, CodecSpec{Kind: CodecInt8})
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeTensor(w, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	v, _ := got.Float32s()
	if v[1] != 0 || v[3] != 0 {
		t.Errorf("zeros decode as %v and %v", v[1], v[3])
	}
	bad := tensor.FromFloat32("x", tensor.Shape{2}, []float32{1, float32(math.NaN())})
	if _, err := EncodeTensor(bad, CodecSpec{Kind: CodecInt8}); err == nil || !strings.Contains(err.Error(), "finite") {
		t.Errorf("int8 of NaN: %v", err)
	}
}

// TestCodecFallback: lossy codecs send non-float32 tensors raw, and a
// compression that does not help is dropped; the wire spec says so.
func TestCodecFallback(t *testing.T) {
	ints := mustRandom(t, "ids", tensor.Int64, tensor.Shape{8}, 5)
	w, err := EncodeTensor(ints, mustSpec(t, "fp16+zstd"))
	if err != nil {
		t.Fatal(err)
	}
	if w.Spec.Kind != CodecRaw {
		t.Errorf("int64 tensor as fp16: wire spec %s, want raw", w.Spec)
	}
	noise := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	rnd := tensor.Tensor{Name: "noise", DType: tensor.Uint8, Shape: tensor.Shape{4096}, Data: noise}
	for _, c := range []string{"raw+zstd", "raw+lz4"} {
		w, err := EncodeTensor(rnd, mustSpec(t, c))
		if err != nil {
			t.Fatal(err)
		}
		if w.Spec.Compress != CompressNone || len(w.Data) != len(noise) {
			t.Errorf("%s of noise: spec %s, %d bytes", c, w.Spec, len(w.Data))
		}
	}
	// The codec interface itself does what it is told.
	c, err := CodecFor(mustSpec(t, "raw+lz4"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Encode(nil, rnd)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Decode(WireTensor{Name: "noise", DType: tensor.Uint8, Shape: tensor.Shape{4096}, Spec: mustSpec(t, "raw+lz4"), Data: b})
	if err != nil || !bytes.Equal(got.Data, noise) {
		t.Errorf("codec interface round trip: %v", err)
	}
	if _, err := CodecFor(CodecSpec{Kind: 9}); err == nil {
		t.Error("CodecFor accepted codec 9")
	}
}

// TestDecompressionBomb sends compressed data that expands far beyond the
// shape it claims; it must be rejected without producing the excess.
func TestDecompressionBomb(t *testing.T) {
	huge := make([]byte, 64<<20) // 64 MiB of zeros: compresses to a few KiB
	zenc, err := zstdEncoder()
	if err != nil {
		t.Fatal(err)
	}
	zbomb := zenc.EncodeAll(huge, nil)
	var lbomb []byte
	lbomb, err = compress(nil, huge, CompressLZ4)
	if err != nil {
		t.Fatal(err)
	}
	// A zstd frame without a content size in its header: only the
	// decoder's cap stops it.
	zs, err := zstdWithoutFCS(huge)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zstdDecoder(); err != nil { // built outside the measurement
		t.Fatal(err)
	}
	small := tensor.Shape{1, 16, 16, 16} // 16 KiB as float32
	cases := []struct {
		name string
		spec CodecSpec
		data []byte
	}{
		{"zstd", CodecSpec{CodecRaw, CompressZstd}, zbomb},
		{"zstd no size", CodecSpec{CodecRaw, CompressZstd}, zs},
		{"zstd twice", CodecSpec{CodecRaw, CompressZstd}, append(zenc.EncodeAll(huge[:16<<10], nil), zenc.EncodeAll(huge[:16<<10], nil)...)},
		{"lz4", CodecSpec{CodecRaw, CompressLZ4}, lbomb},
		{"fp16 zstd", CodecSpec{CodecFP16, CompressZstd}, zbomb},
		{"int8 lz4", CodecSpec{CodecInt8, CompressLZ4}, lbomb},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := WireTensor{Name: "x", DType: tensor.Float32, Shape: small, Spec: c.spec, Data: c.data}
			var before, after runtimeMem
			before.read()
			_, err := DecodeTensor(w, DefaultLimits())
			after.read()
			if err == nil {
				t.Fatalf("a %d-byte payload expanding to %d bytes decoded as a %s tensor", len(c.data), len(huge), small)
			}
			if n := after.alloc - before.alloc; n > 4<<20 {
				t.Errorf("rejecting it allocated %d bytes", n)
			}
			t.Logf("%d bytes rejected: %v", len(c.data), err)
		})
	}
}

// TestDecodeTensorHostile feeds wire tensors a peer could forge.
func TestDecodeTensorHostile(t *testing.T) {
	lim := DefaultLimits()
	f32 := func(shape tensor.Shape, spec CodecSpec, n int) WireTensor {
		return WireTensor{Name: "x", DType: tensor.Float32, Shape: shape, Spec: spec, Data: make([]byte, n)}
	}
	int8Bad := f32(tensor.Shape{2}, CodecSpec{Kind: CodecInt8}, 10)
	binary.LittleEndian.PutUint32(int8Bad.Data, math.Float32bits(float32(math.NaN())))
	cases := []struct {
		name string
		w    WireTensor
		want string
	}{
		{"rank 100", f32(make(tensor.Shape, 100), CodecSpec{}, 4), "rank 100"},
		{"negative dim", f32(tensor.Shape{2, -1}, CodecSpec{}, 8), "dimension -1"},
		{"overflow", f32(tensor.Shape{1 << 31, 1 << 31, 1 << 31}, CodecSpec{}, 0), "larger than"},
		{"too big", f32(tensor.Shape{1 << 30}, CodecSpec{}, 0), "larger than"},
		{"short data", f32(tensor.Shape{4}, CodecSpec{}, 15), "needs 16 bytes, has 15"},
		{"long data", f32(tensor.Shape{4}, CodecSpec{}, 17), "needs 16 bytes, has 17"},
		{"fp16 size", f32(tensor.Shape{4}, CodecSpec{Kind: CodecFP16}, 16), "needs 8 bytes"},
		{"int8 size", f32(tensor.Shape{4}, CodecSpec{Kind: CodecInt8}, 4), "needs 12 bytes"},
		{"int8 scale", int8Bad, "scale"},
		{"string dtype", WireTensor{Name: "s", DType: tensor.String, Shape: tensor.Shape{1}, Data: []byte{1}}, "cannot travel"},
		{"unknown dtype", WireTensor{Name: "s", DType: 99, Shape: tensor.Shape{1}, Data: []byte{1}}, "cannot travel"},
		{"fp16 of int64", WireTensor{Name: "s", DType: tensor.Int64, Shape: tensor.Shape{1}, Spec: CodecSpec{Kind: CodecFP16}, Data: []byte{1, 2}}, "cannot be fp16"},
		{"unknown codec", f32(tensor.Shape{1}, CodecSpec{Kind: 7}, 4), "unknown codec(7)"},
		{"unknown compression", f32(tensor.Shape{1}, CodecSpec{Compress: 7}, 4), "unknown compression(7)"},
		{"long name", WireTensor{Name: strings.Repeat("n", 300), DType: tensor.Uint8, Data: []byte{1}}, "name of 300 bytes"},
		{"garbage zstd", f32(tensor.Shape{4}, CodecSpec{Compress: CompressZstd}, 9), "zstd"},
		{"garbage lz4", WireTensor{Name: "x", DType: tensor.Float32, Shape: tensor.Shape{4}, Spec: CodecSpec{Compress: CompressLZ4}, Data: []byte{0xff, 0xff, 0xff}}, "lz4"},
		{"jpeg shape", f32(tensor.Shape{3, 8, 8}, CodecSpec{Kind: CodecJPEG}, 4), "[1,3,H,W]"},
		{"jpeg garbage", f32(tensor.Shape{1, 3, 8, 8}, CodecSpec{Kind: CodecJPEG}, 40), "jpeg"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := DecodeTensor(c.w, lim)
			if err == nil {
				t.Fatalf("decoded %s %s", got.DType, got.Shape)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

func TestInferRoundTrip(t *testing.T) {
	act := randomActivation("/model.4/Add_output_0", tensor.Shape{1, 8, 6, 6}, 9)
	var tensors []WireTensor
	for _, s := range []string{"raw", "fp16+zstd", "int8+lz4"} {
		w, err := EncodeTensor(act, mustSpec(t, s))
		if err != nil {
			t.Fatal(err)
		}
		w.Name += "/" + s
		tensors = append(tensors, w)
	}
	req := InferRequest{Cut: 17, Tensors: tensors, ResultSpec: mustSpec(t, "fp16")}
	for i := range req.ModelHash {
		req.ModelHash[i] = byte(i * 7)
	}
	b, err := EncodeInfer(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeInfer(b, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(req) {
		t.Errorf("request round trip:\n got %+v\nwant %+v", got, req)
	}
	res := InferResult{Cut: -1, Tensors: tensors[:1], ServerNanos: 123456789, DecodeNanos: 1, EncodeNanos: 2, QueueNanos: 1 << 40}
	b, err = EncodeInferResult(res)
	if err != nil {
		t.Fatal(err)
	}
	gotRes, err := DecodeInferResult(b, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(gotRes) != fmt.Sprint(res) {
		t.Errorf("result round trip:\n got %+v\nwant %+v", gotRes, res)
	}
	empty, err := EncodeInferResult(InferResult{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := DecodeInferResult(empty, DefaultLimits()); err != nil || len(r.Tensors) != 0 {
		t.Errorf("empty result: %+v, %v", r, err)
	}
}

// TestDecodeInferHostile edits a valid request's bytes into hostile ones.
func TestDecodeInferHostile(t *testing.T) {
	lim := DefaultLimits()
	one := func(name string, dt tensor.DType, shape tensor.Shape, data []byte) []byte {
		req := InferRequest{Cut: 3, Tensors: []WireTensor{{Name: name, DType: dt, Shape: shape, Data: data}}}
		b, err := encodeUnchecked(req)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	valid := one("x", tensor.Float32, tensor.Shape{2, 2}, make([]byte, 16))
	if _, err := DecodeInfer(valid, lim); err != nil {
		t.Fatalf("valid request rejected: %v", err)
	}
	// Offsets in valid: hash 0..31, cut 32..39, result spec 40..41, post
	// spec length 42..45 (0), count 46..49, name length 50..53, name 54,
	// dtype 55..58, spec 59..60, rank 61, dims 62..77, data length 78..81,
	// data 82..97.
	set := func(b []byte, off int, v ...byte) []byte {
		c := append([]byte(nil), b...)
		copy(c[off:], v)
		return c
	}
	tooMany := make([]WireTensor, 65)
	for i := range tooMany {
		tooMany[i] = WireTensor{Name: fmt.Sprint(i), DType: tensor.Uint8, Shape: tensor.Shape{1}, Data: []byte{0}}
	}
	many, err := encodeUnchecked(InferRequest{Tensors: tooMany})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "model hash"},
		{"truncated", valid[:len(valid)-1], "tensor data: need 16 bytes, 15 left"},
		{"trailing", append(append([]byte(nil), valid...), 0), "1 trailing bytes"},
		{"result codec", set(valid, 40, 9), "result codec"},
		{"post spec 4 GiB", set(valid, 42, 0xff, 0xff, 0xff, 0xff), "post spec of 4294967295 bytes, over 65536"},
		{"count 2^32-1", set(valid, 46, 0xff, 0xff, 0xff, 0xff), "tensors, limit 64"},
		{"count 60 in few bytes", set(valid, 46, 0, 0, 0, 60), "cannot fit"},
		{"too many tensors", many, "65 tensors, limit 64"},
		{"name 4 GiB", set(valid, 50, 0xff, 0xff, 0xff, 0xff), "limit 256"},
		{"rank 100", set(valid, 61, 100), "rank 100"},
		{"dim -1", set(valid, 62, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), "dimension -1"},
		{"dims overflow", one("x", tensor.Float32, tensor.Shape{1 << 40, 1 << 40, 1 << 40}, nil), "larger than"},
		{"bytes disagree", set(valid, 69, 3), "needs 24 bytes, has 16"},
		{"data length lies", set(valid, 78, 0xff, 0xff, 0xff, 0xff), "tensor data: need"},
		{"unknown dtype", set(valid, 55, 0, 0, 0, 99), "dtype(99)"},
		{"undefined dtype", set(valid, 55, 0, 0, 0, 0), "undefined"},
		{"unknown codec", set(valid, 59, 9), "codec(9)"},
		{"long name", one(strings.Repeat("n", 257), tensor.Uint8, tensor.Shape{1}, []byte{0}), "name of 257 bytes, limit 256"},
		{"duplicate", func() []byte {
			b, _ := encodeUnchecked(InferRequest{Tensors: []WireTensor{tooMany[0], tooMany[0]}})
			return b
		}(), "duplicate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeInfer(c.in, lim)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error %q is not ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

// zstdWithoutFCS compresses b as a zstd stream whose header does not say
// how large it decodes.
func zstdWithoutFCS(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	var h zstd.Header
	if err := h.Decode(buf.Bytes()); err != nil {
		return nil, err
	}
	if h.HasFCS {
		return nil, fmt.Errorf("streaming zstd wrote a content size of %d", h.FrameContentSize)
	}
	return buf.Bytes(), nil
}

type runtimeMem struct{ alloc uint64 }

func (m *runtimeMem) read() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.alloc = s.TotalAlloc
}

// encodeUnchecked encodes r like EncodeInfer but lets tests write tensors
// EncodeInfer would refuse (dynamic dimensions are written as they are).
func encodeUnchecked(r InferRequest) ([]byte, error) {
	b := append([]byte(nil), r.ModelHash[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Cut))
	b = append(b, byte(r.ResultSpec.Kind), byte(r.ResultSpec.Compress))
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Post)))
	b = append(b, r.Post...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Tensors)))
	for _, t := range r.Tensors {
		b = binary.BigEndian.AppendUint32(b, uint32(len(t.Name)))
		b = append(b, t.Name...)
		b = binary.BigEndian.AppendUint32(b, uint32(t.DType))
		b = append(b, byte(t.Spec.Kind), byte(t.Spec.Compress), byte(len(t.Shape)))
		for _, d := range t.Shape {
			b = binary.BigEndian.AppendUint64(b, uint64(d))
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(t.Data)))
		b = append(b, t.Data...)
	}
	return b, nil
}

func TestEncodeInferRejects(t *testing.T) {
	cases := []struct {
		name string
		req  InferRequest
	}{
		{"dynamic dim", InferRequest{Tensors: []WireTensor{{Name: "x", DType: tensor.Uint8, Shape: tensor.Shape{-1}}}}},
		{"rank 300", InferRequest{Tensors: []WireTensor{{Name: "x", DType: tensor.Uint8, Shape: make(tensor.Shape, 300)}}}},
		{"bad spec", InferRequest{Tensors: []WireTensor{{Name: "x", Spec: CodecSpec{Kind: 9}}}}},
		{"bad result spec", InferRequest{ResultSpec: CodecSpec{Kind: CodecJPEG, Compress: CompressZstd}}},
		{"duplicate", InferRequest{Tensors: []WireTensor{{Name: "x", DType: tensor.Uint8}, {Name: "x", DType: tensor.Uint8}}}},
	}
	for _, c := range cases {
		if _, err := EncodeInfer(c.req); err == nil {
			t.Errorf("%s: EncodeInfer accepted it", c.name)
		}
	}
}

// BenchmarkCodec encodes and decodes what a YOLOv8n head at 320x320 sends
// at its middle cut for a real photograph (all crossing tensors, as one
// request carries them), with every codec side by side. MB/s counts raw
// float32 bytes; ratio is raw bytes over encoded bytes.
func BenchmarkCodec(b *testing.B) {
	acts := activation(b, 320)
	var raw int64
	for _, a := range acts {
		raw += int64(len(a.Data))
		b.Logf("crossing %q %s %s", a.Name, a.DType, a.Shape)
	}
	for _, name := range allSpecs {
		spec := mustSpec(b, name)
		wires := make([]WireTensor, len(acts))
		var enc int64
		for i, a := range acts {
			w, err := EncodeTensor(a, spec)
			if err != nil {
				b.Fatal(err)
			}
			wires[i] = w
			enc += int64(len(w.Data))
		}
		ratio := float64(raw) / float64(enc)
		b.Run(name+"/encode", func(b *testing.B) {
			b.SetBytes(raw)
			for range b.N {
				for _, a := range acts {
					if _, err := EncodeTensor(a, spec); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(ratio, "ratio")
		})
		b.Run(name+"/decode", func(b *testing.B) {
			b.SetBytes(raw)
			for range b.N {
				for _, w := range wires {
					if _, err := DecodeTensor(w, DefaultLimits()); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(ratio, "ratio")
		})
	}
}

// TestJPEGLetterbox sends a real photograph's YOLO input as JPEG.
func TestJPEGLetterbox(t *testing.T) {
	in, _ := zoo.LetterboxInput(sampleImage(t), 160)
	in.Name = "images"
	w, err := EncodeTensor(in, mustSpec(t, "jpeg"))
	if err != nil {
		t.Fatal(err)
	}
	if w.Spec.Kind != CodecJPEG || !bytes.HasPrefix(w.Data, []byte{0xff, 0xd8}) {
		t.Fatalf("encoded as %s, %d bytes starting % x", w.Spec, len(w.Data), w.Data[:2])
	}
	got, err := DecodeTensor(w, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	maxAbs, rmse, err := CodecError(in, got)
	if err != nil {
		t.Fatal(err)
	}
	ratio := float64(len(in.Data)) / float64(len(w.Data))
	t.Logf("jpeg q%d: %d -> %d bytes (%.0fx), max abs %.3f, rmse %.4f", JPEGQuality, len(in.Data), len(w.Data), ratio, maxAbs, rmse)
	if rmse > 0.03 || ratio < 10 {
		t.Errorf("jpeg: rmse %.4f (want <= 0.03), ratio %.1f (want >= 10)", rmse, ratio)
	}

	// The JPEG's own size must match the shape it travels with.
	w.Shape = tensor.Shape{1, 3, 80, 80}
	if _, err := DecodeTensor(w, DefaultLimits()); err == nil || !strings.Contains(err.Error(), "160x160 for a 80x80") {
		t.Errorf("jpeg with a mismatched shape: %v", err)
	}
	if _, err := EncodeJPEGImage(sampleImage(t), 0); err == nil {
		t.Error("quality 0 accepted")
	}
	if _, err := EncodeJPEGImage(image.NewRGBA(image.Rect(0, 0, 0, 5)), 90); err == nil {
		t.Error("an empty image encoded")
	}
	b, err := EncodeJPEGImage(sampleImage(t), 75)
	if err != nil {
		t.Fatal(err)
	}
	if cfg, _, err := image.DecodeConfig(bytes.NewReader(b)); err != nil || cfg.Width != sampleImage(t).Bounds().Dx() {
		t.Errorf("EncodeJPEGImage output: %+v, %v", cfg, err)
	}
}

func ExampleEncodeTensor() {
	x := tensor.FromFloat32("act", tensor.Shape{1, 4}, []float32{0, 0.5, 1.25, -0.75})
	w, err := EncodeTensor(x, CodecSpec{Kind: CodecFP16})
	if err != nil {
		fmt.Println(err)
		return
	}
	y, err := DecodeTensor(w, DefaultLimits())
	if err != nil {
		fmt.Println(err)
		return
	}
	v, _ := y.Float32s()
	fmt.Println(w.Spec, len(x.Data), "->", len(w.Data), "bytes:", v)
	// Output: fp16 16 -> 8 bytes: [0 0.5 1.25 -0.75]
}
