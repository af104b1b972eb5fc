package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"tracr/planner"
	tr "tracr/runtime"
	"tracr/transport"
	"tracr/zoo"
)

// SoakOptions configures Soak.
type SoakOptions struct {
	// Clients edge pipelines run for Duration against one loopback server.
	Clients  int
	Duration time.Duration
	// Slow, when set, is how long the link is slowed 100x, a third of the
	// way in.
	Slow time.Duration
	Log  io.Writer
}

// ClientLoad is one edge client's outcome in a soak.
type ClientLoad struct {
	Client           int
	Requests, Errors int
	Fallback         int
	Median, P90      time.Duration
}

// SoakResult is a soak run's outcome.
type SoakResult struct {
	Model   string
	Plan    string
	Clients []ClientLoad
	// PeakRSS is the process's peak resident memory (VmHWM), in bytes:
	// edge sessions, server and link emulation together.
	PeakRSS int64
	// Errors counts failed and fallen-back requests over all clients.
	Errors int
	Took   time.Duration
}

// soakLink is the link of a soak: fast enough that compute dominates;
// slowed 100x during SoakOptions.Slow.
var soakLink = transport.Link{Up: 100e6, Down: 100e6, RTT: 2 * time.Millisecond}

// Soak runs opts.Clients edge pipelines (each its own connection and
// sessions, one request in flight) against one loopback server for
// opts.Duration, at YOLOv8n@160's best split cut. With opts.Slow set, the
// link is slowed 100x for that long a third of the way in. Every request
// must produce a row; failed or fallen-back ones are counted as errors.
func Soak(ctx context.Context, opts SoakOptions) (*SoakResult, error) {
	if opts.Clients <= 0 || opts.Duration <= 0 {
		return nil, errors.New("soak: want clients > 0 and a duration")
	}
	b := &bencher{opts: Options{Quick: true, Log: opts.Log}, report: &Report{}, repeats: 3}
	tb, err := b.newTestbed(ctx, regime{})
	if err != nil {
		return nil, err
	}
	defer tb.close()
	m := model{"yolov8n", 160}
	p, err := b.plan(ctx, tb, m, false)
	if err != nil {
		return nil, fmt.Errorf("plan %s: %w", m, err)
	}
	p.Reprice(planner.Link(soakLink))
	var pl planner.Plan
	for _, r := range p.Ranked {
		if r.Feasible && r.Candidate.Kind == planner.KindCut {
			pl = r
			break
		}
	}
	if pl.Candidate.Kind != planner.KindCut {
		return nil, fmt.Errorf("soak: %s has no feasible split cut", m)
	}
	tb.state.Set(soakLink)
	res := &SoakResult{Model: m.String(), Plan: pl.Candidate.Name() + " " + pl.Encoding.Codec, Clients: make([]ClientLoad, opts.Clients)}
	start := time.Now()
	runCtx, cancel := context.WithTimeout(ctx, opts.Duration)
	defer cancel()
	if opts.Slow > 0 {
		go func() {
			select {
			case <-time.After(opts.Duration / 3):
			case <-runCtx.Done():
				return
			}
			b.logf("link slowed 100x for %v", opts.Slow)
			tb.state.Set(transport.Link{Up: soakLink.Up / 100, Down: soakLink.Down / 100, RTT: soakLink.RTT * 100})
			select {
			case <-time.After(opts.Slow):
			case <-runCtx.Done():
			}
			tb.state.Set(soakLink)
			b.logf("link restored")
		}()
	}
	var wg sync.WaitGroup
	errs := make([]error, opts.Clients)
	for i := range opts.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := tb.srv.Dial(ctx)
			if err != nil {
				errs[i] = err
				return
			}
			out, err := tr.Execute(runCtx, tr.ExecOptions{Planned: p, Plan: pl, InFlight: 1, Client: c, Dial: tb.srv.Dial,
				Dataset: syntheticLoop(i), Link: func() planner.Link { return planner.Link(tb.state.Get()) }, Grace: time.Minute})
			if err != nil {
				errs[i] = fmt.Errorf("client %d: %w", i, err)
				return
			}
			cl := ClientLoad{Client: i, Requests: len(out.Records)}
			for _, r := range out.Records {
				if r.Error != "" {
					cl.Errors++
				}
				if r.Fallback {
					cl.Fallback++
				}
			}
			s := tr.Summarize(out.Records, out.Wall)
			cl.Median, cl.P90 = s.MedianTotal, s.P90Total
			res.Clients[i] = cl
		}()
	}
	wg.Wait()
	res.Took = time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, c := range res.Clients {
		res.Errors += c.Errors + c.Fallback
	}
	res.PeakRSS, err = peakRSS()
	return res, err
}

// syntheticLoop is a dataset long enough for any soak.
func syntheticLoop(seed int) zoo.Dataset { return zoo.Synthetic(1<<20, 320, 240, uint64(seed)) }

// peakRSS reads the process's peak resident set size from /proc.
func peakRSS() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("peak RSS: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("peak RSS: %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("peak RSS: no VmHWM in /proc/self/status")
}

// Print writes the soak's outcome.
func (r *SoakResult) Print(w io.Writer) {
	fmt.Fprintf(w, "soak: %d clients, %s at %s, %.0f s, peak RSS %.0f MiB, %d errors\n", len(r.Clients), r.Model, r.Plan, r.Took.Seconds(), float64(r.PeakRSS)/(1<<20), r.Errors)
	fmt.Fprintf(w, "%-6s %8s %6s %8s %10s %10s\n", "client", "requests", "errors", "fallback", "median_ms", "p90_ms")
	for _, c := range r.Clients {
		fmt.Fprintf(w, "%-6d %8d %6d %8d %10.1f %10.1f\n", c.Client, c.Requests, c.Errors, c.Fallback, msf(c.Median), msf(c.P90))
	}
}
