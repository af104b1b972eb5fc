package planner

import (
	"fmt"
	"math"
	"time"
)

// Observation is what the runtime measured for one finished request.
type Observation struct {
	// Cut and Kind identify the plan the request ran on.
	Cut  int
	Kind Kind
	// UpBytes crossed the uplink in Up (transfer time, RTT excluded); 0
	// when the request sent nothing (edge-only) or timing was unavailable.
	UpBytes int64
	Up      time.Duration
	// Edge and Server are the measured compute times (0 = not measured).
	Edge, Server time.Duration
	// ProbeBits is an uplink bandwidth measured by an active probe (bits
	// per second), 0 when none ran.
	ProbeBits float64
	// Late marks a transfer still under way: UpBytes had not all crossed
	// the uplink after Up, so the uplink is at most UpBytes/Up, and the
	// estimate drops to that bound when it is above it (a transfer that
	// stalls moves the plan before it ends). Late observations carry no
	// compute times.
	Late bool
}

// Decision is the re-planner's answer to an observation.
type Decision struct {
	// Switch is true when the runtime should move to Plan.
	Switch bool
	Plan   Plan
	// Probe asks the runtime to measure the uplink actively: the current
	// plan sends nothing, so transfers cannot reveal a change.
	Probe bool
	// Bandwidth is the current uplink estimate in bits per second.
	Bandwidth float64
	Reason    string
}

// ReplanConfig tunes the re-planner. The zero value is replaced by
// DefaultReplanConfig's values field by field.
type ReplanConfig struct {
	// Margin is how much better (fraction of the current predicted
	// latency) another plan must be before a switch: hysteresis.
	Margin float64
	// Confirm is how many consecutive observations must agree before a
	// switch; a plan better by more than 3x Margin switches at once.
	Confirm int
	// ProbeEvery asks for an active probe every this many requests while
	// the current plan sends nothing.
	ProbeEvery int
	// MinBytes: transfers smaller than this are dominated by latency and
	// do not update the bandwidth estimate.
	MinBytes int64
}

// DefaultReplanConfig returns the defaults: 10% margin, two confirmations,
// a probe every 5 requests, transfers of at least 16 KiB.
func DefaultReplanConfig() ReplanConfig {
	return ReplanConfig{Margin: 0.10, Confirm: 2, ProbeEvery: 5, MinBytes: 16 << 10}
}

// Replanner is the adaptive re-planning state machine: fed observations, it
// answers keep or switch. It is pure (no clocks, no I/O) and not safe for
// concurrent use; the runtime drives it from one goroutine.
type Replanner struct {
	problem Problem
	cfg     ReplanConfig
	current Plan
	bw      float64 // uplink estimate, bits/s
	// edgeScale and serverScale track measured/predicted compute, so load
	// drift on either side moves the plan too.
	edgeScale, serverScale float64
	pending                Plan
	pendingN               int
	sinceProbe             int
}

// NewReplanner starts on the problem's best plan at its link.
func NewReplanner(p Problem, cfg ReplanConfig) (*Replanner, error) {
	def := DefaultReplanConfig()
	if cfg.Margin <= 0 {
		cfg.Margin = def.Margin
	}
	if cfg.Confirm <= 0 {
		cfg.Confirm = def.Confirm
	}
	if cfg.ProbeEvery <= 0 {
		cfg.ProbeEvery = def.ProbeEvery
	}
	if cfg.MinBytes <= 0 {
		cfg.MinBytes = def.MinBytes
	}
	r := &Replanner{problem: p, cfg: cfg, bw: p.Link.Up, edgeScale: 1, serverScale: 1}
	plans := r.rank()
	if len(plans) == 0 || !plans[0].Feasible {
		return nil, fmt.Errorf("replanner: no feasible plan to start from")
	}
	r.current = plans[0]
	return r, nil
}

// Current returns the plan in force.
func (r *Replanner) Current() Plan { return r.current }

// Bandwidth returns the uplink estimate in bits per second.
func (r *Replanner) Bandwidth() float64 { return r.bw }

