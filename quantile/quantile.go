// Package quantile summarises repeated measurements: medians and quantiles
// of durations and floats. It is the one definition every package uses, so
// that "median" means the same thing in a plan, a profile, a run's summary
// and a benchmark figure.
//
// The median of an even count is the mean of the middle two; a quantile is
// the nearest-rank (empirical) one, gonum's stat.Empirical: the smallest
// value with at least a fraction q of the values at or below it. None of
// the functions modifies its input, and all return 0 for none.
package quantile

import (
	"slices"
	"time"

	"gonum.org/v1/gonum/stat"
)

// Median returns the median of xs (the mean of the middle two for an even
// count), 0 for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	lo, hi := s[(len(s)-1)/2], s[len(s)/2]
	if lo == hi {
		return lo // also keeps two infinities of one sign from making NaN
	}
	return (lo + hi) / 2
}

// MedianDuration returns the median of ds (the mean of the middle two for
// an even count, rounded down), 0 for none.
func MedianDuration(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(ds))
	lo, hi := s[(len(s)-1)/2], s[len(s)/2]
	return lo + (hi-lo)/2
}

// Float returns the nearest-rank q-quantile of xs, 0 for none. q is clamped
// to [0, 1]: q = 0 gives the least value, q = 1 the greatest. A NaN in xs
// makes the result NaN.
func Float(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return stat.Quantile(clamp(q), stat.Empirical, s, nil)
}

// Duration returns the nearest-rank q-quantile of ds, 0 for none. q is
// clamped to [0, 1]: q = 0 gives the least value, q = 1 the greatest.
func Duration(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := make([]float64, len(ds))
	for i, d := range ds {
		s[i] = float64(d)
	}
	slices.Sort(s)
	// Exact: stat.Empirical returns one of the values, and durations below
	// 2^53 ns (104 days) convert to float64 and back without loss.
	return time.Duration(stat.Quantile(clamp(q), stat.Empirical, s, nil))
}

// clamp keeps q in [0, 1]; NaN counts as 0.
func clamp(q float64) float64 {
	if !(q > 0) {
		return 0
	}
	return min(q, 1)
}
