package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// waitFor bounds every wait of the tests, so that a broken agent fails a
// test instead of hanging it; nothing waits for it to pass.
const waitFor = 10 * time.Second

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitFor):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// pki is a test CA.
type pki struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	pool *x509.CertPool
}

func newCA(t *testing.T) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "minilambda test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &pki{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pool: pool}
}

func serial(t *testing.T) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// issue returns a certificate from the CA, as PEM and as TLS wants it.
func (p *pki) issue(t *testing.T, name string, usage x509.ExtKeyUsage, dns ...string) (certPEM, keyPEM []byte, cert tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM, cert
}

// agentBundle writes the agent's TLS bundle, as the cluster's secret holds
// it, and returns its path.
func agentBundle(t *testing.T, dir string, ca *pki) string {
	t.Helper()
	certPEM, keyPEM, _ := ca.issue(t, "agent", x509.ExtKeyUsageClientAuth)
	path := filepath.Join(dir, "tls.pem")
	b := bytes.Join([][]byte{certPEM, ca.pem, keyPEM}, nil)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fakeServer is the server's gateway as the agent sees it: each agent
// stream and each relayed connection is handed to the test.
type fakeServer struct {
	srv     *httptest.Server
	agents  chan *agentStream
	conns   chan *connStream
	refuse  atomic.Int32 // agent streams still to answer 503
	reached atomic.Int32 // requests that got past TLS
}

type agentStream struct {
	node string
	send chan string
	acks chan string
	drop chan struct{} // closed by the test: the handler returns
	done chan struct{} // the handler returned
}

type connStream struct {
	name string
	body io.ReadCloser
	w    http.ResponseWriter
	rc   *http.ResponseController
	ctx  context.Context
	end  chan struct{} // closed by the test: the handler returns
}

func newFakeServer(t *testing.T, ca *pki, dns ...string) *fakeServer {
	t.Helper()
	if len(dns) == 0 {
		dns = []string{"minilambda-gateway"}
	}
	_, _, cert := ca.issue(t, "gateway", x509.ExtKeyUsageServerAuth, dns...)
	return newFakeServerCert(t, ca, cert)
}

// newFakeServerCert serves with cert, and asks for a client certificate
// from clientCA.
func newFakeServerCert(t *testing.T, clientCA *pki, cert tls.Certificate) *fakeServer {
	t.Helper()
	f := &fakeServer{agents: make(chan *agentStream, 8), conns: make(chan *connStream, 64)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/agent", f.serveAgent)
	mux.HandleFunc("POST /v1/conn/{name}", f.serveConn)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.reached.Add(1)
		if r.ProtoMajor != 2 {
			http.Error(w, "HTTP/2 only", http.StatusHTTPVersionNotSupported)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCA.pool,
		MinVersion:   tls.VersionTLS13,
	}
	// The refusals the tests provoke are logged as handshake errors.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	f.srv = srv
	return f
}

func (f *fakeServer) addr() string { return f.srv.Listener.Addr().String() }

func (f *fakeServer) serveAgent(w http.ResponseWriter, r *http.Request) {
	if f.refuse.Add(-1) >= 0 {
		http.Error(w, "not now", http.StatusServiceUnavailable)
		return
	}
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	a := &agentStream{node: r.Header.Get(nodeHeader), send: make(chan string), acks: make(chan string, 64),
		drop: make(chan struct{}), done: make(chan struct{})}
	defer close(a.done)
	go func() {
		sc := bufio.NewScanner(r.Body)
		for sc.Scan() {
			select {
			case a.acks <- sc.Text():
			case <-a.done:
				return
			}
		}
	}()
	select {
	case f.agents <- a:
	case <-r.Context().Done():
		return
	}
	for {
		select {
		case line := <-a.send:
			io.WriteString(w, line)
			rc.Flush()
		case <-a.drop:
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (f *fakeServer) serveConn(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if name == "refused" {
		http.NotFound(w, r)
		return
	}
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	c := &connStream{name: name, body: r.Body, w: w, rc: rc, ctx: r.Context(), end: make(chan struct{})}
	select {
	case f.conns <- c:
	case <-r.Context().Done():
		return
	}
	select {
	case <-c.end:
	case <-r.Context().Done():
	}
}

// line sends one line of the server's, and waits until the handler took
// it.
func (a *agentStream) line(t *testing.T, s string) {
	t.Helper()
	select {
	case a.send <- s + "\n":
	case <-a.done:
		t.Fatalf("the agent stream ended before %q", s)
	case <-time.After(waitFor):
		t.Fatalf("timed out sending %q", s)
	}
}

func (a *agentStream) ack(t *testing.T) string {
	t.Helper()
	return recv(t, a.acks, "the agent's answer")
}

func (a *agentStream) open(t *testing.T, name string) {
	t.Helper()
	a.line(t, "open "+name)
	if got := a.ack(t); got != "opened "+name {
		t.Fatalf("open %s: answered %q", name, got)
	}
}

func (c *connStream) read(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(c.body, b); err != nil {
		t.Fatalf("the server reading %d bytes of a relayed connection: %v", n, err)
	}
	return b
}

func (c *connStream) write(t *testing.T, b []byte) {
	t.Helper()
	if _, err := c.w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := c.rc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// env is one agent, started on a fresh root against a fake server, with
// its first agent stream.
type env struct {
	root, bundle, initPath string
	initBytes              []byte
	ca                     *pki
	f                      *fakeServer
	a                      *agentStream
	stop                   func() error
}

// newEnv starts an agent; setup, if any, runs before it.
func newEnv(t *testing.T, setup func(e *env)) *env {
	t.Helper()
	// Socket paths must stay short, which t.TempDir's are not.
	root, err := os.MkdirTemp("", "na")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	files := t.TempDir()
	e := &env{root: root, ca: newCA(t), initPath: filepath.Join(files, "init"), initBytes: []byte("\x7fELF not really an init\n")}
	e.bundle = agentBundle(t, files, e.ca)
	if err := os.WriteFile(e.initPath, e.initBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	e.f = newFakeServer(t, e.ca)
	if setup != nil {
		setup(e)
	}
	e.stop = startAgent(t, e.config())
	e.a = recv(t, e.f.agents, "the agent's stream")
	return e
}

func (e *env) config() config {
	return config{server: e.f.addr(), serverName: "minilambda-gateway", tlsFile: e.bundle,
		root: e.root, initPath: e.initPath, node: "node-1"}
}

// startAgent runs the agent until the returned function stops it; the
// test's end stops it too.
func startAgent(t *testing.T, cfg config) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() { errc <- run(ctx, cfg, logger) }()
	var (
		stopped bool
		err     error
	)
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case err = <-errc:
			case <-time.After(waitFor):
				t.Fatal("the agent did not stop")
			}
		}
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func (e *env) socket(name string) string { return filepath.Join(e.root, "i", name, socketName) }

func (e *env) dial(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: e.socket(name), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(waitFor))
	return c
}

func hello(kind, version, secret byte) []byte {
	return append([]byte{kind, version}, bytes.Repeat([]byte{secret}, secretLen)...)
}

// expectClosed reads c until the agent closes it.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitFor))
	buf := make([]byte, 512)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			t.Fatalf("unexpected bytes %q", buf[:n])
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("the connection is still open")
		}
		if err != nil {
			return
		}
	}
}

func readFull(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("reading %d bytes: %v", n, err)
	}
	return b
}

