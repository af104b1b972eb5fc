package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseLink(t *testing.T) {
	cases := []struct {
		in   string
		want Link
		err  string
	}{
		{"up=10mbit,down=50mbit,rtt=20ms", Link{Up: 10e6, Down: 50e6, RTT: 20 * time.Millisecond}, ""},
		{" UP = 1.5Gbit , rtt=500us ", Link{Up: 1.5e9, RTT: 500 * time.Microsecond}, ""},
		{"down=200kbps", Link{Down: 200e3}, ""},
		{"up=10mbps,down=10mbit/s", Link{Up: 10e6, Down: 10e6}, ""},
		{"up=64bit,down=2gbps,rtt=1s", Link{Up: 64, Down: 2e9, RTT: time.Second}, ""},
		{"up=0,rtt=0", Link{}, ""},
		{"", Link{}, ""},
		{"rtt=1.5ms", Link{RTT: 1500 * time.Microsecond}, ""},
		{"up=10", Link{}, "up: rate \"10\": missing unit"},
		{"up=10MB", Link{}, `up: rate "10MB": unknown unit "mb"`},
		{"up=-1mbit", Link{}, "up: rate"},
		{"up=fastmbit", Link{}, "up: rate"},
		{"rtt=20", Link{}, `rtt: rtt "20": missing unit`},
		{"rtt=-5ms", Link{}, "rtt: rtt"},
		{"rtt=soon", Link{}, "rtt: rtt"},
		{"latency=20ms", Link{}, `unknown key "latency"`},
		{"up=1mbit,up=2mbit", Link{}, "key up given twice"},
		{"up", Link{}, `"up" is not key=value`},
	}
	for _, c := range cases {
		got, err := ParseLink(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseLink(%q) = %v, %v; want error with %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseLink(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			continue
		}
		back, err := ParseLink(got.String())
		if err != nil || back != got {
			t.Errorf("%+v -> %q -> %+v, %v", got, got.String(), back, err)
		}
	}
	if s := (Link{Up: 10e6, Down: 1.5e9, RTT: 20 * time.Millisecond}).String(); s != "up=10mbit,down=1.5gbit,rtt=20ms" {
		t.Errorf("String = %q", s)
	}
}

// emulated reports whether got is what an emulated delay of want allows:
// never early (the emulation's guarantee; early is a fraction of a
// millisecond of slack for sleepAhead and clock reads), and below twice
// want, the figure of a delay paid twice or a rate halved. The upper bound
// is loose on purpose: how late a wake-up comes is this machine's load,
// not the emulation (BenchmarkShapeLateness measures it).
func emulated(got, want, early time.Duration) bool {
	return got >= want-early && got < 2*want-want/4
}

// shapedPair returns a loopback TCP connection whose client end is shaped
// as the edge.
func shapedPair(t testing.TB, l Link) (edge net.Conn, server net.Conn, state *LinkState) {
	t.Helper()
	c, s := tcpPair(t)
	state = NewLinkState(l)
	edge = Shape(c, state, EdgeSide)
	t.Cleanup(func() { edge.Close() })
	return edge, s, state
}

// pingRTT measures one 1-byte ping/pong over the shaped edge.
func pingRTT(t *testing.T, edge, server net.Conn) time.Duration {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		b := make([]byte, 1)
		if _, err := io.ReadFull(server, b); err != nil {
			errc <- err
			return
		}
		_, err := server.Write(b)
		errc <- err
	}()
	start := time.Now()
	if _, err := edge.Write([]byte{7}); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(edge, b); err != nil {
		t.Fatal(err)
	}
	rtt := time.Since(start)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if b[0] != 7 {
		t.Fatalf("pong %d", b[0])
	}
	return rtt
}

