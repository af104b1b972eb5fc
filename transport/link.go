package transport

// Link emulation. Shape wraps one end of a real connection (normally the
// edge's) so that the connection behaves like a link of given bandwidth in
// each direction and given round-trip time, both directions emulated on
// that one end:
//
//   - a Write is cut into chunks; each chunk occupies the uplink for
//     bytes*8/Up seconds after the previous one (the Write returns when its
//     last chunk is serialised, which is the back-pressure a real socket
//     gives), then reaches the peer RTT/2 later;
//   - bytes from the peer are timestamped as they arrive, occupy the
//     downlink for bytes*8/Down seconds in turn, and become readable RTT/2
//     after that.
//
// Delivery times are computed per chunk and chunks wait in queues, so
// several chunks are in flight at once: the emulated link keeps its
// bandwidth-delay product instead of adding a round trip per write. Only
// one end of a connection may be shaped; shaping both would count every
// delay twice.

import (
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tracr/bitrate"
)

// Link is an emulated network link: bandwidth in bits per second in each
// direction (0 means unlimited) and the round-trip time.
type Link struct {
	Up, Down float64
	RTT      time.Duration
}

// ParseLink reads a link written as comma-separated key=value pairs, e.g.
// "up=10mbit,down=50mbit,rtt=20ms". Keys are up, down and rtt, each
// optional (a missing one is unlimited or zero). Rates take the units bit,
// kbit, mbit, gbit or, meaning the same bits, bps, kbps, mbps, gbps, with
// an optional "/s"; 0 is unlimited. The rtt is a Go duration (20ms, 500us,
// 1.5s).
func ParseLink(s string) (Link, error) {
	var l Link
	seen := map[string]bool{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		key, val, ok := strings.Cut(part, "=")
		key, val = strings.ToLower(strings.TrimSpace(key)), strings.TrimSpace(val)
		if !ok {
			return Link{}, fmt.Errorf("link %q: %q is not key=value (keys: up, down, rtt)", s, part)
		}
		if seen[key] {
			return Link{}, fmt.Errorf("link %q: key %s given twice", s, key)
		}
		seen[key] = true
		var err error
		switch key {
		case "up":
			l.Up, err = ParseRate(val)
		case "down":
			l.Down, err = ParseRate(val)
		case "rtt":
			l.RTT, err = parseRTT(val)
		default:
			return Link{}, fmt.Errorf("link %q: unknown key %q (keys: up, down, rtt)", s, key)
		}
		if err != nil {
			return Link{}, fmt.Errorf("link %q: %s: %w", s, key, err)
		}
	}
	return l, nil
}

// rateUnits maps unit names to bits per second. Every unit counts bits:
// "mbps" is megabits, as network people write it.
var rateUnits = map[string]float64{
	"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9,
	"bps": 1, "kbps": 1e3, "mbps": 1e6, "gbps": 1e9,
}

// ParseRate reads a bandwidth like "50mbit", "1.5gbit", "200kbps" or
// "10mbit/s" and returns bits per second; "0" is unlimited.
func ParseRate(s string) (float64, error) {
	v := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), "/s")
	i := strings.IndexFunc(v, func(r rune) bool { return r >= 'a' && r <= 'z' })
	num, unit := v, ""
	if i >= 0 {
		num, unit = v[:i], v[i:]
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("rate %q: want a non-negative number with a unit, like 50mbit", s)
	}
	if unit == "" {
		if f == 0 {
			return 0, nil
		}
		return 0, fmt.Errorf("rate %q: missing unit (bit, kbit, mbit, gbit)", s)
	}
	m, ok := rateUnits[strings.TrimSpace(unit)]
	if !ok {
		return 0, fmt.Errorf("rate %q: unknown unit %q (bit, kbit, mbit, gbit; kbps and mbps also mean bits)", s, unit)
	}
	return f * m, nil
}

func parseRTT(s string) (time.Duration, error) {
	if _, err := strconv.ParseFloat(s, 64); err == nil && s != "0" {
		return 0, fmt.Errorf("rtt %q: missing unit (e.g. 20ms)", s)
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("rtt %q: want a duration like 20ms", s)
	}
	return d, nil
}

