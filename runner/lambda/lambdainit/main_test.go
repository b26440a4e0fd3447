package main

// The init is a command, with no API of its own: its tests are internal,
// and call its parts (the collector, the control connection, the passing
// of connections and the start of the child) directly. run itself listens
// on a fixed port and waits for any child of its process, as PID 1 does;
// runner/lambda's tests run the binary.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// wait bounds every wait for something that should happen at once.
const wait = 10 * time.Second

func pipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return r, w
}

func write(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatal(err)
	}
}

func wantTake(t *testing.T, c *collector, logs string, dropped int64) {
	t.Helper()
	got, d := c.take()
	if string(got) != logs || d != dropped {
		t.Fatalf("take: %q, %d dropped; want %q, %d", got, d, logs, dropped)
	}
}

func TestCollectorTakesWhatWasWritten(t *testing.T) {
	r, w := pipe(t)
	c := &collector{limit: 1 << 20}
	c.follow(r)
	wantTake(t, c, "", 0)
	write(t, w, "hello, ")
	write(t, w, "world\n")
	// Whatever the pipe holds when take is called is taken, read or not.
	wantTake(t, c, "hello, world\n", 0)
	wantTake(t, c, "", 0)
	big := strings.Repeat("x", 100<<10) // more than one read's chunk
	write(t, w, big)
	wantTake(t, c, big, 0)
}

func TestCollectorLimit(t *testing.T) {
	r, w := pipe(t)
	c := &collector{limit: 5}
	c.follow(r)
	write(t, w, "hello, world\n")
	wantTake(t, c, "hello", 8)
	// The limit is per take.
	write(t, w, "bye")
	wantTake(t, c, "bye", 0)
	write(t, w, "abc")
	write(t, w, "defg")
	wantTake(t, c, "abcde", 2)
}

func TestCollectorEOF(t *testing.T) {
	r1, w1 := pipe(t)
	r2, w2 := pipe(t)
	c := &collector{limit: 1 << 20}
	c.follow(r1)
	c.follow(r2)
	write(t, w1, "one")
	w1.Close()
	wantTake(t, c, "one", 0)
	select {
	case <-c.eof:
		t.Fatal("eof with a pipe still open")
	default:
	}
	write(t, w2, "last")
	w2.Close()
	ended := make(chan struct{})
	go func() {
		c.waitForEOF(time.Hour)
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(wait):
		t.Fatal("waitForEOF did not return once every pipe had ended")
	}
	wantTake(t, c, "last", 0)
}

func TestCollectorWaitForEOF(t *testing.T) {
	// No pipes: nothing to wait for.
	c := &collector{limit: 10}
	start := time.Now()
	c.waitForEOF(time.Hour)
	if since := time.Since(start); since > wait {
		t.Fatalf("waitForEOF with no pipes took %v", since)
	}
	// A pipe held open (by a process the child left behind): the wait is
	// bounded.
	r, _ := pipe(t)
	c.follow(r)
	start = time.Now()
	c.waitForEOF(20 * time.Millisecond)
	if since := time.Since(start); since < 20*time.Millisecond || since > wait {
		t.Fatalf("waitForEOF(20ms) with a pipe open returned after %v", since)
	}
}

// readFrame reads one frame of the control connection.
func readFrame(t *testing.T, r io.Reader) (byte, []byte) {
	t.Helper()
	var head [5]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	payload := make([]byte, binary.BigEndian.Uint32(head[1:]))
	if _, err := io.ReadFull(r, payload); err != nil {
		t.Fatalf("reading a frame's payload: %v", err)
	}
	return head[0], payload
}

func frame(typ byte, payload string) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

// socketPair returns both ends of a unix stream socket pair.
func socketPair(t *testing.T) (a, b *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

func TestControlAnswersFlushes(t *testing.T) {
	server, init := socketPair(t)
	server.SetDeadline(time.Now().Add(wait))
	logs := &collector{limit: 100, buf: []byte("some logs"), dropped: 7}
	ctrl := &control{conn: init}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctrl.serve(logs)
	}()

	send := func(b []byte) {
		t.Helper()
		if _, err := server.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	wantLogs := func(logs string, dropped uint64) {
		t.Helper()
		typ, payload := readFrame(t, server)
		if typ != 'L' || len(payload) < 8 {
			t.Fatalf("frame %q of %d bytes; want logs", typ, len(payload))
		}
		if d := binary.BigEndian.Uint64(payload); d != dropped || string(payload[8:]) != logs {
			t.Fatalf("logs %q, %d dropped; want %q, %d", payload[8:], d, logs, dropped)
		}
	}
	send(frame('F', ""))
	wantLogs("some logs", 7)
	send(frame('F', ""))
	wantLogs("", 0)
	// Frames of other kinds are skipped, and payloads are read past.
	send(frame('Q', "what is this"))
	send(frame('F', "with a payload"))
	wantLogs("", 0)

	// The server's end: serve returns, having sent nothing more.
	server.CloseWrite()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("serve did not return when the connection ended")
	}
	init.Close()
	if rest, err := io.ReadAll(server); err != nil || len(rest) != 0 {
		t.Fatalf("the init sent %q more, %v; want one answer per flush", rest, err)
	}
}

