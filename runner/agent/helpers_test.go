package agent_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minilambda/minilambda/internal/lambdatest"
	"github.com/minilambda/minilambda/runner/agent"
	"github.com/minilambda/minilambda/runner/engine"
)

// The tests play the container's part: a fake engine records the spec the
// host asks it to start, and the test connects to the socket the spec
// mounts as the init would, answering flushes on the control connection
// and passing TCP connections whose other end it uses as the runtime.

func TestMain(m *testing.M) {
	// A host keeps its sockets in the system's temporary directory, and
	// removes what it takes for a killed server's there: the tests' hosts
	// get one of their own, away from any server of this machine. The
	// init's builds (lambdatest.InitDir) go there too.
	tmp, err := os.MkdirTemp("", "minilambda-lambda-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("TMPDIR", tmp)
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// wait bounds every wait of the tests for something that should happen at
// once: past it, the test fails instead of hanging.
const wait = 10 * time.Second

var (
	buildOnce sync.Once
	builtInit string
	buildErr  error
)

// staticInit returns a static build of the init, built once per test
// binary in lambdatest's directory, in the temporary directory TestMain
// removes.
func staticInit(t testing.TB) string {
	t.Helper()
	dir := lambdatest.InitDir(t)
	buildOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		builtInit, buildErr = agent.BuildInit(ctx, dir)
	})
	if buildErr != nil {
		t.Fatalf("building the init: %v", buildErr)
	}
	return builtInit
}

// testLogger logs into the test's output, shown with -v or on failure.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// fakeEngine is the engine: it records the specs it is asked to start and
// gives fake containers the test controls.
type fakeEngine struct {
	mu    sync.Mutex
	specs []engine.Spec
	conts []*fakeContainer
	err   error             // StartDetached fails with it
	hook  func(engine.Spec) // called by StartDetached before it returns
	// start, when set, makes the container for a spec in place of a
	// fakeContainer.
	start func(engine.Spec) (engine.Detached, error)
}

var _ agent.Starter = (*fakeEngine)(nil)

func (e *fakeEngine) StartDetached(ctx context.Context, s engine.Spec) (engine.Detached, error) {
	e.mu.Lock()
	e.specs = append(e.specs, s)
	n := len(e.specs)
	err, hook, start := e.err, e.hook, e.start
	e.mu.Unlock()
	if hook != nil {
		hook(s)
	}
	if err != nil {
		return nil, err
	}
	if start != nil {
		return start(s)
	}
	c := newFakeContainer(fmt.Sprintf("container-%d", n))
	e.mu.Lock()
	e.conts = append(e.conts, c)
	e.mu.Unlock()
	return c, nil
}

func (e *fakeEngine) started() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.specs)
}

func (e *fakeEngine) lastSpec(t *testing.T) engine.Spec {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.specs) == 0 {
		t.Fatal("the engine was asked to start nothing")
	}
	return e.specs[len(e.specs)-1]
}

// fakeContainer is a detached container whose exit the test decides.
type fakeContainer struct {
	id        string
	exited    chan struct{}
	exitOnce  sync.Once
	closed    chan struct{}
	closeOnce sync.Once

	mu   sync.Mutex
	code int
	oom  bool
}

var _ engine.Detached = (*fakeContainer)(nil)

func newFakeContainer(id string) *fakeContainer {
	return &fakeContainer{id: id, exited: make(chan struct{}), closed: make(chan struct{})}
}

func (c *fakeContainer) ID() string              { return c.id }
func (c *fakeContainer) ImageDigest() string     { return "sha256:digest-of-" + c.id }
func (c *fakeContainer) Exited() <-chan struct{} { return c.exited }

func (c *fakeContainer) ExitState(context.Context) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.code, c.oom
}

// Close kills the container, as the engine does: it exits with SIGKILL's
// code unless it had exited already.
func (c *fakeContainer) Close(context.Context) {
	c.closeOnce.Do(func() { close(c.closed) })
	c.exit(137, false)
}

// exit ends the container with code, as the engine would see it.
func (c *fakeContainer) exit(code int, oom bool) {
	c.exitOnce.Do(func() {
		c.mu.Lock()
		c.code, c.oom = code, oom
		c.mu.Unlock()
		close(c.exited)
	})
}

