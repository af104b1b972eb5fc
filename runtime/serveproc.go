package runtime

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"tracr/transport"
)

// serveStartTimeout bounds how long a `tracr serve` process may take to
// listen (it loads ONNX Runtime first).
const serveStartTimeout = 60 * time.Second

// serveProcess is `tracr serve` started as a process of its own on
// loopback, with throw-away keys: the server of a CPU-limited edge, which
// must not share the edge's limit (two processes, real SSH, as on two
// machines).
type serveProcess struct {
	cmd    *exec.Cmd
	addr   string
	config transport.ClientConfig
	dir    string

	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done

	mu   sync.Mutex
	tail []string // its last lines on stderr, for error messages
}

// startServeProcess starts binary (tracr) as `serve --listen 127.0.0.1:0`
// with keys made for it in a temporary folder, plus args, and waits until
// it listens. The process gets SIGTERM should this one die.
func startServeProcess(ctx context.Context, binary string, args []string, link *transport.LinkState) (*serveProcess, error) {
	dir, err := os.MkdirTemp("", "tracr-serve-")
	if err != nil {
		return nil, fmt.Errorf("server process: %w", err)
	}
	keys, err := transport.InitKeys(dir, []string{"127.0.0.1"}, false)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("server process: keys: %w", err)
	}
	cfg, err := pinnedConfig(keys, link)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	argv := append([]string{"serve", "--listen", "127.0.0.1:0", "--host-key", keys.HostKey, "--authorized-keys", keys.AuthorizedKeys}, args...)
	cmd := exec.Command(binary, argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("server process: %w", err)
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("server process: start %s: %w", binary, err)
	}
	sp := &serveProcess{cmd: cmd, config: cfg, dir: dir, done: make(chan struct{})}
	listening := make(chan string, 1)
	go sp.read(stderr, listening)
	go func() {
		sp.err = cmd.Wait()
		close(sp.done)
	}()
	timer := time.NewTimer(serveStartTimeout)
	defer timer.Stop()
	select {
	case sp.addr = <-listening:
		return sp, nil
	case <-sp.done:
		err = fmt.Errorf("server process %s serve exited before listening (%v)%s", binary, sp.err, sp.lastLines())
	case <-timer.C:
		err = fmt.Errorf("server process %s serve did not listen within %v%s", binary, serveStartTimeout, sp.lastLines())
	case <-ctx.Done():
		err = ctx.Err()
	}
	sp.Close()
	return nil, err
}

// pinnedConfig is the client configuration for the keys of a folder, the
// server's host key pinned directly (its port is not known in advance).
func pinnedConfig(keys transport.KeyFiles, link *transport.LinkState) (transport.ClientConfig, error) {
	signer, err := transport.LoadSigner(keys.EdgeKey)
	if err != nil {
		return transport.ClientConfig{}, fmt.Errorf("server process: %w", err)
	}
	pub, err := os.ReadFile(keys.HostPub)
	if err != nil {
		return transport.ClientConfig{}, fmt.Errorf("server process: %w", err)
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey(pub)
	if err != nil {
		return transport.ClientConfig{}, fmt.Errorf("server process: host key: %w", err)
	}
	return transport.ClientConfig{Signer: signer, KeyFile: keys.EdgeKey, HostKey: hostKey, Link: link}, nil
}

// read follows the process's stderr: it sends the address of its
// "listening on ADDR" line, and keeps the last lines.
func (sp *serveProcess) read(r io.Reader, listening chan<- string) {
	sc := bufio.NewScanner(r)
	sent := false
	for sc.Scan() {
		line := sc.Text()
		sp.mu.Lock()
		sp.tail = append(sp.tail, line)
		if len(sp.tail) > 20 {
			sp.tail = sp.tail[1:]
		}
		sp.mu.Unlock()
		if _, rest, ok := strings.Cut(line, "listening on "); ok && !sent {
			addr, _, _ := strings.Cut(rest, " ")
			listening <- addr
			sent = true
		}
	}
}

// lastLines returns the process's last stderr lines, indented, for an
// error message.
func (sp *serveProcess) lastLines() string {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if len(sp.tail) == 0 {
		return ""
	}
	return ":\n  " + strings.Join(sp.tail, "\n  ")
}

// Dial connects to the process.
func (sp *serveProcess) Dial(ctx context.Context) (*transport.Client, error) {
	c, err := transport.Dial(ctx, sp.addr, sp.config)
	if err != nil {
		select {
		case <-sp.done:
			return nil, fmt.Errorf("%w (the server process exited: %v)%s", err, sp.err, sp.lastLines())
		default:
		}
		return nil, err
	}
	return c, nil
}

// Preload uploads a model to the process over a connection without the
// emulated link: the local server stands for a deployed one, which would
// already hold the model.
func (sp *serveProcess) Preload(ctx context.Context, model []byte) error {
	cfg := sp.config
	cfg.Link = nil
	c, err := transport.Dial(ctx, sp.addr, cfg)
	if err != nil {
		return fmt.Errorf("preload: %w", err)
	}
	defer c.Close()
	if _, err := c.EnsureModel(ctx, model); err != nil {
		return fmt.Errorf("preload: %w", err)
	}
	return nil
}

// Close stops the process (SIGTERM, then SIGKILL after 5 s) and removes
// its keys.
func (sp *serveProcess) Close() error {
	var err error
	select {
	case <-sp.done:
	default:
		sp.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-sp.done:
		case <-time.After(5 * time.Second):
			sp.cmd.Process.Kill()
			<-sp.done
			err = errors.New("server process: did not stop on SIGTERM; killed")
		}
	}
	if rerr := os.RemoveAll(sp.dir); rerr != nil && err == nil {
		err = fmt.Errorf("server process: %w", rerr)
	}
	return err
}

// Pid is the process's ID.
func (sp *serveProcess) Pid() int { return sp.cmd.Process.Pid }

// tracrBinary returns the binary to start as the server process: the one
// named, or this executable.
func tracrBinary(named string) (string, error) {
	if named != "" {
		return filepath.Abs(named)
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("server process: cannot find this executable to start tracr serve: %w", err)
	}
	return exe, nil
}
