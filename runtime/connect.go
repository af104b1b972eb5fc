package runtime

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	goruntime "runtime"
	"strconv"
	"strings"

	"tracr/cpulimit"
	"tracr/engine"
	"tracr/transport"
)

// ServerSpec says which server to reach and how: everything a command
// knows about its server before connecting. Every field but Name may be
// left zero.
type ServerSpec struct {
	// Name is the server: "" or "local" for a server embedded in this
	// process on loopback (real SSH, throw-away keys); a server of the
	// devices file, its addresses tried in order; or host[:port] (port
	// transport.DefaultPort when omitted) reached with KeyDir's edge key
	// and known_hosts. A name the devices file defines is always that
	// server.
	Name string
	// Devices is the devices file (config/devices.toml's format); "" means
	// none, so that only addresses and "local" resolve.
	Devices string
	// KeyDir is the key folder used for an address (see tracr keys init);
	// "" means transport.DefaultKeyDir. A server of the devices file names
	// its own key files.
	KeyDir string
	// User is the SSH user for an address, and for a server of the devices
	// file that names none; "" means the current user.
	User string
	// Link, when set, is emulated on every connection (the edge side).
	Link *transport.LinkState
	// Local configures the embedded server; it is ignored for any other.
	Local LocalServer
	// EdgeCPU, above 0, limits this process, the edge, to that many cores
	// with the kernel's CPU-bandwidth control (package cpulimit), from
	// Connect until Close: pre-processing, ONNX Runtime, codecs and SSH
	// all run under it, as on a slow board. The local server then runs as
	// its own tracr serve process, started before the limit applies, so
	// that it is not limited (two processes and real SSH, as on two
	// machines).
	EdgeCPU float64
}

// LocalServer configures the embedded server. Its fields are what `tracr
// serve` takes as flags, so that the embedded server can run as a separate
// process without its callers changing.
type LocalServer struct {
	// Threads is the ONNX Runtime intra-op threads per tail; 0 leaves ONNX
	// Runtime's default (one per physical core).
	Threads int
	// Provider is the execution provider of the tails: "" or "cpu", or
	// "cuda".
	Provider string
	// Concurrency is how many requests of one client run at once; 0 means
	// transport's default (4), as for tracr serve.
	Concurrency int
	// ProfileDir is where the server caches its profiles; "" means the
	// profiler's default cache.
	ProfileDir string
	// Process runs the server as its own `tracr serve` process on
	// loopback instead of inside this one (always so under EdgeCPU), and
	// Binary is the tracr executable to start ("" means this one).
	Process bool
	Binary  string
}

// Server is a server resolved by Connect: a remote one, or one embedded in
// this process. Close releases it.
type Server struct {
	name  string
	dial  func(ctx context.Context) (*transport.Client, error)
	tails *TailHandler        // the embedded server's handler; nil for a remote one
	lb    *transport.Loopback // the embedded server; nil for a remote one
	proc  *serveProcess       // the local server process; nil for any other
	limit *cpulimit.Group     // the edge's CPU limit; nil for none
}

// localHint is appended to a failed connection to a remote server.
const localHint = "is tracr serve running there? --server local starts one in this process"

// Connect resolves spec to a server without connecting to it: it starts
// the embedded server (which serves until Close or until ctx ends), or
// reads the keys a remote server needs. Dial then connects.
func Connect(ctx context.Context, spec ServerSpec) (*Server, error) {
	if spec.EdgeCPU == 0 {
		return connect(ctx, spec)
	}
	// The group first, so that a machine without cgroups is refused before
	// a server starts; entered last, so that the server is not in it.
	g, err := cpulimit.New(cpulimit.Limit{Cores: spec.EdgeCPU})
	if err != nil {
		return nil, fmt.Errorf("edge CPU limit: %w", err)
	}
	spec.Local.Process = true
	s, err := connect(ctx, spec)
	if err != nil {
		g.Close()
		return nil, err
	}
	// The edge gets CPUs of its own, held to its share in every
	// millisecond (cpulimit.Group.Steady); the local server process keeps
	// off them where the machine has others, as a server does not share a
	// board's CPU.
	err = g.Steady()
	if err == nil {
		err = g.Enter()
	}
	if err == nil && s.proc != nil {
		err = g.Avoid(s.proc.Pid())
	}
	if err != nil {
		s.Close()
		g.Close()
		return nil, fmt.Errorf("edge CPU limit: %w", err)
	}
	s.limit = g
	return s, nil
}

