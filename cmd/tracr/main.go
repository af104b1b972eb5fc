// Command tracr splits the inference of an ONNX model between an edge device
// and a server. Each command lives in its own file and is listed in commands.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// commands returns tracr's commands, in the order help lists them.
func commands() []*cli.Command {
	return []*cli.Command{
		versionCommand(),
		cutsCommand(),
		splitCommand(),
		modelsCommand(),
		profileCommand(),
		serveCommand(),
		planCommand(),
		runCommand(),
		keysCommand(),
		probeCommand(),
		sweepCommand(),
		benchCommand(),
	}
}

// run runs tracr with the command line args and returns the exit status. An
// error is reported on stderr as one line, "tracr: <error>".
func run(args []string, stdout, stderr io.Writer) int {
	app := &cli.App{
		Name:            "tracr",
		Usage:           "split ONNX model inference between an edge device and a server",
		Commands:        commands(),
		Writer:          stdout,
		ErrWriter:       stderr,
		HideHelpCommand: true,
		OnUsageError:    usageError,
		// Without this an unknown command would print help and succeed.
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return fmt.Errorf("unknown command %q; see tracr --help", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
	}
	for _, c := range app.Commands {
		if c.OnUsageError == nil {
			c.OnUsageError = usageError
		}
	}
	if err := app.Run(args); err != nil {
		fmt.Fprintf(stderr, "tracr: %s\n", strings.Join(strings.Fields(err.Error()), " "))
		return 1
	}
	return 0
}

// usageError reports a bad flag as an error like any other, instead of
// printing the command's help around it.
func usageError(c *cli.Context, err error, _ bool) error {
	if c.Command.HelpName == c.App.Name {
		return fmt.Errorf("%w (see %s --help)", err, c.App.Name)
	}
	return fmt.Errorf("%s: %w (see %s --help)", c.Command.Name, err, c.Command.HelpName)
}