// TestShapeUplink sends 1 MB over up=10mbit,rtt=20ms: 0.8 s of
// serialisation plus 10 ms of one-way delay, then pings.
func TestShapeUplink(t *testing.T) {
	edge, server, _ := shapedPair(t, Link{Up: 10e6, RTT: 20 * time.Millisecond})
	const n = 1_000_000
	data := bytes.Repeat([]byte("0123456789abcdef"), n/16)
	got := make(chan time.Time, 1)
	recv := make([]byte, n)
	go func() {
		if _, err := io.ReadFull(server, recv); err != nil {
			t.Error(err)
		}
		got <- time.Now()
	}()
	start := time.Now()
	if _, err := edge.Write(data); err != nil {
		t.Fatal(err)
	}
	wrote := time.Since(start)
	took := (<-got).Sub(start)
	want := 800*time.Millisecond + 10*time.Millisecond
	t.Logf("1 MB up: Write returned after %v, received after %v (want %v)", wrote, took, want)
	if !emulated(took, want, time.Millisecond) {
		t.Errorf("1 MB at 10 Mbit/s with 20 ms RTT took %v, want %v (never less, under 1.75x)", took, want)
	}
	if !emulated(wrote, 800*time.Millisecond, time.Millisecond) {
		t.Errorf("Write returned after %v, want the 800ms of serialisation (never less, under 1.75x)", wrote)
	}
	if !bytes.Equal(recv, data) {
		t.Error("the bytes changed on the way")
	}
	bestPing(t, edge, server, 20*time.Millisecond)
}

// bestPing checks that none of three pings beat the emulated round trip
// want and that the fastest is under 1.75x want (see emulated). The
// minimum discards a scheduler hiccup on a busy machine without hiding a
// wrong delay, which would shift all three.
func bestPing(t *testing.T, edge, server net.Conn, want time.Duration) {
	t.Helper()
	best := time.Duration(math.MaxInt64)
	for range 3 {
		rtt := pingRTT(t, edge, server)
		if rtt < want-want/20 {
			t.Errorf("ping took %v, faster than the emulated %v", rtt, want)
		}
		best = min(best, rtt)
	}
	t.Logf("best ping %v (want %v)", best, want)
	if !emulated(best, want, want/20) {
		t.Errorf("fastest of three pings took %v, want %v (under 1.75x)", best, want)
	}
}

// TestShapeDownlink sends 500 kB from the server over down=20mbit,rtt=10ms.
func TestShapeDownlink(t *testing.T) {
	edge, server, _ := shapedPair(t, Link{Up: 1e6, Down: 20e6, RTT: 10 * time.Millisecond})
	const n = 500_000
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i * 31)
	}
	start := time.Now()
	go func() {
		if _, err := server.Write(data); err != nil {
			t.Error(err)
		}
	}()
	recv := make([]byte, n)
	if _, err := io.ReadFull(edge, recv); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	want := 200*time.Millisecond + 5*time.Millisecond
	t.Logf("500 kB down took %v (want %v)", took, want)
	if !emulated(took, want, time.Millisecond) {
		t.Errorf("500 kB at 20 Mbit/s took %v, want %v (never less, under 1.75x)", took, want)
	}
	if !bytes.Equal(recv, data) {
		t.Error("the bytes changed on the way")
	}
}

