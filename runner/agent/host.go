package agent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/minilambda/minilambda/runner/engine"
)

// Starter starts the containers: engine.Driver's one call that lambda mode
// needs.
type Starter interface {
	StartDetached(ctx context.Context, s engine.Spec) (engine.Detached, error)
}

// Options configure a Host.
type Options struct {
	Engine Starter
	// Init is a static build of the lambdainit command; when empty, one is
	// built into InitDir (made when missing) with the Go toolchain.
	Init    string
	InitDir string
	// Region is the containers' AWS_REGION (DefaultRegion when empty).
	Region string
	// Instance names the server, in the name of its sockets' directory:
	// a later run of the same server removes what a killed one left.
	Instance string
	// Gateway, when set, is where the containers' sockets are: on the
	// nodes of a cluster, whose agents relay their connections through it.
	Gateway *Gateway
	Logger  *slog.Logger
}

// Host starts lambda containers and serves each its Runtime API. It sets
// up nothing until the first container, or Init, asks.
type Host struct {
	opts   Options
	logger *slog.Logger

	initOnce  sync.Once
	initReady chan struct{}
	initPath  string
	initErr   error
	buildCtx  context.Context
	stopBuild context.CancelFunc

	mu     sync.Mutex
	dir    string          // the sockets' directories go here, 0700
	live   map[closer]bool // containers not closed yet
	closed bool
	// closing counts the containers being closed apart from their callers
	// (closeLater), which Close waits for; nClosing is its count, under mu.
	closing  sync.WaitGroup
	nClosing int
}

// New returns a Host.
func New(opts Options) (*Host, error) {
	if opts.Engine == nil {
		return nil, errors.New("agent: New needs an engine")
	}
	if opts.Init == "" && opts.InitDir == "" {
		return nil, errors.New("agent: New needs an init, or a directory to build one in")
	}
	if opts.Region == "" {
		opts.Region = DefaultRegion
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	// The engine mounts the init by its absolute path.
	for _, p := range []*string{&opts.Init, &opts.InitDir} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		*p = abs
	}
	h := &Host{opts: opts, logger: opts.Logger.With("subsystem", "agent"), initReady: make(chan struct{}), live: map[closer]bool{}}
	h.buildCtx, h.stopBuild = context.WithCancel(context.Background())
	return h, nil
}

// Init returns the path of the init binary, checking the one given or
// building one the first time it is asked: a server asks at start, so that
// the first lambda invocation does not wait for the build.
func (h *Host) Init(ctx context.Context) (string, error) {
	h.initOnce.Do(func() {
		go func() {
			defer close(h.initReady)
			switch {
			case h.opts.Init != "" && h.opts.InitDir != "":
				h.initPath, h.initErr = PlaceInit(h.opts.Init, h.opts.InitDir)
			case h.opts.Init != "":
				h.initPath, h.initErr = h.opts.Init, CheckInit(h.opts.Init)
			default:
				h.initPath, h.initErr = BuildInit(h.buildCtx, h.opts.InitDir)
			}
			if h.initErr != nil {
				h.logger.Error("lambda functions cannot run", "err", h.initErr)
			}
		}()
	})
	select {
	case <-h.initReady:
		return h.initPath, h.initErr
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// SocketDirPrefix begins the name of the directory, in the system's
// temporary directory, where the server named instance keeps its
// containers' sockets.
func SocketDirPrefix(instance string) string {
	// A hash keeps the path short, whatever the instance's name.
	sum := sha256.Sum256([]byte(instance))
	return "minilambda-rapi-" + hex.EncodeToString(sum[:6]) + "-"
}

// maxSocketPath is the longest path a Unix socket may have on Linux.
const maxSocketPath = 107

// socketDir makes a directory for one container's socket. They live in a
// directory of the host's own, made on first use in the system's temporary
// directory: a socket's path must be short (108 bytes on Linux), whatever
// the operator's data directory.
func (h *Host) socketDir() (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return "", errors.New("agent: the host is closed")
	}
	if h.dir == "" {
		prefix := SocketDirPrefix(h.opts.Instance)
		// What an earlier run of this server left; a host with no name
		// cannot tell its own from another's.
		if h.opts.Instance != "" {
			stale, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
			for _, d := range stale {
				os.RemoveAll(d)
			}
		}
		dir, err := os.MkdirTemp("", prefix)
		if err != nil {
			return "", fmt.Errorf("agent: socket directory: %w", err)
		}
		h.dir = dir
	}
	dir, err := os.MkdirTemp(h.dir, "c-")
	if err != nil {
		return "", fmt.Errorf("agent: socket directory: %w", err)
	}
	// Traversable by the container's user, whoever the image runs as; the
	// parent, 0700, keeps the host's other users out.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("agent: socket directory: %w", err)
	}
	return dir, nil
}

