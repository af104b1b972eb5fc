package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tracr/engine"
	"tracr/graph"
	"tracr/internal/orttest"
	"tracr/tensor"
	"tracr/transport"
)

// serveTails runs h on a loopback server (real SSH) until the test ends
// and connects to it.
func serveTails(t *testing.T, h transport.Handler, session transport.SessionOptions) *transport.Client {
	t.Helper()
	lb, err := transport.StartLoopback(context.Background(), transport.LoopbackOptions{Handler: h, Session: session})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.Close() })
	c, err := lb.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// uploadChain sends the chain model through c and returns it prepared for
// local reference runs, with its hash.
func uploadChain(t *testing.T, c *transport.Client) (*graph.Model, [32]byte) {
	t.Helper()
	model := orttest.ChainModel(t)
	m, err := graph.Parse(model)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := engine.Prepare(ctx, m, 1, nil); err != nil {
		t.Fatal(err)
	}
	hash, err := c.EnsureModel(ctx, model)
	if err != nil {
		t.Fatal(err)
	}
	return m, hash
}

// runBothWays runs the model on x locally, and as head (locally) + tail
// (on the server through c) at cut; it returns both outputs.
func runBothWays(t testing.TB, c *transport.Client, m *graph.Model, hash [32]byte, cut int, x tensor.Tensor) (want, got []tensor.Tensor) {
	t.Helper()
	ctx := context.Background()
	full, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	fs, err := engine.NewSession(full, engine.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if want, err = fs.Run(ctx, []tensor.Tensor{x}); err != nil {
		t.Fatal(err)
	}
	s, err := graph.Partition(m, graph.Prefix(cut))
	if err != nil {
		t.Fatal(err)
	}
	head, err := engine.NewSession(s.Head, engine.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer head.Close()
	mid, err := head.Run(ctx, []tensor.Tensor{x})
	if err != nil {
		t.Fatal(err)
	}
	return want, inferRemote(t, c, hash, cut, mid)
}

// inferRemote sends the crossing tensors raw and decodes the result.
func inferRemote(t testing.TB, c *transport.Client, hash [32]byte, cut int, mid []tensor.Tensor) []tensor.Tensor {
	t.Helper()
	req := transport.InferRequest{ModelHash: hash, Cut: cut}
	for _, m := range mid {
		w, err := transport.EncodeTensor(m, transport.CodecSpec{})
		if err != nil {
			t.Error(err)
			return nil
		}
		req.Tensors = append(req.Tensors, w)
	}
	res, err := c.Infer(context.Background(), req)
	if err != nil {
		t.Error(err)
		return nil
	}
	if res.Cut != cut {
		t.Errorf("result for cut %d, asked %d", res.Cut, cut)
	}
	var out []tensor.Tensor
	for _, w := range res.Tensors {
		o, err := transport.DecodeTensor(w, transport.DefaultLimits())
		if err != nil {
			t.Error(err)
			return nil
		}
		out = append(out, o)
	}
	return out
}

// TestRequestErrors checks that a failed request comes back as a
// transport.RemoteError for that request only, and the session carries on.
func TestRequestErrors(t *testing.T) {
	requireORT(t)
	tails := NewTailHandler(TailOptions{Engine: engine.Options{Threads: 1}})
	defer tails.Close()
	c := serveTails(t, tails, transport.SessionOptions{})
	ctx := context.Background()
	model := orttest.ChainModel(t)
	hash, err := c.EnsureModel(ctx, model)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := tensor.Random("x", tensor.Float32, tensor.Shape{1, 16}, 1)
	wx, _ := transport.EncodeTensor(x, transport.CodecSpec{})
	tests := []struct {
		name        string
		req         transport.InferRequest
		wantErr     string
		wantMissing bool
	}{
		{"unknown model", transport.InferRequest{ModelHash: [32]byte{1, 2, 3}, Cut: 0, Tensors: []transport.WireTensor{wx}}, "model not held by the server", true},
		{"cut past the end", transport.InferRequest{ModelHash: hash, Cut: 6, Tensors: []transport.WireTensor{wx}}, "cut 6 does not exist: valid cuts are 0..5", false},
		{"negative cut", transport.InferRequest{ModelHash: hash, Cut: -1, Tensors: []transport.WireTensor{wx}}, "cut -1 does not exist", false},
		{"wrong input", transport.InferRequest{ModelHash: hash, Cut: 2, Tensors: []transport.WireTensor{wx}}, `unknown input "x"; the model's inputs are h2`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Infer(ctx, tt.req)
			var re *transport.RemoteError
			if !errors.As(err, &re) || re.Request != transport.MsgInfer || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Infer: %v; want a transport.RemoteError for infer containing %q", err, tt.wantErr)
			}
			if errors.Is(err, transport.ErrModelMissing) != tt.wantMissing {
				t.Errorf("errors.Is(err, transport.ErrModelMissing) = %v, want %v", !tt.wantMissing, tt.wantMissing)
			}
			if _, err := c.Ping(ctx); err != nil {
				t.Fatalf("session broken after the error: %v", err)
			}
		})
	}
	if _, err := c.Do(ctx, transport.Frame{Type: transport.MsgProfileReq}); err == nil || !strings.Contains(err.Error(), "profile request: unexpected end of JSON input") {
		t.Errorf("empty profile request: %v; want refused", err)
	}
	if _, err := c.Do(ctx, transport.Frame{Type: transport.MsgProfileReq, Payload: []byte(`{"model_hash":"0102"}`)}); err == nil || !strings.Contains(err.Error(), "is not a hex SHA-256") {
		t.Errorf("bad hash: %v", err)
	}
	if _, err := c.Do(ctx, transport.Frame{Type: transport.MsgPong}); err == nil || !strings.Contains(err.Error(), "does not handle pong") {
		t.Errorf("pong request: %v; want refused", err)
	}
}

