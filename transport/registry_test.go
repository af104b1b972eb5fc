package transport

import (
	"encoding/binary"
	"math"
	"slices"
	"strings"
	"testing"

	"tracr/tensor"
)

// A toy codec registered from this file alone, to show that a new codec
// needs no other file edited: bfloat16, the top 16 bits of each float32
// rounded to nearest even. Its wire id is one no real codec uses.
const codecBF16 Codec = 200

func init() {
	registerCodec(elementCodec{
		name:   "bf16",
		id:     codecBF16,
		lossy:  true,
		dtypes: []tensor.DType{tensor.Float32},
		size:   func(_ tensor.DType, n int64) int64 { return 2 * n },
		encode: func(dst []byte, t tensor.Tensor) ([]byte, error) {
			for i := 0; i+4 <= len(t.Data); i += 4 {
				f := binary.LittleEndian.Uint32(t.Data[i:])
				h := uint16((f + 0x7fff + (f>>16)&1) >> 16)
				if f&0x7fffffff > 0x7f800000 {
					h = uint16(f>>16) | 0x40 // NaN stays NaN
				}
				dst = binary.LittleEndian.AppendUint16(dst, h)
			}
			return dst, nil
		},
		decode: func(b []byte, _ tensor.DType, _ tensor.Shape) ([]byte, error) {
			out := make([]byte, 0, 2*len(b))
			for i := 0; i+2 <= len(b); i += 2 {
				out = binary.LittleEndian.AppendUint32(out, uint32(binary.LittleEndian.Uint16(b[i:]))<<16)
			}
			return out, nil
		},
	})
}

// TestRegisteredCodec sends tensors with the toy codec through everything
// a real codec goes through: parsing by name, the registry's lists,
// EncodeTensor and DecodeTensor with each compression, the raw fallback
// for other dtypes, the wire checks and a whole MsgInfer round trip.
func TestRegisteredCodec(t *testing.T) {
	if !slices.Contains(Codecs(), codecBF16) || !codecBF16.Lossy() || !codecBF16.AnyShape() {
		t.Fatalf("bf16 not listed as a lossy codec of any shape: %v", Codecs())
	}
	in := randomActivation("act", tensor.Shape{1, 8, 10, 10}, 3)
	var wires []WireTensor
	for _, name := range []string{"bf16", "BF16+zstd", "bf16+lz4"} {
		spec, err := ParseCodecSpec(name)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := ParseCodecSpec(spec.String()); err != nil || back != spec || spec.Kind != codecBF16 {
			t.Fatalf("%q parses as %v, which reads back as %v, %v", name, spec, back, err)
		}
		w, err := EncodeTensor(in, spec)
		if err != nil {
			t.Fatal(err)
		}
		if w.Spec.Kind != codecBF16 {
			t.Fatalf("%s encoded as %s", name, w.Spec)
		}
		got, err := DecodeTensor(w, DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		a, _ := in.Float32s()
		b, _ := got.Float32s()
		for i := range a {
			if d := math.Abs(float64(b[i] - a[i])); d > math.Abs(float64(a[i]))/256 {
				t.Fatalf("%s: element %d: %v -> %v", w.Spec, i, a[i], b[i])
			}
		}
		w.Name += "/" + name
		wires = append(wires, w)
	}
	ints := mustRandom(t, "ids", tensor.Int64, tensor.Shape{4}, 1)
	if w, err := EncodeTensor(ints, CodecSpec{Kind: codecBF16}); err != nil || w.Spec.Kind != CodecRaw {
		t.Errorf("int64 tensor as bf16: %s, %v; want raw", w.Spec, err)
	}
	short := WireTensor{Name: "x", DType: tensor.Float32, Shape: tensor.Shape{4}, Spec: CodecSpec{Kind: codecBF16}, Data: make([]byte, 7)}
	if _, err := DecodeTensor(short, DefaultLimits()); err == nil || !strings.Contains(err.Error(), "bf16 needs 8 bytes, has 7") {
		t.Errorf("short bf16 data: %v", err)
	}
	req := InferRequest{Cut: 4, Tensors: wires, ResultSpec: CodecSpec{Kind: codecBF16, Compress: CompressLZ4}}
	b, err := EncodeInfer(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeInfer(b, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if got.ResultSpec != req.ResultSpec || len(got.Tensors) != len(wires) || got.Tensors[1].Spec != wires[1].Spec {
		t.Errorf("MsgInfer round trip: %+v", got)
	}
}

// TestRegistry pins what the registry holds and how it names things: the
// four real codecs (and the toy one) in wire-id order, the compressions,
// and the error that lists them.
func TestRegistry(t *testing.T) {
	var names []string
	for _, c := range Codecs() {
		names = append(names, c.String())
	}
	if got, want := strings.Join(names, " "), "raw fp16 int8 jpeg bf16"; got != want {
		t.Errorf("codecs %q, want %q", got, want)
	}
	if got := Compressions(); !slices.Equal(got, []Compression{CompressNone, CompressZstd, CompressLZ4}) {
		t.Errorf("compressions %v", got)
	}
	cases := []struct {
		c                   Codec
		lossy, anyShape, ok bool
	}{
		{CodecRaw, false, true, true},
		{CodecFP16, true, true, true},
		{CodecInt8, true, true, true},
		{CodecJPEG, true, false, true},
		{7, true, false, false},
	}
	for _, c := range cases {
		if c.c.Lossy() != c.lossy || c.c.AnyShape() != c.anyShape || (CodecSpec{Kind: c.c}.Validate() == nil) != c.ok {
			t.Errorf("%s: lossy %v, any shape %v, valid %v", c.c, c.c.Lossy(), c.c.AnyShape(), CodecSpec{Kind: c.c}.Validate())
		}
	}
	_, err := ParseCodecSpec("fp32")
	if want := "(want raw, fp16, int8, jpeg or bf16, optionally +zstd or +lz4)"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("unknown codec: %v, want %q", err, want)
	}
	if orList([]string{"raw", "fp16", "int8", "jpeg"}) != "raw, fp16, int8 or jpeg" || orList([]string{"a"}) != "a" {
		t.Error("orList")
	}
}

// TestRegisterCodecRejects: an entry that would make the registry
// ambiguous panics when it is registered.
func TestRegisterCodecRejects(t *testing.T) {
	ok := elementCodec{name: "toy", id: 201, encode: codecs[CodecRaw].encode, decode: codecs[CodecRaw].decode}
	cases := []struct {
		name string
		edit func(*elementCodec)
	}{
		{"id taken", func(c *elementCodec) { c.id = CodecFP16 }},
		{"name taken", func(c *elementCodec) { c.name = "int8" }},
		{"compression name", func(c *elementCodec) { c.name = "zstd" }},
		{"plus in name", func(c *elementCodec) { c.name = "a+b" }},
		{"upper case", func(c *elementCodec) { c.name = "Toy" }},
		{"no decode", func(c *elementCodec) { c.decode = nil }},
	}
	for _, c := range cases {
		e := ok
		c.edit(&e)
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: registered", c.name)
				}
			}()
			registerCodec(e)
		}()
	}
	if codecs[201] != nil {
		t.Error("a rejected entry was left in the registry")
	}
}
