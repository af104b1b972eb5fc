package orttest

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildTracr builds the tracr command into a temporary folder and returns
// its path, for tests that start tracr as a process of its own (a server
// process, a stock-sshd subsystem).
func BuildTracr(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found to build tracr: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "tracr")
	if out, err := exec.Command(goTool, "build", "-o", bin, "tracr/cmd/tracr").CombinedOutput(); err != nil {
		t.Fatalf("go build tracr/cmd/tracr: %v\n%s", err, out)
	}
	return bin
}
