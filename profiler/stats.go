package profiler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/shirou/gopsutil/v3/cpu"
	"github.com/shirou/gopsutil/v3/mem"
)

// Machine describes the machine a profile was measured on.
type Machine struct {
	Hostname      string  `json:"hostname"`
	OS            string  `json:"os"`
	Arch          string  `json:"arch"`
	CPUModel      string  `json:"cpu_model"`
	LogicalCores  int     `json:"logical_cores"`
	PhysicalCores int     `json:"physical_cores"`
	CPUMHz        float64 `json:"cpu_mhz"`
	MemoryBytes   int64   `json:"memory_bytes"`
	// GPUs lists the NVIDIA GPUs NVML reports; empty without NVML.
	GPUs []GPU `json:"gpus,omitempty"`
}

// GPU names one NVIDIA GPU.
type GPU struct {
	Index       int    `json:"index"`
	Name        string `json:"name"`
	MemoryBytes int64  `json:"memory_bytes"`
	Driver      string `json:"driver,omitempty"`
}

// ID identifies the machine in cache keys: a hash of the hostname, CPU
// model, core count and GPU names, the things that change what a profile
// measures.
func (m Machine) ID() string {
	h := sha256.New()
	for _, s := range []string{m.Hostname, m.CPUModel, strconv.Itoa(m.LogicalCores)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	for _, g := range m.GPUs {
		h.Write([]byte(g.Name))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// DescribeMachine reads the machine's identity: hostname, CPU (through
// gopsutil), memory, and GPUs through NVML when its library (nvmlLibrary, ""
// for libnvidia-ml.so.1 from the loader path) loads. What cannot be read is
// left empty: a machine without NVML simply has no GPUs.
func DescribeMachine(ctx context.Context, nvmlLibrary string) Machine {
	m := Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, LogicalCores: runtime.NumCPU()}
	m.Hostname, _ = os.Hostname() // empty when unknown: the ID still works
	if infos, err := cpu.InfoWithContext(ctx); err == nil && len(infos) > 0 {
		m.CPUModel = strings.TrimSpace(infos[0].ModelName)
		for _, in := range infos {
			m.CPUMHz = max(m.CPUMHz, in.Mhz)
		}
	}
	if n, err := cpu.CountsWithContext(ctx, true); err == nil && n > 0 {
		m.LogicalCores = n
	}
	if n, err := cpu.CountsWithContext(ctx, false); err == nil {
		m.PhysicalCores = n
	}
	if vm, err := mem.VirtualMemoryWithContext(ctx); err == nil {
		m.MemoryBytes = int64(vm.Total)
	}
	if g := openGPUs(nvmlLibrary); g != nil {
		m.GPUs = g.describe()
		g.close()
	}
	return m
}

// Stats summarises the system while a profile was measured. Samples are
// taken by a background goroutine, between timed runs, never during one.
type Stats struct {
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Samples int       `json:"samples"`
	// CPUPercent is whole-machine CPU utilisation per sampling interval.
	CPUPercent Summary `json:"cpu_percent"`
	// CPUMHz is the current frequency gopsutil reports, averaged over cores.
	CPUMHz        Summary `json:"cpu_mhz"`
	MemUsedBytes  Summary `json:"mem_used_bytes"`
	MemTotalBytes int64   `json:"mem_total_bytes"`
	// CPUEnergyJoules is the energy of the CPU packages from Start to End,
	// read from RAPL counters (/sys/class/powercap); nil when they are not
	// readable. It is never estimated.
	CPUEnergyJoules *float64 `json:"cpu_energy_j,omitempty"`
	// GPUs holds one entry per GPU NVML reports; empty without NVML.
	GPUs []GPUStats `json:"gpus,omitempty"`
}

// GPUStats summarises one GPU while a profile was measured. A field NVML
// does not support on the device stays zero (nil for energy).
type GPUStats struct {
	Index        int     `json:"index"`
	Name         string  `json:"name"`
	UtilPercent  Summary `json:"util_percent"`
	MemUsedBytes Summary `json:"mem_used_bytes"`
	MemTotal     int64   `json:"mem_total_bytes"`
	PowerWatts   Summary `json:"power_w"`
	SMClockMHz   Summary `json:"sm_clock_mhz"`
	MemClockMHz  Summary `json:"mem_clock_mhz"`
	// EnergyJoules is the change of NVML's total energy counter from Start
	// to End; nil when the device has no such counter.
	EnergyJoules *float64 `json:"energy_j,omitempty"`
}

// Summary is the mean and maximum of a sampled quantity; N is the number of
// samples (0: never read).
type Summary struct {
	Mean float64 `json:"mean"`
	Max  float64 `json:"max"`
	N    int     `json:"n"`
}

func (s *Summary) add(v float64) {
	s.Mean += (v - s.Mean) / float64(s.N+1)
	if s.N == 0 || v > s.Max {
		s.Max = v
	}
	s.N++
}

// Sampler samples system stats in a background goroutine. Timed code runs
// inside Quiet, which excludes sampling: a sample is never taken while a
// timed run is in progress, so the sampler neither competes with the run nor
// stretches it.
type Sampler struct {
	// gate is held by the sampler while it samples and by Quiet while a
	// timed run is in progress.
	gate  sync.Mutex
	stop  chan struct{}
	done  chan struct{}
	stats Stats

	lastCPU  cpu.TimesStat
	haveCPU  bool
	rapl     *rapl
	gpus     *gpus
	gpuStats []GPUStats
	energy0  []*uint64
}

// SamplerOptions configures a Sampler.
type SamplerOptions struct {
	// Interval between samples; 0 means 100ms.
	Interval time.Duration
	// NVMLLibrary is the NVML shared library to load; "" means
	// libnvidia-ml.so.1 from the loader path. When it does not load, the
	// stats have no GPU entries.
	NVMLLibrary string
	// PowercapDir is the powercap sysfs folder holding RAPL counters; ""
	// means /sys/class/powercap.
	PowercapDir string
}

// StartSampler takes a first sample and starts sampling every interval
// until Stop or until ctx is done.
func StartSampler(ctx context.Context, opts SamplerOptions) *Sampler {
	if opts.Interval <= 0 {
		opts.Interval = 100 * time.Millisecond
	}
	if opts.PowercapDir == "" {
		opts.PowercapDir = "/sys/class/powercap"
	}
	s := &Sampler{stop: make(chan struct{}), done: make(chan struct{})}
	s.stats.Start = time.Now().UTC() // UTC without a monotonic reading: as JSON keeps it
	s.rapl = openRAPL(opts.PowercapDir)
	if s.gpus = openGPUs(opts.NVMLLibrary); s.gpus != nil {
		for _, g := range s.gpus.describe() {
			s.gpuStats = append(s.gpuStats, GPUStats{Index: g.Index, Name: g.Name, MemTotal: g.MemoryBytes})
		}
		s.energy0 = s.gpus.energy()
	}
	s.sample(ctx)
	go s.loop(ctx, opts.Interval)
	return s
}

func (s *Sampler) loop(ctx context.Context, every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			s.gate.Lock()
			s.sample(ctx)
			s.gate.Unlock()
		}
	}
}

