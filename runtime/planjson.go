package runtime

import (
	"math"

	"tracr/planner"
)

// LinkJSON is a link as tracr writes it in JSON: Mbit/s and milliseconds.
type LinkJSON struct {
	UpMbit   float64 `json:"up_mbit"`
	DownMbit float64 `json:"down_mbit"`
	RTTms    float64 `json:"rtt_ms"`
}

// NewLinkJSON converts l.
func NewLinkJSON(l planner.Link) LinkJSON {
	return LinkJSON{UpMbit: l.Up / 1e6, DownMbit: l.Down / 1e6, RTTms: msf(l.RTT)}
}

// PlanJSON is one ranked plan with its cost terms in milliseconds, as
// `tracr plan --json` and run.json write it.
type PlanJSON struct {
	Plan     string  `json:"plan"`
	Cut      int     `json:"cut"`
	Codec    string  `json:"codec,omitempty"`
	Bytes    int64   `json:"bytes"`
	EdgeMs   float64 `json:"edge_ms"`
	EncodeMs float64 `json:"encode_ms"`
	UpMs     float64 `json:"up_ms"`
	ServerMs float64 `json:"server_ms"`
	DecodeMs float64 `json:"decode_ms"`
	DownMs   float64 `json:"down_ms"`
	RTTMs    float64 `json:"rtt_ms"`
	TotalMs  float64 `json:"total_ms"`
	Feasible bool    `json:"feasible"`
	Reason   string  `json:"reason,omitempty"`
}

// BreakpointJSON is one row of the bandwidth breakpoint table.
type BreakpointJSON struct {
	FromMbit float64 `json:"from_mbit"`
	ToMbit   float64 `json:"to_mbit"` // -1: unbounded
	Plan     string  `json:"plan"`
	Codec    string  `json:"codec,omitempty"`
}

// TableJSON returns p's ranked plans and its breakpoint table as JSON rows.
func (p *Planned) TableJSON() ([]PlanJSON, []BreakpointJSON) {
	var plans []PlanJSON
	for _, pl := range p.Ranked {
		b := pl.Breakdown
		plans = append(plans, PlanJSON{Plan: pl.Candidate.Name(), Cut: pl.Candidate.Cut, Codec: pl.Encoding.Codec,
			Bytes: pl.Encoding.Bytes, EdgeMs: msf(b.Edge), EncodeMs: msf(b.Encode), UpMs: msf(b.Up), ServerMs: msf(b.Server),
			DecodeMs: msf(b.Decode), DownMs: msf(b.Down), RTTMs: msf(b.RTT), TotalMs: msf(b.Total), Feasible: pl.Feasible, Reason: pl.Reason})
	}
	var bps []BreakpointJSON
	for _, iv := range p.Breakpoints {
		to := iv.To / 1e6
		if math.IsInf(iv.To, 1) {
			to = -1
		}
		bps = append(bps, BreakpointJSON{FromMbit: iv.From / 1e6, ToMbit: to, Plan: iv.Plan.Candidate.Name(), Codec: iv.Plan.Encoding.Codec})
	}
	return plans, bps
}
