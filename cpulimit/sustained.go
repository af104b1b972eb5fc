package cpulimit

import (
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
// under a limit of cores when the limit binds: the larger of the wall
// time and the CPU time over the cores. The kernel grants the quota per
// period, so a short piece of work timed alone runs at full speed within
// one period's quota; inside a request, after the work before it spent the
// quota, it waits like the rest. Without a limit (cores <= 0) it is the
// wall time.
func Sustained(wall, cpu time.Duration, cores float64) time.Duration {
	if cores <= 0 {
		return wall
	}
	return max(wall, time.Duration(float64(cpu)/cores))
}
