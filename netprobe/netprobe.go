// Package netprobe measures the link between the edge and the server over
// the same SSH channel the data uses: the round-trip time (median of
// pings), and the upload and download bandwidth from timed bulk transfers
// of several sizes, fitted as t = a + bytes/b so that the fixed cost of a
// transfer (a, about one round trip) does not bias the rate (b). An
// Estimator does the same passively, from the transfers a run makes anyway.
package netprobe

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"gonum.org/v1/gonum/stat"

	"tracr/bitrate"
	"tracr/quantile"
)

// Conn is the connection probed; *transport.Client implements it.
type Conn interface {
	// Ping does one request-reply round trip and returns its time.
	Ping(ctx context.Context) (time.Duration, error)
	// Upload sends payload to the server and returns once the server has
	// acknowledged all of it.
	Upload(ctx context.Context, payload []byte) error
	// Download asks the server for n bytes and returns once they have all
	// arrived.
	Download(ctx context.Context, n int64) error
}

// Options configures Probe. Zero fields take the defaults.
type Options struct {
	// Pings is how many round trips the RTT is the median of; default 10.
	Pings int
	// MinBytes is the first transfer size (default 64 KiB); sizes double
	// from there until a transfer takes Target (default 150ms) or reaches
	// MaxBytes (default 4 MiB). A slow link thus gets small transfers and
	// a fast one large, and the probe takes about the same time on both.
	MinBytes, MaxBytes int64
	Target             time.Duration
	// Repeats is how many times each size is transferred; default 3.
	Repeats int
}

func (o Options) withDefaults() Options {
	if o.Pings <= 0 {
		o.Pings = 10
	}
	if o.MinBytes <= 0 {
		o.MinBytes = 64 << 10
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 4 << 20
	}
	o.MaxBytes = max(o.MaxBytes, o.MinBytes)
	if o.Target <= 0 {
		o.Target = 150 * time.Millisecond
	}
	if o.Repeats <= 0 {
		o.Repeats = 3
	}
	return o
}

// Sample is one timed transfer.
type Sample struct {
	Bytes    int64         `json:"bytes"`
	Duration time.Duration `json:"duration_ns"`
}

// Fit is a straight line t = Overhead + bytes*8/BitsPerSec fitted to
// transfer samples.
type Fit struct {
	// BitsPerSec is the bandwidth (the inverse slope).
	BitsPerSec float64 `json:"bits_per_sec"`
	// Overhead is the fixed time of a transfer (the intercept): one round
	// trip plus per-request costs.
	Overhead time.Duration `json:"overhead_ns"`
	// R2 is the coefficient of determination of the fit.
	R2 float64 `json:"r2"`
	// Direct is set when the times did not grow with size (a link too fast
	// or too noisy for the sizes tried): BitsPerSec is then the largest
	// size over its fastest time, Overhead and R2 are zero.
	Direct bool `json:"direct,omitempty"`
	// Samples is the number of transfers the fit summarises, MinBytes and
	// MaxBytes their smallest and largest size.
	Samples  int   `json:"samples"`
	MinBytes int64 `json:"min_bytes"`
	MaxBytes int64 `json:"max_bytes"`
}

// Time returns the time the fit predicts for a transfer of n bytes (the
// overhead alone for a fit without a rate).
func (f Fit) Time(n int64) time.Duration {
	d, _ := bitrate.Time(n, f.BitsPerSec)
	return f.Overhead + d
}

// FitLine fits t = a + bytes/b to samples by least squares (gonum's
// stat.LinearRegression). It needs at least two distinct sizes and a time
// that grows with size.
func FitLine(samples []Sample) (Fit, error) {
	if len(samples) < 2 {
		return Fit{}, fmt.Errorf("fit: %d samples, need at least 2", len(samples))
	}
	x := make([]float64, len(samples))
	y := make([]float64, len(samples))
	f := Fit{Samples: len(samples), MinBytes: math.MaxInt64}
	for i, s := range samples {
		x[i], y[i] = float64(s.Bytes), s.Duration.Seconds()
		f.MinBytes, f.MaxBytes = min(f.MinBytes, s.Bytes), max(f.MaxBytes, s.Bytes)
	}
	if f.MinBytes == f.MaxBytes {
		return Fit{}, fmt.Errorf("fit: every sample moved %d bytes; need at least two sizes", f.MinBytes)
	}
	alpha, beta := stat.LinearRegression(x, y, nil, false)
	if !(beta > 0) || math.IsInf(beta, 0) {
		return Fit{}, fmt.Errorf("fit: transfer time does not grow with size (%.3g s per MB) over %d..%d bytes; the link is too noisy or too fast for these sizes",
			beta*1e6, f.MinBytes, f.MaxBytes)
	}
	f.BitsPerSec = 8 / beta
	f.Overhead = time.Duration(alpha * float64(time.Second))
	f.R2 = stat.RSquared(x, y, nil, alpha, beta)
	return f, nil
}

// FitFastest fits t = a + bytes/b (FitLine) to the fastest transfer of
// each size. Delays from outside the link (a busy CPU, the scheduler,
// other traffic) only ever add time, so the fastest of a few repeats is
// the best view of the link itself.
func FitFastest(samples []Sample) (Fit, error) {
	fastest := map[int64]time.Duration{}
	for _, s := range samples {
		if d, ok := fastest[s.Bytes]; !ok || s.Duration < d {
			fastest[s.Bytes] = s.Duration
		}
	}
	points := make([]Sample, 0, len(fastest))
	for n, d := range fastest {
		points = append(points, Sample{Bytes: n, Duration: d})
	}
	slices.SortFunc(points, func(a, b Sample) int { return cmp.Compare(a.Bytes, b.Bytes) })
	f, err := FitLine(points)
	f.Samples = len(samples)
	return f, err
}

