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

	"golang.org/x/crypto/ssh"

	"tracr/engine"
	"tracr/graph"
	"tracr/internal/orttest"
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
	if _, err := engine.Prepare(ctx, m, 1, nil); err != nil {
		t.Fatal(err)
	}
	hash, err := c.EnsureModel(ctx, model)
	if err != nil {
		t.Fatal(err)
	}
	return m, hash
}

// chainModelBytes is the small chain model every test here uploads.
func chainModelBytes(t testing.TB) []byte { return orttest.ChainModel(t) }

// keyedServer is a Server on 127.0.0.1 with keys on disk made by InitKeys.
type keyedServer struct {
	addr string
	keys KeyFiles
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
		// must not allocate it up front. We end our side of the channel
		// after the bytes, so the server reads all that came and refuses
		// the frame as truncated: the reply shows it got that far.
		{"lying length", append(rawHeader(MsgBulkUp, 1, 60<<20), "only these bytes"...), "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			ch := rawChannel(t, ks)
			if _, err := ch.Write(tt.write); err != nil {
				t.Fatal(err)
			}
			// Every case but the lying length ends at the header; for that
			// one the end of our side is what ends the frame.
			if err := ch.CloseWrite(); err != nil {
				t.Fatal(err)
			}
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
		if f.Type != MsgInfer {
			return Frame{}, fmt.Errorf("unexpected %s", f.Type)
		}
		// Echo the request's first byte back, so replies are per client.
		return Frame{Type: MsgInferResult, Payload: f.Payload[:1]}, nil
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
				r, err := c.Do(context.Background(), Frame{Type: MsgInfer, Payload: bytes.Repeat([]byte{tag}, 1000)})
				if err == nil && (r.Type != MsgInferResult || len(r.Payload) != 1 || r.Payload[0] != tag) {
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

// TestBulkAnsweredByTheSession checks that netprobe's bulk transfers are
// answered by the session itself, whatever the Handler (here one that
// refuses everything), within SessionOptions.MaxBulk.
func TestBulkAnsweredByTheSession(t *testing.T) {
	ks := startKeyedServer(t, LinkOnly{}, SessionOptions{MaxBulk: 1 << 20})
	c := dialKeyed(t, ks)
	ctx := context.Background()
	if err := c.Upload(ctx, make([]byte, 3<<20)); err != nil {
		t.Errorf("Upload: %v", err)
	}
	if err := c.Download(ctx, 1<<20); err != nil {
		t.Errorf("Download at the limit: %v", err)
	}
	if err := c.Download(ctx, 1<<20+1); err == nil || !strings.Contains(err.Error(), "bulk-down-req: 1048577 bytes asked, limit 1048576") {
		t.Errorf("Download over the limit: %v; want refused", err)
	}
	if _, err := c.Do(ctx, Frame{Type: MsgBulkDownReq, Payload: []byte{1}}); err == nil || !strings.Contains(err.Error(), "payload of 1 bytes, want 8") {
		t.Errorf("short bulk-down-req: %v; want refused", err)
	}
	if _, err := c.Do(ctx, Frame{Type: MsgInfer}); err == nil || !strings.Contains(err.Error(), "does not handle infer messages") {
		t.Errorf("infer to a link-only server: %v; want refused", err)
	}
}