// relayC makes a control connection to instance name and returns it with
// the server's end, whose hello it has checked.
func (e *env) relayC(t *testing.T, name string, secret byte) (*net.UnixConn, *connStream) {
	t.Helper()
	c := e.dial(t, name)
	h := hello(kindControl, protocolVersion, secret)
	if _, err := c.Write(h); err != nil {
		t.Fatal(err)
	}
	s := recv(t, e.f.conns, "the relayed stream")
	if s.name != name {
		t.Fatalf("a stream for %q, not %q", s.name, name)
	}
	if got := s.read(t, helloLen); !bytes.Equal(got, h) {
		t.Fatalf("the server's first bytes are %q, not the hello", got)
	}
	return c, s
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestStartPlacesInitAndClearsStale(t *testing.T) {
	// A umask that would leave the containers out: the agent's modes are
	// its own.
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	e := newEnv(t, func(e *env) {
		root := e.root
		os.MkdirAll(filepath.Join(root, "i", "stale"), 0o700)
		os.WriteFile(filepath.Join(root, "i", "stale", socketName), nil, 0o600)
		os.WriteFile(filepath.Join(root, "i", "junk"), nil, 0o600)
		os.WriteFile(filepath.Join(root, "init"), []byte("an older init"), 0o755)
	})
	if e.a.node != "node-1" {
		t.Errorf("the agent's stream names node %q", e.a.node)
	}
	b, err := os.ReadFile(filepath.Join(e.root, "init"))
	if err != nil || !bytes.Equal(b, e.initBytes) {
		t.Errorf("ROOT/init holds %q, %v; want the init's bytes", b, err)
	}
	if m := mode(t, filepath.Join(e.root, "init")); m != 0o755 {
		t.Errorf("ROOT/init has mode %v, want 0755", m)
	}
	for _, d := range []string{e.root, filepath.Join(e.root, "i")} {
		if m := mode(t, d); m != os.ModeDir|0o755 {
			t.Errorf("%s has mode %v, want 0755", d, m)
		}
	}
	if left := entries(t, filepath.Join(e.root, "i")); len(left) != 0 {
		t.Errorf("ROOT/i still holds %q", left)
	}
	if left := entries(t, e.root); strings.Join(left, " ") != "i init" {
		t.Errorf("ROOT holds %q, want only i and init", left)
	}

	e.a.open(t, "abc")
	if err := e.stop(); err != nil {
		t.Fatalf("the agent stopped with %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.root, "i")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ROOT/i is still there once the agent stopped: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.root, "init")); err != nil {
		t.Errorf("ROOT/init is gone once the agent stopped: %v", err)
	}
}

func TestStartFailures(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	bundle := agentBundle(t, dir, ca)
	initPath := filepath.Join(dir, "init")
	os.WriteFile(initPath, []byte("init"), 0o755)
	onlyCA := filepath.Join(dir, "ca.pem")
	os.WriteFile(onlyCA, ca.pem, 0o600)
	certPEM, _, _ := ca.issue(t, "agent", x509.ExtKeyUsageClientAuth)
	_, otherKey, _ := ca.issue(t, "other", x509.ExtKeyUsageClientAuth)
	mismatched := filepath.Join(dir, "mismatched.pem")
	os.WriteFile(mismatched, bytes.Join([][]byte{ca.pem, certPEM, otherKey}, nil), 0o600)
	notADir := filepath.Join(dir, "file")
	os.WriteFile(notADir, nil, 0o600)

	for _, tc := range []struct {
		name string
		edit func(*config)
		want string
	}{
		{"no TLS bundle", func(c *config) { c.tlsFile = filepath.Join(dir, "none") }, "TLS bundle"},
		{"no agent certificate", func(c *config) { c.tlsFile = onlyCA }, "no certificate"},
		{"a key not the certificate's", func(c *config) { c.tlsFile = mismatched }, "private key does not match"},
		{"no init", func(c *config) { c.initPath = filepath.Join(dir, "none") }, "init"},
		{"a root that cannot be made", func(c *config) { c.root = filepath.Join(notADir, "root") }, "not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config{server: "127.0.0.1:1", serverName: "minilambda-gateway", tlsFile: bundle,
				root: filepath.Join(t.TempDir(), "root"), initPath: initPath, node: "n"}
			tc.edit(&cfg)
			err := run(context.Background(), cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run: %v, want an error about %q", err, tc.want)
			}
		})
	}
}

