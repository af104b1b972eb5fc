package transport

import (
	"container/list"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"tracr/engine"
	"tracr/graph"
	"tracr/tensor"
	"tracr/zoo"
)

// Handler answers the requests of a tracr session. Handle gets every frame
// but the session's own MsgHello and MsgPing (which ServeStream answers at
// once, so a ping measures the link and not the server's queue) and returns
// the reply; ServeStream gives the reply the request's ID. An error goes
// back to the client as MsgError (with FlagModelMissing when it wraps
// ErrModelMissing). Handle is called from many goroutines at once, and ctx
// ends when the client goes away.
type Handler interface {
	Handle(ctx context.Context, f Frame) (Frame, error)
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(ctx context.Context, f Frame) (Frame, error)

// Handle calls fn(ctx, f).
func (fn HandlerFunc) Handle(ctx context.Context, f Frame) (Frame, error) { return fn(ctx, f) }

// FlagModelMissing is set on a MsgError that refuses a request because the
// server does not hold the model it names; the client uploads the model
// (MsgModelPut) and tries again.
const FlagModelMissing uint8 = 1

// ErrModelMissing reports a request for a model the server does not hold
// (it was never uploaded, or the cache evicted it). It travels as
// FlagModelMissing.
var ErrModelMissing = errors.New("model not held by the server")

// SessionOptions configures the serving of one tracr session.
type SessionOptions struct {
	// Limits bounds what is read from the client; zero means DefaultLimits.
	Limits Limits
	// Concurrency is how many requests of the session run at once (so
	// pipelined requests overlap); 0 means 4. Reading stops while all are
	// busy, which pushes back on the client.
	Concurrency int
	// Name is what the server answers a MsgHello with; "" means "tracr".
	Name string
	// Logf, when set, receives a line about each session that ends in error.
	Logf func(format string, args ...any)
}

func (o SessionOptions) withDefaults() SessionOptions {
	if o.Limits == (Limits{}) {
		o.Limits = DefaultLimits()
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Name == "" {
		o.Name = "tracr"
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o
}

type queuedKey struct{}

// Queued returns how long the request being handled waited in its
// session's queue before Handle was called (0 outside ServeStream).
func Queued(ctx context.Context) time.Duration {
	d, _ := ctx.Value(queuedKey{}).(time.Duration)
	return d
}

// ServeStream serves one tracr session over rw (an SSH channel, or stdin
// and stdout under OpenSSH) until the client closes it or ctx ends. It runs
// up to opts.Concurrency requests at once and writes each reply as it is
// ready. A frame that breaks the protocol (bad header, over the limits,
// truncated) ends the session: ServeStream sends a MsgError with ID 0 saying
// why and returns the error; the caller closes the stream.
func ServeStream(ctx context.Context, rw io.ReadWriter, h Handler, opts SessionOptions) error {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := newFrameStream(rw, opts.Limits)
	sem := make(chan struct{}, opts.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	var werr error // first write error, under werrOnce
	var werrOnce sync.Once
	reply := func(f Frame) {
		if err := s.write(f); err != nil {
			werrOnce.Do(func() { werr = err })
			cancel() // the stream is broken: stop reading and running
		}
	}
	for {
		f, err := s.read()
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				wg.Wait()
				return werr
			}
			// Tell the client why before hanging up; it may not be
			// listening, so a failed write changes nothing.
			cancel()
			_ = s.write(Frame{Type: MsgError, Payload: []byte("closing session: " + err.Error())})
			return fmt.Errorf("session: %w", err)
		}
		switch f.Type {
		case MsgHello:
			reply(Frame{Type: MsgHelloOK, ID: f.ID, Payload: []byte(opts.Name)})
			continue
		case MsgPing:
			reply(Frame{Type: MsgPong, ID: f.ID, Payload: f.Payload})
			continue
		}
		arrived := time.Now()
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return werr
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rctx := context.WithValue(ctx, queuedKey{}, time.Since(arrived))
			out, err := h.Handle(rctx, f)
			if err == nil && !out.Type.Valid() {
				err = fmt.Errorf("handler replied to %s with invalid message type %d", f.Type, out.Type)
			}
			if err != nil {
				out = errorFrame(err)
			}
			out.ID = f.ID
			reply(out)
		}()
	}
}

// errorFrame turns a handler error into the MsgError sent back.
func errorFrame(err error) Frame {
	f := Frame{Type: MsgError, Payload: []byte(err.Error())}
	if errors.Is(err, ErrModelMissing) {
		f.Flags = FlagModelMissing
	}
	return f
}

// ServerOptions configures a Server.
type ServerOptions struct {
	// HostKey is the server's private host key.
	HostKey ssh.Signer
	// AuthorizedKeys are the client public keys the server accepts; any
	// user name goes with them.
	AuthorizedKeys []ssh.PublicKey
	// Handler answers requests; it is shared by every session.
	Handler Handler
	// Session configures each session.
	Session SessionOptions
	// Ciphers are the SSH ciphers accepted; nil means DefaultCiphers.
	Ciphers []string
	// HandshakeTimeout bounds a client's SSH handshake; 0 means 10s.
	HandshakeTimeout time.Duration
}

// Server serves tracr sessions as the SSH subsystem "tracr": key
// authentication only, one session per SSH channel, any number of clients
// at once, each isolated from the others (a client that breaks the protocol
// loses only its own channel).
type Server struct {
	cfg     *ssh.ServerConfig
	handler Handler
	session SessionOptions
	timeout time.Duration
}

// NewServer checks opts and returns a server ready to Serve.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.HostKey == nil {
		return nil, errors.New("new server: no host key")
	}
	if len(opts.AuthorizedKeys) == 0 {
		return nil, errors.New("new server: no authorized client keys")
	}
	if opts.Handler == nil {
		return nil, errors.New("new server: no handler")
	}
	authorized := map[string]bool{}
	for _, k := range opts.AuthorizedKeys {
		authorized[string(k.Marshal())] = true
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(c ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if !authorized[string(key.Marshal())] {
				return nil, fmt.Errorf("key %s is not authorized", ssh.FingerprintSHA256(key))
			}
			return &ssh.Permissions{Extensions: map[string]string{"pubkey-fp": ssh.FingerprintSHA256(key)}}, nil
		},
		ServerVersion: "SSH-2.0-tracr",
	}
	cfg.Ciphers = opts.Ciphers
	if cfg.Ciphers == nil {
		cfg.Ciphers = DefaultCiphers()
	}
	cfg.AddHostKey(opts.HostKey)
	s := &Server{cfg: cfg, handler: opts.Handler, session: opts.Session.withDefaults(), timeout: opts.HandshakeTimeout}
	if s.timeout <= 0 {
		s.timeout = 10 * time.Second
	}
	return s, nil
}