// Quiet runs fn with sampling held off. Timed code calls it around each
// timed run only, so samples fall between runs.
func (s *Sampler) Quiet(fn func()) {
	s.gate.Lock()
	defer s.gate.Unlock()
	fn()
}

// sample records one sample; the caller holds gate (or no goroutine runs
// yet).
func (s *Sampler) sample(ctx context.Context) {
	s.stats.Samples++
	if ts, err := cpu.TimesWithContext(ctx, false); err == nil && len(ts) == 1 {
		if s.haveCPU {
			if p, ok := busyPercent(s.lastCPU, ts[0]); ok {
				s.stats.CPUPercent.add(p)
			}
		}
		s.lastCPU, s.haveCPU = ts[0], true
	}
	if infos, err := cpu.InfoWithContext(ctx); err == nil && len(infos) > 0 {
		var sum float64
		for _, in := range infos {
			sum += in.Mhz
		}
		s.stats.CPUMHz.add(sum / float64(len(infos)))
	}
	if vm, err := mem.VirtualMemoryWithContext(ctx); err == nil {
		s.stats.MemUsedBytes.add(float64(vm.Used))
		s.stats.MemTotalBytes = int64(vm.Total)
	}
	s.rapl.read()
	if s.gpus != nil {
		s.gpus.sample(s.gpuStats)
	}
}

// busyPercent returns the share of CPU time not idle between two readings
// of the machine's cumulative CPU times.
func busyPercent(a, b cpu.TimesStat) (float64, bool) {
	total := func(t cpu.TimesStat) float64 {
		return t.User + t.System + t.Idle + t.Nice + t.Iowait + t.Irq + t.Softirq + t.Steal
	}
	dt := total(b) - total(a)
	if dt <= 0 {
		return 0, false
	}
	idle := (b.Idle + b.Iowait) - (a.Idle + a.Iowait)
	return 100 * (dt - idle) / dt, true
}

// Stop takes a last sample, stops the goroutine and returns the stats.
func (s *Sampler) Stop(ctx context.Context) Stats {
	close(s.stop)
	<-s.done
	s.sample(ctx)
	s.stats.End = time.Now().UTC()
	if j, ok := s.rapl.joules(); ok {
		s.stats.CPUEnergyJoules = &j
	}
	if s.gpus != nil {
		end := s.gpus.energy()
		for i := range s.gpuStats {
			if i < len(end) && i < len(s.energy0) && end[i] != nil && s.energy0[i] != nil {
				j := float64(*end[i]-*s.energy0[i]) / 1000 // mJ
				s.gpuStats[i].EnergyJoules = &j
			}
		}
		s.stats.GPUs = s.gpuStats
		s.gpus.close()
	}
	return s.stats
}

// rapl accumulates the energy of the CPU package zones of the powercap
// interface. A nil *rapl reads nothing.
type rapl struct {
	zones []raplZone
}

