package netprobe

import (
	"time"
)

// Estimator estimates one direction's bandwidth from the transfers a run
// makes anyway, without sending anything itself. The runtime feeds it each
// transfer's size and time; it keeps the last Window of them. When their
// sizes vary enough it fits t = a + bytes/b to them, as Probe does; when
// they are all about the same size (one cut, one codec) a slope cannot be
// found, so it subtracts the known fixed cost (Overhead, typically the RTT
// from Probe) from each time instead.
//
// It is pure: no clock, no goroutine, no I/O; the caller measures. It is
// not safe for concurrent use.
type Estimator struct {
	window   int
	overhead time.Duration
	samples  []Sample // ring buffer, oldest at next once full
	next     int
}

// NewEstimator returns an estimator over the last window transfers (at
// least 2) whose fixed cost per transfer is overhead.
func NewEstimator(window int, overhead time.Duration) *Estimator {
	return &Estimator{window: max(window, 2), overhead: max(overhead, 0)}
}

// SetOverhead updates the fixed cost per transfer, e.g. after a new RTT
// measurement.
func (e *Estimator) SetOverhead(d time.Duration) { e.overhead = max(d, 0) }

// Observe records a transfer of n bytes that took d. Transfers of no bytes
// or no time say nothing about bandwidth and are ignored.
func (e *Estimator) Observe(n int64, d time.Duration) {
	if n <= 0 || d <= 0 {
		return
	}
	s := Sample{Bytes: n, Duration: d}
	if len(e.samples) < e.window {
		e.samples = append(e.samples, s)
		return
	}
	e.samples[e.next] = s
	e.next = (e.next + 1) % e.window
}

// spread is how much larger the largest transfer in the window must be
// than the smallest for a fitted slope to be trusted.
const spread = 1.5

// minFitSamples is the fewest transfers a fit is made from.
const minFitSamples = 4

// Estimate returns the bandwidth in bits per second, and false when the
// transfers seen so far cannot tell it (none, or all within the fixed
// cost).
func (e *Estimator) Estimate() (bitsPerSec float64, ok bool) {
	if len(e.samples) == 0 {
		return 0, false
	}
	lo, hi := e.samples[0].Bytes, e.samples[0].Bytes
	for _, s := range e.samples {
		lo, hi = min(lo, s.Bytes), max(hi, s.Bytes)
	}
	if len(e.samples) >= minFitSamples && float64(hi) >= spread*float64(lo) {
		if f, err := FitLine(e.samples); err == nil {
			return f.BitsPerSec, true
		}
	}
	var bytes int64
	var busy time.Duration
	for _, s := range e.samples {
		if d := s.Duration - e.overhead; d > 0 {
			bytes += s.Bytes
			busy += d
		}
	}
	if busy <= 0 {
		return 0, false
	}
	return float64(bytes) * 8 / busy.Seconds(), true
}

// Samples returns the transfers in the window, oldest first.
func (e *Estimator) Samples() []Sample {
	out := make([]Sample, 0, len(e.samples))
	out = append(out, e.samples[e.next:]...)
	return append(out, e.samples[:e.next]...)
}
