package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"tracr/experiments"
)

func sweepCommand() *cli.Command {
	return &cli.Command{
		Name:      "sweep",
		Usage:     "run an experiment grid (models x cuts x links x codecs x strategies): tidy CSV, summary.md and plots",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "sweep spec (TOML), e.g. config/sweep.toml", Required: true},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "output folder (default: the spec's out, ../results/<name> beside config/)"},
			&cli.BoolFlag{Name: "resume", Usage: "continue the sweep.csv in the output folder, skipping the rows it holds"},
			&cli.BoolFlag{Name: "progress", Usage: "show the progress bar even when stderr is not a terminal"},
			&cli.Float64Flag{Name: "edge-cpu", Usage: "limit the edge (this process) to this many cores with a kernel CPU limit, e.g. 0.1 (overrides the spec's edge_cpu); the local server then runs as its own process"},
			&cli.StringFlag{Name: "server", Usage: "the server: local, a devices.toml name or host:port (overrides the spec's server)"},
			&cli.BoolFlag{Name: "fresh", Usage: "profile both sides again even when profiles are cached (the spec's fresh_profiles)"},
		},
		Action: func(c *cli.Context) error {
			spec, err := experiments.Load(c.String("config"))
			if err != nil {
				return err
			}
			if err := spec.Override(experiments.Overrides{EdgeCPU: c.Float64("edge-cpu"), EdgeCPUSet: c.IsSet("edge-cpu"),
				Server: c.String("server"), Fresh: c.Bool("fresh")}); err != nil {
				return err
			}
			// Ctrl-C ends the sweep between two rows: the CSV stays valid.
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			opts := experiments.Options{Out: c.String("out"), Resume: c.Bool("resume"), Tracr: tracrVersion(), Log: c.App.ErrWriter}
			if c.Bool("progress") || isTerminal(c.App.ErrWriter) {
				bar := newSweepBar(c.App.ErrWriter)
				opts.Log, opts.Progress = bar, bar.update
				defer bar.finish()
			}
			res, err := experiments.Run(ctx, spec, opts)
			if errors.Is(err, experiments.ErrInterrupted) && res != nil {
				return fmt.Errorf("%w; %d new rows kept in %s (tracr sweep --config %s --resume continues)",
					err, res.New, filepath.Join(res.Dir, experiments.CSVName), c.String("config"))
			}
			if err != nil {
				return err
			}
			w := c.App.Writer
			fmt.Fprintf(w, "%d rows (%d new, %d skipped) in %s, %v:\n", res.Rows, res.New, res.Skipped, res.Dir, res.Took.Round(time.Second))
			for _, f := range res.Files {
				fmt.Fprintf(w, "  %s\n", f)
			}
			return nil
		},
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// sweepBar is the progress bar with ETA; log lines print above it.
type sweepBar struct {
	bar *progressbar.ProgressBar
	w   io.Writer
}

func newSweepBar(w io.Writer) *sweepBar {
	return &sweepBar{w: w, bar: progressbar.NewOptions(-1, progressbar.OptionSetWriter(w), progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30), progressbar.OptionSetPredictTime(true), progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionSetItsString("rows"), progressbar.OptionFullWidth(),
		progressbar.OptionShowDescriptionAtLineEnd(), progressbar.OptionClearOnFinish())}
}

func (b *sweepBar) update(p experiments.Progress) {
	if b.bar.GetMax() != p.Total {
		b.bar.ChangeMax(p.Total)
	}
	b.bar.Describe(p.Cell)
	_ = b.bar.Set(p.Done) // rendering errors only; the sweep goes on
}

// Write prints a log line above the bar.
func (b *sweepBar) Write(p []byte) (int, error) {
	_ = b.bar.Clear()
	return b.w.Write(p)
}

// finish stops the bar and clears its line for what is printed next.
func (b *sweepBar) finish() {
	_ = b.bar.Exit()
	_ = b.bar.Clear()
}
