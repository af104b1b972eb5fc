package experiments

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

// cellRows builds the rows of one cell: plan -> measured ms per repeat
// (negative: skipped over the budget).
func cellRows(link string, up float64, plans []struct {
	st       Strategy
	plan     string
	pred     float64
	measured []float64
}) []Row {
	var out []Row
	for _, p := range plans {
		for i, m := range p.measured {
			r := Row{Model: "m", ImgSize: 32, Link: link, Up: up, Down: up, RTT: 10 * time.Millisecond, Codec: AutoCodec,
				Strategy: p.st, Plan: p.plan, Encoding: "raw", Repeat: i, Predicted: dur(p.pred)}
			if p.plan == "edge-only" {
				r.Encoding = ""
			}
			if m < 0 {
				r.Skipped = "predicted 99.0 s, over the 30 s budget (max_request_seconds)"
			} else {
				r.Measured, r.Edge = dur(m), dur(m/2)
			}
			out = append(out, r)
		}
	}
	return out
}

func dur(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

type planRows = []struct {
	st       Strategy
	plan     string
	pred     float64
	measured []float64
}

func TestSummarize(t *testing.T) {
	fast := cellRows("wifi", 18.88e6, planRows{
		{EdgeOnly, "edge-only", 10, []float64{10, 12, 11}},
		{ServerRaw, "server-only (raw)", 99000, []float64{-1, -1, -1}},
		{Planned, "cut 5", 8, []float64{9, 9.5, 30}},
		{CutStrategy, "cut 5", 8, []float64{9, 9.5, 30}},
		{CutStrategy, "cut 3", 9, []float64{7, 8, 8}},
	})
	slow := cellRows("3g", 1.1e6, planRows{
		{EdgeOnly, "edge-only", 10, []float64{10, 10, 10}},
		{Planned, "edge-only", 10, []float64{10, 10, 10}},
	})
	trace := []Row{
		{Model: "m", ImgSize: 32, Link: "trace:t", Codec: AutoCodec, Strategy: Adaptive, Plan: "edge-only", Repeat: 0, Predicted: dur(10), Measured: dur(10)},
		{Model: "m", ImgSize: 32, Link: "trace:t", Codec: AutoCodec, Strategy: Adaptive, Plan: "cut 5", Repeat: 1, Predicted: dur(10), Measured: dur(20)},
		{Model: "m", ImgSize: 32, Link: "trace:t", Codec: AutoCodec, Strategy: Adaptive, Plan: "cut 5", Repeat: 2, Predicted: dur(10), Measured: dur(40)},
		{Model: "m", ImgSize: 32, Link: "trace:t", Codec: AutoCodec, Strategy: Adaptive, Plan: "edge-only", Repeat: 3, Skipped: "error: lost"},
	}
	s := Summarize(append(append(fast, slow...), trace...))
	if s.Rows != 25 || s.Skipped != 4 || s.Measured != 21 {
		t.Errorf("rows %d, skipped %d, measured %d", s.Rows, s.Skipped, s.Measured)
	}
	if len(s.Cells) != 2 || len(s.Traces) != 1 {
		t.Fatalf("%d cells, %d traces", len(s.Cells), len(s.Traces))
	}
	c := s.Cells[0]
	if c.Link != "wifi" || c.Planned == nil || c.Planned.Measured != dur(9.5) {
		t.Fatalf("planned %+v", c.Planned)
	}
	if c.Oracle == nil || c.Oracle.Plan != "cut 3" || c.Oracle.Measured != dur(8) {
		t.Errorf("oracle %+v, want cut 3 at 8 ms", c.Oracle)
	}
	if want := 9.5 / 8; math.Abs(c.Regret-want) > 1e-9 {
		t.Errorf("regret %v, want %v", c.Regret, want)
	}
	if c.ServerRaw == nil || c.ServerRaw.N != 0 || c.ServerRaw.Skipped != 3 {
		t.Errorf("server raw %+v", c.ServerRaw)
	}
	if got := speedupCell(c.EdgeOnly, c.Planned); got != "1.16x" { // 11 / 9.5
		t.Errorf("speedup vs edge-only %s", got)
	}
	if got := speedupCell(c.ServerRaw, c.Planned); got != "~10421x" { // predicted 99 s / 9.5 ms
		t.Errorf("speedup vs skipped server raw %s", got)
	}
	if got := len(distinct(c)); got != 3 { // edge-only, cut 3, cut 5 (planned and cut share it)
		t.Errorf("%d distinct measured plans, want 3", got)
	}
	if s.Cells[1].Regret != 1 || s.Cells[1].Link != "3g" {
		t.Errorf("slow cell %s regret %v, want 3g and 1", s.Cells[1].Link, s.Cells[1].Regret)
	}
	tr := s.Traces[0]
	if tr.Requests != 4 || tr.Failed != 1 || tr.Switches != 1 || tr.Median != dur(20) || tr.P90 != dur(40) {
		t.Errorf("trace %+v", tr)
	}
	if len(tr.Plans) != 2 || tr.Plans[0].N != 2 {
		t.Errorf("trace plans %+v", tr.Plans)
	}
	l3g, _ := ParseLinkSpec("3g")
	wifi, _ := ParseLinkSpec("wifi")
	s.Order(&Spec{Models: []ModelSpec{{Name: "m"}}, Links: []LinkSpec{l3g, wifi}, Codecs: []CodecChoice{{Name: AutoCodec}}})
	if s.Cells[0].Link != "3g" || s.Cells[1].Link != "wifi" {
		t.Errorf("ordered as the spec lists links: %s, %s", s.Cells[0].Link, s.Cells[1].Link)
	}
	var b bytes.Buffer
	s.WriteMarkdown(&b, nil)
	md := b.String()
	for _, want := range []string{"| m@32 | wifi | auto | cut 5 raw | 8.00 | 9.50 | -16% | cut 3 raw | 8.00 | 1.19 | 11.0 | ~99000 (pred.) |",
		"## Adaptive runs on traces", "| predicted over the budget (max_request_seconds) | 3 |", "| error: lost | 1 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("summary.md lacks %q:\n%s", want, md)
		}
	}
}

