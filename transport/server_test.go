package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"tracr/internal/orttest"

	"golang.org/x/crypto/ssh"
	"google.golang.org/protobuf/proto"

	"tracr/engine"
	"tracr/graph"
	"tracr/graph/onnxpb"
	"tracr/tensor"
)

// needORT skips or fails the test without ONNX Runtime (orttest.Require).
func needORT(t testing.TB) { orttest.Require(t) }

// uploadChain sends the chain model through c and returns it prepared for
// local reference runs, with its hash.
func uploadChain(t *testing.T, c *Client) (*graph.Model, [32]byte) {
	t.Helper()
	model := chainModelBytes(t)
	m, err := graph.Parse(model)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := engine.Prepare(ctx, m, 1); err != nil {
		t.Fatal(err)
	}
	hash, err := c.EnsureModel(ctx, model)
	if err != nil {
		t.Fatal(err)
	}
	return m, hash
}

// chainModelBytes builds a small float32 chain, x[1,16] -> MatMul -> Relu
// -> MatMul -> Tanh -> Add -> y[1,16], whose every prefix is a cut.
func chainModelBytes(t testing.TB) []byte {
	t.Helper()
	vi := func(name string) *onnxpb.ValueInfoProto {
		sp := &onnxpb.TensorShapeProto{}
		for _, d := range []int64{1, 16} {
			sp.Dim = append(sp.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
		}
		return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(tensor.Float32)), Shape: sp}}}}
	}
	weight := func(name string, dims ...int64) *onnxpb.TensorProto {
		n := tensor.Shape(dims).NumElements()
		v := make([]float32, n)
		for i := range v {
			v[i] = float32((i*7+len(name)*3)%13-6) / 9
		}
		return &onnxpb.TensorProto{Name: proto.String(name), Dims: dims, DataType: proto.Int32(int32(tensor.Float32)),
			RawData: tensor.FromFloat32(name, dims, v).Data}
	}
	node := func(op string, in []string, out string) *onnxpb.NodeProto {
		return &onnxpb.NodeProto{Name: proto.String(out + "_node"), OpType: proto.String(op), Input: in, Output: []string{out}}
	}
	g := &onnxpb.GraphProto{
		Name:        proto.String("chain"),
		Input:       []*onnxpb.ValueInfoProto{vi("x")},
		Output:      []*onnxpb.ValueInfoProto{vi("y")},
		Initializer: []*onnxpb.TensorProto{weight("w1", 16, 16), weight("w2", 16, 16), weight("b", 1, 16)},
		Node: []*onnxpb.NodeProto{
			node("MatMul", []string{"x", "w1"}, "h1"),
			node("Relu", []string{"h1"}, "h2"),
			node("MatMul", []string{"h2", "w2"}, "h3"),
			node("Tanh", []string{"h3"}, "h4"),
			node("Add", []string{"h4", "b"}, "y"),
		},
	}
	m := &onnxpb.ModelProto{
		IrVersion:   proto.Int64(8),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}},
		Graph:       g,
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// keyedServer is a Server on 127.0.0.1 with keys on disk made by InitKeys.
type keyedServer struct {
	addr    string
	keys    KeyFiles
	handler *TailHandler
}

// startKeyedServer runs a server with fresh keys in a temporary folder,
// pinned in known_hosts for its address, until the test ends.
func startKeyedServer(t *testing.T, h Handler, session SessionOptions) keyedServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	keys, err := InitKeys(t.TempDir()+"/keys", []string{addr}, false)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := LoadSigner(keys.HostKey)
	if err != nil {
		t.Fatal(err)
	}
	authorized, err := LoadAuthorizedKeys(keys.AuthorizedKeys)
	if err != nil {
		t.Fatal(err)
	}
	ks := keyedServer{addr: addr, keys: keys}
	if h == nil {
		ks.handler = NewTailHandler(TailOptions{Engine: engine.Options{Threads: 1}})
		h = ks.handler
	}
	srv, err := NewServer(ServerOptions{HostKey: hostKey, AuthorizedKeys: authorized, Handler: h, Session: session})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if ks.handler != nil {
			ks.handler.Close()
		}
	})
	return ks
}

