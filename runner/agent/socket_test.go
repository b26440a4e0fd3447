package agent_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minilambda/minilambda/runner/agent"
)

// wantClosed checks that the peer of r closes: a read sees the end of the
// stream, not the deadline.
func wantClosed(t *testing.T, what string, r interface {
	io.Reader
	SetReadDeadline(time.Time) error
}) {
	t.Helper()
	if err := r.SetReadDeadline(time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	n, err := r.Read(make([]byte, 16))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("%s: read %d bytes, %v; want it closed", what, n, err)
	}
}

func TestSecondControlConnectionIsRefused(t *testing.T) {
	h, eng := newHost(t, agent.Options{})
	c := start(t, h, eng)
	first := c.connect(logsFor(map[int]string{1: "first's", 3: "second's"}))
	// An invocation's logs come through the control connection: the first
	// is attached once one has.
	if got := c.invoke("inv-1", nil, nil); string(got.res.Stderr) != "first's" {
		t.Fatalf("Stderr %q; want the first control connection's logs", got.res.Stderr)
	}

	second, err := dialUnix(c.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if _, err := second.Write(hello('C', c.secret)); err != nil {
		t.Fatal(err)
	}
	wantClosed(t, "a second control connection", second)

	got := c.invoke("inv-2", nil, nil)
	if string(got.res.Stderr) != "second's" || first.flushes.Load() != 3 {
		t.Errorf("Stderr %q after %d flushes of the first control connection; want its logs", got.res.Stderr, first.flushes.Load())
	}
}

// A connection carries the runtime's connection only when it is a TCP
// socket: anything else the socket is sent is closed, never served.
func TestPassedDescriptors(t *testing.T) {
	h, eng := newHost(t, agent.Options{})
	c := start(t, h, eng)
	c.connect(nil)
	// The control connection is attached once an invocation has run: a
	// connection of kind 'C' below is a second one.
	c.invoke("inv-0", nil, nil)

	t.Run("a pipe", func(t *testing.T) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		err = c.sendKind('F', int(w.Fd()))
		w.Close()
		if err != nil {
			t.Fatal(err)
		}
		// The read end ends once the server has closed its copy of the
		// write end too.
		wantClosed(t, "the pipe", r)
	})
	t.Run("a unix socket", func(t *testing.T) {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		mine := os.NewFile(uintptr(fds[1]), "mine")
		defer mine.Close()
		err = c.sendKind('F', fds[0])
		syscall.Close(fds[0])
		if err != nil {
			t.Fatal(err)
		}
		conn, err := net.FileConn(mine)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		wantClosed(t, "the unix socket", conn)
	})
	for _, tc := range []struct {
		name  string
		kind  byte
		conns int
	}{
		{"two TCP sockets at once", 'F', 2},
		{"a TCP socket with an unknown kind", 'Z', 1},
		{"a TCP socket on the control connection", 'C', 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var clients []*net.TCPConn
			var fds []int
			for range tc.conns {
				client, server, err := tcpPair()
				if err != nil {
					t.Fatal(err)
				}
				defer client.Close()
				f, err := server.File()
				server.Close()
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				clients = append(clients, client)
				fds = append(fds, int(f.Fd()))
			}
			u, err := dialUnix(c.socket)
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			if _, _, err := u.WriteMsgUnix(hello(tc.kind, c.secret), syscall.UnixRights(fds...), nil); err != nil {
				t.Fatal(err)
			}
			for _, fd := range fds {
				syscall.Close(fd)
			}
			for i, client := range clients {
				// A served connection would wait for a request.
				wantClosed(t, fmt.Sprintf("TCP connection %d", i), client)
			}
		})
	}

	// None of it harmed the session.
	if got := c.invoke("inv-1", nil, []byte(`"ok"`)); string(got.res.Stdout) != `"ok"` {
		t.Errorf("Stdout %q", got.res.Stdout)
	}
}

func TestHandshakeOfNothing(t *testing.T) {
	h, eng := newHost(t, agent.Options{})
	c := start(t, h, eng)
	for _, kind := range []byte{'F', 'Z'} {
		u, err := dialUnix(c.socket)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := u.Write(hello(kind, c.secret)); err != nil {
			t.Fatal(err)
		}
		wantClosed(t, fmt.Sprintf("a connection of kind %q with no descriptor", kind), u)
		u.Close()
	}
	// The control connection is still to come, and works.
	c.connect(logsFor(map[int]string{1: "logs"}))
	if got := c.invoke("inv-1", nil, nil); string(got.res.Stderr) != "logs" {
		t.Errorf("Stderr %q", got.res.Stderr)
	}
}

