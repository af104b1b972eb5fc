package transport

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// DefaultKeyDir is where `tracr keys init` writes keys unless told otherwise.
const DefaultKeyDir = "config/keys"

// DefaultPort is the TCP port `tracr serve` listens on by default.
const DefaultPort = "2222"

// KeyFiles names the files of a key folder made by InitKeys.
type KeyFiles struct {
	// Dir is the folder (mode 0700).
	Dir string
	// EdgeKey is the edge's private key (OpenSSH format, mode 0600) and
	// EdgePub its public key.
	EdgeKey, EdgePub string
	// HostKey is the server's private host key (mode 0600) and HostPub its
	// public key.
	HostKey, HostPub string
	// AuthorizedKeys lists the edge keys the server accepts.
	AuthorizedKeys string
	// KnownHosts pins the server's host key for the edge, one line per
	// server address.
	KnownHosts string
}

// KeyPaths returns the file names of a key folder.
func KeyPaths(dir string) KeyFiles {
	return KeyFiles{
		Dir:            dir,
		EdgeKey:        filepath.Join(dir, "edge_ed25519"),
		EdgePub:        filepath.Join(dir, "edge_ed25519.pub"),
		HostKey:        filepath.Join(dir, "server_ed25519"),
		HostPub:        filepath.Join(dir, "server_ed25519.pub"),
		AuthorizedKeys: filepath.Join(dir, "authorized_keys"),
		KnownHosts:     filepath.Join(dir, "known_hosts"),
	}
}

// all returns every file of the folder, private keys first.
func (k KeyFiles) all() []string {
	return []string{k.EdgeKey, k.HostKey, k.EdgePub, k.HostPub, k.AuthorizedKeys, k.KnownHosts}
}

// DefaultHosts are the server addresses InitKeys pins when given none: the
// default `tracr serve` address on this machine.
func DefaultHosts() []string {
	return []string{net.JoinHostPort("127.0.0.1", DefaultPort), net.JoinHostPort("localhost", DefaultPort)}
}

