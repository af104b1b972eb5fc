package experiments

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Row is one measurement, a single request: a row of sweep.csv.
type Row struct {
	Model   string
	ImgSize int
	// Link is the preset's name, the link spec, or "trace:<name>"; Up and
	// Down (bits per second) and RTT are the link in force.
	Link     string
	Up, Down float64
	RTT      time.Duration
	// Codec is the grid's codec choice ("auto" or a codec); Encoding what
	// the plan actually sent.
	Codec    string
	Strategy Strategy
	// Plan is the candidate's name ("cut 12", "edge-only",
	// "server-only (raw)", "server-only (jpeg)"); Cut its cut ID.
	Plan     string
	Cut      int
	Encoding string
	// Repeat numbers the measurements of one plan in a cell from 0 (the
	// request number in a trace run).
	Repeat  int
	BytesUp int64
	// Predicted is the planner's total; UpTerm and DownTerm its transfer
	// terms (bytes over the link's rate).
	Predicted        time.Duration
	UpTerm, DownTerm time.Duration
	// Measured is the request's end-to-end time, Edge and Server the
	// compute on each side (all zero when Skipped).
	Measured, Edge, Server time.Duration
	// Start is when the request started since the trace run began (trace
	// runs only).
	Start time.Duration
	// Skipped says why the row was not measured; empty when it was.
	Skipped string
	// ServerName names the server that ran the tails (as
	// runtime.Server.Name gives it); EdgeCPU is the kernel CPU limit in
	// cores the edge ran under (0: none).
	ServerName string
	EdgeCPU    float64
	// EdgeProfileAge and ServerProfileAge are how old the profiles the
	// model was planned from were when it was planned (0 for profiles
	// measured then), EdgeRepeats and ServerRepeats their timed runs per
	// measurement.
	EdgeProfileAge, ServerProfileAge time.Duration
	EdgeRepeats, ServerRepeats       int
}

// Columns is sweep.csv's header. Times are milliseconds, rates Mbit/s,
// sizes bytes.
var Columns = []string{"model", "img_size", "link", "up_mbit", "down_mbit", "rtt_ms", "codec", "strategy", "plan", "cut",
	"encoding", "repeat", "bytes_up", "predicted_ms", "up_ms", "down_ms", "measured_ms", "edge_ms", "server_ms", "start_ms", "skipped",
	"server", "edge_cpu", "edge_profile_age_s", "edge_profile_repeats", "server_profile_age_s", "server_profile_repeats"}

// key identifies a row for --resume.
type key struct {
	model    string
	img      int
	link     string
	codec    string
	strategy Strategy
	plan     string
	repeat   int
}

func (r Row) key() key {
	return key{r.Model, r.ImgSize, r.Link, r.Codec, r.Strategy, r.Plan, r.Repeat}
}

// IsMeasured reports whether the row holds a measurement.
func (r Row) IsMeasured() bool { return r.Skipped == "" }

func msText(d time.Duration) string { return strconv.FormatFloat(d.Seconds()*1e3, 'f', 3, 64) }

func secText(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 0, 64) }

func mbitText(bps float64) string { return strconv.FormatFloat(bps/1e6, 'g', 6, 64) }

func (r Row) record() []string {
	measured, edge, server, start := "", "", "", ""
	if r.IsMeasured() {
		measured, edge, server = msText(r.Measured), msText(r.Edge), msText(r.Server)
	}
	if r.Strategy == Adaptive {
		start = msText(r.Start)
	}
	return []string{r.Model, strconv.Itoa(r.ImgSize), r.Link, mbitText(r.Up), mbitText(r.Down), msText(r.RTT), r.Codec,
		string(r.Strategy), r.Plan, strconv.Itoa(r.Cut), r.Encoding, strconv.Itoa(r.Repeat), strconv.FormatInt(r.BytesUp, 10),
		msText(r.Predicted), msText(r.UpTerm), msText(r.DownTerm), measured, edge, server, start, oneLine(r.Skipped),
		oneLine(r.ServerName), strconv.FormatFloat(r.EdgeCPU, 'g', 6, 64), secText(r.EdgeProfileAge), strconv.Itoa(r.EdgeRepeats),
		secText(r.ServerProfileAge), strconv.Itoa(r.ServerRepeats)}
}

