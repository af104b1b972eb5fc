package transport

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os/user"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// ClientConfig configures a connection to a tracr server.
type ClientConfig struct {
	// User is the SSH user name; "" means the current user (what a stock
	// OpenSSH server needs; tracr's own server accepts any name).
	User string
	// Signer is the edge's private key, and KeyFile where it was read
	// from, for messages.
	Signer  ssh.Signer
	KeyFile string
	// KnownHosts verifies the server's host key. HostKey, when set
	// instead, is the only host key accepted (StartLoopback's).
	KnownHosts *KnownHosts
	HostKey    ssh.PublicKey
	// Ciphers are the SSH ciphers offered; nil means DefaultCiphers.
	Ciphers []string
	// Limits bounds what is read from the server; zero means
	// DefaultLimits.
	Limits Limits
	// Link, when set, emulates a network link on the connection (see
	// Shape): the client is the edge side.
	Link *LinkState
	// Timeout bounds connecting and the SSH handshake; 0 means 10s.
	Timeout time.Duration
}

// LoadClientConfig reads the edge's key and known_hosts from a key folder
// made by `tracr keys init`.
func LoadClientConfig(dir string) (ClientConfig, error) {
	k := KeyPaths(dir)
	signer, err := LoadSigner(k.EdgeKey)
	if err != nil {
		return ClientConfig{}, err
	}
	kh, err := LoadKnownHosts(k.KnownHosts)
	if err != nil {
		return ClientConfig{}, err
	}
	return ClientConfig{Signer: signer, KeyFile: k.EdgeKey, KnownHosts: kh}, nil
}

// KnownHosts checks server host keys against an OpenSSH known_hosts file.
// There is no trust on first use: an unknown or changed key is refused with
// a message that says how to fix it.
type KnownHosts struct {
	path string
	cb   ssh.HostKeyCallback
}

// LoadKnownHosts reads a known_hosts file.
func LoadKnownHosts(path string) (*KnownHosts, error) {
	cb, err := knownhosts.New(path)
	if err != nil {
		return nil, fmt.Errorf("load known hosts: %w (create it with tracr keys init)", err)
	}
	return &KnownHosts{path: path, cb: cb}, nil
}

// HostKeyError is a server host key that known_hosts does not vouch for.
type HostKeyError struct {
	// Addr is the server address dialled and KnownHosts the file consulted.
	Addr, KnownHosts string
	// Offered is the key the server presented.
	Offered ssh.PublicKey
	// Known lists the keys known_hosts holds for Addr: empty for an unknown
	// host, else the host's key changed.
	Known []knownhosts.KnownKey
	// Revoked is set when known_hosts marks the offered key @revoked.
	Revoked bool
}

// Error says what is wrong and how to fix it.
func (e *HostKeyError) Error() string {
	offered := e.Offered.Type() + " " + ssh.FingerprintSHA256(e.Offered)
	switch {
	case e.Revoked:
		return fmt.Sprintf("host key for %s (%s) is marked @revoked in %s; the server must get a new host key", e.Addr, offered, e.KnownHosts)
	case len(e.Known) == 0:
		return fmt.Sprintf("host key for %s is not in %s (the server offered %s); run tracr keys init, or add the server's key with tracr keys trust --host %s --key SERVER_KEY.pub",
			e.Addr, e.KnownHosts, offered, e.Addr)
	}
	k := e.Known[0]
	return fmt.Sprintf("host key for %s changed: the server offered %s but %s:%d pins %s %s; someone may be intercepting the connection, or the server got a new key: if that is expected, delete line %d of %s and add the new key with tracr keys trust --host %s --key SERVER_KEY.pub",
		e.Addr, offered, k.Filename, k.Line, k.Key.Type(), ssh.FingerprintSHA256(k.Key), k.Line, k.Filename, e.Addr)
}

// Check verifies key for the server at addr; it is an ssh.HostKeyCallback
// whose errors are *HostKeyError.
func (k *KnownHosts) Check(addr string, remote net.Addr, key ssh.PublicKey) error {
	err := k.cb(addr, remote, key)
	if err == nil {
		return nil
	}
	var ke *knownhosts.KeyError
	if errors.As(err, &ke) {
		return &HostKeyError{Addr: addr, KnownHosts: k.path, Offered: key, Known: ke.Want}
	}
	var re *knownhosts.RevokedError
	if errors.As(err, &re) {
		return &HostKeyError{Addr: addr, KnownHosts: k.path, Offered: key, Revoked: true}
	}
	return fmt.Errorf("check host key of %s: %w", addr, err)
}

