// Package engine runs ONNX models in ONNX Runtime for tracr; it knows nothing
// about cuts.
//
// The runtime is one shared library per process, loaded by Init from the path
// LibraryPath resolves (TRACR_ORT_LIB, or the cache that `make setup` fills).
// A Session is one model loaded into the runtime; its Run is safe to call from
// many goroutines at once.
package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// ORTVersion is the ONNX Runtime version tracr is built and tested against.
const ORTVersion = "1.30.0"

// LibraryEnv is the environment variable that, when set, names the ONNX
// Runtime shared library to load instead of the default cached one.
const LibraryEnv = "TRACR_ORT_LIB"

// DefaultLibraryPath returns where `make setup` caches the ONNX Runtime shared
// library: <user cache dir>/tracr/onnxruntime-<ORTVersion>/libonnxruntime.so.1.
func DefaultLibraryPath() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("locate ONNX Runtime library: %w", err)
	}
	return filepath.Join(dir, "tracr", "onnxruntime-"+ORTVersion, "libonnxruntime.so.1"), nil
}

// LibraryPath returns the absolute path of the ONNX Runtime shared library to
// load: TRACR_ORT_LIB if set, else DefaultLibraryPath. It fails with a message
// saying how to fix it when no file is there.
func LibraryPath() (string, error) {
	path, fromEnv := os.Getenv(LibraryEnv), true
	if path == "" {
		p, err := DefaultLibraryPath()
		if err != nil {
			return "", err
		}
		path, fromEnv = p, false
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("locate ONNX Runtime library %s: %w", path, err)
	}
	if fi, err := os.Stat(abs); err != nil || !fi.Mode().IsRegular() {
		if fromEnv {
			return "", fmt.Errorf("ONNX Runtime library not found at %s (from %s); fix %s, or unset it and run make setup", abs, LibraryEnv, LibraryEnv)
		}
		return "", fmt.Errorf("ONNX Runtime library not found at %s; run make setup", abs)
	}
	return abs, nil
}

// initOnce loads the runtime once per process and remembers the outcome: ONNX
// Runtime has one environment per process, so this is the one piece of
// process-wide state the package keeps.
var initOnce = sync.OnceValue(func() error {
	path, err := LibraryPath()
	if err != nil {
		return err
	}
	if ort.IsInitialized() {
		// Someone in this process set the runtime up without us; use it.
		return nil
	}
	ort.SetSharedLibraryPath(path)
	// Error level: ORT warns at every session of some valid models (IR3
	// initialisers listed as inputs, unused initialisers), which would drown
	// tracr's own output.
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("initialise ONNX Runtime from %s: %w", path, err)
	}
	return nil
})

// Init loads the ONNX Runtime library and creates its process-wide
// environment. It is idempotent and safe to call from many goroutines; every
// call returns the outcome of the first.
func Init() error { return initOnce() }

// Version returns the version ONNX Runtime reports for the loaded library,
// initialising the runtime if needed.
func Version() (string, error) {
	if err := Init(); err != nil {
		return "", err
	}
	return ort.GetVersion(), nil
}
