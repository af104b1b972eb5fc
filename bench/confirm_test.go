package bench

import (
	"slices"
	"testing"
	"time"

	tr "tracr/runtime"
)

func TestConfirmSet(t *testing.T) {
	ms := time.Millisecond
	totals := []time.Duration{40 * ms, 30 * ms, 50 * ms, 30 * ms, 20 * ms, 60 * ms}
	for _, c := range []struct {
		chosen, n int
		want      []int
	}{
		{0, 3, []int{0, 4, 1, 3}}, // the choice, then the three fastest others; the tie by index
		{4, 3, []int{4, 1, 3, 0}}, // the fastest chosen: three others still
		{5, 1, []int{5, 4}},
		{2, 10, []int{2, 4, 1, 3, 0, 5}}, // fewer plans than asked for: all of them
	} {
		if got := confirmSet(totals, c.chosen, c.n); !slices.Equal(got, c.want) {
			t.Errorf("confirmSet(chosen %d, n %d) = %v, want %v", c.chosen, c.n, got, c.want)
		}
	}
}

func TestMedianMeasurement(t *testing.T) {
	ms := time.Millisecond
	in := []tr.Measurement{
		{Total: 50 * ms, Edge: 10 * ms, Server: 5 * ms, Runs: 5},
		{Total: 30 * ms, Edge: 30 * ms, Server: 1 * ms, Runs: 5},
		{Total: 40 * ms, Edge: 20 * ms, Server: 9 * ms, Runs: 5},
	}
	got := medianMeasurement(in)
	if got.Total != 40*ms || got.Edge != 20*ms || got.Server != 5*ms || got.Runs != 15 {
		t.Errorf("medianMeasurement = total %v edge %v server %v runs %d, want 40ms 20ms 5ms 15", got.Total, got.Edge, got.Server, got.Runs)
	}
}