// Algorithms returns the host key algorithms known_hosts holds for addr,
// so that a server with several host keys presents one that can be
// checked; nil when it holds none.
func (k *KnownHosts) Algorithms(addr string) []string {
	// Checking a key no file holds makes knownhosts list the host's keys.
	probe, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	if err != nil {
		return nil
	}
	var ke *knownhosts.KeyError
	if !errors.As(k.cb(addr, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22}, probe), &ke) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	for _, w := range ke.Want {
		for _, a := range keyAlgorithms(w.Key.Type()) {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	return algos
}

// keyAlgorithms returns the signature algorithms a host key of type t can
// sign with.
func keyAlgorithms(t string) []string {
	if t == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	}
	return []string{t}
}

// ErrClosed is returned by requests on a client that was closed.
var ErrClosed = errors.New("connection closed")

// RemoteError is a request the server refused: the MsgError it answered.
type RemoteError struct {
	// Request is the type of the refused request (0 when the server ended
	// the whole session).
	Request MsgType
	// Message is the server's reason and Flags the MsgError's flags.
	Message string
	Flags   uint8
}

// Error returns the server's message.
func (e *RemoteError) Error() string {
	if e.Request == 0 {
		return "server: " + e.Message
	}
	return fmt.Sprintf("server refused %s: %s", e.Request, e.Message)
}

// Unwrap returns ErrModelMissing for an error with FlagModelMissing.
func (e *RemoteError) Unwrap() error {
	if e.Flags&FlagModelMissing != 0 {
		return ErrModelMissing
	}
	return nil
}

// Client is one tracr session with a server. Its methods may be called
// from many goroutines at once: every request carries its own ID, one
// goroutine reads the replies and hands each to the request waiting for
// it, so many requests can be in flight on the one channel.
type Client struct {
	s      *frameStream
	closer io.Closer
	stderr *tailWriter // the server's stderr under OpenSSH; may be nil
	server string

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan Frame
	err     error         // why the client stopped; set once
	done    chan struct{} // closed when err is set

	modelsMu sync.Mutex
	models   map[[32]byte][]byte // models EnsureModel sent, to re-send on ErrModelMissing
}

