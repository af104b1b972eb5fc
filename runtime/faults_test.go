package runtime

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"tracr/engine"
	"tracr/planner"
	"tracr/transport"
	"tracr/zoo"
)

// TestExecuteSlowLink slows the emulated link 100x for three seconds in
// the middle of a run: every input still has exactly one row, none fails
// or falls back (a slow link is not a lost server), and the rows sent
// while it was slow show it. TestExecuteServerLost covers a server killed
// and restarted, and the transport tests hostile frames.
func TestExecuteSlowLink(t *testing.T) {
	requireORT(t)
	ctx := context.Background()
	fast := transport.Link{Up: 200e6, Down: 200e6, RTT: time.Millisecond}
	slow := transport.Link{Up: fast.Up / 100, Down: fast.Down / 100, RTT: 100 * fast.RTT}
	last := nodeCount(t, "yolov8n", 160)
	p := handPlanned(t, "yolov8n", 160, engine.Options{Threads: 1}, planner.Link(fast), 22, last)
	state := transport.NewLinkState(fast)
	lb := startLoopback(t, state)
	const n, slowAt, window = 24, 6, 3 * time.Second
	restored := make(chan struct{})
	ds := hookDataset{zoo.Synthetic(n, 200, 150, 4), func(i int) {
		if i == slowAt {
			state.Set(slow)
			time.AfterFunc(window, func() { state.Set(fast); close(restored) })
		}
	}}
	csvPath := filepath.Join(t.TempDir(), "run.csv")
	rw, err := CreateRecords(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Execute(ctx, ExecOptions{Planned: p, Plan: planFor(t, p, 22), Dataset: ds, Dial: lb.Dial, Records: rw,
		Link: func() planner.Link { return planner.Link(state.Get()) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}
	<-restored
	checkRows(t, out, n, csvPath)
	var slowRows, fastTotals []time.Duration
	for _, r := range out.Records {
		if r.Error != "" || r.Fallback || r.Result == "" {
			t.Errorf("request %d: %+v", r.ID, r)
		}
		if r.LinkUp == slow.Up {
			slowRows = append(slowRows, r.Total)
		} else {
			fastTotals = append(fastTotals, r.Total)
		}
	}
	if len(slowRows) == 0 || len(fastTotals) == 0 {
		t.Fatalf("%d rows on the slow link, %d on the fast one: want both", len(slowRows), len(fastTotals))
	}
	slices.Sort(fastTotals)
	if slowest := slices.Max(slowRows); slowest < 5*fastTotals[len(fastTotals)/2] {
		t.Errorf("slowest request on the slow link %v, median on the fast one %v: the slowdown did not show", slowest, fastTotals[len(fastTotals)/2])
	}
	t.Logf("%d rows on the slow link (slowest %v), fast median %v", len(slowRows), slices.Max(slowRows), fastTotals[len(fastTotals)/2])
}

// TestCreateRecordsUnwritable checks that a records file that cannot be
// created is an error naming it, and leaves nothing behind. A folder
// below a regular file stands in for a read-only folder, which root (as
// CI runs) could still write.
func TestCreateRecordsUnwritable(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(file, "run.csv"), filepath.Join(dir, "missing", "run.csv")} {
		rw, err := CreateRecords(path)
		if err == nil {
			rw.Close()
			t.Errorf("CreateRecords(%s) succeeded", path)
			continue
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("error %q does not name %s", err, path)
		}
		if _, err := os.Stat(path); err == nil {
			t.Errorf("%s exists after the failure", path)
		}
	}
}