// Region is the region the containers are told they run in.
func (h *Host) Region() string { return h.opts.Region }

// The modes the init runs in.
const (
	modeCold   = "cold"
	modeHot    = "hot"
	modeLambda = "lambda"
)

// open makes a socket for one container of s, in mode, with a secret of
// its own, and returns its link (not serving yet: the caller sets its
// frame handler first) and s made ready for the engine: normalized, with
// the socket's directory and the init mounted, and the init wrapping the
// image's own command.
func (h *Host) open(ctx context.Context, s engine.Spec, mode string) (*link, engine.Spec, error) {
	s, err := s.Normalize()
	if err != nil {
		return nil, s, err
	}
	if gw := h.opts.Gateway; gw != nil {
		l := newLink(h, "", newSecret(), s.OutputLimit)
		l.remote, l.name = gw, newInstanceName()
		nodes, err := gw.open(ctx, l)
		if err != nil {
			return nil, s, err
		}
		// A node whose agent is not connected yet (or failed) has no
		// socket for the container: Swarm must not choose it.
		s.Nodes = nodes
		root := gw.nodeRoot
		return l, wrapped(s, mode, l.secret, root+"/i/"+l.name, nodeSocketName, root+"/init"), nil
	}
	initPath, err := h.Init(ctx)
	if err != nil {
		return nil, s, err
	}
	dir, err := h.socketDir()
	if err != nil {
		return nil, s, err
	}
	if p := filepath.Join(dir, socketName); len(p) > maxSocketPath {
		os.RemoveAll(dir)
		return nil, s, fmt.Errorf("agent: the socket path %s is longer than %d bytes: set TMPDIR to a shorter directory", p, maxSocketPath)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, socketName), Net: "unix"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, s, fmt.Errorf("agent: socket: %w", err)
	}
	if err := os.Chmod(filepath.Join(dir, socketName), 0o666); err != nil {
		ln.Close()
		os.RemoveAll(dir)
		return nil, s, fmt.Errorf("agent: socket: %w", err)
	}
	l := newLink(h, dir, newSecret(), s.OutputLimit)
	l.ln = ln
	return l, wrapped(s, mode, l.secret, dir, socketName, initPath), nil
}

func newSecret() []byte {
	secret := make([]byte, secretLen)
	rand.Read(secret)
	return secret
}

// wrapped is s with the socket's directory (sockets, where the socket is
// named socket) and the init (init), paths on the engine's host, mounted,
// and the init wrapping the image's own command.
func wrapped(s engine.Spec, mode string, secret []byte, sockets, socket, init string) engine.Spec {
	s.Mounts = append(slices.Clip(s.Mounts), engine.Mount{Source: sockets, Target: apiTarget}, engine.Mount{Source: init, Target: initTarget})
	s.Wrap = []string{initTarget, "-mode", mode, "-socket", apiTarget + "/" + socket,
		"-limit", strconv.FormatInt(s.OutputLimit, 10), "--"}
	s.WrapEnv = map[string]string{secretEnv: hex.EncodeToString(secret)}
	return s
}

// StartLambda starts a container of f from s, with its Runtime API, and
// returns it ready for invocations: the first waits for its runtime to
// ask.
func (h *Host) StartLambda(ctx context.Context, s engine.Spec, f Function) (engine.Hot, error) {
	l, s, err := h.open(ctx, s, modeLambda)
	if err != nil {
		return nil, err
	}
	sess := newSession(h, f, l)
	sess.srv = newRAPIServer(sess, h.logger)
	go sess.srv.serve(sess.conns)
	s.Env = env(s.Env, f, h.opts.Region, time.Now())
	sess.began = time.Now()
	d, err := h.launch(ctx, l, s, sess, func(d engine.Detached) { sess.c = d })
	if err != nil {
		return nil, err
	}
	go sess.watch()
	if err := h.connected(ctx, l, d, sess); err != nil {
		return nil, err
	}
	return sess, nil
}

