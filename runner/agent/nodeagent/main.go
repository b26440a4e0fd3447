// Command nodeagent runs on every node of a Docker Swarm cluster that runs
// Mini Lambda's function containers. A container's init connects to a Unix
// socket bind-mounted into it (see the init command); on the server's own
// machine the server holds that socket itself, but a container the cluster
// placed on another node finds the node agent there instead. The agent
// makes the sockets on its node when the server asks, and carries every
// connection made to them to the server, over one mutually authenticated
// TLS connection on which HTTP/2 multiplexes them.
//
// It runs as a global service, on the host's network, in an image FROM
// scratch that also holds the init: at start it makes ROOT and ROOT/i,
// removes what an earlier run left in ROOT/i, and copies the init to
// ROOT/init, where the tasks on its node bind-mount it from. It exits only
// on SIGTERM or SIGINT, once it has closed every socket; a server that goes
// away is waited for, with a backoff.
//
// The agent checks no secret: it passes each hello on as it is, and the
// server checks it as for a socket of its own. An agent's certificate alone,
// stolen, thus reaches no container's session.
//
// It imports the standard library only: the server builds it, as it builds
// the init, with CGO_ENABLED=0 into a static binary.
//
// Usage:
//
//	nodeagent -server HOST:PORT [-server-name NAME] [-tls FILE] [-root DIR] [-init FILE] [-node NAME] [-debug]
//	          [-engine SOCKET -reap-label KEY=VALUE]
//
// The TLS file is a PEM bundle: the CA's certificate (the only root the
// agent trusts for the server's), the agent's own client certificate and
// its PKCS#8 private key. The node's name is, unless -node gives it, the
// environment variable MINILAMBDA_NODE or else the host's name.
//
// # Protocol
//
// Every stream is a POST to the server, full duplex: the request's body is
// what the agent sends, the response's body what it receives.
//
//   - POST /v1/agent, header Minilambda-Node: the agent's stream, one at a
//     time. The server sends lines "open NAME" (make ROOT/i/NAME/api.sock)
//     and "close NAME" (drop it, and end its connections); the agent answers
//     each open with "opened NAME" or "failed NAME REASON". A NAME matches
//     ^[a-z0-9][a-z0-9-]{0,63}$; a line is at most 256 bytes with its
//     newline, and a longer one ends the stream. When the stream ends, the
//     agent closes every socket and connects again.
//   - POST /v1/conn/NAME: one connection to NAME's socket. The agent sends
//     the init's 34-byte hello (kind, version 1, secret), then the
//     connection's bytes; it writes the response's bytes to the connection.
//     An end of either body is a half-close of that direction. For a
//     connection of kind 'F', which only passes the descriptor of a
//     connection the function's runtime made to its init, the connection
//     relayed is the runtime's: a descriptor cannot cross machines, so its
//     bytes do.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The socket's protocol, version 1, as the init speaks it.
const (
	protocolVersion = 1
	secretLen       = 32
	helloLen        = 2 + secretLen
	kindControl     = 'C'
	kindConn        = 'F'
	socketName      = "api.sock"
)

// The gateway's protocol.
const (
	agentPath  = "/v1/agent"
	connPath   = "/v1/conn/"
	nodeHeader = "Minilambda-Node"
	maxLine    = 256
)

// Bounds on what a container may ask of its node's agent through its
// socket, as the server bounds what it asks of the server's own: the init
// sends its hello at once, so at most maxHandshakes connections wait for
// one; the control connection and the runtime's connections make at most
// maxRelayed streams at once. A connection past a bound is closed as soon
// as it is accepted, or as soon as its hello is read.
const (
	handshakeWait = 5 * time.Second
	maxHandshakes = 8
	maxRelayed    = 17
)

// relayBuffer is what one read from either side carries at most; what is
// read is written at once, since the init's frames are small and each
// waits for its answer.
const relayBuffer = 32 << 10

// An accept that fails (out of descriptors, most likely) is tried again
// after a pause that doubles from acceptRetryMin to acceptRetryMax, as
// net/http's Serve does.
const (
	acceptRetryMin = 5 * time.Millisecond
	acceptRetryMax = time.Second
)

// The agent connects again after a pause that doubles from backoffMin to
// backoffMax, and starts again from backoffMin after a stream that lived
// backoffMax at least: a server that accepts and drops at once is not
// hammered.
const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
)

var instanceName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

