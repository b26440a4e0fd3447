package agent

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// The gateway's protocol with the node agents (the nodeagent command):
// HTTP/2 over mutual TLS, every stream on the agent's one connection.
//
//   - POST /v1/agent, header Minilambda-Node: the agent's stream. The
//     response carries the gateway's lines, "open NAME" (make the socket
//     of instance NAME) and "close NAME"; the request carries the agent's,
//     "opened NAME" or "failed NAME REASON".
//   - POST /v1/conn/NAME: one connection to instance NAME's socket,
//     relayed both ways: the init's hello first, then its bytes.
const (
	agentPath  = "/v1/agent"
	connPath   = "/v1/conn/"
	nodeHeader = "Minilambda-Node"
)

// DefaultNodeRoot is where a node agent keeps the sockets and the init on
// its node, as the function containers there mount them.
const DefaultNodeRoot = "/run/minilambda"

// nodeSocketName is the name a node agent gives each container's socket,
// in the directory of its own that the container mounts.
const nodeSocketName = "api.sock"

// openWait bounds the wait for the agents to make an instance's socket.
const openWait = 10 * time.Second

var instanceName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

// Gateway is the server's end of the data plane across machines: the node
// agents connect to it (ServeHTTP, behind a TLS listener that asks for
// their certificate), and it relays each connection a container makes to
// its socket on its node to that container's link, where the container's
// secret is checked as for a socket on this machine. An instance's socket
// is made on every node before its task is created, since the cluster, not
// the server, chooses the node; the agents of the other nodes drop theirs
// when it ends.
type Gateway struct {
	logger   *slog.Logger
	nodeRoot string

	mu      sync.Mutex
	agents  map[*nodeAgent]bool
	links   map[string]*link
	changed chan struct{} // closed and replaced when an agent comes or goes

	ready     chan struct{} // closed once containers may be opened
	readyOnce sync.Once
}

// GatewayOptions configure a Gateway.
type GatewayOptions struct {
	// NodeRoot is the agents' directory on their nodes (DefaultNodeRoot
	// when empty).
	NodeRoot string
	Logger   *slog.Logger
	// AwaitReady holds every container's start until Ready is called:
	// a server that has just started lets its node agents connect first,
	// so that a container is not kept off nodes whose agents are a moment
	// late (with the operator's constraints, that can leave no node).
	AwaitReady bool
}

// NewGateway returns a gateway with no agent yet.
func NewGateway(opts GatewayOptions) *Gateway {
	if opts.NodeRoot == "" {
		opts.NodeRoot = DefaultNodeRoot
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{logger: opts.Logger.With("subsystem", "gateway"), nodeRoot: opts.NodeRoot,
		agents: map[*nodeAgent]bool{}, links: map[string]*link{}, changed: make(chan struct{}), ready: make(chan struct{})}
	if !opts.AwaitReady {
		g.Ready()
	}
	return g
}

// Ready lets containers start: see GatewayOptions.AwaitReady.
func (g *Gateway) Ready() { g.readyOnce.Do(func() { close(g.ready) }) }

// nodeAgent is one agent's stream.
type nodeAgent struct {
	node string
	// remote is the agent's connection's address: its relayed
	// connections are streams of the same connection.
	remote string
	mu     sync.Mutex // one line at a time
	w      http.ResponseWriter
	rc     *http.ResponseController
	gone   chan struct{}

	// acks holds, for each instance being opened, where the agent's
	// answer goes.
	ackMu sync.Mutex
	acks  map[string]chan error
}

func (a *nodeAgent) send(line string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	select {
	case <-a.gone:
		return errors.New("agent gone")
	default:
	}
	// HTTP/2 resets a stream whose write deadline passes, even idle: the
	// deadline bounds this write alone.
	a.rc.SetWriteDeadline(time.Now().Add(sendWait))
	defer a.rc.SetWriteDeadline(time.Time{})
	if _, err := io.WriteString(a.w, line+"\n"); err != nil {
		return err
	}
	return a.rc.Flush()
}

// Nodes names the nodes whose agents are connected.
func (g *Gateway) Nodes() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var nodes []string
	for a := range g.agents {
		nodes = append(nodes, a.node)
	}
	slices.Sort(nodes)
	return nodes
}

