package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tracr/engine"
	"tracr/internal/orttest"
	"tracr/tensor"
)

// sshdPath is where Debian's openssh-server puts the daemon.
const sshdPath = "/usr/sbin/sshd"

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// syncBuffer collects a child's output; it is written from exec's copying
// goroutine and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startDaemon starts cmd, stops it (SIGTERM) when the test ends, and waits
// until addr accepts connections.
func startDaemon(t *testing.T, cmd *exec.Cmd, addr string) (stderr *syncBuffer, exited <-chan error) {
	t.Helper()
	stderr = &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return stderr, done
		}
		select {
		case err := <-done:
			t.Fatalf("%s exited (%v) before listening on %s:\n%s", cmd.Path, err, addr, stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not listen on %s after 10s:\n%s", cmd.Path, addr, stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkRemoteTail uploads the chain model through c and checks a tail run at
// cut 2 against a local run.
func checkRemoteTail(t *testing.T, c *Client) {
	t.Helper()
	m, hash := uploadChain(t, c)
	x, _ := tensor.Random("x", tensor.Float32, tensor.Shape{1, 16}, 3)
	want, got := runBothWays(t, c, m, hash, 2, x)
	if same, diff, err := engine.Difference(want, got); err != nil || !same {
		t.Fatalf("tail run through the server differs from the local run by %g (%v)", diff, err)
	}
}

// TestTracrBinary builds the tracr command once and runs it as a server
// the two ways an operator does: on its own (tracr serve) and as the
// subsystem of Debian's OpenSSH server (tracr serve --stdio).
func TestTracrBinary(t *testing.T) {
	needORT(t)
	bin := orttest.BuildTracr(t)
	t.Run("serve", func(t *testing.T) { testServeBinary(t, bin) })
	t.Run("openssh", func(t *testing.T) { testOpenSSH(t, bin) })
}

// testOpenSSH runs Debian's OpenSSH server on a loopback port with tracr
// as its subsystem (`tracr serve --stdio`) and carries a real Infer request
// through it with tracr's client.
func testOpenSSH(t *testing.T, bin string) {
	if _, err := os.Stat(sshdPath); err != nil {
		if os.Getenv("TRACR_REQUIRE_SSHD") != "" {
			t.Fatalf("TRACR_REQUIRE_SSHD is set but %s is missing: %v", sshdPath, err)
		}
		t.Skipf("%s not found: apt-get install openssh-server to run the OpenSSH interop test", sshdPath)
	}
	ortLib, err := engine.LibraryPath()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)

	// The edge's side: a key folder as tracr keys init lays it out.
	keys := KeyPaths(filepath.Join(dir, "edge"))
	if err := os.Mkdir(keys.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	edgePEM, edgePub, err := NewKeyPair("edge")
	if err != nil {
		t.Fatal(err)
	}
	hostPEM, hostPub, err := NewKeyPair("sshd")
	if err != nil {
		t.Fatal(err)
	}
	known, err := KnownHostsLine([]string{addr}, hostPub)
	if err != nil {
		t.Fatal(err)
	}
	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	authorized := filepath.Join(dir, "authorized_keys")
	for _, f := range []struct {
		path string
		data []byte
	}{{keys.EdgeKey, edgePEM}, {keys.KnownHosts, []byte(known)}, {hostKey, hostPEM}, {authorized, edgePub}} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	config := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(config, []byte(strings.Join([]string{
		"ListenAddress " + addr,
		"Port " + port,
		"HostKey " + hostKey,
		"PidFile none",
		"AuthorizedKeysFile " + authorized,
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"StrictModes no",
		"UsePAM no",
		"SetEnv " + engine.LibraryEnv + "=" + ortLib,
		"Subsystem " + Subsystem + " " + bin + " serve --stdio",
		"",
	}, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// sshd's privilege separation needs its empty folder.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
	}
	logs, _ := startDaemon(t, exec.Command(sshdPath, "-D", "-e", "-f", config), addr)

	cfg, err := LoadClientConfig(keys.Dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, cfg)
	if err != nil {
		t.Fatalf("Dial through OpenSSH: %v\nsshd:\n%s", err, logs)
	}
	defer c.Close()
	if !strings.HasPrefix(c.Server(), "tracr ") {
		t.Errorf("hello from %q; want tracr's", c.Server())
	}
	checkRemoteTail(t, c)
	if t.Failed() {
		t.Logf("sshd:\n%s", logs)
	}

	// OpenSSH refuses an edge key it does not know, like tracr's server.
	other := KeyPaths(filepath.Join(dir, "other"))
	if _, err := InitKeys(other.Dir, []string{addr}, false); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other.KnownHosts, []byte(known), 0o600); err != nil {
		t.Fatal(err)
	}
	ocfg, err := LoadClientConfig(other.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if oc, err := Dial(ctx, addr, ocfg); err == nil || !strings.Contains(err.Error(), "the server refused") {
		if oc != nil {
			oc.Close()
		}
		t.Errorf("Dial with an unknown key through OpenSSH: %v; want refused", err)
	}
}

// testServeBinary runs the commands an operator runs: tracr keys init,
// tracr serve (as its own process), then a client with the key folder and
// tracr probe --json, and stops the server with SIGTERM.
func testServeBinary(t *testing.T, bin string) {
	dir := filepath.Join(t.TempDir(), "keys")
	addr := freeAddr(t)
	out, err := exec.Command(bin, "keys", "init", "--dir", dir, "--host", addr).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "tracr serve --listen "+addr+" --host-key "+dir) {
		t.Fatalf("tracr keys init: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "keys", "init", "--dir", dir, "--host", addr).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "already exists; use --force") {
		t.Fatalf("second tracr keys init: %v\n%s", err, out)
	}
	k := KeyPaths(dir)
	serve := exec.Command(bin, "serve", "--listen", addr, "--host-key", k.HostKey, "--authorized-keys", k.AuthorizedKeys, "--threads", "1")
	logs, exited := startDaemon(t, serve, addr)

	cfg, err := LoadClientConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(context.Background(), addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkRemoteTail(t, c)
	c.Close()

	probe := exec.Command(bin, "probe", "--server", addr, "--keys", dir, "--json", "--pings", "3", "--repeats", "2")
	var probeErr bytes.Buffer
	probe.Stderr = &probeErr
	out, err = probe.Output()
	if err != nil {
		t.Fatalf("tracr probe: %v\n%s%s", err, out, probeErr.Bytes())
	}
	var rep struct {
		Server string
		RTT    int64 `json:"rtt_ns"`
		Up     struct {
			BitsPerSec float64 `json:"bits_per_sec"`
		}
	}
	if err := json.Unmarshal(out, &rep); err != nil || rep.Server != addr || rep.RTT <= 0 || rep.Up.BitsPerSec <= 0 {
		t.Fatalf("tracr probe --json: %v\n%s", err, out)
	}

	serve.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil || !strings.Contains(logs.String(), "stopped") {
			t.Errorf("tracr serve after SIGTERM: %v\n%s", err, logs)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("tracr serve still runs 5s after SIGTERM:\n%s", logs)
	}
	if t.Failed() {
		fmt.Fprintf(os.Stderr, "tracr serve:\n%s", logs)
	}
}
