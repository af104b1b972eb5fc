package experiments

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"tracr/graph"
)

// Plot files, each written as .png and .svg.
const (
	BreakdownPlot = "breakdown"
	BandwidthPlot = "latency-vs-bandwidth"
	RegretPlot    = "regret"
	// TimelinePlot prefixes the trace runs' plots:
	// timeline-<model>-<trace>[-<codec>].
	TimelinePlot = "timeline"
)

// Colours: the breakdown's stages and the strategies, the same in every
// figure.
var (
	colEdge   = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	colUp     = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
	colServer = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
	colDown   = color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}
	colRaw    = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	colJPEG   = color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff}
	colGrey   = color.RGBA{R: 0x60, G: 0x60, B: 0x60, A: 0xff}
	colBlack  = color.RGBA{A: 0xff}
)

// WritePlots draws the summary's figures into dir as PNG and SVG and
// returns the files written: the latency breakdown of every plan measured
// per cell, latency against uplink bandwidth per strategy, the best cut
// against uplink bandwidth (planned beside measured), the planner's
// regret per scenario, and a timeline per trace run. A figure with nothing
// to show is not written.
func WritePlots(dir string, s Summary) ([]string, error) {
	var files []string
	save := func(base string, rows [][]*plot.Plot, w, h vg.Length) error {
		fs, err := saveFigure(filepath.Join(dir, base), rows, w, h)
		files = append(files, fs...)
		return err
	}
	if len(s.Cells) > 0 {
		rows, cols := breakdownFigure(s.Cells)
		if err := save(BreakdownPlot, rows, vg.Length(cols)*3.6*vg.Inch, vg.Length(len(rows))*3.2*vg.Inch); err != nil {
			return files, err
		}
		if rows := bandwidthFigure(s.Cells); len(rows) > 0 {
			if err := save(BandwidthPlot, rows, 6.5*vg.Inch, vg.Length(len(rows))*4*vg.Inch); err != nil {
				return files, err
			}
		}
		if rows := bestCutFigure(s.Cells); len(rows) > 0 {
			if err := save(BestCutPlot, rows, 11*vg.Inch, vg.Length(len(rows))*4*vg.Inch); err != nil {
				return files, err
			}
		}
		if p, n := regretPlot(s.Cells); p != nil {
			if err := save(RegretPlot, [][]*plot.Plot{{p}}, 6.5*vg.Inch, vg.Length(1.6+0.28*float64(n))*vg.Inch); err != nil {
				return files, err
			}
		}
	}
	for _, t := range s.Traces {
		name := fileSafe(fmt.Sprintf("%s-%s-%s", TimelinePlot, filepath.Base(t.Model), t.Trace))
		if t.Codec != AutoCodec {
			name += "-" + fileSafe(t.Codec)
		}
		if err := save(name, timelineFigure(t), 8*vg.Inch, 7*vg.Inch); err != nil {
			return files, err
		}
	}
	return files, nil
}

func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

// saveFigure draws a grid of plots and writes base.png (150 dpi) and
// base.svg atomically.
func saveFigure(base string, rows [][]*plot.Plot, w, h vg.Length) (files []string, err error) {
	// gonum/plot panics on some degenerate inputs (a log axis over
	// nothing positive); the figures guard against those, and this turns
	// any that slips through into an error instead of a crash.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("plot %s: %v", filepath.Base(base), r)
		}
	}()
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(150), vgimg.UseBackgroundColor(color.White))
	drawTiles(rows, draw.New(img))
	var png bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&png); err != nil {
		return nil, fmt.Errorf("plot %s: %w", base, err)
	}
	svg := vgsvg.New(w, h)
	drawTiles(rows, draw.New(svg))
	var sb bytes.Buffer
	if _, err := svg.WriteTo(&sb); err != nil {
		return nil, fmt.Errorf("plot %s: %w", base, err)
	}
	for _, f := range []struct {
		ext  string
		data []byte
	}{{".png", png.Bytes()}, {".svg", sb.Bytes()}} {
		if err := graph.WriteFileAtomic(base+f.ext, f.data); err != nil {
			return files, fmt.Errorf("plot: %w", err)
		}
		files = append(files, base+f.ext)
	}
	return files, nil
}

