// Package planner decides where to cut a model. It is pure: profiles, a link
// and the candidate cuts go in, ranked plans come out, with no I/O, clocks or
// goroutines. The cost model (DESIGN.md) for a cut c sent with codec k is
//
//	T(c,k) = edge(c) + enc(c,k) + rtt/2 + bytes(c,k)/up + server(c) + dec(c,k) + result/down + rtt/2
//
// Rank evaluates it for every candidate; MinCut searches every
// predecessor-closed node set of a DAG; Breakpoints computes the bandwidths
// at which the best candidate changes; Replanner (replan.go) turns live
// observations into switch decisions.
package planner

import (
	"fmt"
	"math"
	"sort"
	"time"

	"tracr/bitrate"
)

// Link is the network between edge and server as the planner sees it.
type Link struct {
	// Up and Down are bandwidths in bits per second; 0 means no link.
	Up, Down float64
	RTT      time.Duration
}

// Kind says what a candidate sends.
type Kind int

// The kinds of candidate. Every model has one EdgeOnly, one ServerRaw and
// optionally one ServerJPEG candidate besides its cuts.
const (
	// KindCut splits the model at a cut: the head's outputs travel.
	KindCut Kind = iota
	// KindEdgeOnly runs the whole model on the edge; nothing travels.
	KindEdgeOnly
	// KindServerRaw sends the raw input tensor and runs everything on the
	// server.
	KindServerRaw
	// KindServerJPEG sends the input image JPEG-compressed.
	KindServerJPEG
)

