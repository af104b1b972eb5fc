package runtime

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tracr/cpulimit"
	"tracr/internal/orttest"
)

// cgroupOf returns the cpu controller's cgroup path of a process.
func cgroupOf(t *testing.T, pid int) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && (strings.Contains(","+parts[1]+",", ",cpu,") || (parts[0] == "0" && parts[1] == "")) {
			return parts[2]
		}
	}
	return ""
}

// cpuTime is this process's user+system CPU time.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestConnectEdgeCPU: with an edge CPU limit the local server is its own
// tracr serve process outside the limit, this process is inside it (its
// CPU use held to the limit), planning labels the edge profile as the
// limited device's and not the server's, and Close undoes it all.
func TestConnectEdgeCPU(t *testing.T) {
	requireORT(t)
	bin := orttest.BuildTracr(t)
	ctx := context.Background()
	const cores = 0.5
	srv, err := Connect(ctx, ServerSpec{EdgeCPU: cores, Local: LocalServer{Binary: bin, Threads: 1, Concurrency: 1}})
	if err != nil {
		if os.Getenv("TRACR_REQUIRE_CGROUP") == "" && strings.Contains(err.Error(), "cgroup") {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			srv.Close()
		}
	}()
	g := srv.EdgeLimit()
	if g == nil || !srv.Separate() || !strings.Contains(srv.Name(), "tracr serve process") {
		t.Fatalf("server %q, limit %v: want a separate tracr serve process and a limit", srv.Name(), g)
	}
	group := filepath.Base(g.Dir())
	if got := cgroupOf(t, os.Getpid()); !strings.HasSuffix(got, group) {
		t.Errorf("this process is in cgroup %q, want the limit's %s", got, group)
	}
	server := srv.proc.Pid()
	if got := cgroupOf(t, server); strings.HasSuffix(got, group) {
		t.Errorf("the server process is in the edge's limit (%s)", got)
	}
	// The edge has a CPU of its own, which the server keeps off where
	// the machine has another.
	edgeCPUs := g.CPUs()
	if got := cpusOf(t, os.Getpid()); len(edgeCPUs) != 1 || got != fmt.Sprint(edgeCPUs[0]) {
		t.Errorf("this process runs on CPUs %s, want the limit's %v", got, edgeCPUs)
	}
	if goruntime.NumCPU() > 1 && len(edgeCPUs) == 1 && slices.Contains(expandCPUs(t, cpusOf(t, server)), edgeCPUs[0]) {
		t.Errorf("the server process runs on CPUs %s, the edge's %v among them", cpusOf(t, server), edgeCPUs)
	}

	// The limit holds this process: a busy loop gets at most its share.
	wall := 400 * time.Millisecond
	cpu0, start := cpuTime(t), time.Now()
	x := 1.0
	for time.Since(start) < wall {
		x = math.Sqrt(x + 1)
	}
	share := (cpuTime(t) - cpu0).Seconds() / time.Since(start).Seconds()
	if limit := cores*1.3 + g.Limit().Quota().Seconds()/wall.Seconds(); share > limit || x < 0 {
		t.Errorf("this process used %.2f cores under a %g-core limit", share, cores)
	}

	c, err := srv.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	path := filepath.Join(t.TempDir(), "chain.onnx")
	if err := os.WriteFile(path, orttest.ChainModel(t), 0o644); err != nil {
		t.Fatal(err)
	}
	// Preload reaches the separate process, as a deployed server holds
	// the model already.
	chain := orttest.ChainModel(t)
	if err := srv.Preload(chain); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.HasModel(ctx, sha256.Sum256(chain)); !ok || err != nil {
		t.Errorf("after Preload the server process has the model: %v, %v", ok, err)
	}
	p, err := Plan(ctx, c, PlanOptions{Model: path, EdgeThreads: 1, Repeats: 2, EdgeCPU: cores, Link: nil})
	if err != nil {
		t.Fatal(err)
	}
	if p.EdgeProfile.CPULimit != cores || p.ServerProfile.CPULimit != 0 {
		t.Errorf("profiles say edge limit %g, server limit %g; want %g and none", p.EdgeProfile.CPULimit, p.ServerProfile.CPULimit, cores)
	}

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if got := cgroupOf(t, os.Getpid()); strings.HasSuffix(got, group) {
		t.Errorf("after Close this process is still in the limit (%s)", got)
	}
	if _, err := os.Stat(g.Dir()); !os.IsNotExist(err) {
		t.Errorf("the limit's cgroup %s is still there: %v", g.Dir(), err)
	}
	if got, want := cpusOf(t, os.Getpid()), fmt.Sprintf("0-%d", goruntime.NumCPU()-1); goruntime.NumCPU() > 1 && got != want {
		t.Errorf("after Close this process runs on CPUs %s, want %s", got, want)
	}
	if err := syscall.Kill(server, 0); err == nil {
		t.Errorf("the server process %d still runs after Close", server)
	}
}

// TestConnectEdgeCPUUnavailable: where no cgroup can be made the error
// says how to grant one, and no server is left running.
func TestConnectEdgeCPUUnavailable(t *testing.T) {
	t.Setenv(cpulimit.EnvParent, t.TempDir())
	_, err := Connect(context.Background(), ServerSpec{EdgeCPU: 0.5, Local: LocalServer{Binary: "/nonexistent/tracr"}})
	if err == nil || !strings.Contains(err.Error(), "edge CPU limit") || !strings.Contains(err.Error(), "run as root") {
		t.Fatalf("err = %v, want the CPU limit refused with how to grant it", err)
	}
	for _, bad := range []float64{-1, 1000} {
		if _, err := Connect(context.Background(), ServerSpec{EdgeCPU: bad}); err == nil || !strings.Contains(err.Error(), "must be above 0") {
			t.Errorf("EdgeCPU %g: err = %v, want a refusal", bad, err)
		}
	}
}

// cpusOf is the CPUs process pid's main thread may run on, as the kernel
// lists them ("1", "0-1", "0,2").
func cpusOf(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("process %d: no Cpus_allowed_list", pid)
	return ""
}

// expandCPUs expands a kernel CPU list ("0-2,5") into its CPUs.
func expandCPUs(t *testing.T, list string) []int {
	t.Helper()
	var cpus []int
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil {
			t.Fatalf("CPU list %q: %v", list, err)
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus
}
