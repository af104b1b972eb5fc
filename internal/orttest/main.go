package orttest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"tracr/engine"
)

// Main runs a package's tests (call it from TestMain) with a cache folder
// of their own: XDG_CACHE_HOME points at a temporary folder, removed
// afterwards, so that built zoo models and profiles never land in the
// user's cache and no test trusts one an earlier run left there. The ONNX
// Runtime library found in the user's cache is passed on through
// TRACR_ORT_LIB, and Go's build cache stays where it was (tests that build
// tracr would otherwise compile everything again).
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv(engine.LibraryEnv) == "" {
		if lib, err := engine.LibraryPath(); err == nil {
			os.Setenv(engine.LibraryEnv, lib)
		}
	}
	if os.Getenv("GOCACHE") == "" {
		if dir, err := os.UserCacheDir(); err == nil {
			os.Setenv("GOCACHE", filepath.Join(dir, "go-build"))
		}
	}
	dir, err := os.MkdirTemp("", "tracr-test-cache-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "orttest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	os.Setenv("XDG_CACHE_HOME", dir)
	return m.Run()
}
