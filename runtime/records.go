package runtime

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"time"

	"tracr/bitrate"
	"tracr/graph"
	"tracr/quantile"
)

// Record is one request's measurements: a row of the run's CSV.
type Record struct {
	ID    int
	Input string
	// Plan is "cut", "edge-only", "server-only (raw)", ...; Cut its cut ID.
	Plan  string
	Cut   int
	Codec string
	// Pre is pre-processing, Edge the head's compute, Encode the codec.
	Pre, Edge, Encode time.Duration
	BytesUp           int64
	// Up is the request's time on the wire and in the server's queue:
	// round trip minus the server's own measured time.
	Up time.Duration
	// Server is the tail's compute and Post the server's post-processing,
	// both measured on the server.
	Server, Post time.Duration
	BytesDown    int64
	Down         time.Duration
	Total        time.Duration
	Predicted    time.Duration
	// Bandwidth is the uplink estimate when the request was planned, in
	// bits per second (0 = none).
	Bandwidth float64
	// Fallback marks a request run edge-only because the server was lost.
	Fallback bool
	Result   string
	// Error is set when the input could not be processed (for example an
	// unreadable image); such a row has no timings.
	Error string
	// Start is when the request's edge compute began, since the run
	// started.
	Start time.Duration
	// Decode is the server's decoding of the request (and encoding of its
	// answer); Queue the time the request waited on the server before it.
	Decode, Queue time.Duration
	// LinkUp and LinkDown (bits per second) and RTT are the link in force
	// when the request was sent: the emulated one when the run emulates a
	// link, else the probed one.
	LinkUp, LinkDown float64
	RTT              time.Duration
	// Rescued marks a request whose answer was late (an adaptive run's
	// rescue, see ExecOptions.NoRescue) and whose result the edge computed
	// first: Plan is still the plan it was sent on, Edge includes the
	// edge's whole-model run and Up is the time waited before it.
	Rescued bool
}

// RecordColumns is the CSV header. Times are milliseconds, sizes bytes,
// bandwidth Mbit/s.
var RecordColumns = []string{"id", "input", "plan", "cut", "codec", "pre_ms", "edge_ms", "encode_ms", "bytes_up", "up_ms",
	"server_ms", "post_ms", "bytes_down", "down_ms", "total_ms", "predicted_total_ms", "bandwidth_mbit", "fallback", "result", "error",
	"start_ms", "decode_ms", "queue_ms", "link_up_mbit", "link_down_mbit", "rtt_ms", "rescued"}

func ms(d time.Duration) string { return strconv.FormatFloat(d.Seconds()*1e3, 'f', 3, 64) }

// mbit formats bits per second as Mbit/s ("inf" for an unlimited link).
func mbit(bps float64) string {
	if math.IsInf(bps, 1) {
		return "inf"
	}
	return strconv.FormatFloat(bps/1e6, 'f', 3, 64)
}

func (r Record) row() []string {
	return []string{strconv.Itoa(r.ID), r.Input, r.Plan, strconv.Itoa(r.Cut), r.Codec, ms(r.Pre), ms(r.Edge), ms(r.Encode),
		strconv.FormatInt(r.BytesUp, 10), ms(r.Up), ms(r.Server), ms(r.Post), strconv.FormatInt(r.BytesDown, 10), ms(r.Down),
		ms(r.Total), ms(r.Predicted), mbit(r.Bandwidth), strconv.FormatBool(r.Fallback), r.Result, r.Error,
		ms(r.Start), ms(r.Decode), ms(r.Queue), mbit(r.LinkUp), mbit(r.LinkDown), ms(r.RTT), strconv.FormatBool(r.Rescued)}
}

// RecordWriter writes records as CSV, flushing each row so that the file is
// valid whenever the run stops.
type RecordWriter struct {
	f   *os.File
	w   *csv.Writer
	all []Record
}

// CreateRecords creates the CSV file (failing if the folder cannot be
// written) and writes the header.
func CreateRecords(path string) (*RecordWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("records: %w", err)
	}
	rw := &RecordWriter{f: f, w: csv.NewWriter(f)}
	if err := rw.write(RecordColumns); err != nil {
		f.Close()
		return nil, err
	}
	return rw, nil
}