func TestParseArgs(t *testing.T) {
	c, err := parseArgs([]string{"-server", "gw:7000"}, "node-7")
	if err != nil {
		t.Fatal(err)
	}
	want := config{server: "gw:7000", serverName: "minilambda-gateway", tlsFile: "/run/secrets/minilambda-agent-tls",
		root: "/host/run/minilambda", initPath: "/minilambda-init", node: "node-7"}
	if c != want {
		t.Errorf("parseArgs: %+v, want %+v", c, want)
	}
	c, err = parseArgs([]string{"-server", "gw:7000", "-node", "given"}, "node-7")
	if err != nil || c.node != "given" {
		t.Errorf("parseArgs with -node: %+v, %v", c, err)
	}
	c, err = parseArgs([]string{"-server", "gw:7000"}, "")
	if host, _ := os.Hostname(); err != nil || c.node != host {
		t.Errorf("parseArgs without a node: %q, %v; want the host's name %q", c.node, err, host)
	}
	if _, err := parseArgs(nil, "n"); err == nil {
		t.Error("parseArgs took no -server")
	}
}

func TestOpen(t *testing.T) {
	e := newEnv(t, nil)
	e.a.open(t, "abc-1")
	if m := mode(t, filepath.Join(e.root, "i", "abc-1")); m != os.ModeDir|0o755 {
		t.Errorf("the instance's directory has mode %v, want 0755", m)
	}
	if m := mode(t, e.socket("abc-1")); m.Type() != os.ModeSocket || m.Perm() != 0o666 {
		t.Errorf("the socket has mode %v, want a socket with 0666", m)
	}
	// Open again: the same answer, the same socket.
	e.a.open(t, "abc-1")
	e.dial(t, "abc-1")

	long := strings.Repeat("a", 65)
	for _, name := range []string{"Abc", "-abc", "a_b", "../abc", long} {
		e.a.line(t, "open "+name)
		if got, want := e.a.ack(t), "failed "+name+" bad name"; got != want {
			t.Errorf("open %q answered %q, want %q", name, got, want)
		}
	}
	// Lines the agent cannot parse, or whose verb it does not know, get
	// no answer: the next answer is the next open's.
	for _, line := range []string{"open", "open ", "frobnicate abc", "", "open a\tb", "close Bad"} {
		e.a.line(t, line)
	}
	e.a.open(t, strings.Repeat("b", 64))
	if left := entries(t, filepath.Join(e.root, "i")); strings.Join(left, " ") != "abc-1 "+strings.Repeat("b", 64) {
		t.Errorf("ROOT/i holds %q", left)
	}
}

