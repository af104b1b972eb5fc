package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	tr "tracr/runtime"
	"tracr/transport"
)

// channel compares bulk upload throughput through the SSH channel (a
// loopback tracr server, Client.Upload) with a plain TCP copy of the same
// bytes on loopback, and with tracr's framing over plain TCP.
func (b *bencher) channel(ctx context.Context) error {
	const chunk = 4 << 20
	total := 64 << 20
	if b.opts.Quick {
		total = 16 << 20
	}
	payload := make([]byte, chunk)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	srv, err := tr.Connect(ctx, tr.ServerSpec{})
	if err != nil {
		return err
	}
	defer srv.Close()
	ssh, err := srv.Dial(ctx)
	if err != nil {
		return err
	}
	defer ssh.Close()
	upload := func(c *transport.Client) (time.Duration, error) {
		t0 := time.Now()
		for range total / chunk {
			if err := c.Upload(ctx, payload); err != nil {
				return 0, err
			}
		}
		return time.Since(t0), nil
	}
	frames := func() (time.Duration, error) {
		client, server, err := tcpPair()
		if err != nil {
			return 0, err
		}
		// The session answers bulk transfers itself, whatever the handler.
		go transport.ServeStream(ctx, server, transport.LinkOnly{}, transport.SessionOptions{})
		c, err := transport.NewClient(ctx, client, transport.Limits{})
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return upload(c)
	}
	raw := func() (time.Duration, error) {
		client, server, err := tcpPair()
		if err != nil {
			return 0, err
		}
		done := make(chan struct{})
		go func() { io.Copy(io.Discard, server); server.Close(); close(done) }()
		t0 := time.Now()
		for range total / chunk {
			if _, err := client.Write(payload); err != nil {
				client.Close()
				return 0, err
			}
		}
		client.Close()
		<-done
		return time.Since(t0), nil
	}
	// Turns, not blocks: a burst of other load spreads over all three.
	var tRaw, tFrames, tSSH []float64
	for i := 0; i < b.repeats; i++ {
		for _, m := range []struct {
			run  func() (time.Duration, error)
			into *[]float64
		}{{raw, &tRaw}, {frames, &tFrames}, {func() (time.Duration, error) { return upload(ssh) }, &tSSH}} {
			d, err := m.run()
			if err != nil {
				return err
			}
			*m.into = append(*m.into, float64(total)*8/d.Seconds()/1e6)
		}
	}
	rawM, framesM, sshM := median(tRaw), median(tFrames), median(tSSH)
	how := fmt.Sprintf("%d MiB in 4 MiB uploads on 127.0.0.1, median of %d, taken in turns", total>>20, b.repeats)
	b.add(Figure{Section: "channel", Scope: "loopback", Metric: "SSH channel / plain TCP throughput", Value: ratio(sshM, rawM), Unit: "x",
		Detail: fmt.Sprintf("SSH %.0f Mbit/s vs TCP %.0f Mbit/s", sshM, rawM), How: how})
	b.add(Figure{Section: "channel", Scope: "loopback", Metric: "tracr frames over TCP / plain TCP", Value: ratio(framesM, rawM), Unit: "x",
		Detail: fmt.Sprintf("frames %.0f Mbit/s vs TCP %.0f Mbit/s", framesM, rawM), How: how})
	return nil
}

// tcpPair returns both ends of a TCP connection on loopback.
func tcpPair() (net.Conn, net.Conn, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := ln.Accept(); ch <- res{c, err} }()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	r := <-ch
	if r.err != nil {
		client.Close()
		return nil, nil, r.err
	}
	return client, r.c, nil
}