// FormatRate formats bits per second with the largest unit that keeps it
// short ("50mbit", "1.5gbit"); 0 is "0".
func FormatRate(bps float64) string {
	if bps == 0 {
		return "0"
	}
	for _, u := range []struct {
		name string
		mult float64
	}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}} {
		if bps >= u.mult {
			return strconv.FormatFloat(bps/u.mult, 'g', -1, 64) + u.name
		}
	}
	return strconv.FormatFloat(bps, 'g', -1, 64) + "bit"
}

// String formats l as ParseLink reads it, e.g. "up=10mbit,down=50mbit,rtt=20ms".
func (l Link) String() string {
	return "up=" + FormatRate(l.Up) + ",down=" + FormatRate(l.Down) + ",rtt=" + l.RTT.String()
}

// Side says which end of a connection Shape wraps.
type Side uint8

// The two ends.
const (
	// EdgeSide writes on the uplink and reads from the downlink.
	EdgeSide Side = iota
	// ServerSide writes on the downlink and reads from the uplink.
	ServerSide
)

// LinkState holds the current Link of a shaped connection; it may change
// while the connection is in use (a trace plays into it). It is safe for
// concurrent use; the zero value is an unlimited link.
type LinkState struct {
	p atomic.Pointer[Link]
}

// NewLinkState returns a state holding l.
func NewLinkState(l Link) *LinkState {
	s := new(LinkState)
	s.Set(l)
	return s
}

// Set makes l the current link; chunks sent after it see the new values.
func (s *LinkState) Set(l Link) { s.p.Store(&l) }

// Get returns the current link.
func (s *LinkState) Get() Link {
	if l := s.p.Load(); l != nil {
		return *l
	}
	return Link{}
}

const (
	// writeChunk is the unit in which writes are serialised and delivered,
	// a few packets' worth.
	writeChunk = 16 << 10
	// readChunk size for bytes from the peer.
	shapeReadChunk = 32 << 10
	// queueChunks bounds each direction's queue (16-32 MiB), far above
	// any bandwidth-delay product the emulation is used for.
	queueChunks = 1024
	// sleepAhead: a writer runs ahead of the serialisation clock by up to
	// this much before it sleeps, saving a timer per small chunk.
	sleepAhead = time.Millisecond
	// busySlack: a writer or the network that comes back less than this
	// late is treated as having kept the link busy, so timer overshoot does
	// not eat bandwidth. Delivery is never earlier than arrival + delay.
	busySlack = 2 * time.Millisecond
	// maxSerialise caps the time one chunk occupies the link.
	maxSerialise = 24 * time.Hour
	// closeDrain bounds how long Close waits to deliver queued bytes.
	closeDrain = 2 * time.Second
)

// clock serialises chunks on one direction of the link.
type clock struct {
	free time.Time // when the direction finishes its current chunk
	last time.Time // delivery time of the latest chunk (keeps order)
}

// next schedules n bytes arriving at now on a direction of rate bits per
// second and one-way delay; it returns when they are serialised and when
// they reach the other end.
func (c *clock) next(now time.Time, n int, rate float64, delay time.Duration) (done, deliver time.Time) {
	start := now
	if !c.free.IsZero() && now.Sub(c.free) < busySlack {
		start = c.free
	}
	done = start
	if rate > 0 {
		// Capped so an absurd rate cannot overflow a Duration.
		secs := min(bitrate.Seconds(int64(n), rate), maxSerialise.Seconds())
		done = start.Add(time.Duration(secs * float64(time.Second)))
	}
	c.free = done
	deliver = done
	if now.After(deliver) {
		deliver = now
	}
	deliver = deliver.Add(delay)
	if deliver.Before(c.last) {
		deliver = c.last
	}
	c.last = deliver
	return done, deliver
}

type chunk struct {
	data []byte
	at   time.Time // when the chunk reaches the other end
	err  error     // end of stream (read side)
}

// deadline is a settable point in time that closes a channel when it
// passes, so blocked calls can select on it.
type deadline struct {
	mu    sync.Mutex
	timer *time.Timer
	ch    chan struct{}
}

func newDeadline() *deadline { return &deadline{ch: make(chan struct{})} }

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if closed(d.ch) {
		d.ch = make(chan struct{})
	}
	if t.IsZero() {
		return
	}
	ch := d.ch
	if dur := time.Until(t); dur > 0 {
		d.timer = time.AfterFunc(dur, func() {
			d.mu.Lock()
			if d.ch == ch && !closed(ch) {
				close(ch)
			}
			d.mu.Unlock()
		})
		return
	}
	close(ch)
}