func TestControlRelay(t *testing.T) {
	e := newEnv(t, nil)
	e.a.open(t, "x")
	c, s := e.relayC(t, "x", 0xaa)

	// Every write reaches the other side by itself: the init waits for
	// each answer.
	for i := range 3 {
		ping := fmt.Appendf(nil, "ping %d", i)
		if _, err := c.Write(ping); err != nil {
			t.Fatal(err)
		}
		if got := s.read(t, len(ping)); !bytes.Equal(got, ping) {
			t.Fatalf("the server read %q, want %q", got, ping)
		}
		pong := fmt.Appendf(nil, "pong %d", i)
		s.write(t, pong)
		if got := readFull(t, c, len(pong)); !bytes.Equal(got, pong) {
			t.Fatalf("the container read %q, want %q", got, pong)
		}
	}

	// Much, both ways at once, in order.
	big := make([]byte, 300<<10)
	for i := range big {
		big[i] = byte(i * 7 / 5)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(big)
		wrote <- err
	}()
	s.write(t, big)
	if got := readFull(t, c, len(big)); !bytes.Equal(got, big) {
		t.Fatal("the container read the server's bytes out of order")
	}
	if got := s.read(t, len(big)); !bytes.Equal(got, big) {
		t.Fatal("the server read the container's bytes out of order")
	}
	if err := recv(t, wrote, "the container's write"); err != nil {
		t.Fatal(err)
	}

	// The container ends its sending: the server reads the end, and
	// can still answer.
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(s.body); err != nil || len(rest) != 0 {
		t.Fatalf("after the container's half-close the server read %q, %v; want the end", rest, err)
	}
	s.write(t, []byte("last words"))
	if got := readFull(t, c, 10); string(got) != "last words" {
		t.Fatalf("the container read %q after its half-close", got)
	}
	// The server ends the stream: the container reads the end.
	close(s.end)
	expectClosed(t, c)
}

func TestServerHalfClose(t *testing.T) {
	e := newEnv(t, nil)
	e.a.open(t, "x")
	c, s := e.relayC(t, "x", 1)
	// What the server sends just before it ends the stream arrives
	// before the end.
	s.write(t, []byte("bye"))
	close(s.end)
	if got := readFull(t, c, 3); string(got) != "bye" {
		t.Fatalf("the container read %q", got)
	}
	expectClosed(t, c)
}