// InitKeys creates a key folder: an ed25519 key for the edge and one for
// the server, the server's authorized_keys (the edge key) and the edge's
// known_hosts (the server key, pinned for each of hosts, "host" or
// "host:port"). It refuses to replace existing files unless force is set,
// and writes each file atomically.
func InitKeys(dir string, hosts []string, force bool) (KeyFiles, error) {
	k := KeyPaths(dir)
	if len(hosts) == 0 {
		return k, errors.New("keys init: no server address to pin in known_hosts")
	}
	if !force {
		for _, p := range k.all() {
			if _, err := os.Lstat(p); err == nil {
				return k, fmt.Errorf("keys init: %s already exists; use --force to replace the keys in %s (edges and servers using them must be updated)", p, dir)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return k, fmt.Errorf("keys init: %w", err)
	}
	// MkdirAll keeps the mode of an existing folder; the keys need 0700.
	if err := os.Chmod(dir, 0o700); err != nil {
		return k, fmt.Errorf("keys init: %w", err)
	}
	edgePEM, edgePub, err := NewKeyPair("tracr-edge")
	if err != nil {
		return k, fmt.Errorf("keys init: %w", err)
	}
	hostPEM, hostPub, err := NewKeyPair("tracr-server")
	if err != nil {
		return k, fmt.Errorf("keys init: %w", err)
	}
	known, err := KnownHostsLine(hosts, hostPub)
	if err != nil {
		return k, fmt.Errorf("keys init: %w", err)
	}
	files := []struct {
		path string
		data []byte
		mode fs.FileMode
	}{
		{k.EdgeKey, edgePEM, 0o600},
		{k.HostKey, hostPEM, 0o600},
		{k.EdgePub, edgePub, 0o644},
		{k.HostPub, hostPub, 0o644},
		{k.AuthorizedKeys, edgePub, 0o600},
		{k.KnownHosts, []byte(known), 0o644},
	}
	for _, f := range files {
		if err := writeFileMode(f.path, f.data, f.mode); err != nil {
			return k, fmt.Errorf("keys init: %w", err)
		}
	}
	return k, nil
}

// NewKeyPair generates an ed25519 key and returns the private key in
// OpenSSH PEM format and the public key as an authorized_keys line.
func NewKeyPair(comment string) (private, public []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, nil, fmt.Errorf("encode private key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("encode public key: %w", err)
	}
	line := bytes.TrimSuffix(ssh.MarshalAuthorizedKey(sshPub), []byte("\n"))
	line = append(line, ' ')
	line = append(line, comment...)
	line = append(line, '\n')
	return pem.EncodeToMemory(block), line, nil
}

// KnownHostsLine returns the known_hosts line that pins the public key pub
// (an authorized_keys line) for each of hosts ("host" or "host:port").
func KnownHostsLine(hosts []string, pub []byte) (string, error) {
	key, _, _, _, err := ssh.ParseAuthorizedKey(pub)
	if err != nil {
		return "", fmt.Errorf("parse public key: %w", err)
	}
	for _, h := range hosts {
		if strings.TrimSpace(h) == "" || strings.ContainsAny(h, " \t,") {
			return "", fmt.Errorf("bad server address %q", h)
		}
	}
	return knownhosts.Line(hosts, key) + "\n", nil
}

// TrustHost appends to the known_hosts file a line that pins the public key
// in pubFile for each of hosts.
func TrustHost(knownHosts, pubFile string, hosts []string) error {
	pub, err := os.ReadFile(pubFile)
	if err != nil {
		return fmt.Errorf("trust host: %w", err)
	}
	line, err := KnownHostsLine(hosts, pub)
	if err != nil {
		return fmt.Errorf("trust host: %s: %w", pubFile, err)
	}
	f, err := os.OpenFile(knownHosts, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("trust host: %w", err)
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return fmt.Errorf("trust host: write %s: %w", knownHosts, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("trust host: write %s: %w", knownHosts, err)
	}
	return nil
}

// writeFileMode writes data to path through a temporary file in the same
// folder, created with mode, then renamed over path.
func writeFileMode(path string, data []byte, mode fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// LoadSigner reads a private key file. It refuses a key that group or
// others may read, or that lies in a folder they may write or list, the way
// OpenSSH does, with a message that says which chmod fixes it.
func LoadSigner(path string) (ssh.Signer, error) {
	if err := checkPrivate(path); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load private key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return nil, fmt.Errorf("load private key %s: it is protected by a passphrase, which tracr does not support; create one with tracr keys init", path)
		}
		return nil, fmt.Errorf("load private key %s: %w", path, err)
	}
	return s, nil
}

// checkPrivate refuses a private key file, or its folder, that others can
// read.
func checkPrivate(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("load private key: %s does not exist; create keys with tracr keys init", path)
		}
		return fmt.Errorf("load private key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("load private key: %s is not a regular file", path)
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		return fmt.Errorf("private key %s is accessible by group or others (mode %04o); run chmod 600 %s", path, m, path)
	}
	dir := filepath.Dir(path)
	di, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("load private key: %w", err)
	}
	if m := di.Mode().Perm(); m&0o077 != 0 {
		return fmt.Errorf("key folder %s of private key %s is accessible by group or others (mode %04o); run chmod 700 %s", dir, path, m, dir)
	}
	return nil
}

// LoadAuthorizedKeys reads an authorized_keys file: one public key per
// line; blank lines and # comments are skipped. Options before a key are
// ignored (tracr's server grants the same to every key). It refuses a file
// that others may write, which would let them add keys.
func LoadAuthorizedKeys(path string) ([]ssh.PublicKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load authorized keys: %w", err)
	}
	if m := fi.Mode().Perm(); m&0o022 != 0 {
		return nil, fmt.Errorf("authorized keys %s is writable by group or others (mode %04o); run chmod 600 %s", path, m, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load authorized keys: %w", err)
	}
	var keys []ssh.PublicKey
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return nil, fmt.Errorf("load authorized keys: %s:%d: %w", path, i+1, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("load authorized keys: %s holds no keys; add the edge's public key (edge_ed25519.pub) to it", path)
	}
	return keys, nil
}
