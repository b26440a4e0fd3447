package main

// The init is a command, with no API of its own: its tests are internal,
// and call its parts (the arguments, the collector, the control
// connection, the passing of connections, the child and each mode's
// carrying of its input and output) directly. run itself listens on a
// fixed port and waits for any child of its process, as PID 1 does;
// runner/agent's tests run the binary.

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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

// recvFrame reads one frame of the control connection, as the server does.
func recvFrame(t *testing.T, r io.Reader) (byte, []byte) {
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

// socketPair returns both ends of a unix stream socket pair: unlike
// net.Pipe it buffers, as the real control connection does, so that the
// init's writes do not wait for the test to read them.
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

func testSecret() []byte {
	s := make([]byte, secretLen)
	for i := range s {
		s[i] = byte(0xa0 + i)
	}
	return s
}

func TestParseArgs(t *testing.T) {
	secret := hex.EncodeToString(testSecret())
	good := []string{"-mode", "hot", "-socket", "/run/agent.sock", "-limit", "1024", "--", "/bin/fn", "-v", "x"}
	cfg, err := parseArgs(good, secret)
	if err != nil {
		t.Fatal(err)
	}
	// Flags after -- are the command's, not the init's.
	if cfg.mode != "hot" || cfg.socket != "/run/agent.sock" || cfg.limit != 1024 ||
		!slices.Equal(cfg.command, []string{"/bin/fn", "-v", "x"}) || !bytes.Equal(cfg.secret, testSecret()) {
		t.Fatalf("parseArgs: %+v", cfg)
	}
	for _, mode := range []string{"cold", "lambda"} {
		args := slices.Clone(good)
		args[1] = mode
		if cfg, err := parseArgs(args, secret); err != nil || cfg.mode != mode {
			t.Errorf("mode %s: %+v, %v", mode, cfg, err)
		}
	}

	with := func(flag, value string) []string {
		args := slices.Clone(good)
		i := slices.Index(args, flag)
		if value == "" {
			return slices.Delete(args, i, i+2)
		}
		args[i+1] = value
		return args
	}
	for _, tc := range []struct {
		name   string
		args   []string
		secret string
		want   string // in the error: the case fails for its own reason
	}{
		{"unknown mode", with("-mode", "warm"), secret, "mode"},
		{"no mode", with("-mode", ""), secret, "mode"},
		{"no socket", with("-socket", ""), secret, "socket"},
		{"limit not a number", with("-limit", "lots"), secret, "limit"},
		{"zero limit", with("-limit", "0"), secret, "limit"},
		{"negative limit", with("-limit", "-1"), secret, "limit"},
		{"no limit", with("-limit", ""), secret, "limit"},
		{"no command", good[:len(good)-3], secret, "command"},
		{"no command nor --", good[:len(good)-4], secret, "command"},
		{"unknown flag", append([]string{"-x"}, good...), secret, "x"},
		{"secret missing", good, "", secretEnv},
		{"secret short", good, secret[:2*secretLen-2], secretEnv},
		{"secret long", good, secret + "00", secretEnv},
		{"secret odd", good, secret[:2*secretLen-1], secretEnv},
		{"secret not hex", good, strings.Repeat("zz", secretLen), secretEnv},
	} {
		if _, err := parseArgs(tc.args, tc.secret); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: parseArgs(%q): %v; want an error about %s", tc.name, tc.args, err, tc.want)
		}
	}
}

func TestHello(t *testing.T) {
	secret := testSecret()
	for _, kind := range []byte{'C', 'F'} {
		h := hello(kind, secret)
		if len(h) != 34 || h[0] != kind || h[1] != 1 || !bytes.Equal(h[2:], secret) {
			t.Errorf("hello(%q): %v; want %q, version 1 and the secret, 34 bytes", kind, h, kind)
		}
	}
}

func TestReadFrame(t *testing.T) {
	br := bytes.NewReader(slices.Concat(frame('E', "event"), frame('K', "")))
	typ, payload, err := readFrame(br)
	if err != nil || typ != 'E' || string(payload) != "event" {
		t.Fatalf("readFrame: %q, %q, %v; want 'E' \"event\"", typ, payload, err)
	}
	// A hot event gains its newline without a copy.
	if cap(payload) <= len(payload) {
		t.Errorf("payload of cap %d; want room for a newline", cap(payload))
	}
	if typ, payload, err := readFrame(br); err != nil || typ != 'K' || len(payload) != 0 {
		t.Fatalf("readFrame: %q, %q, %v; want an empty 'K'", typ, payload, err)
	}
	if _, _, err := readFrame(br); !errors.Is(err, io.EOF) {
		t.Errorf("readFrame at the end: %v; want EOF", err)
	}
	// A connection that ends inside a frame is an error, not a frame.
	cut := frame('E', "event")
	if _, _, err := readFrame(bytes.NewReader(cut[:len(cut)-1])); err == nil {
		t.Error("readFrame of a cut payload: no error")
	}
}