func drawTiles(rows [][]*plot.Plot, dc draw.Canvas) {
	cols := 0
	for _, r := range rows {
		cols = max(cols, len(r))
	}
	for i := range rows {
		for len(rows[i]) < cols {
			rows[i] = append(rows[i], nil)
		}
	}
	t := draw.Tiles{Rows: len(rows), Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(rows, t, dc)
	for i, r := range rows {
		for j, p := range r {
			if p != nil {
				p.Draw(canvases[i][j])
			}
		}
	}
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(10)
	p.X.Label.Text, p.Y.Label.Text = x, y
	p.X.Label.TextStyle.Font.Size = vg.Points(9)
	p.Y.Label.TextStyle.Font.Size = vg.Points(9)
	p.X.Tick.Label.Font.Size = vg.Points(8)
	p.Y.Tick.Label.Font.Size = vg.Points(8)
	p.Legend.TextStyle.Font.Size = vg.Points(8)
	return p
}

// hGrid is a grid of horizontal lines only (for bars: vertical lines would
// run through them).
func hGrid() *plotter.Grid {
	g := plotter.NewGrid()
	g.Vertical.Color = nil
	return g
}

// linkTitle describes a cell's link: "4g: 5.85/13.8 Mbit/s, 40 ms".
func linkTitle(c CellSummary) string {
	if strings.Contains(c.Link, "=") {
		return fmt.Sprintf("%s/%s Mbit/s, %s ms", mbitShort(c.Up), mbitShort(c.Down), msShort(c.RTT))
	}
	return fmt.Sprintf("%s: %s/%s Mbit/s, %s ms", c.Link, mbitShort(c.Up), mbitShort(c.Down), msShort(c.RTT))
}

func mbitShort(bps float64) string   { return shortNum(bps / 1e6) }
func msShort(d time.Duration) string { return shortNum(ms(d)) }

// shortNum writes v with four significant digits at most and no exponent.
func shortNum(v float64) string {
	if math.Abs(v) >= 1000 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.4g", v)
}

// distinct returns a cell's measured plans once each (strategies that
// chose the same plan share its measurement), in the order edge-only, cuts
// by ID, server-only raw, server-only JPEG.
func distinct(c CellSummary) []PlanStat {
	var out []PlanStat
	seen := map[string]bool{}
	for _, p := range c.Plans {
		if p.N > 0 && !seen[p.Label()] {
			seen[p.Label()] = true
			out = append(out, p)
		}
	}
	rank := func(p PlanStat) int {
		switch p.Plan {
		case "edge-only":
			return -1
		case "server-only (raw)":
			return math.MaxInt32 - 1
		case "server-only (jpeg)":
			return math.MaxInt32
		}
		return p.Cut
	}
	sort.SliceStable(out, func(i, j int) bool { return rank(out[i]) < rank(out[j]) })
	return out
}

// shortPlan is a plan's name for a tick label; terse for a crowded axis.
func shortPlan(p PlanStat, terse bool) string {
	switch {
	case p.Plan == "server-only (raw)" && terse:
		return "raw"
	case p.Plan == "server-only (raw)":
		return "server\nraw"
	case p.Plan == "server-only (jpeg)" && terse:
		return "jpeg"
	case p.Plan == "server-only (jpeg)":
		return "server\nJPEG"
	case p.Plan == "edge-only" && terse:
		return "edge"
	case terse:
		return strings.TrimPrefix(p.Plan, "cut ")
	}
	return p.Plan
}

// stages splits a plan's measured median into edge, up, server and down:
// edge and server are the medians measured on each side; what remains of
// the total (transfers, encoding, framing, SSH) is shared between up and
// down in the ratio of the predicted transfer terms, each with half the
// round trip. For edge-only the remainder (post-processing) counts as edge.
func stages(p PlanStat, rtt time.Duration) (edge, up, server, down float64) {
	edge, server = ms(p.Edge), ms(p.Server)
	rest := math.Max(ms(p.Measured)-edge-server, 0)
	upW, downW := ms(p.UpTerm)+ms(rtt)/2, ms(p.DownTerm)+ms(rtt)/2
	if p.Plan == "edge-only" || upW+downW <= 0 {
		return edge + rest, 0, server, 0
	}
	up = rest * upW / (upW + downW)
	return edge, up, server, rest - up
}

// breakdownFigure draws a stacked bar per plan measured in each cell:
// one row of tiles per model and codec, one column per link.
func breakdownFigure(cells []CellSummary) ([][]*plot.Plot, int) {
	type rowKey struct {
		model string
		img   int
		codec string
	}
	var order []rowKey
	var links []string
	byRow := map[rowKey]map[string]CellSummary{}
	for _, c := range cells {
		k := rowKey{c.Model, c.ImgSize, c.Codec}
		if byRow[k] == nil {
			byRow[k] = map[string]CellSummary{}
			order = append(order, k)
		}
		byRow[k][c.Link] = c
		if !contains(links, c.Link) {
			links = append(links, c.Link)
		}
	}
	var out [][]*plot.Plot
	for i, k := range order {
		var row []*plot.Plot
		for j, l := range links {
			c, ok := byRow[k][l]
			if !ok {
				row = append(row, nil)
				continue
			}
			row = append(row, breakdownPlot(c, i == 0 && j == 0))
		}
		out = append(out, row)
	}
	return out, len(links)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func breakdownPlot(c CellSummary, legend bool) *plot.Plot {
	title := fmt.Sprintf("%s@%d, %s", filepath.Base(c.Model), c.ImgSize, linkTitle(c))
	if c.Codec != AutoCodec {
		title += ", " + c.Codec
	}
	p := newPlot(title, "", "latency (ms)")
	p.Add(hGrid())
	plans := distinct(c)
	skipped := 0
	for _, pl := range c.Plans {
		if pl.N == 0 {
			skipped++
		}
	}
	switch {
	case skipped == 1:
		p.Title.Text += "\n(1 plan not run: see summary.md)"
	case skipped > 1:
		p.Title.Text += fmt.Sprintf("\n(%d plans not run: see summary.md)", skipped)
	}
	if len(plans) == 0 {
		p.HideAxes()
		return p
	}
	vals := make([]plotter.Values, 4)
	var names []string
	var top plotter.XYLabels
	for i, pl := range plans {
		e, u, s, d := stages(pl, c.RTT)
		for k, v := range []float64{e, u, s, d} {
			vals[k] = append(vals[k], v)
		}
		name := shortPlan(pl, len(plans) > 8)
		var marks []string
		if c.Planned != nil && c.Planned.Label() == pl.Label() {
			marks = append(marks, "planned")
		}
		if c.Oracle != nil && c.Oracle.Label() == pl.Label() {
			marks = append(marks, "best")
		}
		if len(marks) > 0 {
			name += "\n(" + strings.Join(marks, ", ") + ")"
		}

		names = append(names, name)
		top.XYs = append(top.XYs, plotter.XY{X: float64(i), Y: ms(pl.Measured)})
		top.Labels = append(top.Labels, msCell(pl.Measured))
	}
	width := vg.Points(math.Min(22, 180/float64(len(plans))))
	var prev *plotter.BarChart
	for k, name := range []string{"edge", "up", "server", "down"} {
		b, err := plotter.NewBarChart(vals[k], width)
		if err != nil {
			continue
		}
		b.Color = []color.Color{colEdge, colUp, colServer, colDown}[k]
		b.LineStyle.Width = 0
		if prev != nil {
			b.StackOn(prev)
		}
		prev = b
		p.Add(b)
		if legend {
			p.Legend.Add(name, b)
		}
	}
	if l, err := plotter.NewLabels(top); err == nil {
		for i := range l.TextStyle {
			l.TextStyle[i].Font.Size = vg.Points(7)
			l.TextStyle[i].XAlign = draw.XCenter
		}
		l.Offset = vg.Point{Y: vg.Points(2)}
		p.Add(l)
	}
	p.NominalX(names...)
	p.X.Tick.Label.Font.Size = vg.Points(7)
	if len(plans) > 8 {
		p.X.Label.Text = "plan (cut ID; edge = edge-only, raw/jpeg = server-only)"
		p.X.Tick.Label.Font.Size = vg.Points(6)
	}
	p.Y.Min = 0
	p.Y.Max *= 1.12 // room for the labels
	if legend {
		p.Y.Max *= 1.35 // and for the legend
		p.Legend.Top, p.Legend.Left = true, true
		p.Legend.XOffs = vg.Points(4)
	}
	p.Y.Tick.Marker = linTicks{}
	return p
}

// strategyStyle is a strategy's line in the bandwidth figure: solid
// glyphs for measurements, hollow ones for predictions.
type strategyStyle struct {
	name          string
	col           color.Color
	width         vg.Length
	dash          bool
	shape, hollow draw.GlyphDrawer
	pick          func(CellSummary) *PlanStat
}

// strategyStyles draws planned as a wide translucent band under the others
// and the oracle dashed on top: where they coincide with a baseline (often)
// all stay visible.
func strategyStyles() []strategyStyle {
	band := color.NRGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0x80}
	return []strategyStyle{
		{"planned", band, vg.Points(6), false, draw.CircleGlyph{}, draw.RingGlyph{}, func(c CellSummary) *PlanStat { return c.Planned }},
		{"edge-only", colEdge, vg.Points(1.5), false, draw.CircleGlyph{}, draw.RingGlyph{}, func(c CellSummary) *PlanStat { return c.EdgeOnly }},
		{"server-only raw", colRaw, vg.Points(1.5), false, draw.BoxGlyph{}, draw.SquareGlyph{}, func(c CellSummary) *PlanStat { return c.ServerRaw }},
		{"server-only JPEG", colJPEG, vg.Points(1.5), false, draw.PyramidGlyph{}, draw.TriangleGlyph{}, func(c CellSummary) *PlanStat { return c.ServerJPEG }},
		{"oracle (best measured)", colBlack, vg.Points(1), true, draw.CrossGlyph{}, draw.CrossGlyph{}, func(c CellSummary) *PlanStat { return c.Oracle }},
	}
}

// bandwidthFigure draws, per model and codec, each strategy's measured
// median against the uplink bandwidth (both axes logarithmic). A baseline
// skipped as over the budget appears as a hollow marker at its predicted
// latency.
// modelKey is one row of the per-model figures: a model, input size and
// codec.
type modelKey struct {
	model string
	img   int
	codec string
}

// byModel groups the cells keep admits by model, size and codec, in the
// grid's order, each group by ascending uplink.
func byModel(cells []CellSummary, keep func(CellSummary) bool) ([]modelKey, map[modelKey][]CellSummary) {
	var order []modelKey
	by := map[modelKey][]CellSummary{}
	for _, c := range cells {
		if !keep(c) {
			continue
		}
		k := modelKey{c.Model, c.ImgSize, c.Codec}
		if _, ok := by[k]; !ok {
			order = append(order, k)
		}
		by[k] = append(by[k], c)
	}
	for _, cs := range by {
		sort.SliceStable(cs, func(i, j int) bool { return cs[i].Up < cs[j].Up })
	}
	return order, by
}

func bandwidthFigure(cells []CellSummary) [][]*plot.Plot {
	order, by := byModel(cells, func(c CellSummary) bool { return c.Up > 0 })
	var out [][]*plot.Plot
	for _, k := range order {
		cs := by[k]
		title := fmt.Sprintf("%s@%d: latency against uplink bandwidth", filepath.Base(k.model), k.img)
		if k.codec != AutoCodec {
			title += " (" + k.codec + ")"
		}
		p := newPlot(title, "uplink bandwidth (Mbit/s, log scale)", "latency (ms, log scale)")
		p.Add(plotter.NewGrid())
		n := 0
		predicted := false
		for _, st := range strategyStyles() {
			var meas, pred plotter.XYs
			for _, c := range cs {
				ps := st.pick(c)
				switch {
				case ps == nil:
				case ps.N > 0 && ps.Measured > 0:
					meas = append(meas, plotter.XY{X: c.Up / 1e6, Y: ms(ps.Measured)})
				case strings.HasPrefix(ps.Reason, "predicted") && ps.Predicted > 0:
					pred = append(pred, plotter.XY{X: c.Up / 1e6, Y: ms(ps.Predicted)})
				}
			}
			if len(meas) > 0 {
				l, s, err := plotter.NewLinePoints(meas)
				if err != nil {
					continue
				}
				l.Color, l.Width = st.col, st.width
				if st.dash {
					l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
				}
				s.Color, s.Shape, s.Radius = st.col, st.shape, vg.Points(3)
				if st.width > vg.Points(3) {
					s.Radius = st.width
				}
				p.Add(l, s)
				p.Legend.Add(st.name, l, s)
				n += len(meas)
			}
			if len(pred) > 0 {
				s, err := plotter.NewScatter(pred)
				if err != nil {
					continue
				}
				s.Color, s.Shape, s.Radius = st.col, st.hollow, vg.Points(4)
				p.Add(s)
				predicted = true
				n += len(pred)
			}
		}
		if n == 0 {
			continue
		}
		if predicted {
			s, _ := plotter.NewScatter(plotter.XYs{})
			s.Color, s.Shape = colGrey, draw.RingGlyph{}
			p.Legend.Add("hollow: predicted, not run (over budget)", s)
		}
		p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
		p.X.Tick.Marker, p.Y.Tick.Marker = logTicks{}, logTicks{}
		padLog(&p.X, 1.5)
		padLog(&p.Y, 1.5)
		p.Y.Max *= 6 // room above the lines for the legend
		p.Legend.Top = true
		out = append(out, []*plot.Plot{p})
	}
	return out
}

// linTicks marks a linear axis at 1, 2 or 5 times a power of ten, about
// five labelled ticks, each label with only the decimals its step needs.
type linTicks struct{}

// Ticks implements plot.Ticker.
func (linTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) || math.IsInf(hi-lo, 0) {
		return nil
	}
	raw := (hi - lo) / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{2, 5, 10} {
		if step < raw {
			step = m * mag
		}
	}
	prec := max(0, -int(math.Floor(math.Log10(step))))
	var out []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		out = append(out, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', prec, 64)})
		minor := v + step/2
		if minor < hi {
			out = append(out, plot.Tick{Value: minor})
		}
	}
	return out
}