// dialKeyed connects to ks with its own edge key and known_hosts.
func dialKeyed(t *testing.T, ks keyedServer) *Client {
	t.Helper()
	cfg, err := LoadClientConfig(ks.keys.Dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(context.Background(), ks.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawChannel opens the tracr subsystem on ks without a Client, to write
// arbitrary bytes.
func rawChannel(t *testing.T, ks keyedServer) ssh.Channel {
	t.Helper()
	cfg, err := LoadClientConfig(ks.keys.Dir)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := cfg.sshConfig(ks.addr)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := ssh.Dial("tcp", ks.addr, sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, reqs, err := conn.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(reqs)
	if ok, err := ch.SendRequest("subsystem", true, ssh.Marshal(subsystemRequest{Subsystem})); !ok || err != nil {
		t.Fatalf("subsystem request: ok %v, err %v", ok, err)
	}
	return ch
}

func rawHeader(t MsgType, id uint64, n uint32) []byte {
	h := AppendHeader(nil, Frame{Type: t, ID: id})
	binary.BigEndian.PutUint32(h[16:20], n)
	return h
}

// TestBadFramesEndOnlyTheirSession writes frames that break the protocol
// on one channel while another client keeps pinging: the bad channel gets
// a MsgError with ID 0 and is closed, the good one never notices, and a
// lying length makes the server allocate only what arrives.
func TestBadFramesEndOnlyTheirSession(t *testing.T) {
	ks := startKeyedServer(t, HandlerFunc(func(ctx context.Context, f Frame) (Frame, error) {
		return Frame{}, errors.New("unused")
	}), SessionOptions{Limits: Limits{MaxPayload: 64 << 20, MaxTensors: 4, MaxRank: 4, MaxTensorBytes: 1 << 20, MaxNameLen: 64}})
	good := dialKeyed(t, ks)
	stop := make(chan struct{})
	pingErr := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				pingErr <- nil
				return
			default:
			}
			if _, err := good.Ping(context.Background()); err != nil {
				pingErr <- err
				return
			}
		}
	}()
	tests := []struct {
		name    string
		write   []byte
		wantErr string // in the MsgError that closes the session
	}{
		{"oversized length", rawHeader(MsgBulkUp, 1, 0xFFFFFFF0), "frame too large"},
		{"over the limit", rawHeader(MsgModelPut, 1, 64<<20+1), "frame too large"},
		{"bad magic", append([]byte("XX"), rawHeader(MsgPing, 1, 0)[2:]...), "bad frame magic"},
		{"unknown type", rawHeader(MsgType(200), 1, 0), "unknown message type"},
		{"other version", func() []byte { h := rawHeader(MsgPing, 1, 0); h[2] = 9; return h }(), "unsupported protocol version"},
		{"reserved bytes", func() []byte { h := rawHeader(MsgPing, 1, 0); h[6] = 1; return h }(), "malformed frame header"},
		// A length within the limit whose bytes never come: the server
		// must not allocate it up front. The channel closes from our side.
		{"lying length", append(rawHeader(MsgBulkUp, 1, 60<<20), "only these bytes"...), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			ch := rawChannel(t, ks)
			if _, err := ch.Write(tt.write); err != nil {
				t.Fatal(err)
			}
			if tt.wantErr == "" {
				time.Sleep(100 * time.Millisecond) // let the server read what came
				runtime.ReadMemStats(&after)
				ch.Close()
			} else {
				f, err := ReadFrame(ch, DefaultLimits())
				if err != nil {
					t.Fatalf("reading the server's reply: %v", err)
				}
				if f.Type != MsgError || f.ID != 0 || !strings.Contains(string(f.Payload), tt.wantErr) {
					t.Fatalf("got %s id %d %q; want error id 0 containing %q", f.Type, f.ID, f.Payload, tt.wantErr)
				}
				if _, err := ReadFrame(ch, DefaultLimits()); err != io.EOF {
					t.Fatalf("after the error the channel gave %v, want EOF", err)
				}
				runtime.ReadMemStats(&after)
			}
			// The whole process allocates: pings, SSH buffers. 8 MiB is far
			// below any of the lengths claimed.
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
				t.Errorf("allocated %d MiB while rejecting the frame", grew>>20)
			}
		})
	}
	close(stop)
	if err := <-pingErr; err != nil {
		t.Fatalf("the well-behaved client failed: %v", err)
	}
}

