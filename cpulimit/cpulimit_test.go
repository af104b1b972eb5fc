package cpulimit

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// envChild makes the test binary a busy child: it waits for a line on
// stdin, then spins for the given duration of wall time.
const envChild = "TRACR_CPULIMIT_TEST_CHILD"

func TestMain(m *testing.M) {
	if n := os.Getenv(envWork); n != "" {
		work(n)
	}
	if d := os.Getenv(envChild); d != "" {
		wall, err := time.ParseDuration(d)
		if err != nil {
			os.Exit(2)
		}
		bufio.NewReader(os.Stdin).ReadString('\n')
		end := time.Now().Add(wall)
		x := 1.0
		for time.Now().Before(end) {
			for i := 0; i < 1000; i++ {
				x = math.Sqrt(x + float64(i))
			}
		}
		if x < 0 {
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestLimitValidate(t *testing.T) {
	n := float64(goruntime.NumCPU())
	for _, c := range []float64{0, -0.5, math.NaN(), math.Inf(1), n + 0.5} {
		if err := (Limit{Cores: c}).Validate(); err == nil || !strings.Contains(err.Error(), "must be above 0") {
			t.Errorf("limit %g: got %v, want a refusal", c, err)
		}
		if _, err := New(Limit{Cores: c}); err == nil {
			t.Errorf("New(%g) made a group", c)
		}
	}
	for _, c := range []float64{0.01, 0.1, 1, n} {
		if err := (Limit{Cores: c}).Validate(); err != nil {
			t.Errorf("limit %g: %v", c, err)
		}
	}
}

func TestLimitPeriod(t *testing.T) {
	for _, tc := range []struct {
		cores         float64
		period, quota time.Duration
	}{
		{0.1, 10 * time.Millisecond, time.Millisecond},
		{0.2, 10 * time.Millisecond, 2 * time.Millisecond},
		{1.5, 10 * time.Millisecond, 15 * time.Millisecond},
		{0.05, 20 * time.Millisecond, time.Millisecond},
		{0.0001, time.Second, time.Millisecond}, // the kernel's longest period
	} {
		l := Limit{Cores: tc.cores}
		if l.Period() != tc.period || l.Quota() != tc.quota {
			t.Errorf("%g cores: period %v quota %v, want %v %v", tc.cores, l.Period(), l.Quota(), tc.period, tc.quota)
		}
	}
}

func TestParse(t *testing.T) {
	mounts := parseMounts(`31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/uni\040fied rw,relatime - cgroup2 cgroup2 rw`)
	want := []mount{{"/sys/fs/cgroup/cpu,cpuacct", 1, true}, {"/sys/fs/cgroup/memory", 1, false}, {"/sys/fs/cgroup/uni fied", 2, false}}
	if len(mounts) != len(want) {
		t.Fatalf("mounts %+v, want %+v", mounts, want)
	}
	for i := range want {
		if mounts[i] != want[i] {
			t.Errorf("mount %d: %+v, want %+v", i, mounts[i], want[i])
		}
	}
	own := parseOwn("4:memory:/a/b\n2:cpu,cpuacct:/box\n0::/user.slice/x.scope\n")
	if own.v1["cpu"] != "/box" || own.v1["cpuacct"] != "/box" || !own.has2 || own.v2 != "/user.slice/x.scope" {
		t.Errorf("own groups %+v", own)
	}
}

// TestChoose lays out cgroup-like folders and checks where groups go.
func TestChoose(t *testing.T) {
	root := t.TempDir()
	v1 := filepath.Join(root, "cpu")
	v2 := filepath.Join(root, "unified")
	touch := func(path, text string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	touch(filepath.Join(v1, "box", "cpu.cfs_quota_us"), "-1")
	touch(filepath.Join(v1, "deleg", "cpu.cfs_quota_us"), "-1")
	touch(filepath.Join(v2, "cgroup.controllers"), "memory pids") // no cpu offered
	mounts := []mount{{v2, 2, false}, {v1, 1, true}}
	own := ownGroups{v1: map[string]string{"cpu": "/box"}, v2: "/", has2: true}

	parent, version, home, err := choose(mounts, own, "")
	if err != nil || parent != filepath.Join(v1, "box") || version != 1 || home != parent {
		t.Errorf("v1: %s %d %s %v", parent, version, home, err)
	}
	parent, _, home, err = choose(mounts, own, filepath.Join(v1, "deleg"))
	if err != nil || parent != filepath.Join(v1, "deleg") || home != filepath.Join(v1, "box") {
		t.Errorf("delegated: %s %s %v", parent, home, err)
	}
	if _, _, _, err := choose(mounts, own, filepath.Join(root, "elsewhere")); err == nil || !strings.Contains(err.Error(), EnvParent) {
		t.Errorf("bad override: %v", err)
	}
	if _, _, _, err := choose(mounts[:1], own, ""); err == nil || !strings.Contains(err.Error(), "no cgroup with the cpu controller") {
		t.Errorf("no controller: %v", err)
	}

	// v2 offering cpu: the group goes beside the process's own leaf.
	touch(filepath.Join(v2, "cgroup.controllers"), "cpu memory")
	touch(filepath.Join(v2, "app", "cgroup.controllers"), "cpu memory")
	touch(filepath.Join(v2, "app", "me", "cgroup.controllers"), "cpu memory")
	touch(filepath.Join(v2, "app", "cgroup.subtree_control"), "")
	own2 := ownGroups{v2: "/app/me", has2: true}
	parent, version, home, err = choose(mounts, own2, "")
	if err != nil || parent != filepath.Join(v2, "app") || version != 2 || home != filepath.Join(v2, "app", "me") {
		t.Errorf("v2: %s %d %s %v", parent, version, home, err)
	}
	if got, _ := os.ReadFile(filepath.Join(v2, "app", "cgroup.subtree_control")); string(got) != "+cpu" {
		t.Errorf("v2 subtree_control %q, want +cpu written", got)
	}
}

// newGroup makes a real group or skips where the kernel offers none,
// unless TRACR_REQUIRE_CGROUP is set (CI runs as root).
func newGroup(t *testing.T, l Limit) *Group {
	t.Helper()
	g, err := New(l)
	if err != nil {
		if os.Getenv("TRACR_REQUIRE_CGROUP") != "" {
			t.Fatalf("TRACR_REQUIRE_CGROUP is set: %v", err)
		}
		t.Skip(err)
	}
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Error(err)
		}
	})
	return g
}

// busy runs the busy child for wall time, in g when g is not nil, and
// returns the CPU time it used.
func busy(t *testing.T, g *Group, wall time.Duration) time.Duration {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+wall.String())
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if g != nil {
		if err := g.Add(cmd.Process.Pid); err != nil {
			cmd.Process.Kill()
			t.Fatal(err)
		}
	}
	in.Write([]byte("go\n"))
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestKernelLimit runs a busy process in a real group and beside it
// without one: the kernel holds the limited one to its share (an upper
// bound the scheduler guarantees, whatever the machine's load), and the
// group's counters show it was throttled.
func TestKernelLimit(t *testing.T) {
	l := Limit{Cores: 0.1}
	g := newGroup(t, l)
	const wall = 600 * time.Millisecond
	limited := busy(t, g, wall)
	free := busy(t, nil, wall)
	share := limited.Seconds() / wall.Seconds()
	t.Logf("CPU time in %v: %v limited to %s (%.3f cores), %v unlimited", wall, limited, l, share, free)
	// One period's quota of slack: the child may run a little before it
	// is moved in, and the first period is partial.
	if max := l.Cores*1.3 + l.Quota().Seconds()/wall.Seconds(); share > max {
		t.Errorf("limited process used %.3f cores, more than the limit allows (%.3f)", share, max)
	}
	if free < 2*limited {
		t.Errorf("unlimited %v is not well above limited %v: the limit is not what slowed it", free, limited)
	}
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Throttled == 0 || st.Time <= 0 {
		t.Errorf("throttling %+v: the kernel never held the group back", st)
	}
}

// TestEnterRelease moves this process in and out, and a group holding a
// process is not silently removed.
func TestEnterRelease(t *testing.T) {
	g := newGroup(t, Limit{Cores: 1})
	if err := g.Enter(); err != nil {
		t.Fatal(err)
	}
	procs, err := os.ReadFile(filepath.Join(g.Dir(), "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains("\n"+string(procs), "\n"+strconv.Itoa(os.Getpid())+"\n") {
		t.Errorf("cgroup.procs %q lacks this process", procs)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(g.Dir()); !os.IsNotExist(err) {
		t.Errorf("group %s still there after Close: %v", g.Dir(), err)
	}
}

// TestNoCgroup: a parent that is no cgroup gives one error with the fix.
func TestNoCgroup(t *testing.T) {
	t.Setenv(EnvParent, t.TempDir())
	_, err := New(Limit{Cores: 0.5})
	if err == nil {
		t.Fatal("a plain folder was taken as a cgroup")
	}
	for _, want := range []string{EnvParent, "run as root", "chown"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// envWork makes the test binary run a fixed amount of work, N rounds,
// once per line read on stdin, printing each round's wall and CPU time.
const envWork = "TRACR_CPULIMIT_TEST_WORK"

func work(rounds string) {
	n, err := strconv.Atoi(rounds)
	if err != nil {
		os.Exit(2)
	}
	in := bufio.NewScanner(os.Stdin)
	x := 1.0
	for in.Scan() {
		start, cpu := time.Now(), ProcessCPU()
		for i := 0; i < n; i++ {
			x = math.Sqrt(x + float64(i&1023))
		}
		fmt.Println(time.Since(start).Nanoseconds(), (ProcessCPU() - cpu).Nanoseconds())
	}
	if x < 0 {
		os.Exit(3)
	}
	os.Exit(0)
}

// BenchmarkPeriod measures why the period is short: a fixed compute of
// about 20 ms at full speed, run 20 times in a group limited to 0.1 cores,
// once with tracr's period and once with the kernel's default 100 ms. It
// reports the median wall time and the p10-p90 spread of each: the long
// period makes the same work take anything from its quota's share to a
// whole period more, depending on where in the period it starts.
//
//	go test -run '^$' -bench Period ./cpulimit/
func BenchmarkPeriod(b *testing.B) {
	g, err := New(Limit{Cores: 0.1})
	if err != nil {
		b.Skip(err)
	}
	defer g.Close()
	// Calibrate about 20 ms of work here, unlimited.
	rounds := 1 << 20
	for {
		start := time.Now()
		x := 1.0
		for i := 0; i < rounds; i++ {
			x = math.Sqrt(x + float64(i&1023))
		}
		if time.Since(start) > 20*time.Millisecond || x < 0 {
			break
		}
		rounds *= 2
	}
	for i := 0; i < b.N; i++ {
		for _, p := range []time.Duration{g.Limit().Period(), 100 * time.Millisecond} {
			quota := time.Duration(0.1 * float64(p))
			if err := writeFile(filepath.Join(g.Dir(), "cpu.cfs_quota_us"), "-1"); err != nil {
				b.Fatal(err)
			}
			if err := writeFile(filepath.Join(g.Dir(), "cpu.cfs_period_us"), strconv.FormatInt(p.Microseconds(), 10)); err != nil {
				b.Fatal(err)
			}
			if err := writeFile(filepath.Join(g.Dir(), "cpu.cfs_quota_us"), strconv.FormatInt(quota.Microseconds(), 10)); err != nil {
				b.Fatal(err)
			}
			ds := periodRounds(b, g, rounds, 20)
			name := fmt.Sprintf("%dms", p.Milliseconds())
			b.ReportMetric(float64(ds[len(ds)/2].Milliseconds()), "median-ms-"+name)
			b.ReportMetric(float64((ds[len(ds)*9/10] - ds[len(ds)/10]).Milliseconds()), "spread-ms-"+name)
		}
	}
}

// periodRounds runs the work child in g, n rounds with a random idle gap
// between them, and returns the sorted wall times.
func periodRounds(b testing.TB, g *Group, rounds, n int) []time.Duration {
	ds, _ := periodRoundsCPU(b, g, rounds, n)
	return ds
}

// periodRoundsCPU is periodRounds, with the sorted CPU times of the rounds.
func periodRoundsCPU(b testing.TB, g *Group, rounds, n int) (wall, cpu []time.Duration) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envWork+"="+strconv.Itoa(rounds))
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()
	defer in.Close()
	if err := g.Add(cmd.Process.Pid); err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for i := 0; i < n; i++ {
		time.Sleep(time.Duration(i*37%50) * time.Millisecond) // land at varied phases
		in.Write([]byte("go\n"))
		if !sc.Scan() {
			b.Fatal("work child stopped")
		}
		w, c, _ := strings.Cut(sc.Text(), " ")
		ns, _ := strconv.ParseInt(w, 10, 64)
		wall = append(wall, time.Duration(ns))
		ns, _ = strconv.ParseInt(c, 10, 64)
		cpu = append(cpu, time.Duration(ns))
	}
	slices.Sort(wall)
	slices.Sort(cpu)
	return wall, cpu
}

// BenchmarkSteady measures what Steady is for: work of a fixed size
// (0.5, 2, 5 and 20 ms at full speed) run after idle gaps in a group
// limited to 0.1 cores, without and with Steady. It reports the median
// and p10-p90 of wall time over the work's CPU time at the limit's share
// (CPU time / 0.1): a board of that speed gives 1.
//
//	go test -run '^$' -bench Steady -benchtime 1x ./cpulimit/
func BenchmarkSteady(b *testing.B) {
	l := Limit{Cores: 0.1}
	for i := 0; i < b.N; i++ {
		for _, us := range []int{500, 2000, 5000, 20000} {
			rounds, _ := calibrate(time.Duration(us) * time.Microsecond)
			for _, steady := range []bool{false, true} {
				g, err := New(l)
				if err != nil {
					b.Skip(err)
				}
				if steady {
					t0 := time.Now()
					if err := g.Steady(); err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(time.Since(t0).Seconds(), fmt.Sprintf("steady-s-%.1fms", float64(us)/1000))
					b.ReportMetric(g.Effective(), fmt.Sprintf("effective-cores-%.1fms", float64(us)/1000))
				}
				wall, cpu := periodRoundsCPU(b, g, rounds, 30)
				g.Close()
				at := time.Duration(float64(cpu[len(cpu)/2]) / l.Cores)
				name := fmt.Sprintf("%.1fms-steady=%v", float64(us)/1000, steady)
				b.ReportMetric(wall[len(wall)/2].Seconds()/at.Seconds(), "median-x-"+name)
				b.ReportMetric(wall[len(wall)/10].Seconds()/at.Seconds(), "p10-x-"+name)
				b.ReportMetric(wall[len(wall)*9/10].Seconds()/at.Seconds(), "p90-x-"+name)
			}
		}
	}
}

// calibrate finds the rounds of work's loop that take about d here at
// full speed, and their measured median time.
func calibrate(d time.Duration) (int, time.Duration) {
	run := func(n int) time.Duration {
		start := time.Now()
		x := 1.0
		for i := 0; i < n; i++ {
			x = math.Sqrt(x + float64(i&1023))
		}
		if x < 0 {
			return 0
		}
		return time.Since(start)
	}
	n := 1 << 14
	for run(n) < d {
		n *= 2
	}
	n = int(float64(n) * d.Seconds() / run(n).Seconds())
	var ts []time.Duration
	for range 9 {
		ts = append(ts, run(n))
	}
	slices.Sort(ts)
	return n, ts[4]
}

// TestSteady: with Steady, the group's processes run on a CPU of their
// own beside a real-time stall process outside the group, and work of
// half a quota after an idle gap takes its share's time, as on a slow
// board, instead of running at full speed on the quota the kernel banked
// while it waited (which it always does without Steady, measured by
// BenchmarkSteady). Close stops the stall process and gives this process
// its CPUs back.
func TestSteady(t *testing.T) {
	var before unix.CPUSet
	if err := unix.SchedGetaffinity(0, &before); err != nil {
		t.Fatal(err)
	}
	// Sized before Steady: its stall process takes most of a CPU this
	// test may run on.
	rounds, _ := calibrate(4 * time.Millisecond)
	l := Limit{Cores: 0.1}
	g := newGroup(t, l)
	if err := g.Steady(); err != nil {
		t.Fatal(err)
	}
	if len(g.CPUs()) != 1 || len(g.stalls) != 1 {
		t.Fatalf("CPUs %v and stall processes %v for %s, want one each", g.CPUs(), g.stalls, l)
	}
	stall := g.stalls[0].Process.Pid
	// Calibrated: the group runs work at about its limit, and the kernel
	// counts it at least that much CPU time per second.
	if e := g.Effective(); e < 0.5*l.Cores || e > 1.5*l.Cores {
		t.Errorf("calibrated speed %.3f cores, want about %g", e, l.Cores)
	}
	if r := g.Rate(); r < 0.5*g.Effective() {
		t.Errorf("CPU rate %.3f, want about the speed %.3f or more", r, g.Effective())
	}
	attr, err := unix.SchedGetAttr(stall, 0)
	if err != nil || attr.Policy != unix.SCHED_FIFO {
		t.Errorf("stall process %d: %+v, %v; want SCHED_FIFO", stall, attr, err)
	}
	procs, err := os.ReadFile(filepath.Join(g.Dir(), "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	if len(strings.TrimSpace(string(procs))) > 0 {
		t.Errorf("group holds %q, want nothing: the stall process stays outside", procs)
	}

	// Work of a few milliseconds after an idle gap: without Steady the
	// banked quota and the tick's overrun (4 ms at 250 Hz) can run it at
	// full speed; with it, it takes about its CPU time at the measured
	// rate, within a window. A loaded machine only makes it slower.
	wall, cpu := periodRoundsCPU(t, g, rounds, 6)
	share := time.Duration(float64(cpu[0]) / g.Rate())
	t.Logf("work of %v CPU (least) took %v; at the rate %.3f it takes %v", cpu[0], wall, g.Rate(), share)
	if cpu[0] < Window/2 {
		t.Logf("work of %v CPU is under half a window: a share's slot could hold it; not checked", cpu[0])
	} else if wall[0] < share/2 {
		t.Errorf("work of %v CPU ran in %v after an idle gap, under half its time %v at the group's rate: it ran at full speed", cpu[0], wall[0], share)
	}

	// This process, entering, is pinned to the group's CPU.
	if err := g.Enter(); err != nil {
		t.Fatal(err)
	}
	var in unix.CPUSet
	if err := unix.SchedGetaffinity(0, &in); err != nil {
		t.Fatal(err)
	}
	if in.Count() != 1 || !in.IsSet(g.CPUs()[0]) {
		t.Errorf("entered, this thread runs on %d CPUs, want CPU %d alone", in.Count(), g.CPUs()[0])
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(stall, 0); err == nil {
		t.Errorf("stall process %d still runs after Close", stall)
	}
	var after unix.CPUSet
	if err := unix.SchedGetaffinity(0, &after); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("after Close this process runs on %d CPUs, before on %d", after.Count(), before.Count())
	}
}