// logTicks marks a log axis at 1, 2 and 5 times the powers of ten (only
// the powers when the axis spans more than three decades), with the other
// integer multiples as unlabelled minor ticks: gonum's LogTicks labels
// only the powers, which leaves an axis within one decade unlabelled.
type logTicks struct{}

// Ticks implements plot.Ticker.
func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(lo > 0) || !(hi > lo) {
		return nil
	}
	dense := math.Log10(hi/lo) <= 3
	var out []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		base := math.Pow(10, e)
		for m := 1.0; m < 10; m++ {
			v := m * base
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || dense && (m == 2 || m == 5) {
				t.Label = strconv.FormatFloat(v, 'f', -1, 64)
			}
			out = append(out, t)
		}
	}
	return out
}

// padLog widens a log axis by factor f on each side, and keeps it over a
// positive range (a log scale of a non-positive number panics).
func padLog(a *plot.Axis, f float64) {
	lo, hi := a.Min, a.Max
	if !(lo > 0) {
		lo = math.Max(hi/10, 1e-3)
	}
	if !(hi > lo) {
		hi = lo * 10
	}
	a.Min, a.Max = lo/f, hi*f
}

// regretPlot draws planned/oracle per scenario as horizontal bars.
func regretPlot(cells []CellSummary) (*plot.Plot, int) {
	var vals plotter.Values
	var names []string
	for _, c := range cells {
		if c.Regret > 0 {
			vals = append(vals, c.Regret)
			names = append(names, c.Scenario())
		}
	}
	if len(vals) == 0 {
		return nil, 0
	}
	// Top to bottom in the order of the grid.
	for i, j := 0, len(vals)-1; i < j; i, j = i+1, j-1 {
		vals[i], vals[j] = vals[j], vals[i]
		names[i], names[j] = names[j], names[i]
	}
	p := newPlot("planner regret per scenario (1 = the planner chose the best measured plan)", "regret: planned latency / best measured latency", "")
	g := plotter.NewGrid()
	g.Horizontal.Color = nil
	p.Add(g)
	b, err := plotter.NewBarChart(vals, vg.Points(10))
	if err != nil {
		return nil, 0
	}
	b.Horizontal = true
	b.Color = colServer
	b.LineStyle.Width = 0
	p.Add(b)
	var lbl plotter.XYLabels
	for i, v := range vals {
		lbl.XYs = append(lbl.XYs, plotter.XY{X: v, Y: float64(i)})
		lbl.Labels = append(lbl.Labels, fmt.Sprintf("%.2f", v))
	}
	if l, err := plotter.NewLabels(lbl); err == nil {
		for i := range l.TextStyle {
			l.TextStyle[i].Font.Size = vg.Points(7)
			l.TextStyle[i].YAlign = draw.YCenter
		}
		l.Offset = vg.Point{X: vg.Points(3)}
		p.Add(l)
	}
	ref, err := plotter.NewLine(plotter.XYs{{X: 1, Y: -0.5}, {X: 1, Y: float64(len(vals)) - 0.5}})
	if err == nil {
		ref.Color, ref.Dashes = colBlack, []vg.Length{vg.Points(3), vg.Points(3)}
		p.Add(ref)
	}
	p.NominalY(names...)
	p.X.Min = 0
	p.X.Max = math.Max(p.X.Max*1.15, 1.2)
	p.X.Tick.Marker = linTicks{}
	return p, len(vals)
}