// TestRequestErrors checks that a failed request comes back as a
// RemoteError for that request only, and the session carries on.
func TestRequestErrors(t *testing.T) {
	needORT(t)
	ks := startKeyedServer(t, nil, SessionOptions{})
	c := dialKeyed(t, ks)
	ctx := context.Background()
	model := chainModelBytes(t)
	hash, err := c.EnsureModel(ctx, model)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := tensor.Random("x", tensor.Float32, tensor.Shape{1, 16}, 1)
	wx, _ := EncodeTensor(x, CodecSpec{})
	tests := []struct {
		name        string
		req         InferRequest
		wantErr     string
		wantMissing bool
	}{
		{"unknown model", InferRequest{ModelHash: [32]byte{1, 2, 3}, Cut: 0, Tensors: []WireTensor{wx}}, "model not held by the server", true},
		{"cut past the end", InferRequest{ModelHash: hash, Cut: 6, Tensors: []WireTensor{wx}}, "cut 6 does not exist: valid cuts are 0..5", false},
		{"negative cut", InferRequest{ModelHash: hash, Cut: -1, Tensors: []WireTensor{wx}}, "cut -1 does not exist", false},
		{"wrong input", InferRequest{ModelHash: hash, Cut: 2, Tensors: []WireTensor{wx}}, `unknown input "x"; the model's inputs are h2`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Infer(ctx, tt.req)
			var re *RemoteError
			if !errors.As(err, &re) || re.Request != MsgInfer || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Infer: %v; want a RemoteError for infer containing %q", err, tt.wantErr)
			}
			if errors.Is(err, ErrModelMissing) != tt.wantMissing {
				t.Errorf("errors.Is(err, ErrModelMissing) = %v, want %v", !tt.wantMissing, tt.wantMissing)
			}
			if _, err := c.Ping(ctx); err != nil {
				t.Fatalf("session broken after the error: %v", err)
			}
		})
	}
	if _, err := c.Do(ctx, Frame{Type: MsgProfileReq}); err == nil || !strings.Contains(err.Error(), "profile request: unexpected end of JSON input") {
		t.Errorf("empty profile request: %v; want refused", err)
	}
	if _, err := c.Do(ctx, Frame{Type: MsgProfileReq, Payload: []byte(`{"model_hash":"0102"}`)}); err == nil || !strings.Contains(err.Error(), "is not a hex SHA-256") {
		t.Errorf("bad hash: %v", err)
	}
	if _, err := c.Do(ctx, Frame{Type: MsgPong}); err == nil || !strings.Contains(err.Error(), "does not handle pong") {
		t.Errorf("pong request: %v; want refused", err)
	}
}

