package cpulimit

import (
	"sync"
	"syscall"
	"time"
)

// ProcessCPU is the CPU time (user and system, all threads) this process
// has used so far; 0 when the kernel will not say.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Sustained is how long work that took wall time and cpu CPU time takes
// on the limited device, as it runs inside a request; rate is the CPU time
// the kernel counts a busy process there per second of wall time
// (Group.Rate, OwnRate; 0: no limit).
//
// Up to one core, it is the CPU time over the rate. Under a limit the wall
// time of one piece of work is quantised: with Steady, by its window
// (work waits for the next one where the current one is spent), without
// it by the kernel's period and tick, so one short run measures anywhere
// from its full-speed time to a window or more past its share, and the
// median of short runs is biased to either side. The CPU time over the
// rate is that average without the quantisation (BenchmarkSteady). Above
// one core, where a single thread is never held back, it is the larger
// of the wall time and the CPU time over the rate. Without a limit (rate
// <= 0), or with no CPU time to go by, it is the wall time.
func Sustained(wall, cpu time.Duration, rate float64) time.Duration {
	switch {
	case rate <= 0 || cpu <= 0:
		return wall
	case rate <= 1:
		return time.Duration(float64(cpu) / rate)
	default:
		return max(wall, time.Duration(float64(cpu)/rate))
	}
}

// own is the group this process entered, under Steady; nil when none.
var own struct {
	sync.Mutex
	g *Group
}

// OwnRate is the Rate of the group this process entered after Steady; 0
// when it is in none.
func OwnRate() float64 {
	_, rate := Own()
	return rate
}

// Own is the Effective speed and the Rate of the group this process
// entered after Steady; 0, 0 when it is in none.
func Own() (effective, rate float64) {
	own.Lock()
	defer own.Unlock()
	if own.g == nil {
		return 0, 0
	}
	return own.g.Effective(), own.g.Rate()
}
