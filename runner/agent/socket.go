package agent

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The socket's protocol, version 1 (see the init command): every
// connection begins with a hello (its kind, the version, the container's
// secret); the control connection then carries frames.
const (
	protocolVersion = 1
	secretLen       = 32
	helloLen        = 2 + secretLen
	// secretEnv carries the container's secret to its init, which removes
	// it before it starts the function.
	secretEnv = "MINILAMBDA_AGENT_SECRET"

	kindControl = 'C'
	kindConn    = 'F'

	frameEvent = 'E' // server to init: the event
	frameFlush = 'F' // server to init: send the logs collected so far
	frameKill  = 'K' // server to init: kill the function now
	frameLogs  = 'L' // init to server: 8 bytes of dropped count, the logs
	frameReply = 'R' // init to server: a hot result line and its logs
	frameExit  = 'X' // init to server: 4 bytes of JSON length, the report, stdout, the last logs
)

// Bounds on what a container may ask of the server through its socket.
// Every connection costs the server a descriptor from the moment it is
// accepted: at most maxHandshakes of a container's wait for their hello
// (the init sends it at once), at most maxRuntimeConns carry its
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
// link releases it.
const (
	acceptRetryMin = 5 * time.Millisecond
	acceptRetryMax = time.Second
)

// link is the server's end of one container's socket: the listener, the
// container's secret, the control connection once the init has made it,
// and, in lambda mode, the runtime's connections it passes.
type link struct {
	h      *Host
	dir    string
	ln     *net.UnixListener
	secret []byte
	// limit is the output limit the init keeps to, and maxFrame bounds a
	// frame from it; frame takes each one, in order, and conns (lambda
	// mode) the runtime's connections: a link without refuses them.
	limit    int64
	maxFrame int
	frame    func(typ byte, payload []byte)
	conns    *connQueue
	// remote and name are set for a container on another node, whose
	// socket a node agent holds: it relays the connections (gateway.go).
	remote *Gateway
	name   string

	// handshakes counts the socket's connections accepted and not yet
	// put where they belong (or closed); released closes with the socket.
	handshakes  atomic.Int32
	released    chan struct{}
	releaseOnce sync.Once

	// ctrl is the control connection, once the init has connected;
	// ctrlReady closes then, and ctrlDone when the init hangs up.
	ctrlMu    sync.Mutex
	ctrl      net.Conn
	ctrlReady chan struct{}
	ctrlDone  chan struct{}
	// ctrlErr is what ended the control connection, set before ctrlDone
	// closes.
	ctrlErr error
}

func newLink(h *Host, dir string, secret []byte, limit int64) *link {
	// A frame from the init holds at most stdout and the logs, each
	// within the limit, and a report.
	return &link{h: h, dir: dir, secret: secret, limit: limit, maxFrame: int(2*limit) + maxExitReport + 64,
		released: make(chan struct{}), ctrlReady: make(chan struct{}), ctrlDone: make(chan struct{})}
}

// sendWait bounds the write of one frame: the init reads its frames as
// they come, and one that does not is gone.
const sendWait = 10 * time.Second

// send writes one frame to the init. It fails before the init has
// connected.
func (l *link) send(typ byte, payload []byte) error {
	var head [5]byte
	head[0] = typ
	binary.BigEndian.PutUint32(head[1:], uint32(len(payload)))
	l.ctrlMu.Lock()
	defer l.ctrlMu.Unlock()
	if l.ctrl == nil {
		return errors.New("agent: the container's init has not connected")
	}
	bufs := net.Buffers{head[:]}
	if len(payload) > 0 {
		bufs = append(bufs, payload)
	}
	l.ctrl.SetWriteDeadline(time.Now().Add(sendWait))
	_, err := bufs.WriteTo(l.ctrl)
	return err
}

// ready waits for the init's control connection, at most until deadline:
// errNoInit when it does not come, errSessionEnded when the container ends
// first.
func (l *link) ready(ctx context.Context, deadline time.Time, exited <-chan struct{}) error {
	select {
	case <-l.ctrlReady:
		return nil
	default:
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-l.ctrlReady:
		return nil
	case <-exited:
		return errSessionEnded
	case <-l.released:
		return errSessionEnded
	case <-t.C:
		return errNoInit
	case <-ctx.Done():
		return ctx.Err()
	}
}

var errNoInit = errors.New("agent: the container's init never connected")