// fitOrDirect returns FitFastest, or when the times do not grow with size
// the direct rate of the largest transfer (see Fit.Direct).
func fitOrDirect(samples []Sample) (Fit, error) {
	f, err := FitFastest(samples)
	if err == nil || len(samples) == 0 {
		return f, err
	}
	d := Fit{Direct: true, Samples: len(samples), MinBytes: samples[0].Bytes}
	var best time.Duration
	for _, s := range samples {
		d.MinBytes = min(d.MinBytes, s.Bytes)
		if s.Bytes > d.MaxBytes || s.Bytes == d.MaxBytes && s.Duration < best {
			d.MaxBytes, best = s.Bytes, s.Duration
		}
	}
	if best <= 0 {
		return Fit{}, err
	}
	d.BitsPerSec = float64(d.MaxBytes) * 8 / best.Seconds()
	return d, nil
}

// Result is what Probe measured.
type Result struct {
	// RTT is the median round-trip time of the pings in Pings.
	RTT   time.Duration   `json:"rtt_ns"`
	Pings []time.Duration `json:"pings_ns"`
	// Up and Down are the fits (FitFastest) of the upload and download
	// transfers in UpSamples and DownSamples.
	Up          Fit      `json:"up"`
	Down        Fit      `json:"down"`
	UpSamples   []Sample `json:"up_samples"`
	DownSamples []Sample `json:"down_samples"`
}

// Probe measures the RTT and both directions' bandwidth over c. It takes
// about Pings round trips plus 2*Repeats ladders of transfers, a few
// seconds on slow links and well under one on fast ones.
func Probe(ctx context.Context, c Conn, opts Options) (Result, error) {
	opts = opts.withDefaults()
	var r Result
	var err error
	if r.RTT, r.Pings, err = MeasureRTT(ctx, c, opts.Pings); err != nil {
		return Result{}, err
	}
	payload := make([]byte, opts.MaxBytes)
	up := func(ctx context.Context, n int64) error { return c.Upload(ctx, payload[:n]) }
	if r.UpSamples, err = transfers(ctx, up, opts); err != nil {
		return Result{}, fmt.Errorf("probe upload: %w", err)
	}
	if r.Up, err = fitOrDirect(r.UpSamples); err != nil {
		return Result{}, fmt.Errorf("probe upload: %w", err)
	}
	if r.DownSamples, err = transfers(ctx, c.Download, opts); err != nil {
		return Result{}, fmt.Errorf("probe download: %w", err)
	}
	if r.Down, err = fitOrDirect(r.DownSamples); err != nil {
		return Result{}, fmt.Errorf("probe download: %w", err)
	}
	return r, nil
}

// MeasureRTT pings n times, one after the other, and returns the median
// and every time. The first ping is not counted: it may pay for warming up
// the connection.
func MeasureRTT(ctx context.Context, c Conn, n int) (time.Duration, []time.Duration, error) {
	if n <= 0 {
		return 0, nil, errors.New("probe rtt: no pings asked")
	}
	if _, err := c.Ping(ctx); err != nil {
		return 0, nil, fmt.Errorf("probe rtt: %w", err)
	}
	times := make([]time.Duration, n)
	for i := range times {
		d, err := c.Ping(ctx)
		if err != nil {
			return 0, nil, fmt.Errorf("probe rtt: %w", err)
		}
		times[i] = d
	}
	return quantile.MedianDuration(times), times, nil
}

// transfers times transfers of a ladder of sizes, Repeats times over. The
// ladder doubles from MinBytes until a transfer takes Target (and has at
// least three sizes) or reaches MaxBytes; when even the first takes Target,
// two smaller sizes are added instead so the fit has a slope to find. One
// unrecorded transfer warms up first.
func transfers(ctx context.Context, move func(context.Context, int64) error, opts Options) ([]Sample, error) {
	timed := func(n int64) (Sample, error) {
		start := time.Now()
		if err := move(ctx, n); err != nil {
			return Sample{}, err
		}
		return Sample{Bytes: n, Duration: time.Since(start)}, nil
	}
	if _, err := timed(opts.MinBytes); err != nil {
		return nil, err
	}
	var samples []Sample
	var ladder []int64
	for n := opts.MinBytes; ; n *= 2 {
		n = min(n, opts.MaxBytes)
		s, err := timed(n)
		if err != nil {
			return nil, err
		}
		samples = append(samples, s)
		ladder = append(ladder, n)
		// A fast first transfer means the link is not slow: climb to at
		// least three sizes, so one delayed transfer cannot end the
		// ladder early.
		if n >= opts.MaxBytes || s.Duration >= opts.Target && (len(ladder) == 1 || len(ladder) >= 3) {
			break
		}
	}
	if len(ladder) == 1 {
		for _, n := range []int64{max(opts.MinBytes/4, 1), max(opts.MinBytes/2, 2)} {
			s, err := timed(n)
			if err != nil {
				return nil, err
			}
			samples = append(samples, s)
			ladder = append(ladder, n)
		}
	}
	for range opts.Repeats - 1 {
		for _, n := range ladder {
			s, err := timed(n)
			if err != nil {
				return nil, err
			}
			samples = append(samples, s)
		}
	}
	return samples, nil
}
