//go:build !linux

package transport

import "time"

// preciseTimer sleeps with Go's own timer off Linux.
type preciseTimer struct{}

func newPreciseTimer() *preciseTimer { return &preciseTimer{} }

func (t *preciseTimer) sleep(d time.Duration) {
	if d > 0 {
		time.Sleep(d)
	}
}

func (t *preciseTimer) close() {}