// Serve accepts SSH connections on ln until ctx ends or ln fails, then
// closes ln and every connection and returns once they are gone. It returns
// nil when ctx ended it.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			ln.Close()
			return fmt.Errorf("serve %s: %w", ln.Addr(), err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c)
		}()
	}
}

// serveConn runs one client's SSH connection.
func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(s.timeout))
	sc, chans, reqs, err := ssh.NewServerConn(c, s.cfg)
	if err != nil {
		s.session.Logf("ssh handshake with %s: %v", c.RemoteAddr(), err)
		return
	}
	c.SetDeadline(time.Time{})
	defer sc.Close()
	stop := context.AfterFunc(ctx, func() { sc.Close() })
	defer stop()
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "tracr serves session channels only")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveChannel(ctx, sc, ch, chReqs)
		}()
	}
}

// serveChannel answers a session channel's requests: the "tracr" subsystem
// starts a tracr session on it; shells, commands, terminals and other
// subsystems are refused.
func (s *Server) serveChannel(ctx context.Context, sc *ssh.ServerConn, ch ssh.Channel, reqs <-chan *ssh.Request) {
	started := false
	done := make(chan struct{})
	for req := range reqs {
		var sub subsystemRequest
		ok := req.Type == "subsystem" && !started &&
			ssh.Unmarshal(req.Payload, &sub) == nil && sub.Name == Subsystem
		if req.WantReply {
			req.Reply(ok, nil)
		}
		if !ok {
			continue
		}
		started = true
		go func() {
			defer close(done)
			status := uint32(0)
			if err := ServeStream(ctx, ch, s.handler, s.session); err != nil {
				s.session.Logf("session of %s@%s: %v", sc.User(), sc.RemoteAddr(), err)
				status = 1
			}
			ch.SendRequest("exit-status", false, ssh.Marshal(exitStatus{status}))
			ch.Close()
		}()
	}
	if started {
		<-done
	} else {
		ch.Close()
	}
}