func (c *fakeContainer) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// newHost returns a host with the static init, and its fake engine; the
// host is closed when the test ends.
func newHost(t *testing.T, opts agent.Options) (*agent.Host, *fakeEngine) {
	t.Helper()
	eng := &fakeEngine{}
	if opts.Engine == nil {
		opts.Engine = eng
	}
	if opts.Init == "" && opts.InitDir == "" {
		opts.Init = staticInit(t)
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	h, err := agent.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h, eng
}

// testSpec is a function's container as the runner asks for it.
func testSpec() engine.Spec {
	return engine.Spec{FunctionID: "fn-1", FunctionName: "hello", Image: "hello:latest",
		Env: map[string]string{"GREETING": "hi"}}
}

var testFunction = agent.Function{Name: "hello", Version: "3", MemoryMB: 256, Handler: "bootstrap"}

// ctr is the test's side of one started container.
type ctr struct {
	t      *testing.T
	hot    engine.Hot
	spec   engine.Spec     // as the engine was given it
	fake   *fakeContainer  // nil when the engine made another kind
	socket string          // the socket's path on this host
	secret []byte          // the container's secret, as its init has it
	http   *http.Client    // the runtime's client, through the socket
	tr     *http.Transport // http's
	ctl    *control        // the control connection, once connected

	onMu   sync.Mutex
	starts []string // the onStart calls of goDo's Do calls
}

// start starts a container of testFunction from testSpec.
func start(t *testing.T, h *agent.Host, eng *fakeEngine) *ctr {
	t.Helper()
	return startWith(t, h, eng, testSpec(), testFunction)
}

func startWith(t *testing.T, h *agent.Host, eng *fakeEngine, s engine.Spec, f agent.Function) *ctr {
	t.Helper()
	hot, err := h.StartLambda(t.Context(), s, f)
	if err != nil {
		t.Fatalf("StartLambda: %v", err)
	}
	t.Cleanup(func() { hot.Close(context.Background()) })
	c := &ctr{t: t, hot: hot, spec: eng.lastSpec(t)}
	eng.mu.Lock()
	if n := len(eng.conts); n > 0 && eng.conts[n-1].id == hot.ID() {
		c.fake = eng.conts[n-1]
	}
	eng.mu.Unlock()
	c.socket = socketPath(t, c.spec)
	c.secret = specSecret(t, c.spec)
	c.tr = &http.Transport{
		DialContext:        func(context.Context, string, string) (net.Conn, error) { return c.dialRuntime() },
		DisableCompression: true,
	}
	c.http = &http.Client{Transport: c.tr}
	t.Cleanup(c.tr.CloseIdleConnections)
	return c
}

// socketPath finds the socket in the directory the spec mounts on the
// Runtime API's target.
func socketPath(t *testing.T, s engine.Spec) string {
	t.Helper()
	for _, m := range s.Mounts {
		if m.Target == "/run/minilambda/api" {
			return filepath.Join(m.Source, "rapi.sock")
		}
	}
	t.Fatalf("the spec mounts no socket directory on /run/minilambda/api: %+v", s.Mounts)
	return ""
}

// The socket's protocol, as the init speaks it (runner/agent/init).
const (
	secretEnv       = "MINILAMBDA_AGENT_SECRET"
	protocolVersion = 1
	secretLen       = 32
)

// specSecret is the container's secret, which the spec gives its init in
// WrapEnv, as 64 hex digits.
func specSecret(t *testing.T, s engine.Spec) []byte {
	t.Helper()
	secret, err := hex.DecodeString(s.WrapEnv[secretEnv])
	if err != nil || len(secret) != secretLen {
		t.Fatalf("WrapEnv[%s] = %q, %v; want %d hex digits", secretEnv, s.WrapEnv[secretEnv], err, 2*secretLen)
	}
	if _, ok := s.Env[secretEnv]; ok {
		t.Fatalf("the secret is in the function's Env too: %v", s.Env)
	}
	return secret
}

// hello begins every connection to the socket: the kind, the protocol's
// version and the container's secret.
func hello(kind byte, secret []byte) []byte {
	return append([]byte{kind, protocolVersion}, secret...)
}

// dialUnix connects to the container's socket, as the init does.
func dialUnix(socket string) (*net.UnixConn, error) {
	return net.DialUnix("unix", nil, &net.UnixAddr{Name: socket, Net: "unix"})
}

// sendHello opens a connection to the socket and sends msg with the
// descriptors fds, then closes it, as the init passes a connection.
func sendHello(socket string, msg []byte, fds ...int) error {
	u, err := dialUnix(socket)
	if err != nil {
		return err
	}
	defer u.Close()
	var oob []byte
	if len(fds) > 0 {
		oob = syscall.UnixRights(fds...)
	}
	_, _, err = u.WriteMsgUnix(msg, oob, nil)
	return err
}

// sendKind sends the hello of kind, with the container's secret, and the
// descriptors fds on a connection of its own.
func (c *ctr) sendKind(kind byte, fds ...int) error {
	return sendHello(c.socket, hello(kind, c.secret), fds...)
}

// tcpPair returns both ends of a TCP connection on 127.0.0.1.
func tcpPair() (client, server *net.TCPConn, err error) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	client, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		return nil, nil, err
	}
	server, err = ln.AcceptTCP()
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	return client, server, nil
}

