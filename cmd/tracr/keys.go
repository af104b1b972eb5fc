package main

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"

	"tracr/transport"
)

func keysCommand() *cli.Command {
	dirFlag := &cli.StringFlag{Name: "dir", Value: transport.DefaultKeyDir, Usage: "key folder"}
	return &cli.Command{
		Name:  "keys",
		Usage: "create the SSH keys, authorized_keys and known_hosts for an edge and a server",
		Subcommands: []*cli.Command{
			{
				Name:      "init",
				Usage:     "create ed25519 keys for the edge and the server, authorized_keys and known_hosts",
				ArgsUsage: " ",
				Flags: []cli.Flag{
					dirFlag,
					&cli.StringSliceFlag{Name: "host", Usage: "server address to pin in known_hosts, host or host:port (repeatable; default 127.0.0.1:2222 and localhost:2222)"},
					&cli.BoolFlag{Name: "force", Usage: "replace existing keys"},
				},
				Action: func(c *cli.Context) error {
					hosts := c.StringSlice("host")
					if len(hosts) == 0 {
						hosts = transport.DefaultHosts()
					}
					k, err := transport.InitKeys(c.String("dir"), hosts, c.Bool("force"))
					if err != nil {
						return err
					}
					return printKeys(c, k, hosts)
				},
			},
			{
				Name:      "trust",
				Usage:     "pin the server's host key for another address in known_hosts",
				ArgsUsage: " ",
				Flags: []cli.Flag{
					dirFlag,
					&cli.StringSliceFlag{Name: "host", Usage: "server address, host or host:port (repeatable)", Required: true},
					&cli.StringFlag{Name: "key", Usage: "the server's public key (default DIR/server_ed25519.pub)"},
				},
				Action: func(c *cli.Context) error {
					k := transport.KeyPaths(c.String("dir"))
					pub := c.String("key")
					if pub == "" {
						pub = k.HostPub
					}
					if err := transport.TrustHost(k.KnownHosts, pub, c.StringSlice("host")); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "%s: pinned %s for %s\n", k.KnownHosts, pub, strings.Join(c.StringSlice("host"), ", "))
					return nil
				},
			},
		},
	}
}

// printKeys says what InitKeys wrote and how to use it.
func printKeys(c *cli.Context, k transport.KeyFiles, hosts []string) error {
	edge, err := transport.LoadSigner(k.EdgeKey)
	if err != nil {
		return err
	}
	host, err := transport.LoadSigner(k.HostKey)
	if err != nil {
		return err
	}
	w := c.App.Writer
	fmt.Fprintf(w, "wrote %s:\n", k.Dir)
	fmt.Fprintf(w, "  %-16s edge key %s (keep on the edge)\n", filepath.Base(k.EdgeKey), ssh.FingerprintSHA256(edge.PublicKey()))
	fmt.Fprintf(w, "  %-16s server host key %s (keep on the server)\n", filepath.Base(k.HostKey), ssh.FingerprintSHA256(host.PublicKey()))
	fmt.Fprintf(w, "  %-16s the edge key, for the server\n", filepath.Base(k.AuthorizedKeys))
	fmt.Fprintf(w, "  %-16s the server key pinned for %s, for the edge\n", filepath.Base(k.KnownHosts), strings.Join(hosts, ", "))
	fmt.Fprintf(w, "server: tracr serve --listen %s --host-key %s --authorized-keys %s\n", serveListen(hosts[0]), k.HostKey, k.AuthorizedKeys)
	fmt.Fprintf(w, "edge:   tracr probe --server %s --keys %s\n", hosts[0], k.Dir)
	return nil
}

// serveListen is the --listen address a server reached at host (host or
// host:port) serves on: that port (2222 if none) on loopback for a
// loopback host, else on every interface (a name the edge uses, such as a
// devices file's, need not resolve on the server itself).
func serveListen(host string) string {
	h, port, err := net.SplitHostPort(host)
	if err != nil {
		h, port = host, transport.DefaultPort
	}
	if ip := net.ParseIP(h); h == "localhost" || ip != nil && ip.IsLoopback() {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return net.JoinHostPort("0.0.0.0", port)
}