type raplZone struct {
	dir        string
	maxRange   uint64 // the counter wraps to 0 after this many µJ
	last       uint64
	microjoule uint64 // accumulated
}

// openRAPL finds the package zones (intel-rapl:N named package-N) whose
// counters are readable, or returns nil. Since 2020 kernels make energy_uj
// readable by root only, so nil is common.
func openRAPL(dir string) *rapl {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	r := &rapl{}
	for _, e := range entries {
		name := e.Name()
		if strings.Count(name, ":") != 1 {
			continue // subzones (core, uncore, dram) are inside their package
		}
		zdir := filepath.Join(dir, name)
		label, err := os.ReadFile(filepath.Join(zdir, "name"))
		if err != nil || !strings.HasPrefix(strings.TrimSpace(string(label)), "package") {
			continue // psys covers the whole platform and overlaps packages
		}
		v, err1 := readUint(filepath.Join(zdir, "energy_uj"))
		top, err2 := readUint(filepath.Join(zdir, "max_energy_range_uj"))
		if err1 != nil || err2 != nil {
			continue
		}
		r.zones = append(r.zones, raplZone{dir: zdir, maxRange: top, last: v})
	}
	if len(r.zones) == 0 {
		return nil
	}
	return r
}

// read advances every zone's total; it must run more often than the
// counters wrap (minutes at full load), which sampling every interval does.
func (r *rapl) read() {
	if r == nil {
		return
	}
	for i := range r.zones {
		z := &r.zones[i]
		v, err := readUint(filepath.Join(z.dir, "energy_uj"))
		if err != nil {
			continue
		}
		if v >= z.last {
			z.microjoule += v - z.last
		} else {
			z.microjoule += z.maxRange - z.last + v
		}
		z.last = v
	}
}

func (r *rapl) joules() (float64, bool) {
	if r == nil {
		return 0, false
	}
	var sum uint64
	for _, z := range r.zones {
		sum += z.microjoule
	}
	return float64(sum) / 1e6, true
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// gpus is an initialised NVML library and its devices.
type gpus struct {
	lib     nvml.Interface
	devices []nvml.Device
}

// openGPUs initialises NVML from library ("" for libnvidia-ml.so.1), or
// returns nil when it is absent or reports no device: that is normal on a
// machine without an NVIDIA GPU, not an error. go-nvml loads the library
// with dlopen at Init, so tracr builds and runs without it.
func openGPUs(library string) *gpus {
	var opts []nvml.LibraryOption
	if library != "" {
		opts = append(opts, nvml.WithLibraryPath(library))
	}
	lib := nvml.New(opts...)
	if lib.Init() != nvml.SUCCESS {
		return nil
	}
	g := &gpus{lib: lib}
	n, ret := lib.DeviceGetCount()
	for i := 0; ret == nvml.SUCCESS && i < n; i++ {
		d, r := lib.DeviceGetHandleByIndex(i)
		if r != nvml.SUCCESS {
			break
		}
		g.devices = append(g.devices, d)
	}
	if len(g.devices) == 0 {
		lib.Shutdown()
		return nil
	}
	return g
}

func (g *gpus) close() { g.lib.Shutdown() }

func (g *gpus) describe() []GPU {
	driver, _ := g.lib.SystemGetDriverVersion()
	out := make([]GPU, len(g.devices))
	for i, d := range g.devices {
		out[i] = GPU{Index: i, Driver: driver}
		if name, r := d.GetName(); r == nvml.SUCCESS {
			out[i].Name = name
		}
		if m, r := d.GetMemoryInfo(); r == nvml.SUCCESS {
			out[i].MemoryBytes = int64(m.Total)
		}
	}
	return out
}

// energy reads each device's total energy counter in mJ (nil where the
// device has none).
func (g *gpus) energy() []*uint64 {
	out := make([]*uint64, len(g.devices))
	for i, d := range g.devices {
		if e, r := d.GetTotalEnergyConsumption(); r == nvml.SUCCESS {
			out[i] = &e
		}
	}
	return out
}

func (g *gpus) sample(into []GPUStats) {
	for i, d := range g.devices[:min(len(g.devices), len(into))] {
		st := &into[i]
		if u, r := d.GetUtilizationRates(); r == nvml.SUCCESS {
			st.UtilPercent.add(float64(u.Gpu))
		}
		if m, r := d.GetMemoryInfo(); r == nvml.SUCCESS {
			st.MemUsedBytes.add(float64(m.Used))
		}
		if p, r := d.GetPowerUsage(); r == nvml.SUCCESS {
			st.PowerWatts.add(float64(p) / 1000) // mW
		}
		if c, r := d.GetClockInfo(nvml.CLOCK_SM); r == nvml.SUCCESS {
			st.SMClockMHz.add(float64(c))
		}
		if c, r := d.GetClockInfo(nvml.CLOCK_MEM); r == nvml.SUCCESS {
			st.MemClockMHz.add(float64(c))
		}
	}
}