// connect resolves spec, leaving EdgeCPU aside.
func connect(ctx context.Context, spec ServerSpec) (*Server, error) {
	name := spec.Name
	if name == "" || name == "local" {
		if spec.Local.Process {
			return startProcess(ctx, spec)
		}
		return startLocal(ctx, spec)
	}
	var note string // why a bare name (no port) is taken as a host
	bare := !strings.Contains(name, ":")
	if spec.Devices != "" {
		devs, err := LoadDevices(spec.Devices)
		switch {
		case err == nil:
			if s, ok := devs.Servers[name]; ok {
				return deviceServer(name, s, spec)
			}
			if _, lerr := devs.Lookup(name); lerr != nil && bare {
				note = fmt.Sprintf("%s: %v", spec.Devices, lerr)
			}
		case errors.Is(err, fs.ErrNotExist):
			if bare {
				note = fmt.Sprintf("no devices file %s to find it in (see config/devices.toml)", spec.Devices)
			}
		default:
			return nil, fmt.Errorf("server %q: %w", name, err)
		}
	}
	return addressServer(name, note, spec)
}

// startLocal starts the embedded server.
func startLocal(ctx context.Context, spec ServerSpec) (*Server, error) {
	l := spec.Local
	tails := NewTailHandler(TailOptions{Engine: engine.Options{Threads: l.Threads, Provider: l.Provider}, ProfileDir: l.ProfileDir})
	lb, err := transport.StartLoopback(ctx, transport.LoopbackOptions{Handler: tails,
		Session: transport.SessionOptions{Concurrency: l.Concurrency}, Link: spec.Link})
	if err != nil {
		tails.Close()
		return nil, err
	}
	return &Server{name: "local (" + lb.Addr + ", in this process)", dial: lb.Dial, tails: tails, lb: lb}, nil
}

// startProcess starts the local server as its own tracr serve process.
func startProcess(ctx context.Context, spec ServerSpec) (*Server, error) {
	l := spec.Local
	bin, err := tracrBinary(l.Binary)
	if err != nil {
		return nil, err
	}
	var args []string
	threads := l.Threads
	if threads == 0 && spec.EdgeCPU > 0 {
		// The limited edge takes ceil(EdgeCPU) CPUs of its own (Steady)
		// and the server is kept off them: one ONNX Runtime thread per CPU
		// it has, not per core of the machine, whose spinning workers
		// would share a CPU.
		threads = max(goruntime.NumCPU()-int(math.Ceil(spec.EdgeCPU)), 1)
	}
	if threads != 0 {
		args = append(args, "--threads", strconv.Itoa(threads))
	}
	if l.Provider != "" {
		args = append(args, "--provider", l.Provider)
	}
	if l.Concurrency != 0 {
		args = append(args, "--concurrency", strconv.Itoa(l.Concurrency))
	}
	if l.ProfileDir != "" {
		args = append(args, "--profile-dir", l.ProfileDir)
	}
	sp, err := startServeProcess(ctx, bin, args, spec.Link)
	if err != nil {
		return nil, err
	}
	return &Server{name: fmt.Sprintf("local (%s, tracr serve process %d)", sp.addr, sp.Pid()), dial: sp.Dial, proc: sp}, nil
}

