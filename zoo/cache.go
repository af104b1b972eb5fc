package zoo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"tracr/graph"

	"tracr/graph/onnxpb"
)

// Cache is a directory of generated zoo models, one file per model, input
// size and builder version: <Dir>/<name>-<size>-v<version>.onnx.
//
// Every file the zoo writes ends with a CRC-32C of everything before it (a
// metadata_props entry, so the file stays a plain ONNX model); a cache hit
// costs one file read and one checksum, and a truncated or damaged entry is
// noticed and rebuilt. Files are written to a temporary name and renamed,
// so readers never see half a model, and several processes may fill the
// same cache at once.
type Cache struct {
	Dir string // created when first needed
}

// DefaultCache returns the cache in the user's cache directory:
// os.UserCacheDir()/tracr/zoo.
func DefaultCache() (Cache, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return Cache{}, fmt.Errorf("locate zoo cache: %w", err)
	}
	return Cache{Dir: filepath.Join(dir, "tracr", "zoo")}, nil
}

// Path returns the file that holds the named zoo model at input side
// imgSize (0: its default).
func (c Cache) Path(name string, imgSize int) (string, error) {
	e, size, err := entryFor(name, imgSize)
	if err != nil {
		return "", err
	}
	return filepath.Join(c.Dir, fmt.Sprintf("%s-%d-v%d.onnx", e.name, size, builderVersion)), nil
}

// Load returns the named zoo model at input side imgSize (0: its default)
// from the cache, building and storing it first when the entry is missing
// or damaged. It fails if the model cannot be stored.
func (c Cache) Load(ctx context.Context, name string, imgSize int) ([]byte, error) {
	path, err := c.Path(name, imgSize)
	if err != nil {
		return nil, err
	}
	if data, err := os.ReadFile(path); err == nil && checkSeal(data) == nil {
		return data, nil
	}
	// Missing, unreadable or damaged: build it again. Make sure it can be
	// stored before spending the time.
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("zoo cache: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("build %s: %w", name, err)
	}
	data, _, err := Build(name, imgSize)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("build %s: %w", name, err)
	}
	if err := graph.WriteFileAtomic(path, data); err != nil {
		return nil, fmt.Errorf("zoo cache: %w", err)
	}
	return data, nil
}

// sealKey is the metadata key of the checksum entry.
const sealKey = "tracr.zoo.crc32c"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// seal serialises m deterministically and appends one more metadata_props
// entry, sealKey = the CRC-32C (8 hex digits) of all the bytes before it.
// Appending a field to a serialised message is the same as adding it to
// the message, so the result is still a valid ModelProto.
func seal(m *onnxpb.ModelProto) ([]byte, error) {
	opts := proto.MarshalOptions{Deterministic: true}
	trailerLen := len(sealTrailer(0))
	// Room for the trailer up front: a model can be hundreds of MB.
	data, err := opts.MarshalAppend(make([]byte, 0, opts.Size(m)+trailerLen), m)
	if err != nil {
		return nil, fmt.Errorf("serialise model: %w", err)
	}
	return append(data, sealTrailer(crc32.Checksum(data, castagnoli))...), nil
}

// sealTrailer encodes ModelProto field 14 (metadata_props) holding
// {key: sealKey, value: %08x of sum}. Its length does not depend on sum.
func sealTrailer(sum uint32) []byte {
	var entry []byte
	entry = protowire.AppendTag(entry, 1, protowire.BytesType)
	entry = protowire.AppendString(entry, sealKey)
	entry = protowire.AppendTag(entry, 2, protowire.BytesType)
	entry = protowire.AppendString(entry, fmt.Sprintf("%08x", sum))
	var t []byte
	t = protowire.AppendTag(t, 14, protowire.BytesType)
	return protowire.AppendBytes(t, entry)
}

// checkSeal reports whether data is a model written by seal, unchanged.
func checkSeal(data []byte) error {
	n := len(sealTrailer(0))
	if len(data) < n {
		return errors.New("model too short to carry a zoo checksum")
	}
	body, trailer := data[:len(data)-n], data[len(data)-n:]
	if !bytes.Equal(trailer[:n-8], sealTrailer(0)[:n-8]) {
		return errors.New("model has no zoo checksum")
	}
	want, err := strconv.ParseUint(string(trailer[n-8:]), 16, 32)
	if err != nil {
		return errors.New("model has a malformed zoo checksum")
	}
	if got := crc32.Checksum(body, castagnoli); uint32(want) != got {
		return fmt.Errorf("zoo checksum mismatch: file says %08x, content is %08x", want, got)
	}
	return nil
}
