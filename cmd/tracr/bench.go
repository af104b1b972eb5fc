package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"

	"tracr/bench"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:      "bench",
		Usage:     "measure the headline figures (regret, prediction error, overhead, throughput, adaptation, SSH vs TCP, codecs) or run the soak",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "quick", Usage: "smaller inputs, fewer links and repeats (a few minutes)"},
			&cli.Float64Flag{Name: "edge-cpu", Value: bench.DefaultEdgeCPU, Usage: "the limited edge's share of this machine's cores, for the sections that measure with the edge limited by the kernel"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: filepath.Join("results", "bench"), Usage: "folder for bench.csv, bench.json and bench.md"},
			&cli.StringSliceFlag{Name: "section", Usage: "run only the sections whose names contain this word (repeatable), e.g. adaptation"},
			&cli.DurationFlag{Name: "soak", Usage: "instead of the figures, run --clients edge clients for this long against one loopback server"},
			&cli.IntFlag{Name: "clients", Value: 8, Usage: "edge clients of --soak"},
			&cli.DurationFlag{Name: "slow", Usage: "with --soak: slow the link 100x for this long, a third of the way in"},
		},
		Action: func(c *cli.Context) error {
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			if d := c.Duration("soak"); d > 0 {
				res, err := bench.Soak(ctx, bench.SoakOptions{Clients: c.Int("clients"), Duration: d, Slow: c.Duration("slow"), Log: c.App.ErrWriter})
				if err != nil {
					return err
				}
				res.Print(c.App.Writer)
				if res.Errors > 0 {
					return fmt.Errorf("soak: %d requests failed or fell back", res.Errors)
				}
				return nil
			}
			out := c.String("out")
			// Fail before minutes of measuring, not after.
			if err := bench.CheckWritable(out); err != nil {
				return err
			}
			if c.Float64("edge-cpu") == 0 {
				return fmt.Errorf("--edge-cpu 0: want a share of this machine's cores above 0, e.g. %g", bench.DefaultEdgeCPU)
			}
			if err := bench.CheckSections(c.StringSlice("section"), bench.SectionNames(c.Float64("edge-cpu"))); err != nil {
				return err
			}
			rep, err := bench.Run(ctx, bench.Options{Quick: c.Bool("quick"), Log: c.App.ErrWriter, EdgeCPU: c.Float64("edge-cpu"), Sections: c.StringSlice("section")})
			if err != nil {
				return err
			}
			rep.Print(c.App.Writer)
			if err := rep.Write(out); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "wrote %s\n", filepath.Join(out, "bench.{csv,json,md}"))
			if len(rep.Failed) > 0 {
				return fmt.Errorf("bench: %d section(s) failed", len(rep.Failed))
			}
			return nil
		},
	}
}
