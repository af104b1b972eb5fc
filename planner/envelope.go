package planner

import (
	"math"
	"sort"

	"tracr/bitrate"
)

// Interval is a range of uplink bandwidths over which one plan is best.
type Interval struct {
	// From and To are uplink bandwidths in bits per second, From < To;
	// To is +Inf for the last interval and From 0 for the first.
	From, To float64
	// Plan is the best plan throughout; its Breakdown (which changes with
	// bandwidth while the choice does not) is evaluated at From, or at To
	// for the first interval, which starts at 0.
	Plan Plan
}

// Breakpoints returns the lower envelope of the candidates' latencies as
// functions of uplink bandwidth: with compute fixed, each candidate and
// encoding costs T = A + B/up (B = bytes*8), a line in 1/up, so the best
// candidate changes only at the crossings of the envelope. Intervals are
// ordered by bandwidth. The problem's Link supplies the down bandwidth and
// RTT; its Up is ignored. The table is for the latency objective (the
// throughput score, a maximum of stages, is not of this form). The adaptive
// runtime switches on this table.
func Breakpoints(p Problem) []Interval {
	type line struct {
		a, b float64 // T = a + b*x, x = 1/up, in seconds
		plan Plan
	}
	var lines []line
	for _, c := range p.Candidates {
		encs := c.Encodings
		if c.Kind == KindEdgeOnly {
			encs = []Encoding{{}}
		}
		for _, e := range encs {
			q := p
			q.Objective = Latency
			q.Candidates = []Candidate{{Kind: c.Kind, Cut: c.Cut, Edge: c.Edge, Server: c.Server,
				Encodings: []Encoding{e}, ResultBytes: c.ResultBytes, EdgeMemory: c.EdgeMemory}}
			// At infinite uplink the latency is A.
			q.Link.Up = math.Inf(1)
			atInf := best(q.Candidates[0], q)
			if !atInf.Feasible {
				continue
			}
			// The slope in x = 1/up is the upload's time at 1 bit/s.
			slope := 0.0
			if c.Kind != KindEdgeOnly {
				slope = bitrate.Seconds(e.Bytes, 1)
			}
			lines = append(lines, line{a: atInf.Score.Seconds(), b: slope, plan: atInf})
		}
	}
	if len(lines) == 0 {
		return nil
	}
	// The envelope over x in (0, +Inf): at x -> 0 (infinite bandwidth) the
	// smallest a wins; walking to larger x, switch to the line that crosses
	// below first. Lines are few (a few hundred), so the simple O(n^2) walk
	// is clear and fast enough.
	sort.SliceStable(lines, func(i, j int) bool {
		if lines[i].a != lines[j].a {
			return lines[i].a < lines[j].a
		}
		return lines[i].b < lines[j].b
	})
	cur := 0
	x := 0.0
	var out []Interval
	for {
		next, nextX := -1, math.Inf(1)
		for j, l := range lines {
			if l.b >= lines[cur].b {
				continue // never undercuts the current line further right
			}
			// a_c + b_c x = a_j + b_j x  ->  x = (a_j - a_c) / (b_c - b_j)
			cross := (l.a - lines[cur].a) / (lines[cur].b - l.b)
			if cross < x {
				cross = x
			}
			if cross < nextX || (cross == nextX && next >= 0 && l.b < lines[next].b) {
				next, nextX = j, cross
			}
		}
		out = append(out, Interval{From: invert(nextX), To: invert(x), Plan: lines[cur].plan})
		if next < 0 {
			break
		}
		cur, x = next, nextX
	}
	// Built from high bandwidth down; callers read low to high.
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	// Drop empty intervals (two lines crossing at the same point) and fill
	// each plan's breakdown at the interval's lower end.
	var clean []Interval
	for _, iv := range out {
		if iv.From >= iv.To {
			continue
		}
		l := p.Link
		l.Up = iv.From
		if iv.From == 0 {
			l.Up = iv.To
		}
		iv.Plan = Evaluate(iv.Plan.Candidate, iv.Plan.Encoding, l, Latency)
		clean = append(clean, iv)
	}
	return clean
}

// invert maps x = 1/up back to a bandwidth: 0 -> +Inf, +Inf -> 0.
func invert(x float64) float64 {
	switch {
	case x == 0:
		return math.Inf(1)
	case math.IsInf(x, 1):
		return 0
	}
	return 1 / x
}

// BestAt returns the interval whose range holds the bandwidth, or false.
func BestAt(ivs []Interval, up float64) (Interval, bool) {
	for _, iv := range ivs {
		if up >= iv.From && up < iv.To {
			return iv, true
		}
	}
	return Interval{}, false
}