// A container holds at most 8 connections to its Runtime API at once.
func TestRuntimeConnectionLimit(t *testing.T) {
	h, eng := newHost(t, agent.Options{})
	c := start(t, h, eng)
	c.connect(nil)

	// served sends a request on a new connection and says whether it was
	// answered; the connection stays open when it was.
	served := func() (net.Conn, bool) {
		t.Helper()
		conn, err := c.dialRuntime()
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(wait))
		fmt.Fprintf(conn, "GET /nowhere HTTP/1.1\r\nHost: %s\r\n\r\n", agent.RuntimeAPI)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			conn.Close()
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
				return nil, false
			}
			t.Fatalf("reading an answer: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("status %d; want 404", resp.StatusCode)
		}
		return conn, true
	}
	var open []net.Conn
	defer func() {
		for _, conn := range open {
			conn.Close()
		}
	}()
	for i := range 8 {
		conn, ok := served()
		if !ok {
			t.Fatalf("connection %d was not served", i+1)
		}
		open = append(open, conn)
	}
	if conn, ok := served(); ok {
		conn.Close()
		t.Fatal("a ninth connection was served")
	}
	// One closes: its place is free again.
	open[0].Close()
	open = open[1:]
	eventually(t, "a connection is served once one of eight closed", func() bool {
		conn, ok := served()
		if ok {
			open = append(open, conn)
		}
		return ok
	})
}

// The init answers each flush with one logs frame; a logs frame it sends
// when none was asked for is dropped (socket.go, readControl), and does not
// stand in for the answer to the next flush.
func TestUnaskedLogsAreDropped(t *testing.T) {
	h, eng := newHost(t, agent.Options{})
	c := start(t, h, eng)
	ctl := c.connect(logsFor(map[int]string{1: "first's logs", 2: "between", 3: "second's logs"}))
	if err := ctl.send('L', make([]byte, 8), []byte("nobody asked")); err != nil {
		t.Fatal(err)
	}
	if got := c.invoke("inv-1", nil, nil); string(got.res.Stderr) != "first's logs" {
		t.Errorf("first invocation's Stderr %q; want %q", got.res.Stderr, "first's logs")
	}
	if got := c.invoke("inv-2", nil, nil); string(got.res.Stderr) != "second's logs" {
		t.Errorf("second invocation's Stderr %q; want %q", got.res.Stderr, "second's logs")
	}
}

// An init that answers a flush after the server stopped waiting for it
// (5s) does not shift every later invocation's logs onto the next one.
func TestLateLogsAreNoLaterInvocations(t *testing.T) {
	h, eng := newHost(t, agent.Options{})
	c := start(t, h, eng)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	c.connect(func(n int) (string, int64) {
		switch n {
		case 1:
			<-release // answers after the server gave up on it
			return "first's logs, late", 0
		case 2:
			return "between", 0
		case 3:
			return "second's logs", 0
		}
		return "", 0
	})
	// Registered after connect's cleanup, so that it runs before that
	// waits for the control connection.
	t.Cleanup(free)
	got := c.invoke("inv-1", nil, []byte(`1`))
	free()
	if len(got.res.Stderr) != 0 {
		t.Errorf("first invocation's Stderr %q; the init never answered in time", got.res.Stderr)
	}
	if got := c.invoke("inv-2", nil, []byte(`2`)); string(got.res.Stderr) != "second's logs" {
		t.Errorf("second invocation's Stderr %q; want %q", got.res.Stderr, "second's logs")
	}
}

// openFDs counts the descriptors this process holds.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// A container that dials its socket again and again, and sends nothing,
// holds at most 8 of the server's descriptors in handshakes: a connection
// past them is closed at once, not after the handshake's 5 s. The socket
// serves its init again once they are gone.
func TestHandshakesAreBounded(t *testing.T) {
	h, eng := newHost(t, agent.Options{})
	c := start(t, h, eng)
	c.connect(nil)
	c.invoke("inv-1", nil, []byte(`1`))
	before := openFDs(t)

	const stalled, flood = 8, 500
	var conns []*net.UnixConn
	defer func() {
		for _, u := range conns {
			u.Close()
		}
	}()
	for range stalled + flood {
		u, err := dialUnix(c.socket)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, u)
	}
	// The first ones wait for their first byte; every later one is closed.
	began := time.Now()
	for i, u := range conns[stalled:] {
		u.SetReadDeadline(began.Add(time.Second))
		if n, err := u.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("connection %d past the %d in their handshake: read %d bytes, %v; want it closed at once", stalled+i+1, stalled, n, err)
		}
	}
	// The server's share of the descriptors: what this process holds now,
	// less the test's ends of the connections.
	if server := openFDs(t) - before - len(conns); server > stalled+4 {
		t.Errorf("the server holds %d more descriptors with %d connections dialled; want at most %d", server, len(conns), stalled+4)
	}
	for _, u := range conns[:stalled] {
		u.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := u.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a connection in its handshake: %v; want it waiting for its first byte", err)
		}
	}
	for _, u := range conns {
		u.Close()
	}
	conns = nil
	// Their places are free once the server has seen them go.
	eventually(t, "the init's connections are served again", func() bool {
		conn, err := c.dialRuntime()
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(wait))
		fmt.Fprintf(conn, "GET /nowhere HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", agent.RuntimeAPI)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusNotFound
	})
	if got := c.invoke("inv-2", nil, []byte(`2`)); string(got.res.Stdout) != `2` {
		t.Errorf("Stdout %q after the flood", got.res.Stdout)
	}
}

