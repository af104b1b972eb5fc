package cpulimit

import (
	"math"
	"testing"
	"time"
)

func TestSustained(t *testing.T) {
	ms := time.Millisecond
	for _, tt := range []struct {
		wall, cpu time.Duration
		rate      float64
		want      time.Duration
	}{
		{2 * ms, 2 * ms, 0, 2 * ms},       // no limit: the wall time
		{2 * ms, 2 * ms, 0.1, 20 * ms},    // a burst within one window
		{12 * ms, 2 * ms, 0.1, 20 * ms},   // a long wait: its share, not the wait
		{18 * ms, 2 * ms, 0.125, 16 * ms}, // switching counted as CPU time: the measured rate
		{4 * ms, 6 * ms, 1.5, 4 * ms},     // two threads, a limit they do not reach
		{10 * ms, 10 * ms, 2, 10 * ms},    // one thread under a two-core limit
		{10 * ms, 20 * ms, 0.5, 40 * ms},  // two threads held to half a core
		{0, 0, 0.1, 0},                    // nothing measured
		{2 * ms, 1500 * time.Microsecond, 0.5, 3 * ms},
		{5 * ms, 0, 0.5, 5 * ms}, // no CPU time to go by: the wall time
	} {
		if got := Sustained(tt.wall, tt.cpu, tt.rate); got != tt.want {
			t.Errorf("Sustained(%v, %v, %g) = %v, want %v", tt.wall, tt.cpu, tt.rate, got, tt.want)
		}
	}
}

// TestProcessCPU: busy work shows in the process's CPU time, and sleeping
// does not.
func TestProcessCPU(t *testing.T) {
	// Busy work until 20 ms of CPU show, however loaded the machine: the
	// bound is generous, the behaviour is that busy work counts.
	c0 := ProcessCPU()
	start, x := time.Now(), 1.0
	for ProcessCPU()-c0 < 20*time.Millisecond && time.Since(start) < 10*time.Second {
		for range 10000 {
			x = math.Sqrt(x + 1)
		}
	}
	if busy := ProcessCPU() - c0; busy < 20*time.Millisecond || x < 0 {
		t.Errorf("%v of busy work counted %v of CPU", time.Since(start), busy)
	}
	c1 := ProcessCPU()
	time.Sleep(50 * time.Millisecond)
	if idle := ProcessCPU() - c1; idle > 25*time.Millisecond {
		t.Errorf("50 ms of sleep counted %v of CPU", idle)
	}
}