// timelineFigure draws a trace run: the uplink in force, the plan each
// request ran, and its latency (measured, and predicted when planned), all
// against the time the request started.
func timelineFigure(t TraceSummary) [][]*plot.Plot {
	title := fmt.Sprintf("%s@%d adaptive on trace %s", filepath.Base(t.Model), t.ImgSize, t.Trace)
	if t.Codec != AutoCodec {
		title += " (" + t.Codec + ")"
	}
	bw := newPlot(title+": uplink in force", "", "uplink (Mbit/s, log)")
	plan := newPlot("plan chosen per request", "", "")
	lat := newPlot("latency per request", "time since the first request (s)", "latency (ms, log)")
	for _, p := range []*plot.Plot{bw, plan, lat} {
		p.Add(plotter.NewGrid())
	}

	var up, meas, pred plotter.XYs
	var planPts []plotter.XYs
	// Plans on the y axis in cut order: server-only at the bottom.
	type pv struct {
		name string
		cut  int
	}
	var names []pv
	seen := map[string]bool{}
	for _, r := range t.Rows {
		if r.IsMeasured() && !seen[r.Plan] {
			seen[r.Plan] = true
			cut := r.Cut
			if strings.HasPrefix(r.Plan, "server-only") {
				cut = -1
			}
			names = append(names, pv{r.Plan, cut})
		}
	}
	sort.SliceStable(names, func(i, j int) bool { return names[i].cut < names[j].cut })
	planY := map[string]int{}
	for i, n := range names {
		planY[n.name] = i
	}
	planPts = make([]plotter.XYs, 1)
	for _, r := range t.Rows {
		x := r.Start.Seconds()
		if r.Up > 0 {
			up = append(up, plotter.XY{X: x, Y: r.Up / 1e6})
		}
		if !r.IsMeasured() {
			continue
		}
		planPts[0] = append(planPts[0], plotter.XY{X: x, Y: float64(planY[r.Plan])})
		if r.Measured > 0 {
			meas = append(meas, plotter.XY{X: x, Y: ms(r.Measured)})
		}
		if r.Predicted > 0 {
			pred = append(pred, plotter.XY{X: x, Y: ms(r.Predicted)})
		}
	}
	if l, err := plotter.NewLine(stepXYs(up)); err == nil && len(up) > 0 {
		l.Color, l.Width = colUp, vg.Points(1.5)
		bw.Add(l)
		bw.Y.Scale, bw.Y.Tick.Marker = plot.LogScale{}, logTicks{}
		padLog(&bw.Y, 1.5)
	}
	if s, err := plotter.NewScatter(planPts[0]); err == nil && len(planPts[0]) > 0 {
		s.Color, s.Shape, s.Radius = colServer, draw.CircleGlyph{}, vg.Points(2.5)
		plan.Add(s)
		var labels []string
		for _, n := range names {
			labels = append(labels, n.name)
		}
		plan.NominalY(labels...)
	}
	if len(meas) > 0 {
		if s, err := plotter.NewScatter(meas); err == nil {
			s.Color, s.Shape, s.Radius = colEdge, draw.CircleGlyph{}, vg.Points(2.5)
			lat.Add(s)
			lat.Legend.Add("measured", s)
		}
		if s, err := plotter.NewScatter(pred); err == nil && len(pred) > 0 {
			s.Color, s.Shape, s.Radius = colGrey, draw.RingGlyph{}, vg.Points(3)
			lat.Add(s)
			lat.Legend.Add("predicted when planned", s)
		}
		lat.Y.Scale, lat.Y.Tick.Marker = plot.LogScale{}, logTicks{}
		padLog(&lat.Y, 1.5)
		lat.Legend.Top = true
	}
	// One time axis for the three.
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range []*plot.Plot{bw, plan, lat} {
		lo, hi = math.Min(lo, p.X.Min), math.Max(hi, p.X.Max)
	}
	for _, p := range []*plot.Plot{bw, plan, lat} {
		p.X.Min, p.X.Max = lo, hi
		p.X.Tick.Marker = linTicks{}
	}
	return [][]*plot.Plot{{bw}, {plan}, {lat}}
}

