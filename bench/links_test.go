package bench

import (
	"slices"
	"testing"
)

// TestBenchLinks checks that every link bench names is a transport preset
// and that wifi stays second to last, where the pipeline figures take it.
func TestBenchLinks(t *testing.T) {
	for _, tt := range []struct {
		quick bool
		want  []string
	}{
		{false, []string{"3g", "4g", "wifi", "gigabit"}},
		{true, []string{"4g", "wifi", "gigabit"}},
	} {
		b := &bencher{opts: Options{Quick: tt.quick}}
		var names []string
		for _, l := range b.links() {
			names = append(names, l.name)
			if !(l.l.Up > 0) || !(l.l.Down > 0) || l.l.RTT <= 0 {
				t.Errorf("quick=%v: link %q = %+v: not a preset", tt.quick, l.name, l.l)
			}
		}
		if !slices.Equal(names, tt.want) {
			t.Errorf("quick=%v: links %v, want %v", tt.quick, names, tt.want)
		}
	}
}