func (rw *RecordWriter) write(row []string) error {
	if err := rw.w.Write(row); err != nil {
		return fmt.Errorf("records %s: %w", rw.f.Name(), err)
	}
	rw.w.Flush()
	if err := rw.w.Error(); err != nil {
		return fmt.Errorf("records %s: %w", rw.f.Name(), err)
	}
	return nil
}

// Write appends one record.
func (rw *RecordWriter) Write(r Record) error {
	rw.all = append(rw.all, r)
	return rw.write(r.row())
}

// Records returns what was written so far.
func (rw *RecordWriter) Records() []Record { return rw.all }

// Close syncs and closes the file.
func (rw *RecordWriter) Close() error {
	rw.w.Flush()
	serr := rw.f.Sync()
	cerr := rw.f.Close()
	if serr != nil {
		return fmt.Errorf("records: %w", serr)
	}
	return cerr
}

// Summary condenses a run's records.
type Summary struct {
	Requests, Failed, Fallback int
	// Rescued counts requests the edge answered after the server's
	// answer was late.
	Rescued               int
	MedianTotal, P90Total time.Duration
	MeanTotal             time.Duration
	MedianPredicted       time.Duration
	// PredictionError is the median of |predicted - measured| / measured
	// over rows that carry a prediction.
	PredictionError float64
	// Throughput is requests per second over the run's wall time.
	Throughput float64
	Wall       time.Duration
	// Cuts counts requests per plan label.
	Cuts map[string]int

	// Split counts the requests the server answered (not edge-only, not
	// fallen back). Overhead is the median over them of
	// total - (edge + encode + decode + server + post + bytes_up/link_up + bytes_down/link_down + rtt + queue):
	// the time the runtime adds to the compute the plan prices (head,
	// codec, tail, post-processing) and to what the link itself costs
	// (framing, SSH, scheduling, copies). The server's queue is left out,
	// but with several requests in flight a request may also wait behind
	// another one's transfer, which counts: measure the runtime's own
	// overhead with one request in flight. OverheadShare is the median of
	// overhead/total.
	Split         int
	Overhead      time.Duration
	OverheadShare float64
	// Codec is the median over the same requests of encode + decode (the
	// edge's encoding, the server's decoding and its answer's encoding).
	// OverheadWithCodec and its share count that codec compute as
	// overhead too, as tracr's first figures did.
	Codec                  time.Duration
	OverheadWithCodec      time.Duration
	OverheadWithCodecShare float64
	// Stages is each pipeline stage's mean time per request, over every
	// request that produced a result (0 for a request that skips the
	// stage): read+pre, edge (head or whole model, encoding), link (bytes
	// at the link's rates) and server (decode, tail, post-processing). No
	// pipeline can finish more than 1/max(Stages) requests per second;
	// Efficiency is Throughput times the slowest stage's time (1 = the
	// slowest stage never waits), Bottleneck names it.
	Stages     []Stage
	Bottleneck string
	Efficiency float64
}

// Stage is one pipeline stage's mean time per request.
type Stage struct {
	Name string
	Mean time.Duration
}