func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}

// shapedConn is the net.Conn Shape returns.
type shapedConn struct {
	net.Conn
	state *LinkState
	side  Side

	closing   chan struct{} // closed by Close
	closeOnce sync.Once

	wmu     sync.Mutex // serialises Write; guards wclock, wclosed
	wclock  clock
	wclosed bool
	outq    chan chunk
	outDone chan struct{}
	outErr  atomic.Pointer[error]
	wdl     *deadline

	rmu     sync.Mutex // serialises Read; guards head, pending, rerr
	head    *chunk     // received, not yet due
	pending []byte     // due, partly read
	rerr    error
	inq     chan chunk
	rdl     *deadline
	rtimer  *preciseTimer // Read's exact waits (closed by Close)
}

// Shape wraps c so that it behaves like the link in state, seen from side:
// for EdgeSide, writes use Up and reads Down, each delayed by RTT/2 (the
// other way round for ServerSide). Wrap one end of a connection only. The
// wrapper reads c from a goroutine and writes it from another; Close stops
// both, delivering what was written first (for up to two seconds).
func Shape(c net.Conn, state *LinkState, side Side) net.Conn {
	if state == nil {
		state = new(LinkState)
	}
	s := &shapedConn{
		Conn:    c,
		state:   state,
		side:    side,
		closing: make(chan struct{}),
		outq:    make(chan chunk, queueChunks),
		outDone: make(chan struct{}),
		wdl:     newDeadline(),
		inq:     make(chan chunk, queueChunks),
		rdl:     newDeadline(),
		rtimer:  newPreciseTimer(),
	}
	go s.deliver()
	go s.receive()
	return s
}

// rates returns the write and read direction of the current link.
func (s *shapedConn) rates() (write, read float64, oneWay time.Duration) {
	l := s.state.Get()
	if s.side == ServerSide {
		return l.Down, l.Up, l.RTT / 2
	}
	return l.Up, l.Down, l.RTT / 2
}

// Write implements net.Conn.
func (s *shapedConn) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	written := 0
	for len(p) > 0 {
		if s.wclosed {
			return written, net.ErrClosed
		}
		if errp := s.outErr.Load(); errp != nil {
			return written, *errp
		}
		if closed(s.wdl.wait()) {
			return written, os.ErrDeadlineExceeded
		}
		n := min(len(p), writeChunk)
		rate, _, delay := s.rates()
		done, at := s.wclock.next(time.Now(), n, rate, delay)
		c := chunk{data: append([]byte(nil), p[:n]...), at: at}
		select {
		case s.outq <- c:
		case <-s.closing:
			return written, net.ErrClosed
		case <-s.wdl.wait():
			return written, os.ErrDeadlineExceeded
		}
		written += n
		p = p[n:]
		if err := s.sleepUntil(done, sleepAhead, s.wdl); err != nil {
			return written, err
		}
	}
	return written, nil
}

// sleepUntil waits until t if it is more than ahead in the future,
// returning early with an error on close or deadline.
func (s *shapedConn) sleepUntil(t time.Time, ahead time.Duration, dl *deadline) error {
	d := time.Until(t)
	if d <= ahead {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-s.closing:
		return net.ErrClosed
	case <-dl.wait():
		return os.ErrDeadlineExceeded
	}
}

// nearWait is how close to a delivery time the emulation stops using Go's
// timers. On Linux they wait in whole milliseconds once under one (a 100 us
// sleep took 1.1 ms here), which delivered the end of every message about
// 0.5-1 ms late in each direction: the emulated link was slower than the
// one asked for. The last stretch before the last chunk queued is slept on
// a kernel timer instead (preciseTimer, 0.1 ms late here). Only the last:
// a chunk with others queued behind it may be late, as the next one's
// delivery time does not depend on it.
const nearWait = 1500 * time.Microsecond

