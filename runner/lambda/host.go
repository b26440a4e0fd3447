package lambda

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
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
	Logger   *slog.Logger
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

	mu       sync.Mutex
	dir      string // the sockets' directories go here, 0700
	sessions map[*session]bool
	closed   bool
}

// New returns a Host.
func New(opts Options) (*Host, error) {
	if opts.Engine == nil {
		return nil, errors.New("lambda: New needs an engine")
	}
	if opts.Init == "" && opts.InitDir == "" {
		return nil, errors.New("lambda: New needs an init, or a directory to build one in")
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
			return nil, fmt.Errorf("lambda: %w", err)
		}
		*p = abs
	}
	h := &Host{opts: opts, logger: opts.Logger.With("subsystem", "lambda"), initReady: make(chan struct{}), sessions: map[*session]bool{}}
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
		return "", errors.New("lambda: the host is closed")
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
			return "", fmt.Errorf("lambda: socket directory: %w", err)
		}
		h.dir = dir
	}
	dir, err := os.MkdirTemp(h.dir, "c-")
	if err != nil {
		return "", fmt.Errorf("lambda: socket directory: %w", err)
	}
	// Traversable by the container's user, whoever the image runs as; the
	// parent, 0700, keeps the host's other users out.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("lambda: socket directory: %w", err)
	}
	return dir, nil
}

// Region is the region the containers are told they run in.
func (h *Host) Region() string { return h.opts.Region }

// Start starts a container of f from s, with its Runtime API, and returns
// it ready for invocations: the first waits for its runtime to ask.
func (h *Host) Start(ctx context.Context, s engine.Spec, f Function) (engine.Hot, error) {
	initPath, err := h.Init(ctx)
	if err != nil {
		return nil, err
	}
	dir, err := h.socketDir()
	if err != nil {
		return nil, err
	}
	if p := filepath.Join(dir, socketName); len(p) > maxSocketPath {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("lambda: the socket path %s is longer than %d bytes: set TMPDIR to a shorter directory", p, maxSocketPath)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, socketName), Net: "unix"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("lambda: socket: %w", err)
	}
	if err := os.Chmod(filepath.Join(dir, socketName), 0o666); err != nil {
		ln.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("lambda: socket: %w", err)
	}
	s, err = s.Normalize()
	if err != nil {
		ln.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	sess := newSession(h, f, dir, s.OutputLimit)
	sess.ln = ln
	sess.srv = &http.Server{
		Handler: sess, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(h.logger.Handler(), slog.LevelDebug),
	}
	go sess.serveSocket(ln)
	go sess.srv.Serve(sess.conns)

	s.Env = env(s.Env, f, h.opts.Region, time.Now())
	s.Mounts = append(s.Mounts, engine.Mount{Source: dir, Target: apiTarget}, engine.Mount{Source: initPath, Target: initTarget})
	s.Wrap = []string{initTarget, apiTarget + "/" + socketName, strconv.FormatInt(s.OutputLimit, 10), "--"}
	sess.began = time.Now()
	c, err := h.opts.Engine.StartDetached(ctx, s)
	if err != nil {
		sess.release()
		return nil, err
	}
	sess.c = c
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		sess.Close(ctx)
		return nil, errors.New("lambda: the host is closed")
	}
	h.sessions[sess] = true
	h.mu.Unlock()
	go sess.watch()
	return sess, nil
}

// forget drops a session that was closed.
func (h *Host) forget(s *session) {
	h.mu.Lock()
	delete(h.sessions, s)
	h.mu.Unlock()
}

// Close stops the build of the init, if it is still going, closes every
// container still open, and removes the sockets' directory.
func (h *Host) Close(ctx context.Context) {
	h.stopBuild()
	h.mu.Lock()
	h.closed = true
	open := make([]*session, 0, len(h.sessions))
	for s := range h.sessions {
		open = append(open, s)
	}
	h.mu.Unlock()
	for _, s := range open {
		s.Close(ctx)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dir != "" {
		os.RemoveAll(h.dir)
	}
}
