package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"tracr/zoo"
)

func modelsCommand() *cli.Command {
	return &cli.Command{
		Name:  "models",
		Usage: "list the built-in model zoo",
		Description: "Lists the models tracr builds itself, usable as --model NAME: their size, compute,\n" +
			"input and output. Their weights are synthetic (deterministic, not trained); any other\n" +
			"model is given as a path to its .onnx file.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "img-size", Usage: "input side in pixels, a multiple of 32, for the models that take any (0: each model's default)"},
			&cli.BoolFlag{Name: "json", Usage: "print the model specs as JSON"},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return fmt.Errorf("models: unexpected argument %q", c.Args().First())
			}
			specs, err := zooSpecs(c.Int("img-size"))
			if err != nil {
				return fmt.Errorf("models: %w", err)
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(specs)
			}
			return writeModels(c.App.Writer, specs)
		},
	}
}

// zooSpecs describes every zoo model at imgSize, or at its own size for a
// model that takes only one.
func zooSpecs(imgSize int) ([]zoo.Spec, error) {
	var specs []zoo.Spec
	for _, name := range zoo.Names() {
		s, err := zoo.Describe(name, 0)
		if err != nil {
			return nil, err
		}
		if imgSize != 0 && !s.FixedSize {
			if s, err = zoo.Describe(name, imgSize); err != nil {
				return nil, err
			}
		}
		specs = append(specs, s)
	}
	return specs, nil
}

// writeModels prints specs as a table, with each model's aliases beside
// its name.
func writeModels(w io.Writer, specs []zoo.Spec) error {
	aliases := map[string][]string{}
	for a, c := range zoo.Aliases() {
		aliases[c] = append(aliases[c], a)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTASK\tPARAMS\tGFLOPS\tINPUT\tOUTPUT\tWEIGHTS")
	for _, s := range specs {
		name := s.Name
		if a := aliases[s.Name]; len(a) > 0 {
			slices.Sort(a)
			name += " (" + strings.Join(a, ", ") + ")"
		}
		weights := "trained"
		if s.Synthetic {
			weights = "synthetic"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2fM\t%.2f\t%s %s\t%s %s\t%s\n",
			name, s.Task, float64(s.Params)/1e6, s.GFLOPs, s.InputName, s.Input, s.OutputName, s.Output, weights)
	}
	return tw.Flush()
}