// TailOptions configures a TailHandler.
type TailOptions struct {
	// Engine configures the ONNX Runtime sessions that run tails.
	Engine engine.Options
	// MaxModelBytes bounds the model cache; the least recently used models
	// go first. 0 means 1 GiB.
	MaxModelBytes int64
	// MaxSessions bounds the tail sessions kept open, one per (model, cut);
	// the least recently used close first. 0 means 16.
	MaxSessions int
	// Limits bounds the tensors decoded from requests; zero means
	// DefaultLimits.
	Limits Limits
	// MaxBulk is the largest netprobe download served; 0 means 64 MiB.
	MaxBulk int64
	// ProfileDir is where profiles are cached ("" = the profiler's
	// default cache).
	ProfileDir string
}

// TailHandler is tracr's default Handler: it keeps the models clients
// upload in a content-addressed cache, runs the tail of a model at the cut
// each MsgInfer names, and answers netprobe's bulk transfers. One
// TailHandler serves every session of a server; its caches are shared, so a
// model uploaded once serves every client, and each (model, cut) session is
// created once.
type TailHandler struct {
	opts     TailOptions
	models   *modelCache
	sessions *sessionCache
}

// NewTailHandler returns a TailHandler with empty caches. Close it to
// release the tail sessions.
func NewTailHandler(opts TailOptions) *TailHandler {
	if opts.MaxModelBytes <= 0 {
		opts.MaxModelBytes = 1 << 30
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = 16
	}
	if opts.Limits == (Limits{}) {
		opts.Limits = DefaultLimits()
	}
	if opts.MaxBulk <= 0 {
		opts.MaxBulk = 64 << 20
	}
	return &TailHandler{
		opts:     opts,
		models:   &modelCache{max: opts.MaxModelBytes, lru: list.New(), byHash: map[[32]byte]*list.Element{}},
		sessions: &sessionCache{max: opts.MaxSessions, lru: list.New(), byKey: map[sessionKey]*list.Element{}},
	}
}

// Handle answers MsgModelHave, MsgModelPut, MsgInfer, MsgBulkUp and
// MsgBulkDownReq, and refuses every other message type.
func (h *TailHandler) Handle(ctx context.Context, f Frame) (Frame, error) {
	switch f.Type {
	case MsgModelHave:
		if len(f.Payload) != sha256.Size {
			return Frame{}, fmt.Errorf("model-have: payload of %d bytes, want a %d-byte SHA-256", len(f.Payload), sha256.Size)
		}
		return modelStatus(h.models.get([32]byte(f.Payload)) != nil), nil
	case MsgModelPut:
		if _, err := h.models.put(f.Payload); err != nil {
			return Frame{}, err
		}
		return modelStatus(true), nil
	case MsgInfer:
		return h.infer(ctx, f.Payload)
	case MsgProfileReq:
		return h.profile(ctx, f.Payload)
	case MsgBulkUp:
		return Frame{Type: MsgBulkAck, Payload: binary.BigEndian.AppendUint64(nil, uint64(len(f.Payload)))}, nil
	case MsgBulkDownReq:
		if len(f.Payload) != 8 {
			return Frame{}, fmt.Errorf("bulk-down-req: payload of %d bytes, want 8", len(f.Payload))
		}
		n := binary.BigEndian.Uint64(f.Payload)
		if n > uint64(h.opts.MaxBulk) {
			return Frame{}, fmt.Errorf("bulk-down-req: %d bytes asked, limit %d", n, h.opts.MaxBulk)
		}
		return Frame{Type: MsgBulkDown, Payload: make([]byte, n)}, nil
	}
	return Frame{}, fmt.Errorf("this server does not handle %s messages", f.Type)
}

// postProcess applies a request's JSON zoo.PostSpec to the outputs and
// returns the JSON zoo.Result.
func postProcess(spec []byte, outs []tensor.Tensor) ([]byte, error) {
	ps, err := zoo.UnmarshalPost(spec)
	if err != nil {
		return nil, err
	}
	r, err := zoo.PostProcess(ps, outs)
	if err != nil {
		return nil, err
	}
	return json.Marshal(r)
}

func modelStatus(have bool) Frame {
	b := byte(0)
	if have {
		b = 1
	}
	return Frame{Type: MsgModelStatus, Payload: []byte{b}}
}

