// Package orttest lets tests that need ONNX Runtime say so once: they skip
// with the reason when the library is missing (make setup fetches it),
// unless TRACR_REQUIRE_ORT is set, as CI does, where a skip would hide a
// broken set-up and the test fails instead.
package orttest

import (
	"os"
	"testing"

	"tracr/engine"
)

// Require skips or fails t when ONNX Runtime cannot be loaded, and
// initialises it otherwise.
func Require(t testing.TB) {
	t.Helper()
	if _, err := engine.LibraryPath(); err != nil {
		if os.Getenv("TRACR_REQUIRE_ORT") != "" {
			t.Fatalf("TRACR_REQUIRE_ORT is set: %v", err)
		}
		t.Skip(err.Error())
	}
	if err := engine.Init(); err != nil {
		t.Fatal(err)
	}
}
