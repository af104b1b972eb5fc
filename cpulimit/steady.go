package cpulimit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Window is the grain at which Steady holds the group to its share: in
// every window the group's processes may run for cores/CPUs of it. Two
// milliseconds: each window costs two switches between the stall process
// and the group (tens of microseconds in a virtual machine, which
// calibration makes up for), and work a window long or longer is what a
// request's head, codec and send are.
const Window = 2 * time.Millisecond

// Steady makes the group a slower CPU at every moment, not only on
// average over the kernel's period. From now on the group's processes run
// on ceil(cores) CPUs of their own, and on each of those CPUs a stall
// process outside the group, at real-time priority, holds the CPU for the
// rest of every Window: at 0.1 cores, 1.8 ms of every 2 ms.
//
// The kernel's bandwidth control alone is coarse where the share is
// small. Its quota cannot be under 1 ms, so at 0.1 cores the period is
// 10 ms; it banks the quota while the limited process waits (on the link,
// on the server), so the first millisecond of the next request runs at
// full speed; and it charges a computing process only at the timer tick
// (4 ms at the common 250 Hz), so a process overruns its quota by up to a
// tick and then stalls for several periods. Work of a few milliseconds
// then measures anywhere from its full-speed time to several times its
// share (BenchmarkSteady), where a board of that speed takes its share,
// always. The stall process leaves the group its share of every window,
// whether the group used the last one or not.
//
// Switching to and from the stall process costs CPU time the group does
// not get, so Steady calibrates: it times a spinning child in the group,
// and widens the stall's free slot until the group runs at its limit to
// within calibTolerance (Effective reports what it measured). The
// kernel's quota stays, at capSlack times the limit, as the cap should a
// stall process stop.
//
// It needs the right to real-time scheduling (root, or CAP_SYS_NICE); the
// error says so. Processes added later (Add, Enter) are pinned too; Avoid
// keeps another process off those CPUs. Close stops it.
func (g *Group) Steady() error {
	if g.cpus != nil {
		return nil
	}
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		return fmt.Errorf("CPU limit: read this process's CPUs: %w", err)
	}
	var cpus []int
	for c := 0; c < len(all)*64; c++ {
		if all.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	n := min(int(math.Ceil(g.limit.Cores)), len(cpus))
	share := g.limit.Cores / float64(n)
	g.all, g.cpus = all, cpus[len(cpus)-n:]
	g.effective = g.limit.Cores
	fail := func(err error) error {
		g.stopStalls()
		g.cpus = nil
		return err
	}
	procs, err := os.ReadFile(filepath.Join(g.dir, "cgroup.procs"))
	if err != nil {
		return fail(fmt.Errorf("CPU limit: %w", err))
	}
	for _, f := range strings.Fields(string(procs)) {
		if pid, err := strconv.Atoi(f); err == nil {
			if err := pin(pid, setOf(g.cpus)); err != nil {
				return fail(err)
			}
		}
	}
	if share >= 1 {
		return nil // whole CPUs: nothing to hold back
	}
	g.slack = capSlack
	if err := g.set(); err != nil {
		return fail(err)
	}
	// The calibration child times its work at full speed first, before
	// any stall process takes a CPU it might run on.
	c, err := g.startCalib()
	if err != nil {
		return fail(err)
	}
	defer c.close()
	free := share
	for try := 0; ; try++ {
		if err := g.startStalls(free); err != nil {
			return fail(err)
		}
		got, rate, err := c.measure()
		if err != nil {
			return fail(err)
		}
		g.effective, g.rate = got*float64(n), rate*float64(n)
		if math.Abs(got/share-1) <= calibTolerance || try == calibTries-1 {
			return nil
		}
		g.stopStalls()
		free = min(max(free+share-got, share/2), 2*share, 0.9)
	}
}

const (
	// capSlack is the kernel quota under Steady, in times the limit: a
	// cap above the share the stall processes leave.
	capSlack = 1.5
	// calibTolerance is how near its limit Steady's calibration brings
	// the group's measured speed; calibTries bounds its tries.
	calibTolerance = 0.03
	calibTries     = 5
	// calibWork is the full-speed time of one calibration round,
	// calibRounds how many are timed per try.
	calibWork   = 5 * time.Millisecond
	calibRounds = 4
)

// Effective is the group's speed in cores as Steady measured it: work's
// full-speed time over its time in the group. It is the limit before
// Steady.
func (g *Group) Effective() float64 {
	if g.effective == 0 {
		return g.limit.Cores
	}
	return g.effective
}