// infer runs one MsgInfer: the tail of the model at the request's cut on
// the request's tensors.
func (h *TailHandler) infer(ctx context.Context, payload []byte) (Frame, error) {
	start := time.Now()
	req, err := DecodeInfer(payload, h.opts.Limits)
	if err != nil {
		return Frame{}, err
	}
	// Parsing the message counts as decoding; opening a session does not.
	parse := time.Since(start)
	key := sessionKey{hash: req.ModelHash, cut: req.Cut}
	ts, err := h.session(ctx, key)
	if err != nil {
		return Frame{}, fmt.Errorf("model %s cut %d: %w", shortHash(key.hash), key.cut, err)
	}
	defer h.sessions.release(ts)

	decodeStart := time.Now()
	inputs := make([]tensor.Tensor, len(req.Tensors))
	for i, w := range req.Tensors {
		if inputs[i], err = DecodeTensor(w, h.opts.Limits); err != nil {
			return Frame{}, fmt.Errorf("cut %d: %w", req.Cut, err)
		}
	}
	decode := parse + time.Since(decodeStart)
	runStart := time.Now()
	outs, err := ts.sess.Run(ctx, inputs)
	if err != nil {
		return Frame{}, fmt.Errorf("model %s cut %d: %w", shortHash(key.hash), key.cut, err)
	}
	run := time.Since(runStart)

	res := InferResult{Cut: req.Cut}
	if len(req.Post) > 0 {
		// Post-process here: only the result goes back, never the raw
		// detection tensor.
		postStart := time.Now()
		if res.Post, err = postProcess(req.Post, outs); err != nil {
			return Frame{}, fmt.Errorf("cut %d: %w", req.Cut, err)
		}
		res.PostNanos = time.Since(postStart).Nanoseconds()
		outs = nil
	}
	encodeStart := time.Now()
	res.Tensors = make([]WireTensor, len(outs))
	for i, t := range outs {
		if res.Tensors[i], err = EncodeTensor(t, req.ResultSpec); err != nil {
			return Frame{}, fmt.Errorf("cut %d: result: %w", req.Cut, err)
		}
	}
	res.ServerNanos = run.Nanoseconds()
	res.DecodeNanos = decode.Nanoseconds()
	res.EncodeNanos = time.Since(encodeStart).Nanoseconds()
	res.QueueNanos = Queued(ctx).Nanoseconds()
	out, err := EncodeInferResult(res)
	if err != nil {
		return Frame{}, err
	}
	return Frame{Type: MsgInferResult, Payload: out}, nil
}

// session returns the open tail session for key, creating it on first use;
// the caller releases it.
func (h *TailHandler) session(ctx context.Context, key sessionKey) (*tailSession, error) {
	ts, created := h.sessions.acquire(key)
	if created {
		// The session serves every later request, so the first
		// request's cancellation must not abort its creation.
		sess, err := h.newTail(context.WithoutCancel(ctx), key)
		h.sessions.finish(ts, sess, err)
	}
	select {
	case <-ts.ready:
	case <-ctx.Done():
		h.sessions.release(ts)
		return nil, ctx.Err()
	}
	if ts.err != nil {
		h.sessions.release(ts)
		return nil, ts.err
	}
	return ts, nil
}

// newTail partitions the cached model at key.cut and opens its tail.
func (h *TailHandler) newTail(ctx context.Context, key sessionKey) (*engine.Session, error) {
	cm := h.models.get(key.hash)
	if cm == nil {
		return nil, ErrModelMissing
	}
	tail, err := cm.tail(ctx, key.cut)
	if err != nil {
		return nil, err
	}
	sess, err := engine.NewSession(tail, h.opts.Engine)
	if err != nil {
		return nil, fmt.Errorf("tail: %w", err)
	}
	return sess, nil
}

// Close closes the tail sessions (each after its runs in flight end) and
// empties the caches.
func (h *TailHandler) Close() error {
	h.models.clear()
	return h.sessions.clear()
}

func shortHash(h [32]byte) string { return hex.EncodeToString(h[:6]) }

// modelCache holds uploaded models by SHA-256, bounded in bytes, least
// recently used first out.
type modelCache struct {
	mu     sync.Mutex
	max    int64
	size   int64
	lru    *list.List // of *cachedModel, most recent at the front
	byHash map[[32]byte]*list.Element
}