// TestServerRefusesOtherRequests checks that only the tracr subsystem is
// served: no shell, command, terminal or other subsystem.
func TestServerRefusesOtherRequests(t *testing.T) {
	ks := startKeyedServer(t, HandlerFunc(func(ctx context.Context, f Frame) (Frame, error) { return Frame{}, nil }), SessionOptions{})
	cfg, err := LoadClientConfig(ks.keys.Dir)
	if err != nil {
		t.Fatal(err)
	}
	sc, _ := cfg.sshConfig(ks.addr)
	conn, err := ssh.Dial("tcp", ks.addr, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tests := []struct {
		req     string
		payload []byte
	}{
		{"shell", nil},
		{"exec", ssh.Marshal(struct{ Cmd string }{"id"})},
		{"subsystem", ssh.Marshal(subsystemRequest{"sftp"})},
		{"pty-req", nil},
	}
	for _, tt := range tests {
		ch, reqs, err := conn.OpenChannel("session", nil)
		if err != nil {
			t.Fatal(err)
		}
		go ssh.DiscardRequests(reqs)
		if ok, err := ch.SendRequest(tt.req, true, tt.payload); ok || err != nil {
			t.Errorf("%s request: ok %v, err %v; want refused", tt.req, ok, err)
		}
		ch.Close()
	}
	if _, _, err := conn.OpenChannel("direct-tcpip", nil); err == nil {
		t.Error("port forwarding channel accepted")
	}
}

// TestModelCache checks content addressing: a model is uploaded once, the
// byte bound evicts the least recently used, and Infer re-sends an evicted
// model by itself.
func TestModelCache(t *testing.T) {
	needORT(t)
	model := chainModelBytes(t)
	h := NewTailHandler(TailOptions{MaxModelBytes: int64(len(model)) + 100, Engine: engine.Options{Threads: 1}})
	defer h.Close()
	ks := startKeyedServer(t, h, SessionOptions{})
	c := dialKeyed(t, ks)
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
	wx, _ := EncodeTensor(x, CodecSpec{})
	res, err := c.Infer(ctx, InferRequest{ModelHash: hash, Cut: 5, Tensors: []WireTensor{wx}})
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
	needORT(t)
	h := NewTailHandler(TailOptions{MaxSessions: 2, Engine: engine.Options{Threads: 1}})
	defer h.Close()
	ks := startKeyedServer(t, h, SessionOptions{})
	c := dialKeyed(t, ks)
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

// runBothWays runs the model on x locally, and as head (locally) + tail
// (on the server through c) at cut; it returns both outputs.
func runBothWays(t testing.TB, c *Client, m *graph.Model, hash [32]byte, cut int, x tensor.Tensor) (want, got []tensor.Tensor) {
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
func inferRemote(t testing.TB, c *Client, hash [32]byte, cut int, mid []tensor.Tensor) []tensor.Tensor {
	t.Helper()
	req := InferRequest{ModelHash: hash, Cut: cut}
	for _, m := range mid {
		w, err := EncodeTensor(m, CodecSpec{})
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
		o, err := DecodeTensor(w, DefaultLimits())
		if err != nil {
			t.Error(err)
			return nil
		}
		out = append(out, o)
	}
	return out
}

// TestManyClients runs several clients at once against one server, each
// pipelining requests, to show sessions are independent.
func TestManyClients(t *testing.T) {
	ks := startKeyedServer(t, HandlerFunc(func(ctx context.Context, f Frame) (Frame, error) {
		if f.Type != MsgBulkUp {
			return Frame{}, fmt.Errorf("unexpected %s", f.Type)
		}
		// Echo the upload's first byte back, so replies are per client.
		return Frame{Type: MsgBulkAck, Payload: f.Payload[:1]}, nil
	}), SessionOptions{})
	var wg sync.WaitGroup
	errs := make(chan error, 8*20)
	for client := range 8 {
		c := dialKeyed(t, ks)
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tag := byte(client*20 + i)
				r, err := c.Do(context.Background(), Frame{Type: MsgBulkUp, Payload: bytes.Repeat([]byte{tag}, 1000)})
				if err == nil && (r.Type != MsgBulkAck || len(r.Payload) != 1 || r.Payload[0] != tag) {
					err = fmt.Errorf("client %d request %d: got %s %x", client, i, r.Type, r.Payload)
				}
				if err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestProfileUsesTailThreads: a profile request that names no thread count
// is measured with the threads the server runs its tails with, so the
// planner prices the tails the server will actually run; one that names a
// count gets it.
func TestProfileUsesTailThreads(t *testing.T) {
	needORT(t)
	h := NewTailHandler(TailOptions{Engine: engine.Options{Threads: 1}, ProfileDir: t.TempDir()})
	defer h.Close()
	ks := startKeyedServer(t, h, SessionOptions{})
	c := dialKeyed(t, ks)
	model := chainModelBytes(t)
	for _, tt := range []struct{ ask, want int }{{0, 1}, {2, 2}} {
		p, err := c.Profile(context.Background(), model, ProfileRequest{Threads: tt.ask, Repeats: 1})
		if err != nil {
			t.Fatal(err)
		}
		if p.Threads != tt.want {
			t.Errorf("asked for %d threads: profiled with %d, want %d", tt.ask, p.Threads, tt.want)
		}
	}
}