// TestShapePipelines checks the delay is paid once per message, not once
// per write in sequence: messages written 5 ms apart over a 60 ms RTT
// arrive 5 ms apart, 30 ms after they were sent.
func TestShapePipelines(t *testing.T) {
	edge, server, _ := shapedPair(t, Link{RTT: 60 * time.Millisecond})
	const n = 10
	sent := make([]time.Time, n)
	arrived := make(chan time.Time, n)
	go func() {
		b := make([]byte, 100)
		for range n {
			if _, err := io.ReadFull(server, b); err != nil {
				t.Error(err)
				return
			}
			arrived <- time.Now()
		}
	}()
	msg := make([]byte, 100)
	for i := range n {
		sent[i] = time.Now()
		if _, err := edge.Write(msg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	delays := make([]time.Duration, n)
	for i := range n {
		delays[i] = (<-arrived).Sub(sent[i])
		if delays[i] < 30*time.Millisecond-time.Millisecond {
			t.Errorf("message %d arrived %v after it was sent, before the 30ms one-way delay", i, delays[i])
		}
	}
	// Had each write waited for the one before, message i would arrive
	// after (i+1)*30ms, 30ms+25ms*i after it was sent: the median 155ms,
	// the last 255ms. Pipelined, every one takes 30ms; the median (not the
	// worst, which one scheduling hiccup decides) under 1.75x of that.
	slices.Sort(delays)
	if med := delays[n/2]; !emulated(med, 30*time.Millisecond, time.Millisecond) {
		t.Errorf("one-way delays %v: median %v, want about 30ms (under 1.75x)", delays, med)
	}
}

// TestShapeLinkChange: a new link applies to the next bytes.
func TestShapeLinkChange(t *testing.T) {
	edge, server, state := shapedPair(t, Link{RTT: 10 * time.Millisecond})
	bestPing(t, edge, server, 10*time.Millisecond)
	state.Set(Link{RTT: 50 * time.Millisecond})
	bestPing(t, edge, server, 50*time.Millisecond)
	if got := state.Get(); got.RTT != 50*time.Millisecond {
		t.Errorf("Get = %+v", got)
	}
}

func TestShapeDeadlinesAndClose(t *testing.T) {
	edge, server, _ := shapedPair(t, Link{RTT: 20 * time.Millisecond})
	// A read with nothing to read times out like a net.Conn.
	edge.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	start := time.Now()
	_, err := edge.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
	// Not before the deadline; the upper bound only catches a deadline
	// ignored (the read would block until the test's timeout).
	if d := time.Since(start); d < 30*time.Millisecond-time.Millisecond || d > 5*time.Second {
		t.Errorf("timed out after %v, want 30ms", d)
	}
	// Data that arrives within the deadline is read (pingRTT fails on the
	// deadline's error), and not before the 20ms round trip.
	edge.SetReadDeadline(time.Now().Add(5 * time.Second))
	if rtt := pingRTT(t, edge, server); rtt < 19*time.Millisecond {
		t.Errorf("ping %v, faster than the emulated 20ms", rtt)
	}
	edge.SetReadDeadline(time.Time{})

	// Bytes written just before Close still arrive, then EOF.
	msg := []byte("last words")
	if _, err := edge.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := edge.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(server)
	if err != nil || !bytes.Equal(got, msg) {
		t.Errorf("server read %q, %v; want %q then EOF", got, err, msg)
	}
	if _, err := edge.Write(msg); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
	if _, err := edge.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
}

// TestShapePeerClose: the server's data, then its EOF, reach the edge in
// order, both delayed.
func TestShapePeerClose(t *testing.T) {
	edge, server, _ := shapedPair(t, Link{Down: 8e6, RTT: 20 * time.Millisecond})
	data := bytes.Repeat([]byte{1, 2, 3, 4}, 10_000) // 40 kB: 40 ms at 8 Mbit/s
	start := time.Now()
	if _, err := server.Write(data); err != nil {
		t.Fatal(err)
	}
	server.Close()
	got, err := io.ReadAll(edge)
	took := time.Since(start)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if !emulated(took, 50*time.Millisecond, time.Millisecond) {
		t.Errorf("40 kB then EOF took %v, want 50ms (never less, under 1.75x)", took)
	}
}

// TestShapeServerSide: the same link seen from the server swaps the rates.
func TestShapeServerSide(t *testing.T) {
	c, s := tcpPair(t)
	state := NewLinkState(Link{Up: 1e6, Down: 80e6})
	srv := Shape(s, state, ServerSide)
	defer srv.Close()
	data := make([]byte, 200_000) // 20 ms down at 80 Mbit/s, 1.6 s up at 1 Mbit/s
	start := time.Now()
	go srv.Write(data)
	if _, err := io.ReadFull(c, make([]byte, len(data))); err != nil {
		t.Fatal(err)
	}
	// Not under the downlink's 20ms; the uplink's 1.6s would be far over
	// the loose bound.
	if took := time.Since(start); took < 20*time.Millisecond-time.Millisecond || took > 400*time.Millisecond {
		t.Errorf("200 kB server->edge took %v, want 20ms (the downlink; the uplink would take 1.6s)", took)
	}
}

func TestParseTrace(t *testing.T) {
	good := "# a drive through a tunnel\nseconds,up,down,rtt\n0,10,50,20\n1.5, 2mbit, 8mbit, 80ms\n\n3,0,0,5.5\n"
	tr, err := ParseTrace(strings.NewReader(good), "drive.csv")
	if err != nil {
		t.Fatal(err)
	}
	want := Trace{
		{0, Link{Up: 10e6, Down: 50e6, RTT: 20 * time.Millisecond}},
		{1500 * time.Millisecond, Link{Up: 2e6, Down: 8e6, RTT: 80 * time.Millisecond}},
		{3 * time.Second, Link{RTT: 5500 * time.Microsecond}},
	}
	if len(tr) != len(want) {
		t.Fatalf("trace %+v", tr)
	}
	for i := range want {
		if tr[i] != want[i] {
			t.Errorf("step %d = %+v, want %+v", i, tr[i], want[i])
		}
	}
	for _, c := range []struct {
		at   time.Duration
		want Link
	}{{-time.Second, want[0].Link}, {0, want[0].Link}, {1499 * time.Millisecond, want[0].Link}, {1500 * time.Millisecond, want[1].Link}, {time.Hour, want[2].Link}} {
		if got := tr.At(c.at); got != c.want {
			t.Errorf("At(%v) = %+v, want %+v", c.at, got, c.want)
		}
	}
	if tr.Duration() != 3*time.Second {
		t.Errorf("Duration = %v", tr.Duration())
	}

	bad := []struct{ in, want string }{
		{"0,10,50\n", "t.csv:1: 3 fields"},
		{"seconds,up,down\n", "t.csv:1: header has 3 columns"},
		{"seconds,up,rtt,down\n", `t.csv:1: header column 3 is "rtt"`},
		{"0,10,50,20\n0,10,50,20\n", "t.csv:2: time 0s is not after"},
		{"0,10,50,20\n\n-1,1,1,1\n", "t.csv:3: seconds"},
		{"0,ten,50,20\n", "t.csv:1: up: rate"},
		{"0,10,5MB,20\n", `t.csv:1: down: rate "5MB": unknown unit`},
		{"0,10,50,soon\n", "t.csv:1: rtt"},
		{"0,10,50,-3\n", "t.csv:1: rtt"},
		{"# nothing\n", "t.csv: link trace has no steps"},
	}
	for _, c := range bad {
		_, err := ParseTrace(strings.NewReader(c.in), "t.csv")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseTrace(%q) = %v, want error with %q", c.in, err, c.want)
		}
	}

	path := filepath.Join(t.TempDir(), "trace.csv")
	if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	if tr, err := LoadTrace(path); err != nil || len(tr) != 3 {
		t.Errorf("LoadTrace = %v, %v", tr, err)
	}
	if _, err := LoadTrace(filepath.Join(t.TempDir(), "missing.csv")); err == nil || !strings.Contains(err.Error(), "missing.csv") {
		t.Errorf("LoadTrace of a missing file: %v", err)
	}
}

func TestTracePlay(t *testing.T) {
	tr := Trace{
		{0, Link{RTT: 1 * time.Millisecond}},
		{40 * time.Millisecond, Link{RTT: 2 * time.Millisecond}},
		{80 * time.Millisecond, Link{RTT: 3 * time.Millisecond}},
	}
	state := new(LinkState)
	start := time.Now()
	done := make(chan struct{})
	go func() {
		tr.Play(context.Background(), state, start)
		close(done)
	}()
	var seen []time.Duration
	observe := func() {
		rtt := state.Get().RTT
		if len(seen) == 0 || seen[len(seen)-1] != rtt {
			seen = append(seen, rtt)
			if rtt != 0 {
				at := time.Since(start)
				want := tr[int(rtt/time.Millisecond)-1].At
				// Seen after it applies: never before its step; and
				// before the next step (40ms on), else a late Play would
				// have skipped it.
				if at < want || at >= want+40*time.Millisecond {
					t.Errorf("RTT %v applied at %v, want %v", rtt, at, want)
				}
			}
		}
	}
	for {
		observe()
		select {
		case <-done:
			observe()
			if got := state.Get(); got != tr[2].Link || time.Since(start) < 80*time.Millisecond {
				t.Errorf("after Play: %+v at %v", got, time.Since(start))
			}
			if !slices.Contains(seen, 2*time.Millisecond) || seen[len(seen)-1] != 3*time.Millisecond {
				t.Errorf("saw RTTs %v, want 1ms, 2ms, 3ms in turn", seen)
			}
			return
		case <-time.After(time.Millisecond):
		}
	}
}

func TestTracePlayCancel(t *testing.T) {
	tr := Trace{{0, Link{Up: 1e6}}, {time.Hour, Link{Up: 2e6}}}
	state := new(LinkState)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	tr.Play(ctx, state, start)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Play returned %v after its context ended", d)
	}
	if state.Get().Up != 1e6 {
		t.Errorf("state %+v, want the first step", state.Get())
	}
	// A start in the past applies the step in force at once.
	state2 := new(LinkState)
	Trace{{0, Link{Up: 1}}, {time.Millisecond, Link{Up: 2}}}.Play(context.Background(), state2, time.Now().Add(-time.Second))
	if state2.Get().Up != 2 {
		t.Errorf("late Play left %+v", state2.Get())
	}
}