// stepXYs turns points into a step line: each value holds until the next
// point.
func stepXYs(pts plotter.XYs) plotter.XYs {
	var out plotter.XYs
	for i, p := range pts {
		if i > 0 {
			out = append(out, plotter.XY{X: p.X, Y: pts[i-1].Y})
		}
		out = append(out, p)
	}
	return out
}

// BestCutPlot is the figure of the best cut against the uplink bandwidth.
const BestCutPlot = "best-cut-vs-bandwidth"

// bestCutFigure draws, per model and codec with at least two links, where
// the model is best cut against the uplink bandwidth: the planner's choice
// (the predicted best) beside the best measured plan (the oracle), cut 0
// being server-only and the last cut edge-only; and beside it the planned
// plan's predicted and measured latency with the oracle's measured.
func bestCutFigure(cells []CellSummary) [][]*plot.Plot {
	order, by := byModel(cells, func(c CellSummary) bool {
		return c.Up > 0 && c.Planned != nil && c.Oracle != nil && c.Planned.N > 0
	})
	var out [][]*plot.Plot
	for _, k := range order {
		cs := by[k]
		if len(cs) < 2 {
			continue
		}
		name := fmt.Sprintf("%s@%d", filepath.Base(k.model), k.img)
		if k.codec != AutoCodec {
			name += " (" + k.codec + ")"
		}
		cut := newPlot(name+": best cut against uplink bandwidth", "uplink bandwidth (Mbit/s, log scale)", "cut (0: server-only; last: edge-only)")
		lat := newPlot(name+": planned, predicted and measured", "uplink bandwidth (Mbit/s, log scale)", "latency (ms, log scale)")
		cut.Add(plotter.NewGrid())
		lat.Add(plotter.NewGrid())
		var planned, oracle, pred, meas, best plotter.XYs
		var labels plotter.XYLabels
		for _, c := range cs {
			x := c.Up / 1e6
			planned = append(planned, plotter.XY{X: x, Y: float64(c.Planned.Cut)})
			oracle = append(oracle, plotter.XY{X: x, Y: float64(c.Oracle.Cut)})
			labels.XYs = append(labels.XYs, plotter.XY{X: x, Y: float64(c.Planned.Cut)})
			labels.Labels = append(labels.Labels, c.Planned.Plan)
			pred = append(pred, plotter.XY{X: x, Y: ms(c.Planned.Predicted)})
			meas = append(meas, plotter.XY{X: x, Y: ms(c.Planned.Measured)})
			best = append(best, plotter.XY{X: x, Y: ms(c.Oracle.Measured)})
		}
		series := func(p *plot.Plot, xys plotter.XYs, label string, col color.Color, glyph draw.GlyphDrawer, dash bool, width vg.Length) {
			l, s, err := plotter.NewLinePoints(xys)
			if err != nil {
				return
			}
			l.Color, l.Width = col, width
			if dash {
				l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			}
			s.Color, s.Shape, s.Radius = col, glyph, vg.Points(3.5)
			p.Add(l, s)
			p.Legend.Add(label, l, s)
		}
		band := color.NRGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xa0}
		series(cut, planned, "planner's choice (predicted best)", band, draw.CircleGlyph{}, false, vg.Points(4))
		series(cut, oracle, "best measured (oracle)", colBlack, draw.CrossGlyph{}, true, vg.Points(1))
		if l, err := plotter.NewLabels(labels); err == nil {
			for i := range l.TextStyle {
				l.TextStyle[i].Font.Size = vg.Points(6.5)
			}
			l.Offset = vg.Point{X: vg.Points(4), Y: vg.Points(4)}
			cut.Add(l)
		}
		series(lat, pred, "planned, predicted", band, draw.RingGlyph{}, true, vg.Points(2))
		series(lat, meas, "planned, measured", colServer, draw.CircleGlyph{}, false, vg.Points(1.5))
		series(lat, best, "best measured (oracle)", colBlack, draw.CrossGlyph{}, true, vg.Points(1))
		for _, p := range []*plot.Plot{cut, lat} {
			p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, logTicks{}
			padLog(&p.X, 1.5)
			p.Legend.Top = true
		}
		cut.Y.Min = 0
		cut.Y.Max *= 1.35 // room above the points for the legend
		lat.Y.Scale, lat.Y.Tick.Marker = plot.LogScale{}, logTicks{}
		padLog(&lat.Y, 1.5)
		lat.Y.Max *= 4
		out = append(out, []*plot.Plot{cut, lat})
	}
	return out
}
