// Package bitrate is the one definition of how long bytes take on a link:
// n bytes at r bits per second take n*8/r seconds. The planner's cost
// model, the runtime's estimates, the sweeps' traces, netprobe's fits and
// the link emulation all price transfers with it.
package bitrate

import (
	"math"
	"time"
)

// Seconds returns the time n bytes take at bps bits per second, in
// seconds: n*8/bps, with no checks (+Inf at a zero rate). It is the form
// for arithmetic on costs; Time is the checked one.
func Seconds(n int64, bps float64) float64 {
	return float64(n) * 8 / bps
}

// Time returns the time n bytes take at bps bits per second, and false
// when the rate cannot carry them: bps zero, negative or NaN, or a time
// too long for a Duration. No bytes take no time at any rate; any bytes
// take no time at an infinite rate. The Duration is 0 when false.
func Time(n int64, bps float64) (time.Duration, bool) {
	if n <= 0 {
		return 0, true
	}
	if !(bps > 0) {
		return 0, false
	}
	s := Seconds(n, bps)
	if s > float64(math.MaxInt64)/1e9 {
		return 0, false
	}
	return time.Duration(s * float64(time.Second)), true
}