func TestRuntimeRelay(t *testing.T) {
	e := newEnv(t, nil)
	e.a.open(t, "x")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	runtimeConn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer runtimeConn.Close()
	runtimeConn.SetDeadline(time.Now().Add(waitFor))
	accepted, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	// As the init does: the accepted connection's descriptor goes in the
	// hello's message, and the init keeps no copy.
	f, err := accepted.(*net.TCPConn).File()
	accepted.Close()
	if err != nil {
		t.Fatal(err)
	}
	u := e.dial(t, "x")
	h := hello(kindConn, protocolVersion, 2)
	if _, _, err := u.WriteMsgUnix(h, syscall.UnixRights(int(f.Fd())), nil); err != nil {
		t.Fatal(err)
	}
	f.Close()
	expectClosed(t, u)

	s := recv(t, e.f.conns, "the relayed stream")
	if got := s.read(t, helloLen); !bytes.Equal(got, h) {
		t.Fatalf("the server's first bytes are %q, not the hello", got)
	}
	req := []byte("GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n\r\n")
	if _, err := runtimeConn.Write(req); err != nil {
		t.Fatal(err)
	}
	if got := s.read(t, len(req)); !bytes.Equal(got, req) {
		t.Fatalf("the server read %q", got)
	}
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
	s.write(t, resp)
	if got := readFull(t, runtimeConn, len(resp)); !bytes.Equal(got, resp) {
		t.Fatalf("the runtime read %q", got)
	}
	if err := runtimeConn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(s.body); err != nil || len(rest) != 0 {
		t.Fatalf("after the runtime's half-close the server read %q, %v", rest, err)
	}
	close(s.end)
	expectClosed(t, runtimeConn)
}

// socketPair returns one end of a Unix socket pair as a descriptor to
// pass, and the other as a connection that sees when the first is closed.
func socketPair(t *testing.T) (int, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[1]), "peer")
	peer, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	return fds[0], peer
}

func TestBadHellosClosed(t *testing.T) {
	e := newEnv(t, nil)
	e.a.open(t, "x")
	for _, tc := range []struct {
		name string
		msg  []byte
		pass bool // a descriptor goes with the hello
	}{
		{"another version", hello(kindControl, 2, 3), false},
		{"a short hello", hello(kindControl, protocolVersion, 3)[:10], false},
		{"an unknown kind", hello('X', protocolVersion, 3), false},
		{"F without a descriptor", hello(kindConn, protocolVersion, 3), false},
		{"F with a descriptor not TCP", hello(kindConn, protocolVersion, 3), true},
		{"C with a descriptor", hello(kindControl, protocolVersion, 3), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial(t, "x")
			var oob []byte
			var peer net.Conn
			fd := -1
			if tc.pass {
				fd, peer = socketPair(t)
				oob = syscall.UnixRights(fd)
			}
			_, _, err := c.WriteMsgUnix(tc.msg, oob, nil)
			if fd >= 0 {
				syscall.Close(fd)
			}
			if err != nil {
				t.Fatal(err)
			}
			expectClosed(t, c)
			if peer != nil {
				// The agent closed the descriptor it was passed: it held
				// the last copy.
				expectClosed(t, peer)
			}
		})
	}
	// None of them reached the server: the first stream is this one's.
	_, s := e.relayC(t, "x", 4)
	close(s.end)
}