func ExampleParseLink() {
	l, err := ParseLink("up=10mbps, down=0.05gbit, rtt=20ms")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(l)
	fmt.Println(l.Up, l.Down, l.RTT)
	// Output:
	// up=10mbit,down=50mbit,rtt=20ms
	// 1e+07 5e+07 20ms
}

// roundTripLateness runs n round trips of an 80 kB request up at 18.88
// Mbit/s and a 1 kB answer down, rtt 10 ms, 20 ms apart, and returns how
// late each was against the emulated link's own figures, sorted, and that
// figure.
func roundTripLateness(tb testing.TB, n int) (late []time.Duration, want time.Duration) {
	tb.Helper()
	l := Link{Up: 18.88e6, Down: 54.97e6, RTT: 10 * time.Millisecond}
	edge, server, _ := shapedPair(tb, l)
	const up, down = 80_000, 1000
	go func() {
		req := make([]byte, up)
		ans := make([]byte, down)
		for {
			if _, err := io.ReadFull(server, req); err != nil {
				return
			}
			if _, err := server.Write(ans); err != nil {
				return
			}
		}
	}()
	req := make([]byte, up)
	ans := make([]byte, down)
	want = l.RTT + time.Duration(float64(up*8)/l.Up*1e9) + time.Duration(float64(down*8)/l.Down*1e9)
	for range n {
		start := time.Now()
		if _, err := edge.Write(req); err != nil {
			tb.Fatal(err)
		}
		if _, err := io.ReadFull(edge, ans); err != nil {
			tb.Fatal(err)
		}
		late = append(late, time.Since(start)-want)
		time.Sleep(20 * time.Millisecond)
	}
	slices.Sort(late)
	return late, want
}