func TestControlExit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		report  exitReport
		logs    string
		dropped int64
		json    string
	}{
		{"exit code", exitReport{Code: 3}, "last words\n", 0, `{"code":3}`},
		{"success", exitReport{}, "", 0, `{"code":0}`},
		{"signal", exitReport{Code: 137, Signal: "killed"}, "partial", 5, `{"code":137,"signal":"killed","dropped":5}`},
		{"no entrypoint", exitReport{Code: 127, Error: "cannot run"}, "", 0, `{"code":127,"error":"cannot run"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, init := net.Pipe()
			defer server.Close()
			server.SetDeadline(time.Now().Add(wait))
			logs := &collector{limit: 100, buf: []byte(tc.logs), dropped: tc.dropped}
			go (&control{conn: init}).exit(logs, tc.report)
			typ, payload := readFrame(t, server)
			if typ != 'X' || len(payload) < 4 {
				t.Fatalf("frame %q of %d bytes; want an exit report", typ, len(payload))
			}
			n := binary.BigEndian.Uint32(payload)
			if int(n) > len(payload)-4 {
				t.Fatalf("report of %d bytes in a payload of %d", n, len(payload))
			}
			if report, rest := string(payload[4:4+n]), string(payload[4+n:]); report != tc.json || rest != tc.logs {
				t.Errorf("report %s with logs %q; want %s with %q", report, rest, tc.json, tc.logs)
			}
			// The connection ends with the report.
			if _, err := server.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
				t.Errorf("read after the report: %v; want the connection closed", err)
			}
		})
	}
}

// pass hands each connection to the server with its descriptor, and keeps
// no copy of it: the connection is the server's alone.
func TestPass(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "rapi.sock")
	server, err := net.ListenUnix("unix", &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pass(ln, socket)
	}()

	for i := range 2 {
		runtime, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer runtime.Close()
		runtime.SetDeadline(time.Now().Add(wait))

		server.SetDeadline(time.Now().Add(wait))
		uc, err := server.AcceptUnix()
		if err != nil {
			t.Fatal(err)
		}
		kind := make([]byte, 2)
		oob := make([]byte, syscall.CmsgSpace(4*4))
		n, oobn, _, _, err := uc.ReadMsgUnix(kind, oob)
		if err != nil || n != 1 || kind[0] != 'F' {
			t.Fatalf("connection %d: read %q, %v; want 'F'", i, kind[:n], err)
		}
		msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			t.Fatalf("connection %d: control messages %v, %v; want one", i, msgs, err)
		}
		fds, err := syscall.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			t.Fatalf("connection %d: descriptors %v, %v; want one", i, fds, err)
		}
		// The init closes its end once it has sent the descriptor.
		uc.SetReadDeadline(time.Now().Add(wait))
		if n, err := uc.Read(kind); n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("connection %d: read %d bytes, %v; want the init to close it", i, n, err)
		}
		uc.Close()

		f := os.NewFile(uintptr(fds[0]), "runtime")
		conn, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := conn.(*net.TCPConn); !ok {
			t.Fatalf("connection %d: a %T; want the runtime's TCP connection", i, conn)
		}
		conn.SetDeadline(time.Now().Add(wait))
		write(t, runtime, "GET /next")
		got := make([]byte, 9)
		if _, err := io.ReadFull(conn, got); err != nil || string(got) != "GET /next" {
			t.Fatalf("connection %d: the server read %q, %v", i, got, err)
		}
		write(t, conn, "200 OK")
		got = got[:6]
		if _, err := io.ReadFull(runtime, got); err != nil || string(got) != "200 OK" {
			t.Fatalf("connection %d: the runtime read %q, %v", i, got, err)
		}
		// The server's close is the end of the connection: the init holds
		// no copy of it.
		conn.Close()
		if n, err := runtime.Read(got); n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("connection %d: read %d bytes, %v after the server closed; want the end", i, n, err)
		}
	}

	ln.Close()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("pass did not return when its listener closed")
	}
}

func TestStart(t *testing.T) {
	t.Setenv("LAMBDAINIT_TEST", "from the environment")
	logs := &collector{limit: 1 << 20}
	proc, err := start([]string{"sh", "-c", `echo out; echo err >&2; cat; echo "$LAMBDAINIT_TEST"; exit 4`}, logs)
	if err != nil {
		t.Fatal(err)
	}
	state, err := proc.Wait()
	if err != nil || state.ExitCode() != 4 {
		t.Fatalf("the child ended with %v, %v; want exit code 4", state, err)
	}
	logs.waitForEOF(wait)
	// stdout and stderr in the order written, stdin empty, the init's
	// environment passed on.
	wantTake(t, logs, "out\nerr\nfrom the environment\n", 0)
}

func TestStartCannotRun(t *testing.T) {
	for _, command := range [][]string{
		{"/nonexistent/bootstrap"},
		{"no-such-command-on-the-path"},
		{filepath.Join(t.TempDir())}, // a directory
	} {
		logs := &collector{limit: 10}
		if _, err := start(command, logs); err == nil || !strings.Contains(err.Error(), "cannot run") {
			t.Errorf("start(%q): %v; want an error that says it cannot run", command, err)
		}
	}
}

// The frames the init writes are those runner/lambda reads: a type byte
// and a big-endian length before the payload.
func TestSendFrame(t *testing.T) {
	server, init := net.Pipe()
	defer server.Close()
	server.SetDeadline(time.Now().Add(wait))
	go (&control{conn: init}).send('L', []byte{1, 2}, []byte("abc"), nil)
	got := make([]byte, 10)
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatal(err)
	}
	if want := []byte{'L', 0, 0, 0, 5, 1, 2, 'a', 'b', 'c'}; !bytes.Equal(got, want) {
		t.Fatalf("frame %v; want %v", got, want)
	}
}

// TestCollectorTakeIsBounded: a runtime that never stops writing cannot
// hold a flush up; each take returns what the pipe held when it was
// called, and nothing is lost between takes.
func TestCollectorTakeIsBounded(t *testing.T) {
	r, w := pipe(t)
	c := &collector{limit: 64 << 20}
	c.follow(r)
	stop := make(chan struct{})
	written := make(chan int)
	go func() {
		n := 0
		chunk := []byte(strings.Repeat("y", 4096))
		for {
			select {
			case <-stop:
				written <- n
				return
			default:
			}
			m, err := w.Write(chunk)
			n += m
			if err != nil {
				written <- n
				return
			}
		}
	}()
	taken := 0
	for range 50 {
		begin := time.Now()
		got, _ := c.take()
		if d := time.Since(begin); d > time.Second {
			t.Fatalf("a take under a nonstop writer took %v", d)
		}
		taken += len(got)
	}
	close(stop)
	n := <-written
	w.Close()
	c.waitForEOF(10 * time.Second)
	got, _ := c.take()
	if taken += len(got); taken != n {
		t.Errorf("took %d bytes of the %d written", taken, n)
	}
}

// failingListener fails its first accepts with EMFILE, as a process out
// of descriptors sees them, then accepts from the listener it wraps.
type failingListener struct {
	net.Listener
	failing int
	calls   []time.Time // pass calls Accept from one goroutine
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.calls = append(l.calls, time.Now())
	if l.failing > 0 {
		l.failing--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// An accept that fails does not end the runtime's endpoint: pass tries
// again after a pause that doubles from 5 ms, and passes the connection.
func TestPassOutlivesAcceptErrors(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "rapi.sock")
	server, err := net.ListenUnix("unix", &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const failures = 4
	ln := &failingListener{Listener: tcp, failing: failures}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pass(ln, socket)
	}()
	runtime, err := net.Dial("tcp", tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer runtime.Close()
	server.SetDeadline(time.Now().Add(wait))
	uc, err := server.AcceptUnix()
	if err != nil {
		t.Fatalf("no connection passed after %d failed accepts: %v", failures, err)
	}
	uc.Close()
	tcp.Close()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("pass did not return when its listener closed")
	}
	// 5, 10, 20 and 40 ms after the failures.
	pause := 5 * time.Millisecond
	for i := 1; i <= failures; i++ {
		if gap := ln.calls[i].Sub(ln.calls[i-1]); gap < pause {
			t.Errorf("accept %d came %v after the failure before it; want a pause of %v", i+1, gap, pause)
		}
		pause *= 2
	}
}
