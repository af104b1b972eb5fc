package runtime

import (
	"context"
	"crypto/sha256"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"tracr/transport"
)

// startKeyed runs a link-only tracr server with keys on disk (tracr keys
// init's layout, pinned for its address) until the test ends.
func startKeyed(t *testing.T) (addr string, keys transport.KeyFiles) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = ln.Addr().String()
	keys, err = transport.InitKeys(filepath.Join(t.TempDir(), "keys"), []string{addr}, false)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := transport.LoadSigner(keys.HostKey)
	if err != nil {
		t.Fatal(err)
	}
	authorized, err := transport.LoadAuthorizedKeys(keys.AuthorizedKeys)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := transport.NewServer(transport.ServerOptions{HostKey: hostKey, AuthorizedKeys: authorized, Handler: transport.LinkOnly{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return addr, keys
}

// TestConnect resolves each kind of server name and connects, or checks
// the message that says why not.
func TestConnect(t *testing.T) {
	addr, keys := startKeyed(t)
	dir := t.TempDir()
	devices := writeFile(t, dir, "devices.toml", `[servers.lab]
addresses = ["127.0.0.1:1", "`+addr+`"]
identity = "`+keys.EdgeKey+`"
known_hosts = "`+keys.KnownHosts+`"
`)
	missing := filepath.Join(dir, "none.toml")
	tests := []struct {
		name     string
		spec     ServerSpec
		wantName string // prefix of Name
		wantErr  string // from Connect or Dial; "" = connects
	}{
		{"embedded", ServerSpec{}, "local (127.0.0.1:", ""},
		{"embedded by name", ServerSpec{Name: "local"}, "local (127.0.0.1:", ""},
		{"devices name, addresses in order", ServerSpec{Name: "lab", Devices: devices}, "lab (127.0.0.1:1, " + addr + ")", ""},
		{"address", ServerSpec{Name: addr, KeyDir: keys.Dir, Devices: devices}, addr, ""},
		{"address, nobody listening", ServerSpec{Name: "127.0.0.1:1", KeyDir: keys.Dir}, "127.0.0.1:1",
			"connection refused (is tracr serve running there? --server local starts one in this process)"},
		{"bare name, no devices file", ServerSpec{Name: "lab", Devices: missing, KeyDir: filepath.Join(dir, "nokeys")}, "",
			`server "lab": no devices file ` + missing + " to find it in"},
		{"bare name, not in the devices file", ServerSpec{Name: "cloud", Devices: devices, KeyDir: filepath.Join(dir, "nokeys")}, "",
			`server "cloud": ` + devices + `: unknown server "cloud" (known: lab; or --server local); as host cloud:2222: `},
		{"bad address", ServerSpec{Name: "a:b:c"}, "", `server "a:b:c": address a:b:c: too many colons`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			srv, err := Connect(ctx, tt.spec)
			if err == nil {
				defer srv.Close()
				if !strings.HasPrefix(srv.Name(), tt.wantName) {
					t.Errorf("Name() = %q, want it to start with %q", srv.Name(), tt.wantName)
				}
				var c *transport.Client
				if c, err = srv.Dial(ctx); err == nil {
					defer c.Close()
					_, err = c.Ping(ctx)
				}
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestConnectPreload checks that Preload hands a model to the embedded
// server and does nothing for a remote one.
func TestConnectPreload(t *testing.T) {
	requireORT(t)
	ctx := context.Background()
	local := startLoopback(t, nil)
	model := []byte("not parsed until a tail is asked of it")
	if err := local.Preload(model); err != nil {
		t.Fatal(err)
	}
	c, err := local.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if have, err := c.HasModel(ctx, sha256.Sum256(model)); !have || err != nil {
		t.Errorf("preloaded model held: %v, %v", have, err)
	}
	addr, keys := startKeyed(t)
	remote, err := Connect(ctx, ServerSpec{Name: addr, KeyDir: keys.Dir})
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	if err := remote.Preload(model); err != nil {
		t.Errorf("Preload for a remote server: %v, want nil", err)
	}
}