// WaitNodes waits until n agents are connected.
func (g *Gateway) WaitNodes(ctx context.Context, n int) error {
	for {
		g.mu.Lock()
		have, changed := len(g.agents), g.changed
		g.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("agent: %d of %d node agents connected: %w", have, n, ctx.Err())
		}
	}
}

// ServeHTTP serves the agents' streams and the connections they relay.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || r.ProtoMajor != 2 || r.Method != http.MethodPost {
		http.Error(w, "the gateway serves node agents, over HTTP/2 with their certificate", http.StatusForbidden)
		return
	}
	switch {
	case r.URL.Path == agentPath:
		g.serveAgent(w, r)
	case strings.HasPrefix(r.URL.Path, connPath):
		g.serveConn(w, r, strings.TrimPrefix(r.URL.Path, connPath))
	default:
		http.NotFound(w, r)
	}
}

func (g *Gateway) serveAgent(w http.ResponseWriter, r *http.Request) {
	node := r.Header.Get(nodeHeader)
	a := &nodeAgent{node: node, remote: r.RemoteAddr, w: w, rc: http.NewResponseController(w), gone: make(chan struct{}), acks: map[string]chan error{}}
	w.WriteHeader(http.StatusOK)
	if err := a.rc.Flush(); err != nil {
		return
	}
	g.mu.Lock()
	g.agents[a] = true
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
	g.logger.Info("node agent connected", "node", node, "remote", r.RemoteAddr)
	defer func() {
		a.mu.Lock()
		close(a.gone)
		a.mu.Unlock()
		g.mu.Lock()
		delete(g.agents, a)
		close(g.changed)
		g.changed = make(chan struct{})
		g.mu.Unlock()
		a.ackMu.Lock()
		for name, ch := range a.acks {
			ch <- errors.New("its agent went away")
			delete(a.acks, name)
		}
		a.ackMu.Unlock()
		g.logger.Warn("node agent gone", "node", node)
	}()
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 512), 512)
	for sc.Scan() {
		verb, rest, _ := strings.Cut(sc.Text(), " ")
		name, reason, _ := strings.Cut(rest, " ")
		var err error
		switch verb {
		case "opened":
		case "failed":
			err = errors.New(reason)
		default:
			continue
		}
		a.ackMu.Lock()
		if ch, ok := a.acks[name]; ok {
			ch <- err
			delete(a.acks, name)
		}
		a.ackMu.Unlock()
	}
}

// serveConn relays one connection to l's socket until either side ends it.
func (g *Gateway) serveConn(w http.ResponseWriter, r *http.Request, name string) {
	g.mu.Lock()
	l := g.links[name]
	g.mu.Unlock()
	if l == nil {
		g.logger.Warn("a node agent relayed a connection to an instance that is not open", "instance", name, "node", r.Header.Get(nodeHeader))
		http.NotFound(w, r)
		return
	}
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	c := &streamConn{body: r.Body, w: w, rc: rc, closed: make(chan struct{}), remote: r.RemoteAddr, node: r.Header.Get(nodeHeader),
		agent: g.agentOn(r.RemoteAddr), dlChanged: make(chan struct{})}
	go l.handshakeRelayed(c)
	select {
	case <-c.closed:
	case <-r.Context().Done():
		c.Close()
	}
	// A write under way ends at the deadline Close set: the response
	// writer must not be touched once this returns.
	c.wmu.Lock()
	c.dmu.Lock()
	c.done = true
	c.dmu.Unlock()
	c.wmu.Unlock()
}

// agentOn is the connected agent whose connection has address remote.
func (g *Gateway) agentOn(remote string) *nodeAgent {
	g.mu.Lock()
	defer g.mu.Unlock()
	for a := range g.agents {
		if a.remote == remote {
			return a
		}
	}
	return nil
}

