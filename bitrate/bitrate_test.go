package bitrate

import (
	"math"
	"testing"
	"time"
)

func TestTime(t *testing.T) {
	for _, tt := range []struct {
		name string
		n    int64
		bps  float64
		want time.Duration
		ok   bool
	}{
		{"1 MB at 8 Mbit/s", 1_000_000, 8e6, time.Second, true},
		{"125 bytes at 1 Mbit/s", 125, 1e6, time.Millisecond, true},
		{"no bytes, no link", 0, 0, 0, true},
		{"negative bytes", -5, 1e6, 0, true},
		{"infinite rate", 1 << 30, math.Inf(1), 0, true},
		{"zero rate", 1, 0, 0, false},
		{"negative rate", 1, -1e6, 0, false},
		{"NaN rate", 1, math.NaN(), 0, false},
		{"too long for a Duration", math.MaxInt64, 1, 0, false},
	} {
		got, ok := Time(tt.n, tt.bps)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: Time(%d, %g) = %v, %v; want %v, %v", tt.name, tt.n, tt.bps, got, ok, tt.want, tt.ok)
		}
	}
}

func TestSeconds(t *testing.T) {
	if got := Seconds(10_000, 8e6); got != 0.01 {
		t.Errorf("Seconds(10 kB, 8 Mbit/s) = %v, want 0.01", got)
	}
	if got := Seconds(1, 0); !math.IsInf(got, 1) {
		t.Errorf("Seconds(1, 0) = %v, want +Inf", got)
	}
}