const usage = "usage: nodeagent -server HOST:PORT [-server-name NAME] [-tls FILE] [-root DIR] [-init FILE] [-node NAME] [-debug]"

func main() {
	cfg, err := parseArgs(os.Args[1:], os.Getenv("MINILAMBDA_NODE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "nodeagent:", err)
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	level := slog.LevelInfo
	if cfg.debug {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, cfg, logger); err != nil {
		logger.Error("the node agent cannot start", "err", err)
		stop()
		os.Exit(1)
	}
}

type config struct {
	server, serverName string
	tlsFile            string
	root, initPath     string
	node               string
	debug              bool
	// engine is the node's Docker socket, and reapLabel the label of the
	// containers reap removes once they exited.
	engine, reapLabel string
}

func parseArgs(args []string, envNode string) (config, error) {
	var c config
	fs := flag.NewFlagSet("nodeagent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.server, "server", "", "the server's agent gateway, HOST:PORT")
	fs.StringVar(&c.serverName, "server-name", "minilambda-gateway", "the name the server's certificate must have")
	fs.StringVar(&c.tlsFile, "tls", "/run/secrets/minilambda-agent-tls", "the PEM bundle: the CA, the agent's certificate and key")
	fs.StringVar(&c.root, "root", "/host/run/minilambda", "where the agent sees the node's socket tree")
	fs.StringVar(&c.initPath, "init", "/minilambda-init", "the init binary to place on the node")
	fs.StringVar(&c.node, "node", "", "the node's name")
	fs.BoolVar(&c.debug, "debug", false, "log every socket made and dropped")
	fs.StringVar(&c.engine, "engine", "", "the node's Docker socket, to remove the exited containers of finished tasks; none when empty")
	fs.StringVar(&c.reapLabel, "reap-label", "", "with -engine: only exited containers with this label (KEY=VALUE) are removed")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.node == "" {
		c.node = envNode
	}
	if c.node == "" {
		h, err := os.Hostname()
		if err != nil {
			return c, fmt.Errorf("no -node, and no host name: %v", err)
		}
		c.node = h
	}
	switch {
	case c.server == "":
		return c, errors.New("no -server")
	case c.serverName == "":
		return c, errors.New("no -server-name")
	case c.root == "":
		return c, errors.New("no -root")
	case c.initPath == "":
		return c, errors.New("no -init")
	case c.engine != "" && !strings.Contains(c.reapLabel, "="):
		return c, errors.New("-engine needs -reap-label KEY=VALUE")
	}
	return c, nil
}

// run starts the agent and serves the server until ctx ends. It fails only
// when it cannot start.
func run(ctx context.Context, cfg config, logger *slog.Logger) error {
	tlsConfig, err := loadTLS(cfg.tlsFile, cfg.serverName)
	if err != nil {
		return err
	}
	if err := prepare(cfg.root, cfg.initPath); err != nil {
		return err
	}
	a := newAgent(cfg, tlsConfig, logger)
	defer a.transport.CloseIdleConnections()
	if cfg.engine != "" {
		go reap(ctx, cfg.engine, cfg.reapLabel, reapEvery, logger)
	}
	a.serve(ctx)
	// The init stays: a task that starts on this node while the agent is
	// replaced still finds it, and the next agent replaces it whole.
	if err := os.RemoveAll(a.instDir); err != nil {
		logger.Warn("cannot remove the sockets' directory", "dir", a.instDir, "err", err)
	}
	return nil
}

// loadTLS reads the agent's PEM bundle: the CA, which is the only root
// trusted for the server's certificate (a certificate from the public
// roots, or from another cluster's CA, is not the server), the agent's
// certificate and its key.
func loadTLS(path, serverName string) (*tls.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the TLS bundle: %w", err)
	}
	var (
		ca        *x509.Certificate
		leaf, key *pem.Block
	)
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("the TLS bundle %s: %w", path, err)
			}
			switch {
			case c.IsCA && ca != nil:
				return nil, fmt.Errorf("the TLS bundle %s holds more than one CA certificate", path)
			case c.IsCA:
				ca = c
			case leaf != nil:
				return nil, fmt.Errorf("the TLS bundle %s holds more than one certificate that is not a CA's", path)
			default:
				leaf = blk
			}
		case "PRIVATE KEY":
			if key != nil {
				return nil, fmt.Errorf("the TLS bundle %s holds more than one private key", path)
			}
			key = blk
		}
	}
	switch {
	case ca == nil:
		return nil, fmt.Errorf("the TLS bundle %s holds no CA certificate", path)
	case leaf == nil:
		return nil, fmt.Errorf("the TLS bundle %s holds no certificate of the agent's", path)
	case key == nil:
		return nil, fmt.Errorf("the TLS bundle %s holds no PKCS#8 private key", path)
	}
	if _, err := x509.ParsePKCS8PrivateKey(key.Bytes); err != nil {
		return nil, fmt.Errorf("the TLS bundle %s: the key: %w", path, err)
	}
	// X509KeyPair checks that the key is the certificate's.
	cert, err := tls.X509KeyPair(pem.EncodeToMemory(leaf), pem.EncodeToMemory(key))
	if err != nil {
		return nil, fmt.Errorf("the TLS bundle %s: %w", path, err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return &tls.Config{
		RootCAs:      roots,
		Certificates: []tls.Certificate{cert},
		ServerName:   serverName,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// prepare makes the agent's directories on the node, empties the sockets'
// one, and places the init.
func prepare(root, initPath string) error {
	instDir := filepath.Join(root, "i")
	for _, d := range []string{root, instDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		// The containers, whatever user they run as, must traverse them:
		// the umask is not to decide.
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	// What is left is an earlier run's: the server made those sockets
	// again, through this run, or has given them up.
	entries, err := os.ReadDir(instDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(instDir, e.Name())); err != nil {
			return fmt.Errorf("removing an earlier run's socket: %w", err)
		}
	}
	return placeInit(initPath, filepath.Join(root, "init"))
}

// placeInit copies the init to dst through a rename: a task never mounts a
// half-written file, and an init that runs in a container is not written
// to (which Linux refuses) but replaced.
func placeInit(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("the init: %w", err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".init-")
	if err != nil {
		return fmt.Errorf("placing the init: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, in)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o755)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		return fmt.Errorf("placing the init: %w", err)
	}
	return nil
}

// agent holds the node's sockets, one instance each, and the connection to
// the server that carries them.
type agent struct {
	cfg       config
	logger    *slog.Logger
	transport *http.Transport
	client    *http.Client
	base      string
	instDir   string

	// mu guards instances, which the agent stream's lines change.
	mu        sync.Mutex
	instances map[string]*instance
}

func newAgent(cfg config, tlsConfig *tls.Config, logger *slog.Logger) *agent {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := newTransport(tlsConfig)
	return &agent{
		cfg:       cfg,
		logger:    logger.With("node", cfg.node),
		transport: t,
		client: &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		base:      "https://" + cfg.server,
		instDir:   filepath.Join(cfg.root, "i"),
		instances: map[string]*instance{},
	}
}

// newTransport speaks HTTP/2 only, so that every stream shares one
// connection (another is opened only past the server's limit of streams),
// and pings the server when it has been silent: a server that is gone
// without a word ends the agent's stream within half a minute, and the agent's
// sockets with it.
func newTransport(tlsConfig *tls.Config) *http.Transport {
	t := &http.Transport{
		// The transport changes the config it is given.
		TLSClientConfig:     tlsConfig.Clone(),
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		HTTP2:               &http.HTTP2Config{SendPingTimeout: 15 * time.Second, PingTimeout: 15 * time.Second},
	}
	t.Protocols = new(http.Protocols)
	t.Protocols.SetHTTP2(true)
	return t
}

// serve keeps an agent stream to the server until ctx ends.
func (a *agent) serve(ctx context.Context) {
	backoff := backoffMin
	for {
		established, err := a.stream(ctx)
		a.closeAll()
		if ctx.Err() != nil {
			return
		}
		if !established.IsZero() && time.Since(established) >= backoffMax {
			backoff = backoffMin
		}
		a.logger.Warn("the stream to the server ended; connecting again", "server", a.cfg.server, "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, backoffMax)
	}
}

// stream runs one agent stream: it takes the server's lines and answers
// them until the stream ends. It says when the server accepted the stream
// (zero if it did not).
func (a *agent) stream(ctx context.Context) (time.Time, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+agentPath, pr)
	if err != nil {
		return time.Time{}, err
	}
	req.Header.Set(nodeHeader, a.cfg.node)
	resp, err := a.client.Do(req)
	if err != nil {
		return time.Time{}, err
	}
	defer resp.Body.Close()
	// Once the server's headers are in, the transport heeds the request's
	// context only after the request's body has ended, which the agent's
	// never does by itself: its end must be closed here.
	defer context.AfterFunc(ctx, func() {
		pw.CloseWithError(ctx.Err())
		resp.Body.Close()
	})()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxLine))
		return time.Time{}, fmt.Errorf("the server answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	established := time.Now()
	a.logger.Info("connected to the server", "server", a.cfg.server)
	br := bufio.NewReaderSize(resp.Body, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			return established, fmt.Errorf("a line from the server is longer than %d bytes", maxLine)
		case errors.Is(err, io.EOF):
			return established, errors.New("the server ended the stream")
		case err != nil:
			return established, err
		}
		answer := a.command(ctx, string(line[:len(line)-1]))
		if answer == "" {
			continue
		}
		if _, err := io.WriteString(pw, answer+"\n"); err != nil {
			return established, fmt.Errorf("answering the server: %w", err)
		}
	}
}

// command carries out one of the server's lines and returns the answer, if
// it has one. A line the agent cannot parse, or whose verb it does not
// know, is ignored: it may be a later server's.
func (a *agent) command(ctx context.Context, line string) string {
	verb, name, ok := strings.Cut(line, " ")
	if !ok || !printable(name) {
		return ""
	}
	switch verb {
	case "open":
		if !instanceName.MatchString(name) {
			return "failed " + name + " bad name"
		}
		if err := a.open(ctx, name); err != nil {
			a.logger.Warn("cannot make a container's socket", "instance", name, "err", err)
			return "failed " + name + " " + oneLine(err.Error())
		}
		return "opened " + name
	case "close":
		if instanceName.MatchString(name) {
			a.close(name)
		}
	}
	return ""
}

// printable says whether s is one word of printable ASCII, which an answer
// can carry back.
func printable(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// oneLine makes a reason fit in an answer's line.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 160 {
		s = s[:160]
	}
	return s
}

// open makes instance name's socket. Each instance has a directory of its
// own because a container bind-mounts its socket's directory, not the
// socket: with one directory each, a container reaches no other's socket.
func (a *agent) open(ctx context.Context, name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.instances[name]; ok {
		return nil
	}
	dir := filepath.Join(a.instDir, name)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	fail := func(err error) error {
		os.RemoveAll(dir)
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fail(err)
	}
	sock := filepath.Join(dir, socketName)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return fail(err)
	}
	// A container may run as any user; its socket is its own all the
	// same, since no other container mounts this directory.
	if err := os.Chmod(sock, 0o666); err != nil {
		ln.Close()
		return fail(err)
	}
	ictx, cancel := context.WithCancel(ctx)
	in := &instance{a: a, name: name, dir: dir, ln: ln, ctx: ictx, cancel: cancel, conns: map[io.Closer]struct{}{}}
	a.instances[name] = in
	in.wg.Add(1)
	go in.accept()
	a.logger.Debug("instance opened", "instance", name)
	return nil
}