// waitUntil waits until t like sleepUntil with no lead; when exact, the
// last nearWait is slept on the reader's precise timer. Close and the
// deadline end the first part; the precise part is at most nearWait.
func (s *shapedConn) waitUntil(t time.Time, exact bool, dl *deadline) error {
	if !exact {
		return s.sleepUntil(t, 0, dl)
	}
	if d := time.Until(t); d > nearWait {
		if err := s.sleepUntil(t.Add(-nearWait), 0, dl); err != nil {
			return err
		}
	}
	s.rtimer.sleep(time.Until(t))
	return nil
}

// deliver writes queued chunks to the underlying connection at their
// delivery times, until the queue is closed.
func (s *shapedConn) deliver() {
	defer close(s.outDone)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	wtimer := newPreciseTimer()
	defer wtimer.close()
	for c := range s.outq {
		if s.outErr.Load() != nil {
			continue // drop: the connection failed
		}
		exact := len(s.outq) == 0 // the last chunk queued: see nearWait
		lead := time.Duration(0)
		if exact {
			lead = nearWait
		}
		if d := time.Until(c.at); d > lead {
			timer.Reset(d - lead)
			<-timer.C
		}
		if exact {
			wtimer.sleep(time.Until(c.at))
		}
		if _, err := s.Conn.Write(c.data); err != nil {
			err = fmt.Errorf("shaped link: %w", err)
			s.outErr.Store(&err)
		}
	}
}

// receive reads the underlying connection, timestamping what arrives.
func (s *shapedConn) receive() {
	var clk clock
	for {
		buf := make([]byte, shapeReadChunk)
		n, err := s.Conn.Read(buf)
		_, rate, delay := s.rates()
		now := time.Now()
		if n > 0 {
			_, at := clk.next(now, n, rate, delay)
			select {
			case s.inq <- chunk{data: buf[:n], at: at}:
			case <-s.closing:
				return
			}
		}
		if err != nil {
			// The end of the stream travels too, after the data.
			at := now.Add(delay)
			if at.Before(clk.last) {
				at = clk.last
			}
			select {
			case s.inq <- chunk{err: err, at: at}:
			case <-s.closing:
			}
			return
		}
	}
}

// Read implements net.Conn.
func (s *shapedConn) Read(p []byte) (int, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	for len(s.pending) == 0 {
		if s.rerr != nil {
			return 0, s.rerr
		}
		if closed(s.closing) {
			return 0, net.ErrClosed
		}
		if closed(s.rdl.wait()) {
			return 0, os.ErrDeadlineExceeded
		}
		if s.head == nil {
			select {
			case c := <-s.inq:
				s.head = &c
			case <-s.closing:
				return 0, net.ErrClosed
			case <-s.rdl.wait():
				return 0, os.ErrDeadlineExceeded
			}
		}
		if err := s.waitUntil(s.head.at, len(s.inq) == 0, s.rdl); err != nil {
			return 0, err
		}
		c := s.head
		s.head = nil
		if c.err != nil {
			s.rerr = c.err
			continue
		}
		s.pending = c.data
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

// Close implements net.Conn. Like a socket's close, it returns at once
// and what was written is still delivered, in the background (waiting at
// most closeDrain past the last delivery time), before the underlying
// connection closes: a writer that gives up on a slow link is not held
// until its bytes have crossed it.
func (s *shapedConn) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing) // wakes a Write sleeping on the uplink
		s.rtimer.close()
		s.wmu.Lock()
		s.wclosed = true
		last := s.wclock.last
		close(s.outq)
		s.wmu.Unlock()
		limit := time.Until(last) + closeDrain
		// A peer that stopped reading must not hold the drain forever.
		_ = s.Conn.SetWriteDeadline(time.Now().Add(limit))
		go func() {
			timer := time.NewTimer(limit)
			defer timer.Stop()
			select {
			case <-s.outDone:
			case <-timer.C:
			}
			s.Conn.Close()
		}()
	})
	return nil
}

// SetDeadline implements net.Conn.
func (s *shapedConn) SetDeadline(t time.Time) error {
	s.rdl.set(t)
	s.wdl.set(t)
	return nil
}

// SetReadDeadline implements net.Conn.
func (s *shapedConn) SetReadDeadline(t time.Time) error {
	s.rdl.set(t)
	return nil
}

// SetWriteDeadline implements net.Conn. It bounds how long Write waits for
// the emulated link; bytes already queued are delivered regardless.
func (s *shapedConn) SetWriteDeadline(t time.Time) error {
	s.wdl.set(t)
	return nil
}
