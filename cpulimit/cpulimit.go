// Package cpulimit makes a slower CPU out of this one with the kernel's
// CPU-bandwidth control: a cgroup whose processes together get at most a
// given number of cores' worth of CPU time per scheduling period. tracr
// uses it to emulate a slow edge device (a board with a fraction of a
// desktop core) for real: everything the edge process does, pre-processing,
// ONNX Runtime, codecs and SSH included, runs under the limit, while the
// server runs as its own process outside it.
//
// Both cgroup interfaces are supported: cgroup v2 (cpu.max) and cgroup v1's
// cpu controller (cpu.cfs_period_us, cpu.cfs_quota_us). Groups are created
// under the cgroup the process is in, or under the folder $TRACR_CGROUP
// names (a group delegated to an unprivileged user).
package cpulimit

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// EnvParent names the environment variable that gives the cgroup folder
// under which limited groups are created, instead of the process's own.
const EnvParent = "TRACR_CGROUP"

// minQuota is the smallest quota the kernel accepts (1 ms, both versions).
const minQuota = time.Millisecond

// shortPeriod is the period used when the quota it gives is at least
// minQuota. A short period spreads the allowed time evenly: with the
// kernel's default of 100 ms, a limit of 0.1 cores lets a request run 10 ms
// and then stalls it for 90 ms, so a 15 ms compute would take 10 ms or
// 100+ ms depending on where in the period it started.
const shortPeriod = 10 * time.Millisecond

// maxPeriod is the longest period the kernel accepts (1 s).
const maxPeriod = time.Second

// Limit is a CPU-bandwidth limit: at most Cores cores' worth of CPU time
// (e.g. 0.1) for all the processes of a group together.
type Limit struct {
	// Cores is the CPU share, above 0 and at most the machine's cores.
	Cores float64
}

// Validate checks that the limit is above 0 and at most the machine's
// cores.
func (l Limit) Validate() error {
	n := goruntime.NumCPU()
	if !(l.Cores > 0) || l.Cores > float64(n) {
		return fmt.Errorf("CPU limit %g: must be above 0 and at most this machine's %d cores", l.Cores, n)
	}
	return nil
}

// Period is the scheduling period the limit is enforced over: 10 ms, or
// longer where 10 ms would give a quota under the kernel's 1 ms minimum
// (limits under 0.1 cores).
func (l Limit) Period() time.Duration {
	p := shortPeriod
	if q := time.Duration(l.Cores * float64(p)); q < minQuota {
		p = time.Duration(float64(minQuota) / l.Cores)
	}
	return min(p, maxPeriod)
}

// Quota is the CPU time the group may use in each Period.
func (l Limit) Quota() time.Duration {
	return max(time.Duration(l.Cores*float64(l.Period())), minQuota)
}

// String gives the limit as "0.1 cores (1ms per 10ms)".
func (l Limit) String() string {
	return fmt.Sprintf("%g cores (%v per %v)", l.Cores, l.Quota(), l.Period())
}

// Group is a cgroup holding a CPU limit. Processes added to it share the
// limit; Close moves them back and removes the group.
type Group struct {
	limit     Limit
	version   int    // 1 or 2
	dir       string // the group's folder
	home      string // the folder the process was in, to move back to
	entered   bool
	stalls    []*exec.Cmd // Steady's stall processes
	slack     float64     // the quota written is the limit's times this
	cpus      []int       // the CPUs Steady pinned the group to
	all       unix.CPUSet // this process's CPUs before Steady
	effective float64     // the speed Steady measured, in cores
	rate      float64     // the CPU time per wall second Steady measured
}

// Dir is the group's folder in the cgroup file system.
func (g *Group) Dir() string { return g.dir }

// Limit is the limit the group enforces.
func (g *Group) Limit() Limit { return g.limit }

// Version is the cgroup interface in use: 1 or 2.
func (g *Group) Version() int { return g.version }

// New creates a cgroup limited to l, empty. It fails with one error that
// says what is missing and how to grant it where no cgroup with the cpu
// controller can be made (not root, no controller, a read-only cgroup
// file system).
func New(l Limit) (*Group, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	parent, version, home, err := locate()
	if err != nil {
		return nil, fmt.Errorf("CPU limit %g: %w; %s", l.Cores, err, grantHint())
	}
	removeStale(parent)
	dir := filepath.Join(parent, fmt.Sprintf("tracr-%d-%d", os.Getpid(), time.Now().UnixNano()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("CPU limit %g: cannot create a cgroup: %w; %s", l.Cores, err, grantHint())
	}
	g := &Group{limit: l, version: version, dir: dir, home: home, slack: 1}
	if err := g.set(); err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("CPU limit %g: %w; %s", l.Cores, err, grantHint())
	}
	return g, nil
}