// close drops instance name, if it is open.
func (a *agent) close(name string) {
	a.mu.Lock()
	in := a.instances[name]
	delete(a.instances, name)
	a.mu.Unlock()
	if in != nil {
		in.close()
	}
}

// closeAll drops every instance: without its stream, the server can no
// longer tell the agent which it has given up.
func (a *agent) closeAll() {
	a.mu.Lock()
	all := a.instances
	a.instances = map[string]*instance{}
	a.mu.Unlock()
	for _, in := range all {
		in.close()
	}
}

// instance is one container's socket on the node and the connections made
// to it.
type instance struct {
	a      *agent
	name   string
	dir    string
	ln     *net.UnixListener
	ctx    context.Context // ends when the instance closes
	cancel context.CancelFunc

	handshakes atomic.Int32 // connections waiting for their hello
	relayed    atomic.Int32 // connections carried to the server

	mu     sync.Mutex
	closed bool
	conns  map[io.Closer]struct{}

	// wg counts the accept loop and every connection's goroutine.
	wg sync.WaitGroup
}

// close stops the listener, ends every connection (their streams end with
// the instance's context), waits for their goroutines and removes the
// socket's directory.
func (in *instance) close() {
	in.cancel()
	in.ln.Close()
	in.mu.Lock()
	in.closed = true
	conns := in.conns
	in.conns = nil
	in.mu.Unlock()
	for c := range conns {
		c.Close()
	}
	in.wg.Wait()
	if err := os.RemoveAll(in.dir); err != nil {
		in.a.logger.Warn("cannot remove a container's socket", "instance", in.name, "err", err)
	}
	in.a.logger.Debug("instance closed", "instance", in.name)
}