// Rate is the CPU time the kernel counts a busy process in the group per
// second of wall time, as Steady measured it; 0 before Steady. It is above
// Effective by the CPU time that switching costs the group.
func (g *Group) Rate() float64 { return g.rate }

// startStalls starts a stall process leaving free of every window on
// each of the group's CPUs.
func (g *Group) startStalls(free float64) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("CPU limit: find this program to start the stall process: %w", err)
	}
	for _, c := range g.cpus {
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%g/%s", envStall, free, Window), "GODEBUG=asyncpreemptoff=1")
		out, err := cmd.StdoutPipe()
		if err != nil {
			return fmt.Errorf("CPU limit: start the stall process: %w", err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("CPU limit: start the stall process: %w", err)
		}
		g.stalls = append(g.stalls, cmd)
		if err := pin(cmd.Process.Pid, setOf([]int{c})); err != nil {
			return err
		}
		// Outside the group, wherever this process is now.
		if err := writeFile(filepath.Join(g.home, "cgroup.procs"), strconv.Itoa(cmd.Process.Pid)); err != nil {
			return fmt.Errorf("CPU limit: keep the stall process out of the group: %w", err)
		}
		// It says "ready" once it runs at real-time priority.
		if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
			cmd.Wait()
			return fmt.Errorf("CPU limit: the stall process did not start: %s (it needs real-time scheduling: run as root, or grant CAP_SYS_NICE)", strings.TrimSpace(stderr.String()))
		}
	}
	return nil
}

// calib is Steady's calibration child: it did its work at full speed
// once started, and then works in the group on request.
type calib struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	full time.Duration // the work's full-speed time
}

// startCalib starts the calibration child, reads its full-speed time,
// and adds it to the group.
func (g *Group) startCalib() (*calib, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("CPU limit: find this program to calibrate: %w", err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), envCalib+"="+calibWork.String())
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("CPU limit: calibrate: %w", err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("CPU limit: calibrate: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("CPU limit: calibrate: %w", err)
	}
	c := &calib{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	if c.full, _, err = c.read(); err != nil {
		c.close()
		return nil, err
	}
	if err := g.Add(cmd.Process.Pid); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// read reads one line of the child's: wall and CPU time.
func (c *calib) read() (wall, cpu time.Duration, err error) {
	if !c.out.Scan() {
		return 0, 0, errors.New("CPU limit: calibrate: the working child stopped")
	}
	var w, u int64
	if _, err := fmt.Sscan(c.out.Text(), &w, &u); err != nil {
		return 0, 0, fmt.Errorf("CPU limit: calibrate: read %q: %w", c.out.Text(), err)
	}
	return time.Duration(w), time.Duration(u), nil
}

// measure has the child work calibRounds times in the group, after one
// round to warm up. It returns the group's speed per CPU (the full-speed
// time over the time in the group) and the CPU time the kernel counts the
// child per wall second in the group, which is more than its speed:
// switching to and from the stall process costs the group CPU time that
// does no work.
func (c *calib) measure() (speed, rate float64, err error) {
	var wall, cpu time.Duration
	for i := range calibRounds + 1 {
		fmt.Fprintln(c.in, "go")
		w, u, err := c.read()
		if err != nil {
			return 0, 0, err
		}
		if i > 0 {
			wall, cpu = wall+w, cpu+u
		}
	}
	return calibRounds * c.full.Seconds() / wall.Seconds(), cpu.Seconds() / wall.Seconds(), nil
}

// close stops the child.
func (c *calib) close() {
	c.in.Close()
	c.cmd.Process.Kill()
	c.cmd.Wait()
}

// envCalib makes a program that links this package Steady's calibration
// child (Steady starts this program itself with it set to a duration):
// it finds an amount of work that takes about that long, prints its
// full-speed time (the least of several runs), and then for each line
// read does the work once and prints the wall and CPU nanoseconds taken;
// init never returns.
const envCalib = "TRACR_CPULIMIT_CALIBRATE"

// calibChild is the calibration child.
func calibChild(v string) {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		fmt.Fprintf(os.Stderr, "bad %s=%q\n", envCalib, v)
		os.Exit(2)
	}
	x := 1.0
	work := func(n int) time.Duration {
		start := time.Now()
		for i := range n {
			x = math.Sqrt(x + float64(i&1023))
		}
		return time.Since(start)
	}
	n := 1 << 12
	for work(n) < d/4 {
		n *= 2
	}
	n = int(float64(n) * d.Seconds() / work(n).Seconds())
	full := time.Duration(math.MaxInt64)
	for range 7 {
		full = min(full, work(n))
	}
	fmt.Println(full.Nanoseconds(), 0)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cpu := ProcessCPU()
		wall := work(n)
		fmt.Println(wall.Nanoseconds(), (ProcessCPU() - cpu).Nanoseconds())
	}
	if x < 0 {
		os.Exit(3)
	}
	os.Exit(0)
}

