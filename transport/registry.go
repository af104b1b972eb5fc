package transport

// The codec registry. A tensor travels as a CodecSpec: an element codec
// (the first stage) and a compression of its bytes (the second). Each
// element codec is one registry entry in its own file (codec_raw.go,
// codec_fp16.go, codec_int8.go, codec_jpeg.go), registered from that
// file's init; the compressions are one table (compress.go). Everything
// else (parsing, names, validation, the wire checks of DecodeTensor, the
// lists planning and the benchmarks measure) asks the registry, so a new
// codec is one new file with its test.

import (
	"fmt"
	"slices"
	"strings"

	"tracr/tensor"
)

// Codec is the element encoding of a tensor on the wire: the byte a tensor
// carries to say how its elements were encoded.
type Codec uint8

// Compression is a general-purpose compressor applied after a Codec: the
// byte after the codec on the wire.
type Compression uint8

// elementCodec is one registry entry: everything tracr knows about an
// element codec. Its functions never see a tensor that checkWire (decode)
// or Tensor.Validate and the dtype and shape checks (encode) reject.
type elementCodec struct {
	name  string // as ParseCodecSpec reads it and String writes it, lower case
	id    Codec  // its byte on the wire; never reused for another encoding
	lossy bool   // decoding may give back other values than were encoded
	// dtypes are the element types it encodes; nil means every dtype with
	// a fixed size. EncodeTensor sends other tensors raw.
	dtypes []tensor.DType
	// size is the exact encoded size of n elements of dt. Nil means the
	// size is not fixed by the shape, which also rules out a compression
	// stage: decompression is bounded by this size.
	size func(dt tensor.DType, n int64) int64
	// shape, when set, rejects the shapes the codec cannot carry.
	shape func(name string, s tensor.Shape) error
	// encode appends the encoding of t to dst.
	encode func(dst []byte, t tensor.Tensor) ([]byte, error)
	// decode returns the tensor bytes that b encodes for dt and shape.
	decode func(b []byte, dt tensor.DType, shape tensor.Shape) ([]byte, error)
}

// codecs is the registry, indexed by wire id. It is written only by
// registerCodec from init functions and read-only afterwards.
var codecs [256]*elementCodec

// registerCodec adds c to the registry. It panics on an entry that would
// make the registry ambiguous: a programming error caught when the
// package loads, never input.
func registerCodec(c elementCodec) {
	switch {
	case c.name == "" || c.name != strings.ToLower(c.name) || strings.ContainsAny(c.name, "+ "):
		panic(fmt.Sprintf("transport: codec name %q: want lower case without '+' or spaces", c.name))
	case codecs[c.id] != nil:
		panic(fmt.Sprintf("transport: codec %q: wire id %d is already %q", c.name, c.id, codecs[c.id].name))
	case c.encode == nil || c.decode == nil:
		panic(fmt.Sprintf("transport: codec %q: no encode or decode", c.name))
	}
	if _, ok := codecNamed(c.name); ok {
		panic(fmt.Sprintf("transport: codec %q is registered twice", c.name))
	}
	if _, ok := compressionNamed(c.name); ok {
		panic(fmt.Sprintf("transport: codec %q has the name of a compression", c.name))
	}
	codecs[c.id] = &c
}

// codecFor returns the registry entry of c.
func codecFor(c Codec) (*elementCodec, bool) {
	e := codecs[c]
	return e, e != nil
}

// codecNamed returns the codec called name (lower case).
func codecNamed(name string) (Codec, bool) {
	for _, e := range codecs {
		if e != nil && e.name == name {
			return e.id, true
		}
	}
	return 0, false
}

// accepts reports whether the codec encodes tensors of dt.
func (e *elementCodec) accepts(dt tensor.DType) bool {
	return e.dtypes == nil || slices.Contains(e.dtypes, dt)
}

// Codecs returns the registered element codecs in wire-id order.
func Codecs() []Codec {
	var out []Codec
	for _, e := range codecs {
		if e != nil {
			out = append(out, e.id)
		}
	}
	return out
}