// open makes instance name's socket on every node and routes the
// connections relayed to it to l, and returns the nodes that made it: the
// container must be placed on one of them. It fails when none did.
func (g *Gateway) open(ctx context.Context, l *link) ([]string, error) {
	select {
	case <-g.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("agent: the node agents were not all connected yet: %w", ctx.Err())
	}
	g.mu.Lock()
	g.links[l.name] = l
	agents := make([]*nodeAgent, 0, len(g.agents))
	for a := range g.agents {
		agents = append(agents, a)
	}
	g.mu.Unlock()
	if len(agents) == 0 {
		g.close(l.name)
		return nil, errors.New("agent: no node agent is connected to the gateway")
	}
	acks := make([]chan error, len(agents))
	for i, a := range agents {
		acks[i] = make(chan error, 1)
		a.ackMu.Lock()
		a.acks[l.name] = acks[i]
		a.ackMu.Unlock()
		if err := a.send("open " + l.name); err != nil {
			a.ackMu.Lock()
			if _, ok := a.acks[l.name]; ok {
				delete(a.acks, l.name)
				acks[i] <- err
			}
			a.ackMu.Unlock()
		}
	}
	timer := time.NewTimer(openWait)
	defer timer.Stop()
	var (
		made   []string
		failed []string
	)
	for i, ch := range acks {
		select {
		case err := <-ch:
			if err == nil {
				made = append(made, agents[i].node)
				continue
			}
			failed = append(failed, agents[i].node+": "+err.Error())
		case <-timer.C:
			failed = append(failed, agents[i].node+": no answer")
		case <-ctx.Done():
			g.close(l.name)
			return nil, ctx.Err()
		}
	}
	for _, a := range agents {
		a.ackMu.Lock()
		delete(a.acks, l.name)
		a.ackMu.Unlock()
	}
	if len(made) == 0 {
		g.close(l.name)
		return nil, fmt.Errorf("agent: no node made the container's socket: %s", strings.Join(failed, "; "))
	}
	if len(failed) > 0 {
		g.logger.Warn("some nodes could not make a container's socket; the container goes elsewhere", "instance", l.name, "failed", failed)
	}
	return made, nil
}

// close drops instance name: its agents remove its socket, and no more
// connections reach its link.
func (g *Gateway) close(name string) {
	g.mu.Lock()
	if _, ok := g.links[name]; !ok {
		g.mu.Unlock()
		return
	}
	delete(g.links, name)
	agents := make([]*nodeAgent, 0, len(g.agents))
	for a := range g.agents {
		agents = append(agents, a)
	}
	g.mu.Unlock()
	for _, a := range agents {
		a.send("close " + name)
	}
}

// lostError ends a relayed connection whose agent's connection to the
// gateway broke: the node was lost, or cut off from the server.
type lostError struct {
	node string
	err  error
}

func (e *lostError) Error() string {
	return fmt.Sprintf("its node %s was lost or cut off from the server, or its agent restarted (the agent's connection: %v)", e.node, e.err)
}

func (e *lostError) Unwrap() error { return e.err }