// freeFDs returns the n lowest descriptor numbers this process has free.
func freeFDs(n int) []int {
	var free []int
	for fd := 0; len(free) < n; fd++ {
		if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0); errno == syscall.EBADF {
			free = append(free, fd)
		}
	}
	return free
}

// syncBuffer collects a logger's output for the test to read.
type syncBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// The server runs out of descriptors while its container dials the
// socket: the accept fails with EMFILE. Once descriptors are free again,
// the socket takes that connection and the container's next ones.
func TestSocketOutlivesRunningOutOfDescriptors(t *testing.T) {
	logs := &syncBuffer{}
	h, eng := newHost(t, agent.Options{Logger: slog.New(slog.NewTextHandler(io.MultiWriter(logs, t.Output()), nil))})
	c := start(t, h, eng)
	c.connect(nil)
	c.invoke("inv-1", nil, []byte(`1`))

	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	restore := func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
	}
	defer restore()
	// Room for one more descriptor: the dial takes it, and the accept
	// finds none.
	low := lim
	low.Cur = uint64(freeFDs(2)[1])
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	u, err := dialUnix(c.socket)
	time.Sleep(300 * time.Millisecond)
	restore()
	if err != nil {
		t.Fatalf("dialling with one descriptor free: %v", err)
	}
	defer u.Close()
	if !strings.Contains(logs.String(), "too many open files") {
		t.Errorf("the server logged no accept that failed for want of descriptors:\n%s", logs)
	}
	// That connection is taken, and handled: one of an unknown kind is
	// closed.
	if _, err := u.Write(hello('Z', c.secret)); err != nil {
		t.Fatal(err)
	}
	wantClosed(t, "the connection dialled while the server had no descriptor", u)
	if got := c.invoke("inv-2", nil, []byte(`2`)); string(got.res.Stdout) != `2` {
		t.Errorf("Stdout %q after the server ran out of descriptors", got.res.Stdout)
	}
}

// A connection whose hello does not carry the container's secret, or
// speaks another version of the protocol, is closed and gets nothing: it
// does not become the control connection, and the descriptor it carries
// is not served.
func TestHelloWithoutTheSecretOrTheVersion(t *testing.T) {
	h, eng := newHost(t, agent.Options{})
	c := start(t, h, eng)
	other := start(t, h, eng)
	flipped := bytes.Clone(c.secret)
	flipped[secretLen-1] ^= 1
	for _, tc := range []struct {
		name  string
		hello func(kind byte) []byte
	}{
		{"a wrong secret", func(kind byte) []byte { return hello(kind, flipped) }},
		{"another container's secret", func(kind byte) []byte { return hello(kind, other.secret) }},
		{"no secret", func(kind byte) []byte { return hello(kind, make([]byte, secretLen)) }},
		{"version 2", func(kind byte) []byte {
			msg := hello(kind, c.secret)
			msg[1] = protocolVersion + 1
			return msg
		}},
		{"version 0", func(kind byte) []byte {
			msg := hello(kind, c.secret)
			msg[1] = 0
			return msg
		}},
		{"a hello cut short", func(kind byte) []byte { return hello(kind, c.secret)[:2+secretLen/2] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("control", func(t *testing.T) {
				u, err := dialUnix(c.socket)
				if err != nil {
					t.Fatal(err)
				}
				defer u.Close()
				if _, err := u.Write(tc.hello('C')); err != nil {
					t.Fatal(err)
				}
				wantClosed(t, "the control connection", u)
			})
			t.Run("descriptor", func(t *testing.T) {
				client, server, err := tcpPair()
				if err != nil {
					t.Fatal(err)
				}
				defer client.Close()
				f, err := server.File()
				server.Close()
				if err != nil {
					t.Fatal(err)
				}
				u, err := dialUnix(c.socket)
				if err != nil {
					f.Close()
					t.Fatal(err)
				}
				defer u.Close()
				_, _, err = u.WriteMsgUnix(tc.hello('F'), syscall.UnixRights(int(f.Fd())), nil)
				f.Close()
				if err != nil {
					t.Fatal(err)
				}
				wantClosed(t, "the connection that carried the descriptor", u)
				// A served connection would wait for a request; one the
				// server took and closed, or never took, ends.
				wantClosed(t, "the TCP connection passed", client)
			})
		})
	}

	// The control connection is still to come: the init's own is taken,
	// and has the first flush.
	ctl := c.connect(logsFor(map[int]string{1: "the init's"}))
	got := c.invoke("inv-1", nil, []byte(`"ok"`))
	if string(got.res.Stderr) != "the init's" || string(got.res.Stdout) != `"ok"` || ctl.flushes.Load() != 1 {
		t.Errorf("Stdout %q, Stderr %q after %d flushes of the init's control connection; want its answer to the first",
			got.res.Stdout, got.res.Stderr, ctl.flushes.Load())
	}
}
