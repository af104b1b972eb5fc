package transport

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// TraceStep is one row of a link trace: from At (since the start of the
// trace) the link is Link.
type TraceStep struct {
	At   time.Duration
	Link Link
}

// Trace is a time-varying link: steps in increasing time order, each in
// force until the next.
type Trace []TraceStep

// LoadTrace reads a link trace file; see ParseTrace for the format.
func LoadTrace(path string) (Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load link trace: %w", err)
	}
	defer f.Close()
	return ParseTrace(f, path)
}

// ParseTrace reads a link trace in CSV: one row per step,
// "seconds,up,down,rtt", with an optional header row and blank lines and
// #-comments ignored. seconds is when the step starts (increasing, from
// 0); up and down are rates as ParseRate reads them ("50mbit"), or plain
// numbers meaning Mbit/s, with 0 unlimited; rtt is a duration ("20ms") or a
// plain number of milliseconds. Errors name the file (name) and line.
func ParseTrace(r io.Reader, name string) (Trace, error) {
	var t Trace
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Split(text, ",")
		for i := range fields {
			fields[i] = strings.TrimSpace(fields[i])
		}
		if len(t) == 0 && strings.EqualFold(fields[0], "seconds") {
			if err := checkTraceHeader(fields); err != nil {
				return nil, fmt.Errorf("%s:%d: %w", name, line, err)
			}
			continue
		}
		step, err := parseTraceRow(fields)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if len(t) > 0 && step.At <= t[len(t)-1].At {
			return nil, fmt.Errorf("%s:%d: time %s is not after the previous step's %s", name, line, step.At, t[len(t)-1].At)
		}
		t = append(t, step)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, line+1, err)
	}
	if len(t) == 0 {
		return nil, fmt.Errorf("%s: link trace has no steps (want rows seconds,up,down,rtt)", name)
	}
	return t, nil
}

var traceColumns = []string{"seconds", "up", "down", "rtt"}

func checkTraceHeader(fields []string) error {
	if len(fields) != len(traceColumns) {
		return fmt.Errorf("header has %d columns, want %s", len(fields), strings.Join(traceColumns, ","))
	}
	for i, f := range fields {
		if !strings.EqualFold(f, traceColumns[i]) {
			return fmt.Errorf("header column %d is %q, want %q", i+1, f, traceColumns[i])
		}
	}
	return nil
}

func parseTraceRow(fields []string) (TraceStep, error) {
	if len(fields) != len(traceColumns) {
		return TraceStep{}, fmt.Errorf("%d fields, want 4 (seconds,up,down,rtt)", len(fields))
	}
	secs, err := strconv.ParseFloat(fields[0], 64)
	if err != nil || !(secs >= 0) || secs > 1e9 {
		return TraceStep{}, fmt.Errorf("seconds %q: want a non-negative number", fields[0])
	}
	var step TraceStep
	step.At = time.Duration(secs * float64(time.Second))
	if step.Link.Up, err = traceRate(fields[1]); err != nil {
		return TraceStep{}, fmt.Errorf("up: %w", err)
	}
	if step.Link.Down, err = traceRate(fields[2]); err != nil {
		return TraceStep{}, fmt.Errorf("down: %w", err)
	}
	if step.Link.RTT, err = traceRTT(fields[3]); err != nil {
		return TraceStep{}, fmt.Errorf("rtt: %w", err)
	}
	return step, nil
}

// traceRate reads a rate with a unit, or a plain number of Mbit/s.
func traceRate(s string) (float64, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if !(f >= 0) || f > 1e9 {
			return 0, fmt.Errorf("rate %q: want a non-negative number of Mbit/s", s)
		}
		return f * 1e6, nil
	}
	return ParseRate(s)
}

// traceRTT reads a duration, or a plain number of milliseconds.
func traceRTT(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if !(f >= 0) || f > 1e9 {
			return 0, fmt.Errorf("rtt %q: want a non-negative number of milliseconds", s)
		}
		return time.Duration(f * float64(time.Millisecond)), nil
	}
	return parseRTT(s)
}

// At returns the link in force d after the start: the last step at or
// before d, or the first step before it starts.
func (t Trace) At(d time.Duration) Link {
	if len(t) == 0 {
		return Link{}
	}
	l := t[0].Link
	for _, s := range t {
		if s.At > d {
			break
		}
		l = s.Link
	}
	return l
}

// Duration returns when the last step starts.
func (t Trace) Duration() time.Duration {
	if len(t) == 0 {
		return 0
	}
	return t[len(t)-1].At
}

// Play sets state to each step's link at start + its time, until the last
// step or until ctx is done. Steps already due are applied at once (the
// latest one wins).
func (t Trace) Play(ctx context.Context, state *LinkState, start time.Time) {
	if len(t) == 0 {
		return
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	state.Set(t.At(time.Since(start)))
	for _, s := range t {
		d := time.Until(start.Add(s.At))
		if d <= 0 {
			continue // covered by the At above or an earlier step
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			state.Set(s.Link)
		}
	}
}