// release closes the socket and the control connection, and removes the
// socket's directory.
func (l *link) release() {
	l.releaseOnce.Do(func() { close(l.released) })
	if l.ln != nil {
		l.ln.Close()
	}
	if l.remote != nil {
		l.remote.close(l.name)
	}
	if l.conns != nil {
		l.conns.Close()
	}
	l.ctrlMu.Lock()
	if l.ctrl != nil {
		l.ctrl.Close()
	}
	l.ctrlMu.Unlock()
	if l.dir != "" {
		os.RemoveAll(l.dir)
	}
}

// unixListener is what serveSocket takes of the socket's listener.
type unixListener interface {
	AcceptUnix() (*net.UnixConn, error)
}

// serveSocket accepts the container's connections until ln closes.
func (s *link) serveSocket(ln unixListener) {
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

// handshake reads a connection's hello, with the descriptor it carries,
// and puts the connection where it belongs: nowhere, when its version or
// its secret is not this link's.
func (s *link) handshake(uc *net.UnixConn) {
	uc.SetReadDeadline(time.Now().Add(handshakeWait))
	msg := make([]byte, helloLen)
	oob := make([]byte, syscall.CmsgSpace(4*4))
	n, oobn, _, _, err := uc.ReadMsgUnix(msg, oob)
	fds := receivedFDs(oob[:oobn])
	if err != nil || n != helloLen {
		closeFDs(fds)
		uc.Close()
		return
	}
	if !s.checkHello(msg) {
		closeFDs(fds)
		uc.Close()
		return
	}
	switch msg[0] {
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
		if _, ok := c.(*net.TCPConn); !ok || s.conns == nil || !s.conns.put(c) {
			c.Close()
		}
	default:
		closeFDs(fds)
		uc.Close()
	}
}

// checkHello says whether a hello has this link's version and secret,
// and logs why not.
func (s *link) checkHello(msg []byte) bool {
	if msg[1] != protocolVersion {
		s.h.logger.Warn("a container's init speaks another version of the protocol; is the init the server's own?",
			"dir", s.dir, "instance", s.name, "version", msg[1], "want", protocolVersion)
		return false
	}
	if subtle.ConstantTimeCompare(msg[2:], s.secret) != 1 {
		s.h.logger.Warn("a connection to a container's socket did not have its secret", "dir", s.dir, "instance", s.name)
		return false
	}
	return true
}

// handshakeRelayed takes a connection a node agent relays from the
// container's socket on its node: the hello as the init sent it, then the
// connection's bytes. A relayed 'F' connection is the runtime's connection
// itself: a descriptor cannot cross machines, so the agent carries its
// bytes instead.
func (s *link) handshakeRelayed(c net.Conn) {
	if s.handshakes.Add(1) > maxHandshakes {
		s.handshakes.Add(-1)
		c.Close()
		return
	}
	defer s.handshakes.Add(-1)
	c.SetReadDeadline(time.Now().Add(handshakeWait))
	msg := make([]byte, helloLen)
	if _, err := io.ReadFull(c, msg); err != nil || !s.checkHello(msg) {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	switch msg[0] {
	case kindControl:
		if !s.attachControl(c) {
			c.Close()
		}
	case kindConn:
		if s.conns == nil || !s.conns.put(c) {
			c.Close()
		}
	default:
		c.Close()
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
func (s *link) attachControl(uc net.Conn) bool {
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

// readControl takes the init's frames until the connection ends, or a
// frame is over the bound.
func (s *link) readControl(uc net.Conn) {
	br := bufio.NewReaderSize(uc, 64<<10)
	for {
		typ, payload, err := readFrame(br, s.maxFrame)
		if err != nil {
			s.ctrlMu.Lock()
			s.ctrlErr = err
			s.ctrlMu.Unlock()
			close(s.ctrlDone)
			return
		}
		s.frame(typ, payload)
	}
}

// lost says, once the control connection has ended, whether it was lost
// with the node of the container, which then can tell nothing more: why,
// or "" when the init hung up, or is still connected.
func (s *link) lost() string {
	if !isClosed(s.ctrlDone) {
		return ""
	}
	s.ctrlMu.Lock()
	defer s.ctrlMu.Unlock()
	var le *lostError
	if errors.As(s.ctrlErr, &le) {
		return le.Error()
	}
	return ""
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
