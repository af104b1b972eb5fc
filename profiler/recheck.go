package profiler

import (
	"context"
	"fmt"

	"tracr/cpulimit"
	"tracr/engine"
	"tracr/graph"
)

// Recheck is the check of a cached profile before it is trusted: the whole
// model timed again now, beside the profile's own whole-model timing.
type Recheck struct {
	// Profiled is the profile's whole-model timing; Measured is the same
	// model timed now (one session, a warm-up run, then the timed runs).
	Profiled Timing `json:"profiled"`
	Measured Timing `json:"measured"`
	// Off is (Measured - Profiled) / Profiled of the medians.
	Off float64 `json:"off"`
	// Allowed is the disagreement the two timings' spread allows:
	// RecheckSlack plus twice the relative spread (p90 - median) / median
	// of each. The medians agree when their ratio lies within 1+Allowed
	// either way (slower by up to that factor, or faster).
	Allowed float64 `json:"allowed"`
	// Stale is set when |Off| exceeds Allowed; Reason then says so in
	// words.
	Stale  bool   `json:"stale"`
	Reason string `json:"reason,omitempty"`
}

// RecheckSlack is the disagreement between a cached profile and a fresh
// timing that is always allowed, on top of their spreads: a few
// whole-model runs move by about this much from one minute to the next on
// a quiet machine.
const RecheckSlack = 0.15

// RecheckProfile times the whole model of p opts.Rechecks times and
// compares the median with p.Whole. opts must be normalised; a negative
// Rechecks skips the check (the result is not stale).
func RecheckProfile(ctx context.Context, p *Profile, model []byte, opts Options) (Recheck, error) {
	rc := Recheck{Profiled: p.Whole}
	if opts.Rechecks < 0 || p.Whole.Median <= 0 {
		return rc, nil
	}
	m, err := graph.Parse(model)
	if err != nil {
		return rc, fmt.Errorf("recheck profile: %w", err)
	}
	inputs, err := engine.Prepare(ctx, m, opts.Seed, opts.InputShapes)
	if err != nil {
		return rc, fmt.Errorf("recheck profile: %w", err)
	}
	t := &timer{sampler: &Sampler{}, opts: opts}
	ds, _, err := t.time(ctx, model, byName(inputs), opts.Rechecks)
	if err != nil {
		return rc, fmt.Errorf("recheck profile: %w", err)
	}
	rc.Measured = summarise(pricer(ds, cpulimit.OwnRate())(ds))
	return judge(rc), nil
}

// judge fills Off, Allowed, Stale and Reason from the two timings.
func judge(rc Recheck) Recheck {
	spread := func(t Timing) float64 {
		if t.Median <= 0 || t.P90 < t.Median {
			return 0
		}
		return float64(t.P90-t.Median) / float64(t.Median)
	}
	rc.Off = float64(rc.Measured.Median-rc.Profiled.Median) / float64(rc.Profiled.Median)
	rc.Allowed = RecheckSlack + 2*spread(rc.Profiled) + 2*spread(rc.Measured)
	ratio := float64(rc.Measured.Median) / float64(rc.Profiled.Median)
	if ratio > 1+rc.Allowed || ratio < 1/(1+rc.Allowed) {
		rc.Stale = true
		rc.Reason = fmt.Sprintf("the cached profile timed the whole model at %s, it took %s now (%+.0f%%, more than the %.0f%% its spread allows): measured again",
			rc.Profiled.Median.Round(10e3), rc.Measured.Median.Round(10e3), 100*rc.Off, 100*rc.Allowed)
	}
	return rc
}
