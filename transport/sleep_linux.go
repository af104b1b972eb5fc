package transport

import (
	"syscall"
	"time"
)

// preciseSleep sleeps d in the kernel (nanosleep), blocking the thread:
// about 0.1 ms late, where a Go timer under a millisecond waits a whole
// one. For the link emulation's last stretch before a delivery only.
func preciseSleep(d time.Duration) {
	if d <= 0 {
		return
	}
	ts := syscall.NsecToTimespec(int64(d))
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}
