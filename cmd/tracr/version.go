package main

import (
	"fmt"
	"runtime/debug"

	"github.com/urfave/cli/v2"

	"tracr/engine"
)

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the versions of tracr and ONNX Runtime",
		Action: func(c *cli.Context) error {
			fmt.Fprintf(c.App.Writer, "tracr %s\n", tracrVersion())
			path, err := engine.LibraryPath()
			if err != nil {
				return err
			}
			v, err := engine.Version()
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "ONNX Runtime %s (%s)\n", v, path)
			return nil
		},
	}
}

// tracrVersion returns the VCS revision the binary was built from, with
// "-dirty" when the tree had uncommitted changes, or "dev" when the build
// recorded none.
func tracrVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		return "dev"
	}
	return rev[:min(12, len(rev))] + dirty
}
