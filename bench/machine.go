package bench

import (
	"context"
	"fmt"
	"runtime"
	"time"
)

// machineIdle is the idle gap the machine section puts before a cold run:
// about what a request spends on a Wi-Fi link at the overhead's cut, when
// the edge and the server have nothing to compute.
const machineIdle = 150 * time.Millisecond

// machineWork is the memory the machine section streams through (8 MiB),
// a few of a split's activations.
var machineWork = make([]float64, 1<<20)

// streamMemory reads and writes machineWork twice: memory-bound work.
func streamMemory() time.Duration {
	t := time.Now()
	s := 0.0
	for range 2 {
		for i, v := range machineWork {
			v = v*0.999 + float64(i)
			machineWork[i] = v
			s += v
		}
	}
	runtime.KeepAlive(s) // the sum keeps the reads
	return time.Since(t)
}

// spinCPU is compute-bound work of about the same length that touches no
// memory.
func spinCPU() time.Duration {
	t := time.Now()
	x := 1.0
	for range 3_000_000 {
		x = x*1.0000001 + 1e-9
	}
	runtime.KeepAlive(x) // keeps the loop from being dropped
	return time.Since(t)
}

// machine measures how much slower this machine runs work right after an
// idle gap than back to back. Profiles time warm runs back to back; in a
// run with one request in flight the edge and the server idle while the
// bytes cross, so on a machine where this ratio is large every compute
// term of a run (codec included) comes out slower than profiled, and the
// prediction error and the overhead's codec share grow with it.
func (b *bencher) machine(ctx context.Context) error {
	n := 15
	if b.opts.Quick {
		n = 9
	}
	for _, w := range []struct {
		scope string
		run   func() time.Duration
	}{{"memory-bound work (8 MiB, 2 passes)", streamMemory}, {"compute-bound work (no memory)", spinCPU}} {
		var warm, cold, ratios []float64
		w.run()
		for range n {
			if err := ctx.Err(); err != nil {
				return err
			}
			w.run()
			hot := w.run()
			time.Sleep(machineIdle)
			c := w.run()
			warm, cold = append(warm, msf(hot)), append(cold, msf(c))
			ratios = append(ratios, ratio(msf(c), msf(hot)))
		}
		b.add(Figure{Section: "machine", Scope: w.scope, Metric: fmt.Sprintf("after %v idle / back to back", machineIdle), Value: median(ratios), Unit: "x",
			Detail: fmt.Sprintf("%.2f ms vs %.2f ms (medians)", median(cold), median(warm)),
			How:    fmt.Sprintf("%d pairs, each a run right after another and a run after sleeping %v; median of the pairs' ratios", n, machineIdle)})
	}
	return nil
}