// Summarize computes the summary of records over a run that took wall.
func Summarize(records []Record, wall time.Duration) Summary {
	s := Summary{Requests: len(records), Wall: wall, Cuts: map[string]int{}}
	var totals, preds, overheads, codecs, withCodec []time.Duration
	var errs, shares, withCodecShares []float64
	var sum time.Duration
	stages := make([]time.Duration, 4)
	for _, r := range records {
		if r.Error != "" {
			s.Failed++
			continue
		}
		if r.Fallback {
			s.Fallback++
		}
		if r.Rescued {
			s.Rescued++
		}
		s.Cuts[r.PlanName()]++
		totals = append(totals, r.Total)
		sum += r.Total
		if r.Predicted > 0 {
			preds = append(preds, r.Predicted)
			if r.Total > 0 {
				errs = append(errs, math.Abs(float64(r.Predicted-r.Total))/float64(r.Total))
			}
		}
		stages[0] += r.Pre
		stages[1] += r.Edge + r.Encode
		if r.Plan == "edge-only" || r.Fallback || r.Rescued {
			continue
		}
		s.Split++
		up, _ := bitrate.Time(r.BytesUp, r.LinkUp) // 0 for an unlimited or unknown rate
		down, _ := bitrate.Time(r.BytesDown, r.LinkDown)
		link := up + down
		stages[2] += link
		stages[3] += r.Decode + r.Server + r.Post
		codec := r.Encode + r.Decode
		o := r.Total - (r.Edge + codec + r.Server + r.Post + link + r.RTT + r.Queue)
		overheads = append(overheads, o)
		codecs = append(codecs, codec)
		withCodec = append(withCodec, o+codec)
		if r.Total > 0 {
			shares = append(shares, float64(o)/float64(r.Total))
			withCodecShares = append(withCodecShares, float64(o+codec)/float64(r.Total))
		}
	}
	s.MedianTotal, s.P90Total = quantile.MedianDuration(totals), quantile.Duration(totals, 0.9)
	s.MedianPredicted = quantile.MedianDuration(preds)
	s.PredictionError = quantile.Median(errs)
	s.Overhead, s.OverheadShare = quantile.MedianDuration(overheads), quantile.Median(shares)
	s.Codec = quantile.MedianDuration(codecs)
	s.OverheadWithCodec, s.OverheadWithCodecShare = quantile.MedianDuration(withCodec), quantile.Median(withCodecShares)
	if n := len(totals); n > 0 {
		s.MeanTotal = sum / time.Duration(n)
		var slowest time.Duration
		for i, name := range []string{"read+pre", "edge", "link", "server"} {
			st := Stage{Name: name, Mean: stages[i] / time.Duration(n)}
			s.Stages = append(s.Stages, st)
			if st.Mean > slowest {
				slowest, s.Bottleneck = st.Mean, name
			}
		}
		if wall > 0 {
			s.Throughput = float64(n) / wall.Seconds()
			s.Efficiency = s.Throughput * slowest.Seconds()
		}
	}
	return s
}

// PlanName names the plan the request ran on: "cut 12", "edge-only", ...
func (r Record) PlanName() string {
	if r.Plan == "cut" {
		return "cut " + strconv.Itoa(r.Cut)
	}
	return r.Plan
}

// Print writes the summary for people.
func (s Summary) Print(w io.Writer) {
	rescued := ""
	if s.Rescued > 0 {
		rescued = fmt.Sprintf(", %d rescued on the edge after a late answer", s.Rescued)
	}
	fmt.Fprintf(w, "%d requests (%d failed inputs, %d fell back to edge-only%s) in %v: %.2f req/s\n",
		s.Requests, s.Failed, s.Fallback, rescued, s.Wall.Round(time.Millisecond), s.Throughput)
	fmt.Fprintf(w, "latency: median %s ms, p90 %s ms, mean %s ms; predicted median %s ms; median prediction error %.1f%%\n",
		ms(s.MedianTotal), ms(s.P90Total), ms(s.MeanTotal), ms(s.MedianPredicted), 100*s.PredictionError)
	var names []string
	for n := range s.Cuts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-22s %d requests\n", n, s.Cuts[n])
	}
	if s.Split > 0 {
		fmt.Fprintf(w, "overhead (total - compute (edge, codec, server, post) - bytes/bandwidth - rtt - queue, median of %d split requests): %s ms, %.1f%% of total; codec compute %s ms\n",
			s.Split, ms(s.Overhead), 100*s.OverheadShare, ms(s.Codec))
	}
	if len(s.Stages) > 0 {
		fmt.Fprintf(w, "pipeline: stage means")
		for _, st := range s.Stages {
			fmt.Fprintf(w, " %s %s ms", st.Name, ms(st.Mean))
		}
		fmt.Fprintf(w, "; throughput / (1 / slowest stage, %s) = %.2f\n", s.Bottleneck, s.Efficiency)
	}
}

// WriteJSON writes v as indented JSON to path atomically.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return graph.WriteFileAtomic(path, append(b, '\n'))
}