// Dial connects to the tracr server at addr (host:port) over SSH: it
// authenticates with cfg.Signer, verifies the host key, opens the "tracr"
// subsystem and exchanges hellos. ctx bounds the whole of it.
func Dial(ctx context.Context, addr string, cfg ClientConfig) (*Client, error) {
	sshCfg, err := cfg.sshConfig(addr)
	if err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	if cfg.Link != nil {
		conn = Shape(conn, cfg.Link, EdgeSide)
	}
	// The SSH handshake and channel set-up take no context: closing the
	// connection is what stops them.
	stop := context.AfterFunc(dctx, func() { conn.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, sshCfg)
	if err != nil {
		conn.Close()
		if dctx.Err() != nil {
			return nil, fmt.Errorf("connect to %s: ssh handshake: %w", addr, dctx.Err())
		}
		return nil, cfg.handshakeError(addr, err)
	}
	c, err := openSubsystem(dctx, ssh.NewClient(sc, chans, reqs), cfg.limits())
	if !stop() && err == nil {
		c.Close()
		err = dctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return c, nil
}

func (cfg ClientConfig) limits() Limits {
	if cfg.Limits == (Limits{}) {
		return DefaultLimits()
	}
	return cfg.Limits
}

// sshConfig builds the x/crypto/ssh configuration for dialling addr.
func (cfg ClientConfig) sshConfig(addr string) (*ssh.ClientConfig, error) {
	if cfg.Signer == nil {
		return nil, errors.New("connect: no edge key (see tracr keys init)")
	}
	name := cfg.User
	if name == "" {
		u, err := user.Current()
		if err != nil {
			return nil, fmt.Errorf("connect: current user: %w", err)
		}
		name = u.Username
	}
	sc := &ssh.ClientConfig{
		User:          name,
		Auth:          []ssh.AuthMethod{ssh.PublicKeys(cfg.Signer)},
		ClientVersion: "SSH-2.0-tracr",
	}
	switch {
	case cfg.HostKey != nil:
		sc.HostKeyCallback = ssh.FixedHostKey(cfg.HostKey)
		sc.HostKeyAlgorithms = keyAlgorithms(cfg.HostKey.Type())
	case cfg.KnownHosts != nil:
		sc.HostKeyCallback = cfg.KnownHosts.Check
		sc.HostKeyAlgorithms = cfg.KnownHosts.Algorithms(addr)
	default:
		return nil, errors.New("connect: no known_hosts to verify the server with (see tracr keys init)")
	}
	sc.Ciphers = cfg.Ciphers
	if sc.Ciphers == nil {
		sc.Ciphers = DefaultCiphers()
	}
	return sc, nil
}

// handshakeError turns an SSH handshake failure into one line that says
// what to do.
func (cfg ClientConfig) handshakeError(addr string, err error) error {
	var hk *HostKeyError
	if errors.As(err, &hk) {
		return hk
	}
	if strings.Contains(err.Error(), "unable to authenticate") {
		key := cfg.KeyFile
		if key == "" {
			key = "the edge key"
		}
		return fmt.Errorf("connect to %s: the server refused %s (%s); add its public key (%s.pub) to the server's authorized_keys",
			addr, key, ssh.FingerprintSHA256(cfg.Signer.PublicKey()), key)
	}
	return fmt.Errorf("connect to %s: %w", addr, err)
}

// sshCloser closes an SSH channel and the connection under it.
type sshCloser struct {
	ch ssh.Channel
	c  *ssh.Client
}

// Close closes both; closing what the peer already closed is no error.
// The connection goes first: closing the channel first would send a
// message, which waits behind any write still crossing a slow link.
func (s sshCloser) Close() error {
	var errs []error
	for _, err := range []error{s.c.Close(), s.ch.Close()} {
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// openSubsystem opens a session channel on an SSH connection, starts the
// tracr subsystem on it and returns the client; on failure it closes conn.
func openSubsystem(ctx context.Context, conn *ssh.Client, lim Limits) (*Client, error) {
	ch, reqs, err := conn.OpenChannel("session", nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("open channel: %w", err)
	}
	go ssh.DiscardRequests(reqs)
	ok, err := ch.SendRequest("subsystem", true, ssh.Marshal(subsystemRequest{Subsystem}))
	if err == nil && !ok {
		err = fmt.Errorf("the server has no %q subsystem (an OpenSSH server needs `Subsystem %s /path/to/tracr serve --stdio` in sshd_config)", Subsystem, Subsystem)
	}
	if err != nil {
		ch.Close()
		conn.Close()
		return nil, err
	}
	stderr := &tailWriter{max: 4 << 10}
	// Unread stderr would hold the channel's window; keep its tail for
	// messages.
	go io.Copy(stderr, ch.Stderr())
	return newClient(ctx, ch, sshCloser{ch, conn}, stderr, lim)
}

// NewClient runs a tracr session over rw, an established byte stream to a
// server (ServeStream at the other end), and exchanges hellos. Closing the
// client closes rw.
func NewClient(ctx context.Context, rw io.ReadWriteCloser, lim Limits) (*Client, error) {
	if lim == (Limits{}) {
		lim = DefaultLimits()
	}
	return newClient(ctx, rw, rw, nil, lim)
}

func newClient(ctx context.Context, rw io.ReadWriter, closer io.Closer, stderr *tailWriter, lim Limits) (*Client, error) {
	c := &Client{
		s:       newFrameStream(rw, lim),
		closer:  closer,
		stderr:  stderr,
		pending: map[uint64]chan Frame{},
		done:    make(chan struct{}),
		models:  map[[32]byte][]byte{},
	}
	go c.readLoop()
	hello, err := c.Do(ctx, Frame{Type: MsgHello, Payload: []byte("tracr")})
	if err == nil && hello.Type != MsgHelloOK {
		err = fmt.Errorf("server answered hello with %s", hello.Type)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("hello: %w", err)
	}
	c.server = string(hello.Payload)
	return c, nil
}

// Server returns the name the server gave in its hello.
func (c *Client) Server() string { return c.server }

// readLoop hands each reply to the request waiting for it. A reply whose
// request gave up (its context ended) is dropped.
func (c *Client) readLoop() {
	for {
		f, err := c.s.read()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("server closed the session")
				if msg := c.stderr.String(); msg != "" {
					err = fmt.Errorf("%w; its stderr ends: %s", err, msg)
				}
			}
			c.fail(err)
			return
		}
		if f.ID == 0 && f.Type == MsgError {
			// The server ends the session with a reason.
			c.fail(&RemoteError{Message: string(f.Payload), Flags: f.Flags})
			return
		}
		c.mu.Lock()
		ch := c.pending[f.ID]
		delete(c.pending, f.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- f // buffered: never blocks
		}
	}
}

// fail stops the client for good with err: requests waiting and to come
// get err.
func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	close(c.done)
	c.closer.Close()
}

// Close ends the session and closes the connection; requests in flight
// return ErrClosed.
func (c *Client) Close() error {
	c.fail(ErrClosed)
	return nil
}

// Do sends one request and waits for its reply, which it returns. A
// MsgError reply is returned as a *RemoteError. If ctx ends first, Do
// returns ctx.Err() and the reply, when it comes, is dropped (a frame
// already being written is finished first, so the stream stays whole). The
// request's ID is assigned by Do.
func (c *Client) Do(ctx context.Context, f Frame) (Frame, error) {
	return c.do(ctx, f, nil)
}

// do is Do, calling written (when not nil) once, as soon as the frame is
// written or will not be: a caller's own work on the request is then over.
func (c *Client) do(ctx context.Context, f Frame, written func()) (Frame, error) {
	notify := func() {
		if written != nil {
			written()
			written = nil
		}
	}
	defer notify() // for the returns before the write
	if err := ctx.Err(); err != nil {
		return Frame{}, err
	}
	reply := make(chan Frame, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return Frame{}, c.err
	}
	c.nextID++
	f.ID = c.nextID
	c.pending[f.ID] = reply
	c.mu.Unlock()

	err := c.s.write(f)
	notify()
	if err != nil {
		// A frame cut short leaves the stream out of sync.
		c.fail(fmt.Errorf("send: %w", err))
		c.forget(f.ID)
		return Frame{}, c.stopped()
	}
	select {
	case r := <-reply:
		return checkReply(f.Type, r)
	case <-ctx.Done():
		c.forget(f.ID)
		return Frame{}, ctx.Err()
	case <-c.done:
		select {
		case r := <-reply:
			return checkReply(f.Type, r)
		default:
			return Frame{}, c.stopped()
		}
	}
}

func checkReply(req MsgType, r Frame) (Frame, error) {
	if r.Type == MsgError {
		return r, &RemoteError{Request: req, Message: string(r.Payload), Flags: r.Flags}
	}
	return r, nil
}

func (c *Client) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

func (c *Client) stopped() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// expect checks that a reply has the wanted type.
func expect(r Frame, want MsgType) error {
	if r.Type != want {
		return fmt.Errorf("server answered %s, want %s", r.Type, want)
	}
	return nil
}

// Ping sends a MsgPing and returns the round-trip time.
func (c *Client) Ping(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	r, err := c.Do(ctx, Frame{Type: MsgPing})
	if err == nil {
		err = expect(r, MsgPong)
	}
	if err != nil {
		return 0, fmt.Errorf("ping: %w", err)
	}
	return time.Since(start), nil
}

// HasModel asks whether the server holds the model with this SHA-256.
func (c *Client) HasModel(ctx context.Context, hash [32]byte) (bool, error) {
	r, err := c.Do(ctx, Frame{Type: MsgModelHave, Payload: hash[:]})
	if err == nil {
		err = expect(r, MsgModelStatus)
	}
	if err == nil && len(r.Payload) != 1 {
		err = fmt.Errorf("model status of %d bytes", len(r.Payload))
	}
	if err != nil {
		return false, fmt.Errorf("model-have: %w", err)
	}
	return r.Payload[0] == 1, nil
}

// PutModel uploads a model.
func (c *Client) PutModel(ctx context.Context, model []byte) error {
	r, err := c.Do(ctx, Frame{Type: MsgModelPut, Payload: model})
	if err == nil {
		err = expect(r, MsgModelStatus)
	}
	if err == nil && (len(r.Payload) != 1 || r.Payload[0] != 1) {
		err = errors.New("the server did not store the model")
	}
	if err != nil {
		return fmt.Errorf("model-put: %w", err)
	}
	return nil
}

// EnsureModel makes sure the server holds model, sending the bytes only
// when it does not (models travel by content hash), and returns the hash
// that names it in requests. The client keeps a reference to model so that
// Infer can send it again if the server's cache drops it.
func (c *Client) EnsureModel(ctx context.Context, model []byte) ([32]byte, error) {
	hash := sha256.Sum256(model)
	c.modelsMu.Lock()
	c.models[hash] = model
	c.modelsMu.Unlock()
	have, err := c.HasModel(ctx, hash)
	if err != nil {
		return hash, err
	}
	if !have {
		if err := c.PutModel(ctx, model); err != nil {
			return hash, err
		}
	}
	return hash, nil
}

// Infer asks the server to run the tail of a model from req.Cut on
// req.Tensors. When the server no longer holds the model and EnsureModel
// sent it before, Infer uploads it again and retries once.
func (c *Client) Infer(ctx context.Context, req InferRequest) (InferResult, error) {
	return c.InferWritten(ctx, req, nil)
}

// InferWritten is Infer, calling written (when not nil) as soon as the
// request has been written to the connection, or has failed to be, before
// the answer comes: the edge's part of the request is then over. It is
// called once, and always before InferWritten returns.
func (c *Client) InferWritten(ctx context.Context, req InferRequest, written func()) (InferResult, error) {
	var once sync.Once
	done := func() {
		if written != nil {
			once.Do(written)
		}
	}
	defer done()
	payload, err := EncodeInfer(req)
	if err != nil {
		return InferResult{}, err
	}
	r, err := c.do(ctx, Frame{Type: MsgInfer, Payload: payload}, done)
	if errors.Is(err, ErrModelMissing) {
		c.modelsMu.Lock()
		model, ok := c.models[req.ModelHash]
		c.modelsMu.Unlock()
		if ok {
			if err = c.PutModel(ctx, model); err == nil {
				r, err = c.Do(ctx, Frame{Type: MsgInfer, Payload: payload})
			}
		}
	}
	if err == nil {
		err = expect(r, MsgInferResult)
	}
	if err != nil {
		return InferResult{}, fmt.Errorf("infer cut %d: %w", req.Cut, err)
	}
	res, err := DecodeInferResult(r.Payload, c.s.lim)
	if err != nil {
		return InferResult{}, fmt.Errorf("infer cut %d: %w", req.Cut, err)
	}
	return res, nil
}

// Upload sends payload as a MsgBulkUp and waits for the server's
// acknowledgement (netprobe times it).
func (c *Client) Upload(ctx context.Context, payload []byte) error {
	n := len(payload)
	r, err := c.Do(ctx, Frame{Type: MsgBulkUp, Payload: payload})
	if err == nil {
		err = expect(r, MsgBulkAck)
	}
	if err == nil && (len(r.Payload) != 8 || binary.BigEndian.Uint64(r.Payload) != uint64(n)) {
		err = fmt.Errorf("server acknowledged %x, want %d bytes", r.Payload, n)
	}
	if err != nil {
		return fmt.Errorf("upload %d bytes: %w", n, err)
	}
	return nil
}

// Download asks the server for n bytes (MsgBulkDownReq) and waits until
// they have arrived (netprobe times it).
func (c *Client) Download(ctx context.Context, n int64) error {
	r, err := c.Do(ctx, Frame{Type: MsgBulkDownReq, Payload: binary.BigEndian.AppendUint64(nil, uint64(n))})
	if err == nil {
		err = expect(r, MsgBulkDown)
	}
	if err == nil && int64(len(r.Payload)) != n {
		err = fmt.Errorf("got %d bytes", len(r.Payload))
	}
	if err != nil {
		return fmt.Errorf("download %d bytes: %w", n, err)
	}
	return nil
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	if len(w.b) > w.max {
		w.b = append(w.b[:0], w.b[len(w.b)-w.max:]...)
	}
	return len(p), nil
}

// String returns what was kept, on one line.
func (w *tailWriter) String() string {
	if w == nil {
		return ""
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(strings.Fields(string(w.b)), " ")
}
