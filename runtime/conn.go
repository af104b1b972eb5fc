package runtime

import (
	"context"
	"fmt"
	"sync"
	"time"

	"tracr/transport"
)

// serverConn is the edge's connection to the server as the pipeline sees
// it: present, or lost and being re-established in the background with
// exponential backoff. Each connection has a generation number, so that
// the failure of a request sent on an old connection does not tear down a
// new one.
type serverConn struct {
	dial  func(ctx context.Context) (*transport.Client, error)
	setup func(ctx context.Context, c *transport.Client) error
	// ctx bounds reconnection attempts; minWait and maxWait the backoff.
	ctx              context.Context
	minWait, maxWait time.Duration
	event            func(kind, msg string)

	mu           sync.Mutex
	client       *transport.Client // nil while lost
	gen          int
	reconnecting bool
	wg           sync.WaitGroup
}

// current returns the connection and its generation, or nil while lost.
func (s *serverConn) current() (*transport.Client, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client, s.gen
}

// fail marks connection gen lost because of err (a no-op when that
// connection was already replaced) and starts reconnecting.
func (s *serverConn) fail(gen int, err error) {
	s.mu.Lock()
	if gen != s.gen || s.client == nil {
		s.mu.Unlock()
		return
	}
	s.client.Close()
	s.client = nil
	s.gen++
	s.startReconnect()
	s.mu.Unlock()
	// Reported outside s.mu: the pipeline asks for the connection while
	// holding its own lock, which the event handler takes.
	s.event("lost", fmt.Sprintf("server lost (%s); running requests on the edge and reconnecting", oneLine(err)))
}

// startReconnect starts the background loop unless it runs; s.mu is held.
func (s *serverConn) startReconnect() {
	if s.dial == nil || s.reconnecting {
		return
	}
	s.reconnecting = true
	s.wg.Add(1)
	go s.reconnect()
}

// reconnect dials until it succeeds or s.ctx ends, waiting minWait after
// the loss and doubling the wait after each failed attempt up to maxWait.
func (s *serverConn) reconnect() {
	defer s.wg.Done()
	wait := s.minWait
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for attempt := 1; ; attempt++ {
		select {
		case <-s.ctx.Done():
			s.mu.Lock()
			s.reconnecting = false
			s.mu.Unlock()
			return
		case <-timer.C:
		}
		c, err := s.dial(s.ctx)
		if err == nil {
			if err = s.setup(s.ctx, c); err != nil {
				c.Close()
			}
		}
		if err == nil {
			s.mu.Lock()
			s.client, s.reconnecting = c, false
			s.gen++
			s.mu.Unlock()
			s.event("reconnected", fmt.Sprintf("server back after %d attempt(s); splitting again", attempt))
			return
		}
		if attempt == 1 || attempt%10 == 0 {
			s.event("reconnect", fmt.Sprintf("reconnect attempt %d failed: %s; retrying with backoff up to %v", attempt, oneLine(err), s.maxWait))
		}
		wait = min(2*wait, s.maxWait)
		timer.Reset(wait)
	}
}

// close stops reconnecting (s.ctx must be done or ending) and closes the
// connection.
func (s *serverConn) close() {
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		s.client.Close()
		s.client = nil
	}
}
