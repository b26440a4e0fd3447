package lambda

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// The socket's protocol (see the lambdainit command): a connection's first
// byte says what it is; the control connection carries frames.
const (
	kindControl = 'C'
	kindConn    = 'F'

	frameFlush = 'F' // server to init: send the logs collected so far
	frameLogs  = 'L' // init to server: 8 bytes of dropped count, the logs
	frameExit  = 'X' // init to server: 4 bytes of JSON length, the report, the last logs
)

// Bounds on what a container may ask of the server through its socket.
// Every connection costs the server a descriptor from the moment it is
// accepted: at most maxHandshakes of a container's wait for their first
// byte (the init sends it at once), at most maxRuntimeConns carry its
// runtime's requests, and the one control connection stays; a connection
// past a bound is closed as soon as it is accepted.
const (
	handshakeWait   = 5 * time.Second
	maxHandshakes   = 8
	maxRuntimeConns = 8
	maxExitReport   = 64 << 10
)

// An accept that fails (the server is out of descriptors, most likely) is
// tried again after a pause that doubles from acceptRetryMin up to
// acceptRetryMax, as net/http's Serve does: a socket ends only when the
// session releases it.
const (
	acceptRetryMin = 5 * time.Millisecond
	acceptRetryMax = time.Second
)

// unixListener is what serveSocket takes of the socket's listener.
type unixListener interface {
	AcceptUnix() (*net.UnixConn, error)
}

// serveSocket accepts the container's connections until ln closes.
func (s *session) serveSocket(ln unixListener) {
	var pause time.Duration
	for {
		uc, err := ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			pause = min(max(2*pause, acceptRetryMin), acceptRetryMax)
			s.h.logger.Warn("a lambda container's socket cannot accept; retrying", "dir", s.dir, "err", err, "retry_in", pause)
			t := time.NewTimer(pause)
			select {
			case <-t.C:
			case <-s.released:
				t.Stop()
				return
			}
			continue
		}
		pause = 0
		if s.handshakes.Add(1) > maxHandshakes {
			s.handshakes.Add(-1)
			uc.Close()
			continue
		}
		go func() {
			defer s.handshakes.Add(-1)
			s.handshake(uc)
		}()
	}
}

// handshake reads a connection's first byte, with the descriptor it
// carries, and puts the connection where it belongs.
func (s *session) handshake(uc *net.UnixConn) {
	uc.SetReadDeadline(time.Now().Add(handshakeWait))
	kind := make([]byte, 1)
	oob := make([]byte, syscall.CmsgSpace(4*4))
	n, oobn, _, _, err := uc.ReadMsgUnix(kind, oob)
	fds := receivedFDs(oob[:oobn])
	if err != nil || n != 1 {
		closeFDs(fds)
		uc.Close()
		return
	}
	switch kind[0] {
	case kindControl:
		closeFDs(fds)
		uc.SetReadDeadline(time.Time{})
		if !s.attachControl(uc) {
			uc.Close()
		}
	case kindConn:
		uc.Close()
		if len(fds) != 1 {
			closeFDs(fds)
			return
		}
		f := os.NewFile(uintptr(fds[0]), "runtime")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return
		}
		if _, ok := c.(*net.TCPConn); !ok || !s.conns.put(c) {
			c.Close()
		}
	default:
		closeFDs(fds)
		uc.Close()
	}
}

func receivedFDs(oob []byte) []int {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if got, err := syscall.ParseUnixRights(&m); err == nil {
			fds = append(fds, got...)
		}
	}
	return fds
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		syscall.Close(fd)
	}
}

// attachControl takes the container's first control connection; a second
// one is refused.
func (s *session) attachControl(uc *net.UnixConn) bool {
	s.ctrlMu.Lock()
	if s.ctrl != nil {
		s.ctrlMu.Unlock()
		return false
	}
	s.ctrl = uc
	s.ctrlMu.Unlock()
	close(s.ctrlReady)
	go s.readControl(uc)
	return true
}

// readControl takes the init's frames until the connection ends.
func (s *session) readControl(uc *net.UnixConn) {
	defer close(s.ctrlDone)
	br := bufio.NewReaderSize(uc, 64<<10)
	for {
		typ, payload, err := readFrame(br, 12+int(s.logLimit)+maxExitReport)
		if err != nil {
			return
		}
		switch typ {
		case frameLogs:
			if len(payload) < 8 {
				return
			}
			// The init answers flushes in order: only the answer to the
			// latest one goes to the flush waiting for it. An answer to a
			// flush that gave up, or to none, is dropped, so that no logs
			// reach a later invocation.
			s.ctrlMu.Lock()
			if s.unanswered > 0 {
				s.unanswered--
				if s.unanswered == 0 {
					// Never full: each flush empties it before it asks.
					select {
					case s.flushes <- flushed{dropped: int64(binary.BigEndian.Uint64(payload)), logs: payload[8:]}:
					default:
					}
				}
			}
			s.ctrlMu.Unlock()
		case frameExit:
			s.exitReported(payload)
		}
	}
}