// oneLine keeps a message on one line, so that every CSV record is one
// line of text (resume relies on it).
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// parseRow reads one CSV record.
func parseRow(f []string) (Row, error) {
	if len(f) != len(Columns) {
		return Row{}, fmt.Errorf("%d fields, want %d", len(f), len(Columns))
	}
	var r Row
	var errs []error
	num := func(i int) float64 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			errs = append(errs, fmt.Errorf("%s %q: not a number", Columns[i], f[i]))
		}
		return v
	}
	integer := func(i int) int64 {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: not an integer", Columns[i], f[i]))
		}
		return v
	}
	ms := func(i int) time.Duration {
		if f[i] == "" {
			return 0
		}
		return time.Duration(num(i) * float64(time.Millisecond))
	}
	r.Model, r.ImgSize, r.Link = f[0], int(integer(1)), f[2]
	r.Up, r.Down, r.RTT = num(3)*1e6, num(4)*1e6, ms(5)
	r.Codec, r.Strategy, r.Plan, r.Cut, r.Encoding = f[6], Strategy(f[7]), f[8], int(integer(9)), f[10]
	r.Repeat, r.BytesUp = int(integer(11)), integer(12)
	r.Predicted, r.UpTerm, r.DownTerm = ms(13), ms(14), ms(15)
	r.Measured, r.Edge, r.Server, r.Start = ms(16), ms(17), ms(18), ms(19)
	r.Skipped = f[20]
	r.ServerName, r.EdgeCPU = f[21], num(22)
	r.EdgeProfileAge, r.EdgeRepeats = time.Duration(num(23)*float64(time.Second)), int(integer(24))
	r.ServerProfileAge, r.ServerRepeats = time.Duration(num(25)*float64(time.Second)), int(integer(26))
	if r.Skipped == "" && f[16] == "" {
		errs = append(errs, errors.New("measured_ms is empty but skipped gives no reason"))
	}
	return r, errors.Join(errs...)
}

// ReadRows reads a sweep.csv. A last line cut short (the process killed
// while writing it) is ignored; any other bad line is an error naming it.
func ReadRows(path string) ([]Row, error) {
	rows, _, err := readRows(path)
	return rows, err
}

// readRows also returns the length of the file's complete lines.
func readRows(path string) ([]Row, int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("read rows: %w", err)
	}
	whole := data[:bytes.LastIndexByte(data, '\n')+1]
	cr := csv.NewReader(bytes.NewReader(whole))
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err == io.EOF {
		return nil, 0, fmt.Errorf("%s: empty file, want the header %s", path, strings.Join(Columns, ","))
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%s:1: %w", path, err)
	}
	if !slices.Equal(header, Columns) {
		return nil, 0, fmt.Errorf("%s:1: header %s is not tracr sweep's (%s)", path, strings.Join(header, ","), strings.Join(Columns, ","))
	}
	var rows []Row
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", path, err)
		}
		r, err := parseRow(rec)
		if err != nil {
			return nil, 0, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		rows = append(rows, r)
	}
	return rows, int64(len(whole)), nil
}

// Writer appends rows to sweep.csv, flushing each one, so the file is valid
// whenever the sweep stops.
type Writer struct {
	f *os.File
	w *csv.Writer
}

// CreateCSV creates path (which must not exist) and writes the header.
func CreateCSV(path string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("sweep csv: %w", err)
	}
	w := &Writer{f: f, w: csv.NewWriter(f)}
	if err := w.write(Columns); err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

// AppendCSV opens an existing sweep.csv to add rows, and returns the rows
// it holds. A last line cut short is removed first.
func AppendCSV(path string) (*Writer, []Row, error) {
	rows, n, err := readRows(path)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("sweep csv: %w", err)
	}
	if err := f.Truncate(n); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("sweep csv: %w", err)
	}
	if _, err := f.Seek(n, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("sweep csv: %w", err)
	}
	return &Writer{f: f, w: csv.NewWriter(f)}, rows, nil
}

func (w *Writer) write(rec []string) error {
	if err := w.w.Write(rec); err != nil {
		return fmt.Errorf("sweep csv %s: %w", w.f.Name(), err)
	}
	w.w.Flush()
	if err := w.w.Error(); err != nil {
		return fmt.Errorf("sweep csv %s: %w", w.f.Name(), err)
	}
	return nil
}

// Write appends one row and flushes it.
func (w *Writer) Write(r Row) error { return w.write(r.record()) }

// Close syncs and closes the file.
func (w *Writer) Close() error {
	w.w.Flush()
	serr := w.f.Sync()
	cerr := w.f.Close()
	if err := errors.Join(w.w.Error(), serr, cerr); err != nil {
		return fmt.Errorf("sweep csv: %w", err)
	}
	return nil
}