// TestModelCache checks content addressing: a model is uploaded once, the
// byte bound evicts the least recently used, and Infer re-sends an evicted
// model by itself.
func TestModelCache(t *testing.T) {
	requireORT(t)
	model := orttest.ChainModel(t)
	h := NewTailHandler(TailOptions{MaxModelBytes: int64(len(model)) + 100, Engine: engine.Options{Threads: 1}})
	defer h.Close()
	c := serveTails(t, h, transport.SessionOptions{})
	ctx := context.Background()

	hash, err := c.EnsureModel(ctx, model)
	if err != nil {
		t.Fatal(err)
	}
	if have, err := c.HasModel(ctx, hash); !have || err != nil {
		t.Fatalf("HasModel after EnsureModel = %v, %v", have, err)
	}
	// Another model evicts the first: the cache holds one. (The server
	// parses a model only when a tail is asked of it.)
	if err := c.PutModel(ctx, bytes.Repeat([]byte{7}, len(model))); err != nil {
		t.Fatal(err)
	}
	if have, _ := c.HasModel(ctx, hash); have {
		t.Fatal("the first model survived a cache that holds one model")
	}
	// Cut 5 (edge-only) never opened a session, so the model is needed.
	x, _ := tensor.Random("y", tensor.Float32, tensor.Shape{1, 16}, 1)
	wx, _ := transport.EncodeTensor(x, transport.CodecSpec{})
	res, err := c.Infer(ctx, transport.InferRequest{ModelHash: hash, Cut: 5, Tensors: []transport.WireTensor{wx}})
	if err != nil {
		t.Fatalf("Infer after eviction: %v", err)
	}
	if len(res.Tensors) != 1 || !bytes.Equal(res.Tensors[0].Data, x.Data) {
		t.Fatalf("edge-only cut should pass y through; got %+v", res.Tensors)
	}
	if have, _ := c.HasModel(ctx, hash); !have {
		t.Fatal("Infer did not re-send the evicted model")
	}
	big := make([]byte, len(model)+101)
	if err := c.PutModel(ctx, big); err == nil || !strings.Contains(err.Error(), "exceeds the server's model cache") {
		t.Fatalf("PutModel of a model over the bound: %v", err)
	}
}

