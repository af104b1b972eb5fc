package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"tracr/graph"
)

func cutsCommand() *cli.Command {
	return &cli.Command{
		Name:      "cuts",
		Usage:     "list every cut of a model with the tensors that cross it",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "zoo name (see tracr models) or ONNX file", Required: true},
			&cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"},
			inputShapeFlag(),
		},
		Action: func(c *cli.Context) error {
			shapes, err := inputShapes(c)
			if err != nil {
				return err
			}
			m, _, err := openModel(c.Context, c.String("model"), shapes)
			if err != nil {
				return err
			}
			cuts := graph.Cuts(m)
			if c.Bool("json") {
				return writeCutsJSON(c.App.Writer, c.String("model"), m, cuts)
			}
			return writeCutsTable(c.App.Writer, c.String("model"), m, cuts)
		},
	}
}

// lastNode describes the last edge node of a prefix cut.
func lastNode(m *graph.Model, id int) string {
	if id == 0 {
		return "(server-only: inputs cross)"
	}
	n := m.Nodes()[id-1]
	s := n.Name + " (" + n.OpType + ")"
	if id == len(m.Nodes()) {
		s += " edge-only"
	}
	return s
}

func writeCutsTable(w io.Writer, name string, m *graph.Model, cuts []graph.Cut) error {
	fmt.Fprintf(w, "model %s: %d compute nodes, %d cuts (cut K runs nodes 0..K-1 on the edge)\n", name, len(m.Nodes()), len(cuts))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "cut\tlast edge node\tbytes\tcrossing tensor\tdtype\tshape\ttensor bytes")
	for _, c := range cuts {
		for i, t := range c.Crossing {
			if i == 0 {
				fmt.Fprintf(tw, "%d\t%s\t%s\t", c.ID, lastNode(m, c.ID), bytesText(c.Bytes))
			} else {
				fmt.Fprint(tw, "\t\t\t")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Name, t.DType, t.Shape, bytesText(t.Bytes))
		}
	}
	return tw.Flush()
}

func bytesText(b int64) string {
	if b < 0 {
		return "?"
	}
	return strconv.FormatInt(b, 10)
}

type cutJSON struct {
	ID       int            `json:"id"`
	LastNode string         `json:"last_edge_node"`
	Bytes    int64          `json:"bytes"`
	Crossing []crossingJSON `json:"crossing"`
}

type crossingJSON struct {
	Name  string  `json:"name"`
	DType string  `json:"dtype"`
	Shape []int64 `json:"shape"`
	Bytes int64   `json:"bytes"`
}

func writeCutsJSON(w io.Writer, name string, m *graph.Model, cuts []graph.Cut) error {
	out := struct {
		Model string    `json:"model"`
		Nodes int       `json:"nodes"`
		Cuts  []cutJSON `json:"cuts"`
	}{Model: name, Nodes: len(m.Nodes())}
	for _, c := range cuts {
		cj := cutJSON{ID: c.ID, LastNode: lastNode(m, c.ID), Bytes: c.Bytes}
		for _, t := range c.Crossing {
			cj.Crossing = append(cj.Crossing, crossingJSON{Name: t.Name, DType: t.DType.String(), Shape: t.Shape, Bytes: t.Bytes})
		}
		out.Cuts = append(out.Cuts, cj)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
