package transport

import (
	"bytes"
	"testing"

	"tracr/tensor"
)

// fuzzLimits keep fuzzing fast: small, but large enough for the seeds.
func fuzzLimits() Limits {
	return Limits{MaxPayload: 1 << 16, MaxTensors: 8, MaxRank: 6, MaxTensorBytes: 1 << 20, MaxNameLen: 64}
}

func frameBytes(f Frame) []byte {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, f); err != nil {
		panic(err) // seeds are valid by construction
	}
	return buf.Bytes()
}

// seedRequest is a valid MsgInfer payload with one tensor per codec.
func seedRequest(tb testing.TB) []byte {
	act := randomActivation("x", tensor.Shape{1, 2, 3, 4}, 1)
	var ts []WireTensor
	for i, s := range []string{"raw", "fp16+zstd", "int8+lz4", "raw+lz4", "int8"} {
		w, err := EncodeTensor(act, mustSpec(tb, s))
		if err != nil {
			tb.Fatal(err)
		}
		w.Name = string(rune('a' + i))
		ts = append(ts, w)
	}
	b, err := EncodeInfer(InferRequest{Cut: 5, Tensors: ts, ResultSpec: CodecSpec{Kind: CodecFP16}})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzReadFrame reads arbitrary bytes as frames: it must never panic or
// over-allocate, and every frame it accepts must re-encode to the bytes it
// came from.
func FuzzReadFrame(f *testing.F) {
	f.Add(frameBytes(Frame{Type: MsgPing, ID: 1, Payload: []byte("hi")}))
	f.Add(frameBytes(Frame{Type: MsgHello, Payload: []byte("edge")}))
	f.Add(append(frameBytes(Frame{Type: MsgModelStatus, ID: 9, Payload: []byte{1}}), frameBytes(Frame{Type: MsgError, Flags: 1, ID: 9})...))
	f.Add(frameBytes(Frame{Type: MsgInfer, ID: 3, Payload: seedRequest(f)}))
	f.Add(header("TR", 1, byte(MsgBulkUp), 0, [3]byte{}, 1, 1<<32-1))
	f.Add(header("TR", 2, byte(MsgPing), 0, [3]byte{}, 1, 0))
	f.Add([]byte("TR"))
	f.Add([]byte{})
	lim := fuzzLimits()
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		consumed := 0
		for {
			fr, err := ReadFrame(r, lim)
			if err != nil {
				return
			}
			n := HeaderSize + len(fr.Payload)
			if int64(len(fr.Payload)) > lim.MaxPayload {
				t.Fatalf("accepted a %d-byte payload over the limit", len(fr.Payload))
			}
			if got := frameBytes(fr); !bytes.Equal(got, in[consumed:consumed+n]) {
				t.Fatalf("frame re-encodes differently:\n got % x\n was % x", got, in[consumed:consumed+n])
			}
			consumed += n
			if fr.Type == MsgInfer {
				checkInfer(t, fr.Payload, lim)
			}
		}
	})
}

// FuzzDecodeInfer decodes arbitrary MsgInfer payloads and the tensors in
// them: no panics, nothing over the limits, and what decodes re-encodes to
// the same bytes.
func FuzzDecodeInfer(f *testing.F) {
	valid := seedRequest(f)
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add(append(append([]byte(nil), valid...), 0))
	empty, _ := EncodeInfer(InferRequest{})
	f.Add(empty)
	res, _ := EncodeInferResult(InferResult{Cut: 1, ServerNanos: 5})
	f.Add(res)
	lim := fuzzLimits()
	f.Fuzz(func(t *testing.T, in []byte) {
		checkInfer(t, in, lim)
		if r, err := DecodeInferResult(in, lim); err == nil {
			back, err := EncodeInferResult(r)
			if err != nil || !bytes.Equal(back, in) {
				t.Fatalf("result re-encodes to %d bytes (%v), was %d", len(back), err, len(in))
			}
		}
	})
}

func checkInfer(t *testing.T, in []byte, lim Limits) {
	r, err := DecodeInfer(in, lim)
	if err != nil {
		return
	}
	back, err := EncodeInfer(r)
	if err != nil || !bytes.Equal(back, in) {
		t.Fatalf("request re-encodes to %d bytes (%v), was %d", len(back), err, len(in))
	}
	if len(r.Tensors) > lim.MaxTensors {
		t.Fatalf("%d tensors over the limit", len(r.Tensors))
	}
	for _, w := range r.Tensors {
		x, err := DecodeTensor(w, lim)
		if err != nil {
			continue
		}
		if err := x.Validate(); err != nil {
			t.Fatalf("decoded tensor is inconsistent: %v", err)
		}
		if int64(len(x.Data)) > lim.MaxTensorBytes {
			t.Fatalf("decoded %d bytes, limit %d", len(x.Data), lim.MaxTensorBytes)
		}
	}
}
