package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"tracr/runtime"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "run split inference over a dataset: one CSV row per request, re-planning on drift with --adaptive",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "run configuration (TOML; see config/yolov8.toml); none: YOLOv8n on data/samples through the embedded server"},
			&cli.BoolFlag{Name: "adaptive", Usage: "re-plan as the link and the load drift"},
			&cli.IntFlag{Name: "cut", Value: -1, Usage: "force this cut (0 = server-only, the last = edge-only; -1 = plan it)"},
			&cli.StringFlag{Name: "server", Usage: "a server of the devices file, host:port, or \"local\" for the embedded loopback server"},
			&cli.StringFlag{Name: "link", Usage: "emulate a link, e.g. up=10mbit,down=50mbit,rtt=20ms"},
			&cli.StringFlag{Name: "link-trace", Usage: "emulate a link that changes over time (CSV: seconds,up,down,rtt)"},
			&cli.IntFlag{Name: "repeats", Usage: "timed runs per profile measurement (0 = default)"},
			&cli.BoolFlag{Name: "fresh", Usage: "profile both sides again even when profiles are cached (they keep the load the machine had then)"},
			&cli.Float64Flag{Name: "edge-slowdown", Usage: "emulate an edge device this many times slower than this machine (>= 1; overrides [edge] slowdown)"},
			&cli.Float64Flag{Name: "edge-cpu", Usage: "limit the edge (this process) to this many cores with a kernel CPU limit, e.g. 0.1; the local server then runs as its own process (overrides [edge] cpu_limit)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no line per request"},
			inputShapeFlag(),
		},
		Action: func(c *cli.Context) error {
			cfg := runtime.DefaultConfig()
			path := c.String("config")
			if path != "" {
				var err error
				if cfg, err = runtime.LoadConfig(path); err != nil {
					return err
				}
			}
			opts := runtime.RunOptions{ConfigPath: path, Adaptive: c.Bool("adaptive"), Server: c.String("server"), Link: c.String("link"),
				LinkTrace: c.String("link-trace"), Repeats: c.Int("repeats"), FreshProfiles: c.Bool("fresh"), Log: c.App.Writer}
			w := c.App.Writer
			opts.OnStart = func(s runtime.RunStart) { printRunStart(w, s) }
			if !c.Bool("quiet") {
				opts.OnRecord = func(r runtime.Record) { printRecord(w, r) }
			}
			if c.IsSet("edge-cpu") {
				if opts.EdgeCPU = c.Float64("edge-cpu"); opts.EdgeCPU == 0 {
					return fmt.Errorf("--edge-cpu 0: want a share of this machine's cores above 0, e.g. 0.1")
				}
			}
			if c.IsSet("edge-slowdown") {
				opts.EdgeSlowdown = c.Float64("edge-slowdown")
				if opts.EdgeSlowdown == 0 {
					return fmt.Errorf("--edge-slowdown 0: want a factor from 1 (off) to %d", runtime.MaxEdgeSlowdown)
				}
			}
			if c.IsSet("input-shape") {
				opts.InputShapes = c.StringSlice("input-shape")
			}
			if c.IsSet("cut") {
				k := c.Int("cut")
				opts.Cut = &k
			}
			// Ctrl-C stops reading inputs; the requests in flight finish and
			// the records, the sidecar and the summary are still written.
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := runtime.Run(ctx, cfg, opts)
			if res != nil {
				fmt.Fprintln(w)
				res.Summary.Print(w)
				fmt.Fprintf(w, "records: %s (sidecar %s)\n", res.CSV, res.Sidecar)
			}
			if err != nil {
				return err
			}
			if res.Outcome.Interrupted {
				return fmt.Errorf("interrupted after %d requests; their records are in %s", len(res.Outcome.Records), res.CSV)
			}
			return nil
		},
	}
}

// printRunStart writes what the run planned, before the first request.
func printRunStart(w io.Writer, s runtime.RunStart) {
	fmt.Fprintf(w, "server %s\n", s.Server)
	if s.Link != "" {
		fmt.Fprintf(w, "link   emulated %s\n", s.Link)
	}
	if s.EdgeLimit != nil {
		fmt.Fprintf(w, "edge   limited to %s by the kernel (cgroup CPU bandwidth)\n", s.EdgeLimit)
	}
	if s.EdgeSlowdown > 1 {
		fmt.Fprintf(w, "edge   emulated %gx slower than this machine\n", s.EdgeSlowdown)
	}
	p, plan := s.Planned, s.Plan
	fmt.Fprintf(w, "model  %s, %d compute nodes; planned in %v at up %s Mbit/s, down %s Mbit/s, rtt %v\n", p.Source, len(p.Model.Nodes()),
		p.Took.Round(time.Millisecond), mbitText(p.Link.Up), mbitText(p.Link.Down), p.Link.RTT.Round(time.Microsecond))
	how := "plan  "
	if s.Adaptive {
		how = "plan   adaptive, starting on"
	}
	fmt.Fprintf(w, "%s %s %s (predicted %s ms)\n", how, plan.Candidate.Name(), plan.Encoding.Codec, msText(plan.Breakdown.Total))
}

// printRecord writes one line about a finished request.
func printRecord(w io.Writer, r runtime.Record) {
	if r.Error != "" {
		fmt.Fprintf(w, "  %4d %-24s error: %s\n", r.ID, clip(r.Input, 24), r.Error)
		return
	}
	plan := r.PlanName()
	if r.Codec != "" {
		plan += " " + r.Codec
	}
	if r.Fallback {
		plan += " (fallback)"
	}
	if r.Rescued {
		plan += " (rescued)"
	}
	fmt.Fprintf(w, "  %4d %-24s %-22s %9s ms  %s\n", r.ID, clip(r.Input, 24), plan, msText(r.Total), r.Result)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n+1:]
}