// dialRuntime makes a connection of the runtime's, passes its server side
// to the session as the init does, keeping no copy, and returns the
// runtime's end.
func (c *ctr) dialRuntime() (net.Conn, error) {
	client, server, err := tcpPair()
	if err != nil {
		return nil, err
	}
	f, err := server.File()
	server.Close()
	if err != nil {
		client.Close()
		return nil, err
	}
	defer f.Close()
	if err := c.sendKind('F', int(f.Fd())); err != nil {
		client.Close()
		return nil, err
	}
	return client, nil
}

// control is the init's end of the control connection, played by the test.
type control struct {
	t    *testing.T
	conn *net.UnixConn
	// logs gives the answer to the n-th flush (from 1): the logs, and the
	// count of bytes dropped.
	logs    func(n int) (string, int64)
	flushes atomic.Int64 // flushes asked so far
	wmu     sync.Mutex   // one frame at a time
	done    chan struct{}
}

// connect makes the control connection and answers flushes with logs (an
// empty answer when logs is nil) until the test ends.
func (c *ctr) connect(logs func(n int) (string, int64)) *control {
	c.t.Helper()
	conn, err := dialUnix(c.socket)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := conn.Write(hello('C', c.secret)); err != nil {
		c.t.Fatal(err)
	}
	ctl := &control{t: c.t, conn: conn, logs: logs, done: make(chan struct{})}
	go ctl.serve()
	c.t.Cleanup(func() {
		conn.Close()
		<-ctl.done
	})
	c.ctl = ctl
	return ctl
}

func (ctl *control) serve() {
	defer close(ctl.done)
	var head [5]byte
	for {
		if _, err := io.ReadFull(ctl.conn, head[:]); err != nil {
			return
		}
		if n := binary.BigEndian.Uint32(head[1:]); head[0] != 'F' || n != 0 {
			ctl.t.Errorf("the server sent a frame %q of %d bytes; want flushes of none", head[0], n)
			return
		}
		n := ctl.flushes.Add(1)
		logs, dropped := "", int64(0)
		if ctl.logs != nil {
			logs, dropped = ctl.logs(int(n))
		}
		var d [8]byte
		binary.BigEndian.PutUint64(d[:], uint64(dropped))
		if err := ctl.send('L', d[:], []byte(logs)); err != nil {
			return
		}
	}
}

// send writes one frame.
func (ctl *control) send(typ byte, parts ...[]byte) error {
	frame := []byte{typ, 0, 0, 0, 0}
	for _, p := range parts {
		frame = append(frame, p...)
	}
	binary.BigEndian.PutUint32(frame[1:], uint32(len(frame)-5))
	ctl.wmu.Lock()
	defer ctl.wmu.Unlock()
	_, err := ctl.conn.Write(frame)
	return err
}

// exit sends the init's exit report, a JSON document, with the last logs.
func (ctl *control) exit(report string, logs string) {
	ctl.t.Helper()
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(report)))
	if err := ctl.send('X', n[:], []byte(report), []byte(logs)); err != nil {
		ctl.t.Fatal(err)
	}
}

// logsFor answers the n-th flush with answers[n], and nothing for the
// others.
func logsFor(answers map[int]string) func(int) (string, int64) {
	return func(n int) (string, int64) { return answers[n], 0 }
}

// reply is what the Runtime API answered a request.
type reply struct {
	status int
	header http.Header
	body   []byte
	err    error
}

const apiURL = "http://" + agent.RuntimeAPI + "/2018-06-01/runtime/"

