package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

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
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no line per request"},
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
				LinkTrace: c.String("link-trace"), Repeats: c.Int("repeats"), FreshProfiles: c.Bool("fresh"), Out: c.App.Writer, Quiet: c.Bool("quiet")}
			if c.IsSet("edge-slowdown") {
				opts.EdgeSlowdown = c.Float64("edge-slowdown")
				if opts.EdgeSlowdown == 0 {
					return fmt.Errorf("--edge-slowdown 0: want a factor from 1 (off) to %d", runtime.MaxEdgeSlowdown)
				}
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