// track records a connection for close to end; it fails once the instance
// is closing.
func (in *instance) track(c io.Closer) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return false
	}
	in.conns[c] = struct{}{}
	return true
}

// drop closes a tracked connection.
func (in *instance) drop(c io.Closer) {
	in.mu.Lock()
	delete(in.conns, c)
	in.mu.Unlock()
	c.Close()
}

// accept takes the socket's connections until it closes.
func (in *instance) accept() {
	defer in.wg.Done()
	var pause time.Duration
	for {
		uc, err := in.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			pause = min(max(2*pause, acceptRetryMin), acceptRetryMax)
			in.a.logger.Warn("a container's socket cannot accept; retrying", "instance", in.name, "err", err, "retry_in", pause)
			t := time.NewTimer(pause)
			select {
			case <-t.C:
			case <-in.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		pause = 0
		if in.handshakes.Add(1) > maxHandshakes {
			in.handshakes.Add(-1)
			uc.Close()
			continue
		}
		if !in.track(uc) {
			in.handshakes.Add(-1)
			uc.Close()
			return
		}
		in.wg.Add(1)
		go func() {
			defer in.wg.Done()
			c, hello := in.handshake(uc)
			if c == nil {
				return
			}
			if in.relayed.Add(1) > maxRelayed {
				in.relayed.Add(-1)
				in.drop(c)
				return
			}
			defer in.relayed.Add(-1)
			in.relay(c, hello)
		}()
	}
}

// relayedConn is a connection the agent carries: the init's control
// connection or the runtime's TCP connection.
type relayedConn interface {
	net.Conn
	CloseWrite() error
}

// handshake reads a connection's hello, with the descriptor it may carry,
// and returns the connection to relay and the hello; nil when there is
// none. The hello's secret is not looked at: the server checks it.
func (in *instance) handshake(uc *net.UnixConn) (relayedConn, []byte) {
	defer in.handshakes.Add(-1)
	uc.SetReadDeadline(time.Now().Add(handshakeWait))
	msg := make([]byte, helloLen)
	oob := make([]byte, syscall.CmsgSpace(4*4))
	n, oobn, _, _, err := uc.ReadMsgUnix(msg, oob)
	fds := receivedFDs(oob[:oobn])
	if err != nil || n != helloLen || msg[1] != protocolVersion {
		closeFDs(fds)
		in.drop(uc)
		return nil, nil
	}
	switch msg[0] {
	case kindControl:
		if len(fds) != 0 {
			closeFDs(fds)
			in.drop(uc)
			return nil, nil
		}
		uc.SetReadDeadline(time.Time{})
		return uc, msg
	case kindConn:
		// The connection only brought the descriptor.
		in.drop(uc)
		if len(fds) != 1 {
			closeFDs(fds)
			return nil, nil
		}
		f := os.NewFile(uintptr(fds[0]), "runtime")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return nil, nil
		}
		tc, ok := c.(*net.TCPConn)
		if !ok {
			c.Close()
			return nil, nil
		}
		if !in.track(tc) {
			tc.Close()
			return nil, nil
		}
		return tc, msg
	default:
		closeFDs(fds)
		in.drop(uc)
		return nil, nil
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

// streamError is a failure of the stream to the server, rather than of the
// container's connection.
type streamError struct{ error }

func (e streamError) Unwrap() error { return e.error }

// requestBody is a relayed stream's request body. The transport closes it
// once it has sent all of it, or once it gives up sending: closed tells
// the relay, which is waiting on the container, that the server no longer
// hears it.
type requestBody struct {
	*io.PipeReader
	once   sync.Once
	closed chan struct{}
}

func (b *requestBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return b.PipeReader.Close()
}

// relay carries c to the server on a stream of its own, until both
// directions have ended or either fails.
func (in *instance) relay(c relayedConn, hello []byte) {
	defer in.drop(c)
	ctx, cancel := context.WithCancel(in.ctx)
	defer cancel()
	pr, pw := io.Pipe()
	body := &requestBody{PipeReader: pr, closed: make(chan struct{})}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.a.base+connPath+in.name, body)
	if err != nil {
		return
	}
	req.Header.Set(nodeHeader, in.a.cfg.node)
	var sentAll atomic.Bool
	up := make(chan error, 1)
	go func() { up <- copyUp(pw, c, hello, &sentAll) }()

	resp, err := in.a.client.Do(req)
	if err == nil && resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		err = fmt.Errorf("the server answered %s", resp.Status)
	}
	if err != nil {
		if in.ctx.Err() == nil {
			in.a.logger.Warn("cannot relay a container's connection", "instance", in.name, "err", err)
		}
		c.Close()
		pw.CloseWithError(net.ErrClosed)
		<-up
		return
	}
	down := make(chan error, 1)
	go func() { down <- copyDown(c, resp.Body) }()

	var (
		failure error
		deaf    bool // the server hears no more of the container
	)
	upc, downc, bodyc := up, down, body.closed
wait:
	for upc != nil || downc != nil {
		select {
		case err := <-upc:
			upc = nil
			if err != nil {
				failure = err
				break wait
			}
		case err := <-downc:
			downc = nil
			if err != nil {
				failure = err
				break wait
			}
			if deaf {
				break wait
			}
		case <-bodyc:
			bodyc = nil
			// The server ended the stream, or reset it, before the
			// container was done sending. What the server sent last is
			// still to be written to the container, and the response
			// ends by itself: once it has, nothing is left to carry.
			if !sentAll.Load() {
				deaf = true
				if downc == nil {
					break wait
				}
			}
		case <-ctx.Done():
			break wait
		}
	}
	cancel()
	c.Close()
	resp.Body.Close()
	pw.CloseWithError(net.ErrClosed)
	if upc != nil {
		<-upc
	}
	if downc != nil {
		<-downc
	}
	var se streamError
	if failure != nil && in.ctx.Err() == nil && errors.As(failure, &se) {
		in.a.logger.Warn("a relayed connection's stream failed", "instance", in.name, "err", failure)
	}
}