func TestBounds(t *testing.T) {
	e := newEnv(t, nil)
	e.a.open(t, "x")
	silent := make([]*net.UnixConn, maxHandshakes)
	for i := range silent {
		silent[i] = e.dial(t, "x")
	}
	// The socket takes its connections in order: past the bound, each is
	// closed at once.
	for range 2 {
		expectClosed(t, e.dial(t, "x"))
	}
	// The silent ones were kept, and each may still send its hello.
	for i, c := range silent {
		if _, err := c.Write(hello(kindControl, protocolVersion, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	for range silent {
		recv(t, e.f.conns, "a stream of a silent connection")
	}
	// The relayed bound: one at a time, so that the bound of hellos is
	// never the one that strikes.
	for i := len(silent); i < maxRelayed; i++ {
		e.relayC(t, "x", byte(i))
	}
	c := e.dial(t, "x")
	if _, err := c.Write(hello(kindControl, protocolVersion, 99)); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c)
	select {
	case s := <-e.f.conns:
		t.Fatalf("a stream past the bound reached the server: %q", s.name)
	default:
	}
}

func TestClose(t *testing.T) {
	e := newEnv(t, nil)
	e.a.open(t, "x")
	e.a.open(t, "keep")
	c, s := e.relayC(t, "x", 5)
	e.a.line(t, "close x")
	// The agent takes its lines in order: once it answers the next, x is
	// closed.
	e.a.open(t, "y")
	if _, err := os.Stat(filepath.Join(e.root, "i", "x")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ROOT/i/x is still there: %v", err)
	}
	expectClosed(t, c)
	recv(t, s.ctx.Done(), "the server's end of the closed connection")
	if _, err := net.Dial("unix", e.socket("x")); err == nil {
		t.Error("the closed socket still accepts")
	}
	if left := entries(t, filepath.Join(e.root, "i")); strings.Join(left, " ") != "keep y" {
		t.Errorf("ROOT/i holds %q", left)
	}
	// Closing what is not open is no error; x may be opened again.
	e.a.line(t, "close nothing")
	e.a.open(t, "x")
	e.relayC(t, "x", 6)
}

func TestRefusedConnStream(t *testing.T) {
	e := newEnv(t, nil)
	e.a.open(t, "refused")
	c := e.dial(t, "refused")
	if _, err := c.Write(hello(kindControl, protocolVersion, 7)); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c)
}

func TestStreamDropped(t *testing.T) {
	e := newEnv(t, nil)
	e.a.open(t, "x")
	e.a.open(t, "y")
	c, s := e.relayC(t, "x", 8)
	close(e.a.drop)
	// The agent closes its sockets before it connects again.
	a2 := recv(t, e.f.agents, "the agent's next stream")
	if left := entries(t, filepath.Join(e.root, "i")); len(left) != 0 {
		t.Errorf("ROOT/i still holds %q once the stream ended", left)
	}
	expectClosed(t, c)
	recv(t, s.ctx.Done(), "the server's end of the relayed connection")
	a2.open(t, "x")
	e.relayC(t, "x", 9)
}

func TestLongLineEndsStream(t *testing.T) {
	e := newEnv(t, nil)
	e.a.open(t, "x")
	e.a.line(t, "open "+strings.Repeat("a", maxLine))
	a2 := recv(t, e.f.agents, "the agent's next stream")
	recv(t, e.a.done, "the end of the first stream")
	if left := entries(t, filepath.Join(e.root, "i")); len(left) != 0 {
		t.Errorf("ROOT/i still holds %q", left)
	}
	// A line of 256 bytes with its newline is taken.
	a2.line(t, "close "+strings.Repeat("a", maxLine-len("close ")-1))
	a2.open(t, "z")
}

func TestRetriesRefusedStream(t *testing.T) {
	var f *fakeServer
	e := newEnv(t, func(e *env) {
		f = e.f
		f.refuse.Store(2)
	})
	if got := f.refuse.Load(); got >= 0 {
		t.Errorf("the agent's stream came %d refusals early", got+1)
	}
	e.a.open(t, "x")
}

func TestUntrustedServer(t *testing.T) {
	ca := newCA(t)
	tlsConfig, err := loadTLS(agentBundle(t, t.TempDir(), ca), "minilambda-gateway")
	if err != nil {
		t.Fatal(err)
	}
	other := newCA(t)
	_, _, otherCert := other.issue(t, "gateway", x509.ExtKeyUsageServerAuth, "minilambda-gateway")
	_, _, wrongName := ca.issue(t, "gateway", x509.ExtKeyUsageServerAuth, "elsewhere")
	for _, tc := range []struct {
		name   string
		cert   tls.Certificate
		target any
	}{
		{"a certificate from another CA", otherCert, &x509.UnknownAuthorityError{}},
		{"a certificate for another name", wrongName, &x509.HostnameError{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServerCert(t, ca, tc.cert)
			client := &http.Client{Transport: newTransport(tlsConfig)}
			defer client.CloseIdleConnections()
			resp, err := client.Post("https://"+f.addr()+agentPath, "", nil)
			if err == nil {
				resp.Body.Close()
				t.Fatal("the agent's client accepted the server")
			}
			if !errors.As(err, tc.target) {
				t.Errorf("the refusal is %v, want a %T", err, tc.target)
			}
			if n := f.reached.Load(); n != 0 {
				t.Errorf("%d requests reached the server", n)
			}
		})
	}
}

func TestServerRefusesClientWithoutCertificate(t *testing.T) {
	ca := newCA(t)
	f := newFakeServer(t, ca)
	tlsConfig := &tls.Config{RootCAs: ca.pool, ServerName: "minilambda-gateway", MinVersion: tls.VersionTLS13}
	// A certificate from another CA is no better than none.
	other := newCA(t)
	_, _, otherCert := other.issue(t, "agent", x509.ExtKeyUsageClientAuth)
	withOther := tlsConfig.Clone()
	withOther.Certificates = []tls.Certificate{otherCert}
	for name, cfg := range map[string]*tls.Config{"none": tlsConfig, "another CA's": withOther} {
		t.Run(name, func(t *testing.T) {
			client := &http.Client{Transport: newTransport(cfg)}
			defer client.CloseIdleConnections()
			resp, err := client.Post("https://"+f.addr()+agentPath, "", nil)
			if err == nil {
				resp.Body.Close()
				t.Fatal("the server accepted a client without the agent's certificate")
			}
			// In TLS 1.3 the client finishes its handshake before the
			// server's verdict on its certificate: the error it sees may
			// be the alert or only a connection that could not be used,
			// so what counts is that no request reached the server.
			t.Log(err)
		})
	}
	if n := f.reached.Load(); n != 0 {
		t.Errorf("%d requests reached the server", n)
	}
	// The agent's own bundle gets in.
	good, err := loadTLS(agentBundle(t, t.TempDir(), ca), "minilambda-gateway")
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: newTransport(good)}
	defer client.CloseIdleConnections()
	resp, err := client.Post("https://"+f.addr()+"/v1/conn/refused", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusNotFound {
		t.Errorf("the agent's client got %s over %s", resp.Status, resp.Proto)
	}
}

// TestReap removes the exited containers the engine lists for the reaper's
// filters, and asks for no others.
func TestReap(t *testing.T) {
	dir, err := os.MkdirTemp("", "na")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("unix", filepath.Join(dir, "docker.sock"))
	if err != nil {
		t.Fatal(err)
	}
	removed := make(chan string, 8)
	var filters atomic.Value
	engine := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/containers/json":
			filters.Store(r.URL.Query().Get("filters"))
			fmt.Fprint(w, `[{"Id":"aaa"},{"Id":"bbb"}]`)
		case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/containers/"):
			if r.URL.Query().Get("force") != "1" {
				t.Errorf("a removal without force: %s", r.URL)
			}
			removed <- strings.TrimPrefix(r.URL.Path, "/containers/")
			w.WriteHeader(http.StatusNoContent)
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL)
		}
	})}}
	engine.Start()
	defer engine.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		reap(ctx, filepath.Join(dir, "docker.sock"), "minilambda.instance=abc", 10*time.Millisecond, slog.New(slog.DiscardHandler))
	}()
	got := map[string]bool{}
	timeout := time.After(waitFor)
	for len(got) < 2 {
		select {
		case id := <-removed:
			got[id] = true
		case <-timeout:
			t.Fatalf("removed %v, want aaa and bbb", got)
		}
	}
	cancel()
	<-done
	f, _ := filters.Load().(string)
	for _, want := range []string{`"minilambda.managed=true"`, `"minilambda.instance=abc"`, `"com.docker.swarm.task.id"`, `"exited"`} {
		if !strings.Contains(f, want) {
			t.Errorf("the list's filters %s lack %s", f, want)
		}
	}
	if strings.Contains(f, `"running"`) {
		t.Errorf("the list's filters %s ask for running containers", f)
	}
}

// TestReapNeedsALabel: an engine socket without a label to scope the
// removals is refused.
func TestReapNeedsALabel(t *testing.T) {
	if _, err := parseArgs([]string{"-server", "s:1", "-engine", "/run/docker.sock"}, "n"); err == nil {
		t.Error("-engine without -reap-label was taken")
	}
	if _, err := parseArgs([]string{"-server", "s:1", "-engine", "/run/docker.sock", "-reap-label", "a=b"}, "n"); err != nil {
		t.Error(err)
	}
}
