package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeysCommands runs tracr keys init and trust as a user would.
func TestKeysCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	tests := []struct {
		name       string
		args       []string
		wantStatus int
		wantOut    []string // each in stdout
		wantErr    string   // prefix of stderr
	}{
		{name: "init", args: []string{"keys", "init", "--dir", dir, "--host", "10.0.0.5:2222"},
			wantOut: []string{"wrote " + dir + ":", "known_hosts      the server key pinned for 10.0.0.5:2222", "tracr serve --listen 0.0.0.0:2222 --host-key " + filepath.Join(dir, "server_ed25519")}},
		{name: "init again", args: []string{"keys", "init", "--dir", dir}, wantStatus: 1,
			wantErr: "tracr: keys init: " + filepath.Join(dir, "edge_ed25519") + " already exists; use --force"},
		{name: "init on another port", args: []string{"keys", "init", "--dir", dir, "--force", "--host", "127.0.0.1:47222"}, wantOut: []string{"tracr serve --listen 127.0.0.1:47222 ", "tracr probe --server 127.0.0.1:47222 "}},
		{name: "init forced", args: []string{"keys", "init", "--dir", dir, "--force"}, wantOut: []string{"pinned for 127.0.0.1:2222, localhost:2222", "tracr serve --listen 127.0.0.1:2222 "}},
		{name: "trust", args: []string{"keys", "trust", "--dir", dir, "--host", "gpu:2222"},
			wantOut: []string{filepath.Join(dir, "known_hosts") + ": pinned " + filepath.Join(dir, "server_ed25519.pub") + " for gpu:2222"}},
		{name: "trust without host", args: []string{"keys", "trust", "--dir", dir}, wantStatus: 1, wantErr: "tracr: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			status := run(append([]string{"tracr"}, tt.args...), &stdout, &stderr)
			if status != tt.wantStatus || !strings.HasPrefix(stderr.String(), tt.wantErr) {
				t.Fatalf("status %d, stderr %q; want %d, %q", status, stderr.String(), tt.wantStatus, tt.wantErr)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout %q\nlacks %q", stdout.String(), w)
				}
			}
		})
	}
	kh, err := os.ReadFile(filepath.Join(dir, "known_hosts"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(kh); !strings.HasPrefix(got, "[127.0.0.1]:2222,[localhost]:2222 ssh-ed25519 ") || !strings.Contains(got, "\n[gpu]:2222 ssh-ed25519 ") {
		t.Errorf("known_hosts:\n%s", got)
	}
}
