package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"tracr/engine"
)

// arm64LibEnv names the arm64 ONNX Runtime library for TestArm64Edge
// (make test-arm64 sets it from scripts/setup-ort.sh --print-path arm64).
const arm64LibEnv = "TRACR_ARM64_LIB"

// arm64Sysroot is where Debian's libc6-arm64-cross puts the arm64 loader
// and libc, which qemu-aarch64-static reads through QEMU_LD_PREFIX.
const arm64Sysroot = "/usr/aarch64-linux-gnu"

// arm64CPUInfo is /proc/cpuinfo as a Raspberry Pi 4's kernel writes it
// (two of its four Cortex-A72 cores). qemu-aarch64-static 7.2 (Debian 12)
// passes the host's x86 /proc/cpuinfo through, which ONNX Runtime's
// cpuinfo library cannot parse: it then crashes (SIGSEGV, null pointer)
// while loading, before any tracr code runs. The test shows the emulated
// edge this text instead, in a mount namespace of its own (root).
const arm64CPUInfo = `processor	: 0
BogoMIPS	: 108.00
Features	: fp asimd evtstrm crc32 cpuid
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x0
CPU part	: 0xd08
CPU revision	: 3

processor	: 1
BogoMIPS	: 108.00
Features	: fp asimd evtstrm crc32 cpuid
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x0
CPU part	: 0xd08
CPU revision	: 3
`

// TestArm64Edge cross-compiles tracr for linux/arm64 and runs it under
// qemu-aarch64-static, a different and slower CPU than this one: it
// prints its version and ONNX Runtime's from the library beside it,
// refuses the x86-64 library in one line, splits a model exactly, and
// runs as the edge of tracr run (a forced split cut) against this
// machine's native tracr serve over loopback SSH, with the results the
// native edge-only run gives for the same images. It runs where
// TRACR_ARM64_LIB names the arm64 library (make test-arm64, in CI), and
// skips elsewhere: the cross compiler and qemu come from Debian
// (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user-static).
func TestArm64Edge(t *testing.T) {
	armLib := os.Getenv(arm64LibEnv)
	if armLib == "" {
		t.Skipf("%s is not set (make test-arm64 sets it)", arm64LibEnv)
	}
	requireORT(t)
	x64Lib, err := engine.LibraryPath()
	if err != nil {
		t.Fatal(err)
	}
	qemu, err := exec.LookPath("qemu-aarch64-static")
	if err != nil {
		t.Fatalf("%s is set but: %v (apt-get install qemu-user-static)", arm64LibEnv, err)
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cpuinfo := filepath.Join(dir, "cpuinfo")
	if err := os.WriteFile(cpuinfo, []byte(arm64CPUInfo), 0o644); err != nil {
		t.Fatal(err)
	}
	armDir := filepath.Join(dir, "arm64")
	os.Mkdir(armDir, 0o755)
	armBin, nativeBin := filepath.Join(armDir, "tracr"), filepath.Join(dir, "tracr")
	build := func(out string, env ...string) {
		t.Helper()
		cmd := exec.Command("go", "build", "-o", out, ".")
		cmd.Env = append(os.Environ(), env...)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %v: %v\n%s", env, err, b)
		}
	}
	build(armBin, "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=1", "CC=aarch64-linux-gnu-gcc")
	build(nativeBin)
	lib, err := os.ReadFile(armLib)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(armDir, engine.LibraryName), lib, 0o644); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	os.Mkdir(home, 0o755)
	// The emulated edge finds its library beside itself: no TRACR_ORT_LIB.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, engine.LibraryEnv+"=") {
			env = append(env, kv)
		}
	}
	env = append(env, "QEMU_LD_PREFIX="+arm64Sysroot, "HOME="+home, "XDG_CACHE_HOME="+filepath.Join(home, ".cache"))
	arm := func(extraEnv []string, args ...string) (int, string, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, unshare, append([]string{"--mount", "--propagation", "private", "sh", "-c",
			`mount --bind "$0" /proc/cpuinfo && exec "$@"`, cpuinfo, qemu, armBin}, args...)...)
		cmd.Env = append(append([]string{}, env...), extraEnv...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		status := 0
		if err != nil {
			ee, ok := err.(*exec.ExitError)
			if !ok {
				t.Fatalf("qemu %v: %v", args, err)
			}
			status = ee.ExitCode()
		}
		return status, stdout.String(), stderr.String()
	}

	t.Run("version", func(t *testing.T) {
		status, out, errs := arm(nil, "version")
		if want := "ONNX Runtime 1.30.0 (" + filepath.Join(armDir, engine.LibraryName) + ")"; status != 0 || !strings.Contains(out, want) {
			t.Fatalf("status %d, stdout %q, stderr %q; want %q", status, out, errs, want)
		}
	})
	t.Run("x86-64 library", func(t *testing.T) {
		status, out, errs := arm([]string{engine.LibraryEnv + "=" + x64Lib}, "version")
		want := "is built for x86-64 (amd64), but this tracr is arm64 (aarch64)"
		if status != 1 || !strings.Contains(errs, want) || strings.Count(errs, "\n") != 1 {
			t.Fatalf("status %d, stdout %q, stderr %q; want exit 1 and one line with %q", status, out, errs, want)
		}
	})
	t.Run("split verify", func(t *testing.T) {
		model := sharedModel(t, mnist)
		abs, _ := filepath.Abs(model)
		status, out, errs := arm(nil, "split", "--model", abs, "--cut", "4", "-o", filepath.Join(dir, "split"), "--verify")
		if status != 0 || !strings.Contains(out, "max abs diff 0 (graph optimisations off") {
			t.Fatalf("status %d, stdout %s, stderr %s", status, out, errs)
		}
	})
	t.Run("edge of a run", func(t *testing.T) { arm64Run(t, dir, nativeBin, arm) })
}

