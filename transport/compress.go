package transport

// The second stage of a codec: a general-purpose compression of the
// element bytes. zstd wraps them in one zstd frame, lz4 compresses them as
// one LZ4 block. Decompression is told the size the shape calls for and
// never produces more, so a payload that would expand beyond it is
// rejected without producing the excess.

import (
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// The compressions.
const (
	// CompressNone leaves the encoded bytes as they are.
	CompressNone Compression = iota
	// CompressZstd wraps the encoded bytes in one zstd frame.
	CompressZstd
	// CompressLZ4 compresses the encoded bytes as one LZ4 block.
	CompressLZ4
)

// compression is one entry of the compression table.
type compression struct {
	name string      // as ParseCodecSpec reads it, lower case
	id   Compression // its byte on the wire
	// compress appends the compressed src to dst.
	compress func(dst, src []byte) ([]byte, error)
	// decompress expands src, which must decode to exactly size bytes,
	// without producing more than size bytes (plus a decoder's one-block
	// overshoot).
	decompress func(src []byte, size int64) ([]byte, error)
}

// compressions is the table of compressions, indexed by wire id. Adding
// one is an entry here (and its functions).
var compressions = [...]compression{
	CompressNone: {name: "none", id: CompressNone, compress: appendNone, decompress: decompressNone},
	CompressZstd: {name: "zstd", id: CompressZstd, compress: compressZstd, decompress: decompressZstd},
	CompressLZ4:  {name: "lz4", id: CompressLZ4, compress: compressLZ4, decompress: decompressLZ4},
}

// compressionFor returns the table entry of c.
func compressionFor(c Compression) (*compression, bool) {
	if int(c) < len(compressions) {
		return &compressions[c], true
	}
	return nil, false
}

// compressionNamed returns the compression called name (lower case).
func compressionNamed(name string) (Compression, bool) {
	for _, c := range compressions {
		if c.name == name {
			return c.id, true
		}
	}
	return 0, false
}

// The compressors are built once: a zstd encoder or decoder holds megabytes
// of tables and is safe for concurrent EncodeAll/DecodeAll. They are caches
// without observable state, not configuration. zstd runs at its default
// level: on YOLOv8n activations it sends int8 in 8.2x fewer bytes than raw
// where the fastest level manages 6.3x, for about 20% more encode time;
// lz4 is the fast choice.
var (
	zstdEncoder = sync.OnceValues(func() (*zstd.Encoder, error) {
		return zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithZeroFrames(true))
	})
	zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
		// The cap limit makes DecodeAll stop at the capacity of the
		// destination, which DecodeTensor sizes from the shape.
		return zstd.NewReader(nil, zstd.WithDecodeAllCapLimit(true), zstd.WithDecoderMaxMemory(math.MaxInt32))
	})
)

// lz4Compressors recycles LZ4 hash tables, which are not safe for
// concurrent use.
var lz4Compressors = sync.Pool{New: func() any { return new(lz4.Compressor) }}

// errExpands reports compressed data that decodes to more or fewer bytes
// than the shape calls for.
var errExpands = errors.New("decompressed size does not match the shape")

// compress appends src compressed with c to dst.
func compress(dst, src []byte, c Compression) ([]byte, error) {
	e, ok := compressionFor(c)
	if !ok {
		return nil, fmt.Errorf("unknown %s", c)
	}
	return e.compress(dst, src)
}

// decompress expands src, which must decode to exactly size bytes; it never
// produces more than size bytes (plus the decoder's one-block overshoot).
func decompress(src []byte, c Compression, size int64) ([]byte, error) {
	e, ok := compressionFor(c)
	if !ok {
		return nil, fmt.Errorf("unknown %s", c)
	}
	return e.decompress(src, size)
}

func appendNone(dst, src []byte) ([]byte, error) { return append(dst, src...), nil }

func decompressNone(src []byte, size int64) ([]byte, error) {
	if int64(len(src)) != size {
		return nil, fmt.Errorf("%d bytes, want %d: %w", len(src), size, errExpands)
	}
	return src, nil
}

func compressZstd(dst, src []byte) ([]byte, error) {
	enc, err := zstdEncoder()
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	return enc.EncodeAll(src, dst), nil
}

func decompressZstd(src []byte, size int64) ([]byte, error) {
	var h zstd.Header
	if err := h.Decode(src); err != nil {
		return nil, fmt.Errorf("zstd header: %w", err)
	}
	if h.HasFCS && h.FrameContentSize != uint64(size) {
		return nil, fmt.Errorf("zstd frame of %d bytes for a %d-byte tensor: %w", h.FrameContentSize, size, errExpands)
	}
	dec, err := zstdDecoder()
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	out, err := dec.DecodeAll(src, make([]byte, 0, size))
	if err != nil {
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrFrameSizeExceeded) {
			return nil, fmt.Errorf("zstd: %w (%v)", errExpands, err)
		}
		return nil, fmt.Errorf("zstd: %w", err)
	}
	if int64(len(out)) != size {
		return nil, fmt.Errorf("zstd: %d bytes, want %d: %w", len(out), size, errExpands)
	}
	return out, nil
}

func compressLZ4(dst, src []byte) ([]byte, error) {
	start := len(dst)
	bound := lz4.CompressBlockBound(len(src))
	if cap(dst)-start < bound {
		grown := make([]byte, start, start+bound)
		copy(grown, dst)
		dst = grown
	}
	lc := lz4Compressors.Get().(*lz4.Compressor)
	n, err := lc.CompressBlock(src, dst[start:start+bound])
	lz4Compressors.Put(lc)
	if err != nil {
		return nil, fmt.Errorf("lz4: %w", err)
	}
	return dst[:start+n], nil
}

func decompressLZ4(src []byte, size int64) ([]byte, error) {
	out := make([]byte, size)
	n, err := lz4.UncompressBlock(src, out)
	if err != nil {
		return nil, fmt.Errorf("%w (a block expanding beyond %d bytes is rejected)", err, size)
	}
	if int64(n) != size {
		return nil, fmt.Errorf("lz4: %d bytes, want %d: %w", n, size, errExpands)
	}
	return out, nil
}
