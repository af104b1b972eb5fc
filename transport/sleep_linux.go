package transport

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// preciseTimer sleeps to within about 0.1 ms, where a Go timer under a
// millisecond waits a whole one, without holding one of Go's processors:
// a timerfd read through the runtime's poller, so the goroutine parks
// like on a socket and wakes when the kernel's timer fires. One goroutine
// at a time may use it.
type preciseTimer struct {
	f *os.File
}

// newPreciseTimer returns a timer, or nil when the kernel gives none (its
// sleep then falls back to Go's timer).
func newPreciseTimer() *preciseTimer {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil
	}
	return &preciseTimer{f: os.NewFile(uintptr(fd), "timerfd")}
}

// sleep waits d. A closed timer returns at once.
func (t *preciseTimer) sleep(d time.Duration) {
	if d <= 0 {
		return
	}
	if t == nil {
		time.Sleep(d)
		return
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	rc, err := t.f.SyscallConn()
	var serr error
	if err == nil {
		// Control keeps the descriptor from being closed (and its number
		// reused) while the timer is set.
		err = rc.Control(func(fd uintptr) { serr = unix.TimerfdSettime(int(fd), 0, &spec, nil) })
	}
	if err != nil || serr != nil {
		return // closed: the connection is going away
	}
	var n [8]byte // the expiry count
	t.f.Read(n[:])
}

// close releases the timer.
func (t *preciseTimer) close() {
	if t != nil {
		t.f.Close()
	}
}