func (k Kind) String() string {
	switch k {
	case KindCut:
		return "cut"
	case KindEdgeOnly:
		return "edge-only"
	case KindServerRaw:
		return "server-only (raw)"
	case KindServerJPEG:
		return "server-only (jpeg)"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Encoding is one way to send a candidate's crossing tensors: a codec with
// the bytes it produced on sample data and what encoding and decoding cost.
type Encoding struct {
	Codec          string
	Bytes          int64
	Encode, Decode time.Duration
	Lossy          bool
}

// Candidate is one way to run the model, with measured costs.
type Candidate struct {
	Kind Kind
	// Cut is the cut ID for KindCut, 0 for server-only and the number of
	// nodes for edge-only, so that candidates sort along the model.
	Cut int
	// Edge is the edge's compute (head, or the whole model for EdgeOnly);
	// Server the server's (tail, or the whole model for server-only).
	Edge, Server time.Duration
	// EdgeSpread and ServerSpread are how far Edge and Server move between
	// measurements (p90 - median of their profile timings), 0 if unknown:
	// the noise that says when two plans are tied (see Tied).
	EdgeSpread, ServerSpread time.Duration
	// Encodings lists the codecs measured for what crosses. A KindEdgeOnly
	// candidate has none.
	Encodings []Encoding
	// ResultBytes is what the server returns (post-processed result).
	ResultBytes int64
	// EdgeMemory is the edge's memory for this candidate (weights and
	// activations of the head), 0 if unknown.
	EdgeMemory int64
}

// Name returns a short label: "cut 12", "edge-only", ...
func (c Candidate) Name() string {
	if c.Kind == KindCut {
		return fmt.Sprintf("cut %d", c.Cut)
	}
	return c.Kind.String()
}

// Objective is what the planner minimises.
type Objective int

const (
	// Latency minimises the end-to-end time of one request.
	Latency Objective = iota
	// Throughput minimises the slowest pipeline stage (edge, link,
	// server), which bounds requests per second when requests overlap.
	Throughput
)

// ParseObjective reads "latency" or "throughput".
func ParseObjective(s string) (Objective, error) {
	switch s {
	case "latency", "":
		return Latency, nil
	case "throughput":
		return Throughput, nil
	}
	return 0, fmt.Errorf("unknown objective %q (want latency or throughput)", s)
}

func (o Objective) String() string {
	if o == Throughput {
		return "throughput"
	}
	return "latency"
}

// Problem is one planning question.
type Problem struct {
	Candidates []Candidate
	Link       Link
	Objective  Objective
	// AllowLossy admits lossy encodings (fp16, int8, jpeg); by default only
	// lossless ones are considered.
	AllowLossy bool
	// MaxEdgeMemory and MaxBytes are constraints; 0 means none.
	MaxEdgeMemory int64
	MaxBytes      int64
}

// Breakdown is a plan's predicted time, term by term.
type Breakdown struct {
	Edge, Encode, Up, Server, Decode, Down time.Duration
	// RTT is the round-trip latency paid once per request (0 for
	// edge-only).
	RTT   time.Duration
	Total time.Duration
}

// Plan is a candidate evaluated on a link with its best encoding.
type Plan struct {
	Candidate Candidate
	// Encoding is the chosen encoding (zero for edge-only).
	Encoding  Encoding
	Breakdown Breakdown
	// Score is the objective's value: Total for latency, the slowest stage
	// for throughput.
	Score time.Duration
	// Feasible is false when a constraint excludes the plan or the link
	// cannot carry it; Reason says why.
	Feasible bool
	Reason   string
}

// Evaluate prices one candidate with one encoding on a link.
func Evaluate(c Candidate, e Encoding, l Link, obj Objective) Plan {
	p := Plan{Candidate: c, Encoding: e, Feasible: true}
	b := Breakdown{Edge: c.Edge, Server: c.Server}
	if c.Kind != KindEdgeOnly {
		up, okUp := bitrate.Time(e.Bytes, l.Up)
		down, okDown := bitrate.Time(c.ResultBytes, l.Down)
		if !okUp || !okDown {
			p.Feasible, p.Reason = false, "the link cannot carry it (zero bandwidth)"
		}
		b.Encode, b.Decode, b.Up, b.Down, b.RTT = e.Encode, e.Decode, up, down, l.RTT
	}
	b.Total = b.Edge + b.Encode + b.Up + b.Server + b.Decode + b.Down + b.RTT
	p.Breakdown = b
	p.Score = b.Total
	if obj == Throughput {
		p.Score = max(b.Edge+b.Encode, b.Up+b.Down, b.Decode+b.Server)
	}
	if !p.Feasible {
		p.Score = time.Duration(math.MaxInt64)
	}
	return p
}

// Rank evaluates every candidate with its best admissible encoding and
// returns them best first. Infeasible plans come last, with a reason. Ties
// break towards fewer bytes, then the lower cut, so the order is total and
// the same on every machine.
func Rank(p Problem) []Plan {
	plans := make([]Plan, 0, len(p.Candidates))
	for _, c := range p.Candidates {
		plans = append(plans, best(c, p))
	}
	sort.SliceStable(plans, func(i, j int) bool { return less(plans[i], plans[j]) })
	return plans
}

func less(a, b Plan) bool {
	if a.Feasible != b.Feasible {
		return a.Feasible
	}
	if a.Score != b.Score {
		return a.Score < b.Score
	}
	if a.Encoding.Bytes != b.Encoding.Bytes {
		return a.Encoding.Bytes < b.Encoding.Bytes
	}
	if a.Candidate.Cut != b.Candidate.Cut {
		return a.Candidate.Cut < b.Candidate.Cut
	}
	return a.Candidate.Kind < b.Candidate.Kind
}

// best picks the candidate's best admissible encoding under the problem's
// constraints.
func best(c Candidate, p Problem) Plan {
	if p.MaxEdgeMemory > 0 && c.EdgeMemory > p.MaxEdgeMemory {
		pl := Evaluate(c, Encoding{}, p.Link, p.Objective)
		pl.Feasible, pl.Score = false, time.Duration(math.MaxInt64)
		pl.Reason = fmt.Sprintf("needs %d bytes of edge memory, over the %d cap", c.EdgeMemory, p.MaxEdgeMemory)
		return pl
	}
	if c.Kind == KindEdgeOnly {
		return Evaluate(c, Encoding{}, p.Link, p.Objective)
	}
	var chosen Plan
	found := false
	reason := "no encoding measured"
	for _, e := range c.Encodings {
		if e.Lossy && !p.AllowLossy {
			reason = "only lossy encodings, and lossy codecs are not allowed"
			continue
		}
		if p.MaxBytes > 0 && e.Bytes > p.MaxBytes {
			reason = fmt.Sprintf("sends %d bytes, over the %d cap", e.Bytes, p.MaxBytes)
			continue
		}
		pl := Evaluate(c, e, p.Link, p.Objective)
		if !found || less(pl, chosen) {
			chosen, found = pl, true
		}
	}
	if !found {
		pl := Evaluate(c, Encoding{}, p.Link, p.Objective)
		pl.Feasible, pl.Score, pl.Reason = false, time.Duration(math.MaxInt64), reason
		return pl
	}
	return chosen
}
