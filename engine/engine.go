// Package engine runs ONNX models in ONNX Runtime for tracr; it knows nothing
// about cuts.
//
// The runtime is one shared library per process, loaded by Init from the path
// LibraryPath resolves (TRACR_ORT_LIB, the library next to the binary, or the
// cache that `make setup` fills).
// A Session is one model loaded into the runtime; its Run is safe to call from
// many goroutines at once.
package engine

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// ORTVersion is the ONNX Runtime version tracr is built and tested against.
const ORTVersion = "1.30.0"

// LibraryEnv is the environment variable that, when set, names the ONNX
// Runtime shared library to load instead of the one found next to the
// binary or in the cache.
const LibraryEnv = "TRACR_ORT_LIB"

// LibraryName is the ONNX Runtime shared library's file name, as `make
// setup` caches it and `make dist` packs it beside the binary.
const LibraryName = "libonnxruntime.so.1"

// DefaultLibraryPath returns where `make setup` caches the ONNX Runtime shared
// library for this binary's architecture (CachedLibraryPath).
func DefaultLibraryPath() (string, error) { return CachedLibraryPath(goruntime.GOARCH) }

// CachedLibraryPath returns where `make setup` (scripts/setup-ort.sh
// ARCH) caches the ONNX Runtime shared library for the Go architecture
// arch: <user cache dir>/tracr/onnxruntime-<ORTVersion>-<arch>/libonnxruntime.so.1.
func CachedLibraryPath(arch string) (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("locate ONNX Runtime library: %w", err)
	}
	return filepath.Join(dir, "tracr", "onnxruntime-"+ORTVersion+"-"+arch, LibraryName), nil
}

// LibraryPath returns the absolute path of the ONNX Runtime shared library to
// load: TRACR_ORT_LIB if set; else libonnxruntime.so.1 next to the running
// binary (where `make dist` puts it), or in a lib folder beside it; else
// DefaultLibraryPath. It fails with a message naming every place it looked
// and how to fix it when no file is there.
func LibraryPath() (string, error) {
	if path := os.Getenv(LibraryEnv); path != "" {
		abs, err := filepath.Abs(path)
		if err != nil {
			return "", fmt.Errorf("locate ONNX Runtime library %s: %w", path, err)
		}
		if !isFile(abs) {
			return "", fmt.Errorf("ONNX Runtime library not found at %s (from %s); fix %s, or unset it and run make setup", abs, LibraryEnv, LibraryEnv)
		}
		return abs, nil
	}
	var looked []string
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		dir := filepath.Dir(exe)
		looked = append(looked, filepath.Join(dir, LibraryName), filepath.Join(dir, "lib", LibraryName))
	}
	cached, err := DefaultLibraryPath()
	if err != nil {
		return "", err
	}
	looked = append(looked, cached)
	for _, p := range looked {
		if isFile(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("ONNX Runtime library not found: looked at %s; run make setup, or set %s to the %s library",
		strings.Join(looked, ", "), LibraryEnv, "linux/"+goruntime.GOARCH)
}

// isFile reports whether path is a regular file (following links).
func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// elfMachines are the ELF machines of the architectures tracr builds
// for, by Go's name.
var elfMachines = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// archNames are elfMachines' architectures as people name them.
var archNames = map[elf.Machine]string{elf.EM_X86_64: "x86-64 (amd64)", elf.EM_AARCH64: "arm64 (aarch64)"}

// checkLibrary refuses a library built for another architecture than
// this binary's, before the dynamic loader's less telling error: an
// arm64 tracr given the x86-64 library, or the reverse.
func checkLibrary(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("ONNX Runtime library %s: not a shared library (%v)", path, err)
	}
	defer f.Close()
	want, known := elfMachines[goruntime.GOARCH]
	if !known || f.Machine == want {
		return nil
	}
	got := archNames[f.Machine]
	if got == "" {
		got = f.Machine.String()
	}
	return fmt.Errorf("ONNX Runtime library %s is built for %s, but this tracr is %s: use the %s library (make setup on this machine, or %s)",
		path, got, archNames[want], archNames[want], LibraryEnv)
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
	if err := checkLibrary(path); err != nil {
		return err
	}
	ort.SetSharedLibraryPath(path)
	// Fatal level: ORT warns at every session of some valid models (IR3
	// initialisers listed as inputs, unused initialisers), which would drown
	// tracr's own output, and logs every failed run in several lines of its
	// own before returning the same message as the error tracr reports in
	// one.
	if err := ort.InitializeEnvironment(ort.WithLogLevelFatal()); err != nil {
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