// rank prices every candidate at the current estimates.
func (r *Replanner) rank() []Plan {
	p := r.problem
	p.Link.Up = r.bw
	p.Candidates = make([]Candidate, len(r.problem.Candidates))
	for i, c := range r.problem.Candidates {
		c.Edge = time.Duration(float64(c.Edge) * r.edgeScale)
		c.Server = time.Duration(float64(c.Server) * r.serverScale)
		p.Candidates[i] = c
	}
	return Rank(p)
}

// Observe folds one observation into the estimates and decides.
func (r *Replanner) Observe(o Observation) Decision {
	r.learn(o)
	d := Decision{Plan: r.current, Bandwidth: r.bw}
	plans := r.rank()
	var cur Plan
	for _, p := range plans {
		if same(p, r.current) {
			cur = p
		}
	}
	best := plans[0]
	if r.current.Candidate.Kind == KindEdgeOnly || r.current.Encoding.Bytes == 0 {
		r.sinceProbe++
		if r.sinceProbe >= r.cfg.ProbeEvery {
			r.sinceProbe = 0
			d.Probe = true
		}
	}
	if same(best, r.current) || !best.Feasible {
		r.pendingN = 0
		d.Reason = "current plan is best"
		return d
	}
	gain := 1.0
	if cur.Feasible && cur.Score > 0 {
		gain = 1 - float64(best.Score)/float64(cur.Score)
	}
	if gain < r.cfg.Margin {
		r.pendingN = 0
		d.Reason = fmt.Sprintf("%s is better by %.1f%%, under the %.0f%% margin", best.Candidate.Name(), 100*gain, 100*r.cfg.Margin)
		return d
	}
	if same(best, r.pending) {
		r.pendingN++
	} else {
		r.pending, r.pendingN = best, 1
	}
	if r.pendingN < r.cfg.Confirm && gain < 3*r.cfg.Margin {
		d.Reason = fmt.Sprintf("%s is better by %.1f%%; waiting for %d confirmations", best.Candidate.Name(), 100*gain, r.cfg.Confirm)
		return d
	}
	r.current, r.pendingN, r.sinceProbe = best, 0, 0
	d.Switch, d.Plan = true, best
	d.Reason = fmt.Sprintf("switch to %s: predicted %v, %.1f%% better at %.2f Mbit/s", best.Candidate.Name(),
		best.Score.Round(time.Microsecond), 100*gain, r.bw/1e6)
	return d
}

// learn updates the bandwidth and compute estimates. A measurement far
// from the estimate (beyond 2x) replaces it, so a step change is followed
// at once; others are averaged in (EWMA, weight 1/2) to ride out noise.
func (r *Replanner) learn(o Observation) {
	if o.Late {
		if o.UpBytes >= r.cfg.MinBytes && o.Up > 0 {
			r.bw = min(r.bw, float64(o.UpBytes)*8/o.Up.Seconds())
		}
		return
	}
	obs := o.ProbeBits
	if obs <= 0 && o.UpBytes >= r.cfg.MinBytes && o.Up > 0 {
		obs = float64(o.UpBytes) * 8 / o.Up.Seconds()
	}
	if obs > 0 {
		if r.bw <= 0 || math.IsInf(r.bw, 0) || math.Abs(math.Log(obs/r.bw)) > math.Ln2 {
			r.bw = obs
		} else {
			r.bw = (r.bw + obs) / 2
		}
	}
	c := r.current.Candidate
	if o.Cut != c.Cut || o.Kind != c.Kind {
		return // a request made for an older plan
	}
	if o.Edge > 0 && c.Edge > 0 {
		r.edgeScale = (r.edgeScale + float64(o.Edge)/float64(c.Edge)) / 2
	}
	if o.Server > 0 && c.Server > 0 {
		r.serverScale = (r.serverScale + float64(o.Server)/float64(c.Server)) / 2
	}
}

func same(a, b Plan) bool {
	return a.Candidate.Kind == b.Candidate.Kind && a.Candidate.Cut == b.Candidate.Cut && a.Encoding.Codec == b.Encoding.Codec
}