// newInstanceName names an instance's socket on the nodes.
func newInstanceName() string {
	var b [10]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// streamConn is a relayed connection as the link sees it: the request's
// body is what the container sends, the response what it receives.
//
// Its deadlines are its own: HTTP/2's reset the stream when they pass,
// even on an idle stream, and a deadline in the past is how the Runtime
// API's server stops a read it no longer needs, on a connection that must
// live on. A read that a deadline interrupts goes on, and the next Read
// takes its bytes.
type streamConn struct {
	body   io.ReadCloser
	w      http.ResponseWriter
	rc     *http.ResponseController
	remote string
	node   string
	// agent is the stream of the agent whose connection carries this
	// one; nil when it had none.
	agent *nodeAgent

	rmu      sync.Mutex // one Read at a time
	inflight chan readResult
	buf      []byte // what a read got beyond what its caller took
	rbuf     [32 << 10]byte

	dlMu      sync.Mutex
	readDL    time.Time
	writeDL   time.Time
	dlChanged chan struct{} // closed and replaced when readDL changes

	// wmu holds a write, dmu a deadline's change; done, under both, is
	// set once the handler returned.
	wmu    sync.Mutex
	dmu    sync.Mutex
	done   bool
	closed chan struct{}
	once   sync.Once
}

type readResult struct {
	n   int
	err error
}

func (c *streamConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	if c.inflight == nil {
		ch := make(chan readResult, 1)
		c.inflight = ch
		go func() {
			n, err := c.body.Read(c.rbuf[:])
			if err != nil && err != io.EOF && c.agentLost() {
				err = &lostError{node: c.node, err: err}
			}
			ch <- readResult{n, err}
		}()
	}
	for {
		c.dlMu.Lock()
		dl, changed := c.readDL, c.dlChanged
		c.dlMu.Unlock()
		var expired <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			expired = time.After(d)
		}
		select {
		case r := <-c.inflight:
			c.inflight = nil
			n := copy(p, c.rbuf[:r.n])
			c.buf = c.rbuf[n:r.n]
			if n < r.n {
				// The rest is handed out before the error.
				if r.err != nil {
					c.inflight = make(chan readResult, 1)
					c.inflight <- readResult{0, r.err}
				}
				return n, nil
			}
			return n, r.err
		case <-expired:
			return 0, os.ErrDeadlineExceeded
		case <-changed:
		}
	}
}

// agentLost says, once a read failed, whether the agent's connection
// ended with it: a container's connection the agent ended on its own, or
// one this end closed, is no node lost. The agent's stream ends within
// moments of its connection.
func (c *streamConn) agentLost() bool {
	if c.agent == nil {
		return false
	}
	t := time.NewTimer(agentGoneWait)
	defer t.Stop()
	select {
	case <-c.agent.gone:
		return true
	case <-t.C:
		return false
	}
}

// agentGoneWait bounds how long a failed relayed read waits to learn
// whether its agent's connection ended too.
const agentGoneWait = 2 * time.Second

// Write sends p at once: the init's frames are small, and wait for their
// answers.
func (c *streamConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.done {
		return 0, net.ErrClosed
	}
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	// The deadline is the caller's, for its writes, and HTTP/2's would
	// reset the stream once it passed, writing or not: it is set on the
	// stream only while a write waits past it.
	c.dlMu.Lock()
	dl := c.writeDL
	c.dlMu.Unlock()
	if !dl.IsZero() {
		d := time.Until(dl)
		if d <= 0 {
			return 0, os.ErrDeadlineExceeded
		}
		t := time.AfterFunc(d, func() { c.deadline(c.rc.SetWriteDeadline, time.Now()) })
		defer t.Stop()
	}
	n, err := c.w.Write(p)
	if err == nil {
		err = c.rc.Flush()
	}
	return n, err
}

func (c *streamConn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		// Ends a write under way. Without one, the stream ends as the
		// handler returns: a deadline would reset it, which the agent
		// would take for a failure.
		if c.wmu.TryLock() {
			c.wmu.Unlock()
		} else {
			c.deadline(c.rc.SetWriteDeadline, time.Now())
		}
		c.body.Close()
	})
	return nil
}

func (c *streamConn) deadline(set func(time.Time) error, t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.done {
		return net.ErrClosed
	}
	return set(t)
}

func (c *streamConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}
func (c *streamConn) SetReadDeadline(t time.Time) error {
	c.dlMu.Lock()
	c.readDL = t
	close(c.dlChanged)
	c.dlChanged = make(chan struct{})
	c.dlMu.Unlock()
	return nil
}
func (c *streamConn) SetWriteDeadline(t time.Time) error {
	c.dlMu.Lock()
	c.writeDL = t
	c.dlMu.Unlock()
	return nil
}
func (c *streamConn) LocalAddr() net.Addr  { return relayAddr("gateway") }
func (c *streamConn) RemoteAddr() net.Addr { return relayAddr(c.remote) }

type relayAddr string

func (a relayAddr) Network() string { return "relay" }
func (a relayAddr) String() string  { return string(a) }