// StartWait bounds a pooled container's start on a cluster, until its
// init connects, when the caller's context sets no sooner deadline: its
// image may have to be pulled onto its node first.
const StartWait = 2 * time.Minute

// connected waits for the init of a pooled container just launched on a
// cluster to connect. Such a container is ready only then, so that its
// start (its task placed, its image pulled onto the node, which can take
// longer than a timeout) counts against no invocation's timeout, and
// calls waiting for a container wait for it as for any start under way.
// One that exits first, or does not connect in time, is closed, and the
// error says why. On the engine beside the server a running container's
// init connects at once, and the first invocation's wait for it is bounded
// by its timeout, as a runtime's start-up is.
func (h *Host) connected(ctx context.Context, l *link, d engine.Detached, c closer) error {
	if h.opts.Gateway == nil {
		return nil
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(StartWait)
	}
	began := time.Now()
	err := l.ready(ctx, deadline, d.Exited())
	if err == nil {
		return nil
	}
	h.closeLater(context.WithoutCancel(ctx), c)
	if errors.Is(err, errSessionEnded) {
		return fmt.Errorf("agent: the container exited before its init connected%s", why(d))
	}
	return fmt.Errorf("agent: the container's init did not connect within %v%s", time.Since(began).Round(time.Second), why(d))
}

// launch serves l's socket and starts the container of s, which set gives
// to c, and which the host closes with c when it closes. On an error it
// has released l, and closed c when the host is closed.
func (h *Host) launch(ctx context.Context, l *link, s engine.Spec, c closer, set func(engine.Detached)) (engine.Detached, error) {
	if l.ln != nil {
		go l.serveSocket(l.ln)
	}
	d, err := h.opts.Engine.StartDetached(ctx, s)
	if err != nil {
		// Its runtime's connections end with the link's queue, and the
		// server on them with it.
		l.release()
		return nil, err
	}
	set(d)
	if !h.track(c) {
		c.Close(ctx)
		return nil, errHostClosed
	}
	return d, nil
}

// closer is a container the host closes when it closes.
type closer interface{ Close(ctx context.Context) }

// track adds a container to those the host closes; false once the host is
// closed.
func (h *Host) track(c closer) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.live[c] = true
	return true
}

// maxClosing bounds the containers closed apart from their callers at
// once: past it, a caller closes its own, and so keeps pace with the
// engine's removals.
const maxClosing = 32

// closeLater closes c in the background, or, when the host is closed or
// closing many already, at once.
func (h *Host) closeLater(ctx context.Context, c closer) {
	h.mu.Lock()
	now := h.closed || h.nClosing >= maxClosing
	if !now {
		h.nClosing++
		h.closing.Add(1)
	}
	h.mu.Unlock()
	if now {
		c.Close(ctx)
		return
	}
	go func() {
		defer h.closing.Done()
		c.Close(context.WithoutCancel(ctx))
		h.mu.Lock()
		h.nClosing--
		h.mu.Unlock()
	}()
}

// Settle waits until no container is being closed in the background:
// what an answer no longer waits for, someone counting containers does.
func (h *Host) Settle() {
	for {
		h.mu.Lock()
		n := h.nClosing
		h.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// forget drops a container that was closed.
func (h *Host) forget(c closer) {
	h.mu.Lock()
	delete(h.live, c)
	h.mu.Unlock()
}

// Close stops the build of the init, if it is still going, closes every
// container still open, waits for those being closed, and removes the
// sockets' directory.
func (h *Host) Close(ctx context.Context) {
	h.stopBuild()
	h.mu.Lock()
	h.closed = true
	open := make([]closer, 0, len(h.live))
	for c := range h.live {
		open = append(open, c)
	}
	h.mu.Unlock()
	for _, s := range open {
		s.Close(ctx)
	}
	h.closing.Wait()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dir != "" {
		os.RemoveAll(h.dir)
	}
}

// why is ": " and the engine's word on why c ended without running, or
// nothing when it has none.
func why(c engine.Detached) string {
	if r := engine.Reason(c); r != "" {
		return ": " + r
	}
	return ""
}