// cachedModel is one uploaded model and, once a tail was asked of it, the
// parsed and prepared graph.
type cachedModel struct {
	hash [32]byte
	data []byte

	mu sync.Mutex // guards m and the graph's use
	m  *graph.Model
}

// put stores data under its SHA-256, which the server computes itself, so
// no client can file bytes under another model's hash.
func (c *modelCache) put(data []byte) ([32]byte, error) {
	hash := sha256.Sum256(data)
	if int64(len(data)) > c.max {
		return hash, fmt.Errorf("model-put: model of %d bytes exceeds the server's model cache (%d bytes)", len(data), c.max)
	}
	if len(data) == 0 {
		return hash, errors.New("model-put: empty model")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byHash[hash]; ok {
		c.lru.MoveToFront(el)
		return hash, nil
	}
	c.byHash[hash] = c.lru.PushFront(&cachedModel{hash: hash, data: data})
	c.size += int64(len(data))
	for c.size > c.max {
		old := c.lru.Remove(c.lru.Back()).(*cachedModel)
		delete(c.byHash, old.hash)
		c.size -= int64(len(old.data))
	}
	return hash, nil
}

// get returns the model with the hash, or nil, and marks it used.
func (c *modelCache) get(hash [32]byte) *cachedModel {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byHash[hash]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(el)
	return el.Value.(*cachedModel)
}

func (c *modelCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.Init()
	clear(c.byHash)
	c.size = 0
}

// tail returns the serialized tail of the model at prefix cut k, parsing
// and preparing the model the first time.
func (cm *cachedModel) tail(ctx context.Context, k int) ([]byte, error) {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	if cm.m == nil {
		m, err := graph.Parse(cm.data)
		if err != nil {
			return nil, fmt.Errorf("load model: %w", err)
		}
		if _, err := engine.Prepare(ctx, m, 1); err != nil {
			return nil, fmt.Errorf("prepare model: %w", err)
		}
		cm.m = m
	}
	if n := len(cm.m.Nodes()); k < 0 || k > n {
		return nil, fmt.Errorf("cut %d does not exist: valid cuts are 0..%d", k, n)
	}
	s, err := graph.Partition(cm.m, graph.Prefix(k))
	if err != nil {
		return nil, err
	}
	return s.Tail, nil
}

// sessionKey names a tail session: a model and a cut.
type sessionKey struct {
	hash [32]byte
	cut  int
}

// tailSession is an entry of the session cache. ready closes once sess or
// err is set; refs counts the requests holding it, and an evicted entry
// (gone) closes its session when the last one lets go.
type tailSession struct {
	key   sessionKey
	ready chan struct{}
	sess  *engine.Session
	err   error
	refs  int  // under sessionCache.mu
	gone  bool // under sessionCache.mu
}

// sessionCache holds open tail sessions, bounded in count, least recently
// used first out.
type sessionCache struct {
	mu    sync.Mutex
	max   int
	lru   *list.List // of *tailSession, most recent at the front
	byKey map[sessionKey]*list.Element
}

// acquire returns the entry for key, holding a reference to it, and
// whether this call created it (the caller must then finish it).
func (c *sessionCache) acquire(key sessionKey) (ts *tailSession, created bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[key]; ok {
		c.lru.MoveToFront(el)
		ts = el.Value.(*tailSession)
		ts.refs++
		return ts, false
	}
	ts = &tailSession{key: key, ready: make(chan struct{}), refs: 1}
	c.byKey[key] = c.lru.PushFront(ts)
	for c.lru.Len() > c.max {
		c.evict(c.lru.Back())
	}
	return ts, true
}

// finish records the outcome of creating ts; a failed entry leaves the
// cache so that a later request tries again.
func (c *sessionCache) finish(ts *tailSession, sess *engine.Session, err error) {
	c.mu.Lock()
	ts.sess, ts.err = sess, err
	if el, ok := c.byKey[ts.key]; ok && err != nil && el.Value == ts {
		c.lru.Remove(el)
		delete(c.byKey, ts.key)
	}
	c.mu.Unlock()
	close(ts.ready)
}

// evict drops an entry; its session closes now if unused, else on its
// last release. c.mu is held.
func (c *sessionCache) evict(el *list.Element) {
	ts := c.lru.Remove(el).(*tailSession)
	delete(c.byKey, ts.key)
	ts.gone = true
	if ts.refs == 0 && ts.sess != nil {
		// Close waits for runs in flight; none hold this entry.
		go ts.sess.Close()
	}
}

// release lets go of an entry acquire returned.
func (c *sessionCache) release(ts *tailSession) {
	c.mu.Lock()
	ts.refs--
	closeIt := ts.gone && ts.refs == 0 && ts.sess != nil
	c.mu.Unlock()
	if closeIt {
		ts.sess.Close()
	}
}

// clear evicts every entry and closes the sessions no request holds.
func (c *sessionCache) clear() error {
	c.mu.Lock()
	var idle []*engine.Session
	for c.lru.Len() > 0 {
		ts := c.lru.Remove(c.lru.Back()).(*tailSession)
		delete(c.byKey, ts.key)
		ts.gone = true
		if ts.refs == 0 && ts.sess != nil {
			idle = append(idle, ts.sess)
		}
	}
	c.mu.Unlock()
	var errs []error
	for _, s := range idle {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// LoopbackOptions configures StartLoopback.
type LoopbackOptions struct {
	// Handler answers requests; nil means a TailHandler made with Tail,
	// closed with the server.
	Handler Handler
	Tail    TailOptions
	// Session configures each session.
	Session SessionOptions
	// Link, when set, is emulated on every connection of Config (the
	// client is the edge side).
	Link *LinkState
}

// Loopback is a tracr server running inside this process on 127.0.0.1,
// with throw-away keys: what run, plan and sweep use when no server is
// configured. It speaks real SSH, so the whole path is exercised.
type Loopback struct {
	// Addr is the address the server listens on.
	Addr string
	// Config connects to it: the edge key the server authorises and the
	// server's host key pinned.
	Config ClientConfig

	cancel context.CancelFunc
	done   chan error
	owned  *TailHandler // closed with the server; nil for a caller's handler
}

// StartLoopback generates an edge key and a host key in memory, starts a
// server on 127.0.0.1 (a free port) and returns once it listens. The
// server stops when ctx ends or Close is called.
func StartLoopback(ctx context.Context, opts LoopbackOptions) (*Loopback, error) {
	hostKey, err := memorySigner("tracr-loopback-server")
	if err != nil {
		return nil, fmt.Errorf("start loopback server: %w", err)
	}
	edgeKey, err := memorySigner("tracr-loopback-edge")
	if err != nil {
		return nil, fmt.Errorf("start loopback server: %w", err)
	}
	l := &Loopback{done: make(chan error, 1)}
	h := opts.Handler
	if h == nil {
		l.owned = NewTailHandler(opts.Tail)
		h = l.owned
	}
	srv, err := NewServer(ServerOptions{HostKey: hostKey, AuthorizedKeys: []ssh.PublicKey{edgeKey.PublicKey()}, Handler: h, Session: opts.Session})
	if err != nil {
		return nil, fmt.Errorf("start loopback server: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start loopback server: %w", err)
	}
	l.Addr = ln.Addr().String()
	l.Config = ClientConfig{User: "tracr", Signer: edgeKey, KeyFile: "the loopback edge key", HostKey: hostKey.PublicKey(), Link: opts.Link}
	sctx, cancel := context.WithCancel(ctx)
	l.cancel = cancel
	go func() { l.done <- srv.Serve(sctx, ln) }()
	return l, nil
}

// memorySigner returns a fresh ed25519 key that never touches the disk.
func memorySigner(comment string) (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", comment, err)
	}
	return ssh.NewSignerFromKey(priv)
}

// Preload puts a model into the server's cache as if an edge had uploaded
// it, so that an emulated slow link does not pay for a one-time transfer
// that a deployed server would already hold. It needs the default handler.
func (l *Loopback) Preload(model []byte) error {
	if l.owned == nil {
		return errors.New("preload: the loopback server runs a caller's handler")
	}
	_, err := l.owned.models.put(model)
	return err
}

// Dial connects a new client to the server.
func (l *Loopback) Dial(ctx context.Context) (*Client, error) {
	return Dial(ctx, l.Addr, l.Config)
}

// Close stops the server, closing every connection, and waits for it.
func (l *Loopback) Close() error {
	l.cancel()
	err := <-l.done
	l.done <- err // a second Close returns the same
	if l.owned != nil {
		err = errors.Join(err, l.owned.Close())
	}
	return err
}
