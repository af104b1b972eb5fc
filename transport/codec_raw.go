package transport

// The raw codec: the tensor bytes as they are, for any dtype with a fixed
// size. It is the codec every other one falls back to.

import "tracr/tensor"

// CodecRaw sends the tensor bytes as they are (any dtype).
const CodecRaw Codec = 0

func init() {
	registerCodec(elementCodec{
		name:   "raw",
		id:     CodecRaw,
		size:   func(dt tensor.DType, n int64) int64 { return n * int64(dt.Size()) },
		encode: func(dst []byte, t tensor.Tensor) ([]byte, error) { return append(dst, t.Data...), nil },
		decode: func(b []byte, _ tensor.DType, _ tensor.Shape) ([]byte, error) { return append([]byte(nil), b...), nil },
	})
}