// deviceServer is a server of the devices file.
func deviceServer(name string, s DeviceServer, spec ServerSpec) (*Server, error) {
	signer, err := transport.LoadSigner(s.Identity)
	if err != nil {
		return nil, err
	}
	kh, err := transport.LoadKnownHosts(s.KnownHosts)
	if err != nil {
		return nil, err
	}
	user := s.User
	if user == "" {
		user = spec.User
	}
	cc := transport.ClientConfig{User: user, Signer: signer, KeyFile: s.Identity, KnownHosts: kh, Link: spec.Link}
	dial := func(ctx context.Context) (*transport.Client, error) {
		var errs []error
		for _, addr := range s.Addresses {
			c, err := transport.Dial(ctx, addr, cc)
			if err == nil {
				return c, nil
			}
			errs = append(errs, err)
		}
		return nil, fmt.Errorf("server %s: %w", name, withHint(errors.Join(errs...)))
	}
	return &Server{name: name + " (" + strings.Join(s.Addresses, ", ") + ")", dial: dial}, nil
}

// addressServer is host[:port] reached with the key folder; note, when
// set, says why a bare name was taken as a host and prefixes its errors.
func addressServer(name, note string, spec ServerSpec) (*Server, error) {
	addr := name
	if _, _, err := net.SplitHostPort(addr); err != nil {
		if strings.Contains(addr, ":") {
			return nil, fmt.Errorf("server %q: %w", name, err)
		}
		addr = net.JoinHostPort(addr, transport.DefaultPort)
	}
	explain := func(err error) error {
		if note == "" {
			return err
		}
		return fmt.Errorf("server %q: %s; as host %s: %w", name, note, addr, err)
	}
	dir := spec.KeyDir
	if dir == "" {
		dir = transport.DefaultKeyDir
	}
	cc, err := transport.LoadClientConfig(dir)
	if err != nil {
		return nil, explain(err)
	}
	cc.User, cc.Link = spec.User, spec.Link
	dial := func(ctx context.Context) (*transport.Client, error) {
		c, err := transport.Dial(ctx, addr, cc)
		if err != nil {
			return nil, explain(withHint(err))
		}
		return c, nil
	}
	return &Server{name: addr, dial: dial}, nil
}

// withHint adds localHint to a failed connection, except to a host key
// error, which says itself how to fix the key.
func withHint(err error) error {
	var hk *transport.HostKeyError
	if errors.As(err, &hk) {
		return err
	}
	return fmt.Errorf("%w (%s)", err, localHint)
}

// Name says which server, as commands print it: the address, the devices
// file's name and addresses, or "local" and the embedded server's address.
func (s *Server) Name() string { return s.name }

// Dial opens a new connection to the server.
func (s *Server) Dial(ctx context.Context) (*transport.Client, error) { return s.dial(ctx) }

// Preload hands a model straight to the local server, as if an edge had
// uploaded it, so that an emulated slow link does not pay for a one-time
// transfer a deployed server would already hold: the embedded server takes
// it directly, a local server process over a connection without the
// emulated link. For a remote server it does nothing: the model goes over
// the link once, when first needed.
func (s *Server) Preload(model []byte) error {
	switch {
	case s.tails != nil:
		return s.tails.Preload(model)
	case s.proc != nil:
		return s.proc.Preload(context.Background(), model)
	}
	return nil
}

// Close stops the embedded server (closing its connections) and releases
// its tail sessions; for a remote server it does nothing. Connections from
// Dial are the caller's to close.
func (s *Server) Close() error {
	var errs []error
	if s.lb != nil {
		errs = append(errs, s.lb.Close(), s.tails.Close())
	}
	if s.proc != nil {
		errs = append(errs, s.proc.Close())
	}
	if s.limit != nil {
		errs = append(errs, s.limit.Close())
		s.limit = nil
	}
	return errors.Join(errs...)
}

// EdgeLimit is the CPU limit this process, the edge, runs under, or nil
// (see ServerSpec.EdgeCPU).
func (s *Server) EdgeLimit() *cpulimit.Group { return s.limit }

// Local reports whether the server was started by Connect on this machine
// (in this process, or as its own tracr serve process).
func (s *Server) Local() bool { return s.lb != nil || s.proc != nil }

// Separate reports whether the server is another process (a remote
// server, or the local one run as tracr serve), not this one.
func (s *Server) Separate() bool { return s.lb == nil }
