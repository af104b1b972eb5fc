package quantile

import (
	"math"
	"slices"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		name string
		xs   []float64
		want float64
	}{
		{"none", nil, 0},
		{"one", []float64{4}, 4},
		{"odd, unsorted", []float64{3, 1, 2}, 2},
		{"even: mean of the middle two", []float64{4, 1, 3, 2}, 2.5},
		{"two", []float64{1, 2}, 1.5},
		{"repeated", []float64{5, 5, 1, 5}, 5},
		{"infinities", []float64{1, math.Inf(1), math.Inf(1), math.Inf(1)}, math.Inf(1)},
		{"negative", []float64{-3, -1}, -2},
	} {
		in := slices.Clone(tt.xs)
		if got := Median(in); got != tt.want {
			t.Errorf("%s: Median(%v) = %v, want %v", tt.name, tt.xs, got, tt.want)
		}
		if !slices.Equal(in, tt.xs) {
			t.Errorf("%s: Median modified its input: %v, was %v", tt.name, in, tt.xs)
		}
	}
}

func TestMedianDuration(t *testing.T) {
	for _, tt := range []struct {
		name string
		ds   []time.Duration
		want time.Duration
	}{
		{"none", nil, 0},
		{"one", []time.Duration{7}, 7},
		{"odd, unsorted", []time.Duration{30, 10, 20}, 20},
		{"even: mean of the middle two", []time.Duration{40, 10, 30, 20}, 25},
		{"an outlier does not move it", []time.Duration{20, 21, 500, 19, 20}, 20},
		{"even, odd sum: rounded down", []time.Duration{1, 2}, 1},
		{"large: no overflow", []time.Duration{math.MaxInt64, math.MaxInt64 - 2}, math.MaxInt64 - 1},
	} {
		in := slices.Clone(tt.ds)
		if got := MedianDuration(in); got != tt.want {
			t.Errorf("%s: MedianDuration(%v) = %v, want %v", tt.name, tt.ds, got, tt.want)
		}
		if !slices.Equal(in, tt.ds) {
			t.Errorf("%s: MedianDuration modified its input: %v, was %v", tt.name, in, tt.ds)
		}
	}
}

func TestDuration(t *testing.T) {
	ten := []time.Duration{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}
	seven := []time.Duration{70, 10, 60, 20, 50, 30, 40}
	for _, tt := range []struct {
		name string
		ds   []time.Duration
		q    float64
		want time.Duration
	}{
		{"none", nil, 0.5, 0},
		{"one", []time.Duration{3}, 0.9, 3},
		{"q=0 is the least", ten, 0, 1},
		{"q=1 is the greatest", ten, 1, 10},
		{"below 0 clamps", ten, -1, 1},
		{"above 1 clamps", ten, 2, 10},
		{"NaN clamps to 0", ten, math.NaN(), 1},
		{"p90 of ten", ten, 0.9, 9},
		{"p50 of ten: nearest rank, the lower middle", ten, 0.5, 5},
		{"p90 of seven: rank ceil(6.3) = 7", seven, 0.9, 70},
		{"p50 of seven", seven, 0.5, 40},
		{"p10 of seven: rank ceil(0.7) = 1", seven, 0.1, 10},
	} {
		in := slices.Clone(tt.ds)
		if got := Duration(in, tt.q); got != tt.want {
			t.Errorf("%s: Duration(%v, %v) = %v, want %v", tt.name, tt.ds, tt.q, got, tt.want)
		}
		if !slices.Equal(in, tt.ds) {
			t.Errorf("%s: Duration modified its input: %v, was %v", tt.name, in, tt.ds)
		}
	}
}

func TestFloat(t *testing.T) {
	xs := []float64{0.5, 0.1, 0.4, 0.2, 0.3}
	for _, tt := range []struct {
		name string
		xs   []float64
		q    float64
		want float64
	}{
		{"none", nil, 0.5, 0},
		{"q=0", xs, 0, 0.1},
		{"q=1", xs, 1, 0.5},
		{"p50 of five", xs, 0.5, 0.3},
		{"p90 of five: rank ceil(4.5) = 5", xs, 0.9, 0.5},
		{"p20 of five: rank 1", xs, 0.2, 0.1},
	} {
		in := slices.Clone(tt.xs)
		if got := Float(in, tt.q); got != tt.want {
			t.Errorf("%s: Float(%v, %v) = %v, want %v", tt.name, tt.xs, tt.q, got, tt.want)
		}
		if !slices.Equal(in, tt.xs) {
			t.Errorf("%s: Float modified its input: %v, was %v", tt.name, in, tt.xs)
		}
	}
	if got := Float([]float64{1, math.NaN()}, 0.5); !math.IsNaN(got) {
		t.Errorf("Float with a NaN = %v, want NaN", got)
	}
}