// set writes the period and quota into the group.
func (g *Group) set() error {
	period := g.limit.Period().Microseconds()
	quota := int64(float64(g.limit.Quota().Microseconds()) * g.slack)
	if g.version == 2 {
		return writeFile(filepath.Join(g.dir, "cpu.max"), fmt.Sprintf("%d %d", quota, period))
	}
	if err := writeFile(filepath.Join(g.dir, "cpu.cfs_period_us"), strconv.FormatInt(period, 10)); err != nil {
		return err
	}
	return writeFile(filepath.Join(g.dir, "cpu.cfs_quota_us"), strconv.FormatInt(quota, 10))
}

// Add moves the process pid (all its threads) into the group, on the
// group's CPUs once Steady has given it some.
func (g *Group) Add(pid int) error {
	if g.cpus != nil {
		if err := pin(pid, setOf(g.cpus)); err != nil {
			return err
		}
	}
	if err := writeFile(filepath.Join(g.dir, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
		return fmt.Errorf("CPU limit: move process %d into %s: %w", pid, g.dir, err)
	}
	return nil
}

// Enter moves this process, every thread of it, into the group. Threads
// and child processes it starts afterwards are limited too.
func (g *Group) Enter() error {
	if err := g.Add(os.Getpid()); err != nil {
		return err
	}
	g.entered = true
	if g.rate > 0 {
		own.Lock()
		own.g = g
		own.Unlock()
	}
	return nil
}

// Release moves the process pid out of the group, back to the cgroup this
// process was in before: a child that must not be limited (the server)
// started after Enter. It runs on all the CPUs again.
func (g *Group) Release(pid int) error {
	if g.cpus != nil {
		if err := pin(pid, g.all); err != nil {
			return err
		}
	}
	if err := writeFile(filepath.Join(g.home, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
		return fmt.Errorf("CPU limit: move process %d back to %s: %w", pid, g.home, err)
	}
	return nil
}

// Throttling is what the kernel reports of a group's enforcement.
type Throttling struct {
	// Periods is the number of periods in which the group ran.
	Periods int64
	// Throttled is the number of those periods in which it hit the quota.
	Throttled int64
	// Time is the total time its threads were held back.
	Time time.Duration
}

// Stats reads the group's throttling counters (cpu.stat).
func (g *Group) Stats() (Throttling, error) {
	f, err := os.Open(filepath.Join(g.dir, "cpu.stat"))
	if err != nil {
		return Throttling{}, fmt.Errorf("CPU limit: %w", err)
	}
	defer f.Close()
	var t Throttling
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "nr_periods":
			t.Periods = n
		case "nr_throttled":
			t.Throttled = n
		case "throttled_time": // v1, nanoseconds
			t.Time = time.Duration(n)
		case "throttled_usec": // v2
			t.Time = time.Duration(n) * time.Microsecond
		}
	}
	return t, sc.Err()
}

// Close moves this process back where it was (if it entered) and removes
// the group. A group that still holds other processes cannot be removed:
// the error says so.
func (g *Group) Close() error {
	var errs []error
	g.stopStalls()
	own.Lock()
	if own.g == g {
		own.g = nil
	}
	own.Unlock()
	if g.entered {
		if err := g.Release(os.Getpid()); err != nil {
			errs = append(errs, err)
		}
		g.entered = false
	}
	if err := os.Remove(g.dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("CPU limit: remove %s: %w", g.dir, err))
	}
	return errors.Join(errs...)
}

// locate finds the folder to create groups in, the cgroup version, and the
// folder this process is in now.
func locate() (parent string, version int, home string, err error) {
	mounts, err := readMounts("/proc/self/mountinfo")
	if err != nil {
		return "", 0, "", err
	}
	own, err := readOwn("/proc/self/cgroup")
	if err != nil {
		return "", 0, "", err
	}
	return choose(mounts, own, os.Getenv(EnvParent))
}

// mount is one cgroup file system mount.
type mount struct {
	dir     string
	version int
	cpu     bool // a v1 mount carrying the cpu controller
}

// readMounts lists the cgroup mounts of a mountinfo file.
func readMounts(path string) ([]mount, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return parseMounts(string(data)), nil
}

