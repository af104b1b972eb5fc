package transport

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Handler answers the requests of a tracr session. Handle gets every frame
// but the link-level ones ServeStream answers itself: the session's
// MsgHello, MsgPing (answered at once, so a ping measures the link and not
// the server's queue) and netprobe's bulk transfers, MsgBulkUp and
// MsgBulkDownReq (answered in the request queue like any request). Handle
// returns the reply; ServeStream gives the reply the request's ID. An error goes
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
	// MaxBulk is the largest netprobe download (MsgBulkDownReq) served; 0
	// means 64 MiB.
	MaxBulk int64
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
	if o.MaxBulk <= 0 {
		o.MaxBulk = 64 << 20
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
			out, handled, err := answerBulk(f, opts.MaxBulk)
			if !handled {
				out, err = h.Handle(rctx, f)
			}
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

// answerBulk answers netprobe's bulk transfers, which measure the link and
// so belong to every server whatever its Handler; handled is false for
// every other message.
func answerBulk(f Frame, maxBulk int64) (out Frame, handled bool, err error) {
	switch f.Type {
	case MsgBulkUp:
		return Frame{Type: MsgBulkAck, Payload: binary.BigEndian.AppendUint64(nil, uint64(len(f.Payload)))}, true, nil
	case MsgBulkDownReq:
		if len(f.Payload) != 8 {
			return Frame{}, true, fmt.Errorf("bulk-down-req: payload of %d bytes, want 8", len(f.Payload))
		}
		n := binary.BigEndian.Uint64(f.Payload)
		if n > uint64(maxBulk) {
			return Frame{}, true, fmt.Errorf("bulk-down-req: %d bytes asked, limit %d", n, maxBulk)
		}
		return Frame{Type: MsgBulkDown, Payload: make([]byte, n)}, true, nil
	}
	return Frame{}, false, nil
}

// LinkOnly is a Handler that refuses every request: a server with it
// answers only the link-level messages (hello, ping, bulk transfers),
// which is all netprobe needs.
type LinkOnly struct{}

// Handle refuses f.
func (LinkOnly) Handle(ctx context.Context, f Frame) (Frame, error) {
	return Frame{}, fmt.Errorf("this server does not handle %s messages", f.Type)
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

// LoopbackOptions configures StartLoopback.
type LoopbackOptions struct {
	// Handler answers requests (the caller closes it after the server);
	// nil means LinkOnly, so that the server answers only the link-level
	// messages.
	Handler Handler
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
		h = LinkOnly{}
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

// Dial connects a new client to the server.
func (l *Loopback) Dial(ctx context.Context) (*Client, error) {
	return Dial(ctx, l.Addr, l.Config)
}

// Close stops the server, closing every connection, and waits for it.
func (l *Loopback) Close() error {
	l.cancel()
	err := <-l.done
	l.done <- err // a second Close returns the same
	return err
}
