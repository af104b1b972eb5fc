//go:build !linux

package transport

import "time"

// preciseSleep sleeps d; off Linux with Go's own timer.
func preciseSleep(d time.Duration) {
	if d > 0 {
		time.Sleep(d)
	}
}