// envStall makes a program that links this package a stall process
// (Steady starts this program itself with it set to "share/window"): init
// never returns.
const envStall = "TRACR_CPULIMIT_STALL"

func init() {
	if v := os.Getenv(envStall); v != "" {
		stall(v)
	}
	if v := os.Getenv(envCalib); v != "" {
		calibChild(v)
	}
}

// stall is the stall process: at real-time priority it spins for
// 1 - share of every window and sleeps to the next window's start, so
// that whatever else runs on its CPU gets share of every window, and no
// more. It exits when its parent is gone.
func stall(v string) {
	s, w, _ := strings.Cut(v, "/")
	share, err1 := strconv.ParseFloat(s, 64)
	window, err2 := time.ParseDuration(w)
	if err := errors.Join(err1, err2); err != nil || !(share > 0 && share < 1) || window <= 0 {
		fmt.Fprintf(os.Stderr, "bad %s=%q\n", envStall, v)
		os.Exit(2)
	}
	goruntime.LockOSThread() // from init: the main goroutine stays on the main thread
	if err := unix.SchedSetAttr(0, &unix.SchedAttr{Policy: unix.SCHED_FIFO, Priority: 1}, 0); err != nil {
		fmt.Fprintf(os.Stderr, "real-time priority refused: %v", err)
		os.Exit(1)
	}
	unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	fmt.Println("ready")
	parent := os.Getppid()
	busy := time.Duration(float64(window) * (1 - share))
	free := time.Duration(float64(window) * share)
	now := func() time.Duration {
		var ts unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		return time.Duration(ts.Nano())
	}
	// The CPU is the others' from the end of each spin until this process
	// is running again, which is later than the deadline it slept to by
	// the wake-up latency; late is that latency's running average, and
	// the deadline is set that much early.
	var late time.Duration
	for i := 0; ; i++ {
		start := now()
		for now() < start+busy {
		}
		end := now()
		deadline := end + free - late
		ts := unix.NsecToTimespec(int64(deadline))
		unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil)
		woke := now()
		// Lateness past the deadline, bounded so that one long wait (the
		// CPU taken by something more urgent) does not skew it.
		l := min(max(woke-deadline, 0), free/2)
		late += (l - late) / 16
		if i%1000 == 0 && os.Getppid() != parent {
			os.Exit(0)
		}
	}
}

// CPUs is the CPUs the group's processes are pinned to by Steady; nil
// before it.
func (g *Group) CPUs() []int { return g.cpus }

// Avoid keeps the process pid (every thread) off the CPUs Steady gave
// the group, so that a process outside the limit (the server) does not
// take the limited one's CPU time. It does nothing before Steady or where
// those CPUs are all there are.
func (g *Group) Avoid(pid int) error {
	if g.cpus == nil {
		return nil
	}
	rest := g.all
	for _, c := range g.cpus {
		rest.Clear(c)
	}
	if rest.Count() == 0 {
		return nil
	}
	return pin(pid, rest)
}

// stopStalls stops the stall processes.
func (g *Group) stopStalls() {
	for _, cmd := range g.stalls {
		cmd.Process.Kill()
		cmd.Wait()
	}
	g.stalls = nil
}

// setOf is the CPU set of cpus.
func setOf(cpus []int) unix.CPUSet {
	var s unix.CPUSet
	for _, c := range cpus {
		s.Set(c)
	}
	return s
}

// pin sets the CPUs of every thread of process pid. Threads a pinned
// thread starts inherit its CPUs; one started while the threads are
// listed may be missed, so they are listed twice.
func pin(pid int, set unix.CPUSet) error {
	for range 2 {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return fmt.Errorf("CPU limit: list the threads of process %d: %w", pid, err)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("CPU limit: set the CPUs of process %d: %w", pid, err)
			}
		}
	}
	return nil
}
