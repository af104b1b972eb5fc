package runtime

import (
	"testing"
	"time"
)

// TestSummarizeOverhead checks the overhead arithmetic on hand-made rows:
// compute (head, codec, tail, post), link and queue are taken out, the
// codec is reported beside it, and edge-only rows take no part.
func TestSummarizeOverhead(t *testing.T) {
	ms := time.Millisecond
	split := Record{Plan: "cut", Cut: 22, Edge: 10 * ms, Encode: 4 * ms, Decode: 2 * ms, Server: 30 * ms, Post: 1 * ms,
		BytesUp: 125_000, LinkUp: 10e6, BytesDown: 1250, LinkDown: 10e6, RTT: 10 * ms, Queue: 3 * ms}
	// Link: 100 ms up, 1 ms down. Compute 47 ms, rtt 10, queue 3: 161 ms.
	split.Total = 161*ms + 5*ms
	edgeOnly := Record{Plan: "edge-only", Edge: 80 * ms, Total: 80 * ms}
	s := Summarize([]Record{split, edgeOnly}, time.Second)
	if s.Split != 1 {
		t.Fatalf("%d split requests, want 1", s.Split)
	}
	if s.Overhead != 5*ms || s.Codec != 6*ms || s.OverheadWithCodec != 11*ms {
		t.Errorf("overhead %v, codec %v, with codec %v; want 5ms, 6ms, 11ms", s.Overhead, s.Codec, s.OverheadWithCodec)
	}
	if want := 5.0 / 166; s.OverheadShare < want-1e-9 || s.OverheadShare > want+1e-9 {
		t.Errorf("share %.6f, want %.6f", s.OverheadShare, want)
	}
	if want := 11.0 / 166; s.OverheadWithCodecShare < want-1e-9 || s.OverheadWithCodecShare > want+1e-9 {
		t.Errorf("share with codec %.6f, want %.6f", s.OverheadWithCodecShare, want)
	}
}
