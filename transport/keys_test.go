package transport

import (
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// TestInitKeys checks the files InitKeys writes, their modes, that they
// fit together, and that it refuses to replace them without force.
func TestInitKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "config", "keys")
	hosts := []string{"127.0.0.1:2222", "edge-server.lan", "[::1]:2222"}
	k, err := InitKeys(dir, hosts, false)
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]fs.FileMode{
		k.Dir: 0o700, k.EdgeKey: 0o600, k.HostKey: 0o600, k.AuthorizedKeys: 0o600,
		k.EdgePub: 0o644, k.HostPub: 0o644, k.KnownHosts: 0o644,
	}
	for p, want := range modes {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %04o, want %04o", p, got, want)
		}
	}
	edge, err := LoadSigner(k.EdgeKey)
	if err != nil {
		t.Fatal(err)
	}
	host, err := LoadSigner(k.HostKey)
	if err != nil {
		t.Fatal(err)
	}
	if edge.PublicKey().Type() != ssh.KeyAlgoED25519 || host.PublicKey().Type() != ssh.KeyAlgoED25519 {
		t.Errorf("key types %s, %s; want ed25519", edge.PublicKey().Type(), host.PublicKey().Type())
	}
	auth, err := LoadAuthorizedKeys(k.AuthorizedKeys)
	if err != nil {
		t.Fatal(err)
	}
	if len(auth) != 1 || string(auth[0].Marshal()) != string(edge.PublicKey().Marshal()) {
		t.Error("authorized_keys does not hold exactly the edge key")
	}
	kh, err := LoadKnownHosts(k.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"127.0.0.1:2222", "edge-server.lan:22", "[::1]:2222"} {
		if err := kh.Check(h, someAddr(), host.PublicKey()); err != nil {
			t.Errorf("known_hosts does not pin the host key for %s: %v", h, err)
		}
	}
	for _, h := range []string{"127.0.0.1:2223", "edge-server.lan:2222"} {
		if err := kh.Check(h, someAddr(), host.PublicKey()); err == nil {
			t.Errorf("known_hosts accepts the host key for %s, which it was not given", h)
		}
	}
	if got := kh.Algorithms("127.0.0.1:2222"); len(got) != 1 || got[0] != ssh.KeyAlgoED25519 {
		t.Errorf("Algorithms = %q, want [ssh-ed25519]", got)
	}
	if got := kh.Algorithms("127.0.0.1:9"); got != nil {
		t.Errorf("Algorithms of an unknown host = %q, want none", got)
	}

	_, err = InitKeys(dir, hosts, false)
	if err == nil || !strings.Contains(err.Error(), "already exists; use --force") {
		t.Fatalf("second InitKeys: %v; want a refusal", err)
	}
	if _, err := InitKeys(dir, hosts, true); err != nil {
		t.Fatalf("InitKeys with force: %v", err)
	}
	edge2, err := LoadSigner(k.EdgeKey)
	if err != nil {
		t.Fatal(err)
	}
	if string(edge2.PublicKey().Marshal()) == string(edge.PublicKey().Marshal()) {
		t.Error("force kept the old edge key")
	}
	if _, err := InitKeys(t.TempDir(), nil, false); err == nil {
		t.Error("InitKeys with no hosts succeeded")
	}
	if _, err := InitKeys(t.TempDir(), []string{"a b"}, false); err == nil {
		t.Error("InitKeys with a host containing a space succeeded")
	}
}

// TestLoadSignerRefusesOpenKeys checks that a private key others can read,
// or one in a folder others can open, is refused with the chmod that fixes
// it.
func TestLoadSignerRefusesOpenKeys(t *testing.T) {
	tests := []struct {
		name     string
		fileMode fs.FileMode
		dirMode  fs.FileMode
		want     string // with FILE and DIR replaced; "" for success
	}{
		{"private", 0o600, 0o700, ""},
		{"read-only owner", 0o400, 0o700, ""},
		{"group readable", 0o640, 0o700, "private key FILE is accessible by group or others (mode 0640); run chmod 600 FILE"},
		{"world readable", 0o644, 0o700, "run chmod 600 FILE"},
		{"open folder", 0o600, 0o755, "key folder DIR of private key FILE is accessible by group or others (mode 0755); run chmod 700 DIR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := InitKeys(filepath.Join(t.TempDir(), "keys"), DefaultHosts(), false)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(k.EdgeKey, tt.fileMode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(k.Dir, tt.dirMode); err != nil {
				t.Fatal(err)
			}
			_, err = LoadSigner(k.EdgeKey)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			want := strings.NewReplacer("FILE", k.EdgeKey, "DIR", k.Dir).Replace(tt.want)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("LoadSigner: %v\nwant %q", err, want)
			}
			if _, err := LoadClientConfig(k.Dir); err == nil {
				t.Error("LoadClientConfig accepted the key")
			}
		})
	}
	if _, err := LoadSigner(filepath.Join(t.TempDir(), "nope")); err == nil || !strings.Contains(err.Error(), "does not exist; create keys with tracr keys init") {
		t.Errorf("LoadSigner of a missing file: %v", err)
	}
}

// TestLoadAuthorizedKeys checks parsing and the refusals.
func TestLoadAuthorizedKeys(t *testing.T) {
	_, pub1, err := NewKeyPair("one")
	if err != nil {
		t.Fatal(err)
	}
	_, pub2, err := NewKeyPair("two")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		content string
		mode    fs.FileMode
		want    int    // keys
		wantErr string // "" for success
	}{
		{"two keys with comments", "# edges\n" + string(pub1) + "\n\n" + `from="10.0.0.0/8" ` + string(pub2), 0o600, 2, ""},
		{"empty", "# no keys yet\n", 0o600, 0, "holds no keys; add the edge's public key"},
		{"garbage", string(pub1) + "not a key\n", 0o600, 0, ":2: "},
		{"world writable", string(pub1), 0o666, 0, "is writable by group or others (mode 0666); run chmod 600 "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "authorized_keys")
			if err := os.WriteFile(p, []byte(tt.content), tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tt.mode); err != nil { // past the umask
				t.Fatal(err)
			}
			keys, err := LoadAuthorizedKeys(p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadAuthorizedKeys: %v; want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(keys) != tt.want {
				t.Fatalf("LoadAuthorizedKeys = %d keys, %v; want %d", len(keys), err, tt.want)
			}
		})
	}
}

// TestTrustHost checks that TrustHost pins a server key for another
// address without disturbing the existing lines.
func TestTrustHost(t *testing.T) {
	k, err := InitKeys(filepath.Join(t.TempDir(), "keys"), DefaultHosts(), false)
	if err != nil {
		t.Fatal(err)
	}
	host, err := LoadSigner(k.HostKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := TrustHost(k.KnownHosts, k.HostPub, []string{"gpu-box:2222"}); err != nil {
		t.Fatal(err)
	}
	kh, err := LoadKnownHosts(k.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"127.0.0.1:2222", "localhost:2222", "gpu-box:2222"} {
		if err := kh.Check(h, someAddr(), host.PublicKey()); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	if err := TrustHost(k.KnownHosts, filepath.Join(k.Dir, "missing.pub"), []string{"x"}); err == nil {
		t.Error("TrustHost with a missing key file succeeded")
	}
}

// someAddr is the remote address given to host key checks, which look at
// it only when no host name is given.
func someAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 22} }