// arm64Run runs the emulated arm64 edge against a native tracr serve on
// loopback SSH and compares its results with the native edge-only run's.
func arm64Run(t *testing.T, dir, nativeBin string, arm func([]string, ...string) (int, string, string)) {
	keys := filepath.Join(dir, "keys")
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if status, _, errs := tracr("keys", "init", "--dir", keys, "--host", addr); status != 0 {
		t.Fatalf("keys init: %s", errs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var serveLog bytes.Buffer
	serve := exec.CommandContext(ctx, nativeBin, "serve", "--listen", addr, "--threads", "1",
		"--host-key", filepath.Join(keys, "server_ed25519"), "--authorized-keys", filepath.Join(keys, "authorized_keys"),
		"--profile-dir", filepath.Join(dir, "server-profiles"))
	serve.Stdout, serve.Stderr = &serveLog, &serveLog
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		serve.Wait()
	}()
	waitListening(t, addr, &serveLog)

	images := filepath.Join(dir, "images")
	os.Mkdir(images, 0o755)
	for _, name := range []string{"chelsea.png", "coffee.png", "rocket.jpg"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "data", "samples", name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(images, name), b, 0o644)
	}
	devices := fmt.Sprintf("[servers.x86]\naddresses = [%q]\nidentity = \"keys/edge_ed25519\"\nknown_hosts = \"keys/known_hosts\"\n", addr)
	if err := os.WriteFile(filepath.Join(dir, "devices.toml"), []byte(devices), 0o644); err != nil {
		t.Fatal(err)
	}
	config := func(name string) string {
		p := filepath.Join(dir, name+".toml")
		text := fmt.Sprintf("model = \"mobilenetv2\"\nimg_size = 96\nserver = \"x86\"\n[dataset]\npath = %q\n[edge]\nthreads = 1\n[run]\nin_flight = 1\n[output]\ndir = %q\n",
			images, filepath.Join(dir, name))
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	status, out, errs := tracr("cuts", "--model", "mobilenetv2", "--json")
	if status != 0 {
		t.Fatalf("cuts: %s", errs)
	}
	var doc struct {
		Cuts []struct {
			ID int `json:"id"`
		} `json:"cuts"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Cuts) < 3 {
		t.Fatalf("cuts --json: %v (%d cuts)", err, len(doc.Cuts))
	}
	edgeOnly, split := doc.Cuts[len(doc.Cuts)-1].ID, doc.Cuts[len(doc.Cuts)/2].ID
	if status, out, errs := tracr("run", "--config", config("native"), "--cut", strconv.Itoa(edgeOnly), "-q"); status != 0 {
		t.Fatalf("native edge-only run: status %d\n%s\n%s", status, out, errs)
	}
	status, out, errs = arm(nil, "run", "--config", config("arm64"), "--cut", strconv.Itoa(split), "-q")
	if status != 0 {
		t.Fatalf("arm64 edge run: status %d\n%s\n%s\nserver:\n%s", status, out, errs, serveLog.String())
	}
	want, got := runResults(t, filepath.Join(dir, "native")), runResults(t, filepath.Join(dir, "arm64"))
	if len(got) != 3 || len(want) != 3 {
		t.Fatalf("results: arm64 %v, native %v; want 3 each", got, want)
	}
	for input, w := range want {
		g := got[input]
		if g.plan != fmt.Sprintf("cut %d", split) {
			t.Errorf("%s: arm64 edge ran %q, want cut %d", input, g.plan, split)
		}
		t.Logf("%s: arm64 edge, cut %d: %s %.2f; native edge-only: %s %.2f", input, split, g.label, g.prob, w.label, w.prob)
		if g.label != w.label || math.Abs(g.prob-w.prob) > 0.011 {
			t.Errorf("%s: arm64 edge, cut %d: %s %.2f; native edge-only: %s %.2f", input, split, g.label, g.prob, w.label, w.prob)
		}
	}
}

// result is one request's class and probability, from run.csv.
type result struct {
	plan, label string
	prob        float64
}

// runResults reads a run's run.csv: each input's plan and top-1 result.
func runResults(t *testing.T, dir string) map[string]result {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "run.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil || len(rows) < 1 {
		t.Fatalf("run.csv: %v", err)
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	out := map[string]result{}
	for _, r := range rows[1:] {
		text := r[col["result"]]
		i := strings.LastIndexByte(text, ' ')
		if i < 0 {
			t.Fatalf("result %q: want \"label prob\"", text)
		}
		p, err := strconv.ParseFloat(text[i+1:], 64)
		if err != nil {
			t.Fatalf("result %q: %v", text, err)
		}
		plan := r[col["plan"]]
		if plan == "cut" {
			plan += " " + r[col["cut"]]
		}
		out[r[col["input"]]] = result{plan: plan, label: text[:i], prob: p}
	}
	return out
}

// freePort is a loopback TCP port nobody listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitListening waits until something accepts connections at addr.
func waitListening(t *testing.T, addr string, log *bytes.Buffer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("nothing listens at %s after 30 s; server log:\n%s", addr, log.String())
}