// parseMounts reads mountinfo lines: "ID PARENT MAJ:MIN ROOT POINT OPTS
// [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS".
func parseMounts(text string) []mount {
	var out []mount
	for _, line := range strings.Split(text, "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		switch g[0] {
		case "cgroup2":
			out = append(out, mount{dir: unescape(f[4]), version: 2})
		case "cgroup":
			cpu := false
			for _, o := range strings.Split(g[2], ",") {
				cpu = cpu || o == "cpu"
			}
			out = append(out, mount{dir: unescape(f[4]), version: 1, cpu: cpu})
		}
	}
	return out
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ownGroups is the process's cgroup paths: v1 by controller, v2 unified.
type ownGroups struct {
	v1   map[string]string
	v2   string
	has2 bool
}

// readOwn reads /proc/self/cgroup.
func readOwn(path string) (ownGroups, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return ownGroups{}, fmt.Errorf("read %s: %w", path, err)
	}
	return parseOwn(string(data)), nil
}

// parseOwn reads "ID:CONTROLLERS:PATH" lines; ID 0 with no controllers is
// the v2 hierarchy.
func parseOwn(text string) ownGroups {
	g := ownGroups{v1: map[string]string{}}
	for _, line := range strings.Split(text, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			g.v2, g.has2 = parts[2], true
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			g.v1[c] = parts[2]
		}
	}
	return g
}

// choose picks where to create groups: $TRACR_CGROUP when set, else the
// process's own group under the v2 hierarchy when it offers the cpu
// controller, else under the v1 cpu controller.
func choose(mounts []mount, own ownGroups, override string) (parent string, version int, home string, err error) {
	for _, m := range mounts {
		switch {
		case m.version == 2 && own.has2:
			dir := filepath.Join(m.dir, own.v2)
			if override != "" && !within(override, m.dir) {
				continue
			}
			if override != "" {
				dir = override
			}
			if !hasWord(filepath.Join(dir, "cgroup.controllers"), "cpu") {
				continue
			}
			// v2 keeps processes in leaves: a group with processes cannot
			// hand controllers to children, so the limited group is made
			// beside this process's group, under its parent, unless the
			// parent given is a group of its own.
			if override == "" {
				dir = filepath.Dir(dir)
			}
			if err := enableCPU(dir); err != nil {
				continue
			}
			return dir, 2, filepath.Join(m.dir, own.v2), nil
		case m.version == 1 && m.cpu:
			p, ok := own.v1["cpu"]
			if !ok {
				continue
			}
			home := filepath.Join(m.dir, p)
			dir := home
			if override != "" {
				if !within(override, m.dir) {
					continue
				}
				dir = override
			}
			if _, err := os.Stat(filepath.Join(dir, "cpu.cfs_quota_us")); err != nil {
				continue
			}
			return dir, 1, home, nil
		}
	}
	if override != "" {
		return "", 0, "", fmt.Errorf("$%s=%s is no cgroup folder with the cpu controller", EnvParent, override)
	}
	return "", 0, "", errors.New("this machine has no cgroup with the cpu controller (looked for cgroup2 with cpu in cgroup.controllers, and a cgroup v1 mount with the cpu option, in /proc/self/mountinfo)")
}

// within reports whether dir lies under root.
func within(dir, root string) bool {
	rel, err := filepath.Rel(root, dir)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// hasWord reports whether the space-separated file lists w.
func hasWord(path, w string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for _, f := range strings.Fields(string(data)) {
		if f == w {
			return true
		}
	}
	return false
}

// enableCPU hands the cpu controller to dir's children (v2).
func enableCPU(dir string) error {
	if hasWord(filepath.Join(dir, "cgroup.subtree_control"), "cpu") {
		return nil
	}
	return writeFile(filepath.Join(dir, "cgroup.subtree_control"), "+cpu")
}

// removeStale removes empty groups left by tracr processes that died
// without closing them. Groups still holding processes stay (rmdir
// refuses them).
func removeStale(parent string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !strings.HasPrefix(name, "tracr-") {
			continue
		}
		pidText, _, _ := strings.Cut(strings.TrimPrefix(name, "tracr-"), "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
			continue // its owner still runs
		}
		os.Remove(filepath.Join(parent, name))
	}
}

// writeFile writes one value into a cgroup file (no create, no truncate
// semantics beyond what the kernel file offers).
func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(value); err != nil {
		f.Close()
		return fmt.Errorf("write %q to %s: %w", value, path, err)
	}
	return f.Close()
}

// grantHint says how to make cgroups available.
func grantHint() string {
	return "run as root, or create a cgroup you own with the cpu controller and name it in $" + EnvParent +
		" (cgroup v1: sudo mkdir /sys/fs/cgroup/cpu/tracr && sudo chown -R $USER /sys/fs/cgroup/cpu/tracr; " +
		"then export " + EnvParent + "=/sys/fs/cgroup/cpu/tracr)"
}