// TestSessionLimit checks that the session cache stays within its bound
// while requests switch between more cuts than it holds.
func TestSessionLimit(t *testing.T) {
	requireORT(t)
	h := NewTailHandler(TailOptions{MaxSessions: 2, Engine: engine.Options{Threads: 1}})
	defer h.Close()
	c := serveTails(t, h, transport.SessionOptions{})
	m, hash := uploadChain(t, c)
	for round := range 3 {
		for cut := 0; cut <= len(m.Nodes()); cut++ {
			x, _ := tensor.Random("x", tensor.Float32, tensor.Shape{1, 16}, uint64(round*10+cut))
			want, got := runBothWays(t, c, m, hash, cut, x)
			if same, diff, err := engine.Difference(want, got); err != nil || !same {
				t.Fatalf("round %d cut %d: differs from the local run by %g (%v)", round, cut, diff, err)
			}
			h.sessions.mu.Lock()
			n := h.sessions.lru.Len()
			h.sessions.mu.Unlock()
			if n > 2 {
				t.Fatalf("%d sessions cached, bound 2", n)
			}
		}
	}
}

// TestProfileUsesTailThreads: a profile request that names no thread count
// is measured with the threads the server runs its tails with, so the
// planner prices the tails the server will actually run; one that names a
// count gets it.
func TestProfileUsesTailThreads(t *testing.T) {
	requireORT(t)
	h := NewTailHandler(TailOptions{Engine: engine.Options{Threads: 1}, ProfileDir: t.TempDir()})
	defer h.Close()
	c := serveTails(t, h, transport.SessionOptions{})
	model := orttest.ChainModel(t)
	for _, tt := range []struct{ ask, want int }{{0, 1}, {2, 2}} {
		p, err := ServerProfile(context.Background(), c, model, transport.ProfileRequest{Threads: tt.ask, Repeats: 1})
		if err != nil {
			t.Fatal(err)
		}
		if p.Threads != tt.want {
			t.Errorf("asked for %d threads: profiled with %d, want %d", tt.ask, p.Threads, tt.want)
		}
	}
}

// TestPipelinedInfer puts 100 MsgInfer requests in flight on one channel
// at once (the server runs them all at once and holds each back until all
// 100 have arrived), over every cut of a chain model, and checks each
// result against a local ONNX Runtime run of the full model, bit for bit.
func TestPipelinedInfer(t *testing.T) {
	requireORT(t)
	const n = 100
	tails := NewTailHandler(TailOptions{Engine: engine.Options{Threads: 1}})
	defer tails.Close()
	var arrived atomic.Int32
	all := make(chan struct{})
	gateErr := make(chan error, n)
	gate := transport.HandlerFunc(func(ctx context.Context, f transport.Frame) (transport.Frame, error) {
		if f.Type == transport.MsgInfer {
			if arrived.Add(1) == n {
				close(all)
			}
			select {
			case <-all:
			case <-time.After(10 * time.Second):
				gateErr <- fmt.Errorf("only %d of %d requests were in flight at once", arrived.Load(), n)
			}
		}
		return tails.Handle(ctx, f)
	})
	client := serveTails(t, gate, transport.SessionOptions{Concurrency: n})
	ctx := context.Background()
	m, hash := uploadChain(t, client)

	// Heads and expected outputs, computed before anything is sent.
	cuts := len(m.Nodes()) + 1
	full, _ := m.Bytes()
	fs, err := engine.NewSession(full, engine.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	heads := make([]*engine.Session, cuts)
	for k := range heads {
		s, err := graph.Partition(m, graph.Prefix(k))
		if err != nil {
			t.Fatal(err)
		}
		if heads[k], err = engine.NewSession(s.Head, engine.Options{Threads: 1}); err != nil {
			t.Fatal(err)
		}
		defer heads[k].Close()
	}
	mids := make([][]tensor.Tensor, n)
	wants := make([][]tensor.Tensor, n)
	for i := range n {
		x, _ := tensor.Random("x", tensor.Float32, tensor.Shape{1, 16}, uint64(i))
		if wants[i], err = fs.Run(ctx, []tensor.Tensor{x}); err != nil {
			t.Fatal(err)
		}
		if mids[i], err = heads[i%cuts].Run(ctx, []tensor.Tensor{x}); err != nil {
			t.Fatal(err)
		}
	}

	var wg sync.WaitGroup
	gots := make([][]tensor.Tensor, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gots[i] = inferRemote(t, client, hash, i%cuts, mids[i])
		}()
	}
	wg.Wait()
	select {
	case err := <-gateErr:
		t.Fatal(err)
	default:
	}
	for i := range n {
		if same, diff, err := engine.Difference(wants[i], gots[i]); err != nil || !same {
			t.Fatalf("request %d (cut %d): differs from the local run by %g (%v)", i, i%cuts, diff, err)
		}
	}
}