// copyUp sends the hello, then what the container sends, as soon as it
// comes; the container's end of sending ends the request's body.
func copyUp(pw *io.PipeWriter, c relayedConn, hello []byte, sentAll *atomic.Bool) error {
	if _, err := pw.Write(hello); err != nil {
		return err
	}
	buf := make([]byte, relayBuffer)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := pw.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			sentAll.Store(true)
			return pw.Close()
		}
		if err != nil {
			pw.CloseWithError(err)
			return err
		}
	}
}

// copyDown writes what the server sends to the container as soon as it
// comes; the end of the response's body ends the container's input.
func copyDown(c relayedConn, body io.Reader) error {
	buf := make([]byte, relayBuffer)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return c.CloseWrite()
		}
		if err != nil {
			return streamError{err}
		}
	}
}

// reapEvery is how often reap looks for exited containers.
const reapEvery = 2 * time.Second

// reap removes, every so often, the exited containers of finished tasks on
// the node that carry label (and minilambda.managed=true): Swarm 20.10
// leaves a finished replicated-job task's container behind, even once its
// service is removed, and a node would fill with them. The server reads a
// task's end from the manager, and its output from the init, never from
// the container, so nothing needs it once it exited.
func reap(ctx context.Context, socket, label string, every time.Duration, logger *slog.Logger) {
	engine := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}},
	}
	defer engine.CloseIdleConnections()
	filters, _ := json.Marshal(map[string][]string{
		"label":  {"minilambda.managed=true", "com.docker.swarm.task.id", label},
		"status": {"exited", "dead"},
	})
	list := "http://engine/containers/json?all=1&filters=" + url.QueryEscape(string(filters))
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ids, err := exited(ctx, engine, list)
		if err != nil {
			logger.Warn("cannot list the node's exited containers", "err", err)
			continue
		}
		for _, id := range ids {
			req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, "http://engine/containers/"+url.PathEscape(id)+"?force=1&v=1", nil)
			resp, err := engine.Do(req)
			if err != nil {
				logger.Warn("cannot remove an exited container", "container_id", id, "err", err)
				continue
			}
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			if resp.StatusCode/100 == 2 || resp.StatusCode == http.StatusNotFound {
				logger.Debug("removed an exited task's container", "container_id", id)
			} else {
				logger.Warn("cannot remove an exited container", "container_id", id, "status", resp.Status)
			}
		}
	}
}

// exited lists the IDs of the containers list names.
func exited(ctx context.Context, engine *http.Client, list string) ([]string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, list, nil)
	resp, err := engine.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the engine answered %s", resp.Status)
	}
	var found []struct {
		ID string `json:"Id"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&found); err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(found))
	for _, c := range found {
		ids = append(ids, c.ID)
	}
	return ids, nil
}
