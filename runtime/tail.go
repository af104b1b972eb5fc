package runtime

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"tracr/engine"
	"tracr/graph"
	"tracr/tensor"
	"tracr/transport"
	"tracr/zoo"
)

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
	// transport.DefaultLimits.
	Limits transport.Limits
	// ProfileDir is where profiles are cached ("" = the profiler's
	// default cache).
	ProfileDir string
}

// TailHandler is the server's transport.Handler: it keeps the models
// clients upload in a content-addressed cache, runs the tail of a model at
// the cut each transport.MsgInfer names, and profiles models on request (the
// transport answers netprobe's bulk transfers itself). One
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
	if opts.Limits == (transport.Limits{}) {
		opts.Limits = transport.DefaultLimits()
	}
	return &TailHandler{
		opts:     opts,
		models:   &modelCache{max: opts.MaxModelBytes, lru: list.New(), byHash: map[[32]byte]*list.Element{}},
		sessions: &sessionCache{max: opts.MaxSessions, lru: list.New(), byKey: map[sessionKey]*list.Element{}},
	}
}

// Handle answers transport.MsgModelHave, transport.MsgModelPut, transport.MsgInfer and transport.MsgProfileReq,
// and refuses every other message type.
func (h *TailHandler) Handle(ctx context.Context, f transport.Frame) (transport.Frame, error) {
	switch f.Type {
	case transport.MsgModelHave:
		if len(f.Payload) != sha256.Size {
			return transport.Frame{}, fmt.Errorf("model-have: payload of %d bytes, want a %d-byte SHA-256", len(f.Payload), sha256.Size)
		}
		return modelStatus(h.models.get([32]byte(f.Payload)) != nil), nil
	case transport.MsgModelPut:
		if _, err := h.models.put(f.Payload); err != nil {
			return transport.Frame{}, err
		}
		return modelStatus(true), nil
	case transport.MsgInfer:
		return h.infer(ctx, f.Payload)
	case transport.MsgProfileReq:
		return h.profile(ctx, f.Payload)
	}
	return transport.Frame{}, fmt.Errorf("this server does not handle %s messages", f.Type)
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

func modelStatus(have bool) transport.Frame {
	b := byte(0)
	if have {
		b = 1
	}
	return transport.Frame{Type: transport.MsgModelStatus, Payload: []byte{b}}
}

// infer runs one transport.MsgInfer: the tail of the model at the request's cut on
// the request's tensors.
func (h *TailHandler) infer(ctx context.Context, payload []byte) (transport.Frame, error) {
	start := time.Now()
	req, err := transport.DecodeInfer(payload, h.opts.Limits)
	if err != nil {
		return transport.Frame{}, err
	}
	// Parsing the message counts as decoding; opening a session does not.
	parse := time.Since(start)
	key := sessionKey{hash: req.ModelHash, cut: req.Cut}
	ts, err := h.session(ctx, key)
	if err != nil {
		return transport.Frame{}, fmt.Errorf("model %s cut %d: %w", shortHash(key.hash), key.cut, err)
	}
	defer h.sessions.release(ts)

	decodeStart := time.Now()
	inputs := make([]tensor.Tensor, len(req.Tensors))
	for i, w := range req.Tensors {
		if inputs[i], err = transport.DecodeTensor(w, h.opts.Limits); err != nil {
			return transport.Frame{}, fmt.Errorf("cut %d: %w", req.Cut, err)
		}
	}
	decode := parse + time.Since(decodeStart)
	runStart := time.Now()
	outs, err := ts.sess.Run(ctx, inputs)
	if err != nil {
		return transport.Frame{}, fmt.Errorf("model %s cut %d: %w", shortHash(key.hash), key.cut, err)
	}
	run := time.Since(runStart)

	res := transport.InferResult{Cut: req.Cut}
	if len(req.Post) > 0 {
		// Post-process here: only the result goes back, never the raw
		// detection tensor.
		postStart := time.Now()
		if res.Post, err = postProcess(req.Post, outs); err != nil {
			return transport.Frame{}, fmt.Errorf("cut %d: %w", req.Cut, err)
		}
		res.PostNanos = time.Since(postStart).Nanoseconds()
		outs = nil
	}
	encodeStart := time.Now()
	res.Tensors = make([]transport.WireTensor, len(outs))
	for i, t := range outs {
		if res.Tensors[i], err = transport.EncodeTensor(t, req.ResultSpec); err != nil {
			return transport.Frame{}, fmt.Errorf("cut %d: result: %w", req.Cut, err)
		}
	}
	res.ServerNanos = run.Nanoseconds()
	res.DecodeNanos = decode.Nanoseconds()
	res.EncodeNanos = time.Since(encodeStart).Nanoseconds()
	res.QueueNanos = transport.Queued(ctx).Nanoseconds()
	out, err := transport.EncodeInferResult(res)
	if err != nil {
		return transport.Frame{}, err
	}
	return transport.Frame{Type: transport.MsgInferResult, Payload: out}, nil
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
		return nil, transport.ErrModelMissing
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

// Preload puts a model into the cache as if an edge had uploaded it, so
// that an emulated slow link does not pay for a one-time transfer that a
// deployed server would already hold.
func (h *TailHandler) Preload(model []byte) error {
	_, err := h.models.put(model)
	return err
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

	mu     sync.Mutex // guards m, shapes and the graph's use
	m      *graph.Model
	shapes engine.InputShapes // the sizes the edge prepared the model at
}

// useShapes records the input sizes an edge prepared the model at (sent
// with its profile request), so that the tails are cut from the model
// prepared at the same sizes; a model prepared at others is prepared again.
func (cm *cachedModel) useShapes(shapes engine.InputShapes) {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	if shapes.String() != cm.shapes.String() {
		cm.shapes, cm.m = shapes, nil
	}
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
// and preparing the model the first time (at the input sizes useShapes
// recorded, the defaults of engine.Prepare before any).
func (cm *cachedModel) tail(ctx context.Context, k int) ([]byte, error) {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	if cm.m == nil {
		m, err := graph.Parse(cm.data)
		if err != nil {
			return nil, fmt.Errorf("load model: %w", err)
		}
		if _, err := engine.Prepare(ctx, m, 1, cm.shapes); err != nil {
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
