package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"tracr/netprobe"
	"tracr/runtime"
	"tracr/transport"
)

func probeCommand() *cli.Command {
	return &cli.Command{
		Name:      "probe",
		Usage:     "measure the link to the server: RTT, upload and download bandwidth",
		ArgsUsage: " ",
		Flags: append(serverFlags(),
			&cli.BoolFlag{Name: "json", Usage: "print the measurement as JSON"},
			&cli.IntFlag{Name: "pings", Value: 10, Usage: "round trips the RTT is the median of"},
			&cli.IntFlag{Name: "repeats", Value: 3, Usage: "transfers of each size"},
		),
		Action: func(c *cli.Context) error {
			conn, err := connect(c.Context, c)
			if err != nil {
				return err
			}
			defer conn.Close()
			r, err := netprobe.Probe(c.Context, conn.Client, netprobe.Options{Pings: c.Int("pings"), Repeats: c.Int("repeats")})
			if err != nil {
				return fmt.Errorf("probe %s: %w", conn.Name(), err)
			}
			rep := probeReport{Server: conn.Name(), Link: conn.Link, Result: r}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			rep.print(c.App.Writer)
			return nil
		},
	}
}

// serverFlags are the flags that say which server to use and how to reach
// it, shared by the commands that talk to one.
func serverFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "server", Usage: "a server of the devices file, or host:port (port 2222 if omitted); empty or \"local\" starts one in this process on loopback"},
		&cli.StringFlag{Name: "devices", Value: "config/devices.toml", Usage: "devices file naming the servers --server may name"},
		&cli.StringFlag{Name: "keys", Value: transport.DefaultKeyDir, Usage: "key folder with the edge key and known_hosts (see tracr keys init)"},
		&cli.StringFlag{Name: "user", Usage: "SSH user name (default: the current user)"},
		&cli.StringFlag{Name: "link", Usage: "emulate a link on the connection, e.g. up=10mbit,down=50mbit,rtt=20ms"},
		&cli.Float64Flag{Name: "edge-cpu", Usage: "limit the edge (this process) to this many cores with a kernel CPU limit, e.g. 0.1; the local server then runs as its own process"},
	}
}

// serverConn is a connection made from serverFlags.
type serverConn struct {
	*transport.Client
	// Link is the emulated link, "" if none.
	Link      string
	LinkState *transport.LinkState
	srv       *runtime.Server
}

// Name says which server: its address, its devices-file name and
// addresses, or "local" and the address of the one started in this
// process.
func (s *serverConn) Name() string { return s.srv.Name() }

// Close closes the connection and releases the server.
func (s *serverConn) Close() error {
	return errors.Join(s.Client.Close(), s.srv.Close())
}

// connect connects to the server serverFlags name (see runtime.Connect).
func connect(ctx context.Context, c *cli.Context) (*serverConn, error) {
	sc := &serverConn{}
	if spec := c.String("link"); spec != "" {
		l, err := transport.ParseLink(spec)
		if err != nil {
			return nil, fmt.Errorf("--link: %w", err)
		}
		sc.Link, sc.LinkState = l.String(), transport.NewLinkState(l)
	}
	if c.IsSet("edge-cpu") && c.Float64("edge-cpu") == 0 {
		return nil, fmt.Errorf("--edge-cpu 0: want a share of this machine's cores above 0, e.g. 0.1")
	}
	srv, err := runtime.Connect(ctx, runtime.ServerSpec{Name: c.String("server"), Devices: c.String("devices"),
		KeyDir: c.String("keys"), User: c.String("user"), Link: sc.LinkState, EdgeCPU: c.Float64("edge-cpu")})
	if err != nil {
		return nil, err
	}
	if sc.Client, err = srv.Dial(ctx); err != nil {
		srv.Close()
		return nil, err
	}
	sc.srv = srv
	return sc, nil
}

// probeReport is what tracr probe prints: the measurement, and where.
type probeReport struct {
	Server string `json:"server"`
	Link   string `json:"link,omitempty"`
	netprobe.Result
}

func (r probeReport) print(w io.Writer) {
	fmt.Fprintf(w, "server  %s\n", r.Server)
	if r.Link != "" {
		fmt.Fprintf(w, "link    emulated %s\n", r.Link)
	}
	fmt.Fprintf(w, "rtt     %s (median of %d pings)\n", millis(r.RTT), len(r.Pings))
	for _, d := range []struct {
		name string
		fit  netprobe.Fit
	}{{"up", r.Up}, {"down", r.Down}} {
		f := d.fit
		if f.Direct {
			fmt.Fprintf(w, "%-7s %s  (fastest %s transfer; times did not grow with size over %d transfers of %s..%s)\n",
				d.name, mbits(f.BitsPerSec), sizeText(f.MaxBytes), f.Samples, sizeText(f.MinBytes), sizeText(f.MaxBytes))
			continue
		}
		fmt.Fprintf(w, "%-7s %s  (t = %s + bytes/rate, R² %.4f, %d transfers of %s..%s)\n",
			d.name, mbits(f.BitsPerSec), millis(f.Overhead), f.R2, f.Samples, sizeText(f.MinBytes), sizeText(f.MaxBytes))
	}
}

func millis(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

func mbits(bps float64) string {
	if bps >= 1e9 {
		return fmt.Sprintf("%.2f Gbit/s", bps/1e9)
	}
	return fmt.Sprintf("%.2f Mbit/s", bps/1e6)
}

func sizeText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}
