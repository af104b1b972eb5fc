package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"

	"tracr/engine"
	"tracr/runtime"
	"tracr/transport"
)

func serveCommand() *cli.Command {
	keys := transport.KeyPaths(transport.DefaultKeyDir)
	return &cli.Command{
		Name:      "serve",
		Usage:     "run the server: SSH with key authentication, runs the tails of models for edge clients",
		ArgsUsage: " ",
		Description: "Listens for SSH connections and serves tracr's protocol as the SSH subsystem \"tracr\".\n" +
			"With --stdio it speaks the protocol on stdin/stdout instead, so that a stock OpenSSH server\n" +
			"can host it: add `Subsystem tracr /path/to/tracr serve --stdio` to sshd_config.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: net.JoinHostPort("127.0.0.1", transport.DefaultPort), Usage: "address to listen on (0.0.0.0:2222 for every interface)"},
			&cli.StringFlag{Name: "host-key", Value: keys.HostKey, Usage: "the server's private host key (see tracr keys init)"},
			&cli.StringFlag{Name: "authorized-keys", Value: keys.AuthorizedKeys, Usage: "the edge public keys allowed in"},
			&cli.BoolFlag{Name: "stdio", Usage: "serve one session on stdin/stdout (under OpenSSH); no keys, no listening"},
			&cli.IntFlag{Name: "threads", Usage: "ONNX Runtime intra-op threads per tail (0: one per core)"},
			&cli.StringFlag{Name: "provider", Value: "cpu", Usage: "ONNX Runtime execution provider: cpu or cuda"},
			&cli.IntFlag{Name: "concurrency", Value: 4, Usage: "requests of one client run at once"},
			&cli.StringFlag{Name: "profile-dir", Usage: "where the server caches the profiles it measures (default: the user cache, ~/.cache/tracr/profiles)"},
		},
		Action: func(c *cli.Context) error {
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			// Fail now, not at the first request, when ONNX Runtime is
			// missing: under --stdio the client shows this line.
			if err := engine.Init(); err != nil {
				return err
			}
			logger := log.New(c.App.ErrWriter, "tracr serve: ", log.LstdFlags)
			tails := runtime.NewTailHandler(runtime.TailOptions{
				Engine:     engine.Options{Threads: c.Int("threads"), Provider: c.String("provider")},
				ProfileDir: c.String("profile-dir"),
			})
			defer tails.Close()
			session := transport.SessionOptions{
				Concurrency: c.Int("concurrency"),
				Name:        "tracr " + tracrVersion(),
				Logf:        logger.Printf,
			}
			if c.Bool("stdio") {
				// stdout carries the protocol: nothing else may write there.
				return transport.ServeStream(ctx, transport.ReadWriteCloser{Reader: os.Stdin, Writer: os.Stdout}, tails, session)
			}
			return listen(ctx, c, tails, session, logger)
		},
	}
}

// listen runs the SSH server until ctx ends.
func listen(ctx context.Context, c *cli.Context, h transport.Handler, session transport.SessionOptions, logger *log.Logger) error {
	hostKey, err := transport.LoadSigner(c.String("host-key"))
	if err != nil {
		return err
	}
	authorized, err := transport.LoadAuthorizedKeys(c.String("authorized-keys"))
	if err != nil {
		return err
	}
	srv, err := transport.NewServer(transport.ServerOptions{HostKey: hostKey, AuthorizedKeys: authorized, Handler: h, Session: session})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	logger.Printf("listening on %s (host key %s, %d authorized keys from %s)",
		ln.Addr(), ssh.FingerprintSHA256(hostKey.PublicKey()), len(authorized), c.String("authorized-keys"))
	if err := srv.Serve(ctx, ln); err != nil {
		return err
	}
	logger.Printf("stopped")
	return nil
}
