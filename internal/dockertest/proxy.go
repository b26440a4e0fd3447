package dockertest

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/client"
)

// Proxy forwards a unix socket of its own to the engine's, and can be
// stopped and started again: a test points a client at [Proxy.Host] to see
// the engine "go away" and "come back" without touching the real engine.
type Proxy struct {
	t      testing.TB
	target string // the engine's socket
	path   string // the proxy's socket

	life  sync.Mutex // held by Start and Stop for their whole run
	mu    sync.Mutex // guards ln and conns
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewProxy starts a proxy to the engine cli talks to. The test is skipped
// when that engine is not on a unix socket. The proxy stops at cleanup.
func NewProxy(t testing.TB, cli *client.Client) *Proxy {
	t.Helper()
	target, ok := strings.CutPrefix(cli.DaemonHost(), "unix://")
	if !ok {
		t.Skipf("engine at %s is not on a unix socket; cannot proxy it", cli.DaemonHost())
	}
	dir, err := os.MkdirTemp("", "dockerproxy") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{t: t, target: target, path: filepath.Join(dir, "docker.sock"), conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() {
		p.Stop()
		os.RemoveAll(dir)
	})
	p.Start()
	return p
}

// Host is the DOCKER_HOST of the proxy, for client.WithHost.
func (p *Proxy) Host() string { return "unix://" + p.path }

// Start listens again after Stop; it does nothing when already listening.
func (p *Proxy) Start() {
	p.t.Helper()
	p.life.Lock()
	defer p.life.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		return
	}
	_ = os.Remove(p.path)
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		p.t.Fatalf("proxy listen: %v", err)
	}
	p.ln = ln
	p.wg.Add(1)
	go p.serve(ln)
}

// Stop closes the listener and every connection, as an engine that dies
// would, and removes the socket so that new dials fail.
func (p *Proxy) Stop() {
	p.life.Lock()
	defer p.life.Unlock()
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	_ = os.Remove(p.path)
}

func (p *Proxy) serve(ln net.Listener) {
	defer p.wg.Done()
	for {
		down, err := ln.Accept()
		if err != nil {
			return
		}
		if !p.track(down) {
			down.Close()
			return
		}
		p.wg.Add(1)
		go p.forward(down)
	}
}

// track records c for Stop to close; false when the proxy is stopped.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) forward(down net.Conn) {
	defer p.wg.Done()
	defer p.untrack(down)
	up, err := net.Dial("unix", p.target)
	if err != nil {
		return
	}
	if !p.track(up) {
		up.Close()
		return
	}
	defer p.untrack(up)
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		// Pass a half-close on (stdin closed), or end both on an error.
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Add(2)
	go pipe(up, down)
	go pipe(down, up)
	wg.Wait()
}