func readFrame(r io.Reader, limit int) (byte, []byte, error) {
	var head [5]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(head[1:])
	if int64(n) > int64(limit) {
		return 0, nil, fmt.Errorf("a frame of %d bytes, more than %d", n, limit)
	}
	payload := make([]byte, n)
	_, err := io.ReadFull(r, payload)
	return head[0], payload, err
}

// flushed is the init's answer to a flush.
type flushed struct {
	logs    []byte
	dropped int64
}

// flush asks the init for the logs it has collected since the last flush.
// It waits at most flushWait, and not once ctx ends.
func (s *session) flush(ctx context.Context) (flushed, error) {
	timer := time.NewTimer(flushWait)
	defer timer.Stop()
	select {
	case s.flushing <- struct{}{}:
	case <-s.dead:
		return flushed{}, errSessionEnded
	case <-timer.C:
		return flushed{}, errors.New("lambda: another flush of the container's logs did not end")
	case <-ctx.Done():
		return flushed{}, ctx.Err()
	}
	defer func() { <-s.flushing }()
	select {
	case <-s.ctrlReady:
	case <-s.dead:
		return flushed{}, errSessionEnded
	case <-timer.C:
		return flushed{}, errors.New("lambda: the container's init never connected")
	case <-ctx.Done():
		return flushed{}, ctx.Err()
	}
	s.ctrlMu.Lock()
	// An answer that came after its flush gave up is not this one's.
	select {
	case <-s.flushes:
	default:
	}
	s.unanswered++
	_, err := s.ctrl.Write([]byte{frameFlush, 0, 0, 0, 0})
	s.ctrlMu.Unlock()
	if err != nil {
		return flushed{}, fmt.Errorf("lambda: asking the init for logs: %w", err)
	}
	select {
	case f := <-s.flushes:
		return f, nil
	case <-s.dead:
		return flushed{}, errSessionEnded
	case <-timer.C:
		return flushed{}, errors.New("lambda: the container's init did not send its logs")
	case <-ctx.Done():
		return flushed{}, ctx.Err()
	}
}

// lateFlush is the flush of an invocation past its deadline, for the logs
// its runtime wrote until then: it waits at most lateFlushWait.
func (s *session) lateFlush(ctx context.Context) (flushed, error) {
	ctx, cancel := context.WithTimeout(ctx, lateFlushWait)
	defer cancel()
	return s.flush(ctx)
}

// reported is closed once the init has hung up its control connection,
// after its last report; nil when it has not connected.
func (s *session) reported() <-chan struct{} {
	select {
	case <-s.ctrlReady:
		return s.ctrlDone
	default:
		return nil
	}
}

// flushWait bounds a flush: the init answers at once unless it is gone.
// lateFlushWait bounds one past an invocation's deadline.
const (
	flushWait     = 5 * time.Second
	lateFlushWait = time.Second
)

var errSessionEnded = errors.New("lambda: the execution environment ended")

// connQueue hands the runtime's connections to the session's HTTP server,
// as its listener.
type connQueue struct {
	ch     chan net.Conn
	mu     sync.Mutex
	open   int // connections handed out and not closed
	closed chan struct{}
	once   sync.Once
}

func newConnQueue() *connQueue {
	return &connQueue{ch: make(chan net.Conn), closed: make(chan struct{})}
}

// put queues a connection unless the container holds too many already.
func (q *connQueue) put(c net.Conn) bool {
	q.mu.Lock()
	if q.open >= maxRuntimeConns {
		q.mu.Unlock()
		return false
	}
	q.open++
	q.mu.Unlock()
	select {
	case q.ch <- &countedConn{Conn: c, q: q}:
		return true
	case <-q.closed:
		q.done()
		return false
	}
}

func (q *connQueue) done() {
	q.mu.Lock()
	q.open--
	q.mu.Unlock()
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.closed) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return &net.UnixAddr{Name: "runtime", Net: "unix"} }

// countedConn gives its place back when it closes.
type countedConn struct {
	net.Conn
	q    *connQueue
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(c.q.done)
	return c.Conn.Close()
}