// TestShapeLateness checks the emulated link against its own figures over
// 30 round trips (see roundTripLateness): never early, and the median
// round trip under 1.75x the emulated one, which a delay paid twice (a
// whole RTT each way) or a rate halved would exceed. How late it is
// depends on this machine's load, so the figure itself is
// BenchmarkShapeLateness's.
func TestShapeLateness(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 2 s")
	}
	late, want := roundTripLateness(t, 30)
	t.Logf("round trip late by p25 %v, median %v, p90 %v (emulated %v)", late[len(late)/4], late[len(late)/2], late[len(late)*9/10], want)
	if late[0] < -100*time.Microsecond {
		t.Errorf("a round trip took %v less than the emulated %v", -late[0], want)
	}
	if med := want + late[len(late)/2]; !emulated(med, want, 100*time.Microsecond) {
		t.Errorf("median round trip %v, want the emulated %v (under 1.75x)", med, want)
	}
}

// BenchmarkShapeLateness reports how late the emulated link delivers the
// end of a message (see roundTripLateness), 30 round trips per iteration:
// the lower quartile and median in ms. With Go's timers alone (they wait a
// whole millisecond once under one) the quartile was 1.0-1.1 ms on an
// idle machine, with a kernel timer 0.24-0.34 ms. The quartile, not the
// median, so that a loaded machine's scheduling hiccups do not decide it.
func BenchmarkShapeLateness(b *testing.B) {
	var p25, med time.Duration
	for b.Loop() {
		late, _ := roundTripLateness(b, 30)
		p25 += late[len(late)/4]
		med += late[len(late)/2]
	}
	b.ReportMetric(float64(p25)/float64(b.N)/1e6, "p25-late-ms")
	b.ReportMetric(float64(med)/float64(b.N)/1e6, "median-late-ms")
}