func TestStages(t *testing.T) {
	// 30 ms measured: 5 edge + 5 server leaves 20 to share between up
	// (predicted 10 + rtt/2 5 = 15) and down (0 + 5): 15 and 5.
	p := PlanStat{Plan: "cut 3", Measured: dur(30), Edge: dur(5), Server: dur(5), UpTerm: dur(10)}
	e, u, s, d := stages(p, dur(10))
	if e != 5 || s != 5 || math.Abs(u-15) > 1e-9 || math.Abs(d-5) > 1e-9 {
		t.Errorf("stages %v %v %v %v", e, u, s, d)
	}
	// Edge-only: whatever is not the model counts as edge.
	e, u, s, d = stages(PlanStat{Plan: "edge-only", Measured: dur(12), Edge: dur(10)}, dur(10))
	if e != 12 || u != 0 || s != 0 || d != 0 {
		t.Errorf("edge-only stages %v %v %v %v", e, u, s, d)
	}
}

func TestTicks(t *testing.T) {
	var labels []string
	for _, tk := range (logTicks{}).Ticks(0.8, 30) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if got := strings.Join(labels, " "); got != "1 2 5 10 20" {
		t.Errorf("log ticks over 0.8..30: %s", got)
	}
	labels = nil
	for _, tk := range (linTicks{}).Ticks(0, 17.3) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if got := strings.Join(labels, " "); got != "0 5 10 15" {
		t.Errorf("linear ticks over 0..17.3: %s", got)
	}
	if got := (logTicks{}).Ticks(0, 10); got != nil {
		t.Errorf("log ticks over a range from 0: %v", got)
	}
}