// request sends one request of the runtime's; header is name, value pairs.
// It does not fail the test, so that it can run in a goroutine.
func (c *ctr) request(method, path string, body []byte, header ...string) reply {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, apiURL+path, rd)
	if err != nil {
		return reply{err: err}
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

// must fails the test when the request failed.
func (c *ctr) must(r reply) reply {
	c.t.Helper()
	if r.err != nil {
		c.t.Fatalf("request: %v", r.err)
	}
	return r
}

// next asks for the next invocation and waits for it.
func (c *ctr) next() reply {
	c.t.Helper()
	return c.must(c.request(http.MethodGet, "invocation/next", nil))
}

// goNext asks for the next invocation in the background.
func (c *ctr) goNext() <-chan reply {
	ch := make(chan reply, 1)
	go func() { ch <- c.request(http.MethodGet, "invocation/next", nil) }()
	return ch
}

func (c *ctr) respond(id string, body []byte) reply {
	c.t.Helper()
	return c.must(c.request(http.MethodPost, "invocation/"+id+"/response", body))
}

// onStart is an engine.OnStart that records its calls.
func (c *ctr) onStart(containerID, imageDigest string) error {
	c.onMu.Lock()
	defer c.onMu.Unlock()
	c.starts = append(c.starts, containerID+" "+imageDigest)
	return nil
}

func (c *ctr) startCalls() []string {
	c.onMu.Lock()
	defer c.onMu.Unlock()
	return append([]string(nil), c.starts...)
}

// done is what Do returned.
type done struct {
	res engine.Result
	err error
}

// goDo calls Do in the background, with c.onStart.
func (c *ctr) goDo(id string, event []byte, timeout time.Duration) <-chan done {
	return goDoWith(c.hot, id, event, timeout, c.onStart)
}

func goDoWith(hot engine.Hot, id string, event []byte, timeout time.Duration, onStart engine.OnStart) <-chan done {
	ch := make(chan done, 1)
	go func() {
		res, err := hot.Do(context.Background(), id, event, timeout, onStart)
		ch <- done{res, err}
	}()
	return ch
}

// recv waits for what ch brings.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("%s: nothing within %v", what, wait)
		panic("unreachable")
	}
}

// pending fails the test if ch has brought something already.
func pending[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s: got %+v; want it still waiting", what, v)
	default:
	}
}

// eventually polls cond until it holds, failing the test past wait.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, wait)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lambdaError is Lambda's error document.
type lambdaError struct {
	Message *string `json:"errorMessage"`
	Type    string  `json:"errorType"`
}

// wantError checks that r is Lambda's error document of type typ, with a
// message, under status.
func wantError(t *testing.T, r reply, status int, typ string) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("request: %v", r.err)
	}
	if r.status != status {
		t.Fatalf("status %d (%s); want %d", r.status, r.body, status)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q; want application/json", ct)
	}
	var e lambdaError
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("body %q is not an error document: %v", r.body, err)
	}
	if e.Type != typ || e.Message == nil || *e.Message == "" {
		t.Fatalf("body %s; want errorType %q and an errorMessage", r.body, typ)
	}
}

// wantAccepted checks the Runtime API's 202.
func wantAccepted(t *testing.T, r reply) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("request: %v", r.err)
	}
	if r.status != http.StatusAccepted {
		t.Fatalf("status %d (%s); want 202", r.status, r.body)
	}
	var body map[string]string
	if err := json.Unmarshal(r.body, &body); err != nil || len(body) != 1 || body["status"] != "OK" {
		t.Fatalf("body %q; want {\"status\":\"OK\"}", r.body)
	}
}

// wantEvent checks that r gives the runtime invocation id with event.
func wantEvent(t *testing.T, r reply, id string, event []byte) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("next: %v", r.err)
	}
	if r.status != http.StatusOK {
		t.Fatalf("next: status %d (%s); want 200", r.status, r.body)
	}
	if got := r.header.Get("Lambda-Runtime-Aws-Request-Id"); got != id {
		t.Fatalf("next: Lambda-Runtime-Aws-Request-Id %q; want %q", got, id)
	}
	if !bytes.Equal(r.body, event) {
		t.Fatalf("next: event %q; want %q", r.body, event)
	}
}

// wantBroken checks that err says the container can take no more.
func wantBroken(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, engine.ErrHotBroken) {
		t.Fatalf("Do: error %v; want one wrapping engine.ErrHotBroken", err)
	}
}

// notAlive waits for the session to end.
func (c *ctr) notAlive() {
	c.t.Helper()
	eventually(c.t, "the session ends", func() bool { return !c.hot.Alive() })
}

// invoke runs one invocation to its end: Do, next, response.
func (c *ctr) invoke(id string, event, payload []byte) done {
	c.t.Helper()
	d := c.goDo(id, event, wait)
	wantEvent(c.t, c.next(), id, event)
	wantAccepted(c.t, c.respond(id, payload))
	got := recv(c.t, d, "Do")
	if got.err != nil {
		c.t.Fatalf("Do: %v", got.err)
	}
	return got
}