// String returns the name of c ("fp16").
func (c Codec) String() string {
	if e, ok := codecFor(c); ok {
		return e.name
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// Lossy reports whether decoding what c encodes can give back other values
// than were encoded; an unknown codec counts as lossy.
func (c Codec) Lossy() bool {
	e, ok := codecFor(c)
	return !ok || e.lossy
}

// AnyShape reports whether c carries tensors of every shape, as the
// crossing tensors of a cut need; jpeg, for instance, carries only
// [1,3,H,W] images.
func (c Codec) AnyShape() bool {
	e, ok := codecFor(c)
	return ok && e.shape == nil
}

// Compressions returns the known compressions in wire-id order,
// CompressNone first.
func Compressions() []Compression {
	out := make([]Compression, len(compressions))
	for i, c := range compressions {
		out[i] = c.id
	}
	return out
}

// String returns the name of c ("zstd").
func (c Compression) String() string {
	if e, ok := compressionFor(c); ok {
		return e.name
	}
	return fmt.Sprintf("compression(%d)", uint8(c))
}

// CodecSpec is how one tensor travels: a codec and a compression.
type CodecSpec struct {
	Kind     Codec
	Compress Compression
}

// String formats s as ParseCodecSpec reads it: "raw", "fp16+zstd",
// "int8+lz4", "jpeg".
func (s CodecSpec) String() string {
	if s.Compress == CompressNone {
		return s.Kind.String()
	}
	return s.Kind.String() + "+" + s.Compress.String()
}

// Lossy reports whether decoding s can give back other values than were
// encoded.
func (s CodecSpec) Lossy() bool { return s.Kind.Lossy() }

// Validate reports whether s is a codec and compression this version
// knows, in a combination it supports (a codec whose size the shape does
// not fix, such as jpeg, is never compressed again).
func (s CodecSpec) Validate() error {
	e, ok := codecFor(s.Kind)
	if !ok {
		return fmt.Errorf("unknown %s", s.Kind)
	}
	if _, ok := compressionFor(s.Compress); !ok {
		return fmt.Errorf("unknown %s", s.Compress)
	}
	if e.size == nil && s.Compress != CompressNone {
		return fmt.Errorf("codec %s: %s is not compressed again", s, e.name)
	}
	return nil
}

// ParseCodecSpec reads a codec spec: a registered codec name (raw, fp16,
// int8, jpeg) optionally followed by "+" and a compression ("+zstd",
// "+lz4"); a compression alone ("zstd") means raw with that compression.
// Case does not matter.
func ParseCodecSpec(s string) (CodecSpec, error) {
	kind, comp, plus := strings.Cut(strings.ToLower(strings.TrimSpace(s)), "+")
	var spec CodecSpec
	k, kok := codecNamed(kind)
	c, cok := compressionNamed(kind)
	switch {
	case kok:
		spec.Kind = k
	case cok && !plus:
		spec.Compress = c
		if err := spec.Validate(); err != nil {
			return CodecSpec{}, fmt.Errorf("codec %q: %w", s, err)
		}
		return spec, nil
	default:
		return CodecSpec{}, fmt.Errorf("codec %q: unknown codec %q (want %s, optionally %s)", s, kind, codecChoices(), compressionChoices("+"))
	}
	if plus {
		c, ok := compressionNamed(comp)
		if !ok {
			return CodecSpec{}, fmt.Errorf("codec %q: unknown compression %q (want %s)", s, comp, compressionChoices(""))
		}
		spec.Compress = c
	}
	if err := spec.Validate(); err != nil {
		return CodecSpec{}, fmt.Errorf("codec %q: %w", s, err)
	}
	return spec, nil
}

// codecChoices lists the codec names for an error: "raw, fp16, int8 or
// jpeg".
func codecChoices() string {
	var names []string
	for _, c := range Codecs() {
		names = append(names, c.String())
	}
	return orList(names)
}

// compressionChoices lists the compressions other than none, each after
// prefix: "+zstd or +lz4".
func compressionChoices(prefix string) string {
	var names []string
	for _, c := range Compressions()[1:] {
		names = append(names, prefix+c.String())
	}
	return orList(names)
}

// orList joins names as "a, b or c".
func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
