package transport

import (
	"bufio"
	"errors"
	"io"
	"sync"

	"golang.org/x/crypto/ssh"
)

// Subsystem is the SSH subsystem name tracr's protocol runs as. A stock
// OpenSSH server hosts it with `Subsystem tracr /path/to/tracr serve --stdio`.
const Subsystem = "tracr"

// bufSize is the buffer of a frame stream in each direction: big enough to
// hold a whole small frame (header and payload go out as one SSH packet)
// and to fill an SSH packet (32 KiB) per write.
const bufSize = 64 << 10

// DefaultCiphers returns the SSH ciphers tracr offers, fastest first
// (measured by BenchmarkChannelThroughput): AES-GCM, hardware-accelerated on
// x86-64 and arm64, then ChaCha20-Poly1305 for CPUs without AES
// instructions.
func DefaultCiphers() []string {
	return []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM, ssh.CipherChaCha20Poly1305}
}

// frameStream reads and writes frames over one byte stream (an SSH channel
// or stdin/stdout). Reads belong to one goroutine; writes from any number of
// goroutines are serialised so frames never interleave.
type frameStream struct {
	r   *bufio.Reader
	lim Limits

	wmu sync.Mutex
	w   *bufio.Writer
}

func newFrameStream(rw io.ReadWriter, lim Limits) *frameStream {
	return &frameStream{r: bufio.NewReaderSize(rw, bufSize), lim: lim, w: bufio.NewWriterSize(rw, bufSize)}
}

// read reads the next frame; only one goroutine may call it.
func (s *frameStream) read() (Frame, error) { return ReadFrame(s.r, s.lim) }

// write writes one frame and flushes it.
func (s *frameStream) write(f Frame) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := WriteFrame(s.w, f); err != nil {
		return err
	}
	return s.w.Flush()
}

// subsystemRequest is the payload of an SSH "subsystem" channel request
// (RFC 4254, section 6.5).
type subsystemRequest struct {
	Name string
}

// exitStatus is the payload of an SSH "exit-status" channel request.
type exitStatus struct {
	Status uint32
}

// ReadWriteCloser joins a reader and a writer into one stream whose Close
// closes both (when they are io.Closers); `tracr serve --stdio` serves
// os.Stdin and os.Stdout this way.
type ReadWriteCloser struct {
	io.Reader
	io.Writer
}

// Close closes the reader and the writer.
func (s ReadWriteCloser) Close() error {
	var errs []error
	if c, ok := s.Reader.(io.Closer); ok {
		errs = append(errs, c.Close())
	}
	if c, ok := s.Writer.(io.Closer); ok {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
