package profiler

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// WriteCutsCSV writes one row per candidate cut: the cost model's input.
// Times are in milliseconds; a direct column is empty where the half was not
// timed as one session.
func (p *Profile) WriteCutsCSV(w io.Writer) error {
	rows := [][]string{{"host", "model_hash", "provider", "threads", "cut", "bytes",
		"edge_ms", "edge_p90_ms", "server_ms", "server_p90_ms", "edge_direct_ms", "server_direct_ms"}}
	for _, c := range p.Cuts {
		rows = append(rows, append(p.keyColumns(),
			strconv.Itoa(c.ID), strconv.FormatInt(c.Bytes, 10),
			ms(c.Edge.Median), ms(c.Edge.P90), ms(c.Server.Median), ms(c.Server.P90),
			directMS(c.EdgeDirect), directMS(c.ServerDirect)))
	}
	return writeCSV(w, rows)
}

// WriteNodesCSV writes one row per row of the per-node table. output_shapes
// lists each output as dtype[d0,d1,...], separated by spaces.
func (p *Profile) WriteNodesCSV(w io.Writer) error {
	rows := [][]string{{"host", "model_hash", "provider", "threads", "optimized", "id", "name", "op_type",
		"ort_provider", "median_ms", "p90_ms", "runs", "output_bytes", "output_shapes"}}
	for _, n := range p.Nodes {
		rows = append(rows, append(p.keyColumns(), strconv.FormatBool(p.NodesOptimized),
			strconv.Itoa(n.ID), n.Name, n.OpType, n.Provider,
			ms(n.Time.Median), ms(n.Time.P90), strconv.Itoa(n.Time.Runs),
			strconv.FormatInt(n.OutputBytes, 10), ShapesText(n.Outputs)))
	}
	return writeCSV(w, rows)
}

// WriteStatsCSV writes the system stats: one row per GPU, or one row with
// empty GPU columns when NVML reported none. Energy columns are empty when
// no counter was readable; nothing is estimated.
func (p *Profile) WriteStatsCSV(w io.Writer) error {
	s := p.Stats
	rows := [][]string{{"host", "model_hash", "provider", "threads", "cpu_model", "logical_cores", "physical_cores",
		"samples", "seconds", "cpu_percent_mean", "cpu_percent_max", "cpu_mhz_mean", "mem_used_max_bytes", "mem_total_bytes",
		"cpu_energy_j", "gpu_index", "gpu_name", "gpu_util_percent_mean", "gpu_util_percent_max",
		"gpu_mem_used_max_bytes", "gpu_mem_total_bytes", "gpu_power_w_mean", "gpu_power_w_max",
		"gpu_sm_clock_mhz_mean", "gpu_mem_clock_mhz_mean", "gpu_energy_j"}}
	base := append(p.keyColumns(), p.Machine.CPUModel, strconv.Itoa(p.Machine.LogicalCores), strconv.Itoa(p.Machine.PhysicalCores),
		strconv.Itoa(s.Samples), num(s.End.Sub(s.Start).Seconds()),
		mean(s.CPUPercent), maxOf(s.CPUPercent), mean(s.CPUMHz), maxBytes(s.MemUsedBytes), strconv.FormatInt(s.MemTotalBytes, 10),
		optional(s.CPUEnergyJoules))
	if len(s.GPUs) == 0 {
		rows = append(rows, append(base, make([]string, 11)...))
	}
	for _, g := range s.GPUs {
		rows = append(rows, append(append([]string(nil), base...),
			strconv.Itoa(g.Index), g.Name, mean(g.UtilPercent), maxOf(g.UtilPercent),
			maxBytes(g.MemUsedBytes), strconv.FormatInt(g.MemTotal, 10), mean(g.PowerWatts), maxOf(g.PowerWatts),
			mean(g.SMClockMHz), mean(g.MemClockMHz), optional(g.EnergyJoules)))
	}
	return writeCSV(w, rows)
}

// keyColumns are the columns that tell rows of several profiles apart.
func (p *Profile) keyColumns() []string {
	return []string{p.Machine.Hostname, p.Model.Hash, p.Provider, strconv.Itoa(p.Threads)}
}

// ShapesText formats operator outputs as "float32[1,64,55,55] ...".
func ShapesText(ts []TensorShape) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		dims := make([]string, len(t.Shape))
		for j, d := range t.Shape {
			dims[j] = strconv.FormatInt(d, 10)
		}
		parts[i] = t.DType + "[" + strings.Join(dims, ",") + "]"
	}
	return strings.Join(parts, " ")
}

func writeCSV(w io.Writer, rows [][]string) error {
	cw := csv.NewWriter(w)
	if err := cw.WriteAll(rows); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}

func ms(d time.Duration) string { return strconv.FormatFloat(millis(d), 'f', 3, 64) }

func directMS(t *Timing) string {
	if t == nil {
		return ""
	}
	return ms(t.Median)
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func mean(s Summary) string {
	if s.N == 0 {
		return ""
	}
	return strconv.FormatFloat(s.Mean, 'f', 1, 64)
}

func maxOf(s Summary) string {
	if s.N == 0 {
		return ""
	}
	return strconv.FormatFloat(s.Max, 'f', 1, 64)
}

func maxBytes(s Summary) string {
	if s.N == 0 {
		return ""
	}
	return strconv.FormatFloat(s.Max, 'f', 0, 64)
}

func optional(v *float64) string {
	if v == nil {
		return ""
	}
	return strconv.FormatFloat(*v, 'f', 3, 64)
}