func TestControlAnswersFlushes(t *testing.T) {
	server, init := socketPair(t)
	server.SetDeadline(time.Now().Add(wait))
	logs := &collector{limit: 100, buf: []byte("some logs"), dropped: 7}
	a := &agent{cfg: config{mode: "lambda"}, ctrl: &control{conn: init}, logs: logs}
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.serve()
	}()

	send := func(b []byte) {
		t.Helper()
		if _, err := server.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	wantLogs := func(logs string, dropped uint64) {
		t.Helper()
		typ, payload := recvFrame(t, server)
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

// Only the lambda collects logs between invocations: a flush sent to a
// cold or hot init must not put a frame the server does not expect on the
// connection.
func TestControlFlushIsLambdas(t *testing.T) {
	for _, mode := range []string{"cold", "hot"} {
		server, init := socketPair(t)
		server.SetDeadline(time.Now().Add(wait))
		a := &agent{cfg: config{mode: mode}, ctrl: &control{conn: init}, logs: &collector{limit: 100, buf: []byte("logs")}}
		done := make(chan struct{})
		go func() {
			defer close(done)
			a.serve()
		}()
		if _, err := server.Write(frame('F', "")); err != nil {
			t.Fatal(err)
		}
		server.CloseWrite()
		select {
		case <-done:
		case <-time.After(wait):
			t.Fatalf("%s: serve did not return when the connection ended", mode)
		}
		init.Close()
		if rest, err := io.ReadAll(server); err != nil || len(rest) != 0 {
			t.Errorf("%s: the init answered a flush with %q, %v", mode, rest, err)
		}
	}
}

func TestControlExit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		report  exitReport
		stdout  string
		logs    string
		dropped int64
		json    string
	}{
		{"exit code", exitReport{Code: 3}, "", "last words\n", 0, `{"code":3}`},
		{"success", exitReport{}, "", "", 0, `{"code":0}`},
		{"signal", exitReport{Code: 137, Signal: "killed"}, "", "partial", 5, `{"code":137,"signal":"killed","dropped":5}`},
		{"no entrypoint", exitReport{Code: 127, Error: "cannot run"}, "", "", 0, `{"code":127,"error":"cannot run"}`},
		{"oom", exitReport{Code: 137, OOMKilled: true}, "", "", 0, `{"code":137,"oom_killed":true}`},
		// stdout goes between the report and the logs, its length in the
		// report, so that the server can tell one from the other.
		{"stdout", exitReport{Code: 0, Stdout: 4, StdoutDropped: 2}, "out\n", "err\n", 0, `{"code":0,"stdout":4,"stdout_dropped":2}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, init := net.Pipe()
			defer server.Close()
			server.SetDeadline(time.Now().Add(wait))
			logs := &collector{limit: 100, buf: []byte(tc.logs), dropped: tc.dropped}
			go (&control{conn: init}).exit(tc.report, []byte(tc.stdout), logs)
			typ, payload := recvFrame(t, server)
			if typ != 'X' || len(payload) < 4 {
				t.Fatalf("frame %q of %d bytes; want an exit report", typ, len(payload))
			}
			n := binary.BigEndian.Uint32(payload)
			if int(n) > len(payload)-4 {
				t.Fatalf("report of %d bytes in a payload of %d", n, len(payload))
			}
			if report, rest := string(payload[4:4+n]), string(payload[4+n:]); report != tc.json || rest != tc.stdout+tc.logs {
				t.Errorf("report %s with %q; want %s with %q", report, rest, tc.json, tc.stdout+tc.logs)
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
	secret := testSecret()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pass(ln, socket, secret)
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
		// Room for more than the hello: a longer message would show.
		msg := make([]byte, 64)
		oob := make([]byte, syscall.CmsgSpace(4*4))
		n, oobn, _, _, err := uc.ReadMsgUnix(msg, oob)
		// The server checks the secret of every connection: one that
		// carries a descriptor is no exception.
		if err != nil || n != 34 || msg[0] != 'F' || msg[1] != protocolVersion || !bytes.Equal(msg[2:n], secret) {
			t.Fatalf("connection %d: read %v, %v; want 'F', version 1 and the secret", i, msg[:n], err)
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
		if n, err := uc.Read(msg); n != 0 || !errors.Is(err, io.EOF) {
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
	t.Setenv("AGENT_INIT_TEST", "from the environment")
	a := &agent{
		cfg:  config{mode: "lambda", limit: 1 << 20, command: []string{"sh", "-c", `echo out; echo err >&2; cat; echo "$AGENT_INIT_TEST"; exit 4`}},
		logs: &collector{limit: 1 << 20},
	}
	if err := a.start(); err != nil {
		t.Fatal(err)
	}
	state, err := a.child.Wait()
	if err != nil || state.ExitCode() != 4 {
		t.Fatalf("the child ended with %v, %v; want exit code 4", state, err)
	}
	a.logs.waitForEOF(wait)
	// stdout and stderr in the order written, stdin empty, the init's
	// environment passed on.
	wantTake(t, a.logs, "out\nerr\nfrom the environment\n", 0)
}

func TestStartCannotRun(t *testing.T) {
	for _, mode := range []string{"cold", "hot", "lambda"} {
		for _, command := range [][]string{
			{"/nonexistent/bootstrap"},
			{"no-such-command-on-the-path"},
			{filepath.Join(t.TempDir())}, // a directory
		} {
			a := &agent{cfg: config{mode: mode, limit: 10, command: command}, logs: &collector{limit: 10}}
			if err := a.start(); err == nil || !strings.Contains(err.Error(), "cannot run") {
				t.Errorf("%s: start(%q): %v; want an error that says it cannot run", mode, command, err)
			}
		}
	}
}

// The frames the init writes are those runner/agent reads: a type byte
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

// startAgent starts an init of the mode with `sh -c script` for its child
// and serves its control connection, as run does; it returns the server's
// end. run's reaper is left out (it waits for any child, as PID 1 must),
// so a test reaps the child with reap and reports it with exit.
func startAgent(t *testing.T, mode string, limit int, script string) (*agent, *net.UnixConn) {
	t.Helper()
	return startCommand(t, mode, limit, "sh", "-c", script)
}

func startCommand(t *testing.T, mode string, limit int, command ...string) (*agent, *net.UnixConn) {
	t.Helper()
	server, init := socketPair(t)
	server.SetDeadline(time.Now().Add(wait))
	a := &agent{
		cfg:  config{mode: mode, limit: limit, command: command},
		ctrl: &control{conn: init},
		logs: &collector{limit: limit},
	}
	if err := a.start(); err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		a.serve()
	}()
	t.Cleanup(func() {
		// A test that failed half way leaves its child running.
		a.child.Kill()
		a.child.Wait()
		init.Close()
		a.stdin.Close()
		bounded := func(what string, c <-chan struct{}) {
			select {
			case <-c:
			case <-time.After(wait):
				t.Errorf("%s did not end with the child", what)
			}
		}
		bounded("serve", served)
		// serve, the one sender, has returned.
		if a.events != nil {
			close(a.events)
		}
		if a.linesDone != nil {
			bounded("the line reader", a.linesDone)
		}
		if a.drained != nil {
			bounded("the drains", a.drained)
		}
		a.logs.waitForEOF(wait)
	})
	return a, server
}

func send(t *testing.T, server net.Conn, typ byte, payload string) {
	t.Helper()
	if _, err := server.Write(frame(typ, payload)); err != nil {
		t.Fatal(err)
	}
}

// reap waits for the child and reports how it ended, as run's reaper
// does.
func reap(t *testing.T, a *agent) exitReport {
	t.Helper()
	type ended struct {
		state *os.ProcessState
		err   error
	}
	done := make(chan ended, 1)
	go func() {
		state, err := a.child.Wait()
		done <- ended{state, err}
	}()
	select {
	case e := <-done:
		if e.err != nil {
			t.Fatal(e.err)
		}
		ws := e.state.Sys().(syscall.WaitStatus)
		r := exitReport{Code: ws.ExitStatus()}
		if ws.Signaled() {
			r.Code, r.Signal = 128+int(ws.Signal()), ws.Signal().String()
		}
		return r
	case <-time.After(wait):
		t.Fatal("the child did not end")
		return exitReport{}
	}
}

// exit has the init report r, and returns the 'X' frame the server reads:
// the report, stdout and the logs apart.
func exit(t *testing.T, a *agent, server net.Conn, r exitReport) (report exitReport, stdout, logs []byte) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.exited(r)
	}()
	typ, payload := recvFrame(t, server)
	if typ != 'X' || len(payload) < 4 {
		t.Fatalf("frame %q of %d bytes; want an exit report", typ, len(payload))
	}
	n := int(binary.BigEndian.Uint32(payload))
	if n > len(payload)-4 {
		t.Fatalf("report of %d bytes in a payload of %d", n, len(payload))
	}
	if err := json.Unmarshal(payload[4:4+n], &report); err != nil {
		t.Fatalf("report %q: %v", payload[4:4+n], err)
	}
	rest := payload[4+n:]
	if report.Stdout > len(rest) {
		t.Fatalf("report %s: stdout of %d bytes in %d", payload[4:4+n], report.Stdout, len(rest))
	}
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("exited did not return")
	}
	// 'X' is the last frame. The init may close the connection with a
	// frame of the server's unread (the child exited before serve read
	// it): a unix socket then resets, after the data sent, and the server
	// takes that for the end as it does EOF.
	if b, err := io.ReadAll(server); (err != nil && !errors.Is(err, syscall.ECONNRESET)) || len(b) != 0 {
		t.Fatalf("after the exit report: %q, %v; want the end of the connection", b, err)
	}
	return report, rest[:report.Stdout], rest[report.Stdout:]
}

func TestColdEvent(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 1<<16) // more than a pipe holds
	for _, tc := range []struct {
		name, script, event string
		code                int
		stdout, stderr      string
	}{
		{"echo", `cat; echo err >&2; exit 3`, "the event", 3, "the event", "err\n"},
		{"interleaved", `echo o1; echo e1 >&2; echo o2; cat >&2`, "ev", 0, "o1\no2\n", "e1\nev"},
		{"silent", `cat >/dev/null`, "ignored", 0, "", ""},
		{"big event", `cat`, big, 0, big, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, server := startAgent(t, "cold", 2<<20, tc.script)
			send(t, server, 'E', tc.event)
			r := reap(t, a)
			if r.Code != tc.code {
				t.Fatalf("the child ended with %+v; want code %d", r, tc.code)
			}
			report, stdout, stderr := exit(t, a, server, r)
			if want := (exitReport{Code: tc.code, Stdout: len(tc.stdout)}); report != want {
				t.Errorf("report %+v; want %+v", report, want)
			}
			if string(stdout) != tc.stdout || string(stderr) != tc.stderr {
				t.Errorf("stdout %.80q, stderr %.80q; want %.80q, %.80q", stdout, stderr, tc.stdout, tc.stderr)
			}
		})
	}
}

// An output past the limit costs the child its life, not the init its
// memory: the report says how much was dropped.
func TestColdOutputLimit(t *testing.T) {
	const limit = 100
	line := "0123456789\n"
	flood := strings.Repeat(line, limit/len(line)+1)[:limit]
	for _, tc := range []struct {
		name, script   string
		killed         bool
		stdout, stderr string
	}{
		{"stdout", `while :; do echo 0123456789; done`, true, flood, ""},
		{"stderr", `echo out; while :; do echo 0123456789 >&2; done`, true, "out\n", flood},
		// At the limit is not past it.
		{"at the limit", `printf %0100d 0; printf %0100d 1 >&2`, false, strings.Repeat("0", limit), strings.Repeat("0", limit-1) + "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, server := startAgent(t, "cold", limit, tc.script)
			send(t, server, 'E', "")
			r := reap(t, a)
			if killed := r.Signal == syscall.SIGKILL.String(); killed != tc.killed || (!killed && r.Code != 0) {
				t.Fatalf("the child ended with %+v; want killed %v", r, tc.killed)
			}
			report, stdout, stderr := exit(t, a, server, r)
			if string(stdout) != tc.stdout || string(stderr) != tc.stderr {
				t.Errorf("stdout %q, stderr %q; want %q, %q", stdout, stderr, tc.stdout, tc.stderr)
			}
			if report.Code != r.Code || report.Signal != r.Signal || report.Stdout != len(tc.stdout) {
				t.Errorf("report %+v; want %+v with stdout %d", report, r, len(tc.stdout))
			}
			stdoutOver, stderrOver := len(tc.stdout) == limit && tc.killed, len(tc.stderr) == limit && tc.killed
			if (report.StdoutDropped > 0) != stdoutOver || (report.Dropped > 0) != stderrOver {
				t.Errorf("report %+v; want bytes dropped from stdout %v, from stderr %v", report, stdoutOver, stderrOver)
			}
		})
	}
}

// A child that writes past the limit from its first instruction may get
// there before start has returned: it must be killed all the same. Each
// attempt is a chance for the race, hence many.
func TestColdOutputLimitAtOnce(t *testing.T) {
	for i := range 50 {
		a, server := startCommand(t, "cold", 100, "yes")
		r := reap(t, a)
		if r.Signal != syscall.SIGKILL.String() {
			t.Fatalf("attempt %d: the child ended with %+v; want it killed", i, r)
		}
		report, stdout, _ := exit(t, a, server, r)
		if report.StdoutDropped == 0 || string(stdout) != strings.Repeat("y\n", 50) {
			t.Fatalf("attempt %d: report %+v, stdout %q; want 100 bytes of y and some dropped", i, report, stdout)
		}
	}
}

// A timeout: the server's kill ends a child that would wait for ever.
func TestColdKill(t *testing.T) {
	a, server := startAgent(t, "cold", 100, `read never`)
	send(t, server, 'K', "")
	r := reap(t, a)
	if r.Signal != syscall.SIGKILL.String() {
		t.Fatalf("the child ended with %+v; want it killed", r)
	}
	if report, _, _ := exit(t, a, server, r); report != (exitReport{Code: 137, Signal: "killed"}) {
		t.Errorf("report %+v; want code 137, killed", report)
	}
}

// When the server's connection ends, the server is gone or is closing the
// container: the child is killed rather than left running with no one to
// answer it.
func TestServerHangUpKillsTheChild(t *testing.T) {
	for _, mode := range []string{"cold", "hot"} {
		a, server := startAgent(t, mode, 100, `read never; sleep 30`)
		server.Close()
		if r := reap(t, a); r.Signal != syscall.SIGKILL.String() {
			t.Errorf("%s: the child ended with %+v; want it killed", mode, r)
		}
	}
}

// A process the child left behind holds its outputs open: the report
// waits for them a little, not for that process to end.
func TestColdExitWithOrphan(t *testing.T) {
	a, server := startAgent(t, "cold", 100, `sleep 30 & echo $!`)
	send(t, server, 'E', "")
	r := reap(t, a)
	begin := time.Now()
	report, stdout, _ := exit(t, a, server, r)
	took := time.Since(begin)
	if pid, err := strconv.Atoi(strings.TrimSpace(string(stdout))); err == nil {
		syscall.Kill(pid, syscall.SIGKILL)
	} else {
		t.Errorf("stdout %q; want the orphan's pid", stdout)
	}
	if took < exitDrainFor || took > wait {
		t.Errorf("the report came %v after the child's exit; want %v", took, exitDrainFor)
	}
	if report.Code != 0 || report.Stdout != len(stdout) {
		t.Errorf("report %+v", report)
	}
}

// result is an 'R' frame, read apart.
type result struct {
	flags      byte
	dropped    int64
	line, logs string
}

func readResult(t *testing.T, server net.Conn) result {
	t.Helper()
	typ, p := recvFrame(t, server)
	if typ != 'R' || len(p) < 13 {
		t.Fatalf("frame %q of %d bytes; want a result", typ, len(p))
	}
	n := int(binary.BigEndian.Uint32(p[9:]))
	if n > len(p)-13 {
		t.Fatalf("a line of %d bytes in a result of %d", n, len(p))
	}
	return result{p[0], int64(binary.BigEndian.Uint64(p[1:])), string(p[13 : 13+n]), string(p[13+n:])}
}

func TestHotResults(t *testing.T) {
	_, server := startAgent(t, "hot", 1<<20, `while read l; do echo "log $l" >&2; echo "res $l"; done`)
	for _, ev := range []string{"a", "b", "c"} {
		send(t, server, 'E', ev)
		if got, want := readResult(t, server), (result{0, 0, "res " + ev + "\n", "log " + ev + "\n"}); got != want {
			t.Fatalf("event %s: %+v; want %+v", ev, got, want)
		}
	}
}

// However much the child logs before its result, the result carries it
// (up to the limit), not the next one.
func TestHotLogsALot(t *testing.T) {
	const logged = 1 << 20 // many times what a pipe holds
	for _, limit := range []int{2 << 20, 1000} {
		t.Run(strconv.Itoa(limit), func(t *testing.T) {
			_, server := startAgent(t, "hot", limit,
				`while read l; do head -c 1048576 /dev/zero | tr '\0' x >&2; echo "res $l"; done`)
			kept := min(limit, logged)
			for _, ev := range []string{"a", "b"} {
				send(t, server, 'E', ev)
				r := readResult(t, server)
				if r.flags != 0 || r.line != "res "+ev+"\n" {
					t.Fatalf("event %s: flags %d, line %q", ev, r.flags, r.line)
				}
				if len(r.logs) != kept || strings.Count(r.logs, "x") != kept || r.dropped != int64(logged-kept) {
					t.Fatalf("event %s: %d bytes of logs (%d of them x), %d dropped; want %d, %d dropped",
						ev, len(r.logs), strings.Count(r.logs, "x"), r.dropped, kept, logged-kept)
				}
			}
		})
	}
}

// What the child logs after its result line belongs to no invocation: not
// to the next one above all.
func TestHotLogsAfterResult(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "go")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// The child logs late only once the test has its result, through the
	// fifo: written any sooner, the late logs could reach the pipe before
	// the init read the line, and be the event's own. The file tells the
	// test they are written.
	_, server := startAgent(t, "hot", 1<<20,
		`while read l; do echo "log $l" >&2; echo "res $l"; read go <"`+fifo+`"; echo "late $l" >&2; : >"`+dir+`/$l"; done`)
	for _, ev := range []string{"a", "b", "c"} {
		send(t, server, 'E', ev)
		if got, want := readResult(t, server), (result{0, 0, "res " + ev + "\n", "log " + ev + "\n"}); got != want {
			t.Fatalf("event %s: %+v; want %+v", ev, got, want)
		}
		release(t, fifo)
		waitForFile(t, filepath.Join(dir, ev))
	}
}

// release lets the child that waits on the fifo go on.
func release(t *testing.T, fifo string) {
	t.Helper()
	for deadline := time.Now().Add(wait); ; time.Sleep(time.Millisecond) {
		// Non-blocking, so that a child that never opens it fails the
		// test rather than hanging it.
		f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err == nil {
			write(t, f, "\n")
			f.Close()
			return
		}
		if !errors.Is(err, syscall.ENXIO) || time.Now().After(deadline) {
			t.Fatalf("releasing the child: %v", err)
		}
	}
}

func waitForFile(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(wait); ; time.Sleep(time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s", path)
		}
	}
}

// A result line past the limit is not read to its end: the result says so
// and the child is killed.
func TestHotLineOverLimit(t *testing.T) {
	a, server := startAgent(t, "hot", 16, `while read l; do echo "log $l" >&2; echo "a result line of more than sixteen bytes"; done`)
	send(t, server, 'E', "a")
	if got, want := readResult(t, server), (result{1, 0, "", "log a\n"}); got != want {
		t.Fatalf("%+v; want %+v", got, want)
	}
	r := reap(t, a)
	if r.Signal != syscall.SIGKILL.String() {
		t.Fatalf("the child ended with %+v; want it killed", r)
	}
	if report, _, _ := exit(t, a, server, r); report != r {
		t.Errorf("report %+v; want %+v", report, r)
	}
}

// A line at the limit, its newline included, is not past it.
func TestHotLineAtLimit(t *testing.T) {
	_, server := startAgent(t, "hot", 6, `while read l; do echo "res $l"; done`)
	send(t, server, 'E', "a")
	if got, want := readResult(t, server), (result{0, 0, "res a\n", ""}); got != want {
		t.Fatalf("%+v; want %+v", got, want)
	}
}

// A child that dies during an invocation: the exit report carries what it
// logged since its last result.
func TestHotExit(t *testing.T) {
	a, server := startAgent(t, "hot", 1<<20, `read l; echo "log $l" >&2; echo "res $l"; read l; echo "dying on $l" >&2; exit 5`)
	send(t, server, 'E', "a")
	if got, want := readResult(t, server), (result{0, 0, "res a\n", "log a\n"}); got != want {
		t.Fatalf("%+v; want %+v", got, want)
	}
	send(t, server, 'E', "b")
	r := reap(t, a)
	if r.Code != 5 {
		t.Fatalf("the child ended with %+v; want code 5", r)
	}
	report, stdout, logs := exit(t, a, server, r)
	if report != (exitReport{Code: 5}) || len(stdout) != 0 || string(logs) != "dying on b\n" {
		t.Errorf("report %+v, stdout %q, logs %q; want code 5 and \"dying on b\\n\"", report, stdout, logs)
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
		pass(ln, socket, testSecret())
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
